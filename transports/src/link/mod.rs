//! What the TCP and ZeroMQ transports share: options, counters, the per-peer outbound
//! task (bounded queue, lazy connect, backoff, deadlines), the inbound channel and the
//! shutdown signal, and the endpoint itself ([`NetTransport`]: bind, accessors, the
//! [`Transport`] impl). Each transport only supplies a `Connector` (how to dial a peer
//! and write a batch) and its own reader for inbound connections.
//!
//! Why one task per peer: a peer that is down, slow or paused (SIGSTOP) stalls only its
//! own task and its own bounded queue; `send` to every other peer goes on, and `send`
//! itself never waits.

mod inbound;
mod outbound;
mod peer_task;
mod stats;

pub(crate) use self::inbound::{accept_loop, deliver_as, read_body, read_first_byte, LastFrame};
pub(crate) use self::outbound::Connector;
use self::outbound::Outbound;
pub(crate) use self::stats::{bump, Counters, Refusal};
pub use self::stats::{StatsHandle, WireStats};
use crate::addr::PeerAddr;
use crate::envelope::{Envelope, SendError, Transport};
use crate::wire;
use async_trait::async_trait;
use ballot_core::{Message, NodeId};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long an inbound connection may stay silent by default (see
/// [`NetOptions::idle_timeout`]).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a network transport. Every network wait has a deadline here.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// Messages waiting per peer; past it `send` drops and says `QueueFull`.
    pub queue_capacity: usize,
    /// Received messages waiting for `recv`; past it readers stop reading, which pushes
    /// back on the senders through TCP instead of growing memory.
    pub inbox_capacity: usize,
    /// Largest frame body sent or accepted.
    pub max_frame: usize,
    /// Deadline to open a connection (and, for ZeroMQ, finish its handshake).
    pub connect_timeout: Duration,
    /// A write that makes no progress for this long closes the connection: a paused
    /// peer must not hold its queue forever.
    pub write_timeout: Duration,
    /// Once a frame has started, the rest of it must arrive within this time.
    pub frame_timeout: Duration,
    /// An inbound connection silent this long is closed, so that peers that vanished
    /// (a killed client, a half-open connection) or never meant to talk do not hold the
    /// listener's slots ([`NetOptions::max_inbound`]). A quiet peer is normal, and closing
    /// under it would lose the first message it wrote afterwards into the closed
    /// connection; so a sender drops its own connection after half of this without a
    /// write (see `peer_task`), and its next message dials afresh. That holds while both
    /// ends use the same value (the default: several seconds, 200 leader heartbeats at
    /// the default 50 ms, so a busy link is never idle). `None` keeps idle connections.
    pub idle_timeout: Option<Duration>,
    /// Inbound connections open at once per listener; more are closed as soon as they
    /// are accepted and counted (`connections_refused`). A cluster needs one per peer
    /// (nodes and clients); 3,000 idle connections used to cost 155 MB.
    pub max_inbound: usize,
    /// Senders not configured as peers whose `reply_to` address is remembered (voters'
    /// clients, learners that joined); past this the one heard from least recently is
    /// forgotten and counted (`peers_evicted`): 60,000 client ids used to hold 240 MiB.
    pub max_learned_peers: usize,
    /// First wait before reconnecting after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// Most bytes gathered into one write when messages queue up.
    pub batch_bytes: usize,
    /// This endpoint's credentials: with them every connection, either way, proves both
    /// ends (mutual TLS on tcp, CURVE on zmq) and a frame whose `from` the proven identity
    /// does not permit is dropped and closes its connection; `None` is an insecure
    /// endpoint.
    pub credentials: Option<std::sync::Arc<crate::auth::Credentials>>,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            queue_capacity: 4096,
            inbox_capacity: 65_536,
            max_frame: wire::DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_inbound: 1024,
            max_learned_peers: 1024,
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(500),
            batch_bytes: 256 * 1024,
            credentials: None,
        }
    }
}

/// Dropping the sender tells every task of the transport to end.
pub(crate) type Shutdown = watch::Receiver<()>;

/// Resolves when the transport that owns the sender is gone.
pub(crate) async fn closed(mut shutdown: Shutdown) {
    while shutdown.changed().await.is_ok() {}
}

/// Spawns `fut` so that it ends when the transport is dropped, whatever it waits on.
pub(crate) fn spawn_scoped(
    rt: &tokio::runtime::Handle,
    shutdown: &Shutdown,
    fut: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.clone();
    rt.spawn(async move {
        tokio::select! {
            _ = closed(shutdown) => {}
            _ = fut => {}
        }
    });
}

/// A node's endpoint over a socket transport: a listener whose accepted connections are
/// read by the transport's own serve function, and the per-peer outbound tasks built on
/// its connector. [`crate::TcpTransport`] and [`crate::ZmqTransport`] are this type with
/// their connector; each adds its own `bind`. Dropping it ends every task; the listener
/// closes as its task ends, a moment later (a restart on the same port retries its bind).
///
/// Peers are [`PeerAddr`]s: an IP address is dialled as it is; a host name is looked up
/// (within `connect_timeout`) each time a fresh connection is dialled, so a peer that
/// restarted at another address is found there once its old connection has failed.
pub struct NetTransport<C> {
    local: NodeId,
    local_addr: SocketAddr,
    /// Stamped on every outgoing envelope as `reply_to`: the listen address, or none when
    /// bound to an unspecified address, which a peer could not dial (unless
    /// [`NetTransport::set_advertise`] names one).
    advertise: Option<SocketAddr>,
    out: Outbound<C>,
    rx: mpsc::Receiver<Envelope>,
    stats: Arc<Counters>,
    _shutdown: watch::Sender<()>,
}

