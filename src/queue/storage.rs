//! Every statement on the `jobs` table, and the writes to deliveries and
//! repositories that commit with a job's ending. The lifecycle in `mod.rs`
//! decides which transition to make; these functions make it.
//!
//! States appear in SQL as constants (`JobState::sql`), not bound values:
//! the partial indexes (`WHERE state = 'pending'` …) and the `ON CONFLICT`
//! arbiter match only a predicate with the same constant, and a prepared
//! statement's generic plan knows no parameter values.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::job::{BACKFILL_KEY_PREFIX, SWEEP_KEY_PREFIX};
use super::{EnqueuedJob, JobKind, JobRef, JobState, NewJob};
use crate::db::deliveries::DeliveryOutcome;
use crate::db::schema::{jobs, webhook_deliveries};
use crate::ids::RepositoryId;

/// A claimed job, ready to run.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct ClaimedJob {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
}

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = jobs)]
pub struct JobView {
    pub id: i64,
    #[schema(value_type = super::JobKind)]
    pub kind: String,
    /// Requests with the same key fold into one pending job.
    pub coalesce_key: Option<String>,
    /// What the job works on; its shape depends on the kind.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub state: JobState,
    /// How many requests this job stands for.
    #[schema(minimum = 1)]
    pub coalesced_count: i32,
    pub run_at: DateTime<Utc>,
    #[schema(minimum = 0)]
    pub attempts: i32,
    #[schema(minimum = 1)]
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn seconds(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64()
}

// ---- enqueue ---------------------------------------------------------------

/// A job without a key: nothing coalesces with it.
pub(super) async fn insert(conn: &mut AsyncPgConnection, job: &NewJob) -> QueryResult<EnqueuedJob> {
    diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(job.kind.as_str()),
            jobs::payload.eq(&job.payload),
            jobs::max_attempts.eq(job.max_attempts),
        ))
        .returning((jobs::id, jobs::coalesced_count))
        .get_result::<(i64, i32)>(conn)
        .await
        .map(|(id, coalesced_count)| EnqueuedJob { id, coalesced_count })
}

/// Keyed jobs, at most one per key, for [`insert_or_merge`].
pub(super) struct KeyedInsert<'a> {
    pub kind: JobKind,
    pub key: &'a str,
    pub payload: serde_json::Value,
    pub max_attempts: i32,
    /// How many requests the row stands for.
    pub requests: i32,
}

/// Inserts each job, or merges it into the pending job of its key: the
/// payloads are merged with `||` (the newer keys win) and the count grows
/// by the requests merged. Returns the job each key ended up in.
pub(super) async fn insert_or_merge(
    conn: &mut AsyncPgConnection,
    rows: &[KeyedInsert<'_>],
) -> QueryResult<HashMap<String, EnqueuedJob>> {
    #[derive(QueryableByName)]
    struct KeyedJob {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        coalesce_key: String,
        #[diesel(sql_type = Integer)]
        coalesced_count: i32,
    }
    let (mut kinds, mut keys, mut payloads, mut max_attempts, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        kinds.push(row.kind.as_str());
        keys.push(row.key);
        payloads.push(&row.payload);
        max_attempts.push(row.max_attempts);
        counts.push(row.requests);
    }
    let rows: Vec<KeyedJob> = diesel::sql_query(format!(
        "INSERT INTO jobs (kind, coalesce_key, payload, max_attempts, coalesced_count) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int4[], $5::int4[]) \
         ON CONFLICT (coalesce_key) WHERE state = {pending} \
         DO UPDATE SET payload = jobs.payload || EXCLUDED.payload, \
                       coalesced_count = jobs.coalesced_count + EXCLUDED.coalesced_count, \
                       updated_at = now() \
         RETURNING id, coalesce_key, coalesced_count",
        pending = JobState::Pending.sql(),
    ))
    .bind::<Array<Text>, _>(&kinds)
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Jsonb>, _>(&payloads)
    .bind::<Array<Integer>, _>(&max_attempts)
    .bind::<Array<Integer>, _>(&counts)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.coalesce_key, EnqueuedJob { id: row.id, coalesced_count: row.coalesced_count }))
        .collect())
}

