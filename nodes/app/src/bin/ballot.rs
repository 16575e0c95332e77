//! `ballot`: vote and read results from the command line. See `ballot_app::cli`.

use ballot_telemetry::{self as telemetry, TelemetryConfig};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ballot_app::cli::CliArgs::parse();
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
    let code = ballot_app::cli::main_with(args);
    // Spans of this command go to the collector before it exits.
    drop(telemetry);
    code
}
