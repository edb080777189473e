//! The admin API: manual reconcile and job inspection, behind a bearer token.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::db::{repositories, DbPool};
use crate::queue::{self, NewJob, RepositoryJob};

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
    HttpResponse::build(status).json(json!({ "error": message }))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    repository: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /api/v1/reconcile`: a manual sweep of one repository or of all.
pub async fn reconcile(
    request: HttpRequest,
    body: web::Bytes,
    pool: web::Data<DbPool>,
    config: web::Data<AdminConfig>,
) -> HttpResponse {
    if let Err(refusal) = authorize(&request, config.token.as_ref()) {
        return *refusal;
    }
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
        (Some(name), false) => match repositories::find_by_full_name(&mut conn, name).await {
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
            Ok(enqueued) => jobs.push(json!({ "repository": repo.full_name(), "job_id": enqueued.id })),
            Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
    tracing::info!(repositories = jobs.len(), "reconcile requested");
    HttpResponse::Accepted().json(json!({ "jobs": jobs }))
}

/// `GET /api/v1/jobs/{id}`.
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
