//! The learner: finds out which value each slot chose, applies slots in order to the
//! voting state machine, answers clients, and fills its own gaps.

use crate::actor::{Actor, Status};
use crate::command::{Reply, Value};
use crate::config::Config;
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId, Role};
use crate::msg::{AcceptedEntry, Message};
use crate::storage::{DurableState, PersistOp};
use crate::voting::VotingState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct Learner {
    id: NodeId,
    config: Arc<Config>,
    state: VotingState,
    /// Applied values: `log[i]` is slot `i + 1`. Serves other learners' catch-up.
    log: Vec<Value>,
    /// Slots above the applied ones: who accepted what, per ballot.
    pending: BTreeMap<u64, BTreeMap<Ballot, (BTreeSet<NodeId>, Value)>>,
    /// Chosen but not yet applied (a lower slot is missing).
    chosen: BTreeMap<u64, Value>,
    /// Highest slot this learner has heard of.
    known: u64,
    leader: Option<NodeId>,
    /// `applied()` at the previous catch-up check: no progress since then means ask.
    applied_at_last_check: u64,
    replies: BTreeMap<NodeId, Vec<Reply>>,
}

impl Learner {
    /// A learner resuming from what it persisted: its applied slots are replayed.
    pub fn new(id: NodeId, config: Arc<Config>, durable: DurableState) -> Self {
        let mut state = VotingState::new(config.candidates.clone());
        for (i, value) in durable.applied.iter().enumerate() {
            for cmd in value.iter() {
                state.apply(i as u64 + 1, cmd);
            }
        }
        let applied = durable.applied.len() as u64;
        Learner {
            id,
            config,
            state,
            log: durable.applied,
            pending: BTreeMap::new(),
            chosen: BTreeMap::new(),
            known: applied,
            leader: None,
            applied_at_last_check: applied,
            replies: BTreeMap::new(),
        }
    }

    /// Last applied slot (0 before any).
    pub fn applied(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn state(&self) -> &VotingState {
        &self.state
    }

    /// The value applied at `slot`, if applied.
    pub fn value_at(&self, slot: u64) -> Option<&Value> {
        slot.checked_sub(1).and_then(|i| self.log.get(i as usize))
    }

    fn on_learn(&mut self, from: NodeId, entries: Vec<AcceptedEntry>) {
        if !self.config.acceptors.contains(&from) {
            return;
        }
        let quorum = self.config.quorum();
        for AcceptedEntry { slot, ballot, value } in entries {
            self.known = self.known.max(slot);
            if slot <= self.applied() || self.chosen.contains_key(&slot) {
                continue;
            }
            let by_ballot = self.pending.entry(slot).or_default();
            let (acceptors, _) = by_ballot.entry(ballot).or_insert_with(|| (BTreeSet::new(), value));
            acceptors.insert(from);
            if acceptors.len() >= quorum {
                // A majority of configured acceptors accepted this value in one ballot.
                let (_, (_, value)) = by_ballot.remove_entry(&ballot).expect("entry just touched");
                self.pending.remove(&slot);
                self.chosen.insert(slot, value);
            }
        }
    }

    fn apply_ready(&mut self, out: &mut Outbox) {
        while let Some(value) = self.chosen.remove(&(self.applied() + 1)) {
            let slot = self.applied() + 1;
            for cmd in value.iter() {
                let (client, reply) = self.state.apply(slot, cmd);
                self.replies.entry(client).or_default().push(reply);
            }
            out.persist(PersistOp::Apply { slot, value: value.clone() });
            out.decided(slot, value.clone());
            self.log.push(value);
            self.pending.remove(&slot);
        }
    }
}

impl Actor for Learner {
    fn id(&self) -> NodeId {
        self.id
    }

