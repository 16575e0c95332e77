//! Byte layout of the three files, and the pure functions that encode and check them.
//! Nothing here touches the file system, so every decoder can be fed any bytes: none of
//! them panics, and each says exactly what is wrong and where.

use ballot_core::{DurableState, NodeId, PersistOp};
use serde::{Deserialize, Serialize};

/// Version of the on-disk format. Bumped on any incompatible change; a node refuses a dir
/// written in a version it does not know.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) const META_MAGIC: &[u8; 8] = b"BALLOT-M";
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"BALLOT-S";
pub(crate) const WAL_MAGIC: &[u8; 8] = b"BALLOT-W";

/// `[magic 8][u32 format][u64 generation][u32 crc32 of the 16 bytes before]`.
pub(crate) const WAL_HEADER_LEN: usize = 24;
/// `[u32 len][u32 crc32(payload)][u32 crc32(the 8 bytes before)]`.
pub(crate) const RECORD_HEADER_LEN: usize = 12;
/// `[magic 8][u32 len][u32 crc32(payload)]` in front of the meta and snapshot payloads.
pub(crate) const BLOB_HEADER_LEN: usize = 16;

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// Who a storage dir belongs to: written once into `meta`, checked at every open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The cluster the node belongs to (`--cluster-id`).
    pub cluster_id: String,
    /// The node whose state the dir holds.
    pub node: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub format: u32,
    pub identity: Identity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    pub format: u32,
    /// The log generation that continues this snapshot: a log of an older generation is
    /// entirely contained in the snapshot.
    pub wal_gen: u64,
    pub state: DurableState,
}

/// Serialize with rmp-serde; the types here always serialize.
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec(v).map_err(|e| e.to_string())
}

/// Deserialize all of `bytes` (trailing bytes are an error).
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let mut cur = std::io::Cursor::new(bytes);
    let v = {
        let mut de = rmp_serde::Deserializer::new(&mut cur);
        T::deserialize(&mut de).map_err(|e| e.to_string())?
    };
    if cur.position() != bytes.len() as u64 {
        return Err(format!("{} trailing bytes after the value", bytes.len() as u64 - cur.position()));
    }
    Ok(v)
}

/// A magic-tagged, checksummed blob (meta and snapshot files).
pub(crate) fn encode_blob(magic: &[u8; 8], payload: &[u8]) -> Result<Vec<u8>, String> {
    let len = u32::try_from(payload.len()).map_err(|_| format!("{} bytes is too large for one file", payload.len()))?;
    let mut out = Vec::with_capacity(BLOB_HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload of a blob, checking magic, length (exact: these files are written whole)
/// and checksum. The error says what is wrong, with the offset.
pub(crate) fn decode_blob<'a>(magic: &[u8; 8], b: &'a [u8]) -> Result<&'a [u8], String> {
    if b.len() < BLOB_HEADER_LEN {
        return Err(format!("{} bytes long, shorter than its {BLOB_HEADER_LEN}-byte header", b.len()));
    }
    if &b[..8] != magic {
        return Err(format!(
            "offset 0: wrong magic {:?} (expected {:?})",
            String::from_utf8_lossy(&b[..8]),
            String::from_utf8_lossy(magic)
        ));
    }
    let len = u32_at(b, 8).unwrap_or(0) as usize;
    let want = u32_at(b, 12).unwrap_or(0);
    let payload = &b[BLOB_HEADER_LEN..];
    if payload.len() != len {
        return Err(format!("offset 8: header says {len} payload bytes, file holds {}", payload.len()));
    }
    let got = crc(payload);
    if got != want {
        return Err(format!("offset {BLOB_HEADER_LEN}: payload checksum {got:08x} does not match {want:08x}"));
    }
    Ok(payload)
}

pub(crate) fn encode_meta(identity: &Identity) -> Result<Vec<u8>, String> {
    encode_blob(META_MAGIC, &encode(&Meta { format: FORMAT_VERSION, identity: identity.clone() })?)
}

pub(crate) fn decode_meta(b: &[u8]) -> Result<Meta, String> {
    let payload = decode_blob(META_MAGIC, b)?;
    decode(payload).map_err(|e| format!("offset {BLOB_HEADER_LEN}: checksum good but undecodable: {e}"))
}

