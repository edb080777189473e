//! The read API: repositories, their pull requests with the state of their
//! checks, and one pull request with its check runs and history.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::authorize_any;
use super::error::{ErrorBody, ReadError, UNAVAILABLE};
use crate::config::Secret;
use crate::db::merge_groups::{GroupSummary, PullQueueState};
use crate::db::reads::{self, values, FlakyCheck, HeadStatus, PullFilter, PullSummary};
use crate::db::repairs::RepairCounts;
use crate::db::{merge_groups, repairs, repositories, DbPool};
use crate::ids::{CommitSha, GithubRepoId, InstallationId, PullRequestNumber};

/// Tokens that may read: the read token and the admin token.
pub struct ReadConfig {
    tokens: Vec<Secret>,
    /// A check unfinished this long is stuck.
    stuck_after: std::time::Duration,
    /// The board and its event stream need no login (`PRMONITOR_BOARD_PUBLIC`).
    board_public: bool,
}

impl ReadConfig {
    pub fn new(read: Option<Secret>, admin: Option<Secret>) -> Self {
        Self {
            tokens: read.into_iter().chain(admin).collect(),
            stuck_after: crate::config::DEFAULT_STUCK_CHECK_AFTER,
            board_public: false,
        }
    }

    pub fn with_board_public(self, board_public: bool) -> Self {
        Self { board_public, ..self }
    }

    /// The tokens a login may present, and that sign its session cookie.
    pub(super) fn tokens(&self) -> &[Secret] {
        &self.tokens
    }

    /// The board's pages and the event stream: open when the board is
    /// public, otherwise as [`ReadConfig::authorize`].
    pub(super) fn authorize_board(&self, request: &HttpRequest) -> Result<(), ReadError> {
        if self.board_public {
            return Ok(());
        }
        self.authorize(request)
    }

    pub fn with_stuck_after(self, stuck_after: std::time::Duration) -> Self {
        Self { stuck_after, ..self }
    }

    pub fn stuck_after(&self) -> std::time::Duration {
        self.stuck_after
    }

    /// A bearer token, or the board's session cookie (a login with one of
    /// the same tokens). Only reads take the cookie: the admin API, which
    /// changes things, takes the header alone, so a cross-site request a
    /// browser makes with the cookie can never reconcile or retry anything.
    pub(super) fn authorize(&self, request: &HttpRequest) -> Result<(), ReadError> {
        match authorize_any(request, &self.tokens) {
            Ok(()) => Ok(()),
            Err(_) if super::board::session::from_request(request, &self.tokens) => Ok(()),
            Err(message) => Err(ReadError::Unauthorized(message)),
        }
    }
}

const MAX_PER_PAGE: i64 = 100;
const DEFAULT_PER_PAGE: i64 = 30;
/// Far past any real listing (100 million rows at 100 a page), and small
/// enough that the offset cannot overflow.
const MAX_PAGE: i64 = 1_000_000;
/// GitHub's own limits are 39 (owner) and 100 (repository, label) characters;
/// anything much longer cannot match and is refused before the database.
/// Characters, not bytes: the OpenAPI document's `maxLength` counts those.
const MAX_TEXT_PARAMETER: usize = 256;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    // Text, parsed here: the deserializer's own number errors do not name the parameter.
    /// The page, from 1.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<String>,
    /// Items a page, 30 unless given.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    per_page: Option<String>,
}

/// One page of a listing, and how many items the whole listing holds.
macro_rules! page_of {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            items: Vec<$item>,
            #[schema(minimum = 1, maximum = 1_000_000)]
            page: i64,
            #[schema(minimum = 1, maximum = 100)]
            per_page: i64,
            /// Items of the whole listing.
            #[schema(minimum = 0)]
            total: i64,
        }
    };
}

page_of!(
    /// A page of watched repositories, by registration.
    RepositoryPage of RepositoryItem
);
page_of!(
    /// A page of a repository's pull requests, most recently updated first.
    PullPage of PullSummary
);
page_of!(
    /// A page of a repository's merge groups, newest first.
    MergeGroupPage of GroupSummary
);

/// A watched repository and how syncing it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryItem {
    /// `owner/name`
    full_name: String,
    github_id: GithubRepoId,
    installation_id: Option<InstallationId>,
    active: bool,
    last_synced_at: Option<DateTime<Utc>>,
    last_swept_at: Option<DateTime<Utc>>,
    #[schema(minimum = 0)]
    consecutive_failures: i32,
    last_failure_reason: Option<String>,
    last_failure_at: Option<DateTime<Utc>>,
    /// What sweeps and reconciles changed in the last 24 hours that webhooks had not.
    repairs_last_24h: RepairCounts,
}

