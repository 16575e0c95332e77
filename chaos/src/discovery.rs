//! Discovery in scenarios (`cluster(#{discovery: true})`). On tcp/zmq it is the real
//! discovery process (`chaos node --role discovery`), and every node runs with
//! `--discovery`. On mem there are no sockets: the same registry (`ballot_operator::discovery::
//! Registry`, ttl and leader rule included) lives in the chaos process, and each node's
//! heartbeat is a task that asks that node's loop for its status every period and
//! registers the same `Registration` a node process would send. A paused node cannot
//! answer, so it stops heart-beating, exactly like a stopped process.

use ballot_core::NodeId;
use ballot_operator::discovery::{Registration, Registry, DEFAULT_HEARTBEAT_PERIOD, DEFAULT_TTL};
use ballot_runtime::NodeControl;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The in-process discovery of a mem cluster.
pub struct MemDiscovery {
    registry: Mutex<Registry>,
    up: AtomicBool,
}

impl MemDiscovery {
    /// An empty registry, up.
    pub fn new() -> Arc<Self> {
        Arc::new(MemDiscovery { registry: Mutex::new(Registry::new(DEFAULT_TTL, 1024)), up: AtomicBool::new(true) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether it answers (not killed by the scenario).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Down: no register succeeds, no query answers; what it knew is gone.
    pub fn kill(&self) {
        self.up.store(false, Ordering::SeqCst);
        *self.lock() = Registry::new(DEFAULT_TTL, 1024);
    }

    /// Up again, empty: members come back with their next heartbeat.
    pub fn restart(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Who it names as the leader now (`None` when down or no claim is live).
    pub fn leader(&self) -> Option<NodeId> {
        self.is_up().then(|| self.lock().leader(tokio::time::Instant::now()).map(|m| m.node)).flatten()
    }

    /// The members heard within the ttl, in node order (`None` when down).
    pub fn members(&self) -> Option<Vec<NodeId>> {
        self.is_up().then(|| self.lock().members(tokio::time::Instant::now()).into_iter().map(|m| m.node).collect())
    }

    fn register(&self, reg: Registration) {
        if self.is_up() {
            let _ = self.lock().register(reg, tokio::time::Instant::now());
        }
    }

    /// The heartbeat of one node, for as long as the node's loop exists.
    pub fn spawn_heartbeat(self: &Arc<Self>, node: NodeId, ctrl: NodeControl) {
        let d = self.clone();
        // Nodes of the in-memory network have no socket address.
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        tokio::spawn(async move {
            loop {
                if ctrl.is_closed() {
                    return; // the node is gone (killed)
                }
                if let Some(status) = ctrl.status(Duration::from_millis(500)).await {
                    d.register(Registration::from_status(node, addr, None, &status));
                }
                tokio::time::sleep(DEFAULT_HEARTBEAT_PERIOD).await;
            }
        });
    }
}
