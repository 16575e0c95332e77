//! Starting one node of the process: its disk state loaded, its transport bound (tcp or
//! zmq, behind the process's fault layer) and its loop spawned.

use super::addr::advertised;
use super::args::NodeArgs;
use ballot_core::{Acceptor, Config, DurableState, Learner, Message, NodeId, PersistOp, Proposer, Role, Storage};
use ballot_disk::{DiskStorage, Identity};
use ballot_runtime::{spawn_node, NodeHandle, NodeOptions};
use ballot_transports::auth::Credentials;
use ballot_transports::{
    Envelope, FaultHandle, Faulty, NetKind, NetOptions, PeerAddr, SocketTransport, StatsHandle, TcpTransport,
    Transport, ZmqTransport,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// What every node of the process shares at start.
pub(super) struct Shared<'a> {
    pub args: &'a NodeArgs,
    pub config: &'a Arc<Config>,
    /// Every node and client of the cluster, as `--peers` wrote them.
    pub peers: &'a BTreeMap<NodeId, PeerAddr>,
    /// The one fault layer every node of the process sends and receives through.
    pub faults: &'a FaultHandle,
    /// Each node's credentials (none when insecure).
    pub credentials: &'a BTreeMap<NodeId, Arc<Credentials>>,
}

/// One node to start: who, where it listens and what it advertises, where its state is.
pub(super) struct NodePlan {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// `--advertise`, resolved (for a process of one node).
    pub advertise: Option<SocketAddr>,
    /// This host's address towards its peers, for a node on an unspecified address.
    pub toward: Option<IpAddr>,
    pub data_dir: PathBuf,
}

/// A running node of the process.
pub(super) struct Started {
    pub handle: NodeHandle,
    /// The address it listens on (the real port when bound to port 0).
    pub addr: SocketAddr,
    /// What it stamps on its messages as where to answer it, if anything.
    pub advertise: Option<SocketAddr>,
    /// Its wire counters, readable after the transport is gone.
    pub stats: StatsHandle,
}

/// Starts node `plan.id`: loads its durable state, binds its transport and spawns its loop.
pub(super) async fn start_one(shared: &Shared<'_>, plan: NodePlan) -> Result<Started, String> {
    let id = plan.id;
    let identity = Identity { cluster_id: shared.args.cluster_id.clone(), node: id };
    let mut storage = DiskStorage::open(&plan.data_dir, &identity).map_err(|e| e.to_string())?;
    if shared.args.rejoin && matches!(id.role, Role::Acceptor | Role::Proposer) {
        // Durable before the role starts, so a crash while rejoining still rejoins.
        storage.persist(&[PersistOp::Rejoin(true)]).map_err(|e| e.to_string())?;
        tracing::warn!(node = %id, "rejoining after lost state: not voting or leading until it is safe");
    }
    let durable = storage.load().map_err(|e| e.to_string())?;
    tracing::info!(
        node = %id, round = durable.round, promised = %durable.promised, accepted = durable.accepted.len(),
        applied = durable.last_applied(), "durable state loaded"
    );
    let opts = NetOptions {
        max_frame: shared.args.max_frame,
        credentials: shared.credentials.get(&id).cloned(),
        ..NetOptions::default()
    };
    let listen = plan.listen;
    let bind_err = |e: std::io::Error| format!("{id} cannot listen on {listen}: {e}");
    let node = NodeParts { durable, storage, seed: shared.args.seed ^ (((id.role as u64) << 16) | id.index as u64) };
    match shared.args.transport {
        NetKind::Tcp => start_on(
            <TcpTransport as SocketTransport>::listen(id, listen, opts).await.map_err(bind_err)?,
            shared,
            &plan,
            node,
        ),
        NetKind::Zmq => start_on(
            <ZmqTransport as SocketTransport>::listen(id, listen, opts).await.map_err(bind_err)?,
            shared,
            &plan,
            node,
        ),
    }
}

/// What a node is made of besides its transport.
struct NodeParts {
    durable: DurableState,
    storage: DiskStorage,
    seed: u64,
}

/// Runs a node on a bound transport. Peers are given after binding, as they were
/// written: a host name stays a name that the transport looks up at each fresh connection.
fn start_on<T: SocketTransport>(
    mut t: T,
    shared: &Shared<'_>,
    plan: &NodePlan,
    node: NodeParts,
) -> Result<Started, String> {
    let id = plan.id;
    for (&n, a) in shared.peers.iter().filter(|(&n, _)| n != id) {
        t.set_peer(n, a.clone());
    }
    let addr = t.local_addr();
    let advertise = advertised(addr, plan.advertise, plan.toward);
    t.set_advertise(advertise);
    if advertise.is_none() {
        tracing::warn!(node = %id, %addr, "listening on an unspecified address and no peer resolved: clients cannot be answered; give --advertise HOST:PORT");
    }
    let stats = t.stats_handle();
    let t = Faulty::new(t, shared.faults.clone());
    announce(&t, shared.peers.keys().copied());
    let actor = Actor { id, config: shared.config.clone(), durable: node.durable, seed: node.seed };
    Ok(Started { handle: spawn_actor(actor, t, node.storage), addr, advertise, stats })
}

/// Says `Hello` to every peer: "I (re)started". A peer drops whatever connection it held
/// to this node's previous life and dials afresh (looking a name up again). Without it, a
/// peer whose old connection leads to an address that vanished with the old container
/// keeps writing into it, and nothing tells it otherwise for the minutes TCP takes to give
/// up: a restarted acceptor would never hear from the leader again.
fn announce<T: Transport>(t: &T, peers: impl Iterator<Item = NodeId>) {
    let me = t.local();
    for n in peers.filter(|&n| n != me) {
        // A full queue or an unknown peer only loses the announcement; the peer then finds
        // this node again when its old connection fails.
        let _ = t.send(Envelope::new(me, n, Message::Hello));
    }
}

/// The protocol half of a node: who it is, what it remembers, how its timers are seeded.
struct Actor {
    id: NodeId,
    config: Arc<Config>,
    durable: DurableState,
    seed: u64,
}

fn spawn_actor<T: Transport, S: Storage>(actor: Actor, transport: T, storage: S) -> NodeHandle {
    let Actor { id, config, durable, seed } = actor;
    let opts = NodeOptions::seeded(seed);
    match id.role {
        Role::Proposer => spawn_node(Proposer::new(id, config, durable), transport, storage, opts),
        Role::Acceptor => spawn_node(Acceptor::new(id, config, durable), transport, storage, opts),
        Role::Learner => spawn_node(Learner::new(id, config, durable), transport, storage, opts),
        Role::Client => unreachable!("ids_of never yields a client"),
    }
}
