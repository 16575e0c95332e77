//! Randomized simulation: for each of many seeds, a cluster lives through a random
//! schedule of faults while clients vote (with retries under the same request id); then
//! the faults are repaired, a healthy core is left running (a minority may stay down), and
//! safety and progress must hold: every invariant, a fresh vote and a read commit, and
//! every live learner applies everything chosen (`Cluster::progress`).
//!
//! The fault mix is drawn per seed ("swarm testing", as TigerBeetle's VOPR does): each
//! kind of fault is on or off for a seed, with its own rate and length, so some seeds
//! hammer one mechanism and others mix them. The kinds: kills and restarts, pauses,
//! two-way and one-way partitions, the leader cut from its acceptors only, a proposer cut
//! from the other proposers only, loss, duplication, delay, and storage faults: a crash
//! in the middle of a write (torn tail) and lost state (a wiped node that rejoins).
//!
//! A failure names its seed; `SIM_SEED=N cargo test -p ballot-chaos --test simulation`
//! replays that one seed (`SIM_LOG=FILE` writes its event log).

use ballot_chaos::cluster::{Cluster, ClusterSpec, DiskFault, TransportKind, VoteOptions};
use ballot_core::{NodeId, Role, Rules};
use ballot_transports::EventLog;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const SEEDS: u64 = 1000;

/// The faults one seed uses, and how hard.
#[derive(Debug)]
struct Mix {
    kinds: Vec<Fault>,
    drop_max: f64,
    duplicate_max: f64,
    delay_max_ms: u64,
    /// Longest pause between steps.
    gap_max_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Kill,
    Restart,
    Pause,
    Resume,
    Partition,
    OneWay,
    LeaderCutFromAcceptors,
    ProposerCutFromProposers,
    Heal,
    Drop,
    Duplicate,
    Delay,
    /// A crash in the middle of the node's next write.
    TornTail,
    /// The node's state lost; it rejoins.
    Wipe,
}

impl Mix {
    fn draw(rng: &mut ChaCha8Rng) -> Mix {
        use Fault::*;
        // Each family on with probability 1/2; at least one.
        let families: [&[Fault]; 9] = [
            &[Kill, Restart],
            &[Pause, Resume],
            &[Partition, Heal],
            &[OneWay, Heal],
            &[LeaderCutFromAcceptors, Heal],
            &[ProposerCutFromProposers, Heal],
            &[Drop, Duplicate],
            &[Delay],
            &[TornTail, Wipe, Restart],
        ];
        let mut kinds: Vec<Fault> = Vec::new();
        while kinds.is_empty() {
            for f in families {
                if rng.gen_bool(0.5) {
                    kinds.extend(f.iter().copied().filter(|k| !kinds.contains(k)).collect::<Vec<_>>());
                }
            }
        }
        Mix {
            kinds,
            drop_max: rng.gen_range(0.02..0.4),
            duplicate_max: rng.gen_range(0.02..0.4),
            delay_max_ms: rng.gen_range(2..80),
            gap_max_ms: rng.gen_range(50..800),
        }
    }
}

/// What one seed did, for the summary.
#[derive(Default)]
struct Outcome {
    left_down: usize,
}

fn run(seed: u64, rules: Rules) -> Result<Outcome, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    rt.block_on(async {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut spec = ClusterSpec {
            proposers: rng.gen_range(1..=3),
            acceptors: [3, 3, 5][rng.gen_range(0..3)],
            learners: rng.gen_range(1..=3),
            ..ClusterSpec::default()
        };
        // Small logs and catch-up pages, so compaction and snapshot transfer happen often.
        spec.timing.snapshot_every = rng.gen_range(2..64);
        spec.timing.catch_up_batch = rng.gen_range(4..64);
        spec.timing.rules = rules;
        let mix = Mix::draw(&mut rng);
        let log = EventLog::new(std::env::var_os("SIM_LOG").is_some());
        let c = Cluster::start(spec, seed, log.clone(), TransportKind::Mem).await.map_err(|e| e.to_string())?;
        let dump = |e: String| {
            if let Some(path) = std::env::var_os("SIM_LOG") {
                let _ = std::fs::write(path, log.lines().join("\n"));
            }
            format!("{e} (mix {mix:?})")
        };
        let nodes = c.nodes();
        let of = |role: Role| -> Vec<NodeId> { nodes.iter().copied().filter(|n| n.role == role).collect() };
        let (proposers, acceptors) = (of(Role::Proposer), of(Role::Acceptor));
        let mut retries: Vec<(String, String, String)> = Vec::new();
        let mut voter = 0u32;
        for _ in 0..rng.gen_range(4..12) {
            inject(&c, &mut rng, &mix, &nodes, &proposers, &acceptors).await?;
            cast(&c, &mut rng, &mut voter, &mut retries).await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..mix.gap_max_ms))).await;
        }
        let during = c.check().await;
        if !during.is_empty() {
            return Err(dump(format!("while faulty: {}", during.join("; "))));
        }
        let left_down = repair(&c, &mut rng, &nodes).await?;
        // Heal, resume, a quiet period, then every invariant, progress included.
        let violations = c.finish().await;
        if !violations.is_empty() {
            return Err(dump(violations.join("; ")));
        }
        one_leader(&c, &proposers).await.map_err(dump)?;
        let final_check = c.finish().await;
        if !final_check.is_empty() {
            return Err(dump(final_check.join("; ")));
        }
        Ok(Outcome { left_down: left_down.len() })
    })
}

