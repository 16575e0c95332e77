//! Engine-style tests of the proposer: feed one input, then assert the exact effects it
//! pushed (or the exact relevant part of them when the vector is long).

use ballot_core::{
    AcceptedEntry, Actor, Ballot, Command, Config, DurableState, Effect, Message, NodeId, Outbox, PersistOp, Proposer,
    Refusal, Reply, Timer, Value,
};
use std::sync::Arc;

const P1: NodeId = NodeId::proposer(1);
const P2: NodeId = NodeId::proposer(2);
const P3: NodeId = NodeId::proposer(3);
const A1: NodeId = NodeId::acceptor(1);
const A2: NodeId = NodeId::acceptor(2);
const A3: NodeId = NodeId::acceptor(3);
const L1: NodeId = NodeId::learner(1);
const L2: NodeId = NodeId::learner(2);
const C1: NodeId = NodeId::client(1);
const C2: NodeId = NodeId::client(2);

const ACCEPTORS: [NodeId; 3] = [A1, A2, A3];

// Distinct values, so a test can tell which setting an effect used.
const HEARTBEAT_MS: u64 = 50;
const ELECTION_MIN_MS: u64 = 150;
const ELECTION_MAX_MS: u64 = 300;
const RETRANSMIT_MS: u64 = 40;
const NO_QUORUM_TICKS: u64 = 3;
const MAX_BATCH: usize = 3;
const WINDOW: usize = 2;

// ---- building blocks -------------------------------------------------------------------

/// 3 proposers, 3 acceptors (quorum 2), 2 learners.
fn config() -> Arc<Config> {
    let mut c = Config::new(3, 3, 2, vec!["ada".into(), "bob".into()]);
    c.timing.heartbeat_ms = HEARTBEAT_MS;
    c.timing.election_min_ms = ELECTION_MIN_MS;
    c.timing.election_max_ms = ELECTION_MAX_MS;
    c.timing.retransmit_ms = RETRANSMIT_MS;
    c.timing.no_quorum_ticks = NO_QUORUM_TICKS;
    c.timing.max_batch = MAX_BATCH;
    c.timing.window = WINDOW;
    Arc::new(c)
}

/// proposer-1 that persisted `round` before (0: a fresh one).
fn proposer_at(round: u64) -> Proposer {
    Proposer::new(P1, config(), DurableState { round, ..DurableState::default() })
}

fn proposer() -> Proposer {
    proposer_at(0)
}

fn vote(client: NodeId, n: u32) -> Command {
    Command::Vote { request_id: format!("r{n}"), client, voter: format!("v{n}"), candidate: "ada".into() }
}

fn batch(cmds: &[Command]) -> Value {
    Arc::new(cmds.to_vec())
}

fn noop() -> Value {
    Arc::new(vec![])
}

fn send(to: NodeId, msg: Message) -> Effect {
    Effect::Send { to, msg }
}

fn refused(from: NodeId, kind: &'static str, reason: Refusal) -> Effect {
    Effect::Refused { from, kind, reason }
}

fn set_timer(timer: Timer, min_ms: u64, max_ms: u64) -> Effect {
    Effect::SetTimer { timer, min_ms, max_ms }
}

fn election_timer() -> Effect {
    set_timer(Timer::Election, ELECTION_MIN_MS, ELECTION_MAX_MS)
}

/// The first phase 1 round of a proposer (`req` 1).
fn prepares(ballot: Ballot, from_slot: u64) -> Vec<Effect> {
    prepares_round(ballot, 1, from_slot)
}

/// Phase 1 round `req` of a proposer.
fn prepares_round(ballot: Ballot, req: u64, from_slot: u64) -> Vec<Effect> {
    ACCEPTORS.iter().map(|&a| send(a, Message::Prepare { ballot, req, from_slot, to_slot: u64::MAX })).collect()
}

/// The Accept of one slot, to each of `to`.
fn accepts(to: &[NodeId], ballot: Ballot, slot: u64, value: &Value) -> Vec<Effect> {
    to.iter().map(|&a| send(a, Message::Accept { ballot, slot, value: value.clone() })).collect()
}

/// Heartbeats from proposer-1 to the other proposers, the learners and the acceptors.
fn heartbeats(ballot: Ballot, chosen: u64) -> Vec<Effect> {
    [P2, P3, L1, L2, A1, A2, A3].iter().map(|&to| send(to, Message::Heartbeat { ballot, chosen })).collect()
}

/// What stepping down from candidate or leader pushes.
fn step_down_effects() -> Vec<Effect> {
    vec![
        Effect::CancelTimer(Timer::Heartbeat),
        Effect::CancelTimer(Timer::Retransmit),
        Effect::CancelTimer(Timer::CheckQuorum),
        election_timer(),
    ]
}

/// A whole-log promise for a prepare from slot 1.
fn promise(ballot: Ballot, accepted: Vec<AcceptedEntry>) -> Message {
    promise_from(ballot, 1, accepted)
}

/// A whole-log promise for a prepare from `from_slot`, to a proposer's first round.
fn promise_from(ballot: Ballot, from_slot: u64, accepted: Vec<AcceptedEntry>) -> Message {
    promise_round(ballot, 1, from_slot, accepted)
}

/// A whole-log promise answering round `req`.
fn promise_round(ballot: Ballot, req: u64, from_slot: u64, accepted: Vec<AcceptedEntry>) -> Message {
    let last = accepted.iter().map(|e| e.slot).max().unwrap_or(0);
    Message::Promise { ballot, req, from_slot, end: u64::MAX, last, compacted: 0, accepted }
}

/// Whether the leader resends an unanswered accept this many ticks after proposing it
/// (back-off: 1, 2, 4, 8, then every 8).
fn resends_at(age: u64) -> bool {
    (age <= 8 && age.is_power_of_two()) || (age > 8 && age.is_multiple_of(8))
}

fn entry(slot: u64, ballot: Ballot, value: &Value) -> AcceptedEntry {
    AcceptedEntry { slot, ballot, value: value.clone() }
}

fn accepted(ballot: Ballot, slots: &[u64]) -> Message {
    Message::Accepted { ballot, slots: slots.to_vec() }
}

