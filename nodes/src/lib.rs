//! The runtime that drives a ballot role: it feeds the role messages from a
//! [`Transport`](ballot_transports::Transport) and its own timers, and carries out the
//! effects the role returns, persisting before it sends. Generic over the transport, so
//! the same code runs on the in-memory network, TCP and ZeroMQ.
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
//! 5. reports `Decided` effects to the observer.
//!
//! # Layout
//! - [`runtime`]: `spawn_node`, the node loop, control (pause, resume, status, stop).
//! - [`client`]: a client handle that submits votes and reads with a deadline and retries.
//! - [`process`]: a node as an OS process (`ballot-node`): flags, transports, disk, signals.
//! - [`control`]: a node process's control channel (status, applied log, simulated faults).
//! - [`discovery`]: the discovery service (register, heartbeat, members, leader over HTTP) and its client.
//! - [`metrics`]: what the node loop counts (messages per peer, steps, persist latency).
//! - [`http`]: a node's HTTP pages: health, status, logs, Prometheus metrics, overview.
//! - [`telemetry`]: OTLP export of traces, W3C trace context on envelopes; `trace`: the
//!   spans of a node's part in each consensus round; [`collector`]: an in-memory OTLP
//!   receiver for tests and the tracing benchmark.

pub mod cli;
pub mod client;
pub mod collector;
pub mod control;
pub mod discovery;
pub mod disk;
pub mod http;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod telemetry;
mod trace;

pub use client::{ClientError, ClientHandle, SubmitOptions};
pub use disk::{DiskOptions, DiskStorage, Identity};
pub use metrics::NodeMetrics;
pub use runtime::{spawn_node, Control, NodeError, NodeHandle, Observer};
