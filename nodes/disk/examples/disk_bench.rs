//! What one durable `persist` costs on this disk, and what group commit buys.
//!
//! `cargo run --release -p ballot-nodes --example disk_bench [DIR]`
//!
//! Prints the cost of a bare 4 KiB append + fdatasync, then, for batches of 1, 64 and 1024
//! accept ops (one vote each), the median and p99 time per `DiskStorage::persist` and the
//! ops/s it sustains. DIR (default: a fresh dir under the system temp dir) decides which
//! disk is measured. Compaction is left at its default (64 MiB), so a run includes a few.

use ballot_core::{Ballot, Command, NodeId, PersistOp, Storage, Value};
use ballot_disk::{DiskStorage, Identity};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each case runs until this much time or this many persists, whichever comes first.
const BUDGET: Duration = Duration::from_secs(3);
const MAX_PERSISTS: usize = 2000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ballot-disk-bench-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the bench dir");
    println!("dir: {}", dir.display());

    // A bare append + fdatasync: the floor.
    {
        let path = dir.join("raw");
        let mut f = std::fs::File::create(&path).expect("create");
        let block = vec![0xabu8; 4096];
        let mut t = Vec::new();
        let begin = Instant::now();
        while begin.elapsed() < BUDGET && t.len() < MAX_PERSISTS {
            let s = Instant::now();
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
            t.push(s.elapsed());
        }
        t.sort();
        println!(
            "raw 4 KiB append + fdatasync: median {:.0} us, p99 {:.0} us ({} syncs)",
            us(pct(&t, 0.5)),
            us(pct(&t, 0.99)),
            t.len()
        );
        let _ = std::fs::remove_file(&path);
    }

    println!(
        "{:>6} {:>10} {:>14} {:>12} {:>12} {:>12}",
        "batch", "persists", "bytes/record", "median us", "p99 us", "ops/s"
    );
    for batch in [1usize, 64, 1024] {
        let sub = dir.join(format!("batch-{batch}"));
        let identity = Identity { cluster_id: "bench".into(), node: NodeId::acceptor(1) };
        let mut s = DiskStorage::open(&sub, &identity).expect("open");
        let mut slot = 0u64;
        let mut t = Vec::new();
        let mut bytes = 0u64;
        let begin = Instant::now();
        while begin.elapsed() < BUDGET && t.len() < MAX_PERSISTS {
            let ops: Vec<PersistOp> = (0..batch)
                .map(|_| {
                    slot += 1;
                    let value: Value = Arc::new(vec![Command::Vote {
                        request_id: format!("req-{slot}"),
                        client: NodeId::client(1),
                        voter: format!("voter-{slot}"),
                        candidate: "alice".into(),
                    }]);
                    PersistOp::Accept { slot, ballot: Ballot::new(1, 1), value }
                })
                .collect();
            let before = s.wal_len();
            let st = Instant::now();
            s.persist(&ops).expect("persist");
            t.push(st.elapsed());
            if s.wal_len() > before {
                bytes = s.wal_len() - before;
            }
        }
        let total = begin.elapsed();
        let n = t.len();
        t.sort();
        println!(
            "{:>6} {:>10} {:>14} {:>12.0} {:>12.0} {:>12.0}",
            batch,
            n,
            bytes,
            us(pct(&t, 0.5)),
            us(pct(&t, 0.99)),
            (n * batch) as f64 / total.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
