//! The `/metrics` page: Prometheus text format 0.0.4, from the node loops' counters, the
//! transports' and fault layer's counters, the roles' status and the trace exporter.

use super::{statuses, HttpNode, HttpState, Shared};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ballot_core::Status;
use ballot_runtime::metrics::MetricsSnapshot;
use ballot_transports::{FaultStats, WireStats};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A transport's drops by reason, as `ballot_messages_dropped_total` labels them.
fn wire_drops(w: &WireStats) -> [(&'static str, u64); 10] {
    [
        ("queue_full", w.dropped_queue_full),
        ("oversized", w.dropped_oversized),
        ("decode", w.dropped_decode),
        ("version", w.dropped_version),
        ("unreachable", w.dropped_unreachable),
        ("truncated", w.truncated),
        ("bad_handshake", w.bad_handshake),
        ("refused_handshake", w.refused_handshake),
        ("identity_mismatch", w.dropped_identity),
        ("connection_cap", w.connections_refused),
    ]
}

/// The fault layer's drops by reason.
fn fault_drops(f: &FaultStats) -> [(&'static str, u64); 3] {
    [("partition", f.dropped_partition), ("partition_inbound", f.dropped_inbound), ("random", f.dropped_random)]
}

/// Prometheus text exposition (format 0.0.4).
struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(&prom_value(value));
        self.0.push('\n');
    }
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// What one render works from: each node loop's name, counters and status.
struct Inputs<'a> {
    state: &'a HttpState,
    names: &'a [String],
    snaps: Vec<MetricsSnapshot>,
    statuses: Vec<Option<Status>>,
    wires: Vec<(&'a String, WireStats)>,
}

/// The whole `/metrics` page for this process.
pub async fn render_metrics(s: &HttpState) -> String {
    let statuses = statuses(s, s.limits.health_deadline).await;
    let names: Vec<String> = s.nodes.iter().map(|n| n.id.to_string()).collect();
    let snaps = s.nodes.iter().map(|n| n.metrics.snapshot()).collect();
    let wires = names.iter().zip(&s.nodes).filter_map(|(name, n)| Some((name, n.wire.as_ref()?.get()))).collect();
    let inputs = Inputs { state: s, names: &names, snaps, statuses, wires };
    let mut p = Prom(String::with_capacity(8192));
    liveness(&mut p, &inputs);
    messages(&mut p, &inputs);
    drops(&mut p, &inputs);
    wire(&mut p, &inputs);
    traces(&mut p);
    steps(&mut p, &inputs);
    refused(&mut p, &inputs);
    from_status(&mut p, &inputs);
    if let Some(r) = &s.refusals {
        r.render_prometheus(&mut p.0);
    }
    if let Some(logs) = &s.logs {
        let last = logs.lines().last().map_or(0, |l| l.seq);
        p.family("ballot_log_lines_total", "counter", "Log lines written since the process started.");
        p.sample("ballot_log_lines_total", &[], last as f64);
    }
    p.0
}

fn liveness(p: &mut Prom, i: &Inputs<'_>) {
    p.family("ballot_up", "gauge", "1 if the node loop answered a status request within the health deadline.");
    for (name, st) in i.names.iter().zip(&i.statuses) {
        p.sample("ballot_up", &[("node", name)], st.is_some() as u8 as f64);
    }
    p.family("ballot_uptime_seconds", "gauge", "Seconds since the HTTP server started.");
    p.sample("ballot_uptime_seconds", &[], i.state.started.elapsed().as_secs_f64());
}

/// Per-peer message counters of every node loop.
fn messages(p: &mut Prom, i: &Inputs<'_>) {
    type Pick = fn(&ballot_runtime::metrics::PeerCounts) -> u64;
    let families: [(&str, &str, Pick); 3] = [
        ("ballot_messages_sent_total", "Messages the node handed to its transport, by destination.", |c| c.sent),
        ("ballot_messages_received_total", "Messages the node took from its transport, by sender.", |c| c.received),
        (
            "ballot_messages_send_failed_total",
            "Messages the transport refused at once (queue full, no address, closed), by destination.",
            |c| c.dropped,
        ),
    ];
    for (family, help, pick) in families {
        p.family(family, "counter", help);
        for (name, m) in i.names.iter().zip(&i.snaps) {
            for (peer, c) in &m.peers {
                if pick(c) > 0 {
                    p.sample(family, &[("node", name), ("peer", &peer.to_string())], pick(c) as f64);
                }
            }
        }
    }
}

/// Drops of every transport of the process, plus the shared simulated-fault layer.
fn drops(p: &mut Prom, i: &Inputs<'_>) {
    let mut drops: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (_, w) in &i.wires {
        for (reason, v) in wire_drops(w) {
            *drops.entry(reason).or_default() += v;
        }
    }
    let faults = i.state.faults.as_ref().map(|f| f.stats());
    if let Some(f) = &faults {
        for (reason, v) in fault_drops(f) {
            *drops.entry(reason).or_default() += v;
        }
    }
    p.family(
        "ballot_messages_dropped_total",
        "counter",
        "Messages and frames dropped by this process's transports and simulated faults, by reason.",
    );
    for (reason, v) in &drops {
        p.sample("ballot_messages_dropped_total", &[("reason", reason)], *v as f64);
    }
    if let Some(f) = &faults {
        p.family("ballot_messages_duplicated_total", "counter", "Messages duplicated by simulated faults.");
        p.sample("ballot_messages_duplicated_total", &[], f.duplicated as f64);
        p.family("ballot_messages_delayed_total", "counter", "Message copies delayed by simulated faults.");
        p.sample("ballot_messages_delayed_total", &[], f.delayed as f64);
    }
}

fn wire(p: &mut Prom, i: &Inputs<'_>) {
    type Family = (&'static str, &'static str, fn(&WireStats) -> u64);
    let wire_families: [Family; 9] = [
        ("ballot_transport_frames_sent_total", "Frames written to peers.", |w| w.frames_sent),
        ("ballot_transport_frames_received_total", "Frames received and decoded.", |w| w.frames_received),
        ("ballot_transport_bytes_sent_total", "Bytes written to peers.", |w| w.bytes_sent),
        ("ballot_transport_bytes_received_total", "Bytes received and decoded.", |w| w.bytes_received),
        ("ballot_transport_connections_opened_total", "Connections opened.", |w| w.connections_opened),
        ("ballot_transport_connections_closed_total", "Connections closed.", |w| w.connections_closed),
        ("ballot_transport_connect_failures_total", "Failed connection attempts.", |w| w.connect_failures),
        (
            "ballot_transport_connections_refused_total",
            "Inbound connections closed at once: the listener had its cap open.",
            |w| w.connections_refused,
        ),
        (
            "ballot_transport_peers_evicted_total",
            "Learned peers (clients known from their messages) forgotten to stay within the cap.",
            |w| w.peers_evicted,
        ),
    ];
    for (family, help, get) in wire_families {
        p.family(family, "counter", help);
        for (name, w) in &i.wires {
            p.sample(family, &[("node", name)], get(w) as f64);
        }
    }
}

fn traces(p: &mut Prom) {
    let Some(t) = ballot_telemetry::export_stats() else { return };
    let trace_families: [(&str, &str, &std::sync::atomic::AtomicU64); 3] = [
        ("ballot_trace_spans_exported_total", "Spans the OTLP collector took.", &t.exported),
        ("ballot_trace_spans_dropped_total", "Spans dropped because the export queue was full.", &t.dropped),
        ("ballot_trace_spans_failed_total", "Spans in exports the collector refused or did not answer.", &t.failed),
    ];
    for (family, help, v) in trace_families {
        p.family(family, "counter", help);
        p.sample(family, &[], v.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
}

/// The node loops' own counters: steps, persists, storage errors, fsync latency.
fn steps(p: &mut Prom, i: &Inputs<'_>) {
    type Family = (&'static str, &'static str, fn(&MetricsSnapshot) -> u64);
    let counters: [Family; 3] = [
        ("ballot_steps_total", "Steps of the node loop (a batch of inputs, one persist, then sends).", |m| m.steps),
        ("ballot_persist_total", "Storage::persist calls (one group commit each).", |m| m.persist_calls),
        ("ballot_storage_errors_total", "Failed Storage::persist calls (the node stops on one).", |m| m.storage_errors),
    ];
    for (family, help, get) in counters {
        p.family(family, "counter", help);
        for (name, m) in i.names.iter().zip(&i.snaps) {
            p.sample(family, &[("node", name)], get(m) as f64);
        }
    }
    p.family("ballot_fsync_seconds", "histogram", "Latency of Storage::persist (write and fsync of a step's batch).");
    for (name, m) in i.names.iter().zip(&i.snaps) {
        for (le, c) in &m.fsync.buckets {
            p.sample("ballot_fsync_seconds_bucket", &[("node", name), ("le", &prom_value(*le))], *c as f64);
        }
        p.sample("ballot_fsync_seconds_sum", &[("node", name)], m.fsync.sum_seconds);
        p.sample("ballot_fsync_seconds_count", &[("node", name)], m.fsync.count as f64);
    }
}

/// What each node's role refused, by reason (every reason, zeros included).
fn refused(p: &mut Prom, i: &Inputs<'_>) {
    p.family(
        "ballot_refused_total",
        "counter",
        "Messages and commands the role refused (a sender not allowed to send it, a name over its limit, a snapshot that does not add up), by reason.",
    );
    for (name, m) in i.names.iter().zip(&i.snaps) {
        for (reason, v) in m.refused {
            p.sample("ballot_refused_total", &[("node", name), ("reason", reason)], v as f64);
        }
    }
}

/// From the roles' status (absent for a node that does not answer).
fn from_status(p: &mut Prom, i: &Inputs<'_>) {
    type Pick = fn(&HttpNode, &Status) -> Option<f64>;
    let from_status: [(&str, &str, &str, Pick); 7] = [
        (
            "ballot_votes_committed_total",
            "counter",
            "Votes counted in the ballot box (learners; one per voter).",
            |_, s| s.tally.as_ref().map(|t| t.iter().map(|(_, v)| *v).sum::<u64>() as f64),
        ),
        ("ballot_slots_applied", "gauge", "Last log slot applied (learners).", |_, s| s.applied.map(|v| v as f64)),
        ("ballot_slots_chosen", "gauge", "Highest slot known chosen with every slot below it.", |_, s| {
            s.chosen.map(|v| v as f64)
        }),
        ("ballot_elections_total", "counter", "Elections this proposer started since it started.", |_, s| {
            s.elections.map(|v| v as f64)
        }),
        (
            "ballot_ballot_round",
            "gauge",
            "Round of the current ballot (proposers) or of the promised ballot (acceptors).",
            |_, s| s.ballot.map(|b| b.round as f64),
        ),
        ("ballot_is_leader", "gauge", "1 if this proposer leads.", |n, s| {
            (n.id.role == ballot_core::Role::Proposer).then_some((s.leader == Some(n.id)) as u8 as f64)
        }),
        ("ballot_accepted_slots", "gauge", "Slots holding an accepted value (acceptors).", |_, s| {
            s.accepted_slots.map(|v| v as f64)
        }),
    ];
    for (family, kind, help, pick) in from_status {
        p.family(family, kind, help);
        for ((name, n), st) in i.names.iter().zip(&i.state.nodes).zip(&i.statuses) {
            if let Some(v) = st.as_ref().and_then(|st| pick(n, st)) {
                p.sample(family, &[("node", name)], v);
            }
        }
    }
}

pub(super) async fn metrics(State(s): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render_metrics(&s).await).into_response()
}
