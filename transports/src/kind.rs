//! [`NetKind`]: which network transport a process speaks, as a flag names it; and
//! [`SocketTransport`], what code generic over the two needs of them.

use crate::{NetOptions, PeerAddr, StatsHandle, TcpTransport, Transport, WireStats, ZmqTransport};
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;

/// The network transports a node process or client can speak. The in-memory network is
/// not one of them: it exists only inside one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetKind {
    /// Length-prefixed frames over TCP ([`TcpTransport`](crate::TcpTransport)).
    Tcp,
    /// The same frames as ZeroMQ PUSH/PULL messages ([`ZmqTransport`](crate::ZmqTransport)).
    Zmq,
}

impl NetKind {
    /// Every kind, in the order flags list them.
    pub const ALL: [NetKind; 2] = [NetKind::Tcp, NetKind::Zmq];

    /// The name flags and logs use: `tcp` or `zmq`.
    pub const fn name(self) -> &'static str {
        match self {
            NetKind::Tcp => "tcp",
            NetKind::Zmq => "zmq",
        }
    }
}

impl fmt::Display for NetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A transport name that is not `tcp` or `zmq`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?}: give tcp or zmq")]
pub struct UnknownNetKind(pub String);

impl FromStr for NetKind {
    type Err = UnknownNetKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NetKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownNetKind(s.into()))
    }
}

/// What the network transports share, for code generic over tcp and zmq (a node
/// process, the CLI's endpoint, tests): bind, learn peers, say where to be answered, read
/// the counters. Each method is the transport's own method of the same name.
pub trait SocketTransport: Transport + Sized {
    /// Which kind this is.
    const KIND: NetKind;

    /// Listens on `listen` as `id` (port 0 picks a free port), knowing no peer yet.
    fn listen(id: NodeId, listen: SocketAddr, opts: NetOptions) -> impl Future<Output = io::Result<Self>> + Send;
    /// Where `id` listens (an address, or a name looked up at each fresh connection).
    fn set_peer(&self, id: NodeId, addr: PeerAddr);
    /// The address this endpoint listens on.
    fn local_addr(&self) -> SocketAddr;
    /// The address stamped on outgoing messages as where to answer (`None`: none).
    fn set_advertise(&mut self, addr: Option<SocketAddr>);
    /// A handle to this endpoint's counters that outlives it.
    fn stats_handle(&self) -> StatsHandle;
    /// The counters now.
    fn stats(&self) -> WireStats;
}

impl SocketTransport for TcpTransport {
    const KIND: NetKind = NetKind::Tcp;
    fn listen(id: NodeId, listen: SocketAddr, opts: NetOptions) -> impl Future<Output = io::Result<Self>> + Send {
        TcpTransport::bind(id, listen, BTreeMap::new(), opts)
    }
    fn set_peer(&self, id: NodeId, addr: PeerAddr) {
        TcpTransport::set_peer(self, id, addr)
    }
    fn local_addr(&self) -> SocketAddr {
        TcpTransport::local_addr(self)
    }
    fn set_advertise(&mut self, addr: Option<SocketAddr>) {
        TcpTransport::set_advertise(self, addr)
    }
    fn stats_handle(&self) -> StatsHandle {
        TcpTransport::stats_handle(self)
    }
    fn stats(&self) -> WireStats {
        TcpTransport::stats(self)
    }
}

impl SocketTransport for ZmqTransport {
    const KIND: NetKind = NetKind::Zmq;
    fn listen(id: NodeId, listen: SocketAddr, opts: NetOptions) -> impl Future<Output = io::Result<Self>> + Send {
        ZmqTransport::bind(id, listen, BTreeMap::new(), opts)
    }
    fn set_peer(&self, id: NodeId, addr: PeerAddr) {
        ZmqTransport::set_peer(self, id, addr)
    }
    fn local_addr(&self) -> SocketAddr {
        ZmqTransport::local_addr(self)
    }
    fn set_advertise(&mut self, addr: Option<SocketAddr>) {
        ZmqTransport::set_advertise(self, addr)
    }
    fn stats_handle(&self) -> StatsHandle {
        ZmqTransport::stats_handle(self)
    }
    fn stats(&self) -> WireStats {
        ZmqTransport::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for k in NetKind::ALL {
            assert_eq!(k.to_string().parse::<NetKind>(), Ok(k));
        }
        assert_eq!("ZMQ".parse::<NetKind>(), Ok(NetKind::Zmq));
        let e = "udp".parse::<NetKind>().unwrap_err();
        assert_eq!(e.to_string(), "unknown transport \"udp\": give tcp or zmq");
    }
}
