//! [`ZmqTransport`]: ballot frame bodies (see [`crate::wire`]) as ZeroMQ PUSH/PULL
//! messages (ZMTP 3.0, NULL mechanism), so any ZeroMQ peer can reach a node.
//!
//! Outbound, each peer has a task (shared with TCP, see [`crate::link`]) that owns one
//! `zeromq::PushSocket` connected to that peer's PULL endpoint.
//!
//! How the `zeromq` crate (0.7) behaves, and what follows from it:
//! - A PUSH socket never reconnects. After the peer's process dies, the next one or two
//!   sends return `Ok` and are lost in the dead connection; once its writer sees the
//!   broken pipe every send fails with "Not connected to peers", even after the peer is
//!   back. So a send error, or a send that takes longer than the write deadline (the
//!   crate buffers 100k messages per peer, then its `send` waits for a paused peer), drops
//!   the socket, and the next message dials a new one after the backoff. A restarted peer
//!   is reached again without restarting anyone else; the one or two messages sent into
//!   the dead connection are lost, as Paxos allows. A restarted node also says `Hello`,
//!   which drops the socket at once (see [`crate::link`]): where the dead peer's address
//!   vanished with it (a container), no error ever comes, and only that brings it back.
//! - Its `connect` retries a refused connection, sleeping 50 ms, 100 ms, ... in between,
//!   for as long as it is let. So a dial first makes a plain TCP connection, which fails at
//!   once where nobody listens, and the peer task's own back-off takes over.
//! - Its PULL side trusts the length in a ZMTP frame header and reserves that much memory
//!   up front: 73 bytes (a greeting and a header claiming 4 TiB) abort the process. So the
//!   inbound side here is our own small ZMTP reader, which checks every length against
//!   [`NetOptions::max_frame`] before reading and closes the offending connection.

use crate::envelope::Envelope;
use crate::link::{self, Connector, Counters, NetOptions, NetTransport};
use crate::wire::{self, WireError};
use ballot_core::NodeId;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use zeromq::{Socket, SocketSend, ZmqMessage};

/// Settings of a [`ZmqTransport`].
pub type ZmqOptions = NetOptions;

/// A node's endpoint over ZeroMQ. Dropping it ends every task; the listener closes as
/// its task ends, a moment later (a restart on the same port retries its bind).
pub type ZmqTransport = NetTransport<ZmqConnector>;

impl ZmqTransport {
    /// Binds a PULL endpoint at `tcp://{listen}` (port 0 picks a free port, see
    /// [`Self::local_addr`]) and knows `peers` by the address of their PULL endpoints.
    pub async fn bind(
        local: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        opts: ZmqOptions,
    ) -> io::Result<Self> {
        NetTransport::bind_with(local, listen, peers, opts, serve_pull).await
    }

    /// `tcp://host:port` of this node's PULL endpoint, for other ZeroMQ programs.
    pub fn endpoint(&self) -> String {
        format!("tcp://{}", self.local_addr())
    }
}

/// The connector lives in a private module: it is `pub` only so that the public alias
/// over [`NetTransport`] may name it; nothing outside the crate can.
mod connector {
    use super::*;

    /// One PUSH socket per connection; a batch is sent message by message (the crate
    /// queues them for its writer task).
    #[derive(Default)]
    pub struct ZmqConnector {
        batch: Vec<Bytes>,
        bytes: usize,
    }

    impl Connector for ZmqConnector {
        type Conn = zeromq::PushSocket;

        async fn connect(&mut self, addr: SocketAddr) -> io::Result<zeromq::PushSocket> {
            // The crate's `connect` retries a refused connection with growing sleeps for
            // as long as it is let (our connect deadline): a peer that is down would hold
            // this task there, and a peer back up would be reached only after the crate's
            // current sleep. A plain TCP connect first fails at once, as TCP's dial does,
            // and the peer task's back-off (which a `Hello` cuts short) takes over. The
            // listener counts a connection closed before its first byte as no handshake.
            drop(TcpStream::connect(addr).await?);
            let mut socket = zeromq::PushSocket::new();
            socket.connect(&format!("tcp://{addr}")).await.map_err(io::Error::other)?;
            Ok(socket)
        }

        fn push(&mut self, env: &Envelope, max_frame: usize) -> Result<(), WireError> {
            let body = wire::encode_body(env, max_frame)?;
            self.bytes += body.len();
            self.batch.push(Bytes::from(body));
            Ok(())
        }

