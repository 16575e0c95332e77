//! The scenario API (the only module that knows Rhai): Rhai functions over [`Cluster`]. Each call that waits (vote,
//! sleep, results...) drives the scenario's runtime until it is done; between calls, virtual time stands still.

use crate::cluster::{Cluster, ClusterSpec, TransportKind, UsageError, VoteOptions, VoteOutcome};
use ballot_core::{NodeId, Tally};
use ballot_telemetry::TARGET;
use ballot_transports::EventLog;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext, Position};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::runtime::Runtime;

mod faults;
use faults::register_fault_verbs;

/// Why a script stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// An assertion or invariant failed, or the cluster did not do what was asked in time.
    Failure,
    /// The script misused the API.
    Usage,
}

/// What every function of one scenario run shares.
pub struct Ctx {
    /// The scenario's tokio runtime (on mem, a current-thread one with a paused clock).
    pub rt: Runtime,
    /// The seed every random choice of the run comes from.
    pub seed: u64,
    /// Where the scenario's clusters run.
    pub transport: TransportKind,
    /// When the scenario started, on the runtime's clock.
    pub start: tokio::time::Instant,
    /// The scenario's event log.
    pub log: EventLog,
    /// Every cluster the script started, in order.
    pub clusters: RefCell<Vec<Rc<Cluster>>>,
    /// Set just before our functions throw: tells a failed assertion (exit 1) from a broken script (exit 2).
    pub stop: RefCell<Option<StopKind>>,
    /// Lines the script logged, echoed by the runner.
    pub printed: RefCell<Vec<String>>,
}

type Res<T> = Result<T, Box<EvalAltResult>>;

fn throw<T>(ctx: &Ctx, kind: StopKind, msg: impl Into<String>) -> Res<T> {
    *ctx.stop.borrow_mut() = Some(kind);
    Err(Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), Position::NONE)))
}

fn usage<T>(ctx: &Ctx, e: UsageError) -> Res<T> {
    throw(ctx, StopKind::Usage, e.0)
}

/// The Rhai value of a cluster handle.
#[derive(Clone)]
pub struct ClusterRef {
    cluster: Rc<Cluster>,
    ctx: Rc<Ctx>,
}

impl ClusterRef {
    fn node(&self, name: &str) -> Res<NodeId> {
        self.cluster.node(name).or_else(|e| usage(&self.ctx, e))
    }

    fn nodes_of(&self, list: &Array, what: &str) -> Res<Vec<NodeId>> {
        list.iter()
            .map(|d| match d.clone().into_immutable_string() {
                Ok(s) => self.node(&s),
                Err(t) => usage(&self.ctx, UsageError(format!("{what} takes an array of node names, found a {t}"))),
            })
            .collect()
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.ctx.rt.block_on(f)
    }
}

fn ms(ctx: &Ctx, v: i64, what: &str) -> Res<Duration> {
    if v < 0 {
        return usage(ctx, UsageError(format!("{what} must be a duration in ms, 0 or more, not {v}")));
    }
    Ok(Duration::from_millis(v as u64))
}

fn tally_map(t: Tally) -> Map {
    t.into_iter().map(|(c, n)| (c.into(), Dynamic::from(n as i64))).collect()
}

fn outcome_map(o: VoteOutcome) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), o.ok.into());
    m.insert("error".into(), o.error.into());
    m.insert("slot".into(), (o.slot as i64).into());
    m.insert("latency_ms".into(), o.latency_ms.into());
    m
}

fn vote_options(c: &ClusterRef, opts: &Map) -> Res<VoteOptions> {
    let mut v = VoteOptions::default();
    for (k, val) in opts {
        let bad = |want: &str| {
            usage(&c.ctx, UsageError(format!("vote option '{k}' takes {want}, found a {}", val.type_name())))
        };
        match k.as_str() {
            "timeout_ms" => match val.as_int() {
                Ok(n) => v.timeout = Some(ms(&c.ctx, n, "timeout_ms")?),
                Err(_) => return bad("an integer"),
            },
            "via" => match val.clone().into_immutable_string() {
                Ok(s) => v.via = Some(c.node(&s)?),
                Err(_) => return bad("a node name"),
            },
            "request_id" => match val.clone().into_immutable_string() {
                Ok(s) => v.request_id = Some(s.to_string()),
                Err(_) => return bad("a string"),
            },
            other => {
                return usage(
                    &c.ctx,
                    UsageError(format!("unknown vote option '{other}': use timeout_ms, via, request_id")),
                )
            }
        }
    }
    Ok(v)
}

