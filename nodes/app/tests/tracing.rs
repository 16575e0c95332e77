//! One vote is one trace: an in-process OTLP collector (the generated gRPC service of
//! opentelemetry-proto) receives the spans that real `ballot-node` processes and this
//! test's client export, over TCP and over ZeroMQ, and the test checks that the client,
//! the leader, every acceptor and every learner put their spans in the vote's trace, each
//! under the right parent, as its own service, with the round's attributes.
//!
//! Also: a node pointed at a collector that does not exist logs one warning and votes as
//! usual.
#![cfg(unix)]

use ballot_core::{Command as Cmd, NodeId, Reply};
use ballot_telemetry::collector::{Collector, ReceivedSpan as Got};
use ballot_telemetry::{self as telemetry, Telemetry, TelemetryConfig, TARGET};
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

mod common;
use common::*;

/// Two learners, so "every learner" means more than one.
const MEMBERS: [NodeId; 6] = TWO_LEARNERS;

struct Shared {
    collector: Collector,
    telemetry: Telemetry,
}

/// The collector (for the whole test binary) and this process's export to it: the
/// client's spans go there too.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let collector = Collector::start(true).expect("start the OTLP collector");
        let mut config =
            TelemetryConfig::from_env(Some(collector.endpoint()), "tracing-test", Some(1.0)).unwrap().unwrap();
        config.per_node_services = true;
        let telemetry = telemetry::install(Some(&config), None, "warn", true).expect("tracing is on");
        Shared { collector, telemetry }
    })
}

