//! Rule 4, never backwards (DESIGN.md §5): stored state only moves forward in
//! GitHub's time. This module is the rule's one definition.
//!
//! The rule is stated twice on purpose, once for each side that must apply
//! it, and both statements come from the data below:
//!
//! - change detection asks [`pr_may_replace`] / [`check_run_may_replace`]
//!   before it reports a change, so that a refused snapshot is neither
//!   counted nor recorded in the history;
//! - the upserts carry [`pr_guard_sql`] / [`check_run_guard_sql`] as their
//!   `ON CONFLICT … WHERE`, checked against the row as stored at write
//!   time, so that a newer row written by anyone since detection read it is
//!   never undone.
//!
//! A test (`tests/api/never_backwards.rs`) runs the SQL guards in PostgreSQL
//! over every combination of the inputs below and compares each verdict with
//! the Rust predicate's.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::data::{CheckRunData, CheckStatus, PrData, PrState, StatusData};
use crate::db::pull_requests::{StoredCheckRun, StoredPr};

/// States a pull request does not leave: once stored, only the same state
/// replaces them. GitHub never unmerges, so an unmerged snapshot of a merged
/// PR is an older read, even when it carries the same `updated_at` (GitHub's
/// times have one-second resolution).
pub const FINAL_PR_STATES: &[PrState] = &[PrState::Merged];

/// The steps of a check run, in the order they follow each other; every
/// status not listed (queued, waiting, requested, pending, unknown) is
/// [`FIRST_CHECK_STEP`]. A stored run never moves to a lower step.
pub const CHECK_STEPS: &[(CheckStatus, u8)] = &[(CheckStatus::InProgress, 1), (CheckStatus::Completed, 2)];

/// The step of every status [`CHECK_STEPS`] does not list.
pub const FIRST_CHECK_STEP: u8 = 0;

/// How far along a run with `status` is.
pub fn check_step(status: CheckStatus) -> u8 {
    CHECK_STEPS.iter().find(|(listed, _)| *listed == status).map_or(FIRST_CHECK_STEP, |&(_, step)| step)
}

/// What the rule orders a pull request by: GitHub's `updated_at`, and the
/// state as the `state` column holds it (`open`, `closed`, `merged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrVersion<'a> {
    pub updated_at: DateTime<Utc>,
    pub state: &'a str,
}

impl<'a> From<&'a StoredPr> for PrVersion<'a> {
    fn from(row: &'a StoredPr) -> Self {
        Self { updated_at: row.gh_updated_at, state: &row.state }
    }
}

impl From<&PrData> for PrVersion<'static> {
    fn from(pr: &PrData) -> Self {
        Self { updated_at: pr.updated_at, state: pr.to_pr_state().as_str() }
    }
}

/// Whether `incoming` may replace `stored`: it is not older, and `stored`
/// is not in a final state that `incoming` would leave. Ties in
/// `updated_at` are allowed: the same second may hold a later change.
pub fn pr_may_replace(stored: PrVersion<'_>, incoming: PrVersion<'_>) -> bool {
    let leaves_final = is_final_pr_state(stored.state) && incoming.state != stored.state;
    incoming.updated_at >= stored.updated_at && !leaves_final
}

fn is_final_pr_state(state: &str) -> bool {
    FINAL_PR_STATES.iter().any(|s| s.as_str() == state)
}

/// What the rule orders a check run by: its status as GitHub reports it
/// (and the `status` column holds it), and when it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckRunVersion<'a> {
    pub status: &'a str,
    pub completed_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a StoredCheckRun> for CheckRunVersion<'a> {
    fn from(row: &'a StoredCheckRun) -> Self {
        Self { status: &row.status, completed_at: row.gh_completed_at }
    }
}

impl<'a> From<&'a CheckRunData> for CheckRunVersion<'a> {
    fn from(run: &'a CheckRunData) -> Self {
        Self { status: &run.status, completed_at: run.completed_at }
    }
}

impl CheckRunVersion<'_> {
    pub fn step(&self) -> u8 {
        check_step(CheckStatus::parse(self.status))
    }

    /// The order in which a run's reports follow each other: its step, then,
    /// once completed, when (a re-run reported under the same id completes
    /// later). Orders snapshots among themselves; [`check_run_may_replace`]
    /// decides what replaces a stored row.
    pub fn progress(&self) -> (u8, Option<DateTime<Utc>>) {
        let completed = CheckStatus::parse(self.status) == CheckStatus::Completed;
        (self.step(), if completed { self.completed_at } else { None })
    }
}

