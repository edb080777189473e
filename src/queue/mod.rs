//! The durable job queue on the `jobs` table.
//!
//! Intake and the scheduler enqueue; workers claim, complete and fail jobs.
//! Enqueueing coalesces: while a job with the same key is pending, a new
//! request is merged into it instead of adding another, so a burst of twenty
//! deliveries for one pull request is one job.
//!
//! This file is the lifecycle: which transition a job makes and why. The
//! statements that make them are all in `storage.rs`.

mod job;
mod state;
mod storage;

pub use job::{
    EventTarget, InstallationTarget, JobKind, NewJob, RecoveryJob, RepoRef, RepositoryJob, SurveyJob,
    DEFAULT_MAX_ATTEMPTS,
};
pub use state::{JobState, UnknownJobState};
pub use storage::{
    backlog, claim, counts_by_kind, extend_lease, get, list, purge_done, repositories_due_for_sweep,
    unfinished, ClaimedJob, JobView, KindCounts,
};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer};
use diesel::{QueryResult, QueryableByName};
use diesel_async::AsyncPgConnection;

use crate::ids::RepositoryId;
use storage::{Finish, Finishing, KeyedInsert, Reopen};

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

/// The job a worker holds: its id and the lease owner that must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub id: i64,
    pub worker: String,
}

/// Adds `job`, or merges it into the pending job with the same coalescing key.
///
/// Merging is a shallow JSON merge (`||`): the newer request's keys win, keys
/// it lacks are kept. Job payloads are shaped for that: flags are written only
/// when true, so a merge never clears one.
pub async fn enqueue(conn: &mut AsyncPgConnection, job: &NewJob) -> QueryResult<EnqueuedJob> {
    if job.coalesce_key.is_some() {
        let mut enqueued = enqueue_many(conn, &[job]).await?;
        return enqueued.pop().ok_or(diesel::result::Error::NotFound);
    }
    // Without a key nothing coalesces: a plain insert.
    storage::insert(conn, job).await
}

/// As [`enqueue`], unless a job with the same key is running: for work that
/// one run covers whoever asked for it (a backfill). Returns whether the job
/// was enqueued (or merged into a pending one).
pub async fn enqueue_unless_running(conn: &mut AsyncPgConnection, job: &NewJob) -> QueryResult<bool> {
    if let Some(key) = job.coalesce_key.as_deref() {
        if storage::running_with_key(conn, key).await? {
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
pub async fn enqueue_many(conn: &mut AsyncPgConnection, jobs: &[&NewJob]) -> QueryResult<Vec<EnqueuedJob>> {
    let merged = merge_by_key(jobs)?;
    // A merged row stands for `requests` requests, so a pending job it
    // merges into grows by that many.
    let by_key = storage::insert_or_merge(conn, &merged).await?;
    jobs.iter()
        .map(|job| {
            job.coalesce_key
                .as_deref()
                .and_then(|key| by_key.get(key).copied())
                .ok_or_else(|| diesel::result::Error::QueryBuilderError("a job has no coalescing key".into()))
        })
        .collect()
}

/// Jobs of one key merged as the database would merge them one by one.
fn merge_by_key<'a>(jobs: &[&'a NewJob]) -> QueryResult<Vec<KeyedInsert<'a>>> {
    let mut merged: Vec<KeyedInsert<'a>> = Vec::new();
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
                merged.push(KeyedInsert {
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

/// Marks a job done and its deliveries processed. Run it in the transaction
/// that wrote the job's results. False when the lease was lost meanwhile (the
/// work is idempotent; the new holder finishes the job).
pub async fn complete(conn: &mut AsyncPgConnection, job: &JobRef) -> QueryResult<bool> {
    storage::finish(conn, Finishing::Leased(job), Finish::Done { repository_id: None })
        .await
        .map(|f| f.done())
}

/// The end of a job's synchronization transaction: the job done (if its
/// lease is still held), its deliveries processed, and the repository's
/// successful sync recorded — what `complete` and
/// `repositories::record_success` do, in the one statement. Returns how long
/// ago each of the job's deliveries was received (none when the lease was
/// lost: the new holder completes them).
pub async fn complete_sync(
    conn: &mut AsyncPgConnection,
    job: &JobRef,
    repository_id: RepositoryId,
) -> QueryResult<Vec<std::time::Duration>> {
    let done = Finish::Done { repository_id: Some(repository_id) };
    storage::finish(conn, Finishing::Leased(job), done).await.map(|f| f.delivery_ages())
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
        let Some(held) = storage::lock_held(conn, job).await? else {
            return Ok(FailOutcome::LeaseLost);
        };
        if held.attempts >= held.max_attempts {
            storage::finish(conn, Finishing::Locked(job.id), Finish::Dead { error: &error }).await?;
            return Ok(FailOutcome::Dead);
        }
        let run_at = chrono::Duration::from_std(backoff)
            .ok()
            .and_then(|backoff| Utc::now().checked_add_signed(backoff))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let note = |newer: i64| format!("superseded by job {newer} after: {error}");
        let key = held.coalesce_key.as_deref();
        match reopen_or_absorb(conn, job.id, key, &note, Reopen::Retry { run_at, error: &error }).await? {
            Reopened::Pending => Ok(FailOutcome::Retrying),
            Reopened::Absorbed => Ok(FailOutcome::Merged),
        }
    })
    .await
}

/// Gives a running job back (graceful shutdown): pending again, now, without
/// counting the attempt.
pub async fn release(conn: &mut AsyncPgConnection, job: &JobRef) -> QueryResult<()> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(held) = storage::lock_held(conn, job).await? else { return Ok(()) };
        let note = |newer: i64| format!("released at shutdown into job {newer}");
        reopen_or_absorb(conn, job.id, held.coalesce_key.as_deref(), &note, Reopen::Release).await.map(|_| ())
    })
    .await
}

/// Brings a dead letter back: pending now, with fresh attempts. Returns false
/// when the job is not dead. A pending job with the same key absorbs it.
pub async fn retry_dead(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<bool> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(key) = storage::lock_dead(conn, id).await? else { return Ok(false) };
        let note = |newer: i64| format!("retried into pending job {newer}");
        if let Reopened::Pending = reopen_or_absorb(conn, id, key.as_deref(), &note, Reopen::Revive).await? {
            storage::notify_workers(conn).await?;
        }
        Ok(true)
    })
    .await
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
        if let Some(newer) = storage::pending_with_key(conn, key).await? {
            storage::absorb(conn, id, newer, &note(newer)).await?;
            return Ok(Reopened::Absorbed);
        }
        let updated =
            conn.transaction::<_, Error, _>(async |conn| storage::reopen(conn, id, &how).await).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::ids::{GithubRepoId, PullRequestNumber};

    fn pr_job(number: i32, with_checks: bool) -> NewJob {
        let number = PullRequestNumber(number);
        let repository =
            RepoRef { github_id: GithubRepoId(1), full_name: "o/r".into(), installation_id: None };
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
