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

use ballot_core::{Command, NodeId, Reply, Role, Tally, VoteError};
use ballot_operator::discovery::{DiscoveryClient, Member};
use ballot_runtime::client::{ClientError, ClientHandle, SubmitOptions};
use ballot_transports::{NetKind, NetOptions, PeerAddr, TcpTransport, ZmqTransport};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "ballot", version, about = "Vote, and see results and cluster status")]
pub struct CliArgs {
    /// Cluster nodes as name=host:port, comma-separated (the same list the nodes get).
    #[arg(long, value_delimiter = ',', global = true)]
    pub peers: Vec<String>,
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
    #[command(subcommand)]
    pub cmd: CliCommand,
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
}

/// What a command prints and how it exits.
struct Outcome {
    code: u8,
    text: String,
    json: serde_json::Value,
}

/// `--peers` as `ballot-node` reads it, and at least one proposer in it.
fn parse_peers(list: &[String]) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    let peers = crate::process::parse_peers(list)?;
    if !peers.keys().any(|n| n.role == Role::Proposer) {
        return Err(
            "--peers names no proposer: give the cluster's nodes, e.g. --peers proposer-1=127.0.0.1:7001,...".into()
        );
    }
    Ok(peers)
}

/// `--discovery`, parsed (a bad one is one line, like every usage error here).
fn discovery_of(args: &CliArgs) -> Result<Option<PeerAddr>, String> {
    args.discovery.as_deref().map(|d| d.parse::<PeerAddr>().map_err(|e| format!("--discovery: {e}"))).transpose()
}

/// A client name for this process: answers must come back to us, not to another client.
fn client_id() -> NodeId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    NodeId::client(2 + (h.finish() % 65_000) as u16)
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

/// The members discovery lists and the leader it names (a failed `/leader` only means no
/// preferred proposer).
async fn ask_discovery(addr: &PeerAddr, deadline: Duration) -> Result<(Vec<Member>, Option<NodeId>), String> {
    let c = DiscoveryClient::new(addr.clone()).with_deadline(deadline);
    let members = c.members().await.map_err(|e| e.to_string())?;
    let leader = c.leader().await.ok().flatten().map(|m| m.node);
    Ok((members, leader))
}

/// Data addresses of the members, and the proposers in the order to try them.
async fn find_cluster(args: &CliArgs) -> Result<(BTreeMap<NodeId, PeerAddr>, Vec<NodeId>), String> {
    let from_peers = |args: &CliArgs| {
        let peers = parse_peers(&args.peers)?;
        let proposers: Vec<NodeId> = peers.keys().copied().filter(|n| n.role == Role::Proposer).collect();
        Ok::<_, String>((peers, proposers))
    };
    let Some(d) = &discovery_of(args)? else { return from_peers(args) };
    let found = ask_discovery(d, discovery_deadline(args)).await.and_then(|(members, leader)| {
        let peers: BTreeMap<NodeId, PeerAddr> =
            members.iter().filter(|m| m.node.role != Role::Client).map(|m| (m.node, m.addr.into())).collect();
        let mut proposers: Vec<NodeId> = peers.keys().copied().filter(|n| n.role == Role::Proposer).collect();
        if proposers.is_empty() {
            return Err(format!("discovery at {d} lists no proposer"));
        }
        // The leader first: it needs no forwarding.
        if let Some(i) = leader.and_then(|l| proposers.iter().position(|&p| p == l)) {
            let l = proposers.remove(i);
            proposers.insert(0, l);
        }
        Ok((peers, proposers))
    });
    match found {
        Ok(f) => Ok(f),
        Err(e) if args.peers.iter().any(|p| !p.trim().is_empty()) => {
            eprintln!("ballot: warning: {e}; using --peers instead");
            from_peers(args)
        }
        Err(e) => Err(format!("{e}, and no --peers to fall back on")),
    }
}

