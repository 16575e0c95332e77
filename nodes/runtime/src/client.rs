//! A client of the cluster: submits commands to a proposer (which forwards them to the
//! leader), waits for the answer with a deadline, and retries elsewhere with the same
//! request id, so a retry is never a second vote.

use ballot_core::{Command, Message, NodeId, Reply, MAX_COMMAND_BYTES};
use ballot_telemetry::{self as telemetry, TARGET};
use ballot_transports::{Envelope, Transport};
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
    /// The command is larger than the cluster takes ([`MAX_COMMAND_BYTES`]): refused at
    /// once, never proposed. Shorten the voter or candidate name.
    #[error("too_large")]
    TooLarge {
        /// The command's encoded size, in bytes.
        size: usize,
        /// The most the cluster takes, in bytes.
        limit: usize,
    },
    /// The client's task has ended (its handle was closed).
    #[error("client is closed")]
    Closed,
}

struct Inner {
    id: NodeId,
    proposers: Vec<NodeId>,
    /// Nodes told where this client listens (at start and on every retry), so learners and
    /// the leader can answer it although it only ever sends to one proposer.
    announce_to: Mutex<Vec<NodeId>>,
    out: mpsc::UnboundedSender<Envelope>,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>,
    preferred: AtomicUsize,
    counter: AtomicU64,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Cheap to clone; every clone shares one endpoint and one dispatcher task.
#[derive(Clone)]
pub struct ClientHandle {
    inner: Arc<Inner>,
}

impl ClientHandle {
    /// Start a client on `transport` that talks to `proposers`.
    pub fn spawn<T: Transport>(mut transport: T, proposers: Vec<NodeId>) -> Self {
        let (out, mut out_rx) = mpsc::unbounded_channel::<Envelope>();
        let inner = Arc::new(Inner {
            id: transport.local(),
            proposers,
            announce_to: Mutex::new(Vec::new()),
            out,
            pending: Mutex::new(HashMap::new()),
            preferred: AtomicUsize::new(0),
            counter: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    env = out_rx.recv() => match env {
                        Some(env) => { let _ = transport.send(env); }
                        None => return,
                    },
                    env = transport.recv() => {
                        let Some(env) = env else { return };
                        let Message::Replies(replies) = env.msg else { continue };
                        let Some(inner) = weak.upgrade() else { return };
                        let pending = inner.pending.lock().unwrap_or_else(|e| e.into_inner());
                        for reply in replies {
                            if let Some(tx) = pending.get(reply.request_id()) {
                                let _ = tx.send(reply);
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

    /// A request id no other request of this client uses.
    pub fn next_request_id(&self) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}/{n}", self.inner.id)
    }

    /// Submit `cmd` and wait for its answer: a `Reply::Vote` or `Reply::Read`.
    pub async fn submit(&self, cmd: Command, opts: &SubmitOptions) -> Result<Reply, ClientError> {
        let request_id = cmd.request_id().to_string();
        let size = cmd.size();
        if size > MAX_COMMAND_BYTES {
            // Refused here and now: no proposer would take it, and retrying cannot help.
            return Err(ClientError::TooLarge { size, limit: MAX_COMMAND_BYTES });
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
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.lock_pending().insert(request_id.clone(), tx);
        let result = self.exchange(cmd, opts, &mut rx, &span).await;
        self.lock_pending().remove(&request_id);
        let outcome = match &result {
            Ok(Reply::Vote { result: Ok(()), .. }) => "counted".to_string(),
            Ok(Reply::Vote { result: Err(e), .. }) => e.to_string(),
            Ok(Reply::Read { .. }) => "read".to_string(),
            Ok(Reply::NotConfirmed { .. }) => "not confirmed".to_string(),
            Ok(Reply::TooLarge { .. }) => "too_large".to_string(),
            Err(e) => e.to_string(),
        };
        span.record("outcome", outcome.as_str());
        result
    }

    async fn exchange(
        &self,
        cmd: Command,
        opts: &SubmitOptions,
        rx: &mut mpsc::UnboundedReceiver<Reply>,
        span: &tracing::Span,
    ) -> Result<Reply, ClientError> {
        let trace = telemetry::context_of(span);
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let n = self.inner.proposers.len().max(1);
        let mut target = self.inner.preferred.load(Ordering::Relaxed) % n;
        loop {
            let to = opts.via.or_else(|| self.inner.proposers.get(target).copied()).ok_or(ClientError::Closed)?;
            let mut env = Envelope::new(self.inner.id, to, Message::Request(vec![cmd.clone()]));
            env.trace = trace.clone();
            self.inner.out.send(env).map_err(|_| ClientError::Closed)?;
            let retry_at = (tokio::time::Instant::now() + opts.retry_every).min(deadline);
            match tokio::time::timeout_at(retry_at, rx.recv()).await {
                Ok(Some(Reply::NotConfirmed { .. })) => return Err(ClientError::NoQuorum),
                Ok(Some(Reply::TooLarge { size, limit, .. })) => return Err(ClientError::TooLarge { size, limit }),
                Ok(Some(reply)) => {
                    if let Reply::Vote { slot, .. } | Reply::Read { slot, .. } = &reply {
                        tracing::info!(target: TARGET, parent: span, slot, "reply");
                    }
                    self.inner.preferred.store(target, Ordering::Relaxed);
                    return Ok(reply);
                }
                Ok(None) => return Err(ClientError::Closed),
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout);
            }
            self.send_hellos();
            target = (target + 1) % n;
            tracing::info!(target: TARGET, parent: span, unanswered = %to, "retry");
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Reply>>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the dispatcher task.
    pub fn close(&self) {
        if let Some(t) = self.inner.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}
