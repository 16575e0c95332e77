//! A node's HTTP pages (axum, HTTP/1.1): health, status, recent logs, Prometheus metrics
//! and an overview of the whole cluster. `ballot-node --http ADDR` serves them; without
//! the flag there is no HTTP listener.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `200 ok` while every node loop of the process answers within [`HttpLimits::health_deadline`]; `503` if one is paused, stopped or stuck |
//! | `GET /status` | JSON: node, role, ballot, leader, chosen, applied, tally, candidates, transport counters, addresses, uptime; `nodes` lists every role the process runs (a replica runs three) |
//! | `GET /cluster` | JSON: one row per cluster member, each fetched from its node's `/status` (server side, a deadline per peer) |
//! | `GET /` | HTML overview: the tally as bars, slots committed per second (a sparkline of the last minute), and every member (role, up/down, ballot, leader, chosen, applied, tally), refreshed every second from `/cluster` |
//! | `GET /logs` | the last [`LOG_LINES`](ballot_telemetry::log_ring::LOG_LINES) log lines as HTML (newest last, escaped); `?format=json` or `/logs.json` gives a JSON array |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//!
//! Hardening: at most [`MAX_CONNECTIONS`] connections (more are closed at once), a
//! deadline on reading the request head, on the whole connection, on reading a body and on
//! every handler; bodies over [`MAX_BODY`] bytes get `413`; unknown paths `404`, wrong
//! methods `405`, malformed requests `400` from hyper. Nothing a client sends reaches a
//! `panic`. [`serve`] ends on its shutdown future: no new connections, the requests in
//! flight answered within [`HttpLimits::drain_deadline`].
//!
//! # Layout
//! - `status`: the typed [`StatusPage`] and how it is built.
//! - `cluster`: the [`ClusterView`] of every member, and fetching a peer's `/status`.
//! - `overview`: the HTML overview and [`escape`].
//! - `logs`: the log pages.
//! - `metrics`: the Prometheus page.
//!
//! Peers' HTTP addresses come from `--http-peers name=host:port,...`; a member without
//! one shows as "unknown" in the overview.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ballot_core::{NodeId, Status};
use ballot_runtime::metrics::NodeMetrics;
use ballot_runtime::{NodeControl, NodeHandle};
use ballot_telemetry::log_ring::LogRing;
use ballot_transports::{FaultHandle, PeerAddr, StatsHandle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod cluster;
mod logs;
mod metrics;
mod overview;
mod status;

pub use cluster::{cluster_view, fetch_status, http_get, ClusterRow, ClusterView};
pub use metrics::render_metrics;
pub use overview::escape;
pub use status::{
    status_page, Addresses, FaultCounters, FaultDrops, MessageCounts, NodeStatus, NodeSummary, ProcessTransport,
    StatusPage, WireCounters, WireDrops,
};

/// Largest request body accepted (no route takes one; this is only a bound).
pub const MAX_BODY: usize = 16 * 1024;
/// Open connections at most; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 256;

/// Deadlines of the HTTP server.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// A node loop that does not report its status within this is unhealthy.
    pub health_deadline: Duration,
    /// Deadline of each peer's `/status` when building the overview.
    pub peer_deadline: Duration,
    /// The request head must arrive within this.
    pub header_deadline: Duration,
    /// A handler (and reading a body) must finish within this.
    pub request_deadline: Duration,
    /// A connection, keep-alive included, is closed after this.
    pub connection_lifetime: Duration,
    /// After shutdown, how long requests in flight have to finish.
    pub drain_deadline: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            health_deadline: Duration::from_secs(1),
            peer_deadline: Duration::from_millis(800),
            header_deadline: Duration::from_secs(5),
            request_deadline: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            drain_deadline: crate::server::DRAIN_DEADLINE,
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the server serves
// ---------------------------------------------------------------------------------------

/// One node loop of this process, as the HTTP server sees it.
#[derive(Clone, Debug)]
pub struct HttpNode {
    /// Its name.
    pub id: NodeId,
    /// Its loop, to ask for its status.
    pub ctrl: NodeControl,
    /// Its loop's counters.
    pub metrics: Arc<NodeMetrics>,
    /// Its transport's listen address.
    pub listen: Option<SocketAddr>,
    /// Its transport's counters (tcp, zmq).
    pub wire: Option<StatsHandle>,
}

impl HttpNode {
    /// The loop behind `handle`, without a listen address or wire counters.
    pub fn new(handle: &NodeHandle) -> Self {
        HttpNode { id: handle.id, ctrl: handle.controller(), metrics: handle.metrics(), listen: None, wire: None }
    }

    /// With its transport's listen address (as others reach it).
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// With its transport's counters.
    pub fn with_wire(mut self, stats: StatsHandle) -> Self {
        self.wire = Some(stats);
        self
    }

    /// The loop's status, or `None` if it does not answer within `deadline` (paused,
    /// stopped, stuck).
    pub async fn status(&self, deadline: Duration) -> Option<Status> {
        self.ctrl.status(deadline).await
    }
}

/// Everything the pages show about this process and its cluster.
#[derive(Debug)]
pub struct HttpState {
    /// The node loops of this process (one, or three for a replica). Not empty.
    pub nodes: Vec<HttpNode>,
    /// Every member of the cluster (proposers, acceptors, learners), in order.
    pub cluster: Vec<NodeId>,
    /// Members' HTTP addresses (`--http-peers`; host names are looked up at each fetch);
    /// this process's own nodes need none.
    pub http_peers: BTreeMap<NodeId, PeerAddr>,
    /// The candidates the cluster was started with.
    pub candidates: Vec<String>,
    /// `tcp`, `zmq`, `mem`.
    pub transport: String,
    /// The control channel's address, if it has one.
    pub control: Option<SocketAddr>,
    /// This server's own address (set by [`serve`]).
    pub http: Option<SocketAddr>,
    /// The simulated-fault layer shared by this process's transports.
    pub faults: Option<FaultHandle>,
    /// The process's recent log lines.
    pub logs: Option<LogRing>,
    /// When the process started serving (uptime).
    pub started: std::time::Instant,
    /// The server's deadlines.
    pub limits: HttpLimits,
    /// The process's operator-plane refusals (control channel, this server), shown on
    /// `/metrics`.
    pub refusals: Option<crate::access::Refusals>,
}

impl HttpState {
    /// The pages of `nodes`, in a cluster of `cluster` members, on transport `transport`; no peers, addresses, faults or logs yet, default limits.
    pub fn new(nodes: Vec<HttpNode>, cluster: Vec<NodeId>, candidates: Vec<String>, transport: &str) -> Self {
        HttpState {
            nodes,
            cluster,
            http_peers: BTreeMap::new(),
            candidates,
            transport: transport.to_string(),
            control: None,
            http: None,
            faults: None,
            logs: None,
            started: std::time::Instant::now(),
            limits: HttpLimits::default(),
            refusals: None,
        }
    }
}

type Shared = Arc<HttpState>;

/// Parse `name=host:port,...` (the `--http-peers` flag).
pub fn parse_http_peers(list: &[String]) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    ballot_transports::parse_peer_list("--http-peers", list)
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// The routes, with their limits. Exposed for tests and embedding; [`serve`] runs it.
pub fn router(state: Arc<HttpState>) -> Router {
    let deadline = state.limits.request_deadline;
    Router::new()
        .route("/", get(overview::overview))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/cluster", get(cluster::cluster))
        .route("/logs", get(logs::logs))
        .route("/logs.json", get(logs::logs_json))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(move |req, next| guard(req, next, deadline)))
        .with_state(state)
}

