//! `ballot certs --dir DIR --peers LIST`: a fresh credentials folder for a cluster.

use super::{usage_outcome, Answer, Outcome};
use ballot_core::{NodeId, Role};
use std::path::Path;

/// The node names of `--peers`: bare names (`acceptor-1`) or the `name=host:port` list
/// that `ballot-node --peers` takes (addresses ignored). Clients are left out: one
/// `client` credential serves every `client-N`.
pub(super) fn node_names(list: &[String]) -> Result<Vec<NodeId>, String> {
    let mut nodes = Vec::new();
    for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let name = item.split_once('=').map_or(item, |(n, _)| n.trim());
        let id: NodeId = name.parse().map_err(|e| format!("--peers: '{name}': {e}"))?;
        if id.role != Role::Client && !nodes.contains(&id) {
            nodes.push(id);
        }
    }
    if nodes.is_empty() {
        return Err(
            "--peers names no node: give the cluster's nodes, e.g. --peers proposer-1,acceptor-1,learner-1".into()
        );
    }
    Ok(nodes)
}

/// What to do with a folder that already holds a CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Existing {
    /// Refuse (exit 2): a new CA locks out every node still holding the old one.
    Refuse,
    /// Keep it and succeed (a deployment's one-off step, run at every `up`).
    Keep,
    /// Replace it.
    Replace,
}

/// Writes the folder, unless it already holds a CA and `existing` says otherwise.
pub(super) fn certs(dir: &Path, peers: &[String], existing: Existing) -> Outcome {
    let nodes = match node_names(peers) {
        Ok(n) => n,
        Err(e) => return usage_outcome(e),
    };
    if dir.join("ca.pem").exists() && existing == Existing::Keep {
        let text = format!("{} already holds a CA; kept it and wrote nothing", dir.display());
        return Outcome { code: 0, json: Answer { ok: true, message: Some(text.clone()), ..Answer::default() }, text };
    }
    if dir.join("ca.pem").exists() && existing == Existing::Refuse {
        return usage_outcome(format!(
            "{} already holds a CA: a new one would lock out every node that has the old; give another --dir, --if-missing to keep it, or --force",
            dir.display()
        ));
    }
    if let Err(e) = ballot_transports::auth::generate(dir, &nodes) {
        return Outcome { code: 1, json: Answer::failed("certs", Some(e.to_string())), text: e.to_string() };
    }
    let names: Vec<String> = nodes.iter().map(|n| n.to_string()).chain(["client".into(), "operator".into()]).collect();
    let text = format!(
        "wrote a CA and credentials for {} to {}; start every node and client with --certs {}",
        names.join(", "),
        dir.display(),
        dir.display()
    );
    Outcome { code: 0, json: Answer { ok: true, message: Some(text.clone()), ..Answer::default() }, text }
}
