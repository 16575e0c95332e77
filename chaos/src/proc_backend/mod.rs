//! The process backend (`--transport tcp|zmq`): every node its own OS process on
//! 127.0.0.1 with free ports, its own data dir and log file under a run folder.
//!
//! `kill` is SIGKILL, `pause`/`resume` are SIGSTOP/SIGCONT, `restart` starts the same node
//! on the same ports and data dir. Partitions, drops, delays and duplication are applied
//! inside each node's transport through its control channel: not a kernel partition (the
//! sockets stay up; messages are discarded on their way out and in). Every node learns the
//! current faults again when it restarts or resumes.
//!
//! Every run makes a fresh credentials folder in its run folder (`certs/`, made as `ballot
//! certs` makes them, see [`ballot_transports::auth`], for the configured nodes and
//! [`SPARE_LEARNERS`] learners that may join): every node and discovery get `--certs`
//! (mutual TLS on tcp, CURVE on zmq, tokens on the control channel and discovery), and the
//! client here runs as the `client` identity and sends the operator's token, so every
//! scenario runs on an authenticated cluster without knowing it. A learner added past the
//! spares gets its own credentials from the same CA then. `ClusterSpec::insecure` runs
//! the nodes with `--insecure` instead (for `chaos bench --auth off`).
//!
//! No orphans: every child is killed and reaped when the backend is dropped (pass, fail,
//! script error, panic), and is started with PR_SET_PDEATHSIG so the kernel kills it if
//! chaos itself dies (Ctrl-C, SIGKILL).

mod disk;

use crate::cluster::Fault;
use crate::invariants::Recorder;
use ballot_core::{Config, NodeId, Status};
use ballot_operator::control::{ControlClient, ControlReply, ControlRequest};
use ballot_operator::discovery::DiscoveryClient;
use ballot_runtime::ClientHandle;
use ballot_transports::auth::{self, Credentials, Identity};
use ballot_transports::NetKind;
use ballot_transports::{EventLog, NetOptions, TcpTransport, ZmqTransport};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Deadline for a node to start answering on its control channel.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// Deadline of one control request.
const CONTROL_DEADLINE: Duration = Duration::from_millis(1000);
/// Learners beyond the configured ones that a run's credentials cover (`add_learner`).
pub const SPARE_LEARNERS: u16 = 4;

struct Proc {
    child: Option<Child>,
    paused: bool,
    incarnation: u64,
}

/// Every node of a cluster as its own OS process, with the client in this process.
pub struct ProcBackend {
    config: Arc<Config>,
    kind: NetKind,
    seed: u64,
    run_dir: PathBuf,
    program: (PathBuf, Vec<String>),
    addrs: RefCell<BTreeMap<NodeId, (SocketAddr, SocketAddr)>>,
    client_addr: SocketAddr,
    procs: RefCell<BTreeMap<NodeId, Proc>>,
    /// Faults in force since the last heal, replayed to a node that (re)starts or resumes.
    faults: RefCell<Vec<Fault>>,
    recorder: Arc<Mutex<Recorder>>,
    /// Per learner, the last applied slot already fed to the recorder.
    pulled: RefCell<BTreeMap<NodeId, u64>>,
    log: EventLog,
    /// The discovery process, when the cluster has one: its address and process.
    discovery: Option<(SocketAddr, RefCell<Option<Child>>)>,
    /// The run's credentials folder (`--certs` of every node); `None` runs the nodes with
    /// `--insecure`.
    certs: Option<PathBuf>,
    /// The operator's token, the first frame of every control connection (`None`:
    /// insecure, the channel is open).
    operator_token: Option<String>,
}

/// Writes the run's credentials into `dir`: every configured node, [`SPARE_LEARNERS`]
/// more learners, a client and the operator. Returns the client's credentials (for the
/// backend's own client transport) and the operator's token.
fn make_credentials(dir: &Path, config: &Config) -> Result<(Arc<Credentials>, String), String> {
    let spare = (1..=SPARE_LEARNERS).map(|i| NodeId::learner(config.learners.len() as u16 + i));
    let ids: Vec<NodeId> = config.nodes().chain(spare).collect();
    ballot_transports::auth::generate(dir, &ids).map_err(|e| format!("cannot make the run's credentials: {e}"))?;
    let load = |who| Credentials::load(dir, who).map_err(|e| e.to_string());
    let operator = load(Identity::Operator)?;
    Ok((Arc::new(load(Identity::Client)?), operator.token))
}