fn not_confirmed(ids: &[&str]) -> Message {
    Message::Replies(ids.iter().map(|id| Reply::NotConfirmed { request_id: id.to_string() }).collect())
}

/// Runs an election for proposer-1 with empty promises from acceptor-1 and -2, and
/// returns its ballot. Leaves the outbox empty.
fn elect(p: &mut Proposer, out: &mut Outbox) -> Ballot {
    p.on_timer(Timer::Election, out);
    let ballot = p.ballot();
    let req = p.phase1_round();
    p.on_message(A1, promise_round(ballot, req, 1, vec![]), out);
    p.on_message(A2, promise_round(ballot, req, 1, vec![]), out);
    assert!(p.is_leader(), "two promises out of three elect");
    out.take();
    ballot
}

/// Makes proposer-1 a follower of `leader` at `ballot`. Leaves the outbox empty.
fn follow(p: &mut Proposer, leader: NodeId, ballot: Ballot, out: &mut Outbox) {
    p.on_message(leader, Message::Heartbeat { ballot, chosen: 0 }, out);
    assert_eq!(p.leader(), Some(leader));
    out.take();
}

// ---- 1. start --------------------------------------------------------------------------

#[test]
fn start_sets_the_election_timer_with_the_configured_range() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.start(&mut out);
    assert_eq!(out.take(), vec![set_timer(Timer::Election, 150, 300)]);
    assert!(!p.is_leader());
    assert_eq!(p.leader(), None);
}

// ---- 2. election -----------------------------------------------------------------------

#[test]
fn election_timeout_persists_the_round_then_prepares_and_backs_off() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.start(&mut out);
    out.take();

    p.on_timer(Timer::Election, &mut out);
    let b1 = Ballot::new(1, 1);
    let mut want = vec![Effect::Persist(PersistOp::Round(1))];
    want.extend(prepares(b1, 1));
    want.push(election_timer());
    assert_eq!(out.take(), want);
    assert_eq!(p.ballot(), b1);
    assert!(!p.is_leader());

    // No majority before the back-off ran out: try again one round up.
    p.on_timer(Timer::Election, &mut out);
    let b2 = Ballot::new(2, 1);
    let mut want = vec![Effect::Persist(PersistOp::Round(2))];
    want.extend(prepares_round(b2, 2, 1));
    want.push(election_timer());
    assert_eq!(out.take(), want);
    assert_eq!(p.ballot(), b2);
}

#[test]
fn prepare_asks_from_the_slot_after_the_chosen_prefix() {
    let mut p = proposer();
    let mut out = Outbox::new();
    // A leader tells it slots 1..=4 are chosen.
    p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(1, 2), chosen: 4 }, &mut out);
    out.take();
    assert_eq!(p.chosen(), 4);

    p.on_timer(Timer::Election, &mut out);
    let b = Ballot::new(2, 1);
    let mut want = vec![Effect::Persist(PersistOp::Round(2))];
    want.extend(prepares(b, 5));
    want.push(election_timer());
    assert_eq!(out.take(), want);
}

#[test]
fn a_leader_ignores_the_election_timer() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    p.on_timer(Timer::Election, &mut out);
    assert_eq!(out.take(), vec![]);
    assert_eq!(p.ballot(), b);
    assert!(p.is_leader());
}

// ---- 3. promises -----------------------------------------------------------------------

#[test]
fn a_majority_of_empty_promises_elects() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    out.take();
    let b = Ballot::new(1, 1);

    p.on_message(A1, promise(b, vec![]), &mut out);
    assert_eq!(out.take(), vec![], "one promise of three is not a majority");
    assert!(!p.is_leader());

    p.on_message(A2, promise(b, vec![]), &mut out);
    let mut want = vec![Effect::CancelTimer(Timer::Election)];
    want.extend(heartbeats(b, 0));
    want.push(set_timer(Timer::Heartbeat, HEARTBEAT_MS, HEARTBEAT_MS));
    want.push(set_timer(Timer::Retransmit, RETRANSMIT_MS, RETRANSMIT_MS));
    want.push(set_timer(Timer::CheckQuorum, ELECTION_MAX_MS, ELECTION_MAX_MS));
    assert_eq!(out.take(), want);
    assert!(p.is_leader());
    assert_eq!(p.leader(), Some(P1));
    assert_eq!(p.ballot(), b);

    // The third promise comes too late to matter.
    p.on_message(A3, promise(b, vec![]), &mut out);
    assert_eq!(out.take(), vec![]);
}

#[test]
fn promises_that_do_not_count_are_ignored() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    out.take();
    let b = Ballot::new(1, 1);
    p.on_message(A1, promise(b, vec![]), &mut out);

    // The same acceptor twice is still one promise.
    p.on_message(A1, promise(b, vec![]), &mut out);
    // A promise for another ballot (an older or someone else's prepare).
    p.on_message(A2, promise(Ballot::new(1, 2), vec![]), &mut out);
    p.on_message(A2, promise(Ballot::new(0, 1), vec![]), &mut out);
    assert_eq!(out.take(), vec![]);
    // Promises from nodes that are not configured acceptors are refused.
    p.on_message(NodeId::acceptor(4), promise(b, vec![]), &mut out);
    p.on_message(P2, promise(b, vec![]), &mut out);
    p.on_message(C1, promise(b, vec![]), &mut out);
    assert_eq!(
        out.take(),
        [NodeId::acceptor(4), P2, C1].map(|from| refused(from, "Promise", Refusal::NotAnAcceptor)).to_vec()
    );
    assert!(!p.is_leader());

    // A real second promise still elects.
    p.on_message(A3, promise(b, vec![]), &mut out);
    assert!(p.is_leader());
}

