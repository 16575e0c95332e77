//! The replicated state machine: a ballot box with one vote per voter.

use crate::command::{Command, Reply, RequestId, Tally, VoteError};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Tally, voters and the first outcome of every request, built by applying the log in
/// order. Two learners that applied the same slots hold equal `VotingState`s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VotingState {
    candidates: Vec<String>,
    counts: Vec<u64>,
    voters: HashMap<String, usize>,
    /// First outcome of each vote request: a retry gets this back and changes nothing.
    outcomes: HashMap<RequestId, (u64, Result<(), VoteError>)>,
}

impl VotingState {
    /// An empty ballot box for these candidates, in this order.
    pub fn new(candidates: Vec<String>) -> Self {
        let counts = vec![0; candidates.len()];
        VotingState { candidates, counts, voters: HashMap::new(), outcomes: HashMap::new() }
    }

    /// The candidates, in configured order.
    pub fn candidates(&self) -> &[String] {
        &self.candidates
    }

    /// Count per candidate, zeros included, in configured order.
    pub fn tally(&self) -> Tally {
        self.candidates.iter().cloned().zip(self.counts.iter().copied()).collect()
    }

    /// The candidate `voter` is counted for, if any.
    pub fn vote_of(&self, voter: &str) -> Option<&str> {
        self.voters.get(voter).map(|&i| self.candidates[i].as_str())
    }

    /// An upper bound of this state's encoded size in bytes.
    pub fn size_hint(&self) -> usize {
        64 + self.candidates.iter().map(|c| c.len() + 18).sum::<usize>()
            + self.voters.keys().map(|v| v.len() + 14).sum::<usize>()
            + self.outcomes.keys().map(|r| r.len() + 20).sum::<usize>()
    }

    /// This state cut into parts of about `max_bytes` each (by [`size_hint`](Self::size_hint)),
    /// every part with the candidates and counts and a share of the voters and request
    /// outcomes: [`merge`](Self::merge) of all of them, in any order, gives this state back.
    /// How a large snapshot travels within the frame limit.
    pub fn split(&self, max_bytes: usize) -> Vec<VotingState> {
        let empty = || VotingState {
            candidates: self.candidates.clone(),
            counts: self.counts.clone(),
            voters: HashMap::new(),
            outcomes: HashMap::new(),
        };
        let mut parts = vec![empty()];
        let mut bytes = 0;
        let mut room = |parts: &mut Vec<VotingState>, size: usize| {
            if bytes + size > max_bytes && bytes > 0 {
                parts.push(empty());
                bytes = 0;
            }
            bytes += size;
        };
        // In sorted order, so the split of a state is always the same: parts of two
        // transfers of one snapshot (the same on every learner, by agreement) can mix.
        let mut voters: Vec<(&String, &usize)> = self.voters.iter().collect();
        voters.sort_unstable();
        for (voter, &i) in voters {
            room(&mut parts, voter.len() + 14);
            parts.last_mut().expect("one part").voters.insert(voter.clone(), i);
        }
        let mut outcomes: Vec<_> = self.outcomes.iter().collect();
        outcomes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (request, &outcome) in outcomes {
            room(&mut parts, request.len() + 20);
            parts.last_mut().expect("one part").outcomes.insert(request.clone(), outcome);
        }
        parts
    }

    /// The same candidates and counts with no voters or outcomes: what a snapshot's parts
    /// are merged into.
    pub fn emptied(&self) -> VotingState {
        VotingState {
            candidates: self.candidates.clone(),
            counts: self.counts.clone(),
            voters: HashMap::new(),
            outcomes: HashMap::new(),
        }
    }

    /// Add a part made by [`split`](Self::split) of the same state. False (and nothing
    /// changed) when it cannot be: other candidates or counts, or a voter counted for
    /// another candidate than here.
    pub fn merge(&mut self, part: VotingState) -> bool {
        if part.candidates != self.candidates || part.counts != self.counts {
            return false;
        }
        if part.voters.iter().any(|(v, i)| self.voters.get(v).is_some_and(|j| j != i) || *i >= self.candidates.len()) {
            return false;
        }
        self.voters.extend(part.voters);
        self.outcomes.extend(part.outcomes);
        true
    }

    /// Whether the voters held add up to the counts (a merged snapshot is complete and
    /// consistent only then).
    pub fn consistent(&self) -> bool {
        let mut counts = vec![0u64; self.candidates.len()];
        for &i in self.voters.values() {
            match counts.get_mut(i) {
                Some(c) => *c += 1,
                None => return false,
            }
        }
        counts == self.counts
    }

    /// Number of voters counted.
    pub fn voter_count(&self) -> usize {
        self.voters.len()
    }

