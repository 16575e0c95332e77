//! Durable storage on local disk: a checksummed append-only log with snapshots.
//!
//! [`DiskStorage`] implements [`Storage`]: every `persist` call appends one record to the
//! log and syncs once (group commit), and returns only when the record is durable.
//!
//! # Files in the storage dir
//! - `lock`: empty; held with `flock` while a `DiskStorage` is open, so two processes never
//!   write one dir.
//! - `meta`: `["BALLOT-M"][u32 len][u32 crc32(payload)][payload]`, payload = rmp-serde of
//!   `{format, {cluster_id, node}}`. Written once, atomically, when the dir is initialised;
//!   every open checks it names this cluster and node.
//! - `snapshot` (once the log has been compacted): `["BALLOT-S"][u32 len][u32 crc][payload]`,
//!   payload = rmp-serde of `{format, wal_gen, DurableState}`. Always replaced atomically.
//! - `wal`: a 24-byte header `["BALLOT-W"][u32 format][u64 gen][u32 crc32 of the 16 bytes
//!   before]`, then records `[u32 len][u32 crc32(payload)][u32 crc32(the 8 bytes before)]
//!   [payload]`, payload = rmp-serde of the `Vec<PersistOp>` of one `persist` call.
//!   All integers are little-endian; crc32 is the IEEE polynomial (`crc32fast`).
//!   The header's own checksum means a damaged length is caught and never read as a torn
//!   tail that would silently swallow the records after it.
//! - `*.tmp`: half of an atomic replacement; deleted at open.
//!
//! # What load gives
//! The snapshot's state (or the default state), then every record of the log in order,
//! each folded in with [`DurableState::apply`] — the same fold `MemStorage` does.
//! A log whose `gen` is older than the snapshot's `wal_gen` is wholly contained in the
//! snapshot and is ignored (then replaced by an empty log of the right generation).
//!
//! # Torn tails and corruption
//! An append cut by a crash can leave, after the last good record, only: fewer bytes than
//! a header; a good header whose payload runs past the end; a whole last record whose
//! payload checksum fails exactly at the end of the file; or bytes with no valid record in
//! them (half-written or zero-filled pages). Such a tail never held an acknowledged batch
//! (`persist` returns only after the sync that made the whole record durable), so open
//! discards it, truncates the file to the last good record and syncs. Everything else —
//! a bad record with more data after it, a bad header followed by a valid record, a record
//! whose checksum holds but whose payload does not decode, a bad log header, a bad or
//! truncated snapshot or meta, a log newer than the snapshot, a missing log — is
//! [`StorageError::Corrupt`] naming the file and the offset: never silent loss, never a
//! panic. (One limit: damage to the last record alone looks exactly like a torn append
//! and is discarded; that record's batch may have been acknowledged.)
//!
//! # Crash safety, step by step
//! Initialisation (no `meta`, or an empty one): write an empty log of generation 0
//! (`wal.tmp`, sync, rename, sync dir), then `meta` the same way, then sync the parent dir
//! (the storage dir may be new). `meta` is the "done" mark. Crash before `meta` is durable: the next open finds no meta, sees that no data
//! was ever stored (no snapshot, no record in the log) and initialises again. A missing or
//! empty `meta` in a dir that holds data is refused, not re-initialised.
//!
//! Append (`persist`): one `write` of the record, one `fdatasync`. A crash before the sync
//! returns leaves the old log plus possibly a torn tail (see above). If the write or sync
//! fails, the storage refuses every later call: after a failed `fsync` the kernel may have
//! dropped the dirty pages, so nothing more may be appended behind a record of unknown
//! fate. Reopen (restart the node) to recover from the file.
//!
//! Compaction, when the log exceeds `max(compact_threshold, size of the last snapshot)`
//! after an append (the second term bounds the write amplification of a large state):
//! 1. write `snapshot.tmp` = the current state with `wal_gen = g + 1`, sync it;
//! 2. rename it over `snapshot`, sync the dir;
//! 3. write `wal.tmp` = an empty log of generation `g + 1`, sync it;
//! 4. rename it over `wal`, sync the dir; appends go to the new log from here on.
//!
//! A crash at each point, and what the next open finds:
//! - during/after 1, before 2: old snapshot (gen `g`, or none and `g = 0`) + old log (gen
//!   `g`, complete): right state. `snapshot.tmp` is deleted.
//! - after the rename of 2 (durable or not): `rename` is atomic, so `snapshot` is either
//!   the old one (as above) or the new one, whole, with `wal_gen = g + 1`; the old log
//!   (gen `g`) is then older than the snapshot, which already holds every record of it,
//!   so it is ignored and replaced by an empty log of gen `g + 1`.
//! - during/after 3, before 4: same, and `wal.tmp` is deleted.
//! - after the rename of 4: `wal` is the old log (ignored, as above) or the new empty one
//!   (gen `g + 1` = snapshot's): right state either way.
//! - a log of a newer generation than the snapshot cannot arise from these steps (a log of
//!   gen `g + 1` is only written after the snapshot of gen `g + 1` is durable): it means a
//!   lost or replaced snapshot, and is refused.
//!
//! If any step fails with an I/O error, the storage refuses later calls as for a failed
//! append (after step 2, appends to the old log would be ignored at the next open).
//!
//! Truncating a torn tail at open is itself crash-safe: it is repeated at the next open.
//!
//! # Cost
//! One `fdatasync` per `persist` (about 4 ms on this project's disks, whatever the size),
//! plus four syncs and a full snapshot write per compaction. See `examples/disk_bench.rs`.

