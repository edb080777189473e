//! The GraphQL types the simulator serves: a subset of GitHub's published
//! schema (fixtures/github/graphql/schema.graphql), with GitHub's names,
//! argument names and types; the conformance test checks each one.
//!
//! Objects carry copies of the model's data (a pull request, a check run)
//! and read the world again, under its lock, only to go further (a pull
//! request's commits, a commit's suites). Ids are the REST `node_id`s
//! (`render::node_id`), so a client can join GraphQL, REST and webhooks.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, InputObject, InputValueError, InputValueResult,
    Interface, Object, Result, Scalar, ScalarType, SimpleObject, Union, Value, ID,
};
use chrono::Utc;

use super::errors::{not_found, typed};
use super::page::{page, Page, PageArgs, PageInfo};
use super::QueryContext;
use crate::model::{ContextState, PrState, SimCheckRun, SimMergeGroup, SimPr, SimRepo, SimStatus};
use crate::render::{self, node_id, user_id, CheckApp};

pub(crate) type SimSchema = async_graphql::Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema, built once: it holds no simulator state (that comes with each request).
pub(crate) fn schema() -> &'static SimSchema {
    static SCHEMA: OnceLock<SimSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        async_graphql::Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(super::GithubRules)
            .finish()
    })
}

fn query<'a>(ctx: &Context<'a>) -> Result<&'a Arc<QueryContext>> {
    ctx.data::<Arc<QueryContext>>()
}

// ---------------------------------------------------------------- scalars

/// GitHub's `DateTime`: ISO 8601 in UTC with whole seconds, as REST writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime(pub chrono::DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        if let Value::String(text) = &value {
            if let Ok(at) = text.parse::<chrono::DateTime<Utc>>() {
                return Ok(Self(at));
            }
        }
        Err(InputValueError::expected_type(value))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    }
}

fn time(at: Option<chrono::DateTime<Utc>>) -> Option<DateTime> {
    at.map(DateTime)
}

/// GitHub's `URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Uri(pub String);

