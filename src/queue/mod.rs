//! The durable job queue on the `jobs` table.
//!
//! Intake and the scheduler enqueue; workers claim, complete and fail jobs.
//! Enqueueing coalesces: while a job with the same key is pending, a new
//! request is merged into it instead of adding another, so a burst of twenty
//! deliveries for one pull request is one job.

mod job;
mod state;

pub use job::{
    EventTarget, InstallationTarget, JobKind, NewJob, RepoRef, RepositoryJob, DEFAULT_MAX_ATTEMPTS,
};
pub(crate) use job::{BACKFILL_KEY_PREFIX, SWEEP_KEY_PREFIX};
pub use state::{JobState, UnknownJobState};

use std::collections::HashMap;

use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The job a request ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct EnqueuedJob {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// How many requests the job now stands for; 1 means it was just created.
    #[diesel(sql_type = Integer)]
    pub coalesced_count: i32,
}

impl EnqueuedJob {
    pub fn coalesced(&self) -> bool {
        self.coalesced_count > 1
    }
}

/// Adds `job`, or merges it into the pending job with the same coalescing key.
///
/// Merging is a shallow JSON merge (`||`): the newer request's keys win, keys
/// it lacks are kept. Job payloads are shaped for that: flags are written only
/// when true, so a merge never clears one.
pub async fn enqueue(conn: &mut AsyncPgConnection, job: &NewJob) -> diesel::QueryResult<EnqueuedJob> {
    if job.coalesce_key.is_some() {
        let mut enqueued = enqueue_many(conn, &[job]).await?;
        return enqueued.pop().ok_or(diesel::result::Error::NotFound);
    }
    // Without a key nothing coalesces: a plain insert.
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

/// As [`enqueue`], unless a job with the same key is running: for work that
/// one run covers whoever asked for it (a backfill). Returns whether the job
/// was enqueued (or merged into a pending one).
pub async fn enqueue_unless_running(conn: &mut AsyncPgConnection, job: &NewJob) -> QueryResult<bool> {
    if let Some(key) = job.coalesce_key.as_deref() {
        let running: i64 = jobs::table
            .filter(jobs::coalesce_key.eq(key))
            .filter(jobs::state.eq(JobState::Running))
            .count()
            .get_result(conn)
            .await?;
        if running > 0 {
            return Ok(false);
        }
    }
    enqueue(conn, job).await.map(|_| true)
}

/// Enqueues many jobs in one statement, merging those that share a
/// coalescing key first (PostgreSQL refuses to update one row twice in a
/// statement). Returns the job each input ended up in, in input order.
///
/// Every job must have a coalescing key: the merged result is mapped back to
/// the inputs by key.
pub async fn enqueue_many(
    conn: &mut AsyncPgConnection,
    jobs: &[&NewJob],
) -> diesel::QueryResult<Vec<EnqueuedJob>> {
    let merged = merge_by_key(jobs)?;
    let (mut kinds, mut keys, mut payloads, mut max_attempts, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for job in &merged {
        kinds.push(job.kind.as_str());
        keys.push(job.key);
        payloads.push(&job.payload);
        max_attempts.push(job.max_attempts);
        counts.push(job.requests);
    }
    // Same ON CONFLICT target as `enqueue`; a merged row stands for
    // `requests` requests, so the count grows by that many.
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
    let by_key: HashMap<&str, EnqueuedJob> = rows
        .iter()
        .map(|row| {
            (row.coalesce_key.as_str(), EnqueuedJob { id: row.id, coalesced_count: row.coalesced_count })
        })
        .collect();
    jobs.iter()
        .map(|job| {
            job.coalesce_key
                .as_deref()
                .and_then(|key| by_key.get(key).copied())
                .ok_or_else(|| diesel::result::Error::QueryBuilderError("a job has no coalescing key".into()))
        })
        .collect()
}

#[derive(QueryableByName)]
struct KeyedJob {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    coalesce_key: String,
    #[diesel(sql_type = Integer)]
    coalesced_count: i32,
}

/// Jobs of one key merged as the database would merge them one by one.
struct MergedJob<'a> {
    kind: JobKind,
    key: &'a str,
    payload: serde_json::Value,
    max_attempts: i32,
    requests: i32,
}

fn merge_by_key<'a>(jobs: &[&'a NewJob]) -> diesel::QueryResult<Vec<MergedJob<'a>>> {
    let mut merged: Vec<MergedJob<'a>> = Vec::new();
    let mut index: HashMap<&'a str, usize> = HashMap::new();
    for job in jobs {
        let key = job
            .coalesce_key
            .as_deref()
            .ok_or_else(|| diesel::result::Error::QueryBuilderError("a job has no coalescing key".into()))?;
        match index.get(key) {
            Some(&at) => {
                let into = &mut merged[at];
                json_merge(&mut into.payload, &job.payload);
                into.requests += 1;
            }
            None => {
                index.insert(key, merged.len());
                merged.push(MergedJob {
                    kind: job.kind,
                    key,
                    payload: job.payload.clone(),
                    max_attempts: job.max_attempts,
                    requests: 1,
                });
            }
        }
    }
    Ok(merged)
}

