//! Phase 1 as the leader runs it: the promises that make a candidate leader, the paged
//! read-back of the acceptors' logs, and the re-opening of slots a learner is stuck at.

use super::{Leading, Phase, Proposer};
use crate::command::Value;
use crate::effect::{Outbox, Timer};
use crate::ids::{Ballot, NodeId};
use crate::msg::AcceptedEntry;
use std::collections::BTreeMap;

/// One acceptor's promise: the highest slot it accepted, and the first page of its values
/// (with its compaction mark).
#[derive(Debug)]
pub(super) struct Promised {
    pub(super) last: u64,
    pub(super) page: Page,
}

/// A page of one acceptor's accepted values: the slots from the asked start to `end`.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) end: u64,
    /// The acceptor's compaction mark: it holds nothing at or below it, which says
    /// nothing about what was accepted there (see `advance_recovery`).
    pub(super) compacted: u64,
    pub(super) entries: Vec<AcceptedEntry>,
}

/// Phase 1 for the slots `from..=to` at the leader's ballot, one page at a time.
#[derive(Debug)]
pub(super) struct Recovery {
    /// The round's name, echoed by its promises.
    pub(super) req: u64,
    pub(super) from: u64,
    pub(super) to: u64,
    /// Slots no acceptor of the majority reports become no-ops (phase 1 of a new
    /// leadership); when re-opening chosen slots, such a slot is left alone.
    pub(super) fill_holes: bool,
    pub(super) answers: BTreeMap<NodeId, Page>,
    /// A `Prepare` for `from..=to` is out and not yet answered by a majority.
    pub(super) asked: bool,
}

/// Most slots one recovery round re-proposes.
const MAX_RECOVERY_SLOTS: u64 = 1024;

impl Proposer {
    /// A promise for this proposer's ballot: as a candidate, one more toward a majority;
    /// as the leader, an answer to the current recovery page.
    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        req: u64,
        from_slot: u64,
        promised: Promised,
        out: &mut Outbox,
    ) {
        let quorum = self.config.quorum();
        match &mut self.phase {
            Phase::Candidate { ballot: mine, req: asked, from_slot: first, promises, .. }
                if *mine == ballot && *asked == req && *first == from_slot =>
            {
                promises.insert(from, promised);
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
                let page = promised.page;
                l.heard.insert(from);
                // Only an answer to this very round: one given to an older round
                // may predate what the round relies on (a slot being chosen).
                let take = l.recovery.as_ref().is_some_and(|r| r.asked && r.req == req && r.from == from_slot);
                // Any acceptor's compaction mark is a fact about chosen slots: the
                // slots below it are never filled with a no-op (an acceptor of this
                // page's majority may have forgotten a slot the others never had).
                self.learn_chosen_up_to(page.compacted);
                if take {
                    if let Phase::Leader(l) = &mut self.phase {
                        if let Some(r) = &mut l.recovery {
                            r.answers.insert(from, page);
                        }
                    }
                    self.advance_recovery(out);
                }
            }
            _ => {}
        }
    }

    /// A majority promised: lead at `ballot`, read back the slots from `from_slot` up to
    /// the highest any of them accepted, and start heart-beating.
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

    /// Once a majority answered the current recovery page, re-propose the slots they all
    /// cover and move the recovery past them.
    pub(super) fn advance_recovery(&mut self, out: &mut Outbox) {
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
    pub(super) fn on_learner_stuck(&mut self, learner: NodeId, applied: u64) {
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
}
