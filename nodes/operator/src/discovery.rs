//! Discovery: where nodes say who they are and where they listen, and where operators and
//! clients ask who the leader is. A convenience for finding nodes, **never** part of the
//! commit path: quorums are counted over the configured acceptors, not over this list
//! (seed 2 counted over registered nodes and let one acceptor decide alone).
//!
//! # Server
//! [`serve`] answers a small JSON API over HTTP/1.1 ([`router`] gives the same routes to
//! embed elsewhere):
//! - `POST /register` and `POST /heartbeat` (the same thing: a heartbeat is a register
//!   again): `{"node": "proposer-1", "role": "proposer", "addr": "127.0.0.1:7001",
//!   "http": "127.0.0.1:8001", "ballot": "3.1", "leader": true}`. `node` and `addr` are
//!   required; `role`, when given, must be the role of `node`; `http`, `ballot` and
//!   `leader` are optional; only a proposer may claim `leader`. Answers
//!   `{"ok": true, "ttl_ms": ...}`.
//! - `POST /deregister` `{"node": "proposer-1"}`: `{"ok": true, "removed": bool}`.
//! - `GET /members`: `{"ttl_ms": ..., "members": [{node, role, addr, http, ballot, leader,
//!   last_seen_ms_ago}, ...]}`, members heard within the ttl, in node order.
//! - `GET /leader`: the member described below, or 404 `{"error": "..."}`.
//!
//! Every error is a JSON object with one `error` line: 400 for a body that is not JSON or
//! names a bad node, role, address or ballot; 413 for a body over [`MAX_BODY`]; 404 for an
//! unknown path; 405 for a known path with the wrong method; 503 when the registry is full
//! ([`DiscoveryOptions::max_members`]). Nothing a client sends can make the server panic.
//!
//! # Who is the leader
//! Among the proposers heard within the ttl that claim leadership, the one with the highest
//! ballot (a claim without a ballot ranks below every ballot; equal ballots, which honest
//! proposers never share, break by node id). A proposer that has been silent for the ttl
//! is never named, so a leader that died is named for at most the ttl after its last
//! heartbeat (seed 2 named a dead leader for 45 s). A leader that lost its leadership
//! without knowing it (partitioned, still heart-beating) is named until the new leader's
//! higher ballot is heard, which is why clients treat the answer as a hint and a follower
//! proposer forwards.
//!
//! Expiry is computed when the registry is read, against a [`Clock`] (tokio's clock by
//! default, so tokio's paused time drives it in tests; [`ManualClock`] for tests over real
//! sockets): no background task. Expired entries are dropped on the next write.
//!
//! # Client
//! [`DiscoveryClient`]: `register`, `deregister`, `members`, `leader`, each bounded by one
//! deadline (1 s by default) covering connect, request and answer, and each failing with
//! one line that names the discovery address. It speaks HTTP/1.1 with hyper over a tokio
//! `TcpStream` (one connection per request, `Connection: close`, the answer read up to
//! [`MAX_ANSWER`] bytes).
//!
//! [`spawn_heartbeats`] (or [`spawn_heartbeats_async`], for a source such as a node's
//! async status) re-registers a node every period with fresh information; failures are
//! logged and otherwise ignored: discovery being down never affects a node.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, LengthLimitError};
use hyper_util::rt::TokioIo;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ballot_core::{Ballot, NodeId, Role};
use ballot_transports::PeerAddr;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a member that stopped heart-beating stays listed (and a leader named).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);
/// How often [`spawn_heartbeats`] re-registers by default.
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);
/// Deadline of one client call by default.
pub const DEFAULT_CLIENT_DEADLINE: Duration = Duration::from_secs(1);
/// Largest request body the server accepts.
pub const MAX_BODY: usize = 64 << 10;
/// A body over [`MAX_BODY`] but under this is read to its end before the 413 is sent, so
/// the client sees the answer and not a connection reset; past this the server stops
/// reading and closes.
const MAX_DRAIN: usize = 1 << 20;
/// How long the server waits for a request body.
const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// Largest answer the client reads.
pub const MAX_ANSWER: usize = 4 << 20;
/// Largest answer head (status line and headers) the client reads.
const MAX_HEAD: usize = 64 << 10;
/// Open connections at most: a heartbeat holds one for a moment (the client closes it).
pub const MAX_CONNECTIONS: usize = 1024;
/// The request head must arrive within this.
const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// A connection, keep-alive included, is closed after this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Members the registry holds by default.
pub const DEFAULT_MAX_MEMBERS: usize = 1024;

