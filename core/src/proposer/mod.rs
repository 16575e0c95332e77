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

mod queue;
mod recovery;

use self::queue::take_batch;
use self::recovery::{Page, Promised, Recovery};
use crate::actor::{Actor, Status};
use crate::auth::check_sender;
use crate::command::{Command, Reply, Value};
use crate::config::{Config, Timing};
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId};
use crate::msg::Message;
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

/// The proposer role: elects a leader, and as leader turns client commands into slots
/// (see the module documentation for its liveness rules).
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
    /// What this follower forwarded to its leader since the leader's last heartbeat, and
    /// in the period before: if the leader crashes (a crash notice), these go back into
    /// the queue for the next leader, since the dead one may have dropped them unproposed
    /// (a duplicate of one it did propose is answered with its first outcome and counts
    /// nothing). At most `queue_limit` in all.
    forwarded: VecDeque<Command>,
    forwarded_before: VecDeque<Command>,
    tick: u64,
    /// Elections started since this incarnation began (for operators).
    elections: u64,
    /// The applied slot each learner reported in its last `CatchUp`: a learner that asks
    /// twice from the same slot below `chosen` is stuck, and its slots are re-opened.
    learner_asks: BTreeMap<NodeId, u64>,
    /// The last phase 1 round sent (`Prepare.req`).
    req: u64,
    /// Set while rejoining after lost state: the promised round each acceptor reported.
    /// It runs for leader only once a majority answered, above every round they name.
    rejoin: Option<BTreeMap<NodeId, u64>>,
}

impl Proposer {
    /// A proposer resuming from what it persisted (its highest round), as a follower.
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
            forwarded: VecDeque::new(),
            forwarded_before: VecDeque::new(),
            req: 0,
            rejoin: durable.rejoining.then(BTreeMap::new),
        }
    }

    /// Whether it is still rejoining after lost state (it does not run for leader yet).
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    /// Whether this proposer leads now.
    pub fn is_leader(&self) -> bool {
        matches!(self.phase, Phase::Leader { .. })
    }

    /// The leader this proposer believes in (itself when leading).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The ballot it runs or leads with, or, as a follower, the ballot of the leader it
    /// last heard.
    pub fn ballot(&self) -> Ballot {
        match &self.phase {
            Phase::Candidate { ballot, .. } => *ballot,
            Phase::Leader(l) => l.ballot,
            Phase::Follower => self.leader_ballot,
        }
    }

    /// Every slot up to this one is known chosen.
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
        if self.rejoin.is_some() {
            // Lost state: its old rounds are forgotten, and reusing one would give one
            // ballot two values. Every ballot it used with an accept was promised by a
            // majority first, so a majority's promises name a round at least as high.
            for &a in &self.config.acceptors {
                out.send(a, Message::Rejoin { fence: Ballot::ZERO, horizon: 0 });
            }
            self.election_timer(out);
            return;
        }
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

    /// The connection from `peer` closed while in use. If `peer` is the leader this
    /// proposer follows, it most likely crashed: stop forwarding to it (requests wait in
    /// the queue for the next leader) and run after a short wait staggered by rank among
    /// the other proposers (the first at a tenth of a heartbeat, each next one half a
    /// heartbeat later), instead of after a whole election timeout, so a crash costs one
    /// election, not a timeout and a duel. A wrong notice (the leader lives and redialled)
    /// costs one refused round: the acceptors still hear the leader and keep its lease,
    /// and its next heartbeat makes this proposer follow it again.
    fn on_peer_down(&mut self, peer: NodeId, out: &mut Outbox) {
        if !self.config.timing.rules.crash_notice || !matches!(self.phase, Phase::Follower) || self.leader != Some(peer)
        {
            return;
        }
        self.leader = None;
        // What it forwarded lately may have died unproposed with the leader.
        let mut again = std::mem::take(&mut self.forwarded_before);
        again.append(&mut self.forwarded);
        again.append(&mut self.queue);
        self.queue = again;
        let t = &self.config.timing;
        let rank = self.config.proposers.iter().filter(|&&p| p != peer).position(|&p| p == self.id).unwrap_or(0);
        let first = (t.heartbeat_ms / 10).max(1);
        let wait = first + rank as u64 * (t.heartbeat_ms / 2).max(1);
        out.set_timer(Timer::Election, wait, wait + (t.heartbeat_ms / 5).max(1));
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
        if self.leader != Some(from) {
            // Forwarded to another leader: not this one's to lose.
            self.forwarded.clear();
        }
        self.forwarded_before = std::mem::take(&mut self.forwarded);
        self.leader = Some(from);
        self.learn_chosen_up_to(chosen);
        self.step_down(out);
    }
}