#[Scalar(name = "URI")]
impl ScalarType for Uri {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => Ok(Self(text)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// GitHub's `GitObjectID`: a SHA in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitObjectId(pub String);

#[Scalar(name = "GitObjectID")]
impl ScalarType for GitObjectId {
    fn parse(value: Value) -> InputValueResult<Self> {
        if let Value::String(text) = &value {
            if !text.is_empty() && text.len() <= 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(Self(text.to_ascii_lowercase()));
            }
        }
        Err(InputValueError::expected_type(value))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// GitHub's `BigInt`: a 64-bit id written as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BigInt(pub i64);

#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        if let Value::String(text) = &value {
            if let Ok(n) = text.parse() {
                return Ok(Self(n));
            }
        }
        Err(InputValueError::expected_type(value))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

// ---------------------------------------------------------------- enums and inputs

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum PullRequestState {
    Closed,
    Merged,
    Open,
}

impl From<&PrState> for PullRequestState {
    fn from(state: &PrState) -> Self {
        match state {
            PrState::Open => Self::Open,
            PrState::Closed => Self::Closed,
            PrState::Merged => Self::Merged,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Enum)]
pub(crate) enum StatusState {
    Error,
    Expected,
    Failure,
    Pending,
    Success,
}

impl StatusState {
    /// A REST status state (`error`, `failure`, `pending`, `success`).
    fn of(state: &str) -> Self {
        match state {
            "error" => Self::Error,
            "failure" => Self::Failure,
            "success" => Self::Success,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum MergeQueueEntryState {
    AwaitingChecks,
    Locked,
    Mergeable,
    Queued,
    Unmergeable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum CheckStatusState {
    Completed,
    InProgress,
    Pending,
    Queued,
    Requested,
    Waiting,
}

impl CheckStatusState {
    fn of(status: &str) -> Self {
        match status {
            "completed" => Self::Completed,
            "in_progress" => Self::InProgress,
            "pending" => Self::Pending,
            "requested" => Self::Requested,
            "waiting" => Self::Waiting,
            _ => Self::Queued,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum CheckConclusionState {
    ActionRequired,
    Cancelled,
    Failure,
    Neutral,
    Skipped,
    Stale,
    StartupFailure,
    Success,
    TimedOut,
}

impl CheckConclusionState {
    fn of(conclusion: &str) -> Option<Self> {
        Some(match conclusion {
            "action_required" => Self::ActionRequired,
            "cancelled" => Self::Cancelled,
            "failure" => Self::Failure,
            "neutral" => Self::Neutral,
            "skipped" => Self::Skipped,
            "stale" => Self::Stale,
            "startup_failure" => Self::StartupFailure,
            "success" => Self::Success,
            "timed_out" => Self::TimedOut,
            _ => return None,
        })
    }
}

/// A run's state as `checkRunCountsByState` counts it: its conclusion once
/// completed, its status before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Enum)]
pub(crate) enum CheckRunState {
    ActionRequired,
    Cancelled,
    Completed,
    Failure,
    InProgress,
    Neutral,
    Pending,
    Queued,
    Skipped,
    Stale,
    StartupFailure,
    Success,
    TimedOut,
    Waiting,
}

impl CheckRunState {
    fn of(run: &SimCheckRun) -> Self {
        match (run.status.as_str(), run.conclusion.as_deref().and_then(CheckConclusionState::of)) {
            ("completed", Some(conclusion)) => match conclusion {
                CheckConclusionState::ActionRequired => Self::ActionRequired,
                CheckConclusionState::Cancelled => Self::Cancelled,
                CheckConclusionState::Failure => Self::Failure,
                CheckConclusionState::Neutral => Self::Neutral,
                CheckConclusionState::Skipped => Self::Skipped,
                CheckConclusionState::Stale => Self::Stale,
                CheckConclusionState::StartupFailure => Self::StartupFailure,
                CheckConclusionState::Success => Self::Success,
                CheckConclusionState::TimedOut => Self::TimedOut,
            },
            ("completed", None) => Self::Completed,
            (status, _) => match CheckStatusState::of(status) {
                CheckStatusState::InProgress => Self::InProgress,
                CheckStatusState::Pending | CheckStatusState::Requested => Self::Pending,
                CheckStatusState::Waiting => Self::Waiting,
                _ => Self::Queued,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum CheckRunType {
    All,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum IssueOrderField {
    Comments,
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum OrderDirection {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, InputObject)]
pub(crate) struct IssueOrder {
    pub direction: OrderDirection,
    pub field: IssueOrderField,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, InputObject)]
pub(crate) struct CheckSuiteFilter {
    pub app_id: Option<i32>,
    pub check_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, InputObject)]
pub(crate) struct CheckRunFilter {
    pub app_id: Option<i32>,
    pub check_name: Option<String>,
    pub check_type: Option<CheckRunType>,
    pub conclusions: Option<Vec<CheckConclusionState>>,
    pub status: Option<CheckStatusState>,
    pub statuses: Option<Vec<CheckStatusState>>,
}

// ---------------------------------------------------------------- rules shared with REST

/// The newest run of each name, as REST's `filter=latest` picks them, oldest first.
pub(crate) fn latest_per_name<'a>(runs: impl IntoIterator<Item = &'a SimCheckRun>) -> Vec<&'a SimCheckRun> {
    crate::model::latest_runs(runs)
}

/// A commit's rollup state, from the latest run of each check name (GitHub
/// rolls up the latest runs, so a passing re-run clears a failure) and the
/// latest status of each context; GitHub combines both kinds:
/// - any completed run whose conclusion is `failure`, `timed_out`,
///   `cancelled`, `action_required`, `startup_failure` or `stale`, or any
///   status `error` or `failure` → `FAILURE`;
/// - else any run not completed or any status `pending` → `PENDING`;
/// - else `SUCCESS` (`success`, `neutral` and `skipped` pass).
///
/// GitHub does not document how `stale` (a run GitHub gave up on after 14
/// days) rolls up; it is taken as failing, the stricter reading, as branch
/// protection here takes it ([`crate::model::ContextState`]).
///
/// A status in `error` makes the rollup `FAILURE`, not `ERROR`: REST's
/// combined status documents that rule, and GraphQL's is not documented.
///
/// `None` when the commit has neither checks nor statuses: its `statusCheckRollup` is null.
pub(crate) fn rollup_state(latest: &[&SimCheckRun], statuses: &[&SimStatus]) -> Option<StatusState> {
    if latest.is_empty() && statuses.is_empty() {
        return None;
    }
    let failed = latest.iter().any(|run| {
        run.status == "completed"
            && matches!(
                run.conclusion.as_deref(),
                Some("failure" | "timed_out" | "cancelled" | "action_required" | "startup_failure" | "stale")
            )
    }) || statuses.iter().any(|s| s.state == "error" || s.state == "failure");
    Some(if failed {
        StatusState::Failure
    } else if latest.iter().any(|run| run.status != "completed")
        || statuses.iter().any(|s| s.state == "pending")
    {
        StatusState::Pending
    } else {
        StatusState::Success
    })
}

impl SimRepo {
    /// GitHub's `statusCheckRollup.state` of commit `sha` (`SUCCESS`,
    /// `FAILURE`, `PENDING`), `None` when nothing reports on it.
    pub fn rollup(&self, sha: &str) -> Option<&'static str> {
        let runs = latest_per_name(self.runs_for(sha));
        rollup_state(&runs, &self.latest_statuses(sha)).map(|state| match state {
            StatusState::Error => "ERROR",
            StatusState::Expected => "EXPECTED",
            StatusState::Failure => "FAILURE",
            StatusState::Pending => "PENDING",
            StatusState::Success => "SUCCESS",
        })
    }
}

/// The pull request an `isRequired(pullRequestId:, pullRequestNumber:)`
/// names, in `repo`; GitHub's `UNPROCESSABLE` error without either argument.
fn required_for<'r>(
    repo: &'r SimRepo,
    pull_request_id: Option<&ID>,
    pull_request_number: Option<i32>,
) -> Result<&'r SimPr> {
    match (pull_request_id, pull_request_number) {
        (Some(id), _) => parse_node_id(id.as_str())
            .filter(|(kind, _)| *kind == "PR")
            .and_then(|(_, key)| key.parse::<i64>().ok())
            .and_then(|pr_id| repo.pulls.values().find(|pr| pr.id == pr_id))
            .ok_or_else(|| {
                not_found(format!("Could not resolve to a node with the global id of '{}'", id.as_str()))
            }),
        (None, Some(number)) => repo.pulls.get(&i64::from(number)).ok_or_else(|| {
            not_found(format!("Could not resolve to a PullRequest with the number of {number}."))
        }),
        (None, None) => Err(typed("UNPROCESSABLE", "A pull request ID or pull request number is required.")),
    }
}

/// Whether the check or status context `name` is required by the branch
/// protection of the base branch of the pull request the arguments name.
fn is_required(
    q: &QueryContext,
    repo: &RepoRef,
    name: &str,
    pull_request_id: Option<ID>,
    pull_request_number: Option<i32>,
) -> Result<bool> {
    repo.read(q, |r| {
        let pr = required_for(r, pull_request_id.as_ref(), pull_request_number)?;
        Ok(r.required_contexts(&pr.base_ref).iter().any(|c| c == name))
    })?
}

// ---------------------------------------------------------------- connections

macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        #[derive(Clone, SimpleObject)]
        pub(crate) struct $edge {
            cursor: String,
            node: Option<$node>,
        }

        #[derive(Clone, SimpleObject)]
        pub(crate) struct $connection {
            edges: Option<Vec<Option<$edge>>>,
            nodes: Option<Vec<Option<$node>>>,
            page_info: PageInfo,
            total_count: i64,
        }

        impl $connection {
            fn new(page: Page<$node>) -> Self {
                Self {
                    edges: Some(
                        page.items
                            .iter()
                            .map(|(cursor, node)| {
                                Some($edge { cursor: cursor.clone(), node: Some(node.clone()) })
                            })
                            .collect(),
                    ),
                    nodes: Some(page.items.into_iter().map(|(_, node)| Some(node)).collect()),
                    page_info: page.info,
                    total_count: page.total as i64,
                }
            }
        }
    };
}

connection!(PullRequestConnection, PullRequestEdge, PullRequest);
connection!(PullRequestCommitConnection, PullRequestCommitEdge, PullRequestCommit);
connection!(LabelConnection, LabelEdge, Label);
connection!(UserConnection, UserEdge, User);
connection!(CheckSuiteConnection, CheckSuiteEdge, CheckSuite);
connection!(CheckRunConnection, CheckRunEdge, CheckRun);

// ---------------------------------------------------------------- interfaces and unions

#[derive(Clone, Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub(crate) enum Node {
    App(App),
    CheckRun(CheckRun),
    CheckSuite(CheckSuite),
    Commit(Commit),
    Label(Label),
    MergeQueueEntry(MergeQueueEntry),
    PullRequest(PullRequest),
    PullRequestCommit(PullRequestCommit),
    Ref(Ref),
    Repository(Repository),
    Status(Status),
    StatusCheckRollup(StatusCheckRollup),
    StatusContext(StatusContext),
    User(User),
}

#[derive(Clone, Interface)]
#[graphql(field(name = "login", ty = "String"), field(name = "url", ty = "Uri"))]
pub(crate) enum Actor {
    User(User),
}

#[derive(Clone, Interface)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "login", ty = "String"),
    field(name = "url", ty = "Uri")
)]
pub(crate) enum RepositoryOwner {
    User(User),
}

#[derive(Clone, Interface)]
#[graphql(
    field(name = "abbreviated_oid", ty = "String"),
    field(name = "commit_url", ty = "Uri"),
    field(name = "id", ty = "ID"),
    field(name = "oid", ty = "GitObjectId"),
    field(name = "repository", ty = "Repository")
)]
pub(crate) enum GitObject {
    Commit(Commit),
}

#[derive(Clone, Union)]
pub(crate) enum StatusCheckRollupContext {
    CheckRun(CheckRun),
    StatusContext(StatusContext),
}

// ---------------------------------------------------------------- Query

pub(crate) struct Query;

#[Object]
impl Query {
    /// A repository the caller may read. GitHub answers another
    /// installation's repository as it answers one that does not exist.
    async fn repository(
        &self,
        ctx: &Context<'_>,
        owner: String,
        name: String,
        #[graphql(default_with = "Some(true)")] follow_renames: Option<bool>,
    ) -> Result<Option<Repository>> {
        // The simulator's repositories are never renamed: nothing to follow.
        let _ = follow_renames;
        let q = query(ctx)?;
        let found = q.world(|world| {
            world
                .repos
                .values()
                .find(|r| r.owner.eq_ignore_ascii_case(&owner) && r.name.eq_ignore_ascii_case(&name))
                .filter(|r| q.caller.may_read(r.installation_id))
                .map(Repository::of)
        });
        found.map(Some).ok_or_else(|| {
            not_found(format!("Could not resolve to a Repository with the name '{owner}/{name}'."))
        })
    }

    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let q = query(ctx)?;
        resolve_node(q, &id).map(Some).ok_or_else(|| {
            not_found(format!("Could not resolve to a node with the global id of '{}'", id.as_str()))
        })
    }