// ---------------------------------------------------------------------------------------
// Clock

/// Where the server reads the time. Tokio's clock by default (paused time in tests moves
/// it); any function of your choice otherwise.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    /// `tokio::time::Instant::now`.
    pub fn tokio() -> Self {
        Clock(Arc::new(Instant::now))
    }
    pub fn from_fn(f: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }
    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::tokio()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// A clock that moves only when told: for tests whose server runs on real sockets and
/// real time but whose expiry must be exact.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Instant::now())))
    }
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
    pub fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------
// Data

/// What a node tells discovery about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub node: NodeId,
    /// Its data (protocol) address.
    pub addr: SocketAddr,
    /// Its HTTP pages, if it serves them.
    pub http: Option<SocketAddr>,
    /// Proposer: its current ballot; acceptor: its promised ballot.
    pub ballot: Option<Ballot>,
    /// A proposer that believes it is the leader.
    pub leader: bool,
}

impl Registration {
    pub fn new(node: NodeId, addr: SocketAddr) -> Self {
        Registration { node, addr, http: None, ballot: None, leader: false }
    }

    /// What a node registers, from its own status: its ballot, and for a proposer whether
    /// it believes it leads (leadership comes from the proposers' ballots, never from
    /// discovery).
    pub fn from_status(node: NodeId, addr: SocketAddr, http: Option<SocketAddr>, status: &ballot_core::Status) -> Self {
        Registration {
            node,
            addr,
            http,
            ballot: status.ballot,
            leader: node.role == Role::Proposer && status.leader == Some(node),
        }
    }
}

/// A member as discovery lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: NodeId,
    pub addr: SocketAddr,
    pub http: Option<SocketAddr>,
    pub ballot: Option<Ballot>,
    pub leader: bool,
    /// Milliseconds since its last register or heartbeat, when it was listed.
    pub last_seen_ms_ago: u64,
}

impl Member {
    pub fn role(&self) -> Role {
        self.node.role
    }
}

/// `"3.1"`: round 3 of proposer 1, as [`Ballot`] prints it.
pub fn parse_ballot(s: &str) -> Result<Ballot, String> {
    let bad = || format!("'{}' is not a ballot: use round.proposer, e.g. 3.1", one_line(s, 40));
    let (round, proposer) = s.split_once('.').ok_or_else(bad)?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(round) || !digits(proposer) {
        return Err(bad());
    }
    Ok(Ballot::new(round.parse().map_err(|_| bad())?, proposer.parse().map_err(|_| bad())?))
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "proposer" => Ok(Role::Proposer),
        "acceptor" => Ok(Role::Acceptor),
        "learner" => Ok(Role::Learner),
        "client" => Ok(Role::Client),
        _ => Err(format!("'{}' is not a role: use proposer, acceptor, learner or client", one_line(s, 40))),
    }
}

fn parse_node(s: &str) -> Result<NodeId, String> {
    s.parse::<NodeId>()
        .map_err(|_| format!("'{}' is not a node name: use role-index, e.g. proposer-1", one_line(s, 40)))
}

fn parse_addr(field: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{field} '{}' is not an address: use ip:port, e.g. 127.0.0.1:7001", one_line(s, 60)))
}

/// At most `max` characters of `s`, control characters escaped, so it fits on one line.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// JSON shapes on the wire: strings, converted and checked by hand so a bad field gives a
// clear line and not serde's idea of an enum.

