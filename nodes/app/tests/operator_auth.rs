//! `--certs` on real processes: a node's control channel answers only the operator's
//! token, a discovery server takes each node's registration only with its own token, and
//! the node heart-beats with it; every refusal shows on the node's `/metrics`.
//!
//! Every wait is bounded by `DEADLINE` (only so that a broken build fails instead of
//! hanging); nothing asserts how long anything took. Every process is killed on drop.
#![cfg(unix)]

mod common;
use common::*;

use ballot_core::NodeId;
use ballot_operator::control::{ControlClient, ControlReply, ControlRequest, CONTROL_DEADLINE};
use ballot_operator::discovery::{DiscoveryClient, DiscoveryError, Registration};
use ballot_transports::auth::{generate, Credentials, Identity};
use std::net::SocketAddr;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_certs_control_and_discovery_take_only_their_tokens() {
    let dir = TempDir::new("opauth");
    let certs = dir.path().join("certs");
    let (learner, others) = (NodeId::learner(1), [NodeId::proposer(1), NodeId::acceptor(1)]);
    generate(&certs, &[others[0], others[1], learner]).unwrap();
    let token = |who| Credentials::load(&certs, who).unwrap().token;
    let certs_arg = certs.to_str().unwrap().to_string();

    let [disc_addr, node_addr, p_addr, a_addr]: [SocketAddr; 4] = free_ports(4).try_into().unwrap();
    let d = disc_addr.to_string();
    let mut discovery = NodeProc::spawn(
        "discovery",
        &os_args(&["--role", "discovery", "--listen", &d, "--certs", &certs_arg]),
        &fresh_log(dir.path(), "discovery"),
    );
    discovery.wait_ready().await;

    let peers = format!("{learner}={node_addr},{}={p_addr},{}={a_addr}", others[0], others[1]);
    let data = dir.path().join("learner-1");
    let mut args = os_args(&["--id", "learner-1", "--peers", &peers, "--control", "127.0.0.1:0", "--http"]);
    args.extend(os_args(&["127.0.0.1:0", "--discovery", &d, "--certs", &certs_arg, "--data-dir"]));
    args.push(data.into());
    let mut node = NodeProc::spawn("learner-1", &args, &fresh_log(dir.path(), "learner-1"));
    let ready = node.wait_ready().await;
    let control = ready.control.expect("--control was given");

    // The control channel: refused without the operator's token, answered with it.
    let mut anon = ControlClient::connect(control, None).await.unwrap();
    match anon.request(&ControlRequest::Status, CONTROL_DEADLINE).await.unwrap() {
        ControlReply::Error(e) => assert!(e.starts_with("refused: the first frame must be Auth"), "{e}"),
        other => panic!("a status without a token was answered: {other:?}"),
    }
    let node_token = token(Identity::Node(learner));
    let e = ControlClient::connect(control, Some(&node_token)).await.err().expect("a node's token is refused");
    assert!(e.to_string().contains("the token is not operator's"), "{e}");
    let mut op = ControlClient::connect(control, Some(&token(Identity::Operator))).await.unwrap();
    assert!(matches!(op.request(&ControlRequest::Status, CONTROL_DEADLINE).await, Ok(ControlReply::Status(_))));

    // Discovery: the node registers itself with its token; nobody else may.
    let reads = DiscoveryClient::new(disc_addr);
    let deadline = Instant::now() + DEADLINE;
    while !reads.members().await.is_ok_and(|m| m.iter().any(|m| m.node == learner)) {
        assert!(Instant::now() < deadline, "learner-1 never registered with its token");
        tokio::time::sleep(POLL * 10).await;
    }
    let fake = Registration::new(learner, "127.0.0.1:1".parse().unwrap());
    match reads.register(&fake).await {
        Err(DiscoveryError::Refused { status: 401, .. }) => {}
        other => panic!("a registration without a token: {other:?}"),
    }
    let as_proposer = DiscoveryClient::new(disc_addr).with_token(token(Identity::Node(others[0])));
    match as_proposer.deregister(learner).await {
        Err(DiscoveryError::Refused { status: 403, .. }) => {}
        other => panic!("proposer-1 deregistering learner-1: {other:?}"),
    }

    // The node counts its control refusals on /metrics.
    let http = ready.http.expect("--http was given");
    let (_, body) = DiscoveryClient::get_raw(&http.into(), "/metrics", DEADLINE).await.unwrap();
    let text = String::from_utf8(body).unwrap();
    for reason in ["no_credential", "bad_token"] {
        let line = format!("ballot_operator_refused_total{{server=\"control\",reason=\"{reason}\"}} 1");
        assert!(text.contains(&line), "no {line:?} in /metrics:\n{text}");
    }
}
