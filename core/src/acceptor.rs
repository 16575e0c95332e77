//! The acceptor: promises and accepts, and remembers both durably.

use crate::actor::{Actor, Status};
use crate::config::Config;
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId, Role};
use crate::msg::{AcceptedEntry, Message};
use crate::storage::{DurableState, PersistOp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct Acceptor {
    id: NodeId,
    config: Arc<Config>,
    promised: Ballot,
    accepted: BTreeMap<u64, (Ballot, crate::command::Value)>,
    /// Answers gathered during one step and sent together by `flush`, so a batch of
    /// accepts costs one sync and one message per peer.
    to_proposers: BTreeMap<NodeId, (Ballot, Vec<u64>)>,
    to_learners: Vec<AcceptedEntry>,
    /// Learners that joined after the cluster was configured (they asked to catch up):
    /// they get `Learn` messages too. Learners never count toward a quorum, so a joiner
    /// cannot change what is chosen.
    joined: BTreeSet<NodeId>,
}

impl Acceptor {
    /// An acceptor resuming from what it persisted (default state on first start).
    pub fn new(id: NodeId, config: Arc<Config>, durable: DurableState) -> Self {
        Acceptor {
            id,
            config,
            promised: durable.promised,
            accepted: durable.accepted,
            to_proposers: BTreeMap::new(),
            to_learners: Vec::new(),
            joined: BTreeSet::new(),
        }
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    pub fn accepted(&self, slot: u64) -> Option<&(Ballot, crate::command::Value)> {
        self.accepted.get(&slot)
    }

    fn promise_at_least(&mut self, ballot: Ballot, out: &mut Outbox) -> bool {
        if ballot < self.promised {
            return false;
        }
        if ballot > self.promised {
            self.promised = ballot;
            out.persist(PersistOp::Promise(ballot));
        }
        true
    }
}

impl Actor for Acceptor {
    fn id(&self) -> NodeId {
        self.id
    }

    fn start(&mut self, _out: &mut Outbox) {}

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outbox) {
        match msg {
            Message::Prepare { ballot, from_slot } if from.role == Role::Proposer => {
                if self.promise_at_least(ballot, out) {
                    let accepted = self
                        .accepted
                        .range(from_slot..)
                        .map(|(&slot, (b, v))| AcceptedEntry { slot, ballot: *b, value: v.clone() })
                        .collect();
                    out.send(from, Message::Promise { ballot, accepted });
                } else {
                    out.send(from, Message::Nack { ballot, promised: self.promised });
                }
            }
            Message::Accept { ballot, slot, value } if from.role == Role::Proposer => {
                if ballot < self.promised {
                    out.send(from, Message::Nack { ballot, promised: self.promised });
                    return;
                }
                self.promised = ballot;
                out.persist(PersistOp::Accept { slot, ballot, value: value.clone() });
                self.accepted.insert(slot, (ballot, value.clone()));
                let entry = self.to_proposers.entry(from).or_insert((ballot, Vec::new()));
                if entry.0 != ballot {
                    *entry = (ballot, Vec::new());
                }
                entry.1.push(slot);
                self.to_learners.push(AcceptedEntry { slot, ballot, value });
            }
            Message::CatchUp { applied } if from.role == Role::Learner => {
                if !self.config.learners.contains(&from) {
                    self.joined.insert(from);
                }
                let entries: Vec<_> = self
                    .accepted
                    .range(applied.saturating_add(1)..)
                    .take(self.config.timing.catch_up_batch)
                    .map(|(&slot, (b, v))| AcceptedEntry { slot, ballot: *b, value: v.clone() })
                    .collect();
                if !entries.is_empty() {
                    out.send(from, Message::Learn { entries });
                }
            }
            // Anything else is not for an acceptor, or is stale: ignore it.
            _ => {}
        }
    }

    fn on_timer(&mut self, _timer: Timer, _out: &mut Outbox) {}

    fn flush(&mut self, out: &mut Outbox) {
        for (to, (ballot, slots)) in std::mem::take(&mut self.to_proposers) {
            out.send(to, Message::Accepted { ballot, slots });
        }
        if !self.to_learners.is_empty() {
            let entries = std::mem::take(&mut self.to_learners);
            for &l in self.config.learners.iter().chain(&self.joined) {
                out.send(l, Message::Learn { entries: entries.clone() });
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            id: Some(self.id),
            ballot: Some(self.promised),
            accepted_slots: Some(self.accepted.len() as u64),
            ..Status::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::Effect;

    fn acceptor() -> Acceptor {
        let config = Arc::new(Config::new(2, 3, 2, vec!["ada".into()]));
        Acceptor::new(NodeId::acceptor(1), config, DurableState::default())
    }

    fn value() -> crate::command::Value {
        Arc::new(vec![])
    }

    #[test]
    fn prepare_above_promise_is_persisted_then_promised() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        let b = Ballot::new(1, 1);
        a.on_message(NodeId::proposer(1), Message::Prepare { ballot: b, from_slot: 1 }, &mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Persist(PersistOp::Promise(b)),
                Effect::Send {
                    to: NodeId::proposer(1),
                    msg: Message::Promise { ballot: b, accepted: vec![] }
                },
            ]
        );
    }

    #[test]
    fn prepare_below_promise_is_nacked_and_changes_nothing() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(NodeId::proposer(2), Message::Prepare { ballot: Ballot::new(2, 2), from_slot: 1 }, &mut out);
        out.take();
        a.on_message(NodeId::proposer(1), Message::Prepare { ballot: Ballot::new(2, 1), from_slot: 1 }, &mut out);
        assert_eq!(
            out.take(),
            vec![Effect::Send {
                to: NodeId::proposer(1),
                msg: Message::Nack { ballot: Ballot::new(2, 1), promised: Ballot::new(2, 2) }
            }]
        );
        assert_eq!(a.promised(), Ballot::new(2, 2));
    }

    #[test]
    fn accepts_are_persisted_and_answered_in_one_flush() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        let b = Ballot::new(1, 1);
        for slot in 1..=2 {
            a.on_message(NodeId::proposer(1), Message::Accept { ballot: b, slot, value: value() }, &mut out);
        }
        a.flush(&mut out);
        let learn = Message::Learn {
            entries: vec![
                AcceptedEntry { slot: 1, ballot: b, value: value() },
                AcceptedEntry { slot: 2, ballot: b, value: value() },
            ],
        };
        assert_eq!(
            out.take(),
            vec![
                Effect::Persist(PersistOp::Accept { slot: 1, ballot: b, value: value() }),
                Effect::Persist(PersistOp::Accept { slot: 2, ballot: b, value: value() }),
                Effect::Send { to: NodeId::proposer(1), msg: Message::Accepted { ballot: b, slots: vec![1, 2] } },
                Effect::Send { to: NodeId::learner(1), msg: learn.clone() },
                Effect::Send { to: NodeId::learner(2), msg: learn },
            ]
        );
    }

    #[test]
    fn promise_reports_accepted_values_from_the_asked_slot() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        let b1 = Ballot::new(1, 1);
        for slot in 1..=3 {
            a.on_message(NodeId::proposer(1), Message::Accept { ballot: b1, slot, value: value() }, &mut out);
        }
        a.flush(&mut out);
        out.take();
        let b2 = Ballot::new(2, 2);
        a.on_message(NodeId::proposer(2), Message::Prepare { ballot: b2, from_slot: 2 }, &mut out);
        let sent: Vec<_> = out.take().into_iter().filter_map(|e| match e {
            Effect::Send { msg: Message::Promise { accepted, .. }, .. } => Some(accepted),
            _ => None,
        }).collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].iter().map(|e| e.slot).collect::<Vec<_>>(), vec![2, 3]);
        assert!(sent[0].iter().all(|e| e.ballot == b1));
    }

    #[test]
    fn accept_below_promise_is_nacked_and_not_stored() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(NodeId::proposer(2), Message::Prepare { ballot: Ballot::new(3, 2), from_slot: 1 }, &mut out);
        out.take();
        a.on_message(NodeId::proposer(1), Message::Accept { ballot: Ballot::new(1, 1), slot: 1, value: value() }, &mut out);
        a.flush(&mut out);
        assert_eq!(
            out.take(),
            vec![Effect::Send {
                to: NodeId::proposer(1),
                msg: Message::Nack { ballot: Ballot::new(1, 1), promised: Ballot::new(3, 2) }
            }]
        );
        assert!(a.accepted(1).is_none());
    }

    #[test]
    fn restart_keeps_promise_and_accepted_values() {
        let config = Arc::new(Config::new(2, 3, 2, vec![]));
        let mut durable = DurableState::default();
        durable.apply(&PersistOp::Accept { slot: 7, ballot: Ballot::new(4, 2), value: value() });
        let mut a = Acceptor::new(NodeId::acceptor(2), config, durable);
        let mut out = Outbox::new();
        a.on_message(NodeId::proposer(1), Message::Prepare { ballot: Ballot::new(3, 1), from_slot: 1 }, &mut out);
        assert!(matches!(&out.take()[..], [Effect::Send { msg: Message::Nack { .. }, .. }]));
        assert_eq!(a.accepted(7).map(|e| e.0), Some(Ballot::new(4, 2)));
    }

    #[test]
    fn messages_from_wrong_roles_are_ignored() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(NodeId::client(1), Message::Prepare { ballot: Ballot::new(9, 9), from_slot: 1 }, &mut out);
        a.on_message(NodeId::learner(1), Message::Accept { ballot: Ballot::new(9, 9), slot: 1, value: value() }, &mut out);
        a.flush(&mut out);
        assert!(out.is_empty());
        assert_eq!(a.promised(), Ballot::ZERO);
    }

    #[test]
    fn extreme_slot_numbers_from_the_network_do_not_panic() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(NodeId::learner(1), Message::CatchUp { applied: u64::MAX }, &mut out);
        a.on_message(NodeId::proposer(1), Message::Prepare { ballot: Ballot::new(u64::MAX, u16::MAX), from_slot: u64::MAX }, &mut out);
        a.on_message(NodeId::proposer(1), Message::Accept { ballot: Ballot::new(u64::MAX, u16::MAX), slot: u64::MAX, value: value() }, &mut out);
        a.flush(&mut out);
        assert!(!out.is_empty(), "the promise and the accept are still answered");
    }
}
