//! Liveness and readiness for the orchestrator.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::db::{self, DbPool};

/// Readiness must answer even when the database hangs.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready to take traffic: the database answers and its schema is this binary's.
pub async fn readyz(pool: web::Data<DbPool>) -> HttpResponse {
    match tokio::time::timeout(READY_DEADLINE, check(&pool)).await {
        Ok(Ok(())) => {
            HttpResponse::Ok().json(json!({ "status": "ready", "database": "ok", "schema": "current" }))
        }
        Ok(Err(reason)) => not_ready(reason),
        Err(_) => not_ready(format!("database: no answer within {READY_DEADLINE:?}")),
    }
}

async fn check(pool: &DbPool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| format!("database: {e}"))?;
    let pending = db::pending_migrations(&mut conn).await.map_err(|e| format!("database: {e}"))?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("schema: migrations not applied: {}", pending.join(", ")))
    }
}

fn not_ready(reason: String) -> HttpResponse {
    tracing::warn!(%reason, "not ready");
    HttpResponse::ServiceUnavailable().json(json!({ "status": "not ready", "reason": reason }))
}
