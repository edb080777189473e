//! `/setup`: the GitHub App in one click, through GitHub's manifest flow
//! (see [`crate::setup`] for what is stored and why).
//!
//! 1. `GET /setup`: a form (public URL, optional organization and name).
//! 2. `POST /setup`: records a one-time `state` and answers a page whose form
//!    posts the manifest to GitHub (`{web}/settings/apps/new?state=…`, or the
//!    organization's page); no JavaScript, so a program can post it too.
//! 3. `GET /setup/complete?code=…&state=…` (the manifest's `redirect_url`):
//!    the state must be one begun here, unused and under an hour old; the
//!    code is converted into the App's credentials, which are sealed and
//!    stored, and the App is applied to this process at once.
//! 4. `GET /setup/installed` (the manifest's `setup_url`): GitHub sends the
//!    browser here after the installation.
//!
//! Access: while no App is configured (none in settings, none stored), or
//! with the admin token; otherwise 404, as for a route that does not exist.
//! `/setup/installed` is only closed when settings configure GitHub access,
//! since GitHub sends the browser there after the App exists. No secret (the
//! key, the webhook or client secret, the secret key) reaches a page or a log.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use maud::{html, Markup};

use crate::config::{GitHubSettings, Secret, SecretKey};
use crate::db::DbPool;
use crate::setup::{self, AppSlot, StoredApp};

/// The setup form is three short fields.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// GitHub's codes are 20 characters; anything far longer is not one.
const MAX_CODE_LEN: usize = 100;

/// What the setup pages need besides the pool.
pub struct SetupConfig {
    pub slot: AppSlot,
    pub admin_token: Option<Secret>,
    pub public_url: Option<url::Url>,
    pub secret_key: Option<SecretKey>,
    pub github: GitHubSettings,
}

/// A setup page in the board's layout; its forms may post to GitHub's web origin.
fn page(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    super::board::document(status, title, body, None)
}

fn problem(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(
        status,
        title,
        html! {
            p.problem #problem { (message) }
            p { a href="/setup" { "Start again at /setup" } }
        },
    )
}

/// The page of a service without `PRMONITOR_SECRET_KEY`: nothing can be stored.
fn secret_key_missing(status: StatusCode) -> HttpResponse {
    page(
        status,
        "Set PRMONITOR_SECRET_KEY first",
        html! {
            p.problem #secret-key-missing {
                "PRMONITOR_SECRET_KEY must be set: the App's private key and secrets are stored "
                "in the database sealed with it, and nothing is stored without it."
            }
            p { "Make one with " code { "openssl rand -hex 32" } ", set it for every prmonitor process, restart, and open this page again." }
        },
    )
}

/// Answered when setup is closed: the same as a route that does not exist.
fn hidden() -> HttpResponse {
    HttpResponse::NotFound().json(super::error::ErrorBody::new("no such route"))
}

/// The OpenAPI description of the 409 of the pages that would store an App.
const NO_SECRET_KEY: &str = "PRMONITOR_SECRET_KEY is not set: nothing can be stored";
const SETUP_CLOSED: &str = "setup is closed: an App is configured and the request has no admin token";

/// The fields of `POST /setup`, for the OpenAPI document (the handler reads
/// them from the form as text and answers 422 naming the one it refuses).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SetupForm {
    /// The URL GitHub reaches this service on: http(s), no credentials, no query.
    #[schema(format = "uri")]
    public_url: String,
    /// A GitHub organization to own the App; empty: the user's own account.
    #[schema(max_length = 39)]
    organization: Option<String>,
    /// The App's name; empty: `prmonitor-HOST`.
    #[schema(max_length = 34)]
    name: Option<String>,
}

fn unavailable(error: &setup::SetupError) -> HttpResponse {
    tracing::warn!(%error, "setup: the database is unavailable");
    problem(StatusCode::SERVICE_UNAVAILABLE, "Try again", "The database is unavailable; nothing was stored.")
}

fn is_admin(req: &HttpRequest, config: &SetupConfig) -> bool {
    config.admin_token.is_some() && super::admin::authorize(req, config.admin_token.as_ref()).is_ok()
}

/// Whether setup may be used: no App configured, or the admin token.
async fn gate(req: &HttpRequest, config: &SetupConfig, pool: &DbPool) -> Result<(), Box<HttpResponse>> {
    if is_admin(req, config) {
        return Ok(());
    }
    if config.slot.from_settings() || config.slot.applied().is_some() {
        return Err(Box::new(hidden()));
    }
    let mut conn =
        pool.get().await.map_err(|e| Box::new(unavailable(&setup::SetupError::Database(e.to_string()))))?;
    match setup::app_stored(&mut conn).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(Box::new(hidden())),
        Err(error) => Err(Box::new(unavailable(&error))),
    }
}

