//! The attacks of issue 11, each driven straight at a role with a forged `from` (what a
//! transport that does not authenticate would deliver): the role's state is unchanged,
//! nothing is persisted, and the refusal is reported with its reason. The transports
//! authenticate names; these checks hold whatever the transport.

use ballot_core::voting::VotingState;
use ballot_core::{
    AcceptedEntry, Acceptor, Actor, Ballot, Command, Config, DurableState, Effect, Learner, Message, NodeId, Outbox,
    PersistOp, Proposer, Refusal, Reply, Timer, Value, MAX_VOTER_BYTES,
};
use std::sync::Arc;

const P1: NodeId = NodeId::proposer(1);
const A1: NodeId = NodeId::acceptor(1);
const A2: NodeId = NodeId::acceptor(2);
const L1: NodeId = NodeId::learner(1);
const L2: NodeId = NodeId::learner(2);
const C1: NodeId = NodeId::client(1);

/// 2 proposers, 3 acceptors, 2 learners; candidates ada and grace.
fn config() -> Arc<Config> {
    let mut c = Config::new(2, 3, 2, vec!["ada".into(), "grace".into()]);
    c.timing.snapshot_every = 10;
    Arc::new(c)
}

fn refused(from: NodeId, kind: &'static str, reason: Refusal) -> Effect {
    Effect::Refused { from, kind, reason }
}

fn persists(effects: &[Effect]) -> Vec<&PersistOp> {
    effects.iter().filter_map(|e| if let Effect::Persist(op) = e { Some(op) } else { None }).collect()
}

fn refusals(effects: &[Effect]) -> Vec<Effect> {
    effects.iter().filter(|e| matches!(e, Effect::Refused { .. })).cloned().collect()
}

fn sends(effects: &[Effect]) -> Vec<(NodeId, Message)> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Send { to, msg } = e { Some((*to, msg.clone())) } else { None })
        .collect()
}

fn vote(n: u32, client: NodeId, candidate: &str) -> Command {
    Command::Vote { request_id: format!("r{n}"), client, voter: format!("v{n}"), candidate: candidate.into() }
}

/// A ballot box as a peer could send it: any candidates, counts, voters and outcomes
/// (what the wire carries; the fields are private to the crate).
fn forged_state(candidates: &[&str], counts: &[u64], voters: &[(&str, usize)]) -> VotingState {
    let voters: serde_json::Map<String, serde_json::Value> =
        voters.iter().map(|(v, i)| (v.to_string(), serde_json::json!(i))).collect();
    serde_json::from_value(serde_json::json!({
        "candidates": candidates, "counts": counts, "voters": voters, "outcomes": {}
    }))
    .expect("a VotingState")
}

/// One input to `actor`, then the end of the step: every effect it pushed.
fn step(actor: &mut impl Actor, from: NodeId, msg: Message) -> Vec<Effect> {
    let mut out = Outbox::new();
    actor.on_message(from, msg, &mut out);
    actor.flush(&mut out);
    out.take()
}

fn acceptor() -> Acceptor {
    Acceptor::new(A1, config(), DurableState::default())
}

fn learner() -> Learner {
    Learner::new(L1, config(), DurableState::default())
}

fn tally(l: &Learner) -> Vec<(String, u64)> {
    l.state().tally()
}

fn zero() -> Vec<(String, u64)> {
    vec![("ada".into(), 0), ("grace".into(), 0)]
}

/// Two forged `Learn`s, each carrying 500 invented votes, "from" two nodes that are not
/// configured acceptors: no quorum, nothing applied or persisted.
#[test]
fn forged_learns_from_non_acceptors_apply_nothing() {
    let mut l = learner();
    let invented: Value = Arc::new((0..500).map(|n| vote(n, C1, "grace")).collect());
    let learn = Message::Learn { entries: vec![AcceptedEntry { slot: 1, ballot: Ballot::new(1, 1), value: invented }] };
    let mut effects = Vec::new();
    for from in [NodeId::acceptor(4), NodeId::acceptor(5), L2, P1] {
        effects.extend(step(&mut l, from, learn.clone()));
    }
    assert_eq!((l.applied(), tally(&l)), (0, zero()));
    assert!(persists(&effects).is_empty());
    assert_eq!(
        refusals(&effects),
        [NodeId::acceptor(4), NodeId::acceptor(5), L2, P1].map(|f| refused(f, "Learn", Refusal::NotAnAcceptor))
    );
}

