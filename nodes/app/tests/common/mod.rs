//! Support for the end-to-end tests of the node binaries: temp dirs, node processes that
//! are killed and reaped on drop, and a small cluster with an in-test client.
#![allow(dead_code)]

use ballot_core::{Command as Cmd, NodeId, Reply, Status, Tally};
use ballot_operator::control::{ControlClient, ControlReply, ControlRequest, CONTROL_DEADLINE};
use ballot_runtime::{ClientError, ClientHandle, SubmitOptions};
use ballot_transports::auth::{Credentials, Identity};
use ballot_transports::{Envelope, NetOptions, TcpTransport, Transport, WireStats, ZmqTransport};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_ballot-node");
/// Bound on every wait (a start, an exit, one vote). It is only there so that a broken
/// node fails the test instead of hanging it: nothing asserts how long anything took.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(10);
pub const CANDIDATES: [&str; 3] = ["ada", "grace", "linus"];
pub const CLIENT: NodeId = NodeId::client(1);
/// A cluster with two proposers, for failover and leader tests.
pub const TWO_PROPOSERS: [NodeId; 6] = [
    NodeId::proposer(1),
    NodeId::proposer(2),
    NodeId::acceptor(1),
    NodeId::acceptor(2),
    NodeId::acceptor(3),
    NodeId::learner(1),
];

/// A cluster with two learners, for "every learner" checks.
pub const TWO_LEARNERS: [NodeId; 6] = [
    NodeId::proposer(1),
    NodeId::acceptor(1),
    NodeId::acceptor(2),
    NodeId::acceptor(3),
    NodeId::learner(1),
    NodeId::learner(2),
];

pub const MEMBERS: [NodeId; 5] =
    [NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(2), NodeId::acceptor(3), NodeId::learner(1)];

/// Tests run one at a time: a cluster is five processes on what may be a two-core
/// machine, and its ports, picked by binding port 0 and then released, must not be taken
/// by another test's sockets before the nodes bind them.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// Processes and files
// ---------------------------------------------------------------------------------------

/// A fresh directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ballot-node-binary-{}-{n}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
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
pub struct Ready {
    pub listen: SocketAddr,
    pub control: Option<SocketAddr>,
    /// The ` http=<addr>` the line ends with when `--http` is given.
    pub http: Option<SocketAddr>,
}

pub fn parse_ready(name: &str, line: &str) -> Ready {
    let bad = || panic!("{name} printed {line:?}, not `ready {name} listen=<addr> control=<addr>`");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (words, http) = match words[..] {
        [a, b, c, d, http] => {
            let http = match http.strip_prefix("http=").and_then(|a| a.parse::<SocketAddr>().ok()) {
                Some(h) => h,
                None => panic!("{name} printed {line:?}: its last word is not http=<addr>"),
            };
            (vec![a, b, c, d], Some(http))
        }
        _ => (words, None),
    };
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
    Ready { listen, control, http }
}

/// One `ballot-node` process. Dropping it kills and reaps the process, on every path out
/// of a test, a failed assertion included; the kernel kills it too if the test thread
/// dies without unwinding (`PR_SET_PDEATHSIG`).
pub struct NodeProc {
    pub name: String,
    pub child: Child,
    /// Its stderr (appended to across restarts).
    pub log: PathBuf,
    /// Its stdout, line by line, from a reader thread.
    pub stdout: mpsc::Receiver<String>,
    pub exited: Option<ExitStatus>,
}

impl NodeProc {
    pub fn spawn(name: &str, args: &[OsString], log: &Path) -> NodeProc {
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
            // Credentials only as each test gives them.
            .env_remove("BALLOT_CERTS")
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
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        // Not reaped yet, so the pid is still this process's (at worst a zombie).
        assert!(self.is_running(), "{} already exited: {:?}", self.name, self.exited);
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we own.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }

    pub async fn wait_exit(&mut self) -> ExitStatus {
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
    pub async fn wait_ready(&mut self) -> Ready {
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

    pub fn stderr(&self) -> String {
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

/// The credentials folder of the tests in `dir`: `dir/certs`, made on first use, for
/// every proposer, acceptor and learner numbered 1 to 9, a client and an operator.
pub fn certs_in(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    if !certs.join("ca.pem").exists() {
        let nodes: Vec<NodeId> =
            (1..=9).flat_map(|i| [NodeId::proposer(i), NodeId::acceptor(i), NodeId::learner(i)]).collect();
        ballot_transports::auth::generate(&certs, &nodes).unwrap_or_else(|e| panic!("credentials: {e}"));
    }
    certs
}

/// `id`'s share of the credentials folder `certs`.
pub fn creds_of(certs: &Path, id: NodeId) -> Arc<Credentials> {
    Arc::new(Credentials::load(certs, Identity::of(id)).unwrap_or_else(|e| panic!("{e}")))
}

pub fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A stderr file in `dir` for one run of `name`, used by no other run.
pub fn fresh_log(dir: &Path, name: &str) -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    dir.join(format!("{name}.{}.stderr", RUNS.fetch_add(1, Ordering::Relaxed)))
}

/// Runs a node that is expected to refuse to start; returns its exit status and stderr.
pub async fn run_to_exit(dir: &Path, name: &str, args: &[OsString]) -> (ExitStatus, String) {
    let mut node = NodeProc::spawn(name, args, &fresh_log(dir, name));
    let status = node.wait_exit().await;
    (status, node.stderr())
}

/// The stderr of a refusal is exactly one line, `ballot-node: ...`, with no panic in it.
pub fn assert_one_line_error(what: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr should be one line, got {stderr:?}");
    assert!(lines[0].starts_with("ballot-node: "), "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{what}: {stderr:?}");
    lines[0].to_string()
}

/// `n` free ports on 127.0.0.1, all held until all are picked so none comes twice.
pub fn free_ports(n: usize) -> Vec<SocketAddr> {
    ballot_transports::free_loopback_ports(n).expect("free loopback ports")
}

/// The operator's token in the credentials folder `certs`: the first frame of a control
/// connection to a node started with `--certs`.
pub fn operator_token(certs: &Path) -> String {
    Credentials::load(certs, Identity::Operator).unwrap_or_else(|e| panic!("{e}")).token
}

pub async fn status_of(control: SocketAddr, token: &str) -> Status {
    let mut c = ControlClient::connect(control, Some(token)).await.unwrap_or_else(|e| panic!("{e}"));
    match c.request(&ControlRequest::Status, CONTROL_DEADLINE).await {
        Ok(ControlReply::Status(s)) => s,
        other => panic!("status from {control}: {other:?}"),
    }
}

pub async fn ping(control: SocketAddr, token: &str) {
    let mut c = ControlClient::connect(control, Some(token)).await.unwrap_or_else(|e| panic!("{e}"));
    let reply = c.request(&ControlRequest::Ping, CONTROL_DEADLINE).await;
    assert!(matches!(reply, Ok(ControlReply::Ok)), "ping {control}: {reply:?}");
}

// ---------------------------------------------------------------------------------------
// A cluster of processes and a client
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    Tcp,
    Zmq,
}

impl Net {
    pub fn flag(self) -> &'static str {
        match self {
            Net::Tcp => "tcp",
            Net::Zmq => "zmq",
        }
    }
}

/// An in-test endpoint of either transport, on a free port of 127.0.0.1.
pub enum Endpoint {
    Tcp(TcpTransport),
    Zmq(ZmqTransport),
}

impl Endpoint {
    /// Binds `id`, with its credentials from `certs` (none: insecure).
    pub async fn bind(net: Net, id: NodeId, peers: BTreeMap<NodeId, SocketAddr>, certs: Option<&Path>) -> Endpoint {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let opts = NetOptions { credentials: certs.map(|c| creds_of(c, id)), ..NetOptions::default() };
        match net {
            Net::Tcp => Endpoint::Tcp(TcpTransport::bind(id, any, peers, opts).await.expect("bind an endpoint")),
            Net::Zmq => Endpoint::Zmq(ZmqTransport::bind(id, any, peers, opts).await.expect("bind an endpoint")),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Endpoint::Tcp(t) => t.local_addr(),
            Endpoint::Zmq(t) => t.local_addr(),
        }
    }