/// The public URL to prefill: the setting, else this request's scheme and Host.
fn prefill(req: &HttpRequest, config: &SetupConfig) -> String {
    match &config.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// The setup form: the public URL, the organization, the App's name.
///
/// Open while no App is configured, or with the admin token; otherwise 404,
/// as for a route that does not exist.
#[utoipa::path(
    get,
    path = "/setup",
    tag = "setup",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the form, or the page asking for PRMONITOR_SECRET_KEY first", content_type = "text/html", body = String),
        (status = 404, description = SETUP_CLOSED, body = super::error::ErrorBody),
        (status = 503, description = super::error::UNAVAILABLE, content_type = "text/html", body = String),
    )
)]
#[tracing::instrument(name = "setup_form", skip_all)]
pub async fn form(req: HttpRequest, config: web::Data<SetupConfig>, pool: web::Data<DbPool>) -> HttpResponse {
    if let Err(refusal) = gate(&req, &config, &pool).await {
        return *refusal;
    }
    if config.secret_key.is_none() {
        return secret_key_missing(StatusCode::OK);
    }
    let public_url = prefill(&req, &config);
    page(
        StatusCode::OK,
        "Set up the GitHub App",
        html! {
            @if let Some(app) = config.slot.applied() {
                p #replacing { "The App " strong { (app.slug) } " is configured; creating another replaces it." }
            }
            p { "prmonitor creates its GitHub App on GitHub from a manifest: read-only permissions on pull requests, checks, commit statuses, metadata, administration and merge queues, and the events it tracks." }
            form method="post" action="/setup" {
                label for="public_url" { "The URL GitHub reaches this service on" }
                input type="url" id="public_url" name="public_url" value=(public_url) required;
                label for="organization" { "Organization (empty: your own account)" }
                input type="text" id="organization" name="organization";
                label for="name" { "App name (empty: prmonitor-HOST)" }
                input type="text" id="name" name="name" maxlength="34";
                button type="submit" id="start-setup" { "Continue" }
            }
        },
    )
}

/// A form body of at most [`MAX_FORM_BYTES`], as its fields.
async fn read_form(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<HashMap<String, String>, Box<HttpResponse>> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(Box::new(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "The request must be a form (application/x-www-form-urlencoded).",
        )));
    }
    let too_large =
        || Box::new(problem(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "The form exceeds 16 KiB."));
    let claimed = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if claimed.is_some_and(|len| len > MAX_FORM_BYTES) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            Box::new(problem(StatusCode::BAD_REQUEST, "Broken form", "The form could not be read."))
        })?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let mut fields = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        if fields.insert(key.into_owned(), value.into_owned()).is_some() {
            return Err(Box::new(problem(
                StatusCode::BAD_REQUEST,
                "Broken form",
                "A field was given twice.",
            )));
        }
    }
    Ok(fields)
}