        fn pending_bytes(&self) -> usize {
            self.bytes
        }

        async fn flush<'a>(&'a mut self, conn: &'a mut zeromq::PushSocket) -> io::Result<()> {
            self.bytes = 0;
            for body in self.batch.drain(..) {
                conn.send(ZmqMessage::from(body)).await.map_err(io::Error::other)?;
            }
            Ok(())
        }

        fn clear(&mut self) {
            self.batch.clear();
            self.bytes = 0;
        }
    }
}
use connector::ZmqConnector;

/// ZMTP 3.0 wire constants (rfc.zeromq.org/spec/23).
pub mod zmtp {
    /// Flag bits of a frame header.
    pub const MORE: u8 = 0x01;
    /// Flag: the size is 8 bytes (big-endian) instead of 1.
    pub const LONG: u8 = 0x02;
    /// Flag: a command frame (READY and the like), not a message.
    pub const COMMAND: u8 = 0x04;
    /// Longest command we accept (a READY with a few properties is well under this).
    pub const MAX_COMMAND: u64 = 4096;

    /// The 64-byte greeting: signature, version 3.0, NULL mechanism, not a server.
    pub fn greeting() -> [u8; 64] {
        let mut g = [0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3;
        g[12..16].copy_from_slice(b"NULL");
        g
    }

    /// A READY command frame announcing `socket_type` (e.g. `PULL`).
    pub fn ready(socket_type: &str) -> Vec<u8> {
        let mut body = vec![5];
        body.extend_from_slice(b"READY");
        body.push(11);
        body.extend_from_slice(b"Socket-Type");
        body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
        body.extend_from_slice(socket_type.as_bytes());
        let mut frame = vec![COMMAND, body.len() as u8];
        frame.extend_from_slice(&body);
        frame
    }

    /// The PONG that answers a PING command body (ZMTP 3.1, rfc.zeromq.org/spec/37:
    /// `\x04PING`, a 2-byte TTL, up to 16 bytes of context echoed back), or `None` if
    /// `cmd` is not a well-formed PING.
    pub fn pong_for(cmd: &[u8]) -> Option<Vec<u8>> {
        let context = cmd.strip_prefix(b"\x04PING")?.get(2..)?;
        if context.len() > 16 {
            return None;
        }
        let mut frame = vec![COMMAND, (5 + context.len()) as u8];
        frame.extend_from_slice(b"\x04PONG");
        frame.extend_from_slice(context);
        Some(frame)
    }

    /// A message frame header (always the long form, which every peer accepts).
    pub fn message_header(len: u64) -> Vec<u8> {
        let mut h = vec![LONG];
        h.extend_from_slice(&len.to_be_bytes());
        h
    }
}

/// Why an inbound ZMTP connection ended early.
enum Ended {
    /// Closed cleanly, or the transport is gone.
    Quiet,
    Handshake,
    Truncated,
    Refused(WireError),
}

/// Serves one inbound connection as a PULL socket: handshake, then messages.
async fn serve_pull(stream: TcpStream, opts: Arc<NetOptions>, stats: Arc<Counters>, inbox: mpsc::Sender<Envelope>) {
    let mut conn = BufReader::with_capacity(64 * 1024, stream);
    let ended = match timeout(opts.connect_timeout, handshake(&mut conn)).await {
        Ok(Ok(true)) => read_messages(&mut conn, &opts, &stats, &inbox).await,
        Ok(Ok(false)) => Ended::Quiet,
        _ => Ended::Handshake,
    };
    match ended {
        Ended::Quiet => {}
        Ended::Handshake => link::bump(&stats.bad_handshake, 1),
        Ended::Truncated => link::bump(&stats.truncated, 1),
        Ended::Refused(e) => stats.refused(&e),
    }
}

/// Greeting both ways, then READY both ways. We speak first, as ZMTP allows, so a peer
/// that waits for us is not kept waiting. `Ok(false)`: the peer closed before sending a
/// byte (a port probe, such as our own dialler's): no handshake, and not a bad one.
async fn handshake(conn: &mut BufReader<TcpStream>) -> io::Result<bool> {
    let bad = || io::Error::from(io::ErrorKind::InvalidData);
    let mut out = zmtp::greeting().to_vec();
    out.extend_from_slice(&zmtp::ready("PULL"));
    // A probe may be gone already: its reset shows in the read below.
    let wrote = conn.get_mut().write_all(&out).await;
    let mut greeting = [0u8; 64];
    match conn.read(&mut greeting[..1]).await {
        Ok(0) => return Ok(false),
        // Closed with our greeting unread: the kernel answers with a reset.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
        Err(e) => return Err(e),
        Ok(_) => wrote?,
    }
    conn.read_exact(&mut greeting[1..]).await?;
    if greeting[0] != 0xff || greeting[9] != 0x7f || greeting[10] < 3 || &greeting[12..16] != b"NULL" {
        return Err(bad());
    }
    let (flags, len) = frame_header(conn).await?;
    if flags & zmtp::COMMAND == 0 || len > zmtp::MAX_COMMAND {
        return Err(bad());
    }
    let mut cmd = Vec::new();
    link::read_body(conn, len as usize, &mut cmd).await?;
    if cmd.get(..6) != Some(b"\x05READY") {
        return Err(bad());
    }
    Ok(true)
}

/// Reads a frame header: flags and length.
async fn frame_header<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, u64)> {
    let flags = r.read_u8().await?;
    Ok((flags, read_len(r, flags).await?))
}

