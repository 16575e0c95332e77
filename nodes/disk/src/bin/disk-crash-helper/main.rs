//! Test helper for `tests/disk_crash.rs`: opens a `DiskStorage` and persists one batch per
//! sequence number in a loop, printing each number on stdout only after `persist` returned.
//! The test kills it with SIGKILL at random points and checks every printed number survived.
//!
//! Usage: `disk-crash-helper DIR COMPACT_THRESHOLD_BYTES MAX_PERSISTS [COMPACT_EVERY]`
//! With COMPACT_EVERY = n > 0, it also compacts after every n-th batch (before printing its
//! number), so that kills land in the middle of compactions too.
//! Prints `start K` (K = the last sequence number found on disk), then `K+1`, `K+2`, ...
//! Exits when MAX_PERSISTS batches are done or stdout is closed.

mod ops;

use ballot_core::{NodeId, Storage};
use ballot_disk::{DiskOptions, DiskStorage, Identity};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 && args.len() != 5 {
        eprintln!("usage: disk-crash-helper DIR COMPACT_THRESHOLD_BYTES MAX_PERSISTS [COMPACT_EVERY]");
        return ExitCode::from(2);
    }
    let dir = PathBuf::from(&args[1]);
    let every = args.get(4).map_or(Ok(0), |a| a.parse::<u64>());
    let (Ok(threshold), Ok(max), Ok(every)) = (args[2].parse::<u64>(), args[3].parse::<u64>(), every) else {
        eprintln!("disk-crash-helper: COMPACT_THRESHOLD_BYTES, MAX_PERSISTS and COMPACT_EVERY must be numbers");
        return ExitCode::from(2);
    };
    let identity = Identity { cluster_id: "crash-test".into(), node: NodeId::acceptor(1) };
    let mut storage = match DiskStorage::open_with(&dir, &identity, DiskOptions { compact_threshold: threshold }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("disk-crash-helper: {e}");
            return ExitCode::from(1);
        }
    };
    let start = storage.state().round;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "start {start}").and_then(|()| out.flush()).is_err() {
        return ExitCode::SUCCESS;
    }
    for i in start + 1..=start + max {
        if let Err(e) = storage.persist(&ops::ops_for(i)) {
            eprintln!("disk-crash-helper: {e}");
            return ExitCode::from(1);
        }
        if every > 0 && i % every == 0 {
            if let Err(e) = storage.compact() {
                eprintln!("disk-crash-helper: {e}");
                return ExitCode::from(1);
            }
        }
        // Acknowledge only now that the batch is durable.
        if writeln!(out, "{i}").and_then(|()| out.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}
