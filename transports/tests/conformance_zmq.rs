//! The transport conformance suite on ZeroMQ: insecure (NULL), and with every node holding
//! its own credentials (CURVE), where the raw-byte cases run behind a real handshake.

use ballot_transports::conformance::{run_suite, ZmqHarness};
use ballot_transports::NetOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_conforms() {
    run_suite(ZmqHarness::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_with_curve_conforms() {
    run_suite(ZmqHarness::secure(NetOptions::default())).await;
}
