//! `chaos bench`: figures for docs/benchmarks.md. Wall-clock figures are printed, never
//! asserted: these machines are shared and noisy.

use crate::cluster::{join_all, Cluster, ClusterSpec, TransportKind, VoteOptions};
use crate::runner::{run_scenario, RunConfig, Verdict};
use ballot_transports::EventLog;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One throughput measurement.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub voters: usize,
    pub votes: usize,
    pub committed: usize,
    pub wall_secs: f64,
    pub slots: u64,
}

impl Throughput {
    pub fn votes_per_sec(&self) -> f64 {
        self.committed as f64 / self.wall_secs
    }
}

/// `voters` clients vote at once, each casting its share of `votes` one after another,
/// on a 3-proposer, 3-acceptor, 2-learner cluster on the in-memory transport.
pub fn throughput(voters: usize, votes: usize, seed: u64) -> Throughput {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    let _g = rt.enter();
    rt.block_on(async {
        let c = Cluster::start(ClusterSpec::default(), seed, EventLog::new(false), TransportKind::Mem).await.expect("cluster");
        c.wait_for_leader(Duration::from_secs(5)).await.expect("a leader");
        let per = votes / voters;
        let opts = VoteOptions { timeout: Some(Duration::from_secs(30)), ..VoteOptions::default() };
        let t0 = Instant::now();
        let counts = join_all((0..voters).map(|v| {
            let (c, opts) = (&c, &opts);
            async move {
                let mut ok = 0;
                for i in 0..per {
                    if c.vote(&format!("voter-{v}-{i}"), "ada", opts).await.ok {
                        ok += 1;
                    }
                }
                ok
            }
        }))
        .await;
        let wall_secs = t0.elapsed().as_secs_f64();
        let slots = c.status(c.config().learners[0]).await.and_then(|s| s.applied).unwrap_or(0);
        Throughput { voters, votes: per * voters, committed: counts.iter().sum(), wall_secs, slots }
    })
}

/// Run every scenario once; returns (files, total wall s, total virtual s, failures).
pub fn scenarios(dir: PathBuf, seed: u64) -> Result<(usize, f64, f64, Vec<String>), String> {
    let files = crate::runner::collect_scenarios(&[dir])?;
    let t0 = Instant::now();
    let mut virt = 0.0;
    let mut failures = Vec::new();
    for f in &files {
        let r = run_scenario(f, &RunConfig { seed, ..RunConfig::default() });
        virt += r.virtual_secs;
        if r.verdict != Verdict::Pass {
            failures.push(format!("{}: {:?}", f.display(), r.verdict));
        }
    }
    Ok((files.len(), t0.elapsed().as_secs_f64(), virt, failures))
}
