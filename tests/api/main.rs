//! Integration tests: one binary, the real service over real HTTP, a real
//! PostgreSQL database per test.

mod compare;
mod github;
mod health;
mod helpers;
mod intake;
mod json_schema;
mod never_backwards;
mod pipeline;
mod process;
mod queue;
mod read_api;
mod schema_drift;
mod simulator;
mod survival;
mod worker;
