//! The properties every run must keep, one function each, checked against what the
//! learners decided and what clients were told. Each pushes a one-line violation.
//!
//! - agreement: no two learners ever apply different values at one slot (Paxos P2);
//! - validity: every vote in a chosen slot was submitted by a client, as submitted;
//! - durability: every vote acknowledged `ok` is in the decided log, first applied at the
//!   slot the client was told, and counted for its candidate;
//! - no double count: each learner's tally equals an independent replay of the decided
//!   log, in which a voter counts at most once;
//! - convergence: once faults are healed and the cluster is quiet, all live learners hold
//!   the same applied slot and tally.

use ballot_core::{Command, NodeId, Tally, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A vote a client was told succeeded.
#[derive(Clone, Debug)]
pub struct Acked {
    /// The vote's request id.
    pub request_id: String,
    /// Who voted.
    pub voter: String,
    /// For whom.
    pub candidate: String,
    /// The slot the answer named.
    pub slot: u64,
}

/// What the run has seen, gathered as it happens.
#[derive(Default)]
pub struct Recorder {
    /// The first value any learner applied at each slot.
    pub chosen: BTreeMap<u64, (NodeId, Value)>,
    /// request id -> (voter, candidate), for every vote a client submitted. Keyed at
    /// random (ahash, as std's maps are; SipHash was a tenth of a vote's cost in `chaos
    /// bench`); nothing depends on its order.
    pub submitted: HashMap<String, (String, String), ahash::RandomState>,
    /// Every vote a client was told succeeded.
    pub acked: Vec<Acked>,
    /// Violations found while the run went on (agreement and validity are checked at
    /// the moment a learner applies a slot, so none is missed between checks).
    pub violations: Vec<String>,
}

impl Recorder {
    /// A learner applied `value` at `slot`: check agreement, and validity the first time.
    pub fn on_decided(&mut self, node: NodeId, slot: u64, value: &Value) {
        // A value is checked for validity once, when the first learner applies it; any
        // other learner's copy is held to agreement with it.
        if agreement(self, node, slot, value) {
            validity(self, slot, value);
        }
    }
}

/// Returns true when `value` is the first one seen for `slot`.
pub fn agreement(rec: &mut Recorder, node: NodeId, slot: u64, value: &Value) -> bool {
    match rec.chosen.get(&slot) {
        Some((first, v)) => {
            if !Arc::ptr_eq(v, value) && v != value {
                let msg = format!("agreement: slot {slot}: {node} applied a value different from {first}'s");
                rec.violations.push(msg);
            }
            false
        }
        None => {
            rec.chosen.insert(slot, (node, value.clone()));
            true
        }
    }
}

/// Validity: every command chosen was submitted by a client (or is a no-op).
pub fn validity(rec: &mut Recorder, slot: u64, value: &Value) {
    for cmd in value.iter() {
        if let Command::Vote { request_id, voter, candidate, .. } = cmd {
            match rec.submitted.get(request_id) {
                Some((v, c)) if v == voter && c == candidate => {}
                _ => rec.violations.push(format!(
                    "validity: slot {slot} holds vote {request_id} ({voter}->{candidate}) that no client submitted"
                )),
            }
        }
    }
}

/// The decided log replayed by code independent of the learners' state machine.
pub struct Replay {
    /// Tally after each slot, for the slots asked for.
    pub tally_at: BTreeMap<u64, BTreeMap<String, u64>>,
    /// request id -> (slot of first application, counted?)
    pub first: HashMap<String, (u64, bool)>,
    /// voter -> candidate counted.
    pub counted: HashMap<String, String>,
    /// Last slot of the contiguous decided prefix.
    pub last: u64,
}

/// Replay the decided log's contiguous prefix with code of its own (see [`Replay`]).
pub fn replay(rec: &Recorder, candidates: &[String], want: &[u64]) -> Replay {
    let mut tally: BTreeMap<String, u64> = candidates.iter().map(|c| (c.clone(), 0)).collect();
    let want: HashSet<u64> = want.iter().copied().collect();
    let mut r = Replay { tally_at: BTreeMap::new(), first: HashMap::new(), counted: HashMap::new(), last: 0 };
    if want.contains(&0) {
        r.tally_at.insert(0, tally.clone());
    }
    let mut slot = 1;
    while let Some((_, value)) = rec.chosen.get(&slot) {
        for cmd in value.iter() {
            if let Command::Vote { request_id, voter, candidate, .. } = cmd {
                if r.first.contains_key(request_id) {
                    continue;
                }
                let counts = tally.contains_key(candidate) && !r.counted.contains_key(voter);
                if counts {
                    *tally.get_mut(candidate).expect("checked") += 1;
                    r.counted.insert(voter.clone(), candidate.clone());
                }
                r.first.insert(request_id.clone(), (slot, counts));
            }
        }
        if want.contains(&slot) {
            r.tally_at.insert(slot, tally.clone());
        }
        r.last = slot;
        slot += 1;
    }
    r
}

/// Durability: no acknowledged vote is lost: each is in the decided log at the slot its
/// answer named, and counted there.
pub fn durability(rec: &Recorder, replay: &Replay, out: &mut Vec<String>) {
    for a in &rec.acked {
        match replay.first.get(&a.request_id) {
            None => out.push(format!(
                "durability: vote {} ({}->{}) was acknowledged at slot {} but is not in the decided log (decided up to slot {})",
                a.request_id, a.voter, a.candidate, a.slot, replay.last
            )),
            Some(&(slot, counted)) => {
                if slot != a.slot || !counted || replay.counted.get(&a.voter) != Some(&a.candidate) {
                    out.push(format!(
                        "durability: vote {} ({}->{}) was acknowledged at slot {} but the log applies it first at slot {slot} (counted: {counted})",
                        a.request_id, a.voter, a.candidate, a.slot
                    ));
                }
            }
        }
    }
}

/// One learner's view: applied slot and tally.
#[derive(Clone, Debug)]
pub struct LearnerView {
    /// The learner.
    pub node: NodeId,
    /// Its last applied slot.
    pub applied: u64,
    /// Its tally.
    pub tally: Tally,
}

/// No vote counted twice: a learner's tally never counts more votes than voters.
pub fn no_double_count(views: &[LearnerView], replay: &Replay, out: &mut Vec<String>) {
    for v in views {
        let Some(expected) = replay.tally_at.get(&v.applied) else {
            out.push(format!(
                "no double count: {} reports slot {} applied but the decided log only reaches {}",
                v.node, v.applied, replay.last
            ));
            continue;
        };
        let got: BTreeMap<String, u64> = v.tally.iter().cloned().collect();
        if &got != expected {
            out.push(format!(
                "no double count: {} at slot {} holds tally {:?}; replaying the log gives {:?}",
                v.node, v.applied, got, expected
            ));
        }
        let total: u64 = got.values().sum();
        let voters = replay.counted.len() as u64;
        if v.applied == replay.last && total != voters {
            out.push(format!("no double count: {} counts {total} votes from {voters} voters", v.node));
        }
    }
}

/// Convergence: learners at the same applied slot have the same tally.
pub fn convergence(views: &[LearnerView], out: &mut Vec<String>) {
    if let Some(first) = views.first() {
        for v in &views[1..] {
            if v.applied != first.applied || v.tally != first.tally {
                out.push(format!(
                    "convergence: {} holds slot {} {:?} but {} holds slot {} {:?}",
                    first.node, first.applied, first.tally, v.node, v.applied, v.tally
                ));
            }
        }
    }
}
