//! Each server, told to stop, stops accepting, answers the request it already has and
//! returns. Every wait here has a deadline.

use ballot_core::{Config, Learner, MemStorage, NodeId};
use ballot_operator::control::{self, ControlClient, ControlReply, ControlRequest, FaultCommand, FaultSink};
use ballot_operator::discovery::{self, DiscoveryOptions};
use ballot_operator::pages::{self, HttpNode, HttpState};
use ballot_transports::{EventLog, MemNetwork};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// A real learner on an in-memory network of its own.
fn learner() -> ballot_runtime::NodeHandle {
    let id = NodeId::learner(1);
    let net = MemNetwork::new(1, EventLog::new(false));
    let config = Arc::new(Config::new(1, 1, 1, vec!["a".into()]));
    ballot_runtime::spawn_node(
        Learner::new(id, config, Default::default()),
        net.register(id),
        MemStorage::new(),
        ballot_runtime::NodeOptions::seeded(1),
    )
}

/// A shutdown future and the switch that completes it.
fn switch() -> (oneshot::Sender<()>, impl std::future::Future<Output = ()> + Send + 'static) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// Reads an HTTP/1.1 answer until the server closes; the status code and the text.
async fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("no answer in time").unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    (code, text)
}

#[tokio::test]
async fn pages_answer_the_request_in_flight_then_return() {
    // A peer that accepts and says nothing, so `/cluster` waits for the peer deadline.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_at = mute.local_addr().unwrap();
    let (seen_tx, seen_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (held, _) = mute.accept().await.unwrap();
        let _ = seen_tx.send(());
        tokio::time::sleep(WAIT).await;
        drop(held);
    });
    let node = learner();
    let mut state =
        HttpState::new(vec![HttpNode::new(&node)], vec![NodeId::learner(1), NodeId::acceptor(1)], vec![], "mem");
    state.http_peers.insert(NodeId::acceptor(1), mute_at.into());
    state.limits.peer_deadline = Duration::from_millis(300);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let (stop, shutdown) = switch();
    let server = tokio::spawn(pages::serve(listener, state, shutdown));

    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /cluster HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::timeout(WAIT, seen_rx).await.unwrap().unwrap();
    stop.send(()).unwrap();
    let (code, text) = read_answer(&mut s).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("acceptor-1"), "{text}");
    tokio::time::timeout(WAIT, server).await.expect("the server did not return").unwrap();
    assert!(TcpStream::connect(at).await.is_err(), "the server still accepts after shutdown");
}

#[tokio::test]
async fn discovery_answers_the_request_in_flight_then_return() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let (stop, shutdown) = switch();
    let server = tokio::spawn(discovery::serve(listener, DiscoveryOptions::default(), shutdown));

    let body = br#"{"node":"proposer-1","addr":"127.0.0.1:7001"}"#;
    let mut s = TcpStream::connect(at).await.unwrap();
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // "100 Continue" comes when the handler starts reading the body: the request is in flight.
    let mut interim = [0u8; 25];
    tokio::time::timeout(WAIT, s.read_exact(&mut interim)).await.unwrap().unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"), "{:?}", String::from_utf8_lossy(&interim));
    stop.send(()).unwrap();
    s.write_all(body).await.unwrap();
    let (code, text) = read_answer(&mut s).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"ok\":true"), "{text}");
    tokio::time::timeout(WAIT, server).await.expect("the server did not return").unwrap();
    assert!(TcpStream::connect(at).await.is_err(), "the server still accepts after shutdown");
}

/// A fault sink that says when it is called and then waits to be released.
struct Gate {
    called: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl FaultSink for Gate {
    fn apply(&self, _: &FaultCommand) {
        let _ = self.called.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv_timeout(WAIT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_answers_the_request_in_flight_then_returns() {
    let (called_tx, called_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate { called: Mutex::new(called_tx), release: Mutex::new(release_rx) });
    let node = learner();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at: SocketAddr = listener.local_addr().unwrap();
    let (stop, shutdown) = switch();
    let server = tokio::spawn(control::serve(
        listener,
        node.controller(),
        Some(gate as Arc<dyn FaultSink>),
        Default::default(),
        shutdown,
    ));

    let mut c = ControlClient::connect(at, None).await.unwrap();
    let asked = tokio::spawn(async move { c.request(&ControlRequest::Faults(FaultCommand::Heal), WAIT).await });
    tokio::task::spawn_blocking(move || called_rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the request never arrived");
    stop.send(()).unwrap();
    release_tx.send(()).unwrap();
    let reply = tokio::time::timeout(WAIT, asked).await.unwrap().unwrap().unwrap();
    assert_eq!(reply, ControlReply::Ok);
    tokio::time::timeout(WAIT, server).await.expect("the server did not return").unwrap();
    assert!(TcpStream::connect(at).await.is_err(), "the server still accepts after shutdown");
}
