//! A peer that accepts connections and then never reads (a SIGSTOPped process looks like
//! this from outside) must never hold up `send`, nor traffic to the other peers.

use ballot_core::{Message, NodeId};
use ballot_transports::conformance::NetNode;
use ballot_transports::{Envelope, NetOptions, SendError, TcpTransport, ZmqTransport};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(30);

async fn stalled_peer_blocks_nobody<T: NetNode>() {
    // Accepts, then sits on the connections without reading a byte.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = stalled.accept().await {
            conns.push(c);
        }
    });
    let (a, b, c) = (NodeId::proposer(1), NodeId::acceptor(1), NodeId::acceptor(2));
    let opts = NetOptions {
        queue_capacity: 64,
        write_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
        ..NetOptions::default()
    };
    let local = "127.0.0.1:0".parse().unwrap();
    let mut tb = T::bind_node(b, local, BTreeMap::new(), opts.clone()).await.unwrap();
    let peers = BTreeMap::from([(b, tb.addr()), (c, stalled_addr)]);
    let ta = T::bind_node(a, local, peers, opts).await.unwrap();

    // 64 KiB per message: the stalled peer's socket buffers fill after a few dozen.
    let big = Message::Chosen { entries: vec![(1, Arc::new(Vec::new())); 8000] };
    let mut full = 0;
    for round in 0..20u64 {
        for _ in 0..200 {
            // Never waits, whatever the stalled peer does.
            match ta.send(Envelope::new(a, c, big.clone())) {
                Ok(()) => {}
                Err(SendError::QueueFull(_)) => full += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        for i in 0..50 {
            ta.send(Envelope::new(a, b, Message::CatchUp { applied: round * 50 + i })).unwrap();
        }
        for i in 0..50 {
            let env = timeout(DEADLINE, tb.recv()).await.expect("b starved by a stalled peer").unwrap();
            assert_eq!(env.msg, Message::CatchUp { applied: round * 50 + i });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = ta.counters().get();
    assert!(full > 0, "the stalled peer's queue should have filled: {s:?}");
    assert_eq!(s.dropped_queue_full, full);
    eprintln!("{}: {s:?}", T::NAME);
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_stalled_peer_blocks_nobody() {
    stalled_peer_blocks_nobody::<TcpTransport>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_stalled_peer_blocks_nobody() {
    stalled_peer_blocks_nobody::<ZmqTransport>().await;
}
