//! One conformance suite for every [`Transport`], run with a single call, in the manner of
//! openraft's `testing/log/suite.rs`: a transport supplies a [`Harness`] (how to start,
//! restart and reach its nodes) and calls [`run_suite`].
//!
//! Cases that write raw bytes to a node's port are skipped, with a note on stderr, when
//! the harness has no socket to offer (the in-memory transport). They write through a
//! [`RawSession`]: a connection past the transport's handshake with its framing, so that
//! on a secure harness (CURVE) the bytes reach what lies behind a real handshake. No case measures time:
//! every wait has a generous deadline so that a broken transport fails instead of hanging.
//! Each case uses its own node ids, so one harness serves the whole suite.

mod harness;
mod raw;

pub use self::harness::{plain_dial, MemHarness, NetHarness, NetNode, TcpHarness, ZmqHarness};
pub use self::raw::{Framing, PlainDial, RawDial, RawIo, RawSession};
use crate::envelope::{Envelope, Transport};
use crate::link::WireStats;
use crate::wire;
use async_trait::async_trait;
use ballot_core::{Ballot, Command, Message, NodeId, PROTOCOL_VERSION};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Long enough never to fire on a healthy machine, short enough that a broken transport
/// fails the test rather than hanging it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How the suite drives one kind of transport.
#[async_trait]
pub trait Harness: Send {
    /// A short name for messages.
    fn name(&self) -> &'static str;
    /// Starts these nodes, each knowing every other's address.
    async fn start(&mut self, ids: &[NodeId]) -> Vec<Box<dyn Transport>>;
    /// Starts `id` again at the address it had; its previous endpoint has been dropped.
    /// The other nodes are not told anything.
    async fn restart(&mut self, id: NodeId) -> Box<dyn Transport>;
    /// Where raw bytes reach `id`, if it listens on a socket.
    fn raw_addr(&self, _id: NodeId) -> Option<SocketAddr> {
        None
    }
    /// The counters of `id`'s current endpoint, if the transport keeps them.
    fn stats(&self, _id: NodeId) -> Option<WireStats> {
        None
    }
    /// Raw sessions to `id`, past its handshake and with its framing, if it listens on a
    /// socket.
    fn raw_dial(&self, _id: NodeId) -> Option<Arc<dyn RawDial>> {
        None
    }
}

/// Runs every case, in order.
pub async fn run_suite<H: Harness>(mut h: H) {
    delivery_both_ways_in_order(&mut h).await;
    delivery_resumes_after_restart(&mut h).await;
    a_crash_is_noticed(&mut h).await;
    large_batch_gets_through(&mut h).await;
    garbage_bytes_are_survived(&mut h).await;
    unknown_version_is_refused(&mut h).await;
    peer_vanishing_mid_frame_is_survived(&mut h).await;
    silent_connections_block_nobody(&mut h).await;
    oversized_prefix_is_refused(&mut h).await;
    trace_context_travels(&mut h).await;
}

fn seq(i: u64) -> Message {
    Message::CatchUp { applied: i }
}

fn seq_of(env: &Envelope) -> Option<u64> {
    match env.msg {
        Message::CatchUp { applied } => Some(applied),
        _ => None,
    }
}

/// Two node ids of their own for case `case`.
fn pair(case: u16) -> (NodeId, NodeId) {
    (NodeId::proposer(case), NodeId::acceptor(case))
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing after {DEADLINE:?}"),
    }
}

async fn recv(t: &mut dyn Transport, what: &str) -> Envelope {
    within(what, t.recv()).await.unwrap_or_else(|| panic!("{what}: transport closed"))
}

/// Sends `from -> to` messages numbered `first..first+n` and checks that they all
/// arrive, in order, skipping stragglers numbered below `first`.
async fn exchange(tx: &dyn Transport, rx: &mut dyn Transport, first: u64, n: u64, what: &str) {
    let (from, to) = (tx.local(), rx.local());
    for i in first..first + n {
        tx.send(Envelope::new(from, to, seq(i))).unwrap_or_else(|e| panic!("{what}: send: {e}"));
    }
    let mut next = first;
    while next < first + n {
        let env = recv(rx, what).await;
        assert_eq!(env.to, to, "{what}: delivered to the wrong node");
        if env.from != from || env.msg == Message::PeerDown {
            // Injected by a hostile client (see `hostile_bytes`), or the notice that the
            // sender's previous life went away: not this link's traffic.
            continue;
        }
        match seq_of(&env) {
            Some(i) if i < first => continue,
            Some(i) => assert_eq!(i, next, "{what}: out of order"),
            None => panic!("{what}: unexpected {}", env.msg),
        }
        next += 1;
    }
}