    /// At most 100 ids (checked before the query runs, with GitHub's other limits).
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Node>>> {
        let q = query(ctx)?;
        Ok(ids.iter().map(|id| resolve_node(q, id)).collect())
    }

    /// The caller's GraphQL budget after this query, and what the query cost.
    async fn rate_limit(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(false)")] dry_run: Option<bool>,
    ) -> Result<Option<RateLimit>> {
        // Read by the analysis before the query ran: a dry run is not charged.
        let _ = dry_run;
        let q = query(ctx)?;
        Ok(q.admitted().map(|(analysis, bucket)| RateLimit {
            cost: analysis.cost() as i64,
            limit: bucket.limit as i64,
            node_count: analysis.nodes as i64,
            remaining: bucket.remaining as i64,
            reset_at: DateTime(
                chrono::DateTime::<Utc>::from_timestamp(i64::try_from(bucket.reset).unwrap_or(i64::MAX), 0)
                    .unwrap_or_default(),
            ),
            used: bucket.limit.saturating_sub(bucket.remaining) as i64,
        }))
    }
}

#[derive(Clone, SimpleObject)]
pub(crate) struct RateLimit {
    cost: i64,
    limit: i64,
    node_count: i64,
    remaining: i64,
    reset_at: DateTime,
    used: i64,
}

/// Splits `KIND_simKEY` (see `render::node_id`).
fn parse_node_id(id: &str) -> Option<(&str, &str)> {
    id.split_once("_sim")
}

/// Every kind of node the simulator can find again from its id alone, if the caller may read it.
fn resolve_node(q: &QueryContext, id: &ID) -> Option<Node> {
    let (kind, key) = parse_node_id(id.as_str())?;
    q.world(|world| {
        let readable = |repo: &&SimRepo| q.caller.may_read(repo.installation_id);
        match kind {
            "R" => {
                let repo_id: i64 = key.parse().ok()?;
                world.repos.get(&repo_id).filter(readable).map(|r| Node::Repository(Repository::of(r)))
            }
            "PR" => {
                let pr_id: i64 = key.parse().ok()?;
                world.repos.values().filter(readable).find_map(|repo| {
                    repo.pulls
                        .values()
                        .find(|pr| pr.id == pr_id)
                        .map(|pr| Node::PullRequest(PullRequest::of(repo, pr)))
                })
            }
            "CR" => {
                let run_id: i64 = key.parse().ok()?;
                world.repos.values().filter(readable).find_map(|repo| {
                    repo.check_runs.get(&run_id).map(|run| Node::CheckRun(CheckRun::of(repo, run)))
                })
            }
            "CS" => {
                let suite_id: i64 = key.parse().ok()?;
                world.repos.values().filter(readable).find_map(|repo| {
                    let sha =
                        repo.check_runs.values().find(|r| r.check_suite_id == suite_id)?.head_sha.clone();
                    Some(Node::CheckSuite(CheckSuite::of(repo, suite_id, &sha)))
                })
            }
            "C" => {
                let (repo_id, sha) = key.split_once('_')?;
                let repo = world.repos.get(&repo_id.parse().ok()?).filter(readable)?;
                repo.commits.contains(sha).then(|| Node::Commit(Commit::of(repo, sha)))
            }
            "ST" => {
                let (repo_id, sha) = key.split_once('_')?;
                let repo = world.repos.get(&repo_id.parse().ok()?).filter(readable)?;
                Status::of(repo, sha).map(Node::Status)
            }
            "SC" => {
                let status_id: i64 = key.parse().ok()?;
                world.repos.values().filter(readable).find_map(|repo| {
                    repo.statuses
                        .values()
                        .flatten()
                        .find(|s| s.id == status_id)
                        .map(|s| Node::StatusContext(StatusContext::of(repo, s)))
                })
            }
            "MQE" => {
                let pr_id: i64 = key.parse().ok()?;
                world.repos.values().filter(readable).find_map(|repo| {
                    let pr = repo.pulls.values().find(|pr| pr.id == pr_id)?;
                    MergeQueueEntry::of(repo, pr.number).map(Node::MergeQueueEntry)
                })
            }
            _ => None,
        }
    })
}

// ---------------------------------------------------------------- Repository

/// The parts of a repository its objects need to find it again and link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoRef {
    id: i64,
    owner: String,
    name: String,
}

impl RepoRef {
    fn of(repo: &SimRepo) -> Self {
        Self { id: repo.id, owner: repo.owner.clone(), name: repo.name.clone() }
    }

    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn html(&self, q: &QueryContext) -> String {
        format!("{}/{}", q.shared.urls.html, self.full_name())
    }

    /// Reads the repository again (it cannot disappear: the model never deletes one).
    fn read<T>(&self, q: &QueryContext, read: impl FnOnce(&SimRepo) -> T) -> Result<T> {
        q.world(|world| world.repos.get(&self.id).map(read)).ok_or_else(|| {
            not_found(format!("Could not resolve to a Repository with the name '{}'.", self.full_name()))
        })
    }
}

#[derive(Clone)]
pub(crate) struct Repository {
    repo: RepoRef,
}

impl Repository {
    fn of(repo: &SimRepo) -> Self {
        Self { repo: RepoRef::of(repo) }
    }
}

#[Object]
impl Repository {
    async fn id(&self) -> ID {
        node_id("R", self.repo.id).into()
    }

    async fn database_id(&self) -> Option<i64> {
        Some(self.repo.id)
    }

    async fn name(&self) -> String {
        self.repo.name.clone()
    }

    async fn name_with_owner(&self) -> String {
        self.repo.full_name()
    }

