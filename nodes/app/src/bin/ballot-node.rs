//! `ballot-node`: one ballot node as an OS process. See `ballot_app::process`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ballot_app::process::main_with(ballot_app::process::NodeArgs::parse())
}
