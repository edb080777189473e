//! The read API: repositories, their pull requests with the state of their
//! checks, and one pull request with its check runs and history.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Deserialize;
use serde_json::json;

use super::admin::authorize_any;
use crate::config::Secret;
use crate::db::reads::{self, PullFilter};
use crate::db::schema::{check_runs, pr_state_history, pull_requests};
use crate::db::{repositories, DbPool};

/// Tokens that may read: the read token and the admin token.
pub struct ReadConfig {
    tokens: Vec<Secret>,
}

impl ReadConfig {
    pub fn new(read: Option<Secret>, admin: Option<Secret>) -> Self {
        Self { tokens: read.into_iter().chain(admin).collect() }
    }
}

const MAX_PER_PAGE: i64 = 100;
const DEFAULT_PER_PAGE: i64 = 30;
/// Far past any real listing (100 million rows at 100 a page), and small
/// enough that the offset cannot overflow.
const MAX_PAGE: i64 = 1_000_000;
/// GitHub's own limits are 39 (owner) and 100 (repository, label) characters;
/// anything much longer cannot match and is refused before the database.
const MAX_TEXT_PARAMETER: usize = 256;

type Times = (
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

fn unavailable(error: impl std::fmt::Display) -> HttpResponse {
    json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("the database is unavailable: {error}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    // Text, parsed here: the deserializer's own number errors do not name the parameter.
    page: Option<String>,
    per_page: Option<String>,
}

/// (page, per_page), or the 400 message naming the parameter.
fn page(query: &PageQuery) -> Result<(i64, i64), String> {
    let page = bounded_number("page", query.page.as_deref(), 1, 1..=MAX_PAGE)?;
    let per_page = bounded_number("per_page", query.per_page.as_deref(), DEFAULT_PER_PAGE, 1..=MAX_PER_PAGE)?;
    Ok((page, per_page))
}

fn bounded_number(
    name: &str,
    text: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    let Some(text) = text else { return Ok(default) };
    text.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{name} must be a whole number from {} to {}", range.start(), range.end()))
}

/// `true` or `false`, naming the parameter otherwise.
fn boolean(name: &str, text: Option<&str>) -> Result<Option<bool>, String> {
    match text {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(format!("{name} must be true or false")),
    }
}

/// A text parameter PostgreSQL can take: no NUL (TEXT cannot hold one; the
/// server answers "invalid byte sequence"), not absurdly long.
fn text_parameter(name: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(text) if text.contains('\0') => Err(format!("{name} must not contain a NUL character")),
        Some(text) if text.len() > MAX_TEXT_PARAMETER => {
            Err(format!("{name} must be at most {MAX_TEXT_PARAMETER} bytes"))
        }
        _ => Ok(()),
    }
}

/// The 400 for a query string that does not parse, naming what it could.
fn malformed_query(error: &actix_web::Error) -> HttpResponse {
    // serde_urlencoded's message names the field ("unknown field `colour`",
    // "invalid digit found in string" for a number) without echoing values.
    let detail = error.to_string();
    let detail: String = detail.chars().filter(|c| !c.is_control()).take(200).collect();
    json_error(StatusCode::BAD_REQUEST, &format!("unknown or malformed query parameters: {detail}"))
}

/// `GET /api/v1/repositories`
pub async fn list_repositories(
    request: HttpRequest,
    query: Result<web::Query<PageQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> HttpResponse {
    if let Err(refusal) = authorize_any(&request, &config.tokens) {
        return *refusal;
    }
    let query = match query {
        Ok(query) => query,
        Err(error) => return malformed_query(&error),
    };
    let (page, per_page) = match page(&query) {
        Ok(p) => p,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return unavailable(e),
    };
    use crate::db::schema::repositories as r;
    let total: i64 = match r::table.count().get_result(&mut conn).await {
        Ok(total) => total,
        Err(e) => return unavailable(e),
    };
    let rows = r::table
        .order(r::id)
        .limit(per_page)
        .offset((page - 1) * per_page)
        .select(repositories::Repository::as_select())
        .load(&mut conn)
        .await;
    match rows {
        Ok(rows) => {
            let items: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|repo| {
                    json!({
                        "full_name": repo.full_name(),
                        "github_id": repo.github_id,
                        "installation_id": repo.installation_id,
                        "active": repo.active,
                        "last_synced_at": repo.last_synced_at,
                        "last_swept_at": repo.last_swept_at,
                        "consecutive_failures": repo.consecutive_failures,
                        "last_failure_reason": repo.last_failure_reason,
                        "last_failure_at": repo.last_failure_at,
                    })
                })
                .collect();
            HttpResponse::Ok()
                .json(json!({ "items": items, "page": page, "per_page": per_page, "total": total }))
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullsQuery {
    state: Option<String>,
    draft: Option<String>,
    label: Option<String>,
    author: Option<String>,
    checks: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

async fn repository(
    conn: &mut diesel_async::AsyncPgConnection,
    owner: &str,
    name: &str,
) -> Result<repositories::Repository, HttpResponse> {
    for (parameter, value) in [("owner", owner), ("name", name)] {
        text_parameter(parameter, Some(value)).map_err(|m| json_error(StatusCode::BAD_REQUEST, &m))?;
    }
    match repositories::find_by_full_name(conn, &format!("{owner}/{name}")).await {
        Ok(Some(repo)) => Ok(repo),
        Ok(None) => {
            Err(json_error(StatusCode::NOT_FOUND, &format!("{owner}/{name} is not a watched repository")))
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /api/v1/repositories/{owner}/{name}/pulls`
pub async fn list_pulls(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: Result<web::Query<PullsQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> HttpResponse {
    if let Err(refusal) = authorize_any(&request, &config.tokens) {
        return *refusal;
    }
    let query = match query {
        Ok(query) => query,
        Err(error) => return malformed_query(&error),
    };
    let query = query.into_inner();
    let (page, per_page) = match page(&PageQuery { page: query.page, per_page: query.per_page }) {
        Ok(p) => p,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let draft = match boolean("draft", query.draft.as_deref()) {
        Ok(draft) => draft,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let texts = [("label", query.label.as_deref()), ("author", query.author.as_deref())];
    if let Err(message) = texts.into_iter().try_for_each(|(name, value)| text_parameter(name, value)) {
        return json_error(StatusCode::BAD_REQUEST, &message);
    }
    let state = match query.state.as_deref().unwrap_or("open") {
        "all" => None,
        state @ ("open" | "closed" | "merged") => Some(state.to_owned()),
        other => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("state is open, closed, merged or all, not '{other}'"),
            )
        }
    };
    if let Some(checks) = query.checks.as_deref() {
        if !reads::CHECKS_STATES.contains(&checks) {
            return json_error(StatusCode::BAD_REQUEST, "checks is failing, pending, passing or none");
        }
    }
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return unavailable(e),
    };
    let (owner, name) = path.into_inner();
    let repo = match repository(&mut conn, &owner, &name).await {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    let filter = PullFilter { state, draft, label: query.label, author: query.author, checks: query.checks };
    match reads::list_pulls(&mut conn, repo.id, &filter, per_page, (page - 1) * per_page).await {
        Ok((items, total)) => HttpResponse::Ok()
            .json(json!({ "items": items, "page": page, "per_page": per_page, "total": total })),
        Err(e) => unavailable(e),
    }
}

/// `GET /api/v1/repositories/{owner}/{name}/pulls/{number}`
pub async fn get_pull(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> HttpResponse {
    if let Err(refusal) = authorize_any(&request, &config.tokens) {
        return *refusal;
    }
    let (owner, name, number) = path.into_inner();
    let Ok(number) = number.parse::<i32>() else {
        return json_error(StatusCode::BAD_REQUEST, "a pull request number is a number");
    };
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return unavailable(e),
    };
    let repo = match repository(&mut conn, &owner, &name).await {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    type Row = (
        i64,
        String,
        String,
        String,
        bool,
        String,
        String,
        String,
        String,
        Option<String>,
        Vec<String>,
        Vec<String>,
        serde_json::Value,
    );
    let pr: Option<(Row, Times)> = match pull_requests::table
        .filter(pull_requests::repository_id.eq(repo.id))
        .filter(pull_requests::number.eq(number))
        .select((
            (
                pull_requests::id,
                pull_requests::title,
                pull_requests::author,
                pull_requests::state,
                pull_requests::draft,
                pull_requests::base_branch,
                pull_requests::head_branch,
                pull_requests::head_sha,
                pull_requests::html_url,
                pull_requests::body,
                pull_requests::labels,
                pull_requests::assignees,
                pull_requests::metadata,
            ),
            (
                pull_requests::gh_created_at,
                pull_requests::gh_updated_at,
                pull_requests::gh_closed_at,
                pull_requests::gh_merged_at,
            ),
        ))
        .first(&mut conn)
        .await
        .optional()
    {
        Ok(pr) => pr,
        Err(e) => return unavailable(e),
    };
    let Some((
        (id, title, author, state, draft, base, head, head_sha, url, body, labels, assignees, metadata),
        times,
    )) = pr
    else {
        return json_error(StatusCode::NOT_FOUND, &format!("no pull request #{number} in {owner}/{name}"));
    };
    let runs = check_runs::table
        .filter(check_runs::repository_id.eq(repo.id))
        .filter(check_runs::head_sha.eq(&head_sha))
        .order(check_runs::github_id.desc())
        .select((
            check_runs::github_id,
            check_runs::name,
            check_runs::status,
            check_runs::conclusion,
            check_runs::details_url,
            check_runs::html_url,
            check_runs::output_title,
            check_runs::gh_started_at,
            check_runs::gh_completed_at,
        ))
        .load::<(
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<chrono::DateTime<chrono::Utc>>,
            Option<chrono::DateTime<chrono::Utc>>,
        )>(&mut conn)
        .await;
    let history = pr_state_history::table
        .filter(pr_state_history::pull_request_id.eq(id))
        .order(pr_state_history::id)
        .select((
            pr_state_history::field,
            pr_state_history::old_value,
            pr_state_history::new_value,
            pr_state_history::gh_changed_at,
            pr_state_history::cause,
            pr_state_history::delivery_id,
        ))
        .load::<(String, Option<String>, String, chrono::DateTime<chrono::Utc>, String, Option<String>)>(
            &mut conn,
        )
        .await;
    let (Ok(runs), Ok(history)) = (runs, history) else {
        return unavailable("reading checks and history failed");
    };
    let runs: Vec<serde_json::Value> = runs
        .into_iter()
        .map(
            |(
                github_id,
                name,
                status,
                conclusion,
                details_url,
                html_url,
                output_title,
                started,
                completed,
            )| {
                json!({ "id": github_id, "name": name, "status": status, "conclusion": conclusion,
                    "details_url": details_url, "html_url": html_url, "output_title": output_title,
                    "started_at": started, "completed_at": completed })
            },
        )
        .collect();
    let history: Vec<serde_json::Value> = history
        .into_iter()
        .map(|(field, old, new, at, cause, delivery)| {
            json!({ "field": field, "old": old, "new": new, "at": at, "cause": cause, "delivery_id": delivery })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "repository": repo.full_name(),
        "number": number,
        "title": title,
        "author": author,
        "state": state,
        "draft": draft,
        "base_branch": base,
        "head_branch": head,
        "head_sha": head_sha,
        "html_url": url,
        "body": body,
        "labels": labels,
        "assignees": assignees,
        "metadata": metadata,
        "created_at": times.0,
        "updated_at": times.1,
        "closed_at": times.2,
        "merged_at": times.3,
        "check_runs": runs,
        "history": history,
    }))
}
