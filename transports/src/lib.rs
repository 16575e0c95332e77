//! How ballot nodes reach each other. The node runtime is generic over [`Transport`]; the
//! in-memory implementation here runs a whole cluster in one process on virtual time,
//! with a fault layer (partitions, drops, delays, duplicates). TCP and ZeroMQ implement the
//! same trait.
//!
//! # Layout
//! - [`envelope`]: what travels: sender, receiver, message, and room for a trace context.
//! - [`mem`]: the in-memory network and its fault layer.
//! - [`log`]: the event log shared by the network and the chaos runner.

pub mod envelope;
pub mod log;
pub mod mem;

pub use envelope::{Envelope, SendError, TraceContext, Transport};
pub use log::EventLog;
pub use mem::{LinkFaults, MemNetwork, MemTransport, NetStats};
