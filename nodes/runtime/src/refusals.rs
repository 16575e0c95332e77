//! What the role refused: every refusal counted by reason ([`NodeMetrics::refused`]) and
//! logged as one line, at most one line per reason per [`LOG_EVERY`], so a flood of
//! forged messages costs a counter increment each, not a log line each.

use crate::metrics::NodeMetrics;
use ballot_core::{NodeId, Refusal};
use std::time::Duration;
use tokio::time::Instant;

/// At most one log line per reason this often; the line says how many were not logged.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(1);

/// When each reason was last logged, and how many refusals since then were not.
#[derive(Default)]
pub(crate) struct RefusalLog {
    last: [Option<Instant>; Refusal::ALL.len()],
    unlogged: [u64; Refusal::ALL.len()],
}

impl RefusalLog {
    /// Count one refusal and log it unless its reason was logged within [`LOG_EVERY`].
    /// The clock is tokio's, so on the in-memory network (a paused clock) what is logged
    /// is the same on every run.
    pub(crate) fn record(&mut self, metrics: &NodeMetrics, me: NodeId, from: NodeId, kind: &str, reason: Refusal) {
        metrics.refused(reason);
        let i = reason.index();
        let now = Instant::now();
        if self.last[i].is_some_and(|t| now < t + LOG_EVERY) {
            self.unlogged[i] += 1;
            return;
        }
        let unlogged = std::mem::take(&mut self.unlogged[i]);
        self.last[i] = Some(now);
        tracing::warn!(node = %me, %from, kind, reason = reason.as_str(), unlogged, "refused a message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_every_refusal_and_logs_one_line_per_reason_per_period() {
        let m = NodeMetrics::new();
        let mut log = RefusalLog::default();
        let (me, from) = (NodeId::acceptor(1), NodeId::proposer(9));
        for _ in 0..5 {
            log.record(&m, me, from, "Prepare", Refusal::NotAProposer);
        }
        log.record(&m, me, from, "Accept", Refusal::NotBallotOwner);
        assert_eq!(log.unlogged[Refusal::NotAProposer.index()], 4, "one line, four not logged");
        assert_eq!(log.unlogged[Refusal::NotBallotOwner.index()], 0, "another reason has its own line");
        tokio::time::advance(LOG_EVERY).await;
        log.record(&m, me, from, "Prepare", Refusal::NotAProposer);
        assert_eq!(log.unlogged[Refusal::NotAProposer.index()], 0, "a period later: logged again");
        let counts: std::collections::BTreeMap<_, _> = m.snapshot().refused.into_iter().collect();
        assert_eq!((counts["not_a_proposer"], counts["not_ballot_owner"], counts["too_long"]), (6, 1, 0));
    }
}