/// See [`CheckRunVersion::progress`].
pub fn check_run_progress(run: &CheckRunData) -> (u8, Option<DateTime<Utc>>) {
    CheckRunVersion::from(run).progress()
}

/// Whether `incoming` may replace `stored`: its step is not lower, and when
/// both carry a completion time, it did not complete earlier (an older
/// completion never replaces a newer one). A missing time orders nothing.
pub fn check_run_may_replace(stored: CheckRunVersion<'_>, incoming: CheckRunVersion<'_>) -> bool {
    let completed_earlier = match (stored.completed_at, incoming.completed_at) {
        (Some(old), Some(new)) => new < old,
        _ => false,
    };
    incoming.step() >= stored.step() && !completed_earlier
}

/// What the rule orders a commit status by: when GitHub created it (every
/// status posted is a new object, and the latest of a context is its state),
/// then REST's id, which grows with each status posted, to order statuses of
/// one second. GraphQL gives no id; then `at` orders: for a stored row, when
/// it was written; for an incoming status, when the read that found it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusVersion {
    pub created_at: DateTime<Utc>,
    pub github_id: Option<i64>,
    pub at: Option<DateTime<Utc>>,
}

impl From<&StatusData> for StatusVersion {
    fn from(status: &StatusData) -> Self {
        Self { created_at: status.created_at, github_id: status.github_id, at: status.read_at }
    }
}

/// Whether status `incoming` may replace the stored latest status of its
/// context: created later; or in the same second, with an id not lower, or
/// over a row without an id (a GraphQL read, the weakest evidence of order).
/// A status read without an id replaces one of the same second with an id
/// only when the read began after the row was written: GitHub's latest then
/// was the read's.
pub fn status_may_replace(stored: StatusVersion, incoming: StatusVersion) -> bool {
    match incoming.created_at.cmp(&stored.created_at) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => match (stored.github_id, incoming.github_id) {
            (None, _) => true,
            (Some(old), Some(new)) => new >= old,
            (Some(_), None) => {
                matches!((stored.at, incoming.at), (Some(written), Some(read)) if read > written)
            }
        },
    }
}

/// The part of [`status_may_replace`] the `WHERE` of `INSERT INTO
/// commit_statuses … ON CONFLICT … DO UPDATE` can state: the statement does
/// not see when a read began, so a status without an id passes it on a tie,
/// and the synchronizer, holding the repository's lock, has already dropped
/// the ones the rule refuses.
pub fn status_guard_sql() -> &'static str {
    "(excluded.gh_created_at > commit_statuses.gh_created_at \
      OR (excluded.gh_created_at = commit_statuses.gh_created_at \
          AND (commit_statuses.github_id IS NULL OR excluded.github_id IS NULL \
               OR excluded.github_id >= commit_statuses.github_id)))"
}

/// [`pr_may_replace`] as the `WHERE` of `INSERT INTO pull_requests … ON
/// CONFLICT … DO UPDATE`: `pull_requests` is the stored row, `excluded` the
/// incoming one, whose `state` is [`PrData::to_pr_state`].
pub fn pr_guard_sql() -> &'static str {
    static GUARD: LazyLock<String> = LazyLock::new(|| {
        format!(
            "pull_requests.gh_updated_at <= excluded.gh_updated_at \
             AND (pull_requests.state NOT IN ({finals}) OR excluded.state = pull_requests.state)",
            finals = sql_list(FINAL_PR_STATES.iter().map(|s| s.as_str())),
        )
    });
    &GUARD
}

/// [`check_run_may_replace`] as the `WHERE` of `INSERT INTO check_runs …
/// ON CONFLICT … DO UPDATE`: `check_runs` is the stored row, `excluded` the
/// incoming one.
pub fn check_run_guard_sql() -> &'static str {
    static GUARD: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{stored} <= {incoming} \
             AND (check_runs.gh_completed_at IS NULL OR excluded.gh_completed_at IS NULL \
                  OR excluded.gh_completed_at >= check_runs.gh_completed_at)",
            stored = step_sql("check_runs.status"),
            incoming = step_sql("excluded.status"),
        )
    });
    &GUARD
}

