//! Scenario scripts run under limits (`ballot_chaos::sandbox`): huge strings, arrays and
//! maps, runaway recursion, `eval`, imports from outside the scenario's folder and
//! oversized files are each refused with one line naming the script (exit 2), while an
//! import from below the folder works. No cluster is started: the limits hold before any.

use ballot_chaos::{run_scenario, RunConfig, Verdict};
use std::path::{Path, PathBuf};

/// A folder of scripts, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new(tag: &str) -> Folder {
        let dir = std::env::temp_dir().join(format!("ballot-sandbox-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scenarios/lib")).unwrap();
        Folder(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(path: &Path) -> Verdict {
    run_scenario(path, &RunConfig::default()).verdict
}

/// The run stopped as a broken script, in one line that names it and says `says`.
fn refused(path: &Path, says: &str) {
    match run(path) {
        Verdict::ScriptError(msg) => {
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            assert!(msg.contains(says), "{msg:?} does not say {says:?}");
            assert!(!msg.contains('\n'), "over several lines: {msg:?}");
        }
        other => panic!("{} was not refused: {other:?}", path.display()),
    }
}

#[test]
fn sizes_nesting_and_eval_are_refused_in_one_line() {
    let f = Folder::new("limits");
    let cases = [
        ("string.rhai", "let s = \"x\";\nfor i in 0..40 { s += s; }\n", "a string over the script limits"),
        ("array.rhai", "let a = [];\nfor i in 0..1000000 { a.push(i); }\n", "an array over the script limits"),
        ("map.rhai", "let m = #{};\nfor i in 0..600000 { m[`k${i}`] = i; }\n", "a map over the script limits"),
        ("deep.rhai", "fn down(n) { down(n + 1) }\ndown(0);\n", "calls nested deeper than"),
        ("eval.rhai", "let x = eval(\"40 + 2\");\n", "eval"),
    ];
    for (name, text, says) in cases {
        refused(&f.write(&format!("scenarios/{name}"), text), says);
    }
    let big = format!("// {}\n", "x".repeat(2 << 20));
    refused(&f.write("scenarios/huge.rhai", &big), "over the 1048576 byte limit");
}

#[test]
fn imports_come_only_from_below_the_scenarios_folder() {
    let f = Folder::new("imports");
    f.write("scenarios/lib/helper.rhai", "fn answer() { 42 }\n");
    f.write("outside.rhai", "fn answer() { 0 }\n");
    let ok = f.write("scenarios/ok.rhai", "import \"lib/helper\" as h;\nassert_eq(h::answer(), 42);\n");
    assert_eq!(run(&ok), Verdict::Pass);

    let up = f.write("scenarios/up.rhai", "import \"../outside\" as o;\n");
    refused(&up, "import \"../outside\" refused: an absolute path or one with '..'");
    let outside = f.0.join("outside").display().to_string();
    let abs = f.write("scenarios/abs.rhai", &format!("import \"{outside}\" as o;\n"));
    refused(&abs, "an absolute path or one with '..'");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(f.0.join("outside.rhai"), f.0.join("scenarios/lib/link.rhai")).unwrap();
        let linked = f.write("scenarios/linked.rhai", "import \"lib/link\" as o;\n");
        refused(&linked, "only modules below");
    }
    let missing = f.write("scenarios/missing.rhai", "import \"lib/nothing\" as o;\n");
    refused(&missing, "cannot open");
}
