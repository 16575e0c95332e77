//! The counters of a network transport: [`WireStats`] (a snapshot), the live atomic
//! counters the tasks bump, and [`StatsHandle`], a view that outlives the transport.

use crate::wire::WireError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a network transport did, as counters since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Frames written to peers.
    pub frames_sent: u64,
    /// Frames received and decoded.
    pub frames_received: u64,
    /// Bytes handed to the socket, in the transport's own framing (TCP counts its length
    /// prefixes, ZeroMQ only the bodies).
    pub bytes_sent: u64,
    /// Bodies received and decoded.
    pub bytes_received: u64,
    /// `send` found the peer's queue full.
    pub dropped_queue_full: u64,
    /// A frame over the size limit, either way.
    pub dropped_oversized: u64,
    /// A frame whose body was not ours or did not decode (bad magic, bad rmp).
    pub dropped_decode: u64,
    /// A frame from another protocol version.
    pub dropped_version: u64,
    /// Frames lost on our side because the peer could not be reached or a write failed.
    pub dropped_unreachable: u64,
    /// An inbound connection closed in the middle of a frame, or too slowly.
    pub truncated: u64,
    /// An inbound connection that failed the ZMTP handshake (ZeroMQ only).
    pub bad_handshake: u64,
    /// Connections opened, outbound and inbound.
    pub connections_opened: u64,
    /// Connections closed, outbound and inbound.
    pub connections_closed: u64,
    /// Failed dials, including those whose peer name did not resolve.
    pub connect_failures: u64,
    /// Lookups of peers' host names (one per fresh connection to a named peer).
    pub name_lookups: u64,
    /// Lookups that failed or timed out.
    pub name_lookup_failures: u64,
}

macro_rules! counters {
    ($($f:ident),*) => {
        /// The live counters behind [`WireStats`]; shared with every task.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $(pub(crate) $f: AtomicU64,)* }
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
    connections_opened,
    connections_closed,
    connect_failures,
    name_lookups,
    name_lookup_failures
);

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// Counts a refused frame under its reason.
    pub(crate) fn refused(&self, err: &WireError) {
        let c = match err {
            WireError::Oversized { .. } => &self.dropped_oversized,
            WireError::UnknownVersion(_) => &self.dropped_version,
            WireError::Truncated { .. } => &self.truncated,
            WireError::BadMagic | WireError::Decode(_) | WireError::Encode(_) => &self.dropped_decode,
        };
        bump(c, 1);
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