//!
//! # Layout
//! - [`DiskStorage`] (this file): open and recovery, append, compaction.
//! - `format`: the bytes on disk: meta, log header and records, snapshot, checksums.
//! - `fsutil`: atomic replace, directory sync, the dir lock.
//! - [`faults`]: damage done on purpose to a stopped node's folder, for chaos tests.

#![warn(missing_docs, unreachable_pub)]

pub mod faults;
mod format;
mod fsutil;

pub use format::{Identity, FORMAT_VERSION};

use ballot_core::{DurableState, PersistOp, Storage, StorageError};
use format::*;
use fsutil::*;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Compact the log once it is larger than this (and than the last snapshot).
pub const DEFAULT_COMPACT_THRESHOLD: u64 = 64 * 1024 * 1024;

/// Tuning for [`DiskStorage::open_with`].
#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// Log size in bytes past which an append triggers a snapshot and a fresh log.
    pub compact_threshold: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions { compact_threshold: DEFAULT_COMPACT_THRESHOLD }
    }
}

/// What open found and did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The dir was new (or an interrupted initialisation) and has been initialised.
    pub initialised: bool,
    /// A snapshot was loaded; its log generation.
    pub snapshot_gen: Option<u64>,
    /// Log records replayed on top of the snapshot.
    pub records_replayed: u64,
    /// Bytes of a torn tail cut off the log, and why they were judged torn.
    pub torn_tail: Option<(u64, String)>,
    /// The log was older than the snapshot (a crash in the middle of a compaction) or had
    /// no complete header (crash debris), and was replaced by an empty one.
    pub wal_replaced: bool,
}

/// Node storage on local disk. See the [module docs](self) for the format and why it is
/// crash-safe.
#[derive(Debug)]
pub struct DiskStorage {
    dir: PathBuf,
    wal_path: PathBuf,
    snapshot_path: PathBuf,
    wal: File,
    wal_len: u64,
    gen: u64,
    snapshot_len: u64,
    state: DurableState,
    opts: DiskOptions,
    recovery: Recovery,
    /// Set after a failed write, sync or compaction: every later call fails with it.
    failed: Option<String>,
    /// Set by `tear_next_write` (a chaos fault): the next append writes half its record.
    tear_next: bool,
    _lock: DirLock,
}

impl DiskStorage {
    /// Open (or initialise) the storage in `dir` for `identity`, with default options.
    pub fn open(dir: &Path, identity: &Identity) -> Result<DiskStorage, StorageError> {
        Self::open_with(dir, identity, DiskOptions::default())
    }

    /// Open (or initialise) the storage in `dir` for `identity`: check who the dir belongs
    /// to, load the snapshot, replay the log and cut a torn tail (see the crate docs).
    pub fn open_with(dir: &Path, identity: &Identity, opts: DiskOptions) -> Result<DiskStorage, StorageError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(&dir.join("lock"))?;
        let paths = Paths { meta: dir.join("meta"), wal: dir.join("wal"), snapshot: dir.join("snapshot") };
        for p in [&paths.meta, &paths.wal, &paths.snapshot] {
            remove_if_exists(&tmp_path(p))?;
        }
        let mut recovery = Recovery::default();

        let meta = read_opt(&paths.meta)?;
        let snapshot = read_opt(&paths.snapshot)?;
        let wal = read_opt(&paths.wal)?;

        match meta.as_deref() {
            None | Some([]) => {
                let what = if meta.is_none() { "missing" } else { "empty" };
                let wal = initialise(dir, identity, &paths, what, snapshot.is_some(), wal.as_deref())?;
                recovery.initialised = true;
                return Ok(DiskStorage {
                    dir: dir.to_path_buf(),
                    wal_path: paths.wal,
                    snapshot_path: paths.snapshot,
                    wal,
                    wal_len: WAL_HEADER_LEN as u64,
                    gen: 0,
                    snapshot_len: 0,
                    state: DurableState::default(),
                    opts,
                    recovery,
                    failed: None,
                    tear_next: false,
                    _lock: lock,
                });
            }
            Some(bytes) => check_meta(&paths.meta, bytes, identity)?,
        }

