//! A cluster and the verbs scenarios use, on either backend: the in-memory network on
//! virtual time (a current-thread tokio runtime with a paused clock: time moves only when
//! every node is idle, straight to the next timer), or real node processes over tcp/zmq.

mod discovery;
mod disk;
mod faults;
mod progress;
mod vote;

pub use disk::DiskFault;
pub use faults::Fault;
pub use progress::{PROBE_CANDIDATE, QUIET_PERIOD};

use crate::discovery::MemDiscovery;
use crate::invariants::{self, LearnerView, Recorder};
use crate::mem_backend::MemBackend;
use crate::proc_backend::ProcBackend;
use ballot_core::{Command, Config, NodeId, Reply, Tally, Timing};
use ballot_runtime::{ClientHandle, SubmitOptions};
use ballot_transports::EventLog;
use ballot_transports::NetKind;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What `cluster(#{...})` asks for.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// How many proposers to start (at least one).
    pub proposers: u16,
    /// How many acceptors to start (at least one).
    pub acceptors: u16,
    /// How many learners to start (at least one).
    pub learners: u16,
    /// The names votes may go to (at least one).
    pub candidates: Vec<String>,
    /// The nodes' timers (heartbeats, election and retry timeouts).
    pub timing: Timing,
    /// Run a discovery service that every node heart-beats to.
    pub discovery: bool,
    /// Node processes (tcp, zmq) run with `--insecure` instead of a fresh credentials
    /// folder per run (`chaos bench --auth off`); the in-memory network has none either way.
    pub insecure: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            proposers: 3,
            acceptors: 3,
            learners: 2,
            candidates: vec!["ada".into(), "grace".into(), "linus".into()],
            timing: Timing::default(),
            discovery: false,
            insecure: false,
        }
    }
}

/// The outcome of one vote, as scenarios see it.
#[derive(Clone, Debug, PartialEq)]
pub struct VoteOutcome {
    /// Whether the vote was applied.
    pub ok: bool,
    /// "" on success, else no_quorum, already_voted, unknown_candidate or timeout.
    pub error: String,
    /// The slot the vote was applied at (0 when it was not).
    pub slot: u64,
    /// From submitting the vote to its answer (or giving up), in milliseconds.
    pub latency_ms: f64,
}

/// Options of one vote.
#[derive(Clone, Debug, Default)]
pub struct VoteOptions {
    /// How long to wait for an answer (the client's default when None).
    pub timeout: Option<Duration>,
    /// The proposer to send the vote to (the client's choice when None).
    pub via: Option<NodeId>,
    /// The request id to send, to resend a vote as the same request (a new id when None).
    pub request_id: Option<String>,
    /// Resend after this long without an answer (the client's default when None).
    pub retry_every: Option<Duration>,
}

/// A scenario misused the API (unknown node, bad argument): the script is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Where the nodes run. The process backend is boxed: it is many times the size of the
/// in-memory one.
pub enum Backend {
    /// Every node a task on the scenario's runtime, over the in-memory network.
    Mem(MemBackend),
    /// Every node its own OS process, over tcp or zmq.
    Proc(Box<ProcBackend>),
}

/// Which backend a scenario runs on: the in-memory network in this process (virtual time,
/// deterministic from the seed), or node processes over a network transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportKind {
    /// In one process, on virtual time, deterministic from the seed.
    #[default]
    Mem,
    /// Every node its own process, over this transport on 127.0.0.1.
    Net(NetKind),
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportKind::Mem => f.write_str("mem"),
            TransportKind::Net(k) => k.fmt(f),
        }
    }
}

/// For `--transport`: clap lists the possible values when one is unknown.
impl clap::ValueEnum for TransportKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[TransportKind::Mem, TransportKind::Net(NetKind::Tcp), TransportKind::Net(NetKind::Zmq)]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            TransportKind::Mem => "mem",
            TransportKind::Net(NetKind::Tcp) => "tcp",
            TransportKind::Net(NetKind::Zmq) => "zmq",
        }))
    }
}

impl FromStr for TransportKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("mem") {
            return Ok(TransportKind::Mem);
        }
        s.parse().map(TransportKind::Net).map_err(|_| format!("unknown transport {s:?}: give mem, tcp or zmq"))
    }
}