impl<C: Connector + Default> NetTransport<C> {
    /// Listens on `listen`, runs `serve` for every accepted connection and knows
    /// `peers` by address. Must be called inside a tokio runtime.
    pub(crate) async fn bind_with<S, Fut>(
        local: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        opts: NetOptions,
        serve: S,
    ) -> io::Result<Self>
    where
        S: Fn(tokio::net::TcpStream, Arc<NetOptions>, Arc<Counters>, mpsc::Sender<Envelope>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::bind_parts(local, listen, peers, opts, |_| C::default(), serve).await
    }
}

impl<C: Connector> NetTransport<C> {
    /// [`NetTransport::bind_with`], with each peer's connector made by `make` for that
    /// peer (a TLS connector must know whom it means to reach).
    pub(crate) async fn bind_parts<S, Fut>(
        local: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        opts: NetOptions,
        make: impl Fn(NodeId) -> C + Send + Sync + 'static,
        serve: S,
    ) -> io::Result<Self>
    where
        S: Fn(tokio::net::TcpStream, Arc<NetOptions>, Arc<Counters>, mpsc::Sender<Envelope>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let opts = Arc::new(opts);
        let stats = Arc::new(Counters::default());
        let (inbox, rx) = mpsc::channel(opts.inbox_capacity.max(1));
        let (shutdown_tx, shutdown) = watch::channel(());
        let rt = tokio::runtime::Handle::current();

        let serve = {
            let (opts, stats, inbox) = (opts.clone(), stats.clone(), inbox.clone());
            move |stream| serve(stream, opts.clone(), stats.clone(), inbox.clone())
        };
        let max_inbound = opts.max_inbound;
        let accepting = accept_loop(listener, stats.clone(), rt.clone(), shutdown.clone(), max_inbound, serve);
        spawn_scoped(&rt, &shutdown, accepting);

        let out = Outbound::new(local, make, opts, stats.clone(), inbox, rt, shutdown);
        for (id, addr) in peers {
            out.set_peer(id, PeerAddr::Ip(addr));
        }
        let advertise = (!local_addr.ip().is_unspecified()).then_some(local_addr);
        Ok(NetTransport { local, local_addr, advertise, out, rx, stats, _shutdown: shutdown_tx })
    }
}

impl<C: Connector> NetTransport<C> {
    /// The address this node listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a peer or changes its address (a peer that moved is redialled).
    pub fn set_peer(&self, id: NodeId, addr: impl Into<PeerAddr>) {
        self.out.set_peer(id, addr.into());
    }

    /// The address a peer is known by (a host name stays a name: it is resolved at each
    /// fresh connection).
    pub fn peer_addr(&self, id: NodeId) -> Option<PeerAddr> {
        self.out.peer_addr(id)
    }

    /// Stamp `addr` on outgoing envelopes as where to answer this node, instead of the
    /// listen address: for a node that listens on 0.0.0.0, the address others reach it at.
    /// `None` stamps nothing.
    pub fn set_advertise(&mut self, addr: Option<SocketAddr>) {
        self.advertise = addr;
    }

    /// What outgoing envelopes carry as `reply_to`.
    pub fn advertise(&self) -> Option<SocketAddr> {
        self.advertise
    }

    /// How many peers this endpoint holds a queue for: the configured ones and the
    /// learned ones (at most [`NetOptions::max_learned_peers`] of those).
    pub fn known_peers(&self) -> usize {
        self.out.known_peers()
    }

    /// The counters now.
    pub fn stats(&self) -> WireStats {
        self.stats.snapshot()
    }

    /// Counters that stay readable after the transport is gone.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.stats.clone())
    }
}

#[async_trait]
impl<C: Connector> Transport for NetTransport<C> {
    fn local(&self) -> NodeId {
        self.local
    }

    fn send(&self, mut envelope: Envelope) -> Result<(), SendError> {
        if envelope.reply_to.is_none() {
            envelope.reply_to = self.advertise;
        }
        self.out.send(envelope)
    }

    async fn recv(&mut self) -> Option<Envelope> {
        let env = self.rx.recv().await?;
        self.learn_address(&env);
        Some(env)
    }

    fn try_recv(&mut self) -> Option<Envelope> {
        let env = self.rx.try_recv().ok()?;
        self.learn_address(&env);
        Some(env)
    }
}

impl<C: Connector> NetTransport<C> {
    /// Answer a sender we have no address for at the address it advertises. A client's
    /// address is always taken afresh (a restarted client listens on a new port); a
    /// configured node's is never overridden by what a message claims (one known by name
    /// is looked up again when it claims a new address, see [`Outbound::heard_from`]).
    /// A [`Message::Hello`] says the sender (re)started: our connection to it is dropped
    /// and dialled afresh at the next message (see [`Outbound::restarted`]).
    fn learn_address(&self, env: &Envelope) {
        if env.from == self.local {
            return;
        }
        if let Some(addr) = env.reply_to {
            self.out.heard_from(env.from, addr);
        }
        if matches!(env.msg, Message::Hello) {
            self.out.restarted(env.from);
        }
    }
}
