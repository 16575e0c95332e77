//! A node's clock rate scales its timers: a lone proposer (no acceptor answers it) runs
//! for leader once per election timeout, so on a clock ten times as fast it runs about
//! ten times as often, and a timer already pending when the rate changes is rescaled.

use ballot_core::{Config, DurableState, MemStorage, NodeId, Proposer};
use ballot_runtime::{check_clock_rate, spawn_node, NodeHandle, NodeOptions};
use ballot_transports::{EventLog, MemNetwork};
use std::sync::Arc;
use std::time::Duration;

fn lone_proposer(net: &MemNetwork) -> NodeHandle {
    let config = Arc::new(Config::new(1, 3, 1, vec!["ada".into()]));
    let id = NodeId::proposer(1);
    spawn_node(
        Proposer::new(id, config, DurableState::default()),
        net.register(id),
        MemStorage::new(),
        NodeOptions::seeded(7),
    )
}

async fn elections(node: &NodeHandle) -> u64 {
    node.status(Duration::from_millis(100)).await.and_then(|s| s.elections).expect("the proposer answers")
}

#[tokio::test(start_paused = true)]
async fn a_fast_clock_fires_timers_sooner_and_a_slow_one_later() {
    let net = MemNetwork::new(1, EventLog::new(false));
    let node = lone_proposer(&net);
    let span = Duration::from_secs(30);

    tokio::time::sleep(span).await;
    let true_clock = elections(&node).await;

    node.controller().set_clock_rate(10.0);
    tokio::time::sleep(span).await;
    let fast = elections(&node).await - true_clock;

    node.controller().set_clock_rate(0.1);
    tokio::time::sleep(span).await;
    let slow = elections(&node).await - true_clock - fast;

    assert!(true_clock >= 10, "a lone proposer keeps running for leader: {true_clock} elections in 30 s");
    // Ratios from one run, on virtual time: 10x the rate is well over 5x the elections.
    assert!(fast > 5 * true_clock, "a clock 10x as fast: {fast} elections against {true_clock}");
    assert!(slow * 5 < true_clock, "a clock 10x as slow: {slow} elections against {true_clock}");
}

#[tokio::test(start_paused = true)]
async fn a_pending_timer_is_rescaled_when_the_rate_changes() {
    let net = MemNetwork::new(1, EventLog::new(false));
    let node = lone_proposer(&net);
    // Step a millisecond at a time until an election starts: its next timeout was just
    // set, 150 to 300 ms ahead on a true clock.
    let first = elections(&node).await;
    let mut steps = 0;
    while elections(&node).await == first {
        tokio::time::sleep(Duration::from_millis(1)).await;
        steps += 1;
        assert!(steps < 10_000, "no election in 10 s of virtual time");
    }
    let started = elections(&node).await;
    // Ten times as fast: what is left of that timeout (at least 149 ms) becomes at most
    // 30 ms. Without rescaling it would still be at least 149 ms away.
    node.controller().set_clock_rate(10.0);
    tokio::time::sleep(Duration::from_millis(31)).await;
    assert!(elections(&node).await > started, "the pending election timeout was rescaled to a tenth");
}

#[test]
fn rates_outside_the_range_are_refused_in_one_line() {
    for ok in [0.1, 1.0, 2.5, 10.0] {
        assert!(check_clock_rate(ok).is_ok(), "{ok}");
    }
    for bad in [0.0, 0.05, -2.0, 11.0, f64::NAN, f64::INFINITY] {
        let e = check_clock_rate(bad).unwrap_err();
        assert!(e.starts_with("clock_rate takes a factor from 0.1 to 10") && !e.contains('\n'), "{e}");
    }
}
