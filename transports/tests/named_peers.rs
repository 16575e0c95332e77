//! Peers known by host name (`localhost:PORT` here; service names in docker): reached
//! through a lookup at each fresh connection, so a peer that restarts is looked up again
//! when its connection failed; a name that does not resolve costs dropped messages, never
//! a wait in `send`; a named peer claiming a new address is looked up again. A peer that
//! says `Hello` (it restarted) is dialled afresh, even where the old connection still
//! takes every write. And what a node stamps as `reply_to`.

use ballot_core::{Message, NodeId};
use ballot_transports::{
    free_loopback_ports, Envelope, NetOptions, PeerAddr, SocketTransport, TcpTransport, ZmqTransport,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn opts() -> NetOptions {
    NetOptions { connect_timeout: Duration::from_millis(500), ..NetOptions::default() }
}

/// What these tests need of a transport beyond [`SocketTransport`]: binding with the
/// tests' short connect deadline.
trait Endpoint: SocketTransport {
    async fn bind_at(id: NodeId, listen: SocketAddr) -> std::io::Result<Self> {
        Self::listen(id, listen, opts()).await
    }
}

impl<T: SocketTransport> Endpoint for T {}

/// Binds `listen`, retrying while the port is still held by an endpoint just dropped.
async fn bind_retrying<T: Endpoint>(id: NodeId, listen: SocketAddr) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        match T::bind_at(id, listen).await {
            Ok(t) => return t,
            Err(_) if Instant::now() < end => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("cannot bind {listen} again: {e}"),
        }
    }
}

/// Sends from `from` to `to` every 50 ms until `to` receives one, within the deadline.
async fn deliver<T: Endpoint>(from: &T, to: &mut T, what: &str) -> Envelope {
    let end = Instant::now() + DEADLINE;
    let mut n = 0;
    loop {
        n += 1;
        let _ = from.send(Envelope::new(from.local(), to.local(), Message::Progress { applied: n }));
        // A redial closes the old connection in use, which its receiver takes for a
        // crash notice (`PeerDown`, a hint the roles can afford to get wrong): not a
        // delivery.
        if let Ok(Some(env)) = tokio::time::timeout(Duration::from_millis(50), to.recv()).await {
            if env.msg != Message::PeerDown {
                return env;
            }
        }
        assert!(Instant::now() < end, "{what}: nothing arrived within {DEADLINE:?}");
    }
}

async fn found_again_after_restart<T: Endpoint>() {
    let at = free_loopback_ports(1).unwrap()[0];
    let named: PeerAddr = format!("localhost:{}", at.port()).parse().unwrap();
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let mut acceptor = T::bind_at(a, at).await.unwrap();
    let proposer = T::bind_at(p, any()).await.unwrap();
    proposer.set_peer(a, named.clone());
    let got = deliver(&proposer, &mut acceptor, "first delivery by name").await;
    assert_eq!(got.from, p);
    let before = proposer.stats();
    assert!(before.name_lookups >= 1, "{before:?}");

    // The peer dies and comes back; the old connection fails and the name is looked up
    // again for the new one.
    drop(acceptor);
    let mut acceptor: T = bind_retrying(a, at).await;
    deliver(&proposer, &mut acceptor, "delivery after the restart").await;
    let after = proposer.stats();
    assert!(after.name_lookups > before.name_lookups, "looked up again: {before:?} -> {after:?}");
    assert_eq!(after.name_lookup_failures, 0, "{after:?}");
}

#[tokio::test]
async fn tcp_finds_a_named_peer_again_after_it_restarts() {
    found_again_after_restart::<TcpTransport>().await;
}

#[tokio::test]
async fn zmq_finds_a_named_peer_again_after_it_restarts() {
    found_again_after_restart::<ZmqTransport>().await;
}

