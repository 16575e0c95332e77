//! Finding the cluster and talking to it: `--peers`, `--discovery` (with `--peers` as the
//! fallback), the nodes' HTTP pages, and the client endpoint on the chosen transport.

use super::{discovery_deadline, CliArgs};
use ballot_core::{NodeId, Role};
use ballot_operator::discovery::{DiscoveryClient, Member};
use ballot_runtime::client::ClientHandle;
use ballot_transports::auth::{Credentials, Identity};
use ballot_transports::{NetKind, NetOptions, PeerAddr, SocketTransport, TcpTransport, ZmqTransport};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// `--peers` as `ballot-node` reads it, and at least one proposer in it.
fn parse_peers(list: &[String]) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    let peers = crate::process::parse_peers(list)?;
    if !peers.keys().any(|n| n.role == Role::Proposer) {
        return Err(
            "--peers names no proposer: give the cluster's nodes, e.g. --peers proposer-1=127.0.0.1:7001,...".into()
        );
    }
    Ok(peers)
}

/// `--discovery`, parsed (a bad one is one line, like every usage error here).
fn discovery_of(args: &CliArgs) -> Result<Option<PeerAddr>, String> {
    args.discovery.as_deref().map(|d| d.parse::<PeerAddr>().map_err(|e| format!("--discovery: {e}"))).transpose()
}

/// A client name for this process: answers must come back to us, not to another client.
fn client_id() -> NodeId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    NodeId::client(2 + (h.finish() % 65_000) as u16)
}

/// The members discovery lists and the leader it names (a failed `/leader` only means no
/// preferred proposer).
async fn ask_discovery(addr: &PeerAddr, deadline: Duration) -> Result<(Vec<Member>, Option<NodeId>), String> {
    let c = DiscoveryClient::new(addr.clone()).with_deadline(deadline);
    let members = c.members().await.map_err(|e| e.to_string())?;
    let leader = c.leader().await.ok().flatten().map(|m| m.node);
    Ok((members, leader))
}

/// Data addresses of the members, and the proposers in the order to try them.
async fn find_cluster(args: &CliArgs) -> Result<(BTreeMap<NodeId, PeerAddr>, Vec<NodeId>), String> {
    let from_peers = |args: &CliArgs| {
        let peers = parse_peers(&args.peers)?;
        let proposers: Vec<NodeId> = peers.keys().copied().filter(|n| n.role == Role::Proposer).collect();
        Ok::<_, String>((peers, proposers))
    };
    let Some(d) = &discovery_of(args)? else { return from_peers(args) };
    let found = ask_discovery(d, discovery_deadline(args)).await.and_then(|(members, leader)| {
        let peers: BTreeMap<NodeId, PeerAddr> =
            members.iter().filter(|m| m.node.role != Role::Client).map(|m| (m.node, m.addr.into())).collect();
        let mut proposers: Vec<NodeId> = peers.keys().copied().filter(|n| n.role == Role::Proposer).collect();
        if proposers.is_empty() {
            return Err(format!("discovery at {d} lists no proposer"));
        }
        // The leader first: it needs no forwarding.
        if let Some(i) = leader.and_then(|l| proposers.iter().position(|&p| p == l)) {
            let l = proposers.remove(i);
            proposers.insert(0, l);
        }
        Ok((peers, proposers))
    });
    match found {
        Ok(f) => Ok(f),
        Err(e) if args.peers.iter().any(|p| !p.trim().is_empty()) => {
            eprintln!("ballot: warning: {e}; using --peers instead");
            from_peers(args)
        }
        Err(e) => Err(format!("{e}, and no --peers to fall back on")),
    }
}

/// Where to listen for answers, and what to tell the nodes as our address: the listen
/// address, or on 0.0.0.0 this host's address on the way to the first proposer.
async fn answer_address(
    args: &CliArgs,
    peers: &BTreeMap<NodeId, PeerAddr>,
    first: Option<NodeId>,
) -> Result<(SocketAddr, Option<IpAddr>), String> {
    let deadline = Duration::from_millis(args.timeout_ms.max(1));
    let listen: PeerAddr = args.listen.parse().map_err(|e| format!("--listen: {e}"))?;
    let listen = listen.resolve_one(deadline).await.map_err(|e| format!("--listen: {e}"))?;
    if !listen.ip().is_unspecified() {
        return Ok((listen, None));
    }
    let Some(toward) = first.and_then(|p| peers.get(&p)) else { return Ok((listen, None)) };
    let toward = toward.resolve_one(deadline).await.map_err(|e| format!("--peers: {e}"))?;
    let ip = ballot_transports::local_ip_toward(toward).map_err(|e| {
        format!(
            "--listen {}: no address of this host reaches {toward} ({e}); give --listen an address the nodes can reach",
            args.listen
        )
    })?;
    Ok((listen, Some(ip)))
}

