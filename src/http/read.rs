//! The read API: repositories, their pull requests with the state of their
//! checks, and one pull request with its check runs and history.

use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Deserialize;
use serde_json::json;

use super::admin::authorize_any;
use super::error::ReadError;
use crate::config::Secret;
use crate::db::reads::{self, PullFilter};
use crate::db::{merge_groups, repairs, repositories, DbPool};
use crate::ids::PullRequestNumber;

/// Tokens that may read: the read token and the admin token.
pub struct ReadConfig {
    tokens: Vec<Secret>,
    /// A check unfinished this long is stuck.
    stuck_after: std::time::Duration,
}

impl ReadConfig {
    pub fn new(read: Option<Secret>, admin: Option<Secret>) -> Self {
        Self {
            tokens: read.into_iter().chain(admin).collect(),
            stuck_after: crate::config::DEFAULT_STUCK_CHECK_AFTER,
        }
    }

    pub fn with_stuck_after(self, stuck_after: std::time::Duration) -> Self {
        Self { stuck_after, ..self }
    }

    pub fn stuck_after(&self) -> std::time::Duration {
        self.stuck_after
    }

    pub(super) fn authorize(&self, request: &HttpRequest) -> Result<(), ReadError> {
        authorize_any(request, &self.tokens).map_err(ReadError::Unauthorized)
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    // Text, parsed here: the deserializer's own number errors do not name the parameter.
    page: Option<String>,
    per_page: Option<String>,
}

/// (page, per_page), or the 400 naming the parameter.
fn page(query: &PageQuery) -> Result<(i64, i64), ReadError> {
    let page = bounded_number("page", query.page.as_deref(), 1, 1..=MAX_PAGE)?;
    let per_page = bounded_number("per_page", query.per_page.as_deref(), DEFAULT_PER_PAGE, 1..=MAX_PER_PAGE)?;
    Ok((page, per_page))
}

fn bounded_number(
    name: &str,
    text: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ReadError> {
    let Some(text) = text else { return Ok(default) };
    text.parse::<i64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        ReadError::invalid(format!("{name} must be a whole number from {} to {}", range.start(), range.end()))
    })
}

/// `true` or `false`, naming the parameter otherwise.
fn boolean(name: &str, text: Option<&str>) -> Result<Option<bool>, ReadError> {
    match text {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ReadError::invalid(format!("{name} must be true or false"))),
    }
}

/// A text parameter PostgreSQL can take: no NUL (TEXT cannot hold one; the
/// server answers "invalid byte sequence"), not absurdly long.
pub(super) fn text_parameter(name: &str, value: Option<&str>) -> Result<(), ReadError> {
    match value {
        Some(text) if text.contains('\0') => {
            Err(ReadError::invalid(format!("{name} must not contain a NUL character")))
        }
        Some(text) if text.len() > MAX_TEXT_PARAMETER => {
            Err(ReadError::invalid(format!("{name} must be at most {MAX_TEXT_PARAMETER} bytes")))
        }
        _ => Ok(()),
    }
}

/// `GET /api/v1/repositories`
pub async fn list_repositories(
    request: HttpRequest,
    query: Result<web::Query<PageQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    let query = query.map_err(|e| ReadError::malformed_query(&e))?;
    let (page, per_page) = page(&query)?;
    let mut conn = pool.get().await?;
    use crate::db::schema::repositories as r;
    let total: i64 = r::table.count().get_result(&mut conn).await?;
    let rows = r::table
        .order(r::id)
        .limit(per_page)
        .offset((page - 1) * per_page)
        .select(repositories::Repository::as_select())
        .load::<repositories::Repository>(&mut conn)
        .await?;
    let ids: Vec<_> = rows.iter().map(|repo| repo.id).collect();
    let repairs = repairs::recent(&mut conn, &ids, chrono::Utc::now() - chrono::Duration::hours(24)).await?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|repo| {
            let repairs = repairs.get(&repo.id).copied().unwrap_or_default();
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
                // What sweeps and reconciles changed that webhooks had not.
                "repairs_last_24h": repairs,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "page": page, "per_page": per_page, "total": total })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullsQuery {
    state: Option<String>,
    draft: Option<String>,
    label: Option<String>,
    author: Option<String>,
    checks: Option<String>,
    flaky: Option<String>,
    stuck: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

pub(super) async fn repository(
    conn: &mut diesel_async::AsyncPgConnection,
    owner: &str,
    name: &str,
) -> Result<repositories::Repository, ReadError> {
    text_parameter("owner", Some(owner))?;
    text_parameter("name", Some(name))?;
    let full_name = format!("{owner}/{name}");
    repositories::find_by_full_name(conn, &full_name).await?.ok_or(ReadError::UnknownRepository(full_name))
}

/// `GET /api/v1/repositories/{owner}/{name}/pulls`
pub async fn list_pulls(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: Result<web::Query<PullsQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    let query = query.map_err(|e| ReadError::malformed_query(&e))?.into_inner();
    let (page, per_page) = page(&PageQuery { page: query.page, per_page: query.per_page })?;
    let draft = boolean("draft", query.draft.as_deref())?;
    text_parameter("label", query.label.as_deref())?;
    text_parameter("author", query.author.as_deref())?;
    let state = match query.state.as_deref().unwrap_or("open") {
        "all" => None,
        state @ ("open" | "closed" | "merged") => Some(state.to_owned()),
        other => {
            return Err(ReadError::invalid(format!("state is open, closed, merged or all, not '{other}'")))
        }
    };
    if let Some(checks) = query.checks.as_deref() {
        if !reads::CHECKS_STATES.contains(&checks) {
            return Err(ReadError::invalid("checks is failing, pending, passing or none"));
        }
    }
    let mut conn = pool.get().await?;
    let (owner, name) = path.into_inner();
    let repo = repository(&mut conn, &owner, &name).await?;
    let flaky = boolean("flaky", query.flaky.as_deref())?;
    let stuck = boolean("stuck", query.stuck.as_deref())?;
    let filter = PullFilter {
        state,
        draft,
        label: query.label,
        author: query.author,
        checks: query.checks,
        flaky,
        stuck,
        stuck_after: config.stuck_after,
    };
    let (items, total) =
        reads::list_pulls(&mut conn, repo.id, &filter, per_page, (page - 1) * per_page).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items, "page": page, "per_page": per_page, "total": total })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// `GET /api/v1/repositories/{owner}/{name}/checks/flaky`: the check names
