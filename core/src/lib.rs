//! The ballot protocol with no I/O: Multi-Paxos proposer, acceptor and learner as pure
//! state machines, and the voting state machine they replicate.
//!
//! Every role implements [`Actor`]: it takes one message or timer event and pushes
//! [`Effect`]s (persist, send, set or cancel a timer, decided) into an [`Outbox`]. Nothing
//! here reads a clock, draws a random number, blocks or touches a socket; the runtime in
//! `ballot-nodes` carries the effects out, persisting before it sends.
//!
//! # Layout
//! - [`ids`]: node names (`proposer-1`) and ballots `(round, proposer)`.
//! - [`config`]: configured membership, majority rule and timing.
//! - [`command`]: log entries (votes, reads), slot values (batches) and client replies.
//! - [`msg`]: protocol messages.
//! - [`effect`]: effects, timers and the outbox.
//! - [`storage`]: what must survive a crash, the `Storage` trait and `MemStorage`.
//! - [`voting`]: the replicated ballot box (one vote per voter, idempotent request ids).
//! - [`actor`]: the `Actor` trait and node status.
//! - [`auth`]: who may send what (the sender rule every role applies) and why a message
//!   is refused.
//! - [`proposer`], [`acceptor`], [`learner`]: the three roles.
//!   Inside [`proposer`]: `recovery` (phase 1 and the paged read-back of accepted values)
//!   and `queue` (client commands on their way to a slot).

#![warn(missing_docs, unreachable_pub)]

pub mod acceptor;
pub mod actor;
pub mod auth;
pub mod command;
pub mod config;
pub mod effect;
pub mod ids;
pub mod learner;
pub mod msg;
pub mod proposer;
pub mod storage;
pub mod voting;

pub use acceptor::Acceptor;
pub use actor::{Actor, Status};
pub use auth::{check_sender, Refusal};
pub use command::{
    value_size, Command, Reply, RequestId, Tally, TooLong, Value, VoteError, MAX_CANDIDATE_BYTES, MAX_COMMAND_BYTES,
    MAX_REQUEST_ID_BYTES, MAX_VOTER_BYTES,
};
pub use config::{majority, Config, Rules, Timing};
pub use effect::{Effect, Outbox, Timer};
pub use ids::{Ballot, NodeId, Role};
pub use learner::Learner;
pub use msg::{AcceptedEntry, Message, PAGE_BYTES, PROTOCOL_VERSION};
pub use proposer::Proposer;
pub use storage::{DurableState, MemStorage, PersistOp, Storage, StorageError};
