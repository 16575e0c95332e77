//! The ballot application: a node as an OS process (`ballot-node`) and the voter's
//! command line (`ballot`). The only crate that parses command-line flags; it wires the
//! runtime, the disk, the transports, telemetry and the operator plane together.
//!
//! # Layout
//! - [`process`]: a node as an OS process: flags, transports, disk, signals.
//! - [`cli`]: the `ballot` command: vote, results, candidates, status, interactive, certs.

#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod process;
