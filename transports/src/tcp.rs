//! [`TcpTransport`]: ballot frames (see [`crate::wire`]) over TCP with tokio, plain or in
//! mutual TLS.
//!
//! Outbound, each peer has a task with a bounded queue that dials lazily, redials with
//! backoff after a failure, and closes a connection whose write stalls (see
//! [`crate::link`]). Inbound, each accepted connection has a reader task; a bad frame
//! (oversized, not ours, another version, undecodable) is counted and closes that
//! connection only. Nothing on the inbound side waits for a peer while holding up
//! another one.
//!
//! With [`NetOptions::credentials`] every connection is mutual TLS ([`crate::tls`]): a
//! dial verifies that the listener is the peer it means to reach, and a listener reads the
//! dialer's identity from its certificate and drops (counting `dropped_identity`) every
//! frame that identity may not send. A handshake that fails or outlasts `connect_timeout`
//! is counted as `refused_handshake` and closes only its connection; it runs in the
//! connection's own task, never in the accept loop. Without credentials nothing changes:
//! plain TCP, and every frame is taken as sent.

use crate::auth::Identity;
use crate::envelope::Envelope;
use crate::link::{self, Connector, Counters, NetOptions, NetTransport, Refusal};
use crate::tls::{self, TlsConfigs};
use crate::wire::{self, WireError};
use ballot_core::NodeId;
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

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
        let Some(creds) = opts.credentials.clone() else {
            return NetTransport::bind_with(local, listen, peers, opts, |stream, opts, stats, inbox| {
                let peer = stream.peer_addr().ok();
                read_frames(stream, peer, None, opts, stats, inbox)
            })
            .await;
        };
        // Once per transport: every connection shares these.
        let configs = TlsConfigs::new(&creds).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let connector = TlsConnector::from(configs.client);
        let acceptor = TlsAcceptor::from(configs.server);
        let make = move |peer| TcpConnector::tls(connector.clone(), peer);
        let serve = move |stream, opts, stats, inbox| serve_tls(stream, acceptor.clone(), opts, stats, inbox);
        NetTransport::bind_parts(local, listen, peers, opts, make, serve).await
    }
}

/// The connector lives in a private module: it is `pub` only so that the public alias
/// over [`NetTransport`] may name it; nothing outside the crate can.
mod connector {
    use super::*;

    /// Dials with `TCP_NODELAY` (and, with credentials, a TLS handshake that must show the
    /// peer's certificate) and writes a batch of length-prefixed frames in one go.
    #[derive(Default)]
    pub struct TcpConnector {
        batch: Vec<u8>,
        /// With credentials: the TLS client and the name the peer's certificate must bear.
        tls: Option<(TlsConnector, ServerName<'static>)>,
        /// The last handshake failed (logged once per run of failures).
        failing: bool,
    }

    /// One outbound connection.
    pub enum TcpConn {
        /// Plain TCP.
        Plain(TcpStream),
        /// Mutual TLS over TCP.
        Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    }

    impl TcpConnector {
        /// A connector that reaches `peer` in TLS, checking that it proves `peer`'s identity.
        pub(crate) fn tls(connector: TlsConnector, peer: NodeId) -> Self {
            TcpConnector { batch: Vec::new(), tls: Some((connector, tls::server_name(peer))), failing: false }
        }
    }

    impl Connector for TcpConnector {
        type Conn = TcpConn;

        async fn connect(&mut self, addr: SocketAddr) -> io::Result<TcpConn> {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let Some((connector, name)) = &self.tls else { return Ok(TcpConn::Plain(stream)) };
            match connector.connect(name.clone(), stream).await {
                Ok(s) => {
                    self.failing = false;
                    Ok(TcpConn::Tls(Box::new(s)))
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.failing, true) {
                        let peer = name.to_str();
                        tracing::warn!(%peer, %addr, "TLS handshake failed ({e}); retrying at the next message");
                    }
                    Err(e)
                }
            }
        }

