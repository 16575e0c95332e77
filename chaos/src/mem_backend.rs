//! The in-memory backend: every node a task on the scenario's runtime, the network a
//! [`MemNetwork`], storage a [`MemStorage`] that outlives a killed node.

use crate::cluster::Fault;
use crate::discovery::MemDiscovery;
use crate::invariants::Recorder;
use ballot_core::{Acceptor, Config, Learner, MemStorage, NodeId, PersistOp, Proposer, Refusal, Role, Status, Storage};
use ballot_operator::control::FaultCommand;
use ballot_runtime::{spawn_node, ClientHandle, NodeHandle, NodeMetrics, NodeOptions, Observer};
use ballot_transports::{EventLog, LinkFaults, MemNetwork};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Slot {
    storage: MemStorage,
    handle: Option<NodeHandle>,
    paused: bool,
    incarnation: u64,
    /// The counters of every incarnation so far (they outlive its task).
    metrics: Vec<Arc<NodeMetrics>>,
}

impl Slot {
    fn new() -> Slot {
        Slot { storage: MemStorage::new(), handle: None, paused: false, incarnation: 0, metrics: Vec::new() }
    }
}

/// Every node of a cluster as a task on the scenario's runtime, over one in-memory
/// network, with a storage per node that outlives its task.
pub struct MemBackend {
    config: Arc<Config>,
    seed: u64,
    net: MemNetwork,
    log: EventLog,
    slots: RefCell<BTreeMap<NodeId, Slot>>,
    recorder: Arc<Mutex<Recorder>>,
    discovery: Option<Arc<MemDiscovery>>,
}

/// splitmix64: spreads (seed, node, incarnation) into independent seeds.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Deadline for one node's status answer (virtual time on mem).
const STATUS_DEADLINE: Duration = Duration::from_millis(100);

impl MemBackend {
    /// Start every node and a client. Must run inside the scenario's runtime.
    pub fn start(
        config: Arc<Config>,
        seed: u64,
        log: EventLog,
        recorder: Arc<Mutex<Recorder>>,
        discovery: Option<Arc<MemDiscovery>>,
    ) -> (Self, ClientHandle) {
        let net = MemNetwork::new(mix(seed), log.clone());
        let client =
            ClientHandle::spawn(net.register(NodeId::client(1)), config.proposers.clone(), config.nodes().collect());
        // Request ids reach the event log: drawn from the run's seed, so it replays.
        client.seed_request_ids(mix(seed ^ 0x00C1_1E47));
        let slots = config.nodes().map(|id| (id, Slot::new())).collect();
        let backend = MemBackend { config, seed, net, log, slots: RefCell::new(slots), recorder, discovery };
        for id in backend.config.nodes().collect::<Vec<_>>() {
            backend.start_node(id).expect("a new in-memory storage loads");
        }
        (backend, client)
    }

