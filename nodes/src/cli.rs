//! `ballot`: the voter's and operator's command line. It talks to the cluster like any
//! client (votes and reads go through the log), finds proposers through `--peers` (or a
//! discovery service), follows the leader, moves to another proposer within a deadline
//! when its node dies or is paused, and retries under the same request id, so a retry is
//! never a second vote.
//!
//! Exit codes: 0 done (vote recorded, results shown); 2 bad usage or the cluster cannot be
//! reached at all; 3 the vote was refused (already voted, unknown candidate); 4 the vote is
//! not confirmed (no quorum or no answer in time; retrying with the same request id is safe).

use crate::client::{ClientError, ClientHandle, SubmitOptions};
use ballot_core::{Command, NodeId, Reply, Role, Tally, VoteError};
use ballot_transports::{NetOptions, TcpTransport, ZmqTransport};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "ballot", version, about = "Vote, and see results and cluster status")]
pub struct CliArgs {
    /// Cluster nodes as name=host:port, comma-separated (the same list the nodes get).
    #[arg(long, value_delimiter = ',', global = true)]
    pub peers: Vec<String>,
    #[arg(long, value_enum, default_value_t = CliTransport::Tcp, global = true)]
    pub transport: CliTransport,
    /// Give up after this long (each command).
    #[arg(long, default_value_t = 5000, global = true)]
    pub timeout_ms: u64,
    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Address this client listens on for answers (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", global = true)]
    pub listen: SocketAddr,
    #[command(subcommand)]
    pub cmd: CliCommand,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CliTransport {
    Tcp,
    Zmq,
}

#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Cast a vote.
    Vote {
        #[arg(long)]
        voter: String,
        #[arg(long)]
        candidate: String,
        /// Name of this request; defaults to one derived from voter and candidate, so
        /// running the same command again is the same vote.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The tally, read through the log (every acknowledged vote is in it).
    Results,
    /// The candidates one can vote for.
    Candidates,
    /// Pick a candidate from a menu, vote, see results; until `quit`.
    Interactive,
}

/// What a command prints and how it exits.
struct Outcome {
    code: u8,
    text: String,
    json: serde_json::Value,
}

fn parse_peers(list: &[String]) -> Result<BTreeMap<NodeId, SocketAddr>, String> {
    let mut peers = BTreeMap::new();
    for item in list.iter().filter(|s| !s.trim().is_empty()) {
        let (name, addr) = item.split_once('=').ok_or_else(|| format!("--peers entry '{item}' is not name=host:port"))?;
        let id: NodeId = name.trim().parse().map_err(|e| format!("--peers: {e}"))?;
        let addr: SocketAddr =
            addr.trim().parse().map_err(|_| format!("--peers: '{addr}' is not a host:port address (for {name})"))?;
        peers.insert(id, addr);
    }
    if !peers.keys().any(|n| n.role == Role::Proposer) {
        return Err("--peers names no proposer: give the cluster's nodes, e.g. --peers proposer-1=127.0.0.1:7001,...".into());
    }
    Ok(peers)
}

/// A client name for this process: answers must come back to us, not to another client.
fn client_id() -> NodeId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    NodeId::client(2 + (h.finish() % 65_000) as u16)
}

async fn connect(args: &CliArgs) -> Result<ClientHandle, String> {
    let peers = parse_peers(&args.peers)?;
    let proposers: Vec<NodeId> = peers.keys().copied().filter(|n| n.role == Role::Proposer).collect();
    let members: Vec<NodeId> = peers.keys().copied().filter(|n| n.role != Role::Client).collect();
    let me = client_id();
    let opts = NetOptions::default();
    let err = |e: std::io::Error| format!("cannot listen on {} for answers: {e}", args.listen);
    let client = match args.transport {
        CliTransport::Tcp => ClientHandle::spawn(TcpTransport::bind(me, args.listen, peers, opts).await.map_err(err)?, proposers),
        CliTransport::Zmq => ClientHandle::spawn(ZmqTransport::bind(me, args.listen, peers, opts).await.map_err(err)?, proposers),
    };
    // The nodes were not started with our address: tell every one where we listen.
    client.announce(members);
    Ok(client)
}

fn submit_options(args: &CliArgs) -> SubmitOptions {
    SubmitOptions { timeout: Duration::from_millis(args.timeout_ms), via: None, retry_every: Duration::from_millis(300) }
}

async fn read_tally(client: &ClientHandle, args: &CliArgs) -> Result<(u64, Tally), ClientError> {
    let cmd = Command::Read { request_id: client.next_request_id(), client: client.id() };
    match client.submit(cmd, &submit_options(args)).await? {
        Reply::Read { slot, tally, .. } => Ok((slot, tally)),
        _ => Err(ClientError::Closed),
    }
}

fn unreachable_outcome(e: ClientError, what: &str) -> Outcome {
    let text = match e {
        ClientError::NoQuorum => format!("{what}: not confirmed: no majority of acceptors answered in time; try again"),
        _ => format!("{what}: the cluster did not answer in time; check --peers and that a majority of nodes is up"),
    };
    Outcome { code: 4, json: serde_json::json!({"ok": false, "error": e.to_string(), "message": text}), text }
}

fn tally_text(tally: &Tally) -> String {
    let width = tally.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    tally.iter().map(|(c, n)| format!("{c:<width$}  {n}")).collect::<Vec<_>>().join("\n")
}

fn tally_json(slot: u64, tally: &Tally) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = tally.iter().map(|(c, n)| (c.clone(), (*n).into())).collect();
    serde_json::json!({"ok": true, "slot": slot, "tally": map})
}

