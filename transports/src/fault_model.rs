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

use ballot_core::{Message, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
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

/// A fault on the messages that match it, decided on the decoded message: "the next two
/// `Accept`s of slot 3 from proposer-1 to acceptor-2". Every field left `None` matches
/// anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRule {
    /// The message's kind ([`Message::kind`]: `Accept`, `Promise`, ...).
    pub kind: Option<String>,
    /// Its sender.
    pub from: Option<NodeId>,
    /// Its receiver.
    pub to: Option<NodeId>,
    /// A slot it concerns ([`concerns_slot`]).
    pub slot: Option<u64>,
    /// What becomes of a match.
    pub action: RuleAction,
}

/// What a [`MessageRule`] does to the messages it matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleAction {
    /// Drop them: the next `count` (then the rule is spent), or all (`None`).
    Drop {
        /// How many more to drop.
        count: Option<u64>,
    },
    /// Deliver each this much later (on top of any link delay).
    Delay {
        /// The extra delay.
        ms: u64,
    },
}

impl MessageRule {
    /// Whether `msg` from `from` to `to` is one this rule is about.
    pub fn matches(&self, from: NodeId, to: NodeId, msg: &Message) -> bool {
        self.kind.as_deref().is_none_or(|k| k == msg.kind())
            && self.from.is_none_or(|f| f == from)
            && self.to.is_none_or(|t| t == to)
            && self.slot.is_none_or(|s| concerns_slot(msg, s))
    }
}

/// Whether `msg` carries something about `slot`: an `Accept` of it, an `Accepted` or a
/// `Learn`, `Chosen` or `Promise` entry of it. A message about no slot in particular
/// (a `Heartbeat`, a `Request`) concerns none.
pub fn concerns_slot(msg: &Message, slot: u64) -> bool {
    match msg {
        Message::Accept { slot: s, .. } => *s == slot,
        Message::Accepted { slots, .. } => slots.contains(&slot),
        Message::Learn { entries } => entries.iter().any(|e| e.slot == slot),
        Message::Promise { accepted, .. } => accepted.iter().any(|e| e.slot == slot),
        Message::Chosen { entries } => entries.iter().any(|(s, _)| *s == slot),
        _ => false,
    }
}

