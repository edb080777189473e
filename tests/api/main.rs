//! Integration tests: one binary, the real service over real HTTP, a real
//! PostgreSQL database per test.

mod health;
mod helpers;
mod intake;
mod process;
mod schema_drift;
