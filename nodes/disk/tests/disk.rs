//! DiskStorage: round trips against the MemStorage oracle, torn tails, corruption, foreign
//! dirs, crash debris and interrupted compactions. (Kill -9 tests: `disk_crash.rs`.)

use ballot_core::{Ballot, Command, DurableState, MemStorage, NodeId, PersistOp, Storage, StorageError, Value};
use ballot_disk::{DiskOptions, DiskStorage, Identity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A fresh dir under cargo's test tmp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "disk-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copy the storage files of `from` into a new temp dir (the lock file is not copied).
fn copy_dir(from: &Path, tag: &str) -> TempDir {
    let to = TempDir::new(tag);
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name != "lock" {
            fs::copy(e.path(), to.path().join(name)).unwrap();
        }
    }
    to
}

fn id() -> Identity {
    Identity { cluster_id: "test-cluster".into(), node: NodeId::acceptor(1) }
}

fn open(dir: &Path) -> Result<DiskStorage, StorageError> {
    DiskStorage::open(dir, &id())
}

fn open_small(dir: &Path, threshold: u64) -> Result<DiskStorage, StorageError> {
    DiskStorage::open_with(dir, &id(), DiskOptions { compact_threshold: threshold })
}

fn value(rng: &mut ChaCha8Rng) -> Value {
    let n = rng.gen_range(0..4);
    Arc::new(
        (0..n)
            .map(|k| {
                if rng.gen_bool(0.8) {
                    Command::Vote {
                        request_id: format!("req-{}-{k}", rng.gen::<u32>()),
                        client: NodeId::client(rng.gen_range(1..4)),
                        voter: format!("voter-{}", rng.gen_range(0..1000)),
                        candidate: ["alice", "bob", "carol"][rng.gen_range(0..3)].into(),
                    }
                } else {
                    Command::Read { request_id: format!("read-{}", rng.gen::<u32>()), client: NodeId::client(1) }
                }
            })
            .collect(),
    )
}

fn ballot(rng: &mut ChaCha8Rng) -> Ballot {
    Ballot::new(rng.gen_range(0..50), rng.gen_range(1..4))
}

fn random_op(rng: &mut ChaCha8Rng, applied: u64) -> PersistOp {
    match rng.gen_range(0..4) {
        0 => PersistOp::Promise(ballot(rng)),
        1 => PersistOp::Accept { slot: rng.gen_range(1..200), ballot: ballot(rng), value: value(rng) },
        2 => PersistOp::Round(rng.gen_range(0..100)),
        // Mostly the next slot, sometimes a repeat or a gap (which the fold ignores).
        _ => PersistOp::Apply { slot: (applied + rng.gen_range(0..3)).max(1), value: value(rng) },
    }
}

fn is_corrupt_in(e: &StorageError, file: &str) -> bool {
    matches!(e, StorageError::Corrupt { path, .. } if Path::new(path).file_name().is_some_and(|n| n == file))
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x5a;
    fs::write(path, b).unwrap();
}

fn sample_ops() -> Vec<PersistOp> {
    let v: Value = Arc::new(vec![Command::Vote {
        request_id: "r1".into(),
        client: NodeId::client(1),
        voter: "v1".into(),
        candidate: "alice".into(),
    }]);
    let empty: Value = Arc::new(vec![]);
    vec![
        PersistOp::Promise(Ballot::new(2, 1)),
        PersistOp::Accept { slot: 3, ballot: Ballot::new(3, 2), value: v.clone() },
        PersistOp::Round(4),
        PersistOp::Apply { slot: 1, value: v },
        PersistOp::Apply { slot: 2, value: empty },
    ]
}

#[test]
fn every_op_kind_round_trips() {
    let d = TempDir::new("kinds");
    let mut mem = MemStorage::new();
    {
        let mut s = open(d.path()).unwrap();
        assert!(s.recovery().initialised);
        assert_eq!(s.load().unwrap(), DurableState::default());
        for op in sample_ops() {
            s.persist(std::slice::from_ref(&op)).unwrap();
            mem.persist(&[op]).unwrap();
        }
    }
    let mut s = open(d.path()).unwrap();
    assert!(!s.recovery().initialised);
    assert_eq!(s.recovery().records_replayed, 5);
    assert_eq!(s.load().unwrap(), mem.load().unwrap());
    assert_eq!(s.load().unwrap().applied.len(), 2);
}

