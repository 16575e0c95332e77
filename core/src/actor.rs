//! The interface every role implements, and the status it reports.

use crate::command::{Tally, Value};
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId};
use crate::msg::Message;
use serde::{Deserialize, Serialize};

/// A protocol role as a pure state machine. Each call takes one input and pushes effects;
/// it never blocks, reads a clock, draws a random number or touches a socket.
///
/// A runtime calls `start` once, then any number of `on_message`/`on_timer` calls, then
/// `flush`, and then carries out the step's effects (persist, then send).
pub trait Actor: Send + 'static {
    /// This node's name.
    fn id(&self) -> NodeId;
    /// Called once when the node (re)starts: set initial timers.
    fn start(&mut self, out: &mut Outbox);
    /// Handles one message from `from`.
    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outbox);
    /// Handles a timer this role set, now fired.
    fn on_timer(&mut self, timer: Timer, out: &mut Outbox);
    /// End of a step: emit what was gathered over its inputs (batches, group replies).
    fn flush(&mut self, _out: &mut Outbox) {}
    /// What this node reports about itself, for operators and tests.
    fn status(&self) -> Status;
    /// Applied values after slot `after`, at most `max` of them (learners; empty for
    /// other roles). For operators and invariant checks.
    fn applied_values(&self, _after: u64, _max: usize) -> Vec<(u64, Value)> {
        Vec::new()
    }
    /// The ballot this node accepted a value at for `slot` (acceptors; `None` for other
    /// roles and for slots it holds nothing for). For the liveness checker's diagnosis.
    fn accepted_ballot(&self, _slot: u64) -> Option<Ballot> {
        None
    }
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's name.
    pub id: Option<NodeId>,
    /// Proposer: its current ballot; acceptor: its promised ballot.
    pub ballot: Option<Ballot>,
    /// The leader this node believes in.
    pub leader: Option<NodeId>,
    /// Highest slot known chosen with every slot below it.
    pub chosen: Option<u64>,
    /// Learner: last applied slot.
    pub applied: Option<u64>,
    /// Learner: tally as applied.
    pub tally: Option<Tally>,
    /// Acceptor: how many slots it holds accepted values for.
    pub accepted_slots: Option<u64>,
    /// Proposer: elections it started since it (re)started.
    #[serde(default)]
    pub elections: Option<u64>,
    /// Acceptor or proposer: still rejoining after lost state (not voting, not leading).
    #[serde(default)]
    pub rejoining: Option<bool>,
}