/// Whether a job of this key is running.
pub(super) async fn running_with_key(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<bool> {
    let running: i64 = jobs::table
        .filter(jobs::coalesce_key.eq(key))
        .filter(jobs::state.eq(JobState::Running))
        .count()
        .get_result(conn)
        .await?;
    Ok(running > 0)
}

/// Wakes idle workers now rather than at their next poll. (Inserts notify
/// by trigger; a job reopened by an update does not.)
pub(super) async fn notify_workers(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify('prmonitor_jobs', '')").execute(conn).await.map(|_| ())
}

// ---- claim and lease -------------------------------------------------------

/// Claims up to `limit` due jobs for `worker`: pending jobs whose time has
/// come, and running jobs whose lease expired (their worker died). Concurrent
/// claimers skip each other's rows instead of waiting.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    worker: &str,
    lease: std::time::Duration,
    limit: i64,
) -> QueryResult<Vec<ClaimedJob>> {
    ClaimStatement { worker, lease_secs: seconds(lease), limit }.load(conn).await
}

/// The claim, as a statement diesel prepares once per connection (a
/// `sql_query` is parsed and planned on every call, and claims run for every
/// job). One locking scan per partial index, each stopping after `limit`
/// rows: a single `OR` of both states made PostgreSQL read and sort every job
/// on each claim, the largest cost of a long backlog in the pipeline profile.
/// Expired leases first: those jobs have waited longest.
struct ClaimStatement<'a> {
    worker: &'a str,
    lease_secs: f64,
    limit: i64,
}

crate::db::prepared_statement!(ClaimStatement);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ClaimStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        let (pending, running) = (JobState::Pending.sql(), JobState::Running.sql());
        out.push_sql(&format!(
            "WITH expired AS ( \
                 SELECT id FROM jobs WHERE state = {running} AND lease_expires_at < now() \
                 ORDER BY lease_expires_at LIMIT ",
        ));
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(&format!(
            " FOR UPDATE SKIP LOCKED), \
             due AS ( \
                 SELECT id FROM jobs WHERE state = {pending} AND run_at <= now() \
                 ORDER BY run_at, id LIMIT ",
        ));
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(&format!(" FOR UPDATE SKIP LOCKED) UPDATE jobs SET state = {running}, lease_owner = "));
        out.push_bind_param::<Text, _>(&self.worker)?;
        out.push_sql(", lease_expires_at = now() + make_interval(secs => ");
        out.push_bind_param::<Double, _>(&self.lease_secs)?;
        out.push_sql(
            "), attempts = attempts + 1, updated_at = now() \
             WHERE id IN (SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) claimable LIMIT ",
        );
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(") RETURNING id, kind, payload, attempts, max_attempts");
        Ok(())
    }
}

