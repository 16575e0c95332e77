//! The discovery service and its client: registration, leader choice and expiry, hostile
//! input, deadlines and garbage answers, heartbeats.
//!
//! Expiry is tested on tokio's paused clock (the registry) and on a [`ManualClock`] (the
//! HTTP server on real sockets), so no assertion depends on how fast this machine is.

use ballot_core::{Ballot, NodeId};
use ballot_operator::discovery::{
    parse_ballot, serve, spawn_heartbeats, spawn_heartbeats_async, Clock, DiscoveryClient, DiscoveryOptions,
    ManualClock, Registration, Registry, DEFAULT_TTL, MAX_BODY,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn proposer(i: u16, ballot: Option<(u64, u16)>, leader: bool) -> Registration {
    Registration {
        node: NodeId::proposer(i),
        addr: addr(7000 + i),
        http: Some(addr(8000 + i)),
        ballot: ballot.map(|(r, p)| Ballot::new(r, p)),
        leader,
    }
}

/// A discovery server on a free port with a clock the test moves.
async fn start(clock: &ManualClock) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let opts = DiscoveryOptions { clock: clock.clock(), ..DiscoveryOptions::default() };
    let task = tokio::spawn(async move {
        serve(listener, opts, std::future::pending()).await;
    });
    (at, task)
}

