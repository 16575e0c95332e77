//! The proposer: elects a leader, runs phase 1 once per leadership for every open slot,
//! and phase 2 for many slots at once, each slot a batch of client commands.
//!
//! Liveness rules (ARCHITECTURE.md, "the protocol never stalls"):
//! - **check-quorum**: a leader that has not heard from a majority of acceptors within an
//!   election timeout steps down and stops heart-beating, so followers that still hear
//!   it elect someone who can reach the acceptors;
//! - **paged recovery**: phase 1 reads the acceptors' logs in pages of at most
//!   [`PAGE_BYTES`](crate::msg::PAGE_BYTES); new commands go above every slot a majority
//!   reported at once, old slots are re-proposed page by page as the window frees;
//! - **re-opening**: a learner that stays stuck below the leader's `chosen` (no majority
//!   of acceptors holds one ballot for its next slot any more) makes the leader run phase
//!   1 and 2 again for those slots at its own ballot, so a chosen slot can always be
//!   learned.

use crate::actor::{Actor, Status};
use crate::command::{Command, Reply, Value, MAX_COMMAND_BYTES};
use crate::config::Config;
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId, Role};
use crate::msg::{AcceptedEntry, Message, PAGE_BYTES};
use crate::storage::{DurableState, PersistOp};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

#[derive(Debug)]
enum Phase {
    Follower,
    /// Phase 1 under way for every slot from `from_slot` on. `refused` counts acceptors
    /// that refused because they still hear another leader (its ballot is kept).
    Candidate {
        ballot: Ballot,
        req: u64,
        from_slot: u64,
        promises: BTreeMap<NodeId, Promised>,
        refused: BTreeMap<NodeId, Ballot>,
    },
    Leader(Box<Leading>),
}

#[derive(Debug)]
struct Leading {
    ballot: Ballot,
    next_slot: u64,
    inflight: BTreeMap<u64, InFlight>,
    /// Slots whose accepted values are still being read from the acceptors.
    recovery: Option<Recovery>,
    /// Acceptors heard at this ballot since the last check-quorum.
    heard: BTreeSet<NodeId>,
}

/// One acceptor's promise: the highest slot it accepted, and the first page of its values
/// (with its compaction mark).
#[derive(Debug)]
struct Promised {
    last: u64,
    page: Page,
}

/// A page of one acceptor's accepted values: the slots from the asked start to `end`.
#[derive(Debug)]
struct Page {
    end: u64,
    /// The acceptor's compaction mark: it holds nothing at or below it, which says
    /// nothing about what was accepted there (see `advance_recovery`).
    compacted: u64,
    entries: Vec<AcceptedEntry>,
}

/// Phase 1 for the slots `from..=to` at the leader's ballot, one page at a time.
#[derive(Debug)]
struct Recovery {
    /// The round's name, echoed by its promises.
    req: u64,
    from: u64,
    to: u64,
    /// Slots no acceptor of the majority reports become no-ops (phase 1 of a new
    /// leadership); when re-opening chosen slots, such a slot is left alone.
    fill_holes: bool,
    answers: BTreeMap<NodeId, Page>,
    /// A `Prepare` for `from..=to` is out and not yet answered by a majority.
    asked: bool,
}

#[derive(Debug)]
struct InFlight {
    value: Value,
    accepted: BTreeSet<NodeId>,
    /// The retransmission tick at which it was proposed.
    proposed_at: u64,
    clients_told: bool,
    /// A value read back from the acceptors (recovery), not a command of this leader's
    /// queue: never re-queued as a new command when stepping down.
    recovered: bool,
}

pub struct Proposer {
    id: NodeId,
    config: Arc<Config>,
    /// Highest round used by this proposer or seen from anyone.
    round: u64,
    phase: Phase,
    /// The leader this proposer follows, and the ballot it heard it with.
    leader: Option<NodeId>,
    leader_ballot: Ballot,
    /// Every slot up to `chosen` is chosen; `chosen_above` holds chosen slots past a gap.
    chosen: u64,
    chosen_above: BTreeSet<u64>,
    /// Commands waiting for a slot (leader) or for a leader to forward to (follower).
    queue: VecDeque<Command>,
    tick: u64,
    /// Elections started since this incarnation began (for operators).
    elections: u64,
    /// The applied slot each learner reported in its last `CatchUp`: a learner that asks
    /// twice from the same slot below `chosen` is stuck, and its slots are re-opened.
    learner_asks: BTreeMap<NodeId, u64>,
    /// The last phase 1 round sent (`Prepare.req`).
    req: u64,
}

