//! Runs scenario files and reports a verdict for each.

use crate::cluster::TransportKind;
use crate::script::{self, Ctx, StopKind};
use ballot_telemetry::TARGET;
use ballot_transports::EventLog;
use rhai::EvalAltResult;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

/// How a scenario ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every assertion and invariant held (exit 0).
    Pass,
    /// An assertion or invariant failed (exit 1).
    Fail(String),
    /// The script is broken: parse error, unknown function or node, wrong arguments (exit 2).
    ScriptError(String),
}

/// What one scenario run gave.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// The scenario file.
    pub path: PathBuf,
    /// The seed it ran with (reproduce with `--seed`).
    pub seed: u64,
    /// How it ended.
    pub verdict: Verdict,
    /// Time on the runtime's clock (virtual on mem), seconds.
    pub virtual_secs: f64,
    /// Wall time, seconds.
    pub wall_secs: f64,
    /// The event log (empty unless asked for).
    pub events: Vec<String>,
    /// What the script logged.
    pub printed: Vec<String>,
    /// Node data and logs of a failed run on real processes (removed after a pass).
    pub run_dir: Option<PathBuf>,
}

/// How to run scenarios.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// Seed of every random choice of the run.
    pub seed: u64,
    /// Where the nodes run: in this process on virtual time, or as processes.
    pub transport: TransportKind,
    /// Keep the event log (deliveries, drops, faults, votes) in the result.
    pub record_events: bool,
    /// Break an invariant on purpose after the script ran (tests of the checker).
    #[doc(hidden)]
    pub sabotage: bool,
}

/// `.rhai` files named, and those inside folders named (sorted), in order.
pub fn collect_scenarios(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| format!("cannot read folder {}: {e}", p.display()))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "rhai"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!("no .rhai files in {}", p.display()));
            }
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or folder", p.display()));
        }
    }
    Ok(out)
}

/// 0 when every scenario passed, 2 if any script is broken, else 1.
pub fn exit_code(results: &[ScenarioResult]) -> i32 {
    if results.iter().any(|r| matches!(r.verdict, Verdict::ScriptError(_))) {
        2
    } else if results.iter().any(|r| matches!(r.verdict, Verdict::Fail(_))) {
        1
    } else {
        0
    }
}

/// Run one scenario file on the in-memory transport.
pub fn run_scenario(path: &Path, cfg: &RunConfig) -> ScenarioResult {
    let wall = Instant::now();
    let display = path.display().to_string();
    let mut result = ScenarioResult {
        path: path.to_path_buf(),
        seed: cfg.seed,
        verdict: Verdict::Pass,
        virtual_secs: 0.0,
        wall_secs: 0.0,
        events: Vec::new(),
        printed: Vec::new(),
        run_dir: None,
    };
    let source = match read_script(path) {
        Ok(s) => s,
        Err(e) => {
            result.verdict = Verdict::ScriptError(format!("{display}: {e}"));
            return result;
        }
    };
    // Virtual time on mem; the real clock with real processes.
    let virtual_time = cfg.transport == TransportKind::Mem;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().start_paused(virtual_time).build() {
        Ok(rt) => rt,
        Err(e) => {
            result.verdict = Verdict::Fail(format!("cannot start the runtime: {e}"));
            return result;
        }
    };
    // Every timestamp of the run, the log's included, comes from the runtime's paused
    // clock: hold its context for the whole run.
    let guard = rt.enter();
    let (log, t0) = (EventLog::new(cfg.record_events), tokio::time::Instant::now());
    log.record(|| format!("scenario {display} seed {}", cfg.seed));
    drop(guard);
    let ctx = Rc::new(Ctx {
        rt,
        seed: cfg.seed,
        transport: cfg.transport,
        start: t0,
        log: log.clone(),
        clusters: RefCell::new(Vec::new()),
        stop: RefCell::new(None),
        printed: RefCell::new(Vec::new()),
    });
    let mut engine = script::engine(&ctx);
    crate::sandbox::confine(&mut engine, path, &ctx);
    let _guard = ctx.rt.enter();
    // With tracing on, the scenario is the root span of its trace and every step a child
    // (script.rs); disabled (and free) otherwise.
    let transport = cfg.transport.to_string();
    let file = display.as_str();
    let root = tracing::info_span!(target: TARGET, "scenario", otel.name = %format!("scenario {file}"), scenario = file, seed = cfg.seed, transport = %transport, verdict = tracing::field::Empty);
    let entered = root.enter();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(&engine, &source, &display, &ctx, cfg)));
    result.verdict = run.unwrap_or_else(|panic| panic_verdict(&*panic, &display));
    result.virtual_secs = t0.elapsed().as_secs_f64();
    root.record("verdict", verdict_word(&result.verdict));
    drop(entered);
    drop(root);
    shut_down(&ctx, &mut result);
    log.record(|| format!("verdict {}", verdict_word(&result.verdict)));
    result.events = log.lines();
    result.printed = ctx.printed.borrow().clone();
    ctx.clusters.borrow_mut().clear();
    result.wall_secs = wall.elapsed().as_secs_f64();
    result
}