    async fn owner(&self) -> RepositoryOwner {
        RepositoryOwner::User(User::new(&self.repo.owner))
    }

    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(self.repo.html(query(ctx)?)))
    }

    /// Default order: `CREATED_AT` ascending, as GitHub's. Ties go by number.
    /// `COMMENTS` orders by creation: the simulator has no comments.
    #[allow(clippy::too_many_arguments)]
    async fn pull_requests(
        &self,
        ctx: &Context<'_>,
        states: Option<Vec<PullRequestState>>,
        order_by: Option<IssueOrder>,
        base_ref_name: Option<String>,
        head_ref_name: Option<String>,
        labels: Option<Vec<String>>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<PullRequestConnection> {
        let q = query(ctx)?;
        let args = PageArgs::new(first, after, last, before);
        let page = self.repo.read(q, |repo| {
            let mut pulls: Vec<&SimPr> = repo
                .pulls
                .values()
                .filter(|pr| states.as_ref().is_none_or(|s| s.is_empty() || s.contains(&(&pr.state).into())))
                .filter(|pr| base_ref_name.as_ref().is_none_or(|b| &pr.base_ref == b))
                .filter(|pr| head_ref_name.as_ref().is_none_or(|h| &pr.head_ref == h))
                .filter(|pr| {
                    labels.as_ref().is_none_or(|l| l.is_empty() || pr.labels.iter().any(|x| l.contains(x)))
                })
                .collect();
            let order = order_by
                .unwrap_or(IssueOrder { field: IssueOrderField::CreatedAt, direction: OrderDirection::Asc });
            match order.field {
                IssueOrderField::UpdatedAt => pulls.sort_by_key(|pr| (pr.updated_at, pr.number)),
                IssueOrderField::CreatedAt | IssueOrderField::Comments => {
                    pulls.sort_by_key(|pr| (pr.created_at, pr.number));
                }
            }
            if order.direction == OrderDirection::Desc {
                pulls.reverse();
            }
            page(pulls, &args).map(|page| page.map(|pr| PullRequest::of(repo, pr)))
        })??;
        Ok(PullRequestConnection::new(page))
    }

    async fn pull_request(&self, ctx: &Context<'_>, number: i32) -> Result<Option<PullRequest>> {
        let q = query(ctx)?;
        self.repo
            .read(q, |repo| repo.pulls.get(&i64::from(number)).map(|pr| PullRequest::of(repo, pr)))?
            .map(Some)
            .ok_or_else(|| {
                not_found(format!("Could not resolve to a PullRequest with the number of {number}."))
            })
    }

    /// A commit by `oid`, or by `expression`: a SHA, or the head branch of an
    /// open pull request (the simulator keeps no other refs). Null when unknown, as on GitHub.
    async fn object(
        &self,
        ctx: &Context<'_>,
        oid: Option<GitObjectId>,
        expression: Option<String>,
    ) -> Result<Option<GitObject>> {
        let q = query(ctx)?;
        self.repo.read(q, |repo| {
            let sha = match (&oid, &expression) {
                (Some(oid), _) => repo.commits.contains(&oid.0).then(|| oid.0.clone()),
                (None, Some(expression)) => {
                    repo.commits.iter().find(|sha| *sha == expression).cloned().or_else(|| {
                        let branch = expression.strip_prefix("refs/heads/").unwrap_or(expression);
                        repo.pulls
                            .values()
                            .find(|pr| pr.state == PrState::Open && pr.head_ref == branch)
                            .map(|pr| pr.head_sha.clone())
                    })
                }
                (None, None) => None,
            };
            sha.map(|sha| GitObject::Commit(Commit::of(repo, &sha)))
        })
    }
}

// ---------------------------------------------------------------- User, Label

#[derive(Clone)]
pub(crate) struct User {
    login: String,
}

impl User {
    fn new(login: &str) -> Self {
        Self { login: login.to_owned() }
    }
}

#[Object]
impl User {
    /// REST's `user.node_id`.
    async fn id(&self) -> ID {
        node_id("U", user_id(&self.login)).into()
    }

    /// REST's `user.id`.
    async fn database_id(&self) -> Option<i64> {
        Some(user_id(&self.login))
    }

    async fn login(&self) -> String {
        self.login.clone()
    }

    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(format!("{}/{}", query(ctx)?.shared.urls.html, self.login)))
    }
}

#[derive(Clone)]
pub(crate) struct Label {
    name: String,
}

#[Object]
impl Label {
    /// REST's `label.node_id`.
    async fn id(&self) -> ID {
        node_id("LA", user_id(&self.name)).into()
    }

    async fn name(&self) -> String {
        self.name.clone()
    }
}

// ---------------------------------------------------------------- PullRequest

#[derive(Clone)]
pub(crate) struct PullRequest {
    repo: RepoRef,
    pr: SimPr,
}

impl PullRequest {
    fn of(repo: &SimRepo, pr: &SimPr) -> Self {
        Self { repo: RepoRef::of(repo), pr: pr.clone() }
    }

    fn html_url(&self, q: &QueryContext) -> String {
        format!("{}/pull/{}", self.repo.html(q), self.pr.number)
    }
}

#[Object]
impl PullRequest {
    /// REST's `node_id`.
    async fn id(&self) -> ID {
        node_id("PR", self.pr.id).into()
    }

