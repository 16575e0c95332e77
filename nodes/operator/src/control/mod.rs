//! The control channel of a node process: how `chaos` (and operators' tools) ask a node
//! for its status and applied log, and tell its transport which faults to simulate.
//!
//! One TCP listener per node; each connection carries request/reply frames:
//! `[u32 big-endian length][rmp-serde body]`. A request is at most
//! [`ControlOptions::max_request`] bytes, a reply at most [`MAX_CONTROL_FRAME`]; a body is
//! read as its bytes arrive, never allocated at its announced length.
//!
//! # Who may use it
//! The channel shows who voted for whom and injects faults, so with credentials
//! ([`Access::Tokens`]) the first frame of every connection must be
//! [`ControlRequest::Auth`] naming the identity `operator` and carrying the operator's
//! token (`operator.token` of the credentials folder), checked in constant time with the
//! cluster secret. Anything else (another request, another identity, a wrong token, no
//! frame within [`ControlOptions::frame_deadline`]) is answered with one
//! [`ControlReply::Error`] line and the connection is closed. Without credentials
//! ([`Access::Open`]) anyone may ask, as before; `Auth` is then answered `Ok`.
//!
//! # Limits
//! - the first frame must arrive whole within [`ControlOptions::frame_deadline`] of the
//!   connection opening, and every later frame within it once its first byte is in: a
//!   half-sent frame closes the connection;
//! - between requests a connection may stay silent for [`ControlOptions::idle_timeout`];
//! - at most [`ControlOptions::max_connections`] connections are open; more are closed as
//!   soon as they are accepted;
//! - every write has [`CONTROL_DEADLINE`]; a bad frame closes that connection only.
//!
//! Every refusal is counted by reason in [`ControlOptions::refusals`] (the node's
//! `/metrics` page shows them as `ballot_operator_refused_total{server="control"}`) and logged as
//! one line, at most once a second per reason.
//!
//! Faults set here are applied inside the node's transport (a wrapper that drops, delays,
//! duplicates or blocks messages per peer). They are not a kernel-level partition: a
//! node's sockets stay connected, its messages are discarded on the way out and on the
//! way in.
//!
//! # Layout
//! - `frame`: reading and writing one frame, with its limit and deadline.
//! - `server`: [`serve`], the connection's authentication and requests.
//! - `client`: [`ControlClient`].

mod client;
mod frame;
mod server;

pub use client::ControlClient;
pub use server::serve;

use crate::access::{Access, Refusals};
use ballot_core::{Ballot, Message, NodeId, Status, Value};
use ballot_transports::{MessageRule, RuleAction};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Largest control frame: a log page of big batches fits (replies; requests are much
/// smaller, see [`ControlOptions::max_request`]).
pub const MAX_CONTROL_FRAME: usize = 64 << 20;
/// Largest request a server reads by default: every request is a few bytes.
pub const MAX_CONTROL_REQUEST: usize = 64 << 10;
/// Largest first frame of a connection that must authenticate: an `Auth` is under 200
/// bytes, so an unauthenticated caller makes the server hold at most this.
pub const MAX_AUTH_FRAME: usize = 4 << 10;
/// Deadline of one read or write on the control channel.
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(5);
/// How long a connection may stay silent between requests by default.
pub const CONTROL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once by default: chaos opens one per request.
pub const MAX_CONTROL_CONNECTIONS: usize = 64;
/// The identity a control client names in its [`ControlRequest::Auth`].
pub const CONTROL_IDENTITY: &str = "operator";

/// How a control server treats its callers.
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Who may use it.
    pub access: Access,
    /// The first frame must arrive whole within this of the connection opening; every
    /// later frame within this once its first byte is in.
    pub frame_deadline: Duration,
    /// A connection silent this long between requests is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Largest request read.
    pub max_request: usize,
    /// Where refusals are counted (shared with the `/metrics` page).
    pub refusals: Refusals,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            access: Access::Open,
            frame_deadline: CONTROL_DEADLINE,
            idle_timeout: CONTROL_IDLE_TIMEOUT,
            max_connections: MAX_CONTROL_CONNECTIONS,
            max_request: MAX_CONTROL_REQUEST,
            refusals: Refusals::default(),
        }
    }
}

