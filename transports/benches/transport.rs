//! Round trip and one-way stream rate of the TCP and ZeroMQ transports on loopback, on a
//! current-thread runtime.
//! Run: `cargo bench -p ballot-transports --bench transport`.

use ballot_core::{Message, NodeId};
use ballot_transports::conformance::NetNode;
use ballot_transports::{Envelope, EventLog, MemNetwork, NetOptions, TcpTransport, Transport, ZmqTransport};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::BTreeMap;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn pair<T: NetNode>() -> (T, T) {
    let (a, b) = (NodeId::proposer(1), NodeId::acceptor(1));
    let local = "127.0.0.1:0".parse().unwrap();
    let ta = T::bind_node(a, local, BTreeMap::new(), NetOptions::default()).await.unwrap();
    let tb = T::bind_node(b, local, BTreeMap::new(), NetOptions::default()).await.unwrap();
    ta.add_peer(b, tb.addr());
    tb.add_peer(a, ta.addr());
    (ta, tb)
}

fn msg(i: u64) -> Message {
    Message::CatchUp { applied: i }
}

/// One message there and one back.
async fn round_trip(ta: &mut dyn Transport, tb: &mut dyn Transport, i: u64) {
    let (a, b) = (ta.local(), tb.local());
    ta.send(Envelope::new(a, b, msg(i))).unwrap();
    let e = tb.recv().await.unwrap();
    tb.send(Envelope::new(b, a, e.msg)).unwrap();
    ta.recv().await.unwrap();
}

/// `n` messages one way, sent in windows of 1000 (within the default queue).
async fn stream(ta: &mut dyn Transport, tb: &mut dyn Transport, n: u64) {
    let (a, b) = (ta.local(), tb.local());
    let mut i = 0;
    while i < n {
        for j in 0..1000 {
            ta.send(Envelope::new(a, b, msg(i + j))).unwrap();
        }
        for _ in 0..1000 {
            tb.recv().await.unwrap();
        }
        i += 1000;
    }
}

fn bench_kind<T: NetNode>(c: &mut Criterion) {
    let rt = rt();
    let (mut ta, mut tb) = rt.block_on(pair::<T>());
    rt.block_on(round_trip(&mut ta, &mut tb, 0)); // connect both ways first
    let mut g = c.benchmark_group(T::NAME);
    g.bench_function("round_trip", |bn| {
        let mut i = 0;
        bn.iter(|| {
            i += 1;
            rt.block_on(round_trip(&mut ta, &mut tb, i))
        })
    });
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("stream_10k", |bn| bn.iter(|| rt.block_on(stream(&mut ta, &mut tb, 10_000))));
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
    g.bench_function("stream_10k", |bn| bn.iter(|| rt.block_on(stream(&mut ta, &mut tb, 10_000))));
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_mem(c);
    bench_kind::<TcpTransport>(c);
    bench_kind::<ZmqTransport>(c);
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(group);
