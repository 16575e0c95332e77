//! `ballot`: the voter's and operator's command line. It talks to the cluster like any
//! client (votes and reads go through the log), finds proposers through `--peers` (or a
//! discovery service), follows the leader, moves to another proposer within a deadline
//! when its node dies or is paused, and retries under the same request id, so a retry is
//! never a second vote.
//!
//! With `--discovery ADDR` the members and their addresses come from the discovery server
//! (`/members`) and the proposer it names leader (`/leader`) is tried first; if discovery
//! does not answer within the deadline, `--peers` is the fallback (one warning line on
//! stderr). `status` and `results --local` read nodes' HTTP `/status` pages (addresses
//! from discovery or `--http-peers`), each within a deadline.
//!
//! Exit codes: 0 done (vote recorded, results shown, status of at least one node); 2 bad
//! usage or the cluster cannot be reached at all (no discovery and no --peers, no node
//! answers `status`); 3 the vote was refused (already voted, unknown candidate); 4 the vote is
//! not confirmed (no quorum or no answer in time; retrying with the same request id is safe).
//!
//! Over the network the CLI is a client like any other: with `--certs DIR` (or
//! `BALLOT_CERTS=DIR`) it proves the `client` identity; `--insecure` talks without
//! credentials (one warning line); with neither, a command that needs the cluster is a
//! usage error (exit code 2) saying how to make credentials. `ballot certs --dir DIR
//! --peers LIST` makes them.
//!
//! # Layout
//! - `certs`: `ballot certs`, a fresh credentials folder.
//! - `connect`: finding the cluster (`--peers`, `--discovery`, `--http-peers`) and the
//!   client endpoint.
//! - `vote`, `results`, `candidates`, `status`, `interactive`: one command each.

use ballot_core::{Command, Reply, Tally};
use ballot_runtime::client::{ClientError, ClientHandle, SubmitOptions};
use ballot_transports::NetKind;
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

mod candidates;
mod certs;
mod connect;
mod interactive;
mod results;
mod status;
mod vote;

/// The `ballot` command line: where the cluster is, how to talk to it, and the command.
#[derive(Parser, Debug)]
#[command(name = "ballot", version, about = "Vote, and see results and cluster status", long_about = None)]
pub struct CliArgs {
    /// Cluster nodes as name=host:port, comma-separated (the same list the nodes get).
    #[arg(long, value_delimiter = ',', global = true)]
    pub peers: Vec<String>,
    /// The transport the cluster speaks: tcp or zmq.
    #[arg(long, default_value_t = NetKind::Tcp, global = true)]
    pub transport: NetKind,
    /// Give up after this long (each command).
    #[arg(long, default_value_t = 5000, global = true)]
    pub timeout_ms: u64,
    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Address this client listens on for answers (port 0: any free port), IP:port or
    /// host:port. On 0.0.0.0 it tells the nodes the address of its interface towards the
    /// first proposer (what a container on the cluster's network needs).
    #[arg(long, default_value = "127.0.0.1:0", global = true)]
    pub listen: String,
    /// A discovery server (`ballot-node --role discovery`), IP:port or host:port: members,
    /// their addresses and the leader come from it; --peers is the fallback when it does
    /// not answer.
    #[arg(long, global = true)]
    pub discovery: Option<String>,
    /// Nodes' HTTP addresses as name=host:port, comma-separated, for `status` and
    /// `results --local` (added to what discovery lists).
    #[arg(long, value_delimiter = ',', global = true)]
    pub http_peers: Vec<String>,
    /// The cluster's credentials folder (`ballot certs` makes it): this client proves the
    /// `client` identity with it. Defaults to $BALLOT_CERTS; commands that talk to the
    /// cluster refuse to run with neither this nor --insecure.
    #[arg(long, value_name = "DIR", global = true, conflicts_with = "insecure")]
    pub certs: Option<std::path::PathBuf>,
    /// Talk to the cluster without credentials (a cluster started with --insecure).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// What to do.
    #[command(subcommand)]
    pub cmd: CliCommand,
}

/// The commands of `ballot`.
#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Cast a vote.
    Vote {
        /// Who votes (one vote per voter).
        #[arg(long)]
        voter: String,
        /// For whom.
        #[arg(long)]
        candidate: String,
        /// Name of this request (at most 128 bytes). By default a random one nobody can
        /// guess (a guessable id could be used first by someone else, and this vote would
        /// be answered with their outcome); a vote that was not confirmed prints its id,
        /// and retrying with it is the same vote, never a second one.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The tally, read through the log (every acknowledged vote is in it).
    Results {
        /// Instead, this learner's own tally from its HTTP /status (what it has applied;
        /// no trip through the log).
        #[arg(long, value_name = "NODE")]
        local: Option<String>,
    },
    /// Every node's status from its HTTP /status page: role, reachable, ballot, leader,
    /// chosen, applied, tally. Unreachable nodes are shown as such.
    Status,
    /// The candidates one can vote for.
    Candidates,
    /// Pick a candidate from a menu, vote, see results; until `quit`.
    Interactive,
    /// Make a credentials folder for a cluster: a CA, and a certificate, key, CURVE key
    /// pair and token for each node of --peers (names, or the name=host:port list the
    /// nodes get), for `client` (every client) and for `operator`.
    Certs {
        /// The folder to write (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
        /// Replace a CA already in the folder (every node must then get the new files).
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
        /// Keep a CA already in the folder and succeed, writing nothing (for a
        /// deployment's one-off step that runs at every start).
        #[arg(long)]
        if_missing: bool,
    },
}