async fn unresolvable_then_moved<T: Endpoint>() {
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let proposer = T::bind_at(p, any()).await.unwrap();
    // .invalid never resolves (RFC 6761).
    proposer.set_peer(a, "nobody.invalid:7000".parse().unwrap());
    for i in 0..50 {
        let started = Instant::now();
        let _ = proposer.send(Envelope::new(p, a, Message::Progress { applied: i }));
        assert!(started.elapsed() < Duration::from_millis(100), "send waited {:?}", started.elapsed());
    }
    let end = Instant::now() + DEADLINE;
    while proposer.stats().name_lookup_failures == 0 {
        assert!(Instant::now() < end, "no failed lookup counted: {:?}", proposer.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proposer.stats().dropped_unreachable >= 1, "{:?}", proposer.stats());
    // Told the right address, it gets through.
    let mut acceptor = T::bind_at(a, any()).await.unwrap();
    let real = acceptor.local_addr();
    proposer.set_peer(a, format!("localhost:{}", real.port()).parse().unwrap());
    deliver(&proposer, &mut acceptor, "delivery once the name resolves").await;
}

#[tokio::test]
async fn tcp_drops_messages_to_a_name_that_does_not_resolve_without_waiting() {
    unresolvable_then_moved::<TcpTransport>().await;
}

#[tokio::test]
async fn zmq_drops_messages_to_a_name_that_does_not_resolve_without_waiting() {
    unresolvable_then_moved::<ZmqTransport>().await;
}

#[tokio::test]
async fn reply_to_is_the_listen_address_or_what_is_advertised() {
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let mut acceptor = TcpTransport::bind_at(a, any()).await.unwrap();
    let target = acceptor.local_addr();

    let mut proposer = TcpTransport::bind_at(p, any()).await.unwrap();
    proposer.set_peer(a, PeerAddr::from(target));
    assert_eq!(proposer.advertise(), Some(proposer.local_addr()));
    assert_eq!(deliver(&proposer, &mut acceptor, "default").await.reply_to, Some(proposer.local_addr()));

    let elsewhere: SocketAddr = "10.1.2.3:7000".parse().unwrap();
    proposer.set_advertise(Some(elsewhere));
    assert_eq!(deliver(&proposer, &mut acceptor, "advertised").await.reply_to, Some(elsewhere));

    // Bound to 0.0.0.0: nothing dialable to stamp unless told.
    let wildcard = TcpTransport::bind_at(NodeId::proposer(2), "0.0.0.0:0".parse().unwrap()).await.unwrap();
    assert_eq!(wildcard.advertise(), None);
    wildcard.set_peer(a, PeerAddr::from(target));
    let got = deliver(&wildcard, &mut acceptor, "wildcard").await;
    assert_eq!((got.from, got.reply_to), (NodeId::proposer(2), None));
}

/// A peer known by name that starts saying it listens at a new address (it restarted
/// elsewhere, and our old connection may be to an address that silently drops
/// everything) is looked up again and redialled; once, not at every message.
async fn redials_when_a_named_peer_claims_a_new_address<T: Endpoint>() {
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let mut acceptor = T::bind_at(a, any()).await.unwrap();
    let mut proposer = T::bind_at(p, any()).await.unwrap();
    proposer.set_peer(a, format!("localhost:{}", acceptor.local_addr().port()).parse().unwrap());
    acceptor.set_peer(p, PeerAddr::from(proposer.local_addr()));
    deliver(&proposer, &mut acceptor, "first delivery").await;
    deliver(&acceptor, &mut proposer, "an answer from where it resolves").await;
    let before = proposer.stats();

    // Claims another address (what a restarted Swarm task's messages do).
    let elsewhere = SocketAddr::new([127, 0, 0, 9].into(), acceptor.local_addr().port());
    acceptor.set_advertise(Some(elsewhere));
    assert_eq!(deliver(&acceptor, &mut proposer, "the claim").await.reply_to, Some(elsewhere));
    deliver(&proposer, &mut acceptor, "delivery after the redial").await;
    let after = proposer.stats();
    assert_eq!(after.name_lookups, before.name_lookups + 1, "looked up once more: {before:?} -> {after:?}");
    assert!(after.connections_closed > before.connections_closed, "{before:?} -> {after:?}");

    // The same claim again changes nothing.
    for _ in 0..3 {
        deliver(&acceptor, &mut proposer, "the same claim").await;
        deliver(&proposer, &mut acceptor, "steady").await;
    }
    assert_eq!(proposer.stats().name_lookups, after.name_lookups, "{:?}", proposer.stats());
}

#[tokio::test]
async fn tcp_redials_a_named_peer_that_claims_a_new_address() {
    redials_when_a_named_peer_claims_a_new_address::<TcpTransport>().await;
}

#[tokio::test]
async fn zmq_redials_a_named_peer_that_claims_a_new_address() {
    redials_when_a_named_peer_claims_a_new_address::<ZmqTransport>().await;
}

/// A peer that restarted says `Hello`, and the connection held to its previous life is
/// dropped and dialled afresh. What it is for: a killed container's address vanishes
/// with it, so writes into the old connection succeed and are lost for the minutes TCP
/// takes to give up (a restarted acceptor would never hear from the leader again).
/// Here a black hole stands in for the vanished address: a listener that
/// accepts one connection (for ZeroMQ, also answers the handshake), then never reads.
async fn dials_a_restarted_peer_afresh_on_its_hello<T: Endpoint>(zmtp: bool) {
    use ballot_transports::zmq::zmtp as wire;
    use tokio::io::AsyncWriteExt;
    let at = free_loopback_ports(1).unwrap()[0];
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let hole = tokio::net::TcpListener::bind(at).await.unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let hole_task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                Ok((mut conn, _)) = hole.accept() => {
                    if zmtp {
                        let mut hello = wire::greeting().to_vec();
                        hello.extend_from_slice(&wire::ready("PULL"));
                        let _ = conn.write_all(&hello).await;
                    }
                    held.push(conn);
                }
            }
        }
        drop(hole);
        // Holds the connections open and never reads them.
        std::future::pending::<()>().await;
        drop(held);
    });
    let mut proposer = T::bind_at(p, any()).await.unwrap();
    proposer.set_peer(a, PeerAddr::from(at));
    proposer.send(Envelope::new(p, a, Message::Progress { applied: 0 })).unwrap();
    let end = Instant::now() + DEADLINE;
    while proposer.stats().connections_opened == 0 {
        assert!(Instant::now() < end, "the proposer did not connect: {:?}", proposer.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();

    // The acceptor's new life, at the same address. What the proposer sends still goes
    // into the old connection, and is lost.
    let mut acceptor: T = bind_retrying(a, at).await;
    acceptor.set_peer(p, PeerAddr::from(proposer.local_addr()));
    for n in 1..=5 {
        proposer.send(Envelope::new(p, a, Message::Progress { applied: n })).unwrap();
    }
    let swallowed = tokio::time::timeout(Duration::from_millis(300), acceptor.recv()).await;
    assert!(swallowed.is_err(), "the setup must swallow writes, as a vanished address does: {swallowed:?}");

    // It says Hello; once the proposer has read it, the next message dials afresh.
    acceptor.send(Envelope::new(a, p, Message::Hello)).unwrap();
    let end = Instant::now() + DEADLINE;
    loop {
        let got = tokio::time::timeout(DEADLINE, proposer.recv()).await.expect("the Hello arrives").unwrap();
        if got.msg == Message::Hello {
            assert_eq!(got.from, a);
            break;
        }
        assert!(Instant::now() < end, "no Hello within {DEADLINE:?}");
    }
    let before = proposer.stats();
    deliver(&proposer, &mut acceptor, "delivery after the Hello").await;
    let after = proposer.stats();
    assert_eq!(
        after.connections_closed,
        before.connections_closed + 1,
        "the old connection dropped: {before:?} -> {after:?}"
    );
    assert!(after.connections_opened > before.connections_opened, "{before:?} -> {after:?}");
    hole_task.abort();
}

#[tokio::test]
async fn tcp_dials_a_restarted_peer_afresh_on_its_hello() {
    dials_a_restarted_peer_afresh_on_its_hello::<TcpTransport>(false).await;
}

#[tokio::test]
async fn zmq_dials_a_restarted_peer_afresh_on_its_hello() {
    dials_a_restarted_peer_afresh_on_its_hello::<ZmqTransport>(true).await;
}

/// A dial to a port where nobody listens fails at once (for ZeroMQ too, whose crate would
/// retry it until the connect deadline). A peer that was down built up a back-off (up to
/// `backoff_max`, longer than an election timeout); its `Hello` when it is back cuts the
/// wait short, also for a message already waiting it out. Here the connect deadline and
/// the back-off are a minute, longer than the test's deadline.
async fn a_hello_cuts_the_backoff_short<T: Endpoint>() {
    let at = free_loopback_ports(1).unwrap()[0];
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let minute = Duration::from_secs(60);
    let patient = NetOptions { connect_timeout: minute, backoff_min: minute, backoff_max: minute, ..opts() };
    let mut proposer = T::listen(p, any(), patient).await.unwrap();
    proposer.set_peer(a, PeerAddr::from(at));
    // Nobody listens there yet: the dial fails and the next one may wait a minute.
    proposer.send(Envelope::new(p, a, Message::Progress { applied: 1 })).unwrap();
    let end = Instant::now() + DEADLINE;
    while proposer.stats().connect_failures == 0 {
        assert!(Instant::now() < end, "the dial to nobody did not fail at once: {:?}", proposer.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // This one waits out the back-off.
    proposer.send(Envelope::new(p, a, Message::Progress { applied: 2 })).unwrap();

    let mut acceptor: T = bind_retrying(a, at).await;
    acceptor.set_peer(p, PeerAddr::from(proposer.local_addr()));
    acceptor.send(Envelope::new(a, p, Message::Hello)).unwrap();
    let got = tokio::time::timeout(DEADLINE, proposer.recv()).await.expect("the Hello arrives").unwrap();
    assert_eq!((got.from, got.msg), (a, Message::Hello));
    let waited = tokio::time::timeout(DEADLINE, acceptor.recv())
        .await
        .expect("the message waiting out the back-off is sent once the peer says Hello");
    assert_eq!(waited.unwrap().msg, Message::Progress { applied: 2 });
}

#[tokio::test]
async fn tcp_a_hello_cuts_the_backoff_short() {
    a_hello_cuts_the_backoff_short::<TcpTransport>().await;
}

#[tokio::test]
async fn zmq_a_hello_cuts_the_backoff_short() {
    a_hello_cuts_the_backoff_short::<ZmqTransport>().await;
}
