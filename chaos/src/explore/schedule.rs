//! One seed's random fault schedule, as a readable Rhai scenario: the file that reproduces
//! a failure is the very script that failed.
//!
//! The mix is drawn per seed ("swarm testing", as FoundationDB's simulator and
//! TigerBeetle's VOPR do): each kind of fault the user allows is on or off for a seed,
//! so some seeds hammer one mechanism and others mix them. Faults stay within what the
//! cluster promises to survive: lost state (a wipe, a corrupt record) strikes at most one
//! node per seed, a learner only when there is another, and the end of every schedule
//! heals, starts every node again (a corrupted one wiped, rejoining) and checks safety
//! and progress.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

/// A kind of fault `chaos explore --faults` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Kill a node (it is started again later in the schedule or at its end).
    Kill,
    /// Pause a node, resume it later.
    Pause,
    /// Split the nodes in two.
    Partition,
    /// Cut the links one way between two groups.
    Oneway,
    /// Cut one node from everyone.
    Isolate,
    /// Lose messages at random.
    Drop,
    /// Deliver messages twice at random.
    Duplicate,
    /// Delay messages at random.
    Delay,
    /// Lose messages of one type (to one node).
    DropMessages,
    /// Delay messages of one type.
    DelayMessages,
    /// Run a node's clock fast or slow.
    ClockRate,
    /// A crash in the middle of a write.
    TornTail,
    /// A record's bytes flipped: the node is refused, then wiped and rejoins.
    Corrupt,
    /// A node's state lost: it rejoins.
    Wipe,
}

impl FaultKind {
    /// Every kind, with the name the flag takes.
    pub const ALL: [(FaultKind, &'static str); 14] = [
        (FaultKind::Kill, "kill"),
        (FaultKind::Pause, "pause"),
        (FaultKind::Partition, "partition"),
        (FaultKind::Oneway, "oneway"),
        (FaultKind::Isolate, "isolate"),
        (FaultKind::Drop, "drop"),
        (FaultKind::Duplicate, "duplicate"),
        (FaultKind::Delay, "delay"),
        (FaultKind::DropMessages, "drop_messages"),
        (FaultKind::DelayMessages, "delay_messages"),
        (FaultKind::ClockRate, "clock_rate"),
        (FaultKind::TornTail, "torn_tail"),
        (FaultKind::Corrupt, "corrupt"),
        (FaultKind::Wipe, "wipe"),
    ];

    /// The kinds a comma-separated list names; the error says which name is unknown and
    /// lists the known ones.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Self::ALL.iter().find(|(_, n)| *n == name) {
                Some((k, _)) if !out.contains(k) => out.push(*k),
                Some(_) => {}
                None => {
                    let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                    return Err(format!("--faults: unknown fault '{name}': use {}", names.join(", ")));
                }
            }
        }
        if out.is_empty() {
            return Err("--faults: name at least one fault".into());
        }
        Ok(out)
    }

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("?", |(_, n)| n)
    }
}

/// Message types worth losing or delaying one at a time.
const TYPES: [&str; 7] = ["Accept", "Accepted", "Prepare", "Promise", "Learn", "Heartbeat", "Chosen"];
const CANDIDATES: [&str; 4] = ["ada", "grace", "linus", "nobody"];

fn list(nodes: &[String]) -> String {
    let quoted: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Start `n` again; one whose record was corrupted is refused until the operator wipes
/// it, so it is wiped (and rejoins).
fn restart(s: &mut String, corrupted: &mut Vec<String>, n: &str) {
    if let Some(i) = corrupted.iter().position(|c| c == n) {
        corrupted.remove(i);
        let _ = writeln!(s, "c.restart({n:?}, #{{ disk: \"wipe\" }});");
    } else {
        let _ = writeln!(s, "c.restart({n:?});");
    }
}

/// A schedule: the cluster, then its steps (one line of Rhai each), then the repair and
/// the check, which [`Schedule::source`] derives from the steps that are left, so a
/// shrunk schedule still ends healed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// What the opening comment says (the seed and the faults drawn).
    pub title: String,
    /// Proposers, acceptors, learners.
    pub sizes: (usize, usize, usize),
    /// The steps, in order.
    pub steps: Vec<String>,
}

