//! [`ZmqTransport`]: ballot frame bodies (see [`crate::wire`]) as ZeroMQ PUSH/PULL
//! messages (ZMTP 3.0), so any ZeroMQ peer can reach a node. Without credentials it
//! speaks the NULL mechanism; with them ([`NetOptions::credentials`]), CURVE (RFC 26):
//! both ends prove their keys, every message is sealed, and a frame whose `from` the
//! sender's proven identity does not permit is dropped.
//!
//! Both sides are our own ZMTP, on tokio's TCP:
//! - `pull`: the PULL listener. Under CURVE it is the server: it holds its identity's
//!   key pair, checks the client's long-term key (from INITIATE, its vouch verified)
//!   against the allow-list, and stamps the identity found there on the connection.
//! - `dial`: the PUSH side of an outgoing connection, up to its READY. Under CURVE it is
//!   the client, and knows the server's key by the identity it means to reach
//!   ([`Identity::of`](crate::auth::Identity::of) of the peer, looked up in the
//!   allow-list): whoever answers at the address must hold that identity's secret.
//! - `curve`: the CURVE handshake and the sealed messages, without I/O.
//! - [`zmtp`]: greetings, commands, frame headers, and the bounded reads of a handshake.
//! - `raw`: a raw CURVE client for the conformance suite's byte-level cases.
//!
//! Why not a ZeroMQ crate: the `zeromq` crate (0.7), used here before, reserves whatever
//! length a peer announces in a frame header, on its outgoing handshake as on its
//! reader: 73 bytes (a greeting and a header claiming 4 TiB) abort the process, and a node
//! dials the `reply_to` of any sender it does not know. It has no CURVE either. Ours
//! checks every length against its limit before reading ([`NetOptions::max_frame`] for
//! messages, [`zmtp::MAX_COMMAND`] during a handshake) and closes only the offending
//! connection.
//!
//! Outbound, each peer has a task (shared with TCP, see [`crate::link`]) that owns one
//! connection: batches of message frames are written in one go, as TCP's are. A write
//! that fails or takes longer than the write deadline (a paused peer) drops the
//! connection, and the next message dials afresh after the back-off; the messages written
//! into a connection whose peer died are lost, as Paxos allows. A restarted node also
//! says `Hello`, which drops the connection at once (see [`crate::link`]): where the dead
//! peer's address vanished with it (a container), no error ever comes, and only that
//! brings it back.

mod curve;
mod dial;
mod pull;
mod raw;
pub mod zmtp;

use self::dial::{DialPlan, HandshakeError, ZmqConn};
pub(crate) use self::raw::CurveRawDial;
use crate::envelope::Envelope;
use crate::link::{self, Connector, Counters, NetOptions, NetTransport, StatsHandle};
use crate::wire::{self, WireError};
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
        NetTransport::bind_with(local, listen, peers, opts, pull::serve_pull).await
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

    /// One connection per peer. A batch is built in place: each message is encoded behind
    /// room for its frame header (and, under CURVE, its box), and sealed at flush, when
    /// the connection (and so its cipher and nonces) is known; then one write.
    #[derive(Default)]
    pub struct ZmqConnector {
        peer: Option<NodeId>,
        plan: DialPlan,
        stats: Option<Arc<Counters>>,
        batch: Vec<u8>,
        /// Where each frame of the batch starts.
        starts: Vec<usize>,
        /// The last dial was refused (logged once per run of refusals).
        refusing: bool,
    }

    impl ZmqConnector {
        fn count(&mut self, e: &HandshakeError) {
            let Some(stats) = &self.stats else { return };
            match e {
                HandshakeError::Refused(why) => {
                    link::bump(&stats.refused_handshake, 1);
                    if !self.refusing {
                        let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
                        tracing::warn!(%peer, "zmq: the handshake with the peer was refused ({why}); retrying at the next message");
                        self.refusing = true;
                    }
                }
                HandshakeError::Bad(_) => link::bump(&stats.bad_handshake, 1),
                HandshakeError::Quiet => {}
            }
        }
    }

    impl Connector for ZmqConnector {
        type Conn = ZmqConn;

        fn init(&mut self, peer: NodeId, opts: &NetOptions, stats: &StatsHandle) {
            self.peer = Some(peer);
            self.stats = Some(stats.0.clone());
            self.plan = DialPlan::for_peer(peer, opts.credentials.as_deref());
        }

        async fn connect(&mut self, addr: SocketAddr) -> io::Result<ZmqConn> {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            match dial::handshake(stream, &self.plan).await {
                Ok(conn) => {
                    self.refusing = false;
                    Ok(conn)
                }
                Err(e) => {
                    self.count(&e);
                    Err(io::Error::other(e.to_string()))
                }
            }
        }

        fn push(&mut self, env: &Envelope, max_frame: usize) -> Result<(), WireError> {
            let start = self.batch.len();
            let sealed = self.plan.sealed();
            let room = if sealed { curve::SEALED_PREFIX } else { zmtp::LONG_HEADER_LEN };
            self.batch.resize(start + room, 0);
            let len = wire::encode_body_into(env, &mut self.batch)
                .and_then(|()| wire::check_len((self.batch.len() - start - room) as u64, max_frame));
            let len = match len {
                Ok(len) => len,
                Err(e) => {
                    self.batch.truncate(start);
                    return Err(e);
                }
            };
            let mut head = Vec::with_capacity(room);
            if sealed {
                curve::put_message_prefix(&mut head, 0, len);
            } else {
                head.extend(zmtp::message_header(len as u64));
            }
            self.batch[start..start + room].copy_from_slice(&head);
            self.starts.push(start);
            Ok(())
        }

        fn pending_bytes(&self) -> usize {
            self.batch.len()
        }

        async fn flush<'a>(&'a mut self, conn: &'a mut ZmqConn) -> io::Result<()> {
            let mut result = Ok(());
            if let Some(cipher) = conn.cipher.as_mut() {
                let ends = self.starts.iter().skip(1).copied().chain([self.batch.len()]);
                for (start, end) in self.starts.iter().copied().zip(ends) {
                    result = result.and_then(|()| cipher.seal_in_place(&mut self.batch[start..end]));
                }
            }
            if result.is_ok() {
                result = conn.stream.write_all(&self.batch).await;
            }
            self.clear();
            result
        }

        async fn closed(conn: &mut ZmqConn) {
            use tokio::io::AsyncReadExt;
            // A PULL side has nothing to say: whatever it sends is dropped unread.
            let mut scratch = [0u8; 512];
            while matches!(conn.stream.read(&mut scratch).await, Ok(n) if n > 0) {}
        }

        fn clear(&mut self) {
            self.batch.clear();
            self.starts.clear();
            // Keep a modest buffer, not the largest batch ever sent.
            if self.batch.capacity() > 1 << 20 {
                self.batch.shrink_to(64 * 1024);
            }
        }
    }
}
use connector::ZmqConnector;
