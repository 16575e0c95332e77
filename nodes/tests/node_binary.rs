//! End-to-end tests of the `ballot-node` binary: real processes on loopback, driven by an
//! in-test client (a transport of its own wrapped by `ClientHandle`) and the control
//! channel.
//!
//! - A 3-acceptor, 1-proposer, 1-learner cluster commits votes and answers a read, over
//!   TCP and over ZeroMQ (one helper, parameterised by transport).
//! - SIGTERM and SIGINT stop a node with status 0; an acceptor killed with SIGKILL and
//!   restarted on its data dir reports the promise it had, and the cluster commits on.
//! - A data dir of another cluster, a log corrupted in the middle, a bad `--peers` entry,
//!   an unknown `--id` and a cluster without learner are refused with one line on stderr.
//! - Thousands of hostile byte strings on the listen ports of the learner and an acceptor
//!   while votes are being committed: the nodes live on and votes keep committing.
//!
//! Every child is killed and reaped on every path out of a test (`NodeProc`'s `Drop`, panics
//! included), every wait has a deadline, and no assertion is about elapsed time.
#![cfg(unix)]

use ballot_core::{Ballot, Command as Cmd, NodeId, PersistOp, Reply, Status, Storage, Tally, PROTOCOL_VERSION};
use ballot_nodes::control::{ControlClient, ControlReply, ControlRequest, CONTROL_DEADLINE};
use ballot_nodes::{ClientError, ClientHandle, DiskStorage, Identity, SubmitOptions};
use ballot_transports::wire::DEFAULT_MAX_FRAME;
use ballot_transports::zmq::zmtp;
use ballot_transports::{NetOptions, TcpTransport, WireStats, ZmqTransport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_ballot-node");
/// Bound on every wait (a start, an exit, one vote). It is only there so that a broken
/// node fails the test instead of hanging it: nothing asserts how long anything took.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);
const CANDIDATES: [&str; 3] = ["ada", "grace", "linus"];
const CLIENT: NodeId = NodeId::client(1);
const MEMBERS: [NodeId; 5] =
    [NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(2), NodeId::acceptor(3), NodeId::learner(1)];

/// Tests run one at a time: a cluster is five processes on what may be a two-core
/// machine, and its ports, picked by binding port 0 and then released, must not be taken
/// by another test's sockets before the nodes bind them.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// Processes and files
// ---------------------------------------------------------------------------------------

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ballot-node-binary-{}-{n}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a node prints on stdout once it listens: `ready <node> listen=<addr> control=<addr>`.
#[derive(Debug)]
struct Ready {
    listen: SocketAddr,
    control: Option<SocketAddr>,
}

fn parse_ready(name: &str, line: &str) -> Ready {
    let bad = || panic!("{name} printed {line:?}, not `ready {name} listen=<addr> control=<addr>`");
    let words: Vec<&str> = line.split_whitespace().collect();
    let [ready, node, listen, control] = words[..] else { bad() };
    if ready != "ready" || node != name {
        bad();
    }
    let listen = listen.strip_prefix("listen=").and_then(|a| a.parse().ok()).unwrap_or_else(|| bad());
    let control = match control.strip_prefix("control=") {
        Some("-") => None,
        Some(a) => Some(a.parse().unwrap_or_else(|_| bad())),
        None => bad(),
    };
    Ready { listen, control }
}

/// One `ballot-node` process. Dropping it kills and reaps the process, on every path out
/// of a test, a failed assertion included; the kernel kills it too if the test thread
/// dies without unwinding (`PR_SET_PDEATHSIG`).
struct NodeProc {
    name: String,
    child: Child,
    /// Its stderr (appended to across restarts).
    log: PathBuf,
    /// Its stdout, line by line, from a reader thread.
    stdout: mpsc::Receiver<String>,
    exited: Option<ExitStatus>,
}

impl NodeProc {
    fn spawn(name: &str, args: &[OsString], log: &Path) -> NodeProc {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            // Default log level, and a backtrace if anything panics, so that the one-line
            // checks below would see it.
            .env_remove("RUST_LOG")
            .env("RUST_BACKTRACE", "1")
            // Plain logs (they are shown when a test fails).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        NodeProc { name: name.to_string(), child, log: log.to_path_buf(), stdout, exited: None }
    }

    /// The exit status, once the process has exited (and then it is reaped).
    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
        }
        self.exited
    }

    fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn signal(&mut self, sig: libc::c_int) {
        // Not reaped yet, so the pid is still this process's (at worst a zombie).
        assert!(self.is_running(), "{} already exited: {:?}", self.name, self.exited);
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we own.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {DEADLINE:?}", self.name);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the ready line; fails if the process exits or stays silent too long.
    async fn wait_ready(&mut self) -> Ready {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.stdout.try_recv() {
                Ok(line) => return parse_ready(&self.name, &line),
                Err(mpsc::TryRecvError::Disconnected) => {
                    let status = self.wait_exit().await;
                    panic!("{} exited before it was ready ({status}): {}", self.name, self.stderr());
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(Instant::now() < deadline, "{} was not ready within {DEADLINE:?}: {}", self.name, self.stderr());
            tokio::time::sleep(POLL).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.stderr();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- last stderr lines of {} ---", self.name);
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
    }
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A stderr file in `dir` for one run of `name`, used by no other run.
fn fresh_log(dir: &Path, name: &str) -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    dir.join(format!("{name}.{}.stderr", RUNS.fetch_add(1, Ordering::Relaxed)))
}

/// Runs a node that is expected to refuse to start; returns its exit status and stderr.
async fn run_to_exit(dir: &Path, name: &str, args: &[OsString]) -> (ExitStatus, String) {
    let mut node = NodeProc::spawn(name, args, &fresh_log(dir, name));
    let status = node.wait_exit().await;
    (status, node.stderr())
}

/// The stderr of a refusal is exactly one line, `ballot-node: ...`, with no panic in it.
fn assert_one_line_error(what: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr should be one line, got {stderr:?}");
    assert!(lines[0].starts_with("ballot-node: "), "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{what}: {stderr:?}");
    lines[0].to_string()
}

/// `n` free ports on 127.0.0.1, all held until all are picked so none comes twice.
fn free_ports(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local_addr")).collect()
}

async fn status_of(control: SocketAddr) -> Status {
    let mut c = ControlClient::connect(control).await.unwrap_or_else(|e| panic!("{e}"));
    match c.request(&ControlRequest::Status, CONTROL_DEADLINE).await {
        Ok(ControlReply::Status(s)) => s,
        other => panic!("status from {control}: {other:?}"),
    }
}

async fn ping(control: SocketAddr) {
    let mut c = ControlClient::connect(control).await.unwrap_or_else(|e| panic!("{e}"));
    let reply = c.request(&ControlRequest::Ping, CONTROL_DEADLINE).await;
    assert!(matches!(reply, Ok(ControlReply::Ok)), "ping {control}: {reply:?}");
}

// ---------------------------------------------------------------------------------------
// A cluster of processes and a client
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    Tcp,
    Zmq,
}

impl Net {
    fn flag(self) -> &'static str {
        match self {
            Net::Tcp => "tcp",
            Net::Zmq => "zmq",
        }
    }
}

