//! What the board's pages show, read through the same queries as the JSON
//! API (`db::reads`), so a page and the API cannot disagree.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::reads::{self, ListedPull, PullDetail, PullSummary, PASSING_CONCLUSIONS};
use crate::db::{repairs, repositories};

pub const PULLS_PER_PAGE: i64 = 50;

pub struct RepositoryRow {
    pub full_name: String,
    pub open: i64,
    pub failing: i64,
    pub pending: i64,
    pub passing: i64,
    pub stuck: i64,
    pub flaky_7d: i64,
    pub last_swept_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub last_failure_reason: Option<String>,
    pub repairs_24h: i64,
}

pub struct Overview {
    pub repositories: Vec<RepositoryRow>,
}

#[derive(Default)]
pub struct Totals {
    pub open: i64,
    pub failing: i64,
    pub pending: i64,
    pub passing: i64,
}

impl Overview {
    pub fn totals(&self) -> Totals {
        self.repositories.iter().fold(Totals::default(), |t, r| Totals {
            open: t.open + r.open,
            failing: t.failing + r.failing,
            pending: t.pending + r.pending,
            passing: t.passing + r.passing,
        })
    }
}

/// Every active repository with its open PRs by CI state and its sync health.
pub async fn overview(
    conn: &mut AsyncPgConnection,
    stuck_after: std::time::Duration,
) -> QueryResult<Overview> {
    use crate::db::schema::repositories as r;
    let repos: Vec<repositories::Repository> = r::table
        .filter(r::active.eq(true))
        .order((r::owner, r::name))
        .select(repositories::Repository::as_select())
        .load(conn)
        .await?;
    let counts: HashMap<i64, reads::OpenPullCounts> =
        reads::open_pull_counts(conn).await?.into_iter().map(|c| (c.repository_id, c)).collect();
    let health: HashMap<String, reads::CiHealth> =
        reads::ci_health(conn, stuck_after).await?.into_iter().map(|h| (h.repository.clone(), h)).collect();
    let ids: Vec<_> = repos.iter().map(|repo| repo.id).collect();
    let repairs = repairs::recent(conn, &ids, Utc::now() - chrono::Duration::hours(24)).await?;
    let repositories = repos
        .into_iter()
        .map(|repo| {
            let full_name = repo.full_name();
            let count = counts.get(&repo.id.0);
            let health = health.get(&full_name);
            RepositoryRow {
                open: count.map_or(0, |c| c.open),
                failing: count.map_or(0, |c| c.failing),
                pending: count.map_or(0, |c| c.pending),
                passing: count.map_or(0, |c| c.passing),
                stuck: health.map_or(0, |h| h.stuck_prs),
                flaky_7d: health.map_or(0, |h| h.flaky_checks_7d),
                last_swept_at: repo.last_swept_at,
                consecutive_failures: repo.consecutive_failures,
                last_failure_reason: repo.last_failure_reason,
                repairs_24h: repairs.get(&repo.id).map_or(0, |r| r.total),
                full_name,
            }
        })
        .collect();
    Ok(Overview { repositories })
}

/// The filters of the PR listing as the URL gave them (empty fields dropped),
/// so the form shows them back and the page links keep them.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    pub repository: Option<String>,
    pub state: Option<String>,
    pub checks: Option<String>,
    pub draft: Option<String>,
    pub author: Option<String>,
    pub label: Option<String>,
    pub stale: Option<String>,
    pub stuck: Option<String>,
    pub flaky: Option<String>,
    pub sort: Option<String>,
}

impl Filters {
    /// `(name, value)` of every filter set, in the form's order.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("repository", &self.repository),
            ("state", &self.state),
            ("checks", &self.checks),
            ("draft", &self.draft),
            ("author", &self.author),
            ("label", &self.label),
            ("stale", &self.stale),
            ("stuck", &self.stuck),
            ("flaky", &self.flaky),
            ("sort", &self.sort),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }
}

pub struct PullsPage {
    pub filters: Filters,
    /// Every active repository, for the repository filter.
    pub repositories: Vec<String>,
    pub items: Vec<ListedPull>,
    pub total: i64,
    pub page: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl PullsPage {
    pub fn first(&self) -> i64 {
        (self.page - 1) * PULLS_PER_PAGE + 1
    }

    pub fn last(&self) -> i64 {
        (self.page - 1) * PULLS_PER_PAGE + self.items.len() as i64
    }
}

pub async fn active_repositories(conn: &mut AsyncPgConnection) -> QueryResult<Vec<String>> {
    use crate::db::schema::repositories as r;
    let rows: Vec<(String, String)> = r::table
        .filter(r::active.eq(true))
        .order((r::owner, r::name))
        .select((r::owner, r::name))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(owner, name)| format!("{owner}/{name}")).collect())
}