/// Extends a held lease; false when the lease is no longer this worker's.
pub async fn extend_lease(
    conn: &mut AsyncPgConnection,
    job: &JobRef,
    lease: std::time::Duration,
) -> QueryResult<bool> {
    let updated = diesel::sql_query(format!(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_owner = $2 AND state = {running}",
        running = JobState::Running.sql(),
    ))
    .bind::<BigInt, _>(job.id)
    .bind::<Text, _>(&job.worker)
    .bind::<Double, _>(seconds(lease))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

// ---- transitions of a held or dead job ---------------------------------------

/// A running job this worker holds, locked until the transaction ends.
pub(super) struct Held {
    pub attempts: i32,
    pub max_attempts: i32,
    pub coalesce_key: Option<String>,
}

/// Locks `job` if this worker still holds its lease.
pub(super) async fn lock_held(conn: &mut AsyncPgConnection, job: &JobRef) -> QueryResult<Option<Held>> {
    jobs::table
        .filter(jobs::id.eq(job.id))
        .filter(jobs::lease_owner.eq(&job.worker))
        .filter(jobs::state.eq(JobState::Running))
        .select((jobs::attempts, jobs::max_attempts, jobs::coalesce_key))
        .for_update()
        .first::<(i32, i32, Option<String>)>(conn)
        .await
        .optional()
        .map(|held| {
            held.map(|(attempts, max_attempts, coalesce_key)| Held { attempts, max_attempts, coalesce_key })
        })
}

/// Locks job `id` if it is a dead letter; returns its key.
pub(super) async fn lock_dead(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Option<String>>> {
    jobs::table
        .filter(jobs::id.eq(id))
        .filter(jobs::state.eq(JobState::Dead))
        .select(jobs::coalesce_key)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Locks the pending job of `key`, if there is one.
pub(super) async fn pending_with_key(
    conn: &mut AsyncPgConnection,
    key: Option<&str>,
) -> QueryResult<Option<i64>> {
    let Some(key) = key else { return Ok(None) };
    jobs::table
        .filter(jobs::coalesce_key.eq(key))
        .filter(jobs::state.eq(JobState::Pending))
        .select(jobs::id)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// How a job goes back to `pending`.
pub(super) enum Reopen<'a> {
    /// A failed attempt: again at `run_at`, with its error.
    Retry { run_at: DateTime<Utc>, error: &'a str },
    /// Given back at shutdown: again now, the attempt not counted.
    Release,
    /// A dead letter brought back: again now, with fresh attempts.
    Revive,
}

/// Moves job `id` back to `pending`, unleased. Fails with a unique
/// violation when a pending job of its key exists (see `reopen_or_absorb`).
pub(super) async fn reopen(conn: &mut AsyncPgConnection, id: i64, how: &Reopen<'_>) -> QueryResult<usize> {
    let job = jobs::table.find(id);
    let unleased = (
        jobs::state.eq(JobState::Pending),
        jobs::lease_owner.eq(None::<String>),
        jobs::lease_expires_at.eq(None::<DateTime<Utc>>),
        jobs::updated_at.eq(diesel::dsl::now),
    );
    match how {
        Reopen::Retry { run_at, error } => {
            diesel::update(job)
                .set((unleased, jobs::run_at.eq(run_at), jobs::last_error.eq(*error)))
                .execute(conn)
                .await
        }
        Reopen::Release => {
            diesel::update(job)
                .set((unleased, jobs::run_at.eq(diesel::dsl::now), jobs::attempts.eq(jobs::attempts - 1)))
                .execute(conn)
                .await
        }
        Reopen::Revive => {
            diesel::update(job)
                .set((
                    unleased,
                    jobs::attempts.eq(0),
                    jobs::run_at.eq(diesel::dsl::now),
                    jobs::finished_at.eq(None::<DateTime<Utc>>),
                ))
                .execute(conn)
                .await
        }
    }
}

/// Folds job `old` (locked by the caller) into the pending job `newer`: its
/// payload (the newer's keys win), its count and its deliveries move over;
/// `old` is closed with `note`.
pub(super) async fn absorb(
    conn: &mut AsyncPgConnection,
    old: i64,
    newer: i64,
    note: &str,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE jobs AS n SET payload = o.payload || n.payload, \
                coalesced_count = n.coalesced_count + o.coalesced_count, updated_at = now() \
         FROM jobs AS o WHERE n.id = $1 AND o.id = $2",
    )
    .bind::<BigInt, _>(newer)
    .bind::<BigInt, _>(old)
    .execute(conn)
    .await?;
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::job_id.eq(old)))
        .set(webhook_deliveries::job_id.eq(newer))
        .execute(conn)
        .await?;
    finish(conn, Finishing::Locked(old), Finish::Absorbed { note }).await.map(|_| ())
}

// ---- endings ---------------------------------------------------------------

/// Which job a completion ends, on what condition.
pub(super) enum Finishing<'a> {
    /// Only while this worker still holds the lease: nothing has locked
    /// the row before, so the statement checks.
    Leased(&'a JobRef),
    /// A row the caller's transaction has locked and checked already.
    Locked(i64),
}

/// How a job ends.
pub(super) enum Finish<'a> {
    /// Its work is committed: done, its deliveries processed; for a
    /// synchronization, the repository's success recorded with it.
    Done { repository_id: Option<RepositoryId> },
    /// Out of attempts: a dead letter, its deliveries failed.
    Dead { error: &'a str },
    /// Folded into a newer pending job of its key, which holds its
    /// deliveries now; `note` says which.
    Absorbed { note: &'a str },
}

/// What a completion did.
#[derive(Debug, QueryableByName)]
pub(super) struct Finished {
    /// 1 when the job was finished, 0 when the condition failed.
    #[diesel(sql_type = BigInt)]
    finished: i64,
    /// Seconds since each delivery the completion marked was received, by
    /// the database's clock (empty when it marked none).
    #[diesel(sql_type = Array<Double>)]
    delivery_ages: Vec<f64>,
}

impl Finished {
    pub(super) fn done(&self) -> bool {
        self.finished == 1
    }

    /// The ages of the deliveries marked, negative ones (the clock was set
    /// back) as zero.
    pub(super) fn delivery_ages(&self) -> Vec<std::time::Duration> {
        self.delivery_ages
            .iter()
            .map(|age| std::time::Duration::try_from_secs_f64(*age).unwrap_or_default())
            .collect()
    }
}

/// Every completion — done, dead, absorbed — in one statement, so each
/// writes the same columns.
pub(super) async fn finish(
    conn: &mut AsyncPgConnection,
    which: Finishing<'_>,
    how: Finish<'_>,
) -> QueryResult<Finished> {
    let (id, holder) = match which {
        Finishing::Leased(job) => (job.id, Some(job.worker.as_str())),
        Finishing::Locked(id) => (id, None),
    };
    let statement = match how {
        // lease_owner stays: it records which worker completed the job.
        Finish::Done { repository_id } => FinishStatement {
            id,
            holder,
            state: JobState::Done,
            last_error: None,
            keep_owner: true,
            outcome: Some(DeliveryOutcome::Processed.as_str()),
            repository_id,
        },
        Finish::Dead { error } => FinishStatement {
            id,
            holder,
            state: JobState::Dead,
            last_error: Some(error),
            keep_owner: false,
            outcome: Some(DeliveryOutcome::Failed.as_str()),
            repository_id: None,
        },
        Finish::Absorbed { note } => FinishStatement {
            id,
            holder,
            state: JobState::Done,
            last_error: Some(note),
            keep_owner: false,
            outcome: None,
            repository_id: None,
        },
    };
    statement.get_result(conn).await
}

/// Prepared once per connection, like the claim: it ends every event job.
/// The text is the same whatever the outcome (absent parts are NULL), so
/// it is one prepared statement.
struct FinishStatement<'a> {
    id: i64,
    holder: Option<&'a str>,
    state: JobState,
    last_error: Option<&'a str>,
    keep_owner: bool,
    /// What the job's deliveries become; `None` leaves them alone.
    outcome: Option<&'static str>,
    /// The repository whose successful sync commits with the job.
    repository_id: Option<RepositoryId>,
}

crate::db::prepared_statement!(FinishStatement);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for FinishStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("WITH finished AS (UPDATE jobs SET state = ");
        out.push_bind_param::<Text, _>(&self.state)?;
        out.push_sql(", last_error = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.last_error)?;
        out.push_sql(", lease_owner = CASE WHEN ");
        out.push_bind_param::<Bool, _>(&self.keep_owner)?;
        out.push_sql(
            " THEN lease_owner END, lease_expires_at = NULL, finished_at = now(), updated_at = now() \
             WHERE id = ",
        );
        out.push_bind_param::<BigInt, _>(&self.id)?;
        out.push_sql(" AND (");
        out.push_bind_param::<Nullable<Text>, _>(&self.holder)?;
        out.push_sql("::text IS NULL OR (lease_owner = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.holder)?;
        out.push_sql(&format!(
            " AND state = {running})) RETURNING id), \
             delivered AS (UPDATE webhook_deliveries SET outcome = ",
            running = JobState::Running.sql(),
        ));
        out.push_bind_param::<Nullable<Text>, _>(&self.outcome)?;
        out.push_sql(", processed_at = now() WHERE ");
        out.push_bind_param::<Nullable<Text>, _>(&self.outcome)?;
        out.push_sql(
            "::text IS NOT NULL AND job_id IN (SELECT id FROM finished) RETURNING received_at), \
             synced AS (UPDATE repositories SET last_synced_at = now(), consecutive_failures = 0, \
                               last_failure_reason = NULL, updated_at = now() \
                        WHERE id = ",
        );
        out.push_bind_param::<Nullable<BigInt>, _>(&self.repository_id)?;
        // The deliveries' ages for the delivery-to-commit latency: measured
        // here, on the clock that stamped their receipt.
        out.push_sql(
            " RETURNING 1) \
             SELECT (SELECT count(*) FROM finished) AS finished, \
                    ARRAY(SELECT EXTRACT(EPOCH FROM clock_timestamp() - received_at)::float8 FROM delivered) \
                        AS delivery_ages",
        );
        Ok(())
    }
}

// ---- reading and housekeeping ----------------------------------------------

pub async fn get(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<JobView>> {
    jobs::table.find(id).select(JobView::as_select()).first(conn).await.optional()
}

/// Jobs, newest first, optionally in one state.
pub async fn list(
    conn: &mut AsyncPgConnection,
    state: Option<JobState>,
    limit: i64,
) -> QueryResult<Vec<JobView>> {
    let mut query = jobs::table.select(JobView::as_select()).order(jobs::id.desc()).limit(limit).into_boxed();
    if let Some(state) = state {
        query = query.filter(jobs::state.eq(state));
    }
    query.load(conn).await
}

/// Pending jobs and the age of the oldest one, for readiness and metrics.
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<f64>)> {
    #[derive(QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = BigInt)]
        pending: i64,
        #[diesel(sql_type = Nullable<Double>)]
        oldest: Option<f64>,
    }
    let row: Backlog = diesel::sql_query(format!(
        "SELECT count(*) AS pending, \
                EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest \
         FROM jobs WHERE state = {pending} AND run_at <= now()",
        pending = JobState::Pending.sql(),
    ))
    .get_result(conn)
    .await?;
    Ok((row.pending, row.oldest))
}

