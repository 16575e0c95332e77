//! The frame codec shared by the network transports.
//!
//! A frame on a TCP stream is a 4-byte big-endian length followed by a body; ZeroMQ carries
//! the same body as one ZMTP message. The body is a 4-byte header (magic `BL`, then the
//! `u16` [`PROTOCOL_VERSION`] big-endian) followed by the rmp-serde encoding of an
//! [`Envelope`]. The header lets a receiver refuse a stray client or a peer of another
//! version before it tries to decode anything.
//!
//! Everything here treats its input as hostile: decoding returns a [`WireError`] and never
//! panics, and a length prefix is checked against the limit before anything is allocated.

use crate::envelope::Envelope;
use ballot_core::PROTOCOL_VERSION;

/// First two bytes of every body: a cheap way to tell our frames from anything else.
pub const MAGIC: [u8; 2] = *b"BL";
/// Magic plus version.
pub const HEADER_LEN: usize = 4;
/// Bytes of the length prefix on a TCP stream.
pub const PREFIX_LEN: usize = 4;
/// Default limit on a body: a batch of a hundred thousand votes fits with room to spare,
/// while a garbage length prefix cannot make a node allocate gigabytes.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a frame was refused. Every variant is a property of the bytes received, never of
/// the receiver: the receiver counts it and closes that connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The announced or actual body length is over the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// The body's length, in bytes.
        len: u64,
        /// The limit, in bytes.
        max: usize,
    },
    /// The body does not start with the ballot magic bytes.
    #[error("frame does not start with the ballot magic bytes")]
    BadMagic,
    /// The body speaks another protocol version (the one given).
    #[error("frame speaks protocol version {0}, this node speaks {PROTOCOL_VERSION}")]
    UnknownVersion(u16),
    /// The body after the header is not an rmp-serde envelope (the decoder's message).
    #[error("frame body does not decode as an envelope: {0}")]
    Decode(String),
    /// The envelope could not be encoded (the encoder's message).
    #[error("envelope does not encode: {0}")]
    Encode(String),
    /// Fewer bytes than the header, the length prefix or the announced body needs.
    #[error("frame is truncated: {needed} bytes needed, {have} available")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Appends the body of `env` (header + rmp-serde) to `out`.
pub fn encode_body_into(env: &Envelope, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    rmp_serde::encode::write(out, env).map_err(|e| WireError::Encode(e.to_string()))
}

/// The body of `env`, refused if it is larger than `max` (the peer would refuse it).
pub fn encode_body(env: &Envelope, max: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(128);
    encode_body_into(env, &mut out)?;
    if out.len() > max {
        return Err(WireError::Oversized { len: out.len() as u64, max });
    }
    Ok(out)
}

