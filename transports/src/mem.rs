//! The in-memory network: one process, tokio channels, and a fault layer whose every
//! random choice comes from one seeded generator, so a run replays exactly.
//!
//! Faults are per directed link, as raft-rs's test network and turmoil do: a partition
//! blocks links both ways, a one-way partition blocks one direction, `isolate` cuts a
//! node from everyone. Drop probability, delay range and duplication apply to every link
//! unless a link has its own setting (the model is [`crate::fault_model::FaultModel`],
//! shared with [`crate::Faulty`]). A node that is down (killed, not yet restarted)
//! loses what is sent to it, as a crashed process would.

use crate::envelope::{Envelope, SendError, Transport};
use crate::fault_model::{FaultModel, Route};
use crate::log::EventLog;
use async_trait::async_trait;
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub use crate::fault_model::LinkFaults;

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Copies put into a receiver's inbox.
    pub delivered: u64,
    /// Messages dropped by a cut link.
    pub dropped_partition: u64,
    /// Messages lost to a link's drop probability.
    pub dropped_random: u64,
    /// Copies whose receiver was not registered (down) or had closed its inbox.
    pub dropped_down: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages larger than the socket transports' frame limit, dropped as they would be.
    pub dropped_oversized: u64,
    /// Messages dropped by a [`MessageRule`](crate::MessageRule).
    pub dropped_rule: u64,
    /// [`Message::PeerDown`](ballot_core::Message::PeerDown) handed to `send`: only the
    /// network itself says a peer went down, so a node cannot fake another's crash.
    pub dropped_local_only: u64,
}

struct Net {
    inboxes: BTreeMap<NodeId, mpsc::UnboundedSender<Envelope>>,
    faults: FaultModel,
    log: EventLog,
    stats: NetStats,
}

/// The network: register nodes on it, then break it. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct MemNetwork {
    net: Arc<Mutex<Net>>,
}

