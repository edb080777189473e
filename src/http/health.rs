//! Liveness and readiness for the orchestrator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::db::{self, DbPool};
use crate::queue;
use crate::worker::Heartbeat;

/// What readiness looks at besides the database.
pub struct Readiness {
    /// The worker's heartbeat, when this process runs one.
    heartbeat: Option<Arc<Heartbeat>>,
    /// Older than this, the worker is considered stuck.
    max_heartbeat_age: Duration,
    /// The last check, shared by every probe of this process (see [`readyz`]).
    last: tokio::sync::Mutex<Option<Checked>>,
}

/// A readiness check and when it started.
struct Checked {
    started: Instant,
    result: Result<serde_json::Value, String>,
}

/// How long a passing check answers the probes that follow it. A failing
/// one answers only probes that arrived while it ran: the first probe after
/// a failure checks again, so "ready again" is seen at once.
pub const READY_REUSE_FOR: Duration = Duration::from_secs(1);

impl Readiness {
    pub fn new(heartbeat: Option<Arc<Heartbeat>>, poll_interval: Duration) -> Self {
        // A job may run long; its slot beats again only when it ends. Other
        // slots keep beating, so a few poll intervals (at least 30 s) is ample.
        Self {
            heartbeat,
            max_heartbeat_age: (poll_interval * 5).max(Duration::from_secs(30)),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The result of a check that started after `arrived`, or of a passing
    /// one younger than [`READY_REUSE_FOR`]; otherwise checks now. Probes
    /// queue behind a check in flight and take its result, so any number of
    /// probers cost the database at most one check at a time.
    async fn result(&self, pool: &DbPool, arrived: Instant) -> Result<serde_json::Value, String> {
        let mut last = self.last.lock().await;
        if let Some(checked) = last.as_ref() {
            let fresh = checked.started >= arrived
                || (checked.result.is_ok() && checked.started.elapsed() < READY_REUSE_FOR);
            if fresh {
                return checked.result.clone();
            }
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(READY_DEADLINE, check(pool, self)).await {
            Ok(result) => result,
            Err(_) => Err(format!("database: no answer within {READY_DEADLINE:?}")),
        };
        if let Err(reason) = &result {
            tracing::warn!(%reason, "not ready");
        }
        *last = Some(Checked { started, result: result.clone() });
        result
    }
}

/// Readiness must answer even when the database hangs.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    description = "Answers without the database. Served on both listeners.",
    responses((status = 200, description = "alive", body = super::openapi::answers::Alive)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready to take traffic: the database answers, its schema is this binary's,
/// and the worker (when this process runs one) is going round its loop.
/// Also reports the queue's backlog and the age of its oldest due job.
/// Checks are shared between probes (see [`Readiness::result`]): many
/// probers and scrapers must not load the database.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    description = "The database answers within 2 s, its schema is this binary's, and the worker (when this process \
                   runs one) is going round its loop. With `PRMONITOR_OPS_LISTEN` set, served on the operations \
                   listener only.",
    responses(
        (status = 200, description = "ready", body = super::openapi::answers::Ready),
        (status = 503, description = "not ready, and why", body = super::openapi::answers::NotReady),
    ),
)]
pub async fn readyz(pool: web::Data<DbPool>, readiness: web::Data<Readiness>) -> HttpResponse {
    match readiness.result(&pool, Instant::now()).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(reason) => {
            HttpResponse::ServiceUnavailable().json(json!({ "status": "not ready", "reason": reason }))
        }
    }
}

async fn check(pool: &DbPool, readiness: &Readiness) -> Result<serde_json::Value, String> {
    let mut conn = pool.get().await.map_err(|e| format!("database: {e}"))?;
    let pending = db::pending_migrations(&mut conn).await.map_err(|e| format!("database: {e}"))?;
    if !pending.is_empty() {
        return Err(format!("schema: migrations not applied: {}", pending.join(", ")));
    }
    let (due, oldest) = queue::backlog(&mut conn).await.map_err(|e| format!("database: {e}"))?;
    let worker = match &readiness.heartbeat {
        None => json!("not running in this process"),
        Some(heartbeat) => {
            let age = heartbeat.age().ok_or("worker: not started yet")?;
            if age > readiness.max_heartbeat_age {
                return Err(format!("worker: no heartbeat for {} s", age.as_secs()));
            }
            json!({ "heartbeat_age_secs": age.as_secs_f64() })
        }
    };
    Ok(json!({
        "status": "ready",
        "database": "ok",
        "schema": "current",
        "worker": worker,
        "queue": { "due_jobs": due, "oldest_due_job_age_secs": oldest },
    }))
}
