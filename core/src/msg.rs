//! The protocol's messages. Stale or duplicate messages are normal in Paxos: every
//! handler ignores what it no longer needs instead of failing.

use crate::command::{value_size, Command, Reply, Value};
use crate::ids::Ballot;
use crate::voting::VotingState;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the message format; a peer speaking another version is refused.
pub const PROTOCOL_VERSION: u16 = 3;

/// Most bytes of slot values one message carries (a `Promise` page, a catch-up answer, a
/// leader's batch): well below the transports' 16 MiB frame limit, so every message is
/// below it by construction. One entry larger than this still travels alone; commands
/// are limited to [`crate::command::MAX_COMMAND_BYTES`], so no entry comes near the frame
/// limit.
pub const PAGE_BYTES: usize = 1 << 20;

/// One accepted value, as an acceptor reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEntry {
    /// The log slot.
    pub slot: u64,
    /// The ballot the value was accepted at.
    pub ballot: Ballot,
    /// The accepted value (a batch of commands).
    pub value: Value,
}

/// Everything nodes and clients send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client -> proposer: commands to put into the log. A follower forwards them to the
    /// leader it knows.
    Request(Vec<Command>),
    /// Learner or leader -> client.
    Replies(Vec<Reply>),
    /// Leader -> proposers and learners: "I lead with `ballot`; slots up to `chosen` are
    /// chosen."
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every slot up to this one is chosen.
        chosen: u64,
    },
    /// Phase 1a for the slots `from_slot..=to_slot`. A leader sends it again at its own
    /// ballot to read the next page of a long log, or to re-open chosen slots that a
    /// learner cannot learn (see `Proposer`).
    /// `req` names this round of phase 1 and comes back in its promises, so an answer to
    /// an older round (delayed, duplicated) is never taken for this one.
    Prepare {
        /// The ballot to promise.
        ballot: Ballot,
        /// The name of this phase 1 round, echoed by the promise.
        req: u64,
        /// First slot asked for.
        from_slot: u64,
        /// Last slot asked for (`u64::MAX`: every slot from `from_slot` on).
        to_slot: u64,
    },
    /// Phase 1b: the values this acceptor accepted in `from_slot..=end`, a page cut by
    /// encoded size ([`PAGE_BYTES`]); `end` is where the page stops (the asked `to_slot`
    /// when it holds everything), `last` the highest slot it has accepted anything for,
    /// `compacted` the slot up to which it forgot its values because every configured
    /// learner applied them (so they are chosen).
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// The `req` of the `Prepare` answered.
        req: u64,
        /// The `from_slot` of the `Prepare` answered.
        from_slot: u64,
        /// Last slot this page covers.
        end: u64,
        /// Highest slot the acceptor accepted anything for (0 if none).
        last: u64,
        /// Slots up to here are forgotten, because every configured learner applied them.
        compacted: u64,
        /// The accepted values in `from_slot..=end`, by slot.
        accepted: Vec<AcceptedEntry>,
    },
    /// Phase 2a.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot proposed.
        slot: u64,
        /// The value proposed for it.
        value: Value,
    },
    /// Phase 2b, to the proposer: these slots are accepted at `ballot`.
    Accepted {
        /// The ballot accepted at.
        ballot: Ballot,
        /// The slots accepted (empty: an answer to a heartbeat).
        slots: Vec<u64>,
    },
    /// Phase 2b, to learners (and catch-up answers): what this acceptor accepted.
    Learn {
        /// The accepted values.
        entries: Vec<AcceptedEntry>,
    },
    /// Acceptor -> proposer: `ballot` was refused because a higher one was promised (or,
    /// for a `Prepare`, because the acceptor still hears the leader of `promised`).
    Nack {
        /// The ballot refused.
        ballot: Ballot,
        /// The acceptor's promise, or, when it refuses a `Prepare` because it still hears a
        /// leader (its lease), that leader's ballot, which may be lower than `ballot`.
        promised: Ballot,
    },
    /// Learner -> acceptors and learners: "send me what you know after slot `applied`".
    CatchUp {
        /// The learner's last applied slot.
        applied: u64,
    },
    /// Learner -> learner: chosen values, from the sender's applied log.
    Chosen {
        /// `(slot, value)` pairs, in slot order.
        entries: Vec<(u64, Value)>,
    },
    /// Client -> any node: "I am here". Roles ignore it; a socket transport learns from it
    /// where to send the client's answers (learners and the leader answer clients that
    /// never sent them anything else).
    Hello,
    /// Learner -> learners and acceptors, every catch-up period: "I have applied up to
    /// `applied`". Acceptors compact what every configured learner applied.
    Progress {
        /// The learner's last applied slot.
        applied: u64,
    },
    /// Learner -> learner far behind: the state machine as of slot `applied`.
    /// A large state travels as `parts` messages (`part` counts from 0), each a share
    /// of it of about [`PAGE_BYTES`] ([`VotingState::split`]).
    Snapshot {
        /// The slot the state stands for.
        applied: u64,
        /// Which share this is, from 0.
        part: u32,
        /// How many shares make the whole state.
        parts: u32,
        /// This share of the state.
        state: VotingState,
    },
    /// Rejoining acceptor -> proposers and acceptors, every lease period until it votes
    /// again (ARCHITECTURE.md, "Rejoining after lost state"). With `fence` at
    /// [`Ballot::ZERO`] it asks for rounds; with a fence, an acceptor promises the fence
    /// and says how far it holds every slot up to `horizon` at a ballot of at least it.
    Rejoin {
        /// The ballot the other acceptors are asked to promise (ZERO: none yet).
        fence: Ballot,
        /// The last slot the rejoining acceptor may have voted in (0: not known yet).
        horizon: u64,
    },
    /// Proposer or acceptor -> a rejoining acceptor (or a rejoining proposer): the answer
    /// to `Rejoin`, sent only once what it states is durable.
    RejoinInfo {
        /// The fence the question named.
        fence: Ballot,
        /// A proposer's highest round used, or an acceptor's promised round.
        round: u64,
        /// An acceptor's highest slot accepted or compacted (0 for a proposer).
        top: u64,
        /// An acceptor's highest slot `c` such that every slot up to `c` is compacted or
        /// accepted at a ballot of at least `fence` (looked at up to `horizon` only).
        covered: u64,
    },
    /// Never on the wire (it cannot be encoded or decoded): a transport's own notice, in
    /// the sender's name, that the connection from the sender closed while it was in use
    /// (a frame within the last second): the sender most likely crashed. A hint only:
    /// a wrong one (a peer that redialled) costs an early election the acceptors refuse
    /// while they hear the leader, never safety.
    #[serde(skip)]
    PeerDown,
}

