//! `chaos explore`: random fault schedules, one per seed, each run as the Rhai scenario it
//! renders to ([`schedule`]), so a failure is kept as the script that failed: `chaos run
//! FILE --seed N` fails the same way.

pub mod schedule;
pub mod shrink;

use crate::cluster::TransportKind;
use crate::runner::{run_scenario, RunConfig, Verdict};
use indicatif::{ProgressBar, ProgressStyle};
use schedule::{render, FaultKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `chaos explore` was asked for.
#[derive(Clone, Debug)]
pub struct ExploreConfig {
    /// How many seeds, or
    pub seeds: Option<u64>,
    /// for how long (seeds then run until it is over).
    pub time: Option<Duration>,
    /// The first seed; the others follow it.
    pub start: u64,
    /// The faults a schedule may draw from.
    pub faults: Vec<FaultKind>,
    /// Where the nodes run.
    pub transport: TransportKind,
    /// Where each failing seed's scenario is written.
    pub out: PathBuf,
    /// Wipes restart nodes as new, without the rejoin guard (to show the checker finds
    /// what the guard prevents).
    pub unguarded: bool,
}

/// One failing seed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The verdict's line: the assertion or invariant that failed.
    pub why: String,
    /// The scenario that reproduces it.
    pub file: PathBuf,
}

/// What a whole exploration gave.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// The failing ones.
    pub failures: Vec<Failure>,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Time every run took in its own clock, added up: virtual on mem, wall on processes.
    pub simulated_secs: f64,
}

/// Explore: run seed after seed, with a live count on a terminal, and keep every failure
/// as a file in `out`. An error only when `out` cannot be written (nothing has run then).
pub fn explore(cfg: &ExploreConfig) -> Result<Summary, String> {
    let work = cfg.out.join(".running");
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot write --out {}: {e}", cfg.out.display()))?;
    let bar = match cfg.seeds {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new(cfg.time.map_or(0, |t| t.as_secs())),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    let mut summary = Summary::default();
    let mut seed = cfg.start;
    loop {
        let done = match (cfg.seeds, cfg.time) {
            (Some(n), _) => summary.seeds >= n,
            (None, Some(t)) => t0.elapsed() >= t,
            (None, None) => true,
        };
        if done {
            break;
        }
        let r = run_one(cfg, &work, seed)?;
        summary.seeds += 1;
        summary.simulated_secs += r.0;
        if let Some(f) = r.1 {
            bar.println(format!("FAIL  seed {}: {}\n      kept: {}", f.seed, f.why, f.file.display()));
            summary.failures.push(f);
        }
        let rate = summary.seeds as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("seeds, {} failed, {rate:.0} seeds/s", summary.failures.len()));
        match cfg.seeds {
            Some(_) => bar.set_position(summary.seeds),
            None => bar.set_position(t0.elapsed().as_secs()),
        }
        seed = seed.wrapping_add(1);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&work);
    summary.wall = t0.elapsed();
    Ok(summary)
}

/// One seed: its simulated seconds, and its failure if it failed.
fn run_one(cfg: &ExploreConfig, work: &Path, seed: u64) -> Result<(f64, Option<Failure>), String> {
    let schedule = render(seed, &cfg.faults, cfg.unguarded);
    let source = schedule.source();
    let path = work.join(format!("seed-{seed}.rhai"));
    std::fs::write(&path, &source).map_err(|e| format!("cannot write --out {}: {e}", cfg.out.display()))?;
    let r = run_scenario(&path, &RunConfig { seed, transport: cfg.transport, ..RunConfig::default() });
    let _ = std::fs::remove_file(&path);
    let why = match r.verdict {
        Verdict::Pass => return Ok((r.virtual_secs, None)),
        // The generator wrote a script the API refuses: a bug of ours, a failure all the same.
        Verdict::Fail(m) | Verdict::ScriptError(m) => m,
    };
    let why = why.lines().next().unwrap_or_default().replace(&path.display().to_string(), "scenario");
    let file = cfg.out.join(format!("seed-{seed}.rhai"));
    let write = |f: &Path, text: String| {
        std::fs::write(f, text).map_err(|e| format!("cannot write --out {}: {e}", cfg.out.display()))
    };
    let on =
        if cfg.transport == TransportKind::Mem { String::new() } else { format!(" --transport {}", cfg.transport) };
    // The whole schedule, as it failed.
    let full = cfg.out.join(format!("seed-{seed}.full.rhai"));
    write(&full, format!("// chaos explore found a failure on {} with seed {seed}: {why}\n{source}", cfg.transport))?;
    // And the smallest that fails the same way on mem, when it does fail there.
    let t0 = Instant::now();
    let class = shrink::fails(&schedule, seed, work);
    let (kept, what) = match class {
        Some(class) if class == shrink::failure_class(&why) => {
            let (small, s) = shrink::shrink(&schedule, seed, &class, work);
            let what = format!(
                "shrunk from {} steps to {}, {} nodes to {}, {} ms of sleep to {} ({} runs, {:.1}s)",
                s.steps.0,
                s.steps.1,
                s.nodes.0,
                s.nodes.1,
                s.sleep_ms.0,
                s.sleep_ms.1,
                s.runs,
                t0.elapsed().as_secs_f64()
            );
            (small, what)
        }
        _ => (schedule, "not shrunk: it does not fail the same way on mem".to_string()),
    };
    let text = format!(
        "// chaos explore: seed {seed} fails on {class_of} ({}).\n// {what}; the whole schedule: {}\n// reproduce: chaos run {} --seed {seed}{on}\n{}",
        cfg.transport,
        full.display(),
        file.display(),
        kept.source(),
        class_of = shrink::failure_class(&why),
    );
    write(&file, text)?;
    // Its page, from a run of what was kept, with the event log on.
    let cfg_page = RunConfig { seed, transport: cfg.transport, record_events: true, ..RunConfig::default() };
    let rerun = run_scenario(&file, &cfg_page);
    write(&file.with_extension("html"), crate::report::page(&rerun))?;
    Ok((r.virtual_secs, Some(Failure { seed, why, file })))
}

/// The summary table `chaos explore` prints at the end.
pub fn table(s: &Summary) -> String {
    let wall = s.wall.as_secs_f64();
    let mut out = format!(
        "{:>8} {:>8} {:>9} {:>9} {:>12} {:>10}\n",
        "seeds", "failed", "wall", "seeds/s", "simulated", "sim/real"
    );
    out += &format!(
        "{:>8} {:>8} {:>8.1}s {:>9.0} {:>11.0}s {:>9.0}x\n",
        s.seeds,
        s.failures.len(),
        wall,
        s.seeds as f64 / wall.max(1e-9),
        s.simulated_secs,
        s.simulated_secs / wall.max(1e-9)
    );
    for f in &s.failures {
        out += &format!("FAIL  seed {}: {} ({})\n", f.seed, f.why, f.file.display());
    }
    out
}

/// `60s`, `2m`, `500ms`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("--time: '{s}' is not a duration: write 60s, 2m or 500ms");
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}
