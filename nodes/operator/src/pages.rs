//! A node's HTTP pages (axum, HTTP/1.1): health, status, recent logs, Prometheus metrics
//! and an overview of the whole cluster. `ballot-node --http ADDR` serves them; without
//! the flag there is no HTTP listener.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `200 ok` while every node loop of the process answers within [`HttpLimits::health_deadline`]; `503` if one is paused, stopped or stuck |
//! | `GET /status` | JSON: node, role, ballot, leader, chosen, applied, tally, candidates, transport counters, addresses, uptime; `nodes` lists every role the process runs (a replica runs three) |
//! | `GET /cluster` | JSON: one row per cluster member, each fetched from its node's `/status` (server side, a deadline per peer) |
//! | `GET /` | HTML overview of every member (role, up/down, ballot, leader, chosen, applied, tally), refreshed every second from `/cluster` |
//! | `GET /logs` | the last [`LOG_LINES`] log lines as HTML (newest last, escaped); `?format=json` or `/logs.json` gives a JSON array |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//!
//! Hardening: at most [`MAX_CONNECTIONS`] connections (more are closed at once), a
//! deadline on reading the request head, on the whole connection, on reading a body and on
//! every handler; bodies over [`MAX_BODY`] bytes get `413`; unknown paths `404`, wrong
//! methods `405`, malformed requests `400` from hyper. Nothing a client sends reaches a
//! `panic`.
//!
//! Peers' HTTP addresses come from `--http-peers name=host:port,...`; a member without
//! one shows as "unknown" in the overview.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ballot_core::{NodeId, Status};
use ballot_runtime::metrics::{MetricsSnapshot, NodeMetrics};
use ballot_runtime::{NodeControl, NodeHandle};
use ballot_telemetry::log_ring::{LogRing, LOG_LINES};
use ballot_transports::{FaultHandle, FaultStats, PeerAddr, StatsHandle, WireStats};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    pub id: NodeId,
    pub ctrl: NodeControl,
    pub metrics: Arc<NodeMetrics>,
    /// Its transport's listen address.
    pub listen: Option<SocketAddr>,
    /// Its transport's counters (tcp, zmq).
    pub wire: Option<StatsHandle>,
}

impl HttpNode {
    pub fn new(handle: &NodeHandle) -> Self {
        HttpNode { id: handle.id, ctrl: handle.controller(), metrics: handle.metrics(), listen: None, wire: None }
    }

    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

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
    pub candidates: Vec<String>,
    /// `tcp`, `zmq`, `mem`.
    pub transport: String,
    pub control: Option<SocketAddr>,
    /// This server's own address (set by [`serve`]).
    pub http: Option<SocketAddr>,
    /// The simulated-fault layer shared by this process's transports.
    pub faults: Option<FaultHandle>,
    pub logs: Option<LogRing>,
    pub started: std::time::Instant,
    pub limits: HttpLimits,
}