        let (gen, mut state, snapshot_len) = match &snapshot {
            None => (0, DurableState::default(), 0),
            Some(b) => {
                let body = decode_snapshot(b).map_err(|e| corrupt(&paths.snapshot, e))?;
                recovery.snapshot_gen = Some(body.wal_gen);
                (body.wal_gen, body.state, b.len() as u64)
            }
        };

        let Some(wal_bytes) = wal else {
            return Err(corrupt(
                &paths.wal,
                "missing although meta exists: restore it from a backup, or move the dir away to start this node empty",
            ));
        };
        let (wal, wal_len) = open_wal(dir, &paths.wal, &wal_bytes, gen, &mut state, &mut recovery)?;
        let mut s = DiskStorage {
            dir: dir.to_path_buf(),
            wal_path: paths.wal,
            snapshot_path: paths.snapshot,
            wal,
            wal_len,
            gen,
            snapshot_len,
            state,
            opts,
            recovery,
            failed: None,
            tear_next: false,
            _lock: lock,
        };
        s.wal.seek(SeekFrom::Start(s.wal_len)).map_err(io_err(&s.wal_path))?;
        Ok(s)
    }

    /// The storage dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durable state: what a reopen would load.
    pub fn state(&self) -> &DurableState {
        &self.state
    }

    /// What open found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Current log size in bytes (header included).
    pub fn wal_len(&self) -> u64 {
        self.wal_len
    }

    /// Current log generation (the number of compactions so far).
    pub fn generation(&self) -> u64 {
        self.gen
    }

    fn check_failed(&self) -> Result<(), StorageError> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(StorageError::Io {
                path: self.wal_path.display().to_string(),
                source: io::Error::other(format!(
                    "storage stopped after an earlier failure ({why}); reopen it (restart the node)"
                )),
            }),
        }
    }

    fn fail(&mut self, e: StorageError) -> StorageError {
        self.failed = Some(e.to_string());
        e
    }

    /// Write a snapshot of the current state and start a fresh log now.
    pub fn compact(&mut self) -> Result<(), StorageError> {
        self.check_failed()?;
        self.compact_inner().map_err(|e| self.fail(e))
    }

    fn compact_inner(&mut self) -> Result<(), StorageError> {
        let next = self.gen + 1;
        let snap = encode_snapshot(next, &self.state).map_err(|e| corrupt(&self.snapshot_path, e))?;
        write_atomic(&self.dir, &self.snapshot_path, &snap)?;
        self.snapshot_len = snap.len() as u64;
        let mut wal = write_atomic(&self.dir, &self.wal_path, &wal_header(next))?;
        wal.seek(SeekFrom::Start(WAL_HEADER_LEN as u64)).map_err(io_err(&self.wal_path))?;
        self.wal = wal;
        self.wal_len = WAL_HEADER_LEN as u64;
        self.gen = next;
        tracing::debug!(dir = %self.dir.display(), gen = next, snapshot_bytes = snap.len(), "compacted the log");
        Ok(())
    }

    fn append(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        let rec = encode_record(ops).map_err(|e| StorageError::Io {
            path: self.wal_path.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        if std::mem::take(&mut self.tear_next) {
            // A crash in the middle of this write: half the record reaches the disk.
            let half = &rec[..rec.len() / 2];
            let _ = self.wal.write_all(half).and_then(|()| self.wal.sync_data());
            let e = io::Error::other("the write was torn by a crash in the middle of it (a chaos fault)");
            return Err(self.fail(io_err(&self.wal_path)(e)));
        }
        let r = self.wal.write_all(&rec).and_then(|()| self.wal.sync_data());
        if let Err(e) = r {
            // Best effort: take the partial record back. The storage refuses further
            // calls anyway (see the module docs).
            let _ = self.wal.set_len(self.wal_len);
            return Err(self.fail(io_err(&self.wal_path)(e)));
        }
        self.wal_len += rec.len() as u64;
        Ok(())
    }
}

impl Storage for DiskStorage {
    fn load(&mut self) -> Result<DurableState, StorageError> {
        self.check_failed()?;
        Ok(self.state.clone())
    }

    fn persist(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        self.check_failed()?;
        if ops.is_empty() {
            return Ok(());
        }
        self.append(ops)?;
        for op in ops {
            self.state.apply(op);
        }
        if self.wal_len > self.opts.compact_threshold.max(self.snapshot_len) {
            self.compact()?;
        }
        Ok(())
    }

    fn tear_next_write(&mut self) {
        self.tear_next = true;
    }
}

/// The files of a storage dir.
struct Paths {
    meta: PathBuf,
    wal: PathBuf,
    snapshot: PathBuf,
}

/// A dir without meta (`what`: missing or empty): refused if it holds state, else
/// initialised with an empty log and this node's meta. Returns the log file.
fn initialise(
    dir: &Path,
    identity: &Identity,
    paths: &Paths,
    what: &str,
    has_snapshot: bool,
    wal: Option<&[u8]>,
) -> Result<File, StorageError> {
    if has_snapshot {
        return Err(corrupt(&paths.meta, format!(
            "{what}, but the dir holds a snapshot: restore meta from a backup, or move the dir away to start this node empty"
        )));
    }
    if wal.is_some_and(|w| w.len() > WAL_HEADER_LEN) {
        return Err(corrupt(&paths.meta, format!(
            "{what}, but the dir holds a log with records: restore meta from a backup, or move the dir away to start this node empty"
        )));
    }
    // Never initialised, or a crash during initialisation: nothing was stored.
    let wal = write_atomic(dir, &paths.wal, &wal_header(0))?;
    write_atomic(dir, &paths.meta, &encode_meta(identity).map_err(|e| corrupt(&paths.meta, e))?)?;
    // The dir itself may be new: make its entry in the parent durable too.
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
        _ => sync_dir(Path::new("."))?,
    }
    Ok(wal)
}