/// Sends numbered probes until one arrives: a link coming back may lose the first few.
/// Bounded by count (and each wait by a deadline), not by time.
async fn probe(tx: &dyn Transport, rx: &mut dyn Transport, what: &str) {
    let (from, to) = (tx.local(), rx.local());
    for i in 0..4000 {
        let _ = tx.send(Envelope::new(from, to, seq(i)));
        if let Ok(Some(env)) = timeout(Duration::from_millis(10), rx.recv()).await {
            if env.msg != Message::PeerDown {
                return;
            }
        }
    }
    panic!("{what}: no probe got through");
}

/// Waits until `id`'s counters satisfy `ok`; skips when the harness keeps none.
async fn wait_stats(h: &impl Harness, id: NodeId, what: &str, ok: impl Fn(&WireStats) -> bool) {
    let Some(_) = h.stats(id) else { return };
    within(what, async {
        loop {
            if h.stats(id).is_some_and(|s| ok(&s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until the node closes a raw connection (reads hit end of stream or an error).
async fn wait_closed(mut s: impl AsyncRead + Unpin, what: &str) {
    within(what, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

fn skip(h: &impl Harness, case: &str) {
    eprintln!("conformance[{}]: {case} skipped: this transport has no raw socket", h.name());
}

async fn raw(addr: SocketAddr) -> TcpStream {
    within("raw connect", TcpStream::connect(addr)).await.expect("raw connect")
}

/// A raw session past the handshake.
async fn session(dial: &dyn RawDial) -> RawSession {
    within("raw session", dial.session()).await.expect("raw session")
}

/// Many messages both ways, in order on each link.
pub async fn delivery_both_ways_in_order(h: &mut impl Harness) {
    let (a, b) = pair(1);
    let mut n = h.start(&[a, b]).await;
    let (ta, tb) = two(&mut n);
    exchange(&**ta, &mut **tb, 0, 2000, "a->b").await;
    exchange(&**tb, &mut **ta, 0, 2000, "b->a").await;
    // Both ways at once.
    for i in 0..500 {
        ta.send(Envelope::new(a, b, seq(10_000 + i))).unwrap();
        tb.send(Envelope::new(b, a, seq(10_000 + i))).unwrap();
    }
    for t in [ta, tb] {
        for i in 0..500 {
            assert_eq!(seq_of(&recv(&mut **t, "both ways").await), Some(10_000 + i));
        }
    }
}

/// The W3C trace context an envelope carries arrives as sent, and an envelope without one
/// arrives without one: a vote's trace crosses every transport.
pub async fn trace_context_travels(h: &mut impl Harness) {
    let (a, b) = pair(12);
    let mut n = h.start(&[a, b]).await;
    let (ta, tb) = two(&mut n);
    let tc = crate::TraceContext {
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        tracestate: Some("vendor=1".into()),
        slot: Some(17),
    };
    let mut traced = Envelope::new(a, b, seq(1));
    traced.trace = Some(tc.clone());
    ta.send(traced).unwrap();
    ta.send(Envelope::new(a, b, seq(2))).unwrap();
    let got = recv(&mut **tb, "traced").await;
    assert_eq!((seq_of(&got), got.trace), (Some(1), Some(tc)));
    let got = recv(&mut **tb, "untraced").await;
    assert_eq!((seq_of(&got), got.trace), (Some(2), None));
}

fn two(n: &mut [Box<dyn Transport>]) -> (&mut Box<dyn Transport>, &mut Box<dyn Transport>) {
    let (x, y) = n.split_at_mut(1);
    (&mut x[0], &mut y[0])
}

/// A peer restarted at the same address is reached again, both ways, without
/// restarting the other side.
pub async fn delivery_resumes_after_restart(h: &mut impl Harness) {
    let (a, b) = pair(2);
    let mut n = h.start(&[a, b]).await;
    let mut tb = n.pop().expect("b");
    let mut ta = n.pop().expect("a");
    exchange(&*ta, &mut *tb, 0, 10, "before restart").await;
    for round in 0..3u64 {
        drop(tb);
        // Traffic while the peer is down is lost, but must not wedge the link.
        for i in 0..50 {
            let _ = ta.send(Envelope::new(a, b, seq(i)));
        }
        tb = h.restart(b).await;
        probe(&*ta, &mut *tb, "a->b after restart").await;
        exchange(&*ta, &mut *tb, 100_000 * (round + 1), 100, "a->b after restart").await;
        probe(&*tb, &mut *ta, "b->a after restart").await;
        exchange(&*tb, &mut *ta, 100_000 * (round + 1), 100, "b->a after restart").await;
    }
}

/// A peer that goes away while its links are in use (its process ends) is noticed: the
/// other side's `recv` yields [`Message::PeerDown`] in its name.
pub async fn a_crash_is_noticed(h: &mut impl Harness) {
    let (a, b) = pair(13);
    let mut n = h.start(&[a, b]).await;
    let mut tb = n.pop().expect("b");
    let mut ta = n.pop().expect("a");
    exchange(&*tb, &mut *ta, 0, 10, "before the crash").await;
    exchange(&*ta, &mut *tb, 0, 10, "before the crash").await;
    drop(tb);
    tb = h.restart(b).await;
    let got = within("the crash notice", async {
        loop {
            let env = ta.recv().await.expect("a's transport is open");
            if env.msg == Message::PeerDown {
                return env;
            }
        }
    })
    .await;
    assert_eq!((got.from, got.to), (b, a), "the notice names the peer that went away");
    drop(tb);
}

/// A slot value of 100k votes (several MB) crosses in one frame.
pub async fn large_batch_gets_through(h: &mut impl Harness) {
    let (a, b) = pair(3);
    let mut n = h.start(&[a, b]).await;
    let (ta, tb) = two(&mut n);
    let value: Vec<Command> = (0..100_000)
        .map(|i| Command::Vote {
            request_id: format!("req-{i:06}"),
            client: NodeId::client(1),
            voter: format!("voter-{i:06}"),
            candidate: if i % 3 == 0 { "alice" } else { "bob" }.to_string(),
        })
        .collect();
    let msg = Message::Accept { ballot: Ballot::new(7, 1), slot: 42, value: Arc::new(value) };
    let size = wire::encode_body(&Envelope::new(a, b, msg.clone()), usize::MAX).map(|b| b.len()).unwrap_or(0);
    assert!(size > 2_000_000, "the batch should be several MB, is {size}");
    ta.send(Envelope::new(a, b, msg.clone())).unwrap();
    ta.send(Envelope::new(a, b, seq(1))).unwrap();
    assert_eq!(recv(&mut **tb, "large batch").await.msg, msg);
    assert_eq!(seq_of(&recv(&mut **tb, "after the large batch").await), Some(1));
}

/// Random bytes, and a well-framed body that is not ours, are refused; the node keeps
/// serving its peers.
pub async fn garbage_bytes_are_survived(h: &mut impl Harness) {
    let (a, b) = pair(4);
    let mut n = h.start(&[a, b]).await;
    let (Some(addr), Some(dial)) = (h.raw_addr(b), h.raw_dial(b)) else { return skip(h, "garbage bytes") };
    let before = h.stats(b).unwrap_or_default();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let noise: Vec<u8> = (0..64 * 1024).map(|_| rng.gen()).collect();
    let mut s = raw(addr).await;
    let _ = s.write_all(&noise).await;
    drop(s);
    let mut s = session(&*dial).await;
    let frame = s.frame(b"not a ballot frm");
    s.io.write_all(&frame).await.expect("write");
    wait_closed(s.io, "a frame with bad magic closes its connection").await;
    wait_stats(h, b, "bad magic counted", |s| s.dropped_decode > before.dropped_decode).await;
    let (ta, tb) = two(&mut n);
    exchange(&**ta, &mut **tb, 0, 100, "a->b after garbage").await;
}

/// A frame of another protocol version is dropped, counted, and its connection closed.
pub async fn unknown_version_is_refused(h: &mut impl Harness) {
    let (a, b) = pair(5);
    let mut n = h.start(&[a, b]).await;
    let Some(dial) = h.raw_dial(b) else { return skip(h, "unknown version") };
    let before = h.stats(b).unwrap_or_default();
    let mut body = wire::encode_body(&Envelope::new(a, b, seq(0)), usize::MAX).expect("encode");
    body[2..4].copy_from_slice(&(PROTOCOL_VERSION.wrapping_add(1)).to_be_bytes());
    let mut s = session(&*dial).await;
    let frame = s.frame(&body);
    s.io.write_all(&frame).await.expect("write");
    wait_closed(s.io, "a frame of another version closes its connection").await;
    wait_stats(h, b, "version counted", |s| s.dropped_version == before.dropped_version + 1).await;
    let (ta, tb) = two(&mut n);
    exchange(&**ta, &mut **tb, 0, 100, "a->b after a foreign version").await;
}

/// A client that announces a frame, sends part of it and disappears costs nothing.
pub async fn peer_vanishing_mid_frame_is_survived(h: &mut impl Harness) {
    let (a, b) = pair(6);
    let mut n = h.start(&[a, b]).await;
    let Some(dial) = h.raw_dial(b) else { return skip(h, "vanishing mid-frame") };
    let before = h.stats(b).unwrap_or_default();
    let mut s = session(&*dial).await;
    let mut bytes = s.header(1000);
    bytes.extend_from_slice(&[b'B', b'L', 0, 1, 0x93]);
    s.io.write_all(&bytes).await.expect("write");
    drop(s);
    wait_stats(h, b, "truncated frame counted", |s| s.truncated > before.truncated).await;
    let (ta, tb) = two(&mut n);
    exchange(&**ta, &mut **tb, 0, 100, "a->b after a vanished client").await;
}

/// Connections that open and say nothing (or half a header) block nobody.
pub async fn silent_connections_block_nobody(h: &mut impl Harness) {
    let (a, b) = pair(7);
    let mut n = h.start(&[a, b]).await;
    let (Some(addr), Some(dial)) = (h.raw_addr(b), h.raw_dial(b)) else { return skip(h, "silent connection") };
    let silent = raw(addr).await;
    let mut half = session(&*dial).await;
    let header = half.header(100);
    half.io.write_all(&header[..header.len() / 2]).await.expect("write");
    let greeted = session(&*dial).await;
    let (ta, tb) = two(&mut n);
    exchange(&**ta, &mut **tb, 0, 500, "a->b beside silent connections").await;
    exchange(&**tb, &mut **ta, 0, 500, "b->a beside silent connections").await;
    drop((silent, half, greeted));
}

/// A length beyond the limit is refused before anything is allocated or read.
pub async fn oversized_prefix_is_refused(h: &mut impl Harness) {
    let (a, b) = pair(8);
    let mut n = h.start(&[a, b]).await;
    let Some(dial) = h.raw_dial(b) else { return skip(h, "oversized prefix") };
    let before = h.stats(b).unwrap_or_default();
    for len in [wire::DEFAULT_MAX_FRAME as u64 + 1, u64::MAX / 2] {
        let mut s = session(&*dial).await;
        let mut bytes = s.header(len);
        bytes.extend_from_slice(&[0; 64]);
        s.io.write_all(&bytes).await.expect("write");
        wait_closed(s.io, "an oversized frame closes its connection").await;
    }
    wait_stats(h, b, "oversized counted", |s| s.dropped_oversized >= before.dropped_oversized + 2).await;
    let (ta, tb) = two(&mut n);
    exchange(&**ta, &mut **tb, 0, 100, "a->b after oversized prefixes").await;
}

/// One hostile connection of [`hostile_bytes`].
enum Attack {
    /// Bytes from the first one, no handshake.
    Noise(Vec<u8>),
    /// Bytes right after the handshake.
    After(Vec<u8>),
    /// Part (this share) of the header announcing a body of this length.
    HalfHeader(u64, f64),
    /// A header announcing this length, and nothing after it.
    Header(u64),
    /// A well-framed body.
    Frame(Vec<u8>),
    /// A header announcing this length, then these bytes.
    HeaderThen(u64, Vec<u8>),
}

/// `n` attacks drawn from `rng`: noise, half frames, huge prefixes, foreign versions,
/// mutations of `valid`, valid headers with random bodies.
fn attacks(rng: &mut ChaCha8Rng, valid: &[u8], n: usize) -> Vec<Attack> {
    let noise = |rng: &mut ChaCha8Rng| {
        let len = rng.gen_range(1..4096);
        (0..len).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>()
    };
    (0..n)
        .map(|i| match i % 7 {
            0 => Attack::Noise(noise(rng)),
            1 => Attack::After(noise(rng)),
            2 => Attack::HalfHeader(rng.gen_range(1..100_000), rng.gen()),
            3 => Attack::Header(rng.gen_range(wire::DEFAULT_MAX_FRAME as u64 + 1..u64::MAX)),
            4 => {
                let mut body = valid.to_vec();
                body[2..4].copy_from_slice(&rng.gen_range(PROTOCOL_VERSION + 1..u16::MAX).to_be_bytes());
                Attack::Frame(body)
            }
            5 => {
                let mut body = valid.to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(wire::HEADER_LEN..body.len());
                    body[at] = rng.gen();
                }
                body.truncate(rng.gen_range(wire::HEADER_LEN..=body.len()));
                if rng.gen_bool(0.5) {
                    Attack::Frame(body)
                } else {
                    Attack::HeaderThen(body.len() as u64 + 10, body)
                }
            }
            _ => Attack::HeaderThen(200, (0..200).map(|_| rng.gen::<u8>()).collect()),
        })
        .collect()
}

/// Makes one hostile connection (a session past the handshake, but for noise).
async fn attack(addr: SocketAddr, dial: &dyn RawDial, attack: Attack) {
    if let Attack::Noise(bytes) = attack {
        if let Ok(Ok(mut s)) = timeout(DEADLINE, TcpStream::connect(addr)).await {
            let _ = timeout(DEADLINE, s.write_all(&bytes)).await;
        }
        return;
    }
    let Ok(Ok(mut s)) = timeout(DEADLINE, dial.session()).await else { return };
    let bytes = match attack {
        Attack::Noise(_) => return,
        Attack::After(bytes) => bytes,
        Attack::HalfHeader(len, share) => {
            let header = s.header(len);
            header[..((header.len() + 1) as f64 * share) as usize].to_vec()
        }
        Attack::Header(len) => s.header(len),
        Attack::Frame(body) => s.frame(&body),
        Attack::HeaderThen(len, body) => [s.header(len), body].concat(),
    };
    let _ = timeout(DEADLINE, s.io.write_all(&bytes)).await;
}

/// Throws `attacks` hostile connections (noise, half frames, huge prefixes, foreign
/// versions, valid headers with random bodies; all but noise past the handshake) at one
/// node while a peer exchanges `messages` valid ones with it both ways; all valid ones
/// must arrive and the node's counters must show the refusals. Bounded by counts; waits
/// by deadlines.
pub async fn hostile_bytes(h: &mut impl Harness, seed: u64, attacks_n: usize, messages: u64) {
    let (a, b) = pair(9);
    let mut n = h.start(&[a, b]).await;
    let (Some(addr), Some(dial)) = (h.raw_addr(b), h.raw_dial(b)) else { return skip(h, "hostile bytes") };
    let before = h.stats(b).unwrap_or_default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Mutations of this may still decode; their sender keeps them apart from the link's.
    let valid = wire::encode_body(&Envelope::new(NodeId::client(99), b, seq(0)), usize::MAX).expect("encode");
    let inputs = attacks(&mut rng, &valid, attacks_n);
    let attacker = tokio::spawn(async move {
        for input in inputs {
            attack(addr, &*dial, input).await;
        }
    });
    let (ta, tb) = two(&mut n);
    for round in 0..messages / 100 {
        exchange(&**ta, &mut **tb, round * 100, 100, "a->b under attack").await;
        exchange(&**tb, &mut **ta, round * 100, 100, "b->a under attack").await;
    }
    within("attacker", attacker).await.expect("attacker task");
    wait_stats(h, b, "refusals counted", |s| {
        let refused = |s: &WireStats| {
            s.dropped_decode
                + s.dropped_version
                + s.dropped_oversized
                + s.truncated
                + s.bad_handshake
                + s.refused_handshake
                + s.dropped_identity
        };
        s.connections_opened >= before.connections_opened + attacks_n as u64 && refused(s) > refused(&before)
    })
    .await;
    exchange(&**ta, &mut **tb, 1_000_000, 100, "a->b after the attack").await;
    if let Some(s) = h.stats(b) {
        eprintln!("conformance[{}]: after {attacks_n} hostile connections: {s:?}", h.name());
    }
}