/// Serve `state` on `listener` until `shutdown` completes; then stop accepting, let the
/// requests in flight finish within [`HttpLimits::drain_deadline`], and return. Every
/// connection has a deadline for its request head and a lifetime; at most
/// [`MAX_CONNECTIONS`] are open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    state.http = listener.local_addr().ok().or(state.http);
    let limits = crate::server::ConnLimits {
        max_connections: MAX_CONNECTIONS,
        header_deadline: state.limits.header_deadline,
        connection_lifetime: state.limits.connection_lifetime,
        drain_deadline: state.limits.drain_deadline,
        refusals: state.refusals.clone(),
    };
    crate::server::run(listener, router(Arc::new(state)), limits, "http", shutdown).await;
}

/// Limits every request: a body over [`MAX_BODY`] is refused with 413 (by its announced
/// length, or as it is read), the body and the handler have a deadline.
async fn guard(req: Request, next: Next, deadline: Duration) -> Response {
    let announced =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(|v| v.trim().parse::<u64>());
    match announced {
        Some(Ok(n)) if n > MAX_BODY as u64 => return too_large(),
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "bad content-length\n").into_response(),
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "request body too slow\n").into_response(),
    };
    let req = Request::from_parts(parts, Body::from(body));
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the node did not answer in time\n").into_response(),
    }
}

fn too_large() -> Response {
    let mut r = (StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_BODY} bytes\n")).into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn not_found(uri: Uri) -> Response {
    let path: String = uri.path().chars().take(200).collect();
    (StatusCode::NOT_FOUND, format!("no page at {path}; see / , /healthz, /status, /cluster, /logs, /metrics\n"))
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

async fn healthz(State(s): State<Shared>) -> Response {
    let statuses = statuses(&s, s.limits.health_deadline).await;
    let silent: Vec<String> =
        s.nodes.iter().zip(&statuses).filter(|(_, st)| st.is_none()).map(|(n, _)| n.id.to_string()).collect();
    if silent.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unavailable: {} did not answer within {:?}\n", silent.join(", "), s.limits.health_deadline),
        )
            .into_response()
    }
}

/// Every node's status, asked concurrently, each within `deadline`.
async fn statuses(s: &HttpState, deadline: Duration) -> Vec<Option<Status>> {
    let mut waits = Vec::new();
    for n in &s.nodes {
        let n = n.clone();
        waits.push(tokio::spawn(async move { n.status(deadline).await }));
    }
    let mut out = Vec::new();
    for w in waits {
        out.push(w.await.ok().flatten());
    }
    out
}

fn json_response<T: Serialize>(v: &T) -> Response {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn status(State(s): State<Shared>) -> Response {
    json_response(&status_page(&s).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn http_peers_parse() {
        let p = parse_http_peers(&["proposer-1=127.0.0.1:8001".into(), " learner-2 = 127.0.0.1:8002".into()]).unwrap();
        assert_eq!(p[&NodeId::learner(2)], "127.0.0.1:8002".parse().unwrap());
        assert!(parse_http_peers(&["proposer-1".into()]).is_err());
        assert!(parse_http_peers(&["nobody=127.0.0.1:1".into()]).is_err());
        let named = parse_http_peers(&["acceptor-1=acceptor-1:8000".into()]).unwrap();
        assert_eq!(named[&NodeId::acceptor(1)], PeerAddr::Host { host: "acceptor-1".into(), port: 8000 });
        let e = parse_http_peers(&["acceptor-1=acceptor 1:8000".into()]).unwrap_err();
        assert!(e.starts_with("--http-peers: 'acceptor 1:8000'") && e.ends_with("(for acceptor-1)"), "{e}");
    }
}
