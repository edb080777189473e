//! The admin API: manual reconcile and job inspection, behind a bearer token.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::error::{ErrorBody, UNAVAILABLE};

/// The OpenAPI description of the admin routes' 401.
const ADMIN_UNAUTHORIZED: &str = "no valid admin token, or PRMONITOR_ADMIN_TOKEN unset";

use crate::config::Secret;
use crate::db::{repositories, DbPool};
use crate::queue::{self, JobView, NewJob, RepositoryJob};

pub struct AdminConfig {
    token: Option<Secret>,
    max_attempts: i32,
}

impl AdminConfig {
    pub fn new(token: Option<Secret>, max_attempts: i32) -> Self {
        Self { token, max_attempts }
    }
}

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody::new(message))
}

/// Equal tokens, compared in constant time: the digests have a fixed length
/// and every byte is looked at.
/// Whether `given` is one of `tokens`; every token is compared, so the time
/// taken does not tell which matched.
pub fn matches_any(given: &str, tokens: &[Secret]) -> bool {
    tokens.iter().fold(false, |any, token| any | token_matches(given, token))
}

fn token_matches(given: &str, expected: &Secret) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.expose().as_bytes());
    given.iter().zip(expected.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// `Authorization: Bearer <PRMONITOR_ADMIN_TOKEN>`, or a 401.
pub fn authorize(request: &HttpRequest, token: Option<&Secret>) -> Result<(), Box<HttpResponse>> {
    let tokens: Vec<Secret> = token.into_iter().cloned().collect();
    check_bearer(request, &tokens, "the admin API is disabled: PRMONITOR_ADMIN_TOKEN is not set")
        .map_err(|message| Box::new(json_error(StatusCode::UNAUTHORIZED, message)))
}

/// `Authorization: Bearer <any of tokens>`, or the 401's message (the read
/// API, whose error type renders it).
pub fn authorize_any(request: &HttpRequest, tokens: &[Secret]) -> Result<(), &'static str> {
    check_bearer(
        request,
        tokens,
        "the read API is disabled: set PRMONITOR_READ_TOKEN or PRMONITOR_ADMIN_TOKEN",
    )
}

/// Whether one of `tokens` is the request's bearer token; if not, why not.
fn check_bearer(
    request: &HttpRequest,
    tokens: &[Secret],
    disabled: &'static str,
) -> Result<(), &'static str> {
    if tokens.is_empty() {
        return Err(disabled);
    }
    let given = request.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer);
    // Every token is compared, so the time taken does not tell which matched.
    let matched =
        given.is_some_and(|given| tokens.iter().fold(false, |any, token| any | token_matches(given, token)));
    if matched {
        Ok(())
    } else {
        Err("a valid bearer token is required")
    }
}

/// The credentials of an `Authorization: Bearer …` value. The scheme is
/// case-insensitive and may be followed by several spaces (RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

/// What to sweep: `{"repository": "owner/name"}` or `{"all": true}`, not both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    repository: Option<String>,
    #[serde(default)]
    all: bool,
}

// [`ReconcileRequest`] as the document describes it: one of two bodies.
// The handler parses the struct, whose errors name the field, and refuses
// both and neither itself.
/// One repository, or every active one.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ReconcileBody {
    One(ReconcileOne),
    All(ReconcileAll),
}

/// One repository.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReconcileOne {
    /// `owner/name` of a watched, active repository.
    #[schema(max_length = 256, example = "octo-org/api")]
    repository: String,
}

/// Every active repository.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ReconcileAll {
    #[schema(value_type = True)]
    all: bool,
}

/// `true`: `false` asks for nothing and is refused.
struct True;

impl utoipa::PartialSchema for True {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Boolean)
            .enum_values(Some([true]))
            .into()
    }
}

impl ToSchema for True {}

/// The sweeps a reconcile enqueued, one per repository.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileAccepted {
    jobs: Vec<ReconcileJob>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileJob {
    /// `owner/name`
    repository: String,
    /// The sweep job (`GET /api/v1/jobs/{id}`), an existing pending one when it coalesced.
    job_id: i64,
}

/// `owner/name` PostgreSQL can compare: no NUL (TEXT cannot hold one, and the
/// query would fail as if the database were down), not absurdly long.
fn repository_name(name: &str) -> Result<&str, &'static str> {
    if name.contains('\0') {
        return Err("repository must not contain a NUL character");
    }
    if name.chars().count() > MAX_REPOSITORY_NAME {
        return Err("repository must be at most 256 characters");
    }
    Ok(name)
}

