//! prmonitor keeps a PostgreSQL copy of the pull requests and check runs of the
//! repositories where its GitHub App is installed.
//!
//! The layout follows the data flow (DESIGN.md): `webhook` verifies and
//! stores deliveries, `queue` holds the jobs they become, `db` owns the
//! schema and the pool, `http` the routes, `startup` wires them together.

// unwrap/expect belong in tests and start-up only; elsewhere errors are handled.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
/// The entry points that the fuzz targets under `fuzz/` and their regression
/// test (which replays `fuzz/regressions/`) share: one copy of each target's logic.
pub mod fuzzing;
pub mod github;
pub mod http;
pub mod monitor;
pub mod prng;
pub mod progress;
pub mod queue;
pub mod scheduler;
pub mod sim;
pub mod startup;
pub mod supervise;
pub mod telemetry;
pub mod webhook;
pub mod worker;
