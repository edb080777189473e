//! Change detection: what discovery found, compared with what is stored.
//!
//! The comparison is pure ([`diff_pr`], [`diff_check_run`]); the
//! [`DatabaseChangeDetector`] only loads the stored rows of a whole batch
//! with one query per table and applies it.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;

use super::data::{CheckRunData, PrData, PrState, StatusData};
use super::error::DetectionError;
use super::forward::{self, CheckRunVersion};
use super::versions::StoredVersions;
use crate::db::pull_requests::{self, StoredCheckRun, StoredPr};
use crate::db::DbPool;
use crate::github::cache::Validator;
use crate::ids::{PullRequestNumber, RepositoryId};

/// What caused a unit of work; recorded with every history row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Webhook,
    #[default]
    Sweep,
    Backfill,
    Manual,
}

impl Cause {
    /// The API budget class of the calls this work makes.
    pub fn purpose(self) -> crate::github::Purpose {
        match self {
            Self::Webhook => crate::github::Purpose::Webhook,
            // An operator's reconcile is a sweep: it leaves the reserve to webhooks.
            Self::Sweep | Self::Manual => crate::github::Purpose::Sweep,
            Self::Backfill => crate::github::Purpose::Backfill,
        }
    }

    /// Whether what this work changes is a repair: a sweep or an operator's
    /// reconcile re-reads what webhooks should have brought already, so a row
    /// it changes is one a webhook did not (lost, or not processed yet).
    pub fn repairs(self) -> bool {
        matches!(self, Self::Sweep | Self::Manual)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Sweep => "sweep",
            Self::Backfill => "backfill",
            Self::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    New,
    Updated,
}

/// A pull-request field whose change is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrField {
    Title,
    State,
    Draft,
    Labels,
    Assignees,
    Body,
    BaseBranch,
    HeadSha,
    HeadBranch,
    BaseSha,
    Author,
    Url,
    /// Reported only when the state itself did not change (a close is one change, not two).
    ClosedAt,
    MergedAt,
    /// GitHub's `updated_at` moved and nothing above changed (a comment, a
    /// review): reported alone, so the stored time stays GitHub's.
    UpdatedAt,
}

