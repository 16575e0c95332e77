//! `--transport tcp|zmq`: every scenario passes with real node processes, and no node
//! process outlives the run, whatever ends it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn chaos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chaos"));
    c.current_dir(workspace());
    c
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Node processes started by the chaos process `pid` (their data dirs live in its run
/// folder, whose name carries the pid).
fn nodes_of(pid: u32) -> Vec<u32> {
    let mark = format!("ballot-run-{pid}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(&mark) {
                found.push(p);
            }
        }
    }
    found
}

/// Wait (with a deadline) until no node of `pid` is left; return the survivors.
fn survivors(pid: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = nodes_of(pid);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child (and its nodes, through PDEATHSIG) if a test fails before it ends.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_all(transport: &str) {
    let o = chaos().args(["run", "scenarios", "--transport", transport, "--seed", "17"]).output().expect("run chaos");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "scenarios on {transport}:\n{out}");
    let n = std::fs::read_dir(workspace().join("scenarios"))
        .expect("scenarios folder")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "rhai")))
        .count();
    assert!(out.contains(&format!("{n} passed, 0 failed")), "{out}");
}

#[test]
fn every_scenario_passes_over_tcp() {
    run_all("tcp");
}

#[test]
fn every_scenario_passes_over_zmq() {
    run_all("zmq");
}

#[test]
fn no_node_outlives_a_pass_a_failure_or_a_broken_script() {
    for (file, code) in [
        ("scenarios/duplicate_vote.rhai", 0),
        ("chaos/tests/fixtures/failing_assert.rhai", 1),
        ("chaos/tests/fixtures/unknown_node.rhai", 2),
    ] {
        let child = chaos()
            .args(["run", file, "--transport", "tcp", "--seed", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chaos");
        let pid = child.id();
        let o = child.wait_with_output().expect("chaos ends");
        assert_eq!(o.status.code(), Some(code), "{file}:\n{}", text(&o));
        assert_eq!(survivors(pid), Vec::<u32>::new(), "{file}: node processes left behind");
    }
}

fn stop_chaos_mid_run(signal: i32) {
    use std::os::unix::process::CommandExt;
    let mut cmd = chaos();
    // A shell without job control starts background commands with SIGINT ignored, and
    // that is inherited: chaos started under one would never see the Ctrl-C. Give it the
    // default action, as a terminal would.
    // SAFETY: signal(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = Guard(
        cmd.args(["run", "chaos/tests/fixtures/long_running.rhai", "--transport", "tcp", "--seed", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chaos"),
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().expect("stdout");
    // The script prints once the cluster is up; wait for that line (bounded by the
    // scenario's own 5 s leader deadline).
    let up = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("cluster up"));
    assert!(up, "the cluster never came up");
    assert_eq!(nodes_of(pid).len(), 8, "all 8 nodes of the default cluster run before the signal");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.0.try_wait().expect("wait for chaos").is_none() {
        assert!(std::time::Instant::now() < deadline, "chaos did not exit within 30 s of signal {signal}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(survivors(pid), Vec::<u32>::new(), "signal {signal}: node processes left behind");
}

#[test]
fn no_node_outlives_ctrl_c() {
    stop_chaos_mid_run(libc::SIGINT);
}

#[test]
fn no_node_outlives_chaos_being_killed() {
    // SIGKILL runs no code in chaos at all: the kernel's parent-death signal does the work
    // (and covers a panic that aborts, too).
    stop_chaos_mid_run(libc::SIGKILL);
}
