//! Names of nodes and ballots.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a node does in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Elects a leader and proposes client commands into slots.
    Proposer,
    /// Promises and accepts ballots; a majority of them chooses a slot's value.
    Acceptor,
    /// Learns chosen slots and applies them to the ballot box.
    Learner,
    /// Something outside the cluster that casts votes and reads results.
    Client,
}

impl Role {
    /// The role's name as it appears in node names: `proposer`, `acceptor`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Proposer => "proposer",
            Role::Acceptor => "acceptor",
            Role::Learner => "learner",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's identity: its role and a 1-based index, printed as `proposer-1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// What the node does.
    pub role: Role,
    /// Its number within its role, counted from 1 (a name with index 0 does not parse).
    pub index: u16,
}

impl NodeId {
    /// The node `index` of `role`.
    pub const fn new(role: Role, index: u16) -> Self {
        NodeId { role, index }
    }
    /// `proposer-{index}`.
    pub const fn proposer(index: u16) -> Self {
        Self::new(Role::Proposer, index)
    }
    /// `acceptor-{index}`.
    pub const fn acceptor(index: u16) -> Self {
        Self::new(Role::Acceptor, index)
    }
    /// `learner-{index}`.
    pub const fn learner(index: u16) -> Self {
        Self::new(Role::Learner, index)
    }
    /// `client-{index}`.
    pub const fn client(index: u16) -> Self {
        Self::new(Role::Client, index)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.role, self.index)
    }
}

/// The text was not a node name such as `acceptor-2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a node name: use role-index, e.g. proposer-1, acceptor-2, learner-1")]
pub struct BadNodeName(
    /// The text that was given.
    pub String,
);

impl FromStr for NodeId {
    type Err = BadNodeName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNodeName(s.to_string());
        let (role, index) = s.rsplit_once('-').ok_or_else(bad)?;
        let role = match role {
            "proposer" => Role::Proposer,
            "acceptor" => Role::Acceptor,
            "learner" => Role::Learner,
            "client" => Role::Client,
            _ => return Err(bad()),
        };
        let index: u16 = index.parse().map_err(|_| bad())?;
        if index == 0 {
            return Err(bad());
        }
        Ok(NodeId { role, index })
    }
}

/// A Paxos ballot: `(round, proposer)`, ordered by round, then by proposer index, so two
/// proposers never share one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The election round; a proposer's rounds start at 1 and only grow.
    pub round: u64,
    /// The index of the proposer that owns the ballot (0 in [`Ballot::ZERO`], which no
    /// proposer owns).
    pub proposer: u16,
}

impl Ballot {
    /// Lower than every ballot a proposer uses (rounds start at 1).
    pub const ZERO: Ballot = Ballot { round: 0, proposer: 0 };

    /// The ballot of `proposer-{proposer}` in `round`.
    pub const fn new(round: u64, proposer: u16) -> Self {
        Ballot { round, proposer }
    }

    /// The proposer that owns this ballot.
    pub fn leader(self) -> NodeId {
        NodeId::proposer(self.proposer)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.proposer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_proposer() {
        assert!(Ballot::new(1, 3) < Ballot::new(2, 1));
        assert!(Ballot::new(2, 1) < Ballot::new(2, 2));
        assert!(Ballot::ZERO < Ballot::new(1, 1));
    }

    #[test]
    fn node_names_round_trip() {
        for id in [NodeId::proposer(1), NodeId::acceptor(12), NodeId::learner(2), NodeId::client(7)] {
            assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
        }
        for bad in ["", "proposer", "proposer-0", "proposer-x", "voter-1", "acceptor-99999999"] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad} parsed");
        }
    }
}