impl ControlOptions {
    /// The default limits with `access`.
    pub fn with_access(access: Access) -> Self {
        ControlOptions { access, ..ControlOptions::default() }
    }
}

/// What a control client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// The node's status.
    Status,
    /// Applied values after `after`, at most `max` (learners).
    Applied {
        /// The last slot the client has.
        after: u64,
        /// Values at most.
        max: u32,
    },
    /// Simulate a fault (or heal).
    Faults(FaultCommand),
    /// Answered `Ok`: the channel works.
    Ping,
    /// The ballot of the value accepted at `slot` (acceptors).
    AcceptedAt {
        /// The log slot.
        slot: u64,
    },
    /// The credential: the first frame of a connection to a server that checks tokens.
    /// Answered `Ok`, or one `Error` line and the connection closed.
    Auth {
        /// Who the caller says it is: [`CONTROL_IDENTITY`].
        identity: String,
        /// That identity's token, from its `.token` file.
        token: Token,
    },
    /// Run the node's timers `factor` times as fast as the true clock (a clock that
    /// gains or loses); refused outside `ballot_runtime::CLOCK_RATES`.
    ClockRate {
        /// 1.0 is a true clock; 2.0 gains a second every second.
        factor: f64,
    },
    /// A storage fault: the node's next write is torn as by a crash in the middle of it,
    /// and the node stops there (the process exits non-zero).
    TearNextWrite,
}

/// A token (hex) as the control channel carries it. Its `Debug` form hides it, so a
/// request logged with `{:?}` never shows a credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// Faults to simulate in the node's transport. They concern only the links of this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultCommand {
    /// Block every link between the two sides, both ways.
    Partition {
        /// One side.
        a: Vec<NodeId>,
        /// The other side.
        b: Vec<NodeId>,
    },
    /// Block every message from a node of `from` to a node of `to`; the other way works.
    PartitionOneway {
        /// The senders whose messages are blocked.
        from: Vec<NodeId>,
        /// The receivers they are blocked towards.
        to: Vec<NodeId>,
    },
    /// Block every link of this node, both ways.
    Isolate(NodeId),
    /// Remove every fault.
    Heal,
    /// Drop each message with this probability (0.0 to 1.0).
    DropRate(f64),
    /// Duplicate each message with this probability (0.0 to 1.0).
    DuplicateRate(f64),
    /// Delay each message by a random time in the range.
    Delay {
        /// Shortest delay, in milliseconds.
        min_ms: u64,
        /// Longest delay, in milliseconds (at least `min_ms`).
        max_ms: u64,
    },
    /// Drop or delay the messages a rule matches, decided on the decoded message.
    Messages(MessageRule),
}

impl FaultCommand {
    /// The one check of a fault command, wherever it comes from (a scenario, a control
    /// client): every rate is a probability from 0.0 to 1.0 (NaN is not), and no delay's
    /// min exceeds its max. The error says what is wrong, in one line.
    pub fn validate(&self) -> Result<(), String> {
        let probability = |what: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{what} takes a probability from 0.0 to 1.0, not {p}"))
            }
        };
        match self {
            FaultCommand::DropRate(p) => probability("drop_rate", *p),
            FaultCommand::DuplicateRate(p) => probability("duplicate_rate", *p),
            FaultCommand::Delay { min_ms, max_ms } if min_ms > max_ms => {
                Err(format!("delay({min_ms}, {max_ms}): min must not exceed max"))
            }
            FaultCommand::Messages(rule) => {
                let verb = match rule.action {
                    RuleAction::Drop { .. } => "drop_messages",
                    RuleAction::Delay { .. } => "delay_messages",
                };
                if let Some(kind) = rule.kind.as_deref().filter(|k| !Message::KINDS.contains(k)) {
                    return Err(format!("{verb}: unknown message type '{kind}': one of {}", Message::KINDS.join(", ")));
                }
                match rule.action {
                    RuleAction::Drop { count: Some(0) } => Err(format!("{verb}: count must be at least 1")),
                    _ => Ok(()),
                }
            }
            // Cutting links and healing have nothing to check: any set of nodes is a cut.
            FaultCommand::Delay { .. }
            | FaultCommand::Partition { .. }
            | FaultCommand::PartitionOneway { .. }
            | FaultCommand::Isolate(_)
            | FaultCommand::Heal => Ok(()),
        }
    }
}

