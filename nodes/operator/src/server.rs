//! The accept loop the crate's HTTP servers share: a connection limit, deadlines on the
//! request head and on each connection, and a graceful shutdown with a bounded drain.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How long a server lets its open connections finish after it was told to stop, by
/// default; past it the rest are closed.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Largest request head (request line and headers) a server buffers.
const MAX_HEAD: usize = 64 * 1024;

/// How one HTTP server treats its connections.
#[derive(Clone, Debug)]
pub(crate) struct ConnLimits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub(crate) max_connections: usize,
    /// The request head must arrive within this.
    pub(crate) header_deadline: Duration,
    /// A connection, keep-alive included, is closed after this.
    pub(crate) connection_lifetime: Duration,
    /// After shutdown, how long requests in flight have to finish.
    pub(crate) drain_deadline: Duration,
    /// Where connections over the limit are counted, under the server's name.
    pub(crate) refusals: Option<crate::access::Refusals>,
}

/// The address of the caller, added to every request the server hands to its router.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) std::net::SocketAddr);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish (idle connections close at once) within the drain deadline,
/// closes whatever is left and returns. `name` labels the log lines.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    name: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    accept_until(listener, shutdown, name, &mut conns, |stream| {
        let peer = stream.peer_addr().unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let line = format!("{peer}: {} connections are open, the limit; closed at once", limits.max_connections);
            match &limits.refusals {
                Some(r) => r.refuse(name, crate::access::Refusal::TooManyConnections, line),
                None => tracing::debug!("{name}: {line}"),
            }
            return None;
        };
        let svc = TowerToHyperService::new(app.clone().layer(axum::Extension(Peer(peer))));
        let watcher = graceful.watcher();
        let limits = limits.clone();
        Some(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_deadline).max_buf_size(MAX_HEAD);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            // A head not whole within its deadline, or a connection past its lifetime,
            // is closed: counted, since a half-sent request is how a caller holds a slot.
            let late = match tokio::time::timeout(limits.connection_lifetime, watcher.watch(conn)).await {
                Ok(Err(e)) if e.is_timeout() => Some("a request head not whole within the deadline"),
                Err(_) => Some("a connection open past its lifetime"),
                Ok(_) => None,
            };
            if let (Some(what), Some(r)) = (late, &limits.refusals) {
                r.refuse(name, crate::access::Refusal::Timeout, format!("{peer}: {what}; closed"));
            }
            drop(permit);
        })
    })
    .await;
    drain(&mut conns, graceful.shutdown(), limits.drain_deadline, name).await;
}

/// Accepts on `listener` until `shutdown` completes, then drops it. Each connection runs
/// what `serve` makes of it (`None` closes it at once) as a task of `conns`; finished
/// tasks are reaped on the way so the set does not grow.
pub(crate) async fn accept_until<F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    name: &str,
    conns: &mut JoinSet<()>,
    mut serve: impl FnMut(TcpStream) -> Option<F>,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            // Shutdown first: once it fired, no connection is accepted.
            biased;
            () = &mut shutdown => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                if let Some(task) = serve(stream) {
                    conns.spawn(task);
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::debug!(error = %e, "{name}: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Once `told` (which tells the connections to finish) has run, waits for every task of
/// `conns` within `deadline`, then aborts the rest.
pub(crate) async fn drain(conns: &mut JoinSet<()>, told: impl Future<Output = ()>, deadline: Duration, name: &str) {
    let drained = async {
        told.await;
        while conns.join_next().await.is_some() {}
    };
    if tokio::time::timeout(deadline, drained).await.is_err() {
        tracing::warn!("{name}: {} connections still open {deadline:?} after shutdown; closing them", conns.len());
        conns.abort_all();
    }
}
