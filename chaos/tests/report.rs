//! `chaos run --report DIR`: the page of a run is written, opens in headless Chromium
//! (Debian's `chromium`) without a script error and draws its charts; a folder that
//! cannot be written costs one line and not the verdict.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos")).current_dir(scenarios_root()).args(args).output().expect("chaos runs")
}

fn scenarios_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_run_writes_its_page_and_chromium_renders_it_without_errors() {
    let dir = std::env::temp_dir().join(format!("ballot-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = chaos(&["run", "scenarios/quorum_loss.rhai", "--seed", "1", "--report", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let page = dir.join("quorum_loss.html");
    let html = std::fs::read_to_string(&page).expect("the page is written");
    for id in ["timeline", "latency", "rate"] {
        assert!(html.contains(&format!(r#"<svg id="{id}""#)), "no {id} chart");
    }
    assert!(html.contains(r#"class="down""#), "quorum_loss kills acceptors: their down windows are drawn");
    let Ok(chromium) = which("chromium") else {
        println!("skipped: the Chromium check needs Debian's chromium (apt-get install chromium)");
        return;
    };
    let url = format!("file://{}", page.display());
    let shot = dir.join("page.png");
    // Each browser run has a deadline (coreutils' timeout kills it, and what it started).
    let o = Command::new("timeout")
        .arg("60")
        .arg(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg("--window-size=1100,1400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&o.stderr);
    for bad in ["Uncaught", "SyntaxError", "CONSOLE(", "Failed to load resource"] {
        assert!(!log.contains(bad), "the page logged {bad}: {log}");
    }
    let png = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(png > 10_000, "the screenshot is {png} bytes: nothing drawn? {log}");
    let dom =
        Command::new(&chromium).args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]).arg(&url).output();
    let dom = String::from_utf8_lossy(&dom.expect("chromium runs").stdout).into_owned();
    assert!(dom.contains("id=\"timeline\"") && dom.contains("PASS"), "the rendered page lacks its charts");
    let _ = std::fs::remove_dir_all(&dir);
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .ok_or(())
}

#[test]
fn an_unwritable_report_folder_is_one_line_and_the_verdict_stands() {
    let o = chaos(&["run", "scenarios/quorum_loss.rhai", "--seed", "1", "--report", "/proc/no-such/place"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("PASS  scenarios/quorum_loss.rhai"), "{out}");
    assert_eq!(out.matches("report: cannot write /proc/no-such/place/quorum_loss.html").count(), 1, "{out}");
}
