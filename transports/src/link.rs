//! What the TCP and ZeroMQ transports share: options, counters, the per-peer outbound
//! task (bounded queue, lazy connect, backoff, deadlines), the inbound channel and the
//! shutdown signal, and the endpoint itself ([`NetTransport`]: bind, accessors, the
//! [`Transport`] impl). Each transport only supplies a [`Connector`] (how to dial a peer
//! and write a batch) and its own reader for inbound connections.
//!
//! Why one task per peer: a peer that is down, slow or paused (SIGSTOP) stalls only its
//! own task and its own bounded queue; `send` to every other peer goes on, and `send`
//! itself never waits.

use crate::addr::PeerAddr;
use crate::envelope::{Envelope, SendError, Transport};
use crate::wire::{self, WireError};
use async_trait::async_trait;
use ballot_core::{Message, NodeId};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

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
    /// An inbound connection silent this long is closed. `None` keeps it: a quiet peer is
    /// normal, and closing under it would lose the first message it sends afterwards.
    pub idle_timeout: Option<Duration>,
    /// First wait before reconnecting after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Most bytes gathered into one write when messages queue up.
    pub batch_bytes: usize,
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
            idle_timeout: None,
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(500),
            batch_bytes: 256 * 1024,
        }
    }
}

/// What a network transport did, as counters since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Bytes handed to the socket, in the transport's own framing (TCP counts its length
    /// prefixes, ZeroMQ only the bodies).
    pub bytes_sent: u64,
    /// Bodies received and decoded.
    pub bytes_received: u64,
    /// `send` found the peer's queue full.
    pub dropped_queue_full: u64,
    /// A frame over the size limit, either way.
    pub dropped_oversized: u64,
    /// A frame whose body was not ours or did not decode (bad magic, bad rmp).
    pub dropped_decode: u64,
    /// A frame from another protocol version.
    pub dropped_version: u64,
    /// Frames lost on our side because the peer could not be reached or a write failed.
    pub dropped_unreachable: u64,
    /// An inbound connection closed in the middle of a frame, or too slowly.
    pub truncated: u64,
    /// An inbound connection that failed the ZMTP handshake (ZeroMQ only).
    pub bad_handshake: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Failed dials, including those whose peer name did not resolve.
    pub connect_failures: u64,
    /// Lookups of peers' host names (one per fresh connection to a named peer).
    pub name_lookups: u64,
    /// Lookups that failed or timed out.
    pub name_lookup_failures: u64,
}

macro_rules! counters {
    ($($f:ident),*) => {
        /// The live counters behind [`WireStats`]; shared with every task.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $(pub(crate) $f: AtomicU64,)* }
        impl Counters {
            pub(crate) fn snapshot(&self) -> WireStats {
                WireStats { $($f: self.$f.load(Ordering::Relaxed),)* }
            }
        }
    };
}
counters!(
    frames_sent,
    frames_received,
    bytes_sent,
    bytes_received,
    dropped_queue_full,
    dropped_oversized,
    dropped_decode,
    dropped_version,
    dropped_unreachable,
    truncated,
    bad_handshake,
    connections_opened,
    connections_closed,
    connect_failures,
    name_lookups,
    name_lookup_failures
);

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Counts a refused frame under its reason.
    pub(crate) fn refused(&self, err: &WireError) {
        let c = match err {
            WireError::Oversized { .. } => &self.dropped_oversized,
            WireError::UnknownVersion(_) => &self.dropped_version,
            WireError::Truncated { .. } => &self.truncated,
            WireError::BadMagic | WireError::Decode(_) | WireError::Encode(_) => &self.dropped_decode,
        };
        bump(c, 1);
    }
}

/// A cheap, cloneable view of a transport's counters that outlives the transport (for
/// test harnesses and metrics).
#[derive(Clone, Debug)]
pub struct StatsHandle(pub(crate) Arc<Counters>);

impl StatsHandle {
    pub fn get(&self) -> WireStats {
        self.0.snapshot()
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

/// Exponential backoff between connection attempts to one peer.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
    next: Instant,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, delay: min, next: Instant::now() }
    }
    /// Waits until the next attempt is allowed.
    pub(crate) async fn wait(&self) {
        sleep_until(self.next).await;
    }
    pub(crate) fn failed(&mut self) {
        self.next = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(self.max);
    }
    pub(crate) fn succeeded(&mut self) {
        self.delay = self.min;
    }
    pub(crate) fn reset(&mut self) {
        self.delay = self.min;
        self.next = Instant::now();
    }
}

/// `pub` in a private module: a bound of the public [`NetTransport`] impls, which nothing
/// outside the crate can name or implement.
mod connector {
    use super::*;

