//! End-to-end tests of `ballot`, the voter's command line, against a cluster of real node
//! processes on loopback: votes and honest messages, `--json`, the interactive menu
//! driven through stdin, failover when the proposer it talks to dies mid-vote, a cluster
//! known by host names (`localhost:PORT`) whose acceptor restarts, and one-line errors for
//! bad input and an unreachable cluster.
#![cfg(unix)]

mod common;
use common::*;

use ballot_core::NodeId;
use std::ffi::OsString;
use std::process::{Command, Output};

/// Runs `ballot --peers PEERS ARGS` (see `run_ballot`).
fn ballot(peers: &str, args: &[&str], stdin: Option<&str>) -> Output {
    run_ballot(&[&["--peers", peers][..], args].concat(), stdin)
}

fn out(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test]
async fn votes_results_candidates_and_honest_messages() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(Net::Tcp).await;
    let p = c.peers.clone();
    let (code, stdout, _) = out(&ballot(&p, &["vote", "--voter", "alice", "--candidate", "ada"], None));
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("vote recorded (slot "), "{stdout}");
    // The same command again is the same vote (same request id): same answer, no double count.
    let (code, again, _) = out(&ballot(&p, &["vote", "--voter", "alice", "--candidate", "ada"], None));
    assert_eq!((code, again.as_str()), (Some(0), stdout.as_str()));
    let (code, _, err) = out(&ballot(&p, &["vote", "--voter", "alice", "--candidate", "grace"], None));
    assert_eq!(code, Some(3));
    assert_eq!(err.trim(), "ballot: already voted: alice has a vote counted; one vote per voter");
    let (code, _, err) = out(&ballot(&p, &["vote", "--voter", "bob", "--candidate", "zorro"], None));
    assert_eq!(code, Some(3));
    assert_eq!(err.trim(), "ballot: unknown candidate 'zorro': choose one of ada, grace, linus");
    let (code, stdout, _) = out(&ballot(&p, &["candidates"], None));
    assert_eq!((code, stdout.lines().collect::<Vec<_>>()), (Some(0), vec!["ada", "grace", "linus"]));
    let (code, stdout, _) = out(&ballot(&p, &["results", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("results --json is JSON");
    assert_eq!(v["tally"], serde_json::json!({"ada": 1, "grace": 0, "linus": 0}), "{stdout}");
    let (code, stdout, _) = out(&ballot(&p, &["vote", "--voter", "carol", "--candidate", "linus", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("vote --json is JSON");
    assert_eq!((v["ok"].as_bool(), v["request_id"].as_str()), (Some(true), Some("vote/carol/linus")));
    assert!(v["slot"].as_u64().is_some_and(|s| s > 0), "{stdout}");
}

#[tokio::test]
async fn interactive_menu_through_stdin() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(Net::Zmq).await;
    let o = ballot(&c.peers, &["--transport", "zmq", "interactive"], Some("dora\n2\nresults\nerin\n9\nquit\n"));
    let (code, stdout, _) = out(&o);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("  1) ada\n  2) grace\n  3) linus"), "{stdout}");
    assert!(stdout.contains("vote recorded (slot "), "{stdout}");
    assert!(stdout.contains("grace  1"), "the results after the vote: {stdout}");
    assert!(stdout.contains("'9' is not a number from 1 to 3"), "{stdout}");
}

#[tokio::test]
async fn fails_over_when_its_proposer_dies_mid_vote() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start_with(Net::Tcp, &TWO_PROPOSERS).await;
    // Wait until a leader commits, then kill whichever proposer the CLI tries first
    // (proposer-1, the first in --peers) while the vote is in flight.
    c.votes(1).await;
    let p = c.peers.clone();
    let voting = std::thread::spawn(move || ballot(&p, &["vote", "--voter", "frank", "--candidate", "ada"], None));
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.node(NodeId::proposer(1)).signal(libc::SIGKILL);
    let (code, stdout, err) = out(&voting.join().expect("ballot thread"));
    assert_eq!(code, Some(0), "the vote must go through the other proposer: {stdout}{err}");
    assert!(stdout.starts_with("vote recorded"), "{stdout}");
    // Counted once, whatever the retries.
    let tally = c.read_tally().await;
    assert_eq!(tally.iter().find(|(n, _)| n == "ada").map(|t| t.1), Some(c.expected["ada"] + 1));
}

#[test]
fn bad_input_and_an_unreachable_cluster_get_one_line_and_nonzero() {
    let dead = free_ports(1)[0];
    let peers = format!("proposer-1={dead}");
    for (args, peers, code, words) in [
        (vec!["vote", "--voter", "", "--candidate", "ada"], peers.as_str(), 2, "the voter id is empty"),
        (
            vec!["vote", "--voter", "x", "--candidate", "ada"],
            "proposer-1=nowhere",
            2,
            "'nowhere' has no port: write host:port",
        ),
        (
            vec!["vote", "--voter", "x", "--candidate", "ada"],
            "proposer-1=no where:1",
            2,
            "neither an IP address nor a host name",
        ),
        (
            vec!["--listen", "here", "vote", "--voter", "x", "--candidate", "ada"],
            peers.as_str(),
            2,
            "--listen: 'here' has no port",
        ),
        (vec!["--discovery", "a b:1", "status"], peers.as_str(), 2, "--discovery: 'a b:1'"),
        (
            vec!["vote", "--voter", "x", "--candidate", "ada", "--timeout-ms", "300"],
            "proposer-1=nobody.invalid:7000",
            4,
            "vote not confirmed",
        ),
        (vec!["vote", "--voter", "x", "--candidate", "ada"], "acceptor-1=127.0.0.1:1", 2, "names no proposer"),
        (vec!["results", "--timeout-ms", "300"], peers.as_str(), 4, "the cluster did not answer in time"),
        (
            vec!["vote", "--voter", "x", "--candidate", "ada", "--timeout-ms", "300"],
            peers.as_str(),
            4,
            "retrying with --request-id vote/x/ada is safe",
        ),
    ] {
        let (got, stdout, err) = out(&ballot(peers, &args, None));
        assert_eq!(got, Some(code), "{args:?}: {stdout}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = Command::new(CLI).args(["vote", "--voter", "x", "--candidate", "y", "--frobnicate"]).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "an unknown flag is a usage error");
}

/// Nodes and the CLI given host names instead of IP addresses: a node listening on 0.0.0.0
/// with --advertise, one on its --peers name, one on 0.0.0.0 without --advertise (it
/// advertises its address towards its peers), and a CLI on 0.0.0.0. After the acceptor is
/// killed and restarted, the others look its name up again and votes go on.
#[tokio::test]
async fn votes_through_a_cluster_known_by_host_names() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("named");
    let ports: Vec<u16> = free_ports(3).iter().map(|a| a.port()).collect();
    let ids = ["proposer-1", "acceptor-1", "learner-1"];
    let peers = ids.iter().zip(&ports).map(|(id, p)| format!("{id}=localhost:{p}")).collect::<Vec<_>>().join(",");
    let own: [Vec<String>; 3] = [
        vec![
            "--listen".into(),
            format!("0.0.0.0:{}", ports[0]),
            "--advertise".into(),
            format!("localhost:{}", ports[0]),
        ],
        vec![],
        vec!["--listen".into(), format!("0.0.0.0:{}", ports[2])],
    ];
    let args = |i: usize| {
        let mut a = os_args(&["--id", ids[i], "--peers", &peers, "--candidates", &CANDIDATES.join(","), "--data-dir"]);
        a.push(dir.path().join(ids[i]).into());
        a.extend(own[i].iter().map(OsString::from));
        a
    };
    let log = |i: usize| dir.path().join(format!("{}.stderr", ids[i]));
    let mut nodes: Vec<NodeProc> = (0..3).map(|i| NodeProc::spawn(ids[i], &args(i), &log(i))).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        let ready = n.wait_ready().await;
        assert_eq!(ready.listen.port(), ports[i], "{}", ids[i]);
        // The acceptor binds what its name resolves to; the others listen everywhere.
        let ip = if i == 1 { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
        assert_eq!(ready.listen.ip(), std::net::IpAddr::from(ip), "{}", ids[i]);
    }

    let vote = |voter: &str, candidate: &str, extra: &[&str]| {
        let mut a: Vec<&str> = extra.to_vec();
        a.extend(["vote", "--voter", voter, "--candidate", candidate, "--timeout-ms", "20000"]);
        out(&ballot(&peers, &a, None))
    };
    let (code, stdout, err) = vote("ann", "ada", &[]);
    assert_eq!(code, Some(0), "{stdout}{err}");
    assert!(stdout.starts_with("vote recorded"), "{stdout}");
    let (code, stdout, err) = vote("ben", "grace", &["--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(0), "a CLI on 0.0.0.0 is answered: {stdout}{err}");

    nodes[1].signal(libc::SIGKILL);
    nodes[1].wait_exit().await;
    nodes[1] = NodeProc::spawn(ids[1], &args(1), &log(1));
    nodes[1].wait_ready().await;
    let (code, stdout, err) = vote("cy", "linus", &[]);
    assert_eq!(code, Some(0), "after the acceptor restarted: {stdout}{err}");

    let (code, stdout, _) = out(&ballot(&peers, &["results", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("results --json is JSON");
    assert_eq!(v["tally"], serde_json::json!({"ada": 1, "grace": 1, "linus": 1}), "{stdout}");
    for n in &nodes {
        assert!(!n.stderr().contains("panicked"), "{}: {}", n.name, n.stderr());
    }
}
