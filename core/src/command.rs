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
    Vote { request_id: RequestId, client: NodeId, voter: String, candidate: String },
    /// A linearizable read of the tally: answered when the read's slot is applied.
    Read { request_id: RequestId, client: NodeId },
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

    pub fn request_id(&self) -> &str {
        match self {
            Command::Vote { request_id, .. } | Command::Read { request_id, .. } => request_id,
        }
    }
    pub fn client(&self) -> NodeId {
        match self {
            Command::Vote { client, .. } | Command::Read { client, .. } => *client,
        }
    }
}

/// Why the voting state machine refused a vote. Both are final answers, not failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum VoteError {
    #[error("already_voted")]
    AlreadyVoted,
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
    Vote { request_id: RequestId, slot: u64, result: Result<(), VoteError> },
    /// The tally as of `slot`.
    Read { request_id: RequestId, slot: u64, tally: Tally },
    /// The leader could not get a majority of acceptors to accept the command's slot in
    /// time. The command is not confirmed; it may still be chosen later, and retrying with
    /// the same request id is safe.
    NotConfirmed { request_id: RequestId },
    /// The command is larger than [`MAX_COMMAND_BYTES`]: refused at once, never proposed.
    /// Final: retrying the same command gets the same answer.
    TooLarge { request_id: RequestId, size: usize, limit: usize },
}

impl Reply {
    /// Bytes the tally of a read reply costs (0 for other replies).
    pub fn tally_size(&self) -> usize {
        match self {
            Reply::Read { tally, .. } => tally.iter().map(|(c, _)| c.len() + 10).sum(),
            _ => 0,
        }
    }

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