impl PrField {
    /// The transitions `pr_state_history` keeps.
    pub fn history_name(self) -> Option<&'static str> {
        match self {
            Self::State => Some("state"),
            Self::Draft => Some("draft"),
            Self::HeadSha => Some("head_sha"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckField {
    Status,
    Conclusion,
    StartedAt,
    CompletedAt,
    Name,
    DetailsUrl,
    HtmlUrl,
    Output,
    Suite,
}

/// One changed field, old and new, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange<F> {
    pub field: F,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrChangeRecord {
    pub kind: ChangeKind,
    pub data: PrData,
    /// Empty for a new pull request.
    pub changes: Vec<FieldChange<PrField>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRunChangeRecord {
    pub kind: ChangeKind,
    pub data: CheckRunData,
    pub changes: Vec<FieldChange<CheckField>>,
}

/// Everything one unit of work will write.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChangeSet {
    pub prs: Vec<PrChangeRecord>,
    pub check_runs: Vec<CheckRunChangeRecord>,
    /// Commit statuses as read or delivered: the latest of each context. No
    /// detection decides them: the upsert writes what is newer than the
    /// stored row ([`super::forward::status_may_replace`]) and records the
    /// transitions, under the repository's lock.
    pub statuses: Vec<StatusData>,
    /// What branches require before merging, as read.
    pub required: Vec<RequiredChecks>,
    /// ETags of the answers these changes came from: saved in the same
    /// transaction, so a later 304 means "what is stored is current".
    #[serde(skip)]
    pub validators: Vec<Validator>,
    /// Pull requests GitHub no longer knows (404 on a direct read).
    pub gone_prs: Vec<PullRequestNumber>,
    pub cause: Cause,
    /// The delivery that caused it, for the history trail.
    pub delivery_id: Option<String>,
    /// The job this work completes, in the same transaction.
    #[serde(skip)]
    pub job: Option<crate::queue::JobRef>,
    /// A full read of the repository finished: stamp the sweep and move the
    /// watermark (GitHub's newest `updated_at` seen).
    pub sweep: Option<SweepMark>,
    /// The PRs / check runs are webhook snapshots, not reads: under the lock
    /// they are applied only where strictly newer than the stored row
    /// ([`SnapshotFit`]), since a tie cannot be ordered without GitHub.
    pub delivered_prs: bool,
    pub delivered_check_runs: bool,
    /// The statuses are webhook snapshots: one that ties with a stored row
    /// read without an id, saying something else, needs GitHub to order it.
    pub delivered_statuses: bool,
    /// Some reads failed: what was read is written, but the job is not
    /// completed and no sweep or success is stamped, so the job fails and is
    /// retried (its successful reads are free 304s the next time).
    pub incomplete: bool,
    /// The stored rows detection compared with: the changes are written only
    /// if no one has written those rows since ([`super::SyncError::Stale`]).
    /// `None`: the caller vouches for the changes, written as they are
    /// (under rule 4's guards).
    #[serde(skip)]
    pub compared: Option<StoredVersions>,
    /// The repository's merge queues as a sweep read them: stored groups are
    /// made to agree ([`crate::db::merge_groups::apply_sweep`]).
    #[serde(skip)]
    pub merge_queue: Option<crate::db::merge_groups::QueueSnapshot>,
}

/// The checks and statuses one branch requires before merging (empty: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequiredChecks {
    pub branch: String,
    pub contexts: Vec<String>,
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepMark {
    pub watermark: Option<chrono::DateTime<chrono::Utc>>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.prs.is_empty()
            && self.check_runs.is_empty()
            && self.gone_prs.is_empty()
            && self.statuses.is_empty()
            && self.required.is_empty()
    }

    pub fn new_prs(&self) -> usize {
        self.prs.iter().filter(|r| r.kind == ChangeKind::New).count()
    }

    pub fn updated_prs(&self) -> usize {
        self.prs.iter().filter(|r| r.kind == ChangeKind::Updated).count()
    }

    pub fn new_check_runs(&self) -> usize {
        self.check_runs.iter().filter(|r| r.kind == ChangeKind::New).count()
    }

    pub fn updated_check_runs(&self) -> usize {
        self.check_runs.iter().filter(|r| r.kind == ChangeKind::Updated).count()
    }
}

fn text<T: ToString>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(ToString::to_string)
}

fn push_if<F, T: PartialEq + ToString>(changes: &mut Vec<FieldChange<F>>, field: F, old: &T, new: &T) {
    if old != new {
        changes.push(FieldChange { field, old: Some(old.to_string()), new: Some(new.to_string()) });
    }
}

fn push_opt<F, T: PartialEq + ToString>(
    changes: &mut Vec<FieldChange<F>>,
    field: F,
    old: &Option<T>,
    new: &Option<T>,
) {
    if old != new {
        changes.push(FieldChange { field, old: text(old), new: text(new) });
    }
}

/// The changed fields of a stored PR, or `None` when `incoming` may not
/// replace it ([`forward::pr_may_replace`]: never backwards).
pub fn diff_pr(stored: &StoredPr, incoming: &PrData) -> Option<Vec<FieldChange<PrField>>> {
    if !forward::pr_may_replace(stored.into(), incoming.into()) {
        return None;
    }
    let stored_state = PrState::parse(&stored.state);
    let new_state = incoming.to_pr_state();
    let mut changes = Vec::new();
    push_if(&mut changes, PrField::Title, &stored.title, &incoming.title);
    push_if(&mut changes, PrField::State, &stored.state, &new_state.as_str().to_owned());
    push_if(&mut changes, PrField::Draft, &stored.draft, &incoming.draft);
    if stored.labels != incoming.labels {
        changes.push(FieldChange {
            field: PrField::Labels,
            old: Some(stored.labels.join(",")),
            new: Some(incoming.labels.join(",")),
        });
    }
    if stored.assignees != incoming.assignees {
        changes.push(FieldChange {
            field: PrField::Assignees,
            old: Some(stored.assignees.join(",")),
            new: Some(incoming.assignees.join(",")),
        });
    }
    push_opt(&mut changes, PrField::Body, &stored.body, &incoming.body);
    push_if(&mut changes, PrField::BaseBranch, &stored.base_branch, &incoming.base_branch);
    push_if(&mut changes, PrField::HeadSha, &stored.head_sha, &incoming.head_sha);
    push_if(&mut changes, PrField::HeadBranch, &stored.head_branch, &incoming.head_branch);
    push_if(&mut changes, PrField::BaseSha, &stored.base_sha, &incoming.base_sha);
    push_if(&mut changes, PrField::Author, &stored.author, &incoming.author);
    push_if(&mut changes, PrField::Url, &stored.html_url, &incoming.html_url);
    if stored_state == Some(new_state) {
        push_opt(&mut changes, PrField::ClosedAt, &stored.gh_closed_at, &incoming.closed_at);
        push_opt(&mut changes, PrField::MergedAt, &stored.gh_merged_at, &incoming.merged_at);
    }
    if changes.is_empty() {
        push_if(&mut changes, PrField::UpdatedAt, &stored.gh_updated_at, &incoming.updated_at);
    }
    Some(changes)
}

/// The changed fields of a stored check run, or `None` when `incoming` may
/// not replace it ([`forward::check_run_may_replace`]: never backwards).
pub fn diff_check_run(
    stored: &StoredCheckRun,
    incoming: &CheckRunData,
) -> Option<Vec<FieldChange<CheckField>>> {
    if !forward::check_run_may_replace(stored.into(), incoming.into()) {
        return None;
    }
    let mut changes = Vec::new();
    push_if(&mut changes, CheckField::Status, &stored.status, &incoming.status);
    push_opt(&mut changes, CheckField::Conclusion, &stored.conclusion, &incoming.conclusion);
    push_opt(&mut changes, CheckField::StartedAt, &stored.gh_started_at, &incoming.started_at);
    push_opt(&mut changes, CheckField::CompletedAt, &stored.gh_completed_at, &incoming.completed_at);
    push_if(&mut changes, CheckField::Name, &stored.name, &incoming.name);
    push_opt(&mut changes, CheckField::DetailsUrl, &stored.details_url, &incoming.details_url);
    push_opt(&mut changes, CheckField::HtmlUrl, &stored.html_url, &incoming.html_url);
    let old_output = (&stored.output_title, &stored.output_summary);
    let new_output = (&incoming.output_title, &incoming.output_summary);
    if old_output != new_output {
        changes.push(FieldChange {
            field: CheckField::Output,
            old: stored.output_title.clone(),
            new: incoming.output_title.clone(),
        });
    }
    if (stored.check_suite_id, &stored.app_slug) != (incoming.check_suite_id, &incoming.app_slug) {
        changes.push(FieldChange {
            field: CheckField::Suite,
            old: text(&stored.check_suite_id),
            new: text(&incoming.check_suite_id),
        });
    }
    Some(changes)
}

/// Compares discovered data with stored rows.
#[async_trait]
pub trait ChangeDetector: Send + Sync {
    async fn detect_pr_changes(
        &self,
        repository_id: RepositoryId,
        prs: &[PrData],
    ) -> Result<Vec<PrChangeRecord>, DetectionError>;

