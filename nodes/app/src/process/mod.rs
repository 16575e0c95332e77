//! A node as an OS process: what `ballot-node` runs (and `chaos node`, which chaos spawns
//! for its tcp and zmq runs).
//!
//! ```text
//! ballot certs --dir ./certs --peers proposer-1,acceptor-1,learner-1
//! ballot-node --id proposer-1 --transport tcp --listen 127.0.0.1:7001 --certs ./certs \
//!   --peers proposer-1=127.0.0.1:7001,acceptor-1=127.0.0.1:7101,learner-1=127.0.0.1:7201,client-1=127.0.0.1:7301 \
//!   --data-dir ./data/proposer-1 --candidates ada,grace,linus
//! ```
//! Every node proves who it is with `--certs DIR` (or `BALLOT_CERTS=DIR`), its own share
//! of the cluster's credentials folder (see [`ballot_transports::auth`]; a replica loads
//! one identity per role), and accepts only peers that prove theirs: mutual TLS on tcp,
//! frames whose sender is not the proven identity dropped. `--insecure` runs without, with
//! one warning line; a node given neither refuses to start (exit code 2) with one line
//! saying how to make credentials.
//!
//! The cluster is every node named in `--peers` (clients are not members; they are only
//! addresses to answer). Logs go to stderr through `tracing` (`RUST_LOG=debug`). SIGTERM
//! and Ctrl-C stop the node cleanly. One line on stdout says it is ready:
//! `ready <node> listen=<addr> control=<addr>`, with ` http=<addr>` after it when `--http`
//! is given (see [`ballot_operator::pages`] for the pages).
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
//!
//! Exit codes: 0 stopped by SIGTERM or Ctrl-C; 1 the runtime could not start; 2 it could
//! not start (a bad flag, a data dir it refuses, an address it cannot bind: one line on
//! stderr); 3 a node loop ended while the process was meant to run (its storage failed,
//! or a bug made it panic). The process does not linger with a dead node inside it
//! (serving `/healthz` 503 forever, which `restart: on-failure` never acts on): it stops
//! every other node and its servers, says why in one line, and exits 3, so a supervisor
//! restarts it.

mod addr;
mod args;
pub(crate) mod creds;
mod discovery;
mod operator_auth;
mod servers;
mod signals;
mod start;

pub(crate) use args::parse_peers;
pub use args::{NodeArgs, RoleArg};

use addr::{AddrFlags, Resolved};
use ballot_core::{Config, NodeId};
use ballot_operator::control::{ControlOptions, FaultSink, TransportFaults};
use ballot_operator::pages::{HttpNode, HttpState};
use ballot_runtime::NodeHandle;
use ballot_telemetry::log_ring::LogRing;
use ballot_telemetry::TelemetryConfig;
use ballot_transports::auth::Credentials;
use ballot_transports::{FaultHandle, NetKind, PeerAddr};
use discovery::{Heartbeats, Member};
use servers::{spawn_servers, ControlServer, Servers};
use start::{NodePlan, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Run a node until SIGTERM or Ctrl-C: the whole `main` of `ballot-node`.
pub fn main_with(args: NodeArgs) -> ExitCode {
    // The last log lines also go to a ring for the /logs page.
    let logs = LogRing::default();
    let telemetry = install_telemetry(&args, &logs);
    // One thread: on 2 cores a current-thread runtime per node process avoids cross-core
    // wake-ups.
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
        Err(Stop::Start(e)) => {
            eprintln!("ballot-node: {e}");
            ExitCode::from(2)
        }
        Err(Stop::NodeEnded(e)) => {
            eprintln!("ballot-node: {e}; exiting so that a supervisor restarts the process");
            ExitCode::from(3)
        }
    }
}

/// Why the process stops before a signal told it to.
enum Stop {
    /// It could not start: exit 2.
    Start(String),
    /// A node loop ended while the process was meant to run: exit 3.
    NodeEnded(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Start(e)
    }
}

/// Logs to stderr and the ring, and traces over OTLP when configured. A bad tracing
/// setting costs the traces, never the node: one warning, tracing off.
fn install_telemetry(args: &NodeArgs, logs: &LogRing) -> Option<ballot_telemetry::Telemetry> {
    let service = if args.role == Some(RoleArg::Discovery) { "discovery".to_string() } else { args.id.clone() };
    let (mut tracing_config, tracing_error) =
        match TelemetryConfig::from_env(args.otlp_endpoint.clone(), &service, args.trace_sample_ratio) {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e)),
        };
    if let Some(c) = &mut tracing_config {
        // A replica runs three nodes: each reports as its own service.
        c.per_node_services = args.role == Some(RoleArg::Replica);
    }
    let telemetry = ballot_telemetry::install(tracing_config.as_ref(), Some(logs), "info", true);
    if let Some(c) = &tracing_config {
        tracing::info!(endpoint = %c.endpoint, service = %c.service_name, ratio = c.sample_ratio, "exporting traces over OTLP");
    }
    if let Some(e) = tracing_error {
        tracing::warn!("tracing is off: {e}");
    }
    telemetry
}

