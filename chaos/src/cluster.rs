//! A cluster on the in-memory network and virtual time, with the verbs scenarios use.
//! Every method is async and runs on a current-thread tokio runtime with a paused clock:
//! time moves only when every node is idle, straight to the next timer.

use crate::invariants::{self, Acked, LearnerView, Recorder};
use ballot_core::{
    Acceptor, Command, Config, Learner, MemStorage, NodeId, Proposer, Reply, Role, Storage, Tally, Timing, VoteError,
};
use ballot_nodes::{spawn_node, ClientError, ClientHandle, NodeHandle, Observer, SubmitOptions};
use ballot_transports::{EventLog, LinkFaults, MemNetwork, NetStats};
use std::cell::RefCell;
use std::collections::BTreeMap;
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
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            proposers: 3,
            acceptors: 3,
            learners: 2,
            candidates: vec!["ada".into(), "grace".into(), "linus".into()],
            timing: Timing::default(),
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
}

/// A scenario misused the API (unknown node, bad argument): the script is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

struct Slot {
    storage: MemStorage,
    handle: Option<NodeHandle>,
    paused: bool,
    incarnation: u64,
}

pub struct Cluster {
    config: Arc<Config>,
    seed: u64,
    net: MemNetwork,
    log: EventLog,
    nodes: RefCell<BTreeMap<NodeId, Slot>>,
    client: ClientHandle,
    recorder: Arc<Mutex<Recorder>>,
    /// Whether a partition or link fault may be in force (cleared by `heal`).
    faulty: RefCell<bool>,
}

/// How long the cluster must be quiet before convergence is judged.
pub const QUIET_PERIOD: Duration = Duration::from_millis(2000);
/// Deadline for one node's status answer.
const STATUS_DEADLINE: Duration = Duration::from_millis(100);

