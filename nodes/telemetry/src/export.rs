//! Export of finished spans: a bounded queue, one thread, OTLP over gRPC, never waited on.

use crate::config::TelemetryConfig;
use crate::TARGET;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Finished spans waiting for export; beyond this they are dropped and counted.
pub const DEFAULT_QUEUE: usize = 8192;
/// Most spans in one export call.
const MAX_BATCH: usize = 512;
/// A partial batch waits at most this long.
const BATCH_INTERVAL: Duration = Duration::from_millis(500);
/// Deadline of one export call (connect included).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of the flush at shutdown.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

static ACTIVE: AtomicBool = AtomicBool::new(false);
static STATS: std::sync::OnceLock<Arc<ExportStats>> = std::sync::OnceLock::new();
/// The sampling ratio of root spans, as f64 bits.
static RATIO: AtomicU64 = AtomicU64::new(0);

/// Whether a new trace should be recorded: true with the configured probability (always
/// false with tracing off). Sampling is decided here, where a trace starts (a client's
/// vote with no traced caller, an election), before any span is built, so a vote left out
/// costs one random number; the SDK's sampler then follows the parent.
pub fn sample_root() -> bool {
    if !active() {
        return false;
    }
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    if ratio >= 1.0 {
        return true;
    }
    uniform() < ratio
}

/// A uniform draw from [0, 1) off a per-thread xorshift64* generator: tracing's sampling
/// needs speed, not cryptographic quality (and must not touch the seeded generators).
pub(crate) fn uniform() -> f64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish() | 1
        });
    }
    let x = STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    });
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The export counters of this process, once tracing started (for the /metrics page).
pub fn export_stats() -> Option<Arc<ExportStats>> {
    STATS.get().cloned()
}

/// Whether this process exports traces; when false, the runtime keeps no trace state and
/// sends no trace context.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// What export did, for the metrics page and the benchmark.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans the collector took.
    pub exported: AtomicU64,
    /// Spans that found the queue full.
    pub dropped: AtomicU64,
    /// Spans in exports the collector refused or did not answer in time.
    pub failed: AtomicU64,
}

/// Export is running for this process; drop or [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: SdkTracerProvider,
    stats: Arc<ExportStats>,
    down: bool,
}

impl Telemetry {
    /// Start exporting as `config` says. Never fails: an unreachable collector is found
    /// at the first export and warned about then.
    pub fn start(config: &TelemetryConfig) -> Telemetry {
        let stats = Arc::new(ExportStats::default());
        let processor = BoundedExport::start(config, stats.clone());
        // Roots are sampled by `sample_root` before they are built; the rest follow.
        let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        RATIO.store(config.sample_ratio.to_bits(), Ordering::Relaxed);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(Resource::builder_empty().with_service_name(config.service_name.clone()).build())
            .build();
        ACTIVE.store(true, Ordering::Relaxed);
        let _ = STATS.set(stats.clone());
        Telemetry { provider, stats, down: false }
    }

    /// The layer that turns spans of [`TARGET`] into OpenTelemetry spans; add it to the
    /// process's subscriber.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("ballot"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE))
    }

    /// Export what is queued now (within [`SHUTDOWN_DEADLINE`]).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// The export counters.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Export what is queued (within [`SHUTDOWN_DEADLINE`]) and stop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.down, true) {
            return;
        }
        ACTIVE.store(false, Ordering::Relaxed);
        let _ = self.provider.shutdown_with_timeout(SHUTDOWN_DEADLINE);
        let (d, f) = (self.stats.dropped.load(Ordering::Relaxed), self.stats.failed.load(Ordering::Relaxed));
        if d + f > 0 {
            tracing::warn!(
                dropped = d,
                failed = f,
                "tracing: some spans were not exported (queue full or collector unavailable)"
            );
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Install the process's subscriber: log lines to stderr (when `stderr`) and to `logs`
/// (the /logs page), filtered by `RUST_LOG` or `default_filter`, plus the OpenTelemetry
/// layer when `config` is given. Protocol spans ([`TARGET`]) go only to OpenTelemetry
/// unless `RUST_LOG` names `ballot::trace`. The returned handle flushes on drop.
pub fn install(
    config: Option<&TelemetryConfig>,
    logs: Option<&crate::log_ring::LogRing>,
    default_filter: &str,
    stderr: bool,
) -> Option<Telemetry> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = || {
        let spec = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
        let f =
            spec.as_deref().and_then(|s| EnvFilter::try_new(s).ok()).unwrap_or_else(|| EnvFilter::new(default_filter));
        match spec {
            Some(s) if s.contains(TARGET) => f,
            _ => f.add_directive(format!("{TARGET}=off").parse().expect("a valid directive")),
        }
    };
    let telemetry = config.map(Telemetry::start);
    let fmt = stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour only on a terminal: chaos writes node logs to files.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter())
    });
    let ring = logs.map(|l| l.layer().with_filter(filter()));
    let otel = telemetry.as_ref().map(|t| t.layer());
    let _ = tracing_subscriber::registry().with(fmt).with(ring).with(otel).try_init();
    telemetry
}