/// Casts one vote under a root span of the test's own and returns its trace id and the
/// root's span id, once every node has exported its part (nodes stopped with SIGTERM,
/// which must flush what they still hold).
async fn one_traced_vote(net: Net) -> (String, String, Vec<Got>) {
    let shared = shared();
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let endpoint = shared.collector.endpoint();
    let mut c = Cluster::start_with_args(net, &MEMBERS, &["--otlp-endpoint", &endpoint]).await;
    // A first vote elects the leader, so the traced one is a plain round.
    c.votes(1).await;
    let root = tracing::info_span!(target: TARGET, "test.vote", net = net.flag());
    let root_cx = telemetry::context_of(&root).expect("the test's span is traced");
    let (trace, root_id) = (root_cx.traceparent[3..35].to_string(), root_cx.traceparent[36..52].to_string());
    let cmd = Cmd::Vote {
        request_id: c.client.next_request_id(),
        client: CLIENT,
        voter: "traced-voter".into(),
        candidate: CANDIDATES[1].into(),
    };
    let reply = c.submit(cmd).instrument(root.clone()).await;
    assert!(matches!(reply, Reply::Vote { result: Ok(()), .. }), "{reply:?}");
    drop(root);
    // SIGTERM: each node flushes its spans before it exits.
    for id in MEMBERS {
        c.node(id).signal(libc::SIGTERM);
    }
    for id in MEMBERS {
        let status = c.node(id).wait_exit().await;
        assert!(status.success(), "{id} exited with {status}: {}", c.node(id).stderr());
    }
    shared.telemetry.flush();
    // The collector may still be taking the last export in.
    let deadline = Instant::now() + DEADLINE;
    let wanted: BTreeSet<String> =
        MEMBERS.iter().map(|n| n.to_string()).chain(std::iter::once(CLIENT.to_string())).collect();
    loop {
        let spans: Vec<Got> = shared.collector.spans().into_iter().filter(|s| s.trace == trace).collect();
        let services: BTreeSet<String> = spans.iter().map(|s| s.service.clone()).collect();
        let applied = spans.iter().filter(|s| s.name == "learner.apply").count();
        if wanted.is_subset(&services) && applied >= 2 {
            return (trace, root_id, spans);
        }
        assert!(
            Instant::now() < deadline,
            "spans of the vote's trace never came from {:?}; got {spans:#?}",
            wanted.difference(&services).collect::<Vec<_>>()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn only<'a>(spans: &'a [Got], name: &str, service: &str) -> &'a Got {
    let found: Vec<&Got> = spans.iter().filter(|s| s.name == name && s.service == service).collect();
    assert_eq!(found.len(), 1, "one {name} span from {service}: {spans:#?}");
    found[0]
}

async fn one_vote_is_one_trace(net: Net) {
    let (trace, root_id, spans) = one_traced_vote(net).await;
    // Every span has the trace id by construction of `spans`; check who is in it.
    let vote = only(&spans, "vote", "client-1");
    assert_eq!(vote.parent, root_id, "the client's vote is a child of the caller's span");
    assert_eq!(vote.attrs["outcome"], "counted");
    assert_eq!(vote.attrs["voter"], "traced-voter");

    let request = only(&spans, "proposer.request", "proposer-1");
    assert_eq!(request.parent, vote.id, "the leader's request span is a child of the vote");

    let phase2 = only(&spans, "proposer.phase2", "proposer-1");
    assert_eq!(phase2.parent, request.id, "phase 2 of the vote's slot is a child of its request");
    let slot = phase2.attrs["slot"].clone();
    assert!(phase2.attrs["votes"].parse::<u64>().unwrap() >= 1);
    assert_eq!(phase2.attrs["outcome"], "chosen");
    assert!(phase2.links == 0 || phase2.attrs["votes"] != "1", "links only to other votes of a batch");
    assert!(phase2.events.iter().filter(|e| *e == "accepted").count() >= 2, "a majority accepted: {:?}", phase2.events);

    let mut accepts = BTreeSet::new();
    for a in 1..=3 {
        let acc = only(&spans, "acceptor.accept", &format!("acceptor-{a}"));
        assert_eq!(acc.parent, phase2.id, "acceptor-{a}'s accept is a child of the leader's phase 2");
        assert_eq!(
            (acc.attrs["slot"].as_str(), acc.attrs["ballot"].as_str()),
            (slot.as_str(), phase2.attrs["ballot"].as_str())
        );
        assert_eq!(acc.attrs["outcome"], "accepted");
        assert_eq!(acc.attrs["node"], format!("acceptor-{a}"));
        assert_eq!(acc.attrs["role"], "acceptor");
        accepts.insert(acc.id.clone());
    }
    for l in 1..=2 {
        let service = format!("learner-{l}");
        let learns: Vec<&Got> = spans.iter().filter(|s| s.name == "learner.learn" && s.service == service).collect();
        assert!(!learns.is_empty(), "{service} learned the vote's slot in its trace");
        for learn in &learns {
            assert!(accepts.contains(&learn.parent), "{service}'s learn is a child of an acceptor's accept: {learn:?}");
        }
        let apply = only(&spans, "learner.apply", &service);
        assert!(learns.iter().any(|s| s.id == apply.parent), "{service}'s apply is a child of one of its learns");
        assert_eq!(apply.attrs["slot"], slot);
    }
    // Nothing of the trace comes from outside the cluster and the client.
    for s in &spans {
        assert!(s.trace == trace);
        if s.name != "test.vote" {
            assert_eq!(s.attrs.get("node"), Some(&s.service), "each node reports as its own service: {s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_one_vote_is_one_trace() {
    one_vote_is_one_trace(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_one_vote_is_one_trace() {
    one_vote_is_one_trace(Net::Zmq).await;
}

/// GET `path` over HTTP/1.1, within [`DEADLINE`]; the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let page = tokio::time::timeout(DEADLINE, exchange).await.expect("an answer in time").expect("GET");
    page.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// What is wrong with the collector a cluster is given.
enum Trouble {
    /// Nothing listens there.
    Unreachable,
    /// A collector that answers every export with an error.
    Rejecting,
    /// Not an OTLP endpoint at all.
    Malformed,
}

/// One warning per node, and voting as usual: the tally stays exact and, where export was
/// attempted, every node counts the spans it could not export on /metrics.
async fn collector_trouble_costs_one_warning(trouble: Trouble) {
    let _ = shared();
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let rejecting = Collector::start(false).expect("start a collector");
    rejecting.reject(true);
    let (endpoint, warning) = match trouble {
        Trouble::Unreachable => (format!("http://{}", free_ports(1)[0]), "cannot export spans"),
        Trouble::Rejecting => (rejecting.endpoint(), "cannot export spans"),
        Trouble::Malformed => ("localhost:4317".to_string(), "tracing is off: OTLP endpoint"),
    };
    let mut c =
        Cluster::start_with_args(Net::Tcp, &MEMBERS, &["--otlp-endpoint", &endpoint, "--http", "127.0.0.1:0"]).await;
    c.votes(20).await;
    c.check_tally().await;
    if !matches!(trouble, Trouble::Malformed) {
        // Every node counts spans it could not export (its /metrics page says so) ...
        for id in MEMBERS {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let page = http_get(c.http[&id], "/metrics").await;
                let failed = page
                    .lines()
                    .find_map(|l| l.strip_prefix("ballot_trace_spans_failed_total "))
                    .and_then(|v| v.trim().parse::<f64>().ok());
                if failed.is_some_and(|f| f > 0.0) {
                    break;
                }
                assert!(Instant::now() < deadline, "{id} never counted a failed export: {page}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if matches!(trouble, Trouble::Rejecting) {
        assert!(rejecting.rejected() > 0, "the nodes did reach the rejecting collector");
    }
    // ... and votes on while the collector is still wrong.
    c.votes(5).await;
    c.check_tally().await;
    for id in MEMBERS {
        c.node(id).signal(libc::SIGTERM);
    }
    for id in MEMBERS {
        let status = c.node(id).wait_exit().await;
        let stderr = c.node(id).stderr();
        assert!(status.success(), "{id} exited with {status}: {stderr}");
        let warnings = stderr.lines().filter(|l| l.contains(warning)).count();
        assert_eq!(warnings, 1, "{id} warns once about the collector: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_collector_gets_one_warning_and_votes_go_on() {
    collector_trouble_costs_one_warning(Trouble::Unreachable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_collector_gets_one_warning_and_votes_go_on() {
    collector_trouble_costs_one_warning(Trouble::Rejecting).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_endpoint_gets_one_warning_and_votes_go_on() {
    collector_trouble_costs_one_warning(Trouble::Malformed).await;
}