fn cluster_spec(ctx: &Ctx, m: &Map) -> Res<ClusterSpec> {
    let mut spec = ClusterSpec::default();
    for (k, val) in m {
        let count = |val: &Dynamic| -> Res<u16> {
            match val.as_int() {
                Ok(n) if (1..=99).contains(&n) => Ok(n as u16),
                _ => usage(ctx, UsageError(format!("cluster option '{k}' takes a count from 1 to 99, found {val}"))),
            }
        };
        let millis = |val: &Dynamic| -> Res<u64> {
            match val.as_int() {
                Ok(n) if n > 0 => Ok(n as u64),
                _ => usage(ctx, UsageError(format!("cluster option '{k}' takes a positive number of ms, found {val}"))),
            }
        };
        match k.as_str() {
            "proposers" => spec.proposers = count(val)?,
            "acceptors" => spec.acceptors = count(val)?,
            "learners" => spec.learners = count(val)?,
            "candidates" => {
                let Some(arr) = val.clone().try_cast::<Array>() else {
                    return usage(ctx, UsageError("cluster option 'candidates' takes an array of names".into()));
                };
                let mut names = Vec::new();
                for d in arr {
                    match d.into_immutable_string() {
                        Ok(s) if !s.is_empty() => names.push(s.to_string()),
                        _ => return usage(ctx, UsageError("candidate names must be non-empty strings".into())),
                    }
                }
                spec.candidates = names;
            }
            "discovery" => match val.as_bool() {
                Ok(b) => spec.discovery = b,
                Err(_) => return usage(ctx, UsageError("cluster option 'discovery' takes true or false".into())),
            },
            "heartbeat_ms" => spec.timing.heartbeat_ms = millis(val)?,
            "election_min_ms" => spec.timing.election_min_ms = millis(val)?,
            "election_max_ms" => spec.timing.election_max_ms = millis(val)?,
            "queue_limit" => match val.as_int() {
                Ok(n) if (1..=1 << 20).contains(&n) => spec.timing.queue_limit = n as usize,
                _ => {
                    return usage(
                        ctx,
                        UsageError(format!("cluster option 'queue_limit' takes a count from 1 to 1048576, found {val}")),
                    )
                }
            },
            // The liveness rules, for scenarios that show what each one prevents (mem only).
            "check_quorum" | "leader_lease" | "reopen_stuck" | "crash_notice" => {
                let Ok(on) = val.as_bool() else {
                    return usage(ctx, UsageError(format!("cluster option '{k}' takes true or false")));
                };
                if !on && ctx.transport != TransportKind::Mem {
                    return usage(ctx, UsageError(format!("cluster option '{k}: false' works on --transport mem only")));
                }
                let rules = &mut spec.timing.rules;
                match k.as_str() {
                    "check_quorum" => rules.check_quorum = on,
                    "leader_lease" => rules.leader_lease = on,
                    "crash_notice" => rules.crash_notice = on,
                    _ => rules.reopen_stuck = on,
                }
            }
            other => {
                return usage(
                    ctx,
                    UsageError(format!(
                        "unknown cluster option '{other}': use proposers, acceptors, learners, candidates, discovery, heartbeat_ms, election_min_ms, election_max_ms, queue_limit, check_quorum, leader_lease, reopen_stuck, crash_notice"
                    )),
                )
            }
        }
    }
    if spec.timing.election_min_ms > spec.timing.election_max_ms {
        return usage(ctx, UsageError("election_min_ms must not exceed election_max_ms".into()));
    }
    Ok(spec)
}

