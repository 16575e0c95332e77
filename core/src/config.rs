//! Cluster membership and protocol timing.

use crate::ids::{NodeId, Role};
use serde::{Deserialize, Serialize};

/// The configured cluster. Quorums are counted over `acceptors` as configured, never
/// over the nodes that happen to be reachable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The proposers, in configured order.
    pub proposers: Vec<NodeId>,
    /// The acceptors; a quorum is a majority of this list.
    pub acceptors: Vec<NodeId>,
    /// The learners, each applying the chosen log to its own ballot box.
    pub learners: Vec<NodeId>,
    /// The candidates a voter may vote for, in the order tallies list them.
    pub candidates: Vec<String>,
    /// Protocol timing and limits.
    pub timing: Timing,
}

/// Protocol timing, in milliseconds of whatever clock the runtime uses (virtual on `mem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// The leader's heartbeat period.
    pub heartbeat_ms: u64,
    /// A follower that hears no heartbeat for a random time in this range runs for leader;
    /// the same range is a candidate's back-off.
    pub election_min_ms: u64,
    /// Upper end of the election timeout range; also the check-quorum period.
    pub election_max_ms: u64,
    /// Period of the leader's retransmission of unanswered accepts (one "tick").
    pub retransmit_ms: u64,
    /// After this many ticks without a majority, a slot's clients are told NotConfirmed.
    pub no_quorum_ticks: u64,
    /// Period of a learner's check for missing slots.
    pub catch_up_ms: u64,
    /// Most commands in one slot.
    pub max_batch: usize,
    /// Most slots the leader keeps in phase 2 at once (pipelining).
    pub window: usize,
    /// Most commands a proposer holds while it waits for a slot or a leader.
    pub queue_limit: usize,
    /// Most slots sent in one catch-up answer; a learner further behind than this gets a
    /// snapshot instead.
    pub catch_up_batch: usize,
    /// A learner compacts its applied log into a snapshot every this many slots.
    pub snapshot_every: usize,
    /// The liveness rules, each on unless a test turns it off to show what it prevents
    /// (the chaos scenarios do, on `mem`): check-quorum, the leader's lease at the
    /// acceptors, and the re-opening of slots a learner is stuck at.
    #[serde(default)]
    pub rules: Rules,
}

/// Switches for the liveness rules (see `Proposer` and `Acceptor`). Never turn one off in
/// a real cluster: without any one of them the cluster can stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// A leader that has not heard from a majority of acceptors within an election
    /// timeout steps down.
    pub check_quorum: bool,
    /// An acceptor that heard a leader within its lease period refuses another
    /// proposer's `Prepare` until the lease runs out.
    pub leader_lease: bool,
    /// The leader re-runs phase 1 and 2 for slots a learner keeps asking for.
    pub reopen_stuck: bool,
    /// A transport's notice that a peer's connection closed while in use
    /// ([`Message::PeerDown`](crate::Message::PeerDown)) makes a follower of that leader
    /// run after a short staggered wait, and an acceptor drop that leader's lease, instead
    /// of both waiting out their timeouts.
    #[serde(default = "on")]
    pub crash_notice: bool,
}

fn on() -> bool {
    true
}

impl Default for Rules {
    fn default() -> Self {
        Rules { check_quorum: true, leader_lease: true, reopen_stuck: true, crash_notice: true }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 50,
            election_min_ms: 150,
            election_max_ms: 300,
            retransmit_ms: 50,
            no_quorum_ticks: 10,
            catch_up_ms: 100,
            max_batch: 4096,
            window: 8,
            queue_limit: 1 << 20,
            catch_up_batch: 256,
            snapshot_every: 4096,
            rules: Rules::default(),
        }
    }
}

impl Config {
    /// A cluster with `p` proposers, `a` acceptors and `l` learners, named `proposer-1`...
    pub fn new(p: u16, a: u16, l: u16, candidates: Vec<String>) -> Self {
        let ids = |role, n: u16| (1..=n).map(|i| NodeId::new(role, i)).collect();
        Config {
            proposers: ids(Role::Proposer, p),
            acceptors: ids(Role::Acceptor, a),
            learners: ids(Role::Learner, l),
            candidates,
            timing: Timing::default(),
        }
    }

    /// Every node of the cluster, proposers first.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.proposers.iter().chain(&self.acceptors).chain(&self.learners).copied()
    }

    /// Whether `id` is a configured node.
    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes().any(|n| n == id)
    }

    /// How many acceptors make a majority of the configured acceptors.
    pub fn quorum(&self) -> usize {
        majority(self.acceptors.len())
    }
}

/// Most learners that are not configured (they joined a running cluster) one acceptor
/// sends `Learn` to, and one learner keeps as peers: what made-up names can cost a node.
pub const MAX_JOINED_LEARNERS: usize = 16;

/// The smallest majority of `n`: 3 -> 2, 4 -> 3, 5 -> 3.
pub const fn majority(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_configured_acceptors() {
        let table = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)];
        for (n, q) in table {
            assert_eq!(majority(n), q, "majority of {n}");
            let c = Config::new(1, n as u16, 1, vec![]);
            assert_eq!(c.quorum(), q);
        }
    }

    #[test]
    fn two_majorities_always_intersect() {
        for n in 1..=9usize {
            let q = majority(n);
            assert!(2 * q > n, "two quorums of {q} out of {n} could be disjoint");
        }
    }
}
