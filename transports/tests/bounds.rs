//! What a listener holds stays bounded whatever connects to it: connections over
//! `max_inbound` are closed at once and counted, a silent inbound connection is closed
//! after `idle_timeout` (and a quiet peer is still heard afterwards: its sender lets the
//! connection go first), and senders learned from `reply_to` are capped at
//! `max_learned_peers`, the least recently heard forgotten. Counted in entries and
//! connections, never in RSS or time.

use ballot_core::{Message, NodeId};
use ballot_transports::{wire, Envelope, NetOptions, SocketTransport, TcpTransport, Transport, ZmqTransport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Only so that a broken build fails instead of hanging; nothing asserts how long
/// anything took.
const DEADLINE: Duration = Duration::from_secs(60);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn eventually(what: &str, ok: impl Fn() -> bool) {
    let until = tokio::time::Instant::now() + DEADLINE;
    while !ok() {
        assert!(tokio::time::Instant::now() < until, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn the_defaults_bound_every_listener() {
    let o = NetOptions::default();
    assert_eq!(o.idle_timeout, Some(ballot_transports::link::DEFAULT_IDLE_TIMEOUT));
    assert!(o.idle_timeout.unwrap() >= Duration::from_secs(5), "far above the 50 ms heartbeat");
    assert_eq!((o.max_inbound, o.max_learned_peers), (1024, 1024));
}

#[tokio::test]
async fn thousands_of_idle_connections_hold_at_most_the_cap() {
    const CAP: usize = 100;
    const OPENED: usize = 3000;
    let opts = NetOptions { max_inbound: CAP, idle_timeout: None, ..NetOptions::default() };
    let mut node = TcpTransport::bind(NodeId::learner(1), any(), BTreeMap::new(), opts).await.unwrap();
    let at = node.local_addr();
    let mut idle = Vec::new();
    for _ in 0..OPENED {
        idle.push(TcpStream::connect(at).await.unwrap());
    }
    let refused = (OPENED - CAP) as u64;
    eventually("connections over the cap refused", || node.stats().connections_refused == refused).await;
    let s = node.stats();
    assert_eq!(s.connections_opened - s.connections_closed, CAP as u64, "{s:?}");
    // Those over the cap were closed at once: they read the end of the stream.
    let mut closed = 0;
    for c in &mut idle[CAP..] {
        let mut b = [0u8; 1];
        if matches!(tokio::time::timeout(DEADLINE, c.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, OPENED - CAP);
    // Once they go, a real peer gets a slot again.
    drop(idle);
    eventually("slots freed", || {
        let s = node.stats();
        s.connections_opened == s.connections_closed
    })
    .await;
    let peers = BTreeMap::from([(node.local(), at)]);
    let a = TcpTransport::bind(NodeId::acceptor(1), any(), peers, NetOptions::default()).await.unwrap();
    a.send(Envelope::new(a.local(), node.local(), Message::Progress { applied: 1 })).unwrap();
    let got = tokio::time::timeout(DEADLINE, node.recv()).await.unwrap().unwrap();
    assert_eq!(got.msg, Message::Progress { applied: 1 });
}

async fn idle_then_heard<T: SocketTransport>() {
    let idle = Duration::from_millis(300);
    let opts = NetOptions { idle_timeout: Some(idle), ..NetOptions::default() };
    let mut b = T::listen(NodeId::learner(1), any(), opts.clone()).await.unwrap();
    // A silent connection is closed.
    let mut silent = TcpStream::connect(b.local_addr()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, silent.read_to_end(&mut buf)).await.expect("a silent connection stays open");
    // A peer quiet for longer than the idle timeout is heard afterwards: it let its
    // connection go before the receiver closed it, and dials afresh.
    let a = T::listen(NodeId::acceptor(1), any(), opts).await.unwrap();
    a.set_peer(b.local(), b.local_addr().into());
    for i in 0..4 {
        a.send(Envelope::new(a.local(), b.local(), Message::Progress { applied: i })).unwrap();
        let got = tokio::time::timeout(DEADLINE, b.recv()).await.expect("a message after a quiet spell").unwrap();
        assert_eq!(got.msg, Message::Progress { applied: i });
        tokio::time::sleep(idle * 2).await;
    }
    assert_eq!(a.stats().dropped_unreachable, 0, "{:?}", a.stats());
    let _ = silent.write_all(b"x").await;
}

#[tokio::test]
async fn tcp_closes_an_idle_connection_and_still_hears_a_quiet_peer() {
    idle_then_heard::<TcpTransport>().await;
}

#[tokio::test]
async fn zmq_closes_an_idle_connection_and_still_hears_a_quiet_peer() {
    idle_then_heard::<ZmqTransport>().await;
}

#[tokio::test]
async fn learned_peers_are_capped_and_the_least_recently_heard_go() {
    const CAP: usize = 64;
    const CLIENTS: u16 = 5000;
    let opts = NetOptions { max_learned_peers: CAP, ..NetOptions::default() };
    let configured = BTreeMap::from([(NodeId::acceptor(1), "127.0.0.1:9".parse().unwrap())]);
    let mut node = TcpTransport::bind(NodeId::learner(1), any(), configured, opts).await.unwrap();
    let mut raw = TcpStream::connect(node.local_addr()).await.unwrap();
    let mut frames = Vec::new();
    for i in 1..=CLIENTS {
        let mut env = Envelope::new(NodeId::client(i), node.local(), Message::Progress { applied: i as u64 });
        env.reply_to = Some(SocketAddr::from(([127, 0, 0, 1], 10_000 + i)));
        wire::encode_frame_into(&env, wire::DEFAULT_MAX_FRAME, &mut frames).unwrap();
    }
    raw.write_all(&frames).await.unwrap();
    for _ in 0..CLIENTS {
        tokio::time::timeout(DEADLINE, node.recv()).await.unwrap().unwrap();
    }
    assert_eq!(node.known_peers(), CAP + 1, "the cap of learned peers, and the configured one");
    assert_eq!(node.stats().peers_evicted, (CLIENTS as usize - CAP) as u64);
    assert!(node.peer_addr(NodeId::acceptor(1)).is_some(), "a configured peer is never evicted");
    assert!(node.peer_addr(NodeId::client(CLIENTS)).is_some(), "the most recently heard stays");
    assert!(node.peer_addr(NodeId::client(1)).is_none(), "the least recently heard went");
}