#[derive(Serialize, Deserialize)]
struct WireRegistration {
    node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ballot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leader: Option<bool>,
}

impl WireRegistration {
    fn from_registration(r: &Registration) -> Self {
        WireRegistration {
            node: r.node.to_string(),
            role: Some(r.node.role.to_string()),
            addr: r.addr.to_string(),
            http: r.http.map(|a| a.to_string()),
            ballot: r.ballot.map(|b| b.to_string()),
            leader: Some(r.leader),
        }
    }

    fn check(self) -> Result<Registration, String> {
        let node = parse_node(&self.node)?;
        if let Some(role) = &self.role {
            let role = parse_role(role)?;
            if role != node.role {
                return Err(format!("role {role} does not match node {node}"));
            }
        }
        let addr = parse_addr("addr", &self.addr)?;
        let http = self.http.as_deref().map(|h| parse_addr("http", h)).transpose()?;
        let ballot = self.ballot.as_deref().map(parse_ballot).transpose()?;
        let leader = self.leader.unwrap_or(false);
        if leader && node.role != Role::Proposer {
            return Err(format!("{node} claims leadership: only a proposer can lead"));
        }
        Ok(Registration { node, addr, http, ballot, leader })
    }
}

#[derive(Serialize, Deserialize)]
struct WireDeregister {
    node: String,
}

#[derive(Serialize, Deserialize)]
struct WireMember {
    node: String,
    role: String,
    addr: String,
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    ballot: Option<String>,
    #[serde(default)]
    leader: bool,
    last_seen_ms_ago: u64,
}

impl WireMember {
    fn from_member(m: &Member) -> Self {
        WireMember {
            node: m.node.to_string(),
            role: m.node.role.to_string(),
            addr: m.addr.to_string(),
            http: m.http.map(|a| a.to_string()),
            ballot: m.ballot.map(|b| b.to_string()),
            leader: m.leader,
            last_seen_ms_ago: m.last_seen_ms_ago,
        }
    }

