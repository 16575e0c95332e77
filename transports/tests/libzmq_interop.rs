//! Our ZeroMQ transport against libzmq itself (through pyzmq), both ways:
//! - a libzmq PUSH socket connects to a [`ZmqTransport`]'s PULL endpoint and sends ballot
//!   frame bodies (one a line of `support/zmq_peer.py`'s stdin, as hex); the transport
//!   must hand over exactly the envelopes they encode;
//! - a [`ZmqTransport`] sends envelopes to a libzmq PULL socket, which prints what it got
//!   as hex; every message must be one frame whose bytes decode to exactly the envelope
//!   sent.
//!
//! - the same both ways under CURVE: a libzmq PUSH with `curve_serverkey`,
//!   `curve_publickey` and `curve_secretkey` reaches our CURVE PULL and is delivered as
//!   the identity its key proves; our dial reaches a libzmq PULL with `curve_server` and
//!   a ZAP allow-list (pyzmq's `ThreadAuthenticator`), and is refused by one whose list
//!   lacks our key; a libzmq PUSH whose key is not on our allow-list is refused and
//!   counted; ZMTP heartbeats (sealed PING and PONG) keep a CURVE connection.
//!
//! The frames are made and read with the project's own codec ([`wire`]): the Python side
//! only moves bytes, so what is checked is the ZMTP conversation with libzmq and that our
//! framing survives it byte for byte.
//!
//! pyzmq is installed with pip if it is missing. Where neither is possible (no python3, no
//! pip, PyPI unreachable), each test prints one line saying what is missing and passes
//! without checking anything.

use ballot_core::{AcceptedEntry, Ballot, Command, Message, NodeId};
use ballot_transports::auth::{generate, z85, Credentials, Identity};
use ballot_transports::{wire, Envelope, NetOptions, TraceContext, Transport, ZmqTransport};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Any single network wait in these tests (a message, the peer's start or exit).
const DEADLINE: Duration = Duration::from_secs(30);
/// pip, when it has to download pyzmq.
const PIP_DEADLINE: Duration = Duration::from_secs(300);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/zmq_peer.py")
}

/// Kills (and reaps) a child on drop, on every path out of a test.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to its end within `deadline`; `Err` says why it did not succeed.
fn run_within(cmd: &mut std::process::Command, deadline: Duration) -> Result<(), String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    let mut child = Reaper(child);
    let mut stderr = child.0.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > deadline {
            return Err(format!("no answer within {deadline:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    Err(format!("{status}: {last}"))
}

/// Whether pyzmq can be imported, installing it with pip if need be (once per process).
/// `Err`: the one line to print when skipping.
fn pyzmq() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let import = || run_within(std::process::Command::new("python3").args(["-c", "import zmq"]), DEADLINE);
            if import().is_ok() {
                return Ok(());
            }
            let pip = run_within(
                std::process::Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .args(["--timeout", "20", "--retries", "2", "pyzmq"]),
                PIP_DEADLINE,
            );
            match (import(), pip) {
                (Ok(()), _) => Ok(()),
                (Err(_), Err(why)) => {
                    Err(format!("skipped: pyzmq is missing and `python3 -m pip install pyzmq` failed ({why})"))
                }
                (Err(why), Ok(())) => Err(format!("skipped: pyzmq was installed but does not import ({why})")),
            }
        })
        .clone()
}

/// Whether to skip `test` (after printing the one line that says why).
fn skip(test: &str) -> bool {
    match pyzmq() {
        Ok(()) => false,
        Err(why) => {
            println!("{test}: {}", why.replace('\n', " "));
            true
        }
    }
}

/// The peer script as a tokio child, killed on drop.
fn peer(args: &[&str]) -> tokio::process::Child {
    peer_with(args, &[])
}

/// The peer script with extra environment variables.
fn peer_with(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new("python3")
        .arg(script())
        .args(args)
        .envs(env.iter().copied())
        .env("PEER_TIMEOUT_MS", DEADLINE.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 tests/support/zmq_peer.py")
}

/// The script's stderr, once it has exited (for failure messages).
async fn stderr_of(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(DEADLINE, e.read_to_string(&mut s)).await;
    }
    s
}

