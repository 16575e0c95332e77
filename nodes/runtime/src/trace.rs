//! The spans of one node's part in consensus rounds, kept by the node loop when tracing is
//! on (`crate::telemetry::active`). Roles stay pure: this watches what goes in and out of
//! a role and never changes it.
//!
//! | span                | node     | parent                        | attributes                  |
//! |---------------------|----------|-------------------------------|-----------------------------|
//! | `vote` / `read`     | client   | the caller's span             | voter, candidate, request_id, outcome |
//! | `proposer.request`  | proposer | `vote`                        | votes                       |
//! | `proposer.phase1`   | proposer | (a trace of its own)          | ballot, outcome             |
//! | `proposer.phase2`   | leader   | first traced vote of the slot | ballot, slot, votes (batch) |
//! | `acceptor.prepare`  | acceptor | `proposer.phase1`             | ballot, outcome             |
//! | `acceptor.accept`   | acceptor | `proposer.phase2`             | ballot, slot, votes, outcome|
//! | `learner.learn`     | learner  | `acceptor.accept`             | slot, slots                 |
//! | `learner.apply`     | learner  | the `learner.learn` that completed the slot | slot, votes |
//!
//! Every span also has `node` and `role`. Other votes batched into the same slot are
//! links of `proposer.phase2`. Events: `promise`, `accepted`, `nack`, `retransmit`,
//! `election timeout`, `retry`, `reply`. A span received with a message stays open until
//! the node has persisted and sent what the message caused, so it shows the step's fsync.

use ballot_core::{Ballot, Effect, Message, NodeId, Role, Status, Timer};
use ballot_telemetry::{self as telemetry, TARGET};
use ballot_transports::{Envelope, TraceContext};
use std::collections::{BTreeMap, HashMap, VecDeque};
use tracing::field::Empty;
use tracing::Span;

/// Bound on remembered request contexts (votes received, not yet placed in a slot).
const MAX_REQUESTS: usize = 65_536;
/// Bound on slots a learner remembers a trace for before applying them.
const MAX_LEARNED: usize = 65_536;
/// Links from one slot's phase 2 to other votes in its batch.
const MAX_LINKS: usize = 16;

/// A span and its context for envelopes.
#[derive(Clone)]
struct Traced {
    span: Span,
    cx: TraceContext,
}

impl Traced {
    fn new(span: Span) -> Option<Traced> {
        let cx = telemetry::context_of(&span)?;
        Some(Traced { span, cx })
    }
}

pub(crate) struct RoundTracer {
    me: NodeId,
    /// Spans of this step's inputs, closed after the step's sends.
    step: Vec<Span>,
    /// Acceptor, this step: the accept span of each slot; learner: the apply span of
    /// each request id.
    by_slot: HashMap<u64, Traced>,
    by_request: HashMap<String, Traced>,
    /// Acceptor, this step: the last traced prepare or accept from each proposer.
    by_sender: HashMap<NodeId, Traced>,
    /// Proposer: the request span of each vote not yet in a slot.
    requests: HashMap<String, TraceContext>,
    request_order: VecDeque<String>,
    phase1: Option<(Ballot, Traced)>,
    /// Proposer: the ballot of the last election seen, traced or not (sampling decides
    /// once per election).
    election: Option<Ballot>,
    phase2: BTreeMap<u64, Traced>,
    /// Learner: the last learn span of each slot not yet applied.
    learned: BTreeMap<u64, TraceContext>,
}

impl RoundTracer {
    pub(crate) fn new(me: NodeId) -> RoundTracer {
        RoundTracer {
            me,
            step: Vec::new(),
            by_slot: HashMap::new(),
            by_request: HashMap::new(),
            by_sender: HashMap::new(),
            requests: HashMap::new(),
            request_order: VecDeque::new(),
            phase1: None,
            election: None,
            phase2: BTreeMap::new(),
            learned: BTreeMap::new(),
        }
    }

