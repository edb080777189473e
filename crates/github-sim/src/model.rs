//! The simulator's in-memory GitHub: installations, repositories, pull
//! requests and check runs, and the mutations that change them. Every
//! mutation returns the webhook events GitHub would send for it. Commit
//! statuses, required checks, merge queues and re-runs are in [`ci`].
//!
//! Every time the world stamps (a PR's `updated_at`, a run's `started_at`, a
//! status's `created_at`) comes from [`World::now`]: real time moved by the
//! world's own clock offset, so that a test can make something happen "two
//! hours ago" without sleeping, and parallel tests do not share a clock.

pub mod ci;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::prng::SplitMix64;

pub use ci::{
    combined_state, latest_runs, ContextState, NewStatus, SimMergeGroup, SimProtection, SimStatus,
    MERGE_GROUP_REASONS, STATUS_STATES,
};

/// Real time with GitHub's whole seconds. The world's mutations use
/// [`World::now`] instead, which a test may move.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimInstallation {
    pub id: i64,
    pub account: String,
    #[serde(default)]
    pub suspended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimPr {
    pub id: i64,
    pub number: i64,
    pub title: String,
    pub body: Option<String>,
    pub author: String,
    pub state: PrState,
    pub draft: bool,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub base_ref: String,
    pub base_sha: String,
    pub head_ref: String,
    pub head_sha: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
    pub merge_commit_sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCheckRun {
    pub id: i64,
    pub check_suite_id: i64,
    pub head_sha: String,
    pub head_branch: String,
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub output_title: Option<String>,
    pub output_summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRepo {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub installation_id: i64,
    pub pulls: BTreeMap<i64, SimPr>,
    pub check_runs: BTreeMap<i64, SimCheckRun>,
    /// Every SHA that was ever a head or base: the commits check runs may name.
    pub commits: BTreeSet<String>,
    /// Check runs by head SHA (an index: large worlds stay fast).
    #[serde(default)]
    pub runs_by_sha: BTreeMap<String, Vec<i64>>,
    /// PR numbers by head SHA (an index).
    #[serde(default)]
    pub heads: BTreeMap<String, BTreeSet<i64>>,
    /// Every commit status ever posted, by SHA, oldest first: GitHub keeps
    /// them all, and the latest of each context is the current one.
    #[serde(default)]
    pub statuses: BTreeMap<String, Vec<SimStatus>>,
    /// Branch protection by branch name: the checks it requires.
    #[serde(default)]
    pub protection: BTreeMap<String, SimProtection>,
    /// Every merge group, in the order they were created; the active ones
    /// (not destroyed) of a base branch are its merge queue, front first.
    #[serde(default)]
    pub merge_groups: Vec<SimMergeGroup>,
    /// Branch heads the simulator knows: a base branch after a merge.
    #[serde(default)]
    pub branch_heads: BTreeMap<String, String>,
}

impl SimRepo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The check runs of one commit, oldest first.
    pub fn runs_for<'a>(&'a self, sha: &'a str) -> impl Iterator<Item = &'a SimCheckRun> + 'a {
        self.runs_by_sha.get(sha).into_iter().flatten().filter_map(|id| self.check_runs.get(id))
    }

    /// The PRs whose head is `sha`.
    pub fn prs_with_head<'a>(&'a self, sha: &str) -> impl Iterator<Item = &'a SimPr> + 'a {
        self.heads.get(sha).into_iter().flatten().filter_map(|n| self.pulls.get(n))
    }
}

/// A webhook GitHub would send: the event name and its payload, minus the
/// parts added at delivery (repository, sender, installation).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub action: &'static str,
    pub repo_id: i64,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    PullRequest {
        number: i64,
        extra: Value,
    },
    CheckRun {
        run_id: i64,
    },
    CheckSuite {
        suite_id: i64,
        head_sha: String,
    },
    /// The `status` event (it has no action): one posted status.
    Status {
        sha: String,
        status_id: i64,
    },
    /// `merge_group` `checks_requested` or `destroyed` (with its reason).
    MergeGroup {
        head_sha: String,
        reason: Option<&'static str>,
    },
    /// `branch_protection_rule` `created` or `edited`, with GitHub's `changes`.
    BranchProtectionRule {
        branch: String,
        changes: Value,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("no repository {0}")]
    NoRepository(String),
    #[error("no pull request #{1} in {0}")]
    NoPullRequest(String, i64),
    #[error("no check run {0}")]
    NoCheckRun(i64),
    #[error("{0}")]
    Invalid(String),
    /// An error of one entry of a request (`operations[3]`, `repositories[0]`).
    #[error("{entry}: {error}")]
    At { entry: String, error: Box<ModelError> },
}

