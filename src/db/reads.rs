//! Read-side queries: pull requests with a summary of their head's checks,
//! and one pull request with its head's check runs and its history.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::schema::{check_runs, commit_statuses, pr_state_history, pull_requests, required_checks};
use crate::ids::{CommitSha, PullRequestNumber, RepositoryId};

/// Conclusions of a completed run that do not fail its PR. Every other
/// conclusion of a completed run fails it.
pub const PASSING_CONCLUSIONS: [&str; 3] = ["success", "neutral", "skipped"];

/// Every value of [`PullSummary::checks`], which the `checks` filter takes.
pub const CHECKS_STATES: [&str; 4] = ["failing", "pending", "passing", "none"];

/// Every value of [`PullSummary::required_state`].
pub const REQUIRED_STATES: [&str; 5] = ["failing", "missing", "pending", "passing", "none"];

/// The fixed sets of text values the read API answers, for its OpenAPI
/// document: the columns' CHECKs or the SQL that computes them allow
/// exactly these (tests compare them with the constants above).
pub mod values {
    /// A pull request's state (`pull_requests.state`).
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum PullState {
        Open,
        Closed,
        Merged,
    }

    /// [`super::CHECKS_STATES`]: the verdict of a commit's checks.
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum ChecksState {
        Failing,
        Pending,
        Passing,
        None,
    }

    /// [`super::REQUIRED_STATES`]: the verdict of the checks the base branch requires.
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum RequiredState {
        Failing,
        Missing,
        Pending,
        Passing,
        None,
    }

    /// What a history entry records a transition of (`pr_state_history.field`).
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum HistoryField {
        State,
        Draft,
        HeadSha,
    }

    /// What wrote a change (`pr_state_history.cause`).
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum ChangeCause {
        Webhook,
        Sweep,
        Backfill,
        Manual,
    }

    /// A commit status's state (`commit_statuses.state`), as GitHub names it.
    #[derive(utoipa::ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum StatusState {
        Error,
        Failure,
        Pending,
        Success,
    }
}

/// The SQL verdict of a commit status's state: `success` passes, `pending`
/// waits, `error` and `failure` fail (GitHub's combined status and rollup).
const STATUS_VERDICT_SQL: &str =
    "CASE state WHEN 'success' THEN 'passing' WHEN 'pending' THEN 'pending' ELSE 'failing' END";

/// The SQL of one `check_runs` row's verdict: `'pending'` until completed,
/// then `'passing'` or `'failing'` by [`PASSING_CONCLUSIONS`]. A completed
/// run without a conclusion is NULL and counts nowhere: GitHub always sets
/// one, so such a row says nothing we could judge.
pub(crate) fn run_verdict_sql() -> String {
    let passing = PASSING_CONCLUSIONS.map(|c| format!("'{c}'")).join(", ");
    format!(
        "CASE WHEN status <> 'completed' THEN 'pending' \
              WHEN conclusion IN ({passing}) THEN 'passing' \
              WHEN conclusion IS NOT NULL THEN 'failing' END"
    )
}

/// The SQL of a PR's checks from the verdicts of its head's runs (see
/// [`PullSummary::checks`]); a merge group's checks are judged the same way.
pub(crate) const CHECKS_FROM_COUNTS_SQL: &str =
    "CASE WHEN checks_failing > 0 THEN 'failing' WHEN checks_pending > 0 THEN 'pending' \
                                  WHEN checks_passing > 0 THEN 'passing' ELSE 'none' END";

