//! An acceptor that lost its state rejoins (ARCHITECTURE.md, "Rejoining after lost
//! state"): it votes for nothing until every proposer named its round, a majority of the
//! other acceptors promised the fence above them, and that majority holds every slot up
//! to the horizon at the fence or above. Driven message by message between real roles.

use ballot_core::{
    Acceptor, Actor, Ballot, Config, DurableState, Effect, Message, NodeId, Outbox, PersistOp, Proposer, Refusal,
    Timer, Value,
};
use std::sync::Arc;

const P1: NodeId = NodeId::proposer(1);
const P2: NodeId = NodeId::proposer(2);
const A1: NodeId = NodeId::acceptor(1);
const A2: NodeId = NodeId::acceptor(2);
const A3: NodeId = NodeId::acceptor(3);

fn config() -> Arc<Config> {
    Arc::new(Config::new(2, 3, 1, vec!["ada".into()]))
}

fn rejoining() -> DurableState {
    DurableState { rejoining: true, ..DurableState::default() }
}

fn step(actor: &mut impl Actor, from: NodeId, msg: Message) -> Vec<Effect> {
    let mut out = Outbox::new();
    actor.on_message(from, msg, &mut out);
    actor.flush(&mut out);
    out.take()
}

fn sends(effects: &[Effect]) -> Vec<(NodeId, Message)> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Send { to, msg } = e { Some((*to, msg.clone())) } else { None })
        .collect()
}

fn persists(effects: &[Effect]) -> Vec<PersistOp> {
    effects.iter().filter_map(|e| if let Effect::Persist(op) = e { Some(op.clone()) } else { None }).collect()
}

/// The one answer `to` gives `from`'s message.
fn answer(to: &mut impl Actor, from: NodeId, msg: Message) -> Message {
    let sent = sends(&step(to, from, msg));
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent[0].1.clone()
}

fn value() -> Value {
    Arc::new(vec![])
}

fn prepare(round: u64) -> Message {
    Message::Prepare { ballot: Ballot::new(round, 1), req: 1, from_slot: 1, to_slot: u64::MAX }
}