#[test]
fn random_sequences_match_mem_storage() {
    for seed in 0..24u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = TempDir::new("random");
        // Half the seeds compact often, so reopen goes through snapshot + log.
        let threshold = if seed % 2 == 0 { 2048 } else { 1 << 30 };
        let mut mem = MemStorage::new();
        let mut s = open_small(d.path(), threshold).unwrap();
        for _ in 0..rng.gen_range(20..120) {
            let applied = mem.snapshot().applied.len() as u64;
            let n = rng.gen_range(0..6);
            let batch: Vec<PersistOp> = (0..n).map(|_| random_op(&mut rng, applied + 1)).collect();
            s.persist(&batch).unwrap();
            mem.persist(&batch).unwrap();
            assert_eq!(s.state(), &mem.snapshot(), "seed {seed}: in-memory state");
            if rng.gen_bool(0.1) {
                drop(s);
                s = open_small(d.path(), threshold).unwrap();
                assert_eq!(s.load().unwrap(), mem.snapshot(), "seed {seed}: after a reopen");
            }
        }
        drop(s);
        let mut s = open(d.path()).unwrap();
        assert_eq!(s.load().unwrap(), mem.snapshot(), "seed {seed}: final reopen");
        if seed % 2 == 0 {
            assert!(s.generation() > 0, "seed {seed}: compaction should have run");
        }
    }
}

