//! Our ZeroMQ transport against libzmq itself (through pyzmq), both ways:
//! - a libzmq PUSH socket connects to a [`ZmqTransport`]'s PULL endpoint and sends ballot
//!   frame bodies (one a line of `support/zmq_peer.py`'s stdin, as hex); the transport
//!   must hand over exactly the envelopes they encode;
//! - a [`ZmqTransport`] sends envelopes to a libzmq PULL socket, which prints what it got
//!   as hex; every message must be one frame whose bytes decode to exactly the envelope
//!   sent.
//!
//! The frames are made and read with the project's own codec ([`wire`]): the Python side
//! only moves bytes, so what is checked is the ZMTP conversation with libzmq and that our
//! framing survives it byte for byte.
//!
//! pyzmq is installed with pip if it is missing. Where neither is possible (no python3, no
//! pip, PyPI unreachable), each test prints one line saying what is missing and passes
//! without checking anything.

use ballot_core::{AcceptedEntry, Ballot, Command, Message, NodeId};
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
    let me = NodeId::learner(1);
    let mut node = ZmqTransport::bind(me, any(), BTreeMap::new(), NetOptions::default()).await.unwrap();
    let sent: Vec<Envelope> =
        (0..6).map(|i| Envelope::new(NodeId::acceptor(2), me, Message::Progress { applied: i })).collect();
    let lines: String = sent.iter().map(|e| format!("{}\n", hex(&body(e)))).collect();
    // A PING every 50 ms, dead after 150 ms of silence; 250 ms between messages.
    let mut py = peer_with(&["push", &node.endpoint()], &[("HEARTBEAT_MS", "50"), ("GAP_MS", "250")]);
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
