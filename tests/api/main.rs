//! Integration tests: one binary, the real service over real HTTP, a real
//! PostgreSQL database per test. The harness is `prmonitor-testkit`.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod github;
mod health;
mod installations;
mod intake;
mod json_schema;
mod pipeline;
mod process;
mod queue;
mod read_api;
mod schema_drift;
mod simulator;
mod survival;
mod sweeps;
mod webhooks_to_rows;
mod worker;

/// The binary under test, for the tests that run it as a child process.
const PRMONITOR: prmonitor_testkit::Binary = prmonitor_testkit::Binary(env!("CARGO_BIN_EXE_prmonitor"));
