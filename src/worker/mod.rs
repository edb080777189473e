//! The worker: claims jobs from the queue and runs them through the pipeline.
//!
//! Any number of workers, in any number of processes, share the `jobs` table:
//! claims skip each other's rows, leases let a dead worker's jobs be taken
//! over, and a job's results and its completion commit together.

mod jobs;

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::{watch, Notify};
use tracing::Instrument as _;

use crate::config::{DatabaseUrl, WorkerSettings};
use crate::db::DbPool;
use crate::github::GitHubClient;
use crate::jitter::Jitter;
use crate::monitor::PrProcessor;
use crate::queue::{self, ClaimedJob, JobRef};
use crate::supervise::{panic_message, supervise, Fatal, Restart};

/// When the worker last went round its loop (epoch milliseconds), for readiness.
#[derive(Debug, Default)]
pub struct Heartbeat(AtomicI64);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Time since the last beat; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let last = self.0.load(Ordering::Relaxed);
        (last > 0)
            .then(|| Duration::from_millis((chrono::Utc::now().timestamp_millis() - last).max(0) as u64))
    }
}

/// What running jobs needs.
pub struct WorkerDeps {
    pub pool: DbPool,
    pub database_url: DatabaseUrl,
    pub github: GitHubClient,
    pub processor: Arc<PrProcessor>,
    pub settings: WorkerSettings,
}

pub struct Worker {
    deps: Arc<WorkerDeps>,
    id: String,
    heartbeat: Arc<Heartbeat>,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashSet<i64>>>,
    jitter: Arc<Jitter>,
}

