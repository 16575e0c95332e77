//! [`Faulty`]: the in-memory network's fault model, wrapped around any transport, so the
//! chaos runner can partition, slow down and duplicate traffic between real processes
//! without touching the kernel.
//!
//! Each process wraps its own transport and receives fault commands through a
//! [`FaultHandle`]. Outbound faults (cuts, drops, delays, duplicates) are applied in
//! `send`; inbound, messages from a peer whose link to us is cut are dropped in `recv`,
//! so a partition holds even when only one side has been told about it.
//!
//! A delayed message waits in a tokio task, then in a queue that `recv`/`try_recv`
//! empties into the inner transport: the inner `send` needs the transport, which the
//! node owns. Node runtimes always have a `recv` pending, so the extra wait is at most
//! one loop turn; the delay is never shorter than the drawn time.

use crate::envelope::{Envelope, SendError, Transport};
use crate::fault_model::{FaultModel, LinkFaults, Route};
use async_trait::async_trait;
use ballot_core::NodeId;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What the fault layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Outbound messages that reached the fault layer.
    pub sent: u64,
    /// Outbound messages dropped by a cut link.
    pub dropped_partition: u64,
    /// Inbound messages dropped because the link from their sender is cut.
    pub dropped_inbound: u64,
    /// Outbound messages lost to the link's drop probability.
    pub dropped_random: u64,
    /// Outbound messages dropped by a [`MessageRule`](crate::MessageRule).
    pub dropped_rule: u64,
    /// Outbound messages sent twice.
    pub duplicated: u64,
    /// Copies held back for a delay before sending.
    pub delayed: u64,
}

#[derive(Debug)]
struct State {
    faults: FaultModel,
    stats: FaultStats,
}

/// Controls the faults of one or more [`Faulty`] transports. Cheap to clone; the verbs
/// and their meaning are those of [`crate::MemNetwork`] (both use one
/// [`FaultModel`]).
#[derive(Clone, Debug)]
pub struct FaultHandle {
    state: Arc<Mutex<State>>,
}

impl FaultHandle {
    /// No faults yet; every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        FaultHandle {
            state: Arc::new(Mutex::new(State { faults: FaultModel::new(seed), stats: FaultStats::default() })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Block every link between the two sides, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.lock().faults.partition(a, b);
    }

    /// Block messages from `from` to `to` only.
    pub fn partition_one_way(&self, from: &[NodeId], to: &[NodeId]) {
        self.lock().faults.partition_one_way(from, to);
    }

    /// Cut `id` off from every other node, both ways.
    pub fn isolate(&self, id: NodeId) {
        self.lock().faults.isolate(id);
    }

    /// Remove every partition, isolation and link fault.
    pub fn heal(&self) {
        self.lock().faults.heal();
    }

    /// Adds a rule on the outbound messages it matches, until healed (or spent). A
    /// counted rule counts this handle's messages only: on node processes every node has
    /// its own handle, so a rule that matches several senders drops `count` of each.
    pub fn add_rule(&self, rule: crate::MessageRule) {
        self.lock().faults.add_rule(rule);
    }

    /// Faults for every link without its own setting.
    pub fn set_default_faults(&self, faults: LinkFaults) {
        self.lock().faults.set_default_faults(faults);
    }

    /// Faults for the one directed link `from -> to`.
    pub fn set_link_faults(&self, from: NodeId, to: NodeId, faults: LinkFaults) {
        self.lock().faults.set_link_faults(from, to, faults);
    }

    /// Whether a message from `from` to `to` would pass the partitions now.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.lock().faults.connected(from, to)
    }

    /// What the fault layer did so far.
    pub fn stats(&self) -> FaultStats {
        self.lock().stats.clone()
    }
}

/// A transport with faults applied to its traffic.
pub struct Faulty<T> {
    inner: T,
    handle: FaultHandle,
    delayed_tx: mpsc::UnboundedSender<Envelope>,
    delayed_rx: mpsc::UnboundedReceiver<Envelope>,
}

impl<T: Transport> Faulty<T> {
    /// Wraps `inner`, with faults as `handle` sets them.
    pub fn new(inner: T, handle: FaultHandle) -> Self {
        let (delayed_tx, delayed_rx) = mpsc::unbounded_channel();
        Faulty { inner, handle, delayed_tx, delayed_rx }
    }

    /// The handle that sets this transport's faults.
    pub fn handle(&self) -> &FaultHandle {
        &self.handle
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped transport, without the fault layer.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Hands ripe delayed messages to the inner transport. Their fate there (a full
    /// queue) is the network's, so errors are ignored like any lost message.
    fn flush_delayed(&mut self) {
        while let Ok(env) = self.delayed_rx.try_recv() {
            let _ = self.inner.send(env);
        }
    }

    /// Whether an inbound message passes the cut from its sender to us.
    fn admit(&self, env: &Envelope) -> bool {
        let mut s = self.handle.lock();
        if s.faults.cut(env.from, self.inner.local()) {
            s.stats.dropped_inbound += 1;
            return false;
        }
        true
    }
}

#[async_trait]
impl<T: Transport> Transport for Faulty<T> {
    fn local(&self) -> NodeId {
        self.inner.local()
    }

    fn send(&self, env: Envelope) -> Result<(), SendError> {
        let delays = {
            let mut s = self.handle.lock();
            s.stats.sent += 1;
            match s.faults.route(env.from, env.to, &env.msg) {
                Route::Cut => {
                    s.stats.dropped_partition += 1;
                    return Ok(());
                }
                Route::DroppedRandom => {
                    s.stats.dropped_random += 1;
                    return Ok(());
                }
                Route::DroppedRule => {
                    s.stats.dropped_rule += 1;
                    return Ok(());
                }
                Route::Deliver { copies } => {
                    if copies.len() > 1 {
                        s.stats.duplicated += 1;
                    }
                    s.stats.delayed += copies.iter().filter(|d| d.is_some()).count() as u64;
                    copies
                }
            }
        };
        let mut result = Ok(());
        for delay in delays {
            let env = env.clone();
            match delay {
                Some(d) => {
                    let tx = self.delayed_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        let _ = tx.send(env);
                    });
                }
                None => result = result.and(self.inner.send(env)),
            }
        }
        result
    }

