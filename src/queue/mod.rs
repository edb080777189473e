//! The durable job queue on the `jobs` table.
//!
//! Intake and the scheduler enqueue; workers claim, complete and fail jobs.
//! Enqueueing coalesces: while a job with the same key is pending, a new
//! request is merged into it instead of adding another, so a burst of twenty
//! deliveries for one pull request is one job.

mod job;

pub use job::{EventTarget, InstallationTarget, JobKind, NewJob, RepoRef, DEFAULT_MAX_ATTEMPTS};

use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text};
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
    // The ON CONFLICT target names the partial unique index
    // jobs_pending_coalesce_key_idx; jobs without a key never conflict.
    diesel::sql_query(
        "INSERT INTO jobs (kind, coalesce_key, payload, max_attempts) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (coalesce_key) WHERE state = 'pending' \
         DO UPDATE SET payload = jobs.payload || EXCLUDED.payload, \
                       coalesced_count = jobs.coalesced_count + 1, \
                       updated_at = now() \
         RETURNING id, coalesced_count",
    )
    .bind::<Text, _>(job.kind.as_str())
    .bind::<Nullable<Text>, _>(job.coalesce_key.as_deref())
    .bind::<Jsonb, _>(&job.payload)
    .bind::<Integer, _>(job.max_attempts)
    .get_result(conn)
    .await
}
