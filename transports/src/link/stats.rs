//! The counters of a network transport: [`WireStats`] (a snapshot), the live atomic
//! counters the tasks bump, and [`StatsHandle`], a view that outlives the transport.

use crate::wire::WireError;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a network transport did, as counters since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Frames written to peers.
    pub frames_sent: u64,
    /// Frames received and decoded.
    pub frames_received: u64,
    /// Bytes handed to the socket, in the transport's own framing (TCP counts its length
    /// prefixes, ZeroMQ its frame headers and, under CURVE, each message's box).
    pub bytes_sent: u64,
    /// Bodies received and decoded.
    pub bytes_received: u64,
    /// `send` found the peer's queue full.
    pub dropped_queue_full: u64,
    /// A frame over the size limit, either way.
    pub dropped_oversized: u64,
    /// A frame whose body was not ours or did not decode (bad magic, bad rmp), or, under
    /// CURVE, whose box did not open (changed on the way, replayed).
    pub dropped_decode: u64,
    /// A frame from another protocol version.
    pub dropped_version: u64,
    /// Frames lost on our side because the peer could not be reached or a write failed.
    pub dropped_unreachable: u64,
    /// An inbound connection closed in the middle of a frame, or too slowly.
    pub truncated: u64,
    /// A connection, either way, that failed the ZMTP handshake: not ZMTP, a command out
    /// of place or over its limit, too slow (ZeroMQ only).
    pub bad_handshake: u64,
    /// A well-formed handshake, either way, that could not prove an identity we accept, or
    /// whose peer refused ours: another mechanism (an insecure peer of a secure node), a
    /// CURVE key not on the allow-list, a box that does not open; on tcp, a TLS handshake
    /// that failed or timed out (no certificate, one the cluster's CA did not sign, one
    /// that names no identity, not TLS at all). Only that connection is closed.
    pub refused_handshake: u64,
    /// A frame whose `from` the identity its connection proved does not permit (a peer
    /// with acceptor-3's key sending as acceptor-1); its connection is closed.
    pub dropped_identity: u64,
    /// Connections opened, outbound and inbound.
    pub connections_opened: u64,
    /// Connections closed, outbound and inbound.
    pub connections_closed: u64,
    /// Failed dials, including those whose peer name did not resolve.
    pub connect_failures: u64,
    /// Inbound connections closed at once because the listener had
    /// [`super::NetOptions::max_inbound`] open.
    pub connections_refused: u64,
    /// Learned peers forgotten to stay within [`super::NetOptions::max_learned_peers`].
    pub peers_evicted: u64,
    /// Lookups of peers' host names (one per fresh connection to a named peer).
    pub name_lookups: u64,
    /// Lookups that failed or timed out.
    pub name_lookup_failures: u64,
    /// [`Message::PeerDown`](ballot_core::Message::PeerDown) notices handed to `recv`:
    /// an inbound connection in use that closed (its sender most likely crashed), or,
    /// outbound, a connection found closed before a write and not dialled again.
    pub peer_down_notices: u64,
}

macro_rules! counters {
    ($($f:ident),*) => {
        /// The live counters behind [`WireStats`]; shared with every task.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $(pub(crate) $f: AtomicU64,)* log: RefusalLog }
        impl Counters {
            pub(crate) fn snapshot(&self) -> WireStats {
                WireStats { $($f: self.$f.load(Ordering::Relaxed),)* }
            }
        }
    };
}
counters!(
    frames_sent,
    frames_received,
    bytes_sent,
    bytes_received,
    dropped_queue_full,
    dropped_oversized,
    dropped_decode,
    dropped_version,
    dropped_unreachable,
    truncated,
    bad_handshake,
    refused_handshake,
    dropped_identity,
    connections_opened,
    connections_closed,
    connect_failures,
    connections_refused,
    peers_evicted,
    name_lookups,
    name_lookup_failures,
    peer_down_notices
);

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What a transport refused from outside: each is a counter, and a log line at most
/// once per [`REFUSAL_LOG_EVERY`] per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not the transport's handshake at all, or a broken one (`bad_handshake`).
    BadHandshake,
    /// A handshake that proved no identity we accept (`refused_handshake`).
    RefusedHandshake,
    /// A frame sent in a name its connection's identity does not permit
    /// (`dropped_identity`).
    IdentityMismatch,
    /// A connection past the listener's cap (`connections_refused`).
    ConnectionCap,
    /// A frame over the size limit (`dropped_oversized`).
    Oversized,
    /// A frame of a protocol version we do not speak (`dropped_version`).
    Version,
    /// A connection that ended, or stalled, in the middle of a frame (`truncated`).
    Truncated,
    /// A frame that does not decode, or a sealed one that does not open (`dropped_decode`).
    Decode,
}

