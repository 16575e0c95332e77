//! The outbound side of a network transport: the [`Connector`] each transport supplies,
//! and [`Outbound`], one bounded queue and task per peer plus delivery to itself.

use super::peer_task::PeerTask;
use super::{bump, spawn_scoped, Counters, NetOptions, Shutdown, StatsHandle};
use crate::addr::PeerAddr;
use crate::envelope::{Envelope, SendError};
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// `pub` in a private module: a bound of the public [`NetTransport`] impls, which nothing
/// outside the crate can name or implement.
mod connector {
    use super::{NetOptions, StatsHandle};
    use crate::envelope::Envelope;
    use crate::wire::WireError;
    use ballot_core::NodeId;
    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;

    /// How one transport dials a peer and writes to it. The connector owns the batch being
    /// built, so each transport keeps its own framing.
    pub trait Connector: Send + 'static {
        type Conn: Send;
        /// Called once, before anything else, by the task of `peer`: whom this connector
        /// dials (with credentials, the identity the other end must prove), and the
        /// counters for what its dials refuse. The default needs neither.
        fn init(&mut self, _peer: NodeId, _opts: &NetOptions, _stats: &StatsHandle) {}
        fn connect(&mut self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>> + Send;
        /// Adds one envelope to the pending batch; on error the batch is unchanged.
        fn push(&mut self, env: &Envelope, max_frame: usize) -> Result<(), WireError>;
        fn pending_bytes(&self) -> usize;
        /// Writes the pending batch and empties it (also on error).
        fn flush<'a>(&'a mut self, conn: &'a mut Self::Conn) -> impl Future<Output = io::Result<()>> + Send + 'a;
        fn clear(&mut self);
        /// Returns once the peer has closed `conn` (end of stream or reset). What the
        /// peer sends before is read and dropped: our receivers never answer on a
        /// connection, but TLS sends session tickets. The default never returns.
        fn closed(_conn: &mut Self::Conn) -> impl Future<Output = ()> + Send + '_ {
            std::future::pending()
        }
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

/// Peers known only from their messages (`reply_to`), oldest heard first: at most
/// [`NetOptions::max_learned_peers`], so that senders with ever new names (a client id
/// per voter) cannot grow the peer table, a task and a queue each, without bound.
#[derive(Default)]
struct Learned {
    /// When each was last heard from, by a counter of messages heard.
    heard: BTreeMap<NodeId, u64>,
    /// The same, ordered by that counter: the first is the least recently heard.
    by_age: BTreeMap<u64, NodeId>,
    clock: u64,
}

impl Learned {
    /// `id` was heard from now.
    fn touch(&mut self, id: NodeId) {
        self.clock += 1;
        if let Some(old) = self.heard.insert(id, self.clock) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.clock, id);
    }

    /// `id` is configured now: never evicted.
    fn forget(&mut self, id: NodeId) {
        if let Some(at) = self.heard.remove(&id) {
            self.by_age.remove(&at);
        }
    }

    /// The least recently heard, removed, while more than `max` are held.
    fn over(&mut self, max: usize) -> Option<NodeId> {
        if self.heard.len() <= max {
            return None;
        }
        let (_, id) = self.by_age.pop_first()?;
        self.heard.remove(&id);
        Some(id)
    }
}

/// Every peer's link, and which of them were only learned.
#[derive(Default)]
struct Peers {
    links: BTreeMap<NodeId, PeerLink>,
    learned: Learned,
}

/// The outbound side of a transport: one queue and task per peer, plus delivery to
/// itself.
pub(crate) struct Outbound<C> {
    local: NodeId,
    make: Box<dyn Fn(NodeId) -> C + Send + Sync>,
    peers: Mutex<Peers>,
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
        make: impl Fn(NodeId) -> C + Send + Sync + 'static,
        opts: Arc<NetOptions>,
        stats: Arc<Counters>,
        inbox: mpsc::Sender<Envelope>,
        rt: tokio::runtime::Handle,
        shutdown: Shutdown,
    ) -> Self {
        Outbound { local, make: Box::new(make), peers: Mutex::new(Peers::default()), opts, stats, inbox, rt, shutdown }
    }

    /// Adds a peer or moves it to a new address; a moved peer is redialled at once. A
    /// peer set here is configured: never evicted, even if it was learned first.
    pub(crate) fn set_peer(&self, id: NodeId, addr: PeerAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.learned.forget(id);
        self.set_peer_locked(&mut peers.links, id, addr);
    }

    /// Peers with a queue: configured and learned.
    pub(crate) fn known_peers(&self) -> usize {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).links.len()
    }

    /// What a message from `id` says about where it listens (its `reply_to`): a sender we
    /// have no address for is answered there, and a client always at its latest address.
    /// A configured node's address is never replaced by what a message claims; for one
    /// known by name, a new address only makes its task look the name up again.
    pub(crate) fn heard_from(&self, id: NodeId, addr: SocketAddr) {
        let mut guard = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let peers = &mut *guard;
        if peers.learned.heard.contains_key(&id) {
            peers.learned.touch(id);
        }
        let Some(link) = peers.links.get(&id) else {
            peers.learned.touch(id);
            self.set_peer_locked(&mut peers.links, id, PeerAddr::Ip(addr));
            // The least recently heard learned peer goes: its task ends with its queue.
            while let Some(old) = peers.learned.over(self.opts.max_learned_peers.max(1)) {
                peers.links.remove(&old);
                bump(&self.stats.peers_evicted, 1);
            }
            return;
        };
        let moved_client = match &*link.addr.borrow() {
            PeerAddr::Ip(known) => *known != addr && id.role == ballot_core::Role::Client,
            PeerAddr::Host { .. } => {
                link.heard_at.send_if_modified(|h| h.replace(addr) != Some(addr));
                false
            }
        };
        if moved_client {
            self.set_peer_locked(&mut peers.links, id, PeerAddr::Ip(addr));
        }
    }

    /// `id` says it (re)started: its task drops the connection it holds, and the next
    /// message dials afresh (looking a name up again) without waiting out a backoff.
    pub(crate) fn restarted(&self, id: NodeId) {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = peers.links.get(&id) {
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
        let mut conn = (self.make)(id);
        conn.init(id, &self.opts, &StatsHandle(self.stats.clone()));
        let task = PeerTask {
            peer: id,
            conn,
            resolved: None,
            resolve_failing: false,
            rx,
            addr: addr_rx,
            heard_at: heard_rx,
            restarted: restarted_rx,
            opts: self.opts.clone(),
            stats: self.stats.clone(),
            local: self.local,
            inbox: self.inbox.clone(),
        };
        spawn_scoped(&self.rt, &self.shutdown, task.run());
        peers.insert(id, PeerLink { tx, addr: addr_tx, heard_at: heard_tx, restarted: restarted_tx });
    }

    pub(crate) fn peer_addr(&self, id: NodeId) -> Option<PeerAddr> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.links.get(&id).map(|l| l.addr.borrow().clone())
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
        let Some(link) = peers.links.get(&to) else {
            return Err(SendError::UnknownPeer(to));
        };
        match link.tx.try_send(env) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => full(&self.stats),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed(self.local)),
        }
    }
}
