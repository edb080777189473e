//! Synchronization: one change set, one transaction (DESIGN.md §5 rules 4–5).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};

use super::data::{CheckRunData, PrData, StatusData};
use super::detect::{self, ChangeKind, ChangeSet, CheckRunChangeRecord, PrChangeRecord};
use super::error::SyncError;
use super::forward::{self, check_run_progress};
use crate::db::pull_requests::{self as stored, HistoryRow, StoredCheckRun, StoredPr, HISTORY_ROW_COLUMNS};
use crate::db::schema::{pr_state_history, pull_requests};
use crate::db::{merge_groups, repairs, repositories, statuses, DbPool};
use crate::github::cache;
use crate::ids::{PullRequestNumber, RepositoryId};

/// PostgreSQL's `void`, the result of functions called for their effect.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(name = "void"))]
pub struct Void;

diesel::define_sql_function! {
    /// Waits for the transaction-scoped advisory lock `key`.
    fn pg_advisory_xact_lock(key: BigInt) -> Void;
}

/// PostgreSQL's limit of bound parameters in one statement.
pub const MAX_BIND_PARAMETERS: usize = 65_535;
/// Namespace of the per-repository advisory locks ("prsync" in ASCII, shifted).
const REPOSITORY_LOCK_SPACE: i64 = 0x7072_7379_6e63 << 16;

/// What a synchronization wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Rows written (PRs, check runs, PRs marked gone).
    pub written: usize,
    pub new_prs: usize,
    pub updated_prs: usize,
    pub new_check_runs: usize,
    pub updated_check_runs: usize,
    /// PRs marked gone (not those already marked).
    pub gone_prs: usize,
    pub new_statuses: usize,
    pub updated_statuses: usize,
    /// Branches whose required checks changed.
    pub required_checks: usize,
    /// Merge groups a sweep inserted or ended.
    pub merge_groups: usize,
    /// The deliveries of the job this sync completed, if it completed one.
    #[serde(skip)]
    pub completed_deliveries: Option<CompletedDeliveries>,
}

impl SyncReport {
    /// The rows written by kind, as `prmonitor_sync_changes_total`,
    /// `prmonitor_sweep_repairs_total` and `sweep_repairs` name them.
    pub fn by_kind(&self) -> [(&'static str, usize); 9] {
        [
            ("pr_new", self.new_prs),
            ("pr_updated", self.updated_prs),
            ("pr_gone", self.gone_prs),
            ("check_run_new", self.new_check_runs),
            ("check_run_updated", self.updated_check_runs),
            ("status_new", self.new_statuses),
            ("status_updated", self.updated_statuses),
            ("required_checks", self.required_checks),
            ("merge_group", self.merge_groups),
        ]
    }
}

/// The deliveries folded into the job a sync completed: how old each was
/// (since its receipt) when the job's completion was written, by the
/// database's clock, which also stamped the receipt. Their age at the commit
/// is that plus the time since [`Self::measured`], with no clock skew between
/// hosts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedDeliveries {
    pub ages: Vec<std::time::Duration>,
    pub measured: std::time::Instant,
}

impl CompletedDeliveries {
    /// Each delivery's age now: from its receipt to now.
    pub fn ages_now(&self) -> impl Iterator<Item = std::time::Duration> + '_ {
        let since = self.measured.elapsed();
        self.ages.iter().map(move |age| *age + since)
    }
}

/// Writes a change set.
#[async_trait]
pub trait Synchronizer: Send + Sync {
    /// Writes everything in `changes` or nothing.
    async fn synchronize_changes(
        &self,
        repository_id: RepositoryId,
        changes: &ChangeSet,
    ) -> Result<SyncReport, SyncError>;
}

pub struct DatabaseSynchronizer {
    pool: DbPool,
}