/// PostgreSQL's `jsonb || jsonb` for the objects job payloads are: a shallow
/// merge where the newer value's keys win. Anything else is replaced whole,
/// as `||` would not merge it either.
fn json_merge(into: &mut serde_json::Value, newer: &serde_json::Value) {
    match (into, newer) {
        (serde_json::Value::Object(old), serde_json::Value::Object(new)) => {
            for (key, value) in new {
                old.insert(key.clone(), value.clone());
            }
        }
        (into, newer) => *into = newer.clone(),
    }
}

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::deliveries::DeliveryOutcome;
use crate::db::schema::{jobs, webhook_deliveries};

/// The job a worker holds: its id and the lease owner that must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub id: i64,
    pub worker: String,
}

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
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = jobs)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub coalesce_key: Option<String>,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub coalesced_count: i32,
    pub run_at: DateTime<Utc>,
    pub attempts: i32,
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
        out.push_bind_param::<diesel::sql_types::Double, _>(&self.lease_secs)?;
        out.push_sql(
            "), attempts = attempts + 1, updated_at = now() \
             WHERE id IN (SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) claimable LIMIT ",
        );
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(") RETURNING id, kind, payload, attempts, max_attempts");
        Ok(())
    }
}

/// The end of a job's synchronization transaction: the job done (if its
/// lease is still held), its deliveries processed, and the repository's
/// successful sync recorded — what `complete` and
/// `repositories::record_success` do, in the one statement.
pub async fn complete_sync(
    conn: &mut AsyncPgConnection,
    job: &JobRef,
    repository_id: i64,
) -> QueryResult<()> {
    finish(conn, Finishing::Leased(job), Finish::Done { repository_id: Some(repository_id) })
        .await
        .map(|_| ())
}

/// Which job a completion ends, on what condition.
enum Finishing<'a> {
    /// Only while this worker still holds the lease: nothing has locked
    /// the row before, so the statement checks.
    Leased(&'a JobRef),
    /// A row the caller's transaction has locked and checked already.
    Locked(i64),
}

/// How a job ends.
enum Finish<'a> {
    /// Its work is committed: done, its deliveries processed; for a
    /// synchronization, the repository's success recorded with it.
    Done { repository_id: Option<i64> },
    /// Out of attempts: a dead letter, its deliveries failed.
    Dead { error: &'a str },
    /// Folded into a newer pending job of its key, which holds its
    /// deliveries now; `note` says which.
    Absorbed { note: &'a str },
}

/// Every completion — done, dead, absorbed — in one statement, so each
/// writes the same columns; returns whether the job was finished.
async fn finish(conn: &mut AsyncPgConnection, which: Finishing<'_>, how: Finish<'_>) -> QueryResult<bool> {
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
    let finished: Finished = statement.get_result(conn).await?;
    Ok(finished.finished == 1)
}

#[derive(QueryableByName)]
struct Finished {
    #[diesel(sql_type = BigInt)]
    finished: i64,
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
    repository_id: Option<i64>,
}

crate::db::prepared_statement!(FinishStatement);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for FinishStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Bool, Nullable};
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
            "::text IS NOT NULL AND job_id IN (SELECT id FROM finished) RETURNING 1), \
             synced AS (UPDATE repositories SET last_synced_at = now(), consecutive_failures = 0, \
                               last_failure_reason = NULL, updated_at = now() \
                        WHERE id = ",
        );
        out.push_bind_param::<Nullable<BigInt>, _>(&self.repository_id)?;
        out.push_sql(" RETURNING 1) SELECT count(*) AS finished FROM finished");
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
    .bind::<diesel::sql_types::Double, _>(seconds(lease))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Marks a job done and its deliveries processed. Run it in the transaction