    fn start(&mut self, out: &mut Outbox) {
        let t = self.config.timing.catch_up_ms;
        out.set_timer(Timer::CatchUp, t, t);
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outbox) {
        match msg {
            Message::Learn { entries } => self.on_learn(from, entries),
            Message::Chosen { entries } if self.config.learners.contains(&from) => {
                // Another learner applied these, so they are chosen: take them as they are.
                for (slot, value) in entries {
                    self.known = self.known.max(slot);
                    if slot > self.applied() {
                        self.chosen.entry(slot).or_insert(value);
                    }
                }
            }
            Message::Heartbeat { ballot, chosen } if from.role == Role::Proposer => {
                self.known = self.known.max(chosen);
                self.leader = Some(ballot.leader());
            }
            Message::CatchUp { applied } if self.config.learners.contains(&from) => {
                // The asker has applied up to `applied`: slots up to there exist.
                self.known = self.known.max(applied);
                let entries: Vec<_> = (applied + 1..=self.applied())
                    .take(self.config.timing.catch_up_batch)
                    .map(|slot| (slot, self.log[slot as usize - 1].clone()))
                    .collect();
                if !entries.is_empty() {
                    out.send(from, Message::Chosen { entries });
                }
            }
            _ => {}
        }
        self.apply_ready(out);
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Outbox) {
        if timer != Timer::CatchUp {
            return;
        }
        let t = self.config.timing.catch_up_ms;
        out.set_timer(Timer::CatchUp, t, t);
        let behind = self.known > self.applied() || !self.chosen.is_empty();
        let stuck = self.applied() == self.applied_at_last_check;
        self.applied_at_last_check = self.applied();
        let applied = self.applied();
        if behind && stuck {
            // Ask everyone who may know: acceptors answer with what they accepted (counted
            // by the same quorum rule), learners with what they applied (chosen values).
            // Every answer is a fact about one slot, so it does not matter who answers first.
            for &a in &self.config.acceptors {
                out.send(a, Message::CatchUp { applied });
            }
        }
        // Learners always tell each other how far they are: a learner that missed every
        // message about some slots, with no leader left to announce them, still finds out
        // from a peer that is ahead (and the peer answers with the slots).
        for &l in self.config.learners.iter().filter(|&&l| l != self.id) {
            out.send(l, Message::CatchUp { applied });
        }
    }

    fn flush(&mut self, out: &mut Outbox) {
        for (client, replies) in std::mem::take(&mut self.replies) {
            out.send(client, Message::Replies(replies));
        }
    }

    fn applied_values(&self, after: u64, max: usize) -> Vec<(u64, Value)> {
        (after + 1..=self.applied()).take(max).map(|slot| (slot, self.log[slot as usize - 1].clone())).collect()
    }

    fn status(&self) -> Status {
        Status {
            id: Some(self.id),
            leader: self.leader,
            chosen: Some(self.applied()),
            applied: Some(self.applied()),
            tally: Some(self.state.tally()),
            ..Status::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, VoteError};
    use crate::effect::Effect;

    fn config() -> Arc<Config> {
        Arc::new(Config::new(2, 3, 2, vec!["ada".into(), "grace".into()]))
    }

    fn learner() -> Learner {
        Learner::new(NodeId::learner(1), config(), DurableState::default())
    }

    fn vote(id: &str, voter: &str, candidate: &str) -> Value {
        Arc::new(vec![Command::Vote {
            request_id: id.into(),
            client: NodeId::client(1),
            voter: voter.into(),
            candidate: candidate.into(),
        }])
    }

    fn learn(slot: u64, ballot: Ballot, value: &Value) -> Message {
        Message::Learn { entries: vec![AcceptedEntry { slot, ballot, value: value.clone() }] }
    }

    #[test]
    fn one_acceptor_is_not_a_majority_two_are() {
        let mut l = learner();
        let mut out = Outbox::new();
        let v = vote("r1", "x", "ada");
        let b = Ballot::new(1, 1);
        l.on_message(NodeId::acceptor(1), learn(1, b, &v), &mut out);
        l.flush(&mut out);
        assert!(out.is_empty());
        // The same acceptor twice is still one acceptor.
        l.on_message(NodeId::acceptor(1), learn(1, b, &v), &mut out);
        assert!(out.is_empty());
        l.on_message(NodeId::acceptor(2), learn(1, b, &v), &mut out);
        l.flush(&mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Persist(PersistOp::Apply { slot: 1, value: v.clone() }),
                Effect::Decided { slot: 1, value: v.clone() },
                Effect::Send {
                    to: NodeId::client(1),
                    msg: Message::Replies(vec![Reply::Vote { request_id: "r1".into(), slot: 1, result: Ok(()) }])
                },
            ]
        );
    }

