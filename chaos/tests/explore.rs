//! `chaos explore`: seeds pass on the real protocol; with the rejoin guard off, random
//! schedules find what it prevents by themselves, and every failure is kept as a scenario
//! that fails the same way under `chaos run`; bad flags are exit 2 in one line.

use std::path::PathBuf;
use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos")).args(args).output().expect("chaos runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ballot-explore-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn every_seed_passes_with_every_fault_and_the_table_counts_them() {
    let dir = out_dir("pass");
    let o = chaos(&["explore", "--seeds", "300", "--seed", "1", "--out", dir.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let row =
        out.lines().find(|l| l.trim_start().starts_with("300 ")).unwrap_or_else(|| panic!("no summary row: {out}"));
    assert_eq!(row.split_whitespace().nth(1), Some("0"), "no failure: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_the_rejoin_guard_random_schedules_find_failures_and_each_kept_file_reproduces() {
    let dir = out_dir("unguarded");
    let args = ["explore", "--seeds", "3000", "--seed", "1", "--faults", "wipe,kill,isolate,partition,drop_messages"];
    let o = chaos(&[&args[..], &["--no-rejoin-guard", "--out", dir.to_str().unwrap()]].concat());
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let kept: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.to_string_lossy().ends_with(".full.rhai") && p.extension().is_some_and(|x| x == "rhai"))
        .collect();
    assert!(!kept.is_empty(), "failures but no file kept: {out}");
    for file in kept.iter().take(3) {
        let text = std::fs::read_to_string(file).expect("kept file");
        let seed = text.lines().nth(2).and_then(|l| l.rsplit(' ').next()).expect("reproduce line names the seed");
        assert!(text.starts_with(&format!("// chaos explore: seed {seed} fails on ")), "{text}");
        // The shrunk schedule is smaller than the one that failed, and fails the same way.
        let class = text.lines().next().and_then(|l| l.split(" fails on ").nth(1)).and_then(|r| r.split(" (").next());
        let class = class.expect("the invariant named").to_string();
        let full = std::fs::read_to_string(file.with_extension("full.rhai")).expect("the whole schedule kept too");
        assert!(text.lines().count() < full.lines().count() + 2, "{} is not smaller", file.display());
        let page = std::fs::read_to_string(file.with_extension("html")).expect("each failure has its page");
        assert!(page.contains("invariant violated") && page.contains(r#"<svg id="timeline""#), "{}", file.display());
        let r = chaos(&["run", file.to_str().unwrap(), "--seed", seed]);
        assert_eq!(r.status.code(), Some(1), "{} must fail again: {}", file.display(), stdout(&r));
        assert!(stdout(&r).contains(&format!("invariant violated: {class}")), "{class}: {}", stdout(&r));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_fault_or_an_unwritable_folder_is_exit_2_in_one_line() {
    let o = chaos(&["explore", "--seeds", "1", "--faults", "kill,melt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("unknown fault 'melt': use kill,"), "{}", stdout(&o));
    let o = chaos(&["explore", "--seeds", "1", "--out", "/proc/no-such/place"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("cannot write --out /proc/no-such/place"), "{}", stdout(&o));
    let o = chaos(&["explore", "--time", "soon"]);
    assert_eq!(o.status.code(), Some(2));
}
