//! What goes into the replicated log, and what comes back to clients.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A client's name for one request. A retry carries the same id, so it is never a second vote.
pub type RequestId = String;

/// The value of one slot: a batch of commands (empty for a no-op that fills a hole).
pub type Value = Arc<Vec<Command>>;

/// One entry of a slot's batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// `voter` votes for `candidate` (the user's act: CastVote).
    Vote {
        /// The client's name for this request; a retry reuses it.
        request_id: RequestId,
        /// Who gets the reply.
        client: NodeId,
        /// Who votes; each voter counts once.
        voter: String,
        /// Whom the vote is for; must be one of the configured candidates.
        candidate: String,
    },
    /// A linearizable read of the tally: answered when the read's slot is applied.
    Read {
        /// The client's name for this request.
        request_id: RequestId,
        /// Who gets the reply.
        client: NodeId,
    },
}

/// Largest command a client may submit, by [`Command::size`]: a vote whose names are
/// longer is refused at once with `too_large`, before it reaches the log, so every slot
/// value and every message that carries one stays far below the frame limit.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Longest voter id, in bytes. The ballot box keeps every counted voter's id for good,
/// so its length bounds what one vote costs a learner's memory and snapshot.
pub const MAX_VOTER_BYTES: usize = 256;

/// Longest candidate name a command may carry, in bytes (a longer one can never be a
/// configured candidate, so it is refused before it reaches the log).
pub const MAX_CANDIDATE_BYTES: usize = 256;

/// Longest request id, in bytes. The ballot box keeps the first outcome of every vote
/// request under its id for good (that is what makes a retry safe), so this bounds the
/// memory each vote costs. The runtime client's ids are about 45 bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A command field over its limit ([`MAX_VOTER_BYTES`], [`MAX_CANDIDATE_BYTES`],
/// [`MAX_REQUEST_ID_BYTES`]): the command is refused, never proposed or applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {field} is {len} bytes and the cluster takes at most {limit}")]
pub struct TooLong {
    /// Which field: `voter id`, `candidate name` or `request id`.
    pub field: &'static str,
    /// Its length, in bytes.
    pub len: usize,
    /// The most the cluster takes, in bytes.
    pub limit: usize,
}

impl TooLong {
    fn check(field: &'static str, value: &str, limit: usize) -> Result<(), TooLong> {
        if value.len() > limit {
            return Err(TooLong { field, len: value.len(), limit });
        }
        Ok(())
    }
}

/// Bytes a command or value costs on the wire beyond its strings (field tags, lengths,
/// node id): an upper bound, so sums of [`Command::size`] never undercount.
const COMMAND_OVERHEAD: usize = 32;

impl Command {
    /// An upper bound of this command's encoded size in bytes.
    pub fn size(&self) -> usize {
        COMMAND_OVERHEAD
            + match self {
                Command::Vote { request_id, voter, candidate, .. } => request_id.len() + voter.len() + candidate.len(),
                Command::Read { request_id, .. } => request_id.len(),
            }
    }

    /// The first field over its limit, if any: voter, candidate, request id.
    pub fn check_lengths(&self) -> Result<(), TooLong> {
        if let Command::Vote { voter, candidate, .. } = self {
            TooLong::check("voter id", voter, MAX_VOTER_BYTES)?;
            TooLong::check("candidate name", candidate, MAX_CANDIDATE_BYTES)?;
        }
        TooLong::check("request id", self.request_id(), MAX_REQUEST_ID_BYTES)
    }

    /// `Vote` or `Read`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Vote { .. } => "Vote",
            Command::Read { .. } => "Read",
        }
    }

    /// The client's name for this request.
    pub fn request_id(&self) -> &str {
        match self {
            Command::Vote { request_id, .. } | Command::Read { request_id, .. } => request_id,
        }
    }
    /// The client the reply goes to.
    pub fn client(&self) -> NodeId {
        match self {
            Command::Vote { client, .. } | Command::Read { client, .. } => *client,
        }
    }
}

/// Why the voting state machine refused a vote. Both are final answers, not failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum VoteError {
    /// The voter has already voted (with another request id); the first vote stands.
    #[error("already_voted")]
    AlreadyVoted,
    /// The candidate is not one of the configured candidates.
    #[error("unknown_candidate")]
    UnknownCandidate,
}

/// An upper bound of a slot value's encoded size in bytes.
pub fn value_size(value: &[Command]) -> usize {
    COMMAND_OVERHEAD + value.iter().map(Command::size).sum::<usize>()
}

/// Tally per candidate, in the cluster's candidate order.
pub type Tally = Vec<(String, u64)>;

/// An answer to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The vote's command was applied at `slot` (the slot of its first application when
    /// it was retried) with this outcome.
    Vote {
        /// The request answered.
        request_id: RequestId,
        /// The log slot the vote was applied at.
        slot: u64,
        /// Counted, or why not.
        result: Result<(), VoteError>,
    },
    /// The tally as of `slot`.
    Read {
        /// The request answered.
        request_id: RequestId,
        /// The log slot the read was applied at.
        slot: u64,
        /// Votes per candidate after every slot up to `slot`.
        tally: Tally,
    },
    /// The leader could not get a majority of acceptors to accept the command's slot in
    /// time. The command is not confirmed; it may still be chosen later, and retrying with
    /// the same request id is safe.
    NotConfirmed {
        /// The request answered.
        request_id: RequestId,
    },
    /// The command is larger than [`MAX_COMMAND_BYTES`], or one of its fields is over its
    /// own limit (then `size` is the field's length and `limit` the field's limit, see
    /// [`Command::check_lengths`]): refused at once, never proposed or counted. Final:
    /// retrying the same command gets the same answer.
    TooLarge {
        /// The request answered.
        request_id: RequestId,
        /// The command's size by [`Command::size`] (or the long field's length), in bytes.
        size: usize,
        /// The limit: [`MAX_COMMAND_BYTES`], or the field's.
        limit: usize,
    },
    /// The proposer already holds `limit` commands waiting for a slot or a leader
    /// ([`Timing::queue_limit`](crate::Timing::queue_limit)): this one was refused before
    /// it was queued, so it is not in the log unless an earlier try of the same request id
    /// got in. Retrying later, with the same request id, is safe.
    Busy {
        /// The request answered.
        request_id: RequestId,
        /// The most commands the proposer holds.
        limit: usize,
    },
}

impl Reply {
    /// Bytes the tally of a read reply costs (0 for other replies).
    pub fn tally_size(&self) -> usize {
        match self {
            Reply::Read { tally, .. } => tally.iter().map(|(c, _)| c.len() + 10).sum(),
            _ => 0,
        }
    }

    /// The request this reply answers.
    pub fn request_id(&self) -> &str {
        match self {
            Reply::Vote { request_id, .. }
            | Reply::Read { request_id, .. }
            | Reply::NotConfirmed { request_id }
            | Reply::TooLarge { request_id, .. }
            | Reply::Busy { request_id, .. } => request_id,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Vote { request_id, voter, candidate, .. } => {
                write!(f, "vote({request_id}: {voter}->{candidate})")
            }
            Command::Read { request_id, .. } => write!(f, "read({request_id})"),
        }
    }
}
