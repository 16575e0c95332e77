//! `ballot candidates`: the names one can vote for.

use super::{read_tally, unreachable_outcome, Answer, CliArgs, Outcome};
use ballot_runtime::client::ClientHandle;

pub(super) async fn candidates(client: &ClientHandle, args: &CliArgs) -> Outcome {
    match read_tally(client, args).await {
        Ok((_, tally)) => {
            let names: Vec<String> = tally.into_iter().map(|(c, _)| c).collect();
            Outcome {
                code: 0,
                text: names.join("\n"),
                json: Answer { ok: true, candidates: Some(names.clone()), ..Answer::default() },
            }
        }
        Err(e) => unreachable_outcome(e, "candidates"),
    }
}
