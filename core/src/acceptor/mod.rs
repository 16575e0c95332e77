//! The acceptor: promises and accepts, and remembers both durably; after lost state it
//! rejoins ([`rejoin`]) before it votes again.

mod rejoin;

use crate::actor::{Actor, Status};
use crate::auth::{check_sender, Refusal};
use crate::command::value_size;
use crate::config::{Config, MAX_JOINED_LEARNERS};
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId};
use crate::msg::{AcceptedEntry, Message, PAGE_BYTES};
use crate::storage::{DurableState, PersistOp};
use rejoin::Rejoin;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The acceptor role: promises ballots and accepts values for slots, durably, and tells
/// the proposers and learners what it accepted.
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
    /// they get `Learn` messages too, at most [`MAX_JOINED_LEARNERS`] of them. Learners
    /// never count toward a quorum, so a joiner cannot change what is chosen.
    joined: BTreeSet<NodeId>,
    /// Leader stickiness: the highest ballot whose own proposer was heard (a heartbeat or
    /// an accept at a ballot at least our promise) in the current lease period, and in the
    /// last one. While such a lease runs, a `Prepare` from any other proposer is refused,
    /// so a proposer that cannot hear the leader (restarted, or cut from the other
    /// proposers) cannot unseat a leader that a majority of acceptors still hears. The
    /// lease ends one to two periods (`election_min_ms / 3` each) after the leader was last
    /// heard, before a follower's election timeout (at least `election_min_ms` after its
    /// last heartbeat) runs out, so failover is not slowed. Refusing is always safe.
    heard_leader: Option<Ballot>,
    lease: Option<Ballot>,
    /// Slots up to here are compacted away: every configured learner applied them.
    compacted: u64,
    /// The applied slot each configured learner last reported (`Progress`).
    learner_applied: BTreeMap<NodeId, u64>,
    /// Set while rejoining after lost state: it answers no `Prepare`, `Accept` or
    /// `Heartbeat` until [`Rejoin`] says it can no longer contradict what it forgot.
    rejoin: Option<Rejoin>,
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
            heard_leader: None,
            lease: None,
            compacted: durable.compacted,
            learner_applied: BTreeMap::new(),
            rejoin: durable.rejoining.then(Rejoin::default),
        }
    }

    /// Whether it is still rejoining after lost state (it does not vote yet).
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    fn send_rejoin_asks(&self, out: &mut Outbox) {
        if let Some(r) = &self.rejoin {
            for (to, msg) in r.asks(&self.config, self.id) {
                out.send(to, msg);
            }
        }
    }

    /// A rejoining peer's question: promise its fence (an acceptor's only; forced, not
    /// subject to the lease: it is no election), compact what every configured learner
    /// applied, and say how far every slot up to its horizon is held at the fence or
    /// above. A rejoining acceptor answers nothing: it is no witness.
    fn on_rejoin_ask(&mut self, from: NodeId, fence: Ballot, horizon: u64, out: &mut Outbox) {
        if self.rejoin.is_some() {
            return;
        }
        let fence = if self.config.acceptors.contains(&from) { fence } else { Ballot::ZERO };
        if fence > self.promised {
            self.promised = fence;
            out.persist(PersistOp::Promise(fence));
        }
        self.compact_now(out);
        let mut covered = self.compacted;
        if fence > Ballot::ZERO {
            while covered < horizon && self.accepted.get(&(covered + 1)).is_some_and(|(b, _)| *b >= fence) {
                covered += 1;
            }
        }
        let top = self.last_accepted().max(self.compacted);
        out.send(from, Message::RejoinInfo { fence, round: self.promised.round, top, covered });
    }

    fn on_rejoin_info(&mut self, from: NodeId, info: (Ballot, u64, u64, u64), out: &mut Outbox) {
        let Some(r) = &mut self.rejoin else { return };
        let had_fence = r.fence().is_some();
        if let Some(fence) = r.on_info(&self.config, from, info) {
            self.rejoin = None;
            if fence > self.promised {
                self.promised = fence;
                out.persist(PersistOp::Promise(fence));
            }
            out.persist(PersistOp::Rejoin(false));
        } else if !had_fence && r.fence().is_some() {
            // The fence is known: ask the acceptors to promise it now, not a period later.
            self.send_rejoin_asks(out);
        }
    }

    fn lease_period(&self) -> u64 {
        (self.config.timing.election_min_ms / 3).max(1)
    }

    /// Accepted entries in `from..=to`, at most `max` of them and about [`PAGE_BYTES`]
    /// (at least one), and the last slot the page covers.
    fn page(&self, from: u64, to: u64, max: usize) -> (Vec<AcceptedEntry>, u64) {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let from = from.max(self.compacted.saturating_add(1));
        if from > to {
            return (entries, to);
        }
        for (&slot, (b, v)) in self.accepted.range(from..=to) {
            let size = value_size(v);
            if !entries.is_empty() && (bytes + size > PAGE_BYTES || entries.len() >= max) {
                return (entries, slot - 1);
            }
            bytes += size;
            entries.push(AcceptedEntry { slot, ballot: *b, value: v.clone() });
        }
        (entries, to)
    }

    /// Forget the accepted values every configured learner has applied, once that is
    /// `snapshot_every` slots past the last compaction (one small record each time). What
    /// is gone cannot be asked for again: a proposer's phase 1 is told the mark and takes
    /// those slots as chosen, and a learner below it (a new one) catches up from the
    /// other learners' snapshots. A configured learner that never reports (down for good)
    /// holds compaction back; promises stay small through paging all the same.
    fn compact(&mut self, out: &mut Outbox) {
        self.compact_by(self.config.timing.snapshot_every.max(1) as u64, out);
    }

    /// Compact whatever every configured learner applied, however little.
    fn compact_now(&mut self, out: &mut Outbox) {
        self.compact_by(1, out);
    }

    fn compact_by(&mut self, step: u64, out: &mut Outbox) {
        if self.learner_applied.len() < self.config.learners.len() {
            return;
        }
        let upto = self.learner_applied.values().copied().min().unwrap_or(0);
        if upto >= self.compacted.saturating_add(step) {
            self.compacted = upto;
            self.accepted = self.accepted.split_off(&upto.saturating_add(1));
            out.persist(PersistOp::Compact { upto });
        }
    }

    /// The highest slot this acceptor accepted a value for (0 if none).
    pub fn last_accepted(&self) -> u64 {
        self.accepted.keys().next_back().copied().unwrap_or(0)
    }

    /// The leader of `ballot` spoke at that ballot, which is at least our promise.
    fn heard(&mut self, from: NodeId, ballot: Ballot) {
        if from == ballot.leader() && ballot >= self.promised {
            self.heard_leader = self.heard_leader.max(Some(ballot));
        }
    }

    /// The highest ballot this acceptor promised (durable).
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The ballot and value accepted for `slot`, if it holds one (none once compacted).
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