/// A `Snapshot` "from learner-999" (a joined learner may send one) claiming a million
/// votes for a candidate, with no voters behind them: refused, the tally stays.
#[test]
fn a_forged_snapshot_does_not_set_a_count() {
    let mut l = learner();
    let mut honest = VotingState::new(vec!["ada".into(), "grace".into()]);
    honest.apply(1, &vote(1, C1, "ada"));
    let mut three = VotingState::new(vec!["ada".into(), "grace".into()]);
    for n in 0..3 {
        three.apply(n + 1, &vote(n as u32, C1, "grace"));
    }
    let forged_parts = [
        // A million votes for ada, no voters behind them.
        (forged_state(&["ada", "grace"], &[1_000_000, 0], &[]), 1),
        // Voters that add up, but no request behind any vote.
        (forged_state(&["ada", "grace"], &[0, 1], &[("mallory", 1)]), 1),
        // A voter counted for a candidate that does not exist.
        (forged_state(&["ada", "grace"], &[0, 0], &[("mallory", 7)]), 1),
        // Other candidates than the cluster's.
        (VotingState::new(vec!["mallory".into()]), 1),
        // Outcomes of slots after the snapshot's own.
        (three.clone(), 2),
    ];
    let mut effects = Vec::new();
    for (state, applied) in forged_parts {
        effects.extend(step(&mut l, NodeId::learner(999), Message::Snapshot { applied, part: 0, parts: 1, state }));
    }
    assert_eq!((l.applied(), tally(&l)), (0, zero()));
    assert!(persists(&effects).is_empty(), "{effects:?}");
    assert_eq!(refusals(&effects), vec![refused(NodeId::learner(999), "Snapshot", Refusal::BadSnapshot); 5]);
    // An honest one is still taken.
    let e = step(&mut l, L2, Message::Snapshot { applied: 1, part: 0, parts: 1, state: honest.clone() });
    assert_eq!((l.applied(), l.state()), (1, &honest), "{e:?}");
}

/// A snapshot of the right candidates and an empty tally: the node loop used to panic
/// on the next vote (index out of bounds). Refused; the next vote is counted.
#[test]
fn a_snapshot_with_an_empty_tally_is_refused_and_nothing_panics() {
    let mut l = learner();
    let empty_tally = forged_state(&["ada", "grace"], &[], &[]);
    let mut e = step(&mut l, L2, Message::Snapshot { applied: 5, part: 0, parts: 1, state: empty_tally.clone() });
    // In parts too: the first part starts the transfer, the merged whole is refused.
    for part in 0..2 {
        e.extend(step(&mut l, L2, Message::Snapshot { applied: 6, part, parts: 2, state: empty_tally.clone() }));
    }
    assert_eq!(refusals(&e), vec![refused(L2, "Snapshot", Refusal::BadSnapshot); 2]);
    assert_eq!(l.applied(), 0);
    for (from, n) in [(A1, 1), (A2, 1)] {
        let value: Value = Arc::new(vec![vote(n, C1, "ada")]);
        step(
            &mut l,
            from,
            Message::Learn { entries: vec![AcceptedEntry { slot: 1, ballot: Ballot::new(1, 1), value }] },
        );
    }
    assert_eq!(tally(&l), vec![("ada".into(), 1), ("grace".into(), 0)]);
}