/// that failed and then passed on the same commit, over the last 7 and 30
/// days, most commits first (20 each at most).
pub async fn flaky_checks(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: Result<web::Query<NoQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    query.map_err(|e| ReadError::malformed_query(&e))?;
    let mut conn = pool.get().await?;
    let (owner, name) = path.into_inner();
    let repo = repository(&mut conn, &owner, &name).await?;
    let week = reads::flakiest_checks(&mut conn, repo.id, 7, 20).await?;
    let month = reads::flakiest_checks(&mut conn, repo.id, 30, 20).await?;
    Ok(HttpResponse::Ok().json(json!({
        "repository": repo.full_name(),
        "last_7_days": week,
        "last_30_days": month,
    })))
}

/// `GET /api/v1/repositories/{owner}/{name}/pulls/{number}`
pub async fn get_pull(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    let (owner, name, number) = path.into_inner();
    let number = number
        .parse()
        .map(PullRequestNumber)
        .map_err(|_| ReadError::invalid("a pull request number is a number"))?;
    let mut conn = pool.get().await?;
    let repo = repository(&mut conn, &owner, &name).await?;
    let pr = reads::pull_request(&mut conn, repo.id, number)
        .await?
        .ok_or_else(|| ReadError::UnknownPullRequest { repository: format!("{owner}/{name}"), number })?;
    let runs = reads::head_check_runs(&mut conn, repo.id, &pr.head_sha).await;
    let history = reads::history(&mut conn, pr.id).await;
    let statuses = reads::head_statuses(&mut conn, repo.id, &pr.head_sha).await;
    let required = reads::required_contexts(&mut conn, repo.id, &pr.base_branch).await;
    let summary = reads::pull_summary(&mut conn, repo.id, number).await;
    let merge_queue = merge_groups::newest_of_pull(&mut conn, repo.id, number).await;
    // One message whichever read failed: the answer does not depend on
    // which read it was.
    let (Ok(runs), Ok(history), Ok(statuses), Ok(required), Ok(summary), Ok(merge_queue)) =
        (runs, history, statuses, required, summary, merge_queue)
    else {
        return Err(ReadError::Unavailable("reading checks, history and merge queue failed".into()));
    };
    let runs: Vec<serde_json::Value> = runs
        .into_iter()
        .map(|run| {
            json!({
                "id": run.github_id,
                "name": run.name,
                "status": run.status,
                "conclusion": run.conclusion,
                "details_url": run.details_url,
                "html_url": run.html_url,
                "output_title": run.output_title,
                "started_at": run.gh_started_at,
                "completed_at": run.gh_completed_at,
            })
        })
        .collect();
    let history: Vec<serde_json::Value> = history
        .into_iter()
        .map(|entry| {
            json!({
                "field": entry.field,
                "old": entry.old_value,
                "new": entry.new_value,
                "at": entry.gh_changed_at,
                "cause": entry.cause,
                "delivery_id": entry.delivery_id,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "repository": repo.full_name(),
        "number": pr.number,
        "title": pr.title,
        "author": pr.author,
        "state": pr.state,
        "draft": pr.draft,
        "base_branch": pr.base_branch,
        "head_branch": pr.head_branch,
        "head_sha": pr.head_sha,
        "html_url": pr.html_url,
        "body": pr.body,
        "labels": pr.labels,
        "assignees": pr.assignees,
        "metadata": pr.metadata,
        "created_at": pr.gh_created_at,
        "updated_at": pr.gh_updated_at,
        "closed_at": pr.gh_closed_at,
        "merged_at": pr.gh_merged_at,
        // A PR GitHub no longer knows is shown without a summary.
        "checks": summary.as_ref().map(|s| &s.checks),
        "checks_passing": summary.as_ref().map(|s| s.checks_passing),
        "checks_failing": summary.as_ref().map(|s| s.checks_failing),
        "checks_pending": summary.as_ref().map(|s| s.checks_pending),
        "required_state": summary.as_ref().map(|s| &s.required_state),
        "required_checks": required,
        "check_runs": runs,
        "statuses": statuses,
        "history": history,
        // The newest merge group's state, or null when never queued.
        "merge_queue": merge_queue,
    })))
}

/// `GET /api/v1/repositories/{owner}/{name}/merge-groups`: the merge groups
/// of a repository, newest first, with the verdicts of their commits' checks.
pub async fn list_merge_groups(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    query: Result<web::Query<PageQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    let query = query.map_err(|e| ReadError::malformed_query(&e))?;
    let (page, per_page) = page(&query)?;
    let mut conn = pool.get().await?;
    let (owner, name) = path.into_inner();
    let repo = repository(&mut conn, &owner, &name).await?;
    let (items, total) = merge_groups::list(&mut conn, repo.id, per_page, (page - 1) * per_page).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items, "page": page, "per_page": per_page, "total": total })))
}
