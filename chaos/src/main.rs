//! `chaos`: run ballot scenarios and report a verdict and an exit code.

use ballot_chaos::runner::{self, verdict_word, RunConfig, Verdict};
use ballot_chaos::TransportKind;
use clap::{Parser, Subcommand};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "chaos", version, about = "Chaos scenarios for the ballot voting cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenario files, or every .rhai file in the folders given.
    Run {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Which transport the nodes talk over.
        #[arg(long, default_value_t = TransportKind::Mem)]
        transport: TransportKind,
        /// Seed for every random choice (random when absent; always printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Write the event log (deliveries, drops, faults, votes, with virtual times) here.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write one HTML page per scenario into this folder (timeline with fault
        /// windows, leader changes, vote latencies, message rate, a Lamport diagram).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Export traces to this OTLP/gRPC collector (e.g. http://localhost:4317 for
        /// Jaeger): each scenario is a root span, each step a child, and each node its own
        /// service. Defaults to OTEL_EXPORTER_OTLP_ENDPOINT; off when neither is set.
        #[arg(long)]
        otlp_endpoint: Option<String>,
    },
    /// Random fault schedules, one per seed, each checked for safety and progress; every
    /// failure kept as the scenario that reproduces it.
    Explore {
        /// How many seeds to run (100 unless --time is given).
        #[arg(long, conflicts_with = "time")]
        seeds: Option<u64>,
        /// Run seeds for this long instead: 60s, 2m, 500ms.
        #[arg(long, value_parser = ballot_chaos::explore::parse_duration)]
        time: Option<std::time::Duration>,
        /// The first seed (random when absent; always printed).
        #[arg(long)]
        seed: Option<u64>,
        /// The faults schedules draw from, comma-separated (all when absent).
        #[arg(long)]
        faults: Option<String>,
        /// Which transport the nodes talk over.
        #[arg(long, default_value_t = TransportKind::Mem)]
        transport: TransportKind,
        /// Where each failing seed's scenario is written.
        #[arg(long, default_value = "explore-out")]
        out: PathBuf,
        /// A test of the checker: wipes restart nodes as new, without the rejoin guard.
        #[arg(long, hide = true)]
        no_rejoin_guard: bool,
    },
    /// Run one cluster node (what chaos starts for --transport tcp|zmq; same flags as
    /// ballot-node).
    /// Boxed: the node's flags are many times the size of the other commands'.
    #[command(hide = true)]
    Node(Box<ballot_app::process::NodeArgs>),
    /// Print performance figures on the in-memory transport (for docs/benchmarks.md).
    Bench(BenchArgs),
}

/// `chaos bench`'s flags.
#[derive(clap::Args)]
struct BenchArgs {
    /// Votes per throughput run.
    #[arg(long, default_value_t = 200_000)]
    votes: usize,
    /// Concurrent voters to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 64, 1024])]
    voters: Vec<usize>,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Folder of scenarios to time.
    #[arg(long, default_value = "scenarios")]
    scenarios: PathBuf,
    /// mem (in-process figures) or tcp/zmq (node processes, fsync on: throughput,
    /// latency and failover).
    #[arg(long, default_value_t = TransportKind::Mem)]
    transport: TransportKind,
    /// Failover trials (tcp/zmq).
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// tcp/zmq: skip the catch-up figure.
    #[arg(long)]
    skip_catch_up: bool,
    /// tcp/zmq: the throughput figures with credentials (`on`: mutual TLS on tcp, CURVE on zmq),
    /// without (`off`: nodes run --insecure), or both (`on,off`: interleaved over
    /// --runs rounds, medians, and the ratio). Catch-up and failover use the first.
    #[arg(long, value_delimiter = ',', default_values_t = vec![Auth::On])]
    auth: Vec<Auth>,
    /// tcp/zmq: the cost of tracing instead: votes/s of the first --voters figure with
    /// tracing off, and exporting to an in-process OTLP collector at 100% and 1%
    /// sampling, interleaved over --runs rounds (medians and ratios).
    #[arg(long)]
    tracing_cost: bool,
    /// Only the throughput figures (no scenarios, catch-up or failover): what
    /// tools/stages.sh records.
    #[arg(long)]
    only_throughput: bool,
}

