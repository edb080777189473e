//! GitHub's JSON, as far as prmonitor reads it. The same structs read the REST
//! API and the objects embedded in webhook payloads. Unknown fields are
//! ignored; fields GitHub may omit have defaults.

use crate::ids::{GithubRepoId, InstallationId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    pub login: String,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Label {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PullRequest {
    pub id: i64,
    /// GitHub's global id: GraphQL's `id`.
    #[serde(default)]
    pub node_id: Option<String>,
    pub number: i64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// `open` or `closed`; merged is `closed` with `merged_at` set.
    pub state: String,
    #[serde(default)]
    pub draft: bool,
    pub html_url: String,
    /// Null for a deleted account.
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub assignees: Vec<User>,
    pub head: GitRef,
    pub base: GitRef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
}

/// A commit status: an item of the combined status
/// (`GET …/commits/{ref}/status`), and the `status` webhook's payload,
/// which carries the same fields at its top level (its `id` is the status's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CommitStatus {
    pub id: i64,
    #[serde(default)]
    pub node_id: Option<String>,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
    pub context: String,
    /// Only `GET …/statuses` and webhooks name the poster; the combined status does not.
    #[serde(default)]
    pub creator: Option<User>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET …/branches/{branch}/protection/required_status_checks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RequiredStatusChecks {
    #[serde(default)]
    pub strict: bool,
    /// The names required (check-run names or status contexts). GitHub
    /// also lists them under `checks` with the App each must come from.
    #[serde(default)]
    pub contexts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IdOnly {
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct App {
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CheckRunPullRequest {
    pub number: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CheckRun {
    pub id: i64,
    /// GitHub's global id: GraphQL's `id`.
    #[serde(default)]
    pub node_id: Option<String>,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub details_url: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
    #[serde(default)]
    pub check_suite: Option<IdOnly>,
    #[serde(default)]
    pub app: Option<App>,
    /// Empty for forks: match by head SHA instead.
    #[serde(default)]
    pub pull_requests: Vec<CheckRunPullRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Repository {
    pub id: GithubRepoId,
    pub name: String,
    pub full_name: String,
    pub owner: User,
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Installation {
    pub id: InstallationId,
    #[serde(default)]
    pub account: Option<User>,
    #[serde(default)]
    pub suspended_at: Option<DateTime<Utc>>,
}

/// The list endpoints that wrap their items in an object (`total_count` + items).
#[derive(Debug, Deserialize)]
pub(crate) struct Wrapped<T> {
    #[serde(alias = "check_runs", alias = "repositories", alias = "installations", alias = "statuses")]
    pub items: Vec<T>,
}

/// One attempt in the App's webhook deliveries listing
/// (`GET /app/hook/deliveries`). Attempts of one delivery (a redelivery)
/// share its `guid`, which is the `X-GitHub-Delivery` intake stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct HookDeliverySummary {
    pub id: u64,
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation_id: Option<i64>,
    #[serde(default)]
    pub repository_id: Option<i64>,
}

/// One attempt with the request GitHub sent (`GET /app/hook/deliveries/{id}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HookDeliveryDetail {
    #[serde(flatten)]
    pub summary: HookDeliverySummary,
    pub request: HookDeliveryRequest,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HookDeliveryRequest {
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, serde_json::Value>,
    /// The payload as JSON (GitHub re-serialises it: not the bytes it signed).
    pub payload: serde_json::Value,
}

/// One page of the deliveries listing and the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct HookDeliveryPage {
    pub items: Vec<HookDeliverySummary>,
    pub next_cursor: Option<String>,
}