/// Where to listen for answers, and what to tell the nodes as our address: the listen
/// address, or on 0.0.0.0 this host's address on the way to the first proposer.
async fn answer_address(
    args: &CliArgs,
    peers: &BTreeMap<NodeId, PeerAddr>,
    first: Option<NodeId>,
) -> Result<(SocketAddr, Option<IpAddr>), String> {
    let deadline = Duration::from_millis(args.timeout_ms.max(1));
    let listen: PeerAddr = args.listen.parse().map_err(|e| format!("--listen: {e}"))?;
    let listen = listen.resolve_one(deadline).await.map_err(|e| format!("--listen: {e}"))?;
    if !listen.ip().is_unspecified() {
        return Ok((listen, None));
    }
    let Some(toward) = first.and_then(|p| peers.get(&p)) else { return Ok((listen, None)) };
    let toward = toward.resolve_one(deadline).await.map_err(|e| format!("--peers: {e}"))?;
    let ip = ballot_transports::local_ip_toward(toward).map_err(|e| {
        format!(
            "--listen {}: no address of this host reaches {toward} ({e}); give --listen an address the nodes can reach",
            args.listen
        )
    })?;
    Ok((listen, Some(ip)))
}

async fn connect(args: &CliArgs) -> Result<ClientHandle, String> {
    let (peers, proposers) = find_cluster(args).await?;
    let members: Vec<NodeId> = peers.keys().copied().filter(|n| n.role != Role::Client).collect();
    let me = client_id();
    let opts = NetOptions::default();
    let (listen, advertise) = answer_address(args, &peers, proposers.first().copied()).await?;
    let err = |e: std::io::Error| format!("cannot listen on {listen} for answers: {e}");
    // Addresses are given after binding: a host name stays a name the transport looks up
    // at each fresh connection.
    macro_rules! endpoint {
        ($t:ty) => {{
            let mut t = <$t>::bind(me, listen, BTreeMap::new(), opts).await.map_err(err)?;
            if let Some(ip) = advertise {
                t.set_advertise(Some(SocketAddr::new(ip, t.local_addr().port())));
            }
            for (id, addr) in peers {
                t.set_peer(id, addr);
            }
            ClientHandle::spawn(t, proposers)
        }};
    }
    let client = match args.transport {
        NetKind::Tcp => endpoint!(TcpTransport),
        NetKind::Zmq => endpoint!(ZmqTransport),
    };
    // The nodes were not started with our address: tell every one where we listen.
    client.announce(members);
    Ok(client)
}

