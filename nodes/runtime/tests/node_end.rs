//! A node loop that ends on its own (a panic, a storage error) is seen by whoever waits on
//! `ended`, and `stop` says why: what a process that must keep running watches.

use ballot_core::{Actor, Message, NodeId, Outbox, PersistOp, Status, Storage, StorageError, Timer};
use ballot_runtime::{spawn_node, NodeError, NodeOptions};
use ballot_transports::{Envelope, EventLog, MemNetwork, Transport};
use std::time::Duration;

/// A role that panics on its first message, or persists something on it.
struct Faulty {
    id: NodeId,
    panics: bool,
}

impl Actor for Faulty {
    fn id(&self) -> NodeId {
        self.id
    }
    fn start(&mut self, _out: &mut Outbox) {}
    fn on_message(&mut self, _from: NodeId, _msg: Message, out: &mut Outbox) {
        assert!(!self.panics, "a bug in the role");
        out.persist(PersistOp::Round(1));
    }
    fn on_timer(&mut self, _timer: Timer, _out: &mut Outbox) {}
    fn status(&self) -> Status {
        Status::default()
    }
}

/// Storage whose every write fails.
struct Broken;

impl Storage for Broken {
    fn load(&mut self) -> Result<ballot_core::DurableState, StorageError> {
        Ok(Default::default())
    }
    fn persist(&mut self, _ops: &[PersistOp]) -> Result<(), StorageError> {
        Err(StorageError::Io { path: "wal".into(), source: std::io::Error::other("disk full") })
    }
}

async fn end_of(panics: bool) -> Result<(), NodeError> {
    let net = MemNetwork::new(1, EventLog::new(false));
    let id = NodeId::acceptor(1);
    let node = spawn_node(Faulty { id, panics }, net.register(id), Broken, NodeOptions::seeded(1));
    let peer = net.register(NodeId::proposer(1));
    // Still running: `ended` does not fire.
    assert!(tokio::time::timeout(Duration::from_millis(50), node.ended()).await.is_err());
    peer.send(Envelope::new(NodeId::proposer(1), id, Message::Hello)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), node.ended()).await.expect("the loop's end is seen");
    assert!(node.is_finished() || node.controller().is_closed());
    node.stop().await
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_node_loop_is_seen_and_reported() {
    match end_of(true).await {
        Err(NodeError::Panicked { node, message }) => {
            assert_eq!(node, NodeId::acceptor(1));
            assert!(message.contains("a bug in the role"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_storage_error_ends_the_node_loop_and_is_reported() {
    assert!(matches!(end_of(false).await, Err(NodeError::Storage { .. })));
}