// The descriptions the read API's answers share (and error::UNAVAILABLE).
const NOT_FOUND_REPOSITORY: &str = "not a watched repository";
pub(super) const UNAUTHORIZED: &str =
    "no valid read or admin token, or neither PRMONITOR_READ_TOKEN nor PRMONITOR_ADMIN_TOKEN is set";

/// (page, per_page), or the 400 naming the parameter.
fn page(query: &PageQuery) -> Result<(i64, i64), ReadError> {
    let page = bounded_number("page", query.page.as_deref(), 1, 1..=MAX_PAGE)?;
    let per_page = bounded_number("per_page", query.per_page.as_deref(), DEFAULT_PER_PAGE, 1..=MAX_PER_PAGE)?;
    Ok((page, per_page))
}

pub(super) fn bounded_number(
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
pub(super) fn boolean(name: &str, text: Option<&str>) -> Result<Option<bool>, ReadError> {
    match text {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ReadError::invalid(format!("{name} must be true or false"))),
    }
}

/// A text parameter PostgreSQL can take (the document's `pattern` and
/// `maxLength` of owner, name, label and author): no NUL (TEXT cannot hold one; the
/// server answers "invalid byte sequence"), not absurdly long.
pub(super) fn text_parameter(name: &str, value: Option<&str>) -> Result<(), ReadError> {
    match value {
        Some(text) if text.contains('\0') => {
            Err(ReadError::invalid(format!("{name} must not contain a NUL character")))
        }
        Some(text) if text.chars().count() > MAX_TEXT_PARAMETER => {
            Err(ReadError::invalid(format!("{name} must be at most {MAX_TEXT_PARAMETER} characters")))
        }
        _ => Ok(()),
    }
}

