//! The transport conformance suite on the in-memory network (raw-socket cases skip).

use ballot_transports::conformance::{run_suite, MemHarness};

#[tokio::test]
async fn mem_conforms() {
    run_suite(MemHarness::default()).await;
}