/// As the read API's text parameters: far beyond GitHub's own limits, in
/// characters as the document's `maxLength` counts.
const MAX_REPOSITORY_NAME: usize = 256;

/// A manual sweep of one repository or of all (`prmonitor reconcile`).
///
/// With `PRMONITOR_OPS_LISTEN` set, served on the operations listener only.
#[utoipa::path(
    post,
    path = "/api/v1/reconcile",
    tag = "admin",
    security(("bearer" = [])),
    request_body(content = ReconcileBody, content_type = "application/json",
        description = "Read as JSON whatever its Content-Type; at most 256 KiB."),
    responses(
        (status = 202, description = "sweeps enqueued", body = ReconcileAccepted),
        (status = 400, description = "not JSON, unknown fields, both or neither of `repository` and `all`, or a repository name that cannot be one", body = ErrorBody),
        (status = 401, description = ADMIN_UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "not a watched repository", body = ErrorBody),
        (status = 409, description = "the repository is inactive (its installation is gone or suspended)", body = ErrorBody),
        (status = 413, description = "the body exceeds 256 KiB", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub async fn reconcile(
    request: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<AdminConfig>,
) -> HttpResponse {
    if let Err(refusal) = authorize(&request, config.token.as_ref()) {
        return *refusal;
    }
    // The extractor's own refusal (too large, broken) would be plain text.
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let status = e.as_response_error().status_code();
            return json_error(status, &format!("the body could not be read: {e}"));
        }
    };
    let wanted: ReconcileRequest = match serde_json::from_slice(&body) {
        Ok(wanted) => wanted,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"repository\":\"owner/name\"}} or {{\"all\":true}}: {e}"),
            )
        }
    };
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("the database is unavailable: {e}"))
        }
    };
    let repos = match (&wanted.repository, wanted.all) {
        (Some(name), false) => match repository_name(name) {
            Err(message) => return json_error(StatusCode::BAD_REQUEST, message),
            Ok(name) => match repositories::find_by_full_name(&mut conn, name).await {
                Ok(Some(repo)) if repo.active => vec![repo],
                Ok(Some(_)) => {
                    return json_error(
                        StatusCode::CONFLICT,
                        &format!("{name} is inactive (its installation is gone or suspended)"),
                    )
                }
                Ok(None) => {
                    return json_error(StatusCode::NOT_FOUND, &format!("{name} is not a watched repository"))
                }
                Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            },
        },
        (None, true) => match repositories::list_active(&mut conn).await {
            Ok(repos) => repos,
            Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        },
        _ => return json_error(StatusCode::BAD_REQUEST, "give either \"repository\" or \"all\": true"),
    };
    let mut jobs = Vec::with_capacity(repos.len());
    for repo in &repos {
        let job = NewJob::sweep(&RepositoryJob { repository_id: repo.id, manual: true })
            .with_max_attempts(config.max_attempts);
        match queue::enqueue(&mut conn, &job).await {
            Ok(enqueued) => jobs.push(ReconcileJob { repository: repo.full_name(), job_id: enqueued.id }),
            Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
    tracing::info!(repositories = jobs.len(), "reconcile requested");
    HttpResponse::Accepted().json(ReconcileAccepted { jobs })
}

/// One job of the queue: its state, attempts and last error.
///
/// With `PRMONITOR_OPS_LISTEN` set, served on the operations listener only.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "the job's id, as reconcile answered it")),
    responses(
        (status = 200, description = "the job", body = JobView),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = ADMIN_UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "no such job", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub async fn job(
    request: HttpRequest,
    id: web::Path<String>,
    pool: web::Data<DbPool>,
    config: web::Data<AdminConfig>,
) -> HttpResponse {
    if let Err(refusal) = authorize(&request, config.token.as_ref()) {
        return *refusal;
    }
    let Ok(id) = id.parse::<i64>() else {
        return json_error(StatusCode::BAD_REQUEST, "a job id is a number");
    };
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("the database is unavailable: {e}"))
        }
    };
    match queue::get(&mut conn, id).await {
        Ok(Some(job)) => HttpResponse::Ok().json(job),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "no such job"),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let secret = Secret::new("s3cret");
        assert!(token_matches("s3cret", &secret));
        assert!(!token_matches("s3cret ", &secret));
        assert!(!token_matches("s3cre", &secret));
        assert!(!token_matches("", &secret));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "Bearer   t0k ", " bEaReR t0k"] {
            assert_eq!(bearer(value), Some("t0k"), "{value:?}");
        }
        for value in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer(value), None, "{value:?}");
        }
    }
}