impl Acceptor {
    /// The leased leader's connection closed while in use: it most likely crashed, and
    /// its lease would only make the next leader wait one to two lease periods. Dropping
    /// a lease early is always safe (a lease is for liveness only).
    fn on_peer_down(&mut self, peer: NodeId) {
        if !self.config.timing.rules.crash_notice {
            return;
        }
        if self.heard_leader.is_some_and(|b| b.leader() == peer) {
            self.heard_leader = None;
        }
        if self.lease.is_some_and(|b| b.leader() == peer) {
            self.lease = None;
        }
    }
}

impl Actor for Acceptor {
    fn id(&self) -> NodeId {
        self.id
    }

    fn start(&mut self, out: &mut Outbox) {
        let t = self.lease_period();
        out.set_timer(Timer::Lease, t, t);
        self.send_rejoin_asks(out);
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outbox) {
        if let Err(reason) = check_sender(&self.config, self.id, from, &msg) {
            out.refuse(from, msg.kind(), reason);
            return;
        }
        if self.rejoin.is_some()
            && matches!(msg, Message::Prepare { .. } | Message::Accept { .. } | Message::Heartbeat { .. })
        {
            out.refuse(from, msg.kind(), Refusal::Rejoining);
            return;
        }
        match msg {
            Message::Rejoin { fence, horizon } => self.on_rejoin_ask(from, fence, horizon, out),
            Message::RejoinInfo { fence, round, top, covered } => {
                self.on_rejoin_info(from, (fence, round, top, covered), out)
            }
            Message::Prepare { ballot, req, from_slot, to_slot } => {
                // The leader's lease: refuse to be taken over by anyone but the leader
                // itself while the leader is heard (the Nack names the leader's ballot).
                let lease = self.lease.max(self.heard_leader);
                let sticky =
                    self.config.timing.rules.leader_lease && lease.is_some_and(|l| ballot > l && from != l.leader());
                if sticky {
                    // Names the leased leader's ballot (it may be above our promise: a
                    // heartbeat does not raise the promise), so the candidate follows it.
                    let leased = lease.unwrap_or(self.promised).max(self.promised);
                    out.send(from, Message::Nack { ballot, promised: leased });
                } else if self.promise_at_least(ballot, out) {
                    let (accepted, end) = self.page(from_slot, to_slot, usize::MAX);
                    let (last, compacted) = (self.last_accepted().max(self.compacted), self.compacted);
                    out.send(from, Message::Promise { ballot, req, from_slot, end, last, compacted, accepted });
                } else {
                    out.send(from, Message::Nack { ballot, promised: self.promised });
                }
            }
            Message::Heartbeat { ballot, .. } => {
                // Check-quorum: the leader counts this answer as "a majority still hears
                // me"; a stale leader is told it was overtaken.
                if ballot >= self.promised {
                    self.heard(from, ballot);
                    out.send(from, Message::Accepted { ballot, slots: Vec::new() });
                } else {
                    out.send(from, Message::Nack { ballot, promised: self.promised });
                }
            }
            Message::Accept { ballot, slot, value } => {
                if ballot < self.promised {
                    out.send(from, Message::Nack { ballot, promised: self.promised });
                    return;
                }
                self.heard(from, ballot);
                if slot <= self.compacted {
                    // Chosen and applied by every learner, and forgotten here: a leader
                    // that did not know re-proposes it. Its value can only be the chosen
                    // one (Paxos), so answer that it is accepted, without storing it.
                    let entry = self.to_proposers.entry(from).or_insert((ballot, Vec::new()));
                    if entry.0 != ballot {
                        *entry = (ballot, Vec::new());
                    }
                    entry.1.push(slot);
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
            Message::CatchUp { applied } => {
                if !self.config.learners.contains(&from) && !self.joined.contains(&from) {
                    if self.joined.len() >= MAX_JOINED_LEARNERS {
                        out.refuse(from, "CatchUp", Refusal::TooManyLearners);
                        return;
                    }
                    self.joined.insert(from);
                }
                let (entries, _) = self.page(applied.saturating_add(1), u64::MAX, self.config.timing.catch_up_batch);
                if !entries.is_empty() {
                    out.send(from, Message::Learn { entries });
                }
            }
            Message::Progress { applied } => {
                self.learner_applied.insert(from, applied);
                self.compact(out);
            }
            Message::PeerDown => self.on_peer_down(from),
            // `Hello`: nothing to do (the sender rule refused every other kind).
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Outbox) {
        if timer == Timer::Lease {
            self.lease = std::mem::take(&mut self.heard_leader);
            let t = self.lease_period();
            out.set_timer(Timer::Lease, t, t);
            self.send_rejoin_asks(out);
        }
    }

    fn flush(&mut self, out: &mut Outbox) {
        for (to, (ballot, slots)) in std::mem::take(&mut self.to_proposers) {
            out.send(to, Message::Accepted { ballot, slots });
        }
        // One Learn per learner for the whole step, cut into pages of about PAGE_BYTES
        // (a step can accept thousands of large batches).
        let mut entries = std::mem::take(&mut self.to_learners).into_iter().peekable();
        while entries.peek().is_some() {
            let mut page = Vec::new();
            let mut bytes = 0;
            while let Some(e) = entries.next_if(|e| page.is_empty() || bytes + value_size(&e.value) <= PAGE_BYTES) {
                bytes += value_size(&e.value);
                page.push(e);
            }
            for &l in self.config.learners.iter().chain(&self.joined) {
                out.send(l, Message::Learn { entries: page.clone() });
            }
        }
    }

    fn accepted_ballot(&self, slot: u64) -> Option<Ballot> {
        self.accepted.get(&slot).map(|(b, _)| *b)
    }

    fn status(&self) -> Status {
        Status {
            id: Some(self.id),
            ballot: Some(self.promised),
            accepted_slots: Some(self.accepted.len() as u64),
            rejoining: Some(self.rejoin.is_some()),
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
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare { req: 0, ballot: b, from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        assert_eq!(
            out.take(),
            vec![
                Effect::Persist(PersistOp::Promise(b)),
                Effect::Send {
                    to: NodeId::proposer(1),
                    msg: Message::Promise {
                        ballot: b,
                        req: 0,
                        from_slot: 1,
                        end: u64::MAX,
                        last: 0,
                        compacted: 0,
                        accepted: vec![]
                    }
                },
            ]
        );
    }

    #[test]
    fn prepare_below_promise_is_nacked_and_changes_nothing() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(
            NodeId::proposer(2),
            Message::Prepare { req: 0, ballot: Ballot::new(2, 2), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        out.take();
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare { req: 0, ballot: Ballot::new(2, 1), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
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
        // proposer-1 is not heard for two lease periods: its lease has ended.
        a.on_timer(Timer::Lease, &mut out);
        a.on_timer(Timer::Lease, &mut out);
        out.take();
        let b2 = Ballot::new(2, 2);
        a.on_message(
            NodeId::proposer(2),
            Message::Prepare { req: 0, ballot: b2, from_slot: 2, to_slot: u64::MAX },
            &mut out,
        );
        let sent: Vec<_> = out
            .take()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { msg: Message::Promise { accepted, .. }, .. } => Some(accepted),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].iter().map(|e| e.slot).collect::<Vec<_>>(), vec![2, 3]);
        assert!(sent[0].iter().all(|e| e.ballot == b1));
    }

    fn promises(out: &mut Outbox) -> Vec<Message> {
        out.take()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { msg: m @ (Message::Promise { .. } | Message::Nack { .. }), .. } => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_crash_notice_ends_that_leaders_lease_only() {
        let (p1, p2) = (NodeId::proposer(1), NodeId::proposer(2));
        let (b1, b2) = (Ballot::new(1, 1), Ballot::new(2, 2));
        let prepare2 = Message::Prepare { req: 0, ballot: b2, from_slot: 1, to_slot: u64::MAX };
        for notice_from in [p2, NodeId::learner(1), p1] {
            let mut a = acceptor();
            let mut out = Outbox::new();
            a.on_message(p1, Message::Prepare { req: 0, ballot: b1, from_slot: 1, to_slot: u64::MAX }, &mut out);
            a.on_message(p1, Message::Heartbeat { ballot: b1, chosen: 0 }, &mut out);
            a.on_timer(Timer::Lease, &mut out);
            a.on_message(p1, Message::Heartbeat { ballot: b1, chosen: 0 }, &mut out);
            out.take();
            a.on_message(notice_from, Message::PeerDown, &mut out);
            a.on_message(p2, prepare2.clone(), &mut out);
            let got = promises(&mut out);
            if notice_from == p1 {
                assert!(matches!(&got[..], [Message::Promise { ballot, .. }] if *ballot == b2), "{got:?}");
            } else {
                assert_eq!(got, vec![Message::Nack { ballot: b2, promised: b1 }], "{notice_from} is not the leader");
            }
        }
        // With the rule off, the notice changes nothing.
        let mut config = Config::new(2, 3, 2, vec!["ada".into()]);
        config.timing.rules.crash_notice = false;
        let mut a = Acceptor::new(NodeId::acceptor(1), Arc::new(config), DurableState::default());
        let mut out = Outbox::new();
        a.on_message(p1, Message::Prepare { req: 0, ballot: b1, from_slot: 1, to_slot: u64::MAX }, &mut out);
        a.on_message(p1, Message::Heartbeat { ballot: b1, chosen: 0 }, &mut out);
        out.take();
        a.on_message(p1, Message::PeerDown, &mut out);
        a.on_message(p2, prepare2, &mut out);
        assert_eq!(promises(&mut out), vec![Message::Nack { ballot: b2, promised: b1 }]);
    }

    #[test]
    fn a_heard_leader_keeps_its_lease_and_others_are_refused_until_it_ends() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        let b1 = Ballot::new(1, 1);
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare { req: 0, ballot: b1, from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        out.take();
        let b2 = Ballot::new(2, 2);
        let prepare2 = Message::Prepare { req: 0, ballot: b2, from_slot: 1, to_slot: u64::MAX };
        // The leader's heartbeat is answered (check-quorum) and starts its lease.
        a.on_message(NodeId::proposer(1), Message::Heartbeat { ballot: b1, chosen: 0 }, &mut out);
        assert_eq!(
            out.take(),
            vec![Effect::Send { to: NodeId::proposer(1), msg: Message::Accepted { ballot: b1, slots: vec![] } }]
        );
        // Heard in this period and heard again in each of the next: proposer-2 is refused,
        // and the refusal names the leader's ballot.
        for _ in 0..3 {
            a.on_message(NodeId::proposer(2), prepare2.clone(), &mut out);
            assert_eq!(promises(&mut out), vec![Message::Nack { ballot: b2, promised: b1 }]);
            a.on_timer(Timer::Lease, &mut out);
            a.on_message(NodeId::proposer(1), Message::Heartbeat { ballot: b1, chosen: 0 }, &mut out);
            out.take();
        }
        assert_eq!(a.promised(), b1, "a refusal changes nothing");
        // The leader itself may always prepare again (a restarted leader).
        let b3 = Ballot::new(3, 1);
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare { req: 0, ballot: b3, from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        assert!(matches!(&promises(&mut out)[..], [Message::Promise { ballot, .. }] if *ballot == b3));
        // The end of the period it was last heard in: the lease still runs for one more
        // period, silent; after that it has ended.
        a.on_timer(Timer::Lease, &mut out);
        a.on_message(
            NodeId::proposer(2),
            Message::Prepare { req: 0, ballot: Ballot::new(4, 2), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        assert!(matches!(&promises(&mut out)[..], [Message::Nack { .. }]), "one silent period is not enough");
        a.on_timer(Timer::Lease, &mut out);
        a.on_message(
            NodeId::proposer(2),
            Message::Prepare { req: 0, ballot: Ballot::new(4, 2), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        assert!(matches!(&promises(&mut out)[..], [Message::Promise { .. }]), "the lease has ended");
    }

    #[test]
    fn a_stale_leaders_heartbeat_is_nacked() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(
            NodeId::proposer(2),
            Message::Prepare { req: 0, ballot: Ballot::new(5, 2), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        out.take();
        a.on_message(NodeId::proposer(1), Message::Heartbeat { ballot: Ballot::new(4, 1), chosen: 0 }, &mut out);
        assert_eq!(
            out.take(),
            vec![Effect::Send {
                to: NodeId::proposer(1),
                msg: Message::Nack { ballot: Ballot::new(4, 1), promised: Ballot::new(5, 2) }
            }]
        );
    }

    fn big_value(bytes: usize) -> crate::command::Value {
        Arc::new(vec![crate::command::Command::Vote {
            request_id: "r".into(),
            client: NodeId::client(1),
            voter: "x".repeat(bytes),
            candidate: "ada".into(),
        }])
    }

    #[test]
    fn promises_and_catch_up_answers_are_paged_by_bytes() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        let b = Ballot::new(1, 1);
        // 40 slots of about 60 KiB: 2.4 MiB in all, more than two pages.
        for slot in 1..=40 {
            a.on_message(NodeId::proposer(1), Message::Accept { ballot: b, slot, value: big_value(60_000) }, &mut out);
        }
        a.flush(&mut out);
        out.take();
        let mut from = 1;
        let mut pages = 0;
        while from <= 40 {
            a.on_message(
                NodeId::proposer(1),
                Message::Prepare { req: 0, ballot: b, from_slot: from, to_slot: u64::MAX },
                &mut out,
            );
            let [Message::Promise { from_slot, end, last, accepted, .. }] = &promises(&mut out)[..] else {
                panic!("one promise")
            };
            assert_eq!((*from_slot, *last), (from, 40));
            let bytes: usize = accepted.iter().map(|e| value_size(&e.value)).sum();
            assert!(bytes <= PAGE_BYTES, "page of {bytes} bytes");
            assert_eq!(accepted.first().map(|e| e.slot), Some(from));
            assert_eq!(accepted.last().map(|e| e.slot), Some((*end).min(40)), "the page ends where it says");
            pages += 1;
            if *end >= 40 {
                break;
            }
            from = end + 1;
        }
        assert_eq!(pages, 3);
        a.on_message(NodeId::learner(1), Message::CatchUp { applied: 0 }, &mut out);
        let learn = out.take();
        let [Effect::Send { msg: Message::Learn { entries }, .. }] = &learn[..] else { panic!("one Learn") };
        assert!(entries.len() < 40 && entries.iter().map(|e| value_size(&e.value)).sum::<usize>() <= PAGE_BYTES);
    }

    #[test]
    fn slots_every_learner_applied_are_compacted_and_promises_carry_the_mark() {
        let mut c = Config::new(2, 3, 2, vec!["ada".into()]);
        c.timing.snapshot_every = 10;
        let mut a = Acceptor::new(NodeId::acceptor(1), Arc::new(c), DurableState::default());
        let mut out = Outbox::new();
        let b = Ballot::new(1, 1);
        for slot in 1..=30 {
            a.on_message(NodeId::proposer(1), Message::Accept { ballot: b, slot, value: value() }, &mut out);
        }
        a.flush(&mut out);
        out.take();
        // One learner alone is not every learner; then less than 10 slots is not worth it.
        a.on_message(NodeId::learner(1), Message::Progress { applied: 25 }, &mut out);
        assert!(out.is_empty());
        a.on_message(NodeId::learner(2), Message::Progress { applied: 5 }, &mut out);
        assert!(out.is_empty());
        // A learner that is not configured does not count: it is refused.
        a.on_message(NodeId::learner(9), Message::Progress { applied: 0 }, &mut out);
        a.on_message(NodeId::learner(2), Message::Progress { applied: 20 }, &mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Refused { from: NodeId::learner(9), kind: "Progress", reason: Refusal::NotAConfiguredLearner },
                Effect::Persist(PersistOp::Compact { upto: 20 })
            ]
        );
        assert!(a.accepted(20).is_none() && a.accepted(21).is_some());
        // Phase 1 from slot 1 hears the mark and gets only what is left.
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare { req: 0, ballot: b, from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        let [Message::Promise { compacted, last, accepted, .. }] = &promises(&mut out)[..] else { panic!("a promise") };
        assert_eq!((*compacted, *last), (20, 30));
        assert_eq!(accepted.iter().map(|e| e.slot).collect::<Vec<_>>(), (21..=30).collect::<Vec<_>>());
        // A leader that re-proposes a compacted slot is told it is accepted; nothing is stored.
        a.on_message(NodeId::proposer(1), Message::Accept { ballot: b, slot: 3, value: value() }, &mut out);
        a.flush(&mut out);
        assert_eq!(
            out.take(),
            vec![Effect::Send { to: NodeId::proposer(1), msg: Message::Accepted { ballot: b, slots: vec![3] } }]
        );
        // The mark survives a restart.
        let mut durable = DurableState::default();
        for slot in 1..=30 {
            durable.apply(&PersistOp::Accept { slot, ballot: b, value: value() });
        }
        durable.apply(&PersistOp::Compact { upto: 20 });
        assert_eq!((durable.compacted, durable.accepted.len()), (20, 10));
    }

    #[test]
    fn accept_below_promise_is_nacked_and_not_stored() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(
            NodeId::proposer(2),
            Message::Prepare { req: 0, ballot: Ballot::new(3, 2), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        out.take();
        a.on_message(
            NodeId::proposer(1),
            Message::Accept { ballot: Ballot::new(1, 1), slot: 1, value: value() },
            &mut out,
        );
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
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare { req: 0, ballot: Ballot::new(3, 1), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        assert!(matches!(&out.take()[..], [Effect::Send { msg: Message::Nack { .. }, .. }]));
        assert_eq!(a.accepted(7).map(|e| e.0), Some(Ballot::new(4, 2)));
    }

    #[test]
    fn messages_from_wrong_roles_are_refused() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(
            NodeId::client(1),
            Message::Prepare { req: 0, ballot: Ballot::new(9, 9), from_slot: 1, to_slot: u64::MAX },
            &mut out,
        );
        a.on_message(
            NodeId::learner(1),
            Message::Accept { ballot: Ballot::new(9, 9), slot: 1, value: value() },
            &mut out,
        );
        a.flush(&mut out);
        assert_eq!(
            out.take(),
            vec![
                Effect::Refused { from: NodeId::client(1), kind: "Prepare", reason: Refusal::NotAProposer },
                Effect::Refused { from: NodeId::learner(1), kind: "Accept", reason: Refusal::NotAProposer },
            ]
        );
        assert_eq!(a.promised(), Ballot::ZERO);
    }

    #[test]
    fn extreme_slot_numbers_from_the_network_do_not_panic() {
        let mut a = acceptor();
        let mut out = Outbox::new();
        a.on_message(NodeId::learner(1), Message::CatchUp { applied: u64::MAX }, &mut out);
        a.on_message(
            NodeId::proposer(1),
            Message::Prepare {
                req: 0,
                ballot: Ballot::new(u64::MAX, u16::MAX),
                from_slot: u64::MAX,
                to_slot: u64::MAX,
            },
            &mut out,
        );
        a.on_message(
            NodeId::proposer(1),
            Message::Accept { ballot: Ballot::new(u64::MAX, u16::MAX), slot: u64::MAX, value: value() },
            &mut out,
        );
        a.flush(&mut out);
        assert!(!out.is_empty(), "the promise and the accept are still answered");
    }
}