    #[graphql(
        deprecation = "`databaseId` will be removed because it does not support 64-bit signed integer identifiers. Use `fullDatabaseId` instead. Removal on 2024-07-01 UTC."
    )]
    async fn database_id(&self) -> Option<i64> {
        Some(self.pr.id)
    }

    async fn full_database_id(&self) -> Option<BigInt> {
        Some(BigInt(self.pr.id))
    }

    async fn number(&self) -> i64 {
        self.pr.number
    }

    async fn title(&self) -> String {
        self.pr.title.clone()
    }

    /// GitHub's GraphQL has no null body: an empty one is `""`.
    async fn body(&self) -> String {
        self.pr.body.clone().unwrap_or_default()
    }

    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(self.html_url(query(ctx)?)))
    }

    async fn state(&self) -> PullRequestState {
        (&self.pr.state).into()
    }

    async fn is_draft(&self) -> bool {
        self.pr.draft
    }

    async fn closed(&self) -> bool {
        self.pr.state != PrState::Open
    }

    async fn merged(&self) -> bool {
        self.pr.state == PrState::Merged
    }

    async fn merged_at(&self) -> Option<DateTime> {
        time(self.pr.merged_at)
    }

    async fn closed_at(&self) -> Option<DateTime> {
        time(self.pr.closed_at)
    }

    async fn created_at(&self) -> DateTime {
        DateTime(self.pr.created_at)
    }

    async fn updated_at(&self) -> DateTime {
        DateTime(self.pr.updated_at)
    }

    async fn author(&self) -> Option<Actor> {
        Some(Actor::User(User::new(&self.pr.author)))
    }

    async fn base_ref_name(&self) -> String {
        self.pr.base_ref.clone()
    }

    async fn base_ref_oid(&self) -> GitObjectId {
        GitObjectId(self.pr.base_sha.clone())
    }

    async fn head_ref_name(&self) -> String {
        self.pr.head_ref.clone()
    }

    /// The head SHA, "even if the ref has been deleted".
    async fn head_ref_oid(&self) -> GitObjectId {
        GitObjectId(self.pr.head_sha.clone())
    }

    /// The head branch. The simulator keeps no branches: it takes the head
    /// branch as deleted once the pull request is closed or merged (what
    /// GitHub shows after "Delete branch"), so `headRef` is null then.
    async fn head_ref(&self) -> Option<Ref> {
        (self.pr.state == PrState::Open).then(|| Ref {
            repo: self.repo.clone(),
            name: self.pr.head_ref.clone(),
            sha: self.pr.head_sha.clone(),
        })
    }

    async fn labels(
        &self,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Option<LabelConnection>> {
        let labels: Vec<Label> = self.pr.labels.iter().map(|name| Label { name: name.clone() }).collect();
        Ok(Some(LabelConnection::new(page(labels, &PageArgs::new(first, after, last, before))?)))
    }

    async fn assignees(
        &self,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<UserConnection> {
        let users: Vec<User> = self.pr.assignees.iter().map(|login| User::new(login)).collect();
        Ok(UserConnection::new(page(users, &PageArgs::new(first, after, last, before))?))
    }

    /// The simulator keeps only each pull request's head commit, so this
    /// connection has one commit, the head: `commits(last: 1)` is the head, as on GitHub.
    async fn commits(
        &self,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<PullRequestCommitConnection> {
        let head = PullRequestCommit {
            repo: self.repo.clone(),
            pr_id: self.pr.id,
            pr_number: self.pr.number,
            sha: self.pr.head_sha.clone(),
        };
        Ok(PullRequestCommitConnection::new(page(vec![head], &PageArgs::new(first, after, last, before))?))
    }

    async fn repository(&self, ctx: &Context<'_>) -> Result<Repository> {
        self.repo.read(query(ctx)?, Repository::of)
    }

    /// The head commit's rollup (a merge group's checks are on the group's
    /// commit, which is no PR's head: see `mergeQueueEntry.headCommit`).
    async fn status_check_rollup(&self, ctx: &Context<'_>) -> Result<Option<StatusCheckRollup>> {
        self.repo.read(query(ctx)?, |repo| StatusCheckRollup::of(repo, &self.pr.head_sha))
    }

    async fn is_in_merge_queue(&self, ctx: &Context<'_>) -> Result<bool> {
        let number = self.pr.number;
        self.repo.read(query(ctx)?, |repo| repo.queued_group(number).is_some())
    }

    async fn merge_queue_entry(&self, ctx: &Context<'_>) -> Result<Option<MergeQueueEntry>> {
        let number = self.pr.number;
        self.repo.read(query(ctx)?, |repo| MergeQueueEntry::of(repo, number))
    }
}

#[derive(Clone)]
pub(crate) struct PullRequestCommit {
    repo: RepoRef,
    pr_id: i64,
    pr_number: i64,
    sha: String,
}

#[Object]
impl PullRequestCommit {
    async fn id(&self) -> ID {
        format!("PRC_sim{}_{}", self.pr_id, self.sha).into()
    }

    async fn commit(&self) -> Commit {
        Commit { repo: self.repo.clone(), sha: self.sha.clone() }
    }

    async fn pull_request(&self, ctx: &Context<'_>) -> Result<PullRequest> {
        let number = self.pr_number;
        self.repo
            .read(query(ctx)?, |repo| repo.pulls.get(&number).map(|pr| PullRequest::of(repo, pr)))?
            .ok_or_else(|| {
                not_found(format!("Could not resolve to a PullRequest with the number of {number}."))
            })
    }

    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(format!("{}/pull/{}/commits/{}", self.repo.html(query(ctx)?), self.pr_number, self.sha)))
    }
}

#[derive(Clone)]
pub(crate) struct Ref {
    repo: RepoRef,
    name: String,
    sha: String,
}

#[Object]
impl Ref {
    async fn id(&self) -> ID {
        format!("REF_sim{}_{}", self.repo.id, self.name).into()
    }

    async fn name(&self) -> String {
        self.name.clone()
    }

    async fn prefix(&self) -> String {
        "refs/heads/".to_owned()
    }

    async fn target(&self) -> Option<GitObject> {
        Some(GitObject::Commit(Commit { repo: self.repo.clone(), sha: self.sha.clone() }))
    }

    async fn repository(&self, ctx: &Context<'_>) -> Result<Repository> {
        self.repo.read(query(ctx)?, Repository::of)
    }
}

// ---------------------------------------------------------------- Commit

#[derive(Clone)]
pub(crate) struct Commit {
    repo: RepoRef,
    sha: String,
}

impl Commit {
    fn of(repo: &SimRepo, sha: &str) -> Self {
        Self { repo: RepoRef::of(repo), sha: sha.to_owned() }
    }
}

#[Object]
impl Commit {
    async fn id(&self) -> ID {
        format!("C_sim{}_{}", self.repo.id, self.sha).into()
    }

    async fn oid(&self) -> GitObjectId {
        GitObjectId(self.sha.clone())
    }

    async fn abbreviated_oid(&self) -> String {
        self.sha.chars().take(7).collect()
    }

    async fn commit_url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(format!("{}/commit/{}", self.repo.html(query(ctx)?), self.sha)))
    }

    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(format!("{}/commit/{}", self.repo.html(query(ctx)?), self.sha)))
    }

    async fn repository(&self, ctx: &Context<'_>) -> Result<Repository> {
        self.repo.read(query(ctx)?, Repository::of)
    }

    /// The commit's suites, oldest first (the simulator has one App, so one suite a commit).
    async fn check_suites(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter_by: Option<CheckSuiteFilter>,
    ) -> Result<Option<CheckSuiteConnection>> {
        let q = query(ctx)?;
        let filter = filter_by.unwrap_or_default();
        let app = render::check_app(&q.shared.urls);
        let suites = self.repo.read(q, |repo| {
            let mut ids: Vec<i64> = repo.runs_for(&self.sha).map(|run| run.check_suite_id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter()
                .filter(|_| filter.app_id.is_none_or(|id| i64::from(id) == app.id))
                .map(|id| CheckSuite::of(repo, id, &self.sha))
                .filter(|suite| {
                    filter
                        .check_name
                        .as_ref()
                        .is_none_or(|name| suite.runs.iter().any(|run| &run.name == name))
                })
                .collect::<Vec<_>>()
        })?;
        let args = PageArgs::new(first, after, last, before);
        Ok(Some(CheckSuiteConnection::new(page(suites, &args)?)))
    }

    async fn status_check_rollup(&self, ctx: &Context<'_>) -> Result<Option<StatusCheckRollup>> {
        self.repo.read(query(ctx)?, |repo| StatusCheckRollup::of(repo, &self.sha))
    }

    /// The commit's statuses; null when none was posted, as on GitHub.
    async fn status(&self, ctx: &Context<'_>) -> Result<Option<Status>> {
        self.repo.read(query(ctx)?, |repo| Status::of(repo, &self.sha))
    }
}

// ---------------------------------------------------------------- checks

#[derive(Clone)]
pub(crate) struct App {
    app: CheckApp,
}

#[Object]
impl App {
    async fn id(&self) -> ID {
        self.app.node_id.clone().into()
    }

    async fn database_id(&self) -> Option<i64> {
        Some(self.app.id)
    }

    async fn name(&self) -> String {
        self.app.name.clone()
    }

    async fn slug(&self) -> String {
        self.app.slug.clone()
    }

    async fn url(&self) -> Uri {
        Uri(self.app.html_url.clone())
    }
}

#[derive(Clone)]
pub(crate) struct CheckSuite {
    repo: RepoRef,
    suite_id: i64,
    sha: String,
    /// The suite's runs, oldest first, as they were when the suite was read.
    runs: Vec<SimCheckRun>,
    status: &'static str,
    conclusion: Option<String>,
}

