//! The node loop and the handle to a running node.

use crate::metrics::NodeMetrics;
use crate::refusals::RefusalLog;
use crate::trace::RoundTracer;
use ballot_core::{
    Actor, Ballot, Effect, NodeId, Outbox, PersistOp, Role, Status, Storage, StorageError, Timer, Value,
};
use ballot_transports::{Envelope, Transport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most messages taken into one step: bounds the latency a step adds and the size of one
/// group commit.
const MAX_STEP_MESSAGES: usize = 4096;

/// Told about every slot a learner applies: `(node, slot, value)`.
pub type Observer = Arc<dyn Fn(NodeId, u64, &Value) + Send + Sync>;

/// Orders to a running node. Private: callers use the typed methods of [`NodeControl`].
#[derive(Debug)]
enum Control {
    /// Stop taking inputs and firing timers, as SIGSTOP does; messages wait in the inbox.
    Pause,
    Resume,
    /// Report status (not answered while paused, like a stopped process).
    Status(oneshot::Sender<Status>),
    /// Report applied values after a slot (learners), at most so many.
    Applied {
        after: u64,
        max: usize,
        reply: oneshot::Sender<Vec<(u64, Value)>>,
    },
    /// Report the ballot of the value accepted at a slot (acceptors).
    AcceptedAt {
        slot: u64,
        reply: oneshot::Sender<Option<Ballot>>,
    },
    /// Run this node's timers `factor` times as fast (see [`NodeControl::set_clock_rate`]).
    ClockRate(f64),
    /// Tear the next write (see [`NodeControl::tear_next_write`]).
    TearNextWrite,
    Stop,
}

/// The slowest and fastest clock a node can be given: beyond them a timer of a few
/// milliseconds would fire at once or never within a scenario.
pub const CLOCK_RATES: std::ops::RangeInclusive<f64> = 0.1..=10.0;

/// Checks a clock rate, as every caller of [`NodeControl::set_clock_rate`] must first; the
/// error says what is wrong in one line.
pub fn check_clock_rate(factor: f64) -> Result<(), String> {
    if CLOCK_RATES.contains(&factor) {
        Ok(())
    } else {
        Err(format!(
            "clock_rate takes a factor from {} to {} (1.0 is a true clock), not {factor}",
            CLOCK_RATES.start(),
            CLOCK_RATES.end()
        ))
    }
}

/// Why a node loop ended on its own.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Its storage failed: the node stops rather than send what depended on the write.
    #[error("{node} stopped: {source}")]
    Storage {
        /// The node that stopped.
        node: NodeId,
        /// What the storage reported.
        source: StorageError,
    },
    /// The node loop panicked (a bug): the node is gone, whatever else of the process
    /// still runs.
    #[error("{node} stopped: the node loop panicked: {message}")]
    Panicked {
        /// The node that stopped.
        node: NodeId,
        /// The panic's message, if it had one.
        message: String,
    },
}

/// The one way to talk to a running node: ask for its status, its applied log or the
/// ballot it accepted at a slot, or pause and resume it. Cheap to clone, and it outlives
/// the [`NodeHandle`] (a control server or status page holds one). Every question has a
/// deadline, and a node that is paused, stopped or slow answers `None`.
#[derive(Clone, Debug)]
pub struct NodeControl {
    id: NodeId,
    ctrl: mpsc::UnboundedSender<Control>,
}

impl NodeControl {
    /// The node this controls.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Stop taking inputs and firing timers, as SIGSTOP does; messages wait in the inbox.
    pub fn pause(&self) {
        let _ = self.ctrl.send(Control::Pause);
    }

    /// Undo [`NodeControl::pause`].
    pub fn resume(&self) {
        let _ = self.ctrl.send(Control::Resume);
    }

