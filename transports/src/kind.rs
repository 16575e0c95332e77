//! [`NetKind`]: which network transport a process speaks, as a flag names it.

use std::fmt;
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
    pub fn name(self) -> &'static str {
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
