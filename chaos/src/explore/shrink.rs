//! Shrinking a failing schedule to a small one that fails the same way: drop steps
//! (delta debugging), halve the waits, take nodes away, keeping each change only while
//! the scenario still fails on `mem`, with the same seed, on the same invariant. Every run
//! is deterministic, so the result is too.

use super::schedule::Schedule;
use crate::runner::{run_scenario, RunConfig, Verdict};
use std::path::Path;

/// What failed, in a word: the invariant (`agreement`, `progress`, `no double count`...),
/// or `assertion failed`, or the verdict's first words. Two runs fail "the same way" when
/// these match.
pub fn failure_class(why: &str) -> String {
    if let Some(rest) = why.split("invariant violated: ").nth(1) {
        return rest.split(':').next().unwrap_or_default().trim().to_string();
    }
    if why.contains("assertion failed") {
        return "assertion failed".into();
    }
    why.split(':').nth(2).unwrap_or(why).trim().chars().take(40).collect()
}

/// The class of `schedule`'s failure on mem with `seed`, or None when it passes (or the
/// script does not run: a shrink step that breaks the script is no counterexample).
pub fn fails(schedule: &Schedule, seed: u64, work: &Path) -> Option<String> {
    let path = work.join(format!("shrink-{seed}.rhai"));
    std::fs::write(&path, schedule.source()).ok()?;
    let r = run_scenario(&path, &RunConfig { seed, ..RunConfig::default() });
    let _ = std::fs::remove_file(&path);
    match r.verdict {
        Verdict::Fail(m) => Some(failure_class(&m)),
        Verdict::Pass | Verdict::ScriptError(_) => None,
    }
}

/// What shrinking removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shrunk {
    /// Steps before and after.
    pub steps: (usize, usize),
    /// Nodes before and after.
    pub nodes: (usize, usize),
    /// Milliseconds of `sleep` before and after.
    pub sleep_ms: (u64, u64),
    /// Candidate runs it took.
    pub runs: usize,
}

/// One proposer (`which` 0), learner (1) or two acceptors (2) fewer, if the cluster keeps
/// one proposer, one learner and three acceptors.
fn smaller((p, a, l): (usize, usize, usize), which: usize) -> Option<(usize, usize, usize)> {
    match which {
        0 if p > 1 => Some((p - 1, a, l)),
        1 if l > 1 => Some((p, a, l - 1)),
        2 if a > 3 => Some((p, a - 2, l)),
        _ => None,
    }
}

fn sleep_ms(s: &Schedule) -> u64 {
    s.steps.iter().filter_map(|l| l.strip_prefix("sleep(")?.strip_suffix(");")?.parse::<u64>().ok()).sum()
}

/// Shrink `schedule`, which fails on mem with `seed` as `class`.
pub fn shrink(schedule: &Schedule, seed: u64, class: &str, work: &Path) -> (Schedule, Shrunk) {
    let mut best = schedule.clone();
    let mut runs = 0;
    let mut still_fails = |s: &Schedule| {
        runs += 1;
        fails(s, seed, work).as_deref() == Some(class)
    };
    // Delta debugging over the steps: drop chunks, from halves down to single steps.
    let mut chunk = best.steps.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < best.steps.len() {
            let mut cand = best.clone();
            cand.steps.drain(i..(i + chunk).min(cand.steps.len()));
            if still_fails(&cand) {
                best = cand;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    // Shorter waits: halve every sleep at once, as long as it still fails.
    for _ in 0..8 {
        let mut cand = best.clone();
        for l in &mut cand.steps {
            if let Some(ms) =
                l.strip_prefix("sleep(").and_then(|r| r.strip_suffix(");")).and_then(|n| n.parse::<u64>().ok())
            {
                *l = format!("sleep({});", ms / 2);
            }
        }
        if cand == best || !still_fails(&cand) {
            break;
        }
        best = cand;
    }
    // Fewer nodes: a smaller cluster, where no step names a node it no longer has.
    for which in 0..3 {
        while let Some(sizes) = smaller(best.sizes, which) {
            let cand = Schedule { sizes, ..best.clone() };
            let gone: Vec<String> = best.nodes().into_iter().filter(|n| !cand.nodes().contains(n)).collect();
            let named = cand.steps.iter().any(|st| gone.iter().any(|g| st.contains(&format!("{g:?}"))));
            if named || !still_fails(&cand) {
                break;
            }
            best = cand;
        }
    }
    let report = Shrunk {
        steps: (schedule.steps.len(), best.steps.len()),
        nodes: (schedule.nodes().len(), best.nodes().len()),
        sleep_ms: (sleep_ms(schedule), sleep_ms(&best)),
        runs,
    };
    (best, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_class_is_the_invariant_or_the_assertion() {
        let inv = "a.rhai:9: invariant violated: agreement: slot 3: learner-2 applied ...; progress: x";
        assert_eq!(failure_class(inv), "agreement");
        assert_eq!(failure_class("a.rhai:4: assertion failed: no quorum"), "assertion failed");
    }
}
