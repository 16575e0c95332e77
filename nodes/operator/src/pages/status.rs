//! The `/status` page, typed: [`StatusPage`] and the pieces it is made of, built from a
//! process's node loops and read back by `/cluster` and the `ballot status` command.

use super::{statuses, HttpNode, HttpState};
use ballot_core::Status;
use ballot_runtime::metrics::MetricsSnapshot;
use ballot_transports::{FaultStats, WireStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `GET /status` answers: the process's first node loop at the top level (what a
/// one-role process's readers look at), the process's transport, candidates, addresses
/// and uptime, and every node loop of the process in `nodes` (a replica runs three).
///
/// Missing fields read as their defaults, so a page of a slightly different version
/// still reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusPage {
    /// The first node loop of the process.
    #[serde(flatten)]
    pub first: NodeSummary,
    /// The process's transport: its kind, the simulated faults, the first node's wire.
    pub transport: ProcessTransport,
    /// The candidates the cluster was started with.
    pub candidates: Vec<String>,
    /// Where the process listens.
    pub addresses: Addresses,
    /// Seconds since the HTTP server started.
    pub uptime_seconds: f64,
    /// Every node loop of the process.
    pub nodes: Vec<NodeStatus>,
}

impl StatusPage {
    /// The entry of `node` (as it prints, e.g. `learner-1`), if this process runs it.
    pub fn node(&self, node: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.summary.node == node)
    }
}

/// One node loop as `/status` shows it (without its transport counters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSummary {
    /// Its name, e.g. `proposer-1`.
    pub node: String,
    /// `proposer`, `acceptor`, `learner`.
    pub role: String,
    /// Whether its loop answered within the health deadline; every field below that
    /// comes from its status is `null` when it did not.
    pub responding: bool,
    /// Proposer: its ballot; acceptor: its promised ballot (`round.proposer`).
    pub ballot: Option<String>,
    /// The round of `ballot`.
    pub ballot_round: Option<u64>,
    /// The leader it believes in.
    pub leader: Option<String>,
    /// Whether it is that leader.
    pub is_leader: bool,
    /// Highest slot known chosen with every slot below it.
    pub chosen: Option<u64>,
    /// Last slot applied (learners).
    pub applied: Option<u64>,
    /// Votes per candidate (learners).
    pub tally: Option<BTreeMap<String, u64>>,
    /// Votes counted in all (learners).
    pub votes: Option<u64>,
    /// Slots holding an accepted value (acceptors).
    pub accepted_slots: Option<u64>,
    /// Elections started (proposers).
    pub elections: Option<u64>,
    /// Its transport's address, as others reach it.
    pub listen: Option<String>,
    /// Counters of its loop.
    pub messages: MessageCounts,
}

/// A node loop's entry in [`StatusPage::nodes`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    /// Everything but the transport.
    #[serde(flatten)]
    pub summary: NodeSummary,
    /// Its transport's counters (tcp, zmq), `null` without one.
    pub transport: Option<WireCounters>,
}

/// Messages and steps of a node loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageCounts {
    /// Messages handed to the transport.
    pub sent: u64,
    /// Messages taken from the transport.
    pub received: u64,
    /// Steps of the loop.
    pub steps: u64,
    /// Storage persist calls.
    pub persist_calls: u64,
}

/// A network transport's counters.
///
/// Every field is required: the process's transport holds these inline, and they are
/// there exactly when it has a wire (`#[serde(flatten)]` on an `Option` reads `None` only
/// when a field is missing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCounters {
    /// Frames written to peers.
    pub frames_sent: u64,
    /// Frames received and decoded.
    pub frames_received: u64,
    /// Bytes written to peers.
    pub bytes_sent: u64,
    /// Bytes received and decoded.
    pub bytes_received: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Connections closed.
    pub connections_closed: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Messages and frames dropped, by reason.
    pub dropped: WireDrops,
}

/// Why a transport dropped messages or frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireDrops {
    /// The send queue was full.
    pub queue_full: u64,
    /// Over the frame limit.
    pub oversized: u64,
    /// Did not decode.
    pub decode: u64,
    /// Another protocol version.
    pub version: u64,
    /// No address or no connection.
    pub unreachable: u64,
    /// Cut short.
    pub truncated: u64,
    /// The connection's handshake was wrong.
    pub bad_handshake: u64,
}

/// The process's transport on the status page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessTransport {
    /// `tcp`, `zmq`, `mem`.
    pub kind: String,
    /// The simulated-fault layer, when the process has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultCounters>,
    /// The first node's wire counters, inline.
    #[serde(flatten)]
    pub wire: Option<WireCounters>,
}

/// What the simulated-fault layer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultCounters {
    /// Messages that went through it.
    pub sent: u64,
    /// Messages it dropped, by reason.
    pub dropped: FaultDrops,
    /// Messages it duplicated.
    pub duplicated: u64,
    /// Message copies it delayed.
    pub delayed: u64,
}

