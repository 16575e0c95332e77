//! A cluster and the verbs scenarios use, on either backend: the in-memory network on
//! virtual time (a current-thread tokio runtime with a paused clock: time moves only when
//! every node is idle, straight to the next timer), or real node processes over tcp/zmq.

use crate::discovery::MemDiscovery;
use crate::invariants::{self, Acked, LearnerView, Recorder};
use crate::mem_backend::MemBackend;
use crate::proc_backend::ProcBackend;
use ballot_core::{Command, Config, NodeId, Reply, Tally, Timing};
use ballot_operator::control::FaultCommand;
use ballot_runtime::{ClientError, ClientHandle, SubmitOptions};
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
    pub proposers: u16,
    pub acceptors: u16,
    pub learners: u16,
    pub candidates: Vec<String>,
    pub timing: Timing,
    /// Run a discovery service that every node heart-beats to.
    pub discovery: bool,
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
        }
    }
}

/// The outcome of one vote, as scenarios see it.
#[derive(Clone, Debug, PartialEq)]
pub struct VoteOutcome {
    pub ok: bool,
    /// "" on success, else no_quorum, already_voted, unknown_candidate or timeout.
    pub error: String,
    /// The slot the vote was applied at (0 when it was not).
    pub slot: u64,
    pub latency_ms: f64,
}

/// Options of one vote.
#[derive(Clone, Debug, Default)]
pub struct VoteOptions {
    pub timeout: Option<Duration>,
    pub via: Option<NodeId>,
    pub request_id: Option<String>,
    /// Resend after this long without an answer (the client's default when None).
    pub retry_every: Option<Duration>,
}

/// A scenario misused the API (unknown node, bad argument): the script is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Where the nodes run.
pub enum Backend {
    Mem(MemBackend),
    Proc(ProcBackend),
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

impl FromStr for TransportKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("mem") {
            return Ok(TransportKind::Mem);
        }
        s.parse().map(TransportKind::Net).map_err(|_| format!("unknown transport {s:?}: give mem, tcp or zmq"))
    }
}

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
}

/// The live proposers, acceptors and learners of a healthy core.
type Core = (Vec<NodeId>, Vec<NodeId>, Vec<NodeId>);

/// The candidate the progress check's probe votes name: no cluster has it, so a probe
/// commits without changing a tally.
pub const PROBE_CANDIDATE: &str = "(progress probe)";

fn names<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
    ids.map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

