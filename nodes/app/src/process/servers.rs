//! The servers a node process runs beside its nodes: the control channel, the HTTP pages
//! and, for `--role discovery`, the discovery server. All three are spawned from
//! [`spawn_servers`] alone, so that how they are served (and stopped) is one place.

use ballot_operator::control::{self, FaultSink};
use ballot_operator::discovery::DiscoveryOptions;
use ballot_operator::pages::HttpState;
use ballot_runtime::NodeControl;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The control channel of a process: it speaks for one node loop and applies fault
/// commands to the process's fault layer.
pub(super) struct ControlServer {
    pub listener: TcpListener,
    pub node: NodeControl,
    pub faults: Arc<dyn FaultSink>,
}

/// What to serve, each on its bound listener.
#[derive(Default)]
pub(super) struct Servers {
    pub control: Option<ControlServer>,
    pub pages: Option<(TcpListener, HttpState)>,
    pub discovery: Option<(TcpListener, DiscoveryOptions)>,
}

/// Spawns every server given. Returns the discovery server's task, whose end (an error,
/// or a stop) ends the process.
pub(super) fn spawn_servers(servers: Servers) -> Option<JoinHandle<std::io::Result<()>>> {
    if let Some(c) = servers.control {
        tokio::spawn(control::serve(c.listener, c.node, Some(c.faults)));
    }
    if let Some((listener, state)) = servers.pages {
        tokio::spawn(ballot_operator::pages::serve(listener, state));
    }
    servers.discovery.map(|(listener, opts)| tokio::spawn(ballot_operator::discovery::serve(listener, opts)))
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
