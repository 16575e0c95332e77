//! The progress invariant: with a healthy core and no fault in force, a fresh vote and a
//! read commit and every live learner catches up, each within a bound.

use super::{Backend, Cluster, VoteOptions};
use ballot_core::NodeId;
use std::time::Duration;
use tokio::time::Instant;

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
    /// acceptors and one learner; `Err` says which part is missing. An acceptor still
    /// rejoining after lost state votes for nothing, so it is not part of the core.
    async fn healthy_core(&self) -> Result<Core, String> {
        let live = |ids: Vec<NodeId>| -> Vec<NodeId> {
            ids.into_iter().filter(|&n| self.is_alive(n) && !self.is_paused(n)).collect()
        };
        let proposers = live(self.config.proposers.clone());
        let mut acceptors = Vec::new();
        for a in live(self.config.acceptors.clone()) {
            if !self.is_rejoining(a).await {
                acceptors.push(a);
            }
        }
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
        let (proposers, acceptors, learners) = match self.healthy_core().await {
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
}
