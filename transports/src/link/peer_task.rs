//! The task that owns one peer's queue and connection: it gathers queued messages into
//! one write, dials lazily with exponential backoff, and redials when the peer moves or
//! restarts.

use super::inbound::{in_use, notice_down};
use super::{bump, Connector, Counters, NetOptions};
use crate::addr::PeerAddr;
use crate::envelope::Envelope;
use ballot_core::NodeId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

/// Exponential backoff between connection attempts to one peer.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
    next: Instant,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, delay: min, next: Instant::now() }
    }
    /// Waits until the next attempt is allowed.
    pub(crate) async fn wait(&self) {
        sleep_until(self.next).await;
    }
    pub(crate) fn failed(&mut self) {
        self.next = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(self.max);
    }
    pub(crate) fn succeeded(&mut self) {
        self.delay = self.min;
    }
    pub(crate) fn reset(&mut self) {
        self.delay = self.min;
        self.next = Instant::now();
    }
}

/// The task that owns one peer's queue and connection.
pub(super) struct PeerTask<C: Connector> {
    pub(super) peer: NodeId,
    pub(super) conn: C,
    /// The address the last connection went to (for a named peer: what its name
    /// resolved to then), to log when a name starts pointing elsewhere.
    pub(super) resolved: Option<SocketAddr>,
    /// The last lookup of the peer's name failed (logged once per run of failures).
    pub(super) resolve_failing: bool,
    pub(super) rx: mpsc::Receiver<Envelope>,
    pub(super) addr: watch::Receiver<PeerAddr>,
    pub(super) heard_at: watch::Receiver<Option<SocketAddr>>,
    pub(super) restarted: watch::Receiver<u64>,
    pub(super) opts: Arc<NetOptions>,
    pub(super) stats: Arc<Counters>,
    /// Where a crash notice about the peer goes: our own `recv`.
    pub(super) local: NodeId,
    pub(super) inbox: mpsc::Sender<Envelope>,
}

/// Returns when the peer closes the connection held in `link`; never without one.
async fn link_closed<C: Connector>(link: &mut Option<C::Conn>) {
    match link {
        Some(conn) => C::closed(conn).await,
        None => std::future::pending().await,
    }
}

