//! End-to-end tests of the `ballot-node` binary: real processes on loopback, driven by an
//! in-test client (a transport of its own wrapped by `ClientHandle`) and the control
//! channel.
//!
//! - A 3-acceptor, 1-proposer, 1-learner cluster commits votes and answers a read, over
//!   TCP and over ZeroMQ (one helper, parameterised by transport).
//! - SIGTERM and SIGINT stop a node with status 0; an acceptor killed with SIGKILL and
//!   restarted on its data dir reports the promise it had, and the cluster commits on.
//! - A node whose loop ends while the process runs (its log cannot be written: a file
//!   size limit) makes the process exit 3 with one line saying why, so a supervisor
//!   restarts it.
//!   A node that starts says `Hello` to every peer, stamped with its listen address.
//! - A data dir of another cluster, a log corrupted in the middle, a bad `--peers` entry,
//!   an unknown `--id`, a cluster without learner, and a node given neither `--certs` nor
//!   `--insecure` are refused with one line on stderr; `--insecure` runs with one warning.
//! - Thousands of hostile byte strings on the listen ports of the learner and an acceptor
//!   while votes are being committed: the nodes live on and votes keep committing.
//!
//! Every child is killed and reaped on every path out of a test (`NodeProc`'s `Drop`, panics
//! included), every wait has a deadline, and no assertion is about elapsed time.
#![cfg(unix)]

use ballot_core::{Ballot, Command as Cmd, NodeId, PersistOp, Reply, Storage, PROTOCOL_VERSION};
use ballot_disk::{DiskStorage, Identity};
use ballot_transports::wire::DEFAULT_MAX_FRAME;
use ballot_transports::zmq::zmtp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod common;
use common::*;

async fn cluster_votes_and_reads(net: Net) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(net).await;
    c.votes(10).await;
    c.concurrent_votes(20).await;
    c.check_tally().await;

    // Final answers that are not successes: a second vote of the same voter, and a vote
    // for someone who is not a candidate. Neither changes the tally.
    let again = Cmd::Vote {
        request_id: c.client.next_request_id(),
        client: CLIENT,
        voter: "voter-1".into(),
        candidate: CANDIDATES[0].into(),
    };
    let reply = c.submit(again).await;
    assert!(matches!(reply, Reply::Vote { result: Err(ballot_core::VoteError::AlreadyVoted), .. }), "{reply:?}");
    let unknown = Cmd::Vote {
        request_id: c.client.next_request_id(),
        client: CLIENT,
        voter: "someone-new".into(),
        candidate: "nobody".into(),
    };
    let reply = c.submit(unknown).await;
    assert!(matches!(reply, Reply::Vote { result: Err(ballot_core::VoteError::UnknownCandidate), .. }), "{reply:?}");
    c.check_tally().await;
    c.all_alive().await;
}

#[tokio::test]
async fn tcp_cluster_commits_votes_and_reads_the_tally() {
    cluster_votes_and_reads(Net::Tcp).await;
}

#[tokio::test]
async fn zmq_cluster_commits_votes_and_reads_the_tally() {
    cluster_votes_and_reads(Net::Zmq).await;
}

// ---------------------------------------------------------------------------------------
// 2. SIGTERM, SIGKILL and restart on the same data dir
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_exits_0_and_a_killed_acceptor_restarts_with_its_promise() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(Net::Tcp).await;
    c.votes(3).await;

    // SIGTERM: a clean stop, status 0, nothing alarming on stderr.
    let a3 = NodeId::acceptor(3);
    c.node(a3).signal(libc::SIGTERM);
    let status = c.node(a3).wait_exit().await;
    assert_eq!(status.code(), Some(0), "{a3} after SIGTERM: {status}\n{}", c.node(a3).stderr());
    assert!(!c.node(a3).stderr().contains("panicked"), "{}", c.node(a3).stderr());
    c.restart(a3).await;
    c.votes(3).await;

    // SIGKILL an acceptor: no chance to clean up. Its promise must come back from disk.
    let a1 = NodeId::acceptor(1);
    let before = c.status(a1).await.ballot;
    assert!(before.is_some_and(|b| b > Ballot::ZERO), "{a1} has promised a ballot: {before:?}");
    c.node(a1).signal(libc::SIGKILL);
    let status = c.node(a1).wait_exit().await;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    // Two acceptors of three are a majority: the cluster commits without it.
    c.votes(3).await;
    c.restart(a1).await;
    let after = c.status(a1).await.ballot;
    assert_eq!(after, before, "{a1}'s promised ballot after SIGKILL and restart");
    c.votes(3).await;
    c.check_tally().await;
    c.all_alive().await;
}

