//! What must survive a crash, and the storage trait the runtime writes it through.

use crate::command::Value;
use crate::ids::Ballot;
use crate::voting::VotingState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One change to durable state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PersistOp {
    /// Acceptor: never accept or promise below this ballot again.
    Promise(Ballot),
    /// Acceptor: `value` accepted for `slot` at `ballot` (also a promise of `ballot`).
    Accept {
        /// The slot.
        slot: u64,
        /// The ballot accepted at.
        ballot: Ballot,
        /// The value accepted.
        value: Value,
    },
    /// Proposer: the highest round this proposer has used; never reuse it.
    Round(u64),
    /// Acceptor: forget the values accepted for slots up to `upto`: every configured
    /// learner has applied them, so they are chosen and no one needs them from us again.
    Compact {
        /// Last slot forgotten.
        upto: u64,
    },
    /// Learner: `slot` applied with `value` (slots are applied in order, without gaps).
    Apply {
        /// The slot applied.
        slot: u64,
        /// Its chosen value.
        value: Value,
    },
    /// Learner: the state machine as of slot `applied` stands for every slot up to it
    /// (compaction, or a snapshot taken from a peer to catch up).
    LearnerSnapshot {
        /// The last slot the state includes.
        applied: u64,
        /// The voting state machine after that slot.
        state: VotingState,
    },
    /// Acceptor or proposer: `true` when the node's state was lost and it rejoins (the
    /// operator's `--rejoin`): it does not vote, or lead, until it can no longer
    /// contradict what it forgot (ARCHITECTURE.md, "Rejoining after lost state");
    /// `false` once it can. Last of the enum: the disk log encodes variants by position.
    Rejoin(bool),
}

/// Everything a node persisted, as loaded at start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DurableState {
    /// Acceptor: the highest ballot promised.
    pub promised: Ballot,
    /// Acceptor: per slot, the ballot and value accepted last.
    pub accepted: BTreeMap<u64, (Ballot, Value)>,
    /// Proposer: the highest round used.
    pub round: u64,
    /// Acceptor: slots up to here were compacted away (chosen and applied everywhere).
    #[serde(default)]
    pub compacted: u64,
    /// Learner snapshot: the state machine after slot `.0`.
    pub snapshot: Option<(u64, VotingState)>,
    /// Applied slots after the snapshot, in order: `applied[i]` is slot `base + i + 1`,
    /// where `base` is the snapshot's slot (0 without one).
    pub applied: Vec<Value>,
    /// Acceptor or proposer: rejoining after lost state ([`PersistOp::Rejoin`]).
    #[serde(default)]
    pub rejoining: bool,
}

impl DurableState {
    /// Fold one change in.
    pub fn apply(&mut self, op: &PersistOp) {
        match op {
            PersistOp::Promise(b) => self.promised = self.promised.max(*b),
            PersistOp::Accept { slot, ballot, value } => {
                self.promised = self.promised.max(*ballot);
                self.accepted.insert(*slot, (*ballot, value.clone()));
            }
            PersistOp::Round(r) => self.round = self.round.max(*r),
            PersistOp::Rejoin(on) => self.rejoining = *on,
            PersistOp::Compact { upto } => {
                if *upto > self.compacted {
                    self.compacted = *upto;
                    self.accepted = self.accepted.split_off(&upto.saturating_add(1));
                }
            }
            PersistOp::Apply { slot, value } => {
                // Slots arrive in order; an old or repeated one changes nothing.
                if *slot == self.last_applied() + 1 {
                    self.applied.push(value.clone());
                }
            }
            PersistOp::LearnerSnapshot { applied, state } => {
                let (base, last) = (self.snapshot_slot(), self.last_applied());
                if *applied > base {
                    if *applied >= last {
                        self.applied.clear();
                    } else {
                        self.applied.drain(..(*applied - base) as usize);
                    }
                    self.snapshot = Some((*applied, state.clone()));
                }
            }
        }
    }

    /// The slot the learner snapshot stands for (0 without one).
    pub fn snapshot_slot(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.0)
    }

    /// Last applied slot, snapshot included.
    pub fn last_applied(&self) -> u64 {
        self.snapshot_slot() + self.applied.len() as u64
    }
}

/// Why a node's storage could not load or persist.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading or writing the file failed.
    #[error("storage I/O failed on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something that does not decode as durable state.
    #[error("stored state in {path} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// Durable state of one node. `persist` returns only once the ops are durable: the
/// runtime sends nothing that depends on them before that.
pub trait Storage: Send + 'static {
    /// Everything persisted so far (the default state when nothing was).
    fn load(&mut self) -> Result<DurableState, StorageError>;
    /// Make all of `ops` durable together (one sync for the batch).
    fn persist(&mut self, ops: &[PersistOp]) -> Result<(), StorageError>;
    /// A fault for chaos tests: the next `persist` is torn, as when the machine crashes
    /// in the middle of the write: part of it may reach the medium, none of it counts,
    /// and the call fails, so the node stops before it sends anything that depends on it.
    /// Storage that cannot tear ignores it.
    fn tear_next_write(&mut self) {}
}