#[test]
fn a_new_leader_reproposes_the_highest_ballot_value_per_slot_and_fills_holes() {
    let mut p = proposer_at(3);
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    out.take();
    let b = Ballot::new(4, 1);

    let (x, y, z) = (batch(&[vote(C1, 1)]), batch(&[vote(C1, 2)]), batch(&[vote(C2, 3)]));
    // acceptor-1 accepted x at slot 1 and y at slot 3 under 2.2; acceptor-2 accepted z at
    // slot 1 under the higher 3.3. Nobody reported slot 2.
    p.on_message(A1, promise(b, vec![entry(1, Ballot::new(2, 2), &x), entry(3, Ballot::new(2, 2), &y)]), &mut out);
    assert_eq!(out.take(), vec![]);
    p.on_message(A2, promise(b, vec![entry(1, Ballot::new(3, 3), &z)]), &mut out);

    let mut want = Vec::new();
    want.extend(accepts(&ACCEPTORS, b, 1, &z));
    want.extend(accepts(&ACCEPTORS, b, 2, &noop()));
    want.extend(accepts(&ACCEPTORS, b, 3, &y));
    want.push(Effect::CancelTimer(Timer::Election));
    want.extend(heartbeats(b, 0));
    want.push(set_timer(Timer::Heartbeat, HEARTBEAT_MS, HEARTBEAT_MS));
    want.push(set_timer(Timer::Retransmit, RETRANSMIT_MS, RETRANSMIT_MS));
    want.push(set_timer(Timer::CheckQuorum, ELECTION_MAX_MS, ELECTION_MAX_MS));
    assert_eq!(out.take(), want);
    assert!(p.is_leader());

    // New commands go after the re-proposed slots. Slots 1..=3 already fill more than the
    // window, so they wait until two of those are chosen.
    p.on_message(C1, Message::Request(vec![vote(C1, 9)]), &mut out);
    p.flush(&mut out);
    assert_eq!(out.take(), vec![]);
    p.on_message(A1, accepted(b, &[1, 2]), &mut out);
    p.on_message(A2, accepted(b, &[1, 2]), &mut out);
    assert_eq!(out.take(), vec![]);
    assert_eq!(p.chosen(), 2);
    p.flush(&mut out);
    assert_eq!(out.take(), accepts(&ACCEPTORS, b, 4, &batch(&[vote(C1, 9)])));
}

#[test]
fn the_leader_heartbeat_timer_sends_heartbeats_and_rearms() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    p.on_timer(Timer::Heartbeat, &mut out);
    let mut want = heartbeats(b, 0);
    want.push(set_timer(Timer::Heartbeat, HEARTBEAT_MS, HEARTBEAT_MS));
    assert_eq!(out.take(), want);
}

// ---- 4. batching and the window --------------------------------------------------------

#[test]
fn the_leader_batches_queued_requests_into_a_window_of_slots() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);

    let cmds: Vec<Command> = (1..=8).map(|n| vote(if n % 2 == 1 { C1 } else { C2 }, n)).collect();
    // Requests are only queued; proposing waits for the end of the step.
    for cmd in &cmds {
        p.on_message(cmd.client(), Message::Request(vec![cmd.clone()]), &mut out);
    }
    assert_eq!(out.take(), vec![]);

    // max_batch = 3 commands per slot, window = 2 slots.
    p.flush(&mut out);
    let mut want = accepts(&ACCEPTORS, b, 1, &batch(&cmds[0..3]));
    want.extend(accepts(&ACCEPTORS, b, 2, &batch(&cmds[3..6])));
    assert_eq!(out.take(), want);

    // The window is full.
    p.flush(&mut out);
    assert_eq!(out.take(), vec![]);

    // One acceptor is not a majority; Accepted for other ballots is ignored, from others
    // refused.
    p.on_message(A1, accepted(b, &[1]), &mut out);
    p.on_message(A1, accepted(b, &[1]), &mut out);
    p.on_message(A2, accepted(Ballot::new(0, 2), &[1]), &mut out);
    p.on_message(NodeId::acceptor(4), accepted(b, &[1]), &mut out);
    p.on_message(P2, accepted(b, &[1]), &mut out);
    p.flush(&mut out);
    assert_eq!(
        out.take(),
        [NodeId::acceptor(4), P2].map(|from| refused(from, "Accepted", Refusal::NotAnAcceptor)).to_vec()
    );
    assert_eq!(p.chosen(), 0);

    // A majority for slot 1 frees one place in the window.
    p.on_message(A3, accepted(b, &[1]), &mut out);
    assert_eq!(out.take(), vec![]);
    assert_eq!(p.chosen(), 1);
    p.flush(&mut out);
    assert_eq!(out.take(), accepts(&ACCEPTORS, b, 3, &batch(&cmds[6..8])));

    // The queue is empty now: nothing more to propose even with room.
    p.on_message(A1, accepted(b, &[2, 3]), &mut out);
    p.on_message(A2, accepted(b, &[2, 3]), &mut out);
    assert_eq!(p.chosen(), 3);
    p.flush(&mut out);
    assert_eq!(out.take(), vec![]);

    // Slots keep numbering on.
    p.on_message(C1, Message::Request(vec![vote(C1, 9)]), &mut out);
    p.flush(&mut out);
    assert_eq!(out.take(), accepts(&ACCEPTORS, b, 4, &batch(&[vote(C1, 9)])));
}

#[test]
fn chosen_only_advances_over_a_gapless_prefix() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    p.on_message(C1, Message::Request((1..=6).map(|n| vote(C1, n)).collect()), &mut out);
    p.flush(&mut out);
    out.take();

    p.on_message(A1, accepted(b, &[2]), &mut out);
    p.on_message(A2, accepted(b, &[2]), &mut out);
    assert_eq!(p.chosen(), 0, "slot 2 is chosen but slot 1 is not");
    p.on_message(A3, accepted(b, &[1]), &mut out);
    p.on_message(A1, accepted(b, &[1]), &mut out);
    assert_eq!(p.chosen(), 2);
    assert_eq!(out.take(), vec![]);
}

// ---- 5. retransmission and NotConfirmed ------------------------------------------------