/// A proposer alone (its peers are not running) starts an election every few ms, and
/// persists its round before each. Run under a file size limit (`RLIMIT_FSIZE`, with
/// `SIGXFSZ` ignored so that a write past it fails with `EFBIG` instead of killing the
/// process), its log soon cannot grow: the storage fails, the node loop stops, and the
/// process must exit 3 instead of living on with no node inside it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_node_loop_that_ends_makes_the_process_exit_3() {
    use std::os::unix::process::CommandExt;
    let tmp = TempDir::new("loop-end");
    let peers = "proposer-1=127.0.0.1:0,acceptor-1=127.0.0.1:9,learner-1=127.0.0.1:9";
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--insecure", "--id", "proposer-1", "--listen", "127.0.0.1:0", "--peers", peers])
        .args(["--election-min-ms", "2", "--election-max-ms", "4", "--data-dir"])
        .arg(tmp.path().join("proposer-1"))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit, signal and prctl are async-signal-safe; nothing else is touched.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 4096, rlim_max: 4096 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start ballot-node");
    let pid = child.id();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    let o = match tokio::time::timeout(DEADLINE, waited).await {
        Ok(o) => o.expect("join").expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped (it is still
            // being waited for).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("ballot-node did not exit within {DEADLINE:?} after its node loop ended");
        }
    };
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(stdout.starts_with("ready proposer-1"), "{stdout}");
    assert_eq!(o.status.code(), Some(3), "{}\n{stderr}", o.status);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ballot-node: proposer-1 stopped: storage I/O failed")
            && last.ends_with("exiting so that a supervisor restarts the process"),
        "{stderr}"
    );
}

/// A node that starts says `Hello` to every peer, stamped with where it listens: the
/// peers drop whatever connection they held to its previous life and dial it afresh. (In
/// a container the previous life's address vanishes with it, and writes into the old
/// connection succeed and are lost: see `dials_a_restarted_peer_afresh_on_its_hello` in
/// the transports' tests.)
async fn a_starting_node_says_hello_to_every_peer(net: Net) {
    let tmp = TempDir::new("hello");
    let certs = certs_in(tmp.path());
    let (p, l) = (NodeId::proposer(1), NodeId::learner(1));
    let mut proposer = Endpoint::bind(net, p, BTreeMap::new(), Some(&certs)).await;
    let mut learner = Endpoint::bind(net, l, BTreeMap::new(), Some(&certs)).await;
    let peers = format!("{p}={},acceptor-1=127.0.0.1:9,{l}={}", proposer.local_addr(), learner.local_addr());
    let data = tmp.path().join("acceptor-1");
    let mut args =
        os_args(&["--id", "acceptor-1", "--listen", "127.0.0.1:0", "--transport", net.flag(), "--peers", &peers]);
    args.extend([OsString::from("--data-dir"), data.into(), "--certs".into(), certs.into()]);
    let mut node = NodeProc::spawn("acceptor-1", &args, &fresh_log(tmp.path(), "acceptor-1"));
    let ready = node.wait_ready().await;
    for (name, peer) in [("proposer-1", &mut proposer), ("learner-1", &mut learner)] {
        let env = peer.recv_within(DEADLINE).await.unwrap_or_else(|| {
            panic!("{name} heard nothing from a starting acceptor-1 within {DEADLINE:?}: {}", node.stderr())
        });
        assert_eq!(env.from, NodeId::acceptor(1), "{name}: {env:?}");
        assert_eq!(env.msg, ballot_core::Message::Hello, "{name}: the first message is the announcement");
        assert_eq!(env.reply_to, Some(ready.listen), "{name}: the Hello says where acceptor-1 listens");
    }
    node.signal(libc::SIGTERM);
    let status = node.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}: {}", node.stderr());
}