impl MemNetwork {
    /// A network whose random choices all come from `seed`.
    pub fn new(seed: u64, log: EventLog) -> Self {
        MemNetwork {
            net: Arc::new(Mutex::new(Net {
                inboxes: BTreeMap::new(),
                faults: FaultModel::new(seed),
                log,
                stats: NetStats::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bring `id` up and return its endpoint. A node registered again (a restart) gets a
    /// fresh inbox; what was queued for its previous life is gone.
    pub fn register(&self, id: NodeId) -> MemTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut net = self.lock();
        net.inboxes.insert(id, tx);
        net.log.record(|| format!("up {id}"));
        MemTransport { id, net: self.clone(), rx }
    }

    /// Take `id` down (a crash): messages to it are lost until it registers again, and
    /// every node the partitions let it reach is told [`Message::PeerDown`] in its name,
    /// as the socket transports tell a node whose connection from a crashed peer closed
    /// (on sockets only a connection in use says so; here every link counts as one).
    ///
    /// [`Message::PeerDown`]: ballot_core::Message::PeerDown
    pub fn unregister(&self, id: NodeId) {
        let mut net = self.lock();
        net.inboxes.remove(&id);
        net.log.record(|| format!("down {id}"));
        let others: Vec<NodeId> = net.inboxes.keys().copied().filter(|&to| net.faults.connected(id, to)).collect();
        for to in others {
            net.deliver(Envelope::new(id, to, ballot_core::Message::PeerDown));
        }
    }

    /// Whether `id` is registered (up).
    pub fn is_up(&self, id: NodeId) -> bool {
        self.lock().inboxes.contains_key(&id)
    }

    /// Block every link between the two sides, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let mut net = self.lock();
        net.faults.partition(a, b);
        net.log.record(|| format!("fault partition {} | {}", names(a), names(b)));
    }

    /// Block messages from `from` to `to` only.
    pub fn partition_one_way(&self, from: &[NodeId], to: &[NodeId]) {
        let mut net = self.lock();
        net.faults.partition_one_way(from, to);
        net.log.record(|| format!("fault one-way {} -> {}", names(from), names(to)));
    }

    /// Cut `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId) {
        let mut net = self.lock();
        net.faults.isolate(id);
        net.log.record(|| format!("fault isolate {id}"));
    }

    /// Remove every partition, isolation and link fault.
    pub fn heal(&self) {
        let mut net = self.lock();
        net.faults.heal();
        net.log.record(|| "fault heal".to_string());
    }

    /// Faults for every link without its own setting.
    pub fn set_default_faults(&self, faults: LinkFaults) {
        let mut net = self.lock();
        net.log.record(|| format!("fault all-links {faults:?}"));
        net.faults.set_default_faults(faults);
    }

    /// Adds a rule on the messages it matches, until healed (or spent).
    pub fn add_rule(&self, rule: crate::MessageRule) {
        let mut net = self.lock();
        net.log.record(|| format!("fault rule {rule:?}"));
        net.faults.add_rule(rule);
    }

    /// Faults of every link without its own setting.
    pub fn default_faults(&self) -> LinkFaults {
        self.lock().faults.default_faults().clone()
    }

    /// Faults for the one directed link `from -> to`.
    pub fn set_link_faults(&self, from: NodeId, to: NodeId, faults: LinkFaults) {
        let mut net = self.lock();
        net.log.record(|| format!("fault link {from}->{to} {faults:?}"));
        net.faults.set_link_faults(from, to, faults);
    }

    /// Whether a message from `from` to `to` would pass the partitions now.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.lock().faults.connected(from, to)
    }

    /// Sends `env` as if its sender had, whoever it names and whether or not it is
    /// registered: how a test stands for a node that breaks the protocol's rules.
    #[doc(hidden)]
    pub fn inject_for_test(&self, env: Envelope) {
        self.send(env)
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.lock().stats.clone()
    }

    /// The network's event log (shared, not a copy).
    pub fn log(&self) -> EventLog {
        self.lock().log.clone()
    }

    fn send(&self, env: Envelope) {
        let mut net = self.lock();
        net.stats.sent += 1;
        let (from, to) = (env.from, env.to);
        if matches!(env.msg, ballot_core::Message::PeerDown) {
            net.stats.dropped_local_only += 1;
            net.log.record(|| format!("drop-local-only {from}->{to} PeerDown"));
            return;
        }
        // The same frame limit as tcp and zmq: a message that could not travel there does
        // not travel here either, so a protocol that relies on one fails on mem too.
        let size = env.msg.size_hint();
        if size > crate::wire::DEFAULT_MAX_FRAME {
            net.stats.dropped_oversized += 1;
            net.log.record(|| format!("drop-oversized {from}->{to} {} ({size} bytes)", env.msg));
            return;
        }
        let copies = match net.faults.route(from, to, &env.msg) {
            Route::Cut => {
                net.stats.dropped_partition += 1;
                net.log.record(|| format!("drop-partition {from}->{to} {}", env.msg));
                return;
            }
            Route::DroppedRandom => {
                net.stats.dropped_random += 1;
                net.log.record(|| format!("drop-random {from}->{to} {}", env.msg));
                return;
            }
            Route::DroppedRule => {
                net.stats.dropped_rule += 1;
                net.log.record(|| format!("drop-rule {from}->{to} {}", env.msg));
                return;
            }
            Route::Deliver { copies } => copies,
        };
        if copies.len() > 1 {
            net.stats.duplicated += 1;
        }
        // The last copy takes the envelope itself: a `Request` is deep (its commands'
        // strings), and cloning it for the one copy of an ordinary delivery was a
        // measurable share of a vote's cost.
        let mut env = Some(env);
        let n = copies.len();
        for (i, delay) in copies.into_iter().enumerate() {
            let Some(env) = (if i + 1 == n { env.take() } else { env.clone() }) else { break };
            match delay {
                Some(d) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        me.lock().deliver(env);
                    });
                }
                None => net.deliver(env),
            }
        }
    }
}

impl Net {
    fn deliver(&mut self, env: Envelope) {
        let (from, to) = (env.from, env.to);
        match self.inboxes.get(&to) {
            Some(tx) => {
                self.log.record(|| format!("deliver {from}->{to} {}", env.msg));
                if tx.send(env).is_ok() {
                    self.stats.delivered += 1;
                    return;
                }
                self.stats.dropped_down += 1;
            }
            None => {
                self.stats.dropped_down += 1;
                self.log.record(|| format!("drop-down {from}->{to} {}", env.msg));
            }
        }
    }
}

