//! `ballot results`: the tally through the log, or (`--local`) one learner's own tally from
//! its `/status`.

use super::connect::find_http;
use super::status::fetch_statuses;
use super::{
    read_tally, status_deadline, tally_json, tally_text, unreachable_outcome, usage_outcome, Answer, CliArgs, Outcome,
};
use ballot_core::{NodeId, Role, Tally};
use ballot_runtime::client::ClientHandle;
use std::collections::BTreeMap;

pub(super) async fn results(client: &ClientHandle, args: &CliArgs) -> Outcome {
    match read_tally(client, args).await {
        Ok((slot, tally)) => Outcome { code: 0, text: tally_text(&tally), json: tally_json(slot, &tally) },
        Err(e) => unreachable_outcome(e, "results"),
    }
}

pub(super) async fn results_local(args: &CliArgs, node: &str) -> Outcome {
    let id: NodeId = match node.trim().parse() {
        Ok(id) => id,
        Err(e) => return usage_outcome(format!("results --local: {e}")),
    };
    if id.role != Role::Learner {
        return usage_outcome(format!(
            "results --local: {id} is not a learner; only learners keep a tally (e.g. learner-1)"
        ));
    }
    let nodes = match find_http(args).await {
        Ok(n) => n,
        Err(e) => return usage_outcome(format!("results --local: {e}")),
    };
    let Some(addr) = nodes.get(&id).cloned() else {
        return usage_outcome(format!("results --local: {id} is not a known node (not in discovery nor --http-peers)"));
    };
    let one = BTreeMap::from([(id, addr)]);
    let entry =
        fetch_statuses(&one, status_deadline(args)).await.remove(&id).unwrap_or_else(|| Err("no answer".into()));
    let unreachable = |e: String| {
        let text = format!("results --local: {id} is unreachable: {e}");
        Outcome { code: 4, json: Answer::failed("unreachable", Some(text.clone())), text }
    };
    match entry {
        Err(e) => unreachable(e),
        Ok(e) => match e.tally {
            None => unreachable(format!("its /status has no tally: {}", e.role)),
            Some(t) => {
                let tally: Tally = t.into_iter().collect();
                let applied = e.applied.unwrap_or(0);
                let json = Answer { node: Some(id.to_string()), applied: Some(applied), ..tally_json(applied, &tally) };
                Outcome { code: 0, text: tally_text(&tally), json }
            }
        },
    }
}
