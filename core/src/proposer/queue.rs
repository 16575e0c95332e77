//! Client commands on their way to a slot: queueing with its limits, forwarding to the
//! leader, batching, proposing a slot's value, and re-queueing when leadership ends.

use super::{InFlight, Phase, Proposer};
use crate::auth::Refusal;
use crate::command::{Command, Reply, Value, MAX_COMMAND_BYTES};
use crate::effect::Outbox;
use crate::ids::{NodeId, Role};
use crate::msg::{Message, PAGE_BYTES};
use std::collections::{BTreeSet, VecDeque};

impl Proposer {
    /// A client's commands, or ones another proposer forwarded: forwarded to the leader
    /// this follower knows, or queued. A client's command that names another client to
    /// answer, is too large or has a name over its limit is refused here, before it is
    /// forwarded or proposed.
    pub(super) fn on_request(&mut self, from: NodeId, mut cmds: Vec<Command>, out: &mut Outbox) {
        cmds.retain(|cmd| self.admit(from, cmd, out));
        if cmds.is_empty() {
            return;
        }
        match (&self.phase, from.role) {
            (Phase::Follower, Role::Client) => match self.leader.filter(|&l| l != self.id) {
                Some(leader) => {
                    self.remember_forwarded(&cmds);
                    out.send(leader, Message::Request(cmds));
                }
                None => self.enqueue(cmds, out),
            },
            // Forwarded once already, to a proposer that no longer leads: drop it
            // rather than forward again. Two proposers that each think the other
            // leads would otherwise bounce it between them forever; the client's
            // retry (same request id) finds the real leader.
            (Phase::Follower, _) => {}
            _ => self.enqueue(cmds, out),
        }
    }

    /// Keeps a copy of commands forwarded to the leader, to send again should it crash
    /// (see `Proposer::forwarded`); the oldest go first past `queue_limit`.
    pub(super) fn remember_forwarded(&mut self, cmds: &[Command]) {
        if !self.config.timing.rules.crash_notice {
            return;
        }
        let limit = self.config.timing.queue_limit;
        self.forwarded.extend(cmds.iter().cloned());
        while self.forwarded.len() + self.forwarded_before.len() > limit {
            if self.forwarded_before.pop_front().is_none() {
                self.forwarded.pop_front();
            }
        }
    }

    /// Whether a command may go on: a client's answers to the client that sent it (a
    /// proposer forwards other clients' commands), and it is within [`MAX_COMMAND_BYTES`]
    /// and every name within its limit. A refused one is reported, and answered `TooLarge`
    /// when it is too large or too long (final: no slot takes it). One naming another
    /// client is not answered at all: the answer would go to that other client.
    fn admit(&self, from: NodeId, cmd: &Command, out: &mut Outbox) -> bool {
        if from.role == Role::Client && cmd.client() != from {
            out.refuse(from, cmd.kind(), Refusal::WrongClient);
            return false;
        }
        let (reason, size, limit) = match cmd.check_lengths() {
            _ if cmd.size() > MAX_COMMAND_BYTES => (Refusal::TooLarge, cmd.size(), MAX_COMMAND_BYTES),
            Err(e) => (Refusal::TooLong, e.len, e.limit),
            Ok(()) => return true,
        };
        out.refuse(from, cmd.kind(), reason);
        let request_id = cmd.request_id().to_string();
        out.send(cmd.client(), Message::Replies(vec![Reply::TooLarge { request_id, size, limit }]));
        false
    }

    /// Queue commands for a slot, refusing at once, by name (`Busy`), those that find the
    /// queue full: it does not grow without bound, and an overloaded cluster answers at
    /// once rather than let its clients time out. One answer per client.
    fn enqueue(&mut self, cmds: Vec<Command>, out: &mut Outbox) {
        let limit = self.config.timing.queue_limit;
        let mut busy: Vec<(NodeId, Vec<Reply>)> = Vec::new();
        for cmd in cmds {
            if self.queue.len() < limit {
                self.queue.push_back(cmd);
                continue;
            }
            let reply = Reply::Busy { request_id: cmd.request_id().to_string(), limit };
            match busy.iter_mut().find(|(c, _)| *c == cmd.client()) {
                Some((_, replies)) => replies.push(reply),
                None => busy.push((cmd.client(), vec![reply])),
            }
        }
        for (client, replies) in busy {
            out.send(client, Message::Replies(replies));
        }
    }

    /// Send `Accept` for `slot` to every acceptor and track it in flight. A recovered
    /// value is skipped when the slot is already in flight.
    pub(super) fn propose(&mut self, slot: u64, value: Value, recovered: bool, out: &mut Outbox) {
        let Phase::Leader(l) = &mut self.phase else { return };
        if recovered && l.inflight.contains_key(&slot) {
            return;
        }
        for &a in &self.config.acceptors {
            out.send(a, Message::Accept { ballot: l.ballot, slot, value: value.clone() });
        }
        l.inflight.insert(
            slot,
            InFlight { value, accepted: BTreeSet::new(), proposed_at: self.tick, clients_told: false, recovered },
        );
    }

    /// Commands of slots this proposer will no longer drive go back to the queue, so they
    /// reach the next leader without waiting for the client's retry. If one was chosen
    /// after all, the state machine answers its second copy with the first outcome.
    pub(super) fn requeue_inflight(&mut self) {
        if let Phase::Leader(l) = &mut self.phase {
            // Older commands first: they go before what was queued after them. Values read
            // back from the acceptors stay there for the next leader to find.
            let mut older: VecDeque<Command> = std::mem::take(&mut l.inflight)
                .into_values()
                .filter(|f| !f.recovered)
                .flat_map(|f| f.value.iter().cloned().collect::<Vec<_>>())
                .collect();
            older.append(&mut self.queue);
            self.queue = older;
        }
    }
}

/// How many commands from the front of `queue` make one batch: at most `max` commands
/// and about [`PAGE_BYTES`] (at least one), so a slot's value, and the `Accept` that
/// carries it, stays far below the frame limit whatever the queue holds.
pub(super) fn take_batch(queue: &VecDeque<Command>, max: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for cmd in queue.iter().take(max) {
        bytes += cmd.size();
        if n > 0 && bytes > PAGE_BYTES {
            break;
        }
        n += 1;
    }
    n
}
