//! The servers a node process runs beside its nodes: the control channel, the HTTP pages
//! and, for `--role discovery`, the discovery server. All three are spawned from
//! [`spawn_servers`] alone, so that how they are served (and stopped) is one place.

use ballot_operator::control::{self, ControlOptions, FaultSink};
use ballot_operator::discovery::DiscoveryOptions;
use ballot_operator::pages::HttpState;
use ballot_runtime::NodeControl;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::signals::wait_for_signal;

/// The control channel of a process: it speaks for one node loop and applies fault
/// commands to the process's fault layer.
pub(super) struct ControlServer {
    pub listener: TcpListener,
    pub node: NodeControl,
    pub faults: Arc<dyn FaultSink>,
    /// Who may use it, and its limits.
    pub opts: ControlOptions,
}

/// What to serve, each on its bound listener.
#[derive(Default)]
pub(super) struct Servers {
    pub control: Option<ControlServer>,
    pub pages: Option<(TcpListener, HttpState)>,
    pub discovery: Option<(TcpListener, DiscoveryOptions)>,
}

/// Spawns every server given, each stopping on the process's signal (SIGTERM, Ctrl-C):
/// it stops accepting and answers what is in flight (the pages do so while the node
/// deregisters). Returns the discovery server's task, which ends once it has drained.
pub(super) fn spawn_servers(servers: Servers) -> Option<JoinHandle<()>> {
    if let Some(c) = servers.control {
        tokio::spawn(control::serve(c.listener, c.node, Some(c.faults), c.opts, wait_for_signal()));
    }
    if let Some((listener, state)) = servers.pages {
        tokio::spawn(ballot_operator::pages::serve(listener, state, wait_for_signal()));
    }
    servers.discovery.map(|(listener, opts)| {
        tokio::spawn(ballot_operator::discovery::serve(listener, opts, async {
            wait_for_signal().await;
            tracing::info!("stopping");
        }))
    })
}

/// Binds a server's listener; the error names what it is for.
pub(super) async fn bind(
    what: &str,
    addr: std::net::SocketAddr,
) -> Result<(TcpListener, std::net::SocketAddr), String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, local))
}