impl Proposer {
    /// Acceptors answering our ballot: a slot accepted by a majority is chosen. An empty
    /// answer (to a heartbeat) still counts as hearing the acceptor.
    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, slots: Vec<u64>) {
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

    /// An acceptor refused our ballot, because it promised `promised`.
    fn on_nack(&mut self, from: NodeId, ballot: Ballot, promised: Ballot, out: &mut Outbox) {
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

    /// Check-quorum, each election timeout while leading.
    fn on_check_quorum(&mut self, t: &Timing, out: &mut Outbox) {
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

    /// Each retransmission tick while leading: resend unanswered accepts (backing off),
    /// tell clients of slots stuck past `no_quorum_ticks`, re-ask the recovery page.
    fn on_retransmit(&mut self, t: &Timing, out: &mut Outbox) {
        let Phase::Leader(l) = &mut self.phase else { return };
        self.tick += 1;
        let mut not_confirmed: BTreeMap<NodeId, Vec<Reply>> = BTreeMap::new();
        for (&slot, f) in l.inflight.iter_mut() {
            // Back off: resend 1, 2, 4 and 8 ticks after proposing, then every 8.
            // Resending a window of megabyte batches every tick to acceptors that
            // are merely slow floods their queues.
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
                    out.send(a, Message::Prepare { ballot: l.ballot, req: r.req, from_slot: r.from, to_slot: r.to });
                }
            }
        }
        for (client, replies) in not_confirmed {
            out.send(client, Message::Replies(replies));
        }
        out.set_timer(Timer::Retransmit, t.retransmit_ms, t.retransmit_ms);
    }
}

impl Actor for Proposer {
    fn id(&self) -> NodeId {
        self.id
    }

    fn start(&mut self, out: &mut Outbox) {
        self.election_timer(out);
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Outbox) {
        if let Err(reason) = check_sender(&self.config, self.id, from, &msg) {
            out.refuse(from, msg.kind(), reason);
            return;
        }
        match msg {
            Message::Request(cmds) => self.on_request(from, cmds, out),
            Message::Heartbeat { ballot, chosen } => self.on_heartbeat(from, ballot, chosen, out),
            Message::Promise { ballot, req, from_slot, end, last, compacted, accepted } => {
                let promised = Promised { last, page: Page { end, compacted, entries: accepted } };
                self.on_promise(from, ballot, req, from_slot, promised, out);
            }
            Message::Accepted { ballot, slots } => self.on_accepted(from, ballot, slots),
            Message::Nack { ballot, promised } => self.on_nack(from, ballot, promised, out),
            Message::CatchUp { applied } => self.on_learner_stuck(from, applied),
            Message::PeerDown => self.on_peer_down(from, out),
            Message::Rejoin { fence, .. } if self.rejoin.is_none() => {
                // Its highest round, durable since it used it: a rejoining acceptor's fence
                // goes above every ballot this proposer ever sent.
                out.send(from, Message::RejoinInfo { fence, round: self.round, top: 0, covered: 0 });
            }
            Message::RejoinInfo { round, .. } if self.config.acceptors.contains(&from) => {
                if let Some(rounds) = &mut self.rejoin {
                    rounds.insert(from, round);
                    if rounds.len() >= self.config.quorum() {
                        self.round = self.round.max(rounds.values().copied().max().unwrap_or(0));
                        out.persist(PersistOp::Round(self.round));
                        out.persist(PersistOp::Rejoin(false));
                        self.rejoin = None;
                    }
                }
            }
            // `Hello`: nothing to do (the sender rule refused every other kind).
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
            Timer::CheckQuorum => self.on_check_quorum(&t, out),
            Timer::Retransmit => self.on_retransmit(&t, out),
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
                        let cmds: Vec<Command> = self.queue.drain(..n).collect();
                        self.remember_forwarded(&cmds);
                        out.send(leader, Message::Request(cmds));
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
            rejoining: Some(self.rejoin.is_some()),
            ..Status::default()
        }
    }
}
