//! The OpenAPI document of [`super::ROUTES`], generated from the handlers'
//! `#[utoipa::path]` annotations and the types they answer with, built once
//! per process and served at `GET /api/v1/openapi.json`.
//!
//! The board's HTML pages are not in it: they are for browsers, not clients.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "prmonitor",
        description = "A PostgreSQL copy of the pull requests and check runs of the repositories where a GitHub App \
                       is installed: webhook intake, the read API, the admin API, health and metrics. \
                       Generated from the code.",
    ),
    paths(
        crate::webhook::intake::receive,
        super::health::healthz,
        super::health::readyz,
        metrics,
        super::admin::reconcile,
        super::admin::job,
        super::read::list_repositories,
        super::read::list_pulls,
        super::read::get_pull,
        super::read::flaky_checks,
        super::read::list_merge_groups,
        super::feed::events,
        openapi,
        super::setup::form,
        super::setup::begin,
        super::setup::complete,
        super::setup::installed,
    ),
    // Schemas only parameters name: the paths' bodies bring the others.
    components(schemas(super::read::PullsStateFilter, crate::db::reads::values::ChecksState)),
    modifiers(&BearerToken),
    tags(
        (name = "webhooks", description = "GitHub's deliveries"),
        (name = "operations", description = "health, readiness, metrics"),
        (name = "admin", description = "reconcile and the queue, with the admin token"),
        (name = "read", description = "repositories, pull requests and their checks, with the read or admin token"),
        (name = "setup", description = "creating the GitHub App through GitHub's manifest flow (HTML pages)"),
    )
)]
struct ApiDoc;

/// The `bearer` scheme the read and admin routes name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "PRMONITOR_ADMIN_TOKEN, or PRMONITOR_READ_TOKEN for the read API and the change feed".to_owned(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON, built on first use.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = match serde_json::to_value(ApiDoc::openapi()) {
            Ok(document) => document,
            // The document is plain data; serializing it cannot fail.
            Err(error) => serde_json::json!({ "error": error.to_string() }),
        };
        close_answers(&mut document);
        document.to_string()
    })
}

/// Every object the service answers with carries exactly the fields its
/// type declares, null ones included (none is skipped when empty): each
/// object schema reachable from a response gets all its properties
/// required and no others allowed, so a client (and schemathesis) can rely
/// on the shape. Request schemas, where fields may be left out, are not
/// touched; objects without declared properties (free-form JSON) stay open.
fn close_answers(document: &mut Value) {
    let mut components = Vec::new();
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for content in responses.values_mut().filter_map(|r| r.get_mut("content")) {
                for media in content.as_object_mut().into_iter().flat_map(|c| c.values_mut()) {
                    if let Some(schema) = media.get_mut("schema") {
                        close(schema, &mut components);
                    }
                }
            }
        }
    }
    let mut closed = std::collections::HashSet::new();
    while let Some(name) = components.pop() {
        if !closed.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = document.pointer_mut(&format!("/components/schemas/{name}")) {
            close(schema, &mut components);
        }
    }
}

/// Closes `schema` and what it nests; pushes the components it refers to.
fn close(schema: &mut Value, components: &mut Vec<String>) {
    let Some(object) = schema.as_object_mut() else { return };
    if let Some(name) =
        object.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        components.push(name.to_owned());
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let names: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
        object.insert("required".to_owned(), Value::Array(names));
        object.entry("additionalProperties").or_insert(Value::Bool(false));
    }
    for (key, value) in object.iter_mut() {
        match key.as_str() {
            "properties" => value
                .as_object_mut()
                .into_iter()
                .flat_map(|p| p.values_mut())
                .for_each(|p| close(p, components)),
            "items" | "additionalProperties" => close(value, components),
            "oneOf" | "anyOf" | "allOf" => {
                value.as_array_mut().into_iter().flatten().for_each(|s| close(s, components))
            }
            _ => {}
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    description = "Served on both listeners.",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json", body = Object)),
)]
pub(super) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

// The handler is `super::metrics::metrics`; it is described here so that
// module stays about metrics.
/// Prometheus metrics in the text exposition format.
///
/// With `PRMONITOR_OPS_LISTEN` set, served on the operations listener only.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String)),
)]
#[allow(dead_code)]
fn metrics() {}

/// Answers whose handlers build their JSON in place (health, readiness and
/// intake), described as types.
#[allow(dead_code)]
pub(crate) mod answers {
    use utoipa::ToSchema;