fn new_cluster(ctx: &Rc<Ctx>, m: &Map) -> Res<ClusterRef> {
    let spec = cluster_spec(ctx, m)?;
    let _step = step(ctx, "cluster", || format!("{spec:?}"));
    let _guard = ctx.rt.enter();
    let start = Cluster::start(spec, ctx.seed, ctx.log.clone(), ctx.transport);
    let cluster = ctx.rt.block_on(start).or_else(|e| usage(ctx, e))?;
    let cluster = Rc::new(cluster);
    ctx.clusters.borrow_mut().push(cluster.clone());
    Ok(ClusterRef { cluster, ctx: ctx.clone() })
}

/// Milliseconds since the scenario started: virtual on mem, wall-clock on processes.
fn scenario_ms(ctx: &Ctx) -> u64 {
    let _g = ctx.rt.enter();
    (tokio::time::Instant::now() - ctx.start).as_millis() as u64
}

/// A step of the scenario as a child span of the scenario's (with tracing on; a disabled
/// span otherwise, and `args` is never called). Votes cast inside it are its children.
fn step(ctx: &Ctx, name: &'static str, args: impl FnOnce() -> String) -> tracing::span::EnteredSpan {
    let span = tracing::info_span!(target: TARGET, "step", otel.name = tracing::field::Empty, step = name, args = tracing::field::Empty, scenario.time_ms = tracing::field::Empty);
    if !span.is_disabled() {
        let args = args();
        span.record("otel.name", format!("{name} {args}").trim_end());
        span.record("args", args.as_str());
        span.record("scenario.time_ms", scenario_ms(ctx));
    }
    span.entered()
}

/// An assertion, as an event on the current step or scenario span.
fn asserted(ctx: &Ctx, ok: bool, what: impl FnOnce() -> String) {
    if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        let what = what();
        let at = scenario_ms(ctx);
        if ok {
            tracing::info!(target: TARGET, what, scenario.time_ms = at, "assert passed");
        } else {
            tracing::warn!(target: TARGET, what, scenario.time_ms = at, "assert failed");
        }
    }
}

fn dyn_eq(a: &Dynamic, b: &Dynamic) -> bool {
    a.type_name() == b.type_name() && format!("{a:?}") == format!("{b:?}")
}

/// An engine with the whole scenario API registered.
pub fn engine(ctx: &Rc<Ctx>) -> Engine {
    // Its limits (operations, sizes, no eval, imports) are `sandbox::confine`'s.
    let mut engine = Engine::new();
    engine.register_type_with_name::<ClusterRef>("Cluster");
    register_scenario(&mut engine, ctx);
    register_assertions(&mut engine, ctx);
    register_reads(&mut engine);
    register_votes(&mut engine);
    register_node_verbs(&mut engine);
    register_fault_verbs(&mut engine);
    engine
}

/// `cluster`, the clock (`sleep`, `now_ms`, `virtual_time`, `eventually`), `seed` and `log`.
fn register_scenario(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    engine.register_fn("cluster", move || new_cluster(&c, &Map::new()));
    let c = ctx.clone();
    engine.register_fn("cluster", move |m: Map| new_cluster(&c, &m));

    let c = ctx.clone();
    engine.register_fn("sleep", move |n: i64| -> Res<()> {
        let d = ms(&c, n, "sleep")?;
        let _step = step(&c, "sleep", || format!("{n}ms"));
        c.log.record(|| format!("sleep {n}ms"));
        c.rt.block_on(tokio::time::sleep(d));
        Ok(())
    });
    let c = ctx.clone();
    engine.register_fn("seed", move || c.seed as i64);
    // Virtual on mem; Rhai's own `timestamp()` would read the wall clock.
    let c = ctx.clone();
    engine.register_fn("now_ms", move || -> f64 {
        let _g = c.rt.enter();
        (tokio::time::Instant::now() - c.start).as_secs_f64() * 1000.0
    });
    // True on mem: timing assertions mean something only on virtual time (a loaded machine stretches real waits).
    let c = ctx.clone();
    engine.register_fn("virtual_time", move || c.transport == TransportKind::Mem);
    // eventually(ms, || cond): poll `cond` every 10 ms until it is true; fail the scenario
    // if it is still false after `ms`. What must happen "soon" is written with it, so a
    // slow machine delays a scenario instead of failing it.
    let c = ctx.clone();
    engine.register_fn("eventually", move |nc: NativeCallContext, n: i64, f: FnPtr| -> Res<()> {
        let within = ms(&c, n, "eventually")?;
        let _step = step(&c, "eventually", || format!("{n}ms"));
        let deadline = {
            let _g = c.rt.enter();
            tokio::time::Instant::now() + within
        };
        loop {
            let ok = f.call_within_context::<bool>(&nc, ())?;
            if ok {
                return Ok(());
            }
            let now = {
                let _g = c.rt.enter();
                tokio::time::Instant::now()
            };
            if now >= deadline {
                return throw(&c, StopKind::Failure, format!("eventually: still false after {n} ms"));
            }
            c.rt.block_on(tokio::time::sleep(std::time::Duration::from_millis(10)));
        }
    });
    let c = ctx.clone();
    engine.register_fn("log", move |msg: Dynamic| {
        let text = msg.to_string();
        c.log.record(|| format!("log {text}"));
        c.printed.borrow_mut().push(text);
    });
}

