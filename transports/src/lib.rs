//! How ballot nodes reach each other. The node runtime is generic over [`Transport`]; the
//! in-memory implementation here runs a whole cluster in one process on virtual time,
//! with a fault layer (partitions, drops, delays, duplicates). TCP and ZeroMQ implement the
//! same trait over real sockets, and [`Faulty`] puts the same fault layer on either.
//!
//! # Layout
//! - [`auth`]: [`auth::Identity`], who a peer proved to be, and [`auth::Credentials`], a
//!   credentials folder (certificates, CURVE keys, tokens) and how to make one.
//! - [`addr`]: [`PeerAddr`], an IP address or a host name resolved at each fresh
//!   connection.
//! - [`envelope`]: what travels: sender, receiver, message, and room for a trace context.
//! - [`kind`]: [`NetKind`], tcp or zmq, as flags name it; [`SocketTransport`], what
//!   code generic over the two needs of them.
//! - [`fault_model`]: [`FaultModel`], the cuts, link faults and seeded choices shared by
//!   the in-memory network and [`Faulty`].
//! - [`mem`]: the in-memory network.
//! - [`log`]: the event log shared by the network and the chaos runner.
//! - [`wire`]: the frame codec of the network transports (header + rmp-serde, size limit).
//! - [`link`]: what TCP and ZeroMQ share: options, counters, per-peer queues and backoff.
//!   Inside it: `stats` (counters), `outbound` (the connector and per-peer queues),
//!   `peer_task` (one peer's connection, batching and backoff) and `inbound` (accept loop
//!   and frame reading).
//! - [`tcp`]: [`TcpTransport`], length-prefixed frames over TCP, plain or in mutual TLS.
//! - [`tls`]: the rustls configurations built from [`auth::Credentials`], and the
//!   identity a verified certificate names. Inside it: `der`, the certificate's DNS names.
//! - [`zmq`]: [`ZmqTransport`], the same frames as ZeroMQ PUSH/PULL messages, NULL or
//!   CURVE; our own ZMTP both ways. Inside it: `zmtp` (greetings, commands, bounded
//!   handshake reads), `curve` (the CURVE handshake and sealed messages), `dial` (the
//!   outgoing PUSH side), `pull` (the PULL listener), `raw` (a raw CURVE client for the
//!   conformance suite).
//! - [`faults`]: [`Faulty`], the in-memory fault model around any transport.
//! - [`ports`]: free loopback ports for tests and local clusters.
//! - [`conformance`]: one test suite that every transport runs with a single call.
//!   Inside it: `harness`, the in-memory and socket harnesses (insecure, or each node
//!   with its own credentials), and `raw`, the raw sessions the byte-level cases write.

#![warn(missing_docs, unreachable_pub)]

pub mod addr;
pub mod auth;
pub mod conformance;
pub mod envelope;
pub mod fault_model;
pub mod faults;
pub mod kind;
pub mod link;
pub mod log;
pub mod mem;
pub mod ports;
pub mod tcp;
pub mod tls;
pub mod wire;
pub mod zmq;

pub use addr::{local_ip_toward, parse_peer_list, AddrError, PeerAddr, ResolveError};
pub use envelope::{Envelope, SendError, TraceContext, Transport};
pub use fault_model::{concerns_slot, FaultModel, MessageRule, Route, RuleAction};
pub use faults::{FaultHandle, FaultStats, Faulty};
pub use kind::{NetKind, SocketTransport, UnknownNetKind};
pub use link::{NetOptions, StatsHandle, WireStats};
pub use log::EventLog;
pub use mem::{LinkFaults, MemNetwork, MemTransport, NetStats};
pub use ports::free_loopback_ports;
pub use tcp::{TcpOptions, TcpTransport};
pub use wire::WireError;
pub use zmq::{ZmqOptions, ZmqTransport};