/// [`check_step`] of the text in `column`: `CheckStatus::parse` reads every
/// text it does not know as unknown, which is [`FIRST_CHECK_STEP`] like
/// every other status not listed.
fn step_sql(column: &str) -> String {
    let mut sql = format!("(CASE {column}");
    for (status, step) in CHECK_STEPS {
        sql.push_str(&format!(" WHEN '{}' THEN {step}", status.as_str()));
    }
    sql.push_str(&format!(" ELSE {FIRST_CHECK_STEP} END)"));
    sql
}

/// `'a', 'b'`: the values are this module's own constants, never input.
fn sql_list<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values.map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_order_by_creation_then_id_and_an_id_outranks_none_in_one_second() {
        let (earlier, later) = (Utc::now() - chrono::Duration::seconds(1), Utc::now());
        let v = |created_at, github_id| StatusVersion { created_at, github_id, at: None };
        assert!(status_may_replace(v(earlier, Some(9)), v(later, None)));
        assert!(!status_may_replace(v(later, None), v(earlier, Some(9))));
        assert!(status_may_replace(v(later, Some(1)), v(later, Some(2))));
        assert!(status_may_replace(v(later, Some(2)), v(later, Some(2))));
        assert!(!status_may_replace(v(later, Some(2)), v(later, Some(1))));
        assert!(status_may_replace(v(later, None), v(later, Some(1))));
        assert!(status_may_replace(v(later, None), v(later, None)));
        assert!(!status_may_replace(v(later, Some(1)), v(later, None)));
        // A read without ids wins a tie only if it began after the row was written.
        let at = |github_id, at| StatusVersion { created_at: later, github_id, at: Some(at) };
        assert!(status_may_replace(at(Some(1), earlier), at(None, later)));
        assert!(!status_may_replace(at(Some(1), later), at(None, earlier)));
    }

    #[test]
    fn steps_follow_each_other_and_unlisted_statuses_are_first() {
        assert!(check_step(CheckStatus::Completed) > check_step(CheckStatus::InProgress));
        assert!(check_step(CheckStatus::InProgress) > check_step(CheckStatus::Queued));
        for status in
            [CheckStatus::Queued, CheckStatus::Waiting, CheckStatus::Requested, CheckStatus::Pending]
        {
            assert_eq!(check_step(status), FIRST_CHECK_STEP, "{status:?}");
        }
        assert_eq!(check_step(CheckStatus::parse("weird")), FIRST_CHECK_STEP);
    }

    #[test]
    fn an_earlier_completion_never_replaces_a_later_one_whatever_the_statuses() {
        let (earlier, later) = (Utc::now() - chrono::Duration::seconds(1), Utc::now());
        let run = |status, completed_at| CheckRunVersion { status, completed_at };
        assert!(!check_run_may_replace(run("completed", Some(later)), run("completed", Some(earlier))));
        // The upsert's guard always refused these; detection now refuses them too,
        // instead of reporting an update that was never written.
        assert!(!check_run_may_replace(run("in_progress", Some(later)), run("completed", Some(earlier))));
        assert!(!check_run_may_replace(run("queued", Some(later)), run("queued", Some(earlier))));
        // A missing time orders nothing.
        assert!(check_run_may_replace(run("completed", Some(later)), run("completed", None)));
        assert!(check_run_may_replace(run("queued", None), run("completed", Some(earlier))));
        assert!(!check_run_may_replace(run("completed", None), run("in_progress", None)));
    }

    #[test]
    fn the_guards_are_generated_from_the_data() {
        assert_eq!(
            pr_guard_sql(),
            "pull_requests.gh_updated_at <= excluded.gh_updated_at \
             AND (pull_requests.state NOT IN ('merged') OR excluded.state = pull_requests.state)"
        );
        assert!(check_run_guard_sql().starts_with(
            "(CASE check_runs.status WHEN 'in_progress' THEN 1 WHEN 'completed' THEN 2 ELSE 0 END) \
             <= (CASE excluded.status WHEN 'in_progress' THEN 1 WHEN 'completed' THEN 2 ELSE 0 END)"
        ));
    }
}