/// The peer's next line of output, within the deadline; else the test fails with what the
/// peer said on stderr.
async fn next_line(
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    py: &mut tokio::process::Child,
) -> String {
    match tokio::time::timeout(DEADLINE, out.next_line()).await {
        Ok(Ok(Some(l))) => l,
        other => {
            let _ = py.start_kill();
            panic!("no line from the peer within {DEADLINE:?} ({other:?}); peer: {}", stderr_of(py).await)
        }
    }
}

fn vote(i: usize) -> Command {
    Command::Vote {
        request_id: format!("req-{i}"),
        client: NodeId::client(3),
        voter: format!("voter-{i}-Ünïcødé"),
        candidate: ["ada", "grace", "linus"][i % 3].into(),
    }
}

/// Envelopes of every size class a ZMTP frame has: under 256 bytes (libzmq's short frame
/// header), over it (the long one), and one of a few hundred kilobytes that spans many
/// TCP segments; with and without a trace context and `reply_to`.
fn envelopes(from: NodeId, to: NodeId) -> Vec<Envelope> {
    let small = Envelope::new(from, to, Message::Progress { applied: 42 });
    let mut traced = Envelope::new(
        from,
        to,
        Message::Accept { ballot: Ballot::new(7, 2), slot: 19, value: Arc::new((0..20).map(vote).collect()) },
    );
    traced.trace = Some(TraceContext {
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        tracestate: Some("ballot=1".into()),
        slot: Some(19),
    });
    traced.reply_to = Some("127.0.0.1:4242".parse().unwrap());
    let entries = (0..4)
        .map(|s| AcceptedEntry {
            slot: 100 + s,
            ballot: Ballot::new(3, 1),
            value: Arc::new((0..1000).map(|i| vote(i + 1000 * s as usize)).collect()),
        })
        .collect();
    let large = Envelope::new(from, to, Message::Learn { entries });
    let hello = Envelope::new(from, to, Message::Hello);
    vec![small, traced, large, hello]
}

fn body(env: &Envelope) -> Vec<u8> {
    wire::encode_body(env, wire::DEFAULT_MAX_FRAME).expect("encode")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex from the peer: {s:.80}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from the peer")).collect()
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// libzmq PUSH -> our PULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_push_reaches_our_pull() {
    if skip("libzmq_push_reaches_our_pull") {
        return;
    }
    let me = NodeId::learner(1);
    let mut node = ZmqTransport::bind(me, any(), BTreeMap::new(), NetOptions::default()).await.unwrap();
    let sent = envelopes(NodeId::acceptor(2), me);
    // One line a message; the last one as a two-part message (header, then the rest),
    // which the transport takes as the concatenation of its parts.
    let mut lines = String::new();
    for (i, env) in sent.iter().enumerate() {
        let b = body(env);
        if i + 1 == sent.len() {
            lines += &format!("{}+{}\n", hex(&b[..wire::HEADER_LEN]), hex(&b[wire::HEADER_LEN..]));
        } else {
            lines += &format!("{}\n", hex(&b));
        }
    }
    let mut py = peer(&["push", &node.endpoint()]);
    let mut stdin = py.stdin.take().expect("piped");
    tokio::time::timeout(DEADLINE, stdin.write_all(lines.as_bytes())).await.expect("the peer reads its input").unwrap();
    drop(stdin);

    for (i, want) in sent.iter().enumerate() {
        let got = match tokio::time::timeout(DEADLINE, node.recv()).await {
            Ok(got) => got.expect("transport open"),
            Err(_) => {
                let _ = py.start_kill();
                panic!(
                    "message {i} from libzmq did not arrive within {DEADLINE:?}; stats {:?}; peer: {}",
                    node.stats(),
                    stderr_of(&mut py).await
                )
            }
        };
        assert_eq!(&got, want, "message {i} from libzmq");
    }
    let status = tokio::time::timeout(DEADLINE, py.wait()).await.expect("the peer exits").unwrap();
    assert!(status.success(), "peer: {status}: {}", stderr_of(&mut py).await);
    let stats = node.stats();
    assert_eq!(stats.frames_received, sent.len() as u64, "{stats:?}");
    let bytes: usize = sent.iter().map(|e| body(e).len()).sum();
    assert_eq!(stats.bytes_received, bytes as u64, "{stats:?}");
    assert_eq!((stats.bad_handshake, stats.dropped_decode, stats.truncated), (0, 0, 0), "{stats:?}");
    // The peer's process ended right after its last message: its connection's close is
    // the crash notice, in the sender's name, and nothing else follows.
    let notice = tokio::time::timeout(DEADLINE, node.recv()).await.expect("the notice").expect("transport open");
    assert_eq!((notice.from, notice.msg), (NodeId::acceptor(2), Message::PeerDown));
    assert_eq!(node.stats().peer_down_notices, 1);
    assert!(node.try_recv().is_none(), "nothing more than what was sent");
}

