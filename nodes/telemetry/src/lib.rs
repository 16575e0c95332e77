//! Tracing export over OTLP, and W3C trace context on envelopes.
//!
//! Off by default. When an endpoint is configured (`--otlp-endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), [`Telemetry::start`] builds a tracer provider whose only
//! span processor is [`BoundedExport`]: finished spans go into a bounded queue that one
//! background thread drains, in batches, to the collector over gRPC. The node's own tasks
//! never wait on the collector: a full queue drops the span and counts it, a failed export
//! is counted and warned about once per outage, and shutdown flushes what is queued within
//! a deadline.
//!
//! Protocol spans (see `crate::trace`) use the target [`TARGET`]; only the OpenTelemetry
//! layer listens to it, so with tracing off those spans are disabled at their call sites
//! and cost one cached check, and no envelope carries a trace context.
//!
//! Each node reports as its own service: a span's `node` attribute names the service it
//! is exported under when the process runs several nodes (chaos on `mem`); a process that
//! runs one node exports everything under `OTEL_SERVICE_NAME` or the node's id.
//!
//! # Layout
//! - [`config`]: [`TelemetryConfig`], read from flags and `OTEL_*` variables.
//! - [`export`]: [`Telemetry`] (start, flush, shutdown), [`install`] of the process's
//!   subscriber, root sampling, the bounded export queue and its counters.
//! - [`propagation`]: `traceparent` on envelopes ([`context_of`], [`set_parent`]).
//! - [`log_ring`]: the last log lines, for a node's `/logs` page.
//! - `collector` (feature `collector`): an in-memory OTLP receiver for tests and the
//!   tracing benchmark, never in the product binaries.

#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "collector")]
pub mod collector;
pub mod config;
pub mod export;
pub mod log_ring;
pub mod propagation;

pub use config::{check_endpoint, TelemetryConfig};
pub use export::*;
pub use propagation::*;

/// The `tracing` target of every span and event meant for the trace (and only for it).
pub const TARGET: &str = "ballot::trace";