    fn start_node(&self, id: NodeId) -> Result<(), String> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(&id).expect("configured node");
        slot.incarnation += 1;
        let seed = mix(self.seed ^ mix(((id.role as u64) << 32) | id.index as u64) ^ mix(slot.incarnation));
        let mut storage = slot.storage.clone();
        // A node refuses to start on state it cannot read, as a process does.
        let durable = storage.load().map_err(|e| format!("{id} refused to start: {e}"))?;
        let transport = self.net.register(id);
        let config = self.config.clone();
        let handle = match id.role {
            Role::Proposer => {
                spawn_node(Proposer::new(id, config, durable), transport, storage, NodeOptions::seeded(seed))
            }
            Role::Acceptor => {
                spawn_node(Acceptor::new(id, config, durable), transport, storage, NodeOptions::seeded(seed))
            }
            Role::Learner => {
                let rec = self.recorder.clone();
                let observer: Observer = Arc::new(move |node, slot, value| {
                    rec.lock().unwrap_or_else(|e| e.into_inner()).on_decided(node, slot, value)
                });
                spawn_node(
                    Learner::new(id, config, durable),
                    transport,
                    storage,
                    NodeOptions::seeded(seed).with_observer(observer),
                )
            }
            Role::Client => unreachable!("clients are not cluster nodes"),
        };
        if let Some(d) = &self.discovery {
            d.spawn_heartbeat(id, handle.controller());
        }
        slot.metrics.push(handle.metrics());
        slot.handle = Some(handle);
        slot.paused = false;
        Ok(())
    }

    /// Send `msg` to `to` as `from`, from outside the cluster (a test's forgery).
    #[doc(hidden)]
    pub fn forge_for_test(&self, from: NodeId, to: NodeId, msg: ballot_core::Message) {
        // Injected, not sent through a registered transport: registering `from` would
        // take over the inbox of the real node of that name.
        self.net.inject_for_test(ballot_transports::Envelope::new(from, to, msg));
    }

    /// What each node refused so far, over all its incarnations: `(node, reason, count)`
    /// for every count above zero.
    pub fn refusals(&self) -> Vec<(NodeId, Refusal, u64)> {
        let mut out = Vec::new();
        for (&id, slot) in self.slots.borrow().iter() {
            let mut sum = [0u64; Refusal::ALL.len()];
            for m in &slot.metrics {
                for (i, (_, n)) in m.snapshot().refused.iter().enumerate() {
                    sum[i] += n;
                }
            }
            out.extend(Refusal::ALL.iter().zip(sum).filter(|(_, n)| *n > 0).map(|(&r, n)| (id, r, n)));
        }
        out
    }

    /// The in-process discovery registry, when the cluster has one.
    pub fn discovery(&self) -> Option<&Arc<MemDiscovery>> {
        self.discovery.as_ref()
    }

    /// Whether `id` has a running task (started and not killed).
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.slots.borrow().get(&id).is_some_and(|s| s.handle.is_some())
    }

    /// Whether `id` is paused.
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.slots.borrow().get(&id).is_some_and(|s| s.paused)
    }

    /// Stop `id`'s task at once and take it off the network; its storage stays.
    pub fn kill(&self, id: NodeId) {
        let handle = self.slots.borrow_mut().get_mut(&id).and_then(|s| {
            s.paused = false;
            s.handle.take()
        });
        if let Some(h) = handle {
            h.kill();
        }
        // A tear asked of it died with it.
        if let Some(s) = self.slots.borrow().get(&id) {
            s.storage.cancel_tear();
        }
        self.net.unregister(id);
    }

    /// Start `id` again from its storage, with a new incarnation's seed; an error when
    /// its storage does not load (a corrupt record).
    pub fn restart(&self, id: NodeId) -> Result<(), String> {
        self.start_node(id)
    }

    /// Start a node that was not in the configuration (a learner joining).
    pub fn add(&self, id: NodeId) {
        self.slots.borrow_mut().insert(id, Slot::new());
        self.start_node(id).expect("a new in-memory storage loads");
    }

    /// Tear `id`'s next write: it stops there ([`NodeControl::tear_next_write`]).
    pub fn tear_next_write(&self, id: NodeId) {
        if let Some(h) = self.slots.borrow().get(&id).and_then(|s| s.handle.as_ref()) {
            h.controller().tear_next_write();
        }
    }

    /// Whether `id`'s task runs (started, not killed, not stopped by itself).
    pub fn is_running(&self, id: NodeId) -> bool {
        self.slots.borrow().get(&id).and_then(|s| s.handle.as_ref()).is_some_and(|h| !h.is_finished())
    }

    /// Damage `id`'s stored state: its next start is refused, naming where.
    pub fn corrupt(&self, id: NodeId) {
        if let Some(s) = self.slots.borrow().get(&id) {
            s.storage.corrupt(&id.to_string());
        }
    }

    /// Whether `id`'s stored state says it is rejoining after lost state.
    pub fn stored_rejoining(&self, id: NodeId) -> bool {
        self.slots.borrow().get(&id).is_some_and(|s| s.storage.snapshot().rejoining)
    }

    /// Lose `id`'s stored state; with `rejoin`, mark it rejoining (the operator's
    /// `--rejoin`), so it votes and leads again only once that is safe.
    pub fn wipe(&self, id: NodeId, rejoin: bool) {
        if let Some(s) = self.slots.borrow().get(&id) {
            s.storage.wipe();
            if rejoin {
                let _ = s.storage.clone().persist(&[PersistOp::Rejoin(true)]);
            }
        }
    }

    /// Pause `id`'s task, when it is running.
    pub fn pause(&self, id: NodeId) {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(&id).expect("configured node");
        if let Some(h) = &slot.handle {
            h.pause();
            slot.paused = true;
        }
    }

    /// Resume `id`'s task.
    pub fn resume(&self, id: NodeId) {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(&id).expect("configured node");
        if let Some(h) = &slot.handle {
            h.resume();
        }
        slot.paused = false;
    }

    /// Runs `id`'s timers at `factor` times the true rate, when it is running (a paused
    /// node takes it when it resumes). The factor passed `check_clock_rate`.
    pub fn set_clock_rate(&self, id: NodeId, factor: f64) {
        if let Some(h) = self.slots.borrow().get(&id).and_then(|s| s.handle.as_ref()) {
            h.controller().set_clock_rate(factor);
        }
    }

    /// Applies a checked fault to the network as it is: [`Fault::new`] did the checking.
    pub fn fault(&self, fault: &Fault) {
        let current = self.net.default_faults();
        match fault.command() {
            FaultCommand::Partition { a, b } => self.net.partition(a, b),
            FaultCommand::PartitionOneway { from, to } => self.net.partition_one_way(from, to),
            FaultCommand::Isolate(n) => self.net.isolate(*n),
            FaultCommand::Heal => self.net.heal(),
            FaultCommand::DropRate(p) => self.net.set_default_faults(LinkFaults { drop: *p, ..current }),
            FaultCommand::DuplicateRate(p) => self.net.set_default_faults(LinkFaults { duplicate: *p, ..current }),
            FaultCommand::Delay { min_ms, max_ms } => {
                let d = (Duration::from_millis(*min_ms), Duration::from_millis(*max_ms));
                self.net.set_default_faults(LinkFaults { delay: Some(d), ..current })
            }
            FaultCommand::Messages(rule) => self.net.add_rule(rule.clone()),
        }
    }

    /// The status of `id`; `None` if it is down, paused or does not answer in time.
    pub async fn status(&self, id: NodeId) -> Option<Status> {
        if !self.is_alive(id) || self.is_paused(id) {
            return None;
        }
        let ctrl = self.slots.borrow().get(&id).and_then(|s| s.handle.as_ref()).map(NodeHandle::controller)?;
        ctrl.status(STATUS_DEADLINE).await
    }

    /// The ballot `id` (an acceptor) accepted `slot` at; `None` if it is down or paused.
    pub async fn accepted_at(&self, id: NodeId, slot: u64) -> Option<Option<ballot_core::Ballot>> {
        if !self.is_alive(id) || self.is_paused(id) {
            return None;
        }
        let ctrl = self.slots.borrow().get(&id).and_then(|s| s.handle.as_ref()).map(NodeHandle::controller)?;
        ctrl.accepted_at(slot, STATUS_DEADLINE).await
    }

    /// Nodes whose task ended although nobody killed them (a panic, a storage error).
    pub fn crashed(&self) -> Vec<NodeId> {
        self.slots
            .borrow()
            .iter()
            .filter(|(_, s)| s.handle.as_ref().is_some_and(|h| h.is_finished()))
            .map(|(&id, _)| id)
            .collect()
    }

    /// The network's message counters, by name.
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        let s = self.net.stats();
        BTreeMap::from([
            ("sent", s.sent),
            ("delivered", s.delivered),
            ("dropped_partition", s.dropped_partition),
            ("dropped_random", s.dropped_random),
            ("dropped_down", s.dropped_down),
            ("duplicated", s.duplicated),
            ("dropped_oversized", s.dropped_oversized),
            ("dropped_rule", s.dropped_rule),
        ])
    }

    /// The scenario's event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Stop every node's task.
    pub fn shutdown(&self) {
        for slot in self.slots.borrow_mut().values_mut() {
            if let Some(h) = slot.handle.take() {
                h.kill();
            }
        }
    }
}
