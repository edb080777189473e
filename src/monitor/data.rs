//! `PrData`, `CheckRunData` and `StatusData`: GitHub's pull requests, check
//! runs and commit statuses as the pipeline sees them, built from the same
//! JSON whether it came from the REST API or inside a webhook payload.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::github::models::{CheckRun, CommitStatus, PullRequest};
use crate::ids::{CommitSha, PullRequestNumber};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

impl PrState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Merged => "merged",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            "merged" => Some(Self::Merged),
            _ => None,
        }
    }
}

impl fmt::Display for PrState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrData {
    pub github_id: i64,
    /// GitHub's global id, which GraphQL objects are joined by. Kept, not compared.
    pub node_id: Option<String>,
    pub number: PullRequestNumber,
    pub title: String,
    /// `ghost` when GitHub no longer knows the account.
    pub author: String,
    pub author_id: Option<i64>,
    /// GitHub's `state` (`open` / `closed`); see [`PrData::to_pr_state`].
    pub state: String,
    pub draft: bool,
    pub base_branch: String,
    pub base_sha: CommitSha,
    pub head_branch: String,
    pub head_sha: CommitSha,
    pub html_url: String,
    pub body: Option<String>,
    /// Sorted: GitHub's order carries no meaning and must not look like a change.
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("pull request #{number}: {reason}")]
pub struct DataError {
    pub number: i64,
    pub reason: String,
}

impl PrData {
    pub fn from_github(pr: &PullRequest) -> Result<Self, DataError> {
        let number = PullRequestNumber::from_github(pr.number)
            .ok_or_else(|| DataError { number: pr.number, reason: "number out of range".into() })?;
        let mut labels: Vec<String> = pr.labels.iter().map(|l| l.name.clone()).collect();
        labels.sort();
        labels.dedup();
        let mut assignees: Vec<String> = pr.assignees.iter().map(|u| u.login.clone()).collect();
        assignees.sort();
        assignees.dedup();
        Ok(Self {
            github_id: pr.id,
            node_id: pr.node_id.clone(),
            number,
            title: pr.title.clone(),
            author: pr.user.as_ref().map_or_else(|| "ghost".to_owned(), |u| u.login.clone()),
            author_id: pr.user.as_ref().map(|u| u.id),
            state: pr.state.clone(),
            draft: pr.draft,
            base_branch: pr.base.ref_name.clone(),
            base_sha: CommitSha(pr.base.sha.clone()),
            head_branch: pr.head.ref_name.clone(),
            head_sha: CommitSha(pr.head.sha.clone()),
            html_url: pr.html_url.clone(),
            body: pr.body.clone(),
            labels,
            assignees,
            created_at: pr.created_at,
            updated_at: pr.updated_at,
            closed_at: pr.closed_at,
            merged_at: pr.merged_at,
        })
    }

    /// Reads the `pull_request` object of a webhook payload.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, DataError> {
        let number = value.get("number").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let pr: PullRequest =
            serde_json::from_value(value.clone()).map_err(|e| DataError { number, reason: e.to_string() })?;
        Self::from_github(&pr)
    }

    /// Open, closed, or merged (closed with `merged_at`).
    pub fn to_pr_state(&self) -> PrState {
        match (self.state.as_str(), self.merged_at) {
            (_, Some(_)) => PrState::Merged,
            ("open", None) => PrState::Open,
            _ => PrState::Closed,
        }
    }

    /// What the jsonb `metadata` column keeps beyond the typed columns.
    pub fn metadata(&self) -> serde_json::Value {
        json!({ "author_id": self.author_id, "github_state": self.state })
    }
}

/// A check run's status. GitHub documents the first six; anything else is kept as unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed,
    Waiting,
    Requested,
    Pending,
    Unknown,
}

impl CheckStatus {
    pub fn parse(value: &str) -> Self {
        match value {
            "queued" => Self::Queued,
            "in_progress" => Self::InProgress,
            "completed" => Self::Completed,
            "waiting" => Self::Waiting,
            "requested" => Self::Requested,
            "pending" => Self::Pending,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Waiting => "waiting",
            Self::Requested => "requested",
            Self::Pending => "pending",
            Self::Unknown => "unknown",
        }
    }
}

/// Every conclusion GitHub documents, plus an explicit unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConclusion {
    Success,
    Failure,
    Neutral,
    Cancelled,
    TimedOut,
    ActionRequired,
    Stale,
    Skipped,
    StartupFailure,
    Unknown,
}