/// What becomes of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The link is cut (partition or isolation).
    Cut,
    /// Lost to the link's drop probability.
    DroppedRandom,
    /// Dropped by a [`MessageRule`].
    DroppedRule,
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
    /// Applied in the order they were added; a spent drop rule is removed.
    rules: Vec<MessageRule>,
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
            rules: Vec::new(),
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

    /// Remove every partition, isolation, link fault and message rule.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.isolated.clear();
        self.default_faults = LinkFaults::default();
        self.link_faults.clear();
        self.rules.clear();
    }

    /// Adds a rule on the messages it matches (after the ones already there).
    pub fn add_rule(&mut self, rule: MessageRule) {
        self.rules.push(rule);
    }

    /// The rules in force.
    pub fn rules(&self) -> &[MessageRule] {
        &self.rules
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

    /// Decides the fate of one message `msg` from `from` to `to`. A cut link drops it
    /// first; then the first drop rule that matches (one fewer left to drop); then the
    /// link's faults, which draw from the generator only when they are set: the drop
    /// draw, the duplicate draw, one delay draw per copy (none when the delay range is a
    /// single value); then every matching delay rule adds its delay to each copy. Rules
    /// draw nothing, so adding one changes no other message's fate.
    pub fn route(&mut self, from: NodeId, to: NodeId, msg: &Message) -> Route {
        if self.cut(from, to) {
            return Route::Cut;
        }
        let mut extra = Duration::ZERO;
        let (mut dropped, mut spent) = (false, None);
        for (i, r) in self.rules.iter_mut().enumerate() {
            if !r.matches(from, to, msg) {
                continue;
            }
            match &mut r.action {
                RuleAction::Drop { count } => {
                    if let Some(n) = count {
                        *n = n.saturating_sub(1);
                        spent = (*n == 0).then_some(i);
                    }
                    dropped = true;
                    break;
                }
                RuleAction::Delay { ms } => extra += Duration::from_millis(*ms),
            }
        }
        if let Some(i) = spent {
            self.rules.remove(i);
        }
        if dropped {
            return Route::DroppedRule;
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
            .map(|d: Option<Duration>| if extra.is_zero() { d } else { Some(d.unwrap_or_default() + extra) })
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
        assert_eq!(m.route(a, b, &Message::Hello), Route::Cut);
        m.heal();
        assert!(m.connected(p, a) && m.connected(a, b) && m.connected(b, p));
        assert_eq!(m.route(p, a, &Message::Hello), Route::Deliver { copies: vec![None] });
    }

    #[test]
    fn link_faults_override_the_default_and_routes_are_seeded() {
        let (p, a, _) = ids();
        let run = |seed| {
            let mut m = FaultModel::new(seed);
            let (min, max) = (Duration::from_millis(1), Duration::from_millis(9));
            m.set_default_faults(LinkFaults { drop: 0.3, duplicate: 0.3, delay: Some((min, max)) });
            m.set_link_faults(a, p, LinkFaults::default());
            assert_eq!(m.route(a, p, &Message::Hello), Route::Deliver { copies: vec![None] });
            (0..200).map(|_| m.route(p, a, &Message::Hello)).collect::<Vec<_>>()
        };
        let routes = run(4);
        assert!(routes.contains(&Route::DroppedRandom));
        assert!(routes.iter().any(Route::duplicated));
        assert_eq!(run(4), routes);
    }

    #[test]
    fn message_rules_match_the_decoded_message_count_down_and_heal() {
        use ballot_core::Ballot;
        let (p, a, b) = ids();
        let accept = |slot| Message::Accept { ballot: Ballot::new(1, 1), slot, value: Default::default() };
        let mut m = FaultModel::new(1);
        let rule =
            |action| MessageRule { kind: Some("Accept".into()), from: Some(p), to: Some(a), slot: Some(3), action };
        m.add_rule(rule(RuleAction::Drop { count: Some(2) }));
        m.add_rule(MessageRule {
            kind: None,
            from: None,
            to: Some(b),
            slot: None,
            action: RuleAction::Delay { ms: 7 },
        });
        let once = vec![None];
        // Another slot, another receiver, another kind, another sender: not matched.
        assert_eq!(m.route(p, a, &accept(4)), Route::Deliver { copies: once.clone() });
        assert_eq!(m.route(p, a, &Message::Hello), Route::Deliver { copies: once.clone() });
        assert_eq!(m.route(b, a, &accept(3)), Route::Deliver { copies: once.clone() });
        // The next two matches are dropped, then the rule is spent.
        assert_eq!(m.route(p, a, &accept(3)), Route::DroppedRule);
        assert_eq!(m.route(p, a, &accept(3)), Route::DroppedRule);
        assert_eq!(m.route(p, a, &accept(3)), Route::Deliver { copies: once.clone() });
        assert_eq!(m.rules().len(), 1, "the spent rule is gone");
        // A delay rule adds to every copy, to any message to b.
        assert_eq!(m.route(p, b, &accept(9)), Route::Deliver { copies: vec![Some(Duration::from_millis(7))] });
        m.add_rule(rule(RuleAction::Drop { count: None }));
        for _ in 0..5 {
            assert_eq!(m.route(p, a, &accept(3)), Route::DroppedRule, "until healed");
        }
        m.heal();
        assert!(m.rules().is_empty());
        assert_eq!(m.route(p, a, &accept(3)), Route::Deliver { copies: once });
    }

    #[test]
    fn a_message_concerns_the_slots_it_carries() {
        use ballot_core::{AcceptedEntry, Ballot};
        let e = |slot| AcceptedEntry { slot, ballot: Ballot::new(1, 1), value: Default::default() };
        assert!(concerns_slot(&Message::Accepted { ballot: Ballot::new(1, 1), slots: vec![2, 5] }, 5));
        assert!(concerns_slot(&Message::Learn { entries: vec![e(1), e(8)] }, 8));
        assert!(!concerns_slot(&Message::Learn { entries: vec![e(1)] }, 8));
        assert!(concerns_slot(&Message::Chosen { entries: vec![(4, Default::default())] }, 4));
        assert!(!concerns_slot(&Message::Heartbeat { ballot: Ballot::new(1, 1), chosen: 9 }, 9));
    }
}
