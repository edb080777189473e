//! The `repositories` table: what prmonitor watches, and how syncing it went.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::schema::repositories;
use crate::ids::{GithubRepoId, InstallationId, RepositoryId};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = repositories)]
pub struct Repository {
    pub id: RepositoryId,
    pub github_id: GithubRepoId,
    pub owner: String,
    pub name: String,
    pub installation_id: Option<InstallationId>,
    pub active: bool,
    pub consecutive_failures: i32,
    pub last_failure_reason: Option<String>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub last_swept_at: Option<DateTime<Utc>>,
    pub sweep_watermark: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Repository {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = repositories)]
pub struct NewRepository<'a> {
    pub github_id: GithubRepoId,
    pub owner: &'a str,
    pub name: &'a str,
    pub installation_id: Option<InstallationId>,
}

/// Registers a repository, or refreshes its name and installation (renames,
/// transfers) and reactivates it.
pub async fn upsert(conn: &mut AsyncPgConnection, repo: &NewRepository<'_>) -> QueryResult<Repository> {
    diesel::insert_into(repositories::table)
        .values(repo)
        .on_conflict(repositories::github_id)
        .do_update()
        .set((
            repositories::owner.eq(excluded(repositories::owner)),
            repositories::name.eq(excluded(repositories::name)),
            repositories::installation_id.eq(excluded(repositories::installation_id)),
            repositories::active.eq(true),
            repositories::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Repository::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: RepositoryId) -> QueryResult<Repository> {
    repositories::table.find(id).select(Repository::as_select()).first(conn).await
}

/// The repositories with these ids, in id order.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[RepositoryId]) -> QueryResult<Vec<Repository>> {
    repositories::table
        .filter(repositories::id.eq_any(ids))
        .order(repositories::id)
        .select(Repository::as_select())
        .load(conn)
        .await
}

pub async fn list_active(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Repository>> {
    repositories::table
        .filter(repositories::active.eq(true))
        .order(repositories::id)
        .select(Repository::as_select())
        .load(conn)
        .await
}

/// One more consecutive failure, with its reason.
pub async fn record_failure(conn: &mut AsyncPgConnection, id: RepositoryId, reason: &str) -> QueryResult<()> {
    diesel::update(repositories::table.find(id))
        .set((
            repositories::consecutive_failures.eq(repositories::consecutive_failures + 1),
            repositories::last_failure_reason.eq(reason),
            repositories::last_failure_at.eq(diesel::dsl::now),
            repositories::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// A successful sync: stamps the time and clears the failure streak.
pub async fn record_success(conn: &mut AsyncPgConnection, id: RepositoryId) -> QueryResult<()> {
    diesel::update(repositories::table.find(id))
        .set((
            repositories::last_synced_at.eq(diesel::dsl::now),
            repositories::consecutive_failures.eq(0),
            repositories::last_failure_reason.eq(None::<String>),
            repositories::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// A full read finished: stamps it and moves the watermark forward (never back).
pub async fn record_sweep(
    conn: &mut AsyncPgConnection,
    id: RepositoryId,
    watermark: Option<DateTime<Utc>>,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE repositories SET last_swept_at = now(), \
                sweep_watermark = GREATEST(sweep_watermark, $2), updated_at = now() \
         WHERE id = $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(watermark)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn find_by_github_id(
    conn: &mut AsyncPgConnection,
    github_id: GithubRepoId,
) -> QueryResult<Option<Repository>> {
    repositories::table
        .filter(repositories::github_id.eq(github_id))
        .select(Repository::as_select())
        .first(conn)
        .await
        .optional()
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// By `owner/name`, case-insensitively as GitHub compares them (the active one first).
pub async fn find_by_full_name(
    conn: &mut AsyncPgConnection,
    full_name: &str,
) -> QueryResult<Option<Repository>> {
    let Some((owner, name)) = full_name.split_once('/') else { return Ok(None) };
    repositories::table
        .filter(lower(repositories::owner).eq(owner.to_lowercase()))
        .filter(lower(repositories::name).eq(name.to_lowercase()))
        .order((repositories::active.desc(), repositories::id.desc()))
        .select(Repository::as_select())
        .first(conn)
        .await
        .optional()
}

/// Stops sweeping repositories (data kept): the installation is gone or
/// suspended, or the repositories left it. Returns how many were active.
pub async fn deactivate(conn: &mut AsyncPgConnection, ids: &[RepositoryId]) -> QueryResult<usize> {
    diesel::update(
        repositories::table.filter(repositories::id.eq_any(ids)).filter(repositories::active.eq(true)),
    )
    .set((repositories::active.eq(false), repositories::updated_at.eq(diesel::dsl::now)))
    .execute(conn)
    .await
}

/// The installations that have active repositories.
pub async fn active_installations(conn: &mut AsyncPgConnection) -> QueryResult<Vec<InstallationId>> {
    let ids: Vec<Option<InstallationId>> = repositories::table
        .filter(repositories::active.eq(true))
        .filter(repositories::installation_id.is_not_null())
        .select(repositories::installation_id)
        .distinct()
        .load(conn)
        .await?;
    Ok(ids.into_iter().flatten().collect())
}

/// The repositories read with the configured token (no installation).
pub async fn without_installation(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Repository>> {
    repositories::table
        .filter(repositories::installation_id.is_null())
        .order(repositories::id)
        .select(Repository::as_select())
        .load(conn)
        .await
}

pub async fn of_installation(
    conn: &mut AsyncPgConnection,
    installation_id: InstallationId,
) -> QueryResult<Vec<Repository>> {
    repositories::table
        .filter(repositories::installation_id.eq(installation_id))
        .order(repositories::id)
        .select(Repository::as_select())
        .load(conn)
        .await
}
