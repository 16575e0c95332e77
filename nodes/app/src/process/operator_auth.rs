//! The operator plane's credentials for this process (`--certs DIR`): who may use its
//! control channel and discovery server, and the tokens its nodes heart-beat with.
//! Insecure (`--insecure`), everything stays open.

use ballot_core::NodeId;
use ballot_operator::access::{Access, Refusals};
use ballot_transports::auth::{Credentials, Identity};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What the process's operator-plane servers and clients need.
#[derive(Clone, Default)]
pub(super) struct OperatorAuth {
    /// Who may use the control channel (and, for `--role discovery`, write to discovery).
    pub access: Access,
    /// Each node's own token, for its discovery writes (empty without `--certs`).
    pub tokens: BTreeMap<NodeId, String>,
    /// The process's refusals, counted by every operator-plane server and shown on
    /// `/metrics`.
    pub refusals: Refusals,
}

fn load(dir: Option<&Path>, who: Identity) -> Result<Option<Arc<Credentials>>, String> {
    let Some(dir) = dir else { return Ok(None) };
    Credentials::load(dir, who).map(|c| Some(Arc::new(c))).map_err(|e| format!("--certs: {e}"))
}

impl OperatorAuth {
    /// For a process running `ids`: checks tokens with the folder's cluster secret, and
    /// holds each node's own token.
    pub(super) fn for_nodes(dir: Option<&Path>, ids: &[NodeId]) -> Result<OperatorAuth, String> {
        let mut auth = OperatorAuth::default();
        for &id in ids {
            let Some(creds) = load(dir, Identity::Node(id))? else { return Ok(auth) };
            auth.tokens.insert(id, creds.token.clone());
            if auth.access.is_open() {
                auth.access = Access::from_credentials(Some(creds)).map_err(|e| format!("--certs: {e}"))?;
            }
        }
        Ok(auth)
    }

    /// For `--role discovery`: it checks every node's token with the cluster secret and
    /// has no name of its own on the operator plane, so it reads the folder as the
    /// operator.
    pub(super) fn for_discovery(dir: Option<&Path>) -> Result<OperatorAuth, String> {
        let creds = load(dir, Identity::Operator)?;
        let access = Access::from_credentials(creds).map_err(|e| format!("--certs: {e}"))?;
        Ok(OperatorAuth { access, ..OperatorAuth::default() })
    }
}