impl DatabaseSynchronizer {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Synchronizer for DatabaseSynchronizer {
    async fn synchronize_changes(
        &self,
        repository_id: RepositoryId,
        changes: &ChangeSet,
    ) -> Result<SyncReport, SyncError> {
        let mut conn = self.pool.get().await.map_err(|e| SyncError::Unavailable(e.to_string()))?;
        conn.transaction::<_, SyncError, _>(async |conn| write_change_set(conn, repository_id, changes).await)
            .await
    }
}

/// Takes the transaction-scoped lock of one repository's writer: whatever
/// writes a repository's rows from what GitHub said takes it, so two such
/// writes never interleave.
pub async fn lock_repository(conn: &mut AsyncPgConnection, repository_id: RepositoryId) -> QueryResult<()> {
    // Through the query builder, so the statement is prepared once per connection.
    diesel::select(pg_advisory_xact_lock(REPOSITORY_LOCK_SPACE + repository_id.0)).execute(conn).await?;
    Ok(())
}

/// The body of the synchronization transaction; callers may run it inside a
/// larger one (a job's completion commits with its rows).
///
/// It writes the changes as detection decided them: whichever detector the
/// caller chose decides, and this only holds them to the rules. Under the
/// lock, the rows detection compared with must be unchanged
/// ([`ChangeSet::compared`]), webhook snapshots must be strictly newer than
/// the stored rows ([`detect::SnapshotFit`]), and every upsert carries rule
/// 4's guard.
pub async fn write_change_set(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    changes: &ChangeSet,
) -> Result<SyncReport, SyncError> {
    // One writer per repository at a time; released at commit or rollback.
    lock_repository(conn, repository_id).await?;
    // Detection ran before the lock; a job that wrote the same rows since
    // would make it record a transition twice or a PR "new" twice.
    if let Some(compared) = &changes.compared {
        if !compared.hold(conn, repository_id).await? {
            return Err(SyncError::Stale);
        }
    }
    let (prs, undecided_prs) = applicable_prs(conn, repository_id, changes).await?;
    let (runs, undecided_runs) = applicable_check_runs(conn, changes).await?;
    let (statuses, undecided_statuses) = applicable_statuses(conn, repository_id, changes).await?;
    let undecided = undecided_prs + undecided_runs + undecided_statuses;
    if undecided > 0 {
        return Err(SyncError::Undecided(undecided));
    }
    let pr_ids = upsert_prs(conn, repository_id, &prs).await?;
    let run_ids =
        upsert_check_runs(conn, repository_id, &runs, changes.cause.as_str(), changes.delivery_id.as_deref())
            .await?;
    // Counted as written: a record the guard refused changed nothing.
    let written_prs =
        |kind| prs.iter().filter(|r| r.kind == kind && pr_ids.contains_key(&r.data.number)).count();
    let written_runs =
        |kind| runs.iter().filter(|r| r.kind == kind && run_ids.contains(&r.data.github_id)).count();
    let gone_prs = mark_gone(conn, repository_id, &changes.gone_prs).await?;
    let cause = changes.cause.as_str();
    let written_statuses =
        statuses::upsert(conn, repository_id, &statuses, cause, changes.delivery_id.as_deref()).await?;
    let mut required_checks = 0;
    for required in &changes.required {
        let changed = statuses::store_requirement(
            conn,
            repository_id,
            &required.branch,
            &required.contexts,
            required.strict,
        )
        .await?;
        required_checks += usize::from(changed);
    }
    // After the PRs: a group whose PR was just read merged ends as merged.
    let merge_groups = match &changes.merge_queue {
        Some(snapshot) => merge_groups::apply_sweep(conn, repository_id, snapshot).await?,
        None => 0,
    };
    let mut report = SyncReport {
        written: pr_ids.len()
            + run_ids.len()
            + gone_prs
            + written_statuses.new
            + written_statuses.updated
            + required_checks
            + merge_groups,
        new_prs: written_prs(ChangeKind::New),
        updated_prs: written_prs(ChangeKind::Updated),
        new_check_runs: written_runs(ChangeKind::New),
        updated_check_runs: written_runs(ChangeKind::Updated),
        gone_prs,
        new_statuses: written_statuses.new,
        updated_statuses: written_statuses.updated,
        required_checks,
        merge_groups,
        completed_deliveries: None,
    };
    insert_history(conn, changes, &prs, &pr_ids).await?;
    if changes.cause.repairs() {
        repairs::record(conn, repository_id, changes.cause.as_str(), &report.by_kind()).await?;
    }
    cache::save(conn, &changes.validators).await?;
    if changes.incomplete {
        // The job's failure is recorded by its caller; it will run again.
        return Ok(report);
    }
    if let Some(sweep) = changes.sweep {
        repositories::record_sweep(conn, repository_id, sweep.watermark).await?;
    }
    match &changes.job {
        Some(job) => {
            let ages = crate::queue::complete_sync(conn, job, repository_id).await?;
            let measured = std::time::Instant::now();
            report.completed_deliveries = Some(CompletedDeliveries { ages, measured });
        }
        None => repositories::record_success(conn, repository_id).await?,
    }
    Ok(report)
}

/// The PR records to write, one per number (a statement may touch a row
/// once): of webhook snapshots, those strictly newer than the stored row,
/// with the count of those only a read of GitHub can order.
async fn applicable_prs<'a>(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    changes: &'a ChangeSet,
) -> diesel::QueryResult<(Vec<&'a PrChangeRecord>, usize)> {
    let records = detect::newest_per_key(&changes.prs, |r| r.data.number, |r| r.data.updated_at);
    if !changes.delivered_prs || records.is_empty() {
        return Ok((records, 0));
    }
    let numbers: Vec<PullRequestNumber> = records.iter().map(|r| r.data.number).collect();
    let stored: HashMap<PullRequestNumber, StoredPr> = stored::load_by_numbers(conn, repository_id, &numbers)
        .await?
        .into_iter()
        .map(|row| (row.number, row))
        .collect();
    Ok(detect::applicable(records, |r| detect::pr_snapshot_fit(stored.get(&r.data.number), &r.data)))
}