    async fn detect_check_run_changes(
        &self,
        repository_id: RepositoryId,
        check_runs: &[CheckRunData],
    ) -> Result<Vec<CheckRunChangeRecord>, DetectionError>;
}

pub struct DatabaseChangeDetector {
    pool: DbPool,
}

impl DatabaseChangeDetector {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }
}

/// How a webhook's snapshot of an object (the `pull_request` or `check_run`
/// in its payload) stands against the stored row.
///
/// A snapshot was true when the event happened; applied in place of a read
/// it saves a GitHub call, but only when it orders itself against what is
/// stored. GitHub's `updated_at` has one-second resolution and a check run's
/// status has three steps, so two different states can tie: then only a
/// read of the current state can tell which is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotFit {
    /// Not stored, or strictly newer than the stored row: apply it.
    Apply,
    /// Older than, or the same as, what is stored: nothing to do.
    Known,
    /// As new as the stored row but different: read GitHub instead.
    Undecided,
}

pub fn pr_snapshot_fit(stored: Option<&StoredPr>, incoming: &PrData) -> SnapshotFit {
    let Some(row) = stored else { return SnapshotFit::Apply };
    match incoming.updated_at.cmp(&row.gh_updated_at) {
        std::cmp::Ordering::Greater => SnapshotFit::Apply,
        std::cmp::Ordering::Less => SnapshotFit::Known,
        std::cmp::Ordering::Equal => match diff_pr(row, incoming) {
            Some(changes) if !changes.is_empty() => SnapshotFit::Undecided,
            _ => SnapshotFit::Known,
        },
    }
}