/// The process from start to stop: its nodes started, its servers up, one `ready` line
/// per node, then SIGTERM or Ctrl-C (or a node loop's end), deregistration and a stop.
async fn run(args: NodeArgs, logs: LogRing) -> Result<(), Stop> {
    if args.role == Some(RoleArg::Discovery) {
        return Ok(discovery::run_discovery(args).await?);
    }
    let plan = Plan::new(&args)?;
    if plan.credentials.is_empty() {
        eprintln!("{}", creds::insecure_warning("ballot-node"));
    }
    let resolved = addr::resolve_at_start(&plan.flags, &plan.peers, args.resolve_deadline()).await?;
    resolved.warn_unresolved(&plan.ids);
    let faults = FaultHandle::new(args.seed);
    let nodes = start_nodes(&args, &plan, &resolved, &faults).await?;
    let (control_addr, http_addr) = serve(&args, &plan, &resolved, &nodes, faults, logs).await?;
    for n in &nodes {
        let control = control_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let http = http_addr.map(|a| format!(" http={a}")).unwrap_or_default();
        println!("ready {} listen={} control={control}{http}", n.handle.id, n.addr);
    }
    let beats = plan.flags.discovery.as_ref().map(|d| {
        let http = http_addr.map(|h| addr::http_reach(h, nodes.first().map(|n| n.reach)));
        let members = nodes.iter().map(|n| Member { node: n.page.clone(), reach: n.reach }).collect();
        Heartbeats::start(d, members, http, &plan.auth.tokens)
    });
    let ended = tokio::select! {
        biased;
        () = signals::wait_for_signal() => None,
        i = first_to_end(&nodes) => Some(nodes[i].handle.id),
    };
    match ended {
        None => tracing::info!("stopping"),
        Some(id) => tracing::error!(node = %id, "the node loop ended while the process is meant to run: stopping"),
    }
    if let Some(beats) = beats {
        beats.stop(&nodes.iter().map(|n| n.handle.id).collect::<Vec<_>>()).await;
    }
    let mut why = None;
    for n in nodes {
        let id = n.handle.id;
        let result = n.handle.stop().await;
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        if Some(id) == ended {
            why = Some(result.err().map_or_else(|| format!("{id} stopped: its node loop ended"), |e| e.to_string()));
        }
    }
    why.map_or(Ok(()), |why| Err(Stop::NodeEnded(why)))
}

/// The index of the first node whose loop ends (never, while they all run).
async fn first_to_end(nodes: &[Running]) -> usize {
    if nodes.is_empty() {
        return std::future::pending().await;
    }
    let ends = nodes.iter().map(|n| Box::pin(n.handle.ended()));
    futures_util::future::select_all(ends).await.1
}

/// The flags checked and turned into what the process runs, before any name is looked up.
struct Plan {
    data_dir: PathBuf,
    peers: BTreeMap<NodeId, PeerAddr>,
    http_peers: BTreeMap<NodeId, PeerAddr>,
    flags: AddrFlags,
    /// The nodes this process runs (three for a replica).
    ids: Vec<NodeId>,
    config: Arc<Config>,
    /// Who may use the control channel, and the nodes' tokens for discovery (`--certs`).
    auth: operator_auth::OperatorAuth,
    /// Each node's credentials; empty when insecure (`--insecure`).
    credentials: BTreeMap<NodeId, Arc<Credentials>>,
}

impl Plan {
    fn new(args: &NodeArgs) -> Result<Plan, String> {
        if args.peers.iter().all(|p| p.trim().is_empty()) {
            return Err("--peers is required: name every node of the cluster as name=host:port,...".into());
        }
        let Some(data_dir) = args.data_dir.clone() else {
            return Err("--data-dir is required: where this node keeps its durable state".into());
        };
        let peers = parse_peers(&args.peers)?;
        let http_peers = ballot_operator::pages::parse_http_peers(&args.http_peers)?;
        let flags = AddrFlags::parse(args)?;
        let ids = args::ids_of(args)?;
        let config = args::cluster_config(args, &peers)?;
        // The cluster is what --peers names: a node missing from it would run outside the
        // configuration (an acceptor nobody asks, a proposer whose address nobody knows).
        if let Some(id) = ids.iter().find(|id| !peers.contains_key(id)) {
            return Err(format!("--id {id} is not named in --peers: name every node of the cluster there"));
        }
        // Checked after the other flags, so that their mistakes are named first.
        let dir = creds::folder(args.certs.as_deref(), args.insecure)?;
        let credentials = creds::for_nodes(dir.as_deref(), &ids)?;
        let auth = operator_auth::OperatorAuth::for_nodes(dir.as_deref(), &ids)?;
        Ok(Plan { data_dir, peers, http_peers, flags, ids, config: Arc::new(config), auth, credentials })
    }
}