/// An in-test endpoint of either transport, on a free port of 127.0.0.1.
enum Endpoint {
    Tcp(TcpTransport),
    Zmq(ZmqTransport),
}

impl Endpoint {
    async fn bind(net: Net, id: NodeId, peers: BTreeMap<NodeId, SocketAddr>) -> Endpoint {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let opts = NetOptions::default();
        match net {
            Net::Tcp => Endpoint::Tcp(TcpTransport::bind(id, any, peers, opts).await.expect("bind an endpoint")),
            Net::Zmq => Endpoint::Zmq(ZmqTransport::bind(id, any, peers, opts).await.expect("bind an endpoint")),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Endpoint::Tcp(t) => t.local_addr(),
            Endpoint::Zmq(t) => t.local_addr(),
        }
    }

    fn stats(&self) -> WireStats {
        match self {
            Endpoint::Tcp(t) => t.stats(),
            Endpoint::Zmq(t) => t.stats(),
        }
    }

    fn into_client(self, proposers: Vec<NodeId>) -> ClientHandle {
        match self {
            Endpoint::Tcp(t) => ClientHandle::spawn(t, proposers),
            Endpoint::Zmq(t) => ClientHandle::spawn(t, proposers),
        }
    }
}

/// The five members as processes, and a client that every node knows by address.
struct Cluster {
    net: Net,
    // Declared before `dir`: the processes die before their files are removed.
    nodes: BTreeMap<NodeId, NodeProc>,
    dir: TempDir,
    listen: BTreeMap<NodeId, SocketAddr>,
    control: BTreeMap<NodeId, SocketAddr>,
    /// The `--peers` value: every member and the client.
    peers: String,
    client: ClientHandle,
    voters: u64,
    /// What the tally must be: every vote cast so far succeeded.
    expected: BTreeMap<&'static str, u64>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.client.close();
    }
}

