//! The board: server-rendered pages of every watched repository's PRs and
//! CI, kept live by the change feed (`GET /api/v1/events`), readable with
//! JavaScript off, at a phone's width and from the keyboard.
//!
//! Access is the read API's: the read or admin token, in `Authorization` or
//! through the login form's session cookie ([`session`]), or nothing at all
//! with `PRMONITOR_BOARD_PUBLIC=true`.

pub mod session;

mod model;
mod views;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use super::error::ReadError;
use super::read::{boolean, bounded_number, repository, text_parameter, NoQuery, ReadConfig};
use crate::db::reads::{self, PullFilter, PullOrder, CHECKS_STATES};
use crate::db::DbPool;
use crate::ids::PullRequestNumber;
use model::{Filters, PullPage, PullsPage, PULLS_PER_PAGE};
use views::Chrome;

/// The board's routes, as (method, path): HTML, not part of the JSON API's
/// OpenAPI document.
pub const PAGES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/pulls"),
    ("GET", "/pulls/{owner}/{name}/{number}"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/assets/board.css"),
    ("GET", "/assets/board.js"),
];

/// The most a login form may send: a token and a path.
const LOGIN_BODY_LIMIT: usize = 4096;
/// The longest `next` a login keeps; longer ones go to the overview.
const MAX_NEXT: usize = 2048;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(overview))
        .route("/pulls", web::get().to(pulls))
        .route("/pulls/{owner}/{name}/{number}", web::get().to(pull))
        .route("/login", web::get().to(login_form))
        .service(
            web::resource("/login")
                .app_data(web::FormConfig::default().limit(LOGIN_BODY_LIMIT))
                .route(web::post().to(login)),
        )
        .route("/logout", web::post().to(logout))
        .route("/assets/board.css", web::get().to(css))
        .route("/assets/board.js", web::get().to(js));
}

/// Why a page is not shown. Each renders as an HTML page (or, for a missing
/// login, a redirect to the login form).
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("log in to see the board")]
    Login { next: String },
    #[error(transparent)]
    Read(ReadError),
}

impl From<ReadError> for BoardError {
    fn from(error: ReadError) -> Self {
        Self::Read(error)
    }
}

impl From<diesel::result::Error> for BoardError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Read(error.into())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for BoardError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Read(error.into())
    }
}

impl ResponseError for BoardError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Login { .. } => StatusCode::SEE_OTHER,
            Self::Read(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Login { next } => {
                let location = format!("/login?{}", encode(&[("next", next.as_str())]));
                HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
            }
            Self::Read(error) => {
                let status = error.status_code();
                if let ReadError::Unavailable(cause) = error {
                    tracing::warn!(error = %cause, "a board page could not be read");
                }
                let chrome = Chrome { title: "Error", live: None, logged_in: false };
                html(status, &views::page(&chrome, views::error(status.as_u16(), &error.to_string())))
            }
        }
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        out.append_pair(key, value);
    }
    out.finish()
}

/// An HTML answer with the headers every page carries: no script or style
/// but the board's own, no framing, no caching of data a login protects.
fn html(status: StatusCode, markup: &maud::Markup) -> HttpResponse {
    html_posting_to(status, markup, None)
}

/// [`html`] for a page whose form may also post to `origin` (the setup
/// page's form goes to GitHub).
fn html_posting_to(status: StatusCode, markup: &maud::Markup, origin: Option<&str>) -> HttpResponse {
    let form_action = origin.map_or_else(|| "'self'".to_owned(), |origin| format!("'self' {origin}"));
    HttpResponse::build(status)
        .content_type(ContentType::html())
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
            ),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.0.clone())
}

/// A page in the board's layout, without the live updates: the setup flow's
/// pages. A form on it may post to `form_origin` besides this site.
pub fn document(
    status: StatusCode,
    title: &str,
    body: maud::Markup,
    form_origin: Option<&str>,
) -> HttpResponse {
    let page = views::page(&chrome(title, None, false), maud::html! { h1 { (title) } (body) });
    html_posting_to(status, &page, form_origin)
}

/// The page's path and query, for coming back after the login.
fn here(request: &HttpRequest) -> String {
    let uri = request.uri();
    uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
}

/// Lets the request see the board, or says to log in.
fn admit(request: &HttpRequest, config: &ReadConfig) -> Result<bool, BoardError> {
    match config.authorize_board(request) {
        Ok(()) => Ok(session::from_request(request, config.tokens())),
        Err(ReadError::Unauthorized(_)) => Err(BoardError::Login { next: here(request) }),
        Err(other) => Err(other.into()),
    }
}

fn chrome<'a>(title: &'a str, live: Option<String>, logged_in: bool) -> Chrome<'a> {
    Chrome { title, live, logged_in }
}

const EVENTS: &str = "/api/v1/events";