/// `chaos bench --auth`: node processes with credentials or with `--insecure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Auth {
    /// A fresh credentials folder per run: mutual TLS on tcp.
    On,
    /// `--insecure`.
    Off,
}

impl std::fmt::Display for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if *self == Auth::On { "on" } else { "off" })
    }
}

/// `chaos explore`: exit 0 when every seed passed, 1 on any failure, 2 when the output
/// folder cannot be written.
fn explore(
    seeds: Option<u64>,
    time: Option<std::time::Duration>,
    seed: Option<u64>,
    faults: Option<String>,
    transport: TransportKind,
    (out, unguarded): (PathBuf, bool),
) -> ExitCode {
    use ballot_chaos::explore::{self, schedule::FaultKind, ExploreConfig};
    let start = seed.unwrap_or_else(random_seed);
    let faults = match faults.as_deref().map(FaultKind::parse_list) {
        None => FaultKind::ALL.iter().map(|(k, _)| *k).collect(),
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            println!("chaos explore: {e}");
            return ExitCode::from(2);
        }
    };
    let seeds = if time.is_none() { Some(seeds.unwrap_or(100)) } else { seeds };
    println!("chaos explore: seeds from {start} (transport {transport}), failures kept in {}", out.display());
    let cfg = ExploreConfig { seeds, time, start, faults, transport, out, unguarded };
    match explore::explore(&cfg) {
        Ok(summary) => {
            print!("{}", explore::table(&summary));
            if summary.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            println!("chaos explore: {e}");
            ExitCode::from(2)
        }
    }
}

/// The run's HTML page in `dir`; a folder that cannot be written costs one line, never
/// the verdict.
fn write_report(dir: &std::path::Path, r: &runner::ScenarioResult) {
    let name = r.path.file_stem().map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let file = dir.join(format!("{name}.html"));
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&file, ballot_chaos::report::page(r))) {
        Ok(()) => println!("      report: {}", file.display()),
        Err(e) => println!("      report: cannot write {}: {e}", file.display()),
    }
}