/// libzmq PUSH with ZMTP heartbeats on: a PULL side that never answers PING looks dead
/// to libzmq after the heartbeat timeout, which drops and redials the connection (and
/// can lose what it was writing). Ours answers PONG, so one connection carries it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_heartbeats_keep_the_connection() {
    if skip("libzmq_heartbeats_keep_the_connection") {
        return;
    }
    heartbeats(NetOptions::default(), Vec::new()).await;
}

/// The same under CURVE, where a PING and its PONG are sealed like messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_heartbeats_keep_a_curve_connection() {
    if skip("libzmq_heartbeats_keep_a_curve_connection") {
        return;
    }
    let keys = Keys::new("heartbeats");
    let (me, them) = (NodeId::learner(1), NodeId::acceptor(2));
    let mut env = keys.env(them);
    env.push(("CURVE_SERVERKEY", public(&keys.of(me))));
    heartbeats(keys.opts(me), env).await;
}

async fn heartbeats(opts: NetOptions, mut env: Vec<(&'static str, String)>) {
    let me = NodeId::learner(1);
    let mut node = ZmqTransport::bind(me, any(), BTreeMap::new(), opts).await.unwrap();
    let sent: Vec<Envelope> =
        (0..6).map(|i| Envelope::new(NodeId::acceptor(2), me, Message::Progress { applied: i })).collect();
    let lines: String = sent.iter().map(|e| format!("{}\n", hex(&body(e)))).collect();
    // A PING every 50 ms, dead after 150 ms of silence; 250 ms between messages.
    env.extend([("HEARTBEAT_MS", "50".to_string()), ("GAP_MS", "250".to_string())]);
    let mut py = peer_with(&["push", &node.endpoint()], &env_refs(&env));
    let mut stdin = py.stdin.take().expect("piped");
    tokio::time::timeout(DEADLINE, stdin.write_all(lines.as_bytes())).await.expect("the peer reads its input").unwrap();
    drop(stdin);
    let mut stdout = BufReader::new(py.stdout.take().expect("piped")).lines();
    for (i, want) in sent.iter().enumerate() {
        let got = tokio::time::timeout(DEADLINE, node.recv()).await.unwrap_or_else(|_| panic!("message {i} arrives"));
        assert_eq!(got.as_ref(), Some(want), "message {i} from libzmq");
    }
    let line = next_line(&mut stdout, &mut py).await;
    assert_eq!(line, "connected 1 disconnected 0", "libzmq kept one connection for the whole run");
    let status = tokio::time::timeout(DEADLINE, py.wait()).await.expect("the peer exits").unwrap();
    assert!(status.success(), "peer: {status}: {}", stderr_of(&mut py).await);
}

/// Our PUSH -> libzmq PULL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_push_reaches_libzmq_pull() {
    if skip("our_push_reaches_libzmq_pull") {
        return;
    }
    let me = NodeId::proposer(1);
    let them = NodeId::acceptor(3);
    let sent = envelopes(me, them);
    let mut py = peer(&["pull", &sent.len().to_string()]);
    let mut out = BufReader::new(py.stdout.take().expect("piped")).lines();
    let first = next_line(&mut out, &mut py).await;
    let endpoint = first.strip_prefix("listening tcp://").unwrap_or_else(|| panic!("peer said {first:?}"));
    let addr: SocketAddr = endpoint.parse().unwrap();

    let node = ZmqTransport::bind(me, any(), BTreeMap::from([(them, addr)]), NetOptions::default()).await.unwrap();
    for env in &sent {
        node.send(env.clone()).unwrap();
    }
    // The transport stamps where it listens on what it sends.
    let stamp = |mut e: Envelope| {
        e.reply_to = e.reply_to.or(Some(node.local_addr()));
        e
    };
    let want: Vec<Envelope> = sent.iter().cloned().map(stamp).collect();
    for (i, want) in want.iter().enumerate() {
        let l = next_line(&mut out, &mut py).await;
        let msg = l.strip_prefix("msg ").unwrap_or_else(|| panic!("message {i}: peer said {l:.200}"));
        let frames: Vec<Vec<u8>> = msg.split('+').map(unhex).collect();
        assert_eq!(frames.len(), 1, "message {i} is one ZeroMQ frame");
        let got = &frames[0];
        assert_eq!(&got[..2], &wire::MAGIC, "message {i} starts with the magic");
        assert_eq!(wire::decode_body(got).as_ref(), Ok(want), "message {i} as libzmq received it");
        assert_eq!(got, &body(want), "message {i}: the bytes are exactly our encoding");
    }
    assert_eq!(next_line(&mut out, &mut py).await, "done");
    let status = tokio::time::timeout(DEADLINE, py.wait()).await.expect("the peer exits").unwrap();
    assert!(status.success(), "peer: {status}: {}", stderr_of(&mut py).await);
    let stats = node.stats();
    assert_eq!(stats.frames_sent, sent.len() as u64, "{stats:?}");
    assert_eq!(stats.dropped_unreachable, 0, "{stats:?}");
}

