//! Rows of `pull_requests`, `check_runs` and `pr_state_history`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{check_runs, pr_state_history, pull_requests};
use crate::ids::{CommitSha, PullRequestNumber, RepositoryId};

/// A stored pull request, as change detection compares it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = pull_requests)]
pub struct StoredPr {
    pub id: i64,
    pub github_id: i64,
    pub number: PullRequestNumber,
    pub title: String,
    pub author: String,
    pub state: String,
    pub draft: bool,
    pub base_branch: String,
    pub base_sha: CommitSha,
    pub head_branch: String,
    pub head_sha: CommitSha,
    pub html_url: String,
    pub body: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub gh_created_at: DateTime<Utc>,
    pub gh_updated_at: DateTime<Utc>,
    pub gh_closed_at: Option<DateTime<Utc>>,
    pub gh_merged_at: Option<DateTime<Utc>>,
}

/// A stored check run, as change detection compares it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = check_runs)]
pub struct StoredCheckRun {
    pub id: i64,
    pub github_id: i64,
    pub check_suite_id: Option<i64>,
    pub head_sha: CommitSha,
    pub name: String,
    pub app_slug: Option<String>,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub html_url: Option<String>,
    pub output_title: Option<String>,
    pub output_summary: Option<String>,
    pub gh_started_at: Option<DateTime<Utc>>,
    pub gh_completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = pr_state_history)]
pub struct HistoryRow {
    pub pull_request_id: i64,
    pub field: &'static str,
    pub old_value: Option<String>,
    pub new_value: String,
    pub gh_changed_at: DateTime<Utc>,
    pub cause: &'static str,
    pub delivery_id: Option<String>,
}

pub const HISTORY_ROW_COLUMNS: usize = 7;

/// The stored PRs of `repository_id` among `numbers`: one query for a whole batch.
pub async fn load_by_numbers(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    numbers: &[PullRequestNumber],
) -> QueryResult<Vec<StoredPr>> {
    let mut rows = Vec::with_capacity(numbers.len());
    // One array parameter per chunk: large batches stay far from any limit.
    for chunk in numbers.chunks(10_000) {
        rows.extend(
            pull_requests::table
                .filter(pull_requests::repository_id.eq(repository_id))
                .filter(pull_requests::number.eq_any(chunk))
                .select(StoredPr::as_select())
                .load(conn)
                .await?,
        );
    }
    Ok(rows)
}

/// The stored check runs with these GitHub ids: one query for a whole batch.
pub async fn load_check_runs(
    conn: &mut AsyncPgConnection,
    github_ids: &[i64],
) -> QueryResult<Vec<StoredCheckRun>> {
    let mut rows = Vec::with_capacity(github_ids.len());
    for chunk in github_ids.chunks(10_000) {
        rows.extend(
            check_runs::table
                .filter(check_runs::github_id.eq_any(chunk))
                .select(StoredCheckRun::as_select())
                .load(conn)
                .await?,
        );
    }
    Ok(rows)
}

/// Head SHAs of the repository's open PRs: the commits whose checks may still change.
pub async fn open_heads(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
) -> QueryResult<Vec<(PullRequestNumber, String)>> {
    pull_requests::table
        .filter(pull_requests::repository_id.eq(repository_id))
        .filter(pull_requests::state.eq("open"))
        .filter(pull_requests::deleted_at.is_null())
        .order(pull_requests::number)
        .select((pull_requests::number, pull_requests::head_sha))
        .load(conn)
        .await
}

/// The base branches of the repository's open PRs.
pub async fn open_base_branches(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
) -> QueryResult<Vec<String>> {
    pull_requests::table
        .filter(pull_requests::repository_id.eq(repository_id))
        .filter(pull_requests::state.eq("open"))
        .filter(pull_requests::deleted_at.is_null())
        .select(pull_requests::base_branch)
        .distinct()
        .load(conn)
        .await
}

/// Runs first seen longer ago than this are no longer re-read by sweeps: a
/// run GitHub never finished must not cost a call on every sweep forever.
pub const UNFINISHED_CHECKS_WINDOW_DAYS: i32 = 14;
/// At most this many commits a sweep, newest first.
pub const MAX_UNFINISHED_CHECK_HEADS: i64 = 100;