    /// How one transport dials a peer and writes to it. The connector owns the batch being
    /// built, so each transport keeps its own framing.
    pub trait Connector: Send + 'static {
        type Conn: Send;
        fn connect(&mut self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>> + Send;
        /// Adds one envelope to the pending batch; on error the batch is unchanged.
        fn push(&mut self, env: &Envelope, max_frame: usize) -> Result<(), WireError>;
        fn pending_bytes(&self) -> usize;
        /// Writes the pending batch and empties it (also on error).
        fn flush<'a>(&'a mut self, conn: &'a mut Self::Conn) -> impl Future<Output = io::Result<()>> + Send + 'a;
        fn clear(&mut self);
    }
}
pub(crate) use connector::Connector;

struct PeerLink {
    tx: mpsc::Sender<Envelope>,
    addr: watch::Sender<PeerAddr>,
    /// For a peer known by name: the address its messages last said it listens at. A new
    /// one while connected elsewhere means it probably moved (a restarted container), and
    /// its task redials, looking the name up again: the old connection may be to an
    /// address that silently drops everything, which would take minutes to fail.
    heard_at: watch::Sender<Option<SocketAddr>>,
    /// Bumped at each [`Message::Hello`] from the peer, which it sends when it (re)starts
    /// (a client also before each retry): whatever connection we hold to it may be to its
    /// previous life, and is dropped. Where that life's address vanished with it (a
    /// container's), writes into the old connection succeed and are lost for the minutes
    /// TCP takes to give up.
    restarted: watch::Sender<u64>,
}

/// The outbound side of a transport: one queue and task per peer, plus delivery to
/// itself.
pub(crate) struct Outbound<C> {
    local: NodeId,
    make: Box<dyn Fn() -> C + Send + Sync>,
    peers: Mutex<BTreeMap<NodeId, PeerLink>>,
    opts: Arc<NetOptions>,
    stats: Arc<Counters>,
    inbox: mpsc::Sender<Envelope>,
    rt: tokio::runtime::Handle,
    shutdown: Shutdown,
}

impl<C: Connector> Outbound<C> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: NodeId,
        make: impl Fn() -> C + Send + Sync + 'static,
        opts: Arc<NetOptions>,
        stats: Arc<Counters>,
        inbox: mpsc::Sender<Envelope>,
        rt: tokio::runtime::Handle,
        shutdown: Shutdown,
    ) -> Self {
        Outbound { local, make: Box::new(make), peers: Mutex::new(BTreeMap::new()), opts, stats, inbox, rt, shutdown }
    }

    /// Adds a peer or moves it to a new address; a moved peer is redialled at once.
    pub(crate) fn set_peer(&self, id: NodeId, addr: PeerAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        self.set_peer_locked(&mut peers, id, addr);
    }

    /// What a message from `id` says about where it listens (its `reply_to`): a sender we
    /// have no address for is answered there, and a client always at its latest address.
    /// A configured node's address is never replaced by what a message claims; for one
    /// known by name, a new address only makes its task look the name up again.
    pub(crate) fn heard_from(&self, id: NodeId, addr: SocketAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(link) = peers.get(&id) else {
            return self.set_peer_locked(&mut peers, id, PeerAddr::Ip(addr));
        };
        let moved_client = match &*link.addr.borrow() {
            PeerAddr::Ip(known) => *known != addr && id.role == ballot_core::Role::Client,
            PeerAddr::Host { .. } => {
                link.heard_at.send_if_modified(|h| h.replace(addr) != Some(addr));
                false
            }
        };
        if moved_client {
            self.set_peer_locked(&mut peers, id, PeerAddr::Ip(addr));
        }
    }

    /// `id` says it (re)started: its task drops the connection it holds, and the next
    /// message dials afresh (looking a name up again) without waiting out a backoff.
    pub(crate) fn restarted(&self, id: NodeId) {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = peers.get(&id) {
            link.restarted.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn set_peer_locked(&self, peers: &mut BTreeMap<NodeId, PeerLink>, id: NodeId, addr: PeerAddr) {
        if let Some(link) = peers.get(&id) {
            if !link.tx.is_closed() {
                link.addr.send_if_modified(|a| {
                    let moved = *a != addr;
                    if moved {
                        *a = addr.clone();
                    }
                    moved
                });
                return;
            }
        }
        let (tx, rx) = mpsc::channel(self.opts.queue_capacity.max(1));
        let (addr_tx, addr_rx) = watch::channel(addr);
        let (heard_tx, heard_rx) = watch::channel(None);
        let (restarted_tx, restarted_rx) = watch::channel(0);
        let task = PeerTask {
            peer: id,
            conn: (self.make)(),
            resolved: None,
            resolve_failing: false,
            rx,
            addr: addr_rx,
            heard_at: heard_rx,
            restarted: restarted_rx,
            opts: self.opts.clone(),
            stats: self.stats.clone(),
        };
        spawn_scoped(&self.rt, &self.shutdown, task.run());
        peers.insert(id, PeerLink { tx, addr: addr_tx, heard_at: heard_tx, restarted: restarted_tx });
    }

    pub(crate) fn peer_addr(&self, id: NodeId) -> Option<PeerAddr> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(&id).map(|l| l.addr.borrow().clone())
    }

    /// Queues `env` for its peer without waiting.
    pub(crate) fn send(&self, env: Envelope) -> Result<(), SendError> {
        let to = env.to;
        let full = |stats: &Counters| {
            bump(&stats.dropped_queue_full, 1);
            Err(SendError::QueueFull(to))
        };
        if to == self.local {
            return match self.inbox.try_send(env) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => full(&self.stats),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed(self.local)),
            };
        }
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(link) = peers.get(&to) else {
            return Err(SendError::UnknownPeer(to));
        };
        match link.tx.try_send(env) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => full(&self.stats),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed(self.local)),
        }
    }
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
        spawn_scoped(&rt, &shutdown, accept_loop(listener, stats.clone(), rt.clone(), shutdown.clone(), serve));

        let out = Outbound::new(local, C::default, opts, stats.clone(), inbox, rt, shutdown);
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

