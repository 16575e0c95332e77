//! `ballot`: vote and read results from the command line. See `ballot_nodes::cli`.

use ballot_nodes::telemetry::{self, TelemetryConfig};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ballot_nodes::cli::CliArgs::parse();
    // With OTEL_EXPORTER_OTLP_ENDPOINT set, each vote is the root of a trace that runs
    // through the cluster; the CLI reports as OTEL_SERVICE_NAME or `ballot-cli`.
    let telemetry = match TelemetryConfig::from_env(None, "ballot-cli", None) {
        Ok(Some(config)) => telemetry::install(Some(&config), None, "warn", true),
        Ok(None) => None,
        Err(e) => {
            // The vote matters more than its trace.
            eprintln!("ballot: tracing is off: {e}");
            None
        }
    };
    let code = ballot_nodes::cli::main_with(args);
    // Spans of this command go to the collector before it exits.
    drop(telemetry);
    code
}