/// The newest run of a check name on the head, as the PR page lists it.
pub struct CheckRow {
    pub name: String,
    /// `passing`, `failing` or `pending` (the read API's verdicts).
    pub verdict: &'static str,
    /// The conclusion, or the status while unfinished.
    pub result: String,
    pub duration: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub url: Option<String>,
    /// Older runs of the same name on the head (re-runs).
    pub earlier_runs: usize,
}

pub struct StatusRow {
    pub context: String,
    pub verdict: &'static str,
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

/// One line of a PR's timeline.
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// When prmonitor stored it: GitHub's times have whole seconds, and
    /// within one second the order things were written in is the order
    /// they happened in.
    pub recorded: DateTime<Utc>,
    /// Which head the entry belongs to (0: the first) and, within it,
    /// transitions (0) before results (1): GitHub dates in whole seconds, so
    /// a push and the last result on the commit before it may share one.
    pub epoch: (usize, u8),
    /// `state`, `draft`, `head_sha`, `check_run` or `status`.
    pub kind: &'static str,
    pub text: String,
    /// What brought it: `webhook`, `sweep`, `backfill`, `manual`, `recovery`.
    pub cause: String,
    pub delivery_id: Option<String>,
}

impl TimelineEntry {
    fn sort_key(&self) -> (DateTime<Utc>, (usize, u8), DateTime<Utc>) {
        (self.at, self.epoch, self.recorded)
    }
}

pub struct PullPage {
    pub repository: String,
    pub detail: PullDetail,
    pub summary: Option<PullSummary>,
    pub checks: Vec<CheckRow>,
    pub statuses: Vec<StatusRow>,
    pub required: Vec<String>,
    pub timeline: Vec<TimelineEntry>,
}

fn run_verdict(status: &str, conclusion: Option<&str>) -> &'static str {
    match (status, conclusion) {
        ("completed", Some(c)) if PASSING_CONCLUSIONS.contains(&c) => "passing",
        ("completed", _) => "failing",
        _ => "pending",
    }
}

fn status_verdict(state: &str) -> &'static str {
    match state {
        "success" => "passing",
        "pending" => "pending",
        _ => "failing",
    }
}

fn duration(started: Option<DateTime<Utc>>, completed: Option<DateTime<Utc>>) -> Option<String> {
    let seconds = (completed? - started?).num_seconds().max(0);
    Some(match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    })
}

/// The newest run of each name (runs come newest first), with its re-runs counted.
pub fn newest_per_name(runs: &[reads::HeadCheckRun]) -> Vec<CheckRow> {
    let mut rows: Vec<CheckRow> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for run in runs {
        if let Some(&i) = index.get(run.name.as_str()) {
            rows[i].earlier_runs += 1;
            continue;
        }
        index.insert(run.name.as_str(), rows.len());
        rows.push(CheckRow {
            name: run.name.clone(),
            verdict: run_verdict(&run.status, run.conclusion.as_deref()),
            result: run.conclusion.clone().unwrap_or_else(|| run.status.replace('_', " ")),
            duration: duration(run.gh_started_at, run.gh_completed_at),
            started_at: run.gh_started_at,
            url: run.details_url.clone().or_else(|| run.html_url.clone()),
            earlier_runs: 0,
        });
    }
    rows.sort_by(|a, b| verdict_rank(a.verdict).cmp(&verdict_rank(b.verdict)).then(a.name.cmp(&b.name)));
    rows
}

/// Failing first, then pending, then passing: what needs a look comes first.
fn verdict_rank(verdict: &str) -> u8 {
    match verdict {
        "failing" => 0,
        "pending" => 1,
        _ => 2,
    }
}

pub fn status_rows(statuses: Vec<reads::HeadStatus>) -> Vec<StatusRow> {
    statuses
        .into_iter()
        .map(|s| StatusRow {
            verdict: status_verdict(&s.state),
            context: s.context,
            state: s.state,
            description: s.description,
            target_url: s.target_url,
        })
        .collect()
}

