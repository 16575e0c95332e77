//! An OTLP trace receiver that keeps what it is sent in memory: the collector of the
//! tracing tests and of the tracing-cost benchmark (a machine without an image registry
//! cannot run Jaeger). It serves the OTLP/gRPC trace service of opentelemetry-proto on a
//! loopback port, on a thread of its own, until dropped.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One span as the collector received it (ids in lowercase hex, attributes as text).
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// `service.name` of the resource the span came with.
    pub service: String,
    /// The span's name (`proposer.phase2`, `vote`, ...).
    pub name: String,
    /// Its trace id, in hex.
    pub trace: String,
    /// Its span id, in hex.
    pub id: String,
    /// Empty for a root span.
    pub parent: String,
    /// Its attributes, as text.
    pub attrs: BTreeMap<String, String>,
    /// The names of its events.
    pub events: Vec<String>,
    /// How many links it carries (votes batched with others).
    pub links: usize,
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    count: AtomicU64,
    keep: AtomicBool,
    reject: AtomicBool,
    rejected: AtomicU64,
}

#[derive(Clone)]
struct Service(Arc<Shared>);

/// The running receiver; stops serving when dropped.
pub struct Collector {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Collector {
    /// Serve on a free port of 127.0.0.1. `keep`: store every span (tests); otherwise
    /// only count them (benchmarks).
    pub fn start(keep: bool) -> std::io::Result<Collector> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        shared.keep.store(keep, Ordering::Relaxed);
        let service = Service(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("otlp-collector".into()).spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(service))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        Ok(Collector { addr, shared, stop: Some(stop) })
    }

    /// The loopback address the collector listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to give `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received so far (empty unless started with `keep`).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Refuse every export with gRPC `UNAVAILABLE` (a collector that rejects spans).
    pub fn reject(&self, yes: bool) {
        self.shared.reject.store(yes, Ordering::Relaxed);
    }

    /// How many exports were refused.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// How many spans were received.
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn text(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.reject.load(Ordering::Relaxed) {
            self.0.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(tonic::Status::unavailable("this collector rejects spans"));
        }
        let keep = self.0.keep.load(Ordering::Relaxed);
        let mut got = Vec::new();
        let mut n = 0;
        for rs in req.into_inner().resource_spans {
            let resource = rs.resource.map(|r| text(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for ss in rs.scope_spans {
                n += ss.spans.len() as u64;
                if !keep {
                    continue;
                }
                for s in ss.spans {
                    got.push(ReceivedSpan {
                        service: service.clone(),
                        name: s.name,
                        trace: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attrs: text(&s.attributes),
                        events: s.events.into_iter().map(|e| e.name).collect(),
                        links: s.links.len(),
                    });
                }
            }
        }
        self.0.spans.lock().unwrap_or_else(|e| e.into_inner()).extend(got);
        self.0.count.fetch_add(n, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}
