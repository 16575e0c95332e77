//! Every scenario in `scenarios/` passes on `mem`, over several seeds; a run is
//! reproducible from its seed; a broken invariant fails the run.

use ballot_chaos::{collect_scenarios, run_scenario, RunConfig, Verdict};
use std::path::{Path, PathBuf};

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = collect_scenarios(&[dir]).expect("scenarios folder");
    assert!(files.len() >= 8, "expected the scenarios of the suite, found {files:?}");
    files
}

#[test]
fn every_scenario_passes_on_mem_over_many_seeds() {
    let mut failures = Vec::new();
    for file in scenarios() {
        for seed in 1..=25 {
            let r = run_scenario(&file, &RunConfig { seed, ..RunConfig::default() });
            if r.verdict != Verdict::Pass {
                failures.push(format!("{} seed {seed}: {:?}", file.display(), r.verdict));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn same_scenario_and_seed_give_the_same_event_log() {
    for file in scenarios() {
        let cfg = RunConfig { seed: 99, record_events: true, ..RunConfig::default() };
        let a = run_scenario(&file, &cfg);
        let b = run_scenario(&file, &cfg);
        assert_eq!(a.verdict, Verdict::Pass, "{}", file.display());
        assert!(a.events.len() > 20, "{}: log too short to mean anything", file.display());
        assert!(a.events == b.events, "{}: two runs with seed 99 differ", file.display());
        assert_eq!(a.virtual_secs, b.virtual_secs);
    }
}

#[test]
fn a_broken_invariant_fails_the_run() {
    let file = scenarios().into_iter().find(|f| f.ends_with("duplicate_vote.rhai")).expect("scenario");
    let r = run_scenario(&file, &RunConfig { seed: 3, sabotage: true, ..RunConfig::default() });
    match r.verdict {
        Verdict::Fail(m) => {
            assert!(m.contains("agreement: slot 1"), "{m}");
            assert!(m.contains("validity: slot 1000000000 holds vote sabotage"), "{m}");
        }
        other => panic!("sabotaged run was {other:?}"),
    }
}

/// Each liveness scenario fails without the rule it is about: the scenario (and the
/// progress check behind it) sees the stall the rule prevents. Run on mem with the rule
/// switched off through the cluster option, over several seeds; every seed must fail.
#[test]
fn each_liveness_scenario_fails_without_its_rule() {
    let cases = [
        ("stuck_slot.rhai", "reopen_stuck"),
        ("leader_cut_from_acceptors.rhai", "check_quorum"),
        ("proposer_cut_from_proposers.rhai", "leader_lease"),
    ];
    let dir = std::env::temp_dir().join(format!("ballot-rules-off-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (name, rule) in cases {
        let file = scenarios().into_iter().find(|f| f.ends_with(name)).expect("scenario");
        let source = std::fs::read_to_string(&file).expect("read scenario");
        assert!(source.contains("cluster(#{ "), "{name} starts its cluster with options");
        let off = dir.join(name);
        std::fs::write(&off, source.replacen("cluster(#{ ", &format!("cluster(#{{ {rule}: false, "), 1))
            .expect("write");
        for seed in 1..=5 {
            let on = run_scenario(&file, &RunConfig { seed, ..RunConfig::default() });
            assert_eq!(on.verdict, Verdict::Pass, "{name} seed {seed} with {rule}");
            let r = run_scenario(&off, &RunConfig { seed, ..RunConfig::default() });
            assert!(matches!(r.verdict, Verdict::Fail(_)), "{name} seed {seed} passed without {rule}: {:?}", r.verdict);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// On mem nobody forges, so a message one node refuses for breaking a sender rule was
/// sent by another node of ours: the run fails on it and names the node and the reason.
/// (The check found joined learners sending `Progress` to acceptors in learner_join.rhai.)
/// A refusal a client may honestly cause, a vote over its limits, does not fail the run.
#[test]
fn a_message_refused_for_its_sender_fails_a_run_on_mem() {
    use ballot_chaos::cluster::{Cluster, ClusterSpec, TransportKind};
    use ballot_core::{Command, Message, NodeId};
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    rt.block_on(async {
        let log = ballot_transports::EventLog::new(false);
        let c = Cluster::start(ClusterSpec::default(), 5, log, TransportKind::Mem).await.expect("cluster");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let leader = c.leader().await.expect("a leader within 2 s of virtual time");
        let long = Command::Vote {
            request_id: "r".into(),
            client: NodeId::client(7),
            voter: "v".repeat(ballot_core::MAX_VOTER_BYTES + 1),
            candidate: "ada".into(),
        };
        c.forge_for_test(NodeId::client(7), leader, Message::Request(vec![long]));
        assert_eq!(c.check().await, Vec::<String>::new(), "a client's vote over its limits is no bug of ours");
        c.forge_for_test(NodeId::learner(9), NodeId::acceptor(1), Message::Progress { applied: 0 });
        c.forge_for_test(NodeId::proposer(1), NodeId::learner(1), Message::Learn { entries: Vec::new() });
        let got = c.check().await.join("; ");
        assert!(got.contains("acceptor-1 refused 1 message(s) as not_a_configured_learner"), "{got}");
        assert!(got.contains("learner-1 refused 1 message(s) as not_an_acceptor"), "{got}");
    });
}

/// The rejoin guard is what keeps `lost_state.rhai` safe: the same scenario with the
/// wiped acceptor started as if new (`rejoin: false`) lets a leader whose phase 1 reaches
/// only it and an acceptor that never saw alice's vote choose another value for that
/// slot, and the checker must see it, on every seed.
#[test]
fn lost_state_without_the_rejoin_guard_breaks_agreement_and_the_checker_sees_it() {
    let file = scenarios().into_iter().find(|f| f.ends_with("lost_state.rhai")).expect("scenario");
    let text = std::fs::read_to_string(&file).expect("readable");
    assert!(text.contains("\nlet rejoin = true;\n"), "the scenario's guard switch moved");
    let dir = std::env::temp_dir().join(format!("ballot-unsafe-rejoin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let unsafe_file = dir.join("lost_state_unsafe.rhai");
    std::fs::write(&unsafe_file, text.replace("\nlet rejoin = true;\n", "\nlet rejoin = false;\n")).expect("write");
    for seed in 1..=10 {
        let r = run_scenario(&unsafe_file, &RunConfig { seed, ..RunConfig::default() });
        match r.verdict {
            Verdict::Fail(m) => {
                assert!(m.contains("agreement: slot"), "seed {seed}: failed, but not on agreement: {m}")
            }
            other => panic!("seed {seed}: without the rejoin guard the run was {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