fn submit_options(args: &CliArgs) -> SubmitOptions {
    SubmitOptions {
        timeout: Duration::from_millis(args.timeout_ms),
        via: None,
        retry_every: Duration::from_millis(300),
    }
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

async fn vote(
    client: &ClientHandle,
    args: &CliArgs,
    voter: &str,
    candidate: &str,
    request_id: Option<String>,
) -> Outcome {
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
        Err(ClientError::TooLarge { size, limit }) => Outcome {
            code: 3,
            text: format!("vote refused: it is {size} bytes and the cluster takes at most {limit}; use a shorter voter id or candidate name"),
            json: serde_json::json!({"ok": false, "error": "too_large", "size": size, "limit": limit, "request_id": request_id}),
        },
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

/// Every node to show and its HTTP address, if known: discovery's members (when
/// `--discovery` answers) and `--http-peers`.
async fn find_http(args: &CliArgs) -> Result<BTreeMap<NodeId, Option<PeerAddr>>, String> {
    let given = ballot_operator::pages::parse_http_peers(&args.http_peers)?;
    let mut nodes: BTreeMap<NodeId, Option<PeerAddr>> = BTreeMap::new();
    match &discovery_of(args)? {
        Some(d) => match ask_discovery(d, discovery_deadline(args)).await {
            Ok((members, _)) => nodes.extend(
                members.iter().filter(|m| m.node.role != Role::Client).map(|m| (m.node, m.http.map(PeerAddr::from))),
            ),
            Err(e) if !given.is_empty() => eprintln!("ballot: warning: {e}; using --http-peers only"),
            Err(e) => return Err(format!("{e}, and no --http-peers to fall back on")),
        },
        None if given.is_empty() => {
            return Err("give --discovery ADDR or --http-peers name=host:port,... to find the nodes' HTTP pages".into())
        }
        None => {}
    }
    for (id, addr) in given {
        let known = nodes.entry(id).or_insert(None);
        known.get_or_insert(addr);
    }
    Ok(nodes)
}

/// Each node's entry of its process's `/status` (a replica serves three), or why not.
async fn fetch_statuses(
    nodes: &BTreeMap<NodeId, Option<PeerAddr>>,
    deadline: Duration,
) -> BTreeMap<NodeId, Result<serde_json::Value, String>> {
    let mut fetches = BTreeMap::new();
    for addr in nodes.values().flatten() {
        fetches.entry(addr.clone()).or_insert_with(|| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let (code, body) = DiscoveryClient::get_raw(&addr, "/status", deadline).await?;
                if code != 200 {
                    return Err(format!("{addr} answered {code} to GET /status"));
                }
                serde_json::from_slice::<serde_json::Value>(&body)
                    .map_err(|e| format!("{addr}: /status is not JSON: {e}"))
            })
        });
    }
    let mut pages = BTreeMap::new();
    for (addr, f) in fetches {
        pages.insert(addr, f.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    nodes
        .iter()
        .map(|(id, addr)| {
            let entry = match addr {
                None => Err("no HTTP address known (start it with --http, or give --http-peers)".to_string()),
                Some(a) => match &pages[a] {
                    Err(e) => Err(e.clone()),
                    Ok(page) => page
                        .get("nodes")
                        .and_then(|n| n.as_array())
                        .and_then(|a| {
                            a.iter().find(|n| n.get("node").and_then(|x| x.as_str()) == Some(id.to_string().as_str()))
                        })
                        .cloned()
                        .ok_or_else(|| format!("{a} does not serve {id}")),
                },
            };
            let entry = entry.and_then(|e| match e.get("responding").and_then(|r| r.as_bool()) {
                Some(true) => Ok(e),
                _ => Err(format!("{id} is up but its node loop does not answer (paused or stuck)")),
            });
            (*id, entry)
        })
        .collect()
}

fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(o)) => {
            o.iter().map(|(k, v)| format!("{k}={}", cell(Some(v)))).collect::<Vec<_>>().join(" ")
        }
        Some(v) => v.to_string(),
    }
}

