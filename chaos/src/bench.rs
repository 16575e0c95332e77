//! `chaos bench`: figures for docs/benchmarks.md. Wall-clock figures are printed, never
//! asserted: these machines are shared and noisy.

use crate::cluster::{join_all, Cluster, ClusterSpec, TransportKind, VoteOptions};
use crate::runner::{run_scenario, RunConfig, Verdict};
use ballot_transports::EventLog;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One throughput measurement.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// Concurrent voters.
    pub voters: usize,
    /// Votes cast.
    pub votes: usize,
    /// Votes answered ok.
    pub committed: usize,
    /// Wall time of the run, seconds.
    pub wall_secs: f64,
    /// Log slots the votes took (votes per slot is the batching).
    pub slots: u64,
}

impl Throughput {
    /// Committed votes per wall-clock second.
    pub fn votes_per_sec(&self) -> f64 {
        self.committed as f64 / self.wall_secs
    }
}

/// `voters` clients vote at once, each casting its share of `votes` one after another,
/// on a 3-proposer, 3-acceptor, 2-learner cluster on the in-memory transport.
pub fn throughput(voters: usize, votes: usize, seed: u64) -> Throughput {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    let (figures, cluster) = rt.block_on(async {
        let c = Cluster::start(ClusterSpec::default(), seed, EventLog::new(false), TransportKind::Mem)
            .await
            .expect("cluster");
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
        (Throughput { voters, votes: per * voters, committed: counts.iter().sum(), wall_secs, slots }, c)
    });
    // Freeing the run's state (every learner's ballot box, every acceptor's log) is not
    // part of the figure, and it runs on a thread of its own name so that a profile of the
    // bench (tools/stages.sh) leaves it out too.
    let teardown = std::thread::Builder::new().name("bench-teardown".into()).spawn(move || {
        let _g = rt.enter();
        drop(cluster);
        drop(rt);
    });
    if let Ok(t) = teardown {
        let _ = t.join();
    }
    figures
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

/// Figures of one run on real node processes.
#[derive(Clone, Debug)]
pub struct ProcFigures {
    /// Concurrent voters.
    pub voters: usize,
    /// Votes answered ok.
    pub committed: usize,
    /// Wall time of the run, seconds.
    pub wall_secs: f64,
    /// Latency of each committed vote, ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// Votes not answered ok, by error (`timeout`, `no_quorum`, ...).
    pub not_ok: BTreeMap<String, usize>,
}

impl ProcFigures {
    /// Committed votes per wall-clock second.
    pub fn votes_per_sec(&self) -> f64 {
        self.committed as f64 / self.wall_secs
    }
    /// The `p`-th percentile (0..=100) of the committed votes' latency, ms.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }
}

/// The `p`-th percentile (0-100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn real_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// `voters` clients, each casting `per_voter` votes in turn, against a 3-proposer,
/// 3-acceptor, 2-learner cluster of node processes with fsync on; with credentials
/// (mutual TLS on tcp) unless `insecure`.
pub fn proc_throughput(
    transport: TransportKind,
    voters: usize,
    per_voter: usize,
    seed: u64,
    insecure: bool,
) -> Result<ProcFigures, String> {
    let rt = real_runtime();
    rt.block_on(async {
        let spec = ClusterSpec { insecure, ..ClusterSpec::default() };
        let c = Cluster::start(spec, seed, EventLog::new(false), transport).await.map_err(|e| e.0)?;
        c.wait_for_leader(Duration::from_secs(10)).await.ok_or("no leader")?;
        let opts = VoteOptions { timeout: Some(Duration::from_secs(10)), ..VoteOptions::default() };
        let t0 = Instant::now();
        let per: Vec<(Vec<f64>, Vec<String>)> = join_all((0..voters).map(|v| {
            let (c, opts) = (&c, &opts);
            async move {
                let (mut lat, mut not_ok) = (Vec::new(), Vec::new());
                for i in 0..per_voter {
                    let r = c.vote(&format!("voter-{v}-{i}"), "ada", opts).await;
                    if r.ok {
                        lat.push(r.latency_ms);
                    } else {
                        not_ok.push(r.error);
                    }
                }
                (lat, not_ok)
            }
        }))
        .await;
        let wall_secs = t0.elapsed().as_secs_f64();
        let mut not_ok = BTreeMap::new();
        let mut latencies_ms = Vec::new();
        for (lat, errors) in per {
            latencies_ms.extend(lat);
            for e in errors {
                *not_ok.entry(e).or_insert(0) += 1;
            }
        }
        latencies_ms.sort_by(|a, b| a.total_cmp(b));
        c.shutdown();
        if let crate::cluster::Backend::Proc(b) = c.backend() {
            b.remove_run_dir();
        }
        Ok(ProcFigures { voters, committed: latencies_ms.len(), wall_secs, latencies_ms, not_ok })
    })
}

/// Kill -9 the leader while `load` voters keep voting; time from the kill to the first
/// vote committed after it, `trials` times. Returns the times in ms, sorted. Nodes run
/// with credentials unless `insecure`.
/// With `client_retry` set, the probe vote retries at the client's own period instead
/// of every 20 ms: what a voter sees (client failover).
pub fn failover(
    transport: TransportKind,
    trials: usize,
    load: usize,
    seed: u64,
    client_retry: Option<Duration>,
    insecure: bool,
) -> Result<Vec<f64>, String> {
    let rt = real_runtime();
    rt.block_on(async {
        let spec = ClusterSpec { insecure, ..ClusterSpec::default() };
        let c = Cluster::start(spec, seed, EventLog::new(false), transport).await.map_err(|e| e.0)?;
        c.wait_for_leader(Duration::from_secs(10)).await.ok_or("no leader")?;
        let done = std::cell::Cell::new(false);
        let background = join_all((0..load).map(|v| {
            let (c, done) = (&c, &done);
            async move {
                let opts = VoteOptions { timeout: Some(Duration::from_secs(2)), ..VoteOptions::default() };
                let mut i = 0;
                while !done.get() {
                    c.vote(&format!("load-{v}-{i}"), "grace", &opts).await;
                    i += 1;
                }
            }
        }));
        let measure = async {
            let mut times = Vec::new();
            for trial in 0..trials {
                let Some(leader) = c.wait_for_leader(Duration::from_secs(10)).await else { break };
                tokio::time::sleep(Duration::from_millis(300)).await;
                let t0 = Instant::now();
                c.kill(leader);
                // Ask through every proposer in turn, resending often, so the figure is the
                // cluster's recovery and not the client's retry period.
                let opts = VoteOptions {
                    timeout: Some(Duration::from_secs(10)),
                    retry_every: Some(client_retry.unwrap_or(Duration::from_millis(20))),
                    ..VoteOptions::default()
                };
                let r = c.vote(&format!("probe-{trial}"), "linus", &opts).await;
                if r.ok {
                    times.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                c.restart(leader).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            done.set(true);
            Ok::<_, String>(times)
        };
        let (times, _) = futures_util::future::join(measure, background).await;
        let mut times = times?;
        times.sort_by(|a, b| a.total_cmp(b));
        c.shutdown();
        if let crate::cluster::Backend::Proc(b) = c.backend() {
            b.remove_run_dir();
        }
        Ok(times)
    })
}

/// A learner that was down while `votes` votes were committed is restarted; returns the
/// time from its restart until it has applied everything the other learner has (ms) and
/// the number of slots it had to catch up. Nodes run with credentials unless `insecure`.
pub fn catch_up(transport: TransportKind, votes: usize, seed: u64, insecure: bool) -> Result<(f64, u64), String> {
    let rt = if transport == TransportKind::Mem {
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime")
    } else {
        real_runtime()
    };
    let _g = rt.enter();
    rt.block_on(async {
        let spec = ClusterSpec { insecure, ..ClusterSpec::default() };
        let c = Cluster::start(spec, seed, EventLog::new(false), transport).await.map_err(|e| e.0)?;
        c.wait_for_leader(Duration::from_secs(10)).await.ok_or("no leader")?;
        let behind = c.config().learners[1];
        let ahead = c.config().learners[0];
        c.kill(behind);
        let opts = VoteOptions { timeout: Some(Duration::from_secs(30)), ..VoteOptions::default() };
        for chunk in (0..votes).collect::<Vec<_>>().chunks(1024) {
            let batch: Vec<(String, String)> = chunk.iter().map(|i| (format!("v{i}"), "ada".to_string())).collect();
            c.vote_all(&batch, &opts).await;
        }
        let target = c.status(ahead).await.and_then(|s| s.applied).ok_or("the other learner does not answer")?;
        let t0 = tokio::time::Instant::now();
        c.restart(behind).await?;
        loop {
            let applied = c.status(behind).await.and_then(|s| s.applied).unwrap_or(0);
            if applied >= target {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err(format!("{behind} reached slot {applied} of {target} in 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        c.shutdown();
        if let crate::cluster::Backend::Proc(b) = c.backend() {
            b.remove_run_dir();
        }
        Ok((ms, target))
    })
}
