//! Integration tests: one binary, the real service over real HTTP, a real
//! PostgreSQL database per test. The harness is `prmonitor-testkit`.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod board;
mod browser;
mod change_detection;
mod change_feed;
mod check_rules;
mod ci_state;
mod deliveries_cli;
mod deliveries_simulator;
mod deploy_kit;
mod flaky_stuck;
mod gap_recovery;
mod github_client;
mod graphql_reads;
mod graphql_simulator;
mod health;
mod identifiers;
mod installations;
mod json_schema;
mod latency;
mod merge_queues;
mod never_backwards;
mod operations;
mod queue_races;
mod read_api;
mod repairs;
mod scenarios;
mod schema_drift;
mod setup_flow;
mod simulator;
mod survival;
mod sweeps;
mod webhook_intake;
mod webhooks_to_rows;
mod worker_faults;

/// The binary under test, for the tests that run it as a child process.
const PRMONITOR: prmonitor_testkit::Binary = prmonitor_testkit::Binary(env!("CARGO_BIN_EXE_prmonitor"));