impl Worker {
    pub fn new(deps: WorkerDeps) -> Self {
        let jitter = Jitter::new();
        let id = format!("{}-{}-{:06x}", hostname(), std::process::id(), jitter.next_u64() & 0x00ff_ffff);
        Self {
            deps: Arc::new(deps),
            id,
            heartbeat: Arc::new(Heartbeat::default()),
            wake: Arc::new(Notify::new()),
            running: Arc::default(),
            jitter: Arc::new(jitter),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    /// Runs until `shutdown` turns true; then lets running jobs finish for up
    /// to `grace` and gives back the leases of those that did not. Each slot
    /// and the notification listener run supervised: restarted when they
    /// panic or end, and `fatal` when they keep doing so.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration, fatal: Fatal) {
        tracing::info!(worker = %self.id, concurrency = self.deps.settings.concurrency, "worker started");
        self.heartbeat.beat();
        let (url, wake, stop) = (self.deps.database_url.clone(), self.wake.clone(), shutdown.clone());
        let listener = tokio::spawn(supervise(
            "job notification listener",
            Restart::UnlessStopping,
            shutdown.clone(),
            fatal.clone(),
            move || listen(url.clone(), wake.clone(), stop.clone()),
        ));
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..self.deps.settings.concurrency {
            let slot_worker = SlotWorker {
                deps: self.deps.clone(),
                worker: self.id.clone(),
                heartbeat: self.heartbeat.clone(),
                wake: self.wake.clone(),
                running: self.running.clone(),
                jitter: self.jitter.clone(),
            };
            let stop = shutdown.clone();
            slots.spawn(supervise(
                "worker slot",
                Restart::UnlessStopping,
                shutdown.clone(),
                fatal.clone(),
                move || {
                    let (slot_worker, stop) = (slot_worker.clone(), stop.clone());
                    async move { slot_worker.run(slot, stop).await }
                },
            ));
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        tracing::info!(worker = %self.id, "worker stopping: finishing running jobs");
        let finished =
            tokio::time::timeout(grace, async { while slots.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            slots.abort_all();
            let unfinished: Vec<i64> = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .copied()
                .collect();
            if let Ok(mut conn) = self.deps.pool.get().await {
                for id in unfinished {
                    let job = JobRef { id, worker: self.id.clone() };
                    match queue::release(&mut conn, &job).await {
                        Ok(()) => tracing::info!(job_id = id, "lease released at shutdown"),
                        Err(error) => tracing::warn!(job_id = id, %error, "could not release a lease"),
                    }
                }
            }
        }
        listener.abort();
        tracing::info!(worker = %self.id, "worker stopped");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".to_owned())
}

/// Turns `NOTIFY prmonitor_jobs` into wake-ups, reconnecting when the
/// connection drops. Polling covers the gaps.
async fn listen(url: DatabaseUrl, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    use diesel_async::RunQueryDsl as _;
    loop {
        let session = async {
            let mut conn = AsyncPgConnection::establish(url.expose()).await.map_err(|e| e.to_string())?;
            diesel::sql_query("LISTEN prmonitor_jobs").execute(&mut conn).await.map_err(|e| e.to_string())?;
            let mut notifications = std::pin::pin!(conn.notifications_stream());
            while let Some(notification) = notifications.next().await {
                notification.map_err(|e| e.to_string())?;
                wake.notify_waiters();
            }
            Ok::<(), String>(())
        };
        tokio::select! {
            result = session => {
                if let Err(error) = result {
                    tracing::debug!(%error, "job notifications interrupted; reconnecting");
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        // The queue may have filled while we were away.
        wake.notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(Clone)]
struct SlotWorker {
    deps: Arc<WorkerDeps>,
    worker: String,
    heartbeat: Arc<Heartbeat>,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashSet<i64>>>,
    jitter: Arc<Jitter>,
}

impl SlotWorker {
    async fn run(&self, slot: usize, mut shutdown: watch::Receiver<bool>) {
        let poll = self.deps.settings.poll_interval;
        while !*shutdown.borrow() {
            self.heartbeat.beat();
            // Registered before the claim, so a NOTIFY between claim and wait is not missed.
            let woken = self.wake.notified();
            match self.claim().await {
                Ok(Some(job)) => {
                    self.execute(job).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(slot, %error, "cannot claim jobs; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Idle: a notification, the poll interval (spread a little), or shutdown.
            let pause = poll.mul_f64(0.75 + self.jitter.fraction() / 2.0);
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
    }

    async fn claim(&self) -> Result<Option<ClaimedJob>, String> {
        let mut conn = self.deps.pool.get().await.map_err(|e| e.to_string())?;
        let mut claimed = queue::claim(&mut conn, &self.worker, self.deps.settings.lease, 1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(claimed.pop())
    }

    async fn execute(&self, job: ClaimedJob) {
        let job_ref = JobRef { id: job.id, worker: self.worker.clone() };
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(job.id);
        let deliveries = jobs::deliveries_of(&self.deps.pool, &job).await;
        let span = tracing::info_span!(
            "job",
            job_id = job.id,
            kind = %job.kind,
            attempt = job.attempts,
            delivery_id = deliveries.first_id().unwrap_or(""),
            delivery_ids = %deliveries.log_ids(),
            deliveries = deliveries.total(),
        );
        let started = std::time::Instant::now();
        // A panic in a job is that job's failure, recorded like any other;
        // the slot goes on to the next job.
        let run = async {
            AssertUnwindSafe(jobs::run(&self.deps, &job, &job_ref, &deliveries))
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| {
                    Err(format!("the job panicked: {}", panic_message(payload.as_ref())))
                })
        };
        let outcome = with_lease(&self.deps, &job_ref, run).instrument(span.clone()).await;
        let _entered = span.enter();
        let kind = crate::queue::JobKind::parse(&job.kind).map_or("unknown", |k| k.as_str());
        metrics::histogram!("prmonitor_job_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                metrics::counter!("prmonitor_jobs_completed_total", "kind" => kind).increment(1);
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "job done")
            }
            Err(error) => {
                let backoff = crate::github::policy::backoff(
                    self.deps.settings.retry_delay,
                    u32::try_from(job.attempts).unwrap_or(1),
                    self.jitter.fraction(),
                );
                match self.deps.pool.get().await {
                    Ok(mut conn) => match queue::fail(&mut conn, &job_ref, &error, backoff).await {
                        Ok(outcome) => {
                            let outcome_label = match outcome {
                                queue::FailOutcome::Retrying => "retrying",
                                queue::FailOutcome::Dead => "dead",
                                queue::FailOutcome::Merged => "merged",
                                queue::FailOutcome::LeaseLost => "lease_lost",
                            };
                            metrics::counter!("prmonitor_jobs_failed_total", "kind" => kind, "outcome" => outcome_label)
                                .increment(1);
                            tracing::warn!(%error, ?outcome, "job failed")
                        }
                        Err(db_error) => {
                            tracing::error!(%error, %db_error, "job failed and the failure was not recorded")
                        }
                    },
                    Err(db_error) => {
                        tracing::error!(%error, %db_error, "job failed and the failure was not recorded")
                    }
                }
            }
        }
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&job.id);
    }
}

/// Runs `work` while renewing the job's lease every third of its length.
async fn with_lease<F>(deps: &WorkerDeps, job: &JobRef, work: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let lease = deps.settings.lease;
    let renew = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            if let Ok(mut conn) = deps.pool.get().await {
                match queue::extend_lease(&mut conn, job, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job_id = job.id, "lease lost; another worker may redo this job")
                    }
                    Err(error) => tracing::warn!(job_id = job.id, %error, "could not renew the lease"),
                }
            }
        }
    };
    tokio::select! {
        result = work => result,
        () = renew => Ok(()),
    }
}

/// The queue's connection for a one-off statement (tests, CLI).
pub async fn complete_now(pool: &DbPool, job: &JobRef) -> Result<bool, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| queue::complete(conn, job).await)
        .await
        .map_err(|e| e.to_string())
}
