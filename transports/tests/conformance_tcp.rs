//! The transport conformance suite on TCP, plain and in mutual TLS.

use ballot_transports::conformance::{run_suite, TcpHarness};
use ballot_transports::NetOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_conforms() {
    run_suite(TcpHarness::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_with_mutual_tls_conforms() {
    run_suite(TcpHarness::secure(NetOptions::default())).await;
}