/// Refuse a dir whose meta is unreadable, of another storage format, or another node's.
fn check_meta(meta_path: &Path, bytes: &[u8], identity: &Identity) -> Result<(), StorageError> {
    let m = decode_meta(bytes).map_err(|e| {
        corrupt(meta_path, format!("{e}; restore it from a backup, or move the dir away to start this node empty"))
    })?;
    if m.format != FORMAT_VERSION {
        return Err(corrupt(
            meta_path,
            format!(
                "written in storage format {}, this build reads format {FORMAT_VERSION}: run a build that reads it",
                m.format
            ),
        ));
    }
    if m.identity != *identity {
        return Err(corrupt(meta_path, format!(
            "this dir belongs to cluster '{}' node {}, not cluster '{}' node {}: give each node its own data dir, or move this one away to start empty",
            m.identity.cluster_id, m.identity.node, identity.cluster_id, identity.node
        )));
    }
    Ok(())
}

/// The log of generation `gen`: replayed onto `state`, its torn tail cut; replaced by an
/// empty one if it has no complete header or is older than the snapshot. Returns the file
/// and its good length.
fn open_wal(
    dir: &Path,
    wal_path: &Path,
    wal_bytes: &[u8],
    gen: u64,
    state: &mut DurableState,
    recovery: &mut Recovery,
) -> Result<(File, u64), StorageError> {
    if wal_bytes.len() < WAL_HEADER_LEN {
        // No complete header, so no record: debris of a non-atomic copy or a crash of
        // a tool that wrote it in place. Nothing in it can have been acknowledged.
        recovery.wal_replaced = true;
        return Ok((write_atomic(dir, wal_path, &wal_header(gen))?, WAL_HEADER_LEN as u64));
    }
    let wal_gen = decode_wal_header(wal_bytes).map_err(|e| corrupt(wal_path, e))?;
    if wal_gen < gen {
        // A compaction was cut after its snapshot became durable.
        recovery.wal_replaced = true;
        return Ok((write_atomic(dir, wal_path, &wal_header(gen))?, WAL_HEADER_LEN as u64));
    }
    if wal_gen > gen {
        return Err(corrupt(wal_path, format!(
            "offset 12: log generation {wal_gen} is newer than the snapshot's ({gen}): the snapshot was lost or replaced; restore it from a backup"
        )));
    }
    let scan = scan_records(wal_bytes, WAL_HEADER_LEN)
        .map_err(|b| corrupt(wal_path, format!("offset {}: {}", b.offset, b.detail)))?;
    for (_, ops) in &scan.records {
        for op in ops {
            state.apply(op);
        }
    }
    recovery.records_replayed = scan.records.len() as u64;
    let f = OpenOptions::new().read(true).write(true).open(wal_path).map_err(io_err(wal_path))?;
    if let Some(why) = scan.torn {
        let cut = (wal_bytes.len() - scan.good_end) as u64;
        tracing::warn!(path = %wal_path.display(), offset = scan.good_end, bytes = cut, "discarding a torn log tail: {why}");
        f.set_len(scan.good_end as u64).map_err(io_err(wal_path))?;
        f.sync_all().map_err(io_err(wal_path))?;
        recovery.torn_tail = Some((cut, why));
    }
    Ok((f, scan.good_end as u64))
}
