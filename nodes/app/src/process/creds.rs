//! `--certs DIR` / `--insecure`: which credentials the nodes of a process (and the `ballot`
//! CLI) run with. A process that talks to the cluster over the network must be given one
//! or the other: a node that silently ran without credentials would let anyone who reaches
//! its port speak as any node, so the insecure choice has to be written down.

use ballot_core::NodeId;
use ballot_transports::auth::{Credentials, Identity};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable read when neither `--certs` nor `--insecure` is given.
pub(crate) const CERTS_ENV: &str = "BALLOT_CERTS";

/// Where the credentials are: `--certs`, else `$BALLOT_CERTS` (unless `--insecure`);
/// `Ok(None)` means insecure, by choice. Neither is one line saying how to make them.
pub(crate) fn folder(certs: Option<&Path>, insecure: bool) -> Result<Option<PathBuf>, String> {
    if let Some(dir) = certs {
        return Ok(Some(dir.to_path_buf()));
    }
    if insecure {
        return Ok(None);
    }
    match std::env::var_os(CERTS_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => Ok(Some(PathBuf::from(dir))),
        None => Err(format!(
            "no credentials: make them with `ballot certs --dir DIR --peers <the --peers list>`, then give --certs DIR \
             (or {CERTS_ENV}=DIR); --insecure runs without them"
        )),
    }
}

/// The one line a process prints when it runs insecure by choice.
pub(crate) fn insecure_warning(program: &str) -> String {
    format!("{program}: warning: --insecure: no TLS and no peer authentication; anyone who reaches these ports can speak as any node")
}

/// Each node's credentials from `dir` (one identity per role of a replica), or none at
/// all for an insecure process.
pub(crate) fn for_nodes(dir: Option<&Path>, ids: &[NodeId]) -> Result<BTreeMap<NodeId, Arc<Credentials>>, String> {
    let Some(dir) = dir else { return Ok(BTreeMap::new()) };
    ids.iter()
        .map(|&id| Ok((id, Arc::new(Credentials::load(dir, Identity::of(id)).map_err(|e| e.to_string())?))))
        .collect()
}