/// A credentials folder for the CURVE tests, removed on drop.
struct Keys(PathBuf);

impl Keys {
    fn new(tag: &str) -> Keys {
        let dir = std::env::temp_dir().join(format!("ballot-libzmq-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = [NodeId::proposer(1), NodeId::acceptor(2), NodeId::acceptor(3), NodeId::learner(1)];
        generate(&dir, &nodes).expect("credentials");
        Keys(dir)
    }

    fn of(&self, id: NodeId) -> Credentials {
        Credentials::load(&self.0, Identity::of(id)).expect("load credentials")
    }

    fn opts(&self, id: NodeId) -> NetOptions {
        NetOptions { credentials: Some(Arc::new(self.of(id))), ..NetOptions::default() }
    }

    /// The environment that makes the peer script speak CURVE with `id`'s key pair.
    fn env(&self, id: NodeId) -> Vec<(&'static str, String)> {
        let c = self.of(id);
        vec![("CURVE_PUBLICKEY", z85::encode(&c.curve.public)), ("CURVE_SECRETKEY", z85::encode(&c.curve.secret))]
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn public(c: &Credentials) -> String {
    z85::encode(&c.curve.public)
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A libzmq PUSH with `from`'s key pair sends every envelope of [`envelopes`] to a CURVE
/// node.
async fn curve_push(
    keys: &Keys,
    from_keys: &Keys,
    node: &ZmqTransport,
    me: NodeId,
    from: NodeId,
) -> tokio::process::Child {
    let mut env = from_keys.env(from);
    env.push(("CURVE_SERVERKEY", public(&keys.of(me))));
    let lines: String = envelopes(from, me).iter().map(|e| format!("{}\n", hex(&body(e)))).collect();
    let mut py = peer_with(&["push", &node.endpoint()], &env_refs(&env));
    let mut stdin = py.stdin.take().expect("piped");
    tokio::time::timeout(DEADLINE, stdin.write_all(lines.as_bytes())).await.expect("the peer reads its input").unwrap();
    py
}

/// libzmq PUSH (curve_serverkey, curve_publickey, curve_secretkey) -> our CURVE PULL:
/// delivered, with the identity its key proves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_curve_push_reaches_our_curve_pull() {
    if skip("libzmq_curve_push_reaches_our_curve_pull") {
        return;
    }
    let keys = Keys::new("push");
    let (me, them) = (NodeId::learner(1), NodeId::acceptor(2));
    let mut node = ZmqTransport::bind(me, any(), BTreeMap::new(), keys.opts(me)).await.unwrap();
    let mut py = curve_push(&keys, &keys, &node, me, them).await;
    for (i, want) in envelopes(them, me).iter().enumerate() {
        let got = tokio::time::timeout(DEADLINE, node.recv()).await;
        let got = got.unwrap_or_else(|_| panic!("message {i} from libzmq over CURVE; stats {:?}", node.stats()));
        assert_eq!(got.as_ref(), Some(want), "message {i} from libzmq over CURVE");
    }
    let status = tokio::time::timeout(DEADLINE, py.wait()).await.expect("the peer exits").unwrap();
    assert!(status.success(), "peer: {status}: {}", stderr_of(&mut py).await);
    let s = node.stats();
    assert_eq!((s.frames_received, s.refused_handshake, s.bad_handshake, s.dropped_identity), (4, 0, 0, 0), "{s:?}");
}

/// A libzmq PUSH whose key is not on the allow-list is refused and counted; nothing it
/// sends is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_with_a_key_off_the_allow_list_is_refused() {
    if skip("libzmq_with_a_key_off_the_allow_list_is_refused") {
        return;
    }
    let (keys, strangers) = (Keys::new("ours"), Keys::new("strangers"));
    let (me, them) = (NodeId::learner(1), NodeId::acceptor(2));
    let mut node = ZmqTransport::bind(me, any(), BTreeMap::new(), keys.opts(me)).await.unwrap();
    let _py = curve_push(&keys, &strangers, &node, me, them).await;
    let end = Instant::now() + DEADLINE;
    // libzmq does not redial after the ERROR it is told: one refusal.
    while node.stats().refused_handshake == 0 {
        assert!(Instant::now() < end, "no refusal counted: {:?}", node.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = tokio::time::timeout(Duration::from_millis(300), node.recv()).await;
    assert!(got.is_err(), "nothing is delivered: {got:?}");
    assert_eq!(node.stats().frames_received, 0);
}

/// Our CURVE dial -> a libzmq PULL with curve_server and a ZAP allow-list: what it
/// receives is exactly our encoding; a PULL whose allow-list lacks our key refuses us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_curve_push_reaches_libzmq_curve_pull_and_its_allow_list_decides() {
    if skip("our_curve_push_reaches_libzmq_curve_pull_and_its_allow_list_decides") {
        return;
    }
    let keys = Keys::new("pull");
    let (me, them) = (NodeId::proposer(1), NodeId::acceptor(3));
    for allowed in [true, false] {
        let mut env = keys.env(them);
        let allow = if allowed { public(&keys.of(me)) } else { public(&keys.of(NodeId::acceptor(2))) };
        env.push(("CURVE_ALLOW", allow));
        let sent = envelopes(me, them);
        let mut py = peer_with(&["pull", &sent.len().to_string()], &env_refs(&env));
        let mut out = BufReader::new(py.stdout.take().expect("piped")).lines();
        let first = next_line(&mut out, &mut py).await;
        let endpoint = first.strip_prefix("listening tcp://").unwrap_or_else(|| panic!("peer said {first:?}"));
        let peers = BTreeMap::from([(them, endpoint.parse().unwrap())]);
        let node = ZmqTransport::bind(me, any(), peers, keys.opts(me)).await.unwrap();
        if !allowed {
            let end = Instant::now() + DEADLINE;
            while node.stats().refused_handshake == 0 {
                let _ = node.send(sent[0].clone());
                assert!(Instant::now() < end, "our dial was not refused: {:?}", node.stats());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(node.stats().frames_sent, 0);
            continue;
        }
        for env in &sent {
            node.send(env.clone()).unwrap();
        }
        for (i, want) in sent.iter().enumerate() {
            let mut want = want.clone();
            want.reply_to = want.reply_to.or(Some(node.local_addr()));
            let l = next_line(&mut out, &mut py).await;
            let msg = l.strip_prefix("msg ").unwrap_or_else(|| panic!("message {i}: peer said {l:.200}"));
            assert_eq!(unhex(msg), body(&want), "message {i} as libzmq received it over CURVE");
        }
        assert_eq!(next_line(&mut out, &mut py).await, "done");
        let status = tokio::time::timeout(DEADLINE, py.wait()).await.expect("the peer exits").unwrap();
        assert!(status.success(), "peer: {status}: {}", stderr_of(&mut py).await);
        let s = node.stats();
        assert_eq!((s.frames_sent, s.refused_handshake, s.bad_handshake), (sent.len() as u64, 0, 0), "{s:?}");
    }
}