pub fn check_run_snapshot_fit(stored: Option<&StoredCheckRun>, incoming: &CheckRunData) -> SnapshotFit {
    let Some(row) = stored else { return SnapshotFit::Apply };
    let old = CheckRunVersion::from(row).progress();
    match forward::check_run_progress(incoming).cmp(&old) {
        std::cmp::Ordering::Greater => SnapshotFit::Apply,
        std::cmp::Ordering::Less => SnapshotFit::Known,
        std::cmp::Ordering::Equal => match diff_check_run(row, incoming) {
            Some(changes) if !changes.is_empty() => SnapshotFit::Undecided,
            _ => SnapshotFit::Known,
        },
    }
}

/// Compares PRs with the stored rows of their repository, on `conn`.
pub async fn detect_prs_on(
    conn: &mut diesel_async::AsyncPgConnection,
    repository_id: RepositoryId,
    prs: &[PrData],
) -> diesel::QueryResult<Vec<PrChangeRecord>> {
    if prs.is_empty() {
        return Ok(Vec::new());
    }
    let prs = newest_per_key(prs, |pr| pr.number, |pr| pr.updated_at);
    let numbers: Vec<PullRequestNumber> = prs.iter().map(|pr| pr.number).collect();
    let stored: HashMap<PullRequestNumber, StoredPr> =
        pull_requests::load_by_numbers(conn, repository_id, &numbers)
            .await?
            .into_iter()
            .map(|row| (row.number, row))
            .collect();
    let records = prs
        .into_iter()
        .filter_map(|pr| match stored.get(&pr.number) {
            None => Some(PrChangeRecord { kind: ChangeKind::New, data: pr.clone(), changes: Vec::new() }),
            Some(row) => diff_pr(row, pr)
                .filter(|changes| !changes.is_empty())
                .map(|changes| PrChangeRecord { kind: ChangeKind::Updated, data: pr.clone(), changes }),
        })
        .collect();
    Ok(records)
}

/// Compares check runs with the stored rows, on `conn`.
pub async fn detect_check_runs_on(
    conn: &mut diesel_async::AsyncPgConnection,
    check_runs: &[CheckRunData],
) -> diesel::QueryResult<Vec<CheckRunChangeRecord>> {
    if check_runs.is_empty() {
        return Ok(Vec::new());
    }
    let runs = newest_per_key(check_runs, |run| run.github_id, forward::check_run_progress);
    let ids: Vec<i64> = runs.iter().map(|run| run.github_id).collect();
    let stored: HashMap<i64, StoredCheckRun> = pull_requests::load_check_runs(conn, &ids)
        .await?
        .into_iter()
        .map(|row| (row.github_id, row))
        .collect();
    let records = runs
        .into_iter()
        .filter_map(|run| match stored.get(&run.github_id) {
            None => {
                Some(CheckRunChangeRecord { kind: ChangeKind::New, data: run.clone(), changes: Vec::new() })
            }
            Some(row) => diff_check_run(row, run).filter(|changes| !changes.is_empty()).map(|changes| {
                CheckRunChangeRecord { kind: ChangeKind::Updated, data: run.clone(), changes }
            }),
        })
        .collect();
    Ok(records)
}

#[async_trait]
impl ChangeDetector for DatabaseChangeDetector {
    async fn detect_pr_changes(
        &self,
        repository_id: RepositoryId,
        prs: &[PrData],
    ) -> Result<Vec<PrChangeRecord>, DetectionError> {
        if prs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await.map_err(|e| DetectionError(e.to_string()))?;
        detect_prs_on(&mut conn, repository_id, prs).await.map_err(|e| DetectionError(e.to_string()))
    }

    async fn detect_check_run_changes(
        &self,
        _repository_id: RepositoryId,
        check_runs: &[CheckRunData],
    ) -> Result<Vec<CheckRunChangeRecord>, DetectionError> {
        if check_runs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await.map_err(|e| DetectionError(e.to_string()))?;
        detect_check_runs_on(&mut conn, check_runs).await.map_err(|e| DetectionError(e.to_string()))
    }
}

