//! `ballot-node`: one ballot node as an OS process. See `ballot_nodes::process`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ballot_nodes::process::main_with(ballot_nodes::process::NodeArgs::parse())
}