/// What a command prints and how it exits.
struct Outcome {
    code: u8,
    text: String,
    json: Answer,
}

/// What `--json` prints for every command: `ok`, then the fields that apply to it (the
/// others are left out). Field names are part of the CLI's interface.
#[derive(Default, serde::Serialize)]
struct Answer {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tally: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reachable: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<status::StatusRow>>,
}

impl Answer {
    /// A failure: `error` names it, `message` says it in a sentence.
    fn failed(error: impl Into<String>, message: Option<String>) -> Answer {
        Answer { error: Some(error.into()), message, ..Answer::default() }
    }
}

/// Deadline of each call to discovery.
fn discovery_deadline(args: &CliArgs) -> Duration {
    Duration::from_millis(args.timeout_ms.clamp(1, 2000))
}

/// Deadline of each node's `/status` (a node answers within about 1 s even when its loop
/// is stuck).
fn status_deadline(args: &CliArgs) -> Duration {
    Duration::from_millis(args.timeout_ms.clamp(1, 3000))
}

/// How long a command waits for the cluster, and how often it retries.
fn submit_options(args: &CliArgs) -> SubmitOptions {
    SubmitOptions {
        timeout: Duration::from_millis(args.timeout_ms),
        via: None,
        retry_every: Duration::from_millis(300),
    }
}

/// The tally, read through the log: the slot it was read at, and the votes.
async fn read_tally(client: &ClientHandle, args: &CliArgs) -> Result<(u64, Tally), ClientError> {
    let cmd = Command::Read { request_id: client.next_request_id(), client: client.id() };
    match client.submit(cmd, &submit_options(args)).await? {
        Reply::Read { slot, tally, .. } => Ok((slot, tally)),
        _ => Err(ClientError::Closed),
    }
}

/// `what` got no confirmed answer: exit code 4.
fn unreachable_outcome(e: ClientError, what: &str) -> Outcome {
    let text = match e {
        ClientError::NoQuorum => format!("{what}: not confirmed: no majority of acceptors answered in time; try again"),
        ClientError::Busy { limit } => {
            format!(
                "{what}: refused: the cluster is overloaded (its queue holds {limit} commands); try again in a moment"
            )
        }
        _ => format!("{what}: the cluster did not answer in time; check --peers and that a majority of nodes is up"),
    };
    Outcome { code: 4, json: Answer::failed(e.to_string(), Some(text.clone())), text }
}

/// A usage error: exit code 2.
fn usage_outcome(text: String) -> Outcome {
    Outcome { code: 2, json: Answer::failed("usage", Some(text.clone())), text }
}

/// The tally as aligned `name  votes` lines.
fn tally_text(tally: &Tally) -> String {
    let width = tally.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    tally.iter().map(|(c, n)| format!("{c:<width$}  {n}")).collect::<Vec<_>>().join("\n")
}

/// The tally for `--json`: `{ok, slot, tally: {name: votes}}`.
fn tally_json(slot: u64, tally: &Tally) -> Answer {
    Answer { ok: true, slot: Some(slot), tally: Some(tally.iter().cloned().collect()), ..Answer::default() }
}

/// The whole `main` of `ballot`.
pub fn main_with(args: CliArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ballot: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        // Read from the nodes' HTTP pages: no client endpoint needed.
        let local = match &args.cmd {
            CliCommand::Certs { dir, force, if_missing } => {
                let existing = match (force, if_missing) {
                    (true, _) => certs::Existing::Replace,
                    (_, true) => certs::Existing::Keep,
                    _ => certs::Existing::Refuse,
                };
                Some(certs::certs(dir, &args.peers, existing))
            }
            CliCommand::Status => Some(status::status(&args).await),
            CliCommand::Results { local: Some(node) } => Some(results::results_local(&args, node).await),
            _ => None,
        };
        if let Some(outcome) = local {
            return finish(&args, outcome);
        }
        let client = match connect::connect(&args).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ballot: {e}");
                return ExitCode::from(2);
            }
        };
        let outcome = match &args.cmd {
            CliCommand::Vote { voter, candidate, request_id } => {
                vote::vote(&client, &args, voter, candidate, request_id.clone()).await
            }
            CliCommand::Results { .. } => results::results(&client, &args).await,
            CliCommand::Status | CliCommand::Certs { .. } => unreachable!("answered above"),
            CliCommand::Candidates => candidates::candidates(&client, &args).await,
            CliCommand::Interactive => {
                let stdin = std::io::stdin();
                let code = interactive::interactive(&client, &args, &mut stdin.lock(), &mut std::io::stdout())
                    .await
                    .unwrap_or(2);
                client.close();
                return ExitCode::from(code);
            }
        };
        client.close();
        finish(&args, outcome)
    })
}

/// Prints the outcome (JSON, or text on stdout or stderr) and exits with its code.
fn finish(args: &CliArgs, outcome: Outcome) -> ExitCode {
    if args.json {
        println!(
            "{}",
            // Cannot fail: every field is a string, a number, a map with string keys or a list.
            serde_json::to_string(&outcome.json).unwrap_or_default()
        );
    } else if outcome.code == 0 {
        println!("{}", outcome.text);
    } else {
        eprintln!("ballot: {}", outcome.text);
    }
    ExitCode::from(outcome.code)
}
