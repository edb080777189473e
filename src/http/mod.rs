//! The actix-web application: routes and the JSON shape of errors.

mod admin;
pub mod board;
mod error;
mod feed;
mod health;
pub(crate) mod metrics;
mod openapi;
mod read;
mod setup;

pub use admin::AdminConfig;
pub use error::ErrorBody;
pub use health::Readiness;
pub use metrics::REFRESH_EVERY as METRICS_REFRESH_EVERY;
pub(crate) use openapi::answers as openapi_answers;
pub use openapi::document as openapi_document;
pub use read::ReadConfig;
pub use setup::SetupConfig;

use actix_web::{web, HttpResponse, Route};

use crate::webhook::intake;

/// Which listener serves a route once the operations listener
/// (`PRMONITOR_OPS_LISTEN`) is separate; without it, one listener serves all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Faces GitHub and people: webhooks, the board, the read API, setup.
    Public,
    /// Faces operators and the orchestrator: metrics, readiness, the admin API.
    Operations,
    /// Both listeners (answers without the database).
    Both,
}

impl Surface {
    pub fn on_public(self) -> bool {
        self != Surface::Operations
    }

    pub fn on_operations(self) -> bool {
        self != Surface::Public
    }
}

/// Every route of the service, as (method, path, listener). `routes`
/// registers exactly these, and a test checks the generated OpenAPI document
/// ([`openapi_document`]) describes each of them and nothing else.
pub const ROUTES: &[(&str, &str, Surface)] = &[
    ("POST", "/webhooks/github", Surface::Public),
    ("GET", "/healthz", Surface::Both),
    ("GET", "/readyz", Surface::Operations),
    ("GET", "/metrics", Surface::Operations),
    ("POST", "/api/v1/reconcile", Surface::Operations),
    ("GET", "/api/v1/jobs/{id}", Surface::Operations),
    ("GET", "/api/v1/repositories", Surface::Public),
    ("GET", "/api/v1/repositories/{owner}/{name}/pulls", Surface::Public),
    ("GET", "/api/v1/repositories/{owner}/{name}/pulls/{number}", Surface::Public),
    ("GET", "/api/v1/repositories/{owner}/{name}/checks/flaky", Surface::Public),
    ("GET", "/api/v1/repositories/{owner}/{name}/merge-groups", Surface::Public),
    ("GET", "/api/v1/events", Surface::Public),
    ("GET", "/api/v1/openapi.json", Surface::Both),
    ("GET", "/setup", Surface::Public),
    ("POST", "/setup", Surface::Public),
    ("GET", "/setup/complete", Surface::Public),
    ("GET", "/setup/installed", Surface::Public),
];

fn route(method: &str, path: &str) -> Route {
    match (method, path) {
        ("POST", "/webhooks/github") => web::post().to(intake::receive),
        ("GET", "/healthz") => web::get().to(health::healthz),
        ("GET", "/readyz") => web::get().to(health::readyz),
        ("GET", "/metrics") => web::get().to(metrics::metrics),
        ("POST", "/api/v1/reconcile") => web::post().to(admin::reconcile),
        ("GET", "/api/v1/jobs/{id}") => web::get().to(admin::job),
        ("GET", "/api/v1/repositories") => web::get().to(read::list_repositories),
        ("GET", "/api/v1/repositories/{owner}/{name}/pulls") => web::get().to(read::list_pulls),
        ("GET", "/api/v1/repositories/{owner}/{name}/pulls/{number}") => web::get().to(read::get_pull),
        ("GET", "/api/v1/repositories/{owner}/{name}/checks/flaky") => web::get().to(read::flaky_checks),
        ("GET", "/api/v1/repositories/{owner}/{name}/merge-groups") => web::get().to(read::list_merge_groups),
        ("GET", "/api/v1/events") => web::get().to(feed::events),
        ("GET", "/api/v1/openapi.json") => web::get().to(openapi::openapi),
        ("GET", "/setup") => web::get().to(setup::form),
        ("POST", "/setup") => web::post().to(setup::begin),
        ("GET", "/setup/complete") => web::get().to(setup::complete),
        ("GET", "/setup/installed") => web::get().to(setup::installed),
        // A table entry without a handler answers like an unknown route.
        _ => web::route().to(not_found),
    }
}

/// Every route of the service on one listener. The app data (`DbPool`,
/// `IntakeConfig`, ...) is added by the caller, so tests and `serve` build the same app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes_where(cfg, |_| true);
    board::routes(cfg);
    cfg.default_service(web::to(not_found));
}

/// The public listener's routes when the operations listener is separate.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    routes_where(cfg, Surface::on_public);
    board::routes(cfg);
    cfg.default_service(web::to(not_found));
}

/// The operations listener's routes: it needs only the database, the admin
/// and read settings and readiness, so `worker` processes serve it too.
pub fn operations_routes(cfg: &mut web::ServiceConfig) {
    routes_where(cfg, Surface::on_operations);
    cfg.default_service(web::to(not_found));
}

/// One resource per path, so that a method the path does not take is
/// answered 405 with `Allow`, not 404 (the path exists).
fn routes_where(cfg: &mut web::ServiceConfig, serves: fn(Surface) -> bool) {
    let served: Vec<(&str, &str)> =
        ROUTES.iter().filter(|(_, _, surface)| serves(*surface)).map(|(m, p, _)| (*m, *p)).collect();
    let mut paths: Vec<&str> = served.iter().map(|(_, path)| *path).collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths {
        let methods: Vec<&str> = served.iter().filter(|(_, p)| *p == path).map(|(m, _)| *m).collect();
        let mut resource = web::resource(path);
        for method in &methods {
            resource = resource.route(route(method, path));
        }
        let allow = methods.join(", ");
        cfg.service(resource.default_service(web::to(move || method_not_allowed(allow.clone()))));
    }
}

async fn method_not_allowed(allow: String) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow.as_str()))
        .json(error::ErrorBody::new(format!("this path takes {allow} only")))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(error::ErrorBody::new("no such route"))
}