/// What the node answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlReply {
    /// The node's status.
    Status(Status),
    /// Applied values by slot.
    Applied(Vec<(u64, Value)>),
    /// The ballot of the value accepted at the slot, if any.
    AcceptedAt(Option<Ballot>),
    /// Done.
    Ok,
    /// Not done: one line saying why.
    Error(String),
}

/// Whatever applies fault commands to a node's transport.
pub trait FaultSink: Send + Sync + 'static {
    /// Applies `cmd` at once. It has passed [`FaultCommand::validate`]: a sink applies it
    /// as it is, with no clamping of its own.
    fn apply(&self, cmd: &FaultCommand);
}

/// Why a control exchange failed; each message is one line naming the address.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The connection failed.
    #[error("control connection to {addr} failed: {source}")]
    Io {
        /// The other end.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// No answer within the deadline.
    #[error("control channel of {addr} did not answer within {0:?}", CONTROL_DEADLINE)]
    Timeout {
        /// The other end.
        addr: SocketAddr,
    },
    /// A frame over [`MAX_CONTROL_FRAME`].
    #[error("control frame of {len} bytes is over the {max} byte limit")]
    Oversized {
        /// Its announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame that is not a request or reply.
    #[error("control frame does not decode: {0}")]
    Decode(String),
    /// The server refused the connection (no or a wrong credential), with its one line.
    #[error("control channel of {addr} refused the connection: {reason}")]
    Refused {
        /// The other end.
        addr: SocketAddr,
        /// The server's line.
        reason: String,
    },
}

/// Applies fault commands to a [`ballot_transports::FaultHandle`], remembering the
/// current default link faults so drop, delay and duplication combine.
pub struct TransportFaults {
    handle: ballot_transports::FaultHandle,
    current: std::sync::Mutex<ballot_transports::LinkFaults>,
}

impl TransportFaults {
    /// Faults applied to `handle`, none at first.
    pub fn new(handle: ballot_transports::FaultHandle) -> Self {
        TransportFaults { handle, current: std::sync::Mutex::new(Default::default()) }
    }
}

impl FaultSink for TransportFaults {
    fn apply(&self, cmd: &FaultCommand) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match cmd {
            FaultCommand::Partition { a, b } => self.handle.partition(a, b),
            FaultCommand::PartitionOneway { from, to } => self.handle.partition_one_way(from, to),
            FaultCommand::Isolate(n) => self.handle.isolate(*n),
            FaultCommand::Heal => {
                *current = Default::default();
                self.handle.heal();
            }
            FaultCommand::DropRate(p) => {
                current.drop = *p;
                self.handle.set_default_faults(current.clone());
            }
            FaultCommand::DuplicateRate(p) => {
                current.duplicate = *p;
                self.handle.set_default_faults(current.clone());
            }
            FaultCommand::Delay { min_ms, max_ms } => {
                let (min, max) = (Duration::from_millis(*min_ms), Duration::from_millis(*max_ms));
                current.delay = Some((min, max));
                self.handle.set_default_faults(current.clone());
            }
            FaultCommand::Messages(rule) => self.handle.add_rule(rule.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
