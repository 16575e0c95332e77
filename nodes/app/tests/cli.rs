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
use std::path::Path;
use std::process::{Command, Output};

/// Runs `ballot --certs CERTS --peers PEERS ARGS` (see `run_ballot`).
fn ballot(certs: &Path, peers: &str, args: &[&str], stdin: Option<&str>) -> Output {
    run_ballot(&[&["--certs", &certs.to_string_lossy(), "--peers", peers][..], args].concat(), stdin)
}

fn out(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test]
async fn votes_results_candidates_and_honest_messages() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(Net::Tcp).await;
    let p = c.peers.clone();
    let (code, stdout, _) = out(&ballot(&c.certs, &p, &["vote", "--voter", "alice", "--candidate", "ada"], None));
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("vote recorded (slot "), "{stdout}");
    // The same command again is a new request (its id is random): alice has voted.
    let (code, _, err) = out(&ballot(&c.certs, &p, &["vote", "--voter", "alice", "--candidate", "ada"], None));
    assert_eq!((code, err.trim()), (Some(3), "ballot: already voted: alice has a vote counted; one vote per voter"));
    // Retrying under one request id is the same vote: the first answer again, no double count.
    let by_id = ["vote", "--voter", "dan", "--candidate", "grace", "--request-id", "dan-1"];
    let (code, first, _) = out(&ballot(&c.certs, &p, &by_id, None));
    let (again_code, again, _) = out(&ballot(&c.certs, &p, &by_id, None));
    assert_eq!((code, again_code, again.as_str()), (Some(0), Some(0), first.as_str()));
    // A name over its limit is refused before anything is sent, in one line.
    let long = "v".repeat(ballot_core::MAX_VOTER_BYTES + 1);
    let (code, _, err) = out(&ballot(&c.certs, &p, &["vote", "--voter", &long, "--candidate", "ada"], None));
    assert_eq!(code, Some(3));
    assert_eq!(
        err.trim(),
        "ballot: vote refused: the voter id is 257 bytes and the cluster takes at most 256; use a shorter one"
    );
    let (code, _, err) = out(&ballot(&c.certs, &p, &["vote", "--voter", "alice", "--candidate", "grace"], None));
    assert_eq!(code, Some(3));
    assert_eq!(err.trim(), "ballot: already voted: alice has a vote counted; one vote per voter");
    let (code, _, err) = out(&ballot(&c.certs, &p, &["vote", "--voter", "bob", "--candidate", "zorro"], None));
    assert_eq!(code, Some(3));
    assert_eq!(err.trim(), "ballot: unknown candidate 'zorro': choose one of ada, grace, linus");
    let (code, stdout, _) = out(&ballot(&c.certs, &p, &["candidates"], None));
    assert_eq!((code, stdout.lines().collect::<Vec<_>>()), (Some(0), vec!["ada", "grace", "linus"]));
    let (code, stdout, _) = out(&ballot(&c.certs, &p, &["results", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("results --json is JSON");
    assert_eq!(v["tally"], serde_json::json!({"ada": 1, "grace": 1, "linus": 0}), "{stdout}");
    let (code, stdout, _) =
        out(&ballot(&c.certs, &p, &["vote", "--voter", "carol", "--candidate", "linus", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("vote --json is JSON");
    let id = v["request_id"].as_str().unwrap_or_default();
    assert_eq!(v["ok"].as_bool(), Some(true), "{stdout}");
    // Random: the client's name, then 128 bits in hex.
    assert!(id.starts_with("client-") && id.rsplit('/').next().is_some_and(|h| h.len() == 32), "{id}");
    assert!(v["slot"].as_u64().is_some_and(|s| s > 0), "{stdout}");

    // Another cluster's credentials, and none at all, get no vote in.
    let other = TempDir::new("other-cluster");
    let vote = ["vote", "--voter", "mallory", "--candidate", "ada", "--timeout-ms", "500"];
    let (code, _, err) = out(&ballot(&certs_in(other.path()), &p, &vote, None));
    assert_eq!(code, Some(4), "another cluster's client: {err}");
    let (code, _, err) = out(&run_ballot(&[&["--insecure", "--peers", &p][..], &vote].concat(), None));
    assert_eq!(code, Some(4), "an insecure client: {err}");
    let (code, stdout, _) = out(&ballot(&c.certs, &p, &["results", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("results --json is JSON");
    assert_eq!(v["tally"], serde_json::json!({"ada": 1, "grace": 1, "linus": 1}), "{stdout}");
}

/// A command that talks to the cluster needs `--certs`, `BALLOT_CERTS` or `--insecure`
/// (which warns in one line).
#[test]
fn a_client_without_credentials_is_refused_in_one_line() {
    let dir = TempDir::new("certs");
    let folder = dir.path().join("made");
    let a = ["certs", "--dir", folder.to_str().expect("utf-8"), "--peers", "proposer-1=127.0.0.1:7001"];
    let (code, _, err) = out(&run_ballot(&a, None));
    assert_eq!(code, Some(0), "{err}");
    let dead = format!("proposer-1={}", free_ports(1)[0]);
    let vote = |env: Option<&Path>, extra: &[&str]| {
        let mut cmd = Command::new(CLI);
        cmd.env_remove("BALLOT_CERTS").args(["--peers", &dead]).args(extra);
        cmd.args(["vote", "--voter", "x", "--candidate", "ada", "--timeout-ms", "300"]);
        if let Some(dir) = env {
            cmd.env("BALLOT_CERTS", dir);
        }
        out(&cmd.output().expect("run ballot"))
    };
    let (code, _, err) = vote(None, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ballot: no credentials: make them with `ballot certs --dir DIR --peers"), "{err}");
    // With credentials from the environment, or none by choice, it gets as far as the
    // (dead) cluster: not confirmed.
    let (code, _, err) = vote(Some(&folder), &[]);
    assert_eq!(code, Some(4), "{err}");
    let (code, _, err) = vote(None, &["--insecure"]);
    assert_eq!(code, Some(4), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("ballot: warning: --insecure"), "{err}");
}

#[tokio::test]
async fn interactive_menu_through_stdin() {
    let _one = ONE_AT_A_TIME.lock().await;
    let c = Cluster::start(Net::Zmq).await;
    let o =
        ballot(&c.certs, &c.peers, &["--transport", "zmq", "interactive"], Some("dora\n2\nresults\nerin\n9\nquit\n"));
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
    let (p, certs) = (c.peers.clone(), c.certs.clone());
    let voting =
        std::thread::spawn(move || ballot(&certs, &p, &["vote", "--voter", "frank", "--candidate", "ada"], None));
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
    let dir = TempDir::new("cli-errors");
    let certs = certs_in(dir.path());
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
            "--request-id client-",
        ),
    ] {
        let (got, stdout, err) = out(&ballot(&certs, peers, &args, None));
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
    let certs = certs_in(dir.path());
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
        let mut a = os_args(&["--id", ids[i], "--peers", &peers, "--candidates", &CANDIDATES.join(",")]);
        a.extend([OsString::from("--certs"), certs.clone().into(), "--data-dir".into()]);
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
        out(&ballot(&certs, &peers, &a, None))
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

    let (code, stdout, _) = out(&ballot(&certs, &peers, &["results", "--json"], None));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("results --json is JSON");
    assert_eq!(v["tally"], serde_json::json!({"ada": 1, "grace": 1, "linus": 1}), "{stdout}");
    for n in &nodes {
        assert!(!n.stderr().contains("panicked"), "{}: {}", n.name, n.stderr());
    }
}

/// `ballot certs` writes a folder every identity can load; a second run refuses to replace
/// the CA, `--if-missing` keeps it (exit 0, nothing written) and `--force` replaces it.
#[test]
fn certs_writes_a_loadable_folder_and_guards_its_ca() {
    use ballot_transports::auth::{Credentials, Identity};
    let dir = std::env::temp_dir().join(format!("ballot-cli-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let peers = "proposer-1=127.0.0.1:1,acceptor-1=127.0.0.1:2,learner-1=127.0.0.1:3,client-1=127.0.0.1:4";
    let (code, stdout, err) = out(&run_ballot(&[&["--peers", peers][..], &["certs", "--dir", d]].concat(), None));
    assert_eq!(code, Some(0), "{stdout}{err}");
    assert!(stdout.contains("proposer-1, acceptor-1, learner-1, client, operator"), "{stdout}");
    for who in ["proposer-1", "acceptor-1", "learner-1", "client", "operator"] {
        let who: Identity = who.parse().unwrap();
        let c = Credentials::load(&dir, who).unwrap();
        assert!(c.check_token(who, &c.token), "{who}'s token checks");
    }
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let (code, _, err) = out(&run_ballot(&[&["--peers", peers][..], &["certs", "--dir", d]].concat(), None));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.trim().lines().count() == 1 && err.contains("already holds a CA"), "{err}");
    let (code, stdout, _) =
        out(&run_ballot(&[&["--peers", peers][..], &["certs", "--dir", d, "--if-missing"]].concat(), None));
    assert_eq!((code, std::fs::read(dir.join("ca.pem")).unwrap() == ca), (Some(0), true), "{stdout}");
    let (code, _, _) = out(&run_ballot(&[&["--peers", peers][..], &["certs", "--dir", d, "--force"]].concat(), None));
    assert_eq!((code, std::fs::read(dir.join("ca.pem")).unwrap() != ca), (Some(0), true), "--force makes a new CA");
    let (code, _, err) =
        out(&run_ballot(&[&["--peers", "client-1=127.0.0.1:4"][..], &["certs", "--dir", d, "--force"]].concat(), None));
    assert_eq!(code, Some(2), "no node named: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
