//! A node as an OS process: what `ballot-node` runs (and `chaos node`, which chaos spawns
//! for its tcp and zmq runs).
//!
//! ```text
//! ballot-node --id proposer-1 --transport tcp --listen 127.0.0.1:7001 \
//!   --peers proposer-1=127.0.0.1:7001,acceptor-1=127.0.0.1:7101,learner-1=127.0.0.1:7201,client-1=127.0.0.1:7301 \
//!   --data-dir ./data/proposer-1 --candidates ada,grace,linus
//! ```
//! The cluster is every node named in `--peers` (clients are not members; they are only
//! addresses to answer). Logs go to stderr through `tracing` (`RUST_LOG=debug`). SIGTERM
//! and Ctrl-C stop the node cleanly. One line on stdout says it is ready:
//! `ready <node> listen=<addr> control=<addr>`, with ` http=<addr>` after it when `--http`
//! is given (see [`crate::http`] for the pages).
//!
//! Addresses are `IP:port` or `host:port` (`acceptor-1:7000`, a service name in docker).
//! At start a node waits up to `--resolve-timeout-ms` for names to resolve (other
//! containers' names may not be known yet): its own `--listen`, `--advertise` and `--http`
//! must, or it exits with one line saying so; a peer whose name does not resolve yet only
//! gets a warning, and every peer's name is looked up again each time its connection is
//! redialled (see [`ballot_transports::PeerAddr`]), as is discovery's and the HTTP peers'
//! at each call. A node listening on 0.0.0.0 stamps its messages with `--advertise` (or,
//! without it, its interface address towards its first peer) as where to answer it, and
//! registers that address with discovery.
//!
//! `--discovery ADDR` registers every node of the process there and heart-beats each
//! second from its own task (bounded calls; failures only logged), and deregisters on
//! SIGTERM within 500 ms. `ballot-node --role discovery --listen ADDR`
//! runs the discovery server ([`ballot_operator::discovery::serve`]) and nothing else, and prints
//! `ready discovery listen=<addr> control=-`.