fn random_seed() -> u64 {
    // The seed is printed, so any unpredictable source will do.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() >> 11 // fits in 53 bits, so it survives being pasted anywhere
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (paths, transport, seed, log, junit, otlp) = match cli.cmd {
        Cmd::Run { paths, transport, seed, log, junit, report, otlp_endpoint } => {
            (paths, transport, seed, log, junit, (otlp_endpoint, report))
        }
        Cmd::Bench(args) => return bench_cmd(args),
        Cmd::Node(args) => return ballot_app::process::main_with(*args),
        Cmd::Explore { seeds, time, seed, faults, transport, out, no_rejoin_guard } => {
            return explore(seeds, time, seed, faults, transport, (out, no_rejoin_guard));
        }
    };
    let files = match runner::collect_scenarios(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = seed.unwrap_or_else(random_seed);
    let (otlp, report) = otlp;
    let telemetry = start_tracing(otlp);
    let kind = transport;
    println!("chaos: seed {seed} (transport {transport})");
    let cfg =
        RunConfig { seed, transport: kind, record_events: log.is_some() || report.is_some(), ..RunConfig::default() };
    let mut results = Vec::new();
    let mut events = String::new();
    for file in &files {
        let r = runner::run_scenario(file, &cfg);
        for line in &r.printed {
            println!("      log: {line}");
        }
        let times = if kind == TransportKind::Mem {
            format!("virtual={:.3}s  wall={:.3}s", r.virtual_secs, r.wall_secs)
        } else {
            format!("wall={:.3}s", r.wall_secs)
        };
        println!("{:<5} {}  seed={}  {times}", verdict_word(&r.verdict), file.display(), r.seed);
        if let Verdict::Fail(m) | Verdict::ScriptError(m) = &r.verdict {
            println!("      {m}");
            let flag = if kind == TransportKind::Mem { String::new() } else { format!(" --transport {transport}") };
            println!("      reproduce: chaos run {}{flag} --seed {}", file.display(), r.seed);
            if let Some(dir) = &r.run_dir {
                println!("      node logs: {}", dir.display());
            }
        }
        if let Some(dir) = &report {
            write_report(dir, &r);
        }
        if log.is_some() {
            for line in &r.events {
                events.push_str(line);
                events.push('\n');
            }
        }
        results.push(r);
    }
    let passed = results.iter().filter(|r| r.verdict == Verdict::Pass).count();
    println!("{} passed, {} failed", passed, results.len() - passed);
    // The last spans go to the collector before the verdict's exit code.
    drop(telemetry);
    if let Some(path) = log {
        if let Err(e) = std::fs::write(&path, events) {
            eprintln!("chaos: cannot write the event log to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Some(path) = junit {
        if let Err(e) = std::fs::write(&path, runner::junit(&results)) {
            eprintln!("chaos: cannot write the JUnit report to {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::from(runner::exit_code(&results) as u8)
}

/// Tracing for `chaos run` and `chaos bench`: spans of chaos itself under the service
/// `chaos` (or OTEL_SERVICE_NAME), each in-process node under its own id; node processes
/// inherit the endpoint through the environment. A bad setting is one line on stderr and
/// no tracing: the run matters more than its trace.
fn start_tracing(flag: Option<String>) -> Option<ballot_telemetry::Telemetry> {
    use ballot_telemetry::{self as telemetry, TelemetryConfig};
    let mut config = match TelemetryConfig::from_env(flag, "chaos", None) {
        Ok(Some(config)) => config,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("chaos: tracing is off: {e}");
            return None;
        }
    };
    config.per_node_services = true;
    // Node processes started by chaos read it (still one thread here).
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &config.endpoint);
    println!("chaos: exporting traces to {}", config.endpoint);
    telemetry::install(Some(&config), None, "warn", true)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `chaos bench`: the in-memory figures, or those of node processes.
fn bench_cmd(args: BenchArgs) -> ExitCode {
    let BenchArgs {
        votes,
        voters,
        runs,
        scenarios,
        transport,
        trials,
        skip_catch_up,
        tracing_cost: cost,
        auth,
        only_throughput,
    } = args;
    if transport == TransportKind::Mem {
        return bench(votes, &voters, runs.max(1), (!only_throughput).then_some(scenarios));
    }
    if cost {
        return tracing_cost(transport, voters.first().copied().unwrap_or(64), runs.max(1));
    }
    // With OTEL_EXPORTER_OTLP_ENDPOINT set, the bench's client and its node processes trace.
    let _telemetry = start_tracing(None);
    let rounds = if auth.len() > 1 { runs.max(1) } else { 1 };
    if let Err(code) = bench_throughput(transport, &voters, &auth, rounds) {
        return code;
    }
    if only_throughput {
        return ExitCode::SUCCESS;
    }
    bench_procs(transport, trials, skip_catch_up, auth.first() == Some(&Auth::Off))
}

/// The in-memory figures; `scenarios: None` is throughput only.
fn bench(votes: usize, voters: &[usize], runs: usize, scenarios: Option<PathBuf>) -> ExitCode {
    use ballot_chaos::bench;
    println!("chaos bench: in-memory transport, 3 proposers, 3 acceptors, 2 learners; median of {runs} runs");
    if let Some(scenarios) = scenarios {
        if let Err(code) = bench_scenarios_and_catch_up(scenarios) {
            return code;
        }
    }
    for &n in voters {
        let n = n.max(1);
        // Sequential voters are slow per vote; keep their run short.
        let total = if n == 1 { votes.min(20_000) } else { votes };
        let results: Vec<_> = (0..runs).map(|r| bench::throughput(n, total, 7 + r as u64)).collect();
        let rate = median(results.iter().map(|r| r.votes_per_sec()).collect());
        let last = &results[results.len() - 1];
        println!(
            "voters={n:<5} votes={:<7} committed={:<7} slots={:<6} votes/s={:.0} (runs: {})",
            last.votes,
            last.committed,
            last.slots,
            rate,
            results.iter().map(|r| format!("{:.0}", r.votes_per_sec())).collect::<Vec<_>>().join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// The scenarios' wall and virtual time, and the in-memory catch-up figure.
fn bench_scenarios_and_catch_up(scenarios: PathBuf) -> Result<(), ExitCode> {
    use ballot_chaos::bench;
    match bench::scenarios(scenarios, 1) {
        Ok((n, wall, virt, failures)) => {
            println!(
                "scenarios: {n} files in {:.3} s wall, {:.1} s virtual: {:.0} virtual s per wall s",
                wall,
                virt,
                virt / wall
            );
            for f in failures {
                println!("  not passing: {f}");
            }
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            return Err(ExitCode::from(2));
        }
    }
    match bench::catch_up(TransportKind::Mem, 100_000, 13, false) {
        Ok((ms, slots)) => println!(
            "catch-up: a learner restarted 100,000 votes ({slots} slots) behind catches up in {ms:.0} virtual ms"
        ),
        Err(e) => println!("catch-up: failed: {e}"),
    }
    Ok(())
}

/// Runs `chaos bench` for one throughput figure in a child process per configuration
/// (tracing is set up once per process), all exporting to one in-process collector.
fn tracing_cost(transport: TransportKind, voters: usize, rounds: usize) -> ExitCode {
    let collector = match ballot_telemetry::collector::Collector::start(false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: cannot start the OTLP collector: {e}");
            return ExitCode::from(1);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("chaos: cannot find its own binary: {e}");
            return ExitCode::from(1);
        }
    };
    let name = transport.to_string();
    println!("chaos bench: cost of tracing on {name}, {voters} voters, exporting to an in-process OTLP collector; {rounds} interleaved rounds, medians");
    let configs: [(&str, Option<&str>); 3] = [("off", None), ("100%", Some("1")), ("1%", Some("0.01"))];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut spans = vec![0u64; configs.len()];
    let mut committed = vec![0u64; configs.len()];
    for _ in 0..rounds {
        for (i, (label, ratio)) in configs.iter().enumerate() {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([
                "bench",
                "--transport",
                &name,
                "--voters",
                &voters.to_string(),
                "--trials",
                "0",
                "--skip-catch-up",
            ]);
            for var in [
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_TRACES_SAMPLER_ARG",
                "OTEL_SERVICE_NAME",
                "OTEL_SDK_DISABLED",
            ] {
                cmd.env_remove(var);
            }
            if let Some(r) = ratio {
                cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()).env("OTEL_TRACES_SAMPLER_ARG", r);
            }
            let before = collector.count();
            let out = match cmd.output() {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                Ok(o) => {
                    eprintln!("chaos: the {label} run failed: {}", String::from_utf8_lossy(&o.stderr).trim());
                    return ExitCode::from(1);
                }
                Err(e) => {
                    eprintln!("chaos: cannot run {}: {e}", exe.display());
                    return ExitCode::from(1);
                }
            };
            let field = |key: &str| -> Option<f64> {
                out.lines()
                    .find(|l| l.starts_with("voters="))?
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(key)?.parse().ok())
            };
            let (Some(rate), Some(n)) = (field("votes/s="), field("committed=")) else {
                eprintln!("chaos: no throughput figure in the {label} run's output: {out}");
                return ExitCode::from(1);
            };
            rates[i].push(rate);
            committed[i] += n as u64;
            spans[i] += collector.count() - before;
            println!("  {label:<5} {rate:.0} votes/s");
        }
    }
    let off = median(rates[0].clone());
    for (i, (label, _)) in configs.iter().enumerate() {
        let m = median(rates[i].clone());
        let per_vote = spans[i] as f64 / committed[i].max(1) as f64;
        println!(
            "tracing {label:<5} votes/s={m:.0} ratio_to_off={:.2} spans_received_per_vote={per_vote:.1} (runs: {})",
            m / off,
            rates[i].iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// The throughput figures on node processes: each of `voters` with each of `auth`,
/// interleaved over `rounds` (medians of votes/s, p50 and p99), and with both `on` and
/// `off` the ratio of secure to insecure votes/s.
fn bench_throughput(
    kind: ballot_chaos::TransportKind,
    voters: &[usize],
    auth: &[Auth],
    rounds: usize,
) -> Result<(), ExitCode> {
    use ballot_chaos::bench;
    println!("chaos bench: {kind} node processes on 127.0.0.1, 3 proposers, 3 acceptors, 2 learners, fsync on");
    let mut figures: std::collections::BTreeMap<(usize, String), Vec<bench::ProcFigures>> = Default::default();
    for round in 0..rounds {
        for &n in voters {
            let n = n.max(1);
            let per = if n == 1 { 2000 } else { (64_000 / n).max(1) };
            for &a in auth {
                let f = bench::proc_throughput(kind, n, per, 11 + round as u64, a == Auth::Off).map_err(|e| {
                    eprintln!("chaos: bench failed: {e}");
                    ExitCode::from(1)
                })?;
                if rounds > 1 {
                    println!("  round {round} voters={n} auth={a} votes/s={:.0}", f.votes_per_sec());
                }
                figures.entry((n, a.to_string())).or_default().push(f);
            }
        }
    }
    for &n in voters {
        let n = n.max(1);
        for &a in auth {
            let runs = &figures[&(n, a.to_string())];
            let f = &runs[0];
            let not_ok: String = f.not_ok.iter().map(|(e, n)| format!(" {e}={n}")).collect();
            println!(
                "voters={n:<4} auth={a:<3} committed={:<6} votes/s={:.0} latency p50={:.2}ms p99={:.2}ms{}",
                f.committed,
                median(runs.iter().map(|f| f.votes_per_sec()).collect()),
                median(runs.iter().map(|f| f.percentile(50.0)).collect()),
                median(runs.iter().map(|f| f.percentile(99.0)).collect()),
                if not_ok.is_empty() { String::new() } else { format!(" not ok:{not_ok}") }
            );
        }
        if let (Some(on), Some(off)) = (figures.get(&(n, "on".into())), figures.get(&(n, "off".into()))) {
            let rate = |v: &Vec<bench::ProcFigures>| median(v.iter().map(|f| f.votes_per_sec()).collect());
            println!(
                "voters={n:<4} secure/insecure votes/s = {:.2} (medians of {rounds} rounds)",
                rate(on) / rate(off)
            );
        }
    }
    Ok(())
}

/// Catch-up and failover on node processes (`insecure`: nodes run --insecure).
fn bench_procs(kind: ballot_chaos::TransportKind, trials: usize, skip_catch_up: bool, insecure: bool) -> ExitCode {
    use ballot_chaos::bench;
    match (!skip_catch_up).then(|| bench::catch_up(kind, 100_000, 13, insecure)) {
        None => {}
        Some(Ok((ms, slots))) => println!(
            "catch-up: a learner restarted 100,000 votes ({slots} slots) behind has caught up {ms:.0} ms after its restart (process start included)"
        ),
        Some(Err(e)) => {
            eprintln!("chaos: catch-up bench failed: {e}");
            return ExitCode::from(1);
        }
    }
    if trials > 0 {
        let client_retry = ballot_runtime::SubmitOptions::default().retry_every;
        for (what, retry) in [
            ("failover (probe every 20 ms)", None),
            ("client failover (client's own retry period)", Some(client_retry)),
        ] {
            match bench::failover(kind, trials, 8, 12, retry, insecure) {
                Ok(t) => println!(
                    "{what}: kill -9 of the leader under 8 voters' load -> next committed vote: trials={} p50={:.0}ms p99={:.0}ms min={:.0}ms max={:.0}ms",
                    t.len(),
                    bench::percentile(&t, 50.0),
                    bench::percentile(&t, 99.0),
                    t.first().copied().unwrap_or(f64::NAN),
                    t.last().copied().unwrap_or(f64::NAN)
                ),
                Err(e) => {
                    eprintln!("chaos: failover bench failed: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    }
    ExitCode::SUCCESS
}
