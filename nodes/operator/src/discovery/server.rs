//! The discovery server: [`serve`] and [`router`], the handlers and their body limits.

use super::registry::{Clock, Registry};
use super::wire::{
    millis, parse_node, Deregistered, ErrorBody, Registered, WireDeregister, WireMember, WireMembers, WireRegistration,
};
use super::{
    BODY_DEADLINE, CONNECTION_LIFETIME, DEFAULT_MAX_MEMBERS, DEFAULT_TTL, HEADER_DEADLINE, MAX_BODY, MAX_CONNECTIONS,
    MAX_DRAIN,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
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

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, msg: impl fmt::Display) -> Response {
    json(status, &ErrorBody { error: msg.to_string() })
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
        Ok(ttl) => json(StatusCode::OK, &Registered { ok: true, ttl_ms: millis(ttl) }),
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
    json(StatusCode::OK, &Deregistered { ok: true, removed })
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