/// Likewise for check runs, one per GitHub id.
async fn applicable_check_runs<'a>(
    conn: &mut AsyncPgConnection,
    changes: &'a ChangeSet,
) -> diesel::QueryResult<(Vec<&'a CheckRunChangeRecord>, usize)> {
    let records =
        detect::newest_per_key(&changes.check_runs, |r| r.data.github_id, |r| check_run_progress(&r.data));
    if !changes.delivered_check_runs || records.is_empty() {
        return Ok((records, 0));
    }
    let ids: Vec<i64> = records.iter().map(|r| r.data.github_id).collect();
    let stored: HashMap<i64, StoredCheckRun> =
        stored::load_check_runs(conn, &ids).await?.into_iter().map(|row| (row.github_id, row)).collect();
    Ok(detect::applicable(records, |r| {
        detect::check_run_snapshot_fit(stored.get(&r.data.github_id), &r.data)
    }))
}

/// The statuses to write, the newest per (commit, context) (a statement may
/// touch a row once), with the count of webhook snapshots only a read of
/// GitHub can order: one created in the same second as a stored status read
/// without an id, saying something else ([`forward::status_may_replace`]
/// lets it through, and it may be the older of the two).
async fn applicable_statuses<'a>(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    changes: &'a ChangeSet,
) -> diesel::QueryResult<(Vec<&'a StatusData>, usize)> {
    let mut newest: HashMap<(&str, &str), &StatusData> = HashMap::new();
    for status in &changes.statuses {
        let key = (status.sha.as_str(), status.context.as_str());
        match newest.get(&key) {
            Some(seen) if !forward::status_may_replace((*seen).into(), status.into()) => {}
            _ => {
                newest.insert(key, status);
            }
        }
    }
    let mut records: Vec<&StatusData> = newest.into_values().collect();
    if records.is_empty() {
        return Ok((records, 0));
    }
    let shas: Vec<&str> =
        records.iter().map(|s| s.sha.as_str()).collect::<HashSet<_>>().into_iter().collect();
    let stored: HashMap<(String, String), statuses::StoredStatus> =
        statuses::load(conn, repository_id, &shas)
            .await?
            .into_iter()
            .map(|row| ((row.sha.clone(), row.context.clone()), row))
            .collect();
    // Under the lock: what the upsert's guard cannot see (when a read began).
    records.retain(|s| {
        stored
            .get(&(s.sha.0.clone(), s.context.clone()))
            .is_none_or(|row| forward::status_may_replace(row.version(), (*s).into()))
    });
    if !changes.delivered_statuses {
        return Ok((records, 0));
    }
    let undecided = records
        .iter()
        .filter(|s| {
            stored.get(&(s.sha.0.clone(), s.context.clone())).is_some_and(|row| {
                row.github_id.is_none()
                    && row.gh_created_at == s.created_at
                    && (row.state.as_str(), &row.description, &row.target_url)
                        != (s.state.as_str(), &s.description, &s.target_url)
            })
        })
        .count();
    Ok((records, undecided))
}

/// Bulk upsert, guarded so stored state only moves forward
/// ([`forward::pr_guard_sql`]).
/// Returns the ids of the rows written, by number.
async fn upsert_prs(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    records: &[&PrChangeRecord],
) -> diesel::QueryResult<HashMap<PullRequestNumber, i64>> {
    #[derive(diesel::QueryableByName)]
    struct Written {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        number: PullRequestNumber,
    }

    if records.is_empty() {
        return Ok(HashMap::new());
    }
    let prs: Vec<&PrData> = records.iter().map(|record| &record.data).collect();
    let written: Vec<Written> = PrUpsert::new(repository_id, &prs).load(conn).await?;
    Ok(written.into_iter().map(|row| (row.number, row.id)).collect())
}

