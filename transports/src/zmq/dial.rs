//! Our outgoing ZMTP: the PUSH side of one connection, up to the end of its handshake
//! (greeting, then READY for NULL, or HELLO, WELCOME, INITIATE, READY for CURVE). After
//! it the connection only carries our message frames (see [`super::ZmqConnector`]); what
//! the peer sends afterwards (a PULL socket has nothing to say) is never read.
//!
//! Every length the peer announces is checked before a byte of it is read: a greeting is
//! 64 bytes, a command at most [`zmtp::MAX_COMMAND`]. A peer that answers our dial with
//! a greeting and a header claiming 4 TiB costs us 73 bytes read and a closed connection.

use super::curve::{self, CurveError};
use super::zmtp::{self, CommandError, Mechanism};
use crate::auth::{Credentials, CurveKeyPair, Identity};
use ballot_core::NodeId;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why a handshake failed, either way.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The peer closed before its first byte (a port probe): no handshake, not a bad one.
    Quiet,
    /// Not ZMTP, a command out of place or over its limit, a broken connection: counted
    /// as `bad_handshake`.
    Bad(String),
    /// A well-formed handshake we refuse, or the peer refused: another mechanism, a key
    /// not on the allow-list, a box that does not open, the peer's ERROR. Counted as
    /// `refused_handshake`.
    Refused(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Quiet => f.write_str("closed before the handshake"),
            HandshakeError::Bad(why) => write!(f, "bad handshake: {why}"),
            HandshakeError::Refused(why) => write!(f, "handshake refused: {why}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Bad(e.to_string())
    }
}

impl From<CommandError> for HandshakeError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Io(e) => e.into(),
            CommandError::Malformed => HandshakeError::Bad("not a command, or a command over its limit".into()),
        }
    }
}

impl From<CurveError> for HandshakeError {
    fn from(e: CurveError) -> Self {
        match e {
            CurveError::Crypto(_) => HandshakeError::Refused(e.to_string()),
            CurveError::Malformed(_) | CurveError::Random => HandshakeError::Bad(e.to_string()),
        }
    }
}

/// How a connector proves itself: not at all, or with CURVE.
#[derive(Clone, Debug, Default)]
pub(crate) enum DialPlan {
    /// The NULL mechanism: an insecure endpoint.
    #[default]
    Null,
    /// CURVE with our key pair, to a server that must hold the secret of `server` (`None`:
    /// the allow-list has no key for the peer, and every dial is refused).
    Curve {
        /// Our long-term key pair.
        ours: CurveKeyPair,
        /// The peer's public key, from the allow-list.
        server: Option<[u8; 32]>,
    },
}

impl DialPlan {
    /// How to dial `peer` with `creds`: without them NULL; with them CURVE, expecting
    /// the key the allow-list gives the peer's identity ([`Identity::of`]).
    pub(crate) fn for_peer(peer: NodeId, creds: Option<&Credentials>) -> DialPlan {
        let Some(creds) = creds else { return DialPlan::Null };
        let want = Identity::of(peer);
        let server = creds.curve_allow.iter().find(|(_, who)| **who == want).map(|(key, _)| *key);
        DialPlan::Curve { ours: creds.curve.clone(), server }
    }

    /// Whether messages are sealed (CURVE).
    pub(crate) fn sealed(&self) -> bool {
        matches!(self, DialPlan::Curve { .. })
    }
}

/// A connection past its handshake: the stream, and under CURVE the message cipher.
/// `pub` in a private module, as the connector is: the connection type of its impl.
pub struct ZmqConn {
    pub(crate) stream: TcpStream,
    pub(crate) cipher: Option<curve::Cipher>,
}