use ballot_core::{Acceptor, Config, Learner, Message, NodeId, Proposer, Role, Storage};
use ballot_disk::{DiskStorage, Identity};
use ballot_operator::control::{self, FaultSink, TransportFaults};
use ballot_operator::discovery::{spawn_heartbeats_async, DiscoveryClient, Registration, DEFAULT_HEARTBEAT_PERIOD};
use ballot_runtime::{spawn_node, NodeHandle, NodeOptions};
use ballot_telemetry::TelemetryConfig;
use ballot_transports::{
    Envelope, FaultHandle, Faulty, NetKind, NetOptions, PeerAddr, StatsHandle, TcpTransport, Transport, ZmqTransport,
};
use clap::{Parser, ValueEnum};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(name = "ballot-node", version, about = "Run one ballot node")]
pub struct NodeArgs {
    /// Node name (`proposer-1`), or its index when --role is given. Not used by
    /// `--role discovery`.
    #[arg(long, default_value = "")]
    pub id: String,
    /// proposer, acceptor, learner, replica (all three roles, each at its own address
    /// from --peers), or discovery (the discovery server on --listen, nothing else).
    #[arg(long)]
    pub role: Option<RoleArg>,
    #[arg(long, default_value_t = NetKind::Tcp)]
    pub transport: NetKind,
    /// Address to listen on, IP:port or host:port (a name is resolved at start and the
    /// node binds what it resolves to); defaults to this node's address in --peers. On
    /// 0.0.0.0, give --advertise.
    #[arg(long)]
    pub listen: Option<String>,
    /// Where other nodes and clients reach this node, HOST:PORT (resolved at start; port 0
    /// means the listen port): stamped on its messages as where to answer and registered
    /// with discovery. For a node listening on 0.0.0.0 (in a container); without it such a
    /// node advertises its interface address towards its first peer.
    #[arg(long)]
    pub advertise: Option<String>,
    /// How long to wait at start for host names to resolve, ms. This node's own addresses
    /// must resolve within it; a peer that does not gets a warning and is looked up again
    /// whenever it is dialled.
    #[arg(long, default_value_t = 10_000)]
    pub resolve_timeout_ms: u64,
    /// Every node of the cluster and every client, as name=host:port, comma-separated
    /// (required except for `--role discovery`).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Where durable state lives (one sub-folder per role for a replica; required except
    /// for `--role discovery`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_value = "ada,grace,linus")]
    pub candidates: Vec<String>,
    /// Name of the cluster: a data dir of another cluster is refused.
    #[arg(long, default_value = "ballot")]
    pub cluster_id: String,
    /// Control channel address (status, log, simulated faults) for chaos and tools.
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// Seed of this node's random timer delays and simulated faults.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Leader heartbeat period, ms.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// A follower runs for leader after a random silence in this range, ms.
    #[arg(long, default_value_t = 150)]
    pub election_min_ms: u64,
    #[arg(long, default_value_t = 300)]
    pub election_max_ms: u64,
    /// Largest frame accepted or sent, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_frame: usize,
    /// HTTP pages (/, /healthz, /status, /logs, /metrics) on this address, IP:port or
    /// host:port; off when absent.
    #[arg(long)]
    pub http: Option<String>,
    /// The other nodes' HTTP addresses, name=host:port comma-separated, for the overview
    /// page at / (a node without one shows as unknown).
    #[arg(long, value_delimiter = ',')]
    pub http_peers: Vec<String>,
    /// A discovery server (`ballot-node --role discovery`): this node registers there and
    /// heart-beats every second (role, addresses, ballot, leadership), and deregisters on
    /// SIGTERM. Never on the commit path: a dead or garbled discovery changes nothing.
    /// IP:port or host:port (looked up at every call).
    #[arg(long)]
    pub discovery: Option<String>,
    /// `--role discovery`: how long a member that stopped heart-beating stays listed, ms.
    #[arg(long, default_value_t = ballot_operator::discovery::DEFAULT_TTL.as_millis() as u64)]
    pub ttl_ms: u64,
    /// Export traces over OTLP/gRPC to this collector, e.g. http://localhost:4317 (Jaeger).
    /// Defaults to OTEL_EXPORTER_OTLP_ENDPOINT; off when neither is set. The service name
    /// is OTEL_SERVICE_NAME, or the node's id.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Fraction of votes traced, 0..1 (default OTEL_TRACES_SAMPLER_ARG, else 1).
    #[arg(long)]
    pub trace_sample_ratio: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Proposer,
    Acceptor,
    Learner,
    Replica,
    Discovery,
}

/// `--peers`: `name=host:port`, comma-separated (also the `ballot` CLI's flag).
pub(crate) fn parse_peers(list: &[String]) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    ballot_transports::parse_peer_list("--peers", list)
}

/// What a node stamps on its messages as where to answer it (and registers with
/// discovery): `--advertise` (its port 0 meaning the listen port), else the listen
/// address, else, when listening on an unspecified address, this host's address towards
/// its peers (`toward`), if known.
fn advertised(bound: SocketAddr, given: Option<SocketAddr>, toward: Option<IpAddr>) -> Option<SocketAddr> {
    match given {
        Some(a) if a.port() == 0 => Some(SocketAddr::new(a.ip(), bound.port())),
        Some(a) => Some(a),
        None if bound.ip().is_unspecified() => toward.map(|ip| SocketAddr::new(ip, bound.port())),
        None => Some(bound),
    }
}

/// The address flags, parsed (here rather than by clap, so that a bad one is one line).
struct AddrFlags {
    listen: Option<PeerAddr>,
    advertise: Option<PeerAddr>,
    http: Option<PeerAddr>,
    discovery: Option<PeerAddr>,
}

impl AddrFlags {
    fn parse(args: &NodeArgs) -> Result<AddrFlags, String> {
        let flag = |name: &str, v: &Option<String>| -> Result<Option<PeerAddr>, String> {
            v.as_deref().map(|v| v.parse::<PeerAddr>().map_err(|e| format!("{name}: {e}"))).transpose()
        };
        Ok(AddrFlags {
            listen: flag("--listen", &args.listen)?,
            advertise: flag("--advertise", &args.advertise)?,
            http: flag("--http", &args.http)?,
            discovery: flag("--discovery", &args.discovery)?,
        })
    }
}