impl ModelError {
    /// This error, as the error of `entry`.
    pub fn at(self, entry: impl Into<String>) -> Self {
        Self::At { entry: entry.into(), error: Box::new(self) }
    }
}

/// The whole simulated GitHub.
#[derive(Debug)]
pub struct World {
    pub app_id: u64,
    pub installations: BTreeMap<i64, SimInstallation>,
    pub repos: BTreeMap<i64, SimRepo>,
    next_id: i64,
    next_check_id: i64,
    next_status_id: i64,
    /// Added to real time by [`World::now`]; negative is the past.
    clock_offset: chrono::Duration,
    rng: SplitMix64,
}

impl World {
    pub fn new(app_id: u64, seed: u64) -> Self {
        Self {
            app_id,
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            next_id: 10_000_000,
            // Above 2^31, as GitHub's real check-run ids are.
            next_check_id: 16_000_000_000,
            // Above 2^31 too: GitHub's status ids are (its example's is 6,805,126,730).
            next_status_id: 30_000_000_000,
            clock_offset: chrono::Duration::zero(),
            rng: SplitMix64::new(seed),
        }
    }

    /// The world's time: real time moved by the clock offset, whole seconds.
    pub fn now(&self) -> DateTime<Utc> {
        now() + self.clock_offset
    }

    /// Moves the world's clock: every time stamped from now on is real time
    /// plus `offset` (negative: the past). Times stamped before stay as they are.
    pub fn set_clock_offset(&mut self, offset: chrono::Duration) {
        self.clock_offset = offset;
    }

    pub fn clock_offset(&self) -> chrono::Duration {
        self.clock_offset
    }

    pub fn new_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn new_check_id(&mut self) -> i64 {
        self.next_check_id += 1;
        self.next_check_id
    }

    fn new_status_id(&mut self) -> i64 {
        self.next_status_id += 1;
        self.next_status_id
    }

    pub fn rng(&self) -> &SplitMix64 {
        &self.rng
    }

    /// A copy holding only the repositories `repo_ids` (and every
    /// installation) that continues the ids and SHAs where this world is: a
    /// list of changes is tried on it first, so that a list that fails
    /// leaves the world alone, without copying all of a large world.
    pub(crate) fn sandbox(&self, repo_ids: &BTreeSet<i64>) -> World {
        World {
            app_id: self.app_id,
            installations: self.installations.clone(),
            repos: repo_ids.iter().filter_map(|id| self.repos.get(id).map(|r| (*id, r.clone()))).collect(),
            next_id: self.next_id,
            next_check_id: self.next_check_id,
            next_status_id: self.next_status_id,
            clock_offset: self.clock_offset,
            rng: self.rng.clone(),
        }
    }

    /// The repository holding check run `run_id`.
    pub fn repo_of_check_run(&self, run_id: i64) -> Result<i64, ModelError> {
        self.repos
            .values()
            .find(|repo| repo.check_runs.contains_key(&run_id))
            .map(|repo| repo.id)
            .ok_or(ModelError::NoCheckRun(run_id))
    }

    /// A fresh 40-hex-digit commit SHA.
    pub fn new_sha(&self) -> String {
        format!("{:016x}{:016x}{:08x}", self.rng.next_u64(), self.rng.next_u64(), self.rng.next_u64() as u32)
    }

    pub fn add_installation(&mut self, id: i64, account: &str) {
        self.installations.insert(id, SimInstallation { id, account: account.to_owned(), suspended: false });
    }