/// A PR and the checks of its head commit: the newest run of each name and
/// the latest status of each context, counted together as GitHub's
/// `statusCheckRollup` combines them.
// Columns are found by name; `check_for_backend` makes a field whose type
// does not match its `sql_type` a compile error.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize, utoipa::ToSchema)]
#[diesel(check_for_backend(Pg))]
#[serde(rename_all = "snake_case")]
pub struct PullSummary {
    #[diesel(sql_type = Integer)]
    pub number: PullRequestNumber,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Text)]
    pub author: String,
    #[diesel(sql_type = Text)]
    #[schema(value_type = values::PullState)]
    pub state: String,
    #[diesel(sql_type = Bool)]
    pub draft: bool,
    #[diesel(sql_type = Array<Text>)]
    pub labels: Vec<String>,
    #[diesel(sql_type = Text)]
    pub head_sha: CommitSha,
    #[diesel(sql_type = Text)]
    pub html_url: String,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    /// Check runs and commit statuses together.
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub checks_passing: i64,
    /// Check runs and commit statuses together.
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub checks_failing: i64,
    /// Check runs and commit statuses together.
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub checks_pending: i64,
    /// One of [`CHECKS_STATES`]: `failing` if any check or status failed,
    /// else `pending` if any is unfinished, else `passing` (or `none` when
    /// nothing reports on the head).
    #[diesel(sql_type = Text)]
    #[schema(value_type = values::ChecksState)]
    pub checks: String,
    /// One of [`REQUIRED_STATES`], over the checks the base branch requires
    /// alone: `failing` if one fails, else `missing` if one has not reported,
    /// else `pending` if one is unfinished, else `passing`; `none` when the
    /// branch requires nothing (or what it requires was never read).
    #[diesel(sql_type = Text)]
    #[schema(value_type = values::RequiredState)]
    pub required_state: String,
    /// Required checks that have not reported on the head.
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub required_missing: i64,
    /// The PR's newest merge group (`state`, `head_sha`, `enqueued_at`), or
    /// null when it was never queued.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
    #[schema(value_type = Option<crate::db::merge_groups::PullQueueState>)]
    pub merge_queue: Option<serde_json::Value>,
}

/// The summary query: one row per PR of repository `$1`, with its checks.
/// Every read that classifies checks goes through it, so they cannot disagree.
///
/// A required name counts as a check run of that name and a status of that
/// context together: failing if either fails, else pending if either is,
/// else passing; missing if neither reported. `head_since` is when the head
/// became the PR's head (its last head change, else the PR's creation), for
/// "a required check missing that long after the push".
fn summary_sql() -> String {
    summary_sql_where("p.repository_id = $1")
}

/// [`summary_sql`] over the PRs of the active repositories, or of the one
/// repository `$1` when it is not NULL: the board's listings across
/// repositories, counted by the same SQL as a repository's listing.
fn summary_sql_across() -> String {
    summary_sql_where(
        "($1::int8 IS NULL OR p.repository_id = $1) \
         AND p.repository_id IN (SELECT id FROM repositories WHERE active)",
    )
}

fn summary_sql_where(repositories: &str) -> String {
    format!(
        "SELECT s.*, {CHECKS_FROM_COUNTS_SQL} AS checks, \
                CASE WHEN s.required_total = 0 THEN 'none' WHEN s.required_failing > 0 THEN 'failing' \
                     WHEN s.required_missing > 0 THEN 'missing' WHEN s.required_pending > 0 THEN 'pending' \
                     ELSE 'passing' END AS required_state FROM ( \
             SELECT p.id, p.repository_id, p.gh_created_at AS created_at, p.number, p.title, p.author, p.state, p.draft, p.labels, p.head_sha, p.html_url, \
                    p.gh_updated_at AS updated_at, {merge_queue} AS merge_queue, \
                    c.passing + st.passing AS checks_passing, \
                    c.failing + st.failing AS checks_failing, \
                    c.pending + st.pending AS checks_pending, \
                    rq.total AS required_total, rq.failing AS required_failing, \
                    rq.missing AS required_missing, rq.pending AS required_pending, \
                    coalesce((SELECT max(h.gh_changed_at) FROM pr_state_history h \
                              WHERE h.pull_request_id = p.id AND h.field = 'head_sha'), p.gh_created_at) AS head_since \
             FROM pull_requests p {counts} \
             CROSS JOIN LATERAL ( \
                 SELECT count(*) AS total, \
                        count(*) FILTER (WHERE v = 'failing') AS failing, \
                        count(*) FILTER (WHERE v = 'missing') AS missing, \
                        count(*) FILTER (WHERE v = 'pending') AS pending \
                 FROM (SELECT CASE WHEN 'failing' IN (r.v, t.v) THEN 'failing' \
                                   WHEN 'pending' IN (r.v, t.v) THEN 'pending' \
                                   WHEN r.v IS NULL AND t.v IS NULL THEN 'missing' \
                                   ELSE 'passing' END AS v \
                       FROM required_checks q \
                       CROSS JOIN LATERAL unnest(q.contexts) AS ctx(name) \
                       LEFT JOIN LATERAL (SELECT {verdict} AS v FROM check_runs \
                                          WHERE repository_id = p.repository_id AND head_sha = p.head_sha \
                                            AND name = ctx.name ORDER BY github_id DESC LIMIT 1) r ON true \
                       LEFT JOIN LATERAL (SELECT {STATUS_VERDICT_SQL} AS v FROM commit_statuses \
                                          WHERE repository_id = p.repository_id AND sha = p.head_sha \
                                            AND context = ctx.name) t ON true \
                       WHERE q.repository_id = p.repository_id AND q.branch = p.base_branch) req) rq \
             WHERE {repositories} AND p.deleted_at IS NULL) s",
        verdict = run_verdict_sql(),
        counts = commit_counts_sql("p.repository_id", "p.head_sha"),
        merge_queue = super::merge_groups::newest_of_pull_json_sql("p.repository_id", "p.number"),
    )
}

