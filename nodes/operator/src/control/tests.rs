//! The control channel against a real learner: requests round-trip, bad frames close
//! only their connection.

use super::*;
use crate::access::Access;
use ballot_core::{Config, Learner, MemStorage};
use ballot_transports::{EventLog, MemNetwork};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A real learner on an in-memory network of its own, behind the control channel.
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

struct Recorded(Mutex<Vec<FaultCommand>>);
impl FaultSink for Recorded {
    fn apply(&self, cmd: &FaultCommand) {
        self.0.lock().unwrap().push(cmd.clone());
    }
}

#[tokio::test]
async fn status_applied_and_faults_round_trip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = learner();
    let sink = Arc::new(Recorded(Mutex::new(Vec::new())));
    tokio::spawn(serve(
        listener,
        node.controller(),
        Some(sink.clone() as Arc<dyn FaultSink>),
        ControlOptions::default(),
        std::future::pending(),
    ));
    let mut c = ControlClient::connect(addr, None).await.unwrap();
    let d = Duration::from_secs(10);
    assert_eq!(c.request(&ControlRequest::Ping, d).await.unwrap(), ControlReply::Ok);
    match c.request(&ControlRequest::Status, d).await.unwrap() {
        ControlReply::Status(s) => assert_eq!((s.id, s.applied), (Some(NodeId::learner(1)), Some(0))),
        other => panic!("{other:?}"),
    }
    match c.request(&ControlRequest::Applied { after: 4, max: 10 }, d).await.unwrap() {
        ControlReply::Applied(v) => assert!(v.is_empty(), "a new learner has applied nothing: {v:?}"),
        other => panic!("{other:?}"),
    }
    let cmd = FaultCommand::Isolate(NodeId::acceptor(2));
    assert_eq!(c.request(&ControlRequest::Faults(cmd.clone()), d).await.unwrap(), ControlReply::Ok);
    // A control client is untrusted: a command out of range is refused, never applied.
    for bad in [
        FaultCommand::DropRate(1.5),
        FaultCommand::DuplicateRate(f64::NAN),
        FaultCommand::Delay { min_ms: 9, max_ms: 1 },
    ] {
        match c.request(&ControlRequest::Faults(bad.clone()), d).await.unwrap() {
            ControlReply::Error(e) => assert!(e.starts_with("fault refused: "), "{e}"),
            other => panic!("{bad:?} was answered {other:?}"),
        }
    }
    assert_eq!(*sink.0.lock().unwrap(), vec![cmd], "only the valid command reached the sink");
    assert_eq!(c.request(&ControlRequest::ClockRate { factor: 2.5 }, d).await.unwrap(), ControlReply::Ok);
    for bad in [0.0, -1.0, 10.5, f64::NAN, f64::INFINITY] {
        match c.request(&ControlRequest::ClockRate { factor: bad }, d).await.unwrap() {
            ControlReply::Error(e) => assert!(e.starts_with("fault refused: clock_rate takes a factor"), "{e}"),
            other => panic!("clock rate {bad} was answered {other:?}"),
        }
    }
}

/// Reads what the server sends until it closes the connection (a hang guard, not a
/// timing check), and decodes the one frame it sent, if any.
async fn until_closed(mut raw: TcpStream) -> Option<ControlReply> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), raw.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection")
        .unwrap_or(0);
    let len = u32::from_be_bytes(got.get(..4)?.try_into().ok()?) as usize;
    rmp_serde::from_slice(got.get(4..4 + len)?).ok()
}