#[tokio::test]
async fn tcp_a_starting_node_says_hello_to_every_peer() {
    a_starting_node_says_hello_to_every_peer(Net::Tcp).await;
}

#[tokio::test]
async fn zmq_a_starting_node_says_hello_to_every_peer() {
    a_starting_node_says_hello_to_every_peer(Net::Zmq).await;
}

// ---------------------------------------------------------------------------------------
// 3. Refusals: foreign and corrupt data dirs, bad command lines
// ---------------------------------------------------------------------------------------

/// Arguments of a single node outside any running cluster: it listens on a free port and
/// names the other members at a port where nobody listens (a lone acceptor never dials).
/// Its credentials are in the folder beside its data dir.
fn lone_node_args(id: &str, data_dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args = os_args(&[
        "--id",
        id,
        "--listen",
        "127.0.0.1:0",
        "--peers",
        "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:9,learner-1=127.0.0.1:9",
    ]);
    args.extend(os_args(extra));
    args.push("--data-dir".into());
    args.push(data_dir.into());
    args.push("--certs".into());
    args.push(certs_in(data_dir.parent().expect("a data dir in a test folder")).into());
    args
}

/// Starts a lone node, waits until it is ready, stops it with `sig` and expects status 0.
async fn start_and_stop(tmp: &Path, name: &str, args: &[OsString], sig: libc::c_int) {
    let mut node = NodeProc::spawn(name, args, &fresh_log(tmp, name));
    node.wait_ready().await;
    node.signal(sig);
    let status = node.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{name} after signal {sig}: {status}\n{}", node.stderr());
}

#[tokio::test]
async fn a_data_dir_of_another_cluster_is_refused() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let tmp = TempDir::new("foreign");
    let data = tmp.path().join("acceptor-1");
    // Initialised by the binary itself for cluster "a"; Ctrl-C (SIGINT) stops it cleanly.
    start_and_stop(
        tmp.path(),
        "acceptor-1",
        &lone_node_args("acceptor-1", &data, &["--cluster-id", "a"]),
        libc::SIGINT,
    )
    .await;

    let (status, stderr) =
        run_to_exit(tmp.path(), "acceptor-1", &lone_node_args("acceptor-1", &data, &["--cluster-id", "b"])).await;
    assert!(!status.success() && status.code().is_some(), "a foreign dir must be refused: {status}");
    let line = assert_one_line_error("foreign data dir", &stderr);
    let meta = data.join("meta");
    assert!(line.contains(&*meta.to_string_lossy()), "the message names {}: {line}", meta.display());

    // The refusal changed nothing: cluster "a" still opens it.
    start_and_stop(
        tmp.path(),
        "acceptor-1",
        &lone_node_args("acceptor-1", &data, &["--cluster-id", "a"]),
        libc::SIGTERM,
    )
    .await;
}