    pub fn stats(&self) -> WireStats {
        match self {
            Endpoint::Tcp(t) => t.stats(),
            Endpoint::Zmq(t) => t.stats(),
        }
    }

    /// The next envelope received, or `None` at the deadline.
    pub async fn recv_within(&mut self, deadline: Duration) -> Option<Envelope> {
        let next = async {
            match self {
                Endpoint::Tcp(t) => t.recv().await,
                Endpoint::Zmq(t) => t.recv().await,
            }
        };
        tokio::time::timeout(deadline, next).await.ok().flatten()
    }

    pub fn into_client(self, proposers: Vec<NodeId>, members: Vec<NodeId>) -> ClientHandle {
        match self {
            Endpoint::Tcp(t) => ClientHandle::spawn(t, proposers, members),
            Endpoint::Zmq(t) => ClientHandle::spawn(t, proposers, members),
        }
    }
}

/// The five members as processes, and a client that every node knows by address.
pub struct Cluster {
    pub net: Net,
    // Declared before `dir`: the processes die before their files are removed.
    pub nodes: BTreeMap<NodeId, NodeProc>,
    pub dir: TempDir,
    /// The credentials folder every node and the client run with (`--certs`).
    pub certs: PathBuf,
    pub listen: BTreeMap<NodeId, SocketAddr>,
    pub control: BTreeMap<NodeId, SocketAddr>,
    /// HTTP addresses of the nodes started with `--http`.
    pub http: BTreeMap<NodeId, SocketAddr>,
    /// More flags every node gets (`--discovery`, `--http`).
    pub extra_args: Vec<String>,
    /// The `--peers` value: every member and the client.
    pub peers: String,
    pub client: ClientHandle,
    pub voters: u64,
    /// What the tally must be: every vote cast so far succeeded.
    pub expected: BTreeMap<&'static str, u64>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.client.close();
    }
}

impl Cluster {
    pub async fn start(net: Net) -> Cluster {
        Self::start_with(net, &MEMBERS).await
    }

    /// A cluster of exactly `members`.
    pub async fn start_with(net: Net, members: &[NodeId]) -> Cluster {
        Self::start_with_args(net, members, &[]).await
    }