/// Bytes an `AcceptedEntry` or a `(slot, value)` pair costs beyond its value: slot,
/// ballot, headers (an upper bound).
const ENTRY_OVERHEAD: usize = 40;

impl Message {
    /// An upper bound of this message's encoded size in bytes (the in-memory network
    /// holds messages to the same frame limit as the socket transports with it).
    pub fn size_hint(&self) -> usize {
        let entries = |e: &[AcceptedEntry]| e.iter().map(|e| ENTRY_OVERHEAD + value_size(&e.value)).sum::<usize>();
        64 + match self {
            Message::Request(cmds) => value_size(cmds),
            Message::Replies(r) => r.iter().map(|r| 64 + r.request_id().len() + r.tally_size()).sum(),
            Message::Promise { accepted, .. } => entries(accepted),
            Message::Accept { value, .. } => value_size(value),
            Message::Accepted { slots, .. } => 9 * slots.len(),
            Message::Learn { entries: e } => entries(e),
            Message::Chosen { entries } => entries.iter().map(|(_, v)| ENTRY_OVERHEAD + value_size(v)).sum(),
            Message::Snapshot { state, .. } => state.size_hint(),
            Message::Heartbeat { .. }
            | Message::Prepare { .. }
            | Message::Nack { .. }
            | Message::CatchUp { .. }
            | Message::Hello
            | Message::PeerDown
            | Message::Progress { .. }
            | Message::Rejoin { .. }
            | Message::RejoinInfo { .. } => 0,
        }
    }

