//! Attacks on a tcp endpoint that runs with credentials (mutual TLS), each as a test:
//!
//! - a peer without credentials (plain TCP; TLS with no certificate; TLS with a
//!   certificate of a CA it made itself) sends forged frames, a `Learn` "from acceptor-1"
//!   and a `Prepare` at ballot (u64::MAX, 65535): the handshake is refused and counted,
//!   nothing is delivered, and the endpoint keeps serving its real peers;
//! - a peer with acceptor-3's credentials sends as acceptor-1: each such frame is dropped,
//!   counted as an identity mismatch and closes its connection, while its frames as
//!   acceptor-3 arrive;
//! - the client credential may send as any client-N, never as proposer-1;
//! - a listener that is not the node the dialer means to reach (acceptor-3's certificate
//!   at acceptor-1's address) gets nothing: the dialer refuses it;
//! - silent connections that never finish a handshake hold up nobody, and are closed and
//!   counted at the connect deadline.
//!
//! Every wait has a deadline; no assertion is about how long anything took.

use ballot_core::{AcceptedEntry, Ballot, Command, Message, NodeId};
use ballot_transports::auth::{generate, Credentials, Identity};
use ballot_transports::{wire, Envelope, NetOptions, TcpTransport, Transport, WireStats};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(30);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);
const A1: NodeId = NodeId::acceptor(1);
const A3: NodeId = NodeId::acceptor(3);
const P1: NodeId = NodeId::proposer(1);
const L1: NodeId = NodeId::learner(1);

/// A fresh folder of credentials for the nodes these tests use; removed on drop.
struct Creds(PathBuf);