/// The joins that count what reports on commit `{sha}` of repository
/// `{repo}`: `c` over the newest check run of each name, `st` over the
/// latest status of each context, each with `passing`, `failing` and
/// `pending`. A PR's checks and a merge group's are both counted by it.
pub(crate) fn commit_counts_sql(repo: &str, sha: &str) -> String {
    format!(
        "CROSS JOIN LATERAL ( \
             SELECT count(*) FILTER (WHERE verdict = 'passing') AS passing, \
                    count(*) FILTER (WHERE verdict = 'failing') AS failing, \
                    count(*) FILTER (WHERE verdict = 'pending') AS pending \
             FROM (SELECT DISTINCT ON (name) {verdict} AS verdict FROM check_runs \
                   WHERE repository_id = {repo} AND head_sha = {sha} \
                   ORDER BY name, github_id DESC) latest) c \
         CROSS JOIN LATERAL ( \
             SELECT count(*) FILTER (WHERE state = 'success') AS passing, \
                    count(*) FILTER (WHERE state IN ('error', 'failure')) AS failing, \
                    count(*) FILTER (WHERE state = 'pending') AS pending \
             FROM commit_statuses WHERE repository_id = {repo} AND sha = {sha}) st",
        verdict = run_verdict_sql(),
    )
}

/// SQL true when a row of the summary (alias `{row}`) has a required check
/// missing more than `{seconds}` seconds after the push of its head.
fn missing_required_sql(row: &str, seconds: &str) -> String {
    format!("({row}.required_missing > 0 AND {row}.head_since < now() - make_interval(secs => {seconds}))")
}

/// Every PR of a repository with its check summary, by number.
pub async fn pulls_with_checks(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
) -> diesel::QueryResult<Vec<PullSummary>> {
    diesel::sql_query(format!("{} ORDER BY number", summary_sql()))
        .bind::<BigInt, _>(repository_id)
        .load(conn)
        .await
}

/// Which PRs a listing keeps; `None` keeps all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullFilter {
    /// `open`, `closed` or `merged`.
    pub state: Option<String>,
    pub draft: Option<bool>,
    pub label: Option<String>,
    pub author: Option<String>,
    /// One of [`CHECKS_STATES`] (see [`PullSummary::checks`]).
    pub checks: Option<String>,
    /// Whether a check of the head failed and then passed on a re-run ([`flaky_sql`]).
    pub flaky: Option<bool>,
    /// Whether a check of the head is unfinished past `stuck_after` ([`stuck_sql`]).
    pub stuck: Option<bool>,
    pub stuck_after: std::time::Duration,
    /// Only PRs GitHub last updated before this (the board's "stale for N days").
    pub updated_before: Option<DateTime<Utc>>,
}