impl Schedule {
    /// The nodes of the cluster, by name.
    pub fn nodes(&self) -> Vec<String> {
        let (p, a, l) = self.sizes;
        let names = |role: &str, n: usize| -> Vec<String> { (1..=n).map(|i| format!("{role}-{i}")).collect() };
        [names("proposer", p), names("acceptor", a), names("learner", l)].concat()
    }

    /// The whole scenario.
    pub fn source(&self) -> String {
        let (p, a, l) = self.sizes;
        let mut s = format!("// {}\n", self.title);
        let _ = writeln!(s, "let c = cluster(#{{ proposers: {p}, acceptors: {a}, learners: {l} }});");
        let _ = writeln!(s, "c.wait_for_leader(5000);");
        // A node whose last storage fault was a corrupt record is wiped at the end.
        let mut corrupted: Vec<String> = Vec::new();
        for step in &self.steps {
            let _ = writeln!(s, "{step}");
            for n in self.nodes() {
                // Only a wipe mends a corrupt record (a plain or torn-tail restart is refused).
                if step.starts_with(&format!("c.restart({n:?}")) {
                    if step.contains("\"wipe\"") {
                        corrupted.retain(|c| *c != n);
                    } else if step.contains("\"corrupt\"") && !corrupted.contains(&n) {
                        corrupted.push(n);
                    }
                }
            }
        }
        let _ = writeln!(s, "// The faults end: every node back, then every invariant, progress included.");
        let _ = writeln!(s, "c.heal();");
        for n in &corrupted {
            let _ = writeln!(s, "c.restart({n:?}, #{{ disk: \"wipe\" }});");
        }
        let _ = writeln!(s, "for n in c.nodes() {{ c.resume(n); c.restart(n); }}");
        let _ = writeln!(s, "c.check();");
        s
    }
}