impl Creds {
    fn new(label: &str) -> Creds {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ballot-tls-test-{}-{n}-{label}", std::process::id()));
        generate(&dir, &[P1, A1, A3, L1]).expect("credentials");
        Creds(dir)
    }
    fn of(&self, who: Identity) -> Arc<Credentials> {
        Arc::new(Credentials::load(&self.0, who).expect("load"))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Creds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn bind(id: NodeId, creds: Option<Arc<Credentials>>, peers: BTreeMap<NodeId, SocketAddr>) -> TcpTransport {
    let opts = NetOptions { credentials: creds, connect_timeout: Duration::from_millis(500), ..NetOptions::default() };
    TcpTransport::bind(id, any(), peers, opts).await.expect("bind")
}

/// The frames an attacker forges: a `Learn` of a vote "from acceptor-1" and a `Prepare`
/// at the highest ballot there is.
fn forged(to: NodeId) -> Vec<Envelope> {
    let vote = Command::Vote {
        request_id: "forged".into(),
        client: NodeId::client(1),
        voter: "mallory".into(),
        candidate: "ada".into(),
    };
    let entry = AcceptedEntry { slot: 1, ballot: Ballot::new(1, 1), value: Arc::new(vec![vote]) };
    vec![
        Envelope::new(A1, to, Message::Learn { entries: vec![entry] }),
        Envelope::new(P1, to, prepare(Ballot::new(u64::MAX, 65535))),
    ]
}

fn prepare(ballot: Ballot) -> Message {
    Message::Prepare { ballot, req: 1, from_slot: 0, to_slot: u64::MAX }
}

fn frames(envs: &[Envelope]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in envs {
        wire::encode_frame_into(e, wire::DEFAULT_MAX_FRAME, &mut out).expect("encode");
    }
    out
}

async fn wait_stats(t: &TcpTransport, what: &str, ok: impl Fn(&WireStats) -> bool) {
    timeout(DEADLINE, async {
        while !ok(&t.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: counters now {:?}", t.stats()));
}

async fn nothing_arrives(t: &mut TcpTransport, what: &str) {
    if let Ok(Some(env)) = timeout(QUIET, t.recv()).await {
        panic!("{what}: {env:?} was delivered");
    }
}

async fn recv(t: &mut TcpTransport, what: &str) -> Envelope {
    timeout(DEADLINE, t.recv()).await.unwrap_or_else(|_| panic!("{what}: nothing arrived")).expect("open")
}

/// The victim still hears its real peers: a message from acceptor-1, sent with
/// acceptor-1's credentials, arrives.
async fn real_peer_gets_through(creds: &Creds, victim: &mut TcpTransport) {
    let peer = bind(A1, Some(creds.of(Identity::Node(A1))), [(L1, victim.local_addr())].into()).await;
    peer.send(Envelope::new(A1, L1, Message::CatchUp { applied: 7 })).unwrap();
    let env = recv(victim, "the real acceptor-1").await;
    assert_eq!((env.from, env.msg), (A1, Message::CatchUp { applied: 7 }));
    // Its transport goes away with its connection in use: the victim is told, in the
    // name the connection's certificate proved.
    drop(peer);
    let notice = recv(victim, "the crash notice").await;
    assert_eq!((notice.from, notice.msg), (A1, Message::PeerDown));
}

/// Waits until the victim closes the connection (reads see its end, or an error).
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(mut s: S, what: &str) {
    timeout(DEADLINE, async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the connection stayed open"));
}

#[tokio::test]
async fn plain_tcp_forgeries_are_refused_at_the_handshake() {
    let creds = Creds::new("plain");
    let mut victim = bind(L1, Some(creds.of(Identity::Node(L1))), BTreeMap::new()).await;
    let mut s = TcpStream::connect(victim.local_addr()).await.unwrap();
    s.write_all(&frames(&forged(L1))).await.unwrap();
    closed_by_peer(s, "plain TCP").await;
    wait_stats(&victim, "the refusal is counted", |s| s.refused_handshake == 1).await;
    nothing_arrives(&mut victim, "plain TCP forgeries").await;
    // An endpoint without credentials is refused the same way.
    let insecure = bind(A1, None, [(L1, victim.local_addr())].into()).await;
    for env in forged(L1) {
        insecure.send(env).unwrap();
    }
    wait_stats(&victim, "the insecure peer's refusal is counted", |s| s.refused_handshake == 2).await;
    nothing_arrives(&mut victim, "an insecure endpoint's frames").await;
    assert_eq!(victim.stats().frames_received, 0);
    real_peer_gets_through(&creds, &mut victim).await;
}

/// A TLS client that trusts the cluster's CA (it is public) and presents `cert` (or no
/// certificate at all).
fn attacker_config(ca_dir: &Path, cert: Option<&Credentials>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca_dir.join("ca.pem")).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    Arc::new(config)
}

/// Dials `addr` in TLS with `config` and writes the forged frames; the victim must close
/// the connection. (In TLS 1.3 the client's side of the handshake may finish before the
/// server has looked at the client's certificate.)
async fn forge_over_tls(config: Arc<rustls::ClientConfig>, addr: SocketAddr, what: &str) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("learner-1").unwrap();
    // An error here is a refusal before the client got to write anything.
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await {
        let _ = tls.write_all(&frames(&forged(L1))).await;
        let _ = tls.flush().await;
        closed_by_peer(tls, what).await;
    }
}

#[tokio::test]
async fn tls_without_a_certificate_of_the_cluster_is_refused() {
    let creds = Creds::new("victim");
    let evil = Creds::new("evil");
    let mut victim = bind(L1, Some(creds.of(Identity::Node(L1))), BTreeMap::new()).await;
    let addr = victim.local_addr();
    forge_over_tls(attacker_config(creds.path(), None), addr, "no client certificate").await;
    wait_stats(&victim, "no certificate: refused", |s| s.refused_handshake == 1).await;
    let self_made = evil.of(Identity::Node(A1));
    forge_over_tls(attacker_config(creds.path(), Some(&self_made)), addr, "a self-made CA's acceptor-1").await;
    wait_stats(&victim, "a self-made CA: refused", |s| s.refused_handshake == 2).await;
    // A whole endpoint on the self-made credentials: it refuses the victim's certificate
    // itself, and the victim counts the aborted handshake.
    let foreign = bind(A1, Some(self_made), [(L1, addr)].into()).await;
    for env in forged(L1) {
        foreign.send(env).unwrap();
    }
    wait_stats(&foreign, "the foreign endpoint's dial fails", |s| s.connect_failures >= 1).await;
    wait_stats(&victim, "the foreign endpoint: refused", |s| s.refused_handshake >= 3).await;
    nothing_arrives(&mut victim, "frames over foreign TLS").await;
    assert_eq!(victim.stats().frames_received, 0);
    real_peer_gets_through(&creds, &mut victim).await;
}

/// Sends `msg` from `sender` through `from` until `to` receives something (a connection
/// the victim closed loses what was written into it; the next send dials again).
async fn deliver(from: &TcpTransport, sender: NodeId, to: &mut TcpTransport, msg: Message) -> Envelope {
    timeout(DEADLINE, async {
        loop {
            let _ = from.send(Envelope::new(sender, to.local(), msg.clone()));
            if let Ok(Some(env)) = timeout(Duration::from_millis(20), to.recv()).await {
                return env;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing from {sender} arrived: {:?} -> {:?}", from.stats(), to.stats()))
}

/// Sends `env` through `from` until `victim` has counted `n` identity mismatches: a lie
/// closes its connection, so the next one may be written into the closed one and lost
/// before the sender dials again.
async fn lie_until_counted(from: &TcpTransport, env: Envelope, victim: &TcpTransport, n: u64) {
    timeout(DEADLINE, async {
        while victim.stats().dropped_identity < n {
            let _ = from.send(env.clone());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("lie {n} was not counted: {:?}", victim.stats()));
}

/// A frame in another node's name is dropped, counted, and closes its connection (its
/// peer holds a key of the cluster and lies with it); the next connection still carries
/// the sender's frames in its own name.
#[tokio::test]
async fn a_node_may_send_only_as_itself() {
    let creds = Creds::new("mismatch");
    let mut victim = bind(L1, Some(creds.of(Identity::Node(L1))), BTreeMap::new()).await;
    let a3 = bind(A3, Some(creds.of(Identity::Node(A3))), [(L1, victim.local_addr())].into()).await;
    for (i, env) in forged(L1).into_iter().enumerate() {
        lie_until_counted(&a3, env, &victim, i as u64 + 1).await;
    }
    let s = victim.stats();
    assert_eq!((s.frames_received, s.refused_handshake), (0, 0), "{s:?}");
    nothing_arrives(&mut victim, "acceptor-3 as acceptor-1").await;
    let env = deliver(&a3, A3, &mut victim, Message::CatchUp { applied: 3 }).await;
    assert_eq!((env.from, env.msg), (A3, Message::CatchUp { applied: 3 }));
    assert!(victim.stats().connections_closed >= 2, "each lie closed its connection: {:?}", victim.stats());
}

#[tokio::test]
async fn a_client_may_send_as_any_client_but_not_as_a_proposer() {
    let creds = Creds::new("client");
    let mut victim = bind(P1, Some(creds.of(Identity::Node(P1))), BTreeMap::new()).await;
    let client = bind(NodeId::client(7), Some(creds.of(Identity::Client)), [(P1, victim.local_addr())].into()).await;
    for want in [NodeId::client(7), NodeId::client(9)] {
        assert_eq!(deliver(&client, want, &mut victim, Message::Hello).await.from, want);
    }
    for (i, lie) in [Message::Hello, prepare(Ballot::new(u64::MAX, 65535))].into_iter().enumerate() {
        lie_until_counted(&client, Envelope::new(P1, P1, lie), &victim, i as u64 + 1).await;
    }
    nothing_arrives(&mut victim, "a client as proposer-1").await;
    assert_eq!(deliver(&client, NodeId::client(8), &mut victim, Message::Hello).await.from, NodeId::client(8));
}

#[tokio::test]
async fn a_dialer_refuses_a_listener_that_is_not_the_node_it_means() {
    let creds = Creds::new("impostor");
    // acceptor-3 listens where proposer-1 believes acceptor-1 is.
    let mut impostor = bind(A3, Some(creds.of(Identity::Node(A3))), BTreeMap::new()).await;
    let p1 = bind(P1, Some(creds.of(Identity::Node(P1))), [(A1, impostor.local_addr())].into()).await;
    p1.send(Envelope::new(P1, A1, prepare(Ballot::new(1, 1)))).unwrap();
    wait_stats(&p1, "the dial is refused", |s| s.connect_failures >= 1 && s.dropped_unreachable >= 1).await;
    assert_eq!(p1.stats().frames_sent, 0);
    nothing_arrives(&mut impostor, "a message meant for acceptor-1").await;
}

#[tokio::test]
async fn silent_handshakes_block_nobody_and_are_closed_at_the_deadline() {
    let creds = Creds::new("silent");
    let mut victim = bind(L1, Some(creds.of(Identity::Node(L1))), BTreeMap::new()).await;
    let addr = victim.local_addr();
    let mut silent = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            // Half a TLS record header: a handshake that starts and stalls.
            s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        }
        silent.push(s);
    }
    real_peer_gets_through(&creds, &mut victim).await;
    wait_stats(&victim, "every silent handshake refused", |s| s.refused_handshake >= 40).await;
    for s in silent {
        closed_by_peer(s, "a silent connection").await;
    }
    real_peer_gets_through(&creds, &mut victim).await;
}

#[tokio::test]
async fn a_node_issued_later_by_the_same_ca_is_trusted_both_ways() {
    let creds = Creds::new("issue");
    let mut victim = bind(L1, Some(creds.of(Identity::Node(L1))), BTreeMap::new()).await;
    let joiner = NodeId::learner(9);
    ballot_transports::auth::issue(creds.path(), Identity::Node(joiner)).expect("issue");
    let mut late = bind(joiner, Some(creds.of(Identity::Node(joiner))), [(L1, victim.local_addr())].into()).await;
    late.send(Envelope::new(joiner, L1, Message::CatchUp { applied: 9 })).unwrap();
    assert_eq!(recv(&mut victim, "from the late node").await.from, joiner);
    victim.set_peer(joiner, late.local_addr());
    victim.send(Envelope::new(L1, joiner, Message::CatchUp { applied: 1 })).unwrap();
    assert_eq!(recv(&mut late, "to the late node").await.from, L1);
    let allow = std::fs::read_to_string(creds.path().join("curve.allow")).unwrap();
    assert!(allow.lines().any(|l| l.starts_with("learner-9 ")), "{allow}");
}
