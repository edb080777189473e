//! `GET /metrics`: Prometheus text format. Counters and histograms are
//! recorded where things happen; the queue and repository gauges are read
//! from the database, so every instance reports the same truth, but at most
//! every [`REFRESH_EVERY`]: many scrapers must not load the database.

use actix_web::{web, HttpResponse};
use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::DbPool;
use crate::queue::{self, JobKind};

#[derive(QueryableByName)]
struct Failing {
    #[diesel(sql_type = BigInt)]
    failing: i64,
}

async fn record_database_gauges(pool: &DbPool, stuck_after: std::time::Duration) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let rows = queue::counts_by_kind(&mut conn).await.map_err(|e| e.to_string())?;
    for kind in JobKind::ALL {
        let row = rows.iter().find(|r| r.kind == kind.as_str());
        let label = kind.as_str();
        metrics::gauge!("prmonitor_jobs_pending", "kind" => label).set(row.map_or(0.0, |r| r.pending as f64));
        metrics::gauge!("prmonitor_jobs_running", "kind" => label).set(row.map_or(0.0, |r| r.running as f64));
        metrics::gauge!("prmonitor_jobs_dead", "kind" => label).set(row.map_or(0.0, |r| r.dead as f64));
        metrics::gauge!("prmonitor_jobs_oldest_pending_age_seconds", "kind" => label)
            .set(row.and_then(|r| r.oldest).unwrap_or(0.0));
    }
    let failing: Failing = diesel::sql_query(
        "SELECT count(*) AS failing FROM repositories WHERE active AND consecutive_failures > 0",
    )
    .get_result(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    metrics::gauge!("prmonitor_repositories_failing").set(failing.failing as f64);
    for health in crate::db::reads::ci_health(&mut conn, stuck_after).await.map_err(|e| e.to_string())? {
        let repository = health.repository;
        metrics::gauge!("prmonitor_checks_stuck", "repository" => repository.clone())
            .set(health.stuck_prs as f64);
        metrics::gauge!("prmonitor_checks_flaky_7d", "repository" => repository)
            .set(health.flaky_checks_7d as f64);
    }
    Ok(())
}

/// How old the database gauges may be before a scrape reads them again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The database gauges of this process, shared by its scrapes: the values
/// are in the recorder; this keeps when they were read and whether the
/// last read worked, and lets one scrape at a time read them again.
#[derive(Debug, Default)]
pub struct DatabaseGauges {
    refreshing: AtomicBool,
    state: Mutex<GaugeState>,
}

#[derive(Debug, Default)]
struct GaugeState {
    /// The last read, successful or not: the next is due [`REFRESH_EVERY`] after it.
    attempted: Option<Instant>,
    /// The last successful read: the age of the values served.
    succeeded: Option<Instant>,
}

/// Clears the in-flight mark however the refresh ends, also when the
/// scrape that runs it is dropped mid-query (its client went away).
struct Refreshing<'a>(&'a AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl DatabaseGauges {
    fn state(&self) -> std::sync::MutexGuard<'_, GaugeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the gauges again when they are due and no other scrape is
    /// reading them; otherwise returns at once, the last values standing.
    async fn refresh_if_due(&self, pool: &DbPool, stuck_after: Duration) {
        let due = self.state().attempted.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        if !due || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let _refreshing = Refreshing(&self.refreshing);
        let started = Instant::now();
        let result = record_database_gauges(pool, stuck_after).await;
        metrics::histogram!("prmonitor_metrics_database_refresh_seconds")
            .record(started.elapsed().as_secs_f64());
        let now = Instant::now();
        let mut state = self.state();
        state.attempted = Some(now);
        metrics::gauge!("prmonitor_metrics_database_up").set(if result.is_ok() { 1.0 } else { 0.0 });
        match result {
            Ok(()) => state.succeeded = Some(now),
            Err(error) => tracing::warn!(%error, "metrics: the database gauges are stale"),
        }
    }

    /// Sets `prmonitor_metrics_database_age_seconds` to the age of the values served.
    fn record_age(&self) {
        if let Some(at) = self.state().succeeded {
            metrics::gauge!("prmonitor_metrics_database_age_seconds").set(at.elapsed().as_secs_f64());
        }
    }
}

#[tracing::instrument(name = "metrics", skip_all)]
pub async fn metrics(
    pool: web::Data<DbPool>,
    read: web::Data<super::read::ReadConfig>,
    gauges: web::Data<DatabaseGauges>,
) -> HttpResponse {
    let handle = crate::telemetry::metrics();
    gauges.refresh_if_due(&pool, read.stuck_after()).await;
    gauges.record_age();
    let mut text = handle.render();
    crate::process_metrics::render(&mut text);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text)
}
