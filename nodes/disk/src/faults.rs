//! Storage faults made on purpose, for chaos tests: what a damaged disk or a lost volume
//! leave in a node's data folder. Each works on a folder no process has open, and says
//! what it did in one line. (A torn write is made by the node itself,
//! [`Storage::tear_next_write`](ballot_core::Storage::tear_next_write): only a write in
//! progress at a crash can be torn, and nothing that depends on it was sent.)

use crate::format::{decode_wal_header, scan_records, RECORD_HEADER_LEN, WAL_HEADER_LEN};
use std::fs;
use std::io;
use std::path::Path;

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Offsets of the log's good records, and the bytes.
fn records(wal: &Path) -> io::Result<(Vec<usize>, Vec<u8>)> {
    let bytes = fs::read(wal)?;
    if bytes.len() < WAL_HEADER_LEN || decode_wal_header(&bytes).is_err() {
        return Ok((Vec::new(), bytes));
    }
    let scan = scan_records(&bytes, WAL_HEADER_LEN)
        .map_err(|b| other(format!("{}: already corrupt at offset {}", wal.display(), b.offset)))?;
    Ok((scan.records.into_iter().map(|(off, _)| off).collect(), bytes))
}

/// Flip a byte in the payload of a record that another follows (so it cannot pass for a
/// torn tail), or, with fewer than two records, in the log's header: the next open
/// refuses the folder, naming the file and the offset.
pub fn corrupt(dir: &Path) -> io::Result<String> {
    let wal = dir.join("wal");
    let (offs, mut bytes) = records(&wal)?;
    let at = match offs.as_slice() {
        [first, _, ..] => first + RECORD_HEADER_LEN,
        _ if bytes.len() > 8 => 8,
        _ => return Err(other(format!("{}: nothing to corrupt", wal.display()))),
    };
    bytes[at] ^= 0xFF;
    fs::write(&wal, &bytes)?;
    Ok(format!("{}: byte at offset {at} flipped", wal.display()))
}

/// Lose everything the folder holds: the node starts as new.
pub fn wipe(dir: &Path) -> io::Result<String> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(dir)?;
    Ok(format!("{}: wiped", dir.display()))
}