/// Commits with check runs not completed in the stored rows (first seen
/// within [`UNFINISHED_CHECKS_WINDOW_DAYS`]), newest first: the sweep reads
/// them whether or not they are an open PR's head.
pub async fn unfinished_check_heads(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
) -> QueryResult<Vec<String>> {
    use super::schema::check_runs;
    let since = chrono::Utc::now() - chrono::Duration::days(i64::from(UNFINISHED_CHECKS_WINDOW_DAYS));
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = check_runs::table
        .filter(check_runs::repository_id.eq(repository_id))
        .filter(check_runs::status.ne("completed"))
        .filter(check_runs::first_seen_at.gt(since))
        .order(check_runs::first_seen_at.desc())
        .select((check_runs::head_sha, check_runs::first_seen_at))
        .limit(MAX_UNFINISHED_CHECK_HEADS * 4)
        .load(conn)
        .await?;
    let mut heads: Vec<String> = Vec::new();
    for (sha, _) in rows {
        if !heads.contains(&sha) {
            heads.push(sha);
        }
    }
    heads.truncate(MAX_UNFINISHED_CHECK_HEADS as usize);
    Ok(heads)
}

/// Commits that stopped being the head of one of the repository's PRs
/// (a push) after `since`, newest first, at most
/// [`MAX_UNFINISHED_CHECK_HEADS`]: the sweep reads their check runs once, as
/// a run created there while its webhook was lost is found nowhere else.
pub async fn replaced_heads(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    since: chrono::DateTime<chrono::Utc>,
) -> QueryResult<Vec<String>> {
    use super::schema::pr_state_history;
    let rows: Vec<Option<String>> = pr_state_history::table
        .inner_join(pull_requests::table)
        .filter(pull_requests::repository_id.eq(repository_id))
        .filter(pr_state_history::field.eq("head_sha"))
        .filter(pr_state_history::recorded_at.ge(since))
        .filter(pr_state_history::old_value.is_not_null())
        .order(pr_state_history::recorded_at.desc())
        .select(pr_state_history::old_value)
        .limit(MAX_UNFINISHED_CHECK_HEADS * 4)
        .load(conn)
        .await?;
    let mut heads: Vec<String> = Vec::new();
    for sha in rows.into_iter().flatten() {
        if !heads.contains(&sha) {
            heads.push(sha);
        }
    }
    heads.truncate(MAX_UNFINISHED_CHECK_HEADS as usize);
    Ok(heads)
}

/// What a sweep's survey compares with GitHub's answer: a PR's update time,
/// head, draft flag and state.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct SurveyedPr {
    pub number: PullRequestNumber,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub head_sha: String,
    pub draft: bool,
    /// `open`, `closed` or `merged`.
    pub state: String,
}

/// The repository's open PRs, and the PRs numbered `also` whatever their state.
pub async fn surveyed_prs(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    also: &[PullRequestNumber],
) -> QueryResult<Vec<SurveyedPr>> {
    pull_requests::table
        .filter(pull_requests::repository_id.eq(repository_id))
        .filter(pull_requests::deleted_at.is_null())
        .filter(pull_requests::state.eq("open").or(pull_requests::number.eq_any(also)))
        .select((
            pull_requests::number,
            pull_requests::gh_updated_at,
            pull_requests::head_sha,
            pull_requests::draft,
            pull_requests::state,
        ))
        .load(conn)
        .await
}

/// The stored check runs of `shas` as (head SHA, name, status, conclusion,
/// GitHub id): what a head's rollup is computed from.
pub async fn runs_of_heads(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    shas: &[String],
) -> QueryResult<Vec<(String, String, String, Option<String>, i64)>> {
    if shas.is_empty() {
        return Ok(Vec::new());
    }
    check_runs::table
        .filter(check_runs::repository_id.eq(repository_id))
        .filter(check_runs::head_sha.eq_any(shas))
        .select((
            check_runs::head_sha,
            check_runs::name,
            check_runs::status,
            check_runs::conclusion,
            check_runs::github_id,
        ))
        .load(conn)
        .await
}
