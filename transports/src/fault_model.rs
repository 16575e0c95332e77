//! [`FaultModel`]: the one fault model behind both [`crate::MemNetwork`] and
//! [`crate::FaultHandle`]: which directed links are cut, which faults each link has, and
//! the seeded generator every random choice comes from.
//!
//! Faults are per directed link, as raft-rs's test network and turmoil do: a partition
//! blocks links both ways, a one-way partition blocks one direction, `isolate` cuts a
//! node from everyone. Drop probability, delay range and duplication apply to every link
//! unless a link has its own setting.
//!
//! [`FaultModel::route`] makes the whole decision for one message and draws from the
//! generator in a fixed order (drop, then duplicate, then one delay per copy), so a run
//! with the same seed and the same sends replays exactly.

use ballot_core::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Faults on a link (or, as the default, on every link).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Each delivery is delayed by a time drawn uniformly from this range.
    pub delay: Option<(Duration, Duration)>,
}

/// What becomes of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The link is cut (partition or isolation).
    Cut,
    /// Lost to the link's drop probability.
    DroppedRandom,
    /// Delivered once, or twice when duplicated: one entry per copy, with the delay that
    /// copy waits (`None`: at once).
    Deliver {
        /// One entry per copy: how long it waits (`None`: delivered at once).
        copies: Vec<Option<Duration>>,
    },
}

impl Route {
    /// Whether the message was duplicated.
    pub fn duplicated(&self) -> bool {
        matches!(self, Route::Deliver { copies } if copies.len() > 1)
    }
}

/// Cuts, link faults and the seeded generator. Not shared by itself: its owners put it
/// behind their own lock.
#[derive(Debug)]
pub struct FaultModel {
    blocked: BTreeSet<(NodeId, NodeId)>,
    isolated: BTreeSet<NodeId>,
    default_faults: LinkFaults,
    link_faults: BTreeMap<(NodeId, NodeId), LinkFaults>,
    rng: ChaCha8Rng,
}

impl FaultModel {
    /// No faults yet; every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        FaultModel {
            blocked: BTreeSet::new(),
            isolated: BTreeSet::new(),
            default_faults: LinkFaults::default(),
            link_faults: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Block every link between the two sides, both ways.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.blocked.insert((x, y));
                    self.blocked.insert((y, x));
                }
            }
        }
    }

    /// Block messages from `from` to `to` only.
    pub fn partition_one_way(&mut self, from: &[NodeId], to: &[NodeId]) {
        for &x in from {
            for &y in to {
                if x != y {
                    self.blocked.insert((x, y));
                }
            }
        }
    }

    /// Cut `id` off from every other node, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        self.isolated.insert(id);
    }

    /// Remove every partition, isolation and link fault.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.isolated.clear();
        self.default_faults = LinkFaults::default();
        self.link_faults.clear();
    }

    /// Faults for every link without its own setting.
    pub fn set_default_faults(&mut self, faults: LinkFaults) {
        self.default_faults = faults;
    }

    /// Faults of every link without its own setting.
    pub fn default_faults(&self) -> &LinkFaults {
        &self.default_faults
    }

    /// Faults for the one directed link `from -> to`.
    pub fn set_link_faults(&mut self, from: NodeId, to: NodeId, faults: LinkFaults) {
        self.link_faults.insert((from, to), faults);
    }

    /// Whether a message from `from` to `to` would pass the partitions now.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut(from, to)
    }

    /// Whether the directed link `from -> to` is cut. A node always reaches itself.
    pub fn cut(&self, from: NodeId, to: NodeId) -> bool {
        from != to
            && (self.blocked.contains(&(from, to)) || self.isolated.contains(&from) || self.isolated.contains(&to))
    }

    /// Decides the fate of one message from `from` to `to`. Draws from the generator
    /// only for faults that are set: the drop draw, then the duplicate draw, then one
    /// delay draw per copy (none when the delay range is a single value).
    pub fn route(&mut self, from: NodeId, to: NodeId) -> Route {
        if self.cut(from, to) {
            return Route::Cut;
        }
        let faults = self.link_faults.get(&(from, to)).unwrap_or(&self.default_faults).clone();
        if faults.drop > 0.0 && self.rng.gen_bool(faults.drop.min(1.0)) {
            return Route::DroppedRandom;
        }
        let n = if faults.duplicate > 0.0 && self.rng.gen_bool(faults.duplicate.min(1.0)) { 2 } else { 1 };
        let copies = (0..n)
            .map(|_| match faults.delay {
                Some((min, max)) if max > Duration::ZERO => {
                    Some(if max > min { self.rng.gen_range(min..=max) } else { min })
                }
                _ => None,
            })
            .collect();
        Route::Deliver { copies }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (NodeId, NodeId, NodeId) {
        (NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(2))
    }

    #[test]
    fn cuts_partitions_and_heal() {
        let (p, a, b) = ids();
        let mut m = FaultModel::new(1);
        m.partition_one_way(&[p], &[a]);
        assert!(!m.connected(p, a) && m.connected(a, p));
        m.partition(&[b], &[p]);
        assert!(!m.connected(b, p) && !m.connected(p, b));
        m.isolate(a);
        assert!(!m.connected(a, b) && m.connected(a, a));
        assert_eq!(m.route(a, b), Route::Cut);
        m.heal();
        assert!(m.connected(p, a) && m.connected(a, b) && m.connected(b, p));
        assert_eq!(m.route(p, a), Route::Deliver { copies: vec![None] });
    }

    #[test]
    fn link_faults_override_the_default_and_routes_are_seeded() {
        let (p, a, _) = ids();
        let run = |seed| {
            let mut m = FaultModel::new(seed);
            let (min, max) = (Duration::from_millis(1), Duration::from_millis(9));
            m.set_default_faults(LinkFaults { drop: 0.3, duplicate: 0.3, delay: Some((min, max)) });
            m.set_link_faults(a, p, LinkFaults::default());
            assert_eq!(m.route(a, p), Route::Deliver { copies: vec![None] });
            (0..200).map(|_| m.route(p, a)).collect::<Vec<_>>()
        };
        let routes = run(4);
        assert!(routes.contains(&Route::DroppedRandom));
        assert!(routes.iter().any(Route::duplicated));
        assert_eq!(run(4), routes);
    }
}
