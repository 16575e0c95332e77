//! Addresses as an operator writes them: `10.0.0.5:7000`, `[::1]:7000`, or a host name
//! and port such as `acceptor-1:7000` (a service name in docker compose or Swarm).
//!
//! A [`PeerAddr`] with a host name is resolved when it is used, not when it is parsed: a
//! transport resolves a peer's name each time it dials a fresh connection (at the first
//! message, and again after a connection failed), so a peer that comes back at another IP
//! address (a restarted Swarm task) is found there. Every lookup has a deadline.
//!
//! Names are untrusted input: [`PeerAddr::from_str`] accepts IP socket addresses exactly
//! as [`SocketAddr`] parses them, and otherwise only `host:port` where the host is made of
//! letters, digits, `-`, `_` and `.` (at most 253 characters, no empty label) and the port
//! is a number; every refusal is one line that says what to write instead.

use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tokio::time::{timeout, Instant};

/// An IP socket address, or a host name and port to resolve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAddr {
    /// Dialled as it is.
    Ip(SocketAddr),
    /// Looked up afresh each time a new connection is dialled.
    Host {
        /// The host name.
        host: String,
        /// The port to dial on whatever the name resolves to.
        port: u16,
    },
}

/// Why a string is not an address; one line, meant to be prefixed with the flag it came
/// from (`--peers: ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddrError(String);

/// A name that did not resolve in time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve {addr} within {deadline:?} ({reason}): check the name, and that it is known on this network")]
pub struct ResolveError {
    /// The address whose name was looked up.
    pub addr: PeerAddr,
    /// How long the lookup was given.
    pub deadline: Duration,
    /// The last lookup's error.
    pub reason: String,
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> Self {
        PeerAddr::Ip(a)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => a.fmt(f),
            PeerAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

fn valid_host(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for PeerAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(a));
        }
        let clip = |t: &str| -> String { t.chars().take(80).collect() };
        let shown = clip(s);
        let example = "write host:port, e.g. acceptor-1:7000 or 10.0.0.5:7000";
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(AddrError(format!("'{shown}' has no port: {example}")));
        };
        if s.contains("://") {
            return Err(AddrError(format!("'{shown}' is a URL: write just host:port, e.g. acceptor-1:7000")));
        }
        let ipv6ish = host.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'[' || b == b']');
        if host.starts_with('[') || (host.contains(':') && ipv6ish) {
            return Err(AddrError(format!(
                "'{shown}' is not an address: write an IPv6 address in brackets, e.g. [::1]:7000"
            )));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| AddrError(format!("'{shown}': the port '{}' is not a number from 0 to 65535", clip(port))))?;
        // All digits and dots is an IPv4 address that did not parse (10.0.0.300), not a name.
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !host.is_empty() {
            return Err(AddrError(format!("'{shown}': '{}' is not a valid IPv4 address", clip(host))));
        }
        if !valid_host(host) {
            return Err(AddrError(format!(
                "'{shown}': '{}' is neither an IP address nor a host name (letters, digits, '-', '_' and '.'); {example}",
                clip(host)
            )));
        }
        Ok(PeerAddr::Host { host: host.to_string(), port })
    }
}

impl PeerAddr {
    /// The IP socket address, when it is one (no lookup).
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Host { .. } => None,
        }
    }

    /// The port, of either form.
    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(a) => a.port(),
            PeerAddr::Host { port, .. } => *port,
        }
    }

    /// Every address the name stands for now, IPv4 first (one lookup, no deadline of its
    /// own: see [`Self::lookup_within`]). An IP address is returned as it is.
    pub async fn lookup(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            PeerAddr::Ip(a) => Ok(vec![*a]),
            PeerAddr::Host { host, port } => {
                let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port)).await?.collect();
                found.dedup();
                // Stable: the resolver's order within each family. Docker networks are IPv4;
                // `localhost` often lists ::1 first while servers bind 127.0.0.1.
                found.sort_by_key(|a| a.is_ipv6());
                if found.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")));
                }
                Ok(found)
            }
        }
    }

    /// One lookup bounded by `deadline`.
    pub async fn lookup_within(&self, deadline: Duration) -> io::Result<Vec<SocketAddr>> {
        match timeout(deadline, self.lookup()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {deadline:?}"))),
        }
    }

    /// Looks the name up until it resolves or `deadline` has passed, waiting a little
    /// longer after each failure (100 ms doubling to 1 s): at start-up the names of other
    /// containers may not be known yet. Each lookup gets at most 2 s: a resolver that
    /// forwards an unknown name upstream may take its full timeout (5 s) to say so, and
    /// the name may be known by then.
    pub async fn resolve(&self, deadline: Duration) -> Result<Vec<SocketAddr>, ResolveError> {
        const ATTEMPT: Duration = Duration::from_secs(2);
        let end = Instant::now() + deadline;
        let mut pause = Duration::from_millis(100);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let reason = match self.lookup_within(left.min(ATTEMPT)).await {
                Ok(found) => return Ok(found),
                Err(e) => e.to_string(),
            };
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ResolveError { addr: self.clone(), deadline, reason });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// The first address of [`Self::resolve`].
    pub async fn resolve_one(&self, deadline: Duration) -> Result<SocketAddr, ResolveError> {
        Ok(self.resolve(deadline).await?[0])
    }
}

