//! The zmq transport with credentials (CURVE) against the attacks it exists for, and our
//! own outgoing ZMTP against a hostile server:
//! - a peer without credentials (the NULL mechanism), or with a key that is not on the
//!   allow-list, is refused and counted, and nothing it sends is delivered;
//! - a peer with acceptor-3's key that sends as acceptor-1 has the frame dropped and
//!   counted;
//! - garbage, truncated, oversized or stalled CURVE handshakes close their connection
//!   and are counted; the node goes on serving;
//! - a server that answers our dial with a greeting and a header claiming 4 TiB costs the
//!   dial, counted, and no memory.

use ballot_core::{Message, NodeId};
use ballot_transports::auth::{generate, Credentials, Identity};
use ballot_transports::zmq::zmtp::{self, Mechanism};
use ballot_transports::{Envelope, NetOptions, Transport, WireStats, ZmqTransport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A credentials folder for a few nodes, removed on drop.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn new(tag: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("ballot-zmq-curve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = [NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(3), NodeId::learner(1)];
        generate(&dir, &nodes).expect("credentials");
        Cluster { dir }
    }

    fn creds(&self, who: Identity) -> Credentials {
        Credentials::load(&self.dir, who).expect("load credentials")
    }

    fn opts(&self, who: Identity) -> NetOptions {
        with(Some(self.creds(who)))
    }

    async fn node(&self, id: NodeId) -> ZmqTransport {
        ZmqTransport::bind(id, any(), BTreeMap::new(), self.opts(Identity::of(id))).await.expect("bind")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn with(creds: Option<Credentials>) -> NetOptions {
    NetOptions {
        connect_timeout: Duration::from_millis(500),
        backoff_max: Duration::from_millis(50),
        credentials: creds.map(Arc::new),
        ..NetOptions::default()
    }
}

async fn insecure(id: NodeId) -> ZmqTransport {
    ZmqTransport::bind(id, any(), BTreeMap::new(), with(None)).await.expect("bind")
}

fn msg(i: u64) -> Message {
    Message::CatchUp { applied: i }
}

/// Waits until `ok` holds for the counters of `t`.
async fn wait_for(t: &ZmqTransport, what: &str, ok: impl Fn(&WireStats) -> bool) -> WireStats {
    let end = Instant::now() + DEADLINE;
    loop {
        let s = t.stats();
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < end, "{what}: not within {DEADLINE:?}: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `from -> to.local()` until one arrives (a dial after a refused one may lose the
/// first few); returns what arrived.
async fn deliver(from: &ZmqTransport, sender: NodeId, to: &mut ZmqTransport) -> Envelope {
    let end = Instant::now() + DEADLINE;
    for i in 0.. {
        let _ = from.send(Envelope::new(sender, to.local(), msg(i)));
        if let Ok(Some(env)) = tokio::time::timeout(Duration::from_millis(20), to.recv()).await {
            return env;
        }
        assert!(Instant::now() < end, "nothing from {sender} arrived: {:?} -> {:?}", from.stats(), to.stats());
    }
    unreachable!()
}

/// Nothing arrives at `t` for a while.
async fn nothing_arrives(t: &mut ZmqTransport, what: &str) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(300), t.recv()).await {
        panic!("{what}: {got:?} was delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_nodes_talk_both_ways_and_prove_who_they_are() {
    let c = Cluster::new("talk");
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let (mut tp, mut ta) = (c.node(p).await, c.node(a).await);
    tp.set_peer(a, ta.local_addr());
    ta.set_peer(p, tp.local_addr());
    for i in 0..500 {
        tp.send(Envelope::new(p, a, msg(i))).unwrap();
        ta.send(Envelope::new(a, p, msg(i))).unwrap();
    }
    for (rx, from) in [(&mut ta, p), (&mut tp, a)] {
        for i in 0..500 {
            let env = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("delivery").unwrap();
            assert_eq!((env.from, env.msg), (from, msg(i)));
        }
    }
    for s in [tp.stats(), ta.stats()] {
        assert_eq!((s.frames_sent, s.frames_received), (500, 500), "{s:?}");
        assert_eq!((s.refused_handshake, s.bad_handshake, s.dropped_identity, s.dropped_decode), (0, 0, 0, 0), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_peer_and_a_secure_node_refuse_each_other() {
    let c = Cluster::new("null");
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let mut secure = c.node(a).await;
    let mut open = insecure(p).await;
    open.set_peer(a, secure.local_addr());
    secure.set_peer(p, open.local_addr());
    for i in 0..20 {
        let _ = open.send(Envelope::new(p, a, msg(i)));
        let _ = secure.send(Envelope::new(a, p, msg(i)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Each side refuses the other's dial (NULL against CURVE), and its own dial is refused.
    wait_for(&secure, "the secure node refuses NULL", |s| s.refused_handshake >= 2).await;
    wait_for(&open, "the insecure node refuses CURVE", |s| s.refused_handshake >= 2).await;
    nothing_arrives(&mut secure, "from the insecure peer").await;
    nothing_arrives(&mut open, "from the secure node").await;
    let s = secure.stats();
    assert_eq!((s.frames_received, s.frames_sent), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_not_on_the_allow_list_is_refused() {
    let (ours, theirs) = (Cluster::new("allow-ours"), Cluster::new("allow-theirs"));
    let (p, l) = (NodeId::proposer(1), NodeId::learner(1));
    let mut learner = ours.node(l).await;
    // Another cluster's proposer key, though it knows our learner's key.
    let mut stranger = theirs.creds(Identity::Node(p));
    stranger.curve_allow = ours.creds(Identity::Node(p)).curve_allow;
    let t = ZmqTransport::bind(p, any(), BTreeMap::new(), with(Some(stranger))).await.unwrap();
    t.set_peer(l, learner.local_addr());
    for i in 0..10 {
        let _ = t.send(Envelope::new(p, l, msg(i)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for(&learner, "the learner refuses a key it does not know", |s| s.refused_handshake >= 1).await;
    // It was told why (ERROR), so its own counters say refused, not broken.
    wait_for(&t, "the stranger hears the refusal", |s| s.refused_handshake >= 1).await;
    nothing_arrives(&mut learner, "from a key not on the allow-list").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_in_another_nodes_name_is_dropped_and_counted() {
    let c = Cluster::new("identity");
    let (a1, a3, l) = (NodeId::acceptor(1), NodeId::acceptor(3), NodeId::learner(1));
    let mut learner = c.node(l).await;
    let liar = c.node(a3).await;
    liar.set_peer(l, learner.local_addr());
    // acceptor-3's key, acceptor-1's name.
    liar.send(Envelope::new(a1, l, msg(1))).unwrap();
    let s = wait_for(&learner, "the lie is counted", |s| s.dropped_identity == 1).await;
    assert_eq!(s.frames_received, 0, "{s:?}");
    nothing_arrives(&mut learner, "as acceptor-1 from acceptor-3's key").await;
    // The same connection (or the next) still carries acceptor-3's own frames.
    assert_eq!(deliver(&liar, a3, &mut learner).await.from, a3);
    // A client's key may speak for any client, and for no node.
    let client = ZmqTransport::bind(NodeId::client(7), any(), BTreeMap::new(), c.opts(Identity::Client)).await.unwrap();
    client.set_peer(l, learner.local_addr());
    assert_eq!(deliver(&client, NodeId::client(9), &mut learner).await.from, NodeId::client(9));
    client.send(Envelope::new(NodeId::proposer(1), l, msg(1))).unwrap();
    wait_for(&learner, "a client posing as a proposer", |s| s.dropped_identity == 2).await;
}

/// Writes `bytes` on a fresh connection to `addr` and waits until the node closes it.
async fn closed_after(addr: SocketAddr, bytes: &[u8], hold_open: bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The node may close before it has read everything (noise): a failed write is fine.
    let _ = s.write_all(bytes).await;
    if !hold_open {
        let _ = s.shutdown().await;
    }
    let mut buf = [0u8; 4096];
    let end = Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => assert!(Instant::now() < end, "the node never closed the connection"),
            Err(_) => panic!("the node kept a bad handshake open past {DEADLINE:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_oversized_and_stalled_curve_handshakes_are_closed_and_counted() {
    let c = Cluster::new("garbage");
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    let (tp, mut ta) = (c.node(p).await, c.node(a).await);
    tp.set_peer(a, ta.local_addr());
    let addr = ta.local_addr();
    let greeting = zmtp::greeting_for(Mechanism::Curve, false).to_vec();
    let hello_head = [zmtp::COMMAND, 200];
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("noise instead of a greeting", (0..=255u8).cycle().take(5000).collect(), false),
        (
            "a message frame instead of HELLO",
            [greeting.clone(), zmtp::message_header(5), b"hello".to_vec()].concat(),
            false,
        ),
        (
            "a HELLO header claiming 4 TiB",
            [greeting.clone(), vec![zmtp::COMMAND | zmtp::LONG], (4u64 << 40).to_be_bytes().to_vec()].concat(),
            true,
        ),
        ("half a HELLO, then gone", [greeting.clone(), hello_head.to_vec(), vec![5; 100]].concat(), false),
        ("half a HELLO, then silence", [greeting.clone(), hello_head.to_vec(), vec![5; 100]].concat(), true),
        ("a greeting, then silence", greeting.clone(), true),
        (
            "a HELLO of the right size and shape that does not open",
            {
                let mut hello = b"\x05HELLO\x01\x00".to_vec();
                hello.resize(200, 0x5a);
                [greeting.clone(), hello_head.to_vec(), hello].concat()
            },
            false,
        ),
    ];
    let before = ta.stats();
    for (what, bytes, hold) in &cases {
        eprintln!("case: {what}");
        closed_after(addr, bytes, *hold).await;
    }
    let s = wait_for(&ta, "every case counted", |s| {
        s.bad_handshake + s.refused_handshake >= before.bad_handshake + before.refused_handshake + cases.len() as u64
    })
    .await;
    assert_eq!(
        s.refused_handshake,
        before.refused_handshake + 1,
        "only the HELLO that does not open is a refusal: {s:?}"
    );
    assert_eq!(s.frames_received, 0);
    assert_eq!(deliver(&tp, p, &mut ta).await.from, p, "the node still serves its peers");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().strip_suffix("kB"));
    kb.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// A server that answers every connection with `answer` and then holds it.
async fn hostile_server(answer: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind(any()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(&answer).await;
            held.push(s);
        }
    });
    (addr, task)
}

/// A node dials a peer whose server answers with a greeting and a header claiming 4 TiB:
/// the `zeromq` crate's dial reserved that and aborted the process.
async fn a_dial_answered_with_4_tib(node: ZmqTransport, mut other: ZmqTransport, greeting: [u8; 64], flags: u8) {
    let answer = [greeting.to_vec(), vec![flags | zmtp::LONG], (4u64 << 40).to_be_bytes().to_vec()].concat();
    assert_eq!(answer.len(), 73);
    let (addr, server) = hostile_server(answer).await;
    let victim = NodeId::acceptor(3);
    node.set_peer(victim, addr);
    node.set_peer(other.local(), other.local_addr());
    let rss = rss_bytes();
    for i in 0..5 {
        let _ = node.send(Envelope::new(node.local(), victim, msg(i)));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let s = wait_for(&node, "the hostile dials counted", |s| s.bad_handshake >= 2 && s.connect_failures >= 2).await;
    assert_eq!(s.connections_opened, 0, "no connection to the hostile server counts as opened: {s:?}");
    let grown = rss_bytes().saturating_sub(rss);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
    assert_eq!(deliver(&node, node.local(), &mut other).await.from, node.local(), "the node still talks to others");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_dial_answered_with_a_4_tib_header_costs_nothing() {
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    for flags in [zmtp::COMMAND, 0] {
        a_dial_answered_with_4_tib(insecure(p).await, insecure(a).await, zmtp::greeting(), flags).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_dial_answered_with_a_4_tib_header_costs_nothing() {
    let c = Cluster::new("4tib");
    let (p, a) = (NodeId::proposer(1), NodeId::acceptor(1));
    for flags in [zmtp::COMMAND, 0] {
        let server_greeting = zmtp::greeting_for(Mechanism::Curve, true);
        a_dial_answered_with_4_tib(c.node(p).await, c.node(a).await, server_greeting, flags).await;
    }
}
