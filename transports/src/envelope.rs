//! The transport trait and what it carries.

use async_trait::async_trait;
use ballot_core::{Message, NodeId};
use serde::{Deserialize, Serialize};

/// W3C trace context (`traceparent`, optional `tracestate`) carried across nodes, so one
/// vote is one trace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
    /// The log slot this context belongs to, when the message carries several slots that
    /// may belong to different traces (an acceptor's `Learn`): the receiver parents only
    /// that slot's spans on it.
    #[serde(default)]
    pub slot: Option<u64>,
}

/// One message on its way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
    pub trace: Option<TraceContext>,
    /// Where the sender listens, stamped by socket transports, so a node can answer a peer
    /// it was not configured with (a voter's client, a learner that joined later).
    #[serde(default)]
    pub reply_to: Option<std::net::SocketAddr>,
}

impl Envelope {
    pub fn new(from: NodeId, to: NodeId, msg: Message) -> Self {
        Envelope { from, to, msg, trace: None, reply_to: None }
    }
}

/// Why a message was not handed to the network. Paxos tolerates lost messages, so a
/// caller counts these and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("transport of {0} is closed")]
    Closed(NodeId),
    #[error("send queue to {0} is full; message dropped")]
    QueueFull(NodeId),
    #[error("no address known for {0}")]
    UnknownPeer(NodeId),
}

/// A node's endpoint on the network. `send` never waits for a slow or dead peer: it
/// queues or drops. `recv` waits for the next message addressed to this node.
#[async_trait]
pub trait Transport: Send + 'static {
    /// The node this endpoint belongs to.
    fn local(&self) -> NodeId;
    fn send(&self, envelope: Envelope) -> Result<(), SendError>;
    /// The next message, or `None` once the endpoint is closed.
    async fn recv(&mut self) -> Option<Envelope>;
    /// A message that is already waiting, without waiting.
    fn try_recv(&mut self) -> Option<Envelope>;
}
