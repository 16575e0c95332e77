//! Chaos scenarios for ballot: Rhai scripts that start a cluster, cast votes, break
//! nodes and the network, and assert on what must hold. On the in-memory transport a
//! whole cluster runs in one process on virtual time, and every random choice comes from
//! the seed, so a scenario and a seed give the same event log byte for byte.
//!
//! # Layout
//! - [`cluster`]: a cluster on either backend and the verbs scenarios use: faults (one
//!   validation), votes, results, the progress check.
//! - [`mem_backend`], [`proc_backend`]: where the nodes run: tasks on one runtime, or OS
//!   processes over tcp or zmq.
//! - [`discovery`]: discovery in scenarios (the real process on tcp/zmq, the same registry
//!   in-process on mem).
//! - [`invariants`]: agreement, validity, durability, no double count, convergence.
//! - [`script`]: the Rhai scenario API.
//! - [`sandbox`]: the limits every script runs under (sizes, operations, nesting, no
//!   `eval`, imports only from below the scenario's folder).
//! - [`report`]: the HTML page of a run (`chaos run --report`), drawn from its event log.
//! - [`runner`]: runs scenario files, prints verdicts, writes the event log and JUnit.
//! - [`explore`]: `chaos explore`, random fault schedules rendered as scenarios, one per
//!   seed; a failure is kept as the script that failed.
//! - [`bench`]: throughput and scenario-suite figures for `chaos bench`.

#![warn(missing_docs, unreachable_pub)]

pub mod bench;
pub mod cluster;
pub mod discovery;
pub mod explore;
pub mod invariants;
pub mod mem_backend;
pub mod proc_backend;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod script;

pub use cluster::{Cluster, ClusterSpec, TransportKind, VoteOptions, VoteOutcome};
pub use runner::{collect_scenarios, exit_code, run_scenario, RunConfig, ScenarioResult, Verdict};