/// The public URL of the form: http(s), a host, no query or fragment.
fn public_url(raw: &str) -> Result<url::Url, String> {
    let url = crate::config::parse_api_url(raw)
        .map_err(|_| format!("'{raw}' is not an http(s) URL such as https://prmonitor.example.com"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the public URL must not carry credentials".into());
    }
    Ok(url)
}

/// A GitHub account name: letters, digits and single hyphens, at most 39.
fn is_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 39
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The manifest form for GitHub: records a one-time state and answers a page
/// whose form posts the App's manifest to GitHub.
#[utoipa::path(
    post,
    path = "/setup",
    tag = "setup",
    security((), ("bearer" = [])),
    request_body(content = SetupForm, content_type = "application/x-www-form-urlencoded", description = "at most 16 KiB, each field once"),
    responses(
        (status = 200, description = "the page that posts the manifest to GitHub", content_type = "text/html", body = String),
        (status = 400, description = "the form could not be read, or a field was given twice", content_type = "text/html", body = String),
        (status = 404, description = SETUP_CLOSED, body = super::error::ErrorBody),
        (status = 409, description = NO_SECRET_KEY, content_type = "text/html", body = String),
        (status = 413, description = "the form exceeds 16 KiB", content_type = "text/html", body = String),
        (status = 415, description = "not application/x-www-form-urlencoded", content_type = "text/html", body = String),
        (status = 422, description = "a field is missing or invalid", content_type = "text/html", body = String),
        (status = 503, description = super::error::UNAVAILABLE, content_type = "text/html", body = String),
    )
)]
#[tracing::instrument(name = "setup_begin", skip_all)]
pub async fn begin(
    req: HttpRequest,
    payload: web::Payload,
    config: web::Data<SetupConfig>,
    pool: web::Data<DbPool>,
) -> HttpResponse {
    if let Err(refusal) = gate(&req, &config, &pool).await {
        return *refusal;
    }
    if config.secret_key.is_none() {
        return secret_key_missing(StatusCode::CONFLICT);
    }
    let fields = match read_form(&req, payload).await {
        Ok(fields) => fields,
        Err(refusal) => return *refusal,
    };
    let invalid = |message: &str| problem(StatusCode::UNPROCESSABLE_ENTITY, "Check the form", message);
    let Some(raw_url) = fields.get("public_url").map(|s| s.trim()).filter(|s| !s.is_empty()) else {
        return invalid("The public URL is required.");
    };
    let url = match public_url(raw_url) {
        Ok(url) => url,
        Err(message) => return invalid(&message),
    };
    let organization = fields.get("organization").map(|s| s.trim()).filter(|s| !s.is_empty());
    if organization.is_some_and(|org| !is_account_name(org)) {
        return invalid("The organization is not a GitHub account name.");
    }
    let name = match fields.get("name").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(name) if name.chars().count() > 34 => {
            return invalid("The App name is longer than GitHub's 34 characters.")
        }
        Some(name) => name.to_owned(),
        None => setup::default_name(&url),
    };
    let state = {
        let mut conn = match pool.get().await {
            Ok(conn) => conn,
            Err(e) => return unavailable(&setup::SetupError::Database(e.to_string())),
        };
        match setup::create_state(&mut conn).await {
            Ok(state) => state,
            Err(error) => return unavailable(&error),
        }
    };
    let web_url = config.github.web_url.as_str().trim_end_matches('/');
    let action = match organization {
        Some(org) => format!("{web_url}/organizations/{org}/settings/apps/new?state={state}"),
        None => format!("{web_url}/settings/apps/new?state={state}"),
    };
    let manifest = setup::manifest(&url, &name).to_string();
    tracing::info!(organization = organization.unwrap_or(""), public_url = %url, "setup begun");
    // The page's Content-Security-Policy lets its form post to GitHub alone.
    let origin = config.github.web_url.origin().ascii_serialization();
    super::board::document(
        StatusCode::OK,
        "Create the App on GitHub",
        html! {
            p { "GitHub will ask you to confirm the App " strong #app-name { (name) } ", then send you back here." }
            form method="post" action=(action) {
                input type="hidden" name="manifest" value=(manifest);
                button type="submit" id="create-on-github" { "Create the App on GitHub" }
            }
        },
        Some(&origin),
    )
}

