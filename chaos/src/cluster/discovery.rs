//! Discovery in scenarios: what it lists, and killing and restarting it.

use super::{Backend, Cluster};
use ballot_core::NodeId;

impl Cluster {
    fn no_discovery() -> String {
        "this cluster has no discovery: start it with cluster(#{discovery: true})".into()
    }

    /// The leader discovery names now; `Ok(None)` when it names none, `Err` when the
    /// cluster has no discovery or it is down.
    pub async fn discovery_leader(&self) -> Result<Option<NodeId>, String> {
        match &self.backend {
            Backend::Mem(b) => match b.discovery() {
                Some(d) if d.is_up() => Ok(d.leader()),
                Some(_) => Err("discovery is down".into()),
                None => Err(Self::no_discovery()),
            },
            Backend::Proc(b) => {
                let c = b.discovery_client().await.ok_or_else(Self::no_discovery)?;
                c.leader().await.map(|m| m.map(|m| m.node)).map_err(|e| e.to_string())
            }
        }
    }

    /// The members discovery lists now.
    pub async fn discovery_members(&self) -> Result<Vec<NodeId>, String> {
        match &self.backend {
            Backend::Mem(b) => match b.discovery() {
                Some(d) => d.members().ok_or_else(|| "discovery is down".into()),
                None => Err(Self::no_discovery()),
            },
            Backend::Proc(b) => {
                let c = b.discovery_client().await.ok_or_else(Self::no_discovery)?;
                c.members().await.map(|m| m.into_iter().map(|m| m.node).collect()).map_err(|e| e.to_string())
            }
        }
    }

    /// Stop the discovery service; an error when the cluster has none.
    pub fn kill_discovery(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Mem(b) => b.discovery().ok_or_else(Self::no_discovery)?.kill(),
            Backend::Proc(b) => {
                if b.discovery_addr().is_none() {
                    return Err(Self::no_discovery());
                }
                b.kill_discovery()
            }
        }
        self.log.record(|| "kill discovery".to_string());
        Ok(())
    }

    /// Start the discovery service again; an error when the cluster has none or it
    /// cannot start.
    pub async fn restart_discovery(&self) -> Result<(), String> {
        self.log.record(|| "restart discovery".to_string());
        match &self.backend {
            Backend::Mem(b) => {
                b.discovery().ok_or_else(Self::no_discovery)?.restart();
                Ok(())
            }
            Backend::Proc(b) => b.restart_discovery().await,
        }
    }
}
