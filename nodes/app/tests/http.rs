//! The HTTP pages of a node (`ballot_operator::pages`), over real sockets with handwritten
//! HTTP/1.1 requests.
//!
//! - In process: a cluster on the in-memory transport (1 proposer, 3 acceptors, 1
//!   learner), one HTTP server for the proposer and one for the learner, each naming the
//!   other in its peers: /healthz (200, then 503 while the proposer is paused), /status
//!   fields and values, /cluster and / (every member, up or unknown), /metrics parsed as
//!   Prometheus text, /logs as HTML (escaped) and as JSON, 404, 405, 413 (announced and
//!   chunked), garbage and a half-sent request that do not stop the server.
//! - The `ballot-node` binary: a replica (three roles in one process) with `--http`
//!   prints `http=` in its ready line and serves the same pages over TCP.
//!
//! Every wait has a deadline; nothing asserts how long anything took.

use ballot_core::{Acceptor, Command, Config, DurableState, Learner, MemStorage, NodeId, Proposer, Reply};
use ballot_operator::pages::{self as http, HttpNode, HttpState};
use ballot_runtime::{spawn_node, ClientHandle, NodeHandle, NodeOptions, SubmitOptions};
use ballot_telemetry::log_ring::LogRing;
use ballot_transports::{EventLog, MemNetwork};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// A tiny HTTP client
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Send `bytes` as they are, read the answer until the server closes (requests say
/// `Connection: close`), within [`DEADLINE`].
async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(bytes).await?;
        let mut buf = Vec::new();
        // The server may close before reading all we sent (413): keep what arrived.
        let _ = s.read_to_end(&mut buf).await;
        Ok(buf)
    };
    tokio::time::timeout(DEADLINE, exchange).await.map_err(|_| std::io::Error::other("no answer in time"))?
}

fn parse(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status =
        status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{status_line}"));
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let body = String::from_utf8_lossy(&buf[split + 4..]).to_string();
    let resp = Resp { status, headers, body };
    assert!(resp.header("transfer-encoding").is_none(), "the server sends lengths, not chunks");
    if let Some(len) = resp.header("content-length") {
        assert_eq!(len.parse::<usize>().ok(), Some(buf.len() - split - 4), "content-length matches the body");
    }
    resp
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Resp {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    parse(&raw(addr, req.as_bytes()).await.unwrap_or_else(|e| panic!("{method} {path}: {e}")))
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path).await
}

/// Poll `path` until `ok` holds for its JSON, within [`DEADLINE`].
async fn wait_json(addr: SocketAddr, path: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = get(addr, path).await;
        if r.status == 200 {
            let j = r.json();
            if ok(&j) {
                return j;
            }
            if tokio::time::Instant::now() > end {
                panic!("{what}: {path} never showed it; last: {j:#}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus text format 0.0.4
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
}

/// A `# HELP` or `# TYPE` line (`rest` follows the `# `), each family declared once;
/// any other comment is skipped.
fn parse_comment(
    rest: &str,
    at: &dyn Fn() -> String,
    helps: &mut BTreeMap<String, String>,
    types: &mut BTreeMap<String, String>,
) {
    let mut w = rest.splitn(3, ' ');
    match (w.next(), w.next(), w.next()) {
        (Some("HELP"), Some(name), Some(help)) => {
            assert!(valid_name(name), "{}", at());
            assert!(helps.insert(name.into(), help.into()).is_none(), "HELP twice: {}", at());
        }
        (Some("TYPE"), Some(name), Some(kind)) => {
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{}", at());
            assert!(types.insert(name.into(), kind.into()).is_none(), "TYPE twice: {}", at());
        }
        _ => {} // another comment
    }
}

/// The labels `key="value",...}` of a sample (`body` follows its `{`), and what follows
/// the `}`.
fn parse_labels<'a>(body: &'a str, at: &dyn Fn() -> String) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    let mut chars = body.char_indices().peekable();
    let end;
    loop {
        let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed labels: {}", at()));
        if c == '}' {
            end = i;
            break;
        }
        if c == ',' {
            continue;
        }
        let mut key = String::from(c);
        loop {
            let (_, c) = chars.next().unwrap_or_else(|| panic!("{}", at()));
            if c == '=' {
                break;
            }
            key.push(c);
        }
        assert!(valid_name(&key), "bad label name {key:?}: {}", at());
        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{}", at());
        let mut value = String::new();
        loop {
            let (_, c) = chars.next().unwrap_or_else(|| panic!("unclosed value: {}", at()));
            match c {
                '"' => break,
                '\\' => match chars.next().map(|x| x.1) {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    _ => panic!("bad escape: {}", at()),
                },
                c => value.push(c),
            }
        }
        assert!(labels.insert(key, value).is_none(), "label twice: {}", at());
    }
    (labels, &body[end + 1..])
}

/// The value of a sample and its optional timestamp, nothing after them.
fn parse_value(rest: &str, at: &dyn Fn() -> String) -> f64 {
    let mut w = rest.split_whitespace();
    let value = w.next().unwrap_or_else(|| panic!("no value: {}", at()));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value is not a float: {}", at())),
    };
    if let Some(ts) = w.next() {
        ts.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp: {}", at()));
    }
    assert!(w.next().is_none(), "trailing words: {}", at());
    value
}