#[tokio::test]
async fn a_log_corrupted_in_the_middle_is_refused() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let tmp = TempDir::new("corrupt");
    let data = tmp.path().join("acceptor-1");
    let identity = Identity { cluster_id: "ballot".into(), node: NodeId::acceptor(1) };
    {
        let mut storage = DiskStorage::open(&data, &identity).expect("open a new dir");
        for round in 1..=40u64 {
            let value = Arc::new(vec![Cmd::Vote {
                request_id: format!("client-1/{round}"),
                client: CLIENT,
                voter: format!("voter-{round}"),
                candidate: CANDIDATES[0].into(),
            }]);
            let ballot = Ballot::new(round, 1);
            storage
                .persist(&[PersistOp::Promise(ballot), PersistOp::Accept { slot: round, ballot, value }])
                .expect("persist");
        }
    }
    // The undamaged dir starts (so what follows is refused for the damage alone).
    start_and_stop(tmp.path(), "acceptor-1", &lone_node_args("acceptor-1", &data, &[]), libc::SIGTERM).await;

    let wal = data.join("wal");
    let mut bytes = std::fs::read(&wal).expect("read the wal");
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4].iter_mut().for_each(|b| *b ^= 0xa5);
    std::fs::write(&wal, &bytes).expect("write the wal");

    let (status, stderr) = run_to_exit(tmp.path(), "acceptor-1", &lone_node_args("acceptor-1", &data, &[])).await;
    assert!(!status.success() && status.code().is_some(), "a corrupt log must be refused: {status}");
    let line = assert_one_line_error("corrupt wal", &stderr);
    assert!(line.contains(&*wal.to_string_lossy()), "the message names {}: {line}", wal.display());
    assert!(std::fs::read(&wal).expect("read the wal") == bytes, "the refusal left the log as it was");
}

#[tokio::test]
async fn bad_command_lines_exit_2_with_one_line() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let tmp = TempDir::new("bad-args");
    let data = tmp.path().join("data");
    let cases: [(&str, &str, &[&str], &str); 9] = [
        (
            "a --peers address that is not host:port",
            "acceptor-1",
            &["--peers", "proposer-1=127.0.0.1:9,acceptor-1=not-an-address,learner-1=127.0.0.1:9"],
            "not-an-address",
        ),
        (
            "a --peers entry without '='",
            "acceptor-1",
            &["--peers", "proposer-1=127.0.0.1:9,acceptor-1,learner-1=127.0.0.1:9"],
            "name=host:port",
        ),
        (
            "an --id that is not a node name",
            "mayor-1",
            &["--peers", "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:9,learner-1=127.0.0.1:9"],
            "mayor-1",
        ),
        (
            "an --id that --peers does not name",
            "acceptor-9",
            &[
                "--listen",
                "127.0.0.1:0",
                "--peers",
                "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:9,learner-1=127.0.0.1:9",
            ],
            "acceptor-9",
        ),
        (
            "no learner in --peers",
            "acceptor-1",
            &["--peers", "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:9"],
            "learner",
        ),
        (
            "a host name with a space in --peers",
            "acceptor-1",
            &["--peers", "proposer-1=127.0.0.1:9,acceptor-1=acceptor 1:7000,learner-1=127.0.0.1:9"],
            "'acceptor 1' is neither an IP address nor a host name",
        ),
        (
            "a bad --advertise",
            "acceptor-1",
            &[
                "--advertise",
                "acceptor-1",
                "--peers",
                "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:9,learner-1=127.0.0.1:9",
            ],
            "--advertise: 'acceptor-1' has no port",
        ),
        (
            "its own name does not resolve",
            "acceptor-1",
            &[
                "--resolve-timeout-ms",
                "300",
                "--peers",
                "proposer-1=127.0.0.1:9,acceptor-1=nobody.invalid:7000,learner-1=127.0.0.1:9",
            ],
            "cannot resolve nobody.invalid:7000 within 300ms",
        ),
        (
            "its --http name does not resolve",
            "acceptor-1",
            &[
                "--resolve-timeout-ms",
                "300",
                "--http",
                "nobody.invalid:8000",
                "--peers",
                "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:0,learner-1=127.0.0.1:9",
            ],
            "--http: cannot resolve nobody.invalid:8000",
        ),
    ];
    let certs = certs_in(tmp.path());
    for (what, id, extra, mentions) in cases {
        let mut args = os_args(&["--id", id]);
        args.extend(os_args(extra));
        args.extend(os_args(&["--certs", &certs.to_string_lossy()]));
        refused_before_the_disk(tmp.path(), what, id, args, &data, mentions).await;
    }
}

