//! The `chaos` binary: verdicts, exit codes (0 pass, 1 failure, 2 broken script) and
//! file:line in messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos")).args(args).current_dir(workspace()).output().expect("run chaos")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn fixture(name: &str) -> String {
    format!("chaos/tests/fixtures/{name}")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn a_passing_scenario_exits_0_and_prints_its_seed() {
    let o = chaos(&["run", "scenarios/duplicate_vote.rhai", "--seed", "42"]);
    let out = stdout(&o);
    assert_eq(o.status.code(), Some(0), &out);
    assert!(out.contains("chaos: seed 42"), "{out}");
    assert!(out.contains("PASS  scenarios/duplicate_vote.rhai  seed=42"), "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn a_random_seed_is_printed_and_reproduces() {
    let o = chaos(&["run", "scenarios/duplicate_vote.rhai"]);
    let out = stdout(&o);
    let seed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("chaos: seed "))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seed printed: {out}"));
    assert!(out.contains(&format!("seed={seed}")), "{out}");
}

#[test]
fn a_false_assertion_exits_1_with_file_line_and_how_to_reproduce() {
    let o = chaos(&["run", &fixture("failing_assert.rhai"), "--seed", "7"]);
    let out = stdout(&o);
    assert_eq(o.status.code(), Some(1), &out);
    assert!(out.contains("FAIL  chaos/tests/fixtures/failing_assert.rhai"), "{out}");
    assert!(out.contains("failing_assert.rhai:5: assertion failed: this assertion is false on purpose"), "{out}");
    assert!(out.contains("reproduce: chaos run chaos/tests/fixtures/failing_assert.rhai --seed 7"), "{out}");
}

#[test]
fn a_throw_in_the_script_is_a_failure() {
    let o = chaos(&["run", &fixture("throws.rhai"), "--seed", "1"]);
    assert_eq(o.status.code(), Some(1), &stdout(&o));
    assert!(stdout(&o).contains("throws.rhai:2: the scenario gave up"), "{}", stdout(&o));
}

#[test]
fn broken_scripts_exit_2_with_file_line() {
    for (file, line, words) in [
        ("syntax_error.rhai", 2, "syntax error"),
        ("unknown_node.rhai", 3, "unknown node 'acceptor-9'"),
        ("wrong_type.rhai", 3, "vote"),
        ("unknown_function.rhai", 2, "explode"),
        ("bad_option.rhai", 1, "unknown cluster option 'learner'"),
        ("unknown_message_type.rhai", 3, "drop_messages: unknown message type 'Acept': one of Request, Replies,"),
        ("bad_rule_key.rhai", 2, "delay_messages: unknown key 'count': use type, from, to, slot, ms"),
        ("bad_clock_rate.rhai", 3, "clock_rate takes a factor from 0.1 to 10 (1.0 is a true clock), not 0"),
        ("clock_rate_unknown_node.rhai", 2, "unknown node 'proposer-9'"),
        ("bad_disk_fault.rhai", 3, "restart: unknown disk fault \"melted\": use one of torn_tail, corrupt, wipe"),
        ("bad_restart_key.rhai", 2, "restart: unknown key 'rejion': use disk, rejoin"),
    ] {
        let o = chaos(&["run", &fixture(file), "--seed", "1"]);
        let out = stdout(&o);
        assert_eq(o.status.code(), Some(2), &out);
        assert!(out.contains(&format!("{file}:{line}:")), "{file}: no file:line in {out}");
        assert!(out.contains(words), "{file}: no '{words}' in {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
}

#[test]
fn an_unknown_candidate_is_an_outcome_not_a_crash() {
    let o = chaos(&["run", &fixture("unknown_candidate.rhai"), "--seed", "3"]);
    assert_eq(o.status.code(), Some(0), &stdout(&o));
}

#[test]
fn a_missing_file_or_an_unknown_transport_exits_2() {
    let o = chaos(&["run", "scenarios/nope.rhai"]);
    assert_eq(o.status.code(), Some(2), &stdout(&o));
    assert!(stdout(&o).contains("scenarios/nope.rhai: no such file or folder"), "{}", stdout(&o));
    let o = chaos(&["run", "scenarios/quorum_loss.rhai", "--transport", "pigeon"]);
    assert_eq(o.status.code(), Some(2), &stdout(&o));
    assert!(stdout(&o).contains("invalid value 'pigeon'"), "{}", stdout(&o));
    assert!(stdout(&o).contains("[possible values: mem, tcp, zmq]"), "{}", stdout(&o));
}

#[test]
fn mixed_results_take_the_worst_exit_code_and_write_junit() {
    let dir = tempdir("junit");
    let junit = dir.join("report.xml");
    let o = chaos(&[
        "run",
        "scenarios/duplicate_vote.rhai",
        &fixture("failing_assert.rhai"),
        "--seed",
        "5",
        "--junit",
        junit.to_str().expect("utf-8 path"),
    ]);
    assert_eq(o.status.code(), Some(1), &stdout(&o));
    assert!(stdout(&o).contains("1 passed, 1 failed"), "{}", stdout(&o));
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""), "{xml}");
    assert!(xml.contains("name=\"scenarios/duplicate_vote.rhai\""), "{xml}");
    assert!(xml.contains("<failure message=\"chaos/tests/fixtures/failing_assert.rhai:5: assertion failed"), "{xml}");
    assert!(xml.contains("name=\"seed\" value=\"5\""), "{xml}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_event_log_is_byte_identical_for_the_same_seed() {
    let dir = tempdir("log");
    let (a, b, other) = (dir.join("a.log"), dir.join("b.log"), dir.join("c.log"));
    for (path, seed) in [(&a, "11"), (&b, "11"), (&other, "12")] {
        let o =
            chaos(&["run", "scenarios/leader_failover.rhai", "--seed", seed, "--log", path.to_str().expect("utf-8")]);
        assert_eq(o.status.code(), Some(0), &stdout(&o));
    }
    let (a, b, other) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), std::fs::read(other).unwrap());
    let text = String::from_utf8_lossy(&a);
    assert!(text.contains("deliver proposer-"), "the log records deliveries");
    assert!(text.contains("kill proposer-"), "the log records faults");
    assert!(text.contains("vote client-1/"), "the log records vote outcomes");
    assert!(a == b, "same scenario, same seed: the logs differ");
    assert!(a != other, "another seed should give another run");
    std::fs::remove_dir_all(dir).ok();
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ballot-chaos-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[track_caller]
fn assert_eq(got: Option<i32>, want: Option<i32>, out: &str) {
    assert!(got == want, "exit code {got:?}, expected {want:?}; output:\n{out}");
}