/// How long the cluster must be quiet before convergence is judged.
pub const QUIET_PERIOD: Duration = Duration::from_millis(2000);

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
                    match ProcBackend::start(config.clone(), kind, seed, log.clone(), recorder.clone(), with_discovery)
                        .await
                    {
                        Ok((b, c)) => break (Backend::Proc(b), c),
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
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

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

    pub fn nodes(&self) -> Vec<NodeId> {
        self.config.nodes().chain(self.joined.borrow().iter().copied()).collect()
    }

    /// Every learner: configured, and joined since.
    pub fn learners(&self) -> Vec<NodeId> {
        self.config.learners.iter().chain(self.joined.borrow().iter()).copied().collect()
    }

    fn no_discovery() -> String {
        "this cluster has no discovery: start it with cluster(#{discovery: true})".into()
    }

    /// The leader discovery names now; `Ok(None)` when it names none, `Err` when the
    /// cluster has no discovery or it is down.
    pub async fn discovery_leader(&self) -> Result<Option<NodeId>, String> {
        match &self.backend {
            Backend::Mem(b) => match b.discovery() {
                Some(d) if d.is_up() => Ok(d.leader()),
                Some(_) => Err("discovery is down".into()),
                None => Err(Self::no_discovery()),
            },
            Backend::Proc(b) => {
                let c = b.discovery_client().await.ok_or_else(Self::no_discovery)?;
                c.leader().await.map(|m| m.map(|m| m.node)).map_err(|e| e.to_string())
            }
        }
    }

    /// The members discovery lists now.
    pub async fn discovery_members(&self) -> Result<Vec<NodeId>, String> {
        match &self.backend {
            Backend::Mem(b) => match b.discovery() {
                Some(d) => d.members().ok_or_else(|| "discovery is down".into()),
                None => Err(Self::no_discovery()),
            },
            Backend::Proc(b) => {
                let c = b.discovery_client().await.ok_or_else(Self::no_discovery)?;
                c.members().await.map(|m| m.into_iter().map(|m| m.node).collect()).map_err(|e| e.to_string())
            }
        }
    }

    pub fn kill_discovery(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Mem(b) => b.discovery().ok_or_else(Self::no_discovery)?.kill(),
            Backend::Proc(b) => {
                if b.discovery_addr().is_none() {
                    return Err(Self::no_discovery());
                }
                b.kill_discovery()
            }
        }
        self.log.record(|| "kill discovery".to_string());
        Ok(())
    }

    pub async fn restart_discovery(&self) -> Result<(), String> {
        self.log.record(|| "restart discovery".to_string());
        match &self.backend {
            Backend::Mem(b) => {
                b.discovery().ok_or_else(Self::no_discovery)?.restart();
                Ok(())
            }
            Backend::Proc(b) => b.restart_discovery().await,
        }
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

    pub fn is_alive(&self, id: NodeId) -> bool {
        match &self.backend {
            Backend::Mem(b) => b.is_alive(id),
            Backend::Proc(b) => b.is_alive(id),
        }
    }

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
            Backend::Mem(b) => {
                b.restart(id);
                Ok(())
            }
            Backend::Proc(b) => b.restart(id).await,
        }
    }

    pub async fn pause(&self, id: NodeId) {
        match &self.backend {
            Backend::Mem(b) => b.pause(id),
            Backend::Proc(b) => b.pause(id).await,
        }
        self.log.record(|| format!("pause {id}"));
    }

    pub async fn resume(&self, id: NodeId) {
        match &self.backend {
            Backend::Mem(b) => b.resume(id),
            Backend::Proc(b) => b.resume(id).await,
        }
        self.log.record(|| format!("resume {id}"));
    }

    async fn fault(&self, cmd: FaultCommand) {
        *self.faulty.borrow_mut() = cmd != FaultCommand::Heal;
        match &self.backend {
            Backend::Mem(b) => b.fault(&cmd),
            Backend::Proc(b) => {
                self.log.record(|| format!("fault {cmd:?}"));
                b.fault(&cmd).await
            }
        }
    }

    pub async fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.fault(FaultCommand::Partition { a: a.to_vec(), b: b.to_vec() }).await
    }

    /// Cut every link from a node of `from` to a node of `to`, one way only.
    pub async fn partition_oneway(&self, from: &[NodeId], to: &[NodeId]) {
        self.fault(FaultCommand::PartitionOneway { from: from.to_vec(), to: to.to_vec() }).await
    }

    pub async fn isolate(&self, id: NodeId) {
        self.fault(FaultCommand::Isolate(id)).await
    }

    pub async fn heal(&self) {
        self.fault(FaultCommand::Heal).await
    }

    fn probability(what: &str, p: f64) -> Result<f64, UsageError> {
        if (0.0..=1.0).contains(&p) {
            Ok(p)
        } else {
            Err(UsageError(format!("{what} takes a probability from 0.0 to 1.0, not {p}")))
        }
    }

    pub async fn drop_rate(&self, p: f64) -> Result<(), UsageError> {
        let p = Self::probability("drop_rate", p)?;
        self.fault(FaultCommand::DropRate(p)).await;
        Ok(())
    }

    pub async fn duplicate_rate(&self, p: f64) -> Result<(), UsageError> {
        let p = Self::probability("duplicate_rate", p)?;
        self.fault(FaultCommand::DuplicateRate(p)).await;
        Ok(())
    }

    pub async fn delay(&self, min_ms: u64, max_ms: u64) -> Result<(), UsageError> {
        if min_ms > max_ms {
            return Err(UsageError(format!("delay({min_ms}, {max_ms}): min must not exceed max")));
        }
        self.fault(FaultCommand::Delay { min_ms, max_ms }).await;
        Ok(())
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

    /// Cast one vote and wait for its outcome. Never fails on a protocol outcome.
    pub async fn vote(&self, voter: &str, candidate: &str, opts: &VoteOptions) -> VoteOutcome {
        let request_id = opts.request_id.clone().unwrap_or_else(|| self.client.next_request_id());
        {
            let mut rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
            rec.submitted.entry(request_id.clone()).or_insert_with(|| (voter.to_string(), candidate.to_string()));
        }
        let cmd = Command::Vote {
            request_id: request_id.clone(),
            client: self.client.id(),
            voter: voter.to_string(),
            candidate: candidate.to_string(),
        };
        let mut submit = SubmitOptions { via: opts.via, ..SubmitOptions::default() };
        if let Some(t) = opts.timeout {
            submit.timeout = t;
        }
        if let Some(r) = opts.retry_every {
            submit.retry_every = r;
        }
        let t0 = Instant::now();
        let result = self.client.submit(cmd, &submit).await;
        let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let outcome = match result {
            Ok(Reply::Vote { slot, result: Ok(()), .. }) => {
                self.recorder.lock().unwrap_or_else(|e| e.into_inner()).acked.push(Acked {
                    request_id: request_id.clone(),
                    voter: voter.to_string(),
                    candidate: candidate.to_string(),
                    slot,
                });
                VoteOutcome { ok: true, error: String::new(), slot, latency_ms }
            }
            Ok(Reply::Vote { slot, result: Err(e), .. }) => {
                VoteOutcome { ok: false, error: e.to_string(), slot, latency_ms }
            }
            Ok(other) => VoteOutcome { ok: false, error: format!("unexpected reply {other:?}"), slot: 0, latency_ms },
            Err(ClientError::NoQuorum) => VoteOutcome { ok: false, error: "no_quorum".into(), slot: 0, latency_ms },
            Err(ClientError::TooLarge { .. }) => {
                VoteOutcome { ok: false, error: "too_large".into(), slot: 0, latency_ms }
            }
            Err(ClientError::Timeout) | Err(ClientError::Closed) => {
                VoteOutcome { ok: false, error: "timeout".into(), slot: 0, latency_ms }
            }
        };
        self.log.record(|| {
            format!(
                "vote {request_id} {voter}->{candidate} ok={} error={} slot={}",
                outcome.ok,
                if outcome.error.is_empty() { "-" } else { &outcome.error },
                outcome.slot
            )
        });
        outcome
    }

    /// Cast many votes at once, all in flight together. On real processes the learners'
    /// new slots are pulled for the checker afterwards, so a long run is seen before the
    /// learners compact their logs into snapshots (which the control channel cannot page
    /// back).
    pub async fn vote_all(&self, votes: &[(String, String)], opts: &VoteOptions) -> Vec<VoteOutcome> {
        let futs = votes.iter().map(|(v, c)| {
            let opts = VoteOptions { request_id: None, ..opts.clone() };
            async move { self.vote(v, c, &opts).await }
        });
        let outcomes = join_all(futs).await;
        if let Backend::Proc(b) = &self.backend {
            b.pull_decided(&self.learners()).await;
        }
        outcomes
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

    fn faults_active(&self) -> bool {
        *self.faulty.borrow() || self.nodes().into_iter().any(|n| self.is_paused(n))
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

    /// How long each step of the progress check may take: ten election timeouts (a
    /// leader elected, perhaps after a few duelling rounds, phase 1 and the re-proposal of
    /// what it found) plus ten catch-up periods (learners asking, and a stuck slot
    /// re-opened and learned). 4 s of virtual time with the default timing; on real
    /// processes five times that, on wall time (the machine may be loaded).
    pub fn progress_bound(&self) -> Duration {
        let t = &self.config.timing;
        let bound = Duration::from_millis(10 * t.election_max_ms + 10 * t.catch_up_ms);
        match self.backend {
            Backend::Mem(_) => bound,
            Backend::Proc(_) => bound * 5,
        }
    }

    /// The healthy core: the live (running, not paused) proposers, acceptors and
    /// learners, when there is at least one proposer, a majority of the configured
    /// acceptors and one learner; `Err` says which part is missing.
    fn healthy_core(&self) -> Result<Core, String> {
        let live = |ids: Vec<NodeId>| -> Vec<NodeId> {
            ids.into_iter().filter(|&n| self.is_alive(n) && !self.is_paused(n)).collect()
        };
        let proposers = live(self.config.proposers.clone());
        let acceptors = live(self.config.acceptors.clone());
        let learners = live(self.learners());
        if proposers.is_empty() || learners.is_empty() || acceptors.len() < self.config.quorum() {
            return Err(format!(
                "{} of {} proposers, {} of {} acceptors (a majority is {}), {} learners up",
                proposers.len(),
                self.config.proposers.len(),
                acceptors.len(),
                self.config.acceptors.len(),
                self.config.quorum(),
                learners.len()
            ));
        }
        Ok((proposers, acceptors, learners))
    }

    /// The progress invariant, for a connected healthy core (call it only when no fault
    /// is in force): within [`progress_bound`](Self::progress_bound) each, a fresh vote
    /// commits, a linearizable read commits, and every live learner applies up to the
    /// highest slot any live node knows chosen. Without a healthy core there is nothing
    /// to check. Returns the violations, one line each, naming what is stuck.
    ///
    /// The probe vote names a candidate that does not exist, so it goes through the log
    /// (proposed, chosen, applied, answered with its slot) without changing any tally a
    /// scenario asserts on.
    pub async fn progress(&self) -> Vec<String> {
        let (proposers, acceptors, learners) = match self.healthy_core() {
            Ok(core) => core,
            Err(why) => {
                self.log.record(|| format!("progress not checked: no healthy core ({why})"));
                return Vec::new();
            }
        };
        let bound = self.progress_bound();
        let mut out = Vec::new();
        let n = {
            let mut p = self.probes.borrow_mut();
            *p += 1;
            *p
        };
        let probe = self
            .vote(
                &format!("progress-probe-{n}"),
                PROBE_CANDIDATE,
                &VoteOptions { timeout: Some(bound), ..VoteOptions::default() },
            )
            .await;
        if !(probe.error == "unknown_candidate" && probe.slot > 0) {
            let why = if probe.error.is_empty() { "counted?".to_string() } else { probe.error.clone() };
            out.push(format!(
                "progress: a fresh vote did not commit within {} ms ({why}) with {} up{}",
                bound.as_millis(),
                names(proposers.iter().chain(&acceptors).chain(&learners)),
                self.stuck_learners(&proposers, &acceptors, &learners)
                    .await
                    .map(|s| format!("; {s}"))
                    .unwrap_or_default()
            ));
            return out;
        }
        if let Err(e) = self.results(bound).await {
            out.push(format!("progress: a linearizable read did not commit within {} ms ({e})", bound.as_millis()));
            return out;
        }
        let deadline = Instant::now() + bound;
        loop {
            match self.stuck_learners(&proposers, &acceptors, &learners).await {
                None => break,
                Some(stuck) if Instant::now() >= deadline => {
                    out.push(format!("progress: within {} ms of a committed vote, {stuck}", bound.as_millis()));
                    break;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        out
    }

    /// The live learners behind the highest slot any live node knows chosen, and for
    /// the first slot each misses, the ballot each live acceptor accepted it at:
    /// `learner-2 applied 79 of 400 chosen; slot 80: acceptor-1 @74.1, acceptor-2 none`.
    async fn stuck_learners(&self, proposers: &[NodeId], acceptors: &[NodeId], learners: &[NodeId]) -> Option<String> {
        let mut applied = Vec::new();
        let mut chosen = 0;
        for &l in learners {
            let a = self.status(l).await.and_then(|s| s.applied);
            chosen = chosen.max(a.unwrap_or(0));
            applied.push((l, a));
        }
        for &p in proposers {
            chosen = chosen.max(self.status(p).await.and_then(|s| s.chosen).unwrap_or(0));
        }
        let mut stuck = Vec::new();
        for (l, a) in applied {
            let Some(a) = a else {
                stuck.push(format!("{l} does not answer"));
                continue;
            };
            if a >= chosen {
                continue;
            }
            let slot = a + 1;
            let mut held = Vec::new();
            for &acc in acceptors {
                let at = match self.accepted_at(acc, slot).await {
                    Some(Some(b)) => format!("@{b}"),
                    Some(None) => "none".to_string(),
                    None => "no answer".to_string(),
                };
                held.push(format!("{acc} {at}"));
            }
            stuck.push(format!("{l} applied {a} of {chosen} chosen; slot {slot}: {}", held.join(", ")));
        }
        (!stuck.is_empty()).then(|| stuck.join("; "))
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
