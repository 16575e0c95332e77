//! `ballot vote`: one vote, under a request id that makes a retry the same vote. The
//! default id is random (the client's [`ClientHandle::next_request_id`]): one derived
//! from the voter and candidate could be used first by anyone, with a vote of their own,
//! and then this vote would be answered "recorded" with the other's outcome.

use super::{read_tally, submit_options, unreachable_outcome, Answer, CliArgs, Outcome};
use ballot_core::{Command, Reply, TooLong, VoteError};
use ballot_runtime::client::{ClientError, ClientHandle};

pub(super) async fn vote(
    client: &ClientHandle,
    args: &CliArgs,
    voter: &str,
    candidate: &str,
    request_id: Option<String>,
) -> Outcome {
    if voter.trim().is_empty() {
        let text = "the voter id is empty: give --voter NAME".to_string();
        return Outcome { code: 2, json: Answer::failed("usage", Some(text.clone())), text };
    }
    let request_id = request_id.unwrap_or_else(|| client.next_request_id());
    let cmd = Command::Vote {
        request_id: request_id.clone(),
        client: client.id(),
        voter: voter.to_string(),
        candidate: candidate.to_string(),
    };
    if let Err(e) = cmd.check_lengths() {
        return too_long(e, request_id);
    }
    match client.submit(cmd, &submit_options(args)).await {
        Ok(Reply::Vote { slot, result: Ok(()), .. }) => Outcome {
            code: 0,
            text: format!("vote recorded (slot {slot})"),
            json: Answer { ok: true, slot: Some(slot), request_id: Some(request_id), ..Answer::default() },
        },
        Ok(Reply::Vote { slot, result: Err(VoteError::AlreadyVoted), .. }) => Outcome {
            code: 3,
            text: format!("already voted: {voter} has a vote counted; one vote per voter"),
            json: Answer { slot: Some(slot), request_id: Some(request_id), ..Answer::failed("already_voted", None) },
        },
        Ok(Reply::Vote { slot, result: Err(VoteError::UnknownCandidate), .. }) => {
            let names = match read_tally(client, args).await {
                Ok((_, t)) => t.into_iter().map(|(c, _)| c).collect::<Vec<_>>().join(", "),
                Err(_) => "see `ballot candidates`".into(),
            };
            Outcome {
                code: 3,
                text: format!("unknown candidate '{candidate}': choose one of {names}"),
                json: Answer { slot: Some(slot), request_id: Some(request_id), ..Answer::failed("unknown_candidate", None) },
            }
        }
        Ok(_) => unreachable_outcome(ClientError::Closed, "vote"),
        Err(ClientError::TooLarge { size, limit }) => Outcome {
            code: 3,
            text: format!("vote refused: it is {size} bytes and the cluster takes at most {limit}; use a shorter voter id or candidate name"),
            json: Answer {
                size: Some(size),
                limit: Some(limit),
                request_id: Some(request_id),
                ..Answer::failed("too_large", None)
            },
        },
        Err(ClientError::Busy { limit }) => Outcome {
            code: 4,
            text: format!(
                "vote refused: the cluster is overloaded (a proposer holds {limit} commands); try again in a moment, with --request-id {request_id} (it never counts twice)"
            ),
            json: Answer { limit: Some(limit), request_id: Some(request_id), ..Answer::failed("busy", None) },
        },
        Err(e) => {
            let text = format!(
                "vote not confirmed ({e}): it may still count; retrying with --request-id {request_id} is safe and never counts twice"
            );
            Outcome { code: 4, json: Answer { request_id: Some(request_id), ..Answer::failed(e.to_string(), None) }, text }
        }
    }
}

/// A name over its limit: refused here, never sent (exit code 3, like every refused vote).
fn too_long(e: TooLong, request_id: String) -> Outcome {
    let TooLong { field, len, limit } = e;
    Outcome {
        code: 3,
        text: format!(
            "vote refused: the {field} is {len} bytes and the cluster takes at most {limit}; use a shorter one"
        ),
        json: Answer {
            size: Some(len),
            limit: Some(limit),
            request_id: Some(request_id),
            ..Answer::failed("too_large", Some(e.to_string()))
        },
    }
}