impl Proposer {
    pub fn new(id: NodeId, config: Arc<Config>, durable: DurableState) -> Self {
        Proposer {
            id,
            config,
            round: durable.round,
            phase: Phase::Follower,
            leader: None,
            leader_ballot: Ballot::ZERO,
            chosen: 0,
            chosen_above: BTreeSet::new(),
            queue: VecDeque::new(),
            tick: 0,
            elections: 0,
            learner_asks: BTreeMap::new(),
            req: 0,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.phase, Phase::Leader { .. })
    }

    /// The leader this proposer believes in (itself when leading).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn ballot(&self) -> Ballot {
        match &self.phase {
            Phase::Candidate { ballot, .. } => *ballot,
            Phase::Leader(l) => l.ballot,
            Phase::Follower => self.leader_ballot,
        }
    }

    pub fn chosen(&self) -> u64 {
        self.chosen
    }

    /// The name (`req`) of the last phase 1 round this proposer sent.
    pub fn phase1_round(&self) -> u64 {
        self.req
    }

    fn election_timer(&self, out: &mut Outbox) {
        let t = &self.config.timing;
        out.set_timer(Timer::Election, t.election_min_ms, t.election_max_ms);
    }

    fn start_election(&mut self, out: &mut Outbox) {
        self.round = self.round.max(self.leader_ballot.round).saturating_add(1);
        self.elections += 1;
        let ballot = Ballot::new(self.round, self.id.index);
        // Durable before any Prepare leaves: a restarted proposer never reuses a ballot.
        out.persist(PersistOp::Round(self.round));
        let from_slot = self.chosen.saturating_add(1);
        self.req += 1;
        let req = self.req;
        for &a in &self.config.acceptors {
            out.send(a, Message::Prepare { ballot, req, from_slot, to_slot: u64::MAX });
        }
        self.requeue_inflight();
        self.phase = Phase::Candidate { ballot, req, from_slot, promises: BTreeMap::new(), refused: BTreeMap::new() };
        self.leader = None;
        self.election_timer(out);
    }

    fn become_leader(
        &mut self,
        ballot: Ballot,
        req: u64,
        from_slot: u64,
        promises: BTreeMap<NodeId, Promised>,
        out: &mut Outbox,
    ) {
        // New commands go above every slot any acceptor of the majority accepted: a value
        // chosen at a lower ballot was accepted by a majority, which meets this one. The
        // slots below are read back page by page (`advance_recovery`): for each, the value
        // of the highest ballot may have been chosen and is proposed again; holes become
        // no-ops (empty batches).
        // An acceptor's compaction mark is a fact: every learner applied those slots, so
        // they are chosen and need no phase 1 (a restarted proposer does not re-propose
        // the whole log).
        let compacted = promises.values().map(|p| p.page.compacted).max().unwrap_or(0);
        self.learn_chosen_up_to(compacted);
        let from_slot = from_slot.max(compacted.saturating_add(1));
        let last = promises.values().map(|p| p.last).max().unwrap_or(0).max(from_slot.saturating_sub(1));
        let heard = promises.keys().copied().collect();
        let answers = promises.into_iter().map(|(a, p)| (a, p.page)).collect();
        let recovery = Recovery { req, from: from_slot, to: last, fill_holes: true, answers, asked: true };
        self.phase = Phase::Leader(Box::new(Leading {
            ballot,
            next_slot: last.saturating_add(1),
            inflight: BTreeMap::new(),
            recovery: Some(recovery),
            heard,
        }));
        self.leader = Some(self.id);
        self.leader_ballot = ballot;
        self.advance_recovery(out);
        out.cancel_timer(Timer::Election);
        self.send_heartbeats(out);
        let t = &self.config.timing;
        out.set_timer(Timer::Heartbeat, t.heartbeat_ms, t.heartbeat_ms);
        out.set_timer(Timer::Retransmit, t.retransmit_ms, t.retransmit_ms);
        out.set_timer(Timer::CheckQuorum, t.election_max_ms, t.election_max_ms);
    }

    /// Every slot up to `slot` is known chosen (a leader's heartbeat says so, or an
    /// acceptor's compaction mark: it forgot them because every configured learner
    /// applied them).
    fn learn_chosen_up_to(&mut self, slot: u64) {
        if slot > self.chosen {
            self.chosen = slot;
            self.chosen_above = self.chosen_above.split_off(&slot.saturating_add(1));
            self.mark_chosen(slot);
        }
    }

    /// Once a majority answered the current recovery page, re-propose the slots they all
    /// cover and move the recovery past them.
    fn advance_recovery(&mut self, out: &mut Outbox) {
        let quorum = self.config.quorum();
        let Phase::Leader(l) = &mut self.phase else { return };
        let Some(r) = &mut l.recovery else { return };
        if r.from > r.to {
            l.recovery = None;
            return;
        }
        if r.answers.len() < quorum {
            return;
        }
        // A slot is read once a majority's pages cover it: up to the quorum-th furthest end,
        // and at most MAX_RECOVERY_SLOTS a round (a huge `last` from a faulty peer must not
        // make one step walk billions of slots).
        let mut ends: Vec<u64> = r.answers.values().map(|p| p.end).collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let covered = ends[quorum - 1].min(r.to).min(r.from.saturating_add(MAX_RECOVERY_SLOTS - 1));
        // Slots at or below any answer's compaction mark are chosen and applied by every
        // learner: never re-proposed. That acceptor's silence about them is no evidence,
        // so the others' answers alone are not a majority for them, and a stale value
        // among those must not be taken for the chosen one.
        let marked = r.answers.values().map(|p| p.compacted).max().unwrap_or(0);
        let (from, fill_holes) = (r.from, r.fill_holes);
        let mut merged: BTreeMap<u64, (Ballot, Value)> = BTreeMap::new();
        if covered >= from {
            for AcceptedEntry { slot, ballot: b, value } in
                std::mem::take(&mut r.answers).into_values().flat_map(|p| p.entries)
            {
                if slot < from || slot > covered {
                    continue;
                }
                match merged.get(&slot) {
                    Some((seen, _)) if *seen >= b => {}
                    _ => {
                        merged.insert(slot, (b, value));
                    }
                }
            }
            r.from = covered.saturating_add(1);
        }
        r.answers.clear();
        r.asked = false;
        if r.from > r.to || covered == u64::MAX {
            l.recovery = None;
        }
        if covered < from {
            return;
        }
        self.learn_chosen_up_to(marked);
        for slot in from.max(marked.saturating_add(1))..=covered {
            let value = match merged.remove(&slot) {
                Some((_, v)) => v,
                // Never a no-op for a slot known chosen: its value exists, even if the
                // acceptors that answered hold none of it (compacted, or never had it).
                None if fill_holes && slot > self.chosen => Value::default(),
                None => continue,
            };
            self.propose(slot, value, true, out);
        }
    }

    fn propose(&mut self, slot: u64, value: Value, recovered: bool, out: &mut Outbox) {
        let Phase::Leader(l) = &mut self.phase else { return };
        if recovered && l.inflight.contains_key(&slot) {
            return;
        }
        for &a in &self.config.acceptors {
            out.send(a, Message::Accept { ballot: l.ballot, slot, value: value.clone() });
        }
        l.inflight.insert(
            slot,
            InFlight { value, accepted: BTreeSet::new(), proposed_at: self.tick, clients_told: false, recovered },
        );
    }

    /// A learner asked the leader to catch up. Asking twice from the same slot below
    /// `chosen` means the acceptors' answers do not settle that slot (no majority holds
    /// one ballot for it, or the acceptors that did are down): run phase 1 and 2 for a page
    /// of those slots at our ballot, so the learners learn them by the usual majority rule.
    ///
    /// Why this is safe, even for a slot this leader proposed itself at this ballot: the
    /// slot is chosen, and the answers are given after it was chosen, so the highest
    /// ballot a majority reports is at least the ballot it was chosen at, and every value
    /// accepted at such a ballot is the chosen one (Paxos P2c). So the value proposed is
    /// the chosen value, the same this leader proposed if it did. A slot no answer holds is
    /// left alone, never filled with a no-op.
    fn on_learner_stuck(&mut self, learner: NodeId, applied: u64) {
        let page = self.config.timing.catch_up_batch.max(1) as u64;
        let chosen = self.chosen;
        if !self.config.timing.rules.reopen_stuck {
            return;
        }
        // Bounded: only configured learners, or a few that joined.
        if !self.config.learners.contains(&learner) && self.learner_asks.len() >= 64 {
            return;
        }
        let before = self.learner_asks.insert(learner, applied);
        let Phase::Leader(l) = &mut self.phase else { return };
        if before != Some(applied) || l.recovery.is_some() {
            return;
        }
        let to = chosen.min(applied.saturating_add(page));
        if applied < to {
            l.recovery = Some(Recovery {
                req: 0,
                from: applied + 1,
                to,
                fill_holes: false,
                answers: BTreeMap::new(),
                asked: false,
            });
        }
    }

    /// To the other proposers and the learners ("I lead"), and to the acceptors, whose
    /// answers are the leader's check-quorum and whose leases keep it leading.
    fn send_heartbeats(&self, out: &mut Outbox) {
        let ballot = self.ballot();
        let others = self.config.proposers.iter().filter(|&&p| p != self.id);
        for &to in others.chain(&self.config.learners).chain(&self.config.acceptors) {
            out.send(to, Message::Heartbeat { ballot, chosen: self.chosen });
        }
    }

    fn mark_chosen(&mut self, slot: u64) {
        if slot > self.chosen {
            self.chosen_above.insert(slot);
        }
        while self.chosen < u64::MAX && self.chosen_above.remove(&(self.chosen + 1)) {
            self.chosen += 1;
        }
    }

    /// Commands of slots this proposer will no longer drive go back to the queue, so they
    /// reach the next leader without waiting for the client's retry. If one was chosen
    /// after all, the state machine answers its second copy with the first outcome.
    fn requeue_inflight(&mut self) {
        if let Phase::Leader(l) = &mut self.phase {
            // Older commands first: they go before what was queued after them. Values read
            // back from the acceptors stay there for the next leader to find.
            let mut older: VecDeque<Command> = std::mem::take(&mut l.inflight)
                .into_values()
                .filter(|f| !f.recovered)
                .flat_map(|f| f.value.iter().cloned().collect::<Vec<_>>())
                .collect();
            older.append(&mut self.queue);
            self.queue = older;
        }
    }

    fn step_down(&mut self, out: &mut Outbox) {
        if !matches!(self.phase, Phase::Follower) {
            self.requeue_inflight();
            self.phase = Phase::Follower;
            out.cancel_timer(Timer::Heartbeat);
            out.cancel_timer(Timer::Retransmit);
            out.cancel_timer(Timer::CheckQuorum);
        }
        self.election_timer(out);
    }

    fn enqueue(&mut self, cmds: Vec<Command>, out: &mut Outbox) {
        for cmd in cmds {
            let size = cmd.size();
            if size > MAX_COMMAND_BYTES {
                // Never proposed: no slot could carry it within the frame limit. Final.
                let request_id = cmd.request_id().to_string();
                out.send(
                    cmd.client(),
                    Message::Replies(vec![Reply::TooLarge { request_id, size, limit: MAX_COMMAND_BYTES }]),
                );
            } else if self.queue.len() >= self.config.timing.queue_limit {
                // Full: refuse now rather than grow without bound; the client may retry.
                let request_id = cmd.request_id().to_string();
                out.send(cmd.client(), Message::Replies(vec![Reply::NotConfirmed { request_id }]));
            } else {
                self.queue.push_back(cmd);
            }
        }
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, chosen: u64, out: &mut Outbox) {
        // A candidate defers to any leader at least as new as the last one it followed,
        // even below its own ballot: that leader got a majority's promise, while the
        // candidate may be running elections it cannot win (cut off from the acceptors),
        // and meanwhile it would hold its clients' requests instead of forwarding them. A
        // leader that is in fact stale is refused by the acceptors and steps down.
        let floor = if matches!(self.phase, Phase::Candidate { .. }) { self.leader_ballot } else { self.ballot() };
        if ballot < self.leader_ballot || ballot < floor || from != ballot.leader() {
            return; // stale leader: it will be refused by the acceptors
        }
        self.round = self.round.max(ballot.round);
        self.leader_ballot = ballot;
        self.leader = Some(from);
        self.learn_chosen_up_to(chosen);
        self.step_down(out);
    }
}

