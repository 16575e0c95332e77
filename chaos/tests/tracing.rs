//! `chaos run --otlp-endpoint`: a scenario is the root span of one trace, its steps are
//! children, the votes cast in a step hang below that step, and every node reports as its
//! own service — on mem (nodes in the chaos process) and on tcp (node processes that
//! inherit the endpoint). The collector is the library's in-memory OTLP receiver.

use ballot_telemetry::collector::{Collector, ReceivedSpan};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn traced_run(transport: &str) -> Vec<ReceivedSpan> {
    let collector = Collector::start(true).expect("start the collector");
    let o = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["run", "scenarios/leader_failover.rhai", "--seed", "7", "--transport", transport])
        .args(["--otlp-endpoint", &collector.endpoint()])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .current_dir(workspace())
        .output()
        .expect("run chaos");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("chaos: exporting traces to"), "{out}");
    // chaos and its nodes flushed before exiting: everything is here already.
    collector.spans()
}

fn check(transport: &str) {
    let spans = traced_run(transport);
    let roots: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name.starts_with("scenario ")).collect();
    assert_eq!(roots.len(), 1, "one scenario span: {roots:#?}");
    let root = roots[0];
    assert_eq!(root.parent, "", "the scenario is a root");
    assert_eq!(root.service, "chaos");
    assert_eq!(root.attrs["verdict"], "PASS");
    assert_eq!(root.attrs["seed"], "7");
    assert_eq!(root.attrs["transport"], transport);
    let trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace == root.trace).collect();
    let by_id: BTreeMap<&str, &ReceivedSpan> = trace.iter().map(|s| (s.id.as_str(), *s)).collect();

    // Steps: children of the scenario, in the order the script runs them.
    let steps: Vec<&ReceivedSpan> = trace.iter().copied().filter(|s| s.attrs.contains_key("step")).collect();
    for s in &steps {
        assert_eq!(s.parent, root.id, "a step is a child of the scenario: {s:?}");
        assert!(s.attrs.contains_key("scenario.time_ms"), "{s:?}");
    }
    let kinds: BTreeSet<&str> = steps.iter().map(|s| s.attrs["step"].as_str()).collect();
    for k in ["cluster", "wait_for_leader", "vote", "kill", "restart", "sleep"] {
        assert!(kinds.contains(k), "a {k} step: {kinds:?}");
    }
    let kill = steps.iter().find(|s| s.attrs["step"] == "kill").unwrap();
    assert!(kill.name.starts_with("kill proposer-"), "the step names what it did: {}", kill.name);

    // Votes: children of their vote step, and the rounds below them reach every role.
    let votes: Vec<&ReceivedSpan> = trace.iter().copied().filter(|s| s.name == "vote").collect();
    assert!(votes.len() >= 21, "every vote of the scenario is in its trace: {}", votes.len());
    for v in &votes {
        let parent = by_id.get(v.parent.as_str()).unwrap_or_else(|| panic!("a vote's parent is in the trace: {v:?}"));
        let step = parent.attrs.get("step").map(String::as_str);
        if v.attrs.get("voter").is_some_and(|voter| voter.starts_with("progress-probe-")) {
            // The progress check's probe: a child of the check that cast it (`c.check()`, or
            // the runner's own at the end, directly under the scenario).
            assert!(step == Some("check") || parent.id == root.id, "a probe vote is a child of its check: {v:?}");
        } else {
            assert!(matches!(step, Some("vote" | "vote_all")), "a vote is a child of its vote step: {v:?}");
        }
        assert_eq!(v.service, "client-1");
    }
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for s in ["chaos", "client-1", "acceptor-1", "acceptor-2", "acceptor-3", "learner-1", "learner-2"] {
        assert!(services.contains(s), "{s} reports as its own service in the scenario's trace: {services:?}");
    }
    // The leader before the kill and the one after both ran rounds of the scenario (on
    // processes the killed one's unexported spans die with it, so only the new one).
    let leaders: BTreeSet<&str> =
        trace.iter().filter(|s| s.name == "proposer.phase2").map(|s| s.service.as_str()).collect();
    let want = if transport == "mem" { 2 } else { 1 };
    assert!(leaders.len() >= want && leaders.iter().all(|l| l.starts_with("proposer-")), "rounds led by: {leaders:?}");
    // Elections are traces of their own, and every acceptor's answer to a traced
    // election's Prepare is a child of it.
    let elections: BTreeMap<&str, &ReceivedSpan> =
        spans.iter().filter(|s| s.name == "proposer.phase1").map(|s| (s.id.as_str(), s)).collect();
    assert!(!elections.is_empty(), "the scenario's elections are traced");
    let prepares: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "acceptor.prepare").collect();
    for p in &prepares {
        match elections.get(p.parent.as_str()) {
            Some(e) => assert_eq!(p.attrs["ballot"], e.attrs["ballot"], "{p:?}"),
            // On processes a proposer killed with SIGKILL loses its unexported election span.
            None => assert!(transport != "mem", "a prepare's parent is its election: {p:?}"),
        }
    }
    let answered: BTreeSet<&str> = prepares.iter().map(|p| p.service.as_str()).collect();
    assert_eq!(
        answered,
        BTreeSet::from(["acceptor-1", "acceptor-2", "acceptor-3"]),
        "every acceptor answers an election"
    );
    for s in &trace {
        if let Some(node) = s.attrs.get("node") {
            assert_eq!(&s.service, node, "{s:?}");
        }
        // Every span's parent is in the trace, but the root's. (Not on processes: a node
        // killed with SIGKILL loses the spans it had not exported yet.)
        if transport == "mem" && s.id != root.id {
            assert!(by_id.contains_key(s.parent.as_str()), "parent of {} ({}) is missing", s.name, s.service);
        }
    }
}

#[test]
fn a_scenario_on_mem_is_one_trace() {
    check("mem");
}

#[test]
#[cfg(unix)]
fn a_scenario_on_tcp_is_one_trace() {
    check("tcp");
}
