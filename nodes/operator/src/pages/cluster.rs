//! The `/cluster` view: one row per member, from this process's own status or from the
//! member's `/status` page, fetched within the peer deadline.

use super::status::{status_page, NodeSummary, StatusPage};
use super::{json_response, HttpState, Shared};
use axum::extract::State;
use axum::response::Response;
use ballot_core::NodeId;
use ballot_transports::PeerAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What `GET /cluster` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterView {
    /// The address of the pages that answered.
    #[serde(rename = "self")]
    pub self_http: Option<String>,
    /// The candidates the cluster was started with.
    pub candidates: Vec<String>,
    /// One row per member, in cluster order.
    pub nodes: Vec<ClusterRow>,
}

/// A member in [`ClusterView`]; its status fields are `null` when it is not known.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterRow {
    /// Its name, e.g. `acceptor-2`.
    pub node: String,
    /// Its role.
    pub role: String,
    /// Its pages' address, if known.
    pub http: Option<String>,
    /// Whether its node loop answered.
    pub up: bool,
    /// Its ballot (see [`NodeSummary::ballot`]).
    pub ballot: Option<String>,
    /// The leader it believes in.
    pub leader: Option<String>,
    /// Whether it is that leader.
    pub is_leader: Option<bool>,
    /// Highest slot known chosen with every slot below it.
    pub chosen: Option<u64>,
    /// Last slot applied (learners).
    pub applied: Option<u64>,
    /// Votes per candidate (learners).
    pub tally: Option<BTreeMap<String, u64>>,
    /// Slots holding an accepted value (acceptors).
    pub accepted_slots: Option<u64>,
    /// Why it is not known or not up.
    pub error: Option<String>,
}

impl ClusterRow {
    fn new(id: NodeId, http: Option<&PeerAddr>, entry: Result<&NodeSummary, String>) -> Self {
        let mut row = ClusterRow {
            node: id.to_string(),
            role: id.role.to_string(),
            http: http.map(|a| a.to_string()),
            ..Default::default()
        };
        match entry {
            Err(e) => row.error = Some(e),
            Ok(e) => {
                row.up = e.responding;
                row.ballot = e.ballot.clone();
                row.leader = e.leader.clone();
                row.is_leader = Some(e.is_leader);
                row.chosen = e.chosen;
                row.applied = e.applied;
                row.tally = e.tally.clone();
                row.accepted_slots = e.accepted_slots;
                if !row.up {
                    row.error = Some("the node loop does not answer (paused or stuck)".to_string());
                }
            }
        }
        row
    }
}

/// One row per member: its own `/status` entry (from this process, or fetched from its
/// node's HTTP address within the peer deadline), or why it is not known.
pub async fn cluster_view(s: &HttpState) -> ClusterView {
    let own: BTreeMap<NodeId, NodeSummary> = status_page(s)
        .await
        .nodes
        .into_iter()
        .filter_map(|n| Some((n.summary.node.parse::<NodeId>().ok()?, n.summary)))
        .collect();
    // One fetch per distinct address (a replica serves three members), all at once.
    let mut fetches: BTreeMap<PeerAddr, tokio::task::JoinHandle<Result<StatusPage, String>>> = BTreeMap::new();
    for id in s.cluster.iter().filter(|id| !own.contains_key(id)) {
        if let Some(addr) = s.http_peers.get(id) {
            let deadline = s.limits.peer_deadline;
            fetches.entry(addr.clone()).or_insert_with(|| tokio::spawn(fetch_status(addr.clone(), deadline)));
        }
    }
    let mut fetched: BTreeMap<PeerAddr, Result<StatusPage, String>> = BTreeMap::new();
    for (addr, f) in fetches {
        fetched.insert(addr, f.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    let rows = s
        .cluster
        .iter()
        .map(|id| {
            if let Some(e) = own.get(id) {
                return ClusterRow::new(*id, s.http.map(PeerAddr::from).as_ref(), Ok(e));
            }
            let http = s.http_peers.get(id);
            let entry = match http.and_then(|a| fetched.get(a).map(|f| (a, f))) {
                None => Err("no HTTP address (--http-peers)".to_string()),
                Some((_, Err(e))) => Err(e.clone()),
                Some((a, Ok(page))) => {
                    page.node(&id.to_string()).map(|n| &n.summary).ok_or_else(|| format!("{a} does not serve {id}"))
                }
            };
            ClusterRow::new(*id, http, entry)
        })
        .collect();
    ClusterView { self_http: s.http.map(|a| a.to_string()), candidates: s.candidates.clone(), nodes: rows }
}

pub(super) async fn cluster(State(s): State<Shared>) -> Response {
    json_response(&cluster_view(&s).await)
}

/// GET `/status` of another node, within `deadline` for everything (connect, write, read).
pub async fn fetch_status(addr: impl Into<PeerAddr>, deadline: Duration) -> Result<StatusPage, String> {
    let addr = addr.into();
    let (code, body) = http_get(addr.clone(), "/status", deadline).await?;
    if code != 200 {
        return Err(format!("{addr} answered {code}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{addr}: bad /status JSON: {e}"))
}

/// GET `path` from `addr` within `deadline`: status code and body. Discovery's client
/// (hyper) does the HTTP; answers are capped at [`crate::discovery::MAX_ANSWER`].
pub async fn http_get(addr: impl Into<PeerAddr>, path: &str, deadline: Duration) -> Result<(u16, Vec<u8>), String> {
    crate::discovery::DiscoveryClient::get_raw(&addr.into(), path, deadline).await
}
