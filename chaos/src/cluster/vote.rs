//! Votes and their outcomes, one at a time or many in flight together.

use super::{join_all, Backend, Cluster, VoteOptions, VoteOutcome};
use crate::invariants::Acked;
use ballot_core::{Command, Reply};
use ballot_runtime::{ClientError, SubmitOptions};
use tokio::time::Instant;

impl Cluster {
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
        if let Some(r) = opts.retry_every {
            submit.retry_every = r;
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
            Err(ClientError::Busy { .. }) => VoteOutcome { ok: false, error: "busy".into(), slot: 0, latency_ms },
            Err(ClientError::TooLarge { .. }) => {
                VoteOutcome { ok: false, error: "too_large".into(), slot: 0, latency_ms }
            }
            Err(ClientError::Timeout) | Err(ClientError::Closed) => {
                VoteOutcome { ok: false, error: "timeout".into(), slot: 0, latency_ms }
            }
        };
        self.log.record(|| {
            format!(
                "vote {request_id} {voter}->{candidate} ok={} error={} slot={} latency_ms={:.1}",
                outcome.ok,
                if outcome.error.is_empty() { "-" } else { &outcome.error },
                outcome.slot,
                outcome.latency_ms
            )
        });
        outcome
    }

    /// Cast many votes at once, all in flight together. On real processes the learners'
    /// new slots are pulled for the checker afterwards, so a long run is seen before the
    /// learners compact their logs into snapshots (which the control channel cannot page
    /// back).
    pub async fn vote_all(&self, votes: &[(String, String)], opts: &VoteOptions) -> Vec<VoteOutcome> {
        let futs = votes.iter().map(|(v, c)| {
            let opts = VoteOptions { request_id: None, ..opts.clone() };
            async move { self.vote(v, c, &opts).await }
        });
        let outcomes = join_all(futs).await;
        if let Backend::Proc(b) = &self.backend {
            b.pull_decided(&self.learners()).await;
        }
        outcomes
    }
}