impl HttpState {
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
        .route("/", get(overview))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/cluster", get(cluster))
        .route("/logs", get(logs))
        .route("/logs.json", get(logs_json))
        .route("/metrics", get(metrics))
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

fn node_json(n: &HttpNode, st: Option<&Status>, m: &MetricsSnapshot) -> Json {
    let mut o = Map::new();
    o.insert("node".into(), json!(n.id.to_string()));
    o.insert("role".into(), json!(n.id.role.to_string()));
    o.insert("responding".into(), json!(st.is_some()));
    let st = st.cloned().unwrap_or_default();
    o.insert("ballot".into(), json!(st.ballot.map(|b| b.to_string())));
    o.insert("ballot_round".into(), json!(st.ballot.map(|b| b.round)));
    o.insert("leader".into(), json!(st.leader.map(|l| l.to_string())));
    o.insert("is_leader".into(), json!(st.leader == Some(n.id)));
    o.insert("chosen".into(), json!(st.chosen));
    o.insert("applied".into(), json!(st.applied));
    let tally = st.tally.as_ref().map(|t| t.iter().map(|(c, v)| (c.clone(), json!(v))).collect::<Map<_, _>>());
    o.insert("tally".into(), json!(tally));
    o.insert("votes".into(), json!(st.tally.as_ref().map(|t| t.iter().map(|(_, v)| v).sum::<u64>())));
    o.insert("accepted_slots".into(), json!(st.accepted_slots));
    o.insert("elections".into(), json!(st.elections));
    o.insert("listen".into(), json!(n.listen.map(|a| a.to_string())));
    let (sent, received) = m.peers.values().fold((0, 0), |(s, r), c| (s + c.sent, r + c.received));
    o.insert(
        "messages".into(),
        json!({"sent": sent, "received": received, "steps": m.steps, "persist_calls": m.persist_calls}),
    );
    o.insert("transport".into(), n.wire.as_ref().map(|w| wire_json(&w.get())).unwrap_or(Json::Null));
    Json::Object(o)
}

fn wire_drops(w: &WireStats) -> [(&'static str, u64); 7] {
    [
        ("queue_full", w.dropped_queue_full),
        ("oversized", w.dropped_oversized),
        ("decode", w.dropped_decode),
        ("version", w.dropped_version),
        ("unreachable", w.dropped_unreachable),
        ("truncated", w.truncated),
        ("bad_handshake", w.bad_handshake),
    ]
}

fn fault_drops(f: &FaultStats) -> [(&'static str, u64); 3] {
    [("partition", f.dropped_partition), ("partition_inbound", f.dropped_inbound), ("random", f.dropped_random)]
}

fn wire_json(w: &WireStats) -> Json {
    let dropped: Map<String, Json> = wire_drops(w).iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "frames_sent": w.frames_sent,
        "frames_received": w.frames_received,
        "bytes_sent": w.bytes_sent,
        "bytes_received": w.bytes_received,
        "connections_opened": w.connections_opened,
        "connections_closed": w.connections_closed,
        "connect_failures": w.connect_failures,
        "dropped": dropped,
    })
}

async fn status_json(s: &HttpState) -> Json {
    let statuses = statuses(s, s.limits.health_deadline).await;
    let nodes: Vec<Json> =
        s.nodes.iter().zip(&statuses).map(|(n, st)| node_json(n, st.as_ref(), &n.metrics.snapshot())).collect();
    let mut top = match nodes.first() {
        Some(Json::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let mut transport = Map::new();
    transport.insert("kind".into(), json!(s.transport));
    if let Some(f) = &s.faults {
        let f = f.stats();
        let dropped: Map<String, Json> = fault_drops(&f).iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        transport.insert(
            "faults".into(),
            json!({"sent": f.sent, "dropped": dropped, "duplicated": f.duplicated, "delayed": f.delayed}),
        );
    }
    if let Some(Json::Object(w)) = top.remove("transport") {
        transport.extend(w);
    }
    top.insert("transport".into(), Json::Object(transport));
    top.insert("candidates".into(), json!(s.candidates));
    let listen: Map<String, Json> =
        s.nodes.iter().map(|n| (n.id.to_string(), json!(n.listen.map(|a| a.to_string())))).collect();
    let http_peers: Map<String, Json> =
        s.http_peers.iter().map(|(n, a)| (n.to_string(), json!(a.to_string()))).collect();
    top.insert(
        "addresses".into(),
        json!({
            "listen": listen,
            "control": s.control.map(|a| a.to_string()),
            "http": s.http.map(|a| a.to_string()),
            "http_peers": http_peers,
        }),
    );
    top.insert("uptime_seconds".into(), json!(s.started.elapsed().as_secs_f64()));
    top.insert("nodes".into(), Json::Array(nodes));
    Json::Object(top)
}

fn json_response(v: &Json) -> Response {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn status(State(s): State<Shared>) -> Response {
    json_response(&status_json(&s).await)
}

/// One row per member: its own `/status` entry (from this process, or fetched from its
/// node's HTTP address within the peer deadline), or why it is not known.
async fn cluster_json(s: &HttpState) -> Json {
    let own: BTreeMap<NodeId, Json> = match status_json(s).await.get("nodes") {
        Some(Json::Array(a)) => {
            a.iter().filter_map(|n| Some((n.get("node")?.as_str()?.parse::<NodeId>().ok()?, n.clone()))).collect()
        }
        _ => BTreeMap::new(),
    };
    // One fetch per distinct address (a replica serves three members), all at once.
    let mut fetches: BTreeMap<PeerAddr, tokio::task::JoinHandle<Result<Json, String>>> = BTreeMap::new();
    for id in &s.cluster {
        if own.contains_key(id) {
            continue;
        }
        if let Some(addr) = s.http_peers.get(id) {
            let deadline = s.limits.peer_deadline;
            fetches.entry(addr.clone()).or_insert_with(|| tokio::spawn(fetch_status(addr.clone(), deadline)));
        }
    }
    let mut fetched: BTreeMap<PeerAddr, Result<Json, String>> = BTreeMap::new();
    for (addr, f) in fetches {
        fetched.insert(addr, f.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    let rows: Vec<Json> = s
        .cluster
        .iter()
        .map(|id| {
            let http = if own.contains_key(id) { s.http.map(PeerAddr::from) } else { s.http_peers.get(id).cloned() };
            let base = json!({"node": id.to_string(), "role": id.role.to_string(), "http": http.as_ref().map(|a| a.to_string())});
            let (entry, error) = match own.get(id) {
                Some(e) => (Some(e.clone()), None),
                None => match http.as_ref().and_then(|a| fetched.get(a)) {
                    None => (None, Some("no HTTP address (--http-peers)".to_string())),
                    Some(Err(e)) => (None, Some(e.clone())),
                    Some(Ok(v)) => match v.get("nodes").and_then(|n| n.as_array()).and_then(|a| {
                        a.iter().find(|n| n.get("node").and_then(|x| x.as_str()) == Some(id.to_string().as_str()))
                    }) {
                        Some(e) => (Some(e.clone()), None),
                        None => (None, Some(format!("{} does not serve {id}", http.as_ref().map(|a| a.to_string()).unwrap_or_default()))),
                    },
                },
            };
            let mut row = match base {
                Json::Object(o) => o,
                _ => Map::new(),
            };
            let up = entry.as_ref().and_then(|e| e.get("responding")).and_then(|r| r.as_bool()).unwrap_or(false);
            row.insert("up".into(), json!(up));
            for k in ["ballot", "leader", "is_leader", "chosen", "applied", "tally", "accepted_slots"] {
                row.insert(k.into(), entry.as_ref().and_then(|e| e.get(k)).cloned().unwrap_or(Json::Null));
            }
            let error = error.or_else(|| (!up).then(|| "the node loop does not answer (paused or stuck)".to_string()));
            row.insert("error".into(), json!(error));
            Json::Object(row)
        })
        .collect();
    json!({ "self": s.http.map(|a| a.to_string()), "candidates": s.candidates, "nodes": rows })
}

async fn cluster(State(s): State<Shared>) -> Response {
    json_response(&cluster_json(&s).await)
}

/// GET `/status` of another node, within `deadline` for everything (connect, write, read).
pub async fn fetch_status(addr: impl Into<PeerAddr>, deadline: Duration) -> Result<Json, String> {
    let addr = addr.into();
    let (code, body) = http_get(addr.clone(), "/status", deadline).await?;
    if code != 200 {
        return Err(format!("{addr} answered {code}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{addr}: bad /status JSON: {e}"))
}

/// GET `path` from `addr` within `deadline`: status code and body. The one small HTTP
/// client of the crate (discovery's), which also reads chunked answers; answers are
/// capped at 4 MiB.
pub async fn http_get(addr: impl Into<PeerAddr>, path: &str, deadline: Duration) -> Result<(u16, Vec<u8>), String> {
    crate::discovery::DiscoveryClient::get_raw(&addr.into(), path, deadline).await
}

/// `?format=json` asks for JSON.
fn wants_json(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "format=json"))
}

async fn logs(State(s): State<Shared>, uri: Uri) -> Response {
    let lines = s.logs.as_ref().map(|l| l.lines()).unwrap_or_default();
    if wants_json(&uri) {
        return json_response(&json!(lines));
    }
    let title = format!("{} logs", s.nodes.first().map(|n| n.id.to_string()).unwrap_or_default());
    let mut body = String::with_capacity(lines.len() * 120 + 1024);
    let _ = write!(
        body,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{CSS}</style></head><body>\
         <h1>{t}</h1><p>The last {n} lines, newest last (at most {LOG_LINES}). <a href=\"/logs?format=json\">JSON</a> · \
         <a href=\"/\">cluster</a></p><table class=\"logs\"><tr><th>time</th><th>level</th><th>target</th><th>message</th></tr>",
        t = escape(&title),
        n = lines.len()
    );
    for l in &lines {
        let _ = write!(
            body,
            "<tr class=\"{lv}\"><td>{}</td><td>{lv}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.time),
            escape(&l.target),
            escape(&l.message),
            lv = escape(&l.level)
        );
    }
    body.push_str("</table></body></html>");
    Html(body).into_response()
}

async fn logs_json(State(s): State<Shared>) -> Response {
    json_response(&json!(s.logs.as_ref().map(|l| l.lines()).unwrap_or_default()))
}

/// Escape text for HTML (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
.logs td:last-child{font-family:monospace;white-space:pre-wrap}.WARN{background:#fff6d5}.ERROR{background:#fdd}\
.up{color:#070}.down{color:#b00;font-weight:bold}.leader{font-weight:bold}";

async fn overview(State(s): State<Shared>) -> Response {
    let c = cluster_json(&s).await;
    let me = s.nodes.iter().map(|n| n.id.to_string()).collect::<Vec<_>>().join(", ");
    let mut rows = String::new();
    for r in c.get("nodes").and_then(|n| n.as_array()).into_iter().flatten() {
        let cell = |k: &str| match r.get(k) {
            None | Some(Json::Null) => "-".to_string(),
            Some(Json::String(s)) => s.clone(),
            Some(Json::Object(o)) => o.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
            Some(v) => v.to_string(),
        };
        let up = r.get("up").and_then(|u| u.as_bool()).unwrap_or(false);
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&cell("node")),
            escape(&cell("role")),
            if up { "up" } else { "down" },
            if up { "up" } else { "down" },
            escape(&cell("ballot")),
            escape(&cell("leader")),
            escape(&cell("chosen")),
            escape(&cell("applied")),
            escape(&cell("tally")),
            escape(&cell("error")),
        );
    }
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ballot cluster</title><style>{CSS}</style></head><body>\
<h1>ballot cluster</h1><p>Served by {me}. Refreshes every second (<span id=\"at\">server-rendered</span>). \
<a href=\"/status\">status</a> · <a href=\"/logs\">logs</a> · <a href=\"/metrics\">metrics</a></p>\
<table><thead><tr><th>node</th><th>role</th><th>state</th><th>ballot</th><th>leader</th><th>chosen</th><th>applied</th>\
<th>tally</th><th>note</th></tr></thead><tbody id=\"rows\">{rows}</tbody></table>\
<script>{JS}</script></body></html>",
        me = escape(&me),
    );
    Html(page).into_response()
}

/// Refreshes the overview table from `/cluster` every second; text only (no HTML from
/// the data), each fetch aborted after 900 ms.
const JS: &str = r#"
function show(v){if(v===null||v===undefined)return "-";if(typeof v==="object")return Object.entries(v).map(([k,x])=>k+": "+x).join(", ");return String(v);}
async function refresh(){
  const ctl=new AbortController();const t=setTimeout(()=>ctl.abort(),900);
  try{
    const r=await fetch("/cluster",{signal:ctl.signal,cache:"no-store"});const c=await r.json();
    const body=document.getElementById("rows");const rows=[];
    for(const n of c.nodes){
      const tr=document.createElement("tr");
      const cells=[n.node,n.role,n.up?"up":"down",n.ballot,n.leader,n.chosen,n.applied,n.tally,n.error];
      cells.forEach((v,i)=>{const td=document.createElement("td");td.textContent=show(v);
        if(i===2)td.className=n.up?"up":"down";if(i===0&&n.is_leader)td.className="leader";tr.appendChild(td);});
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    document.getElementById("at").textContent="updated "+new Date().toLocaleTimeString();
  }catch(e){document.getElementById("at").textContent="this node does not answer: "+e;}
  finally{clearTimeout(t);}
}
setInterval(refresh,1000);
"#;

// ---------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------

/// Prometheus text exposition (format 0.0.4).
struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(&prom_value(value));
        self.0.push('\n');
    }
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The whole `/metrics` page for this process.
pub async fn render_metrics(s: &HttpState) -> String {
    let statuses = statuses(s, s.limits.health_deadline).await;
    let snaps: Vec<MetricsSnapshot> = s.nodes.iter().map(|n| n.metrics.snapshot()).collect();
    let names: Vec<String> = s.nodes.iter().map(|n| n.id.to_string()).collect();
    let mut p = Prom(String::with_capacity(8192));

    p.family("ballot_up", "gauge", "1 if the node loop answered a status request within the health deadline.");
    for (name, st) in names.iter().zip(&statuses) {
        p.sample("ballot_up", &[("node", name)], st.is_some() as u8 as f64);
    }
    p.family("ballot_uptime_seconds", "gauge", "Seconds since the HTTP server started.");
    p.sample("ballot_uptime_seconds", &[], s.started.elapsed().as_secs_f64());

    p.family("ballot_messages_sent_total", "counter", "Messages the node handed to its transport, by destination.");
    for (name, m) in names.iter().zip(&snaps) {
        for (peer, c) in &m.peers {
            if c.sent > 0 {
                p.sample("ballot_messages_sent_total", &[("node", name), ("peer", &peer.to_string())], c.sent as f64);
            }
        }
    }
    p.family("ballot_messages_received_total", "counter", "Messages the node took from its transport, by sender.");
    for (name, m) in names.iter().zip(&snaps) {
        for (peer, c) in &m.peers {
            if c.received > 0 {
                p.sample(
                    "ballot_messages_received_total",
                    &[("node", name), ("peer", &peer.to_string())],
                    c.received as f64,
                );
            }
        }
    }
    p.family(
        "ballot_messages_send_failed_total",
        "counter",
        "Messages the transport refused at once (queue full, no address, closed), by destination.",
    );
    for (name, m) in names.iter().zip(&snaps) {
        for (peer, c) in &m.peers {
            if c.dropped > 0 {
                p.sample(
                    "ballot_messages_send_failed_total",
                    &[("node", name), ("peer", &peer.to_string())],
                    c.dropped as f64,
                );
            }
        }
    }
    // Drops: every transport of the process, plus the shared simulated-fault layer.
    let mut drops: BTreeMap<&'static str, u64> = BTreeMap::new();
    let wires: Vec<(&String, WireStats)> =
        names.iter().zip(&s.nodes).filter_map(|(name, n)| Some((name, n.wire.as_ref()?.get()))).collect();
    for (_, w) in &wires {
        for (reason, v) in wire_drops(w) {
            *drops.entry(reason).or_default() += v;
        }
    }
    let faults = s.faults.as_ref().map(|f| f.stats());
    if let Some(f) = &faults {
        for (reason, v) in fault_drops(f) {
            *drops.entry(reason).or_default() += v;
        }
    }
    p.family(
        "ballot_messages_dropped_total",
        "counter",
        "Messages and frames dropped by this process's transports and simulated faults, by reason.",
    );
    for (reason, v) in &drops {
        p.sample("ballot_messages_dropped_total", &[("reason", reason)], *v as f64);
    }
    if let Some(f) = &faults {
        p.family("ballot_messages_duplicated_total", "counter", "Messages duplicated by simulated faults.");
        p.sample("ballot_messages_duplicated_total", &[], f.duplicated as f64);
        p.family("ballot_messages_delayed_total", "counter", "Message copies delayed by simulated faults.");
        p.sample("ballot_messages_delayed_total", &[], f.delayed as f64);
    }
    let wire_families: [(&str, &str, fn(&WireStats) -> u64); 7] = [
        ("ballot_transport_frames_sent_total", "Frames written to peers.", |w| w.frames_sent),
        ("ballot_transport_frames_received_total", "Frames received and decoded.", |w| w.frames_received),
        ("ballot_transport_bytes_sent_total", "Bytes written to peers.", |w| w.bytes_sent),
        ("ballot_transport_bytes_received_total", "Bytes received and decoded.", |w| w.bytes_received),
        ("ballot_transport_connections_opened_total", "Connections opened.", |w| w.connections_opened),
        ("ballot_transport_connections_closed_total", "Connections closed.", |w| w.connections_closed),
        ("ballot_transport_connect_failures_total", "Failed connection attempts.", |w| w.connect_failures),
    ];
    for (family, help, get) in wire_families {
        p.family(family, "counter", help);
        for (name, w) in &wires {
            p.sample(family, &[("node", name)], get(w) as f64);
        }
    }

    if let Some(t) = ballot_telemetry::export_stats() {
        let trace_families: [(&str, &str, &std::sync::atomic::AtomicU64); 3] = [
            ("ballot_trace_spans_exported_total", "Spans the OTLP collector took.", &t.exported),
            ("ballot_trace_spans_dropped_total", "Spans dropped because the export queue was full.", &t.dropped),
            ("ballot_trace_spans_failed_total", "Spans in exports the collector refused or did not answer.", &t.failed),
        ];
        for (family, help, v) in trace_families {
            p.family(family, "counter", help);
            p.sample(family, &[], v.load(std::sync::atomic::Ordering::Relaxed) as f64);
        }
    }
    p.family("ballot_steps_total", "counter", "Steps of the node loop (a batch of inputs, one persist, then sends).");
    for (name, m) in names.iter().zip(&snaps) {
        p.sample("ballot_steps_total", &[("node", name)], m.steps as f64);
    }
    p.family("ballot_persist_total", "counter", "Storage::persist calls (one group commit each).");
    for (name, m) in names.iter().zip(&snaps) {
        p.sample("ballot_persist_total", &[("node", name)], m.persist_calls as f64);
    }
    p.family("ballot_storage_errors_total", "counter", "Failed Storage::persist calls (the node stops on one).");
    for (name, m) in names.iter().zip(&snaps) {
        p.sample("ballot_storage_errors_total", &[("node", name)], m.storage_errors as f64);
    }
    p.family("ballot_fsync_seconds", "histogram", "Latency of Storage::persist (write and fsync of a step's batch).");
    for (name, m) in names.iter().zip(&snaps) {
        for (le, c) in &m.fsync.buckets {
            p.sample("ballot_fsync_seconds_bucket", &[("node", name), ("le", &prom_value(*le))], *c as f64);
        }
        p.sample("ballot_fsync_seconds_sum", &[("node", name)], m.fsync.sum_seconds);
        p.sample("ballot_fsync_seconds_count", &[("node", name)], m.fsync.count as f64);
    }

    // From the roles' status (absent for a node that does not answer).
    type Pick = fn(&HttpNode, &Status) -> Option<f64>;
    let from_status: [(&str, &str, &str, Pick); 7] = [
        (
            "ballot_votes_committed_total",
            "counter",
            "Votes counted in the ballot box (learners; one per voter).",
            |_, s| s.tally.as_ref().map(|t| t.iter().map(|(_, v)| *v).sum::<u64>() as f64),
        ),
        ("ballot_slots_applied", "gauge", "Last log slot applied (learners).", |_, s| s.applied.map(|v| v as f64)),
        ("ballot_slots_chosen", "gauge", "Highest slot known chosen with every slot below it.", |_, s| {
            s.chosen.map(|v| v as f64)
        }),
        ("ballot_elections_total", "counter", "Elections this proposer started since it started.", |_, s| {
            s.elections.map(|v| v as f64)
        }),
        (
            "ballot_ballot_round",
            "gauge",
            "Round of the current ballot (proposers) or of the promised ballot (acceptors).",
            |_, s| s.ballot.map(|b| b.round as f64),
        ),
        ("ballot_is_leader", "gauge", "1 if this proposer leads.", |n, s| {
            (n.id.role == ballot_core::Role::Proposer).then_some((s.leader == Some(n.id)) as u8 as f64)
        }),
        ("ballot_accepted_slots", "gauge", "Slots holding an accepted value (acceptors).", |_, s| {
            s.accepted_slots.map(|v| v as f64)
        }),
    ];
    for (family, kind, help, pick) in from_status {
        p.family(family, kind, help);
        for ((name, n), st) in names.iter().zip(&s.nodes).zip(&statuses) {
            if let Some(v) = st.as_ref().and_then(|st| pick(n, st)) {
                p.sample(family, &[("node", name)], v);
            }
        }
    }
    if let Some(logs) = &s.logs {
        let last = logs.lines().last().map_or(0, |l| l.seq);
        p.family("ballot_log_lines_total", "counter", "Log lines written since the process started.");
        p.sample("ballot_log_lines_total", &[], last as f64);
    }
    p.0
}

async fn metrics(State(s): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render_metrics(&s).await).into_response()
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