/// that wrote the job's results. False when the lease was lost meanwhile (the
/// work is idempotent; the new holder finishes the job).
pub async fn complete(conn: &mut AsyncPgConnection, job: &JobRef) -> QueryResult<bool> {
    finish(conn, Finishing::Leased(job), Finish::Done { repository_id: None }).await
}

/// What became of a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to pending, to run again at this time.
    Retrying,
    /// Out of attempts: kept as a dead letter.
    Dead,
    /// Merged into a newer pending job for the same key, which will redo the work.
    Merged,
    /// The lease was no longer this worker's.
    LeaseLost,
}

/// Records a failed attempt: pending again after `backoff`, or dead after
/// `max_attempts`. A newer pending job with the same key absorbs it.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    job: &JobRef,
    error: &str,
    backoff: std::time::Duration,
) -> QueryResult<FailOutcome> {
    use diesel_async::AsyncConnection as _;
    let error = truncate(error, 2000);
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let held: Option<(i32, i32, Option<String>)> = jobs::table
            .filter(jobs::id.eq(job.id))
            .filter(jobs::lease_owner.eq(&job.worker))
            .filter(jobs::state.eq(JobState::Running))
            .select((jobs::attempts, jobs::max_attempts, jobs::coalesce_key))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some((attempts, max_attempts, key)) = held else {
            return Ok(FailOutcome::LeaseLost);
        };
        if attempts >= max_attempts {
            finish(conn, Finishing::Locked(job.id), Finish::Dead { error: &error }).await?;
            return Ok(FailOutcome::Dead);
        }
        let run_at = chrono::Duration::from_std(backoff)
            .ok()
            .and_then(|backoff| Utc::now().checked_add_signed(backoff))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let note = |newer: i64| format!("superseded by job {newer} after: {error}");
        match reopen_or_absorb(conn, job.id, key.as_deref(), &note, Reopen::Retry { run_at, error: &error })
            .await?
        {
            Reopened::Pending => Ok(FailOutcome::Retrying),
            Reopened::Absorbed => Ok(FailOutcome::Merged),
        }
    })
    .await
}

/// How a job goes back to `pending`.
enum Reopen<'a> {
    /// A failed attempt: again at `run_at`, with its error.
    Retry { run_at: DateTime<Utc>, error: &'a str },
    /// Given back at shutdown: again now, the attempt not counted.
    Release,
    /// A dead letter brought back: again now, with fresh attempts.
    Revive,
}

/// Where a reopened job ended up.
enum Reopened {
    Pending,
    /// Folded into the pending job of the same key.
    Absorbed,
}

/// Tries before a transition gives up on a key that intake keeps re-creating.
const REOPEN_TRIES: usize = 5;

/// Moves job `id` back to `pending` as `how` says, or folds it into the
/// pending job of the same key. Intake may insert that pending job at any
/// moment: between "no pending job with this key" and the update, its insert
/// makes the update violate `jobs_pending_coalesce_key_idx` (PostgreSQL
/// waits for intake's commit, then raises the violation). The update runs in
/// a savepoint, so a violation rolls back only the update, and the next try
/// sees intake's committed job (each statement of a READ COMMITTED
/// transaction reads the latest commits) and merges into it.
async fn reopen_or_absorb(
    conn: &mut AsyncPgConnection,
    id: i64,
    key: Option<&str>,
    note: &(dyn Fn(i64) -> String + Sync),
    how: Reopen<'_>,
) -> QueryResult<Reopened> {
    use diesel::result::{DatabaseErrorKind, Error};
    use diesel_async::AsyncConnection as _;
    let mut tries = 0;
    loop {
        tries += 1;
        if let Some(newer) = pending_with_key(conn, key).await? {
            absorb(conn, id, newer, &note(newer)).await?;
            return Ok(Reopened::Absorbed);
        }
        let updated = conn.transaction::<_, Error, _>(async |conn| reopen(conn, id, &how).await).await;
        match updated {
            Ok(_) => return Ok(Reopened::Pending),
            Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) if tries < REOPEN_TRIES => {
                tracing::debug!(
                    job_id = id,
                    tries,
                    "a pending job of the same key appeared; merging into it"
                );
            }
            Err(error) => return Err(error),
        }
    }
}