#[test]
fn retransmit_resends_to_the_missing_acceptors_and_tells_clients_once() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    let cmds = [vote(C1, 1), vote(C2, 2), vote(C1, 3)];
    let v = batch(&cmds);
    for cmd in &cmds {
        p.on_message(cmd.client(), Message::Request(vec![cmd.clone()]), &mut out);
    }
    p.flush(&mut out);
    assert_eq!(out.take(), accepts(&ACCEPTORS, b, 1, &v));
    p.on_message(A2, accepted(b, &[1]), &mut out);
    assert_eq!(out.take(), vec![]);

    let rearm = set_timer(Timer::Retransmit, RETRANSMIT_MS, RETRANSMIT_MS);
    let resend = |age: u64| if resends_at(age) { accepts(&[A1, A3], b, 1, &v) } else { vec![] };
    for tick in 1..NO_QUORUM_TICKS {
        p.on_timer(Timer::Retransmit, &mut out);
        let mut want = resend(tick);
        want.push(rearm.clone());
        assert_eq!(out.take(), want, "tick {tick}");
    }

    // no_quorum_ticks without a majority: one NotConfirmed per command, grouped per client.
    p.on_timer(Timer::Retransmit, &mut out);
    let mut want = resend(NO_QUORUM_TICKS);
    want.push(send(C1, not_confirmed(&["r1", "r3"])));
    want.push(send(C2, not_confirmed(&["r2"])));
    want.push(rearm.clone());
    assert_eq!(out.take(), want);

    // Later ticks keep retrying (backing off) but do not tell the clients again.
    for age in NO_QUORUM_TICKS + 1..=20 {
        p.on_timer(Timer::Retransmit, &mut out);
        let mut want = resend(age);
        want.push(rearm.clone());
        assert_eq!(out.take(), want, "tick {age}");
    }

    // Once chosen, nothing is left to resend.
    p.on_message(A3, accepted(b, &[1]), &mut out);
    assert_eq!(p.chosen(), 1);
    p.on_timer(Timer::Retransmit, &mut out);
    assert_eq!(out.take(), vec![rearm]);
}

#[test]
fn no_quorum_ticks_count_from_when_the_slot_was_proposed() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    let rearm = set_timer(Timer::Retransmit, RETRANSMIT_MS, RETRANSMIT_MS);

    // Two idle ticks, then a slot is proposed.
    p.on_timer(Timer::Retransmit, &mut out);
    p.on_timer(Timer::Retransmit, &mut out);
    assert_eq!(out.take(), vec![rearm.clone(), rearm.clone()]);
    let v = batch(&[vote(C1, 1)]);
    p.on_message(C1, Message::Request(v.to_vec()), &mut out);
    p.flush(&mut out);
    out.take();

    let resend = |age: u64| if resends_at(age) { accepts(&ACCEPTORS, b, 1, &v) } else { vec![] };
    for age in 1..NO_QUORUM_TICKS {
        p.on_timer(Timer::Retransmit, &mut out);
        let mut want = resend(age);
        want.push(rearm.clone());
        assert_eq!(out.take(), want);
    }
    p.on_timer(Timer::Retransmit, &mut out);
    let mut want = resend(NO_QUORUM_TICKS);
    want.push(send(C1, not_confirmed(&["r1"])));
    want.push(rearm);
    assert_eq!(out.take(), want);
}

#[test]
fn a_non_leader_ignores_the_retransmit_and_heartbeat_timers() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Retransmit, &mut out);
    p.on_timer(Timer::Heartbeat, &mut out);
    assert_eq!(out.take(), vec![]);
    p.on_timer(Timer::Election, &mut out);
    out.take();
    p.on_timer(Timer::Retransmit, &mut out);
    p.on_timer(Timer::Heartbeat, &mut out);
    assert_eq!(out.take(), vec![], "a candidate has nothing to retransmit");
}

// ---- 6. nack ---------------------------------------------------------------------------

#[test]
fn a_nack_with_a_higher_promise_makes_the_leader_step_down() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    let v = batch(&[vote(C1, 1)]);
    p.on_message(C1, Message::Request(v.to_vec()), &mut out);
    p.flush(&mut out);
    out.take();

    p.on_message(A2, Message::Nack { ballot: b, promised: Ballot::new(7, 3) }, &mut out);
    assert_eq!(out.take(), step_down_effects());
    assert!(!p.is_leader());
    assert_ne!(p.leader(), Some(P1), "a proposer that stepped down does not call itself leader");

    // Nothing of the leader is left running.
    p.on_timer(Timer::Retransmit, &mut out);
    p.on_timer(Timer::Heartbeat, &mut out);
    assert_eq!(out.take(), vec![]);

    // The next election goes above the round the acceptor promised.
    p.on_timer(Timer::Election, &mut out);
    let b8 = Ballot::new(8, 1);
    let mut want = vec![Effect::Persist(PersistOp::Round(8))];
    want.extend(prepares_round(b8, 2, 1));
    want.push(election_timer());
    assert_eq!(out.take(), want);

    // Re-elected (no acceptor reports slot 1), it proposes the command it could not
    // finish again, at slot 1 under the new ballot.
    p.on_message(A1, promise_round(b8, 2, 1, vec![]), &mut out);
    p.on_message(A3, promise_round(b8, 2, 1, vec![]), &mut out);
    assert!(p.is_leader());
    out.take();
    p.flush(&mut out);
    assert_eq!(out.take(), accepts(&ACCEPTORS, b8, 1, &v));
}

#[test]
fn a_nack_makes_a_candidate_step_down() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    out.take();
    p.on_message(A1, Message::Nack { ballot: Ballot::new(1, 1), promised: Ballot::new(3, 2) }, &mut out);
    assert_eq!(out.take(), step_down_effects());
    // Promises for the abandoned ballot no longer elect.
    p.on_message(A2, promise(Ballot::new(1, 1), vec![]), &mut out);
    p.on_message(A3, promise(Ballot::new(1, 1), vec![]), &mut out);
    assert_eq!(out.take(), vec![]);
    assert!(!p.is_leader());
    p.on_timer(Timer::Election, &mut out);
    assert_eq!(out.take()[0], Effect::Persist(PersistOp::Round(4)));
}

#[test]
fn nacks_that_do_not_concern_the_current_ballot_are_ignored() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    out.take();
    let b2 = elect(&mut p, &mut out);
    assert_eq!(b2, Ballot::new(2, 1));

    // A late nack for the earlier ballot 1.1.
    p.on_message(A1, Message::Nack { ballot: Ballot::new(1, 1), promised: Ballot::new(1, 3) }, &mut out);
    assert_eq!(out.take(), vec![]);
    // A nack from a node that is not an acceptor is refused.
    p.on_message(P3, Message::Nack { ballot: b2, promised: Ballot::new(9, 3) }, &mut out);
    p.on_message(NodeId::acceptor(4), Message::Nack { ballot: b2, promised: Ballot::new(9, 3) }, &mut out);
    assert_eq!(
        out.take(),
        [P3, NodeId::acceptor(4)].map(|from| refused(from, "Nack", Refusal::NotAnAcceptor)).to_vec()
    );
    assert!(p.is_leader());
    assert_eq!(p.ballot(), b2);
}