/// Reads the peer's greeting; it must be ZMTP 3 and name `want`.
pub(crate) async fn read_greeting<R: AsyncRead + Unpin>(r: &mut R, want: Mechanism) -> Result<(), HandshakeError> {
    let mut g = [0u8; zmtp::GREETING_LEN];
    r.read_exact(&mut g).await?;
    let greeting = zmtp::parse_greeting(&g).ok_or_else(|| HandshakeError::Bad("not a ZMTP 3 greeting".into()))?;
    match greeting.mechanism {
        Some(m) if m == want => Ok(()),
        Some(m) => Err(HandshakeError::Refused(format!("the peer speaks {}, this end {}", m.name(), want.name()))),
        None => Err(HandshakeError::Refused(format!("the peer speaks a mechanism other than {}", want.name()))),
    }
}

/// A command that is not the one expected: the peer's ERROR is a refusal, anything else
/// a bad handshake.
pub(crate) fn unexpected(cmd: &[u8], want: &str) -> HandshakeError {
    match curve::error_reason(cmd) {
        Some(reason) => HandshakeError::Refused(format!("the peer said ERROR {reason:?}")),
        None => HandshakeError::Bad(format!("expected {want}")),
    }
}

/// The peer's metadata must name `want` as its socket type: a PUSH talks only to a PULL,
/// and a PULL only to a PUSH.
pub(crate) fn check_socket_type(metadata: &[u8], want: &str) -> Result<(), HandshakeError> {
    match zmtp::property(metadata, "Socket-Type") {
        Ok(Some(t)) if t.eq_ignore_ascii_case(want.as_bytes()) => Ok(()),
        Ok(Some(t)) => {
            Err(HandshakeError::Refused(format!("the peer is a {} socket, not {want}", String::from_utf8_lossy(t))))
        }
        Ok(None) => Err(HandshakeError::Refused("the peer names no socket type".into())),
        Err(()) => Err(HandshakeError::Bad("malformed metadata".into())),
    }
}

/// Runs our side of the handshake on a fresh connection.
pub(crate) async fn handshake(stream: TcpStream, plan: &DialPlan) -> Result<ZmqConn, HandshakeError> {
    let mut conn = BufReader::with_capacity(1024, stream);
    let mut cmd = Vec::new();
    let cipher = match plan {
        DialPlan::Null => {
            let mut out = zmtp::greeting().to_vec();
            out.extend(zmtp::ready("PUSH"));
            conn.get_mut().write_all(&out).await?;
            read_greeting(&mut conn, Mechanism::Null).await?;
            zmtp::read_command(&mut conn, &mut cmd).await?;
            let metadata = cmd.strip_prefix(b"\x05READY").ok_or_else(|| unexpected(&cmd, "READY"))?;
            check_socket_type(metadata, "PULL")?;
            None
        }
        DialPlan::Curve { ours, server } => {
            let server = server.ok_or_else(|| HandshakeError::Refused("no CURVE key for the peer".into()))?;
            let mut client = curve::Client::new(ours, server)?;
            // HELLO goes with the greeting: a CURVE server expects it next, and one that
            // speaks another mechanism closes either way.
            let mut out = zmtp::greeting_for(Mechanism::Curve, false).to_vec();
            out.extend(zmtp::command_frame(&client.hello()?));
            conn.get_mut().write_all(&out).await?;
            // Its as-server bit says nothing: libzmq leaves it 0 on both sides.
            read_greeting(&mut conn, Mechanism::Curve).await?;
            zmtp::read_command(&mut conn, &mut cmd).await?;
            if zmtp::command_name(&cmd) != Some(b"WELCOME") {
                return Err(unexpected(&cmd, "WELCOME"));
            }
            client.welcome(&cmd)?;
            let initiate = client.initiate(&zmtp::metadata("PUSH"))?;
            conn.get_mut().write_all(&zmtp::command_frame(&initiate)).await?;
            zmtp::read_command(&mut conn, &mut cmd).await?;
            if zmtp::command_name(&cmd) != Some(b"READY") {
                return Err(unexpected(&cmd, "READY"));
            }
            let (cipher, metadata) = client.ready(&cmd)?;
            check_socket_type(&metadata, "PULL")?;
            Some(cipher)
        }
    };
    // Nothing the peer sent past its READY matters to a PUSH: the buffer is dropped.
    Ok(ZmqConn { stream: conn.into_inner(), cipher })
}
