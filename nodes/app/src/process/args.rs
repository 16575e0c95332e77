//! The flags of `ballot-node`, and what they mean for the cluster: which nodes this
//! process runs and the configuration they share.

use ballot_core::{Config, NodeId, Role};
use ballot_transports::{NetKind, PeerAddr};
use clap::{Parser, ValueEnum};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The flags of `ballot-node` (and `chaos node`): one node process.
#[derive(Parser, Debug, Clone)]
#[command(name = "ballot-node", version, about = "Run one ballot node", long_about = None)]
pub struct NodeArgs {
    /// Node name (`proposer-1`), or its index when --role is given. Not used by
    /// `--role discovery`.
    #[arg(long, default_value = "")]
    pub id: String,
    /// proposer, acceptor, learner, replica (all three roles, each at its own address
    /// from --peers), or discovery (the discovery server on --listen, nothing else).
    #[arg(long)]
    pub role: Option<RoleArg>,
    /// The transport the cluster speaks: tcp or zmq.
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
    /// The names one can vote for, comma-separated (the same list on every node).
    #[arg(long, value_delimiter = ',', default_value = "ada,grace,linus")]
    pub candidates: Vec<String>,
    /// Name of the cluster: a data dir of another cluster is refused.
    #[arg(long, default_value = "ballot")]
    pub cluster_id: String,
    /// Control channel address (status, log, simulated faults) for chaos and tools.
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// The cluster's credentials folder (`ballot certs --dir DIR --peers ...` makes it):
    /// every node of this process proves its identity with its own share of it, and
    /// accepts only peers that prove theirs (mutual TLS on tcp, CURVE on zmq); the control
    /// channel takes only the operator's token, discovery only each node's own token for
    /// its name. Defaults to $BALLOT_CERTS. A process refuses to start with neither this
    /// nor --insecure.
    #[arg(long, value_name = "DIR", conflicts_with = "insecure")]
    pub certs: Option<PathBuf>,
    /// Run without credentials: no TLS or CURVE, and any peer may claim to be any node;
    /// control and discovery are open. For tests and trusted networks only; prints one
    /// warning line.
    #[arg(long)]
    pub insecure: bool,
    /// This node's state was lost (its data folder wiped, or refused as corrupt and
    /// removed): an acceptor votes, and a proposer leads, only once it can no longer
    /// contradict what it forgot (ARCHITECTURE.md, "Rejoining after lost state"). Kept
    /// in the data folder until done, so later starts need not repeat it.
    #[arg(long)]
    pub rejoin: bool,
    /// Seed of this node's random timer delays and simulated faults.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Leader heartbeat period, ms.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// A follower runs for leader after a random silence in this range, ms.
    #[arg(long, default_value_t = 150)]
    pub election_min_ms: u64,
    /// The upper end of that range, ms.
    #[arg(long, default_value_t = 300)]
    pub election_max_ms: u64,
    /// Most client commands a proposer holds while they wait for a slot or a leader; one
    /// more is refused at once as "busy" (overload), never left to time out.
    #[arg(long, default_value_t = 1 << 20)]
    pub queue_limit: usize,
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

/// What a node process runs (`--role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// A proposer.
    Proposer,
    /// An acceptor.
    Acceptor,
    /// A learner.
    Learner,
    /// All three roles, each at its own address.
    Replica,
    /// The discovery server.
    Discovery,
}

impl NodeArgs {
    /// How long names may take to resolve at start (at least 1 ms).
    pub(super) fn resolve_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.resolve_timeout_ms.max(1))
    }
}

/// `--peers`: `name=host:port`, comma-separated (also the `ballot` CLI's flag).
pub(crate) fn parse_peers(list: &[String]) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    ballot_transports::parse_peer_list("--peers", list)
}

/// The nodes this process runs: `--id` as a name, or as an index of `--role` (three
/// nodes for a replica).
pub(super) fn ids_of(args: &NodeArgs) -> Result<Vec<NodeId>, String> {
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

/// The configuration every node of the cluster shares: the members `--peers` names by
/// role, the candidates and the timing flags (each at least 1 ms).
pub(super) fn cluster_config(args: &NodeArgs, peers: &BTreeMap<NodeId, PeerAddr>) -> Result<Config, String> {
    let of_role = |r: Role| peers.keys().copied().filter(|n| n.role == r).collect::<Vec<_>>();
    let mut config = Config::new(0, 0, 0, args.candidates.clone());
    config.proposers = of_role(Role::Proposer);
    config.acceptors = of_role(Role::Acceptor);
    config.learners = of_role(Role::Learner);
    config.timing.heartbeat_ms = args.heartbeat_ms.max(1);
    config.timing.election_min_ms = args.election_min_ms.max(1);
    config.timing.election_max_ms = args.election_max_ms.max(config.timing.election_min_ms);
    config.timing.queue_limit = args.queue_limit.max(1);
    if config.proposers.is_empty() || config.acceptors.is_empty() || config.learners.is_empty() {
        return Err("--peers must name at least one proposer, one acceptor and one learner".into());
    }
    if args.candidates.iter().any(|c| c.is_empty()) {
        return Err("--candidates: a candidate name is empty".into());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> NodeArgs {
        NodeArgs::parse_from(["ballot-node"].iter().chain(extra))
    }

    #[test]
    fn an_id_is_a_name_or_an_index_of_the_role() {
        assert_eq!(ids_of(&args(&["--id", "acceptor-2"])).unwrap(), vec![NodeId::acceptor(2)]);
        assert_eq!(ids_of(&args(&["--id", "2", "--role", "learner"])).unwrap(), vec![NodeId::learner(2)]);
        let replica = vec![NodeId::proposer(3), NodeId::acceptor(3), NodeId::learner(3)];
        assert_eq!(ids_of(&args(&["--id", "3", "--role", "replica"])).unwrap(), replica);
        assert_eq!(
            ids_of(&args(&["--id", "acceptor-2", "--role", "proposer"])).unwrap_err(),
            "--id acceptor-2 is not a proposer"
        );
        assert!(ids_of(&args(&["--id", "0", "--role", "learner"])).unwrap_err().contains("is not a node index"));
        assert!(ids_of(&args(&[])).unwrap_err().starts_with("--id is required"));
    }

    #[test]
    fn the_configuration_is_what_peers_names_by_role() {
        let peers = parse_peers(&["proposer-1=127.0.0.1:1".into(), "acceptor-1=127.0.0.1:2".into()]).unwrap();
        let e = cluster_config(&args(&["--id", "proposer-1"]), &peers).unwrap_err();
        assert!(e.contains("at least one proposer, one acceptor and one learner"), "{e}");
        let mut peers = peers;
        peers.insert(NodeId::learner(1), "127.0.0.1:3".parse().unwrap());
        peers.insert(NodeId::client(1), "127.0.0.1:4".parse().unwrap());
        let c =
            cluster_config(&args(&["--id", "proposer-1", "--election-min-ms", "0", "--election-max-ms", "0"]), &peers)
                .unwrap();
        assert_eq!((c.proposers.len(), c.acceptors.len(), c.learners.len()), (1, 1, 1));
        assert_eq!((c.timing.election_min_ms, c.timing.election_max_ms), (1, 1));
        let e = cluster_config(&args(&["--id", "proposer-1", "--candidates", "ada,"]), &peers).unwrap_err();
        assert_eq!(e, "--candidates: a candidate name is empty");
    }
}