        fn push(&mut self, env: &Envelope, max_frame: usize) -> Result<(), WireError> {
            wire::encode_frame_into(env, max_frame, &mut self.batch)
        }

        fn pending_bytes(&self) -> usize {
            self.batch.len()
        }

        async fn flush<'a>(&'a mut self, conn: &'a mut TcpConn) -> io::Result<()> {
            let result = match conn {
                TcpConn::Plain(s) => s.write_all(&self.batch).await,
                // rustls keeps what the socket did not take yet: flush pushes it out.
                TcpConn::Tls(s) => match s.write_all(&self.batch).await {
                    Ok(()) => s.flush().await,
                    Err(e) => Err(e),
                },
            };
            self.clear();
            result
        }

        async fn closed(conn: &mut TcpConn) {
            let mut scratch = [0u8; 512];
            loop {
                let got = match conn {
                    TcpConn::Plain(s) => s.read(&mut scratch).await,
                    TcpConn::Tls(s) => s.read(&mut scratch).await,
                };
                if !matches!(got, Ok(n) if n > 0) {
                    return;
                }
            }
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

/// Runs the TLS handshake of one inbound connection, within `connect_timeout` (the
/// deadline a dialer gives it too), then reads its frames as the identity its certificate
/// names. A failed or slow handshake, or a certificate that names no identity, is counted
/// and ends only this connection.
async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    opts: Arc<NetOptions>,
    stats: Arc<Counters>,
    inbox: mpsc::Sender<Envelope>,
) {
    let from = stream.peer_addr().ok();
    let refused = |why: &dyn std::fmt::Display| {
        stats.refuse(Refusal::RefusedHandshake, from, &format!("tcp: a TLS handshake failed: {why}"));
    };
    let tls = match timeout(opts.connect_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return refused(&e),
        Err(_) => return refused(&"no handshake within the connect deadline"),
    };
    let Some(identity) = tls::peer_identity(tls.get_ref().1) else {
        return refused(&"its certificate names no identity");
    };
    read_frames(tls, from, Some(identity), opts, stats, inbox).await
}

/// Reads frames from one inbound connection until it closes or sends something bad.
/// `identity`: who the connection proved to be (TLS), `None` on plain TCP.
async fn read_frames<S: AsyncRead + Unpin>(
    stream: S,
    peer: Option<SocketAddr>,
    identity: Option<Identity>,
    opts: Arc<NetOptions>,
    stats: Arc<Counters>,
    inbox: mpsc::Sender<Envelope>,
) {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut body = Vec::new();
    let mut last = link::LastFrame::default();
    loop {
        let first = match link::read_first_byte(&mut r, opts.idle_timeout).await {
            Ok(Some(b)) => b,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return,
            // The end of the stream, or a reset: the peer closed or crashed.
            _ => return last.closed(&opts, &stats, &inbox),
        };
        let frame = async {
            let mut prefix = [first, 0, 0, 0];
            r.read_exact(&mut prefix[1..]).await.map_err(|_| None)?;
            let len = wire::decode_prefix(prefix, opts.max_frame).map_err(Some)?;
            link::read_body(&mut r, len, &mut body).await.map_err(|_| None)
        };
        match timeout(opts.frame_timeout, frame).await {
            Ok(Ok(())) => {}
            Ok(Err(Some(e))) => return stats.refused(&e, peer),
            // The peer vanished in the middle of a frame (a crash while it wrote)...
            Ok(Err(None)) => {
                last.closed(&opts, &stats, &inbox);
                return stats.refuse(Refusal::Truncated, peer, &"tcp: a frame cut short or stalled");
            }
            // ... or stalled there (paused: that needs the timeouts).
            Err(_) => return stats.refuse(Refusal::Truncated, peer, &"tcp: a frame cut short or stalled"),
        }
        if link::deliver_as(&body, peer, identity, &stats, &inbox, &mut last).await.is_err() {
            return;
        }
        if body.capacity() > 1 << 20 {
            body = Vec::new();
        }
    }
}