/// Parse the exposition strictly: `# HELP`/`# TYPE` lines, then samples
/// `name{label="value",...} value`; every sample belongs to a family declared before it
/// with both HELP and TYPE, each family is declared once.
fn parse_prometheus(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", no + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            parse_comment(rest, &at, &mut helps, &mut types);
            continue;
        }
        assert!(!line.starts_with('#'), "{}", at());
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value: {}", at()),
        };
        assert!(valid_name(name), "bad metric name: {}", at());
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(body) => parse_labels(body, &at),
            None => (BTreeMap::new(), rest),
        };
        let value = parse_value(rest, &at);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).map(String::as_str) == Some("histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {}", at());
        assert!(helps.contains_key(family), "sample before its HELP: {}", at());
        if types[family] == "counter" {
            assert!(value >= 0.0, "negative counter: {}", at());
        }
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    (types, samples)
}

/// Every histogram: per label set, buckets in ascending `le`, cumulative, ending with
/// `+Inf` equal to `_count`, and a `_sum`.
fn check_histograms(types: &BTreeMap<String, String>, samples: &[Sample]) -> usize {
    let mut checked = 0;
    for (family, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").unwrap_or_else(|| panic!("{family}_bucket without le"));
            let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or_else(|_| panic!("le={le}")) };
            series.entry(labels).or_default().push((le, s.value));
        }
        assert!(!series.is_empty(), "{family} has no buckets");
        for (labels, buckets) in series {
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{family}{labels:?}: le not ascending");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{labels:?}: buckets not cumulative");
            let last = buckets.last().copied().unwrap_or_default();
            assert_eq!(last.0, f64::INFINITY, "{family}{labels:?}: last bucket is not +Inf");
            let find = |suffix: &str| {
                samples
                    .iter()
                    .find(|s| s.name == format!("{family}{suffix}") && s.labels == labels)
                    .unwrap_or_else(|| panic!("{family}{suffix}{labels:?} missing"))
                    .value
            };
            assert_eq!(last.1, find("_count"), "{family}{labels:?}: +Inf bucket != _count");
            assert!(find("_sum") >= 0.0);
            checked += 1;
        }
    }
    checked
}

fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

// ---------------------------------------------------------------------------------------
// An in-memory cluster with HTTP servers for its proposer and its learner
// ---------------------------------------------------------------------------------------

struct Cluster {
    handles: BTreeMap<NodeId, NodeHandle>,
    client: ClientHandle,
    /// HTTP of proposer-1 and of learner-1.
    proposer_http: SocketAddr,
    learner_http: SocketAddr,
    net: MemNetwork,
}

const P1: NodeId = NodeId::proposer(1);
const L1: NodeId = NodeId::learner(1);

