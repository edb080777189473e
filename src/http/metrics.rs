//! `GET /metrics`: Prometheus text format. Counters and histograms are
//! recorded where things happen; the queue and repository gauges are read
//! from the database at scrape time, so every instance reports the same truth.

use actix_web::{web, HttpResponse};
use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

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

pub async fn metrics(pool: web::Data<DbPool>, read: web::Data<super::read::ReadConfig>) -> HttpResponse {
    let handle = crate::telemetry::metrics();
    let database = record_database_gauges(&pool, read.stuck_after()).await;
    metrics::gauge!("prmonitor_metrics_database_up").set(if database.is_ok() { 1.0 } else { 0.0 });
    if let Err(error) = database {
        tracing::warn!(%error, "metrics: the database gauges are stale");
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(handle.render())
}
