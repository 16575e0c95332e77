//! Who may send what: the one rule every role checks a message's sender against before it
//! looks at the message, and the reasons a message is refused.
//!
//! The transports authenticate `Envelope.from` (mTLS, CURVE); this rule decides what an
//! authenticated name may ask of a role. Whatever the transport, a node that is not a
//! configured proposer cannot make an acceptor promise or accept, one that is not a
//! configured acceptor cannot count toward a quorum, one that is not a learner cannot feed
//! a learner chosen values or read the log, and a proposer can only speak with its own
//! ballot, so it cannot impersonate the leader. The rule is a function of the configured
//! cluster and the message alone, so every role applies the same one and ARCHITECTURE.md
//! can state it as a table.

use crate::config::Config;
use crate::ids::{Ballot, NodeId, Role};
use crate::msg::Message;
use std::fmt;

/// Why a role refused a message (or a command in one). Every refusal is reported as an
/// [`Effect::Refused`](crate::Effect::Refused): the runtime counts them by reason and
/// logs them, rate-limited. Stale messages (an old ballot, a slot already applied) are
/// not refusals: Paxos expects them and ignores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// This role takes no message of this kind.
    UnexpectedKind,
    /// A proposer's message (`Prepare`, `Accept`, `Heartbeat`) from a node that is not a
    /// configured proposer.
    NotAProposer,
    /// A proposer's message with a ballot another proposer owns.
    NotBallotOwner,
    /// An acceptor's message (`Promise`, `Accepted`, `Nack`, `Learn`) from a node that is
    /// not a configured acceptor.
    NotAnAcceptor,
    /// A learner's message (`Chosen`, `Snapshot`, `CatchUp`) from a node that is not a
    /// learner.
    NotALearner,
    /// `Progress` to an acceptor from a node that is not a configured learner (acceptors
    /// compact what every configured learner applied).
    NotAConfiguredLearner,
    /// A `Request` from a node that is neither a client nor a configured proposer.
    NotAClient,
    /// A client's command names another client to answer.
    WrongClient,
    /// A message that claims to come from the node itself.
    FromSelf,
    /// A command larger than [`MAX_COMMAND_BYTES`](crate::MAX_COMMAND_BYTES).
    TooLarge,
    /// A command with a voter id, candidate name or request id over its limit
    /// ([`Command::check_lengths`](crate::Command::check_lengths)).
    TooLong,
    /// A snapshot (or a part of one) that does not add up, names other candidates, or
    /// claims an impossible number of parts.
    BadSnapshot,
    /// A learner that is not configured asked to catch up while as many joined learners as
    /// an acceptor serves are already known.
    TooManyLearners,
    /// An acceptor rejoining after lost state takes no `Prepare`, `Accept` or
    /// `Heartbeat` until it can no longer contradict what it forgot.
    Rejoining,
}

