//! The proposer: elects a leader, runs phase 1 once per leadership for every open slot,
//! and phase 2 for many slots at once, each slot a batch of client commands.

use crate::actor::{Actor, Status};
use crate::command::{Command, Reply, Value};
use crate::config::Config;
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId, Role};
use crate::msg::{AcceptedEntry, Message};
use crate::storage::{DurableState, PersistOp};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

#[derive(Debug)]
enum Phase {
    Follower,
    /// Phase 1 under way for every slot from `from_slot` on.
    Candidate { ballot: Ballot, from_slot: u64, promises: BTreeMap<NodeId, Vec<AcceptedEntry>> },
    Leader { ballot: Ballot, next_slot: u64, inflight: BTreeMap<u64, InFlight> },
}

#[derive(Debug)]
struct InFlight {
    value: Value,
    accepted: BTreeSet<NodeId>,
    /// The retransmission tick at which it was proposed.
    proposed_at: u64,
    clients_told: bool,
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
            Phase::Candidate { ballot, .. } | Phase::Leader { ballot, .. } => *ballot,
            Phase::Follower => self.leader_ballot,
        }
    }

    pub fn chosen(&self) -> u64 {
        self.chosen
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
        for &a in &self.config.acceptors {
            out.send(a, Message::Prepare { ballot, from_slot });
        }
        self.requeue_inflight();
        self.phase = Phase::Candidate { ballot, from_slot, promises: BTreeMap::new() };
        self.leader = None;
        self.election_timer(out);
    }

    fn become_leader(&mut self, ballot: Ballot, from_slot: u64, promises: BTreeMap<NodeId, Vec<AcceptedEntry>>, out: &mut Outbox) {
        // For every slot some acceptor reported, the value of the highest ballot may have
        // been chosen: propose it again. Holes become no-ops (empty batches).
        let mut merged: BTreeMap<u64, (Ballot, Value)> = BTreeMap::new();
        for AcceptedEntry { slot, ballot: b, value } in promises.into_values().flatten() {
            match merged.get(&slot) {
                Some((seen, _)) if *seen >= b => {}
                _ => {
                    merged.insert(slot, (b, value));
                }
            }
        }
        let last = merged.keys().next_back().copied().unwrap_or(0).max(from_slot.saturating_sub(1));
        self.phase = Phase::Leader { ballot, next_slot: last.saturating_add(1), inflight: BTreeMap::new() };
        self.leader = Some(self.id);
        self.leader_ballot = ballot;
        for slot in from_slot..=last {
            let value = merged.remove(&slot).map(|(_, v)| v).unwrap_or_default();
            self.propose(slot, value, out);
        }
        out.cancel_timer(Timer::Election);
        self.send_heartbeats(out);
        let t = &self.config.timing;
        out.set_timer(Timer::Heartbeat, t.heartbeat_ms, t.heartbeat_ms);
        out.set_timer(Timer::Retransmit, t.retransmit_ms, t.retransmit_ms);
    }

    fn propose(&mut self, slot: u64, value: Value, out: &mut Outbox) {
        let Phase::Leader { ballot, inflight, .. } = &mut self.phase else { return };
        for &a in &self.config.acceptors {
            out.send(a, Message::Accept { ballot: *ballot, slot, value: value.clone() });
        }
        inflight.insert(
            slot,
            InFlight { value, accepted: BTreeSet::new(), proposed_at: self.tick, clients_told: false },
        );
    }

    fn send_heartbeats(&self, out: &mut Outbox) {
        let ballot = self.ballot();
        let others = self.config.proposers.iter().filter(|&&p| p != self.id);
        for &to in others.chain(&self.config.learners) {
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
        if let Phase::Leader { inflight, .. } = &mut self.phase {
            // Older commands first: they go before what was queued after them.
            let mut older: VecDeque<Command> =
                std::mem::take(inflight).into_values().flat_map(|f| f.value.iter().cloned().collect::<Vec<_>>()).collect();
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
        }
        self.election_timer(out);
    }

    fn enqueue(&mut self, cmds: Vec<Command>, out: &mut Outbox) {
        for cmd in cmds {
            if self.queue.len() >= self.config.timing.queue_limit {
                // Full: refuse now rather than grow without bound; the client may retry.
                let request_id = cmd.request_id().to_string();
                out.send(cmd.client(), Message::Replies(vec![Reply::NotConfirmed { request_id }]));
            } else {
                self.queue.push_back(cmd);
            }
        }
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, chosen: u64, out: &mut Outbox) {
        if ballot < self.leader_ballot || ballot < self.ballot() || from != ballot.leader() {
            return; // stale leader: it will be refused by the acceptors
        }
        self.round = self.round.max(ballot.round);
        self.leader_ballot = ballot;
        self.leader = Some(from);
        if chosen > self.chosen {
            self.chosen = chosen;
            self.chosen_above = self.chosen_above.split_off(&chosen.saturating_add(1));
            self.mark_chosen(chosen);
        }
        self.step_down(out);
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
            Message::Promise { ballot, accepted } if self.config.acceptors.contains(&from) => {
                let quorum = self.config.quorum();
                if let Phase::Candidate { ballot: mine, promises, .. } = &mut self.phase {
                    if *mine == ballot {
                        promises.insert(from, accepted);
                        if promises.len() >= quorum {
                            let Phase::Candidate { ballot, from_slot, promises } =
                                std::mem::replace(&mut self.phase, Phase::Follower)
                            else {
                                unreachable!()
                            };
                            self.become_leader(ballot, from_slot, promises, out);
                        }
                    }
                }
            }
            Message::Accepted { ballot, slots } if self.config.acceptors.contains(&from) => {
                let quorum = self.config.quorum();
                let Phase::Leader { ballot: mine, inflight, .. } = &mut self.phase else { return };
                if *mine != ballot {
                    return;
                }
                let mut done = Vec::new();
                for slot in slots {
                    if let Some(f) = inflight.get_mut(&slot) {
                        f.accepted.insert(from);
                        if f.accepted.len() >= quorum {
                            inflight.remove(&slot);
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
                if ballot == self.ballot() && promised > ballot && !matches!(self.phase, Phase::Follower) {
                    // Whoever holds `promised` has not led yet as far as we know: no leader.
                    self.leader = None;
                    self.step_down(out);
                }
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
            Timer::Retransmit => {
                let Phase::Leader { ballot, inflight, .. } = &mut self.phase else { return };
                self.tick += 1;
                let mut not_confirmed: BTreeMap<NodeId, Vec<Reply>> = BTreeMap::new();
                for (&slot, f) in inflight.iter_mut() {
                    for &a in self.config.acceptors.iter().filter(|a| !f.accepted.contains(a)) {
                        out.send(a, Message::Accept { ballot: *ballot, slot, value: f.value.clone() });
                    }
                    if !f.clients_told && self.tick - f.proposed_at >= t.no_quorum_ticks {
                        f.clients_told = true;
                        for cmd in f.value.iter() {
                            let request_id = cmd.request_id().to_string();
                            not_confirmed.entry(cmd.client()).or_default().push(Reply::NotConfirmed { request_id });
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
        match &self.phase {
            Phase::Leader { .. } => loop {
                let Phase::Leader { next_slot, inflight, .. } = &mut self.phase else { unreachable!() };
                if inflight.len() >= window || self.queue.is_empty() {
                    break;
                }
                let slot = *next_slot;
                *next_slot += 1;
                let n = self.queue.len().min(max_batch);
                let value: Value = Arc::new(self.queue.drain(..n).collect());
                self.propose(slot, value, out);
            },
            Phase::Follower => {
                if let Some(leader) = self.leader.filter(|&l| l != self.id) {
                    if !self.queue.is_empty() {
                        out.send(leader, Message::Request(self.queue.drain(..).collect()));
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