fn mix(mut x: u64) -> u64 {
    // splitmix64: spreads (seed, node, incarnation) into independent node seeds.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Cluster {
    /// Start every node. Must run inside the scenario's tokio runtime.
    pub fn start(spec: ClusterSpec, seed: u64, log: EventLog) -> Result<Cluster, UsageError> {
        if spec.proposers == 0 || spec.acceptors == 0 || spec.learners == 0 {
            return Err(UsageError("a cluster needs at least one proposer, one acceptor and one learner".into()));
        }
        if spec.candidates.is_empty() {
            return Err(UsageError("a cluster needs at least one candidate".into()));
        }
        let mut config = Config::new(spec.proposers, spec.acceptors, spec.learners, spec.candidates);
        config.timing = spec.timing;
        let config = Arc::new(config);
        let net = MemNetwork::new(mix(seed), log.clone());
        let client = ClientHandle::spawn(net.register(NodeId::client(1)), config.proposers.clone());
        let nodes = config
            .nodes()
            .map(|id| (id, Slot { storage: MemStorage::new(), handle: None, paused: false, incarnation: 0 }))
            .collect();
        let cluster = Cluster {
            config,
            seed,
            net,
            log,
            nodes: RefCell::new(nodes),
            client,
            recorder: Arc::new(Mutex::new(Recorder::default())),
            faulty: RefCell::new(false),
        };
        for id in cluster.config.nodes().collect::<Vec<_>>() {
            cluster.start_node(id);
        }
        Ok(cluster)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn net_stats(&self) -> NetStats {
        self.net.stats()
    }

    fn start_node(&self, id: NodeId) {
        let mut nodes = self.nodes.borrow_mut();
        let slot = nodes.get_mut(&id).expect("configured node");
        slot.incarnation += 1;
        let seed = mix(self.seed ^ mix(((id.role as u64) << 32) | id.index as u64) ^ mix(slot.incarnation));
        let mut storage = slot.storage.clone();
        let durable = storage.load().expect("in-memory storage always loads");
        let transport = self.net.register(id);
        let config = self.config.clone();
        let handle = match id.role {
            Role::Proposer => spawn_node(Proposer::new(id, config, durable), transport, storage, seed, None),
            Role::Acceptor => spawn_node(Acceptor::new(id, config, durable), transport, storage, seed, None),
            Role::Learner => {
                let rec = self.recorder.clone();
                let observer: Observer = Arc::new(move |node, slot, value| {
                    rec.lock().unwrap_or_else(|e| e.into_inner()).on_decided(node, slot, value)
                });
                spawn_node(Learner::new(id, config, durable), transport, storage, seed, Some(observer))
            }
            Role::Client => unreachable!("clients are not cluster nodes"),
        };
        slot.handle = Some(handle);
        slot.paused = false;
    }

    /// Parse and check a node name of this cluster.
    pub fn node(&self, name: &str) -> Result<NodeId, UsageError> {
        let id: NodeId = name.parse().map_err(|e: ballot_core::ids::BadNodeName| UsageError(e.to_string()))?;
        if !self.config.contains(id) {
            let all: Vec<String> = self.config.nodes().map(|n| n.to_string()).collect();
            return Err(UsageError(format!("unknown node '{name}': this cluster has {}", all.join(", "))));
        }
        Ok(id)
    }

    pub fn nodes(&self) -> Vec<NodeId> {
        self.config.nodes().collect()
    }

    pub fn is_alive(&self, id: NodeId) -> bool {
        self.nodes.borrow().get(&id).is_some_and(|s| s.handle.is_some())
    }

    pub fn is_paused(&self, id: NodeId) -> bool {
        self.nodes.borrow().get(&id).is_some_and(|s| s.paused)
    }

    /// Crash `id`: it stops at once; what it persisted stays for `restart`.
    pub fn kill(&self, id: NodeId) {
        let handle = self.nodes.borrow_mut().get_mut(&id).and_then(|s| {
            s.paused = false;
            s.handle.take()
        });
        if let Some(h) = handle {
            h.kill();
        }
        self.net.unregister(id);
        self.log.record(|| format!("kill {id}"));
    }

    /// Start `id` again from its durable state (a no-op for a live node).
    pub fn restart(&self, id: NodeId) {
        if self.is_alive(id) {
            self.log.record(|| format!("restart {id} (already running)"));
            return;
        }
        self.log.record(|| format!("restart {id}"));
        self.start_node(id);
    }

    pub fn pause(&self, id: NodeId) {
        let mut nodes = self.nodes.borrow_mut();
        let slot = nodes.get_mut(&id).expect("configured node");
        if let Some(h) = &slot.handle {
            h.control(ballot_nodes::Control::Pause);
            slot.paused = true;
        }
        self.log.record(|| format!("pause {id}"));
    }

    pub fn resume(&self, id: NodeId) {
        let mut nodes = self.nodes.borrow_mut();
        let slot = nodes.get_mut(&id).expect("configured node");
        if let Some(h) = &slot.handle {
            h.control(ballot_nodes::Control::Resume);
        }
        slot.paused = false;
        self.log.record(|| format!("resume {id}"));
    }

    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        *self.faulty.borrow_mut() = true;
        self.net.partition(a, b);
    }

    pub fn isolate(&self, id: NodeId) {
        *self.faulty.borrow_mut() = true;
        self.net.isolate(id);
    }

    pub fn heal(&self) {
        *self.faulty.borrow_mut() = false;
        self.net.heal();
    }

    pub fn drop_rate(&self, p: f64) -> Result<(), UsageError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(UsageError(format!("drop_rate takes a probability from 0.0 to 1.0, not {p}")));
        }
        *self.faulty.borrow_mut() = true;
        let faults = LinkFaults { drop: p, ..self.net.default_faults() };
        self.net.set_default_faults(faults);
        Ok(())
    }

    pub fn duplicate_rate(&self, p: f64) -> Result<(), UsageError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(UsageError(format!("duplicate_rate takes a probability from 0.0 to 1.0, not {p}")));
        }
        *self.faulty.borrow_mut() = true;
        let faults = LinkFaults { duplicate: p, ..self.net.default_faults() };
        self.net.set_default_faults(faults);
        Ok(())
    }

    pub fn delay(&self, min_ms: u64, max_ms: u64) -> Result<(), UsageError> {
        if min_ms > max_ms {
            return Err(UsageError(format!("delay({min_ms}, {max_ms}): min must not exceed max")));
        }
        *self.faulty.borrow_mut() = true;
        let d = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
        let faults = LinkFaults { delay: Some(d), ..self.net.default_faults() };
        self.net.set_default_faults(faults);
        Ok(())
    }

    /// The status of a live, running node.
    pub async fn status(&self, id: NodeId) -> Option<ballot_core::Status> {
        let handle_alive = self.is_alive(id) && !self.is_paused(id);
        if !handle_alive {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(h) = self.nodes.borrow().get(&id).and_then(|s| s.handle.as_ref()) {
            h.control(ballot_nodes::Control::Status(tx));
        }
        tokio::time::timeout(STATUS_DEADLINE, rx).await.ok()?.ok()
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

    /// Cast many votes at once, all in flight together.
    pub async fn vote_all(&self, votes: &[(String, String)], opts: &VoteOptions) -> Vec<VoteOutcome> {
        let futs = votes.iter().map(|(v, c)| {
            let opts = VoteOptions { request_id: None, ..opts.clone() };
            async move { self.vote(v, c, &opts).await }
        });
        join_all(futs).await
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
        *self.faulty.borrow() || self.nodes.borrow().values().any(|s| s.paused)
    }

    async fn learner_views(&self) -> Vec<LearnerView> {
        let mut views = Vec::new();
        for &l in &self.config.learners {
            if let Some(s) = self.status(l).await {
                views.push(LearnerView { node: l, applied: s.applied.unwrap_or(0), tally: s.tally.unwrap_or_default() });
            }
        }
        views
    }

    /// Check every invariant; convergence only when no fault is in force (then after a
    /// quiet period). Returns the violations, one line each.
    pub async fn check(&self) -> Vec<String> {
        let converging = !self.faults_active();
        if converging {
            tokio::time::sleep(QUIET_PERIOD).await;
        }
        let views = self.learner_views().await;
        let rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = rec.violations.clone();
        let want: Vec<u64> = views.iter().map(|v| v.applied).collect();
        let replay = invariants::replay(&rec, &self.config.candidates, &want);
        invariants::durability(&rec, &replay, &mut out);
        invariants::no_double_count(&views, &replay, &mut out);
        if converging {
            invariants::convergence(&views, &mut out);
        }
        out
    }

    /// End of a scenario: heal the network, resume paused nodes (killed ones stay down),
    /// let the cluster settle, and check everything.
    pub async fn finish(&self) -> Vec<String> {
        self.heal();
        let paused: Vec<NodeId> =
            self.nodes.borrow().iter().filter(|(_, s)| s.paused).map(|(&id, _)| id).collect();
        for id in paused {
            self.resume(id);
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
        let ids: Vec<NodeId> = self.nodes.borrow().keys().copied().collect();
        for id in ids {
            if let Some(h) = self.nodes.borrow_mut().get_mut(&id).and_then(|s| s.handle.take()) {
                h.kill();
            }
        }
        self.client.close();
    }

    /// A vote error's name as scenarios see it.
    pub fn error_name(e: VoteError) -> &'static str {
        match e {
            VoteError::AlreadyVoted => "already_voted",
            VoteError::UnknownCandidate => "unknown_candidate",
        }
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