impl<C: Connector> PeerTask<C> {
    /// Runs until the transport is dropped: waits for a message or a change of the
    /// peer's address, name or life, then gathers, connects if need be, and writes.
    pub(super) async fn run(mut self) {
        let mut link: Option<C::Conn> = None;
        let mut backoff = Backoff::new(self.opts.backoff_min, self.opts.backoff_max);
        // A connection without a write for half the receiver's idle timeout is let go
        // before the receiver closes it for silence: a message written into a connection
        // the other end has closed is lost (the first write after the close succeeds).
        let linger = self.opts.idle_timeout.map(|t| t / 2);
        let mut last_write = Instant::now();
        loop {
            let idle_until = linger.map(|l| last_write + l);
            let first = tokio::select! {
                biased;
                changed = self.addr.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.drop_link(&mut link);
                    backoff.reset();
                    continue;
                }
                heard = self.heard_at.changed() => {
                    if heard.is_err() {
                        return;
                    }
                    let at = *self.heard_at.borrow_and_update();
                    if link.is_some() && at.is_some() && at != self.resolved {
                        tracing::info!(peer = %self.peer, now = ?at, before = ?self.resolved, "the peer says it listens elsewhere: looking its name up again");
                        self.drop_link(&mut link);
                        backoff.reset();
                    }
                    continue;
                }
                restarted = self.restarted.changed() => {
                    if restarted.is_err() {
                        return;
                    }
                    self.restarted.borrow_and_update();
                    if link.is_some() {
                        tracing::debug!(peer = %self.peer, "the peer restarted: dialling it afresh");
                        self.drop_link(&mut link);
                    }
                    backoff.reset();
                    continue;
                }
                env = self.rx.recv() => match env {
                    Some(env) => env,
                    None => return,
                },
                () = sleep_until(idle_until.unwrap_or(last_write)), if link.is_some() && idle_until.is_some() => {
                    self.drop_link(&mut link);
                    continue;
                }
                // The peer closed our connection. Soon after a write, it most likely
                // crashed (a live peer closes only a connection idle for its whole idle
                // timeout, and we let ours go at half of it): say so to our own `recv`,
                // so that a client moves on to another proposer at once, and a follower
                // runs for leader, instead of each waiting out a timeout. The next
                // message dials afresh either way.
                () = link_closed::<C>(&mut link) => {
                    self.drop_link(&mut link);
                    if last_write.elapsed() < in_use(&self.opts) {
                        notice_down(self.peer, self.local, &self.stats, &self.inbox);
                    }
                    continue;
                }
            };
            let frames = self.gather(&first);
            if frames == 0 {
                continue;
            }
            if link.is_none() {
                match self.connect(&mut backoff, frames).await {
                    Some(c) => link = Some(c),
                    None => continue,
                }
            }
            self.write(&mut link, &mut backoff, frames).await;
            last_write = Instant::now();
        }
    }

    /// Gathers `first` and what is already queued behind it into one write, up to
    /// `batch_bytes`; returns how many frames the batch holds.
    fn gather(&mut self, first: &Envelope) -> u64 {
        let mut frames = self.push(first);
        while self.conn.pending_bytes() < self.opts.batch_bytes {
            match self.rx.try_recv() {
                Ok(env) => frames += self.push(&env),
                Err(_) => break,
            }
        }
        frames
    }

    /// No connection yet for a batch of `frames`: waits out the backoff (cut short when
    /// the peer says it is back or moved), then dials. On failure the batch is dropped
    /// and counted as unreachable.
    async fn connect(&mut self, backoff: &mut Backoff, frames: u64) -> Option<C::Conn> {
        // A peer that says it is back (or moved) is dialled at once, not after
        // the back-off its absence built up (up to `backoff_max`, longer than an
        // election timeout: a restarted proposer would hear no leader and run).
        tokio::select! {
            biased;
            Ok(()) = self.restarted.changed() => {
                self.restarted.borrow_and_update();
                backoff.reset();
            }
            Ok(()) = self.addr.changed() => backoff.reset(),
            () = backoff.wait() => {}
        }
        let addr = self.addr.borrow_and_update().clone();
        match self.dial(&addr).await {
            Some(c) => {
                bump(&self.stats.connections_opened, 1);
                backoff.succeeded();
                Some(c)
            }
            None => {
                bump(&self.stats.connect_failures, 1);
                bump(&self.stats.dropped_unreachable, frames);
                self.conn.clear();
                backoff.failed();
                None
            }
        }
    }

    /// Writes the pending batch of `frames` on the connection, within `write_timeout`.
    async fn write(&mut self, link: &mut Option<C::Conn>, backoff: &mut Backoff, frames: u64) {
        let Some(conn) = link.as_mut() else { return };
        let bytes = self.conn.pending_bytes() as u64;
        match timeout(self.opts.write_timeout, self.conn.flush(conn)).await {
            Ok(Ok(())) => {
                bump(&self.stats.frames_sent, frames);
                bump(&self.stats.bytes_sent, bytes);
            }
            _ => {
                // A failed or stalled write: the peer restarted, died or is paused.
                // Start over on a fresh connection after a short wait.
                bump(&self.stats.dropped_unreachable, frames);
                self.conn.clear();
                self.drop_link(link);
                backoff.failed();
            }
        }
    }

    /// Opens a connection to `addr`: for a host name, looks it up afresh (within the
    /// connect deadline) and tries what it resolves to in order, each within the connect
    /// deadline.
    async fn dial(&mut self, addr: &PeerAddr) -> Option<C::Conn> {
        let candidates = match addr {
            PeerAddr::Ip(a) => vec![*a],
            PeerAddr::Host { .. } => {
                bump(&self.stats.name_lookups, 1);
                match addr.lookup_within(self.opts.connect_timeout).await {
                    Ok(found) => {
                        if self.resolve_failing {
                            tracing::info!(peer = %self.peer, %addr, "the peer's name resolves again");
                            self.resolve_failing = false;
                        }
                        found
                    }
                    Err(e) => {
                        bump(&self.stats.name_lookup_failures, 1);
                        if !self.resolve_failing {
                            tracing::warn!(peer = %self.peer, %addr, "cannot resolve the peer's name ({e}); retrying at the next message");
                            self.resolve_failing = true;
                        }
                        return None;
                    }
                }
            }
        };
        // A few at most: each may take the whole connect deadline.
        for a in candidates.into_iter().take(4) {
            if let Ok(Ok(c)) = timeout(self.opts.connect_timeout, self.conn.connect(a)).await {
                if let (PeerAddr::Host { .. }, Some(before)) = (addr, self.resolved) {
                    if before != a {
                        tracing::info!(peer = %self.peer, %addr, now = %a, %before, "the peer moved to another address");
                    }
                }
                self.resolved = Some(a);
                return Some(c);
            }
        }
        None
    }

    fn push(&mut self, env: &Envelope) -> u64 {
        match self.conn.push(env, self.opts.max_frame) {
            Ok(()) => 1,
            // Ours, not the network's: counted under its reason, and the caller's
            // `send` has already said why a message this large cannot go.
            Err(e) => {
                self.stats.count_unsendable(&e);
                0
            }
        }
    }

    fn drop_link(&self, link: &mut Option<C::Conn>) {
        if link.take().is_some() {
            bump(&self.stats.connections_closed, 1);
        }
    }
}