    async fn recv(&mut self) -> Option<Envelope> {
        loop {
            self.flush_delayed();
            tokio::select! {
                env = self.inner.recv() => {
                    let env = env?;
                    if self.admit(&env) {
                        return Some(env);
                    }
                }
                Some(env) = self.delayed_rx.recv() => {
                    let _ = self.inner.send(env);
                }
            }
        }
    }

    fn try_recv(&mut self) -> Option<Envelope> {
        self.flush_delayed();
        while let Some(env) = self.inner.try_recv() {
            if self.admit(&env) {
                return Some(env);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EventLog;
    use crate::mem::{MemNetwork, MemTransport};
    use ballot_core::Message;
    use std::time::Duration;

    fn hb(i: u64) -> Message {
        Message::CatchUp { applied: i }
    }

    fn ids() -> (NodeId, NodeId, NodeId) {
        (NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(2))
    }

    fn drain(t: &mut impl Transport) -> Vec<NodeId> {
        let mut v = Vec::new();
        while let Some(e) = t.try_recv() {
            v.push(e.from);
        }
        v
    }

    /// Three nodes on a healthy in-memory network, each wrapped with its own handle
    /// (as separate processes would be), plus one handle that tells them all.
    fn cluster(seed: u64) -> (Vec<Faulty<MemTransport>>, Vec<FaultHandle>) {
        let net = MemNetwork::new(1, EventLog::new(false));
        let (p, a, b) = ids();
        let handles: Vec<_> = (0..3).map(|i| FaultHandle::new(seed + i)).collect();
        let nodes = [p, a, b].iter().zip(&handles).map(|(&id, h)| Faulty::new(net.register(id), h.clone())).collect();
        (nodes, handles)
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_told_to_one_side_holds_both_ways() {
        let (mut n, h) = cluster(1);
        let (p, a, b) = ids();
        // Only the proposer's process hears of the partition.
        h[0].partition(&[p], &[a]);
        n[1].send(Envelope::new(a, p, hb(0))).unwrap();
        n[0].send(Envelope::new(p, a, hb(0))).unwrap();
        n[0].send(Envelope::new(p, b, hb(0))).unwrap();
        assert!(drain(&mut n[0]).is_empty(), "inbound from a cut peer is dropped");
        assert!(drain(&mut n[1]).is_empty(), "outbound to a cut peer is dropped");
        assert_eq!(drain(&mut n[2]), vec![p]);
        assert_eq!(h[0].stats().dropped_partition, 1);
        assert_eq!(h[0].stats().dropped_inbound, 1);
        h[0].heal();
        n[1].send(Envelope::new(a, p, hb(0))).unwrap();
        assert_eq!(drain(&mut n[0]), vec![a]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_way_and_isolate() {
        let (mut n, h) = cluster(1);
        let (p, a, b) = ids();
        h[0].partition_one_way(&[p], &[a]);
        n[0].send(Envelope::new(p, a, hb(0))).unwrap();
        n[1].send(Envelope::new(a, p, hb(0))).unwrap();
        assert!(drain(&mut n[1]).is_empty());
        assert_eq!(drain(&mut n[0]), vec![a]);
        h[2].isolate(b);
        n[0].send(Envelope::new(p, b, hb(0))).unwrap();
        assert!(drain(&mut n[2]).is_empty());
        assert!(!h[2].connected(b, a) && h[2].connected(p, a));
    }

    #[tokio::test(start_paused = true)]
    async fn drops_are_seeded() {
        let run = |seed| async move {
            let (mut n, h) = cluster(seed);
            let (p, a, _) = ids();
            h[0].set_default_faults(LinkFaults { drop: 0.5, ..LinkFaults::default() });
            for i in 0..2000 {
                n[0].send(Envelope::new(p, a, hb(i))).unwrap();
            }
            drain(&mut n[1]).len()
        };
        let got = run(9).await;
        assert!((800..1200).contains(&got), "{got} of 2000 at p=0.5");
        assert_eq!(run(9).await, got);
    }

    #[tokio::test(start_paused = true)]
    async fn delays_and_duplicates() {
        let (mut n, h) = cluster(1);
        let (p, a, _) = ids();
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
        h[0].set_link_faults(p, a, LinkFaults { duplicate: 1.0, delay: Some((min, max)), drop: 0.0 });
        let t0 = tokio::time::Instant::now();
        n[0].send(Envelope::new(p, a, hb(0))).unwrap();
        assert!(drain(&mut n[1]).is_empty(), "not at once");
        // The sender's runtime polls recv, which hands ripe messages on.
        let mut sender = n.remove(0);
        let pump = tokio::spawn(async move { sender.recv().await });
        let first = n[0].recv().await.unwrap();
        let second = n[0].recv().await.unwrap();
        assert_eq!((first.from, second.from), (p, p));
        assert!(t0.elapsed() >= min);
        assert_eq!(h[0].stats().duplicated, 1);
        pump.abort();
    }
}