    /// Run the node's timers `factor` times as fast as the true clock: 2.0 is a clock that
    /// gains (timeouts and heartbeats come twice as often), 0.5 one that loses. Timers
    /// already set keep their share of what is left, rescaled. A skewed or drifting
    /// clock is exactly this to the protocol, which reads time only through its timers.
    /// The factor must pass [`check_clock_rate`]; a restarted node starts at 1.0.
    pub fn set_clock_rate(&self, factor: f64) {
        let _ = self.ctrl.send(Control::ClockRate(factor));
    }

    /// A storage fault: the node's next write is torn, as by a crash in the middle of it
    /// ([`Storage::tear_next_write`](ballot_core::Storage::tear_next_write)), so the node
    /// stops there, having sent nothing that depends on it.
    pub fn tear_next_write(&self) {
        let _ = self.ctrl.send(Control::TearNextWrite);
    }

    /// Whether the node loop has ended (the receiving side is gone).
    pub fn is_closed(&self) -> bool {
        self.ctrl.is_closed()
    }

    /// Wait until the node loop has ended, for whatever reason: stopped, its storage
    /// failed, it panicked, or its transport closed. A process that is meant to keep
    /// running watches this, and exits when it fires (see `ballot-app`'s process).
    pub async fn ended(&self) {
        self.ctrl.closed().await
    }

    async fn ask<R>(&self, deadline: Duration, order: impl FnOnce(oneshot::Sender<R>) -> Control) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.ctrl.send(order(tx)).ok()?;
        tokio::time::timeout(deadline, rx).await.ok()?.ok()
    }

    /// The node's status, or `None` if it is paused, stopped or does not answer in time.
    pub async fn status(&self, deadline: Duration) -> Option<Status> {
        self.ask(deadline, Control::Status).await
    }

    /// A learner's applied values after slot `after`, at most `max` of them, in slot order
    /// (empty for other roles).
    pub async fn applied(&self, after: u64, max: usize, deadline: Duration) -> Option<Vec<(u64, Value)>> {
        self.ask(deadline, |reply| Control::Applied { after, max, reply }).await
    }

    /// The ballot of the value an acceptor accepted at `slot` (`Some(None)`: nothing).
    pub async fn accepted_at(&self, slot: u64, deadline: Duration) -> Option<Option<Ballot>> {
        self.ask(deadline, |reply| Control::AcceptedAt { slot, reply }).await
    }
}

/// A running node: its [`NodeControl`], its counters, and the task itself (stop it, or
/// abort it as a crash).
pub struct NodeHandle {
    /// The node's id.
    pub id: NodeId,
    control: NodeControl,
    task: JoinHandle<Result<(), NodeError>>,
    metrics: Arc<NodeMetrics>,
}

impl NodeHandle {
    /// The typed control of this node, to keep beyond the handle.
    pub fn controller(&self) -> NodeControl {
        self.control.clone()
    }

    /// The node loop's counters (messages per peer, steps, persist latency); they stay
    /// readable after the node stops.
    pub fn metrics(&self) -> Arc<NodeMetrics> {
        self.metrics.clone()
    }

    /// See [`NodeControl::pause`].
    pub fn pause(&self) {
        self.control.pause();
    }

    /// See [`NodeControl::resume`].
    pub fn resume(&self) {
        self.control.resume();
    }

    /// See [`NodeControl::status`].
    pub async fn status(&self, deadline: Duration) -> Option<Status> {
        self.control.status(deadline).await
    }

    /// See [`NodeControl::applied`].
    pub async fn applied(&self, after: u64, max: usize, deadline: Duration) -> Option<Vec<(u64, Value)>> {
        self.control.applied(after, max, deadline).await
    }

    /// See [`NodeControl::accepted_at`].
    pub async fn accepted_at(&self, slot: u64, deadline: Duration) -> Option<Option<Ballot>> {
        self.control.accepted_at(slot, deadline).await
    }

    /// Crash the node: it stops at once, wherever it is. What it persisted stays.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Whether the node loop has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// See [`NodeControl::ended`].
    pub async fn ended(&self) {
        self.control.ended().await
    }

