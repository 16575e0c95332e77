//! The discovery server: [`serve`] and [`router`], the handlers and their body limits.

use super::registry::{owns_claim, Clock, Registry};
use super::wire::{
    millis, parse_node, Deregistered, ErrorBody, Registered, WireDeregister, WireMember, WireMembers, WireRegistration,
};
use super::{
    BODY_DEADLINE, CONNECTION_LIFETIME, DEFAULT_MAX_MEMBERS, DEFAULT_TTL, HEADER_DEADLINE, MAX_BODY, MAX_CONNECTIONS,
    MAX_DRAIN,
};
use crate::access::{Access, Refusal, Refusals};
use crate::server::Peer;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use ballot_core::NodeId;
use ballot_transports::auth::Identity;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

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
    /// Who may register, heartbeat and deregister: with tokens, only a node with its own
    /// token, for its own name. Reads are open either way.
    pub access: Access,
    /// Where refusals are counted (served on `GET /metrics`).
    pub refusals: Refusals,
    /// The request head must arrive within this.
    pub header_deadline: Duration,
    /// The request body must arrive within this.
    pub body_deadline: Duration,
    /// A connection, keep-alive included, is closed after this.
    pub connection_lifetime: Duration,
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            ttl: DEFAULT_TTL,
            max_members: DEFAULT_MAX_MEMBERS,
            clock: Clock::tokio(),
            drain_deadline: crate::server::DRAIN_DEADLINE,
            access: Access::Open,
            refusals: Refusals::default(),
            header_deadline: HEADER_DEADLINE,
            body_deadline: BODY_DEADLINE,
            connection_lifetime: CONNECTION_LIFETIME,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Mutex<Registry>>,
    clock: Clock,
    access: Access,
    refusals: Refusals,
    body_deadline: Duration,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r)
    }
}

/// Serves discovery on `listener` until `shutdown` completes; then stops accepting, lets
/// the requests in flight finish within [`DiscoveryOptions::drain_deadline`], and returns.
/// Each connection has a deadline for its request head and body and a lifetime; at most
/// [`DiscoveryOptions::max_connections`] are open.
pub async fn serve(
    listener: TcpListener,
    opts: DiscoveryOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if opts.access.is_open() {
        let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(
            "discovery on {at} is open: anyone can register, overwrite or deregister any node (give it credentials)"
        );
    }
    let limits = crate::server::ConnLimits {
        max_connections: opts.max_connections,
        header_deadline: opts.header_deadline,
        connection_lifetime: opts.connection_lifetime,
        drain_deadline: opts.drain_deadline,
        refusals: Some(opts.refusals.clone()),
    };
    crate::server::run(listener, router(opts), limits, "discovery", shutdown).await;
}

/// The discovery routes, to serve or to nest in another router.
pub fn router(opts: DiscoveryOptions) -> Router {
    let shared = Shared {
        registry: Arc::new(Mutex::new(Registry::new(opts.ttl, opts.max_members))),
        clock: opts.clock,
        access: opts.access,
        refusals: opts.refusals,
        body_deadline: opts.body_deadline,
    };
    Router::new()
        .route("/register", post(register))
        .route("/heartbeat", post(register))
        .route("/deregister", post(deregister))
        .route("/members", get(members))
        .route("/leader", get(leader))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, msg: impl fmt::Display) -> Response {
    json(status, &ErrorBody { error: msg.to_string() })
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such path: use POST /register, /heartbeat, /deregister or GET /members, /leader, /metrics",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "wrong method: register, heartbeat and deregister are POST; members, leader and metrics are GET",
    )
}

/// The body, at most [`MAX_BODY`] bytes, or the error response to send.
async fn read_body(headers: &HeaderMap, body: Body, deadline: Duration) -> Result<Vec<u8>, Response> {
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
    match tokio::time::timeout(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, format!("request body did not arrive within {deadline:?}"))),
    }
}

#[allow(clippy::result_large_err)] // an error is the response to send, built once
fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("request body is not the expected JSON: {e}")))
}

/// The token of `Authorization: Bearer <token>`, if the request has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A write's caller, as the log names it.
struct Caller {
    what: &'static str,
    peer: Option<Peer>,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer {
            Some(Peer(a)) => write!(f, "{} from {a}", self.what),
            None => f.write_str(self.what),
        }
    }
}

impl Shared {
    /// Counts, logs (rate-limited) and answers a refusal.
    fn refuse(&self, caller: &Caller, why: Refusal, status: StatusCode, line: String) -> Response {
        self.refusals.refuse("discovery", why, format!("{caller}: {line}"));
        let mut r = error(status, format!("refused: {line}"));
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    }