/// `assert`, `assert_eq` and `check` (every invariant): a failure stops the scenario.
fn register_assertions(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    engine.register_fn("assert", move |cond: bool, msg: Dynamic| -> Res<()> {
        asserted(&c, cond, || msg.to_string());
        if cond {
            Ok(())
        } else {
            throw(&c, StopKind::Failure, format!("assertion failed: {msg}"))
        }
    });
    let c = ctx.clone();
    engine.register_fn("assert", move |cond: bool| -> Res<()> {
        asserted(&c, cond, String::new);
        if cond {
            Ok(())
        } else {
            throw(&c, StopKind::Failure, "assertion failed")
        }
    });
    let c = ctx.clone();
    engine.register_fn("assert_eq", move |a: Dynamic, b: Dynamic, msg: Dynamic| -> Res<()> {
        asserted(&c, dyn_eq(&a, &b), || format!("{msg}: left {a:?}, right {b:?}"));
        if dyn_eq(&a, &b) {
            Ok(())
        } else {
            throw(&c, StopKind::Failure, format!("assertion failed: {msg}: left {a:?}, right {b:?}"))
        }
    });
    let c = ctx.clone();
    engine.register_fn("assert_eq", move |a: Dynamic, b: Dynamic| -> Res<()> {
        asserted(&c, dyn_eq(&a, &b), || format!("left {a:?}, right {b:?}"));
        if dyn_eq(&a, &b) {
            Ok(())
        } else {
            throw(&c, StopKind::Failure, format!("assertion failed: left {a:?}, right {b:?}"))
        }
    });

    engine.register_fn("check", |c: &mut ClusterRef| -> Res<()> {
        let _step = step(&c.ctx, "check", String::new);
        let v = c.block_on(c.cluster.check());
        if v.is_empty() {
            Ok(())
        } else {
            throw(&c.ctx, StopKind::Failure, format!("invariant violated: {}", v.join("; ")))
        }
    });
}

