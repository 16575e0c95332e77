//! [`TcpTransport`]: ballot frames (see [`crate::wire`]) over plain TCP with tokio.
//!
//! Outbound, each peer has a task with a bounded queue that dials lazily, redials with
//! backoff after a failure, and closes a connection whose write stalls (see
//! [`crate::link`]). Inbound, each accepted connection has a reader task; a bad frame
//! (oversized, not ours, another version, undecodable) is counted and closes that
//! connection only. Nothing on the inbound side waits for a peer while holding up
//! another one.

use crate::envelope::Envelope;
use crate::link::{self, Connector, Counters, NetOptions, NetTransport};
use crate::wire::{self, WireError};
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Settings of a [`TcpTransport`].
pub type TcpOptions = NetOptions;

/// A node's endpoint over TCP. Dropping it ends every task; the listener closes as
/// its task ends, a moment later (a restart on the same port retries its bind).
pub type TcpTransport = NetTransport<TcpConnector>;

impl TcpTransport {
    /// Listens on `listen` (port 0 picks a free port, see [`Self::local_addr`]) and
    /// knows `peers` by address (peers known by host name are added with
    /// [`NetTransport::set_peer`]). Must be called inside a tokio runtime.
    pub async fn bind(
        local: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        opts: TcpOptions,
    ) -> io::Result<Self> {
        NetTransport::bind_with(local, listen, peers, opts, read_frames).await
    }
}

/// The connector lives in a private module: it is `pub` only so that the public alias
/// over [`NetTransport`] may name it; nothing outside the crate can.
mod connector {
    use super::*;

    /// Dials with `TCP_NODELAY` and writes a batch of length-prefixed frames in one go.
    #[derive(Default)]
    pub struct TcpConnector {
        batch: Vec<u8>,
    }

    impl Connector for TcpConnector {
        type Conn = TcpStream;

        async fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpStream> {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }

        fn push(&mut self, env: &Envelope, max_frame: usize) -> Result<(), WireError> {
            wire::encode_frame_into(env, max_frame, &mut self.batch)
        }

        fn pending_bytes(&self) -> usize {
            self.batch.len()
        }

        async fn flush<'a>(&'a mut self, conn: &'a mut TcpStream) -> io::Result<()> {
            let result = conn.write_all(&self.batch).await;
            self.clear();
            result
        }

        fn clear(&mut self) {
            self.batch.clear();
            // Keep a modest buffer, not the largest batch ever sent.
            if self.batch.capacity() > 1 << 20 {
                self.batch.shrink_to(64 * 1024);
            }
        }
    }
}
use connector::TcpConnector;

/// Reads frames from one inbound connection until it closes or sends something bad.
async fn read_frames(stream: TcpStream, opts: Arc<NetOptions>, stats: Arc<Counters>, inbox: mpsc::Sender<Envelope>) {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut body = Vec::new();
    loop {
        let first = match link::read_first_byte(&mut r, opts.idle_timeout).await {
            Ok(Some(b)) => b,
            _ => return,
        };
        let frame = async {
            let mut prefix = [first, 0, 0, 0];
            r.read_exact(&mut prefix[1..]).await.map_err(|_| None)?;
            let len = wire::decode_prefix(prefix, opts.max_frame).map_err(Some)?;
            link::read_body(&mut r, len, &mut body).await.map_err(|_| None)
        };
        match timeout(opts.frame_timeout, frame).await {
            Ok(Ok(())) => {}
            Ok(Err(Some(e))) => return stats.refused(&e),
            // The peer vanished or stalled in the middle of a frame.
            Ok(Err(None)) | Err(_) => return link::bump(&stats.truncated, 1),
        }
        if link::deliver(&body, &stats, &inbox).await.is_err() {
            return;
        }
        if body.capacity() > 1 << 20 {
            body = Vec::new();
        }
    }
}