async fn vote(client: &ClientHandle, args: &CliArgs, voter: &str, candidate: &str, request_id: Option<String>) -> Outcome {
    if voter.trim().is_empty() {
        let text = "the voter id is empty: give --voter NAME".to_string();
        return Outcome { code: 2, json: serde_json::json!({"ok": false, "error": "usage", "message": text}), text };
    }
    let request_id = request_id.unwrap_or_else(|| format!("vote/{voter}/{candidate}"));
    let cmd = Command::Vote {
        request_id: request_id.clone(),
        client: client.id(),
        voter: voter.to_string(),
        candidate: candidate.to_string(),
    };
    match client.submit(cmd, &submit_options(args)).await {
        Ok(Reply::Vote { slot, result: Ok(()), .. }) => Outcome {
            code: 0,
            text: format!("vote recorded (slot {slot})"),
            json: serde_json::json!({"ok": true, "slot": slot, "request_id": request_id}),
        },
        Ok(Reply::Vote { slot, result: Err(VoteError::AlreadyVoted), .. }) => Outcome {
            code: 3,
            text: format!("already voted: {voter} has a vote counted; one vote per voter"),
            json: serde_json::json!({"ok": false, "error": "already_voted", "slot": slot, "request_id": request_id}),
        },
        Ok(Reply::Vote { slot, result: Err(VoteError::UnknownCandidate), .. }) => {
            let names = match read_tally(client, args).await {
                Ok((_, t)) => t.into_iter().map(|(c, _)| c).collect::<Vec<_>>().join(", "),
                Err(_) => "see `ballot candidates`".into(),
            };
            Outcome {
                code: 3,
                text: format!("unknown candidate '{candidate}': choose one of {names}"),
                json: serde_json::json!({"ok": false, "error": "unknown_candidate", "slot": slot, "request_id": request_id}),
            }
        }
        Ok(_) => unreachable_outcome(ClientError::Closed, "vote"),
        Err(e) => {
            let text = format!(
                "vote not confirmed ({e}): it may still count; retrying with --request-id {request_id} is safe and never counts twice"
            );
            Outcome { code: 4, json: serde_json::json!({"ok": false, "error": e.to_string(), "request_id": request_id}), text }
        }
    }
}

async fn results(client: &ClientHandle, args: &CliArgs) -> Outcome {
    match read_tally(client, args).await {
        Ok((slot, tally)) => Outcome { code: 0, text: tally_text(&tally), json: tally_json(slot, &tally) },
        Err(e) => unreachable_outcome(e, "results"),
    }
}

async fn candidates(client: &ClientHandle, args: &CliArgs) -> Outcome {
    match read_tally(client, args).await {
        Ok((_, tally)) => {
            let names: Vec<String> = tally.into_iter().map(|(c, _)| c).collect();
            Outcome { code: 0, text: names.join("\n"), json: serde_json::json!({"ok": true, "candidates": names}) }
        }
        Err(e) => unreachable_outcome(e, "candidates"),
    }
}

/// The menu loop of `ballot interactive`, over any input and output (tests drive it
/// through pipes).
async fn interactive(client: &ClientHandle, args: &CliArgs, input: &mut dyn BufRead, out: &mut dyn Write) -> std::io::Result<u8> {
    let names = match read_tally(client, args).await {
        Ok((_, t)) => t.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        Err(e) => {
            writeln!(out, "{}", unreachable_outcome(e, "candidates").text)?;
            return Ok(4);
        }
    };
    let mut line = String::new();
    loop {
        writeln!(out, "\ncandidates:")?;
        for (i, c) in names.iter().enumerate() {
            writeln!(out, "  {}) {c}", i + 1)?;
        }
        write!(out, "voter id (or 'results', 'quit'): ")?;
        out.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(0);
        }
        let voter = line.trim().to_string();
        match voter.as_str() {
            "" => continue,
            "quit" | "exit" => return Ok(0),
            "results" => {
                writeln!(out, "{}", results(client, args).await.text)?;
                continue;
            }
            _ => {}
        }
        write!(out, "candidate number (1-{}): ", names.len())?;
        out.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(0);
        }
        let Some(candidate) = line.trim().parse::<usize>().ok().and_then(|i| names.get(i.wrapping_sub(1))) else {
            writeln!(out, "'{}' is not a number from 1 to {}", line.trim(), names.len())?;
            continue;
        };
        writeln!(out, "{}", vote(client, args, &voter, candidate, None).await.text)?;
        writeln!(out, "{}", results(client, args).await.text)?;
    }
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
        let client = match connect(&args).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ballot: {e}");
                return ExitCode::from(2);
            }
        };
        let outcome = match &args.cmd {
            CliCommand::Vote { voter, candidate, request_id } => vote(&client, &args, voter, candidate, request_id.clone()).await,
            CliCommand::Results => results(&client, &args).await,
            CliCommand::Candidates => candidates(&client, &args).await,
            CliCommand::Interactive => {
                let stdin = std::io::stdin();
                let code = interactive(&client, &args, &mut stdin.lock(), &mut std::io::stdout()).await.unwrap_or(2);
                client.close();
                return ExitCode::from(code);
            }
        };
        client.close();
        if args.json {
            println!("{}", outcome.json);
        } else if outcome.code == 0 {
            println!("{}", outcome.text);
        } else {
            eprintln!("ballot: {}", outcome.text);
        }
        ExitCode::from(outcome.code)
    })
}
