//! A forging node on the in-memory network sends each message of issue 11's attacks, with
//! whatever `from` it likes, to a running cluster: the tally and the acceptors' promises
//! stay as the honest nodes made them, honest votes still commit, and every refusal is
//! counted by reason.

use ballot_core::voting::VotingState;
use ballot_core::{
    AcceptedEntry, Acceptor, Ballot, Command, Config, DurableState, Learner, MemStorage, Message, NodeId, Proposer,
    Reply, Role, Value,
};
use ballot_runtime::{spawn_node, ClientHandle, NodeHandle, NodeOptions, SubmitOptions};
use ballot_transports::{Envelope, EventLog, MemNetwork, MemTransport, Transport};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const STATUS: Duration = Duration::from_millis(100);
const SPY: NodeId = NodeId::client(66);

struct Cluster {
    config: Arc<Config>,
    nodes: BTreeMap<NodeId, NodeHandle>,
    client: ClientHandle,
    net: MemNetwork,
}

fn start() -> Cluster {
    let config = Arc::new(Config::new(2, 3, 2, vec!["ada".into(), "grace".into()]));
    let net = MemNetwork::new(5, EventLog::new(false));
    let mut nodes = BTreeMap::new();
    for (i, id) in config.nodes().enumerate() {
        let (t, d, s, o) =
            (net.register(id), DurableState::default(), MemStorage::new(), NodeOptions::seeded(i as u64));
        let h = match id.role {
            Role::Proposer => spawn_node(Proposer::new(id, config.clone(), d), t, s, o),
            Role::Acceptor => spawn_node(Acceptor::new(id, config.clone(), d), t, s, o),
            _ => spawn_node(Learner::new(id, config.clone(), d), t, s, o),
        };
        nodes.insert(id, h);
    }
    let client =
        ClientHandle::spawn(net.register(NodeId::client(1)), config.proposers.clone(), config.nodes().collect());
    Cluster { config, nodes, client, net }
}

impl Cluster {
    async fn vote(&self, voter: &str, candidate: &str) -> Reply {
        let cmd = Command::Vote {
            request_id: self.client.next_request_id(),
            client: self.client.id(),
            voter: voter.into(),
            candidate: candidate.into(),
        };
        let opts = SubmitOptions { timeout: Duration::from_secs(10), ..SubmitOptions::default() };
        self.client.submit(cmd, &opts).await.unwrap_or_else(|e| panic!("vote {voter}: {e}"))
    }

    /// Every learner's tally.
    async fn tallies(&self) -> Vec<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for l in &self.config.learners {
            out.push(self.nodes[l].status(STATUS).await.and_then(|s| s.tally).expect("learner status"));
        }
        out
    }

    /// Every acceptor's promised ballot.
    async fn promises(&self) -> Vec<Ballot> {
        let mut out = Vec::new();
        for a in &self.config.acceptors {
            out.push(self.nodes[a].status(STATUS).await.and_then(|s| s.ballot).expect("acceptor status"));
        }
        out
    }

    fn refused(&self) -> BTreeMap<&'static str, u64> {
        let mut all = BTreeMap::new();
        for h in self.nodes.values() {
            for (reason, n) in h.metrics().snapshot().refused {
                *all.entry(reason).or_default() += n;
            }
        }
        all.retain(|_, n| *n > 0);
        all
    }
}

fn invented(n: u32) -> Value {
    Arc::new(
        (0..n)
            .map(|i| Command::Vote {
                request_id: format!("forged-{i}"),
                client: SPY,
                voter: format!("nobody-{i}"),
                candidate: "grace".into(),
            })
            .collect(),
    )
}

