//! The batch the crash helper persists for sequence number `i`: shared with the crash test,
//! which rebuilds the expected state from it.

use ballot_core::{Ballot, Command, NodeId, PersistOp, Value};
use std::sync::Arc;

/// One batch per sequence number, of every op kind, sized differently for each `i` so the
/// records (and the places a kill can cut them) vary.
pub fn ops_for(i: u64) -> Vec<PersistOp> {
    let value: Value = Arc::new(vec![Command::Vote {
        request_id: format!("r{i}"),
        client: NodeId::client(1),
        voter: format!("voter-{i}-{}", "x".repeat((i.wrapping_mul(37) % 700) as usize)),
        candidate: "alice".into(),
    }]);
    vec![
        PersistOp::Promise(Ballot::new(i, 1)),
        PersistOp::Accept { slot: i, ballot: Ballot::new(i, 1), value: value.clone() },
        PersistOp::Round(i),
        PersistOp::Apply { slot: i, value },
    ]
}