/// The task that owns one peer's queue and connection.
struct PeerTask<C: Connector> {
    peer: NodeId,
    conn: C,
    /// The address the last connection went to (for a named peer: what its name
    /// resolved to then), to log when a name starts pointing elsewhere.
    resolved: Option<SocketAddr>,
    /// The last lookup of the peer's name failed (logged once per run of failures).
    resolve_failing: bool,
    rx: mpsc::Receiver<Envelope>,
    addr: watch::Receiver<PeerAddr>,
    heard_at: watch::Receiver<Option<SocketAddr>>,
    restarted: watch::Receiver<u64>,
    opts: Arc<NetOptions>,
    stats: Arc<Counters>,
}

impl<C: Connector> PeerTask<C> {
    async fn run(mut self) {
        let mut link: Option<C::Conn> = None;
        let mut backoff = Backoff::new(self.opts.backoff_min, self.opts.backoff_max);
        loop {
            let first = tokio::select! {
                biased;
                changed = self.addr.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.drop_link(&mut link);
                    backoff.reset();
                    continue;
                }
                heard = self.heard_at.changed() => {
                    if heard.is_err() {
                        return;
                    }
                    let at = *self.heard_at.borrow_and_update();
                    if link.is_some() && at.is_some() && at != self.resolved {
                        tracing::info!(peer = %self.peer, now = ?at, before = ?self.resolved, "the peer says it listens elsewhere: looking its name up again");
                        self.drop_link(&mut link);
                        backoff.reset();
                    }
                    continue;
                }
                restarted = self.restarted.changed() => {
                    if restarted.is_err() {
                        return;
                    }
                    self.restarted.borrow_and_update();
                    if link.is_some() {
                        tracing::debug!(peer = %self.peer, "the peer restarted: dialling it afresh");
                        self.drop_link(&mut link);
                    }
                    backoff.reset();
                    continue;
                }
                env = self.rx.recv() => match env {
                    Some(env) => env,
                    None => return,
                },
            };
            // Gather what is already queued into one write.
            let mut frames = self.push(&first);
            while self.conn.pending_bytes() < self.opts.batch_bytes {
                match self.rx.try_recv() {
                    Ok(env) => frames += self.push(&env),
                    Err(_) => break,
                }
            }
            if frames == 0 {
                continue;
            }
            if link.is_none() {
                // A peer that says it is back (or moved) is dialled at once, not after
                // the back-off its absence built up (up to `backoff_max`, longer than an
                // election timeout: a restarted proposer would hear no leader and run).
                tokio::select! {
                    biased;
                    Ok(()) = self.restarted.changed() => {
                        self.restarted.borrow_and_update();
                        backoff.reset();
                    }
                    Ok(()) = self.addr.changed() => backoff.reset(),
                    () = backoff.wait() => {}
                }
                let addr = self.addr.borrow_and_update().clone();
                match self.dial(&addr).await {
                    Some(c) => {
                        bump(&self.stats.connections_opened, 1);
                        backoff.succeeded();
                        link = Some(c);
                    }
                    None => {
                        bump(&self.stats.connect_failures, 1);
                        bump(&self.stats.dropped_unreachable, frames);
                        self.conn.clear();
                        backoff.failed();
                        continue;
                    }
                }
            }
            let Some(conn) = link.as_mut() else { continue };
            let bytes = self.conn.pending_bytes() as u64;
            match timeout(self.opts.write_timeout, self.conn.flush(conn)).await {
                Ok(Ok(())) => {
                    bump(&self.stats.frames_sent, frames);
                    bump(&self.stats.bytes_sent, bytes);
                }
                _ => {
                    // A failed or stalled write: the peer restarted, died or is paused.
                    // Start over on a fresh connection after a short wait.
                    bump(&self.stats.dropped_unreachable, frames);
                    self.conn.clear();
                    self.drop_link(&mut link);
                    backoff.failed();
                }
            }
        }
    }

    /// Opens a connection to `addr`: for a host name, looks it up afresh (within the
    /// connect deadline) and tries what it resolves to in order, each within the connect
    /// deadline.
    async fn dial(&mut self, addr: &PeerAddr) -> Option<C::Conn> {
        let candidates = match addr {
            PeerAddr::Ip(a) => vec![*a],
            PeerAddr::Host { .. } => {
                bump(&self.stats.name_lookups, 1);
                match addr.lookup_within(self.opts.connect_timeout).await {
                    Ok(found) => {
                        if self.resolve_failing {
                            tracing::info!(peer = %self.peer, %addr, "the peer's name resolves again");
                            self.resolve_failing = false;
                        }
                        found
                    }
                    Err(e) => {
                        bump(&self.stats.name_lookup_failures, 1);
                        if !self.resolve_failing {
                            tracing::warn!(peer = %self.peer, %addr, "cannot resolve the peer's name ({e}); retrying at the next message");
                            self.resolve_failing = true;
                        }
                        return None;
                    }
                }
            }
        };
        // A few at most: each may take the whole connect deadline.
        for a in candidates.into_iter().take(4) {
            if let Ok(Ok(c)) = timeout(self.opts.connect_timeout, self.conn.connect(a)).await {
                if let (PeerAddr::Host { .. }, Some(before)) = (addr, self.resolved) {
                    if before != a {
                        tracing::info!(peer = %self.peer, %addr, now = %a, %before, "the peer moved to another address");
                    }
                }
                self.resolved = Some(a);
                return Some(c);
            }
        }
        None
    }

    fn push(&mut self, env: &Envelope) -> u64 {
        match self.conn.push(env, self.opts.max_frame) {
            Ok(()) => 1,
            Err(e) => {
                self.stats.refused(&e);
                0
            }
        }
    }

    fn drop_link(&self, link: &mut Option<C::Conn>) {
        if link.take().is_some() {
            bump(&self.stats.connections_closed, 1);
        }
    }
}

