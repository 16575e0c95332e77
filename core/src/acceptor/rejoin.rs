//! An acceptor that lost its state, on its way back to voting.
//!
//! Forgetting is unsafe twice over (ARCHITECTURE.md, "Rejoining after lost state"):
//! - a forgotten **promise**: it may have promised a ballot `b2` whose proposer then
//!   counts that promise; accepting any lower ballot afterwards breaks Paxos. So it must
//!   vote only at ballots above every ballot that existed when it lost its state. Only
//!   the proposers know those (each persists its round before it sends a `Prepare`), so
//!   it asks every configured proposer, and waits for all of them: the **fence** is
//!   `(highest round + 1, 0)`, a ballot no proposer owns.
//! - a forgotten **accepted value**: it may have been the one member of a later phase-1
//!   quorum that held a chosen value (chosen by {A, Y}; prepared later by {A, X}). So
//!   first a majority of the *other* acceptors promise the fence (no ballot below it gets
//!   a new accept from them), and report the highest slot they hold: every slot it could
//!   have helped choose is at most that **horizon** (a quorum that chose it shares a
//!   member with any majority without it, who accepted before promising). Then it waits
//!   until a majority of the others hold every slot up to the horizon compacted or
//!   accepted at a ballot of at least the fence. A value accepted at such a ballot was
//!   picked by a phase 1 without it (it answers no `Prepare` while rejoining), so any
//!   phase-1 quorum it joins later meets a member that reports the right value.
//!
//! The leader re-proposes those slots at its own ballot, which is above the fence once
//! the fence's promises turn its accepts away; slots it already knew chosen are covered
//! when every configured learner applied them (the others compact them on the
//! rejoiner's asking). Until then the acceptor is as good as down, which the cluster
//! tolerates like any minority failure.

use crate::config::Config;
use crate::ids::{Ballot, NodeId};
use crate::msg::Message;
use std::collections::BTreeMap;

/// The rejoin under way: what the others answered so far.
#[derive(Debug, Default)]
pub(crate) struct Rejoin {
    /// Round reported by each proposer (all are needed) and acceptor.
    rounds: BTreeMap<NodeId, u64>,
    /// The ballot the others are asked to promise, once every proposer answered.
    fence: Option<Ballot>,
    /// Each other acceptor's highest slot held, reported after promising the fence.
    tops: BTreeMap<NodeId, u64>,
    /// The last slot this acceptor may have voted in, once a majority reported.
    horizon: Option<u64>,
    /// How far each other acceptor holds every slot at the fence or above.
    covered: BTreeMap<NodeId, u64>,
}

impl Rejoin {
    /// The questions for this lease period.
    pub(crate) fn asks(&self, config: &Config, me: NodeId) -> Vec<(NodeId, Message)> {
        let others = config.acceptors.iter().copied().filter(|&a| a != me);
        match self.fence {
            None => {
                let msg = Message::Rejoin { fence: Ballot::ZERO, horizon: 0 };
                config.proposers.iter().copied().chain(others).map(|to| (to, msg.clone())).collect()
            }
            Some(fence) => {
                let msg = Message::Rejoin { fence, horizon: self.horizon.unwrap_or(0) };
                others.map(|to| (to, msg.clone())).collect()
            }
        }
    }

    /// The fence, once chosen.
    pub(crate) fn fence(&self) -> Option<Ballot> {
        self.fence
    }

    /// Take an answer in. Returns the fence once this acceptor may vote again: every
    /// slot up to the horizon is held at the fence or above by a majority of the others.
    pub(crate) fn on_info(&mut self, config: &Config, from: NodeId, info: (Ballot, u64, u64, u64)) -> Option<Ballot> {
        let (fence, round, top, covered) = info;
        let acceptor = config.acceptors.contains(&from);
        match (self.fence, self.horizon) {
            (None, _) => {
                if fence == Ballot::ZERO {
                    self.rounds.insert(from, round);
                }
                if config.proposers.iter().all(|p| self.rounds.contains_key(p)) {
                    let top_round = self.rounds.values().copied().max().unwrap_or(0);
                    self.fence = Some(Ballot::new(top_round.saturating_add(1), 0));
                }
                None
            }
            (Some(f), None) => {
                if fence == f && acceptor {
                    self.tops.insert(from, top);
                }
                if self.tops.len() >= config.quorum() {
                    let horizon = self.tops.values().copied().max().unwrap_or(0);
                    self.horizon = Some(horizon);
                    if horizon == 0 {
                        return Some(f);
                    }
                }
                None
            }
            (Some(f), Some(horizon)) => {
                if fence == f && acceptor {
                    let c = self.covered.entry(from).or_insert(0);
                    *c = (*c).max(covered);
                }
                let done = self.covered.values().filter(|&&c| c >= horizon).count();
                (done >= config.quorum()).then_some(f)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(2, 3, 1, vec!["ada".into()])
    }

    #[test]
    fn the_fence_waits_for_every_proposer_and_goes_above_their_rounds() {
        let c = config();
        let mut r = Rejoin::default();
        assert_eq!(r.asks(&c, NodeId::acceptor(1)).len(), 4, "2 proposers, 2 other acceptors");
        r.on_info(&c, NodeId::proposer(1), (Ballot::ZERO, 7, 0, 0));
        r.on_info(&c, NodeId::acceptor(2), (Ballot::ZERO, 3, 0, 0));
        assert_eq!(r.fence(), None, "proposer-2 may hold a higher round");
        r.on_info(&c, NodeId::proposer(2), (Ballot::ZERO, 5, 0, 0));
        assert_eq!(r.fence(), Some(Ballot::new(8, 0)));
    }

    #[test]
    fn it_votes_again_once_a_majority_of_the_others_cover_the_horizon() {
        let c = config();
        let mut r = Rejoin::default();
        for p in [NodeId::proposer(1), NodeId::proposer(2)] {
            r.on_info(&c, p, (Ballot::ZERO, 1, 0, 0));
        }
        let f = r.fence().unwrap();
        assert_eq!(r.on_info(&c, NodeId::acceptor(2), (f, 2, 9, 0)), None);
        // An answer to an older fence does not count.
        assert_eq!(r.on_info(&c, NodeId::acceptor(3), (Ballot::new(1, 0), 2, 40, 0)), None);
        assert_eq!(r.on_info(&c, NodeId::acceptor(3), (f, 2, 12, 0)), None);
        assert_eq!(r.horizon, Some(12));
        assert_eq!(r.on_info(&c, NodeId::acceptor(2), (f, 2, 12, 12)), None, "one of two is not a majority");
        assert_eq!(r.on_info(&c, NodeId::acceptor(3), (f, 2, 12, 11)), None);
        assert_eq!(r.on_info(&c, NodeId::acceptor(3), (f, 2, 12, 12)), Some(f));
    }
}