    /// `GET /healthz`: the process is up.
    #[derive(ToSchema)]
    pub struct Alive {
        pub status: AliveStatus,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum AliveStatus {
        Ok,
    }

    /// `GET /readyz` when ready.
    #[derive(ToSchema)]
    pub struct Ready {
        #[schema(inline)]
        pub status: ReadyStatus,
        #[schema(inline)]
        pub database: DatabaseOk,
        #[schema(inline)]
        pub schema: SchemaCurrent,
        pub worker: Worker,
        pub queue: Backlog,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum ReadyStatus {
        Ready,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum DatabaseOk {
        Ok,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum SchemaCurrent {
        Current,
    }

    /// The worker of this process: the age of its heartbeat, or a sentence
    /// when this process runs none.
    #[derive(serde::Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum Worker {
        #[schema(value_type = String, example = "not running in this process")]
        NotRunning(String),
        Beating(Heartbeat),
    }

    #[derive(serde::Serialize, ToSchema)]
    pub struct Heartbeat {
        #[schema(minimum = 0.0)]
        pub heartbeat_age_secs: f64,
    }

    /// Jobs due now, and how long the oldest of them has waited.
    #[derive(ToSchema)]
    pub struct Backlog {
        #[schema(minimum = 0)]
        pub due_jobs: i64,
        pub oldest_due_job_age_secs: Option<f64>,
    }

    /// `GET /readyz` when not ready.
    #[derive(ToSchema)]
    pub struct NotReady {
        #[schema(inline)]
        pub status: NotReadyStatus,
        /// What is not ready: `database: …`, `schema: …` or `worker: …`.
        pub reason: String,
    }

    #[derive(ToSchema)]
    pub enum NotReadyStatus {
        #[schema(rename = "not ready")]
        NotReady,
    }

    /// One event of the change feed (`GET /api/v1/events`), as Server-Sent
    /// Events frame it. Comments (`: keep-alive`, every 15 s) and the
    /// stream's opening `retry:` and `id:` lines carry no data and are not
    /// events.
    #[derive(ToSchema)]
    pub struct FeedMessage {
        /// The event's id: resume after it with `Last-Event-ID` or `?since=`.
        #[schema(pattern = "^[0-9]+$")]
        pub id: String,
        pub event: FeedEventKind,
        /// JSON. A change: `id`, `kind`, `repository` (`owner/name`),
        /// `number` and `head_sha` (or null), `recorded_at`, and `data`, what
        /// changed. A `reset`: `reason`; reload the state and follow from here.
        pub data: String,
    }

    /// What changed (`change_events.kind`), or `reset`: the client resumed
    /// from an event no longer kept.
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum FeedEventKind {
        PullRequest,
        CheckRun,
        Status,
        MergeGroup,
        RequiredChecks,
        Repository,
        Reset,
    }

    /// What intake did with a delivery.
    #[derive(ToSchema)]
    pub struct DeliveryAnswer {
        pub status: DeliveryStatus,
        /// `X-GitHub-Delivery`.
        pub delivery_id: String,
        /// The job the delivery became, if any (`GET /api/v1/jobs/{id}`).
        pub job_id: Option<i64>,
    }

    /// A delivery's outcome as stored, or `duplicate` for a delivery id
    /// already stored (a redelivery: nothing is queued again).
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum DeliveryStatus {
        Queued,
        Ignored,
        Ping,
        Processed,
        Failed,
        Recovered,
        Duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed() -> Value {
        serde_json::from_str(document()).expect("the OpenAPI document is JSON")
    }

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document = parsed();
        assert_eq!(document["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        for (method, path, _) in super::super::ROUTES {
            let operation = &document["paths"][*path][method.to_lowercase()];
            assert!(operation.is_object(), "{method} {path} is not documented");
            assert!(operation["responses"].is_object(), "{method} {path} documents no responses");
        }
        let documented: usize = document["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|p| p.as_object().map_or(0, |o| o.len()))
            .sum();
        assert_eq!(
            documented,
            super::super::ROUTES.len(),
            "the document describes routes the service does not have"
        );
    }

    #[test]
    fn operations_routes_say_where_they_are_served() {
        let document = parsed();
        for (method, path, surface) in super::super::ROUTES {
            let description =
                document["paths"][*path][method.to_lowercase()]["description"].as_str().unwrap_or("");
            match surface {
                super::super::Surface::Operations => assert!(
                    description.contains("operations listener only"),
                    "{method} {path}: {description:?}"
                ),
                super::super::Surface::Both => {
                    assert!(description.contains("both listeners"), "{method} {path}: {description:?}")
                }
                super::super::Surface::Public => {}
            }
        }
    }

    #[test]
    fn each_parameter_is_named_once_and_every_path_segment_is_one() {
        let document = parsed();
        for (method, path, _) in super::super::ROUTES {
            let operation = &document["paths"][*path][method.to_lowercase()];
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            let mut named: Vec<(String, String)> = parameters
                .iter()
                .map(|p| {
                    (p["name"].as_str().unwrap_or("").to_owned(), p["in"].as_str().unwrap_or("").to_owned())
                })
                .collect();
            let count = named.len();
            named.sort();
            named.dedup();
            assert_eq!(named.len(), count, "{method} {path} names a parameter twice: {parameters:?}");
            for segment in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                assert!(
                    named.contains(&(segment.to_owned(), "path".to_owned())),
                    "{method} {path} does not describe {{{segment}}}"
                );
            }
        }
    }

    #[test]
    fn every_integer_has_a_format() {
        fn walk(value: &Value, at: &str, missing: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    let integer = match object.get("type") {
                        Some(Value::String(t)) => t == "integer",
                        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                        _ => false,
                    };
                    if integer
                        && !matches!(object.get("format").and_then(Value::as_str), Some("int32" | "int64"))
                    {
                        missing.push(at.to_owned());
                    }
                    for (key, child) in object {
                        walk(child, &format!("{at}/{key}"), missing);
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        walk(child, &format!("{at}/{i}"), missing);
                    }
                }
                _ => {}
            }
        }
        let mut missing = Vec::new();
        walk(&parsed(), "", &mut missing);
        assert_eq!(missing, Vec::<String>::new());
    }