    fn check(self) -> Result<Member, String> {
        let reg = WireRegistration {
            node: self.node,
            role: Some(self.role),
            addr: self.addr,
            http: self.http,
            ballot: self.ballot,
            leader: Some(self.leader),
        }
        .check()?;
        Ok(Member {
            node: reg.node,
            addr: reg.addr,
            http: reg.http,
            ballot: reg.ballot,
            leader: reg.leader,
            last_seen_ms_ago: self.last_seen_ms_ago,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct WireMembers {
    ttl_ms: u64,
    members: Vec<WireMember>,
}

// ---------------------------------------------------------------------------------------
// Registry

/// The registry full: a new member was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("discovery holds {0} members, its limit: {1} was not registered")]
pub struct RegistryFull(pub usize, pub NodeId);

/// The members, with expiry computed against the `now` each call is given. No I/O, no
/// clock of its own: the server passes its [`Clock`]'s time.
#[derive(Debug)]
pub struct Registry {
    ttl: Duration,
    max_members: usize,
    entries: BTreeMap<NodeId, (Registration, Instant)>,
}

impl Registry {
    pub fn new(ttl: Duration, max_members: usize) -> Self {
        Registry { ttl, max_members: max_members.max(1), entries: BTreeMap::new() }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn live(&self, seen: Instant, now: Instant) -> bool {
        now.saturating_duration_since(seen) < self.ttl
    }

    /// Registers or refreshes `reg.node`, seen at `now`. Drops expired entries first.
    pub fn register(&mut self, reg: Registration, now: Instant) -> Result<(), RegistryFull> {
        let ttl = self.ttl;
        self.entries.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < ttl);
        if !self.entries.contains_key(&reg.node) && self.entries.len() >= self.max_members {
            return Err(RegistryFull(self.max_members, reg.node));
        }
        self.entries.insert(reg.node, (reg, now));
        Ok(())
    }

    /// Forgets `node`; whether it was there (expired or not).
    pub fn deregister(&mut self, node: NodeId) -> bool {
        self.entries.remove(&node).is_some()
    }

    /// Members heard within the ttl, in node order.
    pub fn members(&self, now: Instant) -> Vec<Member> {
        self.entries
            .values()
            .filter(|(_, seen)| self.live(*seen, now))
            .map(|(reg, seen)| member(reg, *seen, now))
            .collect()
    }

    /// Among the proposers heard within the ttl that claim leadership, the one with the
    /// highest ballot (no ballot ranks lowest; ties break by node id).
    pub fn leader(&self, now: Instant) -> Option<Member> {
        self.entries
            .values()
            .filter(|(reg, seen)| reg.leader && reg.node.role == Role::Proposer && self.live(*seen, now))
            .max_by_key(|(reg, _)| (reg.ballot, reg.node))
            .map(|(reg, seen)| member(reg, *seen, now))
    }
}

fn member(reg: &Registration, seen: Instant, now: Instant) -> Member {
    Member {
        node: reg.node,
        addr: reg.addr,
        http: reg.http,
        ballot: reg.ballot,
        leader: reg.leader,
        last_seen_ms_ago: millis(now.saturating_duration_since(seen)),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------
// Server

/// How the discovery server behaves.
#[derive(Clone, Debug)]
pub struct DiscoveryOptions {
    /// A member silent for this long is no longer listed nor named leader.
    pub ttl: Duration,
    /// Most members held at once (expired ones do not count).
    pub max_members: usize,
    /// Where the time comes from.
    pub clock: Clock,
    /// After shutdown, how long requests in flight have to finish.
    pub drain_deadline: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            ttl: DEFAULT_TTL,
            max_members: DEFAULT_MAX_MEMBERS,
            clock: Clock::tokio(),
            drain_deadline: crate::server::DRAIN_DEADLINE,
        }
    }
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Mutex<Registry>>,
    clock: Clock,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r)
    }
}

/// Serves discovery on `listener` until `shutdown` completes; then stops accepting, lets
/// the requests in flight finish within [`DiscoveryOptions::drain_deadline`], and returns.
/// Each connection has a deadline for its request head and a lifetime; at most
/// [`MAX_CONNECTIONS`] are open.
pub async fn serve(
    listener: TcpListener,
    opts: DiscoveryOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let limits = crate::server::ConnLimits {
        max_connections: MAX_CONNECTIONS,
        header_deadline: HEADER_DEADLINE,
        connection_lifetime: CONNECTION_LIFETIME,
        drain_deadline: opts.drain_deadline,
    };
    crate::server::run(listener, router(opts), limits, "discovery", shutdown).await;
}

/// The discovery routes, to serve or to nest in another router.
pub fn router(opts: DiscoveryOptions) -> Router {
    let shared =
        Shared { registry: Arc::new(Mutex::new(Registry::new(opts.ttl, opts.max_members))), clock: opts.clock };
    Router::new()
        .route("/register", post(register))
        .route("/heartbeat", post(register))
        .route("/deregister", post(deregister))
        .route("/members", get(members))
        .route("/leader", get(leader))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut body = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, msg: impl fmt::Display) -> Response {
    json(status, serde_json::json!({ "error": msg.to_string() }))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such path: use POST /register, /heartbeat, /deregister or GET /members, /leader")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "wrong method: register, heartbeat and deregister are POST; members and leader are GET",
    )
}

/// The body, at most [`MAX_BODY`] bytes, or the error response to send.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let too_big = || error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is over the {MAX_BODY} byte limit"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DRAIN as u64) {
        return Err(too_big());
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body could not be read: {e}")))?;
            seen = seen.saturating_add(chunk.len());
            if seen <= MAX_BODY {
                buf.extend_from_slice(&chunk);
            } else if seen > MAX_DRAIN {
                break;
            }
        }
        if seen > MAX_BODY {
            Err(too_big())
        } else {
            Ok(buf)
        }
    };
    match tokio::time::timeout(BODY_DEADLINE, read).await {
        Ok(r) => r,
        Err(_) => {
            Err(error(StatusCode::REQUEST_TIMEOUT, format!("request body did not arrive within {BODY_DEADLINE:?}")))
        }
    }
}