/// A snapshot in parts: a part from another sender than the one that started the
/// transfer is never merged into it, and a part that does not fit is refused.
#[test]
fn parts_of_different_transfers_do_not_mix() {
    let candidates: Vec<String> = vec!["ada".into(), "grace".into()];
    let mut state = VotingState::new(candidates.clone());
    for n in 0..2_000 {
        state.apply(n as u64 + 1, &vote(n, C1, if n % 2 == 0 { "ada" } else { "grace" }));
    }
    let parts = state.split(16 * 1024);
    let n = parts.len() as u32;
    assert!(n > 2);
    let msg = |i: usize, s: VotingState| Message::Snapshot { applied: 2_000, part: i as u32, parts: n, state: s };
    // Another transfer at the same slot and part count, different voters with the same
    // counts: its part 1 arrives first from learner-9.
    let mut other = VotingState::new(candidates.clone());
    for k in 0..2_000 {
        other.apply(k as u64 + 1, &vote(k + 10_000, C1, if k % 2 == 0 { "ada" } else { "grace" }));
    }
    let other_parts = other.split(16 * 1024);
    let mut l = learner();
    step(&mut l, L2, msg(0, parts[0].clone()));
    let e = step(&mut l, NodeId::learner(9), msg(1, other_parts[1].clone()));
    assert!(e.is_empty(), "another sender's part is set aside: {e:?}");
    // A part of another state (other counts) from the same sender is refused.
    let mut third = VotingState::new(candidates);
    third.apply(1, &vote(1, C1, "ada"));
    let e = step(&mut l, L2, msg(1, third));
    assert_eq!(refusals(&e), vec![refused(L2, "Snapshot", Refusal::BadSnapshot)]);
    for (i, p) in parts.iter().enumerate().skip(1) {
        step(&mut l, L2, msg(i, p.clone()));
    }
    assert_eq!((l.applied(), l.state()), (2_000, &state), "adopted whole, from the sender that started it");
}

/// A `Prepare` at `(u64::MAX, 65535)` "from proposer-65535" used to be promised and
/// persisted by every acceptor, halting the cluster for good.
#[test]
fn a_prepare_from_a_proposer_that_is_not_configured_is_not_promised() {
    let mut a = acceptor();
    let top = Ballot::new(u64::MAX, u16::MAX);
    let prepare = |ballot| Message::Prepare { ballot, req: 1, from_slot: 1, to_slot: u64::MAX };
    let mut effects = step(&mut a, NodeId::proposer(65535), prepare(top));
    // A configured proposer with a ballot it does not own, and a client.
    effects.extend(step(&mut a, P1, prepare(top)));
    effects.extend(step(&mut a, C1, prepare(Ballot::new(9, 1))));
    let accept = Message::Accept { ballot: top, slot: 1, value: Arc::new(vec![vote(1, C1, "ada")]) };
    effects.extend(step(&mut a, NodeId::proposer(65535), accept));
    assert_eq!(a.promised(), Ballot::ZERO);
    assert!(a.accepted(1).is_none());
    assert!(persists(&effects).is_empty());
    assert!(sends(&effects).is_empty(), "no Promise, no Nack, no Accepted");
    assert_eq!(
        refusals(&effects),
        vec![
            refused(NodeId::proposer(65535), "Prepare", Refusal::NotAProposer),
            refused(P1, "Prepare", Refusal::NotBallotOwner),
            refused(C1, "Prepare", Refusal::NotAProposer),
            refused(NodeId::proposer(65535), "Accept", Refusal::NotAProposer),
        ]
    );
    // The real proposer-1 is still promised.
    let e = step(&mut a, P1, prepare(Ballot::new(1, 1)));
    assert!(matches!(&sends(&e)[..], [(P1, Message::Promise { .. })]), "{e:?}");
}