/// Hands a received body to `recv`, counting it; an error means the connection should
/// close (the frame was bad, or the transport is gone).
pub(crate) async fn deliver(
    body: &[u8],
    stats: &Counters,
    inbox: &mpsc::Sender<Envelope>,
) -> Result<(), Option<WireError>> {
    match wire::decode_body(body) {
        Ok(env) => {
            bump(&stats.frames_received, 1);
            bump(&stats.bytes_received, body.len() as u64);
            inbox.send(env).await.map_err(|_| None)
        }
        Err(e) => {
            stats.refused(&e);
            Err(Some(e))
        }
    }
}

/// Runs `serve` for each accepted connection until the transport is dropped; the
/// listener is dropped with the task.
pub(crate) async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    stats: Arc<Counters>,
    rt: tokio::runtime::Handle,
    shutdown: Shutdown,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                bump(&stats.connections_opened, 1);
                let stats = stats.clone();
                let fut = serve(stream);
                spawn_scoped(&rt, &shutdown, async move {
                    fut.await;
                    bump(&stats.connections_closed, 1);
                });
            }
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Reads exactly `len` bytes into `buf` (cleared first), growing it as bytes arrive so
/// that a large announced length costs nothing until the bytes are really sent.
pub(crate) async fn read_body<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    buf.clear();
    let got = r.take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Waits for the first byte of the next frame, under the idle timeout if there is one.
/// `Ok(None)` is a clean close.
pub(crate) async fn read_first_byte<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    idle: Option<Duration>,
) -> io::Result<Option<u8>> {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 1];
    let n = match idle {
        Some(t) => timeout(t, r.read(&mut b)).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
        None => r.read(&mut b).await?,
    };
    Ok((n == 1).then_some(b[0]))
}