/// SQL true when commit `{sha}` of repository `{repo}` has a check name that
/// failed and then passed on the same commit: a re-run made it pass.
fn flaky_sql(repo: &str, sha: &str) -> String {
    let passing = PASSING_CONCLUSIONS.map(|c| format!("'{c}'")).join(", ");
    format!(
        "EXISTS (SELECT 1 FROM check_runs f JOIN check_runs r \
                   ON r.repository_id = f.repository_id AND r.head_sha = f.head_sha \
                  AND r.name = f.name AND r.github_id > f.github_id \
                 WHERE f.repository_id = {repo} AND f.head_sha = {sha} AND f.status = 'completed' \
                   AND f.conclusion NOT IN ({passing}) AND r.conclusion IN ({passing}))"
    )
}

/// SQL true when the newest run of some check name on commit `{sha}` is
/// unfinished and began (GitHub's `started_at`, else when first seen) more
/// than `{seconds}` seconds ago.
fn stuck_sql(repo: &str, sha: &str, seconds: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM (SELECT DISTINCT ON (name) status, coalesce(gh_started_at, first_seen_at) AS since \
                                FROM check_runs WHERE repository_id = {repo} AND head_sha = {sha} \
                                ORDER BY name, github_id DESC) l \
                 WHERE l.status <> 'completed' AND l.since < now() - make_interval(secs => {seconds}))"
    )
}

/// A check name of a repository that failed and then passed on the same
/// commit, and on how many commits it did so.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize, utoipa::ToSchema)]
pub struct FlakyCheck {
    #[diesel(sql_type = Text)]
    pub name: String,
    /// Commits on which it failed and then passed.
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 1)]
    pub commits: i64,
}

/// The flakiest check names of a repository over the last `days` days (by
/// the passing re-run's completion), most commits first, at most `limit`.
pub async fn flakiest_checks(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    days: i32,
    limit: i64,
) -> diesel::QueryResult<Vec<FlakyCheck>> {
    let passing = PASSING_CONCLUSIONS.map(|c| format!("'{c}'")).join(", ");
    diesel::sql_query(format!(
        "SELECT f.name, count(DISTINCT f.head_sha) AS commits \
         FROM check_runs f JOIN check_runs r \
           ON r.repository_id = f.repository_id AND r.head_sha = f.head_sha \
          AND r.name = f.name AND r.github_id > f.github_id \
         WHERE f.repository_id = $1 AND f.status = 'completed' AND f.conclusion NOT IN ({passing}) \
           AND r.conclusion IN ({passing}) \
           AND coalesce(r.gh_completed_at, r.last_changed_at) > now() - make_interval(days => $2) \
         GROUP BY f.name ORDER BY commits DESC, f.name LIMIT $3"
    ))
    .bind::<BigInt, _>(repository_id)
    .bind::<Integer, _>(days)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// Per active repository: its open PRs with a stuck check (see [`stuck_sql`])
/// and its check names flaky over the last 7 days.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct CiHealth {
    #[diesel(sql_type = Text)]
    pub repository: String,
    #[diesel(sql_type = BigInt)]
    pub stuck_prs: i64,
    #[diesel(sql_type = BigInt)]
    pub flaky_checks_7d: i64,
}