/// A `Heartbeat` from a proposer that is not configured, naming itself the owner of its
/// ballot, used to make a proposer follow it and forward votes to it.
#[test]
fn a_heartbeat_from_a_proposer_that_is_not_configured_is_not_followed() {
    let mut p = Proposer::new(P1, config(), DurableState::default());
    let forger = NodeId::proposer(9);
    let mut effects = step(&mut p, forger, Message::Heartbeat { ballot: Ballot::new(100, 9), chosen: 50 });
    // And from proposer-2 (configured) at a ballot of proposer-1's.
    effects.extend(step(&mut p, NodeId::proposer(2), Message::Heartbeat { ballot: Ballot::new(100, 1), chosen: 0 }));
    assert_eq!((p.leader(), p.ballot(), p.chosen()), (None, Ballot::ZERO, 0));
    assert_eq!(
        refusals(&effects),
        vec![
            refused(forger, "Heartbeat", Refusal::NotAProposer),
            refused(NodeId::proposer(2), "Heartbeat", Refusal::NotBallotOwner)
        ]
    );
    // A vote is queued here, not forwarded to the forger.
    let e = step(&mut p, C1, Message::Request(vec![vote(1, C1, "ada")]));
    assert!(sends(&e).iter().all(|(to, _)| *to != forger), "{e:?}");
    // Learners do not take it as the leader either.
    let mut l = learner();
    let e = step(&mut l, forger, Message::Heartbeat { ballot: Ballot::new(100, 9), chosen: 50 });
    assert_eq!(l.status().leader, None);
    assert_eq!(refusals(&e), vec![refused(forger, "Heartbeat", Refusal::NotAProposer)]);
}

/// A `CatchUp` from a node that is not a learner used to get every accepted vote, and
/// the acceptor kept sending it every later one. And made-up learner names are bounded.
#[test]
fn catch_up_from_a_non_learner_gets_nothing_and_joined_learners_are_bounded() {
    let mut a = acceptor();
    let b = Ballot::new(1, 1);
    step(&mut a, P1, Message::Accept { ballot: b, slot: 1, value: Arc::new(vec![vote(1, C1, "ada")]) });
    let spy = NodeId::client(7);
    let e = step(&mut a, spy, Message::CatchUp { applied: 0 });
    assert!(sends(&e).is_empty());
    assert_eq!(refusals(&e), vec![refused(spy, "CatchUp", Refusal::NotALearner)]);
    // Made-up learner names: the first 16 are served as joined learners, then refused.
    let mut effects = Vec::new();
    for i in 100..120 {
        effects.extend(step(&mut a, NodeId::learner(i), Message::CatchUp { applied: 0 }));
    }
    let served: Vec<NodeId> = sends(&effects).into_iter().map(|(to, _)| to).collect();
    assert_eq!(served, (100..116).map(NodeId::learner).collect::<Vec<_>>());
    assert_eq!(refusals(&effects).len(), 4);
    assert!(refusals(&effects).iter().all(|r| matches!(r, Effect::Refused { reason: Refusal::TooManyLearners, .. })));
    // A later accept goes to the configured learners and the 16 joined ones, not the spy.
    let e = step(&mut a, P1, Message::Accept { ballot: b, slot: 2, value: Arc::new(vec![]) });
    let learners: Vec<NodeId> =
        sends(&e).into_iter().filter(|(_, m)| matches!(m, Message::Learn { .. })).map(|(to, _)| to).collect();
    assert_eq!(learners.len(), 2 + 16);
    assert!(!learners.contains(&spy));
}

/// `Progress` from a learner that is not configured (or a non-learner) must not count
/// toward compaction.
#[test]
fn forged_progress_does_not_make_an_acceptor_compact() {
    let mut a = acceptor();
    for slot in 1..=30 {
        step(&mut a, P1, Message::Accept { ballot: Ballot::new(1, 1), slot, value: Arc::new(vec![]) });
    }
    let mut effects = step(&mut a, L1, Message::Progress { applied: 30 });
    for from in [NodeId::learner(9), C1, P1] {
        effects.extend(step(&mut a, from, Message::Progress { applied: 30 }));
    }
    assert!(persists(&effects).is_empty(), "{effects:?}");
    assert!(a.accepted(1).is_some());
    assert_eq!(
        refusals(&effects),
        vec![
            refused(NodeId::learner(9), "Progress", Refusal::NotAConfiguredLearner),
            refused(C1, "Progress", Refusal::NotAConfiguredLearner),
            refused(P1, "Progress", Refusal::NotAConfiguredLearner),
        ]
    );
    // The second configured learner's report does compact.
    let e = step(&mut a, L2, Message::Progress { applied: 30 });
    assert_eq!(persists(&e), vec![&PersistOp::Compact { upto: 30 }]);
}