    #[test]
    fn the_value_sets_are_the_ones_the_code_uses() {
        let document = parsed();
        let values = |name: &str| -> Vec<String> {
            document["components"]["schemas"][name]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} is an enum"))
                .iter()
                .map(|v| v.as_str().expect("text").to_owned())
                .collect()
        };
        assert_eq!(values("ChecksState"), crate::db::reads::CHECKS_STATES);
        assert_eq!(values("RequiredState"), crate::db::reads::REQUIRED_STATES);
        let kinds: Vec<&str> = crate::queue::JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(values("JobKind"), kinds);
        let mut outcomes: Vec<&str> =
            crate::db::deliveries::DeliveryOutcome::ALL.iter().map(|o| o.as_str()).collect();
        outcomes.push("duplicate");
        assert_eq!(values("DeliveryStatus"), outcomes);
    }

    #[test]
    fn answers_are_closed_and_requests_are_not() {
        let document = parsed();
        let repository = &document["components"]["schemas"]["RepositoryItem"];
        assert_eq!(repository["additionalProperties"], Value::Bool(false));
        let required = repository["required"].as_array().expect("required");
        assert!(required.contains(&Value::from("last_swept_at")), "{required:?}");
        // A request schema keeps what its type says: `organization` may be left out.
        let form = &document["components"]["schemas"]["SetupForm"];
        assert_eq!(form["required"], serde_json::json!(["public_url"]), "{form}");
        assert!(form.get("additionalProperties").is_none(), "{form}");
        let one = &document["components"]["schemas"]["ReconcileOne"];
        assert_eq!(one["additionalProperties"], Value::Bool(false), "deny_unknown_fields: {one}");
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(value: &Value, document: &Value, broken: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                        let target =
                            reference.strip_prefix('#').and_then(|pointer| document.pointer(pointer));
                        if target.is_none() {
                            broken.push(reference.to_owned());
                        }
                    }
                    object.values().for_each(|child| walk(child, document, broken));
                }
                Value::Array(items) => items.iter().for_each(|child| walk(child, document, broken)),
                _ => {}
            }
        }
        let document = parsed();
        let mut broken = Vec::new();
        walk(&document, &document, &mut broken);
        assert_eq!(broken, Vec::<String>::new());
    }

    #[test]
    fn the_board_is_not_in_the_document() {
        let document = parsed();
        for path in ["/", "/pulls"] {
            assert!(document["paths"].get(path).is_none(), "{path}");
        }
    }
}
