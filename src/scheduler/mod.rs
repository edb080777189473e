//! The scheduler: a sweep for every active repository whose last full read is
//! older than the sweep interval, and housekeeping. It needs no leader: the
//! decision is made from the database each tick, and the queue's coalescing
//! keeps concurrent schedulers from doubling a sweep.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::watch;

use crate::config::{BulkReads, GitHubSettings, WorkerSettings};
use crate::db::schema::{jobs, repositories, webhook_deliveries};
use crate::db::{change_events, repairs, DbPool};
use crate::github::cache;
use crate::ids::InstallationId;
use crate::jitter::Jitter;
use crate::queue::{self, JobKind, JobState, NewJob, RecoveryJob, RepositoryJob, SurveyJob};

/// Finished jobs stay this long for `GET /api/v1/jobs/{id}` and `jobs list`.
const KEEP_DONE_JOBS: Duration = Duration::from_secs(86_400);

pub struct Scheduler {
    pool: DbPool,
    settings: WorkerSettings,
    cache_ttl: Duration,
    /// How often the App's installations are listed; `None` without an App
    /// (a token has no installations) or when turned off.
    installation_sync: Option<Duration>,
    /// How often the App's deliveries API is searched for lost deliveries;
    /// `None` without an App (a token has no deliveries API) or when off.
    delivery_recovery: Option<Duration>,
    jitter: Jitter,
}

impl Scheduler {
    pub fn new(pool: DbPool, settings: WorkerSettings, github: &GitHubSettings) -> Self {
        // An App lists its installations; a token registers the repositories
        // the operator named.
        let installation_sync = settings.installation_sync_interval.filter(|_| match github.auth {
            Some(crate::config::GitHubAuth::App { .. }) => true,
            Some(crate::config::GitHubAuth::Token(_)) => !settings.repositories.is_empty(),
            None => false,
        });
        let delivery_recovery = settings
            .delivery_recovery_interval
            .filter(|_| matches!(github.auth, Some(crate::config::GitHubAuth::App { .. })));
        Self {
            pool,
            settings,
            cache_ttl: github.cache_ttl,
            installation_sync,
            delivery_recovery,
            jitter: Jitter::new(),
        }
    }

    /// Enqueues the listing of the App's installations when none is pending
    /// or running and none finished within the interval: one for all
    /// instances, decided from the database. True when it enqueued one.
    pub async fn schedule_installation_sync(&self) -> Result<bool, diesel::result::Error> {
        let Some(interval) = self.installation_sync else { return Ok(false) };
        self.schedule_singleton(NewJob::installations(), interval).await
    }

    /// As [`Self::schedule_installation_sync`], for gap recovery from the
    /// App's deliveries API.
    pub async fn schedule_delivery_recovery(&self) -> Result<bool, diesel::result::Error> {
        let Some(interval) = self.delivery_recovery else { return Ok(false) };
        self.schedule_singleton(NewJob::recover_deliveries(&RecoveryJob::default()), interval).await
    }

    /// Enqueues `job` unless one of its kind is pending or running, or one
    /// finished within `interval`.
    async fn schedule_singleton(
        &self,
        job: NewJob,
        interval: Duration,
    ) -> Result<bool, diesel::result::Error> {
        let mut conn = self.pool.get().await.map_err(|e| pool_error(&e))?;
        let since =
            chrono::Utc::now() - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
        let recent: i64 = jobs::table
            .filter(jobs::kind.eq(job.kind.as_str()))
            .filter(
                jobs::state
                    .eq_any([JobState::Pending, JobState::Running])
                    .or(jobs::state.eq(JobState::Done).and(jobs::finished_at.gt(since))),
            )
            .count()
            .get_result(&mut conn)
            .await?;
        if recent > 0 {
            return Ok(false);
        }
        queue::enqueue(&mut conn, &job.with_max_attempts(self.settings.max_attempts)).await?;
        Ok(true)
    }

