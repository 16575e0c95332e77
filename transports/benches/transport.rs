//! Round trip and one-way stream rate of the TCP and ZeroMQ transports on loopback, on a
//! current-thread runtime; ZeroMQ both insecure (NULL) and with credentials (CURVE: every
//! message sealed and opened), small messages and votes-sized ones.
//! Run: `cargo bench -p ballot-transports --bench transport`.

use ballot_core::{Ballot, Command, Message, NodeId};
use ballot_transports::auth::{generate, Credentials, Identity};
use ballot_transports::conformance::NetNode;
use ballot_transports::{Envelope, EventLog, MemNetwork, NetOptions, TcpTransport, Transport, ZmqTransport};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A credentials folder for the two nodes of a pair, removed on drop.
struct Keys(PathBuf);

impl Keys {
    fn new() -> Keys {
        let dir = std::env::temp_dir().join(format!("ballot-bench-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        generate(&dir, &[NodeId::proposer(1), NodeId::acceptor(1)]).unwrap();
        Keys(dir)
    }

    fn opts(&self, id: NodeId) -> NetOptions {
        let creds = Credentials::load(&self.0, Identity::of(id)).unwrap();
        NetOptions { credentials: Some(Arc::new(creds)), ..NetOptions::default() }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn pair<T: NetNode>(keys: Option<&Keys>) -> (T, T) {
    let (a, b) = (NodeId::proposer(1), NodeId::acceptor(1));
    let opts = |id| keys.map(|k| k.opts(id)).unwrap_or_default();
    let local = "127.0.0.1:0".parse().unwrap();
    let ta = T::bind_node(a, local, BTreeMap::new(), opts(a)).await.unwrap();
    let tb = T::bind_node(b, local, BTreeMap::new(), opts(b)).await.unwrap();
    ta.add_peer(b, tb.addr());
    tb.add_peer(a, ta.addr());
    (ta, tb)
}

fn msg(i: u64) -> Message {
    Message::CatchUp { applied: i }
}

/// An `Accept` of 64 votes, about 5 KB encoded: a slot under load.
fn accept(i: u64) -> Message {
    let vote = |v: u64| Command::Vote {
        request_id: format!("req-{i}-{v}"),
        client: NodeId::client(1),
        voter: format!("voter-{i}-{v}"),
        candidate: "ada".into(),
    };
    Message::Accept { ballot: Ballot::new(1, 1), slot: i, value: Arc::new((0..64).map(vote).collect()) }
}

/// One message there and one back.
async fn round_trip(ta: &mut dyn Transport, tb: &mut dyn Transport, i: u64) {
    let (a, b) = (ta.local(), tb.local());
    ta.send(Envelope::new(a, b, msg(i))).unwrap();
    let e = tb.recv().await.unwrap();
    tb.send(Envelope::new(b, a, e.msg)).unwrap();
    ta.recv().await.unwrap();
}

/// `n` messages made by `make` one way, sent in windows of 1000 (within the default
/// queue).
async fn stream(ta: &mut dyn Transport, tb: &mut dyn Transport, n: u64, make: fn(u64) -> Message) {
    let (a, b) = (ta.local(), tb.local());
    let mut i = 0;
    while i < n {
        for j in 0..1000 {
            ta.send(Envelope::new(a, b, make(i + j))).unwrap();
        }
        for _ in 0..1000 {
            tb.recv().await.unwrap();
        }
        i += 1000;
    }
}

fn bench_kind<T: NetNode>(c: &mut Criterion, name: &str, keys: Option<&Keys>) {
    let rt = rt();
    let (mut ta, mut tb) = rt.block_on(pair::<T>(keys));
    rt.block_on(round_trip(&mut ta, &mut tb, 0)); // connect both ways first
    let mut g = c.benchmark_group(name);
    g.bench_function("round_trip", |bn| {
        let mut i = 0;
        bn.iter(|| {
            i += 1;
            rt.block_on(round_trip(&mut ta, &mut tb, i))
        })
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("stream_10k", |bn| bn.iter(|| rt.block_on(stream(&mut ta, &mut tb, 10_000, msg))));
    g.throughput(Throughput::Elements(2_000));
    g.bench_function("stream_2k_accepts_of_64_votes", |bn| {
        bn.iter(|| rt.block_on(stream(&mut ta, &mut tb, 2_000, accept)))
    });
    g.finish();
}

fn bench_mem(c: &mut Criterion) {
    let rt = rt();
    let net = MemNetwork::new(1, EventLog::new(false));
    let (mut ta, mut tb) =
        rt.block_on(async { (net.register(NodeId::proposer(1)), net.register(NodeId::acceptor(1))) });
    let mut g = c.benchmark_group("mem");
    g.bench_function("round_trip", |bn| bn.iter(|| rt.block_on(round_trip(&mut ta, &mut tb, 1))));
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("stream_10k", |bn| bn.iter(|| rt.block_on(stream(&mut ta, &mut tb, 10_000, msg))));
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_mem(c);
    bench_kind::<TcpTransport>(c, "tcp", None);
    bench_kind::<ZmqTransport>(c, "zmq", None);
    let keys = Keys::new();
    bench_kind::<ZmqTransport>(c, "zmq_curve", Some(&keys));
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