/// One kind's jobs by state, for the metrics gauges.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct KindCounts {
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    #[diesel(sql_type = BigInt)]
    pub running: i64,
    #[diesel(sql_type = BigInt)]
    pub dead: i64,
    /// Seconds since the oldest pending job was created.
    #[diesel(sql_type = Nullable<Double>)]
    pub oldest: Option<f64>,
}

/// Pending, running and dead jobs per kind (kinds without jobs are absent).
pub async fn counts_by_kind(conn: &mut AsyncPgConnection) -> QueryResult<Vec<KindCounts>> {
    let (pending, running, dead) = (JobState::Pending.sql(), JobState::Running.sql(), JobState::Dead.sql());
    diesel::sql_query(format!(
        "SELECT kind, \
                count(*) FILTER (WHERE state = {pending}) AS pending, \
                count(*) FILTER (WHERE state = {running}) AS running, \
                count(*) FILTER (WHERE state = {dead}) AS dead, \
                EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state = {pending}))::float8 AS oldest \
         FROM jobs GROUP BY kind",
    ))
    .load(conn)
    .await
}

/// Jobs pending or running, whatever their time.
pub async fn unfinished(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    jobs::table
        .filter(jobs::state.eq_any([JobState::Pending, JobState::Running]))
        .count()
        .get_result(conn)
        .await
}