pub async fn ci_health(
    conn: &mut AsyncPgConnection,
    stuck_after: std::time::Duration,
) -> diesel::QueryResult<Vec<CiHealth>> {
    let passing = PASSING_CONCLUSIONS.map(|c| format!("'{c}'")).join(", ");
    diesel::sql_query(format!(
        "SELECT r.owner || '/' || r.name AS repository, \
                (SELECT count(*) FROM ({summary}) p WHERE p.state = 'open' \
                   AND ({stuck} OR {missing})) AS stuck_prs, \
                (SELECT count(DISTINCT f.name) FROM check_runs f JOIN check_runs x \
                   ON x.repository_id = f.repository_id AND x.head_sha = f.head_sha \
                  AND x.name = f.name AND x.github_id > f.github_id \
                  WHERE f.repository_id = r.id AND f.status = 'completed' AND f.conclusion NOT IN ({passing}) \
                    AND x.conclusion IN ({passing}) \
                    AND coalesce(x.gh_completed_at, x.last_changed_at) > now() - interval '7 days') AS flaky_checks_7d \
         FROM repositories r WHERE r.active ORDER BY 1",
        summary = summary_sql().replace("p.repository_id = $1", "p.repository_id = r.id"),
        stuck = stuck_sql("r.id", "p.head_sha", "$1"),
        missing = missing_required_sql("p", "$1"),
    ))
    .bind::<diesel::sql_types::Double, _>(stuck_after.as_secs_f64())
    .load(conn)
    .await
}

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullOrder {
    /// Newest number first (the read API).
    #[default]
    Number,
    /// Most recently updated on GitHub first.
    Updated,
    /// Most recently created first.
    Created,
}

impl PullOrder {
    fn sql(self) -> &'static str {
        match self {
            Self::Number => "c.number DESC, c.repository_id",
            Self::Updated => "c.updated_at DESC, c.id DESC",
            Self::Created => "c.created_at DESC, c.id DESC",
        }
    }
}

/// A PR of a listing across repositories.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
#[diesel(check_for_backend(Pg))]
pub struct ListedPull {
    /// `owner/name`.
    #[diesel(sql_type = Text)]
    pub repository: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(embed)]
    pub summary: PullSummary,
}

