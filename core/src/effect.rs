//! What a role asks its runtime to do. Roles never act; they push effects into an
//! [`Outbox`] and the runtime carries them out (see the contract in `ballot-nodes`).

use crate::auth::Refusal;
use crate::command::Value;
use crate::ids::NodeId;
use crate::msg::Message;
use crate::storage::PersistOp;

/// The timers a role may set. Setting a timer that is already set replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Follower or candidate: time to run for leader.
    Election,
    /// Leader: time to send heartbeats.
    Heartbeat,
    /// Leader: time to resend unanswered accepts.
    Retransmit,
    /// Learner: time to look for missing slots.
    CatchUp,
    /// Leader: time to check that a majority of acceptors answered since the last check
    /// (check-quorum); one that did not hear from a majority steps down.
    CheckQuorum,
    /// Acceptor: the end of a lease period; the leader's lease runs while it is heard
    /// within a period.
    Lease,
}

/// One thing a role asks its runtime to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Make this durable. The runtime finishes every `Persist` of a step before it sends
    /// any message of that step.
    Persist(PersistOp),
    /// Send `msg` to `to`; delivery is not guaranteed (the protocol allows loss).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Fire `timer` after a delay the runtime draws uniformly from `min_ms..=max_ms` with
    /// its seeded random source (roles have no randomness of their own).
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// Shortest delay, in milliseconds of the runtime's clock.
        min_ms: u64,
        /// Longest delay, in milliseconds; at least `min_ms`.
        max_ms: u64,
    },
    /// Unset `timer`, if it is set.
    CancelTimer(Timer),
    /// A learner applied `slot`, whose value is `value` (for observers and invariants).
    Decided {
        /// The slot applied.
        slot: u64,
        /// Its chosen value.
        value: Value,
    },
    /// The role refused a message (or a command in one) from `from`: nothing changed
    /// because of it. The runtime counts refusals by reason and logs them, rate-limited.
    Refused {
        /// Who sent it (as the transport says), or, for a command of a chosen value that a
        /// learner will not count, the client that sent the command.
        from: NodeId,
        /// The message's kind ([`Message::kind`]) or, for a command, `Vote` or `Read`.
        kind: &'static str,
        /// Why.
        reason: Refusal,
    },
}

/// Effects produced by one step, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The effects so far, in the order they were pushed.
    pub effects: Vec<Effect>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }
    /// Push [`Effect::Send`].
    pub fn send(&mut self, to: NodeId, msg: Message) {
        self.effects.push(Effect::Send { to, msg });
    }
    /// Push [`Effect::Persist`].
    pub fn persist(&mut self, op: PersistOp) {
        self.effects.push(Effect::Persist(op));
    }
    /// Push [`Effect::SetTimer`].
    pub fn set_timer(&mut self, timer: Timer, min_ms: u64, max_ms: u64) {
        self.effects.push(Effect::SetTimer { timer, min_ms, max_ms });
    }
    /// Push [`Effect::CancelTimer`].
    pub fn cancel_timer(&mut self, timer: Timer) {
        self.effects.push(Effect::CancelTimer(timer));
    }
    /// Push [`Effect::Decided`].
    pub fn decided(&mut self, slot: u64, value: Value) {
        self.effects.push(Effect::Decided { slot, value });
    }
    /// Push [`Effect::Refused`].
    pub fn refuse(&mut self, from: NodeId, kind: &'static str, reason: Refusal) {
        self.effects.push(Effect::Refused { from, kind, reason });
    }
    /// Take every effect pushed so far, leaving the outbox empty.
    pub fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }
    /// Whether no effect is waiting.
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }
}