    /// A cluster of exactly `members`, each node also given `extra_args`.
    pub async fn start_with_args(net: Net, members: &[NodeId], extra_args: &[&str]) -> Cluster {
        let dir = TempDir::new(net.flag());
        let certs = certs_in(dir.path());
        let listen: BTreeMap<NodeId, SocketAddr> = members.iter().copied().zip(free_ports(members.len())).collect();
        let endpoint = Endpoint::bind(net, CLIENT, listen.clone(), Some(&certs)).await;
        let client_addr = endpoint.local_addr();
        let proposers = members.iter().copied().filter(|n| n.role == ballot_core::Role::Proposer).collect();
        let client = endpoint.into_client(proposers, members.to_vec());
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
            certs,
            listen,
            control: BTreeMap::new(),
            http: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            peers,
            client,
            voters: 0,
            expected: CANDIDATES.iter().map(|&c| (c, 0)).collect(),
        };
        for &id in members {
            c.spawn(id);
        }
        for &id in members {
            c.wait_ready(id).await;
        }
        c
    }

    /// Starts `id` on its address and data dir (a restart if it ran before).
    pub fn spawn(&mut self, id: NodeId) {
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
            "--certs",
            &self.certs.to_string_lossy(),
            "--data-dir",
        ]);
        args.push(self.dir.path().join(&name).into());
        args.extend(self.extra_args.iter().map(OsString::from));
        let log = self.dir.path().join(format!("{name}.stderr"));
        self.nodes.insert(id, NodeProc::spawn(&name, &args, &log));
    }

    pub async fn wait_ready(&mut self, id: NodeId) {
        let ready = self.node(id).wait_ready().await;
        assert_eq!(ready.listen, self.listen[&id], "{id} listens where --listen said");
        self.control.insert(id, ready.control.expect("--control was given"));
        if let Some(http) = ready.http {
            self.http.insert(id, http);
        }
    }

    pub async fn restart(&mut self, id: NodeId) {
        self.spawn(id);
        self.wait_ready(id).await;
    }

    pub fn node(&mut self, id: NodeId) -> &mut NodeProc {
        self.nodes.get_mut(&id).expect("a member")
    }

    pub async fn status(&self, id: NodeId) -> Status {
        status_of(self.control[&id], &operator_token(&self.certs)).await
    }

    /// Submits `cmd` until it has a final answer. `NoQuorum` is retried with the same
    /// request id (never a second vote); anything else but an answer fails the test.
    pub async fn submit(&self, cmd: Cmd) -> Reply {
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

    pub fn next_vote(&mut self) -> (Cmd, &'static str) {
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
    pub async fn votes(&mut self, n: usize) {
        for _ in 0..n {
            let (cmd, candidate) = self.next_vote();
            let reply = self.submit(cmd.clone()).await;
            self.counted(&cmd, candidate, reply);
        }
    }

    /// Casts `n` votes of new voters all at once; each must succeed.
    pub async fn concurrent_votes(&mut self, n: usize) {
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

    pub fn counted(&mut self, cmd: &Cmd, candidate: &'static str, reply: Reply) {
        assert!(matches!(reply, Reply::Vote { result: Ok(()), .. }), "{cmd}: {reply:?}");
        *self.expected.get_mut(candidate).expect("a candidate") += 1;
    }

    pub async fn read_tally(&self) -> Tally {
        let cmd = Cmd::Read { request_id: self.client.next_request_id(), client: CLIENT };
        match self.submit(cmd.clone()).await {
            Reply::Read { tally, .. } => tally,
            other => panic!("{cmd}: {other:?}"),
        }
    }

    /// A read returns exactly the votes cast so far, and the learner's status agrees.
    pub async fn check_tally(&self) {
        let want: Tally = CANDIDATES.iter().map(|&c| (c.to_string(), self.expected[c])).collect();
        assert_eq!(self.read_tally().await, want, "the read's tally");
        let learner = self.status(NodeId::learner(1)).await;
        assert_eq!(learner.tally.as_ref(), Some(&want), "the learner's status: {learner:?}");
    }

    /// Every member is still running and answers on its control channel.
    pub async fn all_alive(&mut self) {
        self.all_alive_of(&MEMBERS).await
    }

    /// Every one of `members` is still running and answers on its control channel.
    pub async fn all_alive_of(&mut self, members: &[NodeId]) {
        for &id in members {
            let node = self.node(id);
            assert!(node.is_running(), "{id} exited: {:?}\n{}", node.exited, node.stderr());
            ping(self.control[&id], &operator_token(&self.certs)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. A cluster commits votes and answers reads, over TCP and ZeroMQ
// ---------------------------------------------------------------------------------------

/// The `ballot` command line.
pub const CLI: &str = env!("CARGO_BIN_EXE_ballot");

/// Runs `ballot --timeout-ms 8000 ARGS` (with `stdin` if given); killed if it outlives
/// the deadline. Blocking: from async code call it through `spawn_blocking`.
pub fn run_ballot(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(CLI)
        .env_remove("BALLOT_CERTS")
        .args(["--timeout-ms", "8000"])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ballot");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("ballot output"),
        Err(_) => {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("ballot {args:?} did not finish within {DEADLINE:?}");
        }
    }
}
