//! Heartbeats: a node re-registering with discovery every period, failures logged and
//! otherwise ignored.

use super::client::DiscoveryClient;
use super::registry::Registration;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Re-registers every `period` (at least 1 ms) with what `registration` says at that
/// moment: the first time at once. Failures are logged (once per outage) and otherwise
/// ignored. Each call is bounded by the client's deadline; a slow discovery delays the
/// next beat, never the node. Abort the handle to stop.
pub fn spawn_heartbeats<F>(client: DiscoveryClient, mut registration: F, period: Duration) -> JoinHandle<()>
where
    F: FnMut() -> Registration + Send + 'static,
{
    spawn_heartbeats_async(client, move || std::future::ready(Some(registration())), period)
}

/// [`spawn_heartbeats`] with an async source, e.g. a node's `status(deadline)`: the
/// future should be bounded; `None` skips that beat (say the node did not answer in time,
/// so that a stuck node stops being listed).
pub fn spawn_heartbeats_async<F, Fut>(client: DiscoveryClient, mut registration: F, period: Duration) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Registration>> + Send,
{
    let period = period.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(reg) = registration().await else { continue };
            match client.register(&reg).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("discovery at {} answers again", client.addr());
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("heartbeat of {} failed (ignored; retrying every {period:?}): {e}", reg.node);
                    }
                    failing = true;
                }
            }
        }
    })
}