// ---- 7. heartbeats ---------------------------------------------------------------------

#[test]
fn a_higher_heartbeat_makes_a_candidate_step_down() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    out.take();
    let theirs = Ballot::new(1, 2);
    p.on_message(P2, Message::Heartbeat { ballot: theirs, chosen: 0 }, &mut out);
    assert_eq!(out.take(), step_down_effects());
    assert!(!p.is_leader());
    assert_eq!(p.leader(), Some(P2));
    assert_eq!(p.ballot(), theirs);
}

#[test]
fn a_higher_heartbeat_makes_a_leader_step_down_and_hand_over_its_commands() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    let cmds: Vec<Command> = (1..=7).map(|n| vote(C1, n)).collect();
    p.on_message(C1, Message::Request(cmds.clone()), &mut out);
    p.flush(&mut out); // slots 1 and 2 in flight, one command still queued
    out.take();

    let theirs = Ballot::new(2, 3);
    assert!(theirs > b);
    p.on_message(P3, Message::Heartbeat { ballot: theirs, chosen: 0 }, &mut out);
    assert_eq!(out.take(), step_down_effects());
    assert!(!p.is_leader());
    assert_eq!(p.leader(), Some(P3));

    // The commands of its unfinished slots, and the queued one, go to the new leader.
    p.flush(&mut out);
    let effects = out.take();
    assert_eq!(effects.len(), 1);
    let Effect::Send { to, msg: Message::Request(got) } = &effects[0] else { panic!("{effects:?}") };
    assert_eq!(*to, P3);
    let mut got = got.clone();
    got.sort_by(|a, b| a.request_id().cmp(b.request_id()));
    assert_eq!(got, cmds);

    // An election after that goes above the new leader's round.
    p.on_timer(Timer::Election, &mut out);
    assert_eq!(out.take()[0], Effect::Persist(PersistOp::Round(3)));
}

#[test]
fn a_follower_forwards_client_requests_to_its_leader() {
    let mut p = proposer();
    let mut out = Outbox::new();
    follow(&mut p, P2, Ballot::new(1, 2), &mut out);
    let cmds = vec![vote(C1, 1), vote(C1, 2)];
    p.on_message(C1, Message::Request(cmds.clone()), &mut out);
    assert_eq!(out.take(), vec![send(P2, Message::Request(cmds))]);
    p.flush(&mut out);
    assert_eq!(out.take(), vec![]);
}

#[test]
fn requests_queued_before_a_leader_is_known_are_forwarded_once_it_is() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let cmds = vec![vote(C1, 1)];
    p.on_message(C1, Message::Request(cmds.clone()), &mut out);
    p.flush(&mut out);
    assert_eq!(out.take(), vec![], "no leader to forward to");

    p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(1, 2), chosen: 0 }, &mut out);
    assert_eq!(out.take(), vec![election_timer()], "a follower only resets its election timer");
    p.flush(&mut out);
    assert_eq!(out.take(), vec![send(P2, Message::Request(cmds))]);
}

#[test]
fn commands_past_the_queue_limit_are_refused_at_once_as_busy_one_answer_per_client() {
    let mut config = (*config()).clone();
    config.timing.queue_limit = 2;
    let mut p = Proposer::new(P1, Arc::new(config), DurableState::default());
    let mut out = Outbox::new();
    // A follower with no leader holds what it gets, up to the limit.
    p.on_message(C1, Message::Request(vec![vote(C1, 1), vote(C1, 2), vote(C1, 3), vote(C1, 4)]), &mut out);
    let busy = |ids: &[u32]| {
        let replies = ids.iter().map(|n| Reply::Busy { request_id: format!("r{n}"), limit: 2 }).collect();
        Message::Replies(replies)
    };
    assert_eq!(out.take(), vec![send(C1, busy(&[3, 4]))]);
    p.on_message(C2, Message::Request(vec![vote(C2, 5)]), &mut out);
    assert_eq!(out.take(), vec![send(C2, busy(&[5]))]);
    // The two it holds go on to the leader once there is one.
    follow(&mut p, P2, Ballot::new(1, 2), &mut out);
    p.flush(&mut out);
    assert_eq!(out.take(), vec![send(P2, Message::Request(vec![vote(C1, 1), vote(C1, 2)]))]);
}

#[test]
fn a_crash_notice_from_the_leader_runs_an_election_soon_staggered_by_rank() {
    let mut p = proposer();
    let mut out = Outbox::new();
    follow(&mut p, P2, Ballot::new(1, 2), &mut out);
    // A notice about a node that is not the leader changes nothing.
    for other in [P3, A1, L1, C1] {
        p.on_message(other, Message::PeerDown, &mut out);
        assert_eq!(out.take(), vec![], "{other} is not the leader");
        assert_eq!(p.leader(), Some(P2));
    }
    // The leader's: proposer-1 is first among the others (a tenth of a heartbeat, plus
    // up to a fifth), and holds requests until a leader is known again.
    p.on_message(P2, Message::PeerDown, &mut out);
    assert_eq!(out.take(), vec![set_timer(Timer::Election, HEARTBEAT_MS / 10, HEARTBEAT_MS / 10 + HEARTBEAT_MS / 5)]);
    assert_eq!(p.leader(), None);
    p.on_message(C1, Message::Request(vec![vote(C1, 1)]), &mut out);
    p.flush(&mut out);
    assert_eq!(out.take(), vec![], "nothing is forwarded to a crashed leader");
    // proposer-3 is second: half a heartbeat later.
    let mut p3 = Proposer::new(P3, config(), DurableState::default());
    p3.on_message(P2, Message::Heartbeat { ballot: Ballot::new(1, 2), chosen: 0 }, &mut out);
    out.take();
    p3.on_message(P2, Message::PeerDown, &mut out);
    let second = HEARTBEAT_MS / 10 + HEARTBEAT_MS / 2;
    assert_eq!(out.take(), vec![set_timer(Timer::Election, second, second + HEARTBEAT_MS / 5)]);
    // A leader or a candidate is not moved by one.
    let mut leader = proposer();
    elect(&mut leader, &mut out);
    leader.on_message(P2, Message::PeerDown, &mut out);
    assert_eq!(out.take(), vec![]);
    assert!(leader.is_leader());
}