/// One fault of the seed's mix, on a node drawn at random.
async fn inject(
    c: &Cluster,
    rng: &mut ChaCha8Rng,
    mix: &Mix,
    nodes: &[NodeId],
    proposers: &[NodeId],
    acceptors: &[NodeId],
) -> Result<(), String> {
    let n = nodes[rng.gen_range(0..nodes.len())];
    match *mix.kinds.choose(rng).expect("at least one kind") {
        Fault::Kill => c.kill(n),
        Fault::Restart => c.restart(n).await?,
        Fault::Pause if c.is_alive(n) => c.pause(n).await,
        Fault::Pause => {}
        Fault::Resume => c.resume(n).await,
        Fault::Partition => {
            let (a, b): (Vec<NodeId>, Vec<NodeId>) = nodes.iter().partition(|_| rng.gen_bool(0.5));
            c.partition(&a, &b).await;
        }
        Fault::OneWay => {
            let (a, b): (Vec<NodeId>, Vec<NodeId>) = nodes.iter().partition(|_| rng.gen_bool(0.5));
            c.partition_oneway(&a, &b).await;
        }
        Fault::LeaderCutFromAcceptors => {
            // It still reaches the other proposers and the learners.
            if let Some(l) = c.leader().await {
                c.partition(&[l], acceptors).await;
            }
        }
        Fault::ProposerCutFromProposers => {
            // It still reaches the acceptors and the learners.
            let p = proposers[rng.gen_range(0..proposers.len())];
            let others: Vec<NodeId> = proposers.iter().copied().filter(|&o| o != p).collect();
            if !others.is_empty() {
                c.partition(&[p], &others).await;
            }
        }
        Fault::Heal => c.heal().await,
        Fault::Drop => c.drop_rate(rng.gen_range(0.0..mix.drop_max)).await.map_err(|e| e.0)?,
        Fault::Duplicate => c.duplicate_rate(rng.gen_range(0.0..mix.duplicate_max)).await.map_err(|e| e.0)?,
        Fault::Delay => c.delay(0, rng.gen_range(1..=mix.delay_max_ms)).await.map_err(|e| e.0)?,
        Fault::TornTail => drop(c.restart_with_disk(n, DiskFault::TornTail, true).await?),
        // Lost state is a failure like any other: at most a minority of the acceptors may
        // be without theirs at once (more, and what was chosen may be gone for good).
        Fault::Wipe if n.role == Role::Acceptor && !c.is_rejoining(n).await => {
            if rejoining(c, acceptors).await < acceptors.len() - c.config().quorum() {
                drop(c.restart_with_disk(n, DiskFault::Wipe, true).await?);
            }
        }
        // A learner's state is the only copy of what the acceptors compacted: one that lost
        // it catches up from a learner that still holds at least as much; with none, the
        // votes would be gone for good (a real loss, not a fault the cluster tolerates).
        Fault::Wipe if n.role == Role::Learner => {
            let mine = c.status(n).await.and_then(|s| s.applied);
            let mut covered = false;
            for &l in nodes.iter().filter(|l| l.role == Role::Learner && **l != n) {
                let theirs = c.status(l).await.and_then(|s| s.applied);
                covered |= matches!((mine, theirs), (Some(m), Some(t)) if t >= m);
            }
            if covered {
                drop(c.restart_with_disk(n, DiskFault::Wipe, true).await?);
            }
        }
        Fault::Wipe => drop(c.restart_with_disk(n, DiskFault::Wipe, true).await?),
    }
    Ok(())
}

/// A few voters at once, some voting twice, some for an unknown candidate; then one
/// earlier failure retried with a fixed request id, twice: never two votes.
async fn cast(c: &Cluster, rng: &mut ChaCha8Rng, voter: &mut u32, retries: &mut Vec<(String, String, String)>) {
    let cands = ["ada", "grace", "linus", "nobody"];
    let mut batch = Vec::new();
    for _ in 0..rng.gen_range(1..6) {
        let v = if *voter > 0 && rng.gen_bool(0.2) {
            rng.gen_range(0..*voter)
        } else {
            *voter += 1;
            *voter
        };
        batch.push((format!("v{v}"), cands[rng.gen_range(0..cands.len())].to_string()));
    }
    let opts = VoteOptions { timeout: Some(Duration::from_millis(rng.gen_range(200..1500))), ..VoteOptions::default() };
    for ((v, cand), out) in batch.iter().zip(c.vote_all(&batch, &opts).await) {
        if out.error == "no_quorum" || out.error == "timeout" {
            retries.push((format!("retry-{v}-{cand}"), v.clone(), cand.clone()));
        }
    }
    // Retry some earlier failures with a fixed request id, twice: never two votes.
    if let Some((rid, v, cand)) = retries.pop() {
        let opts =
            VoteOptions { request_id: Some(rid), timeout: Some(Duration::from_millis(500)), ..VoteOptions::default() };
        c.vote(&v, &cand, &opts).await;
        c.vote(&v, &cand, &opts).await;
    }
}

