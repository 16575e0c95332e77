//! The replicated state machine: a ballot box with one vote per voter.
//!
//! It never panics, whatever state it is given (a snapshot from a peer, a file): every
//! index into the candidates or counts is checked, and a state is adopted from a peer only
//! if it is one that applying a log can produce ([`VotingState::adoptable`]).

use crate::command::{Command, Reply, RequestId, Tally, VoteError, MAX_REQUEST_ID_BYTES, MAX_VOTER_BYTES};
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The ballot box's maps: keyed by voter ids and request ids, which come from the network,
/// so the hasher is keyed at random per map (as std's is: no one can make ids collide on
/// purpose), but cheaper per insert than std's SipHash. Nothing may depend on the order of
/// these maps: `split` and `ballots_cast` sort, and equality is by content.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Tally, voters and the first outcome of every request, built by applying the log in
/// order. Two learners that applied the same slots hold equal `VotingState`s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VotingState {
    candidates: Vec<String>,
    counts: Vec<u64>,
    voters: Map<String, usize>,
    /// First outcome of each vote request: a retry gets this back and changes nothing.
    outcomes: Map<RequestId, (u64, Result<(), VoteError>)>,
}

impl VotingState {
    /// An empty ballot box for these candidates, in this order.
    pub fn new(candidates: Vec<String>) -> Self {
        let counts = vec![0; candidates.len()];
        VotingState { candidates, counts, voters: Map::default(), outcomes: Map::default() }
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
        self.voters.get(voter).and_then(|&i| self.candidates.get(i)).map(String::as_str)
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
            voters: Map::default(),
            outcomes: Map::default(),
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
            voters: Map::default(),
            outcomes: Map::default(),
        }
    }

    /// Add a part made by [`split`](Self::split) of the same state. False (and nothing
    /// changed) when it cannot be: other candidates or counts, a voter counted for a
    /// candidate that does not exist or for another one than here, a request with another
    /// outcome than here, or a name over its limit.
    pub fn merge(&mut self, part: VotingState) -> bool {
        if part.candidates != self.candidates || part.counts != self.counts {
            return false;
        }
        let n = self.candidates.len();
        let voters_fit = part
            .voters
            .iter()
            .all(|(v, &i)| i < n && v.len() <= MAX_VOTER_BYTES && !matches!(self.voters.get(v), Some(&j) if j != i));
        let outcomes_fit = part
            .outcomes
            .iter()
            .all(|(r, o)| r.len() <= MAX_REQUEST_ID_BYTES && !matches!(self.outcomes.get(r), Some(seen) if seen != o));
        if !voters_fit || !outcomes_fit {
            return false;
        }
        self.voters.extend(part.voters);
        self.outcomes.extend(part.outcomes);
        true
    }

    /// Whether this state is one that applying a log can produce, as far as it shows: a
    /// count per candidate, every voter counted for a candidate that exists, the counts
    /// exactly the voters' choices, one counted vote request per counted voter (a vote is
    /// counted exactly when its request's first outcome is `Ok`), and every name within
    /// its limit. A merged snapshot missing a part fails it.
    pub fn consistent(&self) -> bool {
        let mut counts = vec![0u64; self.candidates.len()];
        for (voter, &i) in &self.voters {
            match counts.get_mut(i) {
                Some(c) if voter.len() <= MAX_VOTER_BYTES => *c += 1,
                _ => return false,
            }
        }
        let counted = self.outcomes.values().filter(|(_, r)| r.is_ok()).count();
        counts == self.counts
            && counted == self.voters.len()
            && self.outcomes.keys().all(|r| r.len() <= MAX_REQUEST_ID_BYTES)
    }

    /// Whether a learner of a cluster with these `candidates` may take this state as the
    /// ballot box after slot `applied`: it is [`consistent`](Self::consistent), has exactly
    /// the configured candidates in their order, and no outcome is of a slot after
    /// `applied` (or of slot 0, which does not exist).
    pub fn adoptable(&self, candidates: &[String], applied: u64) -> bool {
        self.candidates == candidates
            && self.outcomes.values().all(|&(slot, _)| (1..=applied).contains(&slot))
            && self.consistent()
    }

    /// Number of voters counted.
    pub fn voter_count(&self) -> usize {
        self.voters.len()
    }

    /// Every counted voter and their candidate, sorted by voter.
    pub fn ballots_cast(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> =
            self.voters.iter().filter_map(|(k, &i)| Some((k.clone(), self.candidates.get(i)?.clone()))).collect();
        v.sort();
        v
    }

    /// The first outcome recorded for `request_id`.
    pub fn outcome(&self, request_id: &str) -> Option<(u64, Result<(), VoteError>)> {
        self.outcomes.get(request_id).copied()
    }

    /// Apply one command of `slot`; returns whom to answer and what. A command with a
    /// name over its limit ([`Command::check_lengths`]) changes nothing and is answered
    /// `TooLarge`: proposers refuse such commands, and should one reach the log anyway its
    /// names are never kept. Every learner applies the same rule, so they stay equal.
    pub fn apply(&mut self, slot: u64, cmd: &Command) -> (NodeId, Reply) {
        if let Err(e) = cmd.check_lengths() {
            let request_id = cmd.request_id().to_string();
            return (cmd.client(), Reply::TooLarge { request_id, size: e.len, limit: e.limit });
        }
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
        // A state without a count for this candidate is not one `apply` builds (a
        // snapshot must be `adoptable`); it still gets an answer, never a panic.
        let Some(count) = self.counts.get_mut(i) else {
            return Err(VoteError::UnknownCandidate);
        };
        *count = count.saturating_add(1);
        self.voters.insert(voter.to_string(), i);
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

    /// splitmix64: a small deterministic source for the fuzz test below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        /// A name from a small pool (so names collide), sometimes empty or over every limit.
        fn name(&mut self) -> String {
            match self.below(10) {
                0 => String::new(),
                1 => "x".repeat(MAX_VOTER_BYTES + 1 + self.below(300) as usize),
                _ => ["ada", "grace", "linus", "v1", "v2", "r1", "r2"][self.below(7) as usize].to_string(),
            }
        }
        fn count(&mut self) -> u64 {
            [0, 1, 2, 7, u64::MAX - 1, u64::MAX][self.below(6) as usize]
        }
        fn index(&mut self) -> usize {
            [0, 1, 2, 3, 9, usize::MAX][self.below(6) as usize]
        }
        fn result(&mut self) -> Result<(), VoteError> {
            [Ok(()), Err(VoteError::AlreadyVoted), Err(VoteError::UnknownCandidate)][self.below(3) as usize]
        }
        fn command(&mut self) -> Command {
            if self.below(5) == 0 {
                return Command::Read { request_id: self.name(), client: NodeId::client(1) };
            }
            Command::Vote {
                request_id: self.name(),
                client: NodeId::client(1),
                voter: self.name(),
                candidate: self.name(),
            }
        }
    }

    /// Anything a peer could send: candidates, counts, voters and outcomes that need not
    /// agree with one another at all.
    fn garbage(r: &mut Rng) -> VotingState {
        VotingState {
            candidates: (0..r.below(5)).map(|_| r.name()).collect(),
            counts: (0..r.below(5)).map(|_| r.count()).collect(),
            voters: (0..r.below(8)).map(|_| (r.name(), r.index())).collect(),
            outcomes: (0..r.below(8)).map(|_| (r.name(), (r.count(), r.result()))).collect(),
        }
    }

    /// Every method of the ballot box on `s`, with `other` as a part to merge; checks
    /// what must hold whatever `s` is.
    fn exercise(r: &mut Rng, s: &mut VotingState, other: VotingState) {
        let _ = (s.tally(), s.size_hint(), s.voter_count(), s.ballots_cast(), s.candidates().len());
        for name in ["ada", "v1", "", "r1"] {
            let _ = (s.vote_of(name), s.outcome(name));
        }
        let was_consistent = s.consistent();
        let parts = s.split(1 + r.below(200) as usize);
        let mut back = s.emptied();
        let merged_all = parts.iter().rev().all(|p| back.merge(p.clone()));
        if was_consistent {
            assert!(merged_all && back.consistent() && back == *s, "a consistent state splits and merges back");
        }
        let _ = back.merge(other);
        let _ = (back.consistent(), back.adoptable(&["ada".to_string()], r.next()));
        for slot in 1..=20 {
            let cmd = r.command();
            let (_, reply) = s.apply(slot, &cmd);
            if cmd.check_lengths().is_err() {
                assert!(matches!(reply, Reply::TooLarge { .. }), "{cmd}: {reply:?}");
            }
        }
        if was_consistent {
            assert!(s.consistent(), "applying commands keeps a consistent state consistent");
        }
        let _ = (s.tally(), s.ballots_cast(), s.split(64));
    }

    #[test]
    fn the_ballot_box_never_panics_on_garbage_states_and_commands() {
        let mut r = Rng(11);
        for _ in 0..20_000 {
            let mut s = garbage(&mut r);
            let other = if r.below(2) == 0 { garbage(&mut r) } else { s.clone() };
            exercise(&mut r, &mut s, other);
        }
    }

    #[test]
    fn states_built_by_applying_commands_are_consistent_and_adoptable() {
        let mut r = Rng(12);
        let candidates: Vec<String> = ["ada", "grace", "linus"].map(String::from).to_vec();
        for _ in 0..2_000 {
            let mut s = VotingState::new(candidates.clone());
            let n = r.below(40);
            for slot in 1..=n {
                s.apply(slot, &r.command());
                assert!(s.consistent(), "after slot {slot}");
            }
            assert!(s.adoptable(&candidates, n.max(1)), "{s:?}");
            let other = garbage(&mut r);
            exercise(&mut r, &mut s, other);
        }
    }

    #[test]
    fn inconsistent_states_are_not_adoptable() {
        let candidates: Vec<String> = ["ada", "grace"].map(String::from).to_vec();
        let mut good = VotingState::new(candidates.clone());
        good.apply(1, &vote("r1", "v1", "ada"));
        assert!(good.adoptable(&candidates, 1));
        assert!(!good.adoptable(&candidates, 0), "an outcome of a slot after the snapshot's");
        assert!(!good.adoptable(&candidates[..1], 1), "other candidates");
        let bad = |f: &dyn Fn(&mut VotingState)| {
            let mut s = good.clone();
            f(&mut s);
            assert!(!s.consistent() && !s.adoptable(&candidates, 1), "{s:?}");
        };
        bad(&|s| s.counts = vec![]);
        bad(&|s| s.counts[0] = 1_000_000);
        bad(&|s| s.counts.push(0));
        bad(&|s| *s.voters.get_mut("v1").unwrap() = 7);
        bad(&|s| {
            s.voters.insert("v2".into(), 1);
            s.counts[1] = 1;
        });
        bad(&|s| {
            s.outcomes.insert("r2".into(), (1, Ok(())));
        });
        bad(&|s| {
            let long = "v".repeat(MAX_VOTER_BYTES + 1);
            s.voters.remove("v1");
            s.voters.insert(long, 0);
        });
        // And nothing panics on any of them.
        let mut empty_tally = good.clone();
        empty_tally.counts.clear();
        empty_tally.apply(2, &vote("r2", "v2", "grace"));
        assert_eq!(empty_tally.vote_of("v2"), None);
        let mut broken = good.clone();
        *broken.voters.get_mut("v1").unwrap() = usize::MAX;
        assert_eq!((broken.vote_of("v1"), broken.ballots_cast()), (None, vec![]));
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
