//! End-to-end tests of discovery with real processes: a `ballot-node --role discovery`
//! process, a cluster (2 proposers, 3 acceptors, 1 learner over tcp) whose nodes register
//! there (`--discovery`, `--http`), and the `ballot` CLI finding the cluster through it
//! (`vote`, `status`, `results --local`). Then discovery dies: the cluster keeps
//! committing, and the CLI falls back to `--peers`. Then the leader dies: a restarted
//! discovery names the new one.
//!
//! Every wait is bounded by `DEADLINE` (only so that a broken build fails instead of
//! hanging); nothing asserts how long anything took. Every process is killed on drop.
#![cfg(unix)]

mod common;
use common::*;

use ballot_core::{NodeId, Role};
use ballot_operator::discovery::{DiscoveryClient, Member};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tokio::time::Instant;

/// Runs `ballot ARGS` (see `run_ballot`). Blocking: call it from `spawn_blocking`.
fn ballot_blocking(args: Vec<String>) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ballot(&args, None)
}

/// `ballot --certs CERTS ARGS`: exit code, stdout, stderr.
async fn ballot(certs: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = ["--certs".to_string(), certs.to_string_lossy().into_owned()]
        .into_iter()
        .chain(args.iter().map(|s| s.to_string()))
        .collect();
    let o = tokio::task::spawn_blocking(move || ballot_blocking(args)).await.expect("ballot thread");
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Discovery starts before the cluster (and its credentials), so it runs `--insecure`:
/// these tests are of finding the cluster; its refusals are the operator plane's tests.
fn start_discovery(dir: &TempDir, addr: SocketAddr, extra: &[&str]) -> NodeProc {
    let mut args = vec!["--insecure", "--role", "discovery", "--listen"];
    let a = addr.to_string();
    args.push(&a);
    args.extend_from_slice(extra);
    NodeProc::spawn("discovery", &os_args(&args), &fresh_log(dir.path(), "discovery"))
}

/// Polls discovery's members until `ok` holds for them.
async fn wait_members(d: &DiscoveryClient, what: &str, ok: impl Fn(&[Member]) -> bool) -> Vec<Member> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = d.members().await;
        if let Ok(m) = &got {
            if ok(m) {
                return m.clone();
            }
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}; last /members: {got:?}");
        tokio::time::sleep(POLL * 10).await;
    }
}

fn listed(members: &[Member]) -> BTreeMap<NodeId, &Member> {
    members.iter().map(|m| (m.node, m)).collect()
}

/// Polls `/leader` until it names a proposer other than `not` whose own status says it
/// leads. While it names `not`, that claim must be within the ttl.
async fn wait_leader(c: &Cluster, d: &DiscoveryClient, not: Option<NodeId>, ttl: Duration) -> NodeId {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = d.leader().await;
        if let Ok(Some(m)) = &got {
            assert_eq!(m.node.role, Role::Proposer, "{m:?}");
            if Some(m.node) == not {
                assert!((m.last_seen_ms_ago as u128) < ttl.as_millis(), "a dead leader named beyond the ttl: {m:?}");
            } else if c.status(m.node).await.leader == Some(m.node) {
                assert!(m.leader && m.ballot.is_some(), "{m:?}");
                return m.node;
            }
        }
        assert!(Instant::now() < deadline, "no live leader named within {DEADLINE:?}; last /leader: {got:?}");
        tokio::time::sleep(POLL * 10).await;
    }
}

fn tally_of(stdout: &str) -> Json {
    let v: Json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    v["tally"].clone()
}

/// Every node registered, with its data and HTTP addresses; only a proposer claims to lead.
async fn all_registered_with_their_addresses(c: &Cluster, d: &DiscoveryClient) {
    let members =
        wait_members(d, "all six registered", |m| TWO_PROPOSERS.iter().all(|id| listed(m).contains_key(id))).await;
    let by = listed(&members);
    for id in TWO_PROPOSERS {
        assert_eq!(by[&id].addr, c.listen[&id], "{id}'s data address");
        assert_eq!(by[&id].http, Some(c.http[&id]), "{id}'s HTTP address");
        assert!(!by[&id].leader || id.role == Role::Proposer, "{:?}", by[&id]);
    }
}