/// The script's text, refused past [`crate::sandbox::MAX_SCRIPT_BYTES`] before it is read.
fn read_script(path: &Path) -> Result<String, String> {
    let max = crate::sandbox::MAX_SCRIPT_BYTES;
    let len = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?.len();
    if len > max {
        return Err(format!("the script is {len} bytes, over the {max} byte limit"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Compile and run the script, then check every cluster's invariants at the end.
fn execute(engine: &rhai::Engine, source: &str, display: &str, ctx: &Ctx, cfg: &RunConfig) -> Verdict {
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(e) => {
            let line = e.position().line().map(|l| format!(":{l}")).unwrap_or_default();
            return Verdict::ScriptError(format!("{display}{line}: syntax error: {}", e.err_type()));
        }
    };
    if let Err(e) = engine.run_ast(&ast) {
        return classify(display, &e, *ctx.stop.borrow());
    }
    let clusters = ctx.clusters.borrow().clone();
    if cfg.sabotage {
        if let Some(c) = clusters.first() {
            c.inject_violation_for_test(ballot_core::NodeId::learner(1), 1);
        }
    }
    let mut violations = Vec::new();
    for c in &clusters {
        violations.extend(ctx.rt.block_on(c.finish()));
    }
    if violations.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("{display}: invariant violated at the end: {}", violations.join("; ")))
    }
}

/// A panic inside the run is a bug of ours, not a verdict on the cluster: say so.
fn panic_verdict(panic: &(dyn std::any::Any + Send), display: &str) -> Verdict {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    Verdict::Fail(format!("{display}: internal error (panic): {msg}; please report it with the seed"))
}

/// Stop every cluster; node processes' folder is removed on a pass and kept (and named)
/// on a failure.
fn shut_down(ctx: &Ctx, result: &mut ScenarioResult) {
    for c in ctx.clusters.borrow().iter() {
        c.shutdown();
        if let crate::cluster::Backend::Proc(b) = c.backend() {
            if result.verdict == Verdict::Pass {
                b.remove_run_dir();
            } else {
                result.run_dir = Some(b.run_dir().to_path_buf());
            }
        }
    }
}

/// `PASS`, `FAIL` or `ERROR`, as the summary prints it.
pub fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail(_) => "FAIL",
        Verdict::ScriptError(_) => "ERROR",
    }
}

/// Turn a Rhai error into a verdict with `file:line`.
fn classify(file: &str, err: &EvalAltResult, stop: Option<StopKind>) -> Verdict {
    // Errors raised inside script functions are wrapped; the innermost names the cause
    // and the line.
    let mut inner = err;
    let mut pos = err.position();
    // So are errors in an imported module (their text would span two lines).
    while let EvalAltResult::ErrorInFunctionCall(_, _, e, p) | EvalAltResult::ErrorInModule(_, e, p) = inner {
        if !p.is_none() {
            pos = *p;
        }
        inner = e;
    }
    if !inner.position().is_none() {
        pos = inner.position();
    }
    let line = pos.line().map(|l| format!(":{l}")).unwrap_or_default();
    let text = match inner {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => other.to_string().split(" (line ").next().unwrap_or_default().to_string(),
    };
    let msg = format!("{file}{line}: {text}");
    match inner {
        EvalAltResult::ErrorRuntime(..) if stop == Some(StopKind::Usage) => Verdict::ScriptError(msg),
        // A failed assertion, a failed wait, or the script's own `throw`.
        EvalAltResult::ErrorRuntime(..) => Verdict::Fail(msg),
        EvalAltResult::ErrorTooManyOperations(_) => {
            Verdict::ScriptError(format!("{file}{line}: the script ran too long (endless loop?)"))
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => Verdict::ScriptError(format!(
            "{file}{line}: {} over the script limits ({})",
            crate::sandbox::what_grew(what),
            crate::sandbox::limits_line()
        )),
        EvalAltResult::ErrorStackOverflow(_) => Verdict::ScriptError(format!(
            "{file}{line}: calls nested deeper than {} levels",
            crate::sandbox::MAX_CALL_LEVELS
        )),
        EvalAltResult::ErrorTooManyModules(_) => {
            Verdict::ScriptError(format!("{file}{line}: more than {} modules imported", crate::sandbox::MAX_MODULES))
        }
        _ => Verdict::ScriptError(msg),
    }
}

/// Write results as JUnit XML.
pub fn junit(results: &[ScenarioResult]) -> String {
    fn esc(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
    }
    let failures = results.iter().filter(|r| matches!(r.verdict, Verdict::Fail(_))).count();
    let errors = results.iter().filter(|r| matches!(r.verdict, Verdict::ScriptError(_))).count();
    let total: f64 = results.iter().map(|r| r.wall_secs).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x += &format!(
        "<testsuite name=\"chaos\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{total:.3}\">\n",
        results.len()
    );
    for r in results {
        let name = esc(&r.path.display().to_string());
        x += &format!("  <testcase classname=\"chaos\" name=\"{name}\" time=\"{:.3}\">\n", r.wall_secs);
        x += &format!(
            "    <properties><property name=\"seed\" value=\"{}\"/><property name=\"virtual_secs\" value=\"{:.3}\"/></properties>\n",
            r.seed, r.virtual_secs
        );
        match &r.verdict {
            Verdict::Pass => {}
            Verdict::Fail(m) => x += &format!("    <failure message=\"{}\">seed {}</failure>\n", esc(m), r.seed),
            Verdict::ScriptError(m) => x += &format!("    <error message=\"{}\">seed {}</error>\n", esc(m), r.seed),
        }
        x += "  </testcase>\n";
    }
    x += "</testsuite>\n";
    x
}