    /// How often it looks: a tenth of the interval, between 1 s and a minute.
    fn tick(&self) -> Duration {
        (self.settings.sweep_interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Runs until `shutdown` turns true. The first tick is immediate: the
    /// catch-up for repositories whose last sweep is older than the interval.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(interval_secs = self.settings.sweep_interval.as_secs(), "scheduler started");
        loop {
            match self.schedule_installation_sync().await {
                Ok(true) => tracing::info!("installations listing scheduled"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "could not schedule the installations listing"),
            }
            match self.schedule_delivery_recovery().await {
                Ok(true) => tracing::info!("delivery recovery scheduled"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "could not schedule delivery recovery"),
            }
            match self.schedule_due_sweeps().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sweeps = n, "sweeps scheduled"),
                Err(error) => tracing::warn!(%error, "could not schedule sweeps"),
            }
            if let Err(error) = self.housekeeping().await {
                tracing::warn!(%error, "housekeeping failed");
            }
            // Spread instances' ticks so they do not query in lockstep.
            let pause = self.tick().mul_f64(0.8 + self.jitter.fraction() * 0.4);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// Enqueues a sweep for each repository that is due (with GraphQL bulk
    /// reads, one survey per installation with due repositories instead, but
    /// none beside a survey still pending or running); returns how many jobs
    /// it enqueued.
    pub async fn schedule_due_sweeps(&self) -> Result<usize, diesel::result::Error> {
        let mut conn = self.pool.get().await.map_err(|e| pool_error(&e))?;
        let due = queue::repositories_due_for_sweep(&mut conn, self.settings.sweep_interval).await?;
        if self.settings.bulk_reads == BulkReads::Graphql && !due.is_empty() {
            let installations: Vec<Option<InstallationId>> = repositories::table
                .filter(repositories::id.eq_any(&due))
                .select(repositories::installation_id)
                .distinct()
                .load(&mut conn)
                .await?;
            // A survey still running would be doubled by another: its
            // repositories stay due until it reaches them.
            let busy: Vec<Option<String>> = jobs::table
                .filter(jobs::kind.eq(JobKind::Survey.as_str()))
                .filter(jobs::state.eq_any([JobState::Pending, JobState::Running]))
                .select(jobs::coalesce_key)
                .load(&mut conn)
                .await?;
            let mut enqueued = 0;
            for installation_id in installations {
                let job = NewJob::survey(&SurveyJob { installation_id })
                    .with_max_attempts(self.settings.max_attempts);
                if !busy.contains(&job.coalesce_key) {
                    queue::enqueue(&mut conn, &job).await?;
                    enqueued += 1;
                }
            }
            return Ok(enqueued);
        }
        for repository_id in &due {
            let job = NewJob::sweep(&RepositoryJob { repository_id: *repository_id, manual: false })
                .with_max_attempts(self.settings.max_attempts);
            queue::enqueue(&mut conn, &job).await?;
        }
        Ok(due.len())
    }

    /// Expired ETags, old finished jobs, old repairs, change feed events and
    /// payloads past their retention.
    pub async fn housekeeping(&self) -> Result<(), diesel::result::Error> {
        let mut conn = self.pool.get().await.map_err(|e| pool_error(&e))?;
        cache::purge(&mut conn, self.cache_ttl).await?;
        queue::purge_done(&mut conn, KEEP_DONE_JOBS).await?;
        repairs::purge(&mut conn, repairs::KEEP_REPAIRS).await?;
        change_events::purge(&mut conn, self.settings.change_feed_retention).await?;
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.settings.payload_retention).unwrap_or(chrono::Duration::MAX);
        diesel::update(
            webhook_deliveries::table
                .filter(webhook_deliveries::received_at.lt(cutoff))
                .filter(webhook_deliveries::payload.is_not_null()),
        )
        .set(webhook_deliveries::payload.eq(None::<Vec<u8>>))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

fn pool_error(error: &impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new(error.to_string()),
    )
}