/// A running cluster, on either backend, with the client scenarios vote through and the
/// recorder the invariants are checked on.
pub struct Cluster {
    config: Arc<Config>,
    log: EventLog,
    backend: Backend,
    client: ClientHandle,
    recorder: Arc<Mutex<Recorder>>,
    /// Whether a partition or link fault may be in force (cleared by `heal`).
    faulty: RefCell<bool>,
    /// Learners added to the running cluster (`add_learner`); not in `config`.
    joined: RefCell<Vec<NodeId>>,
    /// Progress probes cast so far (each probe's voter is new).
    probes: RefCell<u32>,
    /// Nodes whose clock runs fast or slow (`clock_rate`), until `heal`. A machine's clock
    /// outlives its process: a restarted or resumed node gets its rate again.
    clock_rates: RefCell<BTreeMap<NodeId, f64>>,
}

impl Cluster {
    /// Start every node. Must run inside the scenario's tokio runtime.
    pub async fn start(
        spec: ClusterSpec,
        seed: u64,
        log: EventLog,
        transport: TransportKind,
    ) -> Result<Cluster, UsageError> {
        if spec.proposers == 0 || spec.acceptors == 0 || spec.learners == 0 {
            return Err(UsageError("a cluster needs at least one proposer, one acceptor and one learner".into()));
        }
        if spec.candidates.is_empty() {
            return Err(UsageError("a cluster needs at least one candidate".into()));
        }
        let with_discovery = spec.discovery;
        let secure = !spec.insecure;
        let mut config = Config::new(spec.proposers, spec.acceptors, spec.learners, spec.candidates);
        config.timing = spec.timing;
        let config = Arc::new(config);
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let (backend, client) = match transport {
            TransportKind::Mem => {
                let discovery = with_discovery.then(MemDiscovery::new);
                let (b, c) = MemBackend::start(config.clone(), seed, log.clone(), recorder.clone(), discovery);
                (Backend::Mem(b), c)
            }
            TransportKind::Net(kind) => {
                // Free ports are found by binding port 0 and letting go; another program
                // can take one before our node binds it. Then start again on new ports.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let (l, r) = (log.clone(), recorder.clone());
                    match ProcBackend::start(config.clone(), kind, seed, l, r, (with_discovery, secure)).await {
                        Ok((b, c)) => break (Backend::Proc(Box::new(b)), c),
                        Err(e) if attempt < 3 && e.contains("Address already in use") => {
                            log.record(|| format!("ports taken meanwhile, starting again: {e}"));
                        }
                        Err(e) => return Err(UsageError(e)),
                    }
                }
            }
        };
        Ok(Cluster {
            config,
            log,
            backend,
            client,
            recorder,
            faulty: RefCell::new(false),
            joined: RefCell::new(Vec::new()),
            probes: RefCell::new(0),
            clock_rates: RefCell::new(BTreeMap::new()),
        })
    }

    /// The configuration the cluster started with (learners added since are not in it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The scenario's event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Where the nodes run.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Network counters (in-memory network only; empty on real processes).
    pub fn net_stats(&self) -> BTreeMap<&'static str, u64> {
        match &self.backend {
            Backend::Mem(b) => b.stats(),
            Backend::Proc(_) => BTreeMap::new(),
        }
    }

    /// Parse and check a node name of this cluster.
    pub fn node(&self, name: &str) -> Result<NodeId, UsageError> {
        let id: NodeId = name.parse().map_err(|e: ballot_core::ids::BadNodeName| UsageError(e.to_string()))?;
        if !self.nodes().contains(&id) {
            let all: Vec<String> = self.nodes().iter().map(|n| n.to_string()).collect();
            return Err(UsageError(format!("unknown node '{name}': this cluster has {}", all.join(", "))));
        }
        Ok(id)
    }

    /// Every node: configured, and joined since.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.config.nodes().chain(self.joined.borrow().iter().copied()).collect()
    }

    /// Every learner: configured, and joined since.
    pub fn learners(&self) -> Vec<NodeId> {
        self.config.learners.iter().chain(self.joined.borrow().iter()).copied().collect()
    }

    /// Start a new learner in the running cluster. The other nodes were not configured
    /// with it: it asks acceptors and learners to catch up, and they answer (and acceptors
    /// send it what they accept from then on). Returns its name.
    pub async fn add_learner(&self) -> Result<NodeId, String> {
        let index = self.learners().iter().map(|l| l.index).max().unwrap_or(0) + 1;
        let id = NodeId::learner(index);
        match &self.backend {
            Backend::Mem(b) => b.add(id),
            Backend::Proc(b) => b.add(id).await?,
        }
        self.joined.borrow_mut().push(id);
        self.log.record(|| format!("add {id}"));
        Ok(id)
    }

    /// Whether `id` is running (started and not killed); a paused node is alive.
    pub fn is_alive(&self, id: NodeId) -> bool {
        match &self.backend {
            Backend::Mem(b) => b.is_alive(id),
            Backend::Proc(b) => b.is_alive(id),
        }
    }

    /// Whether `id` is paused (stopped by `pause`, not resumed or killed since).
    pub fn is_paused(&self, id: NodeId) -> bool {
        match &self.backend {
            Backend::Mem(b) => b.is_paused(id),
            Backend::Proc(b) => b.is_paused(id),
        }
    }

    /// Crash `id`: it stops at once; what it persisted stays for `restart`.
    pub fn kill(&self, id: NodeId) {
        match &self.backend {
            Backend::Mem(b) => b.kill(id),
            Backend::Proc(b) => b.kill(id),
        }
        self.log.record(|| format!("kill {id}"));
    }

    /// Start `id` again from its durable state (a no-op for a live node).
    pub async fn restart(&self, id: NodeId) -> Result<(), String> {
        if self.is_alive(id) {
            self.log.record(|| format!("restart {id} (already running)"));
            return Ok(());
        }
        self.log.record(|| format!("restart {id}"));
        match &self.backend {
            Backend::Mem(b) => b.restart(id)?,
            Backend::Proc(b) => b.restart(id).await?,
        }
        self.reapply_clock_rate(id).await;
        Ok(())
    }

    /// Freeze `id` (a no-op for a node that is not running): it keeps its state and
    /// answers nothing until `resume`.
    pub async fn pause(&self, id: NodeId) {
        match &self.backend {
            Backend::Mem(b) => b.pause(id),
            Backend::Proc(b) => b.pause(id).await,
        }
        self.log.record(|| format!("pause {id}"));
    }

    /// Let a paused `id` run again.
    pub async fn resume(&self, id: NodeId) {
        match &self.backend {
            Backend::Mem(b) => b.resume(id),
            Backend::Proc(b) => b.resume(id).await,
        }
        self.log.record(|| format!("resume {id}"));
        self.reapply_clock_rate(id).await;
    }

    /// The status of a live, running node.
    pub async fn status(&self, id: NodeId) -> Option<ballot_core::Status> {
        match &self.backend {
            Backend::Mem(b) => b.status(id).await,
            Backend::Proc(b) => b.status(id).await,
        }
    }

    /// The proposer that leads now: of the running proposers that believe they lead, the
    /// one with the highest ballot.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut best = None;
        for &p in &self.config.proposers {
            if let Some(s) = self.status(p).await {
                if s.leader == Some(p) {
                    let b = s.ballot.unwrap_or_default();
                    if best.is_none_or(|(bb, _)| b > bb) {
                        best = Some((b, p));
                    }
                }
            }
        }
        best.map(|(_, p)| p)
    }

    /// Polls [`Cluster::leader`] every 10 ms until there is one; `None` when `within`
    /// passes first.
    pub async fn wait_for_leader(&self, within: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10).min(deadline - Instant::now())).await;
        }
    }

    /// The tally through the log (linearizable): every vote acknowledged before the call
    /// is in it.
    pub async fn results(&self, timeout: Duration) -> Result<Tally, String> {
        let cmd = Command::Read { request_id: self.client.next_request_id(), client: self.client.id() };
        let opts = SubmitOptions { timeout, ..SubmitOptions::default() };
        match self.client.submit(cmd, &opts).await {
            Ok(Reply::Read { tally, slot, .. }) => {
                self.log.record(|| format!("results slot={slot} {tally:?}"));
                Ok(tally)
            }
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The tally as learner `id` holds it, or None if it is down or paused.
    pub async fn results_at(&self, id: NodeId) -> Option<Tally> {
        self.status(id).await.and_then(|s| s.tally)
    }

    async fn learner_views(&self) -> Vec<LearnerView> {
        let mut views = Vec::new();
        for l in self.learners() {
            if let Some(s) = self.status(l).await {
                views.push(LearnerView {
                    node: l,
                    applied: s.applied.unwrap_or(0),
                    tally: s.tally.unwrap_or_default(),
                });
            }
        }
        views
    }

    /// The ballot acceptor `id` accepted `slot` at (`Some(None)`: nothing), or `None`
    /// when it does not answer.
    pub async fn accepted_at(&self, id: NodeId, slot: u64) -> Option<Option<ballot_core::Ballot>> {
        match &self.backend {
            Backend::Mem(b) => b.accepted_at(id, slot).await,
            Backend::Proc(b) => b.accepted_at(id, slot).await,
        }
    }

    /// Check every invariant; convergence and progress only when no fault is in force
    /// (then after a quiet period). Returns the violations, one line each.
    pub async fn check(&self) -> Vec<String> {
        let converging = !self.faults_active();
        let mut stalled = Vec::new();
        if converging {
            tokio::time::sleep(QUIET_PERIOD).await;
            stalled = self.progress().await;
        }
        if let Backend::Proc(b) = &self.backend {
            b.pull_decided(&self.learners()).await;
        }
        let views = self.learner_views().await;
        let crashed = match &self.backend {
            Backend::Mem(b) => b.crashed(),
            Backend::Proc(b) => b.crashed(),
        };
        let rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = rec.violations.clone();
        for n in crashed {
            out.push(format!("{n} stopped although nobody killed it (panic or storage error)"));
        }
        // Nobody forges a message on the in-memory network, so a node that refused one
        // for breaking a sender rule was sent it by another node of ours: a bug, however
        // harmless the refusal made it.
        if let Backend::Mem(b) = &self.backend {
            for (node, reason, n) in b.refusals().into_iter().filter(|(_, r, _)| r.breaks_a_sender_rule()) {
                out.push(format!(
                    "{node} refused {n} message(s) as {}: on the in-memory network only our own nodes send, so one of them broke a sender rule",
                    reason.as_str()
                ));
            }
        }
        let want: Vec<u64> = views.iter().map(|v| v.applied).collect();
        let replay = invariants::replay(&rec, &self.config.candidates, &want);
        invariants::durability(&rec, &replay, &mut out);
        invariants::no_double_count(&views, &replay, &mut out);
        if converging {
            invariants::convergence(&views, &mut out);
        }
        out.extend(stalled);
        out
    }

    /// End of a scenario: heal the network, resume paused nodes (killed ones stay down),
    /// let the cluster settle, and check everything.
    pub async fn finish(&self) -> Vec<String> {
        self.heal().await;
        let paused: Vec<NodeId> = self.nodes().into_iter().filter(|&n| self.is_paused(n)).collect();
        for id in paused {
            self.resume(id).await;
        }
        self.check().await
    }

    /// On mem, deliver a message `from` a node of the test's choosing (tests of the
    /// checker use it to stand for a node that breaks a sender rule).
    #[doc(hidden)]
    pub fn forge_for_test(&self, from: NodeId, to: NodeId, msg: ballot_core::Message) {
        if let Backend::Mem(b) = &self.backend {
            b.forge_for_test(from, to, msg);
        }
    }

    /// Record a violation by hand (tests of the checker use it to break an invariant).
    #[doc(hidden)]
    pub fn inject_violation_for_test(&self, node: NodeId, slot: u64) {
        let bogus: ballot_core::Value = Arc::new(vec![Command::Vote {
            request_id: "sabotage".into(),
            client: self.client.id(),
            voter: "nobody".into(),
            candidate: "nobody".into(),
        }]);
        let mut rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        // At a decided slot this breaks agreement; at a fresh slot, validity.
        rec.on_decided(node, slot, &bogus);
        rec.on_decided(node, 1_000_000_000, &bogus);
    }

    /// Stop every node and the client.
    pub fn shutdown(&self) {
        match &self.backend {
            Backend::Mem(b) => b.shutdown(),
            Backend::Proc(b) => b.shutdown(),
        }
        self.client.close();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Run futures together on the current task (no spawning, so no `Send` is needed, and
/// the polling order depends only on wake-ups: deterministic on one thread).
pub async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    futures_util::future::join_all(futs).await
}
