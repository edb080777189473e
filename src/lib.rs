//! prmonitor keeps a PostgreSQL copy of the pull requests and check runs of the
//! repositories where its GitHub App is installed.
//!
//! The layout follows the data flow (DESIGN.md): `webhook` verifies and
//! stores deliveries, `queue` holds the jobs they become, `db` owns the
//! schema and the pool, `http` the routes, `startup` wires them together.

// unwrap/expect are denied by the workspace's lints (tests may use them, clippy.toml).

pub mod cli;
pub mod config;
pub mod db;
/// `prmonitor demo`: the service against the simulator, in one process.
#[cfg(feature = "simulator")]
pub mod demo;
/// The change feed's hub: one listener per process, fanned out to the streams.
pub mod feed;
/// The entry points that the fuzz targets under `fuzz/` and their regression
/// test (which replays `fuzz/regressions/`) share: one copy of each target's logic.
pub mod fuzzing;
pub mod github;
pub mod http;
/// Newtypes for the identifiers that are easy to confuse.
pub mod ids;
pub mod jitter;
pub mod monitor;
pub mod process_metrics;
pub mod progress;
pub mod queue;
pub mod scheduler;
/// The GitHub App created through `/setup`: manifest, sealed storage, applying it.
pub mod setup;
/// The service wired to the GitHub simulator: shared by the demo, `prmonitor sim`,
/// the test kit and the benchmarks.
#[cfg(feature = "simulator")]
pub mod simulated;
pub mod startup;
pub mod supervise;
pub mod telemetry;
pub mod webhook;
pub mod worker;
