//! Storage faults on node processes: the torn write over the control channel, damage to
//! a stopped node's data folder, and the `--rejoin` start.

use super::ProcBackend;
use ballot_core::NodeId;
use ballot_operator::control::ControlRequest;

impl ProcBackend {
    /// Start `id` again as `ballot-node --rejoin` (its state was lost).
    pub async fn restart_rejoining(&self, id: NodeId) -> Result<(), String> {
        self.spawn(id, &["--rejoin"])?;
        self.wait_ready(id).await
    }

    /// Tear `id`'s next write, over its control channel: the process stops there.
    pub async fn tear_next_write(&self, id: NodeId) {
        let _ = self.control(id, &ControlRequest::TearNextWrite).await;
    }

    /// Whether `id`'s process runs (started, not killed, not exited).
    pub fn is_running(&self, id: NodeId) -> bool {
        self.procs
            .borrow_mut()
            .get_mut(&id)
            .and_then(|p| p.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Damage `id`'s data folder (a record's bytes flipped); it must be down.
    pub fn corrupt(&self, id: NodeId) -> Result<String, String> {
        ballot_disk::faults::corrupt(&self.run_dir.join(id.to_string())).map_err(|e| format!("corrupt {id}: {e}"))
    }

    /// Empty `id`'s data folder; it must be down.
    pub fn wipe(&self, id: NodeId) -> Result<String, String> {
        ballot_disk::faults::wipe(&self.run_dir.join(id.to_string())).map_err(|e| format!("wipe {id}: {e}"))
    }
}