    /// Every counted voter and their candidate, sorted by voter.
    pub fn ballots_cast(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.voters.iter().map(|(k, &i)| (k.clone(), self.candidates[i].clone())).collect();
        v.sort();
        v
    }

    /// The first outcome recorded for `request_id`.
    pub fn outcome(&self, request_id: &str) -> Option<(u64, Result<(), VoteError>)> {
        self.outcomes.get(request_id).copied()
    }

    /// Apply one command of `slot`; returns whom to answer and what.
    pub fn apply(&mut self, slot: u64, cmd: &Command) -> (NodeId, Reply) {
        match cmd {
            Command::Vote { request_id, client, voter, candidate } => {
                let (slot, result) = match self.outcomes.get(request_id) {
                    Some(&first) => first,
                    None => {
                        let result = self.cast(voter, candidate);
                        self.outcomes.insert(request_id.clone(), (slot, result));
                        (slot, result)
                    }
                };
                (*client, Reply::Vote { request_id: request_id.clone(), slot, result })
            }
            Command::Read { request_id, client } => {
                (*client, Reply::Read { request_id: request_id.clone(), slot, tally: self.tally() })
            }
        }
    }

    fn cast(&mut self, voter: &str, candidate: &str) -> Result<(), VoteError> {
        let Some(i) = self.candidates.iter().position(|c| c == candidate) else {
            return Err(VoteError::UnknownCandidate);
        };
        if self.voters.contains_key(voter) {
            return Err(VoteError::AlreadyVoted);
        }
        self.voters.insert(voter.to_string(), i);
        self.counts[i] += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(id: &str, voter: &str, candidate: &str) -> Command {
        Command::Vote {
            request_id: id.into(),
            client: NodeId::client(1),
            voter: voter.into(),
            candidate: candidate.into(),
        }
    }

    fn state() -> VotingState {
        VotingState::new(vec!["ada".into(), "grace".into(), "linus".into()])
    }

    fn result(r: Reply) -> (u64, Result<(), VoteError>) {
        match r {
            Reply::Vote { slot, result, .. } => (slot, result),
            other => panic!("not a vote reply: {other:?}"),
        }
    }

    #[test]
    fn outcomes_table() {
        let mut s = state();
        let cases = [
            (1, vote("r1", "v1", "ada"), (1, Ok(()))),
            (2, vote("r2", "v1", "grace"), (2, Err(VoteError::AlreadyVoted))),
            (3, vote("r3", "v2", "bob"), (3, Err(VoteError::UnknownCandidate))),
            // A retry returns the first outcome and its slot, whatever it asks now.
            (4, vote("r1", "v1", "ada"), (1, Ok(()))),
            (5, vote("r3", "v2", "ada"), (3, Err(VoteError::UnknownCandidate))),
            (6, vote("r4", "v2", "linus"), (6, Ok(()))),
        ];
        for (slot, cmd, want) in cases {
            let (to, reply) = s.apply(slot, &cmd);
            assert_eq!(to, NodeId::client(1));
            assert_eq!(result(reply), want, "slot {slot}: {cmd}");
        }
        assert_eq!(s.tally(), vec![("ada".into(), 1), ("grace".into(), 0), ("linus".into(), 1)]);
        assert_eq!(s.voter_count(), 2);
        assert_eq!(s.vote_of("v1"), Some("ada"));
    }

    #[test]
    fn a_split_state_merges_back_whole_in_any_order() {
        let mut s = state();
        for i in 0..5_000 {
            s.apply(
                i,
                &vote(&format!("request-{i}"), &format!("voter-{i}"), ["ada", "grace", "linus"][i as usize % 3]),
            );
        }
        let parts = s.split(16 * 1024);
        assert!(parts.len() > 10, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.size_hint() <= 16 * 1024 + 200), "every part near the asked size");
        let mut back = parts[parts.len() - 1].clone();
        for p in parts.iter().rev().skip(1) {
            assert!(back.merge(p.clone()));
        }
        assert!(back.consistent());
        assert_eq!(back, s);
        // A part of another state is refused; a missing part leaves it inconsistent.
        let mut other = state();
        other.apply(1, &vote("x", "y", "ada"));
        assert!(!back.merge(other.split(1 << 20).remove(0)));
        let mut partial = parts[0].clone();
        partial.merge(parts[1].clone());
        assert!(!partial.consistent());
    }

    #[test]
    fn read_returns_tally_with_zeros() {
        let mut s = state();
        s.apply(1, &vote("a", "x", "grace"));
        let (_, r) = s.apply(2, &Command::Read { request_id: "q".into(), client: NodeId::client(1) });
        assert_eq!(
            r,
            Reply::Read {
                request_id: "q".into(),
                slot: 2,
                tally: vec![("ada".into(), 0), ("grace".into(), 1), ("linus".into(), 0)]
            }
        );
    }
}