/// GitHub's redirect after the App was created: the code is converted into
/// the App's credentials, which are sealed, stored and applied.
#[utoipa::path(
    get,
    path = "/setup/complete",
    tag = "setup",
    security((), ("bearer" = [])),
    params(
        ("code" = String, Query, max_length = 100, pattern = "^[A-Za-z0-9_-]+$", description = "GitHub's one-time code"),
        ("state" = String, Query, description = "the state `POST /setup` recorded (one use, an hour)"),
    ),
    responses(
        (status = 200, description = "the App is stored and in use; a link to install it", content_type = "text/html", body = String),
        (status = 400, description = "no code or state, a code GitHub does not give, or a state unknown, used or expired", content_type = "text/html", body = String),
        (status = 404, description = SETUP_CLOSED, body = super::error::ErrorBody),
        (status = 409, description = NO_SECRET_KEY, content_type = "text/html", body = String),
        (status = 502, description = "GitHub refused the code, or its answer is incomplete", content_type = "text/html", body = String),
        (status = 503, description = super::error::UNAVAILABLE, content_type = "text/html", body = String),
    )
)]
#[tracing::instrument(name = "setup_complete", skip_all)]
pub async fn complete(
    req: HttpRequest,
    config: web::Data<SetupConfig>,
    pool: web::Data<DbPool>,
) -> HttpResponse {
    if let Err(refusal) = gate(&req, &config, &pool).await {
        return *refusal;
    }
    let Some(key) = &config.secret_key else {
        return secret_key_missing(StatusCode::CONFLICT);
    };
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    let refused = |message: &str| problem(StatusCode::BAD_REQUEST, "Setup refused", message);
    let (Some(code), Some(state)) = (query.get("code"), query.get("state")) else {
        return refused(
            "GitHub's redirect carries a code and a state; this one does not. Nothing was stored.",
        );
    };
    if code.is_empty()
        || code.len() > MAX_CODE_LEN
        || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return refused("The code is not one GitHub gives. Nothing was stored.");
    }
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return unavailable(&setup::SetupError::Database(e.to_string())),
    };
    // Before the conversion: a code arriving with a state not begun here
    // (another site's, a replay) is refused without spending it.
    match setup::consume_state(&mut conn, state).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("setup: a redirect with an unknown, used or expired state was refused");
            return refused("This setup's state is unknown, used or older than an hour. Nothing was stored.");
        }
        Err(error) => return unavailable(&error),
    }
    let answer = match crate::github::convert_manifest_code(&config.github, code).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%error, "setup: GitHub refused the manifest code");
            return problem(
                StatusCode::BAD_GATEWAY,
                "GitHub refused the code",
                &format!("GitHub did not convert the code ({error}). Codes work once and for an hour. Nothing was stored."),
            );
        }
    };
    let app = match StoredApp::from_conversion(&answer) {
        Ok(app) => app,
        Err(error) => {
            tracing::warn!(%error, "setup: GitHub's conversion answer is incomplete");
            return problem(
                StatusCode::BAD_GATEWAY,
                "GitHub's answer is incomplete",
                &format!("{error}. Nothing was stored."),
            );
        }
    };
    if let Err(error) = setup::store_app(&mut conn, key, &app).await {
        return unavailable(&error);
    }
    tracing::info!(app_id = app.app_id, slug = %app.slug, owner = %app.owner_login, "setup: GitHub App stored");
    config.slot.apply(app.clone());
    let install = format!("{}/installations/new", app.html_url.trim_end_matches('/'));
    page(
        StatusCode::OK,
        &format!("App {} created", app.slug),
        html! {
            p { "The GitHub App " strong #app-slug { (app.slug) } " (id " (app.app_id) ", owned by " (app.owner_login) ") is stored, its credentials sealed with PRMONITOR_SECRET_KEY, and in use." }
            p { "Install it on the repositories prmonitor should keep: " a #install-app-link href=(install) { "Install " (app.slug) } }
        },
    )
}

/// Where GitHub sends the browser after an installation; the App's
/// installations are listed at once.
///
/// Closed (404) only when settings configure GitHub access, unless with the admin token.
#[utoipa::path(
    get,
    path = "/setup/installed",
    tag = "setup",
    security((), ("bearer" = [])),
    params(("installation_id" = Option<i64>, Query, minimum = 0, description = "GitHub's id of the installation")),
    responses(
        (status = 200, description = "installed", content_type = "text/html", body = String),
        (status = 400, description = "installation_id is not a number", content_type = "text/html", body = String),
        (status = 404, description = SETUP_CLOSED, body = super::error::ErrorBody),
    )
)]
#[tracing::instrument(name = "setup_installed", skip_all)]
pub async fn installed(
    req: HttpRequest,
    config: web::Data<SetupConfig>,
    pool: web::Data<DbPool>,
) -> HttpResponse {
    if config.slot.from_settings() && !is_admin(&req, &config) {
        return hidden();
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    // GitHub's ids are int64, as the document says; digits only (no sign).
    let installation = query
        .get("installation_id")
        .filter(|id| id.chars().all(|c| c.is_ascii_digit()) && id.parse::<i64>().is_ok());
    if query.contains_key("installation_id") && installation.is_none() {
        return problem(StatusCode::BAD_REQUEST, "Not an installation", "installation_id must be a number.");
    }
    // The installation webhook announces the repositories; listing the App's
    // installations as well finds them even if that delivery is lost.
    if config.slot.applied().is_some() {
        if let Ok(mut conn) = pool.get().await {
            if let Err(error) = crate::queue::enqueue(&mut conn, &crate::queue::NewJob::installations()).await
            {
                tracing::warn!(%error, "setup: the installations listing could not be enqueued");
            }
        }
    }
    page(
        StatusCode::OK,
        "Installed",
        html! {
            p #installed {
                "The App is installed"
                @if let Some(id) = installation { " (installation " (id) ")" }
                "; its repositories are being discovered and backfilled."
            }
            p { "Their pull requests appear under " code { "/api/v1/repositories" } " within moments." }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_http_without_credentials_or_query() {
        assert!(public_url("https://prmonitor.example.com").is_ok());
        assert!(public_url("http://127.0.0.1:8080/").is_ok());
        for bad in ["ftp://x", "javascript:alert(1)", "not a url", "https://x/?q=1", "https://u:p@x"] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_names_follow_githubs_rules() {
        for good in ["acme", "a-b", "A1"] {
            assert!(is_account_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "a/b", "a b", &"a".repeat(40)] {
            assert!(!is_account_name(bad), "{bad}");
        }
    }
}