/// The PR's transitions, the results of the check runs of every commit that
/// was its head, and those commits' status changes, oldest first.
pub fn timeline(
    history: Vec<reads::HistoryEntry>,
    runs: Vec<reads::TimelineCheckRun>,
    statuses: Vec<reads::StatusTransition>,
) -> Vec<TimelineEntry> {
    let epochs = head_epochs(&history);
    let epoch_of = |sha: &str| epochs.iter().find(|(s, _)| s == sha).map_or(0, |(_, e)| *e);
    // A state or draft change belongs to the head of its time.
    let epoch_at = |at: DateTime<Utc>| {
        history
            .iter()
            .filter(|e| e.field == "head_sha" && e.old_value.is_some() && e.gh_changed_at <= at)
            .count()
    };
    let mut entries = Vec::new();
    for entry in &history {
        let epoch = match entry.field.as_str() {
            "head_sha" => (epoch_of(&entry.new_value), 0),
            _ if entry.old_value.is_none() => (0, 0),
            _ => (epoch_at(entry.gh_changed_at), 0),
        };
        let text = match (entry.field.as_str(), entry.old_value.as_deref()) {
            ("state", None) => format!("opened as {}", entry.new_value),
            ("state", Some(old)) => format!("state {old} → {}", entry.new_value),
            ("draft", _) if entry.new_value == "true" => "marked as draft".to_owned(),
            ("draft", _) => "marked ready for review".to_owned(),
            ("head_sha", None) => format!("head {}", super::views::short(&entry.new_value)),
            ("head_sha", Some(old)) => format!(
                "head moved {} → {} (pushed or force-pushed)",
                super::views::short(old),
                super::views::short(&entry.new_value)
            ),
            (field, _) => format!("{field} → {}", entry.new_value),
        };
        entries.push(TimelineEntry {
            at: entry.gh_changed_at,
            recorded: entry.recorded_at,
            epoch,
            kind: match entry.field.as_str() {
                "state" => "state",
                "draft" => "draft",
                "head_sha" => "head_sha",
                _ => "other",
            },
            text,
            cause: entry.cause.clone(),
            delivery_id: entry.delivery_id.clone(),
        });
    }
    for run in runs {
        let verdict = run_verdict(&run.status, run.conclusion.as_deref());
        let (at, text) = match (run.gh_completed_at, verdict) {
            (Some(at), _) if run.status == "completed" => (
                at,
                format!(
                    "check {} {} on {}",
                    run.name,
                    run.conclusion.as_deref().unwrap_or("completed"),
                    super::views::short(&run.head_sha)
                ),
            ),
            _ => (
                run.gh_started_at.unwrap_or(run.first_seen_at),
                format!(
                    "check {} {} on {}",
                    run.name,
                    run.status.replace('_', " "),
                    super::views::short(&run.head_sha)
                ),
            ),
        };
        entries.push(TimelineEntry {
            at,
            recorded: run.last_changed_at,
            epoch: (epoch_of(&run.head_sha), 1),
            kind: "check_run",
            text,
            // Rows written before causes were kept say so rather than guess.
            cause: run.last_cause.unwrap_or_else(|| "unknown".to_owned()),
            delivery_id: run.last_delivery_id,
        });
    }
    for status in statuses {
        entries.push(TimelineEntry {
            at: status.gh_changed_at,
            recorded: status.recorded_at,
            epoch: (epoch_of(&status.sha), 1),
            kind: "status",
            text: match status.old_state {
                Some(old) => format!(
                    "status {} {old} → {} on {}",
                    status.context,
                    status.new_state,
                    super::views::short(&status.sha)
                ),
                None => format!(
                    "status {} {} on {}",
                    status.context,
                    status.new_state,
                    super::views::short(&status.sha)
                ),
            },
            cause: status.cause,
            delivery_id: status.delivery_id,
        });
    }
    entries.sort_by_key(TimelineEntry::sort_key);
    entries
}

/// Each commit that was the PR's head, with its place in the order (0 the
/// first head).
fn head_epochs(history: &[reads::HistoryEntry]) -> Vec<(String, usize)> {
    let mut epochs: Vec<(String, usize)> = Vec::new();
    for entry in history.iter().filter(|e| e.field == "head_sha") {
        if let Some(old) = &entry.old_value {
            if epochs.is_empty() {
                epochs.push((old.clone(), 0));
            }
        }
        let next = epochs.last().map_or(0, |(_, e)| e + 1);
        if !epochs.iter().any(|(sha, _)| sha == &entry.new_value) {
            epochs.push((entry.new_value.clone(), if entry.old_value.is_some() { next } else { 0 }));
        }
    }
    epochs
}

/// Every commit that was the PR's head: the current one and each the
/// history names.
pub fn heads(detail: &PullDetail, history: &[reads::HistoryEntry]) -> Vec<String> {
    let mut heads: Vec<String> = vec![detail.head_sha.as_str().to_owned()];
    let mut seen: HashSet<String> = heads.iter().cloned().collect();
    for entry in history.iter().filter(|e| e.field == "head_sha") {
        for sha in entry.old_value.iter().chain(std::iter::once(&entry.new_value)) {
            if seen.insert(sha.clone()) {
                heads.push(sha.clone());
            }
        }
    }
    heads
}
