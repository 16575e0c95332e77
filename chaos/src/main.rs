//! `chaos`: run ballot scenarios and report a verdict and an exit code.

use ballot_chaos::runner::{self, verdict_word, RunConfig, Verdict};
use clap::{Parser, Subcommand, ValueEnum};
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
        #[arg(long, value_enum, default_value_t = TransportKind::Mem)]
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
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TransportKind {
    /// In one process, on virtual time, deterministic from the seed.
    Mem,
    /// Real processes over TCP (not built yet).
    Tcp,
    /// Real processes over ZeroMQ (not built yet).
    Zmq,
}

fn random_seed() -> u64 {
    // The seed is printed, so any unpredictable source will do.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() >> 11 // fits in 53 bits, so it survives being pasted anywhere
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Run { paths, transport, seed, log, junit } = cli.cmd;
    if transport != TransportKind::Mem {
        eprintln!(
            "chaos: transport '{}' is not available yet; use --transport mem",
            format!("{transport:?}").to_lowercase()
        );
        return ExitCode::from(2);
    }
    let files = match runner::collect_scenarios(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = seed.unwrap_or_else(random_seed);
    println!("chaos: seed {seed} (transport mem)");
    let cfg = RunConfig { seed, record_events: log.is_some(), ..RunConfig::default() };
    let mut results = Vec::new();
    let mut events = String::new();
    for file in &files {
        let r = runner::run_scenario(file, &cfg);
        for line in &r.printed {
            println!("      log: {line}");
        }
        println!(
            "{:<5} {}  seed={}  virtual={:.3}s  wall={:.3}s",
            verdict_word(&r.verdict),
            file.display(),
            r.seed,
            r.virtual_secs,
            r.wall_secs
        );
        if let Verdict::Fail(m) | Verdict::ScriptError(m) = &r.verdict {
            println!("      {m}");
            println!("      reproduce: chaos run {} --seed {}", file.display(), r.seed);
        }
        for line in &r.events {
            events.push_str(line);
            events.push('\n');
        }
        results.push(r);
    }
    let passed = results.iter().filter(|r| r.verdict == Verdict::Pass).count();
    println!("{} passed, {} failed", passed, results.len() - passed);
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
