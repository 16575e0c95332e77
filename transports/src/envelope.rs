//! The transport trait and what it carries.

use async_trait::async_trait;
use ballot_core::{Message, NodeId};
use serde::{Deserialize, Serialize};

/// W3C trace context (`traceparent`, optional `tracestate`) carried across nodes, so one
/// vote is one trace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The W3C `traceparent` header value.
    pub traceparent: String,
    /// The W3C `tracestate` header value, if any.
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
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The protocol message.
    pub msg: Message,
    /// The trace the message belongs to, if it is traced.
    pub trace: Option<TraceContext>,
    /// Where the sender listens, stamped by socket transports, so a node can answer a peer
    /// it was not configured with (a voter's client, a learner that joined later).
    #[serde(default)]
    pub reply_to: Option<std::net::SocketAddr>,
}

impl Envelope {
    /// `msg` from `from` to `to`, with no trace context and no `reply_to`.
    pub fn new(from: NodeId, to: NodeId, msg: Message) -> Self {
        Envelope { from, to, msg, trace: None, reply_to: None }
    }
}

/// Why a message was not handed to the network. Paxos tolerates lost messages, so a
/// caller counts these and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The endpoint of this node is closed.
    #[error("transport of {0} is closed")]
    Closed(NodeId),
    /// The queue toward this peer is full; the message was dropped.
    #[error("send queue to {0} is full; message dropped")]
    QueueFull(NodeId),
    /// No address is known for this peer.
    #[error("no address known for {0}")]
    UnknownPeer(NodeId),
}

/// A node's endpoint on the network. `send` never waits for a slow or dead peer: it
/// queues or drops. `recv` waits for the next message addressed to this node.
#[async_trait]
pub trait Transport: Send + 'static {
    /// The node this endpoint belongs to.
    fn local(&self) -> NodeId;
    /// Hands `envelope` to the network without waiting: queued, or dropped with the
    /// reason.
    fn send(&self, envelope: Envelope) -> Result<(), SendError>;
    /// The next message, or `None` once the endpoint is closed.
    async fn recv(&mut self) -> Option<Envelope>;
    /// A message that is already waiting, without waiting.
    fn try_recv(&mut self) -> Option<Envelope>;
}