/// The PRs to upsert, one array per column, prepared once per connection
/// like [`CheckRunUpsert`]. Labels and assignees travel as JSON arrays:
/// `unnest` cannot carry an array of arrays.
struct PrUpsert<'a> {
    repository_id: Vec<i64>,
    github_id: Vec<i64>,
    node_id: Vec<Option<&'a str>>,
    number: Vec<PullRequestNumber>,
    title: Vec<&'a str>,
    author: Vec<&'a str>,
    state: Vec<&'static str>,
    draft: Vec<bool>,
    base_branch: Vec<&'a str>,
    base_sha: Vec<&'a str>,
    head_branch: Vec<&'a str>,
    head_sha: Vec<&'a str>,
    html_url: Vec<&'a str>,
    body: Vec<Option<&'a str>>,
    labels: Vec<serde_json::Value>,
    assignees: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    updated_at: Vec<chrono::DateTime<chrono::Utc>>,
    closed_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    merged_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
}

impl<'a> PrUpsert<'a> {
    fn new(repository_id: RepositoryId, prs: &[&'a PrData]) -> Self {
        Self {
            repository_id: vec![repository_id.0; prs.len()],
            github_id: prs.iter().map(|pr| pr.github_id).collect(),
            node_id: prs.iter().map(|pr| pr.node_id.as_deref()).collect(),
            number: prs.iter().map(|pr| pr.number).collect(),
            title: prs.iter().map(|pr| pr.title.as_str()).collect(),
            author: prs.iter().map(|pr| pr.author.as_str()).collect(),
            state: prs.iter().map(|pr| pr.to_pr_state().as_str()).collect(),
            draft: prs.iter().map(|pr| pr.draft).collect(),
            base_branch: prs.iter().map(|pr| pr.base_branch.as_str()).collect(),
            base_sha: prs.iter().map(|pr| pr.base_sha.as_str()).collect(),
            head_branch: prs.iter().map(|pr| pr.head_branch.as_str()).collect(),
            head_sha: prs.iter().map(|pr| pr.head_sha.as_str()).collect(),
            html_url: prs.iter().map(|pr| pr.html_url.as_str()).collect(),
            body: prs.iter().map(|pr| pr.body.as_deref()).collect(),
            labels: prs.iter().map(|pr| serde_json::json!(pr.labels)).collect(),
            assignees: prs.iter().map(|pr| serde_json::json!(pr.assignees)).collect(),
            metadata: prs.iter().map(|pr| pr.metadata()).collect(),
            created_at: prs.iter().map(|pr| pr.created_at).collect(),
            updated_at: prs.iter().map(|pr| pr.updated_at).collect(),
            closed_at: prs.iter().map(|pr| pr.closed_at).collect(),
            merged_at: prs.iter().map(|pr| pr.merged_at).collect(),
        }
    }
}

crate::db::prepared_statement!(PrUpsert);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for PrUpsert<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Integer, Jsonb, Nullable, Text, Timestamptz};
        out.push_sql(
            "INSERT INTO pull_requests (repository_id, github_id, node_id, number, title, author, state, draft, \
                                        base_branch, base_sha, head_branch, head_sha, html_url, body, \
                                        labels, assignees, metadata, gh_created_at, gh_updated_at, \
                                        gh_closed_at, gh_merged_at) \
             SELECT u.repository_id, u.github_id, u.node_id, u.number, u.title, u.author, u.state, u.draft, \
                    u.base_branch, u.base_sha, u.head_branch, u.head_sha, u.html_url, u.body, \
                    ARRAY(SELECT e FROM jsonb_array_elements_text(u.labels) WITH ORDINALITY AS l(e, i) ORDER BY i), \
                    ARRAY(SELECT e FROM jsonb_array_elements_text(u.assignees) WITH ORDINALITY AS a(e, i) ORDER BY i), \
                    u.metadata, u.gh_created_at, u.gh_updated_at, u.gh_closed_at, u.gh_merged_at \
             FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.repository_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.github_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.node_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.number)?;
        for column in [&self.title, &self.author] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.state)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<diesel::sql_types::Bool>, _>(&self.draft)?;
        for column in [&self.base_branch, &self.base_sha, &self.head_branch, &self.head_sha, &self.html_url] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.body)?;
        for column in [&self.labels, &self.assignees, &self.metadata] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Jsonb>, _>(column)?;
        }
        for column in [&self.created_at, &self.updated_at] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Timestamptz>, _>(column)?;
        }
        for column in [&self.closed_at, &self.merged_at] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(column)?;
        }
        // Rule 4 is the upsert's WHERE: checked against the row as stored at
        // write time, so a concurrent newer write is never undone.
        out.push_sql(
            ") AS u(repository_id, github_id, node_id, number, title, author, state, draft, base_branch, base_sha, \
                   head_branch, head_sha, html_url, body, labels, assignees, metadata, gh_created_at, \
                   gh_updated_at, gh_closed_at, gh_merged_at) \
             ON CONFLICT (repository_id, number) DO UPDATE SET \
                 github_id = excluded.github_id, \
                 node_id = COALESCE(excluded.node_id, pull_requests.node_id), title = excluded.title, author = excluded.author, \
                 state = excluded.state, draft = excluded.draft, base_branch = excluded.base_branch, \
                 base_sha = excluded.base_sha, head_branch = excluded.head_branch, \
                 head_sha = excluded.head_sha, html_url = excluded.html_url, body = excluded.body, \
                 labels = excluded.labels, assignees = excluded.assignees, metadata = excluded.metadata, \
                 gh_created_at = excluded.gh_created_at, gh_updated_at = excluded.gh_updated_at, \
                 gh_closed_at = excluded.gh_closed_at, gh_merged_at = excluded.gh_merged_at, \
                 deleted_at = NULL, last_changed_at = now() \
             WHERE ",
        );
        out.push_sql(forward::pr_guard_sql());
        out.push_sql(" RETURNING id, number");
        Ok(())
    }
}

