//! Discovery: where nodes say who they are and where they listen, and where operators and
//! clients ask who the leader is. A convenience for finding nodes, **never** part of the
//! commit path: quorums are counted over the configured acceptors, not over this list,
//! because a list anyone can register in could let one acceptor decide alone.
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
//! - `GET /metrics`: Prometheus text: members listed, and `ballot_operator_refused_total` by reason.
//!
//! Every error is a JSON object with one `error` line: 400 for a body that is not JSON or
//! names a bad node, role, address or ballot, or a leadership claim it cannot make; 401 for
//! a write without a credential and 403 for one whose token is not the named node's (with
//! credentials); 413 for a body over [`MAX_BODY`]; 404 for an unknown path; 405 for a known
//! path with the wrong method; 408 for a body that does not arrive within
//! [`DiscoveryOptions::body_deadline`]; 503 when the registry is full
//! ([`DiscoveryOptions::max_members`]). Nothing a client sends can make the server panic.
//!
//! # Who may write
//! With credentials ([`crate::access::Access::Tokens`]) every write (register, heartbeat,
//! deregister) carries `Authorization: Bearer <token>`, and the token must be the one of
//! the node the body names (`<node>.token`, HMAC of the name under the cluster secret,
//! checked in constant time): a node registers, refreshes and deregisters only itself, and
//! a client, which is no member, not at all. Reads (`/members`, `/leader`, `/metrics`) stay
//! open: they show what `--peers` already says. Without credentials anyone may write, and
//! the server says so in its log at start. Every refusal is counted by reason
//! (`/metrics`) and logged as one line, at most once a second per reason.
//!
//! Half-sent requests are closed: the head must arrive within
//! [`DiscoveryOptions::header_deadline`], the body within
//! [`DiscoveryOptions::body_deadline`], and a connection lives at most
//! [`DiscoveryOptions::connection_lifetime`]; at most
//! [`DiscoveryOptions::max_connections`] are open. The registry holds at most
//! [`DiscoveryOptions::max_members`] (with tokens only the cluster's nodes can be among
//! them, so fakes cannot fill it; the cap stays for an open discovery).
//!
//! # Who is the leader
//! Among the proposers heard within the ttl that claim leadership with a ballot of their
//! own ([`owns_claim`]: a ballot names its proposer; a claim with another's ballot or with
//! none is refused at registration and never believed), the one with the highest ballot
//! (equal ballots, which honest proposers never share, break by node id). A proposer that has been silent for the ttl
//! is never named, so a leader that died is named for at most the ttl after its last
//! heartbeat. A leader that lost its leadership
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
//! [`MAX_ANSWER`] bytes). [`DiscoveryClient::with_token`] gives it the node's token for
//! its writes.
//!
//! # Heartbeats
//! [`spawn_heartbeats`] (or [`spawn_heartbeats_async`], for a source such as a node's
//! async status) re-registers a node every period with fresh information; failures are
//! logged and otherwise ignored: discovery being down never affects a node.

//!
//! # Layout
//! - `registry`: [`Registry`], [`Registration`], [`Member`] and the [`Clock`]s: no I/O.
//! - `wire`: the JSON shapes on the wire and the parsing of their fields.
//! - `server`: [`serve`], [`router`] and the handlers.
//! - `client`: [`DiscoveryClient`] and [`DiscoveryError`].
//! - `heartbeat`: [`spawn_heartbeats`] and [`spawn_heartbeats_async`].

use std::time::Duration;

mod client;
mod heartbeat;
mod registry;
mod server;
mod wire;

pub use client::{DiscoveryClient, DiscoveryError};
pub use heartbeat::{spawn_heartbeats, spawn_heartbeats_async};
pub use registry::{owns_claim, Clock, ManualClock, Member, Registration, Registry, RegistryFull};
pub use server::{router, serve, DiscoveryOptions};
pub use wire::parse_ballot;

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
pub(crate) const MAX_DRAIN: usize = 1 << 20;
/// How long the server waits for a request body by default.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// Largest answer the client reads.
pub const MAX_ANSWER: usize = 4 << 20;
/// Largest answer head (status line and headers) the client reads.
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// Open connections at most by default: a heartbeat holds one for a moment (the client
/// closes it).
pub const MAX_CONNECTIONS: usize = 1024;
/// The request head must arrive within this, by default.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// A connection, keep-alive included, is closed after this, by default.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Members the registry holds by default.
pub const DEFAULT_MAX_MEMBERS: usize = 1024;
