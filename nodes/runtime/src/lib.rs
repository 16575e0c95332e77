//! The runtime that drives a ballot role: it feeds the role messages from a
//! [`Transport`](ballot_transports::Transport) and its own timers, and carries out the
//! effects the role returns, persisting before it sends. Generic over the transport, so
//! the same code runs on the in-memory network, TCP and ZeroMQ. No HTTP, no JSON, no
//! command-line parsing: those live in `ballot-operator` and `ballot-app`.
//!
//! # The runtime's contract
//! For every step (one batch of inputs) the runtime:
//! 1. gives the role every due timer, then every message already waiting (up to a bound),
//!    then calls `flush`;
//! 2. makes every `Persist` effect of the step durable with one `Storage::persist` call
//!    (one sync for the batch: group commit); if that fails, the node stops, sending
//!    nothing that depended on it;
//! 3. only then sends the step's messages, in order;
//! 4. sets and cancels timers, drawing each delay from the node's seeded generator;
//! 5. reports `Decided` effects to the observer, and counts and logs `Refused` ones
//!    (by reason, one log line per reason per second at most).
//!
//! # Layout
//! - [`node`]: [`spawn_node`], the node loop, and [`NodeHandle`], the typed way to ask a
//!   running node for its status, its applied log, or to pause, resume or stop it.
//! - [`client`]: a client handle that submits votes and reads with a deadline and retries.
//! - [`metrics`]: what the node loop counts (messages per peer, steps, persist latency,
//!   refusals by reason).
//! - `refusals`: what the role refused, counted and logged (one line per reason per
//!   second at most).
//! - `trace`: the spans of a node's part in each consensus round.

#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod metrics;
pub mod node;
mod refusals;
mod trace;

pub use client::{ClientError, ClientHandle, SubmitOptions};
pub use metrics::NodeMetrics;
pub use node::{check_clock_rate, spawn_node, NodeControl, NodeError, NodeHandle, NodeOptions, Observer};