#[derive(QueryableByName)]
#[diesel(check_for_backend(Pg))]
struct FilteredRow {
    #[diesel(embed)]
    pull: ListedPull,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// One page of a repository's PRs, newest number first, and how many match in all.
pub async fn list_pulls(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    filter: &PullFilter,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<(Vec<PullSummary>, i64)> {
    let (pulls, total) =
        list_pulls_across(conn, Some(repository_id), filter, PullOrder::Number, limit, offset).await?;
    Ok((pulls.into_iter().map(|p| p.summary).collect(), total))
}

/// One page of the PRs of every active repository (or of `repository_id`
/// alone), in `order`, and how many match in all. The read API's listing
/// is this query for one repository, so the board and the API agree.
pub async fn list_pulls_across(
    conn: &mut AsyncPgConnection,
    repository_id: Option<RepositoryId>,
    filter: &PullFilter,
    order: PullOrder,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<(Vec<ListedPull>, i64)> {
    use diesel::sql_types::Nullable;
    let rows: Vec<FilteredRow> = diesel::sql_query(format!(
        "WITH c AS ({}) \
         SELECT c.*, r.owner || '/' || r.name AS repository, count(*) OVER () AS total \
         FROM c JOIN repositories r ON r.id = c.repository_id \
         WHERE ($2::text IS NULL OR c.state = $2) AND ($3::bool IS NULL OR c.draft = $3) \
           AND ($4::text IS NULL OR $4 = ANY(c.labels)) AND ($5::text IS NULL OR c.author = $5) \
           AND ($6::text IS NULL OR c.checks = $6) \
           AND ($9::bool IS NULL OR ({flaky}) = $9) AND ($10::bool IS NULL OR ({stuck} OR {missing}) = $10) \
           AND ($12::timestamptz IS NULL OR c.updated_at < $12) \
         ORDER BY {order} LIMIT $7 OFFSET $8",
        summary_sql_across(),
        flaky = flaky_sql("c.repository_id", "c.head_sha"),
        stuck = stuck_sql("c.repository_id", "c.head_sha", "$11"),
        missing = missing_required_sql("c", "$11"),
        order = order.sql(),
    ))
    .bind::<Nullable<BigInt>, _>(repository_id)
    .bind::<Nullable<Text>, _>(filter.state.as_deref())
    .bind::<Nullable<Bool>, _>(filter.draft)
    .bind::<Nullable<Text>, _>(filter.label.as_deref())
    .bind::<Nullable<Text>, _>(filter.author.as_deref())
    .bind::<Nullable<Text>, _>(filter.checks.as_deref())
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .bind::<Nullable<Bool>, _>(filter.flaky)
    .bind::<Nullable<Bool>, _>(filter.stuck)
    .bind::<diesel::sql_types::Double, _>(filter.stuck_after.as_secs_f64())
    .bind::<Nullable<Timestamptz>, _>(filter.updated_before)
    .load(conn)
    .await?;
    let total = <[FilteredRow]>::first(&rows).map_or(0, |r| r.total);
    Ok((rows.into_iter().map(|r| r.pull).collect(), total))
}

/// The open PRs of one active repository by the state of their checks.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
#[diesel(check_for_backend(Pg))]
pub struct OpenPullCounts {
    #[diesel(sql_type = BigInt)]
    pub repository_id: i64,
    #[diesel(sql_type = BigInt)]
    pub open: i64,
    #[diesel(sql_type = BigInt)]
    pub failing: i64,
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    #[diesel(sql_type = BigInt)]
    pub passing: i64,
    #[diesel(sql_type = BigInt)]
    pub draft: i64,
}

/// [`OpenPullCounts`] of every active repository with an open PR.
pub async fn open_pull_counts(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<OpenPullCounts>> {
    diesel::sql_query(format!(
        "SELECT repository_id, count(*) AS open, \
                count(*) FILTER (WHERE checks = 'failing') AS failing, \
                count(*) FILTER (WHERE checks = 'pending') AS pending, \
                count(*) FILTER (WHERE checks = 'passing') AS passing, \
                count(*) FILTER (WHERE draft) AS draft \
         FROM ({}) c WHERE state = 'open' GROUP BY repository_id",
        summary_sql_across()
    ))
    .bind::<diesel::sql_types::Nullable<BigInt>, _>(None::<i64>)
    .load(conn)
    .await
}

/// A pull request as the detail endpoint shows it. `Selectable` names each
/// column by its field, and `check_for_backend` makes a field whose type does
/// not match its column a compile error.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = pull_requests, check_for_backend(Pg))]
pub struct PullDetail {
    pub id: i64,
    pub number: PullRequestNumber,
    pub title: String,
    pub author: String,
    pub state: String,
    pub draft: bool,
    pub base_branch: String,
    pub head_branch: String,
    pub head_sha: CommitSha,
    pub html_url: String,
    pub body: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub metadata: serde_json::Value,
    pub gh_created_at: DateTime<Utc>,
    pub gh_updated_at: DateTime<Utc>,
    pub gh_closed_at: Option<DateTime<Utc>>,
    pub gh_merged_at: Option<DateTime<Utc>>,
}

/// A check run of a PR's head commit, as the detail endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = check_runs, check_for_backend(Pg))]
pub struct HeadCheckRun {
    pub github_id: i64,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub html_url: Option<String>,
    pub output_title: Option<String>,
    pub gh_started_at: Option<DateTime<Utc>>,
    pub gh_completed_at: Option<DateTime<Utc>>,
}

/// One transition of a PR's state, draft flag or head.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = pr_state_history, check_for_backend(Pg))]
pub struct HistoryEntry {
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: String,
    pub gh_changed_at: DateTime<Utc>,
    /// When prmonitor wrote it: the order of two transitions GitHub dated the same second.
    pub recorded_at: DateTime<Utc>,
    pub cause: String,
    pub delivery_id: Option<String>,
}

/// PR `number` of repository `repository_id`, deleted or not.
pub async fn pull_request(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    number: PullRequestNumber,
) -> diesel::QueryResult<Option<PullDetail>> {
    pull_requests::table
        .filter(pull_requests::repository_id.eq(repository_id))
        .filter(pull_requests::number.eq(number))
        .select(PullDetail::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every check run of commit `head_sha` in a repository, newest first (all
/// of them, not only the newest of each name as in [`PullSummary`]).
pub async fn head_check_runs(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    head_sha: &CommitSha,
) -> diesel::QueryResult<Vec<HeadCheckRun>> {
    check_runs::table
        .filter(check_runs::repository_id.eq(repository_id))
        .filter(check_runs::head_sha.eq(head_sha))
        .order(check_runs::github_id.desc())
        .select(HeadCheckRun::as_select())
        .load(conn)
        .await
}

/// A PR's transitions in the order they were recorded.
pub async fn history(
    conn: &mut AsyncPgConnection,
    pull_request_id: i64,
) -> diesel::QueryResult<Vec<HistoryEntry>> {
    pr_state_history::table
        .filter(pr_state_history::pull_request_id.eq(pull_request_id))
        .order(pr_state_history::id)
        .select(HistoryEntry::as_select())
        .load(conn)
        .await
}

/// The summary of PR `number` (its checks and required state), as listings give it.
pub async fn pull_summary(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    number: PullRequestNumber,
) -> diesel::QueryResult<Option<PullSummary>> {
    diesel::sql_query(format!("{} WHERE number = $2", summary_sql()))
        .bind::<BigInt, _>(repository_id)
        .bind::<Integer, _>(number)
        .get_result(conn)
        .await
        .optional()
}

/// The latest status of each context of a commit, as the detail endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = commit_statuses, check_for_backend(Pg))]
pub struct HeadStatus {
    pub context: String,
    #[schema(value_type = values::StatusState)]
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    #[serde(rename = "created_at")]
    pub gh_created_at: DateTime<Utc>,
}

/// The statuses of commit `sha`, by context.
pub async fn head_statuses(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    sha: &CommitSha,
) -> diesel::QueryResult<Vec<HeadStatus>> {
    commit_statuses::table
        .filter(commit_statuses::repository_id.eq(repository_id))
        .filter(commit_statuses::sha.eq(sha.as_str()))
        .order(commit_statuses::context)
        .select(HeadStatus::as_select())
        .load(conn)
        .await
}

/// What `branch` requires before merging, as last read (empty: nothing, or never read).
pub async fn required_contexts(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    branch: &str,
) -> diesel::QueryResult<Vec<String>> {
    Ok(required_checks::table
        .filter(required_checks::repository_id.eq(repository_id))
        .filter(required_checks::branch.eq(branch))
        .select(required_checks::contexts)
        .first::<Vec<String>>(conn)
        .await
        .optional()?
        .unwrap_or_default())
}

/// A check run as a PR's timeline shows it: any of the PR's heads, with what
/// last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = check_runs, check_for_backend(Pg))]
pub struct TimelineCheckRun {
    pub github_id: i64,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub gh_started_at: Option<DateTime<Utc>>,
    pub gh_completed_at: Option<DateTime<Utc>>,
    pub first_seen_at: DateTime<Utc>,
    pub last_changed_at: DateTime<Utc>,
    pub last_cause: Option<String>,
    pub last_delivery_id: Option<String>,
}

/// Every check run of the commits `shas` of a repository, oldest first.
pub async fn check_runs_of_commits(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    shas: &[String],
) -> diesel::QueryResult<Vec<TimelineCheckRun>> {
    check_runs::table
        .filter(check_runs::repository_id.eq(repository_id))
        .filter(check_runs::head_sha.eq_any(shas))
        .order(check_runs::github_id)
        .select(TimelineCheckRun::as_select())
        .load(conn)
        .await
}

/// One transition of a commit status, as a PR's timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = super::schema::status_history, check_for_backend(Pg))]
pub struct StatusTransition {
    pub sha: String,
    pub context: String,
    pub old_state: Option<String>,
    pub new_state: String,
    pub gh_changed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub cause: String,
    pub delivery_id: Option<String>,
}

/// Every status transition of the commits `shas` of a repository, in order.
pub async fn status_transitions(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    shas: &[String],
) -> diesel::QueryResult<Vec<StatusTransition>> {
    use super::schema::status_history as h;
    h::table
        .filter(h::repository_id.eq(repository_id))
        .filter(h::sha.eq_any(shas))
        .order(h::id)
        .select(StatusTransition::as_select())
        .load(conn)
        .await
}