async fn reopen(conn: &mut AsyncPgConnection, id: i64, how: &Reopen<'_>) -> QueryResult<usize> {
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

/// Gives a running job back (graceful shutdown): pending again, now, without
/// counting the attempt.
pub async fn release(conn: &mut AsyncPgConnection, job: &JobRef) -> QueryResult<()> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let key: Option<Option<String>> = jobs::table
            .filter(jobs::id.eq(job.id))
            .filter(jobs::lease_owner.eq(&job.worker))
            .filter(jobs::state.eq(JobState::Running))
            .select(jobs::coalesce_key)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(key) = key else { return Ok(()) };
        let note = |newer: i64| format!("released at shutdown into job {newer}");
        reopen_or_absorb(conn, job.id, key.as_deref(), &note, Reopen::Release).await.map(|_| ())
    })
    .await
}

async fn pending_with_key(conn: &mut AsyncPgConnection, key: Option<&str>) -> QueryResult<Option<i64>> {
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

/// Folds job `old` into the pending job `newer`: its payload (the newer's
/// keys win), its count and its deliveries move over; `old` is closed.
async fn absorb(conn: &mut AsyncPgConnection, old: i64, newer: i64, note: &str) -> QueryResult<()> {
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

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

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

/// Brings a dead letter back: pending now, with fresh attempts. Returns false
/// when the job is not dead. A pending job with the same key absorbs it.
pub async fn retry_dead(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<bool> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let key: Option<Option<String>> = jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::state.eq(JobState::Dead))
            .select(jobs::coalesce_key)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(key) = key else { return Ok(false) };
        let note = |newer: i64| format!("retried into pending job {newer}");
        if let Reopened::Pending = reopen_or_absorb(conn, id, key.as_deref(), &note, Reopen::Revive).await? {
            diesel::sql_query("SELECT pg_notify('prmonitor_jobs', '')").execute(conn).await?;
        }
        Ok(true)
    })
    .await
}

/// Pending jobs and the age of the oldest one, for readiness and metrics.
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<f64>)> {
    #[derive(QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = BigInt)]
        pending: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
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

/// Deletes finished jobs older than `keep` (done only: dead letters stay).
pub async fn purge_done(conn: &mut AsyncPgConnection, keep: std::time::Duration) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    diesel::delete(jobs::table.filter(jobs::state.eq(JobState::Done)).filter(jobs::finished_at.lt(cutoff)))
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pr_job(number: i64, with_checks: bool) -> NewJob {
        let repository = RepoRef { github_id: 1, full_name: "o/r".into(), installation_id: None };
        NewJob::event(&EventTarget::PullRequest { repository, number, with_checks })
    }

    #[test]
    fn merging_in_a_batch_matches_merging_in_the_database() {
        // As `||` would: newer keys win, keys the newer lacks are kept.
        let mut into = json!({"a": 1, "flag": true});
        json_merge(&mut into, &json!({"a": 2, "b": 3}));
        assert_eq!(into, json!({"a": 2, "b": 3, "flag": true}));

        let jobs = [pr_job(1, true), pr_job(2, false), pr_job(1, false), pr_job(1, false)];
        let refs: Vec<&NewJob> = jobs.iter().collect();
        let merged = merge_by_key(&refs).expect("keyed");
        assert_eq!(merged.len(), 2, "one row per key, in first-seen order");
        assert_eq!((merged[0].key, merged[0].requests), ("pr:1:1", 3));
        assert_eq!(merged[0].payload["with_checks"], true, "a later request never clears a flag");
        assert_eq!((merged[1].key, merged[1].requests), ("pr:1:2", 1));
    }

    #[test]
    fn a_job_without_a_key_cannot_be_batched() {
        let mut job = pr_job(1, false);
        job.coalesce_key = None;
        assert!(merge_by_key(&[&job]).is_err());
    }
}