/// The scenario of seed `seed` with the kinds `allowed`. `unguarded` wipes restart as new,
/// without the rejoin (a test of the checker: `chaos explore --no-rejoin-guard`).
pub fn render(seed: u64, allowed: &[FaultKind], unguarded: bool) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kinds: Vec<FaultKind> = allowed.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
    if kinds.is_empty() {
        kinds.push(*allowed.choose(&mut rng).expect("at least one kind"));
    }
    let (p, a, l) = (rng.gen_range(1..=3), [3, 3, 5][rng.gen_range(0..3)], rng.gen_range(1..=3));
    let names = |role: &str, n: usize| -> Vec<String> { (1..=n).map(|i| format!("{role}-{i}")).collect() };
    let nodes: Vec<String> = [names("proposer", p), names("acceptor", a), names("learner", l)].concat();
    let kind_names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let mut s = String::new();
    let (mut voter, mut lost_state) = (0u32, false);
    let mut corrupted: Vec<String> = Vec::new();
    let gap_max = rng.gen_range(50..800);
    for _ in 0..rng.gen_range(4..12) {
        let n = nodes.choose(&mut rng).expect("nodes").clone();
        let kind = *kinds.choose(&mut rng).expect("kinds");
        let lost_ok = !lost_state && (!n.starts_with("learner") || l > 1);
        match kind {
            FaultKind::Kill => {
                let _ = writeln!(s, "c.kill({n:?});");
            }
            FaultKind::Pause => {
                let _ = writeln!(s, "c.pause({n:?});");
            }
            FaultKind::Partition | FaultKind::Oneway => {
                let (x, y): (Vec<String>, Vec<String>) = nodes.iter().cloned().partition(|_| rng.gen_bool(0.5));
                let verb = if kind == FaultKind::Partition { "partition" } else { "partition_oneway" };
                let _ = writeln!(s, "c.{verb}({}, {});", list(&x), list(&y));
            }
            FaultKind::Isolate => {
                let _ = writeln!(s, "c.isolate({n:?});");
            }
            FaultKind::Drop => {
                let _ = writeln!(s, "c.drop_rate({:.2});", rng.gen_range(0.01..0.4));
            }
            FaultKind::Duplicate => {
                let _ = writeln!(s, "c.duplicate_rate({:.2});", rng.gen_range(0.01..0.4));
            }
            FaultKind::Delay => {
                let _ = writeln!(s, "c.delay(0, {});", rng.gen_range(1..80));
            }
            FaultKind::DropMessages => {
                let t = TYPES.choose(&mut rng).expect("types");
                let _ = writeln!(s, "c.drop_messages(#{{ type: {t:?}, to: {n:?}, count: {} }});", rng.gen_range(1..20));
            }
            FaultKind::DelayMessages => {
                let t = TYPES.choose(&mut rng).expect("types");
                let _ = writeln!(s, "c.delay_messages(#{{ type: {t:?}, ms: {} }});", rng.gen_range(1..300));
            }
            FaultKind::ClockRate => {
                let f = [0.2, 0.5, 2.0, 5.0][rng.gen_range(0..4)];
                let _ = writeln!(s, "c.clock_rate({n:?}, {f:.1});");
            }
            FaultKind::TornTail => {
                let _ = writeln!(s, "c.restart({n:?}, #{{ disk: \"torn_tail\" }});");
            }
            FaultKind::Corrupt if lost_ok => {
                lost_state = true;
                corrupted.push(n.clone());
                let _ = writeln!(s, "c.restart({n:?}, #{{ disk: \"corrupt\" }});");
            }
            FaultKind::Wipe if lost_ok => {
                lost_state = true;
                let guard = if unguarded { ", rejoin: false" } else { "" };
                let _ = writeln!(s, "c.restart({n:?}, #{{ disk: \"wipe\"{guard} }});");
            }
            FaultKind::Corrupt | FaultKind::Wipe => restart(&mut s, &mut corrupted, &n),
        }
        for _ in 0..rng.gen_range(0..3) {
            voter += 1;
            let cand = CANDIDATES.choose(&mut rng).expect("candidates");
            let retry = if rng.gen_bool(0.3) { format!(", request_id: \"r{voter}\"") } else { String::new() };
            let _ =
                writeln!(s, "c.vote(\"v{voter}\", {cand:?}, #{{ timeout_ms: {}{retry} }});", rng.gen_range(200..1500));
        }
        if rng.gen_bool(0.5) {
            restart(&mut s, &mut corrupted, &n);
        }
        let _ = writeln!(s, "sleep({});", rng.gen_range(0..gap_max));
    }
    Schedule {
        title: format!("chaos explore, seed {seed}: faults {}", kind_names.join(", ")),
        sizes: (p, a, l),
        steps: s.lines().map(str::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_renders_the_same_script_and_names_only_allowed_faults() {
        let all: Vec<FaultKind> = FaultKind::ALL.iter().map(|(k, _)| *k).collect();
        assert_eq!(render(7, &all, false), render(7, &all, false));
        assert_ne!(render(7, &all, false), render(8, &all, false));
        let only = render(3, &[FaultKind::Kill], false).source();
        assert!(only.contains("faults kill\n") && !only.contains("partition"), "{only}");
    }

    #[test]
    fn only_a_wipe_mends_a_corrupt_record_in_the_derived_repair() {
        let s = |steps: &[&str]| Schedule {
            title: "t".into(),
            sizes: (1, 3, 1),
            steps: steps.iter().map(|l| l.to_string()).collect(),
        };
        let wipe = "c.restart(\"acceptor-1\", #{ disk: \"wipe\" });";
        let corrupt = "c.restart(\"acceptor-1\", #{ disk: \"corrupt\" });";
        let torn = "c.restart(\"acceptor-1\", #{ disk: \"torn_tail\" });";
        // The repair after the steps wipes a node whose record is still corrupt (a plain
        // restart would be refused), and only such a node.
        let repair = |src: String| src.lines().skip_while(|l| !l.starts_with("c.heal()")).any(|l| l == wipe);
        assert!(repair(s(&[corrupt, torn]).source()), "a torn-tail restart does not mend it");
        assert!(repair(s(&[corrupt]).source()));
        assert!(!repair(s(&[corrupt, wipe]).source()));
        assert!(!repair(s(&[torn]).source()));
    }

    #[test]
    fn an_unknown_fault_is_named_with_the_known_ones() {
        let e = FaultKind::parse_list("kill,melt").unwrap_err();
        assert!(e.contains("'melt'") && e.contains("torn_tail"), "{e}");
        assert_eq!(FaultKind::parse_list("kill, wipe").unwrap(), vec![FaultKind::Kill, FaultKind::Wipe]);
    }
}