/// Sends `request` as is and returns the status and body of the answer (bounded wait).
async fn raw(at: SocketAddr, request: &[u8]) -> (u16, String) {
    let exchange = async {
        let mut s = TcpStream::connect(at).await.unwrap();
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("no answer in 10 s");
    let text = String::from_utf8_lossy(&out).to_string();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn post(at: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(at, req.as_bytes()).await
}

async fn get(at: SocketAddr, path: &str) -> (u16, String) {
    raw(at, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await
}

/// An error body: JSON with one `error` line.
fn assert_error_body(body: &str, contains: &str) {
    let v: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("no error field: {body}"));
    assert!(!msg.contains('\n'), "error over several lines: {msg:?}");
    assert!(msg.contains(contains), "{msg:?} does not say {contains:?}");
}

fn leader_of(reg: &Registry, now: Instant) -> Option<NodeId> {
    reg.leader(now).map(|m| m.node)
}

#[tokio::test(start_paused = true)]
async fn registry_on_paused_time_names_the_highest_live_leader_claim() {
    let clock = Clock::tokio();
    let mut reg = Registry::new(DEFAULT_TTL, 64);
    reg.register(proposer(1, Some((5, 1)), true), clock.now()).unwrap();
    reg.register(proposer(2, Some((4, 2)), true), clock.now()).unwrap();
    reg.register(proposer(3, Some((3, 3)), true), clock.now()).unwrap();
    // A follower that saw a higher ballot does not claim leadership: never named.
    reg.register(proposer(4, Some((9, 4)), false), clock.now()).unwrap();
    assert_eq!(leader_of(&reg, clock.now()), Some(NodeId::proposer(1)));

    // Proposer 1 dies; the others keep beating.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(1)).await;
        for r in [proposer(2, Some((4, 2)), true), proposer(3, Some((3, 3)), true), proposer(4, Some((9, 4)), false)] {
            reg.register(r, clock.now()).unwrap();
        }
    }
    tokio::time::advance(Duration::from_secs(1) - MS).await;
    assert_eq!(leader_of(&reg, clock.now()), Some(NodeId::proposer(1)), "named until the ttl");
    assert_eq!(reg.members(clock.now()).len(), 4);
    tokio::time::advance(MS).await;
    assert_eq!(leader_of(&reg, clock.now()), Some(NodeId::proposer(2)), "never past the ttl");
    let members: Vec<NodeId> = reg.members(clock.now()).iter().map(|m| m.node).collect();
    assert_eq!(members, vec![NodeId::proposer(2), NodeId::proposer(3), NodeId::proposer(4)]);

    // Everyone silent: no leader at all, nobody listed.
    tokio::time::advance(DEFAULT_TTL).await;
    assert_eq!(reg.leader(clock.now()), None);
    assert!(reg.members(clock.now()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn registry_is_bounded_and_drops_expired_entries_on_write() {
    let clock = Clock::tokio();
    let mut reg = Registry::new(Duration::from_secs(3), 2);
    reg.register(proposer(1, None, false), clock.now()).unwrap();
    reg.register(proposer(2, None, false), clock.now()).unwrap();
    let full = reg.register(proposer(3, None, false), clock.now()).unwrap_err();
    assert!(full.to_string().contains("proposer-3"), "{full}");
    // A refresh of a known member is always accepted.
    reg.register(proposer(2, Some((1, 2)), true), clock.now()).unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    reg.register(proposer(3, None, false), clock.now()).unwrap();
    assert_eq!(reg.members(clock.now()).len(), 1);
    // A leader claim without a ballot, or with another proposer's, is never believed
    // (the server refuses it at registration; the registry does not believe it either).
    reg.register(proposer(1, None, true), clock.now()).unwrap();
    assert_eq!(leader_of(&reg, clock.now()), None);
    reg.register(proposer(1, Some((99, 2)), true), clock.now()).unwrap();
    assert_eq!(leader_of(&reg, clock.now()), None);
    reg.register(proposer(1, Some((2, 1)), true), clock.now()).unwrap();
    assert_eq!(leader_of(&reg, clock.now()), Some(NodeId::proposer(1)));
}

#[test]
fn ballots_parse_as_they_print() {
    assert_eq!(parse_ballot("3.1"), Ok(Ballot::new(3, 1)));
    assert_eq!(parse_ballot(&Ballot::new(12, 7).to_string()), Ok(Ballot::new(12, 7)));
    for bad in ["", "3", "3.", ".1", "a.1", "3.1.1", "-3.1", "+3.1", "3.99999", "3 .1"] {
        assert!(parse_ballot(bad).is_err(), "{bad:?} parsed");
    }
}

#[tokio::test]
async fn register_then_members_and_leader() {
    let clock = ManualClock::new();
    let (at, _server) = start(&clock).await;
    let client = DiscoveryClient::new(at);
    assert_eq!(client.leader().await.unwrap(), None);

    client.register(&proposer(1, Some((3, 1)), true)).await.unwrap();
    client.register(&proposer(2, Some((3, 1)), false)).await.unwrap();
    client.register(&Registration::new(NodeId::acceptor(1), addr(7101))).await.unwrap();
    client.register(&Registration::new(NodeId::learner(1), addr(7201))).await.unwrap();
    clock.advance(Duration::from_millis(250));

    let members = client.members().await.unwrap();
    let names: Vec<String> = members.iter().map(|m| m.node.to_string()).collect();
    assert_eq!(names, ["proposer-1", "proposer-2", "acceptor-1", "learner-1"]);
    assert_eq!(members[0].addr, addr(7001));
    assert_eq!(members[0].http, Some(addr(8001)));
    assert_eq!(members[0].ballot, Some(Ballot::new(3, 1)));
    assert!(members[0].leader && !members[1].leader);
    assert_eq!(members[2].http, None);
    assert!(members.iter().all(|m| m.last_seen_ms_ago == 250));

    let leader = client.leader().await.unwrap().expect("a leader");
    assert_eq!(leader.node, NodeId::proposer(1));
    assert_eq!(leader.addr, addr(7001));

    // The JSON itself, as an operator's curl sees it.
    let (status, body) = get(at, "/members").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ttl_ms"], 3000);
    assert_eq!(v["members"][2]["node"], "acceptor-1");
    assert_eq!(v["members"][2]["role"], "acceptor");
    assert_eq!(v["members"][2]["addr"], "127.0.0.1:7101");
    assert_eq!(v["members"][2]["last_seen_ms_ago"], 250);
    let (status, body) = get(at, "/leader").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["node"].as_str(), v["ballot"].as_str(), v["http"].as_str()),
        (Some("proposer-1"), Some("3.1"), Some("127.0.0.1:8001"))
    );

    // A heartbeat is a register again, by either route; the minimal body is node + addr.
    let (status, _) = post(at, "/heartbeat", r#"{"node":"learner-2","addr":"[::1]:7202"}"#).await;
    assert_eq!(status, 200);
    assert!(client.members().await.unwrap().iter().any(|m| m.node == NodeId::learner(2)));
}

#[tokio::test]
async fn a_silent_leader_expires_after_the_ttl_and_the_highest_live_claim_leads() {
    let clock = ManualClock::new();
    let (at, _server) = start(&clock).await;
    let client = DiscoveryClient::new(at);
    let beat = |c: DiscoveryClient| async move {
        c.register(&proposer(2, Some((4, 2)), true)).await.unwrap();
        c.register(&proposer(3, Some((3, 3)), true)).await.unwrap();
        c.register(&proposer(4, Some((9, 4)), false)).await.unwrap();
    };
    client.register(&proposer(1, Some((5, 1)), true)).await.unwrap();
    beat(client.clone()).await;
    assert_eq!(client.leader().await.unwrap().unwrap().node, NodeId::proposer(1));

    // Proposer 1 goes silent; the others beat every second.
    clock.advance(Duration::from_secs(1));
    beat(client.clone()).await;
    clock.advance(Duration::from_secs(1));
    beat(client.clone()).await;
    clock.advance(Duration::from_secs(1) - MS);
    let still = client.leader().await.unwrap().unwrap();
    assert_eq!((still.node, still.last_seen_ms_ago), (NodeId::proposer(1), 2999));
    clock.advance(MS);
    assert_eq!(client.leader().await.unwrap().unwrap().node, NodeId::proposer(2));
    assert!(client.members().await.unwrap().iter().all(|m| m.node != NodeId::proposer(1)));

    // It comes back with its (still highest) ballot: it leads again.
    client.register(&proposer(1, Some((5, 1)), true)).await.unwrap();
    assert_eq!(client.leader().await.unwrap().unwrap().node, NodeId::proposer(1));

    // Everyone silent: 404 with a JSON error, and the client says None.
    clock.advance(DEFAULT_TTL);
    assert_eq!(client.leader().await.unwrap(), None);
    let (status, body) = get(at, "/leader").await;
    assert_eq!(status, 404);
    assert_error_body(&body, "claims leadership");
    assert!(client.members().await.unwrap().is_empty());
}

#[tokio::test]
async fn deregister_forgets_a_member() {
    let clock = ManualClock::new();
    let (at, _server) = start(&clock).await;
    let client = DiscoveryClient::new(at);
    client.register(&proposer(1, Some((1, 1)), true)).await.unwrap();
    client.register(&Registration::new(NodeId::acceptor(2), addr(7102))).await.unwrap();
    assert!(client.deregister(NodeId::proposer(1)).await.unwrap());
    assert!(!client.deregister(NodeId::proposer(1)).await.unwrap(), "already gone");
    assert_eq!(client.leader().await.unwrap(), None);
    let names: Vec<NodeId> = client.members().await.unwrap().iter().map(|m| m.node).collect();
    assert_eq!(names, vec![NodeId::acceptor(2)]);
    let (status, body) = post(at, "/deregister", r#"{"node":"nobody"}"#).await;
    assert_eq!(status, 400);
    assert_error_body(&body, "not a node name");
}

#[tokio::test]
async fn hostile_requests_get_one_line_errors_and_the_server_keeps_serving() {
    let clock = ManualClock::new();
    let (at, _server) = start(&clock).await;
    let bad_bodies: &[(&str, &str)] = &[
        ("not json at all", "not the expected JSON"),
        ("", "not the expected JSON"),
        ("[1,2,3]", "not the expected JSON"),
        (r#"{"node":"proposer-1"}"#, "missing field `addr`"),
        (r#"{"node":7,"addr":"127.0.0.1:1"}"#, "not the expected JSON"),
        (r#"{"node":"voter-1","addr":"127.0.0.1:1"}"#, "not a node name"),
        (r#"{"node":"proposer-0","addr":"127.0.0.1:1"}"#, "not a node name"),
        (r#"{"node":"proposer-1","addr":"localhost:7001"}"#, "not an address"),
        (r#"{"node":"proposer-1","addr":"127.0.0.1:99999"}"#, "not an address"),
        (r#"{"node":"proposer-1","addr":"127.0.0.1:1","http":"nope"}"#, "http 'nope' is not an address"),
        (r#"{"node":"proposer-1","addr":"127.0.0.1:1","ballot":"x.1"}"#, "not a ballot"),
        (r#"{"node":"proposer-1","addr":"127.0.0.1:1","role":"acceptor"}"#, "does not match"),
        (r#"{"node":"proposer-1","addr":"127.0.0.1:1","role":"king"}"#, "not a role"),
        (r#"{"node":"acceptor-1","addr":"127.0.0.1:1","leader":true}"#, "only a proposer can lead"),
        (r#"{"node":"proposer-1\n\u001b[31m","addr":"127.0.0.1:1"}"#, "'proposer-1\\n\\u{1b}[31m' is not a node name"),
    ];
    for (body, says) in bad_bodies {
        for path in ["/register", "/heartbeat"] {
            let (status, answer) = post(at, path, body).await;
            assert_eq!(status, 400, "{path} {body:?}: {answer}");
            assert_error_body(&answer, says);
        }
    }

    // Over the limit: a body a little over it (read to its end, then refused), and one
    // that only declares a huge length.
    let big = format!(r#"{{"node":"proposer-1","addr":"127.0.0.1:1","pad":"{}"}}"#, "x".repeat(MAX_BODY));
    let (status, answer) = post(at, "/register", &big).await;
    assert_eq!(status, 413);
    assert_error_body(&answer, "byte limit");
    let (status, answer) =
        raw(at, b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(status, 413);
    assert_error_body(&answer, "byte limit");

    // Unknown paths, wrong methods.
    let (status, answer) = get(at, "/nope").await;
    assert_eq!(status, 404);
    assert_error_body(&answer, "no such path");
    let (status, answer) = post(at, "/leader", "{}").await;
    assert_eq!(status, 405);
    assert_error_body(&answer, "wrong method");
    let (status, answer) = get(at, "/register").await;
    assert_eq!(status, 405);
    assert_error_body(&answer, "wrong method");

    // Bytes that are not HTTP: the connection ends; nothing else is affected.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(&[0u8, 0xff, 0x13, 0x37, b'\r', b'\n', b'\r', b'\n']).await.unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await.unwrap().ok();

    // A connection that sends half a request and stalls holds nobody else up.
    let mut stalled = TcpStream::connect(at).await.unwrap();
    stalled.write_all(b"POST /register HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"no").await.unwrap();

    let client = DiscoveryClient::new(at);
    client.register(&proposer(1, Some((1, 1)), true)).await.unwrap();
    assert_eq!(client.leader().await.unwrap().unwrap().node, NodeId::proposer(1));
    let names: Vec<NodeId> = client.members().await.unwrap().iter().map(|m| m.node).collect();
    assert_eq!(names, vec![NodeId::proposer(1)], "nothing bad was registered");
    drop(stalled);
}

/// A server that accepts and then says nothing.
async fn mute_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    at
}

#[tokio::test(start_paused = true)]
async fn the_client_gives_up_at_its_deadline_on_a_mute_server() {
    let at = mute_server().await;
    let client = DiscoveryClient::new(at);
    let started = Instant::now();
    let err = client.members().await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.to_string(), format!("discovery at {at} did not answer within 1s"));
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(2), "{waited:?} (virtual)");

    let started = Instant::now();
    let err = client.register(&proposer(1, None, false)).await.unwrap_err();
    assert!(err.to_string().ends_with("did not answer within 1s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let short = client.clone().with_deadline(Duration::from_millis(200));
    let err = short.leader().await.unwrap_err();
    assert_eq!(err.to_string(), format!("discovery at {at} did not answer within 200ms"));
}

/// A server that reads a request, answers `answer` and closes.
async fn canned_server(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    at
}

#[tokio::test]
async fn the_client_reports_a_garbage_answer_in_one_line() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 and more\n\n".to_vec(), "not HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello there".to_vec(), "hello there"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"ttl_ms\":".to_vec(), "cut short"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n".to_vec(), "Content-Length"),
        (b"HTTP/1.1 banana\r\n\r\n".to_vec(), "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n".to_vec(), "byte limit"),
        (b"".to_vec(), "closed without an answer"),
    ];
    for (answer, says) in cases {
        let at = canned_server(answer).await;
        let err = DiscoveryClient::new(at).members().await.unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with(&format!("discovery at {at} answered garbage: ")), "{line}");
        assert!(line.contains(says), "{line:?} does not say {says:?}");
        assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    }

    // Valid JSON naming a bad member is garbage too; an endless answer is cut at the limit.
    let body = br#"{"ttl_ms":1,"members":[{"node":"boss-1","role":"x","addr":"1","last_seen_ms_ago":0}]}"#;
    let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend_from_slice(body);
    let err = DiscoveryClient::new(canned_server(answer).await).members().await.unwrap_err();
    assert!(err.to_string().contains("answered garbage: 'boss-1' is not a node name"), "{err}");
    let mut endless = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    endless.extend(vec![b'x'; 5 << 20]);
    let err = DiscoveryClient::new(canned_server(endless).await)
        .with_deadline(Duration::from_secs(30))
        .members()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("byte limit"), "{err}");

    // A refusal carries the server's one-line reason; nobody listening says so.
    let refusal = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 17\r\n\r\n{\"error\":\"full\"}\n".to_vec();
    let at = canned_server(refusal).await;
    let err = DiscoveryClient::new(at).register(&proposer(1, None, false)).await.unwrap_err();
    assert_eq!(err.to_string(), format!("discovery at {at} refused the request (503): full"));
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let err = DiscoveryClient::new(closed).leader().await.unwrap_err();
    assert!(err.to_string().starts_with(&format!("discovery at {closed} could not be reached: ")), "{err}");
}

#[tokio::test]
async fn heartbeats_keep_a_node_listed_with_fresh_information() {
    let clock = ManualClock::new();
    let (at, _server) = start(&clock).await;
    let client = DiscoveryClient::new(at);
    let round = Arc::new(AtomicU64::new(1));
    let r = round.clone();
    let beats = spawn_heartbeats(
        client.clone(),
        move || proposer(1, Some((r.fetch_add(1, Ordering::SeqCst), 1)), true),
        Duration::from_millis(10),
    );
    // Wait (bounded) until a later beat has replaced the first one.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Some(m)) = client.leader().await {
                if m.ballot.is_some_and(|b| b.round >= 3) {
                    return m;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("heartbeats never refreshed the registration");
    assert_eq!(seen.node, NodeId::proposer(1));

    // Stopped: the node expires after the ttl of the manual clock.
    beats.abort();
    let _ = beats.await;
    clock.advance(DEFAULT_TTL);
    assert_eq!(client.leader().await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_go_on_while_discovery_is_down() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mute = mute_server().await;
    for at in [dead, mute] {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let beats = spawn_heartbeats(
            DiscoveryClient::new(at),
            move || {
                c.fetch_add(1, Ordering::SeqCst);
                proposer(1, None, false)
            },
            Duration::from_secs(1),
        );
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert!(!beats.is_finished(), "the heartbeat task stopped");
        let n = calls.load(Ordering::SeqCst);
        assert!(n >= 3, "only {n} beats in 5.5 s (virtual) towards {at}");
        beats.abort();
    }
}

#[tokio::test]
async fn async_heartbeats_skip_a_beat_without_information() {
    let clock = ManualClock::new();
    let (at, _server) = start(&clock).await;
    let client = DiscoveryClient::new(at);
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    // The node "answers its status" only from the fourth beat on.
    let beats = spawn_heartbeats_async(
        client.clone(),
        move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { (n >= 3).then(|| Registration::new(NodeId::learner(1), addr(7201))) }
        },
        Duration::from_millis(10),
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.members().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("never registered");
    assert!(calls.load(Ordering::SeqCst) >= 4, "registered before the source had information");
    beats.abort();
}
