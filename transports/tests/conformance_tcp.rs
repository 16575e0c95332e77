//! The transport conformance suite on TCP.

use ballot_transports::conformance::{run_suite, TcpHarness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_conforms() {
    run_suite(TcpHarness::default()).await;
}