/// Of delivered snapshots, those that may be written ([`SnapshotFit::Apply`]),
/// with the count of the undecided ones.
pub(super) fn applicable<T>(items: Vec<&T>, fit: impl Fn(&T) -> SnapshotFit) -> (Vec<&T>, usize) {
    let mut undecided = 0;
    let kept = items
        .into_iter()
        .filter(|item| match fit(item) {
            SnapshotFit::Apply => true,
            SnapshotFit::Known => false,
            SnapshotFit::Undecided => {
                undecided += 1;
                false
            }
        })
        .collect();
    (kept, undecided)
}

/// One item per key, the most advanced one: a batch may hold the same PR
/// twice (two pages shifted under us), and one statement may touch a row once.
pub(super) fn newest_per_key<'a, T, K: std::hash::Hash + Eq, O: Ord>(
    items: &'a [T],
    key: impl Fn(&T) -> K,
    order: impl Fn(&T) -> O,
) -> Vec<&'a T> {
    let mut best: HashMap<K, &'a T> = HashMap::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        let k = key(item);
        match best.get(&k) {
            Some(current) if order(current) >= order(item) => {}
            Some(_) => {
                best.insert(k, item);
            }
            None => {
                keys.push(key(item));
                best.insert(k, item);
            }
        }
    }
    keys.into_iter().filter_map(|k| best.remove(&k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CommitSha;
    use chrono::{Duration, TimeZone, Utc};

    fn pr() -> PrData {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time");
        PrData {
            github_id: 1,
            node_id: None,
            number: PullRequestNumber(7),
            title: "Title".into(),
            author: "alice".into(),
            author_id: Some(1),
            state: "open".into(),
            draft: false,
            base_branch: "main".into(),
            base_sha: CommitSha("b".repeat(40)),
            head_branch: "feature".into(),
            head_sha: CommitSha("a".repeat(40)),
            html_url: "https://github.com/o/r/pull/7".into(),
            body: None,
            labels: vec!["bug".into()],
            assignees: vec![],
            created_at: at,
            updated_at: at,
            closed_at: None,
            merged_at: None,
        }
    }

    fn stored(pr: &PrData) -> StoredPr {
        StoredPr {
            id: 100,
            github_id: pr.github_id,
            number: pr.number,
            title: pr.title.clone(),
            author: pr.author.clone(),
            state: pr.to_pr_state().as_str().into(),
            draft: pr.draft,
            base_branch: pr.base_branch.clone(),
            base_sha: pr.base_sha.clone(),
            head_branch: pr.head_branch.clone(),
            head_sha: pr.head_sha.clone(),
            html_url: pr.html_url.clone(),
            body: pr.body.clone(),
            labels: pr.labels.clone(),
            assignees: pr.assignees.clone(),
            gh_created_at: pr.created_at,
            gh_updated_at: pr.updated_at,
            gh_closed_at: pr.closed_at,
            gh_merged_at: pr.merged_at,
        }
    }

    #[test]
    fn an_identical_snapshot_has_no_changes() {
        let pr = pr();
        assert_eq!(diff_pr(&stored(&pr), &pr), Some(vec![]));
    }

    #[test]
    fn each_field_change_is_reported_alone_with_old_and_new() {
        let base = pr();
        let later = base.updated_at + Duration::seconds(5);
        type Case = (PrField, Box<dyn Fn(&mut PrData)>, Option<&'static str>, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (PrField::Title, Box::new(|p| p.title = "New".into()), Some("Title"), Some("New")),
            (PrField::Draft, Box::new(|p| p.draft = true), Some("false"), Some("true")),
            (
                PrField::Labels,
                Box::new(|p| p.labels = vec!["bug".into(), "ui".into()]),
                Some("bug"),
                Some("bug,ui"),
            ),
            (PrField::Body, Box::new(|p| p.body = Some("text".into())), None, Some("text")),
            (
                PrField::BaseBranch,
                Box::new(|p| p.base_branch = "release".into()),
                Some("main"),
                Some("release"),
            ),
            (
                PrField::State,
                Box::new(move |p| {
                    p.state = "closed".into();
                    p.closed_at = Some(later);
                }),
                Some("open"),
                Some("closed"),
            ),
            (
                PrField::State,
                Box::new(move |p| {
                    p.state = "closed".into();
                    p.closed_at = Some(later);
                    p.merged_at = Some(later);
                }),
                Some("open"),
                Some("merged"),
            ),
        ];
        for (field, change, old, new) in cases {
            let mut incoming = base.clone();
            change(&mut incoming);
            incoming.updated_at = later;
            let changes = diff_pr(&stored(&base), &incoming).expect("newer");
            assert_eq!(changes.len(), 1, "{field:?}: {changes:?}");
            assert_eq!(changes[0].field, field);
            assert_eq!(changes[0].old.as_deref(), old);
            assert_eq!(changes[0].new.as_deref(), new);
        }
    }

    #[test]
    fn a_touch_without_field_changes_moves_updated_at_alone() {
        let base = pr();
        let mut touched = base.clone();
        touched.updated_at = base.updated_at + Duration::seconds(9);
        let changes = diff_pr(&stored(&base), &touched).expect("newer");
        assert_eq!(changes.iter().map(|c| c.field).collect::<Vec<_>>(), [PrField::UpdatedAt]);
        touched.title = "x".into();
        let changes = diff_pr(&stored(&base), &touched).expect("newer");
        assert_eq!(
            changes.iter().map(|c| c.field).collect::<Vec<_>>(),
            [PrField::Title],
            "not reported beside a real change"
        );
    }

    #[test]
    fn older_snapshots_and_unmerging_are_refused() {
        let base = pr();
        let mut older = base.clone();
        older.title = "Old title".into();
        older.updated_at = base.updated_at - Duration::seconds(1);
        assert_eq!(diff_pr(&stored(&base), &older), None);

        let mut merged = base.clone();
        merged.state = "closed".into();
        merged.merged_at = Some(base.updated_at);
        merged.closed_at = Some(base.updated_at);
        let mut reopened_same_second = base.clone();
        reopened_same_second.title = "x".into();
        assert_eq!(diff_pr(&stored(&merged), &reopened_same_second), None, "merged never reverts");
    }

    fn run(status: &str, conclusion: Option<&str>) -> CheckRunData {
        CheckRunData {
            github_id: 16_354_767_716,
            node_id: None,
            check_suite_id: Some(1),
            head_sha: CommitSha("a".repeat(40)),
            name: "build".into(),
            app_slug: None,
            status: status.into(),
            conclusion: conclusion.map(Into::into),
            details_url: None,
            html_url: None,
            output_title: None,
            output_summary: None,
            started_at: None,
            completed_at: None,
        }
    }

    fn stored_run(run: &CheckRunData) -> StoredCheckRun {
        StoredCheckRun {
            id: 1,
            github_id: run.github_id,
            check_suite_id: run.check_suite_id,
            head_sha: run.head_sha.clone(),
            name: run.name.clone(),
            app_slug: run.app_slug.clone(),
            status: run.status.clone(),
            conclusion: run.conclusion.clone(),
            details_url: run.details_url.clone(),
            html_url: run.html_url.clone(),
            output_title: run.output_title.clone(),
            output_summary: run.output_summary.clone(),
            gh_started_at: run.started_at,
            gh_completed_at: run.completed_at,
        }
    }

    #[test]
    fn a_completed_run_never_goes_back() {
        let done = run("completed", Some("success"));
        assert_eq!(diff_check_run(&stored_run(&done), &run("in_progress", None)), None);
        assert_eq!(diff_check_run(&stored_run(&done), &run("queued", None)), None);
        assert_eq!(diff_check_run(&stored_run(&run("in_progress", None)), &run("queued", None)), None);
        let forward = diff_check_run(&stored_run(&run("queued", None)), &done).expect("forward");
        let fields: Vec<CheckField> = forward.iter().map(|c| c.field).collect();
        assert_eq!(fields, [CheckField::Status, CheckField::Conclusion]);
    }

    #[test]
    fn duplicates_in_a_batch_keep_the_newest() {
        let a = pr();
        let mut b = pr();
        b.updated_at += Duration::seconds(1);
        b.title = "newer".into();
        let batch = [a.clone(), b.clone(), a];
        let kept = newest_per_key(&batch, |p| p.number, |p| p.updated_at);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].title, "newer");
    }
}