/// What a scenario reads of a cluster: nodes, leader, results, status, network counters.
fn register_reads(engine: &mut Engine) {
    engine.register_fn("nodes", |c: &mut ClusterRef| -> Array {
        c.cluster.nodes().into_iter().map(|n| Dynamic::from(n.to_string())).collect()
    });
    engine.register_fn("leader", |c: &mut ClusterRef| -> Dynamic {
        match c.block_on(c.cluster.leader()) {
            Some(l) => l.to_string().into(),
            None => Dynamic::UNIT,
        }
    });
    engine.register_fn("wait_for_leader", |c: &mut ClusterRef, n: i64| -> Res<ImmutableString> {
        let _step = step(&c.ctx, "wait_for_leader", || format!("{n}ms"));
        let d = ms(&c.ctx, n, "wait_for_leader")?;
        match c.block_on(c.cluster.wait_for_leader(d)) {
            Some(l) => Ok(l.to_string().into()),
            None => throw(&c.ctx, StopKind::Failure, format!("no leader within {n} ms")),
        }
    });
    fn results(c: &mut ClusterRef, timeout_ms: i64) -> Res<Map> {
        let _step = step(&c.ctx, "results", String::new);
        let d = ms(&c.ctx, timeout_ms, "results timeout")?;
        match c.block_on(c.cluster.results(d)) {
            Ok(t) => Ok(tally_map(t)),
            Err(e) => throw(&c.ctx, StopKind::Failure, format!("results: the read through the log failed ({e})")),
        }
    }
    engine.register_fn("results", |c: &mut ClusterRef| results(c, 2000));
    engine.register_fn("results", results);
    engine.register_fn("results_at", |c: &mut ClusterRef, node: &str| -> Res<Map> {
        let _step = step(&c.ctx, "results_at", || node.to_string());
        let id = c.node(node)?;
        if id.role != ballot_core::Role::Learner {
            return usage(&c.ctx, UsageError(format!("results_at takes a learner, not '{node}'")));
        }
        match c.block_on(c.cluster.results_at(id)) {
            Some(t) => Ok(tally_map(t)),
            None => throw(&c.ctx, StopKind::Failure, format!("results_at: {node} is down or paused")),
        }
    });
    engine.register_fn("status", |c: &mut ClusterRef, node: &str| -> Res<Dynamic> {
        let id = c.node(node)?;
        let Some(s) = c.block_on(c.cluster.status(id)) else { return Ok(Dynamic::UNIT) };
        let mut m = Map::new();
        m.insert("node".into(), node.into());
        m.insert("role".into(), id.role.as_str().into());
        if let Some(b) = s.ballot {
            m.insert("ballot".into(), b.to_string().into());
        }
        m.insert("leader".into(), s.leader.map(|l| Dynamic::from(l.to_string())).unwrap_or(Dynamic::UNIT));
        if let Some(x) = s.chosen {
            m.insert("chosen".into(), (x as i64).into());
        }
        if let Some(x) = s.applied {
            m.insert("applied".into(), (x as i64).into());
        }
        if let Some(x) = s.elections {
            m.insert("elections".into(), (x as i64).into());
        }
        if let Some(x) = s.rejoining {
            m.insert("rejoining".into(), x.into());
        }
        if let Some(t) = s.tally {
            m.insert("tally".into(), tally_map(t).into());
        }
        Ok(m.into())
    });
    engine.register_fn("stats", |c: &mut ClusterRef| -> Map {
        c.cluster.net_stats().into_iter().map(|(k, v)| (k.into(), Dynamic::from(v as i64))).collect()
    });
}

/// `vote` and `vote_all`.
fn register_votes(engine: &mut Engine) {
    engine.register_fn("vote", |c: &mut ClusterRef, voter: &str, candidate: &str| -> Map {
        let _step = step(&c.ctx, "vote", || format!("{voter} -> {candidate}"));
        outcome_map(c.block_on(c.cluster.vote(voter, candidate, &VoteOptions::default())))
    });
    engine.register_fn("vote", |c: &mut ClusterRef, voter: &str, candidate: &str, opts: Map| -> Res<Map> {
        let _step = step(&c.ctx, "vote", || format!("{voter} -> {candidate}"));
        let opts = vote_options(c, &opts)?;
        Ok(outcome_map(c.block_on(c.cluster.vote(voter, candidate, &opts))))
    });
    fn vote_all(c: &mut ClusterRef, votes: Array, opts: Map) -> Res<Array> {
        let _step = step(&c.ctx, "vote_all", || format!("{} votes", votes.len()));
        if opts.contains_key("request_id") {
            return usage(
                &c.ctx,
                UsageError("vote_all gives each vote its own request id; use vote() for a chosen one".into()),
            );
        }
        let opts = vote_options(c, &opts)?;
        let mut list = Vec::with_capacity(votes.len());
        for v in votes {
            let pair = if let Some(m) = v.clone().try_cast::<Map>() {
                let get = |k: &str| m.get(k).and_then(|d| d.clone().into_immutable_string().ok());
                get("voter").zip(get("candidate"))
            } else if let Some(a) = v.clone().try_cast::<Array>() {
                let s = |i: usize| a.get(i).and_then(|d| d.clone().into_immutable_string().ok());
                if a.len() == 2 {
                    s(0).zip(s(1))
                } else {
                    None
                }
            } else {
                None
            };
            match pair {
                Some((voter, candidate)) => list.push((voter.to_string(), candidate.to_string())),
                None => {
                    return usage(
                        &c.ctx,
                        UsageError(format!(
                            "vote_all takes [voter, candidate] pairs or #{{voter, candidate}} maps, found {v}"
                        )),
                    )
                }
            }
        }
        let outs = c.block_on(c.cluster.vote_all(&list, &opts));
        Ok(outs.into_iter().map(|o| Dynamic::from(outcome_map(o))).collect())
    }
    engine.register_fn("vote_all", |c: &mut ClusterRef, votes: Array| vote_all(c, votes, Map::new()));
    engine.register_fn("vote_all", vote_all);
}

