//! Bounded fuzzing on loopback: thousands of hostile byte strings thrown at a node's port
//! while a peer exchanges valid messages with it. Bounded by counts, never by time.

use ballot_transports::conformance::{hostile_bytes, TcpHarness, ZmqHarness};
use ballot_transports::NetOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_survives_hostile_bytes() {
    hostile_bytes(&mut TcpHarness::default(), 11, 2000, 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_survives_hostile_bytes() {
    hostile_bytes(&mut ZmqHarness::default(), 12, 2000, 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_with_curve_survives_hostile_bytes() {
    hostile_bytes(&mut ZmqHarness::secure(NetOptions::default()), 13, 2000, 2000).await;
}
