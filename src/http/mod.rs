//! The actix-web application: routes and the JSON shape of errors.

mod admin;
mod health;

pub use admin::AdminConfig;
pub use health::Readiness;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::webhook::intake;

/// Every route of the service. The app data (`DbPool`, `IntakeConfig`) is
/// added by the caller, so tests and `serve` build the same app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/github", web::post().to(intake::receive))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/api/v1/reconcile", web::post().to(admin::reconcile))
        .route("/api/v1/jobs/{id}", web::get().to(admin::job))
        .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": "no such route" }))
}