impl CheckSuite {
    fn of(repo: &SimRepo, suite_id: i64, sha: &str) -> Self {
        let runs: Vec<SimCheckRun> =
            repo.runs_for(sha).filter(|r| r.check_suite_id == suite_id).cloned().collect();
        // REST's rule for a suite's status and conclusion, so both APIs agree.
        let (status, conclusion) = render::suite_status(repo, suite_id, sha);
        Self {
            repo: RepoRef::of(repo),
            suite_id,
            sha: sha.to_owned(),
            runs,
            status,
            conclusion: conclusion.as_str().map(str::to_owned),
        }
    }
}

#[Object]
impl CheckSuite {
    /// REST's `check_suite.node_id`.
    async fn id(&self) -> ID {
        node_id("CS", self.suite_id).into()
    }

    /// Declared `Int` by GitHub; the simulator's ids pass 2^31 as GitHub's do and are written whole.
    async fn database_id(&self) -> Option<i64> {
        Some(self.suite_id)
    }

    async fn status(&self) -> CheckStatusState {
        CheckStatusState::of(self.status)
    }

    async fn conclusion(&self) -> Option<CheckConclusionState> {
        self.conclusion.as_deref().and_then(CheckConclusionState::of)
    }

    async fn app(&self, ctx: &Context<'_>) -> Result<Option<App>> {
        Ok(Some(App { app: render::check_app(&query(ctx)?.shared.urls) }))
    }

    async fn commit(&self) -> Commit {
        Commit { repo: self.repo.clone(), sha: self.sha.clone() }
    }

    async fn created_at(&self) -> DateTime {
        DateTime(self.runs.iter().filter_map(|r| r.started_at).min().unwrap_or_else(crate::model::now))
    }

    async fn updated_at(&self) -> DateTime {
        let created = self.runs.iter().filter_map(|r| r.started_at).min().unwrap_or_else(crate::model::now);
        DateTime(self.runs.iter().filter_map(|r| r.completed_at.or(r.started_at)).max().unwrap_or(created))
    }

    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(format!(
            "{}/commit/{}/checks?check_suite_id={}",
            self.repo.html(query(ctx)?),
            self.sha,
            self.suite_id
        )))
    }

    async fn repository(&self, ctx: &Context<'_>) -> Result<Repository> {
        self.repo.read(query(ctx)?, Repository::of)
    }

    /// The suite's runs, oldest first. Without `checkType: ALL`, only the
    /// newest run of each name (GitHub's default, REST's `filter=latest`).
    async fn check_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter_by: Option<CheckRunFilter>,
    ) -> Result<Option<CheckRunConnection>> {
        let q = query(ctx)?;
        let filter = filter_by.unwrap_or_default();
        let app = render::check_app(&q.shared.urls);
        let runs: Vec<&SimCheckRun> = match filter.check_type.unwrap_or(CheckRunType::Latest) {
            CheckRunType::All => self.runs.iter().collect(),
            CheckRunType::Latest => latest_per_name(&self.runs),
        };
        let runs: Vec<CheckRun> = runs
            .into_iter()
            .filter(|_| filter.app_id.is_none_or(|id| i64::from(id) == app.id))
            .filter(|run| filter.check_name.as_ref().is_none_or(|name| &run.name == name))
            .filter(|run| filter.status.is_none_or(|status| CheckStatusState::of(&run.status) == status))
            .filter(|run| {
                filter
                    .statuses
                    .as_ref()
                    .is_none_or(|statuses| statuses.contains(&CheckStatusState::of(&run.status)))
            })
            .filter(|run| {
                filter.conclusions.as_ref().is_none_or(|conclusions| {
                    run.conclusion
                        .as_deref()
                        .and_then(CheckConclusionState::of)
                        .is_some_and(|c| conclusions.contains(&c))
                })
            })
            .map(|run| CheckRun { repo: self.repo.clone(), run: run.clone() })
            .collect();
        Ok(Some(CheckRunConnection::new(page(runs, &PageArgs::new(first, after, last, before))?)))
    }
}

#[derive(Clone)]
pub(crate) struct CheckRun {
    repo: RepoRef,
    run: SimCheckRun,
}

impl CheckRun {
    fn of(repo: &SimRepo, run: &SimCheckRun) -> Self {
        Self { repo: RepoRef::of(repo), run: run.clone() }
    }

    fn html_url(&self, q: &QueryContext) -> String {
        format!("{}/runs/{}", self.repo.html(q), self.run.id)
    }
}

#[Object]
impl CheckRun {
    /// REST's `check_run.node_id`.
    async fn id(&self) -> ID {
        node_id("CR", self.run.id).into()
    }

    /// Declared `Int` by GitHub, whose check-run ids passed 2^31 long ago;
    /// GitHub writes the whole 64-bit value anyway (FACTS §4), and so does the simulator.
    async fn database_id(&self) -> Option<i64> {
        Some(self.run.id)
    }

    async fn name(&self) -> String {
        self.run.name.clone()
    }

    async fn status(&self) -> CheckStatusState {
        CheckStatusState::of(&self.run.status)
    }

    async fn conclusion(&self) -> Option<CheckConclusionState> {
        self.run.conclusion.as_deref().and_then(CheckConclusionState::of)
    }

    async fn started_at(&self) -> Option<DateTime> {
        time(self.run.started_at)
    }

    async fn completed_at(&self) -> Option<DateTime> {
        time(self.run.completed_at)
    }

    /// REST's `details_url`.
    async fn details_url(&self, ctx: &Context<'_>) -> Result<Option<Uri>> {
        Ok(Some(Uri(format!(
            "{}/ci/{}/{}",
            query(ctx)?.shared.urls.html,
            self.repo.full_name(),
            self.run.id
        ))))
    }

    /// REST's `html_url`.
    async fn url(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(self.html_url(query(ctx)?)))
    }

    async fn permalink(&self, ctx: &Context<'_>) -> Result<Uri> {
        Ok(Uri(self.html_url(query(ctx)?)))
    }

    /// REST's `output.title`.
    async fn title(&self) -> Option<String> {
        self.run.output_title.clone()
    }

    /// REST's `output.summary`.
    async fn summary(&self) -> Option<String> {
        self.run.output_summary.clone()
    }

    async fn text(&self) -> Option<String> {
        None
    }

    /// REST's `external_id`.
    async fn external_id(&self) -> Option<String> {
        Some(self.run.id.to_string())
    }

    /// Whether the base branch of the pull request named requires a check
    /// of this name; one argument is needed, as on GitHub.
    async fn is_required(
        &self,
        ctx: &Context<'_>,
        pull_request_id: Option<ID>,
        pull_request_number: Option<i32>,
    ) -> Result<bool> {
        is_required(query(ctx)?, &self.repo, &self.run.name, pull_request_id, pull_request_number)
    }

    async fn check_suite(&self, ctx: &Context<'_>) -> Result<CheckSuite> {
        let (suite_id, sha) = (self.run.check_suite_id, self.run.head_sha.clone());
        self.repo.read(query(ctx)?, |repo| CheckSuite::of(repo, suite_id, &sha))
    }

    async fn repository(&self, ctx: &Context<'_>) -> Result<Repository> {
        self.repo.read(query(ctx)?, Repository::of)
    }
}