    /// Every name [`Message::kind`] gives.
    pub const KINDS: [&'static str; 17] = [
        "Request",
        "Replies",
        "Heartbeat",
        "Prepare",
        "Promise",
        "Accept",
        "Accepted",
        "Learn",
        "Nack",
        "CatchUp",
        "Chosen",
        "Hello",
        "PeerDown",
        "Progress",
        "Snapshot",
        "Rejoin",
        "RejoinInfo",
    ];

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Request(_) => "Request",
            Message::Replies(_) => "Replies",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::Prepare { .. } => "Prepare",
            Message::Promise { .. } => "Promise",
            Message::Accept { .. } => "Accept",
            Message::Accepted { .. } => "Accepted",
            Message::Learn { .. } => "Learn",
            Message::Nack { .. } => "Nack",
            Message::CatchUp { .. } => "CatchUp",
            Message::Chosen { .. } => "Chosen",
            Message::Hello => "Hello",
            Message::PeerDown => "PeerDown",
            Message::Progress { .. } => "Progress",
            Message::Snapshot { .. } => "Snapshot",
            Message::Rejoin { .. } => "Rejoin",
            Message::RejoinInfo { .. } => "RejoinInfo",
        }
    }
}

/// A one-line summary, stable across runs, for the event log.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Request(c) => write!(f, "Request(n={})", c.len()),
            Message::Replies(r) => write!(f, "Replies(n={})", r.len()),
            Message::Heartbeat { ballot, chosen } => write!(f, "Heartbeat(b={ballot} chosen={chosen})"),
            Message::Prepare { ballot, req, from_slot, to_slot } => {
                if *to_slot == u64::MAX {
                    write!(f, "Prepare(b={ballot} req={req} from={from_slot})")
                } else {
                    write!(f, "Prepare(b={ballot} req={req} from={from_slot} to={to_slot})")
                }
            }
            Message::Promise { ballot, req, from_slot, end, last, compacted, accepted } => {
                write!(
                    f,
                    "Promise(b={ballot} req={req} {from_slot}..{end} last={last} compacted={compacted} accepted={})",
                    accepted.len()
                )
            }
            Message::Accept { ballot, slot, value } => {
                write!(f, "Accept(b={ballot} slot={slot} n={})", value.len())
            }
            Message::Accepted { ballot, slots } => write!(f, "Accepted(b={ballot} slots={slots:?})"),
            Message::Learn { entries } => {
                write!(f, "Learn(")?;
                for (i, e) in entries.iter().take(4).enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "{}@{}", e.slot, e.ballot)?;
                }
                if entries.len() > 4 {
                    write!(f, " +{}", entries.len() - 4)?;
                }
                write!(f, ")")
            }
            Message::Nack { ballot, promised } => write!(f, "Nack(b={ballot} promised={promised})"),
            Message::CatchUp { applied } => write!(f, "CatchUp(applied={applied})"),
            Message::Chosen { entries } => write!(f, "Chosen(n={})", entries.len()),
            Message::Hello => write!(f, "Hello"),
            Message::PeerDown => write!(f, "PeerDown"),
            Message::Progress { applied } => write!(f, "Progress(applied={applied})"),
            Message::Snapshot { applied, part, parts, state } => {
                write!(f, "Snapshot(applied={applied} part={part}/{parts} voters={})", state.voter_count())
            }
            Message::Rejoin { fence, horizon } => write!(f, "Rejoin(fence={fence} horizon={horizon})"),
            Message::RejoinInfo { fence, round, top, covered } => {
                write!(f, "RejoinInfo(fence={fence} round={round} top={top} covered={covered})")
            }
        }
    }
}
