//! `ballot`: vote and read results from the command line. See `ballot_nodes::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ballot_nodes::cli::main_with(ballot_nodes::cli::CliArgs::parse())
}