async fn start(logs: LogRing) -> Cluster {
    let candidates: Vec<String> = ["ada", "grace", "linus"].map(String::from).to_vec();
    let config = Arc::new(Config::new(1, 3, 1, candidates.clone()));
    let net = MemNetwork::new(7, EventLog::new(false));
    let mut handles = BTreeMap::new();
    for (i, &id) in config.proposers.iter().chain(&config.acceptors).chain(&config.learners).enumerate() {
        let (t, d, s) = (net.register(id), DurableState::default(), MemStorage::new());
        let h = match id.role {
            ballot_core::Role::Proposer => {
                spawn_node(Proposer::new(id, config.clone(), d), t, s, NodeOptions::seeded(i as u64))
            }
            ballot_core::Role::Acceptor => {
                spawn_node(Acceptor::new(id, config.clone(), d), t, s, NodeOptions::seeded(i as u64))
            }
            _ => spawn_node(Learner::new(id, config.clone(), d), t, s, NodeOptions::seeded(i as u64)),
        };
        handles.insert(id, h);
    }
    let client =
        ClientHandle::spawn(net.register(NodeId::client(1)), config.proposers.clone(), config.nodes().collect());
    let cluster: Vec<NodeId> =
        config.proposers.iter().chain(&config.acceptors).chain(&config.learners).copied().collect();
    let lp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ll = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (proposer_http, learner_http) = (lp.local_addr().expect("addr"), ll.local_addr().expect("addr"));
    for (listener, id, peer, peer_addr) in [(lp, P1, L1, learner_http), (ll, L1, P1, proposer_http)] {
        let mut state = HttpState::new(vec![HttpNode::new(&handles[&id])], cluster.clone(), candidates.clone(), "mem");
        state.http_peers = BTreeMap::from([(peer, peer_addr.into())]);
        state.logs = Some(logs.clone());
        tokio::spawn(http::serve(listener, state, std::future::pending()));
    }
    Cluster { handles, client, proposer_http, learner_http, net }
}

/// Runs `body` with a subscriber that keeps log lines in `logs` (this thread: the test
/// runtime is current-thread, so the node tasks log here too).
fn with_logs() -> (LogRing, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::layer::SubscriberExt;
    let logs = LogRing::default();
    let sub = tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("info")).with(logs.layer());
    let guard = tracing::subscriber::set_default(sub);
    (logs, guard)
}

async fn vote(c: &Cluster, voter: &str, candidate: &str) {
    let cmd = Command::Vote {
        request_id: c.client.next_request_id(),
        client: c.client.id(),
        voter: voter.into(),
        candidate: candidate.into(),
    };
    let opts = SubmitOptions { timeout: DEADLINE, ..SubmitOptions::default() };
    match c.client.submit(cmd, &opts).await {
        Ok(Reply::Vote { result: Ok(()), .. }) => {}
        other => panic!("vote {voter}->{candidate}: {other:?}"),
    }
}