    /// Ask the node to stop and wait for it: why it ended, if it ended on its own (its
    /// storage failed, it panicked).
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.control.ctrl.send(Control::Stop);
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let message = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
                    (Some(s), _) => s.to_string(),
                    (_, Some(s)) => s.clone(),
                    _ => String::new(),
                };
                Err(NodeError::Panicked { node: self.id, message })
            }
            // Aborted: `kill` consumes the handle, so nothing else cancels the task.
            Err(_) => Ok(()),
        }
    }
}

/// How to run a node, beside its role, transport and storage.
#[derive(Clone, Default)]
pub struct NodeOptions {
    /// Drives every random timer delay of this node, so a run with the same seeds replays.
    pub seed: u64,
    /// Told about every slot a learner applies.
    pub observer: Option<Observer>,
    /// Open spans for this node's part in each consensus round (only worth it when the
    /// process exports traces: [`ballot_telemetry::active`]).
    pub trace_rounds: bool,
}

impl NodeOptions {
    /// Options with this seed, no observer, and round tracing when this process exports
    /// traces.
    pub fn seeded(seed: u64) -> Self {
        NodeOptions { seed, observer: None, trace_rounds: ballot_telemetry::active() }
    }

    /// The same options, telling `observer` about every applied slot.
    pub fn with_observer(self, observer: Observer) -> Self {
        NodeOptions { observer: Some(observer), ..self }
    }
}

/// Start `actor` on the current tokio runtime, over `transport`, persisting to `storage`.
pub fn spawn_node<A, T, S>(actor: A, transport: T, storage: S, opts: NodeOptions) -> NodeHandle
where
    A: Actor,
    T: Transport,
    S: Storage,
{
    let id = actor.id();
    let (ctrl, ctrl_rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(NodeMetrics::new());
    let node = Node {
        actor,
        transport,
        storage,
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        timers: BTreeMap::new(),
        observer: opts.observer,
        metrics: metrics.clone(),
        watched: Watched::default(),
        tracer: opts.trace_rounds.then(|| RoundTracer::new(id)),
        refusals: RefusalLog::default(),
        clock_rate: 1.0,
    };
    let task = tokio::spawn(node.run(ctrl_rx));
    NodeHandle { id, control: NodeControl { id, ctrl }, task, metrics }
}

struct Node<A, T, S> {
    actor: A,
    transport: T,
    storage: S,
    rng: ChaCha8Rng,
    timers: BTreeMap<Timer, Instant>,
    observer: Option<Observer>,
    metrics: Arc<NodeMetrics>,
    watched: Watched,
    /// Spans of consensus rounds; `None` (and no cost) when tracing is off.
    tracer: Option<RoundTracer>,
    refusals: RefusalLog,
    /// How many times as fast as the true clock this node's timers run.
    clock_rate: f64,
}

/// What the loop watches in a proposer's or acceptor's status after each step, to log
/// elections, leadership and ballot changes. Learners are not watched: their status
/// clones the tally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Watched {
    ballot: Option<Ballot>,
    leader: Option<NodeId>,
    elections: Option<u64>,
}