/// The local IP address this host uses to reach `peer` (what to advertise when listening
/// on 0.0.0.0). Asks the kernel's routing table through an unconnected UDP socket: no
/// packet is sent.
pub fn local_ip_toward(peer: SocketAddr) -> io::Result<IpAddr> {
    let any: SocketAddr =
        if peer.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(peer)?;
    let ip = socket.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no route to {peer}")));
    }
    Ok(ip)
}

/// A peer list as flags give it: `name=host:port` entries (comma-split by the flag
/// parser), blank entries ignored; `flag` names the flag in errors (`--peers`,
/// `--http-peers`), which say which entry is wrong and how.
pub fn parse_peer_list(flag: &str, list: &[String]) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    let mut peers = BTreeMap::new();
    for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (name, addr) =
            item.split_once('=').ok_or_else(|| format!("{flag} entry '{item}' is not name=host:port"))?;
        let id: NodeId = name.trim().parse().map_err(|e| format!("{flag}: {e}"))?;
        let addr: PeerAddr = addr.trim().parse().map_err(|e| format!("{flag}: {e} (for {})", name.trim()))?;
        peers.insert(id, addr);
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, port: u16) -> PeerAddr {
        PeerAddr::Host { host: h.into(), port }
    }

    #[test]
    fn parses_ip_addresses_exactly_as_socket_addr() {
        for s in ["127.0.0.1:7000", "10.77.0.11:0", "[::1]:7000", "0.0.0.0:8000"] {
            assert_eq!(s.parse::<PeerAddr>().unwrap(), PeerAddr::Ip(s.parse().unwrap()), "{s}");
        }
        assert_eq!(" 127.0.0.1:1 ".parse::<PeerAddr>().unwrap().to_string(), "127.0.0.1:1");
    }

    #[test]
    fn parses_host_names() {
        assert_eq!("acceptor-1:7000".parse::<PeerAddr>().unwrap(), host("acceptor-1", 7000));
        assert_eq!("tasks.ballot_proposer-1:7000".parse::<PeerAddr>().unwrap(), host("tasks.ballot_proposer-1", 7000));
        assert_eq!("localhost:0".parse::<PeerAddr>().unwrap(), host("localhost", 0));
        assert_eq!(host("learner-2", 8000).to_string(), "learner-2:8000");
        assert_eq!(host("learner-2", 8000).port(), 8000);
        assert_eq!(host("learner-2", 8000).ip(), None);
    }

    #[test]
    fn refuses_bad_input_with_one_line_saying_what_to_write() {
        let long = format!("{}:1", "a".repeat(300));
        let label = format!("{}.b:1", "a".repeat(64));
        for (s, says) in [
            ("acceptor-1", "has no port"),
            ("", "has no port"),
            ("acceptor-1:", "is not a number"),
            ("acceptor-1:70000", "is not a number"),
            ("acceptor-1:-1", "is not a number"),
            ("acceptor 1:7000", "neither an IP address nor a host name"),
            ("acc/eptor:7000", "neither an IP address nor a host name"),
            (":7000", "neither an IP address nor a host name"),
            ("a..b:7000", "neither an IP address nor a host name"),
            ("10.77.0.300:7000", "not a valid IPv4 address"),
            ("::1:7000", "IPv6 address in brackets"),
            ("[::1:7000", "IPv6 address in brackets"),
            ("http://acceptor-1:7000", "is a URL: write just host:port"),
            ("x:y:7000", "neither an IP address nor a host name"),
            (long.as_str(), "neither an IP address nor a host name"),
            (label.as_str(), "neither an IP address nor a host name"),
            ("héllo:1", "neither an IP address nor a host name"),
        ] {
            let e = s.parse::<PeerAddr>().unwrap_err().to_string();
            assert!(e.contains(says), "{s:?}: {e}");
            assert!(!e.contains('\n') && e.len() < 300, "{s:?}: {e}");
        }
    }

    #[tokio::test]
    async fn resolves_localhost_ipv4_first_and_ip_addresses_without_a_lookup() {
        let found = host("localhost", 7000).resolve(Duration::from_secs(5)).await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 7000), "{found:?}");
        assert!(found.contains(&"127.0.0.1:7000".parse().unwrap()), "{found:?}");
        assert!(found[0].is_ipv4(), "{found:?}");
        let ip: SocketAddr = "10.1.2.3:9".parse().unwrap();
        assert_eq!(PeerAddr::Ip(ip).resolve_one(Duration::ZERO).await.unwrap(), ip);
    }

    #[tokio::test]
    async fn an_unknown_name_fails_at_its_deadline_with_one_line() {
        // .invalid never resolves (RFC 6761).
        let a = host("no-such-node.invalid", 7000);
        let started = std::time::Instant::now();
        let e = a.resolve(Duration::from_millis(300)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let line = e.to_string();
        assert!(line.starts_with("cannot resolve no-such-node.invalid:7000 within 300ms"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn the_route_to_loopback_starts_at_loopback() {
        assert_eq!(local_ip_toward("127.0.0.1:9".parse().unwrap()).unwrap(), IpAddr::from([127, 0, 0, 1]));
    }
}