    fn role(&self) -> &'static str {
        self.me.role.as_str()
    }

    /// A message is about to be given to the role.
    pub(crate) fn received(&mut self, env: &Envelope) {
        let (me, role, from) = (self.me, self.role(), env.from);
        let parent = env.trace.as_ref();
        match (&env.msg, me.role) {
            (Message::Request(cmds), Role::Proposer) => {
                let Some(parent) = parent else { return };
                let span = tracing::info_span!(target: TARGET, "proposer.request", node = %me, role, %from, votes = cmds.len());
                if !telemetry::set_parent(&span, parent) {
                    return;
                }
                let Some(t) = Traced::new(span) else { return };
                for c in cmds.iter() {
                    self.remember_request(c.request_id(), t.cx.clone());
                }
                self.step.push(t.span);
            }
            (Message::Prepare { ballot, .. }, Role::Acceptor) => {
                let Some(parent) = parent else { return };
                let span = tracing::info_span!(target: TARGET, "acceptor.prepare", node = %me, role, %from, ballot = %ballot, outcome = Empty);
                telemetry::set_parent(&span, parent);
                if let Some(t) = Traced::new(span) {
                    self.by_sender.insert(from, t);
                }
            }
            (Message::Accept { ballot, slot, value }, Role::Acceptor) => {
                let Some(parent) = parent else { return };
                let span = tracing::info_span!(target: TARGET, "acceptor.accept", node = %me, role, %from, ballot = %ballot, slot, votes = value.len(), outcome = Empty);
                telemetry::set_parent(&span, parent);
                if let Some(mut t) = Traced::new(span) {
                    // A Learn may carry this slot with slots of other votes' traces.
                    t.cx.slot = Some(*slot);
                    self.by_slot.insert(*slot, t.clone());
                    self.by_sender.insert(from, t);
                }
            }
            (Message::Promise { ballot, accepted, .. }, Role::Proposer) => {
                if let Some((b, t)) = &self.phase1 {
                    if b == ballot {
                        tracing::info!(target: TARGET, parent: &t.span, %from, accepted = accepted.len(), "promise");
                    }
                }
            }
            (Message::Accepted { ballot, slots }, Role::Proposer) => {
                for slot in slots {
                    if let Some(t) = self.phase2.get(slot) {
                        tracing::info!(target: TARGET, parent: &t.span, %from, ballot = %ballot, "accepted");
                    }
                }
            }
            (Message::Nack { ballot, promised }, Role::Proposer) => {
                let spans = self.phase1.iter().map(|(_, t)| t).chain(self.phase2.values());
                for t in spans {
                    tracing::warn!(target: TARGET, parent: &t.span, %from, ballot = %ballot, promised = %promised, "nack");
                }
            }
            (Message::Learn { entries }, Role::Learner) => {
                let (Some(parent), Some(first)) = (parent, entries.first()) else { return };
                // The context is about one slot of the message when the sender says which
                // (the others may belong to other traces); otherwise about all of them.
                let only = parent.slot.filter(|s| entries.iter().any(|e| e.slot == *s));
                if parent.slot.is_some() && only.is_none() {
                    return;
                }
                let slot = only.unwrap_or(first.slot);
                let span = tracing::info_span!(target: TARGET, "learner.learn", node = %me, role, %from, slot, slots = entries.len());
                telemetry::set_parent(&span, parent);
                let Some(t) = Traced::new(span) else { return };
                for e in entries.iter().filter(|e| only.is_none() || only == Some(e.slot)) {
                    self.learned.insert(e.slot, t.cx.clone());
                }
                while self.learned.len() > MAX_LEARNED {
                    self.learned.pop_first();
                }
                self.step.push(t.span);
            }
            _ => {}
        }
    }

    fn remember_request(&mut self, id: &str, cx: TraceContext) {
        if self.requests.insert(id.to_string(), cx).is_none() {
            self.request_order.push_back(id.to_string());
        }
        while self.request_order.len() > MAX_REQUESTS {
            if let Some(old) = self.request_order.pop_front() {
                self.requests.remove(&old);
            }
        }
    }

    /// A timer fired.
    pub(crate) fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::Election => {
                if let Some((_, t)) = &self.phase1 {
                    tracing::info!(target: TARGET, parent: &t.span, "election timeout");
                }
            }
            Timer::Retransmit => {
                for t in self.phase2.values() {
                    tracing::info!(target: TARGET, parent: &t.span, "retransmit");
                }
            }
            _ => {}
        }
    }

    /// The step's effects, before any is carried out: open the spans they start.
    pub(crate) fn effects(&mut self, effects: &[Effect]) {
        let (me, role) = (self.me, self.role());
        for e in effects {
            match e {
                Effect::Send { msg: Message::Accept { ballot, slot, value }, .. } if me.role == Role::Proposer => {
                    if self.phase2.contains_key(slot) {
                        continue;
                    }
                    let traced: Vec<TraceContext> =
                        value.iter().filter_map(|c| self.requests.remove(c.request_id())).collect();
                    let Some(parent) = traced.first() else { continue };
                    let span = tracing::info_span!(target: TARGET, "proposer.phase2", node = %me, role, ballot = %ballot, slot, votes = value.len(), outcome = Empty);
                    telemetry::set_parent(&span, parent);
                    for other in traced.iter().skip(1).take(MAX_LINKS) {
                        telemetry::add_link(&span, other);
                    }
                    if let Some(t) = Traced::new(span) {
                        self.phase2.insert(*slot, t);
                    }
                }
                // An election's first Prepares go out in the step that starts it, before the
                // loop sees the new status: its span opens here so they carry its context.
                Effect::Send { msg: Message::Prepare { ballot, .. }, .. } if me.role == Role::Proposer => {
                    self.election_started(Some(*ballot));
                }
                Effect::Decided { slot, value } if me.role == Role::Learner => {
                    let Some(parent) = self.learned.remove(slot) else { continue };
                    let span = tracing::info_span!(target: TARGET, "learner.apply", node = %me, role, slot, votes = value.len());
                    telemetry::set_parent(&span, &parent);
                    let Some(t) = Traced::new(span) else { continue };
                    for c in value.iter() {
                        self.by_request.insert(c.request_id().to_string(), t.clone());
                    }
                    self.step.push(t.span);
                }
                _ => {}
            }
        }
    }

    /// The trace context for a message this node sends, if what caused it is traced.
    pub(crate) fn context_for(&self, to: NodeId, msg: &Message) -> Option<TraceContext> {
        let t = match msg {
            Message::Request(cmds) => return cmds.first().and_then(|c| self.requests.get(c.request_id())).cloned(),
            Message::Prepare { .. } => self.phase1.as_ref().map(|(_, t)| t),
            Message::Accept { slot, .. } => self.phase2.get(slot),
            Message::Promise { .. } => self.outcome(to, "promise"),
            Message::Nack { .. } if self.me.role == Role::Acceptor => self.outcome(to, "nack"),
            Message::Accepted { slots, .. } => {
                // One Accepted may answer several slots, each with its own accept span.
                for t in slots.iter().filter_map(|s| self.by_slot.get(s)) {
                    t.span.record("outcome", "accepted");
                }
                slots.iter().find_map(|s| self.by_slot.get(s))
            }
            // One context per message: the newest slot's, whose vote is the one in flight
            // (older slots in the same Learn are a lagging acceptor's catch-up); it names
            // its slot, so the learner parents only that slot on it.
            Message::Learn { entries } => entries.iter().rev().find_map(|e| self.by_slot.get(&e.slot)),
            Message::Replies(replies) => replies.iter().find_map(|r| self.by_request.get(r.request_id())),
            _ => None,
        };
        t.map(|t| t.cx.clone())
    }

    fn outcome(&self, to: NodeId, outcome: &'static str) -> Option<&Traced> {
        let t = self.by_sender.get(&to)?;
        t.span.record("outcome", outcome);
        if outcome == "nack" {
            tracing::warn!(target: TARGET, parent: &t.span, "nack");
        }
        Some(t)
    }

    /// The step's sends are done: close its input spans; close phase-2 spans of slots now
    /// chosen (proposer status) or abandoned with the leadership.
    pub(crate) fn step_done(&mut self, status: Option<&Status>) {
        self.step.clear();
        self.by_slot.clear();
        self.by_request.clear();
        self.by_sender.clear();
        let Some(s) = status else { return };
        if s.leader != Some(self.me) {
            for (_, t) in std::mem::take(&mut self.phase2) {
                t.span.record("outcome", "leadership lost");
            }
        } else if let Some(chosen) = s.chosen {
            let open = self.phase2.split_off(&chosen.saturating_add(1));
            for (_, t) in std::mem::replace(&mut self.phase2, open) {
                t.span.record("outcome", "chosen");
            }
        }
    }

    /// The proposer started an election with `ballot`: a phase-1 span of its own trace.
    /// Once per ballot: the Prepares of one election (and its pages and resends) and the
    /// status change that reports it are the same election.
    pub(crate) fn election_started(&mut self, ballot: Option<Ballot>) {
        if ballot.is_some() && ballot == self.election {
            return;
        }
        self.election = ballot;
        self.phase1_over("superseded");
        let Some(ballot) = ballot.filter(|_| telemetry::sample_root()) else { return };
        let (me, role) = (self.me, self.role());
        let span = tracing::info_span!(target: TARGET, parent: None, "proposer.phase1", node = %me, role, ballot = %ballot, outcome = Empty);
        if let Some(t) = Traced::new(span) {
            self.phase1 = Some((ballot, t));
        }
    }

    /// The election ended: `outcome` is "leader" or why not.
    pub(crate) fn phase1_over(&mut self, outcome: &'static str) {
        if let Some((_, t)) = self.phase1.take() {
            t.span.record("outcome", outcome);
        }
    }
}