/// Runs `ballot-node ARGS --data-dir DATA`: it must exit 2 with one line mentioning
/// `mentions`, before anything touched the disk.
async fn refused_before_the_disk(
    tmp: &Path,
    what: &str,
    id: &str,
    mut args: Vec<OsString>,
    data: &Path,
    mentions: &str,
) {
    args.push("--data-dir".into());
    args.push(data.into());
    let (status, stderr) = run_to_exit(tmp, id, &args).await;
    assert_eq!(status.code(), Some(2), "{what}: {status}, stderr {stderr:?}");
    let line = assert_one_line_error(what, &stderr);
    assert!(line.contains(mentions), "{what}: the message should mention {mentions:?}: {line}");
    assert!(!data.exists(), "{what}: the data dir was created");
}

/// A node given neither `--certs` nor `--insecure` (nor `BALLOT_CERTS`) refuses to start,
/// saying in one line how to make credentials; so does one whose folder lacks its files.
#[tokio::test]
async fn a_node_without_credentials_is_refused_with_one_line() {
    let tmp = TempDir::new("no-credentials");
    let data = tmp.path().join("data");
    let no_creds = tmp.path().join("no-creds");
    std::fs::create_dir_all(&no_creds).expect("an empty folder");
    let peers = "proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:0,learner-1=127.0.0.1:9";
    let cases: [(&str, &[&str], &str); 2] = [
        ("neither --certs nor --insecure", &[], "no credentials: make them with `ballot certs --dir DIR --peers"),
        ("a --certs folder without this node's files", &["--certs", &no_creds.to_string_lossy()], "cannot read"),
    ];
    for (what, extra, mentions) in cases {
        let mut args = os_args(&["--id", "acceptor-1", "--peers", peers]);
        args.extend(os_args(extra));
        refused_before_the_disk(tmp.path(), what, "acceptor-1", args, &data, mentions).await;
    }
}

/// `--insecure` runs without credentials and says so in one warning line; its peers need
/// none either.
#[tokio::test]
async fn insecure_is_a_choice_with_one_warning_line() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let tmp = TempDir::new("insecure");
    let l = NodeId::learner(1);
    let mut learner = Endpoint::bind(Net::Tcp, l, BTreeMap::new(), None).await;
    let peers = format!("proposer-1=127.0.0.1:9,acceptor-1=127.0.0.1:9,{l}={}", learner.local_addr());
    let mut args = os_args(&["--id", "acceptor-1", "--listen", "127.0.0.1:0", "--peers", &peers, "--insecure"]);
    args.extend([OsString::from("--data-dir"), tmp.path().join("acceptor-1").into()]);
    let mut node = NodeProc::spawn("acceptor-1", &args, &fresh_log(tmp.path(), "acceptor-1"));
    node.wait_ready().await;
    let env = learner.recv_within(DEADLINE).await.expect("an insecure node's Hello reaches an insecure peer");
    assert_eq!((env.from, env.msg), (NodeId::acceptor(1), ballot_core::Message::Hello));
    let warnings: Vec<String> = node.stderr().lines().filter(|l| l.contains("--insecure")).map(String::from).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("ballot-node: warning: --insecure"), "{warnings:?}");
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit().await.code(), Some(0));
}

// ---------------------------------------------------------------------------------------
// 4. Garbage on the listen ports while votes are committed
// ---------------------------------------------------------------------------------------

/// Hostile connections per target port.
const GARBAGE_PER_TARGET: usize = 2000;
/// Half frames left open (stalled senders) per target until the end of the test.
const HELD_OPEN_PER_TARGET: usize = 50;

