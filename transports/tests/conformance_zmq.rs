//! The transport conformance suite on ZeroMQ.

use ballot_transports::conformance::{run_suite, ZmqHarness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_conforms() {
    run_suite(ZmqHarness::default()).await;
}