    #[test]
    fn a_majority_must_be_in_the_same_ballot() {
        let mut l = learner();
        let mut out = Outbox::new();
        let v = vote("r1", "x", "ada");
        l.on_message(NodeId::acceptor(1), learn(1, Ballot::new(1, 1), &v), &mut out);
        l.on_message(NodeId::acceptor(2), learn(1, Ballot::new(2, 2), &v), &mut out);
        assert_eq!(l.applied(), 0);
        l.on_message(NodeId::acceptor(3), learn(1, Ballot::new(2, 2), &v), &mut out);
        assert_eq!(l.applied(), 1);
    }

    #[test]
    fn non_acceptors_do_not_count() {
        let mut l = learner();
        let mut out = Outbox::new();
        let v = vote("r1", "x", "ada");
        let b = Ballot::new(1, 1);
        l.on_message(NodeId::acceptor(9), learn(1, b, &v), &mut out);
        l.on_message(NodeId::proposer(1), learn(1, b, &v), &mut out);
        l.on_message(NodeId::acceptor(1), learn(1, b, &v), &mut out);
        assert_eq!(l.applied(), 0, "only configured acceptors make a quorum");
    }

    #[test]
    fn slots_apply_in_order_and_gaps_are_asked_for() {
        let mut l = learner();
        let mut out = Outbox::new();
        let b = Ballot::new(1, 1);
        let (v1, v2) = (vote("r1", "x", "ada"), vote("r2", "x", "grace"));
        for a in [1, 2] {
            l.on_message(NodeId::acceptor(a), learn(2, b, &v2), &mut out);
        }
        assert_eq!(l.applied(), 0, "slot 2 waits for slot 1");
        // The first check sees no progress yet only if it was already behind before.
        l.on_timer(Timer::CatchUp, &mut out);
        let asks: Vec<_> = out
            .take()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { to, msg: Message::CatchUp { applied: 0 } } => Some(to),
                _ => None,
            })
            .collect();
        assert_eq!(asks, vec![NodeId::acceptor(1), NodeId::acceptor(2), NodeId::acceptor(3), NodeId::learner(2)]);
        for a in [1, 3] {
            l.on_message(NodeId::acceptor(a), learn(1, b, &v1), &mut out);
        }
        l.flush(&mut out);
        assert_eq!(l.applied(), 2);
        let replies: Vec<_> = out
            .take()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { msg: Message::Replies(r), .. } => Some(r),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            replies,
            vec![
                Reply::Vote { request_id: "r1".into(), slot: 1, result: Ok(()) },
                Reply::Vote { request_id: "r2".into(), slot: 2, result: Err(VoteError::AlreadyVoted) },
            ]
        );
    }

    #[test]
    fn chosen_values_from_a_peer_learner_are_applied() {
        let mut l = learner();
        let mut out = Outbox::new();
        let v = vote("r1", "x", "ada");
        l.on_message(NodeId::learner(2), Message::Chosen { entries: vec![(1, v.clone())] }, &mut out);
        assert_eq!(l.applied(), 1);
        // ...but not from something that is not a configured learner.
        l.on_message(NodeId::client(1), Message::Chosen { entries: vec![(2, v)] }, &mut out);
        assert_eq!(l.applied(), 1);
    }

    #[test]
    fn serves_catch_up_from_its_log() {
        let mut l = learner();
        let mut out = Outbox::new();
        let v = vote("r1", "x", "ada");
        l.on_message(NodeId::learner(2), Message::Chosen { entries: vec![(1, v.clone())] }, &mut out);
        out.take();
        l.on_message(NodeId::learner(2), Message::CatchUp { applied: 0 }, &mut out);
        assert_eq!(
            out.take(),
            vec![Effect::Send { to: NodeId::learner(2), msg: Message::Chosen { entries: vec![(1, v)] } }]
        );
        l.on_message(NodeId::learner(2), Message::CatchUp { applied: 1 }, &mut out);
        assert!(out.is_empty(), "nothing to send to a learner that is not behind");
    }

    #[test]
    fn restart_replays_applied_slots_without_answering_again() {
        let mut durable = DurableState::default();
        durable.apply(&PersistOp::Apply { slot: 1, value: vote("r1", "x", "ada") });
        let mut l = Learner::new(NodeId::learner(1), config(), durable);
        assert_eq!(l.applied(), 1);
        assert_eq!(l.state().vote_of("x"), Some("ada"));
        let mut out = Outbox::new();
        l.flush(&mut out);
        assert!(out.is_empty());
    }
}