/// Answers of a forged acceptor do not elect a proposer; `Chosen` from a non-learner
/// applies nothing.
#[test]
fn forged_promises_and_chosen_values_count_for_nothing() {
    let mut p = Proposer::new(P1, config(), DurableState::default());
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    let b = Ballot::new(1, 1);
    let promise =
        Message::Promise { ballot: b, req: 1, from_slot: 1, end: u64::MAX, last: 0, compacted: 0, accepted: vec![] };
    let mut effects = Vec::new();
    for from in [NodeId::acceptor(7), NodeId::acceptor(8), L1] {
        effects.extend(step(&mut p, from, promise.clone()));
    }
    assert!(!p.is_leader());
    assert_eq!(refusals(&effects).len(), 3);
    let mut l = learner();
    let chosen = Message::Chosen { entries: vec![(1, Arc::new(vec![vote(1, C1, "grace")]))] };
    let e = step(&mut l, C1, chosen);
    assert_eq!((l.applied(), tally(&l)), (0, zero()));
    assert_eq!(refusals(&e), vec![refused(C1, "Chosen", Refusal::NotALearner)]);
}

/// A client's command must answer to that client, and names must be within their limits.
#[test]
fn requests_naming_another_client_or_over_long_names_are_refused() {
    let mut p = Proposer::new(P1, config(), DurableState::default());
    let other = NodeId::client(2);
    let e = step(&mut p, C1, Message::Request(vec![vote(1, other, "ada")]));
    assert_eq!(e, vec![refused(C1, "Vote", Refusal::WrongClient)], "not queued, not answered");
    let long = Command::Vote {
        request_id: "r2".into(),
        client: C1,
        voter: "v".repeat(MAX_VOTER_BYTES + 1),
        candidate: "ada".into(),
    };
    let e = step(&mut p, C1, Message::Request(vec![long]));
    assert_eq!(
        e,
        vec![
            refused(C1, "Vote", Refusal::TooLong),
            Effect::Send {
                to: C1,
                msg: Message::Replies(vec![Reply::TooLarge {
                    request_id: "r2".into(),
                    size: MAX_VOTER_BYTES + 1,
                    limit: MAX_VOTER_BYTES
                }])
            }
        ]
    );
    // A learner that is given one anyway (an older proposer let it through) counts
    // nothing, answers TooLarge, and reports it.
    let mut l = learner();
    let value: Value = Arc::new(vec![Command::Vote {
        request_id: "r3".into(),
        client: C1,
        voter: "v".repeat(MAX_VOTER_BYTES + 1),
        candidate: "ada".into(),
    }]);
    let mut effects = Vec::new();
    for from in [A1, A2] {
        let learn = Message::Learn {
            entries: vec![AcceptedEntry { slot: 1, ballot: Ballot::new(1, 1), value: value.clone() }],
        };
        effects.extend(step(&mut l, from, learn));
    }
    assert_eq!((l.applied(), tally(&l)), (1, zero()));
    assert_eq!(refusals(&effects), vec![refused(C1, "Vote", Refusal::TooLong)]);
    assert!(sends(&effects)
        .iter()
        .any(|(to, m)| *to == C1 && matches!(m, Message::Replies(r) if matches!(r[..], [Reply::TooLarge { .. }]))));
}

/// What a learner does not take at all, and a message "from" itself.
#[test]
fn kinds_a_role_does_not_take_are_refused() {
    let mut l = learner();
    let e = step(&mut l, P1, Message::Prepare { ballot: Ballot::new(1, 1), req: 1, from_slot: 1, to_slot: 9 });
    assert_eq!(refusals(&e), vec![refused(P1, "Prepare", Refusal::UnexpectedKind)]);
    let e = step(&mut l, L1, Message::Snapshot { applied: 9, part: 0, parts: 1, state: VotingState::new(vec![]) });
    assert_eq!(refusals(&e), vec![refused(L1, "Snapshot", Refusal::FromSelf)]);
    let e = step(&mut l, C1, Message::Hello);
    assert!(e.is_empty(), "Hello is for anyone");
}