/// The CLI needs nothing but discovery: a vote, then `status --json` and the text table.
async fn cli_through_discovery_alone(c: &Cluster, ds: &str, leader: NodeId) {
    let (code, stdout, err) =
        ballot(&c.certs, &["--discovery", ds, "vote", "--voter", "alice", "--candidate", "ada"]).await;
    assert_eq!(code, Some(0), "{stdout}{err}");
    assert!(stdout.starts_with("vote recorded (slot "), "{stdout}");
    assert!(err.is_empty(), "no warning when discovery answers: {err}");

    let (code, stdout, err) = ballot(&c.certs, &["--discovery", ds, "status", "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}{err}");
    let v: Json = serde_json::from_str(stdout.trim()).expect("status --json is JSON");
    let rows = v["nodes"].as_array().expect("nodes");
    assert_eq!(rows.len(), TWO_PROPOSERS.len(), "{stdout}");
    for id in TWO_PROPOSERS {
        let row =
            rows.iter().find(|r| r["node"] == id.to_string().as_str()).unwrap_or_else(|| panic!("{id}: {stdout}"));
        assert_eq!(row["reachable"], true, "{id}: {row}");
        assert_eq!(row["role"], id.role.to_string().as_str(), "{row}");
        assert_eq!(row["http"], c.http[&id].to_string().as_str(), "{row}");
    }
    let learner = rows.iter().find(|r| r["node"] == "learner-1").expect("learner row");
    assert!(learner["tally"].is_object(), "{learner}");
    // The text table too.
    let (code, stdout, _) = ballot(&c.certs, &["--discovery", ds, "status"]).await;
    assert_eq!(code, Some(0));
    assert!(stdout.lines().next().is_some_and(|h| h.starts_with("node") && h.contains("reachable")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with(&leader.to_string()) && l.contains(" yes ")), "{stdout}");
}

/// A read through the log, then the learner's own tally: the same counts. An acceptor
/// has no local tally.
async fn results_through_discovery(certs: &Path, ds: &str) {
    let (code, through_log, err) = ballot(certs, &["--discovery", ds, "results", "--json"]).await;
    assert_eq!(code, Some(0), "{through_log}{err}");
    let (code, local, err) = ballot(certs, &["--discovery", ds, "results", "--local", "learner-1", "--json"]).await;
    assert_eq!(code, Some(0), "{local}{err}");
    assert_eq!(tally_of(&local), tally_of(&through_log));
    assert_eq!(tally_of(&local)["ada"], 1, "{local}");
    let (code, _, err) = ballot(certs, &["--discovery", ds, "results", "--local", "acceptor-1"]).await;
    assert_eq!((code, err.lines().count()), (Some(2), 1), "{err}");
    assert!(err.contains("not a learner"), "{err}");
}

/// SIGTERM: a node deregisters on its way out (the ttl is too long to expire it), and
/// registers again when it restarts.
async fn sigterm_deregisters(c: &mut Cluster, d: &DiscoveryClient) {
    let a3 = NodeId::acceptor(3);
    c.node(a3).signal(libc::SIGTERM);
    assert!(c.node(a3).wait_exit().await.success(), "{}", c.node(a3).stderr());
    wait_members(d, "acceptor-3 deregistered", |m| !listed(m).contains_key(&a3)).await;
    c.restart(a3).await;
    let http3 = c.http[&a3];
    wait_members(d, "acceptor-3 back", |m| listed(m).get(&a3).is_some_and(|m| m.http == Some(http3))).await;
}

/// Discovery dies: nothing on the commit path notices, and the CLI falls back to
/// `--peers` with one warning line (or fails in one line without them).
async fn living_without_discovery(c: &mut Cluster, mut disc: NodeProc, ds: &str, peers: &str) {
    disc.signal(libc::SIGKILL);
    disc.wait_exit().await;
    c.votes(3).await;
    let (code, stdout, err) =
        ballot(&c.certs, &["--peers", peers, "vote", "--voter", "bob", "--candidate", "grace"]).await;
    assert_eq!(code, Some(0), "{stdout}{err}");
    let (code, stdout, err) =
        ballot(&c.certs, &["--discovery", ds, "--peers", peers, "vote", "--voter", "carol", "--candidate", "linus"])
            .await;
    assert_eq!(code, Some(0), "falls back to --peers: {stdout}{err}");
    assert!(stdout.starts_with("vote recorded"), "{stdout}");
    assert_eq!(err.lines().count(), 1, "one warning line: {err}");
    assert!(err.starts_with("ballot: warning: ") && err.contains("--peers"), "{err}");
    let (code, _, err) = ballot(&c.certs, &["--discovery", ds, "vote", "--voter", "dave", "--candidate", "ada"]).await;
    assert_eq!((code, err.lines().count()), (Some(2), 1), "no discovery, no --peers: {err}");
    assert!(err.contains(ds) && err.contains("no --peers"), "{err}");
    c.all_alive_of(&TWO_PROPOSERS).await;
    for id in TWO_PROPOSERS {
        assert!(!c.node(id).stderr().contains("panicked"), "{id}");
    }
}

/// Discovery comes back (normal ttl): the nodes register again; the leader dies; the new
/// leader is named, the dead one never beyond the ttl. Returns discovery's process.
async fn failover_named(c: &mut Cluster, d: &DiscoveryClient, ddir: &TempDir, daddr: SocketAddr) -> NodeProc {
    let ds = daddr.to_string();
    let mut disc = start_discovery(ddir, daddr, &[]);
    disc.wait_ready().await;
    wait_members(d, "all six registered again", |m| TWO_PROPOSERS.iter().all(|id| listed(m).contains_key(id))).await;
    let leader = wait_leader(c, d, None, Duration::MAX).await;
    c.node(leader).signal(libc::SIGKILL);
    c.node(leader).wait_exit().await;
    let next = wait_leader(c, d, Some(leader), ballot_operator::discovery::DEFAULT_TTL).await;
    assert_ne!(next, leader);
    let (code, stdout, err) =
        ballot(&c.certs, &["--discovery", &ds, "vote", "--voter", "erin", "--candidate", "grace"]).await;
    assert_eq!(code, Some(0), "after failover, through discovery: {stdout}{err}");
    // The dead proposer shows as unreachable (while discovery still lists it) or is gone;
    // either way status answers for the rest.
    let (code, stdout, err) = ballot(
        &c.certs,
        &["--discovery", &ds, "--http-peers", &format!("{leader}={}", c.http[&leader]), "status", "--json"],
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}{err}");
    let v: Json = serde_json::from_str(stdout.trim()).expect("JSON");
    let dead = v["nodes"].as_array().and_then(|r| r.iter().find(|r| r["node"] == leader.to_string().as_str()).cloned());
    assert_eq!(dead.as_ref().map(|r| r["reachable"].clone()), Some(Json::Bool(false)), "{stdout}");
    assert!(dead.is_some_and(|r| r["error"].is_string()), "{stdout}");
    disc
}

#[tokio::test]
async fn a_cluster_found_through_discovery_and_living_without_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ddir = TempDir::new("discovery");
    let daddr = free_ports(1)[0];
    let ds = daddr.to_string();
    // A long ttl first: a member disappears only when it deregisters.
    let mut disc = start_discovery(&ddir, daddr, &["--ttl-ms", "600000"]);
    assert_eq!(disc.wait_ready().await.listen, daddr);
    let d = DiscoveryClient::new(daddr);

    let mut c =
        Cluster::start_with_args(Net::Tcp, &TWO_PROPOSERS, &["--discovery", &ds, "--http", "127.0.0.1:0"]).await;
    let peers = c.peers.clone();

    all_registered_with_their_addresses(&c, &d).await;
    let leader = wait_leader(&c, &d, None, Duration::MAX).await;
    cli_through_discovery_alone(&c, &ds, leader).await;
    results_through_discovery(&c.certs, &ds).await;
    sigterm_deregisters(&mut c, &d).await;
    living_without_discovery(&mut c, disc, &ds, &peers).await;
    let _disc = failover_named(&mut c, &d, &ddir, daddr).await;
}