pub(crate) fn encode_snapshot(wal_gen: u64, state: &DurableState) -> Result<Vec<u8>, String> {
    // Serialize a borrowed view to avoid cloning the whole state.
    #[derive(Serialize)]
    struct Ref<'a> {
        format: u32,
        wal_gen: u64,
        state: &'a DurableState,
    }
    encode_blob(SNAPSHOT_MAGIC, &encode(&Ref { format: FORMAT_VERSION, wal_gen, state })?)
}

pub(crate) fn decode_snapshot(b: &[u8]) -> Result<SnapshotBody, String> {
    let payload = decode_blob(SNAPSHOT_MAGIC, b)?;
    let body: SnapshotBody =
        decode(payload).map_err(|e| format!("offset {BLOB_HEADER_LEN}: checksum good but undecodable: {e}"))?;
    if body.format != FORMAT_VERSION {
        return Err(format!("format version {} is not {FORMAT_VERSION}", body.format));
    }
    Ok(body)
}

pub(crate) fn wal_header(gen: u64) -> [u8; WAL_HEADER_LEN] {
    let mut h = [0u8; WAL_HEADER_LEN];
    h[..8].copy_from_slice(WAL_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&gen.to_le_bytes());
    let c = crc(&h[..20]);
    h[20..24].copy_from_slice(&c.to_le_bytes());
    h
}

/// The generation in a log header (the caller has checked `b.len() >= WAL_HEADER_LEN`).
pub(crate) fn decode_wal_header(b: &[u8]) -> Result<u64, String> {
    let h = b.get(..WAL_HEADER_LEN).ok_or_else(|| format!("{} bytes, shorter than the log header", b.len()))?;
    if &h[..8] != WAL_MAGIC {
        return Err(format!("offset 0: wrong magic {:?}", String::from_utf8_lossy(&h[..8])));
    }
    let want = u32_at(h, 20).unwrap_or(0);
    let got = crc(&h[..20]);
    if got != want {
        return Err(format!("offset 0: log header checksum {got:08x} does not match {want:08x}"));
    }
    let format = u32_at(h, 8).unwrap_or(0);
    if format != FORMAT_VERSION {
        return Err(format!("offset 8: format version {format} is not {FORMAT_VERSION}"));
    }
    Ok(u64_at(h, 12).unwrap_or(0))
}

/// One log record for one `persist` call.
pub(crate) fn encode_record(ops: &[PersistOp]) -> Result<Vec<u8>, String> {
    let payload = encode(&ops)?;
    let len = u32::try_from(payload.len())
        .map_err(|_| format!("a batch of {} bytes is too large for one record", payload.len()))?;
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(&payload).to_le_bytes());
    let hc = crc(&out[..8]);
    out.extend_from_slice(&hc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// What is at one offset of the log.
enum At<'a> {
    /// A whole record whose header and payload checksums hold.
    Good { payload: &'a [u8], next: usize },
    /// Fewer bytes left than a record header.
    ShortHeader,
    /// The header's own checksum fails (or it claims an empty payload, which is never
    /// written): where the record ends is unknown.
    BadHeader,
    /// A good header whose payload runs past the end of the file.
    Incomplete,
    /// A good header, the payload is all there, its checksum fails.
    BadPayload { next: usize },
}

fn record_at(b: &[u8], off: usize) -> At<'_> {
    let Some(h) = b.get(off..off.saturating_add(RECORD_HEADER_LEN)) else { return At::ShortHeader };
    let (Some(len), Some(pc), Some(hc)) = (u32_at(h, 0), u32_at(h, 4), u32_at(h, 8)) else { return At::ShortHeader };
    if crc(&h[..8]) != hc || len == 0 {
        return At::BadHeader;
    }
    let start = off + RECORD_HEADER_LEN;
    let Some(end) = start.checked_add(len as usize) else { return At::Incomplete };
    let Some(payload) = b.get(start..end) else { return At::Incomplete };
    if crc(payload) != pc {
        return At::BadPayload { next: end };
    }
    At::Good { payload, next: end }
}

/// Whether a whole, checksum-valid record starts anywhere in `b[from..]`.
fn valid_record_after(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len().saturating_sub(RECORD_HEADER_LEN)).find(|&p| matches!(record_at(b, p), At::Good { .. }))
}

