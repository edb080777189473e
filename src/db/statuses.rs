//! Rows of `commit_statuses`, `status_history` and `required_checks`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{commit_statuses, required_checks};
use crate::ids::RepositoryId;
use crate::monitor::data::StatusData;
use crate::monitor::forward;

/// A stored status, as a delivered snapshot is compared with it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = commit_statuses)]
pub struct StoredStatus {
    pub sha: String,
    pub context: String,
    pub github_id: Option<i64>,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub gh_created_at: DateTime<Utc>,
    pub last_changed_at: DateTime<Utc>,
}

impl StoredStatus {
    pub fn version(&self) -> forward::StatusVersion {
        forward::StatusVersion {
            created_at: self.gh_created_at,
            github_id: self.github_id,
            at: Some(self.last_changed_at),
        }
    }
}

/// The stored statuses of `repository_id` on `shas`.
pub async fn load(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    shas: &[&str],
) -> QueryResult<Vec<StoredStatus>> {
    commit_statuses::table
        .filter(commit_statuses::repository_id.eq(repository_id))
        .filter(commit_statuses::sha.eq_any(shas))
        .select(StoredStatus::as_select())
        .load(conn)
        .await
}

/// What an upsert of statuses wrote: rows inserted, and rows whose report
/// (state, description or link) changed. A row that only learned its REST id
/// counts in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusesWritten {
    pub new: usize,
    pub updated: usize,
}

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = Bool)]
    inserted: bool,
    #[diesel(sql_type = Bool)]
    changed: bool,
}

/// Upserts the latest status of each context (one per key: the caller keeps
/// the newest) where it is newer than the stored one (rule 4, in the
/// statement: [`forward::status_guard_sql`]), and records every state
/// transition in `status_history`, in one statement. Run it under the
/// repository's lock: the transitions are read from the rows as the
/// statement found them.
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    statuses: &[&StatusData],
    cause: &str,
    delivery_id: Option<&str>,
) -> QueryResult<StatusesWritten> {
    if statuses.is_empty() {
        return Ok(StatusesWritten::default());
    }
    let sql = format!(
        "WITH u AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
                                  $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[]) \
               AS u(sha, context, github_id, node_id, state, description, target_url, creator, \
                    gh_created_at, gh_updated_at)), \
         prev AS ( \
             SELECT s.sha, s.context, s.state, s.description, s.target_url FROM commit_statuses s \
             JOIN u ON s.repository_id = $11 AND s.sha = u.sha AND s.context = u.context), \
         w AS ( \
             INSERT INTO commit_statuses (repository_id, sha, context, github_id, node_id, state, description, \
                                          target_url, creator, gh_created_at, gh_updated_at) \
             SELECT $11, sha, context, github_id, node_id, state, description, target_url, creator, \
                    gh_created_at, gh_updated_at FROM u \
             ON CONFLICT (repository_id, sha, context) DO UPDATE SET \
                 github_id = COALESCE(excluded.github_id, commit_statuses.github_id), \
                 node_id = COALESCE(excluded.node_id, commit_statuses.node_id), \
                 state = excluded.state, description = excluded.description, \
                 target_url = excluded.target_url, \
                 creator = COALESCE(excluded.creator, commit_statuses.creator), \
                 gh_created_at = excluded.gh_created_at, gh_updated_at = excluded.gh_updated_at, \
                 last_changed_at = now() \
             WHERE {guard} \
               AND (excluded.gh_created_at, excluded.state, excluded.description, excluded.target_url, \
                    excluded.github_id) \
                   IS DISTINCT FROM (commit_statuses.gh_created_at, commit_statuses.state, \
                                     commit_statuses.description, commit_statuses.target_url, \
                                     COALESCE(excluded.github_id, commit_statuses.github_id)) \
             RETURNING sha, context, state, description, target_url, gh_created_at), \
         h AS ( \
             INSERT INTO status_history (repository_id, sha, context, old_state, new_state, gh_changed_at, \
                                         cause, delivery_id) \
             SELECT $11, w.sha, w.context, prev.state, w.state, w.gh_created_at, $12, $13 \
             FROM w LEFT JOIN prev ON prev.sha = w.sha AND prev.context = w.context \
             WHERE prev.state IS DISTINCT FROM w.state \
             RETURNING 1) \
         SELECT prev.sha IS NULL AS inserted, \
                (prev.sha IS NULL OR (prev.state, prev.description, prev.target_url) \
                     IS DISTINCT FROM (w.state, w.description, w.target_url)) AS changed \
         FROM w LEFT JOIN prev ON prev.sha = w.sha AND prev.context = w.context",
        guard = forward::status_guard_sql(),
    );
    let rows: Vec<Written> = diesel::sql_query(sql)
        .bind::<Array<Text>, _>(statuses.iter().map(|s| s.sha.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(statuses.iter().map(|s| s.context.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(statuses.iter().map(|s| s.github_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(statuses.iter().map(|s| s.node_id.as_deref()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(statuses.iter().map(|s| s.state.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            statuses.iter().map(|s| s.description.as_deref()).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            statuses.iter().map(|s| s.target_url.as_deref()).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(statuses.iter().map(|s| s.creator.as_deref()).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(statuses.iter().map(|s| s.created_at).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(statuses.iter().map(|s| s.updated_at).collect::<Vec<_>>())
        .bind::<BigInt, _>(repository_id)
        .bind::<Text, _>(cause)
        .bind::<Nullable<Text>, _>(delivery_id)
        .load(conn)
        .await?;
    Ok(StatusesWritten {
        new: rows.iter().filter(|r| r.inserted).count(),
        updated: rows.iter().filter(|r| !r.inserted && r.changed).count(),
    })
}

/// What one branch requires, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = required_checks)]
pub struct StoredRequirement {
    pub branch: String,
    pub contexts: Vec<String>,
    pub strict: bool,
    pub fetched_at: DateTime<Utc>,
}

/// The stored requirements of a repository's branches.
pub async fn requirements(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
) -> QueryResult<Vec<StoredRequirement>> {
    required_checks::table
        .filter(required_checks::repository_id.eq(repository_id))
        .order(required_checks::branch)
        .select(StoredRequirement::as_select())
        .load(conn)
        .await
}

/// Stores what `branch` requires; true when that changed what was stored
/// (a first read of a branch that requires nothing changes nothing).
pub async fn store_requirement(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    branch: &str,
    contexts: &[String],
    strict: bool,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Changed {
        #[diesel(sql_type = Bool)]
        changed: bool,
    }
    let rows: Vec<Changed> = diesel::sql_query(
        "WITH prev AS (SELECT contexts, strict FROM required_checks WHERE repository_id = $1 AND branch = $2), \
              w AS (INSERT INTO required_checks (repository_id, branch, contexts, strict) VALUES ($1, $2, $3, $4) \
                    ON CONFLICT (repository_id, branch) DO UPDATE \
                    SET contexts = excluded.contexts, strict = excluded.strict, fetched_at = now() \
                    RETURNING contexts, strict) \
         SELECT CASE WHEN (SELECT count(*) FROM prev) = 0 THEN cardinality(w.contexts) > 0 \
                     ELSE (SELECT (p.contexts, p.strict) IS DISTINCT FROM (w.contexts, w.strict) FROM prev p) \
                END AS changed FROM w",
    )
    .bind::<BigInt, _>(repository_id)
    .bind::<Text, _>(branch)
    .bind::<Array<Text>, _>(contexts)
    .bind::<Bool, _>(strict)
    .load(conn)
    .await?;
    Ok(<[Changed]>::first(&rows).is_some_and(|r| r.changed))
}