impl<A: Actor, T: Transport, S: Storage> Node<A, T, S> {
    async fn run(mut self, mut ctrl: mpsc::UnboundedReceiver<Control>) -> Result<(), NodeError> {
        let mut out = Outbox::new();
        self.actor.start(&mut out);
        self.execute(&mut out)?;
        self.started();
        loop {
            // Due timers go first, so a flood of messages cannot starve heartbeats.
            self.fire_due_timers(&mut out);
            if !out.is_empty() {
                self.actor.flush(&mut out);
                self.execute(&mut out)?;
                self.watch();
            }
            let next = self.timers.values().min().copied();
            tokio::select! {
                biased;
                c = ctrl.recv() => match c {
                    Some(Control::Pause) => {
                        if !self.paused(&mut ctrl).await {
                            return Ok(());
                        }
                    }
                    Some(Control::Resume) => {}
                    Some(Control::Status(tx)) => { let _ = tx.send(self.actor.status()); }
                    Some(Control::Applied { after, max, reply }) => {
                        let _ = reply.send(self.actor.applied_values(after, max));
                    }
                    Some(Control::AcceptedAt { slot, reply }) => {
                        let _ = reply.send(self.actor.accepted_ballot(slot));
                    }
                    Some(Control::ClockRate(factor)) => self.set_clock_rate(factor),
                    Some(Control::TearNextWrite) => self.storage.tear_next_write(),
                    Some(Control::Stop) | None => return Ok(()),
                },
                env = self.transport.recv() => {
                    let Some(env) = env else { return Ok(()) };
                    let mut peers = self.metrics.peers();
                    peers.received(env.from);
                    if let Some(t) = &mut self.tracer {
                        t.received(&env);
                    }
                    self.actor.on_message(env.from, env.msg, &mut out);
                    for _ in 1..MAX_STEP_MESSAGES {
                        let Some(env) = self.transport.try_recv() else { break };
                        peers.received(env.from);
                        if let Some(t) = &mut self.tracer {
                            t.received(&env);
                        }
                        self.actor.on_message(env.from, env.msg, &mut out);
                    }
                }
                _ = sleep_until(next), if next.is_some() => {}
            }
            self.actor.flush(&mut out);
            self.execute(&mut out)?;
            self.watch();
        }
    }

    /// Logs where the node starts from (its durable state, as the role reports it).
    fn started(&mut self) {
        let s = self.actor.status();
        let ballot = s.ballot.map(|b| b.to_string()).unwrap_or_else(|| "-".into());
        let fmt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        tracing::info!(node = %self.actor.id(), %ballot, chosen = %fmt(s.chosen), applied = %fmt(s.applied), "node started");
        self.watched = Watched { ballot: s.ballot, leader: s.leader, elections: s.elections };
    }

    /// After a step: log elections, leadership gained or lost and ballot changes.
    fn watch(&mut self) {
        let me = self.actor.id();
        if me.role == Role::Learner {
            if let Some(t) = &mut self.tracer {
                t.step_done(None);
            }
            return;
        }
        let s = self.actor.status();
        if let Some(t) = &mut self.tracer {
            t.step_done((me.role == Role::Proposer).then_some(&s));
        }
        let now = Watched { ballot: s.ballot, leader: s.leader, elections: s.elections };
        let was = std::mem::replace(&mut self.watched, now);
        if now == was {
            return;
        }
        let show = |b: Option<Ballot>| b.map(|b| b.to_string()).unwrap_or_else(|| "-".into());
        if now.elections > was.elections {
            if let Some(t) = &mut self.tracer {
                t.election_started(now.ballot);
            }
            tracing::info!(node = %me, ballot = %show(now.ballot), "election started");
        } else if now.ballot != was.ballot {
            let what = if me.role == Role::Acceptor { "promised a new ballot" } else { "ballot changed" };
            tracing::info!(node = %me, from = %show(was.ballot), to = %show(now.ballot), "{what}");
        }
        if now.leader != was.leader {
            match (was.leader == Some(me), now.leader) {
                (_, Some(l)) if l == me => {
                    if let Some(t) = &mut self.tracer {
                        t.phase1_over("leader");
                    }
                    tracing::info!(node = %me, ballot = %show(now.ballot), "leadership gained")
                }
                (true, other) => {
                    let other = other.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
                    tracing::warn!(node = %me, ballot = %show(now.ballot), leader = %other, "leadership lost")
                }
                (false, Some(l)) => {
                    if let Some(t) = &mut self.tracer {
                        t.phase1_over("another leader");
                    }
                    tracing::info!(node = %me, leader = %l, ballot = %show(now.ballot), "following leader")
                }
                (false, None) => tracing::debug!(node = %me, "no leader known"),
            }
        }
    }

