//! A client of the cluster: submits commands to a proposer (which forwards them to the
//! leader), waits for the answer with a deadline, and retries elsewhere with the same
//! request id, so a retry is never a second vote.
//!
//! Answers are taken only from the cluster's members as the client was told them (never
//! from a `client-*` name): anything else is counted ([`ClientHandle::refused_replies`])
//! and dropped, so a node outside the cluster cannot answer a vote for the cluster.
//!
//! Request ids ([`ClientHandle::next_request_id`]) are `<client>/<128 random bits in
//! hex>`, the bits from the operating system's random source: the ballot box answers a
//! request id it has seen with that request's first outcome, so an id someone else can
//! guess is one they can use first (a vote of theirs under it, and the real voter is told
//! "recorded" for a vote that was never counted). Simulations that must replay use
//! [`ClientHandle::seed_request_ids`] instead.

use ballot_core::{Command, Message, NodeId, Reply, Role, MAX_COMMAND_BYTES};
use ballot_telemetry::{self as telemetry, TARGET};
use ballot_transports::{Envelope, Transport};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::field::Empty;

/// How one vote or read is sent: deadline, target and retry period.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Always send to this proposer; otherwise to the proposer that answered last, moving
    /// to the next one on each retry.
    pub via: Option<NodeId>,
    /// Send again (same request id) when nothing came back for this long.
    pub retry_every: Duration,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions { timeout: Duration::from_millis(2000), via: None, retry_every: Duration::from_millis(400) }
    }
}

/// Why a vote or read got no answer from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The leader could not reach a majority of acceptors in time. The command may still
    /// be chosen later; retrying with the same request id is safe.
    #[error("no_quorum")]
    NoQuorum,
    /// No answer within [`SubmitOptions::timeout`]; the vote may still be chosen, and
    /// retrying with the same request id is safe.
    #[error("timeout")]
    Timeout,
    /// The command is larger than the cluster takes ([`MAX_COMMAND_BYTES`]), or one of
    /// its names is over its limit ([`Command::check_lengths`]; then `size` and `limit`
    /// are that name's): refused at once, never proposed. Shorten the voter id, candidate
    /// name or request id.
    #[error("too_large")]
    TooLarge {
        /// The command's encoded size (or the long name's length), in bytes.
        size: usize,
        /// The most the cluster takes, in bytes.
        limit: usize,
    },
    /// The proposer's queue was full (`limit` commands waiting): refused before it was
    /// queued. Retrying later with the same request id is safe.
    #[error("busy")]
    Busy {
        /// The most commands the proposer holds.
        limit: usize,
    },
    /// The client's task has ended (its handle was closed).
    #[error("client is closed")]
    Closed,
}

/// Where request ids come from.
enum IdSource {
    /// The operating system's random source: ids nobody can guess.
    Os,
    /// A seeded generator: the same ids on every run (simulations).
    Seeded(Box<ChaCha8Rng>),
}

impl IdSource {
    fn next(&mut self) -> u128 {
        match self {
            IdSource::Seeded(rng) => rng.gen(),
            IdSource::Os => {
                let mut bytes = [0u8; 16];
                if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
                    // The OS source failed (it does not on Linux): std's per-process
                    // random hash keys, over the time, are still unknown to others.
                    use std::hash::{BuildHasher, Hasher};
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                    h.write_u128(now.map_or(0, |d| d.as_nanos()));
                    bytes[..8].copy_from_slice(&h.finish().to_le_bytes());
                }
                u128::from_le_bytes(bytes)
            }
        }
    }
}

/// What a waiting request hears from the dispatcher.
enum Event {
    /// An answer to it.
    Reply(Reply),
    /// This proposer's connection closed while in use (it most likely crashed).
    Down(NodeId),
}

/// Requests waiting for an answer, by request id. Keyed at random (ahash, as std's maps
/// are): the ids come from this client, but one is looked up per answer, and SipHash was a
/// measurable share of a vote's cost.
type Pending = HashMap<String, mpsc::UnboundedSender<Event>, ahash::RandomState>;

