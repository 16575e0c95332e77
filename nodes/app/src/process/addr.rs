//! Addresses at start: the address flags parsed, every name looked up once, and what a
//! node advertises as where to answer it.

use super::args::NodeArgs;
use ballot_core::NodeId;
use ballot_transports::PeerAddr;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What a node stamps on its messages as where to answer it (and registers with
/// discovery): `--advertise` (its port 0 meaning the listen port), else the listen
/// address, else, when listening on an unspecified address, this host's address towards
/// its peers (`toward`), if known.
pub(super) fn advertised(bound: SocketAddr, given: Option<SocketAddr>, toward: Option<IpAddr>) -> Option<SocketAddr> {
    match given {
        Some(a) if a.port() == 0 => Some(SocketAddr::new(a.ip(), bound.port())),
        Some(a) => Some(a),
        None if bound.ip().is_unspecified() => toward.map(|ip| SocketAddr::new(ip, bound.port())),
        None => Some(bound),
    }
}

/// The address flags, parsed (here rather than by clap, so that a bad one is one line).
pub(super) struct AddrFlags {
    pub listen: Option<PeerAddr>,
    pub advertise: Option<PeerAddr>,
    pub http: Option<PeerAddr>,
    pub discovery: Option<PeerAddr>,
}

impl AddrFlags {
    pub(crate) fn parse(args: &NodeArgs) -> Result<AddrFlags, String> {
        let flag = |name: &str, v: &Option<String>| -> Result<Option<PeerAddr>, String> {
            v.as_deref().map(|v| v.parse::<PeerAddr>().map_err(|e| format!("{name}: {e}"))).transpose()
        };
        Ok(AddrFlags {
            listen: flag("--listen", &args.listen)?,
            advertise: flag("--advertise", &args.advertise)?,
            http: flag("--http", &args.http)?,
            discovery: flag("--discovery", &args.discovery)?,
        })
    }
}

/// Every name the node needs, looked up at once at start within `deadline`.
pub(super) struct Resolved {
    /// Each peer's address now, or why not (a warning: it is looked up again when dialled).
    pub peers: BTreeMap<NodeId, Result<SocketAddr, String>>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// Looks every name up at once. The node's own addresses must resolve within `deadline`
/// (an error naming the flag); a peer that does not only has its reason kept.
pub(super) async fn resolve_at_start(
    flags: &AddrFlags,
    peers: &BTreeMap<NodeId, PeerAddr>,
    deadline: Duration,
) -> Result<Resolved, String> {
    use futures_util::future::{join_all, OptionFuture};
    let own = |flag: &'static str, a: Option<PeerAddr>| {
        OptionFuture::from(a.map(|a| async move { a.resolve_one(deadline).await.map_err(|e| format!("{flag}: {e}")) }))
    };
    let peer_lookups = join_all(
        peers.iter().map(|(&id, a)| async move { (id, a.resolve_one(deadline).await.map_err(|e| e.to_string())) }),
    );
    let (peers, listen, advertise, http) = tokio::join!(
        peer_lookups,
        own("--listen", flags.listen.clone()),
        own("--advertise", flags.advertise.clone()),
        own("--http", flags.http.clone()),
    );
    Ok(Resolved {
        peers: peers.into_iter().collect(),
        listen: listen.transpose()?,
        advertise: advertise.transpose()?,
        http: http.transpose()?,
    })
}

impl Resolved {
    /// One warning per peer outside this process whose name did not resolve: messages to
    /// it are dropped until it does.
    pub(crate) fn warn_unresolved(&self, ours: &[NodeId]) {
        for (id, r) in &self.peers {
            if let Err(e) = r {
                if !ours.contains(id) {
                    tracing::warn!(peer = %id, "{e}; messages to it are dropped until it resolves (looked up again at each connection)");
                }
            }
        }
    }

    /// Where this host's interface towards the others is (for a node on 0.0.0.0 without
    /// --advertise): the route to the first peer that resolved and is not in this process.
    pub(crate) fn toward(&self, ours: &[NodeId]) -> Option<IpAddr> {
        self.peers
            .iter()
            .filter(|(id, _)| !ours.contains(id))
            .find_map(|(_, r)| r.as_ref().ok())
            .and_then(|&a| ballot_transports::local_ip_toward(a).ok())
    }

    /// Where node `id` of this process listens and what it advertises: `--listen` and
    /// `--advertise` for a process of one node, else its address in `--peers`.
    pub(crate) fn endpoint_of(
        &self,
        id: NodeId,
        nodes_here: usize,
    ) -> Result<(SocketAddr, Option<SocketAddr>), String> {
        match self.listen {
            Some(l) if nodes_here == 1 => Ok((l, self.advertise)),
            _ => match &self.peers[&id] {
                Ok(a) => Ok((*a, None)),
                Err(e) => Err(format!("--peers: {e} (the address of {id}, which this process runs)")),
            },
        }
    }
}

/// The HTTP address registered with discovery: on 0.0.0.0, at the advertised host of the
/// process's first node (`reach`).
pub(super) fn http_reach(http: SocketAddr, reach: Option<SocketAddr>) -> SocketAddr {
    match reach {
        Some(reach) if http.ip().is_unspecified() && !reach.ip().is_unspecified() => {
            SocketAddr::new(reach.ip(), http.port())
        }
        _ => http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_address_registered_is_at_the_advertised_host() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(http_reach(a("0.0.0.0:8080"), Some(a("10.0.1.5:7000"))), a("10.0.1.5:8080"));
        assert_eq!(http_reach(a("127.0.0.1:8080"), Some(a("10.0.1.5:7000"))), a("127.0.0.1:8080"));
        assert_eq!(http_reach(a("0.0.0.0:8080"), Some(a("0.0.0.0:7000"))), a("0.0.0.0:8080"));
        assert_eq!(http_reach(a("0.0.0.0:8080"), None), a("0.0.0.0:8080"));
    }

    #[test]
    fn listen_flags_are_for_a_process_of_one_node() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let r = Resolved {
            peers: BTreeMap::from([
                (NodeId::proposer(1), Ok(a("10.0.0.1:7001"))),
                (NodeId::acceptor(1), Err("no".into())),
            ]),
            listen: Some(a("0.0.0.0:7001")),
            advertise: Some(a("10.0.0.9:0")),
            http: None,
        };
        assert_eq!(r.endpoint_of(NodeId::proposer(1), 1).unwrap(), (a("0.0.0.0:7001"), Some(a("10.0.0.9:0"))));
        assert_eq!(r.endpoint_of(NodeId::proposer(1), 3).unwrap(), (a("10.0.0.1:7001"), None));
        let e = r.endpoint_of(NodeId::acceptor(1), 3).unwrap_err();
        assert_eq!(e, "--peers: no (the address of acceptor-1, which this process runs)");
    }
}