#[allow(clippy::result_large_err)] // an error is the response to send, built once
fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body is not the expected JSON: {e}")))
}

async fn register(State(s): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reg = match parse_json::<WireRegistration>(&bytes) {
        Ok(w) => match w.check() {
            Ok(reg) => reg,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        Err(r) => return r,
    };
    let now = s.clock.now();
    match s.with(|r| r.register(reg, now).map(|()| r.ttl())) {
        Ok(ttl) => json(StatusCode::OK, serde_json::json!({ "ok": true, "ttl_ms": millis(ttl) })),
        Err(full) => error(StatusCode::SERVICE_UNAVAILABLE, full),
    }
}

async fn deregister(State(s): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let node = match parse_json::<WireDeregister>(&bytes) {
        Ok(w) => match parse_node(&w.node) {
            Ok(n) => n,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        Err(r) => return r,
    };
    let removed = s.with(|r| r.deregister(node));
    json(StatusCode::OK, serde_json::json!({ "ok": true, "removed": removed }))
}

async fn members(State(s): State<Shared>) -> Response {
    let now = s.clock.now();
    let (ttl, members) = s.with(|r| (r.ttl(), r.members(now)));
    let wire = WireMembers { ttl_ms: millis(ttl), members: members.iter().map(WireMember::from_member).collect() };
    json(StatusCode::OK, serde_json::to_value(wire).unwrap_or_default())
}

async fn leader(State(s): State<Shared>) -> Response {
    let now = s.clock.now();
    let (ttl, leader) = s.with(|r| (r.ttl(), r.leader(now)));
    match leader {
        Some(m) => json(StatusCode::OK, serde_json::to_value(WireMember::from_member(&m)).unwrap_or_default()),
        None => error(StatusCode::NOT_FOUND, format!("no proposer heard within the last {ttl:?} claims leadership")),
    }
}

// ---------------------------------------------------------------------------------------
// Client

/// Why a discovery call failed. Every message is one line naming the discovery address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery at {addr} did not answer within {deadline:?}")]
    Timeout { addr: PeerAddr, deadline: Duration },
    #[error("discovery at {addr} could not be reached: {reason}")]
    Unreachable { addr: PeerAddr, reason: String },
    #[error("discovery at {addr} answered garbage: {what}")]
    Garbage { addr: PeerAddr, what: String },
    #[error("discovery at {addr} refused the request ({status}): {reason}")]
    Refused { addr: PeerAddr, status: u16, reason: String },
}

/// Talks to a discovery server; cheap to clone.
#[derive(Clone, Debug)]
pub struct DiscoveryClient {
    addr: PeerAddr,
    deadline: Duration,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl DiscoveryClient {
    /// A client of the discovery server at `addr`: an IP address, or a host name looked up
    /// at every call (within the call's deadline), so a discovery that restarted at
    /// another address is found there.
    pub fn new(addr: impl Into<PeerAddr>) -> Self {
        DiscoveryClient { addr: addr.into(), deadline: DEFAULT_CLIENT_DEADLINE }
    }

    /// The deadline of each call (connect, request and the whole answer).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn addr(&self) -> &PeerAddr {
        &self.addr
    }

    /// Registers or refreshes `reg` (a heartbeat).
    pub async fn register(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let body = serde_json::to_vec(&WireRegistration::from_registration(reg))
            .map_err(|e| self.garbage(format!("could not encode the registration: {e}")))?;
        let a = self.call("POST", "/register", Some(&body)).await?;
        self.expect_ok(&a)?;
        Ok(())
    }

    /// Forgets `node`; whether discovery had it.
    pub async fn deregister(&self, node: NodeId) -> Result<bool, DiscoveryError> {
        let body = serde_json::to_vec(&WireDeregister { node: node.to_string() })
            .map_err(|e| self.garbage(format!("could not encode the request: {e}")))?;
        let a = self.call("POST", "/deregister", Some(&body)).await?;
        self.expect_ok(&a)?;
        #[derive(Deserialize)]
        struct Removed {
            removed: bool,
        }
        Ok(self.decode::<Removed>(&a.body)?.removed)
    }

    /// The members heard within the ttl.
    pub async fn members(&self) -> Result<Vec<Member>, DiscoveryError> {
        let a = self.call("GET", "/members", None).await?;
        self.expect_ok(&a)?;
        let wire: WireMembers = self.decode(&a.body)?;
        wire.members.into_iter().map(|m| m.check().map_err(|e| self.garbage(e))).collect()
    }

    /// The current leader, or `None` when no live proposer claims leadership.
    pub async fn leader(&self) -> Result<Option<Member>, DiscoveryError> {
        let a = self.call("GET", "/leader", None).await?;
        if a.status == 404 {
            // Only the discovery's own "no leader" answer means none; anything else at
            // 404 (another server on that port) is garbage.
            #[derive(Deserialize)]
            struct E {
                #[allow(dead_code)]
                error: String,
            }
            self.decode::<E>(&a.body)?;
            return Ok(None);
        }
        self.expect_ok(&a)?;
        let wire: WireMember = self.decode(&a.body)?;
        wire.check().map(Some).map_err(|e| self.garbage(e))
    }

    /// A GET of `path` on any HTTP/1.1 server at `addr` (a node's `/status`, say) with this
    /// client's framing, size limit and one deadline: the status code and body, or one
    /// line naming `addr` (not "discovery").
    pub async fn get_raw(addr: &PeerAddr, path: &str, deadline: Duration) -> Result<(u16, Vec<u8>), String> {
        let c = DiscoveryClient::new(addr.clone()).with_deadline(deadline);
        c.call("GET", path, None).await.map(|a| (a.status, a.body)).map_err(|e| match e {
            DiscoveryError::Timeout { .. } => format!("{addr} did not answer within {deadline:?}"),
            DiscoveryError::Unreachable { reason, .. } => format!("{addr} could not be reached: {reason}"),
            DiscoveryError::Garbage { what, .. } => format!("{addr} answered garbage: {what}"),
            DiscoveryError::Refused { status, reason, .. } => format!("{addr} refused ({status}): {reason}"),
        })
    }

    fn garbage(&self, what: impl fmt::Display) -> DiscoveryError {
        DiscoveryError::Garbage { addr: self.addr.clone(), what: one_line(&what.to_string(), 200) }
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, DiscoveryError> {
        serde_json::from_slice(body)
            .map_err(|e| self.garbage(format!("{e} in '{}'", one_line(&String::from_utf8_lossy(body), 80))))
    }

    fn expect_ok(&self, a: &Answer) -> Result<(), DiscoveryError> {
        if (200..300).contains(&a.status) {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct E {
            error: String,
        }
        let reason = match serde_json::from_slice::<E>(&a.body) {
            Ok(e) => one_line(&e.error, 200),
            Err(_) => format!("'{}'", one_line(&String::from_utf8_lossy(&a.body), 80)),
        };
        Err(DiscoveryError::Refused { addr: self.addr.clone(), status: a.status, reason })
    }

    async fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, DiscoveryError> {
        match tokio::time::timeout(self.deadline, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(DiscoveryError::Timeout { addr: self.addr.clone(), deadline: self.deadline }),
        }
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Answer, DiscoveryError> {
        let unreachable =
            |e: std::io::Error| DiscoveryError::Unreachable { addr: self.addr.clone(), reason: e.to_string() };
        let candidates = self.addr.lookup().await.map_err(unreachable)?;
        let stream = TcpStream::connect(&candidates[..]).await.map_err(unreachable)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| self.broken(&e))?;
        let request = self.request(method, path, body)?;
        let answer = async {
            let response = sender.send_request(request).await.map_err(|e| self.broken(&e))?;
            let status = response.status().as_u16();
            let declared = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
            if let Some(n) = declared.and_then(|v| v.parse::<u64>().ok()).filter(|&n| n > MAX_ANSWER as u64) {
                return Err(self.garbage(format!("an answer of {n} bytes, over the {MAX_ANSWER} byte limit")));
            }
            let body = Limited::new(response.into_body(), MAX_ANSWER).collect().await.map_err(|e| {
                if e.is::<LengthLimitError>() {
                    self.garbage(format!("an answer over the {MAX_ANSWER} byte limit"))
                } else {
                    self.garbage(format!("an answer cut short ({})", one_line(&e.to_string(), 80)))
                }
            })?;
            Ok(Answer { status, body: body.to_bytes().to_vec() })
        };
        // The connection is driven here, not on a task of its own: it ends with the call.
        let mut answer = std::pin::pin!(answer);
        let mut conn = std::pin::pin!(conn);
        let mut conn_done = false;
        loop {
            tokio::select! {
                a = &mut answer => return a,
                // Its end (an error included) reaches the answer too, which says why.
                _ = &mut conn, if !conn_done => conn_done = true,
            }
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Request<Full<Bytes>>, DiscoveryError> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::ACCEPT, "application/json")
            .header(header::CONNECTION, "close");
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .map_err(|e| self.garbage(format!("could not build the request for {}: {e}", one_line(path, 80))))
    }

    /// A failed exchange, in words that say what the server did.
    fn broken(&self, e: &hyper::Error) -> DiscoveryError {
        let text = e.to_string();
        let what = if e.is_incomplete_message() {
            "nothing whole (the connection closed without an answer)".to_string()
        } else if e.is_parse_status() {
            "not an HTTP status line".to_string()
        } else if e.is_parse_too_large() {
            format!("an HTTP header over {} KiB", MAX_HEAD >> 10)
        } else if e.is_parse() && text.contains("version") {
            "bytes that are not HTTP".to_string()
        } else if e.is_parse() && text.contains("content-length") {
            "a bad Content-Length header".to_string()
        } else if e.is_parse() {
            format!("an unreadable HTTP header ({text})")
        } else {
            let reason = std::error::Error::source(e).map_or(text.clone(), |s| format!("{text}: {s}"));
            return DiscoveryError::Unreachable { addr: self.addr.clone(), reason: one_line(&reason, 200) };
        };
        self.garbage(what)
    }
}

// ---------------------------------------------------------------------------------------
// Heartbeats

/// Re-registers every `period` (at least 1 ms) with what `registration` says at that
/// moment: the first time at once. Failures are logged (once per outage) and otherwise
/// ignored. Each call is bounded by the client's deadline; a slow discovery delays the
/// next beat, never the node. Abort the handle to stop.
pub fn spawn_heartbeats<F>(client: DiscoveryClient, mut registration: F, period: Duration) -> JoinHandle<()>
where
    F: FnMut() -> Registration + Send + 'static,
{
    spawn_heartbeats_async(client, move || std::future::ready(Some(registration())), period)
}

/// [`spawn_heartbeats`] with an async source, e.g. a node's `status(deadline)`: the
/// future should be bounded; `None` skips that beat (say the node did not answer in time,
/// so that a stuck node stops being listed).
pub fn spawn_heartbeats_async<F, Fut>(client: DiscoveryClient, mut registration: F, period: Duration) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Registration>> + Send,
{
    let period = period.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(reg) = registration().await else { continue };
            match client.register(&reg).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("discovery at {} answers again", client.addr());
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("heartbeat of {} failed (ignored; retrying every {period:?}): {e}", reg.node);
                    }
                    failing = true;
                }
            }
        }
    })
}