/// Node lifecycle: `add_learner`, `alive`, `kill`, `restart`, `pause`, `resume`, and the
/// discovery service's (`kill("discovery")`, `discovery_leader`, ...).
fn register_node_verbs(engine: &mut Engine) {
    engine.register_fn("add_learner", |c: &mut ClusterRef| -> Res<ImmutableString> {
        let _step = step(&c.ctx, "add_learner", String::new);
        match c.block_on(c.cluster.add_learner()) {
            Ok(id) => Ok(id.to_string().into()),
            Err(e) => throw(&c.ctx, StopKind::Failure, format!("add_learner: {e}")),
        }
    });
    engine.register_fn("alive", |c: &mut ClusterRef, node: &str| -> Res<bool> {
        let id = c.node(node)?;
        Ok(c.cluster.is_alive(id))
    });
    engine.register_fn("kill", |c: &mut ClusterRef, node: &str| -> Res<()> {
        let _step = step(&c.ctx, "kill", || node.to_string());
        if node == "discovery" {
            return c.cluster.kill_discovery().or_else(|e| usage(&c.ctx, UsageError(e)));
        }
        let id = c.node(node)?;
        c.cluster.kill(id);
        Ok(())
    });
    engine.register_fn("discovery_leader", |c: &mut ClusterRef| -> Dynamic {
        match c.block_on(c.cluster.discovery_leader()) {
            Ok(Some(l)) => l.to_string().into(),
            _ => Dynamic::UNIT,
        }
    });
    engine.register_fn("discovery_members", |c: &mut ClusterRef| -> Dynamic {
        match c.block_on(c.cluster.discovery_members()) {
            Ok(m) => m.into_iter().map(|n| Dynamic::from(n.to_string())).collect::<Array>().into(),
            Err(_) => Dynamic::UNIT,
        }
    });
    engine.register_fn("restart", |c: &mut ClusterRef, node: &str| -> Res<()> {
        let _step = step(&c.ctx, "restart", || node.to_string());
        if node == "discovery" {
            return c
                .block_on(c.cluster.restart_discovery())
                .or_else(|e| throw(&c.ctx, StopKind::Failure, format!("restart discovery: {e}")));
        }
        let id = c.node(node)?;
        c.block_on(c.cluster.restart(id)).or_else(|e| throw(&c.ctx, StopKind::Failure, format!("restart {node}: {e}")))
    });
    engine.register_fn("pause", |c: &mut ClusterRef, node: &str| -> Res<()> {
        let _step = step(&c.ctx, "pause", || node.to_string());
        let id = c.node(node)?;
        c.block_on(c.cluster.pause(id));
        Ok(())
    });
    engine.register_fn("resume", |c: &mut ClusterRef, node: &str| -> Res<()> {
        let _step = step(&c.ctx, "resume", || node.to_string());
        let id = c.node(node)?;
        c.block_on(c.cluster.resume(id));
        Ok(())
    });
}