fn refused(reply: Option<ControlReply>, says: &str) {
    match reply {
        Some(ControlReply::Error(e)) => {
            assert!(e.starts_with("refused: ") && e.contains(says) && !e.contains('\n'), "{e}");
        }
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

async fn spawn_server(opts: ControlOptions) -> (SocketAddr, ballot_runtime::NodeHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = learner();
    tokio::spawn(serve(listener, node.controller(), None, opts, std::future::pending()));
    (addr, node)
}

#[tokio::test]
async fn garbage_on_the_control_port_closes_only_that_connection() {
    let (addr, _node) = spawn_server(ControlOptions::default()).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
    refused(until_closed(raw).await, "a frame of 4294967295 bytes, over the 65536 byte limit");
    let mut c = ControlClient::connect(addr, None).await.unwrap();
    assert_eq!(c.request(&ControlRequest::Ping, Duration::from_secs(10)).await.unwrap(), ControlReply::Ok);
}

/// A credentials folder for one acceptor, and the operator's and the acceptor's tokens.
fn credentials(tag: &str) -> (std::path::PathBuf, Access, String, String) {
    use ballot_transports::auth::{generate, Credentials, Identity};
    let dir = std::env::temp_dir().join(format!("ballot-control-{tag}-{}", std::process::id()));
    generate(&dir, &[NodeId::acceptor(1)]).unwrap();
    let op = Credentials::load(&dir, Identity::Operator).unwrap();
    let a1 = Credentials::load(&dir, Identity::Node(NodeId::acceptor(1))).unwrap();
    let token = op.token.clone();
    (dir, Access::from_credentials(Some(Arc::new(op))).unwrap(), token, a1.token)
}

#[tokio::test]
async fn a_checking_channel_answers_only_the_operators_token() {
    let (dir, access, operator, acceptor) = credentials("auth");
    let opts = ControlOptions::with_access(access);
    let refusals = opts.refusals.clone();
    let (addr, _node) = spawn_server(opts).await;
    let d = Duration::from_secs(10);

    // No credential: the first request is refused in one line and the connection closed.
    let mut c = ControlClient::connect(addr, None).await.unwrap();
    refused(Some(c.request(&ControlRequest::Status, d).await.unwrap()), "the first frame must be Auth");
    assert!(c.request(&ControlRequest::Ping, d).await.is_err(), "the connection is closed after a refusal");

    // A node's own (valid) token names the node: not the operator.
    let wrong = ControlRequest::Auth { identity: "acceptor-1".into(), token: Token(acceptor.clone()) };
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&frame(&wrong)).await.unwrap();
    refused(until_closed(raw).await, "acceptor-1 may not use the control channel");

    // The operator's name with the acceptor's token, or with garbage.
    for token in [acceptor, "00".repeat(32), "not hex".into()] {
        let e = ControlClient::connect(addr, Some(&token)).await.err().expect("a wrong token is refused");
        assert!(e.to_string().contains("refused the connection: refused: the token is not operator's"), "{e}");
    }

    // The operator's token: every request is answered.
    let mut c = ControlClient::connect(addr, Some(&operator)).await.unwrap();
    assert_eq!(c.request(&ControlRequest::Ping, d).await.unwrap(), ControlReply::Ok);
    assert!(matches!(c.request(&ControlRequest::Status, d).await.unwrap(), ControlReply::Status(_)));
    assert_eq!(refusals.count("control", crate::access::Refusal::NoCredential), 1);
    assert_eq!(refusals.count("control", crate::access::Refusal::WrongIdentity), 1);
    assert_eq!(refusals.count("control", crate::access::Refusal::BadToken), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `req` as one frame on the wire.
fn frame(req: &ControlRequest) -> Vec<u8> {
    let body = rmp_serde::to_vec(req).unwrap();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

#[tokio::test]
async fn half_sent_frames_and_silent_callers_are_closed_at_the_deadline() {
    let (dir, access, operator, _) = credentials("deadline");
    for access in [Access::Open, access] {
        let opts = ControlOptions { frame_deadline: Duration::from_millis(200), ..ControlOptions::with_access(access) };
        let refusals = opts.refusals.clone();
        let (addr, _node) = spawn_server(opts).await;
        // Nothing at all; half a length; a length and part of its body.
        let mut held = Vec::new();
        for bytes in [&[][..], &[0, 0][..], &[0, 0, 0, 100, 1, 2, 3][..]] {
            let mut raw = TcpStream::connect(addr).await.unwrap();
            raw.write_all(bytes).await.unwrap();
            held.push(raw);
        }
        for raw in held {
            refused(until_closed(raw).await, "within the deadline");
        }
        assert_eq!(refusals.count("control", crate::access::Refusal::Timeout), 3);
        // Once a request was answered, a frame begun and not finished is closed too.
        let mut raw = TcpStream::connect(addr).await.unwrap();
        // (An open channel answers an `Auth` too.)
        let first = ControlRequest::Auth { identity: CONTROL_IDENTITY.into(), token: Token(operator.clone()) };
        raw.write_all(&frame(&first)).await.unwrap();
        raw.write_all(&[0, 0, 0, 50, 1]).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), raw.read_to_end(&mut got)).await.expect("never closed").unwrap();
        assert_eq!(refusals.count("control", crate::access::Refusal::Timeout), 4);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let opts = ControlOptions { idle_timeout: Duration::from_millis(200), ..ControlOptions::default() };
    let (addr, _node) = spawn_server(opts).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&frame(&ControlRequest::Ping)).await.unwrap();
    assert_eq!(until_closed(raw).await, Some(ControlReply::Ok), "answered, then closed when idle");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let opts = ControlOptions { max_connections: 2, ..ControlOptions::default() };
    let refusals = opts.refusals.clone();
    let (addr, _node) = spawn_server(opts).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = ControlClient::connect(addr, None).await.unwrap();
        assert_eq!(c.request(&ControlRequest::Ping, Duration::from_secs(10)).await.unwrap(), ControlReply::Ok);
        held.push(c);
    }
    let over = TcpStream::connect(addr).await.unwrap();
    assert_eq!(until_closed(over).await, None, "closed without a word");
    assert_eq!(refusals.count("control", crate::access::Refusal::TooManyConnections), 1);
    // A slot frees when a connection closes.
    drop(held.pop());
    loop {
        let mut c = ControlClient::connect(addr, None).await.unwrap();
        if c.request(&ControlRequest::Ping, Duration::from_secs(10)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
