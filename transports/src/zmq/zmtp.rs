//! ZMTP 3.0 wire constants and builders (rfc.zeromq.org/spec/23; PING and PONG from ZMTP
//! 3.1, rfc.zeromq.org/spec/37), and the bounded reads both sides of a connection use
//! during the handshake: every length a peer announces is checked before a byte of it
//! is read, and a body grows only as its bytes arrive.

use crate::link;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Flag bits of a frame header.
pub const MORE: u8 = 0x01;
/// Flag: the size is 8 bytes (big-endian) instead of 1.
pub const LONG: u8 = 0x02;
/// Flag: a command frame (READY and the like), not a message.
pub const COMMAND: u8 = 0x04;
/// Longest command we accept (a READY with a few properties, or a CURVE INITIATE with
/// its metadata, is well under this).
pub const MAX_COMMAND: u64 = 4096;
/// Bytes of a greeting.
pub const GREETING_LEN: usize = 64;

/// The security mechanism a greeting names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// No security: anyone may connect (RFC 23).
    Null,
    /// CurveZMQ: both ends proven by their X25519 keys, every message sealed (RFC 26).
    Curve,
}

impl Mechanism {
    /// The mechanism's name as the greeting spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Null => "NULL",
            Mechanism::Curve => "CURVE",
        }
    }
}

/// The 64-byte greeting of a NULL peer that is not a server, as our PUSH and PULL sides
/// send it without credentials.
pub fn greeting() -> [u8; GREETING_LEN] {
    greeting_for(Mechanism::Null, false)
}

/// The 64-byte greeting: signature, version 3.0, the mechanism, whether we are its server
/// (CURVE: the PULL side that holds the key the other side dials).
pub fn greeting_for(mechanism: Mechanism, as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    let name = mechanism.name().as_bytes();
    g[12..12 + name.len()].copy_from_slice(name);
    g[32] = as_server as u8;
    g
}

/// What a peer's greeting says. Its as-server bit is not read: libzmq sends 0 on both
/// sides, whatever RFC 23 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerGreeting {
    /// `None`: a mechanism we do not speak.
    pub(crate) mechanism: Option<Mechanism>,
}

/// Reads a greeting; `None` when it is not ZMTP 3 or later (the signature, the version).
pub(crate) fn parse_greeting(g: &[u8; GREETING_LEN]) -> Option<PeerGreeting> {
    if g[0] != 0xff || g[9] != 0x7f || g[10] < 3 {
        return None;
    }
    let field = &g[12..32];
    let mechanism = [Mechanism::Null, Mechanism::Curve].into_iter().find(|m| {
        let name = m.name().as_bytes();
        field[..name.len()] == *name && field[name.len()..].iter().all(|&b| b == 0)
    });
    Some(PeerGreeting { mechanism })
}

/// Metadata (a property list): `Socket-Type` = `socket_type`.
pub(crate) fn metadata(socket_type: &str) -> Vec<u8> {
    let mut m = vec![11];
    m.extend_from_slice(b"Socket-Type");
    m.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    m.extend_from_slice(socket_type.as_bytes());
    m
}

/// The value of property `name` (case-insensitive, as RFC 23 says) in a property list;
/// `Err` when the list is malformed (a length past its end).
pub(crate) fn property<'a>(mut meta: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, ()> {
    let mut found = None;
    while let Some((&n, rest)) = meta.split_first() {
        let key = rest.get(..n as usize).ok_or(())?;
        let rest = &rest[n as usize..];
        let len = u32::from_be_bytes(rest.get(..4).ok_or(())?.try_into().map_err(|_| ())?) as usize;
        let value = rest.get(4..4 + len).ok_or(())?;
        if key.eq_ignore_ascii_case(name.as_bytes()) {
            found = Some(value);
        }
        meta = &rest[4 + len..];
    }
    Ok(found)
}

/// A command frame carrying `body` (the short header when it fits).
pub(crate) fn command_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(body.len() + 9);
    if body.len() < 256 {
        frame.extend_from_slice(&[COMMAND, body.len() as u8]);
    } else {
        frame.push(COMMAND | LONG);
        frame.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    frame.extend_from_slice(body);
    frame
}

/// A NULL READY command frame announcing `socket_type` (e.g. `PULL`).
pub fn ready(socket_type: &str) -> Vec<u8> {
    let mut body = b"\x05READY".to_vec();
    body.extend(metadata(socket_type));
    command_frame(&body)
}

