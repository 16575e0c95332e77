//! A node answers a sender it was not configured with (a voter's client, a learner that
//! joined later) at the address the sender's transport advertises.

use ballot_core::{Message, NodeId};
use ballot_transports::{Envelope, NetOptions, TcpTransport, Transport, ZmqTransport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn recv(t: &mut dyn Transport) -> Envelope {
    tokio::time::timeout(DEADLINE, t.recv()).await.expect("a message within the deadline").expect("open")
}

async fn exchange<T: Transport>(mut node: T, mut client: T) {
    let (n, c) = (node.local(), client.local());
    client.send(Envelope::new(c, n, Message::Progress { applied: 1 })).unwrap();
    let got = recv(&mut node).await;
    assert_eq!(got.from, c);
    assert!(got.reply_to.is_some(), "socket transports advertise where they listen");
    // The node never heard of the client, yet can answer it.
    node.send(Envelope::new(n, c, Message::Progress { applied: 2 })).unwrap();
    let back = recv(&mut client).await;
    assert_eq!((back.from, back.msg), (n, Message::Progress { applied: 2 }));
}

#[tokio::test]
async fn tcp_answers_an_unconfigured_client() {
    let node = TcpTransport::bind(NodeId::learner(1), any(), BTreeMap::new(), NetOptions::default()).await.unwrap();
    let peers = BTreeMap::from([(node.local(), node.local_addr())]);
    let client = TcpTransport::bind(NodeId::client(77), any(), peers, NetOptions::default()).await.unwrap();
    exchange(node, client).await;
}

#[tokio::test]
async fn zmq_answers_an_unconfigured_client() {
    let node = ZmqTransport::bind(NodeId::learner(1), any(), BTreeMap::new(), NetOptions::default()).await.unwrap();
    let peers = BTreeMap::from([(node.local(), node.local_addr())]);
    let client = ZmqTransport::bind(NodeId::client(77), any(), peers, NetOptions::default()).await.unwrap();
    exchange(node, client).await;
}

#[tokio::test]
async fn a_configured_node_address_is_not_taken_from_a_message() {
    let real = TcpTransport::bind(NodeId::acceptor(1), any(), BTreeMap::new(), NetOptions::default()).await.unwrap();
    let peers = BTreeMap::from([(NodeId::acceptor(1), real.local_addr())]);
    let mut node = TcpTransport::bind(NodeId::learner(1), any(), peers, NetOptions::default()).await.unwrap();
    let impostor_peers = BTreeMap::from([(node.local(), node.local_addr())]);
    let impostor = TcpTransport::bind(NodeId::acceptor(1), any(), impostor_peers, NetOptions::default()).await.unwrap();
    impostor.send(Envelope::new(NodeId::acceptor(1), node.local(), Message::Progress { applied: 1 })).unwrap();
    recv(&mut node).await;
    assert_eq!(node.peer_addr(NodeId::acceptor(1)), Some(real.local_addr().into()));
}