#[test]
fn what_a_follower_forwarded_lately_goes_to_the_next_leader_when_its_leader_crashes() {
    let mut p = proposer();
    let mut out = Outbox::new();
    follow(&mut p, P2, Ballot::new(1, 2), &mut out);
    // Forwarded two heartbeats ago: long proposed, or the client has retried.
    p.on_message(C1, Message::Request(vec![vote(C1, 1)]), &mut out);
    for _ in 0..2 {
        p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(1, 2), chosen: 0 }, &mut out);
    }
    // Forwarded in the last two periods.
    p.on_message(C1, Message::Request(vec![vote(C1, 2)]), &mut out);
    p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(1, 2), chosen: 0 }, &mut out);
    p.on_message(C2, Message::Request(vec![vote(C2, 3)]), &mut out);
    out.take();
    p.on_message(P2, Message::PeerDown, &mut out);
    out.take();
    // The next leader gets them again, oldest first, with nothing else.
    p.on_message(P3, Message::Heartbeat { ballot: Ballot::new(2, 3), chosen: 0 }, &mut out);
    p.flush(&mut out);
    let sent: Vec<Effect> = out.take().into_iter().filter(|e| matches!(e, Effect::Send { .. })).collect();
    assert_eq!(sent, vec![send(P3, Message::Request(vec![vote(C1, 2), vote(C2, 3)]))]);
}

#[test]
fn without_the_crash_notice_rule_a_notice_changes_nothing() {
    let mut config = (*config()).clone();
    config.timing.rules.crash_notice = false;
    let mut p = Proposer::new(P1, Arc::new(config), DurableState::default());
    let mut out = Outbox::new();
    follow(&mut p, P2, Ballot::new(1, 2), &mut out);
    p.on_message(P2, Message::PeerDown, &mut out);
    assert_eq!(out.take(), vec![]);
    assert_eq!(p.leader(), Some(P2));
}

#[test]
fn stale_heartbeats_are_ignored() {
    // A follower of proposer-3 at 5.3 does not switch to proposer-2 at 4.2.
    let mut p = proposer();
    let mut out = Outbox::new();
    follow(&mut p, P3, Ballot::new(5, 3), &mut out);
    p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(4, 2), chosen: 0 }, &mut out);
    assert_eq!(out.take(), vec![]);
    assert_eq!(p.leader(), Some(P3));
    assert_eq!(p.ballot(), Ballot::new(5, 3));

    // A leader at 3.1 is not unseated by 2.2.
    let mut p = proposer_at(2);
    let b = elect(&mut p, &mut out);
    assert_eq!(b, Ballot::new(3, 1));
    p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(2, 2), chosen: 0 }, &mut out);
    assert_eq!(out.take(), vec![]);
    assert!(p.is_leader());

    // A heartbeat whose ballot is not its sender's, or not from a proposer, is refused.
    p.on_message(P2, Message::Heartbeat { ballot: Ballot::new(9, 3), chosen: 0 }, &mut out);
    p.on_message(A1, Message::Heartbeat { ballot: Ballot::new(9, 3), chosen: 0 }, &mut out);
    assert_eq!(
        out.take(),
        vec![refused(P2, "Heartbeat", Refusal::NotBallotOwner), refused(A1, "Heartbeat", Refusal::NotAProposer)]
    );
    assert!(p.is_leader());
}

// ---- 8. restart ------------------------------------------------------------------------

#[test]
fn a_restarted_proposer_never_reuses_a_ballot() {
    let mut p = proposer_at(5);
    let mut out = Outbox::new();
    p.start(&mut out);
    assert_eq!(out.take(), vec![election_timer()]);
    p.on_timer(Timer::Election, &mut out);
    let b = Ballot::new(6, 1);
    let mut want = vec![Effect::Persist(PersistOp::Round(6))];
    want.extend(prepares(b, 1));
    want.push(election_timer());
    assert_eq!(out.take(), want);
    assert_eq!(p.ballot(), b);
}

#[test]
fn a_follower_drops_a_request_forwarded_by_another_proposer() {
    // Two proposers that each believe the other leads must not bounce a request forever.
    let config = std::sync::Arc::new(ballot_core::Config::new(3, 3, 2, vec!["ada".into()]));
    let mut p = ballot_core::Proposer::new(ballot_core::NodeId::proposer(1), config, Default::default());
    let mut out = ballot_core::Outbox::new();
    let leader = ballot_core::NodeId::proposer(2);
    p.on_message(
        leader,
        ballot_core::Message::Heartbeat { ballot: ballot_core::Ballot::new(3, 2), chosen: 0 },
        &mut out,
    );
    out.take();
    let cmd = ballot_core::Command::Read { request_id: "r".into(), client: ballot_core::NodeId::client(1) };
    p.on_message(ballot_core::NodeId::proposer(3), ballot_core::Message::Request(vec![cmd]), &mut out);
    p.flush(&mut out);
    assert!(out.is_empty(), "forwarded again: {:?}", out.effects);
}

// ---- liveness rules ----------------------------------------------------------------------

/// The messages among `effects`, with their destinations.
fn sends(effects: Vec<Effect>) -> Vec<(NodeId, Message)> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg } => Some((to, msg)),
            _ => None,
        })
        .collect()
}

#[test]
fn check_quorum_a_leader_that_hears_no_majority_steps_down_and_stops_heartbeating() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    // The promises count as heard for the first check: it stays.
    p.on_timer(Timer::CheckQuorum, &mut out);
    assert_eq!(out.take(), vec![set_timer(Timer::CheckQuorum, ELECTION_MAX_MS, ELECTION_MAX_MS)]);
    assert!(p.is_leader());
    // Then only acceptor-1 answers its heartbeats: one of three is not a majority.
    p.on_message(A1, accepted(b, &[]), &mut out);
    p.on_timer(Timer::CheckQuorum, &mut out);
    assert_eq!(out.take(), step_down_effects(), "steps down; its heartbeat timer is cancelled");
    assert!(!p.is_leader());
    assert_eq!(p.leader(), None, "and believes in no leader");
    p.on_timer(Timer::Heartbeat, &mut out);
    assert!(out.is_empty(), "no heartbeat after stepping down");
}