fn names(ids: &[NodeId]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// One node's endpoint on a [`MemNetwork`].
pub struct MemTransport {
    id: NodeId,
    net: MemNetwork,
    rx: mpsc::UnboundedReceiver<Envelope>,
}

#[async_trait]
impl Transport for MemTransport {
    fn local(&self) -> NodeId {
        self.id
    }

    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        self.net.send(envelope);
        Ok(())
    }

    async fn recv(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }

    fn try_recv(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_core::Message;
    use std::time::Duration;

    fn hb() -> Message {
        Message::CatchUp { applied: 0 }
    }

    fn ids() -> (NodeId, NodeId, NodeId) {
        (NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(2))
    }

    fn drain(t: &mut MemTransport) -> Vec<NodeId> {
        let mut v = Vec::new();
        while let Some(e) = t.try_recv() {
            v.push(e.from);
        }
        v
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_between_registered_nodes() {
        let net = MemNetwork::new(1, EventLog::new(true));
        let (p, a, _) = ids();
        let tp = net.register(p);
        let mut ta = net.register(a);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        assert_eq!(ta.recv().await.map(|e| (e.from, e.to, e.msg)), Some((p, a, hb())));
        assert_eq!(net.stats().delivered, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn partitions_block_both_ways_and_heal_restores() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let (p, a, b) = ids();
        let mut tp = net.register(p);
        let mut ta = net.register(a);
        let mut tb = net.register(b);
        net.partition(&[p], &[a]);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        ta.send(Envelope::new(a, p, hb())).unwrap();
        tp.send(Envelope::new(p, b, hb())).unwrap();
        assert!(drain(&mut ta).is_empty());
        assert!(drain(&mut tp).is_empty());
        assert_eq!(drain(&mut tb), vec![p], "links outside the partition still work");
        assert_eq!(net.stats().dropped_partition, 2);
        net.heal();
        tp.send(Envelope::new(p, a, hb())).unwrap();
        assert_eq!(drain(&mut ta), vec![p]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_way_partition_blocks_one_direction() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let (p, a, _) = ids();
        let mut tp = net.register(p);
        let mut ta = net.register(a);
        net.partition_one_way(&[p], &[a]);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        ta.send(Envelope::new(a, p, hb())).unwrap();
        assert!(drain(&mut ta).is_empty());
        assert_eq!(drain(&mut tp), vec![a]);
    }

    #[tokio::test(start_paused = true)]
    async fn isolate_cuts_a_node_from_everyone() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let (p, a, b) = ids();
        let tp = net.register(p);
        let mut ta = net.register(a);
        let mut tb = net.register(b);
        net.isolate(a);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        ta.send(Envelope::new(a, b, hb())).unwrap();
        tp.send(Envelope::new(p, b, hb())).unwrap();
        assert!(drain(&mut ta).is_empty());
        assert_eq!(drain(&mut tb), vec![p]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_down_node_loses_messages_and_a_restarted_one_gets_new_ones() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let (p, a, _) = ids();
        let tp = net.register(p);
        let ta = net.register(a);
        drop(ta);
        net.unregister(a);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        assert_eq!(net.stats().dropped_down, 1);
        let mut ta = net.register(a);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        assert_eq!(drain(&mut ta), vec![p]);
    }

    #[tokio::test(start_paused = true)]
    async fn drop_rate_drops_about_that_share_and_is_seeded() {
        let run = |seed| async move {
            let net = MemNetwork::new(seed, EventLog::new(false));
            let (p, a, _) = ids();
            let tp = net.register(p);
            let mut ta = net.register(a);
            net.set_default_faults(LinkFaults { drop: 0.3, ..LinkFaults::default() });
            for _ in 0..10_000 {
                tp.send(Envelope::new(p, a, hb())).unwrap();
            }
            (drain(&mut ta).len(), net.stats().dropped_random)
        };
        let (got, dropped) = run(7).await;
        assert_eq!(got as u64 + dropped, 10_000);
        assert!((2_700..=3_300).contains(&dropped), "dropped {dropped} of 10000 at p=0.3");
        assert_eq!(run(7).await, (got, dropped), "same seed, same drops");
        assert_ne!(run(8).await, (got, dropped), "another seed, other drops");
    }

    #[tokio::test(start_paused = true)]
    async fn delay_holds_messages_for_the_drawn_time() {
        let net = MemNetwork::new(3, EventLog::new(false));
        let (p, a, _) = ids();
        let tp = net.register(p);
        let mut ta = net.register(a);
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
        net.set_default_faults(LinkFaults { delay: Some((min, max)), ..LinkFaults::default() });
        let t0 = tokio::time::Instant::now();
        tp.send(Envelope::new(p, a, hb())).unwrap();
        assert!(ta.try_recv().is_none(), "not delivered at once");
        ta.recv().await.unwrap();
        let waited = t0.elapsed();
        assert!(waited >= min && waited <= max + Duration::from_millis(1), "waited {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn duplication_delivers_twice() {
        let net = MemNetwork::new(3, EventLog::new(false));
        let (p, a, _) = ids();
        let tp = net.register(p);
        let mut ta = net.register(a);
        net.set_link_faults(p, a, LinkFaults { duplicate: 1.0, ..LinkFaults::default() });
        tp.send(Envelope::new(p, a, hb())).unwrap();
        assert_eq!(drain(&mut ta), vec![p, p]);
        assert_eq!(net.stats().duplicated, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_log_records_deliveries_drops_and_faults_with_virtual_time() {
        let log = EventLog::new(true);
        let net = MemNetwork::new(3, log.clone());
        let (p, a, _) = ids();
        let tp = net.register(p);
        let _ta = net.register(a);
        tokio::time::sleep(Duration::from_millis(5)).await;
        tp.send(Envelope::new(p, a, hb())).unwrap();
        net.isolate(a);
        tp.send(Envelope::new(p, a, hb())).unwrap();
        let lines = log.lines();
        assert!(lines.iter().any(|l| l.contains("5.000ms deliver proposer-1->acceptor-1")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("fault isolate acceptor-1")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.contains("drop-partition proposer-1->acceptor-1")), "{lines:#?}");
    }
}
