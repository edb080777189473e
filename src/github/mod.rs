//! GitHub access: octocrab for transport and App auth; this module owns
//! conditional requests (ETags in `http_cache`), pacing by rate-limit headers,
//! retries, pagination and call counting (DESIGN.md §5 rules 6–7).

pub mod cache;
mod client;
pub mod graphql;
pub mod link;
pub mod models;
pub mod pacing;
pub mod policy;

pub use client::{
    convert_manifest_code, Fetched, GitHubClient, GitHubError, Listing, Page, PageItems, PullQuery, PullState,
};
pub use pacing::{Budget, Purpose};
