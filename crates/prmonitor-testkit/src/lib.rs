//! prmonitor's test kit: one harness for the integration tests, the
//! benchmarks and the chaos soak.
//!
//! - [`database`]: a fresh database per test, copied from a migrated template.
//! - [`app`]: the service in this process on port 0, signed deliveries.
//! - [`process`]: the `prmonitor` binary as a child process.
//! - [`world`]: [`TestWorld`], the simulator wired to the whole service.
//! - [`verify`]: does the database equal the simulator's world?
//! - [`browser`]: headless Chromium through ChromeDriver, for the board.
//! - [`sse`]: Server-Sent Events read as a browser reads them.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod browser;
pub mod database;
pub mod process;
pub mod sse;
pub mod verify;
pub mod world;

use std::path::{Path, PathBuf};

pub use app::{
    fixture, new_delivery_id, payload_fixtures, sign, spawn_app, spawn_app_on, spawn_app_with, test_settings,
    Delivery, TestApp, TEST_SECRET,
};
pub use database::{connect, count, server_url, url_for, TestDatabase};
pub use process::{Binary, Serve};
pub use world::{settings_for, GitHub, TestWorld, WorldBuilder};

/// The repository's top folder (migrations/, fixtures/).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