impl Refusal {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Refusal; 14] = [
        Refusal::UnexpectedKind,
        Refusal::NotAProposer,
        Refusal::NotBallotOwner,
        Refusal::NotAnAcceptor,
        Refusal::NotALearner,
        Refusal::NotAConfiguredLearner,
        Refusal::NotAClient,
        Refusal::WrongClient,
        Refusal::FromSelf,
        Refusal::TooLarge,
        Refusal::TooLong,
        Refusal::BadSnapshot,
        Refusal::TooManyLearners,
        Refusal::Rejoining,
    ];

    /// The reason's name, as `ballot_refused_total{reason="..."}` labels it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnexpectedKind => "unexpected_kind",
            Refusal::NotAProposer => "not_a_proposer",
            Refusal::NotBallotOwner => "not_ballot_owner",
            Refusal::NotAnAcceptor => "not_an_acceptor",
            Refusal::NotALearner => "not_a_learner",
            Refusal::NotAConfiguredLearner => "not_a_configured_learner",
            Refusal::NotAClient => "not_a_client",
            Refusal::WrongClient => "wrong_client",
            Refusal::FromSelf => "from_self",
            Refusal::TooLarge => "too_large",
            Refusal::TooLong => "too_long",
            Refusal::BadSnapshot => "bad_snapshot",
            Refusal::TooManyLearners => "too_many_learners",
            Refusal::Rejoining => "rejoining",
        }
    }

    /// Position in [`Refusal::ALL`] (for counters indexed by reason).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the refused message broke a rule of who may send what. Among the cluster's
    /// own nodes only a bug sends such a message: where nobody forges (the in-memory
    /// network), one of these is a bug of ours, and chaos fails the run on it. The others
    /// refuse what a client or a joining learner may honestly ask for (a vote too large,
    /// one learner too many), or what a rejoining acceptor is not ready for yet.
    pub fn breaks_a_sender_rule(self) -> bool {
        !matches!(self, Refusal::TooLarge | Refusal::TooLong | Refusal::TooManyLearners | Refusal::Rejoining)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `from` may send `msg` to `me`, a node of the cluster `config`: the table in
/// ARCHITECTURE.md ("who may send what"). `Hello` may come from anyone (roles ignore it).
pub fn check_sender(config: &Config, me: NodeId, from: NodeId, msg: &Message) -> Result<(), Refusal> {
    if from == me {
        return Err(Refusal::FromSelf);
    }
    let acceptor = || if config.acceptors.contains(&from) { Ok(()) } else { Err(Refusal::NotAnAcceptor) };
    let learner = || if from.role == Role::Learner { Ok(()) } else { Err(Refusal::NotALearner) };
    match (me.role, msg) {
        (_, Message::Hello) => Ok(()),
        // Made by this node's own transport, never read from the network (it has no
        // encoding): nothing to check.
        (_, Message::PeerDown) => Ok(()),
        (Role::Proposer, Message::Request(_)) => {
            if from.role == Role::Client || config.proposers.contains(&from) {
                Ok(())
            } else {
                Err(Refusal::NotAClient)
            }
        }
        (Role::Proposer | Role::Acceptor | Role::Learner, Message::Heartbeat { ballot, .. }) => {
            ballot_owner(config, from, *ballot)
        }
        (Role::Acceptor, Message::Prepare { ballot, .. } | Message::Accept { ballot, .. }) => {
            ballot_owner(config, from, *ballot)
        }
        (Role::Proposer, Message::Promise { .. } | Message::Accepted { .. } | Message::Nack { .. }) => acceptor(),
        (Role::Learner, Message::Learn { .. }) => acceptor(),
        (
            Role::Learner,
            Message::Chosen { .. } | Message::Snapshot { .. } | Message::CatchUp { .. } | Message::Progress { .. },
        ) => learner(),
        (Role::Proposer | Role::Acceptor, Message::CatchUp { .. }) => learner(),
        // Acceptors and proposers rejoin after lost state (a proposer asks acceptors
        // only); the answers that let one vote or lead again count over the configured
        // proposers and acceptors, so nothing else may ask or answer.
        (Role::Proposer, Message::Rejoin { .. }) => acceptor(),
        (Role::Acceptor, Message::Rejoin { .. }) | (Role::Proposer | Role::Acceptor, Message::RejoinInfo { .. }) => {
            if config.acceptors.contains(&from) || config.proposers.contains(&from) {
                Ok(())
            } else {
                Err(Refusal::NotAnAcceptor)
            }
        }
        (Role::Acceptor, Message::Progress { .. }) => {
            if config.learners.contains(&from) {
                Ok(())
            } else {
                Err(Refusal::NotAConfiguredLearner)
            }
        }
        _ => Err(Refusal::UnexpectedKind),
    }
}

/// A proposer's message: from a configured proposer, at a ballot it owns.
fn ballot_owner(config: &Config, from: NodeId, ballot: Ballot) -> Result<(), Refusal> {
    if !config.proposers.contains(&from) {
        Err(Refusal::NotAProposer)
    } else if ballot.proposer != from.index {
        Err(Refusal::NotBallotOwner)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::AcceptedEntry;
    use crate::voting::VotingState;

    fn config() -> Config {
        Config::new(2, 3, 2, vec!["ada".into()])
    }

    #[test]
    fn the_table() {
        let c = config();
        let (p1, a1, l1, c1) = (NodeId::proposer(1), NodeId::acceptor(1), NodeId::learner(1), NodeId::client(1));
        let hb = |r, p| Message::Heartbeat { ballot: Ballot::new(r, p), chosen: 0 };
        let prepare = |p| Message::Prepare { ballot: Ballot::new(1, p), req: 1, from_slot: 1, to_slot: u64::MAX };
        let learn = Message::Learn { entries: Vec::<AcceptedEntry>::new() };
        let snapshot = Message::Snapshot { applied: 1, part: 0, parts: 1, state: VotingState::new(vec![]) };
        let table: Vec<(NodeId, NodeId, Message, Result<(), Refusal>)> = vec![
            (a1, p1, prepare(1), Ok(())),
            (a1, NodeId::proposer(9), prepare(9), Err(Refusal::NotAProposer)),
            (a1, p1, prepare(2), Err(Refusal::NotBallotOwner)),
            (a1, c1, prepare(1), Err(Refusal::NotAProposer)),
            (NodeId::proposer(2), p1, hb(3, 1), Ok(())),
            (NodeId::proposer(2), NodeId::proposer(7), hb(3, 7), Err(Refusal::NotAProposer)),
            (l1, p1, hb(3, 2), Err(Refusal::NotBallotOwner)),
            (l1, a1, learn.clone(), Ok(())),
            (l1, NodeId::acceptor(4), learn.clone(), Err(Refusal::NotAnAcceptor)),
            (l1, NodeId::learner(2), learn, Err(Refusal::NotAnAcceptor)),
            (l1, NodeId::learner(999), snapshot.clone(), Ok(())),
            (l1, c1, snapshot.clone(), Err(Refusal::NotALearner)),
            (l1, l1, snapshot.clone(), Err(Refusal::FromSelf)),
            (a1, NodeId::learner(9), Message::CatchUp { applied: 0 }, Ok(())),
            (a1, c1, Message::CatchUp { applied: 0 }, Err(Refusal::NotALearner)),
            (a1, l1, Message::Progress { applied: 0 }, Ok(())),
            (a1, NodeId::learner(9), Message::Progress { applied: 0 }, Err(Refusal::NotAConfiguredLearner)),
            (p1, c1, Message::Request(vec![]), Ok(())),
            (p1, NodeId::proposer(2), Message::Request(vec![]), Ok(())),
            (p1, l1, Message::Request(vec![]), Err(Refusal::NotAClient)),
            (p1, c1, Message::Hello, Ok(())),
            (a1, p1, snapshot, Err(Refusal::UnexpectedKind)),
            (p1, a1, Message::Rejoin { fence: Ballot::ZERO, horizon: 0 }, Ok(())),
            (a1, NodeId::acceptor(2), Message::Rejoin { fence: Ballot::ZERO, horizon: 0 }, Ok(())),
            (a1, p1, Message::Rejoin { fence: Ballot::ZERO, horizon: 0 }, Ok(())),
            (p1, NodeId::proposer(2), Message::Rejoin { fence: Ballot::ZERO, horizon: 0 }, Err(Refusal::NotAnAcceptor)),
            (a1, NodeId::acceptor(9), Message::Rejoin { fence: Ballot::ZERO, horizon: 0 }, Err(Refusal::NotAnAcceptor)),
            (a1, p1, Message::RejoinInfo { fence: Ballot::ZERO, round: 1, top: 0, covered: 0 }, Ok(())),
            (
                a1,
                l1,
                Message::RejoinInfo { fence: Ballot::ZERO, round: 1, top: 0, covered: 0 },
                Err(Refusal::NotAnAcceptor),
            ),
            (l1, a1, Message::Rejoin { fence: Ballot::ZERO, horizon: 0 }, Err(Refusal::UnexpectedKind)),
            (p1, a1, Message::Replies(vec![]), Err(Refusal::UnexpectedKind)),
        ];
        for (me, from, msg, want) in table {
            assert_eq!(check_sender(&c, me, from, &msg), want, "{from} -> {me}: {msg}");
        }
    }

    #[test]
    fn reasons_are_listed_in_index_order() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }
}