/// A commit status context: the latest status posted under one context.
#[derive(Clone)]
pub(crate) struct StatusContext {
    repo: RepoRef,
    status: SimStatus,
}

impl StatusContext {
    fn of(repo: &SimRepo, status: &SimStatus) -> Self {
        Self { repo: RepoRef::of(repo), status: status.clone() }
    }
}

#[Object]
impl StatusContext {
    /// REST's status `node_id`.
    async fn id(&self) -> ID {
        node_id("SC", self.status.id).into()
    }

    async fn context(&self) -> String {
        self.status.context.clone()
    }

    async fn state(&self) -> StatusState {
        StatusState::of(&self.status.state)
    }

    async fn description(&self) -> Option<String> {
        self.status.description.clone()
    }

    async fn target_url(&self) -> Option<Uri> {
        self.status.target_url.clone().map(Uri)
    }

    async fn created_at(&self) -> DateTime {
        DateTime(self.status.created_at)
    }

    async fn creator(&self) -> Option<Actor> {
        Some(Actor::User(User::new(&self.status.creator)))
    }

    async fn commit(&self) -> Option<Commit> {
        Some(Commit { repo: self.repo.clone(), sha: self.status.sha.clone() })
    }

    /// Whether the base branch of the pull request named requires this
    /// context; one argument is needed, as on GitHub.
    async fn is_required(
        &self,
        ctx: &Context<'_>,
        pull_request_id: Option<ID>,
        pull_request_number: Option<i32>,
    ) -> Result<bool> {
        is_required(query(ctx)?, &self.repo, &self.status.context, pull_request_id, pull_request_number)
    }
}

/// A commit's statuses: `Commit.status`, null when it has none.
#[derive(Clone)]
pub(crate) struct Status {
    repo: RepoRef,
    sha: String,
    /// The latest status of each context.
    latest: Vec<SimStatus>,
}

impl Status {
    fn of(repo: &SimRepo, sha: &str) -> Option<Self> {
        let latest: Vec<SimStatus> = repo.latest_statuses(sha).into_iter().cloned().collect();
        (!latest.is_empty()).then(|| Self { repo: RepoRef::of(repo), sha: sha.to_owned(), latest })
    }
}

#[Object]
impl Status {
    async fn id(&self) -> ID {
        format!("ST_sim{}_{}", self.repo.id, self.sha).into()
    }

    /// REST's combined state (`error` counts as `FAILURE`, as REST documents).
    async fn state(&self) -> StatusState {
        let latest: Vec<&SimStatus> = self.latest.iter().collect();
        StatusState::of(crate::model::combined_state(&latest))
    }

    async fn contexts(&self) -> Vec<StatusContext> {
        self.latest.iter().map(|s| StatusContext { repo: self.repo.clone(), status: s.clone() }).collect()
    }

    async fn context(&self, name: String) -> Option<StatusContext> {
        self.latest
            .iter()
            .find(|s| s.context == name)
            .map(|s| StatusContext { repo: self.repo.clone(), status: s.clone() })
    }

    async fn commit(&self) -> Option<Commit> {
        Some(Commit { repo: self.repo.clone(), sha: self.sha.clone() })
    }

    /// The commit's check runs and status contexts, as its rollup lists them.
    async fn combined_contexts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<StatusCheckRollupContextConnection> {
        let sha = self.sha.clone();
        let rollup = self.repo.read(query(ctx)?, |repo| StatusCheckRollup::of(repo, &sha))?;
        match rollup {
            Some(rollup) => rollup.connection(&PageArgs::new(first, after, last, before)),
            None => StatusCheckRollup::empty(self.repo.clone(), sha)
                .connection(&PageArgs::new(first, after, last, before)),
        }
    }
}

#[derive(Clone)]
pub(crate) struct StatusCheckRollup {
    repo: RepoRef,
    sha: String,
    state: StatusState,
    /// The latest run of each name, oldest first.
    runs: Vec<SimCheckRun>,
    /// The latest status of each context.
    statuses: Vec<SimStatus>,
}

impl StatusCheckRollup {
    fn of(repo: &SimRepo, sha: &str) -> Option<Self> {
        let latest = latest_per_name(repo.runs_for(sha));
        let statuses = repo.latest_statuses(sha);
        let state = rollup_state(&latest, &statuses)?;
        Some(Self {
            repo: RepoRef::of(repo),
            sha: sha.to_owned(),
            state,
            runs: latest.into_iter().cloned().collect(),
            statuses: statuses.into_iter().cloned().collect(),
        })
    }

    fn empty(repo: RepoRef, sha: String) -> Self {
        Self { repo, sha, state: StatusState::Pending, runs: Vec::new(), statuses: Vec::new() }
    }

    /// Check runs first (oldest first), then status contexts, with GitHub's counts of each kind.
    fn connection(&self, args: &PageArgs) -> Result<StatusCheckRollupContextConnection> {
        let mut run_counts: BTreeMap<CheckRunState, i64> = BTreeMap::new();
        for run in &self.runs {
            *run_counts.entry(CheckRunState::of(run)).or_default() += 1;
        }
        let mut status_counts: BTreeMap<StatusState, i64> = BTreeMap::new();
        for status in &self.statuses {
            *status_counts.entry(StatusState::of(&status.state)).or_default() += 1;
        }
        let contexts: Vec<StatusCheckRollupContext> = self
            .runs
            .iter()
            .map(|run| {
                StatusCheckRollupContext::CheckRun(CheckRun { repo: self.repo.clone(), run: run.clone() })
            })
            .chain(self.statuses.iter().map(|status| {
                StatusCheckRollupContext::StatusContext(StatusContext {
                    repo: self.repo.clone(),
                    status: status.clone(),
                })
            }))
            .collect();
        let page = page(contexts, args)?;
        Ok(StatusCheckRollupContextConnection {
            check_run_count: self.runs.len() as i64,
            check_run_counts_by_state: Some(
                run_counts.into_iter().map(|(state, count)| CheckRunStateCount { state, count }).collect(),
            ),
            status_context_count: self.statuses.len() as i64,
            status_context_counts_by_state: Some(
                status_counts
                    .into_iter()
                    .map(|(state, count)| StatusContextStateCount { state, count })
                    .collect(),
            ),
            edges: Some(
                page.items
                    .iter()
                    .map(|(cursor, node)| {
                        Some(StatusCheckRollupContextEdge {
                            cursor: cursor.clone(),
                            node: Some(node.clone()),
                        })
                    })
                    .collect(),
            ),
            total_count: page.total as i64,
            nodes: Some(page.items.into_iter().map(|(_, node)| Some(node)).collect()),
            page_info: page.info,
        })
    }
}

#[Object]
impl StatusCheckRollup {
    async fn id(&self) -> ID {
        format!("SCR_sim{}_{}", self.repo.id, self.sha).into()
    }

    async fn state(&self) -> StatusState {
        self.state
    }

    async fn commit(&self) -> Option<Commit> {
        Some(Commit { repo: self.repo.clone(), sha: self.sha.clone() })
    }

