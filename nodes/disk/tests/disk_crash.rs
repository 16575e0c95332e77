//! Kill -9 in the middle of writes: a child process persists batches in a loop and prints
//! each sequence number only after `persist` returned; the test SIGKILLs it at random
//! points, reopens the dir and checks that every acknowledged batch is there and that the
//! state is exactly the fold of the batches 1..=K for some K >= the last acknowledged.

#[path = "../src/bin/disk-crash-helper/ops.rs"]
mod ops;

use ballot_core::{DurableState, NodeId};
use ballot_disk::{DiskStorage, Identity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 30;
const DEADLINE: Duration = Duration::from_secs(60);
/// Small, so that compactions happen often and kills land in the middle of them too.
const COMPACT_THRESHOLD: u64 = 8 * 1024;

/// Kills and reaps the child on every path out of the test, panics included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expected(k: u64) -> DurableState {
    let mut s = DurableState::default();
    for i in 1..=k {
        for op in ops::ops_for(i) {
            s.apply(&op);
        }
    }
    s
}

enum Line {
    Start(u64),
    Ack(u64),
}

fn parse(line: &str) -> Line {
    match line.strip_prefix("start ") {
        Some(k) => Line::Start(k.parse().unwrap_or_else(|_| panic!("helper printed {line:?}"))),
        None => Line::Ack(line.parse().unwrap_or_else(|_| panic!("helper printed {line:?}"))),
    }
}

#[test]
fn every_acknowledged_batch_survives_kill_9() {
    let dir = TempDir(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("disk-crash-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let identity = Identity { cluster_id: "crash-test".into(), node: NodeId::acceptor(1) };
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut durable = 0u64; // K found at the last reopen
    let mut total_acked = 0u64;
    let mut cut_compactions = 0;
    for round in 0..ROUNDS {
        let child = Command::new(env!("CARGO_BIN_EXE_disk-crash-helper"))
            .arg(&dir.0)
            .arg(COMPACT_THRESHOLD.to_string())
            .arg("100000")
            .arg(if round % 2 == 0 { "3" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the helper");
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Wait for the start line and a random number of acknowledgements, then kill.
        // Round 0 and a few others kill right after start (during or just after recovery).
        let want_acks = if round % 4 == 0 { 0 } else { rng.gen_range(1..120) };
        let deadline = Instant::now() + DEADLINE;
        let mut start = None;
        let mut last_ack = None;
        let mut acks = 0;
        while start.is_none() || acks < want_acks {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|e| panic!("round {round}: helper went quiet: {e}"));
            match parse(&line) {
                Line::Start(k) => start = Some(k),
                Line::Ack(i) => {
                    last_ack = Some(i);
                    acks += 1;
                }
            }
        }
        if rng.gen_bool(0.5) {
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        }
        let _ = child.0.kill(); // SIGKILL
        let _ = child.0.wait();
        // Everything the helper printed before it died counts as acknowledged.
        let drain_deadline = Instant::now() + DEADLINE;
        loop {
            match rx.recv_timeout(drain_deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Line::Ack(i) = parse(&line) {
                        last_ack = Some(i);
                        acks += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("round {round}: helper's stdout never closed"),
            }
        }
        reader.join().expect("reader thread");
        drop(child);

        let start = start.unwrap();
        assert!(start >= durable, "round {round}: helper started from {start}, but {durable} was durable before");
        let acked = last_ack.unwrap_or(start);
        total_acked += acks as u64;

        let s = DiskStorage::open(&dir.0, &identity).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let k = s.state().round;
        assert!(k >= acked, "round {round}: batch {acked} was acknowledged, but only 1..={k} survived");
        // At most the batch in flight when the kill came can be there unacknowledged.
        assert!(k <= acked + 1, "round {round}: found {k}, acknowledged {acked}");
        assert!(s.state() == &expected(k), "round {round}: state is not the fold of batches 1..={k}");
        eprintln!("round {round}: acknowledged {acked}, found {k}, generation {}, {:?}", s.generation(), s.recovery());
        cut_compactions += s.recovery().wal_replaced as usize;
        durable = k;
    }
    assert!(total_acked > 0);
    eprintln!("{total_acked} batches acknowledged over {ROUNDS} kills; {cut_compactions} kills cut a compaction after its snapshot");
}