/// In-memory storage that outlives the node using it: clone the handle, kill the node,
/// start a new one on the same handle, and it finds what the old one persisted.
///
/// A test can tear its next write as a crash in the middle of it would
/// ([`Storage::tear_next_write`]), make the next load fail as a damaged disk does
/// ([`MemStorage::corrupt`]), or lose everything ([`MemStorage::wipe`]).
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    /// Everything persisted, folded.
    base: DurableState,
    /// Set by `corrupt`: every load fails with this until `wipe`.
    corrupt: Option<(String, String)>,
    /// Set by `tear_next_write`: the next persist is lost and fails.
    tear_next: bool,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of what is stored now.
    pub fn snapshot(&self) -> DurableState {
        self.lock().base.clone()
    }

    /// Damage the stored state: every load fails, naming where, until [`MemStorage::wipe`].
    pub fn corrupt(&self, name: &str) {
        let mut g = self.lock();
        let offset = g.base.accepted.len() + g.base.applied.len();
        g.corrupt = Some((format!("mem:{name}"), format!("offset {offset}: record payload fails its checksum")));
    }

    /// Forget a [`Storage::tear_next_write`] not yet carried out: the node it was for
    /// crashed first, and the request was in its memory.
    pub fn cancel_tear(&self) {
        self.lock().tear_next = false;
    }

    /// Lose everything stored.
    pub fn wipe(&self) {
        *self.lock() = MemInner::default();
    }
}

impl Storage for MemStorage {
    fn load(&mut self) -> Result<DurableState, StorageError> {
        if let Some((path, detail)) = self.lock().corrupt.clone() {
            return Err(StorageError::Corrupt { path, detail });
        }
        Ok(self.snapshot())
    }
    fn persist(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        let mut g = self.lock();
        if std::mem::take(&mut g.tear_next) {
            return Err(StorageError::Io {
                path: "mem".into(),
                source: std::io::Error::other("the write was torn by a crash in the middle of it (a chaos fault)"),
            });
        }
        for op in ops {
            g.base.apply(op);
        }
        Ok(())
    }
    fn tear_next_write(&mut self) {
        self.lock().tear_next = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn mem_storage_outlives_its_user() {
        let handle = MemStorage::new();
        let mut node = handle.clone();
        let v: Value = Arc::new(vec![]);
        node.persist(&[
            PersistOp::Promise(Ballot::new(2, 1)),
            PersistOp::Accept { slot: 3, ballot: Ballot::new(3, 2), value: v.clone() },
            PersistOp::Round(4),
            PersistOp::Apply { slot: 1, value: v.clone() },
        ])
        .unwrap();
        drop(node);
        let s = handle.clone().load().unwrap();
        assert_eq!(s.promised, Ballot::new(3, 2), "an accept is also a promise");
        assert_eq!(s.accepted.get(&3), Some(&(Ballot::new(3, 2), v.clone())));
        assert_eq!(s.round, 4);
        assert_eq!(s.applied.len(), 1);
    }

    #[test]
    fn a_torn_write_fails_and_counts_for_nothing_and_corrupt_fails_until_wiped() {
        let handle = MemStorage::new();
        let mut node = handle.clone();
        node.persist(&[PersistOp::Round(1)]).unwrap();
        handle.clone().tear_next_write();
        assert!(node.persist(&[PersistOp::Round(2), PersistOp::Promise(Ballot::new(2, 1))]).is_err());
        let s = node.load().unwrap();
        assert_eq!((s.round, s.promised), (1, Ballot::ZERO));
        handle.corrupt("acceptor-1");
        let e = node.load().unwrap_err().to_string();
        assert!(e.contains("mem:acceptor-1") && e.contains("offset"), "{e}");
        handle.wipe();
        assert_eq!(node.load().unwrap(), DurableState::default());
    }

    #[test]
    fn promises_never_go_down() {
        let mut s = DurableState::default();
        s.apply(&PersistOp::Promise(Ballot::new(5, 1)));
        s.apply(&PersistOp::Promise(Ballot::new(4, 3)));
        assert_eq!(s.promised, Ballot::new(5, 1));
    }

    #[test]
    fn a_snapshot_replaces_the_slots_it_covers() {
        let mut s = DurableState::default();
        let v: Value = Arc::new(vec![]);
        for slot in 1..=5 {
            s.apply(&PersistOp::Apply { slot, value: v.clone() });
        }
        let state = VotingState::new(vec!["ada".into()]);
        s.apply(&PersistOp::LearnerSnapshot { applied: 3, state: state.clone() });
        assert_eq!((s.snapshot_slot(), s.applied.len(), s.last_applied()), (3, 2, 5));
        s.apply(&PersistOp::Apply { slot: 6, value: v.clone() });
        assert_eq!(s.last_applied(), 6);
        // A snapshot from a peer that is far ahead replaces everything.
        s.apply(&PersistOp::LearnerSnapshot { applied: 100, state: state.clone() });
        assert_eq!((s.snapshot_slot(), s.applied.len(), s.last_applied()), (100, 0, 100));
        // An older one changes nothing.
        s.apply(&PersistOp::LearnerSnapshot { applied: 50, state });
        assert_eq!(s.last_applied(), 100);
    }

    #[test]
    fn applied_slots_stay_in_order() {
        let mut s = DurableState::default();
        let v: Value = Arc::new(vec![]);
        s.apply(&PersistOp::Apply { slot: 2, value: v.clone() });
        assert!(s.applied.is_empty(), "a gap is never stored");
        s.apply(&PersistOp::Apply { slot: 1, value: v.clone() });
        s.apply(&PersistOp::Apply { slot: 1, value: v.clone() });
        assert_eq!(s.applied.len(), 1);
    }
}