#[test]
fn check_quorum_answers_from_a_majority_keep_the_leader() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    for _ in 0..3 {
        p.on_timer(Timer::CheckQuorum, &mut out);
        out.take();
        p.on_message(A2, accepted(b, &[]), &mut out);
        p.on_message(A3, accepted(b, &[]), &mut out);
        // An answer at another ballot does not count.
        p.on_message(A1, accepted(Ballot::new(b.round + 1, 2), &[]), &mut out);
    }
    assert!(p.is_leader());
}

#[test]
fn a_candidate_refused_by_a_majority_for_a_live_leader_follows_that_leader() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    let mine = p.ballot();
    out.take();
    let theirs = Ballot::new(0, 2);
    assert!(theirs < mine);
    // acceptor-1 still hears proposer-2's leadership: refused below our ballot.
    p.on_message(A1, Message::Nack { ballot: mine, promised: theirs }, &mut out);
    assert!(out.is_empty(), "one refusal of three leaves a majority possible");
    p.on_message(A2, Message::Nack { ballot: mine, promised: theirs }, &mut out);
    assert_eq!(out.take(), step_down_effects());
    assert_eq!(p.leader(), Some(P2), "follows the leader the acceptors still hear");
    // Requests now go to it.
    p.on_message(C1, Message::Request(vec![vote(C1, 1)]), &mut out);
    assert_eq!(sends(out.take()), vec![(P2, Message::Request(vec![vote(C1, 1)]))]);
}

#[test]
fn a_too_large_command_is_refused_at_once_and_never_proposed() {
    let mut p = proposer();
    let mut out = Outbox::new();
    elect(&mut p, &mut out);
    let big = Command::Vote {
        request_id: "big".into(),
        client: C1,
        voter: "x".repeat(ballot_core::MAX_COMMAND_BYTES),
        candidate: "ada".into(),
    };
    let size = big.size();
    p.on_message(C1, Message::Request(vec![big]), &mut out);
    p.flush(&mut out);
    assert_eq!(
        sends(out.take()),
        vec![(
            C1,
            Message::Replies(vec![Reply::TooLarge {
                request_id: "big".into(),
                size,
                limit: ballot_core::MAX_COMMAND_BYTES
            }])
        )]
    );
}

#[test]
fn batches_are_cut_by_encoded_size() {
    let mut c = Config::new(3, 3, 2, vec!["ada".into()]);
    c.timing.window = 64;
    c.timing.max_batch = usize::MAX;
    let mut p = Proposer::new(P1, Arc::new(c), DurableState::default());
    let mut out = Outbox::new();
    elect(&mut p, &mut out);
    // 12,000 commands of about 400 bytes (names at their limits): 4.8 MB, which must not
    // go in one slot.
    let n = 12_000;
    let cmds: Vec<Command> = (0..n)
        .map(|i| Command::Vote {
            request_id: format!("{i:0>width$}", width = ballot_core::MAX_REQUEST_ID_BYTES),
            client: C1,
            voter: format!("{i:v>width$}", width = ballot_core::MAX_VOTER_BYTES),
            candidate: "ada".into(),
        })
        .collect();
    p.on_message(C1, Message::Request(cmds), &mut out);
    p.flush(&mut out);
    let batches: Vec<Value> = sends(out.take())
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Accept { value, .. } if to == A1 => Some(value),
            _ => None,
        })
        .collect();
    assert!(batches.len() >= 5, "{} batches", batches.len());
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), n, "every command proposed once");
    for b in &batches {
        assert!(
            ballot_core::value_size(b) <= ballot_core::PAGE_BYTES,
            "a batch of {} bytes",
            ballot_core::value_size(b)
        );
    }
}

#[test]
fn a_new_leader_reads_a_long_log_in_pages_and_proposes_new_commands_above_it() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    let b = p.ballot();
    out.take();
    let old = Ballot::new(0, 2);
    let v = batch(&[vote(C2, 1)]);
    // Both acceptors hold slots 1..=100 but send only 1..=10 in the first page.
    let page = |from: u64, to: u64| -> Message {
        Message::Promise {
            ballot: b,
            req: 1,
            from_slot: from,
            end: to,
            last: 100,
            compacted: 0,
            accepted: (from..=to).map(|s| entry(s, old, &v)).collect(),
        }
    };
    p.on_message(A1, page(1, 10), &mut out);
    p.on_message(A2, page(1, 10), &mut out);
    assert!(p.is_leader());
    let effects = out.take();
    let reproposed: Vec<u64> = sends(effects)
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Accept { slot, .. } if to == A1 => Some(slot),
            _ => None,
        })
        .collect();
    assert_eq!(reproposed, (1..=10).collect::<Vec<_>>(), "only the slots a majority's pages cover");
    // A new command goes above slot 100 at once, before the rest of the log is read.
    p.on_message(C1, Message::Request(vec![vote(C1, 7)]), &mut out);
    p.flush(&mut out);
    out.take();
    // Once the window has room, the next page is asked for, at the leader's ballot.
    p.on_message(A1, accepted(b, &(1..=10).collect::<Vec<_>>()), &mut out);
    p.on_message(A2, accepted(b, &(1..=10).collect::<Vec<_>>()), &mut out);
    p.flush(&mut out);
    let effects = sends(out.take());
    assert!(
        effects
            .iter()
            .any(|(to, m)| *to == A1 && *m == Message::Prepare { ballot: b, req: 2, from_slot: 11, to_slot: 100 }),
        "asks for the next page: {effects:?}"
    );
    assert!(
        effects.iter().any(|(_, m)| matches!(m, Message::Accept { slot: 101, .. })),
        "the new command went to slot 101: {effects:?}"
    );
}