/// Every name the node needs, looked up at once at start within `deadline`.
struct Resolved {
    /// Each peer's address now, or why not (a warning: it is looked up again when dialled).
    peers: BTreeMap<NodeId, Result<SocketAddr, String>>,
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    http: Option<SocketAddr>,
}

async fn resolve_at_start(
    flags: &AddrFlags,
    peers: &BTreeMap<NodeId, PeerAddr>,
    deadline: Duration,
) -> Result<Resolved, String> {
    use futures_util::future::{join_all, OptionFuture};
    let own = |flag: &'static str, a: Option<PeerAddr>| {
        OptionFuture::from(a.map(|a| async move { a.resolve_one(deadline).await.map_err(|e| format!("{flag}: {e}")) }))
    };
    let peer_lookups = join_all(
        peers.iter().map(|(&id, a)| async move { (id, a.resolve_one(deadline).await.map_err(|e| e.to_string())) }),
    );
    let (peers, listen, advertise, http) = tokio::join!(
        peer_lookups,
        own("--listen", flags.listen.clone()),
        own("--advertise", flags.advertise.clone()),
        own("--http", flags.http.clone()),
    );
    Ok(Resolved {
        peers: peers.into_iter().collect(),
        listen: listen.transpose()?,
        advertise: advertise.transpose()?,
        http: http.transpose()?,
    })
}

fn ids_of(args: &NodeArgs) -> Result<Vec<NodeId>, String> {
    let role = |r: RoleArg| match r {
        RoleArg::Proposer => Role::Proposer,
        RoleArg::Acceptor => Role::Acceptor,
        RoleArg::Learner => Role::Learner,
        RoleArg::Replica | RoleArg::Discovery => unreachable!(),
    };
    let by_index = |index: &str| -> Result<u16, String> {
        index
            .parse::<u16>()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| format!("--id '{index}' is not a node index (1, 2, ...)"))
    };
    if args.id.is_empty() {
        return Err("--id is required: a node name (proposer-1) or an index with --role".into());
    }
    match (args.role, args.id.parse::<NodeId>()) {
        (Some(RoleArg::Discovery), _) => unreachable!("run_discovery handles it"),
        (Some(RoleArg::Replica), _) => {
            let i = match args.id.parse::<NodeId>() {
                Ok(id) => id.index,
                Err(_) => by_index(&args.id)?,
            };
            Ok(vec![NodeId::proposer(i), NodeId::acceptor(i), NodeId::learner(i)])
        }
        (Some(r), Ok(id)) if id.role != role(r) => Err(format!("--id {id} is not a {:?}", r).to_lowercase()),
        (_, Ok(id)) => Ok(vec![id]),
        (Some(r), Err(_)) => Ok(vec![NodeId::new(role(r), by_index(&args.id)?)]),
        (None, Err(e)) => Err(e.to_string()),
    }
}

/// Where one node of the process listens and what it advertises.
struct Endpoint {
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    toward: Option<IpAddr>,
}

