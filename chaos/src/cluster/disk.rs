//! Storage faults at a restart: `c.restart(node, #{disk: "torn_tail" | "corrupt" | "wipe"})`.

use super::{Backend, Cluster};
use ballot_core::{NodeId, Role};
use std::time::Duration;

/// What a restart does to the node's stored state first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// The node crashes in the middle of its next write (a live node; one that is down
    /// has no write in flight): the next start finds half a record and discards it.
    TornTail,
    /// A record's bytes flipped: the next start is refused, naming the file and offset.
    Corrupt,
    /// Everything lost: the node starts empty, rejoining unless told not to.
    Wipe,
}

impl DiskFault {
    /// The names a scenario gives them.
    pub const NAMES: [&'static str; 3] = ["torn_tail", "corrupt", "wipe"];

    /// The fault a scenario names; the error lists the names.
    pub fn parse(name: &str) -> Result<DiskFault, String> {
        match name {
            "torn_tail" => Ok(DiskFault::TornTail),
            "corrupt" => Ok(DiskFault::Corrupt),
            "wipe" => Ok(DiskFault::Wipe),
            _ => Err(format!("unknown disk fault {name:?}: use one of {}", Self::NAMES.join(", "))),
        }
    }
}

/// How long a node told to tear its next write may take to make one before it is killed
/// with nothing torn (a proposer writes only at elections).
const TEAR_WAIT: Duration = Duration::from_secs(2);

impl Cluster {
    /// Restart `id` after `fault`. Returns the node's refusal to start when its state is
    /// corrupt (it stays down), else an empty string. `rejoin` (for `Wipe`) starts an
    /// acceptor or proposer rejoining, as the operator's `--rejoin` does; without it the
    /// node starts as if new, which is unsafe, and is there so a test can show that the
    /// checker catches what the rejoin prevents.
    pub async fn restart_with_disk(&self, id: NodeId, fault: DiskFault, rejoin: bool) -> Result<String, String> {
        match fault {
            DiskFault::TornTail => return self.tear(id).await,
            DiskFault::Corrupt => {
                self.kill(id);
                let what = match &self.backend {
                    Backend::Mem(b) => {
                        b.corrupt(id);
                        format!("{id}'s stored state damaged")
                    }
                    Backend::Proc(b) => b.corrupt(id)?,
                };
                self.log.record(|| format!("corrupt {id}: {what}"));
            }
            DiskFault::Wipe => {
                self.kill(id);
                let rejoin = rejoin && matches!(id.role, Role::Acceptor | Role::Proposer);
                if let Backend::Mem(b) = &self.backend {
                    b.wipe(id, rejoin);
                } else if let Backend::Proc(b) = &self.backend {
                    b.wipe(id)?;
                }
                self.log.record(|| format!("wipe {id}{}", if rejoin { " (rejoining)" } else { " (no rejoin)" }));
                if rejoin {
                    if let Backend::Proc(b) = &self.backend {
                        self.log.record(|| format!("restart {id} --rejoin"));
                        return self.started(id, b.restart_rejoining(id).await).await;
                    }
                }
            }
        }
        self.start_after_fault(id).await
    }

    /// Whether `id` is rejoining after lost state: as its status says when it runs, as
    /// its stored state says when it is down (on `mem`; a process that is down: false).
    pub async fn is_rejoining(&self, id: NodeId) -> bool {
        match self.status(id).await {
            Some(s) => s.rejoining == Some(true),
            None => matches!(&self.backend, Backend::Mem(b) if b.stored_rejoining(id)),
        }
    }

    /// Start `id` from what its storage holds now.
    async fn start_after_fault(&self, id: NodeId) -> Result<String, String> {
        self.log.record(|| format!("restart {id}"));
        let r = match &self.backend {
            Backend::Mem(b) => b.restart(id),
            Backend::Proc(b) => b.restart(id).await,
        };
        self.started(id, r).await
    }

    /// A start that failed leaves the node down (and not "crashed"), its refusal told.
    async fn started(&self, id: NodeId, r: Result<(), String>) -> Result<String, String> {
        match r {
            Ok(()) => {
                self.reapply_clock_rate(id).await;
                Ok(String::new())
            }
            Err(e) => {
                if let Backend::Proc(b) = &self.backend {
                    b.kill(id);
                }
                self.log.record(|| format!("{id} did not start: {e}"));
                Ok(e)
            }
        }
    }

    /// Tear `id`'s next write and wait for it to stop there, then clear it away.
    async fn tear(&self, id: NodeId) -> Result<String, String> {
        let running = |c: &Cluster| match &c.backend {
            Backend::Mem(b) => b.is_running(id),
            Backend::Proc(b) => b.is_running(id),
        };
        if running(self) {
            match &self.backend {
                Backend::Mem(b) => b.tear_next_write(id),
                Backend::Proc(b) => b.tear_next_write(id).await,
            }
            // Make it write: a vote for the progress probe's candidate, which goes through
            // the log (every acceptor and learner writes) and counts for no one.
            let n = {
                let mut p = self.probes.borrow_mut();
                *p += 1;
                *p
            };
            let opts = super::VoteOptions { timeout: Some(TEAR_WAIT), ..super::VoteOptions::default() };
            self.vote(&format!("torn-write-probe-{n}"), super::PROBE_CANDIDATE, &opts).await;
            let waited = tokio::time::Instant::now();
            while running(self) && waited.elapsed() < TEAR_WAIT {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let torn = !running(self);
            self.log.record(|| {
                if torn {
                    format!("{id} crashed in the middle of a write (torn tail)")
                } else {
                    format!("{id} made no write within {TEAR_WAIT:?}: killed with nothing torn")
                }
            });
        } else {
            self.log.record(|| format!("{id} is down: no write in flight to tear"));
        }
        self.kill(id);
        self.start_after_fault(id).await
    }
}