/// The result of reading a log body.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Each good record's offset and ops, in order.
    pub records: Vec<(usize, Vec<PersistOp>)>,
    /// End of the last good record: where the file must be cut.
    pub good_end: usize,
    /// Why the bytes after `good_end` (if any) were judged a torn tail.
    pub torn: Option<String>,
}

/// Corruption at `offset`, described.
#[derive(Debug)]
pub(crate) struct Bad {
    pub offset: usize,
    pub detail: String,
}

/// Read the records of a log held in `b`, starting at `start` (after the header).
///
/// A torn tail is what a crash in the middle of the last append can leave, and only that:
/// - fewer bytes than a record header, at the end;
/// - a good header whose payload runs past the end;
/// - a good header and a payload that ends exactly at the end but fails its checksum;
/// - a header that fails its checksum with no valid record anywhere after it (this covers
///   zero-filled and half-written pages at the end).
///
/// Anything else is corruption, reported with its offset: a bad payload with more data
/// after it, a bad header followed by a valid record, or a payload whose checksum holds
/// but that does not decode.
pub(crate) fn scan_records(b: &[u8], start: usize) -> Result<Scan, Bad> {
    let mut records = Vec::new();
    let mut off = start;
    loop {
        if off >= b.len() {
            return Ok(Scan { records, good_end: off, torn: None });
        }
        let torn = move |records, why: String| Ok(Scan { records, good_end: off, torn: Some(why) });
        let remaining = b.len() - off;
        match record_at(b, off) {
            At::Good { payload, next } => match decode::<Vec<PersistOp>>(payload) {
                Ok(ops) => {
                    records.push((off, ops));
                    off = next;
                }
                Err(e) => {
                    return Err(Bad {
                        offset: off,
                        detail: format!("record checksum holds but it does not decode: {e}"),
                    })
                }
            },
            At::ShortHeader => {
                return torn(records, format!("{remaining} bytes at the end, fewer than a record header"))
            }
            At::Incomplete => {
                return torn(records, format!("the last record is incomplete ({remaining} bytes at the end)"))
            }
            At::BadPayload { next } if next == b.len() => {
                return torn(
                    records,
                    format!("the last record ({remaining} bytes) fails its checksum and ends at the end of the file"),
                )
            }
            At::BadPayload { next } => {
                return Err(Bad {
                    offset: off,
                    detail: format!("record payload fails its checksum and {} more bytes follow it", b.len() - next),
                })
            }
            At::BadHeader => {
                if let Some(p) = valid_record_after(b, off + 1) {
                    return Err(Bad {
                        offset: off,
                        detail: format!("record header fails its checksum and a valid record follows at offset {p}"),
                    });
                }
                return torn(
                    records,
                    format!("{remaining} bytes at the end hold no valid record (half-written or zero-filled)"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_core::Ballot;
    use std::sync::Arc;

    fn rec(i: u64) -> Vec<u8> {
        encode_record(&[PersistOp::Round(i), PersistOp::Apply { slot: i, value: Arc::new(vec![]) }]).unwrap()
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut b = wal_header(0).to_vec();
        b.extend(rec(1));
        let good = b.len();
        b.extend(vec![0u8; 4096]);
        let s = scan_records(&b, WAL_HEADER_LEN).unwrap();
        assert_eq!(s.good_end, good);
        assert_eq!(s.records.len(), 1);
        assert!(s.torn.is_some());
    }

    #[test]
    fn bad_length_in_the_middle_is_corrupt_not_torn() {
        let mut b = wal_header(0).to_vec();
        b.extend(rec(1));
        let second = b.len();
        b.extend(rec(2));
        b.extend(rec(3));
        b[second + 3] ^= 0x40; // the length's high byte: it would now run past the end
        let e = scan_records(&b, WAL_HEADER_LEN).unwrap_err();
        assert_eq!(e.offset, second);
    }

    #[test]
    fn decoders_never_panic_on_garbage() {
        let mut x: u64 = 7;
        for n in 0..2000usize {
            let mut g = Vec::with_capacity(n % 97);
            for _ in 0..(n % 97) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                g.push((x >> 33) as u8);
            }
            let _ = decode_meta(&g);
            let _ = decode_snapshot(&g);
            let _ = decode_wal_header(&g);
            let _ = scan_records(&g, 0);
            let _ = decode::<Vec<PersistOp>>(&g);
        }
        let _ = Ballot::ZERO;
    }
}
