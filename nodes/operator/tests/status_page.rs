//! The JSON shapes of `/status` and `/cluster`: every key and the kind of its value, pinned,
//! so that the pages' readers (the CLI, the overview, scripts) keep working.

use ballot_core::{Config, Learner, MemStorage, NodeId};
use ballot_operator::pages::{self, HttpNode, HttpState};
use ballot_transports::{EventLog, FaultHandle, MemNetwork, TcpTransport};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

/// A learner with a TCP transport's counters and a fault layer, served on a free port.
async fn served() -> (std::net::SocketAddr, ballot_runtime::NodeHandle, TcpTransport) {
    let id = NodeId::learner(1);
    let net = MemNetwork::new(1, EventLog::new(false));
    let config = Arc::new(Config::new(1, 1, 1, vec!["a".into(), "b".into()]));
    let node = ballot_runtime::spawn_node(
        Learner::new(id, config, Default::default()),
        net.register(id),
        MemStorage::new(),
        ballot_runtime::NodeOptions::seeded(1),
    );
    let tcp =
        TcpTransport::bind(id, "127.0.0.1:0".parse().unwrap(), BTreeMap::new(), Default::default()).await.unwrap();
    let http_node = HttpNode::new(&node).with_listen(tcp.local_addr()).with_wire(tcp.stats_handle());
    let cluster = vec![NodeId::learner(1), NodeId::acceptor(1)];
    let mut state = HttpState::new(vec![http_node], cluster, vec!["a".into(), "b".into()], "tcp");
    state.faults = Some(FaultHandle::new(1));
    state.control = Some("127.0.0.1:9".parse().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(pages::serve(listener, state, std::future::pending()));
    (at, node, tcp)
}

/// `path: kind` for every value of `v`; the keys of maps keyed by data (candidates, node
/// names) are shown as `*`.
fn shape(v: &Json, path: &str, out: &mut Vec<String>) {
    let kind = match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    };
    out.push(format!("{path}: {kind}"));
    match v {
        Json::Object(o) => {
            let by_data = ["tally", "listen", "http_peers"].iter().any(|k| path.ends_with(k));
            for (k, x) in o {
                let k = if by_data { "*" } else { k.as_str() };
                shape(x, &format!("{path}.{k}"), out);
            }
        }
        Json::Array(a) => {
            if let Some(x) = a.first() {
                shape(x, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
    out.dedup();
}

async fn get_json(at: std::net::SocketAddr, path: &str) -> Json {
    let (code, body) = tokio::time::timeout(WAIT, pages::http_get(at, path, WAIT)).await.unwrap().unwrap();
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn status_and_cluster_keep_their_keys_and_kinds() {
    let (at, _node, _tcp) = served().await;
    let mut got = Vec::new();
    shape(&get_json(at, "/status").await, "status", &mut got);
    shape(&get_json(at, "/cluster").await, "cluster", &mut got);
    got.sort();
    let want = include_str!("status_page.shape").lines().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(got, want, "\n{}", got.join("\n"));
}