/// Returns the GitHub ids of the rows written.
async fn upsert_check_runs(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    records: &[&CheckRunChangeRecord],
    cause: &str,
    delivery_id: Option<&str>,
) -> diesel::QueryResult<HashSet<i64>> {
    #[derive(diesel::QueryableByName)]
    struct Written {
        #[diesel(sql_type = BigInt)]
        github_id: i64,
    }

    if records.is_empty() {
        return Ok(HashSet::new());
    }
    let runs: Vec<&CheckRunData> = records.iter().map(|record| &record.data).collect();
    let written: Vec<Written> =
        CheckRunUpsert::new(repository_id, &runs, cause, delivery_id).load(conn).await?;
    Ok(written.into_iter().map(|row| row.github_id).collect())
}

/// The check runs to upsert, one array per column: one statement for any
/// number of rows (no chunking under the bind limit), with the same text
/// every time, so it is prepared once per connection.
struct CheckRunUpsert<'a> {
    repository_id: Vec<i64>,
    github_id: Vec<i64>,
    node_id: Vec<Option<&'a str>>,
    check_suite_id: Vec<Option<i64>>,
    head_sha: Vec<&'a str>,
    name: Vec<&'a str>,
    app_slug: Vec<Option<&'a str>>,
    status: Vec<&'a str>,
    conclusion: Vec<Option<&'a str>>,
    details_url: Vec<Option<&'a str>>,
    html_url: Vec<Option<&'a str>>,
    output_title: Vec<Option<&'a str>>,
    output_summary: Vec<Option<&'a str>>,
    started_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    completed_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    /// What wrote the runs, and under which delivery: the timeline's cause.
    cause: &'a str,
    delivery_id: Option<&'a str>,
}