#[allow(clippy::too_many_arguments)]
async fn start_one(
    id: NodeId,
    args: &NodeArgs,
    config: &Arc<Config>,
    peers: &BTreeMap<NodeId, PeerAddr>,
    at: Endpoint,
    data_dir: PathBuf,
    faults: FaultHandle,
) -> Result<(NodeHandle, SocketAddr, Option<SocketAddr>, StatsHandle), String> {
    let identity = Identity { cluster_id: args.cluster_id.clone(), node: id };
    let mut storage = DiskStorage::open(&data_dir, &identity).map_err(|e| e.to_string())?;
    let durable = storage.load().map_err(|e| e.to_string())?;
    tracing::info!(
        node = %id, round = durable.round, promised = %durable.promised, accepted = durable.accepted.len(),
        applied = durable.last_applied(), "durable state loaded"
    );
    let opts = NetOptions { max_frame: args.max_frame, ..NetOptions::default() };
    let seed = args.seed ^ (((id.role as u64) << 16) | id.index as u64);
    let listen = at.listen;
    let bind_err = |e: std::io::Error| format!("{id} cannot listen on {listen}: {e}");
    // Peers are given after binding, as they were written: a host name stays a name that
    // the transport looks up at each fresh connection.
    macro_rules! start {
        ($t:ty) => {{
            let mut t = <$t>::bind(id, listen, BTreeMap::new(), opts).await.map_err(bind_err)?;
            for (&n, a) in peers.iter().filter(|(&n, _)| n != id) {
                t.set_peer(n, a.clone());
            }
            let addr = t.local_addr();
            let advertise = advertised(addr, at.advertise, at.toward);
            t.set_advertise(advertise);
            if advertise.is_none() {
                tracing::warn!(node = %id, %addr, "listening on an unspecified address and no peer resolved: clients cannot be answered; give --advertise HOST:PORT");
            }
            let stats = t.stats_handle();
            let t = Faulty::new(t, faults);
            announce(&t, peers.keys().copied());
            Ok((spawn_actor(id, config, durable, t, storage, seed), addr, advertise, stats))
        }};
    }
    match args.transport {
        NetKind::Tcp => start!(TcpTransport),
        NetKind::Zmq => start!(ZmqTransport),
    }
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

fn spawn_actor<T: Transport, S: Storage>(
    id: NodeId,
    config: &Arc<Config>,
    durable: ballot_core::DurableState,
    transport: T,
    storage: S,
    seed: u64,
) -> NodeHandle {
    let config = config.clone();
    match id.role {
        Role::Proposer => spawn_node(Proposer::new(id, config, durable), transport, storage, NodeOptions::seeded(seed)),
        Role::Acceptor => spawn_node(Acceptor::new(id, config, durable), transport, storage, NodeOptions::seeded(seed)),
        Role::Learner => spawn_node(Learner::new(id, config, durable), transport, storage, NodeOptions::seeded(seed)),
        Role::Client => unreachable!("ids_of never yields a client"),
    }
}

/// `--role discovery`: the discovery server on `--listen` until SIGTERM or Ctrl-C.
async fn run_discovery(args: NodeArgs) -> Result<(), String> {
    let addr = AddrFlags::parse(&args)?
        .listen
        .ok_or("--role discovery needs --listen ADDR (where the discovery server listens)")?;
    let deadline = Duration::from_millis(args.resolve_timeout_ms.max(1));
    let addr = addr.resolve_one(deadline).await.map_err(|e| format!("--listen: {e}"))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("discovery cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let opts = ballot_operator::discovery::DiscoveryOptions {
        ttl: Duration::from_millis(args.ttl_ms.max(1)),
        ..ballot_operator::discovery::DiscoveryOptions::default()
    };
    // On a signal the server stops accepting and drains its requests in flight.
    let server = tokio::spawn(ballot_operator::discovery::serve(listener, opts, async {
        wait_for_signal().await;
        tracing::info!("stopping");
    }));
    tracing::info!(%local, "discovery listening");
    println!("ready discovery listen={local} control=-");
    server.await.map_err(|e| format!("the discovery server failed: {e}"))
}

/// What a node of this process tells discovery now, or `None` if its loop did not answer
/// in time (then the beat is skipped, so a stuck node drops out of the list).
async fn registration(
    node: ballot_operator::pages::HttpNode,
    addr: SocketAddr,
    http: Option<SocketAddr>,
) -> Option<Registration> {
    let st = node.status(STATUS_FOR_DISCOVERY).await?;
    Some(Registration::from_status(node.id, addr, http, &st))
}

/// How long a heartbeat waits for the node loop's status.
const STATUS_FOR_DISCOVERY: Duration = Duration::from_millis(500);
/// Deadline of the deregistration on the way out (best effort).
const DEREGISTER_DEADLINE: Duration = Duration::from_millis(500);

async fn run(args: NodeArgs, logs: ballot_telemetry::log_ring::LogRing) -> Result<(), String> {
    if args.role == Some(RoleArg::Discovery) {
        return run_discovery(args).await;
    }
    if args.peers.iter().all(|p| p.trim().is_empty()) {
        return Err("--peers is required: name every node of the cluster as name=host:port,...".into());
    }
    let Some(data_dir) = args.data_dir.clone() else {
        return Err("--data-dir is required: where this node keeps its durable state".into());
    };
    let peers = parse_peers(&args.peers)?;
    let http_peers = ballot_operator::pages::parse_http_peers(&args.http_peers)?;
    let flags = AddrFlags::parse(&args)?;
    let ids = ids_of(&args)?;
    let deadline = Duration::from_millis(args.resolve_timeout_ms.max(1));
    let of_role = |r: Role| peers.keys().copied().filter(|n| n.role == r).collect::<Vec<_>>();
    let mut config = Config::new(0, 0, 0, args.candidates.clone());
    config.proposers = of_role(Role::Proposer);
    config.acceptors = of_role(Role::Acceptor);
    config.learners = of_role(Role::Learner);
    config.timing.heartbeat_ms = args.heartbeat_ms.max(1);
    config.timing.election_min_ms = args.election_min_ms.max(1);
    config.timing.election_max_ms = args.election_max_ms.max(config.timing.election_min_ms);
    if config.proposers.is_empty() || config.acceptors.is_empty() || config.learners.is_empty() {
        return Err("--peers must name at least one proposer, one acceptor and one learner".into());
    }
    if args.candidates.iter().any(|c| c.is_empty()) {
        return Err("--candidates: a candidate name is empty".into());
    }
    // The cluster is what --peers names: a node missing from it would run outside the
    // configuration (an acceptor nobody asks, a proposer whose address nobody knows).
    if let Some(id) = ids.iter().find(|id| !peers.contains_key(id)) {
        return Err(format!("--id {id} is not named in --peers: name every node of the cluster there"));
    }
    let config = Arc::new(config);
    let resolved = resolve_at_start(&flags, &peers, deadline).await?;
    for (id, r) in &resolved.peers {
        if let Err(e) = r {
            if !ids.contains(id) {
                tracing::warn!(peer = %id, "{e}; messages to it are dropped until it resolves (looked up again at each connection)");
            }
        }
    }
    // Where this host's interface towards the others is (for a node on 0.0.0.0 without
    // --advertise): the first peer that resolved and is not in this process.
    let toward = resolved
        .peers
        .iter()
        .filter(|(id, _)| !ids.contains(id))
        .find_map(|(_, r)| r.as_ref().ok())
        .and_then(|&a| ballot_transports::local_ip_toward(a).ok());
    let faults = FaultHandle::new(args.seed);
    let mut handles = Vec::new();
    let mut served = Vec::new();
    for &id in &ids {
        let (listen, advertise) = match resolved.listen {
            Some(l) if ids.len() == 1 => (l, resolved.advertise),
            _ => match &resolved.peers[&id] {
                Ok(a) => (*a, None),
                Err(e) => return Err(format!("--peers: {e} (the address of {id}, which this process runs)")),
            },
        };
        let dir = if ids.len() == 1 { data_dir.clone() } else { data_dir.join(id.to_string()) };
        let at = Endpoint { listen, advertise, toward };
        let (handle, addr, advertise, stats) = start_one(id, &args, &config, &peers, at, dir, faults.clone()).await?;
        tracing::info!(node = %id, %addr, advertise = ?advertise, transport = ?args.transport, "listening");
        // What others reach it at: shown on the pages and registered with discovery.
        let reach = advertise.unwrap_or(addr);
        served.push(ballot_operator::pages::HttpNode::new(&handle).with_listen(reach).with_wire(stats));
        handles.push((handle, addr, reach));
    }
    let control_addr = match args.control {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for control on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let sink: Arc<dyn FaultSink> = Arc::new(TransportFaults::new(faults.clone()));
            // A replica's control channel speaks for its first role (the proposer); all its
            // roles share one fault layer.
            tokio::spawn(control::serve(listener, handles[0].0.controller(), Some(sink), wait_for_signal()));
            Some(local)
        }
        None => None,
    };
    let loops: Vec<ballot_operator::pages::HttpNode> = served.clone();
    let http_addr = match resolved.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let cluster =
                [&config.proposers, &config.acceptors, &config.learners].into_iter().flatten().copied().collect();
            let transport = format!("{:?}", args.transport).to_lowercase();
            let mut state =
                ballot_operator::pages::HttpState::new(served, cluster, args.candidates.clone(), &transport);
            (state.http_peers, state.control, state.faults, state.logs) =
                (http_peers, control_addr, Some(faults), Some(logs));
            // On a signal it stops accepting and answers the requests in flight while the
            // node deregisters.
            tokio::spawn(ballot_operator::pages::serve(listener, state, wait_for_signal()));
            tracing::info!(%local, "http pages");
            Some(local)
        }
        None => None,
    };
    // The HTTP address registered with discovery: on 0.0.0.0, at the advertised host.
    let http_reach = http_addr.map(|h| match handles.first() {
        Some((_, _, reach)) if h.ip().is_unspecified() && !reach.ip().is_unspecified() => {
            SocketAddr::new(reach.ip(), h.port())
        }
        _ => h,
    });
    for (h, addr, _) in &handles {
        let control = control_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let http = http_addr.map(|a| format!(" http={a}")).unwrap_or_default();
        println!("ready {} listen={addr} control={control}{http}", h.id);
    }
    // Discovery: heartbeats from their own task, each bounded; never awaited by the node.
    let mut beats = Vec::new();
    if let Some(d) = &flags.discovery {
        let client = DiscoveryClient::new(d.clone());
        for (node, (_, _, reach)) in loops.iter().zip(&handles) {
            let (node, addr) = (node.clone(), *reach);
            beats.push(spawn_heartbeats_async(
                client.clone(),
                move || registration(node.clone(), addr, http_reach),
                DEFAULT_HEARTBEAT_PERIOD,
            ));
        }
        tracing::info!(discovery = %d, "registering with discovery");
    }
    wait_for_signal().await;
    tracing::info!("stopping");
    if let Some(d) = &flags.discovery {
        beats.iter().for_each(|b| b.abort());
        let client = DiscoveryClient::new(d.clone()).with_deadline(DEREGISTER_DEADLINE);
        let gone = futures_util::future::join_all(handles.iter().map(|(h, _, _)| client.deregister(h.id)));
        match tokio::time::timeout(DEREGISTER_DEADLINE, gone).await {
            Ok(results) => {
                for e in results.into_iter().filter_map(Result::err) {
                    tracing::warn!("deregistration skipped: {e}");
                }
            }
            Err(_) => {
                tracing::warn!("deregistration skipped: discovery at {d} did not answer within {DEREGISTER_DEADLINE:?}")
            }
        }
    }
    for (h, _, _) in handles {
        if let Err(e) = h.stop().await {
            tracing::error!("{e}");
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run a node until SIGTERM or Ctrl-C: the whole `main` of `ballot-node`.
pub fn main_with(args: NodeArgs) -> ExitCode {
    // The last log lines also go to a ring for the /logs page.
    let logs = ballot_telemetry::log_ring::LogRing::default();
    let service = if args.role == Some(RoleArg::Discovery) { "discovery".to_string() } else { args.id.clone() };
    // A bad tracing setting costs the traces, never the node: one warning, tracing off.
    let (mut tracing_config, tracing_error) =
        match TelemetryConfig::from_env(args.otlp_endpoint.clone(), &service, args.trace_sample_ratio) {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e)),
        };
    if let Some(c) = &mut tracing_config {
        // A replica runs three nodes: each reports as its own service.
        c.per_node_services = args.role == Some(RoleArg::Replica);
    }
    let telemetry = ballot_telemetry::install(tracing_config.as_ref(), Some(&logs), "info", true);
    if let Some(c) = &tracing_config {
        tracing::info!(endpoint = %c.endpoint, service = %c.service_name, ratio = c.sample_ratio, "exporting traces over OTLP");
    }
    if let Some(e) = tracing_error {
        tracing::warn!("tracing is off: {e}");
    }
    // One thread: on 2 cores a current-thread runtime per node process avoids cross-core
    // wake-ups (PERF.md).
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ballot-node: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(run(args, logs));
    // Spans still queued go to the collector now, within a deadline.
    drop(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ballot-node: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_take_ip_addresses_and_host_names() {
        let p = parse_peers(&["proposer-1=127.0.0.1:7001".into(), " acceptor-1 = acceptor-1:7000 ".into(), "".into()])
            .unwrap();
        assert_eq!(p[&NodeId::proposer(1)], PeerAddr::Ip("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(p[&NodeId::acceptor(1)], PeerAddr::Host { host: "acceptor-1".into(), port: 7000 });
    }

    #[test]
    fn a_bad_peer_is_one_line_naming_the_flag_and_the_node() {
        for (item, says) in [
            ("acceptor-1=acceptor 1:7000", "neither an IP address nor a host name"),
            ("acceptor-1=acceptor-1", "has no port"),
            ("acceptor-1=acceptor-1:99999", "is not a number"),
            ("acceptor-1=10.0.0.256:7000", "not a valid IPv4 address"),
        ] {
            let e = parse_peers(&[item.into()]).unwrap_err();
            assert!(e.starts_with("--peers: ") && e.contains(says) && e.ends_with("(for acceptor-1)"), "{item}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(parse_peers(&["acceptor-1".into()]).unwrap_err().contains("is not name=host:port"));
    }

    #[test]
    fn what_a_node_advertises() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let ip = Some(IpAddr::from([10, 0, 1, 7]));
        // Bound to a dialable address: that address, unless told otherwise.
        assert_eq!(advertised(a("10.0.1.5:7000"), None, ip), Some(a("10.0.1.5:7000")));
        assert_eq!(advertised(a("10.0.1.5:7000"), Some(a("10.0.1.9:9000")), ip), Some(a("10.0.1.9:9000")));
        // On 0.0.0.0: --advertise (port 0 = the listen port), else the route towards a peer.
        assert_eq!(advertised(a("0.0.0.0:7000"), Some(a("10.0.1.9:0")), ip), Some(a("10.0.1.9:7000")));
        assert_eq!(advertised(a("0.0.0.0:7000"), None, ip), Some(a("10.0.1.7:7000")));
        assert_eq!(advertised(a("0.0.0.0:7000"), None, None), None);
    }

    #[test]
    fn a_bad_address_flag_is_one_line_naming_the_flag() {
        for flag in ["--listen", "--advertise", "--http", "--discovery"] {
            let args = NodeArgs::parse_from(["ballot-node", "--id", "proposer-1", flag, "acceptor 1:7000"]);
            let e = AddrFlags::parse(&args).err().unwrap();
            assert!(e.starts_with(&format!("{flag}: 'acceptor 1:7000'")) && e.contains("e.g. acceptor-1:7000"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[tokio::test]
    async fn own_names_must_resolve_at_start_peers_need_not() {
        let args = NodeArgs::parse_from([
            "ballot-node",
            "--id",
            "proposer-1",
            "--listen",
            "localhost:7001",
            "--http",
            "localhost:0",
        ]);
        let mut flags = AddrFlags::parse(&args).unwrap();
        let peers =
            parse_peers(&["proposer-1=localhost:7001".into(), "acceptor-1=nobody.invalid:7000".into()]).unwrap();
        let r = resolve_at_start(&flags, &peers, Duration::from_millis(300)).await.unwrap();
        assert_eq!(r.listen, Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(r.http.map(|h| h.ip()), Some(IpAddr::from([127, 0, 0, 1])));
        assert!(r.peers[&NodeId::proposer(1)].is_ok());
        assert!(r.peers[&NodeId::acceptor(1)].as_ref().unwrap_err().contains("cannot resolve nobody.invalid:7000"));
        flags.advertise = Some("nobody.invalid:7000".parse().unwrap());
        let e = resolve_at_start(&flags, &peers, Duration::from_millis(300)).await.err().unwrap();
        assert!(e.starts_with("--advertise: cannot resolve nobody.invalid:7000 within 300ms"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