/// The bytes of one hostile connection, in the framing of `net` where it matters.
fn garbage(net: Net, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let random = |rng: &mut ChaCha8Rng, n: usize| (0..n).map(|_| rng.gen::<u8>()).collect::<Vec<u8>>();
    let kind = rng.gen_range(0..5);
    let mut out = Vec::new();
    if kind == 0 {
        // Anything at all, where a length prefix or a ZMTP greeting is expected.
        let n = rng.gen_range(1..=1024);
        return random(rng, n);
    }
    if net == Net::Zmq {
        // Get past the handshake, to reach the message reader.
        out.extend_from_slice(&zmtp::greeting());
        out.extend_from_slice(&zmtp::ready("PUSH"));
    }
    let header = |out: &mut Vec<u8>, len: u64| match net {
        Net::Tcp => out.extend_from_slice(&(len.min(u32::MAX as u64) as u32).to_be_bytes()),
        Net::Zmq => out.extend_from_slice(&zmtp::message_header(len)),
    };
    match kind {
        1 => {
            // A length over the limit, then a few bytes.
            let top = if net == Net::Tcp { u32::MAX as u64 } else { u64::MAX };
            header(&mut out, rng.gen_range(DEFAULT_MAX_FRAME as u64 + 1..=top));
            let n = rng.gen_range(0..64);
            out.extend(random(rng, n));
        }
        2 => {
            // Half a frame: the length promises more than ever comes.
            let len = rng.gen_range(16..=4096u64);
            header(&mut out, len);
            out.extend(random(rng, len as usize / 2));
        }
        3 => {
            // Whole frames whose bodies are not ballot envelopes (bad magic, or our
            // magic and version followed by junk).
            for _ in 0..rng.gen_range(1..=4) {
                let mut body = Vec::new();
                if rng.gen_bool(0.5) {
                    body.extend_from_slice(b"BL");
                    body.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
                }
                let n = rng.gen_range(0..256);
                body.extend(random(rng, n));
                header(&mut out, body.len() as u64);
                out.extend(body);
            }
        }
        _ => {
            // Random bytes after a plausible start.
            let n = rng.gen_range(1..=1024);
            out.extend(random(rng, n));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Sprayed {
    connections: usize,
    connect_failures: usize,
    bytes: usize,
}

/// Opens `per_target` connections to each target and writes hostile bytes on each (seeded,
/// so a failure can be replayed). Returns what it did, and the connections it keeps open
/// in the middle of a frame.
fn spray(net: Net, targets: &[SocketAddr], per_target: usize, seed: u64) -> (Sprayed, Vec<TcpStream>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut done = Sprayed::default();
    let mut held = Vec::new();
    for i in 0..per_target * targets.len() {
        let target = targets[i % targets.len()];
        let bytes = garbage(net, &mut rng);
        let Ok(mut s) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            done.connect_failures += 1;
            continue;
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        done.connections += 1;
        // The node may close first (that is the point): write errors are expected.
        if s.write_all(&bytes).is_ok() {
            done.bytes += bytes.len();
        }
        if held.len() < HELD_OPEN_PER_TARGET * targets.len() && rng.gen_bool(0.05) {
            held.push(s);
        } else {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    (done, held)
}

async fn garbage_does_not_stop_commits(net: Net) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(net).await;
    c.votes(3).await;

    let targets = vec![c.listen[&NodeId::learner(1)], c.listen[&NodeId::acceptor(2)]];
    let seed = 0x6a7b_a6e0 ^ net as u64;
    let writer = std::thread::spawn(move || spray(net, &targets, GARBAGE_PER_TARGET, seed));
    // Votes go on while the garbage arrives (at least a few, however fast the writer is).
    let deadline = Instant::now() + DEADLINE;
    let mut during = 0;
    while !writer.is_finished() || during < 5 {
        assert!(Instant::now() < deadline, "the garbage writer did not finish within {DEADLINE:?}");
        c.votes(1).await;
        during += 1;
    }
    let (sprayed, held) = writer.join().expect("the garbage writer panicked");
    assert!(sprayed.connections > 0, "no garbage was delivered: {sprayed:?}");
    eprintln!("{net:?}: {sprayed:?}, {} half frames held open, {during} votes committed meanwhile", held.len());

    // With the stalled half frames still open, the cluster commits and reads.
    c.votes(5).await;
    c.concurrent_votes(10).await;
    c.check_tally().await;
    c.all_alive().await;
    drop(held);
    c.votes(3).await;
    c.check_tally().await;
    c.all_alive().await;
}

#[tokio::test]
async fn tcp_garbage_on_the_ports_does_not_stop_commits() {
    garbage_does_not_stop_commits(Net::Tcp).await;
}

#[tokio::test]
async fn zmq_garbage_on_the_ports_does_not_stop_commits() {
    garbage_does_not_stop_commits(Net::Zmq).await;
}

/// The garbage above is not refused for one reason only: aimed at an in-test endpoint of
/// the same transport, whose counters are visible, it reaches every refusal path.
async fn garbage_reaches_every_refusal_path(net: Net) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // An insecure endpoint: the garbage must reach the frame reader, not a TLS handshake
    // (for that, see `tcp_garbage_is_refused_at_the_tls_handshake`).
    let endpoint = Endpoint::bind(net, NodeId::learner(9), BTreeMap::new(), None).await;
    let addr = endpoint.local_addr();
    let writer = std::thread::spawn(move || spray(net, &[addr], 300, 7));
    let deadline = Instant::now() + DEADLINE;
    while !writer.is_finished() {
        assert!(Instant::now() < deadline, "the garbage writer did not finish within {DEADLINE:?}");
        tokio::time::sleep(POLL).await;
    }
    let (sprayed, held) = writer.join().expect("the garbage writer panicked");
    // Every connection that was not held open ends, each counted under its reason.
    let closed = (sprayed.connections - held.len()) as u64;
    loop {
        let s = endpoint.stats();
        if s.connections_closed >= closed {
            break;
        }
        assert!(Instant::now() < deadline, "{closed} connections should have ended: {s:?}");
        tokio::time::sleep(POLL).await;
    }
    let s = endpoint.stats();
    assert!(s.dropped_oversized > 0 && s.dropped_decode > 0 && s.truncated > 0, "{net:?}: {s:?}");
    if net == Net::Zmq {
        assert!(s.bad_handshake > 0, "{s:?}");
    }
    assert_eq!(s.frames_received, 0, "garbage was taken for a message: {s:?}");
}

#[tokio::test]
async fn tcp_garbage_reaches_every_refusal_path() {
    garbage_reaches_every_refusal_path(Net::Tcp).await;
}

#[tokio::test]
async fn zmq_garbage_reaches_every_refusal_path() {
    garbage_reaches_every_refusal_path(Net::Zmq).await;
}

/// With credentials, the same garbage never gets past the TLS handshake: every connection
/// is refused there and counted, and nothing is taken for a message.
#[tokio::test]
async fn tcp_garbage_is_refused_at_the_tls_handshake() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let tmp = TempDir::new("tls-garbage");
    let endpoint = Endpoint::bind(Net::Tcp, NodeId::learner(9), BTreeMap::new(), Some(&certs_in(tmp.path()))).await;
    let addr = endpoint.local_addr();
    let writer = std::thread::spawn(move || spray(Net::Tcp, &[addr], 300, 7));
    let deadline = Instant::now() + DEADLINE;
    // Not `join` here: the endpoint runs on this thread's runtime.
    while !writer.is_finished() {
        assert!(Instant::now() < deadline, "the garbage writer did not finish within {DEADLINE:?}");
        tokio::time::sleep(POLL).await;
    }
    let (sprayed, held) = writer.join().expect("the garbage writer panicked");
    drop(held);
    while endpoint.stats().refused_handshake < sprayed.connections as u64 {
        assert!(Instant::now() < deadline, "{sprayed:?}: {:?}", endpoint.stats());
        tokio::time::sleep(POLL).await;
    }
    let s = endpoint.stats();
    assert_eq!(s.frames_received + s.dropped_decode + s.dropped_oversized + s.truncated, 0, "{s:?}");
}