struct Inner {
    id: NodeId,
    proposers: Vec<NodeId>,
    /// The cluster's nodes: the only ones whose answers are taken.
    members: Vec<NodeId>,
    refused_replies: AtomicU64,
    /// Nodes told where this client listens (at start and on every retry), so learners and
    /// the leader can answer it although it only ever sends to one proposer.
    announce_to: Mutex<Vec<NodeId>>,
    out: mpsc::UnboundedSender<Envelope>,
    pending: Mutex<Pending>,
    preferred: AtomicUsize,
    ids: Mutex<IdSource>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Most bytes of commands the dispatcher merges into one `Request` (a page: far below
/// the frame limit).
const COALESCE_BYTES: usize = ballot_core::PAGE_BYTES;
/// Most envelopes the dispatcher takes off its queue at once.
const COALESCE_MAX: usize = 4096;

/// `first` and what is already queued behind it, with the untraced `Request`s to one
/// proposer merged into one (client-side batching: many voters of one client cost one
/// message and one frame to the proposer, not one each). Order per target is kept; a
/// traced request travels alone, as its trace context belongs to it.
fn coalesce(first: Envelope, queue: &mut mpsc::UnboundedReceiver<Envelope>) -> Vec<Envelope> {
    let mut out: Vec<Envelope> = Vec::new();
    // Per target: the index in `out` of the request still open for merging, and its size.
    let mut open: Vec<(NodeId, usize, usize)> = Vec::new();
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(env) = next.take() {
        taken += 1;
        match env.msg {
            Message::Request(cmds) if env.trace.is_none() => {
                let size: usize = cmds.iter().map(Command::size).sum();
                let merged = match open.iter_mut().find(|(to, _, _)| *to == env.to) {
                    Some((_, at, bytes)) if *bytes + size <= COALESCE_BYTES => {
                        *bytes += size;
                        if let Message::Request(into) = &mut out[*at].msg {
                            into.extend(cmds);
                        }
                        None
                    }
                    Some(full) => {
                        *full = (env.to, out.len(), size);
                        Some(cmds)
                    }
                    None => {
                        open.push((env.to, out.len(), size));
                        Some(cmds)
                    }
                };
                if let Some(cmds) = merged {
                    out.push(Envelope { msg: Message::Request(cmds), ..env });
                }
            }
            _ => out.push(env),
        }
        if taken < COALESCE_MAX {
            next = queue.try_recv().ok();
        }
    }
    out
}

/// Cheap to clone; every clone shares one endpoint and one dispatcher task.
#[derive(Clone)]
pub struct ClientHandle {
    inner: Arc<Inner>,
}

impl ClientHandle {
    /// Start a client on `transport` that sends to `proposers` and takes answers from
    /// `members` (the cluster's nodes; the proposers are always among them).
    pub fn spawn<T: Transport>(mut transport: T, proposers: Vec<NodeId>, members: Vec<NodeId>) -> Self {
        let (out, mut out_rx) = mpsc::unbounded_channel::<Envelope>();
        let mut members: Vec<NodeId> = members.into_iter().chain(proposers.iter().copied()).collect();
        members.retain(|m| m.role != Role::Client);
        members.sort_unstable();
        members.dedup();
        let inner = Arc::new(Inner {
            id: transport.local(),
            proposers,
            members,
            refused_replies: AtomicU64::new(0),
            announce_to: Mutex::new(Vec::new()),
            out,
            pending: Mutex::new(Pending::default()),
            preferred: AtomicUsize::new(0),
            ids: Mutex::new(IdSource::Os),
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    env = out_rx.recv() => match env {
                        Some(first) => {
                            for env in coalesce(first, &mut out_rx) {
                                let _ = transport.send(env);
                            }
                        }
                        None => return,
                    },
                    env = transport.recv() => {
                        let Some(env) = env else { return };
                        let Some(inner) = weak.upgrade() else { return };
                        if env.msg == Message::PeerDown {
                            // Our transport's notice that a proposer's connection closed
                            // while in use: every request waiting on it moves on now,
                            // instead of after its retry period.
                            if let Some(down) = inner.proposers.iter().position(|&p| p == env.from) {
                                // Later requests start at the next proposer too.
                                let n = inner.proposers.len();
                                let _ = inner.preferred.compare_exchange(down, (down + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
                                let pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                                for tx in pending.values() {
                                    let _ = tx.send(Event::Down(env.from));
                                }
                            }
                            continue;
                        }
                        let Message::Replies(replies) = env.msg else { continue };
                        if inner.members.binary_search(&env.from).is_err() {
                            // Not a member of the cluster (or a client): its answer is
                            // not the cluster's.
                            if inner.refused_replies.fetch_add(1, Ordering::Relaxed) == 0 {
                                tracing::warn!(client = %inner.id, from = %env.from, "refused replies from a node that is not a cluster member (logged once)");
                            }
                            continue;
                        }
                        let pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                        for reply in replies {
                            if let Some(tx) = pending.get(reply.request_id()) {
                                let _ = tx.send(Event::Reply(reply));
                            }
                        }
                    }
                }
            }
        });
        *inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        ClientHandle { inner }
    }

    /// The client's node id: where the cluster sends its replies.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Tell `nodes` where this client listens now, and again before every retry (a node
    /// that restarted has forgotten). Needed over sockets when the nodes were not started
    /// with this client's address.
    pub fn announce(&self, nodes: Vec<NodeId>) {
        *self.inner.announce_to.lock().unwrap_or_else(|e| e.into_inner()) = nodes;
        self.send_hellos();
    }

    fn send_hellos(&self) {
        for &n in self.inner.announce_to.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = self.inner.out.send(Envelope::new(self.inner.id, n, Message::Hello));
        }
    }

    /// A request id no other request uses and nobody can guess: `<client>/<32 hex
    /// digits>`, 128 bits from the OS (see the module docs for why), about 45 bytes.
    pub fn next_request_id(&self) -> String {
        let bits = self.inner.ids.lock().unwrap_or_else(|e| e.into_inner()).next();
        format!("{}/{bits:032x}", self.inner.id)
    }

    /// From now on, draw request ids from a generator seeded with `seed`, so a run with
    /// the same seed makes the same ids. Only for simulations: such ids are guessable by
    /// anyone who knows the seed.
    pub fn seed_request_ids(&self, seed: u64) {
        *self.inner.ids.lock().unwrap_or_else(|e| e.into_inner()) =
            IdSource::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed)));
    }

    /// Answers dropped because they came from a node that is not a cluster member.
    pub fn refused_replies(&self) -> u64 {
        self.inner.refused_replies.load(Ordering::Relaxed)
    }

    /// Submit `cmd` and wait for its answer: a `Reply::Vote` or `Reply::Read`.
    pub async fn submit(&self, cmd: Command, opts: &SubmitOptions) -> Result<Reply, ClientError> {
        let request_id = cmd.request_id().to_string();
        let size = cmd.size();
        if size > MAX_COMMAND_BYTES {
            // Refused here and now: no proposer would take it, and retrying cannot help.
            return Err(ClientError::TooLarge { size, limit: MAX_COMMAND_BYTES });
        }
        if let Err(e) = cmd.check_lengths() {
            return Err(ClientError::TooLarge { size: e.len, limit: e.limit });
        }
        // The root of the vote's trace (a child of the caller's span, if it has one):
        // every node's part in the round hangs below it. Disabled when tracing is off.
        let id = self.inner.id;
        // A vote is traced when its caller is (a chaos step, a test), or else as sampling
        // says; otherwise no span is built at all.
        let traced = telemetry::active()
            && (telemetry::context_of(&tracing::Span::current()).is_some() || telemetry::sample_root());
        let span = match &cmd {
            _ if !traced => tracing::Span::none(),
            Command::Vote { voter, candidate, .. } => {
                tracing::info_span!(target: TARGET, "vote", node = %id, role = "client", voter = voter.as_str(), candidate = candidate.as_str(), request_id = %request_id, outcome = Empty)
            }
            Command::Read { .. } => {
                tracing::info_span!(target: TARGET, "read", node = %id, role = "client", request_id = %request_id, outcome = Empty)
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        self.lock_pending().insert(request_id.clone(), tx);
        let result = self.exchange(cmd, opts, &mut rx, &span).await;
        self.lock_pending().remove(&request_id);
        let outcome = match &result {
            Ok(Reply::Vote { result: Ok(()), .. }) => "counted".to_string(),
            Ok(Reply::Vote { result: Err(e), .. }) => e.to_string(),
            Ok(Reply::Read { .. }) => "read".to_string(),
            Ok(Reply::NotConfirmed { .. }) => "not confirmed".to_string(),
            Ok(Reply::TooLarge { .. }) => "too_large".to_string(),
            Ok(Reply::Busy { .. }) => "busy".to_string(),
            Err(e) => e.to_string(),
        };
        span.record("outcome", outcome.as_str());
        result
    }

    async fn exchange(
        &self,
        cmd: Command,
        opts: &SubmitOptions,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        span: &tracing::Span,
    ) -> Result<Reply, ClientError> {
        let trace = telemetry::context_of(span);
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let n = self.inner.proposers.len().max(1);
        let mut target = self.inner.preferred.load(Ordering::Relaxed) % n;
        for attempt in 0u64.. {
            let to = opts.via.or_else(|| self.inner.proposers.get(target).copied()).ok_or(ClientError::Closed)?;
            let mut env = Envelope::new(self.inner.id, to, Message::Request(vec![cmd.clone()]));
            env.trace = trace.clone();
            self.inner.out.send(env).map_err(|_| ClientError::Closed)?;
            let retry_at = (tokio::time::Instant::now() + opts.retry_every).min(deadline);
            // Until an answer, the retry period, or the notice that `to` went down (then
            // the next proposer is asked at once; with `via` there is no other to ask).
            let down = loop {
                let reply = match tokio::time::timeout_at(retry_at, rx.recv()).await {
                    Ok(Some(Event::Reply(reply))) => reply,
                    Ok(Some(Event::Down(p))) if p == to && opts.via.is_none() => break true,
                    Ok(Some(Event::Down(_))) => continue,
                    Ok(None) => return Err(ClientError::Closed),
                    Err(_) => break false,
                };
                if matches!(reply, Reply::Busy { .. }) && attempt > 0 {
                    // A retry refused as busy: an earlier try may be held in another
                    // proposer's queue and still be chosen, so "refused" would not be
                    // true. Wait on for that answer, as for any unanswered request.
                    continue;
                }
                return match reply {
                    Reply::NotConfirmed { .. } => Err(ClientError::NoQuorum),
                    Reply::TooLarge { size, limit, .. } => Err(ClientError::TooLarge { size, limit }),
                    Reply::Busy { limit, .. } => Err(ClientError::Busy { limit }),
                    reply => {
                        if let Reply::Vote { slot, .. } | Reply::Read { slot, .. } = &reply {
                            tracing::info!(target: TARGET, parent: span, slot, "reply");
                        }
                        // The proposer that answered last is where the next request goes
                        // (one named by `via` too).
                        let answered = self.inner.proposers.iter().position(|&p| p == to).unwrap_or(target);
                        self.inner.preferred.store(answered, Ordering::Relaxed);
                        Ok(reply)
                    }
                };
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout);
            }
            self.send_hellos();
            target = (target + 1) % n;
            if down {
                tracing::info!(target: TARGET, parent: span, down = %to, "retry");
            } else {
                tracing::info!(target: TARGET, parent: span, unanswered = %to, "retry");
            }
        }
        Err(ClientError::Timeout)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the dispatcher task.
    pub fn close(&self) {
        if let Some(t) = self.inner.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_transports::{EventLog, MemNetwork};

    const C1: NodeId = NodeId::client(1);
    const P1: NodeId = NodeId::proposer(1);
    const L1: NodeId = NodeId::learner(1);

    fn read(client: &ClientHandle) -> Command {
        Command::Read { request_id: client.next_request_id(), client: client.id() }
    }

    fn answer(cmd: &Command) -> Message {
        Message::Replies(vec![Reply::Read { request_id: cmd.request_id().into(), slot: 7, tally: vec![] }])
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_taken_only_from_members() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let client = ClientHandle::spawn(net.register(C1), vec![P1], vec![P1, L1, NodeId::client(2)]);
        let mut p1 = net.register(P1);
        let forgers = [NodeId::learner(9), NodeId::client(2), NodeId::acceptor(3)].map(|f| (f, net.register(f)));
        let l1 = net.register(L1);
        let cmd = read(&client);
        let submit = {
            let (client, cmd) = (client.clone(), cmd.clone());
            tokio::spawn(async move { client.submit(cmd, &SubmitOptions::default()).await })
        };
        let request = p1.recv().await.expect("the request reaches the proposer");
        assert_eq!(request.msg, Message::Request(vec![cmd.clone()]));
        // A learner that is not a member, a client named as a member, an unknown acceptor.
        for (f, t) in &forgers {
            t.send(Envelope::new(*f, C1, answer(&cmd))).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(client.refused_replies(), 3);
        assert!(!submit.is_finished(), "no forged answer is taken");
        l1.send(Envelope::new(L1, C1, answer(&cmd))).unwrap();
        let got = submit.await.unwrap();
        assert!(matches!(got, Ok(Reply::Read { slot: 7, .. })), "{got:?}");
        client.close();
    }

    #[tokio::test(start_paused = true)]
    async fn requests_queued_together_travel_as_one_per_proposer() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let client = ClientHandle::spawn(net.register(C1), vec![P1], vec![P1, L1]);
        let mut p1 = net.register(P1);
        let cmds: Vec<Command> = (0..100).map(|_| read(&client)).collect();
        for cmd in &cmds {
            let (client, cmd) = (client.clone(), cmd.clone());
            tokio::spawn(async move { client.submit(cmd, &SubmitOptions::default()).await });
        }
        let mut got = Vec::new();
        let mut envelopes = 0;
        while got.len() < cmds.len() {
            let env = tokio::time::timeout(Duration::from_millis(100), p1.recv()).await.unwrap().unwrap();
            let Message::Request(batch) = env.msg else { continue };
            envelopes += 1;
            got.extend(batch);
        }
        assert_eq!(got, cmds, "every command once, in the order submitted");
        assert!(envelopes < cmds.len() / 10, "{envelopes} requests for {} commands", cmds.len());
        client.close();
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_notice_about_its_proposer_moves_a_request_on_at_once() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let p2 = NodeId::proposer(2);
        let client = ClientHandle::spawn(net.register(C1), vec![P1, p2], vec![P1, p2, L1]);
        let (mut t1, mut t2) = (net.register(P1), net.register(p2));
        let cmd = read(&client);
        let submit = {
            let (client, cmd) = (client.clone(), cmd.clone());
            tokio::spawn(async move { client.submit(cmd, &SubmitOptions::default()).await })
        };
        assert!(matches!(t1.recv().await.unwrap().msg, Message::Request(_)));
        let t0 = tokio::time::Instant::now();
        net.unregister(P1);
        let env = loop {
            let env = t2.recv().await.unwrap();
            if matches!(env.msg, Message::Request(_)) {
                break env;
            }
        };
        assert_eq!(env.msg, Message::Request(vec![cmd.clone()]));
        assert!(t0.elapsed() < SubmitOptions::default().retry_every, "moved on before the retry period");
        let l1 = net.register(L1);
        l1.send(Envelope::new(L1, C1, answer(&cmd))).unwrap();
        assert!(submit.await.unwrap().is_ok());
        // The next request starts at the proposer that is left.
        let next = read(&client);
        let c = client.clone();
        let asked = next.clone();
        tokio::spawn(async move { c.submit(asked, &SubmitOptions::default()).await });
        let env = tokio::time::timeout(Duration::from_millis(100), t2.recv()).await.unwrap().unwrap();
        assert_eq!(env.msg, Message::Request(vec![next]));
        client.close();
    }

    #[tokio::test(start_paused = true)]
    async fn request_ids_are_random_unless_seeded() {
        let net = MemNetwork::new(1, EventLog::new(false));
        let (a, b) = (
            ClientHandle::spawn(net.register(C1), vec![P1], vec![]),
            ClientHandle::spawn(net.register(NodeId::client(2)), vec![P1], vec![]),
        );
        let ids: Vec<String> = (0..100).map(|_| a.next_request_id()).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert!(ids
            .iter()
            .all(|id| id.len() == "client-1/".len() + 32 && id.len() <= ballot_core::MAX_REQUEST_ID_BYTES));
        assert!(ids.iter().all(|id| u128::from_str_radix(&id["client-1/".len()..], 16).is_ok()), "{ids:?}");
        // Two processes' clients with the same name draw different ids.
        assert_ne!(a.next_request_id()["client-1/".len()..], b.next_request_id()["client-2/".len()..]);
        a.seed_request_ids(42);
        b.seed_request_ids(42);
        let (x, y) = (a.next_request_id(), b.next_request_id());
        assert_eq!(x["client-1/".len()..], y["client-2/".len()..], "seeded: the same on every run");
        a.close();
        b.close();
    }
}
