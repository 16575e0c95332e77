//! A log of a million votes, then every proposer restarted at once: a leader is elected
//! and a vote commits (`fixtures/million_votes.rhai`), on the in-memory transport and with
//! real node processes over TCP. Before phase 1 was paged, a whole-log `Promise` was tens
//! of MB, over the 16 MiB frame limit, and no proposer could ever lead again.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn run(transport: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .current_dir(workspace())
        .args(["run", "chaos/tests/fixtures/million_votes.rhai", "--transport", transport, "--seed", "1"])
        .output()
        .expect("run chaos");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "million votes on {transport}:\n{out}");
    assert!(out.contains("1000000 votes in"), "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn a_million_votes_then_every_proposer_restarts_on_mem() {
    run("mem");
}

#[test]
fn a_million_votes_then_every_proposer_restarts_over_tcp() {
    run("tcp");
}