impl<'a> CheckRunUpsert<'a> {
    fn new(
        repository_id: RepositoryId,
        runs: &[&'a CheckRunData],
        cause: &'a str,
        delivery_id: Option<&'a str>,
    ) -> Self {
        Self {
            cause,
            delivery_id,
            repository_id: vec![repository_id.0; runs.len()],
            github_id: runs.iter().map(|r| r.github_id).collect(),
            node_id: runs.iter().map(|r| r.node_id.as_deref()).collect(),
            check_suite_id: runs.iter().map(|r| r.check_suite_id).collect(),
            head_sha: runs.iter().map(|r| r.head_sha.as_str()).collect(),
            name: runs.iter().map(|r| r.name.as_str()).collect(),
            app_slug: runs.iter().map(|r| r.app_slug.as_deref()).collect(),
            status: runs.iter().map(|r| r.status.as_str()).collect(),
            conclusion: runs.iter().map(|r| r.conclusion.as_deref()).collect(),
            details_url: runs.iter().map(|r| r.details_url.as_deref()).collect(),
            html_url: runs.iter().map(|r| r.html_url.as_deref()).collect(),
            output_title: runs.iter().map(|r| r.output_title.as_deref()).collect(),
            output_summary: runs.iter().map(|r| r.output_summary.as_deref()).collect(),
            started_at: runs.iter().map(|r| r.started_at).collect(),
            completed_at: runs.iter().map(|r| r.completed_at).collect(),
        }
    }
}

crate::db::prepared_statement!(CheckRunUpsert);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for CheckRunUpsert<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Nullable, Text, Timestamptz};
        out.push_sql(
            "INSERT INTO check_runs (repository_id, github_id, node_id, check_suite_id, head_sha, name, app_slug, \
                                     status, conclusion, details_url, html_url, output_title, output_summary, \
                                     gh_started_at, gh_completed_at, last_cause, last_delivery_id) \
             SELECT *, ",
        );
        out.push_bind_param::<Text, _>(&self.cause)?;
        out.push_sql("::text, ");
        out.push_bind_param::<Nullable<Text>, _>(&self.delivery_id)?;
        out.push_sql("::text FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.repository_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.github_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.node_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.check_suite_id)?;
        for column in [&self.head_sha, &self.name] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.app_slug)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.status)?;
        for column in
            [&self.conclusion, &self.details_url, &self.html_url, &self.output_title, &self.output_summary]
        {
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
        }
        for column in [&self.started_at, &self.completed_at] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(column)?;
        }
        // Rule 4 in the statement itself, checked against the row as stored
        // at write time, so that a concurrent newer write is never undone.
        out.push_sql(
            ") ON CONFLICT (github_id) DO UPDATE SET \
                 node_id = COALESCE(excluded.node_id, check_runs.node_id), check_suite_id = excluded.check_suite_id, head_sha = excluded.head_sha, \
                 name = excluded.name, app_slug = excluded.app_slug, status = excluded.status, \
                 conclusion = excluded.conclusion, details_url = excluded.details_url, \
                 html_url = excluded.html_url, output_title = excluded.output_title, \
                 output_summary = excluded.output_summary, gh_started_at = excluded.gh_started_at, \
                 gh_completed_at = excluded.gh_completed_at, last_changed_at = now(), \
                 last_cause = excluded.last_cause, last_delivery_id = excluded.last_delivery_id \
             WHERE ",
        );
        out.push_sql(forward::check_run_guard_sql());
        out.push_sql(" RETURNING github_id");
        Ok(())
    }
}

async fn mark_gone(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    numbers: &[PullRequestNumber],
) -> diesel::QueryResult<usize> {
    if numbers.is_empty() {
        return Ok(0);
    }
    diesel::update(
        pull_requests::table
            .filter(pull_requests::repository_id.eq(repository_id))
            .filter(pull_requests::number.eq_any(numbers))
            .filter(pull_requests::deleted_at.is_null()),
    )
    .set((
        pull_requests::deleted_at.eq(diesel::dsl::now),
        pull_requests::last_changed_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// One row per state, draft or head-SHA transition of a PR that was written;
/// a new PR starts its history with its first state.
async fn insert_history(
    conn: &mut AsyncPgConnection,
    changes: &ChangeSet,
    records: &[&PrChangeRecord],
    pr_ids: &HashMap<PullRequestNumber, i64>,
) -> diesel::QueryResult<()> {
    let mut rows = Vec::new();
    for record in records {
        let Some(&pull_request_id) = pr_ids.get(&record.data.number) else {
            // Refused by the never-backwards guard: nothing changed, nothing to record.
            continue;
        };
        let row = |field: &'static str, old: Option<String>, new: String| HistoryRow {
            pull_request_id,
            field,
            old_value: old,
            new_value: new,
            gh_changed_at: record.data.updated_at,
            cause: changes.cause.as_str(),
            delivery_id: changes.delivery_id.clone(),
        };
        match record.kind {
            ChangeKind::New => rows.push(row("state", None, record.data.to_pr_state().as_str().to_owned())),
            ChangeKind::Updated => {
                for change in &record.changes {
                    if let (Some(field), Some(new)) = (change.field.history_name(), change.new.clone()) {
                        rows.push(row(field, change.old.clone(), new));
                    }
                }
            }
        }
    }
    for chunk in rows.chunks(MAX_BIND_PARAMETERS / HISTORY_ROW_COLUMNS) {
        diesel::insert_into(pr_state_history::table).values(chunk).execute(conn).await?;
    }
    Ok(())
}