    /// The latest check run of each name and the latest status of each context.
    async fn contexts(
        &self,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<StatusCheckRollupContextConnection> {
        self.connection(&PageArgs::new(first, after, last, before))
    }
}

// ---------------------------------------------------------------- merge queues

/// A queued pull request's place in its base branch's merge queue.
#[derive(Clone)]
pub(crate) struct MergeQueueEntry {
    repo: RepoRef,
    pr_id: i64,
    group: SimMergeGroup,
    position: usize,
    state: MergeQueueEntryState,
}

impl MergeQueueEntry {
    /// The entry of pull request `number`, if it is queued. Its state:
    /// `UNMERGEABLE` once a required check fails on the merge group,
    /// `MERGEABLE` once all pass, `AWAITING_CHECKS` before.
    fn of(repo: &SimRepo, number: i64) -> Option<Self> {
        let group = repo.queued_group(number)?;
        let pr = repo.pulls.get(&number)?;
        let unmet = repo.unmet_requirements(group.base_branch(), &group.head_sha);
        let state = if unmet.iter().any(|(_, state)| *state == ContextState::Failing) {
            MergeQueueEntryState::Unmergeable
        } else if unmet.is_empty() {
            MergeQueueEntryState::Mergeable
        } else {
            MergeQueueEntryState::AwaitingChecks
        };
        Some(Self {
            repo: RepoRef::of(repo),
            pr_id: pr.id,
            group: group.clone(),
            position: repo.queue_position(number).unwrap_or(1),
            state,
        })
    }
}

#[Object]
impl MergeQueueEntry {
    async fn id(&self) -> ID {
        node_id("MQE", self.pr_id).into()
    }

    async fn state(&self) -> MergeQueueEntryState {
        self.state
    }

    async fn enqueued_at(&self) -> DateTime {
        DateTime(self.group.enqueued_at)
    }

    /// 1 at the front of the queue.
    async fn position(&self) -> i64 {
        self.position as i64
    }

    /// The merge group's commit, where the queue's checks run.
    async fn head_commit(&self) -> Option<Commit> {
        Some(Commit { repo: self.repo.clone(), sha: self.group.head_sha.clone() })
    }

    async fn base_commit(&self) -> Option<Commit> {
        Some(Commit { repo: self.repo.clone(), sha: self.group.base_sha.clone() })
    }

    async fn enqueuer(&self) -> Actor {
        Actor::User(User::new(&self.group.enqueuer))
    }

    async fn jump(&self) -> bool {
        false
    }

    async fn solo(&self) -> bool {
        false
    }

    async fn pull_request(&self, ctx: &Context<'_>) -> Result<Option<PullRequest>> {
        let number = self.group.pr_number;
        self.repo.read(query(ctx)?, |repo| repo.pulls.get(&number).map(|pr| PullRequest::of(repo, pr)))
    }
}

#[derive(Clone, SimpleObject)]
pub(crate) struct CheckRunStateCount {
    count: i64,
    state: CheckRunState,
}

#[derive(Clone, SimpleObject)]
pub(crate) struct StatusContextStateCount {
    count: i64,
    state: StatusState,
}

#[derive(Clone, SimpleObject)]
pub(crate) struct StatusCheckRollupContextEdge {
    cursor: String,
    node: Option<StatusCheckRollupContext>,
}

#[derive(Clone, SimpleObject)]
pub(crate) struct StatusCheckRollupContextConnection {
    check_run_count: i64,
    check_run_counts_by_state: Option<Vec<CheckRunStateCount>>,
    edges: Option<Vec<Option<StatusCheckRollupContextEdge>>>,
    nodes: Option<Vec<Option<StatusCheckRollupContext>>>,
    page_info: PageInfo,
    status_context_count: i64,
    status_context_counts_by_state: Option<Vec<StatusContextStateCount>>,
    total_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ci::tests::status;

    fn run(id: i64, name: &str, status: &str, conclusion: Option<&str>) -> SimCheckRun {
        SimCheckRun {
            id,
            check_suite_id: 1,
            head_sha: "a".repeat(40),
            head_branch: "main".into(),
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_owned),
            started_at: None,
            completed_at: None,
            output_title: None,
            output_summary: None,
        }
    }

    #[test]
    fn the_rollup_fails_on_a_failing_latest_run_waits_on_an_open_one_and_passes_otherwise() {
        let state = |runs: &[SimCheckRun]| rollup_state(&latest_per_name(runs), &[]);
        assert_eq!(state(&[]), None);
        assert_eq!(state(&[run(1, "build", "completed", Some("success"))]), Some(StatusState::Success));
        for passing in ["success", "neutral", "skipped"] {
            assert_eq!(
                state(&[run(1, "b", "completed", Some(passing))]),
                Some(StatusState::Success),
                "{passing}"
            );
        }
        for failing in ["failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"] {
            let runs = [run(1, "b", "completed", Some(failing)), run(2, "t", "in_progress", None)];
            assert_eq!(state(&runs), Some(StatusState::Failure), "{failing}");
        }
        assert_eq!(
            state(&[run(1, "b", "completed", Some("success")), run(2, "t", "queued", None)]),
            Some(StatusState::Pending)
        );
        // A re-run that passed replaces the failure it re-ran.
        assert_eq!(
            state(&[run(1, "b", "completed", Some("failure")), run(2, "b", "completed", Some("success"))]),
            Some(StatusState::Success)
        );
    }

    #[test]
    fn the_rollup_combines_the_latest_runs_with_the_latest_statuses() {
        let passing = [run(1, "build", "completed", Some("success"))];
        let runs = latest_per_name(&passing);
        let state = |statuses: &[SimStatus]| rollup_state(&runs, &statuses.iter().collect::<Vec<_>>());
        assert_eq!(state(&[]), Some(StatusState::Success));
        assert_eq!(state(&[status(1, "ci", "success")]), Some(StatusState::Success));
        assert_eq!(
            state(&[status(1, "ci", "failure")]),
            Some(StatusState::Failure),
            "a failing status fails it"
        );
        assert_eq!(state(&[status(1, "ci", "error")]), Some(StatusState::Failure), "so does an error");
        assert_eq!(state(&[status(1, "ci", "pending")]), Some(StatusState::Pending));
        assert_eq!(
            state(&[status(1, "ci", "pending"), status(2, "lint", "error")]),
            Some(StatusState::Failure),
            "failure before pending"
        );
        // Statuses alone make a rollup; a failing run outweighs a passing status.
        let only = status(1, "ci", "success");
        assert_eq!(rollup_state(&[], &[&only]), Some(StatusState::Success));
        let failing = [run(1, "build", "completed", Some("failure"))];
        assert_eq!(rollup_state(&latest_per_name(&failing), &[&only]), Some(StatusState::Failure));
        let queued = [run(1, "build", "queued", None)];
        assert_eq!(rollup_state(&latest_per_name(&queued), &[&only]), Some(StatusState::Pending));
    }

    #[test]
    fn run_states_count_conclusions_once_completed_and_statuses_before() {
        assert_eq!(CheckRunState::of(&run(1, "b", "completed", Some("timed_out"))), CheckRunState::TimedOut);
        assert_eq!(CheckRunState::of(&run(1, "b", "in_progress", None)), CheckRunState::InProgress);
        assert_eq!(CheckRunState::of(&run(1, "b", "queued", None)), CheckRunState::Queued);
    }
}
