//! Discovery with credentials: writes need the named node's own token, reads stay open; a
//! leadership claim needs the claimer's own ballot; fakes cannot fill the registry;
//! half-sent requests are closed at the deadline; every refusal is counted on `/metrics`.
//! Each test is an attack that worked before (anyone could register, overwrite or
//! deregister any node; a fake claim with a huge ballot became `/leader`).

use ballot_core::{Ballot, NodeId};
use ballot_operator::access::{Access, Refusal, Refusals};
use ballot_operator::discovery::{serve, DiscoveryClient, DiscoveryError, DiscoveryOptions, Registration};
use ballot_transports::auth::{generate, Credentials, Identity};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A cluster's credentials folder, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new(tag: &str) -> Folder {
        let dir = std::env::temp_dir().join(format!("ballot-disc-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = [NodeId::proposer(1), NodeId::proposer(2), NodeId::acceptor(1), NodeId::learner(1)];
        generate(&dir, &nodes).unwrap();
        Folder(dir)
    }
    fn load(&self, who: Identity) -> Arc<Credentials> {
        Arc::new(Credentials::load(&self.0, who).unwrap())
    }
    fn token(&self, node: NodeId) -> String {
        self.load(Identity::Node(node)).token.clone()
    }
    fn access(&self) -> Access {
        Access::from_credentials(Some(self.load(Identity::Operator))).unwrap()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(opts: DiscoveryOptions) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, opts, std::future::pending()));
    at
}

fn reg(node: NodeId, ballot: Option<(u64, u16)>, leader: bool) -> Registration {
    let mut r = Registration::new(node, SocketAddr::from(([127, 0, 0, 1], 7000 + node.index)));
    r.ballot = ballot.map(|(round, p)| Ballot::new(round, p));
    r.leader = leader;
    r
}

fn refused(e: DiscoveryError, status: u16, says: &str) {
    match &e {
        DiscoveryError::Refused { status: s, reason, .. } => {
            assert_eq!(*s, status, "{e}");
            assert!(reason.starts_with("refused: ") && reason.contains(says), "{e}");
        }
        other => panic!("expected a {status} refusal saying {says:?}, got {other}"),
    }
}

#[tokio::test]
async fn writes_need_the_named_nodes_own_token_and_reads_stay_open() {
    let f = Folder::new("writes");
    let refusals = Refusals::default();
    let at = start(DiscoveryOptions { access: f.access(), refusals: refusals.clone(), ..Default::default() }).await;
    let (p1, p2) = (NodeId::proposer(1), NodeId::proposer(2));
    let anon = DiscoveryClient::new(at);
    let as_p1 = DiscoveryClient::new(at).with_token(f.token(p1));
    let as_p2 = DiscoveryClient::new(at).with_token(f.token(p2));

    refused(anon.register(&reg(p1, None, false)).await.unwrap_err(), 401, "needs the node's token");
    refused(as_p2.register(&reg(p1, None, false)).await.unwrap_err(), 403, "the token is not proposer-1's");
    let operator = DiscoveryClient::new(at).with_token(f.load(Identity::Operator).token.clone());
    refused(operator.register(&reg(p1, None, false)).await.unwrap_err(), 403, "not proposer-1's");
    let client = DiscoveryClient::new(at).with_token(f.load(Identity::Client).token.clone());
    refused(client.register(&reg(NodeId::client(3), None, false)).await.unwrap_err(), 403, "only cluster nodes");

    as_p1.register(&reg(p1, Some((3, 1)), true)).await.unwrap();
    as_p2.register(&reg(p2, Some((2, 2)), false)).await.unwrap();
    // Nobody deregisters another node, or overwrites it.
    refused(as_p2.deregister(p1).await.unwrap_err(), 403, "not proposer-1's");
    refused(anon.deregister(p1).await.unwrap_err(), 401, "needs the node's token");
    refused(as_p2.register(&reg(p1, Some((9, 1)), true)).await.unwrap_err(), 403, "not proposer-1's");

    // Reads need nothing.
    let members: Vec<NodeId> = anon.members().await.unwrap().iter().map(|m| m.node).collect();
    assert_eq!(members, vec![p1, p2]);
    assert_eq!(anon.leader().await.unwrap().unwrap().ballot, Some(Ballot::new(3, 1)));
    assert!(as_p1.deregister(p1).await.unwrap(), "a node deregisters itself");

    assert_eq!(refusals.count("discovery", Refusal::NoCredential), 2);
    assert_eq!(refusals.count("discovery", Refusal::BadToken), 4);
    assert_eq!(refusals.count("discovery", Refusal::WrongIdentity), 1);
    let (status, text) = DiscoveryClient::get_raw(&at.into(), "/metrics", Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("ballot_operator_refused_total{server=\"discovery\",reason=\"bad_token\"} 4"), "{text}");
}