/// Appends a whole length-prefixed frame for `env` to `out`. On error `out` is left as it
/// was, so a batch being built survives one bad envelope.
pub fn encode_frame_into(env: &Envelope, max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    let result = encode_body_into(env, out).and_then(|()| {
        let len = out.len() - start - PREFIX_LEN;
        check_len(len as u64, max)?;
        out[start..start + PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// A whole length-prefixed frame for `env`.
pub fn encode_frame(env: &Envelope, max: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(128);
    encode_frame_into(env, max, &mut out)?;
    Ok(out)
}

/// Checks a announced body length against the limit (and against what a `u32` prefix can
/// say), before any allocation.
pub fn check_len(len: u64, max: usize) -> Result<usize, WireError> {
    if len > max as u64 || len > u32::MAX as u64 {
        return Err(WireError::Oversized { len, max });
    }
    Ok(len as usize)
}

/// Reads a length prefix.
pub fn decode_prefix(prefix: [u8; PREFIX_LEN], max: usize) -> Result<usize, WireError> {
    check_len(u32::from_be_bytes(prefix) as u64, max)
}

/// Checks the header of a body and decodes the envelope after it.
pub fn decode_body(body: &[u8]) -> Result<Envelope, WireError> {
    if body.len() < HEADER_LEN {
        return Err(WireError::Truncated { needed: HEADER_LEN, have: body.len() });
    }
    if body[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = u16::from_be_bytes([body[2], body[3]]);
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    rmp_serde::from_slice(&body[HEADER_LEN..]).map_err(|e| WireError::Decode(e.to_string()))
}

/// Decodes one length-prefixed frame at the start of `buf`; returns the envelope and the
/// number of bytes it took. `Truncated` means more bytes are needed.
pub fn decode_frame(buf: &[u8], max: usize) -> Result<(Envelope, usize), WireError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Err(WireError::Truncated { needed: PREFIX_LEN, have: buf.len() });
    };
    let len = decode_prefix([prefix[0], prefix[1], prefix[2], prefix[3]], max)?;
    let end = PREFIX_LEN + len;
    let Some(body) = buf.get(PREFIX_LEN..end) else {
        return Err(WireError::Truncated { needed: end, have: buf.len() });
    };
    Ok((decode_body(body)?, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_core::{Ballot, Command, Message, NodeId};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::sync::Arc;

    fn accept(votes: usize) -> Envelope {
        let value = (0..votes)
            .map(|i| Command::Vote {
                request_id: format!("r{i}"),
                client: NodeId::client(1),
                voter: format!("voter-{i}"),
                candidate: "alice".into(),
            })
            .collect();
        let msg = Message::Accept { ballot: Ballot::new(3, 1), slot: 9, value: Arc::new(value) };
        Envelope::new(NodeId::proposer(1), NodeId::acceptor(2), msg)
    }

    #[test]
    fn frames_round_trip() {
        let env = accept(3);
        let frame = encode_frame(&env, DEFAULT_MAX_FRAME).unwrap();
        let (back, used) = decode_frame(&frame, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!((back, used), (env.clone(), frame.len()));
        let body = encode_body(&env, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(decode_body(&body).unwrap(), env);
        assert_eq!(&frame[PREFIX_LEN..], &body[..]);
    }

    #[test]
    fn a_crash_notice_has_no_encoding_so_no_peer_can_send_one() {
        let notice = Envelope::new(NodeId::proposer(1), NodeId::acceptor(1), Message::PeerDown);
        assert!(matches!(encode_frame(&notice, DEFAULT_MAX_FRAME), Err(WireError::Encode(_))));
        // Nor can one be made by hand: a `Hello` whose variant is renamed is not a message.
        let hello = encode_body(&Envelope::new(NodeId::proposer(1), NodeId::acceptor(1), Message::Hello), 1 << 20);
        let mut body = hello.unwrap();
        let at = body.windows(5).position(|w| w == b"Hello").expect("variants travel by name");
        body.splice(at..at + 5, b"PeerDown".iter().copied());
        body[at - 1] = 0xa0 | 8; // msgpack fixstr of 8 bytes
        assert!(decode_body(&body).is_err(), "a PeerDown from the network decoded");
    }

    #[test]
    fn limits_apply_on_both_sides() {
        let env = accept(1000);
        let len = encode_body(&env, usize::MAX).unwrap().len();
        assert!(matches!(encode_body(&env, len - 1), Err(WireError::Oversized { .. })));
        let mut out = vec![7];
        assert!(encode_frame_into(&env, len - 1, &mut out).is_err());
        assert_eq!(out, vec![7], "a refused envelope leaves the batch as it was");
        let frame = encode_frame(&env, len).unwrap();
        assert_eq!(decode_frame(&frame, len - 1).unwrap_err(), WireError::Oversized { len: len as u64, max: len - 1 });
        assert!(matches!(decode_prefix([0xff; 4], DEFAULT_MAX_FRAME), Err(WireError::Oversized { .. })));
    }

    #[test]
    fn header_is_checked_before_decoding() {
        let mut body = encode_body(&accept(1), DEFAULT_MAX_FRAME).unwrap();
        body[2..4].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
        assert_eq!(decode_body(&body), Err(WireError::UnknownVersion(PROTOCOL_VERSION + 1)));
        body[0] = b'X';
        assert_eq!(decode_body(&body), Err(WireError::BadMagic));
        assert!(matches!(decode_body(b"BL"), Err(WireError::Truncated { .. })));
        let mut junk = MAGIC.to_vec();
        junk.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        junk.extend_from_slice(&[0xc1, 0xff, 0x00]);
        assert!(matches!(decode_body(&junk), Err(WireError::Decode(_))));
    }

    #[test]
    fn truncated_frames_say_what_they_need() {
        let frame = encode_frame(&accept(2), DEFAULT_MAX_FRAME).unwrap();
        for cut in 0..frame.len() {
            assert!(
                matches!(decode_frame(&frame[..cut], DEFAULT_MAX_FRAME), Err(WireError::Truncated { .. })),
                "cut at {cut}"
            );
        }
    }

    /// Thousands of random inputs, some pure noise and some mutations of a valid frame
    /// (the more dangerous kind: they get past the header). None may panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x00ba_1107);
        let valid = encode_frame(&accept(5), DEFAULT_MAX_FRAME).unwrap();
        let mut outcomes = [0usize; 2];
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let n = rng.gen_range(0..300);
                (0..n).map(|_| rng.gen()).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(PREFIX_LEN..b.len());
                    b[at] = rng.gen();
                }
                b.truncate(rng.gen_range(0..=b.len()));
                b
            };
            let ok = decode_frame(&bytes, DEFAULT_MAX_FRAME).is_ok();
            let _ = decode_body(&bytes);
            outcomes[ok as usize] += 1;
        }
        assert!(outcomes[0] > 0);
    }
}
