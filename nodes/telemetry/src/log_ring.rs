//! The last lines a process logged, kept for its `/logs` page: a tracing layer fills a
//! bounded ring, and the page reads it.

use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Log lines kept for `/logs`.
pub const LOG_LINES: usize = 1000;
/// Longest message kept per log line (longer ones are cut), so the ring stays bounded.
pub const MAX_LOG_LINE: usize = 2048;

/// One formatted log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Position in the stream of lines since the process started (gaps: lines dropped).
    pub seq: u64,
    /// UTC, `2024-05-01T12:00:00.123Z`.
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module path or target the line was logged under.
    pub target: String,
    /// The message, then its fields as `key=value`.
    pub message: String,
}

/// The last `capacity` log lines, shared by the tracing layer that fills it
/// ([`LogRing::layer`]) and the `/logs` page. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LogRing {
    inner: Arc<Mutex<(VecDeque<LogLine>, u64)>>,
    capacity: usize,
}

impl Default for LogRing {
    fn default() -> Self {
        LogRing::new(LOG_LINES)
    }
}

impl LogRing {
    /// An empty ring that keeps the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        LogRing {
            inner: Arc::new(Mutex::new((VecDeque::with_capacity(capacity.min(4096)), 0))),
            capacity: capacity.max(1),
        }
    }

    /// A tracing layer that writes every event it sees into this ring.
    pub fn layer(&self) -> RingLayer {
        RingLayer(self.clone())
    }

    /// Keep one line, stamped now, dropping the oldest when full.
    pub fn push(&self, level: &str, target: &str, message: String) {
        let line = LogLine { seq: 0, time: utc_now(), level: level.to_string(), target: target.to_string(), message };
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (lines, seq) = &mut *g;
        *seq += 1;
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(LogLine { seq: *seq, ..line });
    }

    /// Every kept line, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.iter().cloned().collect()
    }
}

/// See [`LogRing::layer`].
pub struct RingLayer(LogRing);

impl<S: tracing::Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut v = LineVisitor::default();
        event.record(&mut v);
        let mut message = v.message;
        if !v.fields.is_empty() {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(&v.fields);
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let meta = event.metadata();
        self.0.push(meta.level().as_str(), meta.target(), message);
    }
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl LineVisitor {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if self.message.len() + self.fields.len() > MAX_LOG_LINE {
            return;
        }
        if field.name() == "message" {
            let _ = self.message.write_fmt(value);
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={}", field.name(), value);
        }
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// Now, in UTC, as `2024-05-01T12:00:00.123Z` (RFC 3339, milliseconds).
fn utc_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_lines() {
        let r = LogRing::new(3);
        for i in 0..5 {
            r.push("INFO", "t", format!("line {i}"));
        }
        let lines = r.lines();
        assert_eq!(lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["line 2", "line 3", "line 4"]);
        assert_eq!(lines.last().map(|l| l.seq), Some(5));
    }

    #[test]
    fn layer_formats_message_and_fields() {
        use tracing_subscriber::layer::SubscriberExt;
        let ring = LogRing::new(10);
        let sub = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(node = "acceptor-1", n = 3, "hello {}", "world");
        });
        let l = &ring.lines()[0];
        assert_eq!(l.level, "WARN");
        assert_eq!(l.message, "hello world node=acceptor-1 n=3");
        assert!(l.time.ends_with('Z') && l.time.len() == 24, "{}", l.time);
    }
}
