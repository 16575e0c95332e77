//! `ballot status`: every node's entry of its process's `/status` page, as a table.

use super::connect::find_http;
use super::{status_deadline, usage_outcome, Answer, CliArgs, Outcome};
use ballot_core::NodeId;
use ballot_operator::discovery::DiscoveryClient;
use ballot_operator::pages::{NodeSummary, StatusPage};
use ballot_transports::PeerAddr;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Each node's entry of its process's `/status` (a replica serves three), or why not.
pub(super) async fn fetch_statuses(
    nodes: &BTreeMap<NodeId, Option<PeerAddr>>,
    deadline: Duration,
) -> BTreeMap<NodeId, Result<NodeSummary, String>> {
    let mut fetches = BTreeMap::new();
    for addr in nodes.values().flatten() {
        fetches.entry(addr.clone()).or_insert_with(|| tokio::spawn(fetch_page(addr.clone(), deadline)));
    }
    let mut pages = BTreeMap::new();
    for (addr, f) in fetches {
        pages.insert(addr, f.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    nodes
        .iter()
        .map(|(id, addr)| {
            let entry = match addr {
                None => Err("no HTTP address known (start it with --http, or give --http-peers)".to_string()),
                Some(a) => match &pages[a] {
                    Err(e) => Err(e.clone()),
                    Ok(page) => page
                        .node(&id.to_string())
                        .map(|n| n.summary.clone())
                        .ok_or_else(|| format!("{a} does not serve {id}")),
                },
            };
            let entry = entry.and_then(|e| match e.responding {
                true => Ok(e),
                false => Err(format!("{id} is up but its node loop does not answer (paused or stuck)")),
            });
            (*id, entry)
        })
        .collect()
}

/// One process's `/status`, within `deadline`.
async fn fetch_page(addr: PeerAddr, deadline: Duration) -> Result<StatusPage, String> {
    let (code, body) = DiscoveryClient::get_raw(&addr, "/status", deadline).await?;
    if code != 200 {
        return Err(format!("{addr} answered {code} to GET /status"));
    }
    serde_json::from_slice::<StatusPage>(&body).map_err(|e| format!("{addr}: /status is not JSON: {e}"))
}

/// A node in the output of `ballot status --json`; its status fields are `null` when it
/// is unreachable.
#[derive(Serialize)]
pub(super) struct StatusRow {
    node: String,
    role: String,
    http: Option<String>,
    reachable: bool,
    ballot: Option<String>,
    leader: Option<String>,
    is_leader: Option<bool>,
    chosen: Option<u64>,
    applied: Option<u64>,
    tally: Option<BTreeMap<String, u64>>,
    error: Option<String>,
}

impl StatusRow {
    fn new(id: NodeId, http: Option<&PeerAddr>, st: &Result<NodeSummary, String>) -> Self {
        let ok = st.as_ref().ok();
        StatusRow {
            node: id.to_string(),
            role: id.role.to_string(),
            http: http.map(|a| a.to_string()),
            reachable: ok.is_some(),
            ballot: ok.and_then(|e| e.ballot.clone()),
            leader: ok.and_then(|e| e.leader.clone()),
            is_leader: ok.map(|e| e.is_leader),
            chosen: ok.and_then(|e| e.chosen),
            applied: ok.and_then(|e| e.applied),
            tally: ok.and_then(|e| e.tally.clone()),
            error: st.as_ref().err().cloned(),
        }
    }

    /// The table's cells: `-` for nothing, a tally as `name=votes ...`.
    fn cells(&self) -> Vec<String> {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let tally =
            self.tally.as_ref().map(|t| t.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
        vec![
            self.node.clone(),
            self.role.clone(),
            if self.reachable { "yes" } else { "no" }.to_string(),
            opt(self.ballot.clone()),
            opt(self.leader.clone()),
            opt(self.chosen.map(|v| v.to_string())),
            opt(self.applied.map(|v| v.to_string())),
            opt(tally),
        ]
    }
}

/// Rows as a table with aligned columns.
fn table(rows: &[StatusRow]) -> String {
    let header = ["node", "role", "reachable", "ballot", "leader", "chosen", "applied", "tally"];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    table.extend(rows.iter().map(StatusRow::cells));
    let widths: Vec<usize> = (0..header.len()).map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    table
        .iter()
        .map(|l| {
            l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) async fn status(args: &CliArgs) -> Outcome {
    let nodes = match find_http(args).await {
        Ok(n) => n,
        Err(e) => return usage_outcome(format!("status: {e}")),
    };
    let statuses = fetch_statuses(&nodes, status_deadline(args)).await;
    let rows: Vec<StatusRow> = statuses.iter().map(|(id, st)| StatusRow::new(*id, nodes[id].as_ref(), st)).collect();
    let reachable = statuses.values().filter(|s| s.is_ok()).count();
    if reachable == 0 {
        let why =
            statuses.values().find_map(|s| s.as_ref().err().cloned()).unwrap_or_else(|| "no nodes are known".into());
        let text = format!("status: no node answered ({} known; first: {why})", statuses.len());
        return Outcome { code: 2, json: Answer { nodes: Some(rows), ..Answer::failed(text.clone(), None) }, text };
    }
    Outcome {
        code: 0,
        text: table(&rows),
        json: Answer { ok: true, reachable: Some(reachable), nodes: Some(rows), ..Answer::default() },
    }
}