/// Each attack as the forger sends it: `(claimed sender, receiver, message)`.
fn attacks(config: &Config) -> Vec<(NodeId, NodeId, Message)> {
    let top = Ballot::new(u64::MAX, u16::MAX);
    let mut out = Vec::new();
    let to_all = |out: &mut Vec<_>, from: NodeId, to: &[NodeId], msg: Message| {
        out.extend(to.iter().map(|&t| (from, t, msg.clone())));
    };
    let forged_proposer = NodeId::proposer(u16::MAX);
    to_all(
        &mut out,
        forged_proposer,
        &config.acceptors,
        Message::Prepare { ballot: top, req: 1, from_slot: 1, to_slot: u64::MAX },
    );
    to_all(
        &mut out,
        forged_proposer,
        &config.acceptors,
        Message::Accept { ballot: top, slot: 2, value: invented(500) },
    );
    // proposer-1 is configured, but the ballot is proposer-2's.
    to_all(
        &mut out,
        NodeId::proposer(1),
        &config.acceptors,
        Message::Heartbeat { ballot: Ballot::new(1 << 40, 2), chosen: 0 },
    );
    let nodes: Vec<NodeId> = config.proposers.iter().chain(&config.learners).copied().collect();
    to_all(
        &mut out,
        NodeId::proposer(9),
        &nodes,
        Message::Heartbeat { ballot: Ballot::new(1 << 40, 9), chosen: 1 << 40 },
    );
    let learn =
        Message::Learn { entries: vec![AcceptedEntry { slot: 2, ballot: Ballot::new(1, 1), value: invented(500) }] };
    for from in [NodeId::acceptor(4), NodeId::acceptor(5)] {
        to_all(&mut out, from, &config.learners, learn.clone());
    }
    let mut three = VotingState::new(config.candidates.clone());
    for i in 0..3 {
        three.apply(i + 1, &invented(3)[i as usize]);
    }
    // Counts without the voters behind them, and voters with outcomes of later slots.
    for (applied, state) in [(1_000, three.emptied()), (2, three)] {
        to_all(
            &mut out,
            NodeId::learner(999),
            &config.learners,
            Message::Snapshot { applied, part: 0, parts: 1, state },
        );
    }
    let all: Vec<NodeId> = config.nodes().collect();
    to_all(&mut out, SPY, &all, Message::CatchUp { applied: 0 });
    to_all(&mut out, NodeId::learner(9), &config.acceptors, Message::Progress { applied: u64::MAX });
    to_all(&mut out, SPY, &config.acceptors, Message::Progress { applied: u64::MAX });
    to_all(&mut out, SPY, &config.learners, Message::Chosen { entries: vec![(2, invented(500))] });
    let theirs = Command::Vote {
        request_id: "x".into(),
        client: NodeId::client(1),
        voter: "mallory".into(),
        candidate: "grace".into(),
    };
    to_all(&mut out, SPY, &config.proposers, Message::Request(vec![theirs]));
    out
}

#[tokio::test(start_paused = true)]
async fn forged_messages_change_nothing_and_honest_votes_commit() {
    let c = start();
    assert!(matches!(c.vote("alice", "ada").await, Reply::Vote { result: Ok(()), .. }));
    let promised = c.promises().await;
    assert!(promised.iter().all(|b| b.proposer >= 1 && b.proposer <= 2 && b.round < 100), "{promised:?}");

    let mut spy: MemTransport = c.net.register(SPY);
    for (from, to, msg) in attacks(&c.config) {
        spy.send(Envelope::new(from, to, msg)).expect("mem send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(c.promises().await, promised, "no acceptor promised a forged ballot");
    let one = vec![("ada".to_string(), 1), ("grace".to_string(), 0)];
    assert_eq!(c.tallies().await, vec![one.clone(), one], "no forged vote counted");
    // The spy asked everyone to catch up: it got nothing, and no later vote either.
    assert!(matches!(c.vote("bob", "grace").await, Reply::Vote { result: Ok(()), .. }), "honest votes commit");
    let two = vec![("ada".to_string(), 1), ("grace".to_string(), 1)];
    assert_eq!(c.tallies().await, vec![two.clone(), two]);
    let mut heard = Vec::new();
    while let Some(env) = spy.try_recv() {
        heard.push(format!("{} {}", env.from, env.msg));
    }
    assert!(heard.is_empty(), "the spy heard {heard:?}");
    for p in &c.config.proposers {
        let leader = c.nodes[p].status(STATUS).await.and_then(|s| s.leader);
        assert!(leader.is_some_and(|l| c.config.proposers.contains(&l)), "{p} follows {leader:?}");
    }
    let refused = c.refused();
    for reason in [
        "not_a_proposer",
        "not_ballot_owner",
        "not_an_acceptor",
        "not_a_learner",
        "not_a_configured_learner",
        "bad_snapshot",
        "wrong_client",
    ] {
        assert!(refused.contains_key(reason), "{reason} not counted: {refused:?}");
    }
    c.client.close();
    for (_, h) in c.nodes {
        h.stop().await.expect("a clean stop");
    }
}
