//! The fault wrapper over real sockets: a partition told to one process only holds both
//! ways, and healing restores traffic.

use ballot_core::{Message, NodeId};
use ballot_transports::{Envelope, FaultHandle, Faulty, LinkFaults, NetOptions, TcpTransport, Transport};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(30);

fn msg(i: u64) -> Message {
    Message::CatchUp { applied: i }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_told_to_one_side_holds_over_tcp() {
    let (a, b) = (NodeId::proposer(1), NodeId::acceptor(1));
    let local = "127.0.0.1:0".parse().unwrap();
    let ta = TcpTransport::bind(a, local, BTreeMap::new(), NetOptions::default()).await.unwrap();
    let tb = TcpTransport::bind(b, local, BTreeMap::new(), NetOptions::default()).await.unwrap();
    ta.set_peer(b, tb.local_addr());
    tb.set_peer(a, ta.local_addr());
    let (ha, hb) = (FaultHandle::new(1), FaultHandle::new(2));
    let (mut fa, mut fb) = (Faulty::new(ta, ha.clone()), Faulty::new(tb, hb.clone()));

    ha.partition(&[a], &[b]);
    for i in 0..100 {
        fa.send(Envelope::new(a, b, msg(i))).unwrap();
        fb.send(Envelope::new(b, a, msg(i))).unwrap();
    }
    // b was told nothing: its messages cross the wire and are dropped on arrival at a.
    let inbound = async {
        while ha.stats().dropped_inbound < 100 {
            let _ = timeout(Duration::from_millis(10), fa.recv()).await;
        }
    };
    timeout(DEADLINE, inbound).await.expect("a should drop what b sends");
    assert_eq!(ha.stats().dropped_partition, 100);
    assert!(fb.try_recv().is_none());

    ha.heal();
    hb.set_default_faults(LinkFaults { duplicate: 1.0, ..LinkFaults::default() });
    fb.send(Envelope::new(b, a, msg(7))).unwrap();
    for _ in 0..2 {
        let env = timeout(DEADLINE, fa.recv()).await.expect("healed").unwrap();
        assert_eq!(env.msg, msg(7));
    }
}