/// How to start a node: `BALLOT_NODE_BIN`, else this `chaos` binary's `node` command, else
/// a `chaos` or `ballot-node` binary next to the running executable (tests).
pub fn node_program() -> Result<(PathBuf, Vec<String>), String> {
    if let Ok(p) = std::env::var("BALLOT_NODE_BIN") {
        return Ok((PathBuf::from(p), Vec::new()));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    if exe.file_stem().is_some_and(|s| s == "chaos") {
        return Ok((exe, vec!["node".into()]));
    }
    for dir in exe.ancestors().skip(1).take(2) {
        if dir.join("chaos").is_file() {
            return Ok((dir.join("chaos"), vec!["node".into()]));
        }
        if dir.join("ballot-node").is_file() {
            return Ok((dir.join("ballot-node"), Vec::new()));
        }
    }
    Err("cannot find the node binary: build it (cargo build -p ballot-chaos) or set BALLOT_NODE_BIN".into())
}

/// If chaos dies, for any reason, the kernel kills the child (Linux).
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

fn free_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    ballot_transports::free_loopback_ports(n)
}

impl ProcBackend {
    /// Start every node (and discovery, when asked) as a process under a new run folder,
    /// and a client, and wait until every node answers on its control channel. `secure`:
    /// with a fresh credentials folder (else `--insecure`).
    pub async fn start(
        config: Arc<Config>,
        kind: NetKind,
        seed: u64,
        log: EventLog,
        recorder: Arc<Mutex<Recorder>>,
        (with_discovery, secure): (bool, bool),
    ) -> Result<(Self, ClientHandle), String> {
        let program = node_program()?;
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run_dir = std::env::temp_dir().join(format!("ballot-run-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        let ids: Vec<NodeId> = config.nodes().collect();
        let ports = free_ports(ids.len() * 2).map_err(|e| format!("cannot find free ports: {e}"))?;
        let addrs: BTreeMap<NodeId, (SocketAddr, SocketAddr)> =
            ids.iter().enumerate().map(|(i, &id)| (id, (ports[2 * i], ports[2 * i + 1]))).collect();
        let peers: BTreeMap<NodeId, SocketAddr> = addrs.iter().map(|(&id, &(a, _))| (id, a)).collect();
        let certs = secure.then(|| run_dir.join("certs"));
        // The client proves the `client` identity as the nodes prove theirs.
        let mut client_opts = NetOptions::default();
        let mut operator_token = None;
        if let Some(dir) = &certs {
            let (client_creds, token) = make_credentials(dir, &config)?;
            client_opts.credentials = Some(client_creds);
            operator_token = Some(token);
        }
        let client_id = NodeId::client(1);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (client, client_addr) = match kind {
            NetKind::Tcp => {
                let t = TcpTransport::bind(client_id, any, peers, client_opts)
                    .await
                    .map_err(|e| format!("client cannot listen: {e}"))?;
                let a = t.local_addr();
                (ClientHandle::spawn(t, config.proposers.clone(), ids.clone()), a)
            }
            NetKind::Zmq => {
                let t = ZmqTransport::bind(client_id, any, peers, client_opts)
                    .await
                    .map_err(|e| format!("client cannot listen: {e}"))?;
                let a = t.local_addr();
                (ClientHandle::spawn(t, config.proposers.clone(), ids.clone()), a)
            }
        };
        let procs = ids.iter().map(|&id| (id, Proc { child: None, paused: false, incarnation: 0 })).collect();
        let backend = ProcBackend {
            config,
            kind,
            seed,
            run_dir,
            program,
            addrs: RefCell::new(addrs),
            client_addr,
            procs: RefCell::new(procs),
            faults: RefCell::new(Vec::new()),
            recorder,
            pulled: RefCell::new(BTreeMap::new()),
            log,
            discovery: None,
            certs,
            operator_token,
        };
        let mut backend = backend;
        if with_discovery {
            let addr = free_ports(1).map_err(|e| format!("cannot find a free port: {e}"))?[0];
            backend.discovery = Some((addr, RefCell::new(None)));
            backend.restart_discovery().await?;
        }
        for &id in &ids {
            backend.spawn(id, &[])?;
        }
        for &id in &ids {
            backend.wait_ready(id).await?;
        }
        Ok((backend, client))
    }

    /// The run folder: every node's data dir and log file.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// `--certs DIR` of every process of the run, or `--insecure`.
    fn certs_args(&self) -> Vec<std::ffi::OsString> {
        match &self.certs {
            Some(dir) => vec!["--certs".into(), dir.clone().into_os_string()],
            None => vec!["--insecure".into()],
        }
    }

    fn spawn(&self, id: NodeId, extra: &[&str]) -> Result<(), String> {
        let (listen, control) = self.addrs.borrow()[&id];
        let peers: Vec<String> = self
            .addrs
            .borrow()
            .iter()
            .map(|(n, (a, _))| format!("{n}={a}"))
            .chain(std::iter::once(format!("{}={}", NodeId::client(1), self.client_addr)))
            .collect();
        let t = &self.config.timing;
        let dir = self.run_dir.join(id.to_string());
        let log_path = self.run_dir.join(format!("{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut procs = self.procs.borrow_mut();
        let p = procs.get_mut(&id).expect("configured node");
        p.incarnation += 1;
        let mut cmd = Command::new(&self.program.0);
        cmd.args(&self.program.1)
            .arg("--id")
            .arg(id.to_string())
            .args(["--transport", self.kind.name()])
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--control")
            .arg(control.to_string())
            .arg("--peers")
            .arg(peers.join(","))
            .arg("--data-dir")
            .arg(&dir)
            .arg("--candidates")
            .arg(self.config.candidates.join(","))
            .arg("--seed")
            .arg((self.seed ^ p.incarnation.rotate_left(32)).to_string())
            .arg("--heartbeat-ms")
            .arg(t.heartbeat_ms.to_string())
            .arg("--election-min-ms")
            .arg(t.election_min_ms.to_string())
            .arg("--election-max-ms")
            .arg(t.election_max_ms.to_string())
            .arg("--queue-limit")
            .arg(t.queue_limit.to_string())
            .args(
                self.discovery
                    .as_ref()
                    .map(|(a, _)| vec!["--discovery".to_string(), a.to_string()])
                    .unwrap_or_default(),
            )
            .args(self.certs_args())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // With tracing on, a node inherits the collector (OTEL_EXPORTER_OTLP_ENDPOINT) and
        // reports as its own service, not as chaos's.
        cmd.env_remove("OTEL_SERVICE_NAME");
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("cannot start {id} ({}): {e}", self.program.0.display()))?;
        p.child = Some(child);
        p.paused = false;
        Ok(())
    }

    async fn wait_ready(&self, id: NodeId) -> Result<(), String> {
        let control = self.addrs.borrow()[&id].1;
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Ok(mut c) = ControlClient::connect(control, self.operator_token.as_deref()).await {
                if let Ok(ControlReply::Ok) = c.request(&ControlRequest::Ping, CONTROL_DEADLINE).await {
                    return self.sync_faults(id).await;
                }
            }
            let exited = {
                let mut procs = self.procs.borrow_mut();
                let p = procs.get_mut(&id).expect("configured node");
                p.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
            };
            if let Some(status) = exited {
                let log = self.run_dir.join(format!("{id}.log"));
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let last = tail.lines().last().unwrap_or("").to_string();
                return Err(format!("{id} exited at start ({status}): {last} (log: {})", log.display()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{id} did not answer on {control} within {START_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn control(&self, id: NodeId, req: &ControlRequest) -> Option<ControlReply> {
        if !self.is_alive(id) || self.is_paused(id) {
            return None;
        }
        let addr = self.addrs.borrow().get(&id)?.1;
        let mut c = ControlClient::connect(addr, self.operator_token.as_deref()).await.ok()?;
        c.request(req, CONTROL_DEADLINE).await.ok()
    }

    /// Tell a node every fault in force, from a clean slate.
    async fn sync_faults(&self, id: NodeId) -> Result<(), String> {
        let faults: Vec<Fault> = std::iter::once(Fault::heal()).chain(self.faults.borrow().iter().cloned()).collect();
        for fault in faults {
            match self.control(id, &ControlRequest::Faults(fault.command().clone())).await {
                Some(ControlReply::Ok) => {}
                other => return Err(format!("{id} did not take a fault command: {other:?}")),
            }
        }
        Ok(())
    }

    /// Whether `id`'s process is running (started and not killed); a paused one is.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.procs.borrow().get(&id).is_some_and(|p| p.child.is_some())
    }

    /// Whether `id`'s process is stopped by `pause`.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.procs.borrow().get(&id).is_some_and(|p| p.paused)
    }

    fn signal(&self, id: NodeId, sig: libc::c_int) {
        if let Some(c) = self.procs.borrow().get(&id).and_then(|p| p.child.as_ref()) {
            // SAFETY: a plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL `id`'s process and reap it; its data dir stays.
    pub fn kill(&self, id: NodeId) {
        let child = self.procs.borrow_mut().get_mut(&id).and_then(|p| {
            p.paused = false;
            p.child.take()
        });
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start `id` again on the same ports and data dir, and wait until it answers.
    pub async fn restart(&self, id: NodeId) -> Result<(), String> {
        self.spawn(id, &[])?;
        self.wait_ready(id).await
    }

    /// SIGSTOP `id`'s process.
    pub async fn pause(&self, id: NodeId) {
        self.signal(id, libc::SIGSTOP);
        if let Some(p) = self.procs.borrow_mut().get_mut(&id) {
            p.paused = p.child.is_some();
        }
    }

    /// SIGCONT `id`'s process, and send it the current faults if it was paused.
    pub async fn resume(&self, id: NodeId) {
        self.signal(id, libc::SIGCONT);
        let was_paused = self.procs.borrow_mut().get_mut(&id).map(|p| std::mem::replace(&mut p.paused, false));
        if was_paused == Some(true) {
            // Faults may have changed while it was stopped.
            let _ = self.sync_faults(id).await;
        }
    }

    /// Tells `id` to run its timers at `factor` times the true rate, over its control
    /// channel; a node that is down or paused gets it from the cluster when it comes back.
    pub async fn set_clock_rate(&self, id: NodeId, factor: f64) {
        let _ = self.control(id, &ControlRequest::ClockRate { factor }).await;
    }

    /// Sends a checked fault to every node's control channel as it is: [`Fault::new`] did
    /// the checking.
    pub async fn fault(&self, fault: &Fault) {
        {
            let mut f = self.faults.borrow_mut();
            if fault.is_heal() {
                f.clear();
            } else {
                f.push(fault.clone());
            }
        }
        let ids: Vec<NodeId> = self.addrs.borrow().keys().copied().collect();
        for id in ids {
            let _ = self.control(id, &ControlRequest::Faults(fault.command().clone())).await;
        }
    }

    /// The status of `id` over its control channel; `None` if it does not answer.
    pub async fn status(&self, id: NodeId) -> Option<Status> {
        match self.control(id, &ControlRequest::Status).await? {
            ControlReply::Status(s) => Some(s),
            _ => None,
        }
    }

    /// The ballot `id` (an acceptor) accepted `slot` at; `None` if it is down or paused.
    pub async fn accepted_at(&self, id: NodeId, slot: u64) -> Option<Option<ballot_core::Ballot>> {
        match self.control(id, &ControlRequest::AcceptedAt { slot }).await? {
            ControlReply::AcceptedAt(b) => Some(b),
            _ => None,
        }
    }

    /// Start a node that was not in the configuration (a learner joining): new ports,
    /// its own data dir; the others learn its address from its first messages.
    pub async fn add(&self, id: NodeId) -> Result<(), String> {
        let ports = free_ports(2).map_err(|e| format!("cannot find free ports: {e}"))?;
        // Past the spare learners made at the start, a joining node gets its own
        // credentials now (its CURVE key then reaches only nodes started later).
        if let Some(dir) = self.certs.as_ref().filter(|dir| Credentials::load(dir, Identity::of(id)).is_err()) {
            auth::issue(dir, Identity::of(id)).map_err(|e| format!("cannot make credentials for {id}: {e}"))?;
        }
        self.addrs.borrow_mut().insert(id, (ports[0], ports[1]));
        self.procs.borrow_mut().insert(id, Proc { child: None, paused: false, incarnation: 0 });
        self.spawn(id, &[])?;
        self.wait_ready(id).await
    }

    /// Feed the recorder every slot the live `learners` applied since the last pull.
    pub async fn pull_decided(&self, learners: &[NodeId]) {
        for &l in learners {
            loop {
                let after = self.pulled.borrow().get(&l).copied().unwrap_or(0);
                let Some(ControlReply::Applied(entries)) =
                    self.control(l, &ControlRequest::Applied { after, max: 256 }).await
                else {
                    break;
                };
                let Some(&(last, _)) = entries.last() else { break };
                let mut rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
                for (slot, value) in &entries {
                    rec.on_decided(l, *slot, value);
                }
                self.pulled.borrow_mut().insert(l, last);
            }
        }
    }

    /// Nodes that exited although nobody killed them.
    pub fn crashed(&self) -> Vec<NodeId> {
        let mut procs = self.procs.borrow_mut();
        let mut out = Vec::new();
        for (&id, p) in procs.iter_mut() {
            if p.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                out.push(id);
            }
        }
        out
    }

    /// The scenario's event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The discovery server's answer, or None when the cluster has none or it is down.
    pub async fn discovery_client(&self) -> Option<DiscoveryClient> {
        let (addr, _) = self.discovery.as_ref()?;
        Some(DiscoveryClient::new(*addr).with_deadline(CONTROL_DEADLINE))
    }

    /// Where the discovery server listens, when the cluster has one.
    pub fn discovery_addr(&self) -> Option<SocketAddr> {
        self.discovery.as_ref().map(|(a, _)| *a)
    }

    /// SIGKILL the discovery process and reap it (a no-op when it is not running).
    pub fn kill_discovery(&self) {
        if let Some((_, child)) = &self.discovery {
            if let Some(mut c) = child.borrow_mut().take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Start the discovery process (again) on its address, and wait until it answers.
    pub async fn restart_discovery(&self) -> Result<(), String> {
        let Some((addr, child)) = &self.discovery else { return Err("this cluster has no discovery".into()) };
        if child.borrow().is_some() {
            return Ok(());
        }
        let log_path = self.run_dir.join("discovery.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(&self.program.0);
        cmd.args(&self.program.1)
            .args(["--role", "discovery", "--listen"])
            .arg(addr.to_string())
            .args(self.certs_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // With tracing on, a node inherits the collector (OTEL_EXPORTER_OTLP_ENDPOINT) and
        // reports as its own service, not as chaos's.
        cmd.env_remove("OTEL_SERVICE_NAME");
        die_with_parent(&mut cmd);
        let c = cmd.spawn().map_err(|e| format!("cannot start discovery: {e}"))?;
        *child.borrow_mut() = Some(c);
        let client = DiscoveryClient::new(*addr).with_deadline(CONTROL_DEADLINE);
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        while client.members().await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("discovery did not answer on {addr} within {START_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kill and reap every node. Idempotent.
    pub fn shutdown(&self) {
        self.kill_discovery();
        if ballot_telemetry::active() {
            self.stop_gracefully();
        }
        for p in self.procs.borrow_mut().values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// SIGTERM to every node (after SIGCONT, for a paused one), so each exports the spans
    /// it still holds; whatever has not exited by the deadline is killed by `shutdown`.
    fn stop_gracefully(&self) {
        let mut procs = self.procs.borrow_mut();
        for p in procs.values_mut() {
            if let Some(c) = &p.child {
                let pid = c.id() as libc::pid_t;
                // SAFETY: signals to a child this backend started and has not yet reaped.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = std::time::Instant::now() + ballot_telemetry::SHUTDOWN_DEADLINE + Duration::from_secs(1);
        for p in procs.values_mut() {
            while let Some(c) = &mut p.child {
                if !matches!(c.try_wait(), Ok(None)) || std::time::Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Remove the run folder (after a passing run).
    pub fn remove_run_dir(&self) {
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

impl Drop for ProcBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}