async fn status(args: &CliArgs) -> Outcome {
    let nodes = match find_http(args).await {
        Ok(n) => n,
        Err(e) => return usage_outcome(format!("status: {e}")),
    };
    let statuses = fetch_statuses(&nodes, status_deadline(args)).await;
    let mut rows = Vec::new();
    for (id, st) in &statuses {
        let mut row = serde_json::json!({
            "node": id.to_string(),
            "role": id.role.to_string(),
            "http": nodes[id].as_ref().map(|a| a.to_string()),
            "reachable": st.is_ok(),
        });
        for k in ["ballot", "leader", "is_leader", "chosen", "applied", "tally"] {
            row[k] = st.as_ref().ok().and_then(|e| e.get(k)).cloned().unwrap_or(serde_json::Value::Null);
        }
        row["error"] = st.as_ref().err().map(|e| serde_json::json!(e)).unwrap_or(serde_json::Value::Null);
        rows.push(row);
    }
    let reachable = statuses.values().filter(|s| s.is_ok()).count();
    if reachable == 0 {
        let why =
            statuses.values().find_map(|s| s.as_ref().err().cloned()).unwrap_or_else(|| "no nodes are known".into());
        let text = format!("status: no node answered ({} known; first: {why})", statuses.len());
        return Outcome { code: 2, json: serde_json::json!({"ok": false, "error": text, "nodes": rows}), text };
    }
    let header = ["node", "role", "reachable", "ballot", "leader", "chosen", "applied", "tally"];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in &rows {
        let reachable = if r["reachable"] == true { "yes" } else { "no" };
        let mut line = vec![cell(r.get("node")), cell(r.get("role")), reachable.to_string()];
        line.extend(["ballot", "leader", "chosen", "applied", "tally"].iter().map(|k| cell(r.get(*k))));
        table.push(line);
    }
    let widths: Vec<usize> = (0..header.len()).map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    let text = table
        .iter()
        .map(|l| {
            l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    Outcome { code: 0, text, json: serde_json::json!({"ok": true, "reachable": reachable, "nodes": rows}) }
}

fn usage_outcome(text: String) -> Outcome {
    Outcome { code: 2, json: serde_json::json!({"ok": false, "error": "usage", "message": text}), text }
}

async fn results_local(args: &CliArgs, node: &str) -> Outcome {
    let id: NodeId = match node.trim().parse() {
        Ok(id) => id,
        Err(e) => return usage_outcome(format!("results --local: {e}")),
    };
    if id.role != Role::Learner {
        return usage_outcome(format!(
            "results --local: {id} is not a learner; only learners keep a tally (e.g. learner-1)"
        ));
    }
    let nodes = match find_http(args).await {
        Ok(n) => n,
        Err(e) => return usage_outcome(format!("results --local: {e}")),
    };
    let Some(addr) = nodes.get(&id).cloned() else {
        return usage_outcome(format!("results --local: {id} is not a known node (not in discovery nor --http-peers)"));
    };
    let one = BTreeMap::from([(id, addr)]);
    let entry =
        fetch_statuses(&one, status_deadline(args)).await.remove(&id).unwrap_or_else(|| Err("no answer".into()));
    let unreachable = |e: String| {
        let text = format!("results --local: {id} is unreachable: {e}");
        Outcome { code: 4, json: serde_json::json!({"ok": false, "error": "unreachable", "message": text}), text }
    };
    match entry {
        Err(e) => unreachable(e),
        Ok(e) => match e.get("tally").and_then(|t| t.as_object()) {
            None => unreachable(format!("its /status has no tally: {}", cell(e.get("role")))),
            Some(t) => {
                let tally: Tally = t.iter().map(|(c, n)| (c.clone(), n.as_u64().unwrap_or(0))).collect();
                let applied = e.get("applied").and_then(|a| a.as_u64()).unwrap_or(0);
                let mut json = tally_json(applied, &tally);
                json["node"] = serde_json::json!(id.to_string());
                json["applied"] = serde_json::json!(applied);
                Outcome { code: 0, text: tally_text(&tally), json }
            }
        },
    }
}

/// The menu loop of `ballot interactive`, over any input and output (tests drive it
/// through pipes).
async fn interactive(
    client: &ClientHandle,
    args: &CliArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<u8> {
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
        // Read from the nodes' HTTP pages: no client endpoint needed.
        let local = match &args.cmd {
            CliCommand::Status => Some(status(&args).await),
            CliCommand::Results { local: Some(node) } => Some(results_local(&args, node).await),
            _ => None,
        };
        if let Some(outcome) = local {
            return finish(&args, outcome);
        }
        let client = match connect(&args).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ballot: {e}");
                return ExitCode::from(2);
            }
        };
        let outcome = match &args.cmd {
            CliCommand::Vote { voter, candidate, request_id } => {
                vote(&client, &args, voter, candidate, request_id.clone()).await
            }
            CliCommand::Results { .. } => results(&client, &args).await,
            CliCommand::Status => unreachable!("answered above"),
            CliCommand::Candidates => candidates(&client, &args).await,
            CliCommand::Interactive => {
                let stdin = std::io::stdin();
                let code = interactive(&client, &args, &mut stdin.lock(), &mut std::io::stdout()).await.unwrap_or(2);
                client.close();
                return ExitCode::from(code);
            }
        };
        client.close();
        finish(&args, outcome)
    })
}

fn finish(args: &CliArgs, outcome: Outcome) -> ExitCode {
    if args.json {
        println!("{}", outcome.json);
    } else if outcome.code == 0 {
        println!("{}", outcome.text);
    } else {
        eprintln!("ballot: {}", outcome.text);
    }
    ExitCode::from(outcome.code)
}