    /// Wait for Resume; false if told to stop meanwhile.
    async fn paused(&mut self, ctrl: &mut mpsc::UnboundedReceiver<Control>) -> bool {
        loop {
            match ctrl.recv().await {
                Some(Control::Resume) => return true,
                Some(Control::Stop) | None => return false,
                // A stopped process answers nothing.
                Some(Control::Pause)
                | Some(Control::Status(_))
                | Some(Control::Applied { .. })
                | Some(Control::AcceptedAt { .. }) => {}
                // The clock of a stopped machine still runs at its own pace.
                Some(Control::ClockRate(factor)) => self.set_clock_rate(factor),
                Some(Control::TearNextWrite) => self.storage.tear_next_write(),
            }
        }
    }

    /// Rescales every pending timer to the new rate: what is left of it, measured on the
    /// node's clock, stays the same.
    fn set_clock_rate(&mut self, factor: f64) {
        if check_clock_rate(factor).is_err() || factor == self.clock_rate {
            return;
        }
        let now = Instant::now();
        let ratio = self.clock_rate / factor;
        for at in self.timers.values_mut() {
            let left = at.saturating_duration_since(now);
            *at = now + left.mul_f64(ratio);
        }
        tracing::info!(node = %self.actor.id(), from = self.clock_rate, to = factor, "clock rate changed");
        self.clock_rate = factor;
    }

    fn fire_due_timers(&mut self, out: &mut Outbox) {
        let now = Instant::now();
        let due: Vec<Timer> = self.timers.iter().filter(|(_, &at)| at <= now).map(|(&t, _)| t).collect();
        for t in due {
            self.timers.remove(&t);
            if let Some(tr) = &mut self.tracer {
                tr.timer(t);
            }
            self.actor.on_timer(t, out);
        }
    }

    fn execute(&mut self, out: &mut Outbox) -> Result<(), NodeError> {
        let effects = out.take();
        if let Some(t) = &mut self.tracer {
            t.effects(&effects);
        }
        let ops: Vec<PersistOp> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Persist(op) => Some(op.clone()),
                _ => None,
            })
            .collect();
        self.metrics.step();
        if !ops.is_empty() {
            let node = self.actor.id();
            let t0 = std::time::Instant::now();
            let result = self.storage.persist(&ops);
            self.metrics.persisted(t0.elapsed());
            if let Err(source) = result {
                self.metrics.storage_error();
                tracing::error!(node = %node, error = %source, "storage error: the node stops");
                return Err(NodeError::Storage { node, source });
            }
        }
        let me = self.actor.id();
        let mut peers = self.metrics.peers();
        for effect in effects {
            match effect {
                Effect::Persist(_) => {}
                Effect::Send { to, msg } => {
                    peers.sent(to);
                    let mut env = Envelope::new(me, to, msg);
                    if let Some(t) = &self.tracer {
                        env.trace = t.context_for(to, &env.msg);
                    }
                    // A failed send is a lost message, which Paxos tolerates: count it per
                    // peer (the transport also counts it by reason) and go on.
                    if self.transport.send(env).is_err() {
                        peers.dropped(to);
                    }
                }
                Effect::SetTimer { timer, min_ms, max_ms } => {
                    let ms = if max_ms > min_ms { self.rng.gen_range(min_ms..=max_ms) } else { min_ms };
                    let delay = Duration::from_millis(ms).div_f64(self.clock_rate);
                    self.timers.insert(timer, Instant::now() + delay);
                }
                Effect::CancelTimer(timer) => {
                    self.timers.remove(&timer);
                }
                Effect::Decided { slot, value } => {
                    if let Some(obs) = &self.observer {
                        obs(me, slot, &value);
                    }
                }
                Effect::Refused { from, kind, reason } => self.refusals.record(&self.metrics, me, from, kind, reason),
            }
        }
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
