//! The registry of members and its clocks: who registered, when, who leads. No I/O and no
//! clock of its own: callers pass the time.

use super::wire::millis;
use ballot_core::{Ballot, NodeId, Role};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Where the server reads the time. Tokio's clock by default (paused time in tests moves
/// it); any function of your choice otherwise.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    /// `tokio::time::Instant::now`.
    pub fn tokio() -> Self {
        Clock(Arc::new(Instant::now))
    }
    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }
    /// The time now.
    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::tokio()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// A clock that moves only when told: for tests whose server runs on real sockets and
/// real time but whose expiry must be exact.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    /// A clock at tokio's now, standing still.
    pub fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(Instant::now())))
    }
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
    /// The time now.
    pub fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// A [`Clock`] that reads this one, for [`super::DiscoveryOptions::clock`].
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// What a node tells discovery about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The node.
    pub node: NodeId,
    /// Its data (protocol) address.
    pub addr: SocketAddr,
    /// Its HTTP pages, if it serves them.
    pub http: Option<SocketAddr>,
    /// Proposer: its current ballot; acceptor: its promised ballot.
    pub ballot: Option<Ballot>,
    /// A proposer that believes it is the leader.
    pub leader: bool,
}

impl Registration {
    /// A registration of `node` at `addr`: no pages, no ballot, no leadership claimed.
    pub fn new(node: NodeId, addr: SocketAddr) -> Self {
        Registration { node, addr, http: None, ballot: None, leader: false }
    }

    /// What a node registers, from its own status: its ballot, and for a proposer whether
    /// it believes it leads (leadership comes from the proposers' ballots, never from
    /// discovery).
    pub fn from_status(node: NodeId, addr: SocketAddr, http: Option<SocketAddr>, status: &ballot_core::Status) -> Self {
        Registration {
            node,
            addr,
            http,
            ballot: status.ballot,
            leader: node.role == Role::Proposer && status.leader == Some(node),
        }
    }
}

/// A member as discovery lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node.
    pub node: NodeId,
    /// Its data (protocol) address.
    pub addr: SocketAddr,
    /// Its HTTP pages, if it serves them.
    pub http: Option<SocketAddr>,
    /// Proposer: its current ballot; acceptor: its promised ballot.
    pub ballot: Option<Ballot>,
    /// A proposer that believes it is the leader.
    pub leader: bool,
    /// Milliseconds since its last register or heartbeat, when it was listed.
    pub last_seen_ms_ago: u64,
}

impl Member {
    /// Its role, from its name.
    pub fn role(&self) -> Role {
        self.node.role
    }
}

/// The registry full: a new member was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("discovery holds {0} members, its limit: {1} was not registered")]
pub struct RegistryFull(
    /// The limit.
    pub usize,
    /// The node refused.
    pub NodeId,
);

/// The members, with expiry computed against the `now` each call is given. No I/O, no
/// clock of its own: the server passes its [`Clock`]'s time.
#[derive(Debug)]
pub struct Registry {
    ttl: Duration,
    max_members: usize,
    entries: BTreeMap<NodeId, (Registration, Instant)>,
}

impl Registry {
    /// An empty registry listing members for `ttl` and holding at most `max_members` (at least 1).
    pub fn new(ttl: Duration, max_members: usize) -> Self {
        Registry { ttl, max_members: max_members.max(1), entries: BTreeMap::new() }
    }

    /// How long a silent member stays listed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn live(&self, seen: Instant, now: Instant) -> bool {
        now.saturating_duration_since(seen) < self.ttl
    }

    /// Registers or refreshes `reg.node`, seen at `now`. Drops expired entries first.
    pub fn register(&mut self, reg: Registration, now: Instant) -> Result<(), RegistryFull> {
        let ttl = self.ttl;
        self.entries.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < ttl);
        if !self.entries.contains_key(&reg.node) && self.entries.len() >= self.max_members {
            return Err(RegistryFull(self.max_members, reg.node));
        }
        self.entries.insert(reg.node, (reg, now));
        Ok(())
    }

    /// Forgets `node`; whether it was there (expired or not).
    pub fn deregister(&mut self, node: NodeId) -> bool {
        self.entries.remove(&node).is_some()
    }

    /// Members heard within the ttl, in node order.
    pub fn members(&self, now: Instant) -> Vec<Member> {
        self.entries
            .values()
            .filter(|(_, seen)| self.live(*seen, now))
            .map(|(reg, seen)| member(reg, *seen, now))
            .collect()
    }

    /// Among the proposers heard within the ttl that claim leadership with a ballot of
    /// their own ([`owns_claim`]), the one with the highest ballot (ties, which honest
    /// proposers never make, break by node id).
    pub fn leader(&self, now: Instant) -> Option<Member> {
        self.entries
            .values()
            .filter(|(reg, seen)| reg.leader && owns_claim(reg).is_ok() && self.live(*seen, now))
            .max_by_key(|(reg, _)| (reg.ballot, reg.node))
            .map(|(reg, seen)| member(reg, *seen, now))
    }
}

/// Whether `reg`'s leadership claim (if it makes one) can be believed: only a proposer
/// leads, and only with its own ballot (a ballot names its proposer), which it has once
/// it leads. A claim with another proposer's ballot, or with none, is a lie or a bug:
/// believed, a claim with a huge ballot would become `/leader`, which clients try first.
pub fn owns_claim(reg: &Registration) -> Result<(), String> {
    if !reg.leader {
        return Ok(());
    }
    let node = reg.node;
    match reg.ballot {
        _ if node.role != Role::Proposer => Err(format!("{node} claims leadership: only a proposer can lead")),
        Some(b) if b.proposer == node.index => Ok(()),
        Some(b) => Err(format!("{node} claims leadership with ballot {b}, which is proposer-{}'s", b.proposer)),
        None => Err(format!("{node} claims leadership without a ballot")),
    }
}

fn member(reg: &Registration, seen: Instant, now: Instant) -> Member {
    Member {
        node: reg.node,
        addr: reg.addr,
        http: reg.http,
        ballot: reg.ballot,
        leader: reg.leader,
        last_seen_ms_ago: millis(now.saturating_duration_since(seen)),
    }
}