impl CheckConclusion {
    pub fn parse(value: &str) -> Self {
        match value {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "neutral" => Self::Neutral,
            "cancelled" => Self::Cancelled,
            "timed_out" => Self::TimedOut,
            "action_required" => Self::ActionRequired,
            "stale" => Self::Stale,
            "skipped" => Self::Skipped,
            "startup_failure" => Self::StartupFailure,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Neutral => "neutral",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::ActionRequired => "action_required",
            Self::Stale => "stale",
            Self::Skipped => "skipped",
            Self::StartupFailure => "startup_failure",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRunData {
    /// Above 2^31 on GitHub today.
    pub github_id: i64,
    /// GitHub's global id (GraphQL's `id`). Kept, not compared.
    pub node_id: Option<String>,
    pub check_suite_id: Option<i64>,
    pub head_sha: CommitSha,
    pub name: String,
    pub app_slug: Option<String>,
    /// GitHub's status text; see [`CheckRunData::to_check_status`].
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    /// The run's page on GitHub, where its logs are.
    pub html_url: Option<String>,
    pub output_title: Option<String>,
    pub output_summary: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl CheckRunData {
    pub fn from_github(run: &CheckRun) -> Self {
        Self {
            github_id: run.id,
            node_id: run.node_id.clone(),
            check_suite_id: run.check_suite.as_ref().map(|s| s.id),
            head_sha: CommitSha(run.head_sha.clone()),
            name: run.name.clone(),
            app_slug: run.app.as_ref().and_then(|a| a.slug.clone()),
            status: run.status.clone(),
            conclusion: run.conclusion.clone(),
            details_url: run.details_url.clone(),
            html_url: run.html_url.clone(),
            output_title: run.output.as_ref().and_then(|o| o.title.clone()),
            output_summary: run.output.as_ref().and_then(|o| o.summary.clone()),
            started_at: run.started_at,
            completed_at: run.completed_at,
        }
    }

    /// Reads the `check_run` object of a webhook payload.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, DataError> {
        let run: CheckRun = serde_json::from_value(value.clone()).map_err(|e| DataError {
            number: value.get("id").and_then(serde_json::Value::as_i64).unwrap_or(0),
            reason: e.to_string(),
        })?;
        Ok(Self::from_github(&run))
    }

    pub fn to_check_status(&self) -> CheckStatus {
        CheckStatus::parse(&self.status)
    }

    pub fn to_check_conclusion(&self) -> Option<CheckConclusion> {
        self.conclusion.as_deref().map(CheckConclusion::parse)
    }
}

/// The states a commit status can have.
pub const STATUS_STATES: [&str; 4] = ["error", "failure", "pending", "success"];

/// The latest status of one context of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusData {
    /// REST's id, which grows with every status posted; GraphQL does not give it.
    pub github_id: Option<i64>,
    pub node_id: Option<String>,
    pub sha: CommitSha,
    pub context: String,
    /// One of [`STATUS_STATES`].
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub creator: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the read that found it began, for a status read without an id
    /// (GraphQL): what orders it against a row of the same second.
    pub read_at: Option<DateTime<Utc>>,
}

impl StatusData {
    /// A status of commit `sha` as REST gives it; `None` for a state GitHub
    /// does not document (the table refuses it, and nothing could judge it).
    pub fn from_github(sha: &CommitSha, status: &CommitStatus) -> Option<Self> {
        STATUS_STATES.contains(&status.state.as_str()).then(|| Self {
            github_id: Some(status.id),
            node_id: status.node_id.clone(),
            sha: sha.clone(),
            context: status.context.clone(),
            state: status.state.clone(),
            description: status.description.clone(),
            target_url: status.target_url.clone(),
            creator: status.creator.as_ref().map(|u| u.login.clone()),
            created_at: status.created_at,
            updated_at: status.updated_at,
            read_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> serde_json::Value {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github/payloads/");
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}{path}")).expect("fixture"))
            .expect("json")
    }

    #[test]
    fn webhook_pull_requests_read_into_pr_data() {
        let opened = PrData::from_json(&fixture("pull_request/opened.json")["pull_request"]).expect("opened");
        assert_eq!(opened.number, PullRequestNumber(2));
        assert_eq!(opened.author, "Codertocat");
        assert_eq!(opened.to_pr_state(), PrState::Open);
        assert_eq!(opened.head_sha.as_str(), "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
        let closed = PrData::from_json(&fixture("pull_request/closed.json")["pull_request"]).expect("closed");
        assert_eq!(closed.to_pr_state(), PrState::Closed);
        let null_body =
            PrData::from_json(&fixture("pull_request/opened.with-null-body.json")["pull_request"]);
        assert_eq!(null_body.expect("null body").body, None);
    }

    #[test]
    fn merged_is_closed_with_merged_at() {
        let mut pr = PrData::from_json(&fixture("pull_request/closed.json")["pull_request"]).expect("closed");
        pr.merged_at = Some(pr.updated_at);
        assert_eq!(pr.to_pr_state(), PrState::Merged);
        assert_eq!(pr.metadata()["github_state"], "closed");
    }

    #[test]
    fn webhook_check_runs_read_into_check_run_data() {
        let run = CheckRunData::from_json(&fixture("check_run/completed.json")["check_run"]).expect("run");
        assert_eq!(run.to_check_status(), CheckStatus::Completed);
        assert_eq!(run.to_check_conclusion(), Some(CheckConclusion::Success));
        let queued = CheckRunData::from_json(&fixture("check_run/created.json")["check_run"]).expect("run");
        assert_eq!(queued.to_check_status(), CheckStatus::Queued);
        assert_eq!(queued.to_check_conclusion(), None);
    }

    #[test]
    fn every_documented_conclusion_parses_and_others_are_unknown() {
        for name in [
            "success",
            "failure",
            "neutral",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
            "skipped",
            "startup_failure",
        ] {
            assert_eq!(CheckConclusion::parse(name).as_str(), name);
        }
        assert_eq!(CheckConclusion::parse("exploded"), CheckConclusion::Unknown);
        assert_eq!(CheckStatus::parse("weird"), CheckStatus::Unknown);
    }
}