/// How many of `acceptors` are still rejoining after lost state (down ones included:
/// they rejoin when they come back).
async fn rejoining(c: &Cluster, acceptors: &[NodeId]) -> usize {
    let mut n = 0;
    for &a in acceptors {
        if c.is_rejoining(a).await {
            n += 1;
        }
    }
    n
}

/// Restart the dead, but perhaps leave one proposer, acceptor or learner down; what
/// stays up is still a healthy core, and it must make progress. Returns who stays down.
/// An acceptor still rejoining counts as down, and needs every proposer to finish.
async fn repair(c: &Cluster, rng: &mut ChaCha8Rng, nodes: &[NodeId]) -> Result<Vec<NodeId>, String> {
    let of = |role: Role| -> Vec<NodeId> { nodes.iter().copied().filter(|n| n.role == role).collect() };
    let rejoins = rejoining(c, &of(Role::Acceptor)).await;
    let mut left_down = Vec::new();
    for role in [Role::Proposer, Role::Acceptor, Role::Learner] {
        let group = of(role);
        let spare = match role {
            Role::Acceptor => group.len() - c.config().quorum() - rejoins,
            Role::Proposer if rejoins > 0 => 0,
            _ => group.len() - 1,
        };
        if spare > 0 && rng.gen_bool(0.3) {
            left_down.push(group[rng.gen_range(0..group.len())]);
        }
    }
    for &n in nodes {
        if left_down.contains(&n) {
            c.kill(n);
        } else if !c.is_alive(n) {
            c.restart(n).await?;
        }
    }
    Ok(left_down)
}

/// A late message from before the repair may still unseat the leader once; give the
/// election time to settle, then exactly one live proposer must lead.
async fn one_leader(c: &Cluster, proposers: &[NodeId]) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut leaders = 0;
    for &p in proposers {
        if c.status(p).await.is_some_and(|s| s.leader == Some(p)) {
            leaders += 1;
        }
    }
    if leaders != 1 {
        let mut views = Vec::new();
        for &p in proposers {
            views.push(format!("{p}: {:?}", c.status(p).await));
        }
        return Err(format!("after repair {leaders} proposers believe they lead: {}", views.join(", ")));
    }
    Ok(())
}

/// `SIM_SEED=N` runs that seed alone; `SIM_SEEDS=N` runs seeds 1..=N (more than CI does).
fn seeds(default: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED must be a number")];
    }
    match std::env::var("SIM_SEEDS") {
        Ok(n) => (1..=n.parse().expect("SIM_SEEDS must be a number")).collect(),
        Err(_) => default.collect(),
    }
}

#[test]
fn safety_and_progress_hold_over_many_seeds_with_random_fault_mixes() {
    let seeds = seeds(1..=SEEDS);
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut left_down = 0;
    for &seed in &seeds {
        match run(seed, Rules::default()) {
            Ok(o) => left_down += o.left_down,
            Err(e) => failed.push(format!(
                "seed {seed}: {e}\n  replay: SIM_SEED={seed} cargo test -p ballot-chaos --test simulation"
            )),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulation: {} seeds in {secs:.1} s ({:.0} seeds/min), {left_down} nodes left down at the end, {} failed",
        seeds.len(),
        seeds.len() as f64 * 60.0 / secs.max(1e-9),
        failed.len()
    );
    assert!(failed.is_empty(), "{} of {} seeds failed:\n{}", failed.len(), seeds.len(), failed.join("\n"));
}

/// The checker earns its keep: with the liveness rules switched off, the same
/// simulation finds clusters that stall for good while every safety invariant holds, and
/// the progress check says which node is stuck where.
#[test]
fn without_the_liveness_rules_the_progress_check_finds_stalls() {
    let off = Rules { check_quorum: false, leader_lease: false, reopen_stuck: false, crash_notice: true };
    let mut stalls = Vec::new();
    for seed in 1..=400 {
        if let Err(e) = run(seed, off) {
            assert!(e.contains("progress:"), "seed {seed} failed on something else than progress: {e}");
            stalls.push(seed);
        }
    }
    assert!(!stalls.is_empty(), "no seed of 400 stalled without the liveness rules: the checker cannot see a stall");
    println!("without the liveness rules {} of 400 seeds stalled: {stalls:?}", stalls.len());
}
