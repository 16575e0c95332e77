//! The discovery client: [`DiscoveryClient`] over hyper, one connection and one deadline
//! per call, and [`DiscoveryError`].

use super::registry::{Member, Registration};
use super::wire::{one_line, Deregistered, ErrorBody, WireDeregister, WireMember, WireMembers, WireRegistration};
use super::{DEFAULT_CLIENT_DEADLINE, MAX_ANSWER, MAX_HEAD};
use axum::http::{header, Request};
use ballot_core::NodeId;
use ballot_transports::PeerAddr;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a discovery call failed. Every message is one line naming the discovery address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // the fields: the discovery address and the one-line detail the message shows
pub enum DiscoveryError {
    /// No whole answer within the call's deadline.
    #[error("discovery at {addr} did not answer within {deadline:?}")]
    Timeout { addr: PeerAddr, deadline: Duration },
    /// The name did not resolve, the connection failed or broke.
    #[error("discovery at {addr} could not be reached: {reason}")]
    Unreachable { addr: PeerAddr, reason: String },
    /// The answer is not HTTP, not the expected JSON, cut short or over [`MAX_ANSWER`].
    #[error("discovery at {addr} answered garbage: {what}")]
    Garbage { addr: PeerAddr, what: String },
    /// An error status, with the server's one-line reason.
    #[error("discovery at {addr} refused the request ({status}): {reason}")]
    Refused { addr: PeerAddr, status: u16, reason: String },
}

/// Talks to a discovery server; cheap to clone.
#[derive(Clone)]
pub struct DiscoveryClient {
    addr: PeerAddr,
    deadline: Duration,
    /// Sent as `Authorization: Bearer` with every write (register, heartbeat,
    /// deregister); reads need none.
    token: Option<std::sync::Arc<str>>,
}

impl fmt::Debug for DiscoveryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.token.is_some() { "<hidden>" } else { "none" };
        write!(f, "DiscoveryClient {{ addr: {}, deadline: {:?}, token: {token} }}", self.addr, self.deadline)
    }
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
        DiscoveryClient { addr: addr.into(), deadline: DEFAULT_CLIENT_DEADLINE, token: None }
    }

    /// Writes carry `token`: the node's own (from `<node>.token`), which a discovery
    /// with credentials requires, for that node's name only.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().trim().into());
        self
    }

    /// The deadline of each call (connect, request and the whole answer).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The discovery server's address.
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
        Ok(self.decode::<Deregistered>(&a.body)?.removed)
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
            self.decode::<ErrorBody>(&a.body)?;
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
        let reason = match serde_json::from_slice::<ErrorBody>(&a.body) {
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
        if let (Some(token), "POST") = (&self.token, method) {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        b.body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .map_err(|e| self.garbage(format!("could not build the request for {}: {e}", one_line(path, 80))))
    }

    /// A failed exchange, in words that say what the server did. A version or
    /// Content-Length error has no predicate of its own in hyper: its message names it.
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