/// `/status` of the proposer: it leads, has chosen, and tells its addresses.
async fn proposer_status(pa: SocketAddr, la: SocketAddr) {
    let s = get(pa, "/status").await;
    assert_eq!(s.status, 200);
    assert!(s.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let s = s.json();
    assert_eq!(s["node"], "proposer-1");
    assert_eq!(s["role"], "proposer");
    assert_eq!(s["leader"], "proposer-1");
    assert_eq!(s["responding"], true);
    assert!(s["ballot_round"].as_u64().is_some_and(|r| r >= 1), "{s:#}");
    assert!(s["ballot"].as_str().is_some_and(|b| b.ends_with(".1")), "{s:#}");
    assert!(s["elections"].as_u64().is_some_and(|e| e >= 1));
    assert!(s["chosen"].as_u64().is_some_and(|x| x >= 1), "{s:#}");
    assert_eq!(s["candidates"], serde_json::json!(["ada", "grace", "linus"]));
    assert_eq!(s["transport"]["kind"], "mem");
    assert_eq!(s["addresses"]["http"], pa.to_string());
    assert_eq!(s["addresses"]["http_peers"]["learner-1"], la.to_string());
    assert!(s["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0));
    assert_eq!(s["nodes"].as_array().map(Vec::len), Some(1));
    assert!(s["messages"]["sent"].as_u64().is_some_and(|n| n > 0));
}

/// `/status` of the learner: the tally as applied.
async fn learner_status(la: SocketAddr) {
    let l = wait_json(la, "/status", "two votes applied", |j| j["votes"] == 2).await;
    assert_eq!(l["role"], "learner");
    assert_eq!(l["tally"], serde_json::json!({"ada": 1, "grace": 1, "linus": 0}));
    assert!(l["applied"].as_u64().is_some_and(|a| a >= 1));
}

/// `/cluster` and the overview: every member; proposer and learner up (one of them
/// fetched from the other server), acceptors without an HTTP address.
async fn cluster_and_overview(pa: SocketAddr, la: SocketAddr) {
    let cl = get(pa, "/cluster").await.json();
    let rows = cl["nodes"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["node"].as_str()).collect();
    assert_eq!(names, ["proposer-1", "acceptor-1", "acceptor-2", "acceptor-3", "learner-1"]);
    let row = |n: &str| rows.iter().find(|r| r["node"] == n).expect(n);
    assert_eq!(row("proposer-1")["up"], true);
    assert_eq!(row("learner-1")["up"], true, "{cl:#}");
    assert_eq!(row("learner-1")["tally"]["ada"], 1);
    assert_eq!(row("acceptor-2")["up"], false);
    assert!(row("acceptor-2")["error"].as_str().is_some_and(|e| e.contains("--http-peers")));
    let page = get(la, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    for n in names {
        assert!(page.body.contains(&format!("<td>{n}</td>")), "overview lacks {n}");
    }
    assert!(page.body.contains("setInterval(refresh,1000)"), "the overview refreshes itself");
    // The tally as bars, from the server already: a bar as long as the leading count, one of none.
    assert!(
        page.body.contains(r#"<div class="bar"><span>ada</span><i style="width:300px"></i>1</div>"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"<div class="bar"><span>linus</span><i style="width:0px"></i>0</div>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"<svg id="spark""#), "the commits-per-second sparkline");
}

/// `/metrics` of `node` at `addr`: well formed, every family with its kind, and the
/// per-node samples every node has.
async fn metrics_of(addr: SocketAddr, node: &str) {
    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let (types, samples) = parse_prometheus(&m.body);
    assert_eq!(check_histograms(&types, &samples), 1, "one fsync histogram for one node");
    for (family, kind) in [
        ("ballot_messages_sent_total", "counter"),
        ("ballot_messages_received_total", "counter"),
        ("ballot_messages_dropped_total", "counter"),
        ("ballot_votes_committed_total", "counter"),
        ("ballot_slots_applied", "gauge"),
        ("ballot_elections_total", "counter"),
        ("ballot_ballot_round", "gauge"),
        ("ballot_is_leader", "gauge"),
        ("ballot_fsync_seconds", "histogram"),
        ("ballot_steps_total", "counter"),
        ("ballot_persist_total", "counter"),
    ] {
        assert_eq!(types.get(family).map(String::as_str), Some(kind), "{family}");
    }
    assert_eq!(value_of(&samples, "ballot_up", &[("node", node)]), Some(1.0));
    let persists = value_of(&samples, "ballot_persist_total", &[("node", node)]).expect("persist total");
    assert!(persists >= 1.0);
    assert_eq!(value_of(&samples, "ballot_fsync_seconds_count", &[("node", node)]), Some(persists));
    assert!(value_of(&samples, "ballot_steps_total", &[("node", node)]).is_some_and(|v| v >= 1.0));
}

/// `/metrics` on both servers; the proposer's leadership and traffic, the learner's
/// committed votes.
async fn metrics_of_both(pa: SocketAddr, la: SocketAddr) {
    for (addr, node) in [(pa, "proposer-1"), (la, "learner-1")] {
        metrics_of(addr, node).await;
    }
    let (_, samples) = parse_prometheus(&get(pa, "/metrics").await.body);
    assert_eq!(value_of(&samples, "ballot_is_leader", &[("node", "proposer-1")]), Some(1.0));
    assert!(value_of(&samples, "ballot_elections_total", &[("node", "proposer-1")]).is_some_and(|v| v >= 1.0));
    assert!(value_of(&samples, "ballot_ballot_round", &[("node", "proposer-1")]).is_some_and(|v| v >= 1.0));
    for a in ["acceptor-1", "acceptor-2", "acceptor-3"] {
        let sent = value_of(&samples, "ballot_messages_sent_total", &[("node", "proposer-1"), ("peer", a)]);
        let received = value_of(&samples, "ballot_messages_received_total", &[("node", "proposer-1"), ("peer", a)]);
        assert!(sent.is_some_and(|v| v >= 1.0) && received.is_some_and(|v| v >= 1.0), "{a}: {sent:?} {received:?}");
    }
    let (_, samples) = parse_prometheus(&get(la, "/metrics").await.body);
    assert_eq!(value_of(&samples, "ballot_votes_committed_total", &[("node", "learner-1")]), Some(2.0));
    assert!(value_of(&samples, "ballot_slots_applied", &[("node", "learner-1")]).is_some_and(|v| v >= 1.0));
}

/// `/logs`: the runtime's lines, newest last, escaped; the same as JSON.
async fn logs_pages(pa: SocketAddr) {
    tracing::info!("probe <script>alert('x')</script> & \"quoted\"");
    let html = get(pa, "/logs").await;
    assert_eq!(html.status, 200);
    assert!(html.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(html.body.contains("leadership gained node=proposer-1"), "{}", html.body);
    assert!(html.body.contains("election started node=proposer-1"));
    assert!(html.body.contains("node started node=learner-1"));
    assert!(html.body.contains("probe &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"));
    assert!(!html.body.contains("<script>alert"), "log text reaches the page unescaped");
    let started = html.body.find("node started").expect("started");
    let probe = html.body.find("probe &lt;").expect("probe");
    assert!(started < probe, "newest last");
    for path in ["/logs?format=json", "/logs.json"] {
        let j = get(pa, path).await;
        assert!(j.header("content-type").is_some_and(|t| t.starts_with("application/json")));
        let lines = j.json();
        let lines = lines.as_array().unwrap_or_else(|| panic!("{path} is not an array"));
        let last = lines.last().expect("lines");
        assert_eq!(last["message"], "probe <script>alert('x')</script> & \"quoted\"");
        assert_eq!(last["level"], "INFO");
        assert!(lines.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    }
}

/// A forged heartbeat "from" a proposer that is not configured: refused, counted on
/// `/metrics` under its reason, and logged in one line.
async fn refusals_are_counted_and_logged(c: &Cluster, pa: SocketAddr) {
    use ballot_transports::Transport;
    let forger = c.net.register(NodeId::client(66));
    let heartbeat = ballot_core::Message::Heartbeat { ballot: ballot_core::Ballot::new(1 << 40, 9), chosen: 0 };
    for _ in 0..3 {
        forger.send(ballot_transports::Envelope::new(NodeId::proposer(9), P1, heartbeat.clone())).expect("mem send");
    }
    let refused = |body: &str| {
        let (_, samples) = parse_prometheus(body);
        value_of(&samples, "ballot_refused_total", &[("node", "proposer-1"), ("reason", "not_a_proposer")])
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while refused(&get(pa, "/metrics").await.body) != Some(3.0) {
        assert!(tokio::time::Instant::now() < deadline, "three refusals counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (types, samples) = parse_prometheus(&get(pa, "/metrics").await.body);
    assert_eq!(types.get("ballot_refused_total").map(String::as_str), Some("counter"));
    let zero = value_of(&samples, "ballot_refused_total", &[("node", "proposer-1"), ("reason", "bad_snapshot")]);
    assert_eq!(zero, Some(0.0), "every reason is listed, zeros included");
    let logs = get(pa, "/logs.json").await.json();
    let lines: Vec<String> = logs.as_array().expect("lines").iter().map(|l| l.to_string()).collect();
    let refusals: Vec<&String> = lines.iter().filter(|l| l.contains("refused a message")).collect();
    assert_eq!(refusals.len(), 1, "one line per reason per second: {refusals:?}");
    assert!(refusals[0].contains("not_a_proposer") && refusals[0].contains("proposer-9"), "{}", refusals[0]);
}

/// A paused node loop is unhealthy; resumed, healthy again.
async fn paused_is_unhealthy(c: &Cluster, pa: SocketAddr, la: SocketAddr) {
    c.handles[&P1].pause();
    let h = get(pa, "/healthz").await;
    assert_eq!(h.status, 503, "{h:?}");
    assert!(h.body.contains("proposer-1"));
    let st = get(pa, "/status").await.json();
    assert_eq!(st["responding"], false);
    let (_, samples) = parse_prometheus(&get(pa, "/metrics").await.body);
    assert_eq!(value_of(&samples, "ballot_up", &[("node", "proposer-1")]), Some(0.0));
    let cl = get(la, "/cluster").await.json();
    assert_eq!(cl["nodes"][0]["up"], false, "{cl:#}");
    c.handles[&P1].resume();
    assert_eq!(get(pa, "/healthz").await.status, 200);
}

#[tokio::test]
async fn pages_of_a_running_cluster() {
    let (logs, _guard) = with_logs();
    let c = start(logs.clone()).await;
    let (pa, la) = (c.proposer_http, c.learner_http);

    // Health.
    let h = get(pa, "/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));

    // A leader, then two votes through it.
    wait_json(pa, "/status", "proposer-1 leads", |j| j["is_leader"] == true).await;
    vote(&c, "alice", "ada").await;
    vote(&c, "bob", "grace").await;

    proposer_status(pa, la).await;
    learner_status(la).await;
    cluster_and_overview(pa, la).await;
    metrics_of_both(pa, la).await;
    logs_pages(pa).await;
    refusals_are_counted_and_logged(&c, pa).await;
    paused_is_unhealthy(&c, pa, la).await;

    for (_, h) in c.handles {
        let _ = h.stop().await;
    }
}

#[tokio::test]
async fn bad_requests_are_refused_and_the_server_lives_on() {
    let (logs, _guard) = with_logs();
    let c = start(logs).await;
    let a = c.proposer_http;

    // Unknown path, wrong method.
    let r = get(a, "/no/such/page").await;
    assert_eq!(r.status, 404);
    for (m, p) in [("POST", "/status"), ("DELETE", "/metrics"), ("PUT", "/"), ("POST", "/logs")] {
        let r = request(a, m, p).await;
        assert_eq!(r.status, 405, "{m} {p}");
        assert!(r.header("allow").is_some_and(|v| v.contains("GET")), "{m} {p}: {r:?}");
    }

    // An oversized body: announced (refused before it is sent), and chunked (refused as
    // it is read).
    let big = vec![b'x'; http::MAX_BODY * 4];
    let mut req =
        format!("POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", big.len())
            .into_bytes();
    req.extend_from_slice(&big);
    assert_eq!(parse(&raw(a, &req).await.expect("answer")).status, 413);
    let req = format!("GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 1u64 << 40);
    assert_eq!(parse(&raw(a, req.as_bytes()).await.expect("answer")).status, 413);
    let mut req =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..8 {
        req.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        req.extend_from_slice(&[b'y'; 8192]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(parse(&raw(a, &req).await.expect("answer")).status, 413);
    let r = request(a, "GET", "/healthz").await;
    assert_eq!(r.status, 200);

    // Garbage: a bad request line, binary noise, a huge header, a bad content-length.
    let mut huge = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend_from_slice(&[b'a'; 200_000]);
    huge.extend_from_slice(b"\r\n\r\n");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for bytes in [
        b"HELLO WORLD\r\n\r\n".to_vec(),
        b"GET /\x00\xff HTTP/9.9\r\n\r\n".to_vec(),
        noise,
        huge,
        b"GET /status HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_vec(),
    ] {
        match raw(a, &bytes).await {
            Ok(buf) if !buf.is_empty() => {
                let r = parse(&buf);
                assert!((400..500).contains(&r.status), "{}", r.status);
            }
            _ => {} // closed or reset: also fine
        }
        assert_eq!(get(a, "/healthz").await.status, 200, "the server lives on");
    }

    // A client that sends half a request and stalls does not hold up others.
    let mut stalled = TcpStream::connect(a).await.expect("connect");
    stalled.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    assert_eq!(get(a, "/healthz").await.status, 200);
    drop(stalled);

    for (_, h) in c.handles {
        let _ = h.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

#[cfg(unix)]
mod binary {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Stdio};

    const BIN: &str = env!("CARGO_BIN_EXE_ballot-node");

    struct Kill(Child, std::path::PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
    }

    #[tokio::test]
    async fn a_replica_serves_its_pages() {
        let dir = std::env::temp_dir().join(format!("ballot-http-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let peers = format!(
            "proposer-1={},acceptor-1={},learner-1={},client-1={}",
            free_port(),
            free_port(),
            free_port(),
            free_port()
        );
        // A replica loads one identity per role from the folder.
        let certs = dir.join("certs");
        let nodes =
            [ballot_core::NodeId::proposer(1), ballot_core::NodeId::acceptor(1), ballot_core::NodeId::learner(1)];
        ballot_transports::auth::generate(&certs, &nodes).expect("credentials");
        let child = std::process::Command::new(BIN)
            .args(["--id", "1", "--role", "replica", "--transport", "tcp", "--peers", &peers, "--http", "127.0.0.1:0"])
            .arg("--certs")
            .arg(&certs)
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ballot-node");
        let mut node = Kill(child, dir);
        let stdout = node.0.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut http_addr = None;
        for name in ["proposer-1", "acceptor-1", "learner-1"] {
            let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("no ready line for {name}"));
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.first(), Some(&"ready"), "{line}");
            assert_eq!(words.get(1), Some(&name), "{line}");
            let addr: SocketAddr = words
                .iter()
                .find_map(|w| w.strip_prefix("http="))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no http= in {line:?}"));
            assert!(http_addr.is_none_or(|a| a == addr), "one HTTP server per process");
            http_addr = Some(addr);
        }
        let a = http_addr.expect("http address");
        assert_eq!(get(a, "/healthz").await.body, "ok\n");
        let s = wait_json(a, "/status", "proposer-1 leads", |j| j["is_leader"] == true).await;
        assert_eq!(s["node"], "proposer-1");
        assert_eq!(s["transport"]["kind"], "tcp");
        let roles: Vec<&str> =
            s["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["role"].as_str()).collect();
        assert_eq!(roles, ["proposer", "acceptor", "learner"]);
        assert!(s["transport"]["frames_sent"].as_u64().is_some_and(|n| n > 0), "{s:#}");
        let (types, samples) = parse_prometheus(&get(a, "/metrics").await.body);
        assert_eq!(check_histograms(&types, &samples), 3, "a histogram per role");
        assert!(value_of(&samples, "ballot_fsync_seconds_count", &[("node", "acceptor-1")]).is_some_and(|v| v >= 1.0));
        assert!(value_of(&samples, "ballot_messages_dropped_total", &[("reason", "partition")]).is_some());
        let logs = get(a, "/logs").await.body;
        assert!(logs.contains("durable state loaded node=acceptor-1"), "{logs}");
        assert!(logs.contains("leadership gained node=proposer-1"));
        let cl = get(a, "/cluster").await.json();
        assert!(cl["nodes"].as_array().expect("rows").iter().all(|r| r["up"] == true), "{cl:#}");
    }
}
