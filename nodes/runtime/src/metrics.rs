//! What the node loop counts about itself, for `/metrics` and `/status`
//! ([`crate::http`]): messages per peer, steps, `Storage::persist` calls and their latency,
//! and what the role refused, by reason.
//!
//! Cheap on the hot path: plain relaxed atomics, and one uncontended lock per step for the
//! per-peer counts (taken once for a step's messages in and once for its messages out,
//! never per message). Readers take a [`MetricsSnapshot`].

use ballot_core::{NodeId, Refusal};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds, in seconds, of the buckets of the persist (fsync) latency histogram;
/// an implicit `+Inf` bucket follows.
pub const FSYNC_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Messages exchanged with one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Handed to the transport (it may still drop them; the transport counts that).
    pub sent: u64,
    /// Received from the transport and given to the role.
    pub received: u64,
    /// Refused by the transport at once (queue full, no address, closed): lost.
    pub dropped: u64,
}

/// A fixed-bucket latency histogram.
#[derive(Debug)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    counts: [AtomicU64; FSYNC_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0) }
    }
}

impl Histogram {
    /// Count one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = FSYNC_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(FSYNC_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            buckets.push((FSYNC_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative,
        }
    }
}

/// A histogram as read: cumulative buckets `(upper bound, count)`, the last one `+Inf`
/// and equal to `count`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of every observation, in seconds.
    pub sum_seconds: f64,
    /// How many observations.
    pub count: u64,
}

/// Counters of one node loop, shared with whoever reports them (see
/// [`crate::NodeHandle::metrics`]).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    steps: AtomicU64,
    persist_calls: AtomicU64,
    storage_errors: AtomicU64,
    fsync: Histogram,
    peers: Mutex<BTreeMap<NodeId, PeerCounts>>,
    /// Per [`Refusal`], by [`Refusal::index`].
    refused: [AtomicU64; Refusal::ALL.len()],
}

/// Per-peer counts, locked for one step's worth of messages.
pub struct PeerTally<'a>(MutexGuard<'a, BTreeMap<NodeId, PeerCounts>>);

impl PeerTally<'_> {
    /// One message sent to `to`.
    pub fn sent(&mut self, to: NodeId) {
        self.0.entry(to).or_default().sent += 1;
    }
    /// One message received from `from`.
    pub fn received(&mut self, from: NodeId) {
        self.0.entry(from).or_default().received += 1;
    }
    /// One message to `to` the transport refused.
    pub fn dropped(&mut self, to: NodeId) {
        self.0.entry(to).or_default().dropped += 1;
    }
}

impl NodeMetrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// One step of the node loop.
    pub fn step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// One `Storage::persist` call that took `d`.
    pub fn persisted(&self, d: Duration) {
        self.persist_calls.fetch_add(1, Ordering::Relaxed);
        self.fsync.observe(d);
    }

    /// One failed `Storage::persist` (the node stops after it).
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One message (or command) the role refused.
    pub fn refused(&self, reason: Refusal) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The per-peer counts, for one step.
    pub fn peers(&self) -> PeerTally<'_> {
        PeerTally(self.peers.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            steps: self.steps.load(Ordering::Relaxed),
            persist_calls: self.persist_calls.load(Ordering::Relaxed),
            storage_errors: self.storage_errors.load(Ordering::Relaxed),
            fsync: self.fsync.snapshot(),
            peers: self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            refused: Refusal::ALL.map(|r| (r.as_str(), self.refused[r.index()].load(Ordering::Relaxed))),
        }
    }
}

/// [`NodeMetrics`] as read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// Steps of the node loop (each a batch of timers and messages, then one persist).
    pub steps: u64,
    /// `Storage::persist` calls (one per step that had something to persist).
    pub persist_calls: u64,
    /// Failed `Storage::persist` calls.
    pub storage_errors: u64,
    /// Latency of each `Storage::persist` call (the fsync, on disk).
    pub fsync: HistogramSnapshot,
    /// Messages per peer.
    pub peers: BTreeMap<NodeId, PeerCounts>,
    /// Refusals per reason (every reason, zeros included, in [`Refusal::ALL`] order).
    pub refused: [(&'static str, u64); Refusal::ALL.len()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_ends_with_the_count() {
        let h = Histogram::default();
        for us in [50, 200, 200, 3_000, 2_000_000, 9_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.buckets.first(), Some(&(0.0001, 1)));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 6)));
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert!((s.sum_seconds - 11.00345).abs() < 1e-9);
    }

    #[test]
    fn peers_are_counted_by_node() {
        let m = NodeMetrics::new();
        {
            let mut p = m.peers();
            p.sent(NodeId::acceptor(1));
            p.sent(NodeId::acceptor(1));
            p.received(NodeId::learner(2));
            p.dropped(NodeId::acceptor(1));
        }
        let s = m.snapshot();
        assert_eq!(s.peers[&NodeId::acceptor(1)], PeerCounts { sent: 2, received: 0, dropped: 1 });
        assert_eq!(s.peers[&NodeId::learner(2)], PeerCounts { sent: 0, received: 1, dropped: 0 });
    }
}