/// Why the simulated-fault layer dropped messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultDrops {
    /// A partition, on the way out.
    pub partition: u64,
    /// A partition, on the way in.
    pub partition_inbound: u64,
    /// The random drop rate.
    pub random: u64,
}

/// Where the process listens and where its peers' pages are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Addresses {
    /// Each node loop's transport address, by node name.
    pub listen: BTreeMap<String, Option<String>>,
    /// The control channel.
    pub control: Option<String>,
    /// These pages.
    pub http: Option<String>,
    /// Other members' pages (`--http-peers`), by node name.
    pub http_peers: BTreeMap<String, String>,
}

impl From<&WireStats> for WireCounters {
    fn from(w: &WireStats) -> Self {
        WireCounters {
            frames_sent: w.frames_sent,
            frames_received: w.frames_received,
            bytes_sent: w.bytes_sent,
            bytes_received: w.bytes_received,
            connections_opened: w.connections_opened,
            connections_closed: w.connections_closed,
            connect_failures: w.connect_failures,
            dropped: WireDrops {
                queue_full: w.dropped_queue_full,
                oversized: w.dropped_oversized,
                decode: w.dropped_decode,
                version: w.dropped_version,
                unreachable: w.dropped_unreachable,
                truncated: w.truncated,
                bad_handshake: w.bad_handshake,
            },
        }
    }
}

impl From<&FaultStats> for FaultCounters {
    fn from(f: &FaultStats) -> Self {
        FaultCounters {
            sent: f.sent,
            dropped: FaultDrops {
                partition: f.dropped_partition,
                partition_inbound: f.dropped_inbound,
                random: f.dropped_random,
            },
            duplicated: f.duplicated,
            delayed: f.delayed,
        }
    }
}

/// A node loop's entry, from its status (`None`: it did not answer) and its counters.
pub(super) fn node_status(n: &HttpNode, st: Option<&Status>, m: &MetricsSnapshot) -> NodeStatus {
    let responding = st.is_some();
    let st = st.cloned().unwrap_or_default();
    let (sent, received) = m.peers.values().fold((0, 0), |(s, r), c| (s + c.sent, r + c.received));
    let summary = NodeSummary {
        node: n.id.to_string(),
        role: n.id.role.to_string(),
        responding,
        ballot: st.ballot.map(|b| b.to_string()),
        ballot_round: st.ballot.map(|b| b.round),
        leader: st.leader.map(|l| l.to_string()),
        is_leader: st.leader == Some(n.id),
        chosen: st.chosen,
        applied: st.applied,
        tally: st.tally.as_ref().map(|t| t.iter().cloned().collect()),
        votes: st.tally.as_ref().map(|t| t.iter().map(|(_, v)| v).sum::<u64>()),
        accepted_slots: st.accepted_slots,
        elections: st.elections,
        listen: n.listen.map(|a| a.to_string()),
        messages: MessageCounts { sent, received, steps: m.steps, persist_calls: m.persist_calls },
    };
    NodeStatus { summary, transport: n.wire.as_ref().map(|w| WireCounters::from(&w.get())) }
}

/// The whole `/status` page of this process, each node loop asked within the health
/// deadline.
pub async fn status_page(s: &HttpState) -> StatusPage {
    let statuses = statuses(s, s.limits.health_deadline).await;
    let nodes: Vec<NodeStatus> =
        s.nodes.iter().zip(&statuses).map(|(n, st)| node_status(n, st.as_ref(), &n.metrics.snapshot())).collect();
    let first = nodes.first().cloned().unwrap_or_default();
    let transport = ProcessTransport {
        kind: s.transport.clone(),
        faults: s.faults.as_ref().map(|f| FaultCounters::from(&f.stats())),
        wire: first.transport,
    };
    let addresses = Addresses {
        listen: s.nodes.iter().map(|n| (n.id.to_string(), n.listen.map(|a| a.to_string()))).collect(),
        control: s.control.map(|a| a.to_string()),
        http: s.http.map(|a| a.to_string()),
        http_peers: s.http_peers.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect(),
    };
    StatusPage {
        first: first.summary,
        transport,
        candidates: s.candidates.clone(),
        addresses,
        uptime_seconds: s.started.elapsed().as_secs_f64(),
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_back_as_it_was_written() {
        let node =
            NodeSummary { node: "learner-1".into(), role: "learner".into(), responding: true, ..Default::default() };
        let mut page = StatusPage {
            first: node.clone(),
            transport: ProcessTransport { kind: "mem".into(), faults: None, wire: None },
            nodes: vec![NodeStatus { summary: node, transport: None }],
            ..Default::default()
        };
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<StatusPage>(&text).unwrap(), page);
        page.transport.wire = Some(WireCounters { frames_sent: 3, ..Default::default() });
        page.transport.faults = Some(FaultCounters { sent: 2, ..Default::default() });
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<StatusPage>(&text).unwrap(), page);
    }
}