enum Job {
    Span(Box<SpanData>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// A span processor with a bounded queue and one export thread (see the module doc).
#[derive(Debug)]
pub struct BoundedExport {
    tx: Mutex<Option<SyncSender<Job>>>,
    stats: Arc<ExportStats>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl BoundedExport {
    fn start(config: &TelemetryConfig, stats: Arc<ExportStats>) -> BoundedExport {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let (config, worker_stats) = (config.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_loop(config, rx, worker_stats))
            .ok();
        BoundedExport { tx: Mutex::new(Some(tx)), stats, thread: Mutex::new(thread) }
    }

    fn sender(&self) -> Option<SyncSender<Job>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn flush_within(&self, deadline: Duration) -> OTelSdkResult {
        let Some(tx) = self.sender() else { return Ok(()) };
        let (ack, done) = std::sync::mpsc::channel();
        let until = Instant::now() + deadline;
        let mut job = Job::Flush(ack);
        loop {
            match tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(j)) if Instant::now() < until => {
                    job = j;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Err(OTelSdkError::Timeout(deadline)),
            }
        }
        done.recv_timeout(until.saturating_duration_since(Instant::now())).map_err(|_| OTelSdkError::Timeout(deadline))
    }
}

impl SpanProcessor for BoundedExport {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let sent = match self.sender() {
            Some(tx) => tx.try_send(Job::Span(Box::new(span))).is_ok(),
            None => false,
        };
        if !sent {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush_within(SHUTDOWN_DEADLINE)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush_within(timeout);
        // Closing the queue ends the export thread once it has nothing in hand.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if flushed.is_ok() {
            if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
        }
        flushed
    }
}

/// The export thread: a one-thread runtime for the gRPC client, batches from the queue.
fn export_loop(config: TelemetryConfig, rx: Receiver<Job>, stats: Arc<ExportStats>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(
                "tracing: cannot start the export thread ({e}); spans will be dropped, voting is not affected"
            );
            return;
        }
    };
    let built = rt.block_on(async {
        use opentelemetry_otlp::WithExportConfig as _;
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
    });
    let mut exporter = match built {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(endpoint = %config.endpoint, "tracing: cannot create the OTLP exporter ({e}); spans will be dropped, voting is not affected");
            None
        }
    };
    let mut outage = false;
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut oldest: Option<Instant> = None;
    loop {
        let wait = oldest.map(|t| BATCH_INTERVAL.saturating_sub(t.elapsed())).unwrap_or(BATCH_INTERVAL);
        let (flush_ack, closed) = match rx.recv_timeout(wait) {
            Ok(Job::Span(s)) => {
                oldest.get_or_insert_with(Instant::now);
                batch.push(*s);
                if batch.len() < MAX_BATCH {
                    continue;
                }
                (None, false)
            }
            Ok(Job::Flush(ack)) => (Some(ack), false),
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => (None, true),
        };
        if !batch.is_empty() {
            let spans = std::mem::take(&mut batch);
            let n = spans.len() as u64;
            let result = match exporter.as_mut() {
                Some(ex) => export_grouped(&rt, ex, &config, spans),
                None => Err("no exporter".to_string()),
            };
            match result {
                Ok(()) => {
                    stats.exported.fetch_add(n, Ordering::Relaxed);
                    if std::mem::replace(&mut outage, false) {
                        tracing::info!(endpoint = %config.endpoint, "tracing: the collector takes spans again");
                    }
                }
                Err(e) => {
                    stats.failed.fetch_add(n, Ordering::Relaxed);
                    if !std::mem::replace(&mut outage, true) && exporter.is_some() {
                        tracing::warn!(
                            endpoint = %config.endpoint,
                            "tracing: cannot export spans ({e}); they are dropped until the collector answers, voting is not affected"
                        );
                    }
                }
            }
            oldest = None;
        }
        if let Some(ack) = flush_ack {
            let _ = ack.send(());
        }
        if closed {
            if let Some(mut ex) = exporter.take() {
                let _ = ex.shutdown_with_timeout(EXPORT_TIMEOUT);
            }
            return;
        }
    }
}

/// Export `spans`, one call per service they belong to.
fn export_grouped(
    rt: &tokio::runtime::Runtime,
    ex: &mut opentelemetry_otlp::SpanExporter,
    config: &TelemetryConfig,
    spans: Vec<SpanData>,
) -> Result<(), String> {
    let mut groups: BTreeMap<String, Vec<SpanData>> = BTreeMap::new();
    for s in spans {
        let service = if config.per_node_services { node_of(&s) } else { None };
        groups.entry(service.unwrap_or_else(|| config.service_name.clone())).or_default().push(s);
    }
    let mut first_error = None;
    for (service, group) in groups {
        ex.set_resource(&Resource::builder_empty().with_service_name(service).build());
        // The deadline's timer must be made inside the runtime.
        let call = async { tokio::time::timeout(EXPORT_TIMEOUT + Duration::from_secs(1), ex.export(group)).await };
        let err = match rt.block_on(call) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {EXPORT_TIMEOUT:?}"),
        };
        first_error.get_or_insert(err);
    }
    first_error.map_or(Ok(()), Err)
}

fn node_of(s: &SpanData) -> Option<String> {
    s.attributes.iter().find(|kv| kv.key.as_str() == "node").map(|kv| kv.value.as_str().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_draws_are_uniform() {
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| uniform()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        for ratio in [0.01, 0.5, 0.9] {
            let kept = draws.iter().filter(|&&d| d < ratio).count() as f64 / n as f64;
            // 200,000 draws: the standard error at 1% is 0.02%, at 50% 0.1%.
            assert!((kept - ratio).abs() < 0.01, "ratio {ratio}: kept {kept}");
        }
    }
}