/// The client's credentials (`--certs`, `$BALLOT_CERTS`), none with `--insecure` (one
/// warning line), and a usage error with neither.
fn client_options(args: &CliArgs) -> Result<NetOptions, String> {
    let dir = crate::process::creds::folder(args.certs.as_deref(), args.insecure)?;
    let credentials = match dir {
        Some(dir) => Some(Arc::new(Credentials::load(&dir, Identity::Client).map_err(|e| e.to_string())?)),
        None => {
            eprintln!("{}", crate::process::creds::insecure_warning("ballot"));
            None
        }
    };
    Ok(NetOptions { credentials, ..NetOptions::default() })
}

pub(super) async fn connect(args: &CliArgs) -> Result<ClientHandle, String> {
    let opts = client_options(args)?;
    let (peers, proposers) = find_cluster(args).await?;
    let members: Vec<NodeId> = peers.keys().copied().filter(|n| n.role != Role::Client).collect();
    let me = client_id();
    let (listen, advertise) = answer_address(args, &peers, proposers.first().copied()).await?;
    let client = match args.transport {
        NetKind::Tcp => endpoint::<TcpTransport>(me, (listen, advertise), peers, proposers, opts).await?,
        NetKind::Zmq => endpoint::<ZmqTransport>(me, (listen, advertise), peers, proposers, opts).await?,
    };
    // The nodes were not started with our address: tell every one where we listen.
    client.announce(members);
    Ok(client)
}

/// Every node to show and its HTTP address, if known: discovery's members (when
/// `--discovery` answers) and `--http-peers`.
pub(super) async fn find_http(args: &CliArgs) -> Result<BTreeMap<NodeId, Option<PeerAddr>>, String> {
    let given = ballot_operator::pages::parse_http_peers(&args.http_peers)?;
    let mut nodes: BTreeMap<NodeId, Option<PeerAddr>> = BTreeMap::new();
    match &discovery_of(args)? {
        Some(d) => match ask_discovery(d, discovery_deadline(args)).await {
            Ok((members, _)) => nodes.extend(
                members.iter().filter(|m| m.node.role != Role::Client).map(|m| (m.node, m.http.map(PeerAddr::from))),
            ),
            Err(e) if !given.is_empty() => eprintln!("ballot: warning: {e}; using --http-peers only"),
            Err(e) => return Err(format!("{e}, and no --http-peers to fall back on")),
        },
        None if given.is_empty() => {
            return Err("give --discovery ADDR or --http-peers name=host:port,... to find the nodes' HTTP pages".into())
        }
        None => {}
    }
    for (id, addr) in given {
        let known = nodes.entry(id).or_insert(None);
        known.get_or_insert(addr);
    }
    Ok(nodes)
}

/// The client endpoint on transport `T`: bound on `listen`, telling the nodes `advertise`
/// (on 0.0.0.0), knowing the members at `peers`. Addresses are given after binding: a host
/// name stays a name the transport looks up at each fresh connection.
async fn endpoint<T: SocketTransport>(
    me: NodeId,
    (listen, advertise): (SocketAddr, Option<IpAddr>),
    peers: BTreeMap<NodeId, PeerAddr>,
    proposers: Vec<NodeId>,
    opts: NetOptions,
) -> Result<ClientHandle, String> {
    let mut t = T::listen(me, listen, opts).await.map_err(|e| format!("cannot listen on {listen} for answers: {e}"))?;
    if let Some(ip) = advertise {
        let port = t.local_addr().port();
        t.set_advertise(Some(SocketAddr::new(ip, port)));
    }
    // Answers are taken from the members only (the nodes --peers or discovery names).
    let members = peers.keys().copied().collect();
    for (id, addr) in peers {
        t.set_peer(id, addr);
    }
    Ok(ClientHandle::spawn(t, proposers, members))
}