/// Build a dir with `n` single-batch records; return the state before the last record and
/// the wal length before and after it.
fn build(dir: &Path, n: u64, compact_first: bool) -> (DurableState, u64, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let mut s = open(dir).unwrap();
    let mut before = DurableState::default();
    let mut start = s.wal_len();
    for i in 0..n {
        if compact_first && i == n / 2 {
            s.compact().unwrap();
        }
        before = s.state().clone();
        start = s.wal_len();
        let ops: Vec<PersistOp> = (0..3).map(|_| random_op(&mut rng, before.applied.len() as u64 + 1)).collect();
        s.persist(&ops).unwrap();
    }
    (before, start, s.wal_len())
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    for compact_first in [false, true] {
        let d = TempDir::new("torn");
        let (before, start, end) = build(d.path(), 6, compact_first);
        let full = open(d.path()).unwrap().state().clone();
        for cut in start..end {
            let c = copy_dir(d.path(), "torn-cut");
            let wal = c.path().join("wal");
            fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(cut).unwrap();
            let mut s = open(c.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(s.load().unwrap(), before, "cut at {cut}");
            assert_eq!(s.recovery().torn_tail.is_some(), cut > start, "cut at {cut}");
            assert_eq!(
                fs::metadata(&wal).unwrap().len(),
                start,
                "cut at {cut}: file truncated to the last good record"
            );
            // The log goes on cleanly after the repair.
            s.persist(&[PersistOp::Round(999)]).unwrap();
            drop(s);
            let mut s = open(c.path()).unwrap();
            let mut want = before.clone();
            want.apply(&PersistOp::Round(999));
            assert_eq!(s.load().unwrap(), want, "cut at {cut}: after repair and one more record");
        }
        assert_ne!(before, full);
    }
}

#[test]
fn damaged_last_record_and_zero_filled_tail_are_torn() {
    let d = TempDir::new("tail");
    let (before, start, end) = build(d.path(), 4, false);
    let full = open(d.path()).unwrap().state().clone();
    // A byte flipped inside the last record: indistinguishable from a torn append.
    for at in start..end {
        let c = copy_dir(d.path(), "tail-flip");
        flip(&c.path().join("wal"), at as usize);
        let s = open(c.path()).unwrap_or_else(|e| panic!("flip at {at}: {e}"));
        assert_eq!(s.state(), &before, "flip at {at}");
    }
    // Zeros after the last record (a file extended by the crash but never written).
    for zeros in [1usize, 11, 12, 13, 4096] {
        let c = copy_dir(d.path(), "tail-zero");
        let wal = c.path().join("wal");
        let mut b = fs::read(&wal).unwrap();
        b.extend(vec![0u8; zeros]);
        fs::write(&wal, b).unwrap();
        let s = open(c.path()).unwrap_or_else(|e| panic!("{zeros} zeros: {e}"));
        assert_eq!(s.state(), &full, "{zeros} zeros");
        assert_eq!(fs::metadata(&wal).unwrap().len(), end);
    }
}

#[test]
fn damage_before_the_last_record_is_corrupt_with_its_offset() {
    let d = TempDir::new("mid");
    let (_, last_start, _) = build(d.path(), 5, false);
    // Every byte of the log header and of every record but the last.
    for at in 0..last_start as usize {
        let c = copy_dir(d.path(), "mid-flip");
        flip(&c.path().join("wal"), at);
        let e = open(c.path()).err().unwrap_or_else(|| panic!("flip at {at} was accepted"));
        assert!(is_corrupt_in(&e, "wal"), "flip at {at}: {e}");
        assert!(e.to_string().contains("offset"), "flip at {at}: {e}");
    }
    // A length made huge in the middle is caught by the header checksum, not read as a
    // torn tail that would swallow the records behind it.
    let c = copy_dir(d.path(), "mid-len");
    flip(&c.path().join("wal"), 24 + 3);
    let e = open(c.path()).err().unwrap();
    assert!(e.to_string().contains("offset 24"), "{e}");
    // Garbage appended after good records (not zeros, holding a valid-looking record
    // later) is corruption too.
    let c = copy_dir(d.path(), "mid-garbage");
    let wal = c.path().join("wal");
    let mut b = fs::read(&wal).unwrap();
    let first_record = b[24..last_start as usize].to_vec();
    b.extend_from_slice(b"garbage!");
    b.extend_from_slice(&first_record);
    fs::write(&wal, b).unwrap();
    let e = open(c.path()).err().unwrap();
    assert!(is_corrupt_in(&e, "wal"), "{e}");
}

#[test]
fn damaged_snapshot_or_meta_is_corrupt() {
    let d = TempDir::new("snap");
    {
        let mut s = open(d.path()).unwrap();
        s.persist(&sample_ops()).unwrap();
        s.compact().unwrap();
        s.persist(&[PersistOp::Round(7)]).unwrap();
    }
    for file in ["snapshot", "meta"] {
        let len = fs::metadata(d.path().join(file)).unwrap().len() as usize;
        for at in 0..len {
            let c = copy_dir(d.path(), "snap-flip");
            flip(&c.path().join(file), at);
            let e = open(c.path()).err().unwrap_or_else(|| panic!("{file}: flip at {at} was accepted"));
            assert!(is_corrupt_in(&e, file), "{file} flip at {at}: {e}");
        }
        for cut in [0, 1, len / 2, len - 1] {
            let c = copy_dir(d.path(), "snap-cut");
            fs::OpenOptions::new().write(true).open(c.path().join(file)).unwrap().set_len(cut as u64).unwrap();
            let e = open(c.path()).err().unwrap_or_else(|| panic!("{file}: cut at {cut} was accepted"));
            assert!(is_corrupt_in(&e, file), "{file} cut at {cut}: {e}");
        }
    }
    // A lost snapshot: the log of a newer generation is refused, not replayed alone.
    let c = copy_dir(d.path(), "snap-lost");
    fs::remove_file(c.path().join("snapshot")).unwrap();
    let e = open(c.path()).err().unwrap();
    assert!(is_corrupt_in(&e, "wal") && e.to_string().contains("generation"), "{e}");
    // A lost log.
    let c = copy_dir(d.path(), "wal-lost");
    fs::remove_file(c.path().join("wal")).unwrap();
    let e = open(c.path()).err().unwrap();
    assert!(is_corrupt_in(&e, "wal") && e.to_string().contains("missing"), "{e}");
}

#[test]
fn a_foreign_dir_is_refused() {
    let d = TempDir::new("foreign");
    open(d.path()).unwrap().persist(&[PersistOp::Round(1)]).unwrap();
    for other in [
        Identity { cluster_id: "other-cluster".into(), node: NodeId::acceptor(1) },
        Identity { cluster_id: "test-cluster".into(), node: NodeId::acceptor(2) },
    ] {
        let e = DiskStorage::open(d.path(), &other).err().unwrap();
        let msg = e.to_string();
        assert!(is_corrupt_in(&e, "meta"), "{msg}");
        assert!(msg.contains("belongs to cluster 'test-cluster' node acceptor-1"), "{msg}");
        assert!(msg.contains("own data dir"), "says what to do: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    // And the owner still opens it.
    assert_eq!(open(d.path()).unwrap().state().round, 1);
}

#[test]
fn crash_debris_does_not_stop_a_start() {
    // Zero-length files where a crash in the middle of a write could leave them.
    let d = TempDir::new("debris");
    for f in ["meta.tmp", "wal.tmp", "snapshot.tmp"] {
        fs::write(d.path().join(f), b"").unwrap();
    }
    open(d.path()).unwrap().persist(&sample_ops()).unwrap();
    let mut want = DurableState::default();
    sample_ops().iter().for_each(|op| want.apply(op));
    // Half-written temp files of an interrupted compaction are ignored and removed.
    fs::write(d.path().join("snapshot.tmp"), b"BALLOT-S\x01\x02").unwrap();
    fs::write(d.path().join("wal.tmp"), b"BALLOT-W").unwrap();
    assert_eq!(open(d.path()).unwrap().state(), &want);
    assert!(!d.path().join("snapshot.tmp").exists() && !d.path().join("wal.tmp").exists());

    // A zero-length log (and one with half a header) next to a good meta.
    for len in [0u64, 10] {
        let d = TempDir::new("debris-wal");
        drop(open(d.path()).unwrap());
        fs::OpenOptions::new().write(true).open(d.path().join("wal")).unwrap().set_len(len).unwrap();
        let mut s = open(d.path()).unwrap();
        assert!(s.recovery().wal_replaced);
        s.persist(&[PersistOp::Round(3)]).unwrap();
        drop(s);
        assert_eq!(open(d.path()).unwrap().state().round, 3);
    }

    // A zero-length or missing meta before anything was stored: initialised again.
    let d = TempDir::new("debris-meta");
    drop(open(d.path()).unwrap());
    fs::write(d.path().join("meta"), b"").unwrap();
    assert!(open(d.path()).unwrap().recovery().initialised);
    fs::remove_file(d.path().join("meta")).unwrap();
    assert!(open(d.path()).unwrap().recovery().initialised);
    // ... but not once data is stored: that is refused, with what to do.
    open(d.path()).unwrap().persist(&[PersistOp::Round(1)]).unwrap();
    fs::write(d.path().join("meta"), b"").unwrap();
    let e = open(d.path()).err().unwrap();
    assert!(is_corrupt_in(&e, "meta") && e.to_string().contains("move the dir away"), "{e}");
}

/// Every state a crash can leave in the middle of a compaction loads the right state.
#[test]
fn interrupted_compaction_loads_the_right_state() {
    let d = TempDir::new("compact");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut s = open(d.path()).unwrap();
    for _ in 0..10 {
        let applied = s.state().applied.len() as u64;
        s.persist(&[random_op(&mut rng, applied + 1), random_op(&mut rng, applied + 1)]).unwrap();
    }
    let want = s.state().clone();
    drop(s);
    let before = copy_dir(d.path(), "compact-before");
    let mut s = open(d.path()).unwrap();
    s.compact().unwrap();
    drop(s);
    let after = d.path();

    // Step 1 cut: a partial snapshot.tmp, old snapshot (none) and old log.
    let c = copy_dir(before.path(), "c1");
    let snap = fs::read(after.join("snapshot")).unwrap();
    fs::write(c.path().join("snapshot.tmp"), &snap[..snap.len() / 2]).unwrap();
    assert_eq!(open(c.path()).unwrap().state(), &want);
    // Step 2 done, step 3 not: new snapshot, old log (older generation).
    let c = copy_dir(before.path(), "c2");
    fs::copy(after.join("snapshot"), c.path().join("snapshot")).unwrap();
    let s = open(c.path()).unwrap();
    assert_eq!(s.state(), &want);
    assert!(s.recovery().wal_replaced);
    drop(s);
    assert_eq!(open(c.path()).unwrap().state(), &want, "and again after the repair");
    // Step 3 cut: new snapshot, old log, partial wal.tmp.
    let c = copy_dir(before.path(), "c3");
    fs::copy(after.join("snapshot"), c.path().join("snapshot")).unwrap();
    fs::write(c.path().join("wal.tmp"), b"BALL").unwrap();
    assert_eq!(open(c.path()).unwrap().state(), &want);
    // All done.
    let s = open(after).unwrap();
    assert_eq!(s.state(), &want);
    assert_eq!(s.recovery().snapshot_gen, Some(1));
    assert_eq!(s.recovery().records_replayed, 0);
}

#[test]
fn one_dir_one_process() {
    let d = TempDir::new("lock");
    let _s = open(d.path()).unwrap();
    let e = open(d.path()).err().unwrap();
    assert!(e.to_string().contains("another process"), "{e}");
}

#[test]
fn empty_batches_write_nothing() {
    let d = TempDir::new("empty");
    let mut s = open(d.path()).unwrap();
    let len = s.wal_len();
    s.persist(&[]).unwrap();
    assert_eq!(s.wal_len(), len);
}

/// The chaos faults: a torn write fails, and the next open discards its half record and
/// keeps everything before; a corrupted record is refused naming the file and offset; a
/// wiped folder opens as new.
#[test]
fn chaos_faults_torn_write_corrupt_record_and_wipe() {
    let d = TempDir::new("faults");
    {
        let mut s = open(d.path()).unwrap();
        s.persist(&[PersistOp::Round(1)]).unwrap();
        s.persist(&[PersistOp::Round(2)]).unwrap();
        s.tear_next_write();
        assert!(s.persist(&[PersistOp::Round(3)]).is_err(), "a torn write fails");
        assert!(s.persist(&[PersistOp::Round(4)]).is_err(), "and the storage stops");
    }
    {
        let mut s = open(d.path()).unwrap();
        assert!(s.recovery().torn_tail.is_some(), "{:?}", s.recovery());
        assert_eq!(s.load().unwrap().round, 2);
    }
    let what = ballot_disk::faults::corrupt(d.path()).unwrap();
    let e = open(d.path()).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("wal") && e.contains("offset"), "{what}: {e}");
    ballot_disk::faults::wipe(d.path()).unwrap();
    let mut s = open(d.path()).unwrap();
    assert!(s.recovery().initialised);
    assert_eq!(s.load().unwrap(), DurableState::default());
}