#[test]
fn a_compaction_mark_in_a_promise_is_taken_as_chosen() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    let b = p.ballot();
    out.take();
    let v = batch(&[vote(C2, 1)]);
    let promise = |compacted: u64| Message::Promise {
        ballot: b,
        req: 1,
        from_slot: 1,
        end: u64::MAX,
        last: 5_000,
        compacted,
        accepted: vec![entry(5_000, Ballot::new(0, 2), &v)],
    };
    p.on_message(A1, promise(4_999), &mut out);
    p.on_message(A2, promise(0), &mut out);
    assert_eq!(p.chosen(), 4_999, "every learner applied those slots");
    let proposed: Vec<u64> = sends(out.take())
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Accept { slot, .. } if to == A1 => Some(slot),
            _ => None,
        })
        .collect();
    assert_eq!(proposed, vec![5_000], "only the slot above the mark is re-proposed");
}

#[test]
fn a_learner_stuck_below_chosen_makes_the_leader_reopen_its_slots() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    let v = batch(&[vote(C1, 1)]);
    p.on_message(C1, Message::Request(vec![vote(C1, 1), vote(C1, 2)]), &mut out);
    p.flush(&mut out);
    for a in [A1, A2] {
        p.on_message(a, accepted(b, &[1]), &mut out);
    }
    assert_eq!(p.chosen(), 1);
    out.take();
    // The learner asks once: maybe it is only slow.
    p.on_message(L1, Message::CatchUp { applied: 0 }, &mut out);
    p.flush(&mut out);
    assert!(!sends(out.take()).iter().any(|(_, m)| matches!(m, Message::Prepare { .. })));
    // Twice from the same slot: stuck. Phase 1 for slot 1 at the leader's ballot...
    p.on_message(L1, Message::CatchUp { applied: 0 }, &mut out);
    p.flush(&mut out);
    let prepares: Vec<_> =
        sends(out.take()).into_iter().filter(|(_, m)| matches!(m, Message::Prepare { .. })).collect();
    assert_eq!(
        prepares,
        ACCEPTORS
            .iter()
            .map(|&a| (a, Message::Prepare { ballot: b, req: 2, from_slot: 1, to_slot: 1 }))
            .collect::<Vec<_>>()
    );
    // ...then phase 2 with the value of the highest ballot a majority reports.
    let reply =
        |accepted| Message::Promise { ballot: b, req: 2, from_slot: 1, end: 1, last: 1, compacted: 0, accepted };
    p.on_message(A1, reply(vec![entry(1, b, &v)]), &mut out);
    p.on_message(A3, reply(vec![]), &mut out);
    assert_eq!(
        sends(out.take()),
        accepts(&ACCEPTORS, b, 1, &v)
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { to, msg } => Some((to, msg)),
                _ => None,
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn reopening_never_fills_a_slot_no_acceptor_reports() {
    let mut p = proposer();
    let mut out = Outbox::new();
    let b = elect(&mut p, &mut out);
    p.on_message(P2, Message::Heartbeat { ballot: Ballot::ZERO, chosen: 0 }, &mut out);
    p.on_message(C1, Message::Request(vec![vote(C1, 1)]), &mut out);
    p.flush(&mut out);
    for a in [A1, A2] {
        p.on_message(a, accepted(b, &[1]), &mut out);
    }
    p.on_message(L1, Message::CatchUp { applied: 0 }, &mut out);
    p.on_message(L1, Message::CatchUp { applied: 0 }, &mut out);
    p.flush(&mut out);
    out.take();
    let empty = Message::Promise { ballot: b, req: 2, from_slot: 1, end: 1, last: 0, compacted: 0, accepted: vec![] };
    p.on_message(A2, empty.clone(), &mut out);
    p.on_message(A3, empty, &mut out);
    assert!(
        !sends(out.take()).iter().any(|(_, m)| matches!(m, Message::Accept { .. })),
        "a chosen slot is never made a no-op"
    );
}

#[test]
fn a_slot_an_acceptor_compacted_is_never_filled_with_a_no_op() {
    let mut p = proposer();
    let mut out = Outbox::new();
    p.on_timer(Timer::Election, &mut out);
    let b = p.ballot();
    out.take();
    // acceptor-1 holds slots 1..=20 and sends the first page (1..=10); acceptor-2 never
    // accepted anything. A majority covers 1..=10: re-proposed.
    let v = batch(&[vote(C2, 1)]);
    let page = |req: u64, from: u64, to: u64, compacted: u64, held: bool| Message::Promise {
        ballot: b,
        req,
        from_slot: from,
        end: to,
        last: if held { 20 } else { 0 },
        compacted,
        accepted: if held {
            (from.max(compacted + 1)..=to).map(|s| entry(s, Ballot::new(0, 2), &v)).collect()
        } else {
            vec![]
        },
    };
    p.on_message(A1, page(1, 1, 10, 0, true), &mut out);
    p.on_message(A2, page(1, 1, u64::MAX, 0, false), &mut out);
    p.on_message(A1, accepted(b, &(1..=10).collect::<Vec<_>>()), &mut out);
    p.on_message(A2, accepted(b, &(1..=10).collect::<Vec<_>>()), &mut out);
    p.flush(&mut out);
    out.take();
    // The next page (11..=20): acceptor-3 answers that it compacted up to 15 (every learner
    // applied them), acceptor-2 still holds nothing. Slots 11..=15 are chosen, never no-ops.
    // An answer to an older round is not taken for this one.
    p.on_message(A2, page(1, 11, 20, 0, false), &mut out);
    p.on_message(A3, page(2, 11, 20, 15, true), &mut out);
    assert!(
        sends(out.take()).iter().all(|(_, m)| !matches!(m, Message::Accept { .. })),
        "one answer of this round is not a majority"
    );
    p.on_message(A2, page(2, 11, 20, 0, false), &mut out);
    assert!(p.chosen() >= 15, "the compaction mark is taken as chosen");
    let proposed: Vec<(u64, Value)> = sends(out.take())
        .into_iter()
        .filter_map(|(to, m)| match m {
            Message::Accept { slot, value, .. } if to == A1 => Some((slot, value)),
            _ => None,
        })
        .collect();
    assert!(proposed.iter().all(|(s, _)| *s > 15), "nothing at or below the mark: {proposed:?}");
    assert_eq!(proposed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (16..=20).collect::<Vec<_>>());
    assert!(proposed.iter().all(|(_, value)| *value == v), "the reported values, not no-ops");
}