    pub fn add_repo(
        &mut self,
        installation_id: i64,
        id: i64,
        owner: &str,
        name: &str,
    ) -> Result<(), ModelError> {
        if !self.installations.contains_key(&installation_id) {
            return Err(ModelError::Invalid(format!("no installation {installation_id}")));
        }
        self.repos.insert(
            id,
            SimRepo {
                id,
                owner: owner.to_owned(),
                name: name.to_owned(),
                installation_id,
                pulls: BTreeMap::new(),
                check_runs: BTreeMap::new(),
                commits: BTreeSet::new(),
                runs_by_sha: BTreeMap::new(),
                heads: BTreeMap::new(),
                statuses: BTreeMap::new(),
                protection: BTreeMap::new(),
                merge_groups: Vec::new(),
                branch_heads: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// Whether the App is installed on repository `repo_id`: only then does
    /// GitHub send it the repository's webhooks.
    pub fn is_installed(&self, repo_id: i64) -> bool {
        self.repos.get(&repo_id).is_some_and(|r| self.installations.contains_key(&r.installation_id))
    }

    pub fn repo_id(&self, full_name: &str) -> Result<i64, ModelError> {
        self.repos
            .values()
            .find(|r| r.full_name().eq_ignore_ascii_case(full_name))
            .map(|r| r.id)
            .ok_or_else(|| ModelError::NoRepository(full_name.to_owned()))
    }

    pub fn repo(&self, id: i64) -> Result<&SimRepo, ModelError> {
        self.repos.get(&id).ok_or_else(|| ModelError::NoRepository(id.to_string()))
    }

    pub(crate) fn repo_mut(&mut self, id: i64) -> Result<&mut SimRepo, ModelError> {
        self.repos.get_mut(&id).ok_or_else(|| ModelError::NoRepository(id.to_string()))
    }

    pub(crate) fn pr_mut(&mut self, repo_id: i64, number: i64) -> Result<&mut SimPr, ModelError> {
        let repo = self.repo_mut(repo_id)?;
        let name = repo.full_name();
        repo.pulls.get_mut(&number).ok_or(ModelError::NoPullRequest(name, number))
    }

    /// Opens a pull request; returns its number and the `opened` event.
    pub fn open_pr(&mut self, repo_id: i64, spec: NewPr) -> Result<(i64, Event), ModelError> {
        let id = self.new_id();
        let head_sha = spec.head_sha.unwrap_or_else(|| self.new_sha());
        let base_sha = self.new_sha();
        let at = spec.created_at.unwrap_or_else(|| self.now());
        let repo = self.repo_mut(repo_id)?;
        let number = spec.number.unwrap_or_else(|| repo.pulls.keys().next_back().map_or(1, |n| n + 1));
        if repo.pulls.contains_key(&number) {
            return Err(ModelError::Invalid(format!("#{number} exists")));
        }
        repo.commits.insert(head_sha.clone());
        repo.commits.insert(base_sha.clone());
        repo.heads.entry(head_sha.clone()).or_default().insert(number);
        repo.pulls.insert(
            number,
            SimPr {
                id,
                number,
                title: spec.title,
                body: spec.body,
                author: spec.author,
                state: PrState::Open,
                draft: spec.draft,
                labels: spec.labels,
                assignees: spec.assignees,
                base_ref: spec.base_ref.unwrap_or_else(|| "main".to_owned()),
                base_sha,
                head_ref: spec.head_ref.unwrap_or_else(|| format!("feature-{number}")),
                head_sha,
                created_at: at,
                updated_at: at,
                closed_at: None,
                merged_at: None,
                merge_commit_sha: None,
            },
        );
        Ok((number, pr_event(repo_id, number, "opened", Value::Null)))
    }

    /// Changes title and/or body: `edited`, with the old values under `changes`.
    pub fn edit_pr(
        &mut self,
        repo_id: i64,
        number: i64,
        title: Option<String>,
        body: Option<String>,
    ) -> Result<Event, ModelError> {
        let at = self.now();
        let pr = self.pr_mut(repo_id, number)?;
        let mut changes = serde_json::Map::new();
        if let Some(title) = title {
            changes.insert("title".into(), json!({ "from": pr.title }));
            pr.title = title;
        }
        if let Some(body) = body {
            changes.insert("body".into(), json!({ "from": pr.body.clone().unwrap_or_default() }));
            pr.body = Some(body);
        }
        pr.updated_at = at;
        Ok(pr_event(repo_id, number, "edited", json!({ "changes": changes })))
    }

    pub fn add_label(&mut self, repo_id: i64, number: i64, label: &str) -> Result<Event, ModelError> {
        let at = self.now();
        let pr = self.pr_mut(repo_id, number)?;
        if !pr.labels.iter().any(|l| l == label) {
            pr.labels.push(label.to_owned());
        }
        pr.updated_at = at;
        Ok(pr_event(repo_id, number, "labeled", json!({ "label_name": label })))
    }

    pub fn remove_label(&mut self, repo_id: i64, number: i64, label: &str) -> Result<Event, ModelError> {
        let at = self.now();
        let pr = self.pr_mut(repo_id, number)?;
        if !pr.labels.iter().any(|l| l == label) {
            return Err(ModelError::Invalid(format!("#{number} has no label '{label}'")));
        }
        pr.labels.retain(|l| l != label);
        pr.updated_at = at;
        Ok(pr_event(repo_id, number, "unlabeled", json!({ "label_name": label })))
    }

    pub fn set_draft(&mut self, repo_id: i64, number: i64, draft: bool) -> Result<Event, ModelError> {
        let at = self.now();
        let pr = self.pr_mut(repo_id, number)?;
        if pr.state != PrState::Open {
            return Err(ModelError::Invalid(format!("#{number} is not open")));
        }
        pr.draft = draft;
        pr.updated_at = at;
        let action = if draft { "converted_to_draft" } else { "ready_for_review" };
        Ok(pr_event(repo_id, number, action, Value::Null))
    }

    /// Pushes a new head commit: `synchronize`. Returns the new SHA too.
    pub fn push(&mut self, repo_id: i64, number: i64) -> Result<(String, Event), ModelError> {
        let sha = self.new_sha();
        let at = self.now();
        self.refuse_if_queued(repo_id, number)?;
        let repo = self.repo_mut(repo_id)?;
        repo.commits.insert(sha.clone());
        let name = repo.full_name();
        let pr = repo.pulls.get_mut(&number).ok_or(ModelError::NoPullRequest(name, number))?;
        if pr.state != PrState::Open {
            return Err(ModelError::Invalid(format!("#{number} is not open")));
        }
        let before = std::mem::replace(&mut pr.head_sha, sha.clone());
        pr.updated_at = at;
        if let Some(numbers) = repo.heads.get_mut(&before) {
            numbers.remove(&number);
        }
        repo.heads.entry(sha.clone()).or_default().insert(number);
        Ok((sha.clone(), pr_event(repo_id, number, "synchronize", json!({ "before": before, "after": sha }))))
    }

    /// Closes (or merges) an open pull request: `closed`.
    pub fn close_pr(&mut self, repo_id: i64, number: i64, merge: bool) -> Result<Event, ModelError> {
        let merge_sha = merge.then(|| self.new_sha());
        self.close_merging(repo_id, number, merge_sha)
    }

    /// Closes an open pull request, merged as `merge_sha` when given.
    fn close_merging(
        &mut self,
        repo_id: i64,
        number: i64,
        merge_sha: Option<String>,
    ) -> Result<Event, ModelError> {
        let merge = merge_sha.is_some();
        let at = self.now();
        self.refuse_if_queued(repo_id, number)?;
        let pr = self.pr_mut(repo_id, number)?;
        if pr.state != PrState::Open {
            return Err(ModelError::Invalid(format!("#{number} is not open")));
        }
        if merge && pr.draft {
            return Err(ModelError::Invalid(format!("#{number} is a draft: drafts cannot be merged")));
        }
        pr.updated_at = at;
        pr.closed_at = Some(at);
        let base_ref = pr.base_ref.clone();
        if merge {
            pr.state = PrState::Merged;
            pr.merged_at = Some(at);
            pr.merge_commit_sha.clone_from(&merge_sha);
        } else {
            pr.state = PrState::Closed;
        }
        if let Some(sha) = merge_sha {
            // The merge commit is the base branch's new head, a commit that
            // checks and statuses may name.
            let repo = self.repo_mut(repo_id)?;
            repo.commits.insert(sha.clone());
            repo.branch_heads.insert(base_ref, sha);
        }
        Ok(pr_event(repo_id, number, "closed", Value::Null))
    }

    pub fn reopen_pr(&mut self, repo_id: i64, number: i64) -> Result<Event, ModelError> {
        let at = self.now();
        let pr = self.pr_mut(repo_id, number)?;
        if pr.state != PrState::Closed {
            return Err(ModelError::Invalid(format!("#{number} is not closed (merged ones stay merged)")));
        }
        pr.state = PrState::Open;
        pr.closed_at = None;
        pr.updated_at = at;
        Ok(pr_event(repo_id, number, "reopened", Value::Null))
    }

    /// Moves a PR's last change back to `at` (generated history happened in the past).
    pub fn backdate(&mut self, repo_id: i64, number: i64, at: DateTime<Utc>) -> Result<(), ModelError> {
        let pr = self.pr_mut(repo_id, number)?;
        pr.updated_at = at;
        if pr.closed_at.is_some() {
            pr.closed_at = Some(at);
        }
        if pr.merged_at.is_some() {
            pr.merged_at = Some(at);
        }
        Ok(())
    }

    /// Creates a queued check run on a commit: `check_run` `created`.
    pub fn create_check_run(
        &mut self,
        repo_id: i64,
        head_sha: &str,
        name: &str,
    ) -> Result<(i64, Event), ModelError> {
        let id = self.new_check_id();
        let at = self.now();
        let repo = self.repo(repo_id)?;
        if !repo.commits.contains(head_sha) {
            return Err(ModelError::Invalid(format!("no commit {head_sha} in {}", repo.full_name())));
        }
        // One suite per commit (one app), as for a single CI provider.
        let suite_id = repo.runs_for(head_sha).next().map(|r| r.check_suite_id);
        let suite_id = match suite_id {
            Some(id) => id,
            None => self.new_check_id(),
        };
        let repo = self.repo(repo_id)?;
        // A PR head's branch, or a merge group's `gh-readonly-queue/…` branch.
        let head_branch = repo.prs_with_head(head_sha).next().map(|p| p.head_ref.clone()).or_else(|| {
            repo.merge_group(head_sha).map(|g| g.head_ref.trim_start_matches("refs/heads/").to_owned())
        });
        let repo = self.repo_mut(repo_id)?;
        repo.runs_by_sha.entry(head_sha.to_owned()).or_default().push(id);
        repo.check_runs.insert(
            id,
            SimCheckRun {
                id,
                check_suite_id: suite_id,
                head_sha: head_sha.to_owned(),
                head_branch: head_branch.unwrap_or_else(|| "main".to_owned()),
                name: name.to_owned(),
                status: "queued".to_owned(),
                conclusion: None,
                // GitHub stamps a run's start at creation unless told otherwise.
                started_at: Some(at),
                completed_at: None,
                output_title: None,
                output_summary: None,
            },
        );
        Ok((
            id,
            Event { name: "check_run", action: "created", repo_id, body: EventBody::CheckRun { run_id: id } },
        ))
    }

    pub(crate) fn run_mut(&mut self, run_id: i64) -> Result<(i64, &mut SimCheckRun), ModelError> {
        self.repos
            .values_mut()
            .find_map(|repo| {
                let repo_id = repo.id;
                repo.check_runs.get_mut(&run_id).map(|run| (repo_id, run))
            })
            .ok_or(ModelError::NoCheckRun(run_id))
    }

    /// Moves a run to in progress. GitHub sends no webhook for this.
    pub fn start_check_run(&mut self, run_id: i64) -> Result<(), ModelError> {
        let at = self.now();
        let (_, run) = self.run_mut(run_id)?;
        if run.status == "completed" {
            return Err(ModelError::Invalid(format!("check run {run_id} is completed")));
        }
        run.status = "in_progress".to_owned();
        run.started_at = Some(at);
        Ok(())
    }

    /// Completes a run: `check_run` `completed`, and `check_suite` `completed`
    /// once every run of its suite is.
    pub fn complete_check_run(&mut self, run_id: i64, conclusion: &str) -> Result<Vec<Event>, ModelError> {
        const CONCLUSIONS: [&str; 8] = [
            "success",
            "failure",
            "neutral",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
            "skipped",
        ];
        if !CONCLUSIONS.contains(&conclusion) {
            return Err(ModelError::Invalid(format!("'{conclusion}' is not a check conclusion")));
        }
        let at = self.now();
        let (repo_id, run) = self.run_mut(run_id)?;
        if run.status == "completed" {
            return Err(ModelError::Invalid(format!("check run {run_id} is completed")));
        }
        run.status = "completed".to_owned();
        run.conclusion = Some(conclusion.to_owned());
        run.started_at.get_or_insert(at);
        run.completed_at = Some(at);
        run.output_title = Some(format!("{} {conclusion}", run.name));
        run.output_summary = Some(format!("The {} run finished: {conclusion}.", run.name));
        let (suite_id, sha) = (run.check_suite_id, run.head_sha.clone());
        let mut events = vec![Event {
            name: "check_run",
            action: "completed",
            repo_id,
            body: EventBody::CheckRun { run_id },
        }];
        let repo = self.repo(repo_id)?;
        let suite_done =
            repo.runs_for(&sha).filter(|r| r.check_suite_id == suite_id).all(|r| r.status == "completed");
        if suite_done {
            events.push(Event {
                name: "check_suite",
                action: "completed",
                repo_id,
                body: EventBody::CheckSuite { suite_id, head_sha: sha },
            });
        }
        Ok(events)
    }
}

pub(crate) fn pr_event(repo_id: i64, number: i64, action: &'static str, extra: Value) -> Event {
    Event { name: "pull_request", action, repo_id, body: EventBody::PullRequest { number, extra } }
}

/// What a new pull request looks like; everything but title and author has a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewPr {
    pub title: String,
    pub author: String,
    #[serde(default)]
    pub number: Option<i64>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub base_ref: Option<String>,
    #[serde(default)]
    pub head_ref: Option<String>,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

impl NewPr {
    pub fn new(title: &str, author: &str) -> Self {
        Self { title: title.to_owned(), author: author.to_owned(), ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> (World, i64) {
        let mut world = World::new(1, 42);
        world.add_installation(7, "acme");
        world.add_repo(7, 100, "acme", "widgets").expect("repo");
        (world, 100)
    }

    #[test]
    fn a_pr_lives_through_push_close_and_merge_rules() {
        let (mut world, repo) = world();
        let (number, opened) = world.open_pr(repo, NewPr::new("Add widgets", "alice")).expect("open");
        assert_eq!(number, 1);
        assert_eq!(opened.action, "opened");
        let old_head = world.repo(repo).expect("repo").pulls[&1].head_sha.clone();
        let (new_head, sync) = world.push(repo, 1).expect("push");
        assert_ne!(old_head, new_head);
        assert_eq!(sync.action, "synchronize");
        assert_eq!(world.close_pr(repo, 1, true).expect("merge").action, "closed");
        assert_eq!(world.repo(repo).expect("repo").pulls[&1].state, PrState::Merged);
        assert!(world.reopen_pr(repo, 1).is_err(), "merged stays merged");
        assert!(world.push(repo, 1).is_err());
    }

    #[test]
    fn check_runs_complete_into_a_suite_event() {
        let (mut world, repo) = world();
        world.open_pr(repo, NewPr::new("t", "a")).expect("open");
        let sha = world.repo(repo).expect("repo").pulls[&1].head_sha.clone();
        let (build, _) = world.create_check_run(repo, &sha, "build").expect("create");
        let (test, _) = world.create_check_run(repo, &sha, "test").expect("create");
        assert!(build > i64::from(i32::MAX));
        world.start_check_run(build).expect("start");
        assert_eq!(world.complete_check_run(build, "success").expect("complete").len(), 1);
        let events = world.complete_check_run(test, "failure").expect("complete");
        assert_eq!(events.iter().map(|e| e.name).collect::<Vec<_>>(), ["check_run", "check_suite"]);
        assert!(world.complete_check_run(test, "success").is_err(), "never backwards");
        assert!(world.create_check_run(repo, "0000000000000000000000000000000000000000", "x").is_err());
        assert!(world.complete_check_run(build, "great").is_err());
    }
}