/// The watched repositories, with their sync state and repairs.
#[utoipa::path(
    get,
    path = "/api/v1/repositories",
    tag = "read",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "a page of repositories", body = RepositoryPage),
        (status = 400, description = "an unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
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
    let items: Vec<RepositoryItem> = rows
        .into_iter()
        .map(|repo| RepositoryItem {
            full_name: repo.full_name(),
            github_id: repo.github_id,
            installation_id: repo.installation_id,
            active: repo.active,
            last_synced_at: repo.last_synced_at,
            last_swept_at: repo.last_swept_at,
            consecutive_failures: repo.consecutive_failures,
            last_failure_reason: repo.last_failure_reason,
            last_failure_at: repo.last_failure_at,
            repairs_last_24h: repairs.get(&repo.id).copied().unwrap_or_default(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(RepositoryPage { items, page, per_page, total }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PullsQuery {
    /// `open` unless given; `all` for every state.
    #[param(value_type = Option<PullsStateFilter>)]
    state: Option<String>,
    #[param(value_type = Option<bool>)]
    draft: Option<String>,
    /// Pull requests carrying this label.
    #[param(max_length = 256, pattern = "^[^\\x00]*$")]
    label: Option<String>,
    /// Pull requests opened by this login.
    #[param(max_length = 256, pattern = "^[^\\x00]*$")]
    author: Option<String>,
    /// Pull requests whose head's checks are in this state.
    #[param(value_type = Option<values::ChecksState>)]
    checks: Option<String>,
    /// Pull requests whose head has a check that failed and then passed.
    #[param(value_type = Option<bool>)]
    flaky: Option<String>,
    /// Pull requests whose head has a check unfinished longer than `PRMONITOR_STUCK_CHECK_AFTER`.
    #[param(value_type = Option<bool>)]
    stuck: Option<String>,
    /// The page, from 1.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<String>,
    /// Items a page, 30 unless given.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    per_page: Option<String>,
}

/// The `state` filter of the pull request listing (a schema only: the query keeps the text).
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum PullsStateFilter {
    Open,
    Closed,
    Merged,
    All,
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

/// `{owner}/{name}` of the repository routes. The limits are what
/// `text_parameter` refuses beyond, stated for the document.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RepositoryPath {
    /// The repository's owner (a user or an organization).
    #[param(max_length = 256, pattern = "^[^\\x00]*$")]
    owner: String,
    /// The repository's name.
    #[param(max_length = 256, pattern = "^[^\\x00]*$")]
    name: String,
}

/// A repository's pull requests with the state of their head's checks.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{owner}/{name}/pulls",
    tag = "read",
    security(("bearer" = [])),
    params(RepositoryPath, PullsQuery),
    responses(
        (status = 200, description = "a page of pull requests", body = PullPage),
        (status = 400, description = "an unknown or malformed query parameter, or a value out of range", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NOT_FOUND_REPOSITORY, body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub async fn list_pulls(
    request: HttpRequest,
    path: web::Path<RepositoryPath>,
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
    let RepositoryPath { owner, name } = path.into_inner();
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
        updated_before: None,
    };
    let (items, total) =
        reads::list_pulls(&mut conn, repo.id, &filter, per_page, (page - 1) * per_page).await?;
    Ok(HttpResponse::Ok().json(PullPage { items, page, per_page, total }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// The flakiest checks of a repository, over the last 7 and 30 days.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlakyChecks {
    /// `owner/name`
    repository: String,
    #[schema(max_items = 20)]
    last_7_days: Vec<FlakyCheck>,
    #[schema(max_items = 20)]
    last_30_days: Vec<FlakyCheck>,
}

/// The check names that failed and then passed on the same commit.
///
/// Over the last 7 and 30 days, most commits first (20 each at most).
/// The route takes no query parameters.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{owner}/{name}/checks/flaky",
    tag = "read",
    security(("bearer" = [])),
    params(RepositoryPath),
    responses(
        (status = 200, description = "the flakiest checks", body = FlakyChecks),
        (status = 400, description = "a query parameter (there are none), or an owner or name that cannot be one", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NOT_FOUND_REPOSITORY, body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub async fn flaky_checks(
    request: HttpRequest,
    path: web::Path<RepositoryPath>,
    query: Result<web::Query<NoQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    query.map_err(|e| ReadError::malformed_query(&e))?;
    let mut conn = pool.get().await?;
    let RepositoryPath { owner, name } = path.into_inner();
    let repo = repository(&mut conn, &owner, &name).await?;
    let week = reads::flakiest_checks(&mut conn, repo.id, 7, 20).await?;
    let month = reads::flakiest_checks(&mut conn, repo.id, 30, 20).await?;
    Ok(HttpResponse::Ok().json(FlakyChecks {
        repository: repo.full_name(),
        last_7_days: week,
        last_30_days: month,
    }))
}

/// A pull request with its head's checks, its history and its merge queue state.
#[derive(Debug, Serialize, ToSchema)]
pub struct PullResponse {
    /// `owner/name`
    repository: String,
    number: PullRequestNumber,
    title: String,
    author: String,
    #[schema(value_type = values::PullState)]
    state: String,
    draft: bool,
    base_branch: String,
    head_branch: String,
    head_sha: CommitSha,
    html_url: String,
    body: Option<String>,
    labels: Vec<String>,
    assignees: Vec<String>,
    /// What prmonitor keeps of the pull request beyond these fields.
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    merged_at: Option<DateTime<Utc>>,
    /// As in the listing; null for a pull request GitHub no longer knows.
    #[schema(value_type = Option<values::ChecksState>)]
    checks: Option<String>,
    #[schema(minimum = 0)]
    checks_passing: Option<i64>,
    #[schema(minimum = 0)]
    checks_failing: Option<i64>,
    #[schema(minimum = 0)]
    checks_pending: Option<i64>,
    /// As in the listing; null for a pull request GitHub no longer knows.
    #[schema(value_type = Option<values::RequiredState>)]
    required_state: Option<String>,
    /// The check names and status contexts the base branch requires.
    required_checks: Vec<String>,
    /// Every check run of the head commit, newest first.
    check_runs: Vec<CheckRunItem>,
    /// The latest status of each context of the head commit.
    statuses: Vec<HeadStatus>,
    /// The transitions of its state, draft flag and head, in the order recorded.
    history: Vec<HistoryItem>,
    /// The newest merge group's state, or null when never queued.
    merge_queue: Option<PullQueueState>,
}

/// A check run of the head commit.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckRunItem {
    /// GitHub's id of the check run (beyond 2^31).
    id: i64,
    name: String,
    /// As GitHub sends it: `queued`, `in_progress`, `completed`, ...
    status: String,
    /// Once completed, as GitHub sends it: `success`, `failure`, `neutral`, ...
    conclusion: Option<String>,
    details_url: Option<String>,
    html_url: Option<String>,
    output_title: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

/// One transition of a pull request.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    #[schema(value_type = values::HistoryField)]
    field: String,
    /// Null for the first value recorded.
    old: Option<String>,
    new: String,
    /// GitHub's time of the change.
    at: DateTime<Utc>,
    #[schema(value_type = values::ChangeCause)]
    cause: String,
    /// The webhook delivery that brought it, if one did.
    delivery_id: Option<String>,
}

/// A pull request with its head's check runs and statuses, its history and
/// its merge queue state.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{owner}/{name}/pulls/{number}",
    tag = "read",
    security(("bearer" = [])),
    params(
        // Inline, not `RepositoryPath`: the handler's three-part path would
        // add owner and name a second time.
        ("owner" = String, Path, max_length = 256, pattern = "^[^\\x00]*$"),
        ("name" = String, Path, max_length = 256, pattern = "^[^\\x00]*$"),
        ("number" = i32, Path, minimum = 1, description = "the pull request's number"),
    ),
    responses(
        (status = 200, description = "the pull request", body = PullResponse),
        (status = 400, description = "the number is not a number, or an owner or name that cannot be one", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "not a watched repository, or no such pull request in it", body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
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
    let check_runs = runs
        .into_iter()
        .map(|run| CheckRunItem {
            id: run.github_id,
            name: run.name,
            status: run.status,
            conclusion: run.conclusion,
            details_url: run.details_url,
            html_url: run.html_url,
            output_title: run.output_title,
            started_at: run.gh_started_at,
            completed_at: run.gh_completed_at,
        })
        .collect();
    let history = history
        .into_iter()
        .map(|entry| HistoryItem {
            field: entry.field,
            old: entry.old_value,
            new: entry.new_value,
            at: entry.gh_changed_at,
            cause: entry.cause,
            delivery_id: entry.delivery_id,
        })
        .collect();
    Ok(HttpResponse::Ok().json(PullResponse {
        repository: repo.full_name(),
        number: pr.number,
        title: pr.title,
        author: pr.author,
        state: pr.state,
        draft: pr.draft,
        base_branch: pr.base_branch,
        head_branch: pr.head_branch,
        head_sha: pr.head_sha,
        html_url: pr.html_url,
        body: pr.body,
        labels: pr.labels,
        assignees: pr.assignees,
        metadata: pr.metadata,
        created_at: pr.gh_created_at,
        updated_at: pr.gh_updated_at,
        closed_at: pr.gh_closed_at,
        merged_at: pr.gh_merged_at,
        // A PR GitHub no longer knows is shown without a summary.
        checks: summary.as_ref().map(|s| s.checks.clone()),
        checks_passing: summary.as_ref().map(|s| s.checks_passing),
        checks_failing: summary.as_ref().map(|s| s.checks_failing),
        checks_pending: summary.as_ref().map(|s| s.checks_pending),
        required_state: summary.as_ref().map(|s| s.required_state.clone()),
        required_checks: required,
        check_runs,
        statuses,
        history,
        merge_queue,
    }))
}

/// The merge groups of a repository, newest first, with the verdicts of
/// their commits' checks.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{owner}/{name}/merge-groups",
    tag = "read",
    security(("bearer" = [])),
    params(RepositoryPath, PageQuery),
    responses(
        (status = 200, description = "a page of merge groups", body = MergeGroupPage),
        (status = 400, description = "an unknown or malformed query parameter, or an owner or name that cannot be one", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NOT_FOUND_REPOSITORY, body = ErrorBody),
        (status = 503, description = UNAVAILABLE, body = ErrorBody),
    )
)]
pub async fn list_merge_groups(
    request: HttpRequest,
    path: web::Path<RepositoryPath>,
    query: Result<web::Query<PageQuery>, actix_web::Error>,
    pool: web::Data<DbPool>,
    config: web::Data<ReadConfig>,
) -> Result<HttpResponse, ReadError> {
    config.authorize(&request)?;
    let query = query.map_err(|e| ReadError::malformed_query(&e))?;
    let (page, per_page) = page(&query)?;
    let mut conn = pool.get().await?;
    let RepositoryPath { owner, name } = path.into_inner();
    let repo = repository(&mut conn, &owner, &name).await?;
    let (items, total) = merge_groups::list(&mut conn, repo.id, per_page, (page - 1) * per_page).await?;
    Ok(HttpResponse::Ok().json(MergeGroupPage { items, page, per_page, total }))
}