impl Refusal {
    const COUNT: usize = 8;

    fn of(err: &WireError) -> Refusal {
        match err {
            WireError::Oversized { .. } => Refusal::Oversized,
            WireError::UnknownVersion(_) => Refusal::Version,
            WireError::Truncated { .. } => Refusal::Truncated,
            WireError::BadMagic | WireError::Decode(_) | WireError::Encode(_) => Refusal::Decode,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Refusal::BadHandshake => "bad_handshake",
            Refusal::RefusedHandshake => "refused_handshake",
            Refusal::IdentityMismatch => "identity_mismatch",
            Refusal::ConnectionCap => "connection_cap",
            Refusal::Oversized => "oversized",
            Refusal::Version => "unknown_version",
            Refusal::Truncated => "truncated",
            Refusal::Decode => "decode",
        }
    }
}

/// At most one log line per refusal reason this often: a flood of garbage costs a
/// counter increment per frame or connection, not a line each.
pub(crate) const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// When each reason was last logged, and how many refusals since were not.
#[derive(Debug, Default)]
struct RefusalLog(Mutex<[(Option<Instant>, u64); Refusal::COUNT]>);

impl RefusalLog {
    /// Whether to log a refusal of this reason now, and how many went unlogged before it.
    fn due(&self, r: Refusal) -> Option<u64> {
        let mut slots = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, unlogged) = &mut slots[r.index()];
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY) {
            *unlogged += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(unlogged))
    }
}

impl Counters {
    fn counter(&self, r: Refusal) -> &AtomicU64 {
        match r {
            Refusal::BadHandshake => &self.bad_handshake,
            Refusal::RefusedHandshake => &self.refused_handshake,
            Refusal::IdentityMismatch => &self.dropped_identity,
            Refusal::ConnectionCap => &self.connections_refused,
            Refusal::Oversized => &self.dropped_oversized,
            Refusal::Version => &self.dropped_version,
            Refusal::Truncated => &self.truncated,
            Refusal::Decode => &self.dropped_decode,
        }
    }

    /// Counts one refusal of `r` from `peer`, and logs it as one line unless its reason
    /// was logged within [`REFUSAL_LOG_EVERY`] (the line says how many were not).
    pub(crate) fn refuse(&self, r: Refusal, peer: Option<SocketAddr>, why: &dyn Display) {
        bump(self.counter(r), 1);
        if let Some(unlogged) = self.log.due(r) {
            let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            tracing::warn!(reason = r.name(), %peer, unlogged, "refused from the network: {why}");
        }
    }

    /// Counts (and logs, rate-limited) a refused frame under its reason.
    pub(crate) fn refused(&self, err: &WireError, peer: Option<SocketAddr>) {
        self.refuse(Refusal::of(err), peer, err);
    }

    /// Counts one of our own envelopes that could not be framed, under its reason.
    pub(crate) fn count_unsendable(&self, err: &WireError) {
        bump(self.counter(Refusal::of(err)), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_and_one_line_per_reason_per_period_is_logged() {
        let c = Counters::default();
        for _ in 0..5 {
            c.refuse(Refusal::RefusedHandshake, None, &"no certificate");
        }
        c.refuse(Refusal::IdentityMismatch, None, &"acceptor-3 as acceptor-1");
        let s = c.snapshot();
        assert_eq!((s.refused_handshake, s.dropped_identity), (5, 1));
        let slots = c.log.0.lock().unwrap();
        assert_eq!(slots[Refusal::RefusedHandshake.index()].1, 4, "one line, four not logged");
        assert_eq!(slots[Refusal::IdentityMismatch.index()].1, 0, "another reason has its own line");
    }
}

/// A cheap, cloneable view of a transport's counters that outlives the transport (for
/// test harnesses and metrics).
#[derive(Clone, Debug)]
pub struct StatsHandle(pub(crate) Arc<Counters>);

impl StatsHandle {
    /// The counters now.
    pub fn get(&self) -> WireStats {
        self.0.snapshot()
    }
}