async fn read_len<R: AsyncRead + Unpin>(r: &mut R, flags: u8) -> io::Result<u64> {
    Ok(if flags & zmtp::LONG != 0 { r.read_u64().await? } else { r.read_u8().await? as u64 })
}

/// Reads messages until the peer closes or sends something bad. A multi-part message is
/// taken as the concatenation of its parts; a PING is answered with a PONG, and other
/// commands are skipped.
async fn read_messages(
    conn: &mut BufReader<TcpStream>,
    opts: &NetOptions,
    stats: &Counters,
    inbox: &mpsc::Sender<Envelope>,
) -> Ended {
    let mut msg = Vec::new();
    let mut part = Vec::new();
    loop {
        let flags = match link::read_first_byte(conn, opts.idle_timeout).await {
            Ok(Some(f)) => f,
            _ => return Ended::Quiet,
        };
        let frame = async {
            let len = read_len(conn, flags).await.map_err(|_| Ended::Truncated)?;
            // A message is limited as a whole, however many parts it comes in.
            let (already, limit) =
                if flags & zmtp::COMMAND != 0 { (0, zmtp::MAX_COMMAND as usize) } else { (msg.len(), opts.max_frame) };
            let total = (already as u64).saturating_add(len);
            let len = wire::check_len(total, limit).map_err(Ended::Refused)? - already;
            link::read_body(conn, len, &mut part).await.map_err(|_| Ended::Truncated)
        };
        match timeout(opts.frame_timeout, frame).await {
            Ok(Ok(())) => {}
            Ok(Err(ended)) => return ended,
            Err(_) => return Ended::Truncated,
        }
        if flags & zmtp::COMMAND != 0 {
            // A peer with heartbeats on drops a connection that stays silent past its
            // timeout; a PULL side has nothing else to say, so it answers every PING.
            if let Some(pong) = zmtp::pong_for(&part) {
                match timeout(opts.frame_timeout, conn.get_mut().write_all(&pong)).await {
                    Ok(Ok(())) => {}
                    _ => return Ended::Quiet,
                }
            }
            continue;
        }
        if flags & zmtp::MORE != 0 {
            msg.extend_from_slice(&part);
            continue;
        }
        let body = if msg.is_empty() {
            &part
        } else {
            msg.extend_from_slice(&part);
            &msg
        };
        match link::deliver(body, stats, inbox).await {
            Ok(()) => {}
            // Counted by `deliver`.
            Err(Some(_)) => return Ended::Quiet,
            Err(None) => return Ended::Quiet,
        }
        msg.clear();
        if part.capacity() > 1 << 20 {
            part = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::zmtp;

    #[test]
    fn a_ping_is_answered_with_its_context_and_anything_else_is_not() {
        let pong = zmtp::pong_for(b"\x04PING\x00\x0aabc").unwrap();
        assert_eq!(pong, b"\x04\x08\x04PONGabc");
        assert_eq!(zmtp::pong_for(b"\x04PING\x00\x00").unwrap(), b"\x04\x05\x04PONG");
        assert!(zmtp::pong_for(b"\x04PING\x00").is_none(), "no TTL");
        assert!(zmtp::pong_for(&[b"\x04PING\x00\x00".as_slice(), &[7; 17]].concat()).is_none(), "context over 16");
        assert!(zmtp::pong_for(b"\x05READY").is_none());
    }
}
