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
    /// The command is larger than [`MAX_COMMAND_BYTES`]: refused at once, never proposed.
    /// Final: retrying the same command gets the same answer.
    TooLarge {
        /// The request answered.
        request_id: RequestId,
        /// The command's size by [`Command::size`], in bytes.
        size: usize,
        /// The limit, [`MAX_COMMAND_BYTES`].
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
            | Reply::TooLarge { request_id, .. } => request_id,
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