#[tokio::test]
async fn a_leadership_claim_needs_the_claimers_own_ballot() {
    let f = Folder::new("claims");
    for access in [Access::Open, f.access()] {
        let refusals = Refusals::default();
        let at = start(DiscoveryOptions { access, refusals: refusals.clone(), ..Default::default() }).await;
        // (Open access: the folder's tokens go along and are not checked.)
        let as_p1 = DiscoveryClient::new(at).with_token(f.token(NodeId::proposer(1)));
        let as_p2 = DiscoveryClient::new(at).with_token(f.token(NodeId::proposer(2)));
        as_p1.register(&reg(NodeId::proposer(1), Some((3, 1)), true)).await.unwrap();
        // proposer-2 claims leadership with a huge ballot that is proposer-1's, then with none.
        let e = as_p2.register(&reg(NodeId::proposer(2), Some((u64::MAX, 1)), true)).await.unwrap_err();
        refused(e, 400, "which is proposer-1's");
        let e = as_p2.register(&reg(NodeId::proposer(2), None, true)).await.unwrap_err();
        refused(e, 400, "without a ballot");
        assert_eq!(as_p1.leader().await.unwrap().unwrap().node, NodeId::proposer(1), "the fake claim is not believed");
        assert_eq!(refusals.count("discovery", Refusal::ForeignBallot), 2);
    }
}

#[tokio::test]
async fn fakes_cannot_fill_the_registry() {
    let f = Folder::new("fill");
    let at = start(DiscoveryOptions { access: f.access(), max_members: 4, ..Default::default() }).await;
    let fake = DiscoveryClient::new(at).with_token("00".repeat(32));
    for i in 1..=50u16 {
        let e = fake.register(&reg(NodeId::learner(100 + i), None, false)).await.unwrap_err();
        refused(e, 403, "the token is not");
    }
    for node in [NodeId::proposer(1), NodeId::proposer(2), NodeId::acceptor(1), NodeId::learner(1)] {
        DiscoveryClient::new(at).with_token(f.token(node)).register(&reg(node, None, false)).await.unwrap();
    }
    assert_eq!(DiscoveryClient::new(at).members().await.unwrap().len(), 4);
}

/// Sends `bytes` and waits until the server closes the connection (a hang guard, not a
/// timing check); returns what it answered.
async fn until_closed(at: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the server never closed a half-sent request")
        .unwrap_or(0);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn half_sent_requests_are_closed_at_the_deadline() {
    let refusals = Refusals::default();
    let short = Duration::from_millis(200);
    let opts = DiscoveryOptions {
        header_deadline: short,
        body_deadline: short,
        connection_lifetime: Duration::from_secs(2),
        refusals: refusals.clone(),
        ..Default::default()
    };
    let at = start(opts).await;
    // Nothing; half a request line; a head without its end.
    for head in ["", "POST /regis", "POST /register HTTP/1.1\r\nHost: x\r\n"] {
        let answer = until_closed(at, head.as_bytes()).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{head:?}: {answer:?}");
    }
    // A whole request on a kept-alive connection, then half of the next one.
    let answer = until_closed(at, b"GET /members HTTP/1.1\r\nHost: x\r\n\r\nGET /mem").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // A whole head announcing a body that never comes whole.
    let half = "POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"node\":";
    let answer = until_closed(at, half.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(refusals.count("discovery", Refusal::Timeout) >= 5, "{refusals:?}");
}