/// `GET /`
async fn overview(
    request: HttpRequest,
    query: Result<web::Query<NoQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, BoardError> {
    let logged_in = admit(&request, &config)?;
    query.map_err(|e| ReadError::malformed_query(&e))?;
    let mut conn = pool.get().await?;
    let overview = model::overview(&mut conn, config.stuck_after()).await?;
    let now = chrono::Utc::now();
    let body = views::overview(&overview, now);
    Ok(html(StatusCode::OK, &views::page(&chrome("Overview", Some(EVENTS.to_owned()), logged_in), body)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullsQuery {
    repository: Option<String>,
    state: Option<String>,
    checks: Option<String>,
    draft: Option<String>,
    author: Option<String>,
    label: Option<String>,
    stale: Option<String>,
    stuck: Option<String>,
    flaky: Option<String>,
    sort: Option<String>,
    page: Option<String>,
}

/// A form's empty field means "any".
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// `GET /pulls`: the PRs of every repository, filtered as the URL says.
async fn pulls(
    request: HttpRequest,
    query: Result<web::Query<PullsQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, BoardError> {
    let logged_in = admit(&request, &config)?;
    let query = query.map_err(|e| ReadError::malformed_query(&e))?.into_inner();
    let filters = Filters {
        repository: given(query.repository),
        state: given(query.state),
        checks: given(query.checks),
        draft: given(query.draft),
        author: given(query.author),
        label: given(query.label),
        stale: given(query.stale),
        stuck: given(query.stuck),
        flaky: given(query.flaky),
        sort: given(query.sort),
    };
    let page = bounded_number("page", query.page.as_deref(), 1, 1..=10_000)?;
    for (name, value) in
        [("repository", &filters.repository), ("author", &filters.author), ("label", &filters.label)]
    {
        text_parameter(name, value.as_deref())?;
    }
    let state = match filters.state.as_deref().unwrap_or("open") {
        "all" => None,
        state @ ("open" | "closed" | "merged") => Some(state.to_owned()),
        _ => return Err(ReadError::invalid("state is open, closed, merged or all").into()),
    };
    if let Some(checks) = filters.checks.as_deref() {
        if !CHECKS_STATES.contains(&checks) {
            return Err(ReadError::invalid("checks is failing, pending, passing or none").into());
        }
    }
    let draft = boolean("draft", filters.draft.as_deref())?;
    let stale_days = match filters.stale.as_deref() {
        None => None,
        Some(days) => Some(bounded_number("stale", Some(days), 0, 1..=3650)?),
    };
    let order = match filters.sort.as_deref() {
        None | Some("updated") => PullOrder::Updated,
        Some("created") => PullOrder::Created,
        Some(_) => return Err(ReadError::invalid("sort is updated or created").into()),
    };
    let mut conn = pool.get().await?;
    let repository_id = match filters.repository.as_deref() {
        None => None,
        Some(full_name) => {
            let (owner, name) =
                full_name.split_once('/').ok_or_else(|| ReadError::invalid("repository is owner/name"))?;
            Some(repository(&mut conn, owner, name).await?.id)
        }
    };
    let now = chrono::Utc::now();
    let filter = PullFilter {
        state,
        draft,
        label: filters.label.clone(),
        author: filters.author.clone(),
        checks: filters.checks.clone(),
        flaky: boolean("flaky", filters.flaky.as_deref())?,
        stuck: boolean("stuck", filters.stuck.as_deref())?,
        stuck_after: config.stuck_after(),
        updated_before: stale_days.map(|days| now - chrono::Duration::days(days)),
    };
    let (items, total) = reads::list_pulls_across(
        &mut conn,
        repository_id,
        &filter,
        order,
        PULLS_PER_PAGE,
        (page - 1) * PULLS_PER_PAGE,
    )
    .await?;
    let repositories = model::active_repositories(&mut conn).await?;
    let pairs = filters.pairs();
    let view = PullsPage {
        previous: (page > 1).then(|| views::page_link(&pairs, page - 1)),
        next: (page * PULLS_PER_PAGE < total).then(|| views::page_link(&pairs, page + 1)),
        filters,
        repositories,
        items,
        total,
        page,
    };
    let live = match &view.filters.repository {
        Some(name) => format!("{EVENTS}?{}", encode(&[("repository", name)])),
        None => EVENTS.to_owned(),
    };
    let body = views::pulls(&view, now);
    Ok(html(StatusCode::OK, &views::page(&chrome("Pull requests", Some(live), logged_in), body)))
}

/// `GET /pulls/{owner}/{name}/{number}`: one PR, its checks and its timeline.
async fn pull(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    query: Result<web::Query<NoQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, BoardError> {
    let logged_in = admit(&request, &config)?;
    query.map_err(|e| ReadError::malformed_query(&e))?;
    let (owner, name, number) = path.into_inner();
    let number = number
        .parse::<i32>()
        .ok()
        .filter(|n| *n > 0)
        .map(PullRequestNumber)
        .ok_or_else(|| ReadError::invalid("a pull request number is a positive number"))?;
    let mut conn = pool.get().await?;
    let repo = repository(&mut conn, &owner, &name).await?;
    let full_name = repo.full_name();
    let detail = reads::pull_request(&mut conn, repo.id, number)
        .await?
        .ok_or_else(|| ReadError::UnknownPullRequest { repository: full_name.clone(), number })?;
    let runs = reads::head_check_runs(&mut conn, repo.id, &detail.head_sha).await?;
    let statuses = reads::head_statuses(&mut conn, repo.id, &detail.head_sha).await?;
    let required = reads::required_contexts(&mut conn, repo.id, &detail.base_branch).await?;
    let summary = reads::pull_summary(&mut conn, repo.id, number).await?;
    let history = reads::history(&mut conn, detail.id).await?;
    let heads = model::heads(&detail, &history);
    let timeline_runs = reads::check_runs_of_commits(&mut conn, repo.id, &heads).await?;
    let transitions = reads::status_transitions(&mut conn, repo.id, &heads).await?;
    let view = PullPage {
        checks: model::newest_per_name(&runs),
        statuses: model::status_rows(statuses),
        timeline: model::timeline(history, timeline_runs, transitions),
        repository: full_name.clone(),
        detail,
        summary,
        required,
    };
    let title = format!("{full_name}#{}", number.0);
    let live = format!("{EVENTS}?{}", encode(&[("repository", &full_name)]));
    let body = views::pull(&view, chrono::Utc::now());
    Ok(html(StatusCode::OK, &views::page(&chrome(&title, Some(live), logged_in), body)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where a login may send its user back to: a path of this site only, so
/// the form cannot be used to bounce people to another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.contains('\\')
                && next.len() <= MAX_NEXT
                && !next.chars().any(char::is_control) =>
        {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `GET /login`
async fn login_form(
    query: Result<web::Query<LoginQuery>, actix_web::Error>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, BoardError> {
    let query = query.map_err(|e| ReadError::malformed_query(&e))?.into_inner();
    let next = safe_next(query.next.as_deref());
    let enabled = !config.tokens().is_empty();
    let body = views::login(&next, None, enabled);
    Ok(html(StatusCode::OK, &views::page(&chrome("Log in", None, false), body)))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Whether the page was reached over HTTPS (directly or through a proxy
/// that says so), so the cookie is marked `Secure`.
fn secure(request: &HttpRequest) -> bool {
    request.connection_info().scheme() == "https"
}

/// `POST /login`: checks the token and sets the session cookie.
async fn login(
    request: HttpRequest,
    form: Result<web::Form<LoginForm>, actix_web::Error>,
    config: web::Data<ReadConfig>,
) -> HttpResponse {
    let Ok(form) = form else {
        let body = views::error(400, "the login form must send a token (form-encoded, at most 4 KiB)");
        return html(StatusCode::BAD_REQUEST, &views::page(&chrome("Log in", None, false), body));
    };
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    let tokens = config.tokens();
    // Every token is compared, so the time taken does not tell which matched;
    // the cookie is signed with the one that did.
    let matched = tokens.iter().fold(None, |found, candidate| {
        let hit = super::admin::matches_any(token, std::slice::from_ref(candidate));
        found.or(hit.then_some(candidate))
    });
    let Some(matched) = matched.filter(|_| !token.is_empty()) else {
        tracing::info!("a board login was refused");
        let problem = (!tokens.is_empty()).then_some("That token is not valid.");
        let body = views::login(&next, problem, !tokens.is_empty());
        return html(StatusCode::UNAUTHORIZED, &views::page(&chrome("Log in", None, false), body));
    };
    let value = session::issue(matched, session::now());
    HttpResponse::SeeOther()
        .insert_header((header::SET_COOKIE, session::set_cookie(Some(&value), secure(&request))))
        .insert_header((header::LOCATION, next))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `POST /logout`
async fn logout(request: HttpRequest) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::SET_COOKIE, session::set_cookie(None, secure(&request))))
        .insert_header((header::LOCATION, "/login"))
        .finish()
}

/// The assets carry their fingerprint in the URL, so they may be cached for good.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", views::CSS)
}

async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", views::JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_only_sends_people_back_to_this_site() {
        assert_eq!(safe_next(Some("/pulls?checks=failing")), "/pulls?checks=failing");
        for hostile in [
            None,
            Some(""),
            Some("https://evil.example/"),
            Some("//evil.example/"),
            Some("/\\evil.example"),
            Some("/ok\r\nSet-Cookie: x=y"),
            Some("javascript:alert(1)"),
        ] {
            assert_eq!(safe_next(hostile), "/", "{hostile:?}");
        }
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(MAX_NEXT)))), "/");
    }
}