    /// With tokens, a write must carry one (checked before its body is read).
    #[allow(clippy::result_large_err)] // an error is the response to send, built once
    fn require_credential(&self, caller: &Caller, headers: &HeaderMap) -> Result<(), Response> {
        if self.access.is_open() || bearer(headers).is_some() {
            return Ok(());
        }
        let line = "a write needs the node's token: Authorization: Bearer <token>".to_string();
        Err(self.refuse(caller, Refusal::NoCredential, StatusCode::UNAUTHORIZED, line))
    }

    /// With tokens, the token must be `node`'s own: a node writes only under its name.
    #[allow(clippy::result_large_err)] // an error is the response to send, built once
    fn check_node(&self, caller: &Caller, headers: &HeaderMap, node: NodeId) -> Result<(), Response> {
        if self.access.is_open() {
            return Ok(());
        }
        let who = Identity::of(node);
        if who == Identity::Client {
            let line = format!("{node} is a client: only cluster nodes register");
            return Err(self.refuse(caller, Refusal::WrongIdentity, StatusCode::FORBIDDEN, line));
        }
        self.access.check(who, bearer(headers)).map_err(|why| {
            let status = if why == Refusal::NoCredential { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
            self.refuse(caller, why, status, format!("the token is not {node}'s"))
        })
    }

    /// The body, or the refusal (counted when it is over the limit or too slow).
    async fn body(&self, caller: &Caller, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
        read_body(headers, body, self.body_deadline).await.inspect_err(|r| {
            let why = match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Some(Refusal::Oversized),
                StatusCode::REQUEST_TIMEOUT => Some(Refusal::Timeout),
                _ => None,
            };
            if let Some(why) = why {
                self.refusals.refuse("discovery", why, format!("{caller}: request body refused ({})", r.status()));
            }
        })
    }
}

async fn register(State(s): State<Shared>, peer: Option<Extension<Peer>>, headers: HeaderMap, body: Body) -> Response {
    let caller = Caller { what: "register", peer: peer.map(|Extension(p)| p) };
    if let Err(r) = s.require_credential(&caller, &headers) {
        return r;
    }
    let bytes = match s.body(&caller, &headers, body).await {
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
    if let Err(r) = s.check_node(&caller, &headers, reg.node) {
        return r;
    }
    // A leadership claim is believed only with a ballot of the claimer's own.
    if let Err(line) = owns_claim(&reg) {
        return s.refuse(&caller, Refusal::ForeignBallot, StatusCode::BAD_REQUEST, line);
    }
    let now = s.clock.now();
    match s.with(|r| r.register(reg, now).map(|()| r.ttl())) {
        Ok(ttl) => json(StatusCode::OK, &Registered { ok: true, ttl_ms: millis(ttl) }),
        Err(full) => s.refuse(&caller, Refusal::Full, StatusCode::SERVICE_UNAVAILABLE, full.to_string()),
    }
}

async fn deregister(
    State(s): State<Shared>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = Caller { what: "deregister", peer: peer.map(|Extension(p)| p) };
    if let Err(r) = s.require_credential(&caller, &headers) {
        return r;
    }
    let bytes = match s.body(&caller, &headers, body).await {
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
    if let Err(r) = s.check_node(&caller, &headers, node) {
        return r;
    }
    let removed = s.with(|r| r.deregister(node));
    json(StatusCode::OK, &Deregistered { ok: true, removed })
}

async fn metrics(State(s): State<Shared>) -> Response {
    let now = s.clock.now();
    let members = s.with(|r| r.members(now).len());
    let mut text = String::new();
    text.push_str("# HELP ballot_discovery_members Members heard within the ttl.\n");
    text.push_str("# TYPE ballot_discovery_members gauge\n");
    text.push_str(&format!("ballot_discovery_members {members}\n"));
    s.refusals.render_prometheus(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn members(State(s): State<Shared>) -> Response {
    let now = s.clock.now();
    let (ttl, members) = s.with(|r| (r.ttl(), r.members(now)));
    let wire = WireMembers { ttl_ms: millis(ttl), members: members.iter().map(WireMember::from_member).collect() };
    json(StatusCode::OK, &wire)
}

async fn leader(State(s): State<Shared>) -> Response {
    let now = s.clock.now();
    let (ttl, leader) = s.with(|r| (r.ttl(), r.leader(now)));
    match leader {
        Some(m) => json(StatusCode::OK, &WireMember::from_member(&m)),
        None => error(StatusCode::NOT_FOUND, format!("no proposer heard within the last {ttl:?} claims leadership")),
    }
}