/// A node of this process, running.
struct Running {
    handle: NodeHandle,
    /// The address it listens on.
    addr: SocketAddr,
    /// What others reach it at: shown on the pages and registered with discovery.
    reach: SocketAddr,
    /// Its loop as the pages and discovery ask it.
    page: HttpNode,
}

/// Starts every node of the process, in order, each with its own data dir (a sub-folder
/// per node when there are several).
async fn start_nodes(
    args: &NodeArgs,
    plan: &Plan,
    resolved: &Resolved,
    faults: &FaultHandle,
) -> Result<Vec<Running>, String> {
    let shared = Shared { args, config: &plan.config, peers: &plan.peers, faults, credentials: &plan.credentials };
    let toward = resolved.toward(&plan.ids);
    let mut nodes = Vec::new();
    for &id in &plan.ids {
        let (listen, advertise) = resolved.endpoint_of(id, plan.ids.len())?;
        let data_dir = if plan.ids.len() == 1 { plan.data_dir.clone() } else { plan.data_dir.join(id.to_string()) };
        let started = start::start_one(&shared, NodePlan { id, listen, advertise, toward, data_dir }).await?;
        let (addr, advertise) = (started.addr, started.advertise);
        // What proves this node's peers (mutual TLS on tcp, CURVE on zmq), or that nothing does.
        let auth = match (plan.credentials.contains_key(&id), args.transport) {
            (false, _) => "insecure",
            (true, NetKind::Tcp) => "mtls",
            (true, NetKind::Zmq) => "curve",
        };
        tracing::info!(node = %id, %addr, advertise = ?advertise, transport = ?args.transport, auth, "listening");
        let reach = advertise.unwrap_or(addr);
        let page = HttpNode::new(&started.handle).with_listen(reach).with_wire(started.stats);
        nodes.push(Running { handle: started.handle, addr, reach, page });
    }
    Ok(nodes)
}

/// Binds the control channel (`--control`) and the HTTP pages (`--http`), in that order,
/// and serves them. Returns their bound addresses.
async fn serve(
    args: &NodeArgs,
    plan: &Plan,
    resolved: &Resolved,
    nodes: &[Running],
    faults: FaultHandle,
    logs: LogRing,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), String> {
    let mut servers = Servers::default();
    let mut control_addr = None;
    if let Some(addr) = args.control {
        let (listener, local) = servers::bind("control", addr).await?;
        let sink: Arc<dyn FaultSink> = Arc::new(TransportFaults::new(faults.clone()));
        // A replica's control channel speaks for its first role (the proposer); all its
        // roles share one fault layer.
        let opts = ControlOptions {
            refusals: plan.auth.refusals.clone(),
            ..ControlOptions::with_access(plan.auth.access.clone())
        };
        servers.control = Some(ControlServer { listener, node: nodes[0].handle.controller(), faults: sink, opts });
        control_addr = Some(local);
    }
    let mut http_addr = None;
    if let Some(addr) = resolved.http {
        let (listener, local) = servers::bind("HTTP", addr).await?;
        let config = &plan.config;
        let cluster = [&config.proposers, &config.acceptors, &config.learners].into_iter().flatten().copied().collect();
        let transport = format!("{:?}", args.transport).to_lowercase();
        let pages = nodes.iter().map(|n| n.page.clone()).collect();
        let mut state = HttpState::new(pages, cluster, args.candidates.clone(), &transport);
        (state.http_peers, state.control, state.faults, state.logs) =
            (plan.http_peers.clone(), control_addr, Some(faults), Some(logs));
        state.refusals = Some(plan.auth.refusals.clone());
        servers.pages = Some((listener, state));
        http_addr = Some(local);
    }
    spawn_servers(servers);
    if let Some(local) = http_addr {
        tracing::info!(%local, "http pages");
    }
    Ok((control_addr, http_addr))
}

#[cfg(test)]
mod tests {
    use super::addr::{advertised, resolve_at_start, AddrFlags};
    use super::*;
    use clap::Parser;
    use std::net::IpAddr;
    use std::time::Duration;

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
