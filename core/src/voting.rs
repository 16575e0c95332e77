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
    pub fn new(candidates: Vec<String>) -> Self {
        let counts = vec![0; candidates.len()];
        VotingState { candidates, counts, voters: HashMap::new(), outcomes: HashMap::new() }
    }

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

    /// Number of voters counted.
    pub fn voter_count(&self) -> usize {
        self.voters.len()
    }

    /// Every counted voter and their candidate, sorted by voter.
    pub fn ballots_cast(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> =
            self.voters.iter().map(|(k, &i)| (k.clone(), self.candidates[i].clone())).collect();
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
        assert_eq!(
            s.tally(),
            vec![("ada".into(), 1), ("grace".into(), 0), ("linus".into(), 1)]
        );
        assert_eq!(s.voter_count(), 2);
        assert_eq!(s.vote_of("v1"), Some("ada"));
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