/// Active repositories whose last full read is older than `interval` (or
/// never happened) and that have no sweep or backfill waiting or running.
pub async fn repositories_due_for_sweep(
    conn: &mut AsyncPgConnection,
    interval: std::time::Duration,
) -> QueryResult<Vec<RepositoryId>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: RepositoryId,
    }
    let cutoff = Utc::now() - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    let rows: Vec<Id> = diesel::sql_query(format!(
        "SELECT r.id FROM repositories r \
         WHERE r.active AND (r.last_swept_at IS NULL OR r.last_swept_at < $1) \
           AND NOT EXISTS (SELECT 1 FROM jobs j \
                           WHERE j.state IN ({pending}, {running}) \
                             AND j.coalesce_key IN ($2 || r.id, $3 || r.id)) \
         ORDER BY r.id",
        pending = JobState::Pending.sql(),
        running = JobState::Running.sql(),
    ))
    .bind::<Timestamptz, _>(cutoff)
    .bind::<Text, _>(SWEEP_KEY_PREFIX)
    .bind::<Text, _>(BACKFILL_KEY_PREFIX)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Deletes finished jobs older than `keep` (done only: dead letters stay).
pub async fn purge_done(conn: &mut AsyncPgConnection, keep: std::time::Duration) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    diesel::delete(jobs::table.filter(jobs::state.eq(JobState::Done)).filter(jobs::finished_at.lt(cutoff)))
        .execute(conn)
        .await
}
