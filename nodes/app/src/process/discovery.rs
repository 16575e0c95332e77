//! Discovery, both sides: `--role discovery` runs the server and nothing else; with
//! `--discovery ADDR` every node of the process registers there, heart-beats from its own
//! task, and deregisters on the way out.

use super::addr::AddrFlags;
use super::args::NodeArgs;
use super::servers::{spawn_servers, Servers};
use ballot_core::NodeId;
use ballot_operator::discovery::{
    spawn_heartbeats_async, DiscoveryClient, DiscoveryOptions, Registration, DEFAULT_HEARTBEAT_PERIOD,
};
use ballot_operator::pages::HttpNode;
use ballot_transports::PeerAddr;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a heartbeat waits for the node loop's status.
const STATUS_FOR_DISCOVERY: Duration = Duration::from_millis(500);
/// Deadline of the deregistration on the way out (best effort).
const DEREGISTER_DEADLINE: Duration = Duration::from_millis(500);

/// `--role discovery`: the discovery server on `--listen` until SIGTERM or Ctrl-C.
pub(super) async fn run_discovery(args: NodeArgs) -> Result<(), String> {
    let addr = AddrFlags::parse(&args)?
        .listen
        .ok_or("--role discovery needs --listen ADDR (where the discovery server listens)")?;
    let dir = super::creds::folder(args.certs.as_deref(), args.insecure)?;
    if dir.is_none() {
        eprintln!("{}", super::creds::insecure_warning("ballot-node"));
    }
    let addr = addr.resolve_one(args.resolve_deadline()).await.map_err(|e| format!("--listen: {e}"))?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("discovery cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let auth = super::operator_auth::OperatorAuth::for_discovery(dir.as_deref())?;
    let opts = DiscoveryOptions {
        ttl: Duration::from_millis(args.ttl_ms.max(1)),
        access: auth.access,
        refusals: auth.refusals,
        ..DiscoveryOptions::default()
    };
    let servers = Servers { discovery: Some((listener, opts)), ..Servers::default() };
    let server = spawn_servers(servers).expect("a discovery server was given");
    tracing::info!(%local, "discovery listening");
    println!("ready discovery listen={local} control=-");
    // On a signal the server stops accepting and drains its requests in flight.
    server.await.map_err(|e| format!("the discovery server failed: {e}"))
}

/// What a node of this process tells discovery now, or `None` if its loop did not answer
/// in time (then the beat is skipped, so a stuck node drops out of the list).
async fn registration(node: HttpNode, addr: SocketAddr, http: Option<SocketAddr>) -> Option<Registration> {
    let st = node.status(STATUS_FOR_DISCOVERY).await?;
    Some(Registration::from_status(node.id, addr, http, &st))
}

/// One node as discovery lists it: its loop, and where others reach it.
pub(super) struct Member {
    pub node: HttpNode,
    pub reach: SocketAddr,
}

/// The heartbeat tasks of the process's nodes, one each, never awaited by a node: each
/// beat is bounded and a failure is only logged.
pub(super) struct Heartbeats {
    at: PeerAddr,
    tasks: Vec<JoinHandle<()>>,
    /// Each node's own token (`--certs`): its writes carry it.
    tokens: BTreeMap<NodeId, String>,
}

/// A client of discovery at `at` whose writes carry `node`'s token, if it has one.
fn client_for(at: &PeerAddr, node: NodeId, tokens: &BTreeMap<NodeId, String>) -> DiscoveryClient {
    let client = DiscoveryClient::new(at.clone());
    match tokens.get(&node) {
        Some(t) => client.with_token(t.clone()),
        None => client,
    }
}

impl Heartbeats {
    /// Registers every member at `at` and heart-beats each from its own task, with its
    /// own token from `tokens` when it has one; `http` is the HTTP address each
    /// registration carries.
    pub(crate) fn start(
        at: &PeerAddr,
        members: Vec<Member>,
        http: Option<SocketAddr>,
        tokens: &BTreeMap<NodeId, String>,
    ) -> Heartbeats {
        let tasks = members
            .into_iter()
            .map(|Member { node, reach }| {
                spawn_heartbeats_async(
                    client_for(at, node.id, tokens),
                    move || registration(node.clone(), reach, http),
                    DEFAULT_HEARTBEAT_PERIOD,
                )
            })
            .collect();
        tracing::info!(discovery = %at, "registering with discovery");
        Heartbeats { at: at.clone(), tasks, tokens: tokens.clone() }
    }

    /// Stops the beats and deregisters `nodes`, within [`DEREGISTER_DEADLINE`] in all
    /// (a discovery that does not answer only costs a warning).
    pub(crate) async fn stop(self, nodes: &[NodeId]) {
        self.tasks.iter().for_each(|b| b.abort());
        let clients: Vec<(NodeId, DiscoveryClient)> = nodes
            .iter()
            .map(|&id| (id, client_for(&self.at, id, &self.tokens).with_deadline(DEREGISTER_DEADLINE)))
            .collect();
        let gone = futures_util::future::join_all(clients.iter().map(|(id, c)| c.deregister(*id)));
        match tokio::time::timeout(DEREGISTER_DEADLINE, gone).await {
            Ok(results) => {
                for e in results.into_iter().filter_map(Result::err) {
                    tracing::warn!("deregistration skipped: {e}");
                }
            }
            Err(_) => {
                let d = &self.at;
                tracing::warn!("deregistration skipped: discovery at {d} did not answer within {DEREGISTER_DEADLINE:?}")
            }
        }
    }
}