/// The PONG body that answers a PING command body (ZMTP 3.1: `\x04PING`, a 2-byte TTL,
/// up to 16 bytes of context echoed back), or `None` if `cmd` is not a well-formed PING.
pub(crate) fn pong_body(cmd: &[u8]) -> Option<Vec<u8>> {
    let context = cmd.strip_prefix(b"\x04PING")?.get(2..)?;
    if context.len() > 16 {
        return None;
    }
    Some([b"\x04PONG".as_slice(), context].concat())
}

/// The PONG command frame that answers a PING command body, or `None` if `cmd` is not a
/// well-formed PING.
pub fn pong_for(cmd: &[u8]) -> Option<Vec<u8>> {
    pong_body(cmd).map(|b| command_frame(&b))
}

/// Bytes of the long frame header [`message_header`] writes.
pub const LONG_HEADER_LEN: usize = 9;

/// A message frame header (always the long form, which every peer accepts).
pub fn message_header(len: u64) -> Vec<u8> {
    let mut h = vec![LONG];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// Reads a frame header: flags and length.
pub(crate) async fn frame_header<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, u64)> {
    let flags = r.read_u8().await?;
    Ok((flags, read_len(r, flags).await?))
}

/// Reads the length that follows a frame's flags.
pub(crate) async fn read_len<R: AsyncRead + Unpin>(r: &mut R, flags: u8) -> io::Result<u64> {
    Ok(if flags & LONG != 0 { r.read_u64().await? } else { r.read_u8().await? as u64 })
}

/// A handshake command that is not one: a message frame, or longer than [`MAX_COMMAND`].
#[derive(Debug)]
pub(crate) enum CommandError {
    /// The connection failed or ended.
    Io(io::Error),
    /// Not a command frame, or over the limit (the announced length is not read).
    Malformed,
}

/// Reads one command frame into `buf`; its length is checked against [`MAX_COMMAND`]
/// before any of it is read.
pub(crate) async fn read_command<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), CommandError> {
    let (flags, len) = frame_header(r).await.map_err(CommandError::Io)?;
    if flags & COMMAND == 0 || len > MAX_COMMAND {
        return Err(CommandError::Malformed);
    }
    link::read_body(r, len as usize, buf).await.map_err(CommandError::Io)
}

/// The name of a command body (`READY`, `HELLO`, ...), if it is well-formed.
pub(crate) fn command_name(cmd: &[u8]) -> Option<&[u8]> {
    let (&n, rest) = cmd.split_first()?;
    rest.get(..n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_answered_with_its_context_and_anything_else_is_not() {
        let pong = pong_for(b"\x04PING\x00\x0aabc").unwrap();
        assert_eq!(pong, b"\x04\x08\x04PONGabc");
        assert_eq!(pong_for(b"\x04PING\x00\x00").unwrap(), b"\x04\x05\x04PONG");
        assert!(pong_for(b"\x04PING\x00").is_none(), "no TTL");
        assert!(pong_for(&[b"\x04PING\x00\x00".as_slice(), &[7; 17]].concat()).is_none(), "context over 16");
        assert!(pong_for(b"\x05READY").is_none());
    }

    #[test]
    fn greetings_name_their_mechanism_exactly() {
        let g = greeting_for(Mechanism::Curve, true);
        assert_eq!(parse_greeting(&g), Some(PeerGreeting { mechanism: Some(Mechanism::Curve) }));
        assert_eq!(g[32], 1, "we say which end is the server");
        assert_eq!(parse_greeting(&greeting()).unwrap().mechanism, Some(Mechanism::Null));
        let mut g = greeting();
        g[16] = b'X';
        assert_eq!(parse_greeting(&g).unwrap().mechanism, None, "NULLX is not NULL");
        g[10] = 2;
        assert_eq!(parse_greeting(&g), None, "ZMTP 2");
    }

    #[test]
    fn properties_are_found_and_a_length_past_the_end_is_refused() {
        let mut meta = metadata("PUSH");
        meta.extend([8]);
        meta.extend_from_slice(b"Identity");
        meta.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(property(&meta, "socket-type"), Ok(Some(b"PUSH".as_slice())));
        assert_eq!(property(&meta, "Identity"), Ok(Some(b"".as_slice())));
        assert_eq!(property(&meta, "Other"), Ok(None));
        let mut bad = metadata("PUSH");
        bad[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(property(&bad, "Socket-Type"), Err(()));
        assert_eq!(property(&[200, b'a'], "a"), Err(()));
    }
}
