//! Read-side queries: pull requests with a summary of their head's checks.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

/// Conclusions that do not fail a PR.
const PASSING: &str = "('success', 'neutral', 'skipped')";

/// A PR and the checks of its head commit (the newest run of each name).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct PullSummary {
    #[diesel(sql_type = Integer)]
    pub number: i32,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Text)]
    pub author: String,
    #[diesel(sql_type = Text)]
    pub state: String,
    #[diesel(sql_type = Bool)]
    pub draft: bool,
    #[diesel(sql_type = Array<Text>)]
    pub labels: Vec<String>,
    #[diesel(sql_type = Text)]
    pub head_sha: String,
    #[diesel(sql_type = Text)]
    pub html_url: String,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub checks_passing: i64,
    #[diesel(sql_type = BigInt)]
    pub checks_failing: i64,
    #[diesel(sql_type = BigInt)]
    pub checks_pending: i64,
}

impl PullSummary {
    /// `failing` if any check failed, else `pending` if any is unfinished,
    /// else `passing` (or `none` without checks).
    pub fn checks(&self) -> &'static str {
        if self.checks_failing > 0 {
            "failing"
        } else if self.checks_pending > 0 {
            "pending"
        } else if self.checks_passing > 0 {
            "passing"
        } else {
            "none"
        }
    }
}

/// The summary query: one row per PR of repository `$1`, with its checks.
fn summary_sql() -> String {
    format!(
        "SELECT p.number, p.title, p.author, p.state, p.draft, p.labels, p.head_sha, p.html_url, \
                p.gh_updated_at AS updated_at, \
                count(c.id) FILTER (WHERE c.status = 'completed' AND c.conclusion IN {PASSING}) AS checks_passing, \
                count(c.id) FILTER (WHERE c.status = 'completed' AND c.conclusion NOT IN {PASSING}) AS checks_failing, \
                count(c.id) FILTER (WHERE c.status <> 'completed') AS checks_pending \
         FROM pull_requests p \
         LEFT JOIN LATERAL ( \
             SELECT DISTINCT ON (name) id, status, conclusion FROM check_runs \
             WHERE repository_id = p.repository_id AND head_sha = p.head_sha \
             ORDER BY name, github_id DESC) c ON true \
         WHERE p.repository_id = $1 AND p.deleted_at IS NULL \
         GROUP BY p.id"
    )
}

/// Every PR of a repository with its check summary, by number.
pub async fn pulls_with_checks(
    conn: &mut AsyncPgConnection,
    repository_id: i64,
) -> diesel::QueryResult<Vec<PullSummary>> {
    diesel::sql_query(format!("{} ORDER BY p.number", summary_sql()))
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
    /// `failing`, `pending`, `passing` or `none` (see [`PullSummary::checks`]).
    pub checks: Option<String>,
}

#[derive(QueryableByName)]
struct FilteredRow {
    #[diesel(embed)]
    summary: PullSummary,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// One page of a repository's PRs, newest number first, and how many match in all.
pub async fn list_pulls(
    conn: &mut AsyncPgConnection,
    repository_id: i64,
    filter: &PullFilter,
    limit: i64,
    offset: i64,
) -> diesel::QueryResult<(Vec<PullSummary>, i64)> {
    use diesel::sql_types::Nullable;
    let rows: Vec<FilteredRow> = diesel::sql_query(format!(
        "WITH s AS ({}), \
              c AS (SELECT s.*, CASE WHEN checks_failing > 0 THEN 'failing' WHEN checks_pending > 0 THEN 'pending' \
                                     WHEN checks_passing > 0 THEN 'passing' ELSE 'none' END AS checks FROM s) \
         SELECT c.*, count(*) OVER () AS total FROM c \
         WHERE ($2::text IS NULL OR state = $2) AND ($3::bool IS NULL OR draft = $3) \
           AND ($4::text IS NULL OR $4 = ANY(labels)) AND ($5::text IS NULL OR author = $5) \
           AND ($6::text IS NULL OR checks = $6) \
         ORDER BY number DESC LIMIT $7 OFFSET $8",
        summary_sql()
    ))
    .bind::<BigInt, _>(repository_id)
    .bind::<Nullable<Text>, _>(filter.state.as_deref())
    .bind::<Nullable<Bool>, _>(filter.draft)
    .bind::<Nullable<Text>, _>(filter.label.as_deref())
    .bind::<Nullable<Text>, _>(filter.author.as_deref())
    .bind::<Nullable<Text>, _>(filter.checks.as_deref())
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .load(conn)
    .await?;
    let total = <[FilteredRow]>::first(&rows).map_or(0, |r| r.total);
    Ok((rows.into_iter().map(|r| r.summary).collect(), total))
}
