//! The operator plane of a ballot node: what people and tools use to look at and steer a
//! cluster, never on the commit path. The only crate that knows HTTP and JSON.
//!
//! # Layout
//! - [`pages`]: a node's HTTP pages: health, status, logs, Prometheus metrics, overview.
//! - [`discovery`]: the discovery service (register, heartbeat, members, leader over
//!   HTTP) and its client.
//! - [`control`]: a node process's control channel (status, applied log, simulated
//!   faults), spoken by `chaos`.
//! - [`access`]: who may use the operator plane ([`access::Access`]: open, or tokens
//!   checked with the cluster secret) and the count of what was refused.
//! - `server` (private): the accept loop of the HTTP servers, with graceful shutdown.

#![warn(missing_docs, unreachable_pub)]

pub mod access;
pub mod control;
pub mod discovery;
pub mod pages;
mod server;

pub use server::DRAIN_DEADLINE;
