//! A shared, append-only log of events with virtual timestamps. With the same scenario
//! and seed on the in-memory transport, it is the same byte for byte.

use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The event log: one line per event, `<ms since creation>ms <event>`, in the order
/// recorded (virtual time on the in-memory network). Clones share one log.
#[derive(Clone, Debug)]
pub struct EventLog {
    /// Fixed at creation, so a disabled log costs one branch and no lock.
    enabled: bool,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    lines: Vec<String>,
}

impl EventLog {
    /// A log whose timestamps count from now. A disabled log records nothing and costs
    /// one branch per event.
    pub fn new(enabled: bool) -> Self {
        EventLog { enabled, inner: Arc::new(Mutex::new(Inner { start: Instant::now(), lines: Vec::new() })) }
    }

    /// Whether this log records anything.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Record one event; `text` is only built when the log is enabled.
    pub fn record(&self, text: impl FnOnce() -> String) {
        if self.enabled {
            let mut inner = self.lock();
            let t = inner.start.elapsed();
            let line = format!("{:>10.3}ms {}", t.as_secs_f64() * 1000.0, text());
            inner.lines.push(line);
        }
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    /// How many lines were recorded.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