/// Most slots one recovery round re-proposes.
const MAX_RECOVERY_SLOTS: u64 = 1024;

/// How many commands from the front of `queue` make one batch: at most `max` commands
/// and about [`PAGE_BYTES`] (at least one), so a slot's value, and the `Accept` that
/// carries it, stays far below the frame limit whatever the queue holds.
fn take_batch(queue: &VecDeque<Command>, max: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for cmd in queue.iter().take(max) {
        bytes += cmd.size();
        if n > 0 && bytes > PAGE_BYTES {
            break;
        }
        n += 1;
    }
    n
}

impl Actor for Proposer {
    fn id(&self) -> NodeId {
        self.id
    }

    fn start(&mut self, out: &mut Outbox) {
        self.election_timer(out);
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outbox) {
        match msg {
            Message::Request(cmds) => match (&self.phase, from.role) {
                (Phase::Follower, Role::Client) => match self.leader.filter(|&l| l != self.id) {
                    Some(leader) => out.send(leader, Message::Request(cmds)),
                    None => self.enqueue(cmds, out),
                },
                // Forwarded once already, to a proposer that no longer leads: drop it
                // rather than forward again. Two proposers that each think the other
                // leads would otherwise bounce it between them forever; the client's
                // retry (same request id) finds the real leader.
                (Phase::Follower, _) => {}
                _ => self.enqueue(cmds, out),
            },
            Message::Heartbeat { ballot, chosen } if from.role == Role::Proposer => {
                self.on_heartbeat(from, ballot, chosen, out);
            }
            Message::Promise { ballot, req, from_slot, end, last, compacted, accepted }
                if self.config.acceptors.contains(&from) =>
            {
                let quorum = self.config.quorum();
                match &mut self.phase {
                    Phase::Candidate { ballot: mine, req: asked, from_slot: first, promises, .. }
                        if *mine == ballot && *asked == req && *first == from_slot =>
                    {
                        promises.insert(from, Promised { last, page: Page { end, compacted, entries: accepted } });
                        if promises.len() >= quorum {
                            let Phase::Candidate { ballot, req, from_slot, promises, .. } =
                                std::mem::replace(&mut self.phase, Phase::Follower)
                            else {
                                unreachable!()
                            };
                            self.become_leader(ballot, req, from_slot, promises, out);
                        }
                    }
                    Phase::Leader(l) if l.ballot == ballot => {
                        l.heard.insert(from);
                        // Only an answer to this very round: one given to an older round
                        // may predate what the round relies on (a slot being chosen).
                        let take = l.recovery.as_ref().is_some_and(|r| r.asked && r.req == req && r.from == from_slot);
                        // Any acceptor's compaction mark is a fact about chosen slots: the
                        // slots below it are never filled with a no-op (an acceptor of this
                        // page's majority may have forgotten a slot the others never had).
                        self.learn_chosen_up_to(compacted);
                        if take {
                            if let Phase::Leader(l) = &mut self.phase {
                                if let Some(r) = &mut l.recovery {
                                    r.answers.insert(from, Page { end, compacted, entries: accepted });
                                }
                            }
                            self.advance_recovery(out);
                        }
                    }
                    _ => {}
                }
            }
            Message::Accepted { ballot, slots } if self.config.acceptors.contains(&from) => {
                let quorum = self.config.quorum();
                let Phase::Leader(l) = &mut self.phase else { return };
                if l.ballot != ballot {
                    return;
                }
                // Also the answer to a heartbeat (no slots): the acceptor hears us.
                l.heard.insert(from);
                let mut done = Vec::new();
                for slot in slots {
                    if let Some(f) = l.inflight.get_mut(&slot) {
                        f.accepted.insert(from);
                        if f.accepted.len() >= quorum {
                            l.inflight.remove(&slot);
                            done.push(slot);
                        }
                    }
                }
                for slot in done {
                    self.mark_chosen(slot);
                }
            }
            Message::Nack { ballot, promised } if self.config.acceptors.contains(&from) => {
                self.round = self.round.max(promised.round);
                if ballot != self.ballot() || matches!(self.phase, Phase::Follower) {
                    return;
                }
                if promised > ballot {
                    // Whoever holds `promised` has not led yet as far as we know: no leader.
                    self.leader = None;
                    self.step_down(out);
                    return;
                }
                // Refused below our ballot: the acceptor still hears the leader of
                // `promised` (its lease). Once too many refuse for a majority to be left,
                // follow that leader instead of running again and again.
                let n = self.config.acceptors.len();
                let quorum = self.config.quorum();
                if let Phase::Candidate { refused, .. } = &mut self.phase {
                    refused.insert(from, promised);
                    if refused.len() > n - quorum {
                        let best = refused.values().copied().max().unwrap_or(promised).max(self.leader_ballot);
                        self.step_down(out);
                        if best.proposer != 0 {
                            self.leader = Some(best.leader());
                        }
                        self.leader_ballot = best;
                    }
                }
            }
            Message::CatchUp { applied } if from.role == Role::Learner => {
                self.on_learner_stuck(from, applied);
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Outbox) {
        let t = self.config.timing.clone();
        match timer {
            Timer::Election if !self.is_leader() => self.start_election(out),
            Timer::Heartbeat if self.is_leader() => {
                self.send_heartbeats(out);
                out.set_timer(Timer::Heartbeat, t.heartbeat_ms, t.heartbeat_ms);
            }
            Timer::CheckQuorum => {
                let Phase::Leader(l) = &mut self.phase else { return };
                if l.heard.len() < self.config.quorum() && self.config.timing.rules.check_quorum {
                    // Check-quorum: a majority of acceptors did not answer within an
                    // election timeout. Stop leading (and heart-beating), so the other
                    // proposers stop deferring to us and elect one that reaches them.
                    self.leader = None;
                    self.step_down(out);
                } else {
                    l.heard.clear();
                    out.set_timer(Timer::CheckQuorum, t.election_max_ms, t.election_max_ms);
                }
            }
            Timer::Retransmit => {
                let Phase::Leader(l) = &mut self.phase else { return };
                self.tick += 1;
                let mut not_confirmed: BTreeMap<NodeId, Vec<Reply>> = BTreeMap::new();
                for (&slot, f) in l.inflight.iter_mut() {
                    // Back off: resend 1, 2, 4 and 8 ticks after proposing, then every 8.
                    // Resending a window of megabyte batches every tick to acceptors that
                    // are merely slow floods their queues (a zmq run of large_log.rhai).
                    let age = self.tick - f.proposed_at;
                    if (age <= 8 && age.is_power_of_two()) || (age > 8 && age.is_multiple_of(8)) {
                        for &a in self.config.acceptors.iter().filter(|a| !f.accepted.contains(a)) {
                            out.send(a, Message::Accept { ballot: l.ballot, slot, value: f.value.clone() });
                        }
                    }
                    if !f.clients_told && self.tick - f.proposed_at >= t.no_quorum_ticks {
                        f.clients_told = true;
                        for cmd in f.value.iter() {
                            let request_id = cmd.request_id().to_string();
                            not_confirmed.entry(cmd.client()).or_default().push(Reply::NotConfirmed { request_id });
                        }
                    }
                }
                if let Some(r) = &l.recovery {
                    if r.asked {
                        for &a in self.config.acceptors.iter().filter(|a| !r.answers.contains_key(a)) {
                            out.send(
                                a,
                                Message::Prepare { ballot: l.ballot, req: r.req, from_slot: r.from, to_slot: r.to },
                            );
                        }
                    }
                }
                for (client, replies) in not_confirmed {
                    out.send(client, Message::Replies(replies));
                }
                out.set_timer(Timer::Retransmit, t.retransmit_ms, t.retransmit_ms);
            }
            _ => {}
        }
    }

    fn flush(&mut self, out: &mut Outbox) {
        let t = &self.config.timing;
        let (window, max_batch) = (t.window, t.max_batch);
        match &mut self.phase {
            Phase::Leader(l) => {
                // The next recovery page, once the window has room: a long log is re-proposed
                // a page at a time, never all at once.
                if let Some(r) = &mut l.recovery {
                    if !r.asked && l.inflight.len() < window {
                        r.asked = true;
                        self.req += 1;
                        r.req = self.req;
                        for &a in &self.config.acceptors {
                            out.send(
                                a,
                                Message::Prepare { ballot: l.ballot, req: r.req, from_slot: r.from, to_slot: r.to },
                            );
                        }
                    }
                }
                loop {
                    let Phase::Leader(l) = &mut self.phase else { unreachable!() };
                    if l.inflight.len() >= window || self.queue.is_empty() {
                        break;
                    }
                    let slot = l.next_slot;
                    l.next_slot = l.next_slot.saturating_add(1);
                    let n = take_batch(&self.queue, max_batch);
                    let value: Value = Arc::new(self.queue.drain(..n).collect());
                    self.propose(slot, value, false, out);
                }
            }
            Phase::Follower => {
                if let Some(leader) = self.leader.filter(|&l| l != self.id) {
                    while !self.queue.is_empty() {
                        let n = take_batch(&self.queue, usize::MAX);
                        out.send(leader, Message::Request(self.queue.drain(..n).collect()));
                    }
                }
            }
            Phase::Candidate { .. } => {}
        }
    }

    fn status(&self) -> Status {
        Status {
            id: Some(self.id),
            ballot: Some(self.ballot()),
            leader: self.leader,
            chosen: Some(self.chosen),
            elections: Some(self.elections),
            ..Status::default()
        }
    }
}