#[test]
fn a_rejoining_acceptor_votes_only_once_its_forgotten_slots_are_held_above_the_fence() {
    let c = config();
    let mut a1 = Acceptor::new(A1, c.clone(), rejoining());
    let (mut a2, mut a3) =
        (Acceptor::new(A2, c.clone(), DurableState::default()), Acceptor::new(A3, c.clone(), DurableState::default()));
    let (mut p1, mut p2) =
        (Proposer::new(P1, c.clone(), DurableState::default()), Proposer::new(P2, c.clone(), DurableState::default()));
    // Before the loss, slots 1..=3 were accepted at 2.1 by a2 (and by a1, forgotten).
    for slot in 1..=3 {
        step(&mut a2, P1, Message::Accept { ballot: Ballot::new(2, 1), slot, value: value() });
    }
    step(&mut p1, A2, Message::Nack { ballot: Ballot::new(1, 1), promised: Ballot::new(5, 2) });

    let mut out = Outbox::new();
    a1.start(&mut out);
    let asks: Vec<NodeId> = sends(&out.take()).into_iter().map(|(to, _)| to).collect();
    assert_eq!(asks, vec![P1, P2, A2, A3], "it asks every proposer and the other acceptors");
    let refused = step(&mut a1, P1, prepare(9));
    assert!(sends(&refused).is_empty(), "no promise while rejoining");
    assert!(refused.contains(&Effect::Refused { from: P1, kind: "Prepare", reason: Refusal::Rejoining }));

    // Rounds: the fence goes above every proposer's, and waits for all of them.
    let ask = Message::Rejoin { fence: Ballot::ZERO, horizon: 0 };
    for (from, m) in [(P1, answer(&mut p1, A1, ask.clone())), (A2, answer(&mut a2, A1, ask.clone()))] {
        assert!(sends(&step(&mut a1, from, m)).is_empty());
    }
    let fenced = sends(&step(&mut a1, P2, answer(&mut p2, A1, ask)));
    let fence = Ballot::new(6, 0);
    assert_eq!(fenced, vec![(A2, Message::Rejoin { fence, horizon: 0 }), (A3, Message::Rejoin { fence, horizon: 0 })]);

    // The others promise the fence (durably, before they answer) and report what they hold.
    let e = step(&mut a2, A1, Message::Rejoin { fence, horizon: 0 });
    assert_eq!(persists(&e), vec![PersistOp::Promise(fence)]);
    let info2 = sends(&e)[0].1.clone();
    assert_eq!(info2, Message::RejoinInfo { fence, round: 6, top: 3, covered: 0 });
    let info3 = answer(&mut a3, A1, Message::Rejoin { fence, horizon: 0 });
    step(&mut a1, A2, info2);
    step(&mut a1, A3, info3);
    // An old ballot gets no new accept from them any more.
    let old = sends(&step(&mut a2, P1, Message::Accept { ballot: Ballot::new(2, 1), slot: 4, value: value() }));
    assert!(matches!(old[0].1, Message::Nack { .. }), "{old:?}");

    // Horizon 3: a2 holds 1..=3 only at 2.1, below the fence, so a1 still waits.
    let mut out = Outbox::new();
    a1.on_timer(Timer::Lease, &mut out);
    let ask = Message::Rejoin { fence, horizon: 3 };
    assert!(sends(&out.take()).contains(&(A2, ask.clone())));
    assert!(persists(&step(&mut a1, A2, answer(&mut a2, A1, ask.clone()))).is_empty());
    assert!(a1.is_rejoining());
    // A leader above the fence re-proposes 1..=3 to a2 and a3; then a1 votes again.
    for a in [&mut a2, &mut a3] {
        for slot in 1..=3 {
            step(a, P1, Message::Accept { ballot: Ballot::new(7, 1), slot, value: value() });
        }
    }
    step(&mut a1, A2, answer(&mut a2, A1, ask.clone()));
    assert!(a1.is_rejoining(), "one of the two others is no majority");
    let done = step(&mut a1, A3, answer(&mut a3, A1, ask));
    assert_eq!(persists(&done), vec![PersistOp::Promise(fence), PersistOp::Rejoin(false)]);
    assert!(!a1.is_rejoining());
    assert!(matches!(answer(&mut a1, P1, prepare(5)), Message::Nack { .. }), "nothing below the fence");
    assert!(matches!(answer(&mut a1, P1, prepare(7)), Message::Promise { .. }));
}

#[test]
fn a_proposer_that_lost_its_rounds_leads_only_above_a_majority_of_promises() {
    let c = config();
    let mut p1 = Proposer::new(P1, c.clone(), rejoining());
    let mut out = Outbox::new();
    p1.on_timer(Timer::Election, &mut out);
    let sent = sends(&out.take());
    assert!(sent.iter().all(|(_, m)| matches!(m, Message::Rejoin { .. })), "no Prepare yet: {sent:?}");
    step(&mut p1, A2, Message::RejoinInfo { fence: Ballot::ZERO, round: 4, top: 0, covered: 0 });
    assert!(p1.is_rejoining());
    let e = step(&mut p1, A3, Message::RejoinInfo { fence: Ballot::ZERO, round: 9, top: 0, covered: 0 });
    assert_eq!(persists(&e), vec![PersistOp::Round(9), PersistOp::Rejoin(false)]);
    let mut out = Outbox::new();
    p1.on_timer(Timer::Election, &mut out);
    let prepares: Vec<Ballot> = sends(&out.take())
        .into_iter()
        .filter_map(|(_, m)| if let Message::Prepare { ballot, .. } = m { Some(ballot) } else { None })
        .collect();
    assert_eq!(prepares, vec![Ballot::new(10, 1); 3]);
}