impl Cluster {
    async fn start(net: Net) -> Cluster {
        let dir = TempDir::new(net.flag());
        let listen: BTreeMap<NodeId, SocketAddr> = MEMBERS.into_iter().zip(free_ports(MEMBERS.len())).collect();
        let endpoint = Endpoint::bind(net, CLIENT, listen.clone()).await;
        let client_addr = endpoint.local_addr();
        let client = endpoint.into_client(vec![NodeId::proposer(1)]);
        let peers = listen
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .chain(std::iter::once(format!("{CLIENT}={client_addr}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            net,
            nodes: BTreeMap::new(),
            dir,
            listen,
            control: BTreeMap::new(),
            peers,
            client,
            voters: 0,
            expected: CANDIDATES.iter().map(|&c| (c, 0)).collect(),
        };
        for id in MEMBERS {
            c.spawn(id);
        }
        for id in MEMBERS {
            c.wait_ready(id).await;
        }
        c
    }

    /// Starts `id` on its address and data dir (a restart if it ran before).
    fn spawn(&mut self, id: NodeId) {
        if let Some(old) = self.nodes.get_mut(&id) {
            assert!(!old.is_running(), "{id} is still running");
        }
        let name = id.to_string();
        let mut args = os_args(&[
            "--id",
            &name,
            "--transport",
            self.net.flag(),
            "--listen",
            &self.listen[&id].to_string(),
            "--peers",
            &self.peers,
            "--control",
            "127.0.0.1:0",
            "--candidates",
            &CANDIDATES.join(","),
            "--seed",
            &(id.index as u64 * 31 + id.role as u64).to_string(),
            "--data-dir",
        ]);
        args.push(self.dir.path().join(&name).into());
        let log = self.dir.path().join(format!("{name}.stderr"));
        self.nodes.insert(id, NodeProc::spawn(&name, &args, &log));
    }

    async fn wait_ready(&mut self, id: NodeId) {
        let ready = self.node(id).wait_ready().await;
        assert_eq!(ready.listen, self.listen[&id], "{id} listens where --listen said");
        self.control.insert(id, ready.control.expect("--control was given"));
    }

    async fn restart(&mut self, id: NodeId) {
        self.spawn(id);
        self.wait_ready(id).await;
    }

    fn node(&mut self, id: NodeId) -> &mut NodeProc {
        self.nodes.get_mut(&id).expect("a member")
    }

    async fn status(&self, id: NodeId) -> Status {
        status_of(self.control[&id]).await
    }

    /// Submits `cmd` until it has a final answer. `NoQuorum` is retried with the same
    /// request id (never a second vote); anything else but an answer fails the test.
    async fn submit(&self, cmd: Cmd) -> Reply {
        let opts = SubmitOptions { timeout: DEADLINE, ..SubmitOptions::default() };
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.client.submit(cmd.clone(), &opts).await {
                Ok(reply) => return reply,
                Err(ClientError::NoQuorum) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Err(e) => panic!("{cmd}: {e}"),
            }
        }
    }

    fn next_vote(&mut self) -> (Cmd, &'static str) {
        self.voters += 1;
        let candidate = CANDIDATES[self.voters as usize % CANDIDATES.len()];
        let cmd = Cmd::Vote {
            request_id: self.client.next_request_id(),
            client: CLIENT,
            voter: format!("voter-{}", self.voters),
            candidate: candidate.to_string(),
        };
        (cmd, candidate)
    }

    /// Casts `n` votes of new voters, one after the other; each must succeed.
    async fn votes(&mut self, n: usize) {
        for _ in 0..n {
            let (cmd, candidate) = self.next_vote();
            let reply = self.submit(cmd.clone()).await;
            self.counted(&cmd, candidate, reply);
        }
    }

    /// Casts `n` votes of new voters all at once; each must succeed.
    async fn concurrent_votes(&mut self, n: usize) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (cmd, candidate) = self.next_vote();
            let client = self.client.clone();
            set.spawn(async move {
                let opts = SubmitOptions { timeout: DEADLINE, ..SubmitOptions::default() };
                (client.submit(cmd.clone(), &opts).await, cmd, candidate)
            });
        }
        while let Some(joined) = set.join_next().await {
            let (reply, cmd, candidate) = joined.expect("vote task");
            let reply = reply.unwrap_or_else(|e| panic!("{cmd}: {e}"));
            self.counted(&cmd, candidate, reply);
        }
    }

    fn counted(&mut self, cmd: &Cmd, candidate: &'static str, reply: Reply) {
        assert!(matches!(reply, Reply::Vote { result: Ok(()), .. }), "{cmd}: {reply:?}");
        *self.expected.get_mut(candidate).expect("a candidate") += 1;
    }

    async fn read_tally(&self) -> Tally {
        let cmd = Cmd::Read { request_id: self.client.next_request_id(), client: CLIENT };
        match self.submit(cmd.clone()).await {
            Reply::Read { tally, .. } => tally,
            other => panic!("{cmd}: {other:?}"),
        }
    }

    /// A read returns exactly the votes cast so far, and the learner's status agrees.
    async fn check_tally(&self) {
        let want: Tally = CANDIDATES.iter().map(|&c| (c.to_string(), self.expected[c])).collect();
        assert_eq!(self.read_tally().await, want, "the read's tally");
        let learner = self.status(NodeId::learner(1)).await;
        assert_eq!(learner.tally.as_ref(), Some(&want), "the learner's status: {learner:?}");
    }

    /// Every member is still running and answers on its control channel.
    async fn all_alive(&mut self) {
        for id in MEMBERS {
            let node = self.node(id);
            assert!(node.is_running(), "{id} exited: {:?}\n{}", node.exited, node.stderr());
            ping(self.control[&id]).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. A cluster commits votes and answers reads, over TCP and ZeroMQ
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// 3. Refusals: foreign and corrupt data dirs, bad command lines
// ---------------------------------------------------------------------------------------

/// Arguments of a single node outside any running cluster: it listens on a free port and
/// names the other members at a port where nobody listens (a lone acceptor never dials).
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
    let cases: [(&str, &str, &[&str], &str); 5] = [
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
    ];
    for (what, id, extra, mentions) in cases {
        let mut args = os_args(&["--id", id]);
        args.extend(os_args(extra));
        args.push("--data-dir".into());
        args.push(data.clone().into());
        let (status, stderr) = run_to_exit(tmp.path(), id, &args).await;
        assert_eq!(status.code(), Some(2), "{what}: {status}, stderr {stderr:?}");
        let line = assert_one_line_error(what, &stderr);
        assert!(line.contains(mentions), "{what}: the message should mention {mentions:?}: {line}");
        // Refused before anything touched the disk.
        assert!(!data.exists(), "{what}: the data dir was created");
    }
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
    let endpoint = Endpoint::bind(net, NodeId::learner(9), BTreeMap::new()).await;
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