#[tokio::test]
async fn one_line_errors_without_a_cluster() {
    let dir = TempDir::new("discovery-errors");
    let certs = certs_in(dir.path());
    // --role discovery without --listen.
    let (status, stderr) = run_to_exit(dir.path(), "discovery", &os_args(&["--role", "discovery"])).await;
    assert_eq!(status.code(), Some(2));
    assert!(assert_one_line_error("no --listen", &stderr).contains("--listen"), "{stderr}");
    // A node without --peers.
    let (status, stderr) = run_to_exit(dir.path(), "p", &os_args(&["--id", "proposer-1", "--data-dir", "x"])).await;
    assert_eq!(status.code(), Some(2));
    assert!(assert_one_line_error("no --peers", &stderr).contains("--peers"), "{stderr}");

    let dead = free_ports(1)[0].to_string();
    for (args, code, words) in [
        (vec!["--discovery", &dead, "vote", "--voter", "x", "--candidate", "ada"], 2, "no --peers to fall back on"),
        (vec!["status"], 2, "--http-peers"),
        (vec!["--discovery", &dead, "status"], 2, "no --http-peers to fall back on"),
        (vec!["--http-peers", &format!("learner-1={dead}"), "status"], 2, "no node answered"),
        (vec!["--http-peers", &format!("learner-1={dead}"), "results", "--local", "learner-1"], 4, "unreachable"),
        (vec!["--http-peers", &format!("learner-1={dead}"), "results", "--local", "proposer-1"], 2, "not a learner"),
    ] {
        let (got, stdout, err) = ballot(&certs, &args).await;
        assert_eq!(got, Some(code), "{args:?}: {stdout}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A node whose discovery answers garbage (or nothing) starts, commits and stops as usual.
#[tokio::test]
async fn garbage_from_discovery_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let garbage = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut n = 0u32;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                match n % 3 {
                    0 => {
                        let _ = s.write_all(b"\x00\xffnot http at all\r\n\r\n").await;
                    }
                    1 => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{{{{{").await;
                    }
                    // Silent: the heartbeat's deadline ends it.
                    _ => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    let mut c = Cluster::start_with_args(Net::Tcp, &MEMBERS, &["--discovery", &garbage]).await;
    c.votes(5).await;
    c.check_tally().await;
    c.all_alive().await;
    let id = NodeId::acceptor(1);
    c.node(id).signal(libc::SIGTERM);
    assert!(c.node(id).wait_exit().await.success(), "{}", c.node(id).stderr());
    server.abort();
}
