//! What GitHub's merge box reads besides check runs: commit statuses, the
//! checks branch protection requires, merge queues (merge groups on
//! `gh-readonly-queue/…` commits) and check-run re-runs.
//!
//! Where GitHub's rules are documented the model follows them; where they are
//! not, it takes the stricter reading and says so beside the rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{pr_event, Event, EventBody, ModelError, PrState, SimCheckRun, SimRepo, World};

/// The states a commit status can have (REST's `state`).
pub const STATUS_STATES: [&str; 4] = ["error", "failure", "pending", "success"];
/// Why a merge group is destroyed (the `merge_group` `destroyed` event's `reason`).
pub const MERGE_GROUP_REASONS: [&str; 3] = ["dequeued", "invalidated", "merged"];
/// GitHub answers 422 "description is too long (maximum is 140 characters)"
/// beyond this (not in the REST reference, but what CI integrations truncate to).
const MAX_DESCRIPTION_CHARS: usize = 140;
/// GitHub's documented limit: "a limit of 1000 statuses per sha and context".
const MAX_STATUSES_PER_CONTEXT: usize = 1000;
/// Check conclusions that satisfy a required check (GitHub lets `neutral`
/// and `skipped` through; `stale` is not taken as passing, the stricter reading).
const PASSING_CONCLUSIONS: [&str; 3] = ["success", "neutral", "skipped"];

/// One commit status as posted: GitHub keeps every one, and the latest of a
/// context is that context's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStatus {
    pub id: i64,
    pub sha: String,
    pub context: String,
    /// One of [`STATUS_STATES`].
    pub state: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    /// The login that posted it: REST's `creator`, the webhook's `sender`.
    pub creator: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A status to post; everything but context and state is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewStatus {
    pub context: String,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
    /// Who posts it; the repository's owner when unset.
    #[serde(default)]
    pub creator: Option<String>,
}

impl NewStatus {
    pub fn new(context: &str, state: &str) -> Self {
        Self { context: context.to_owned(), state: state.to_owned(), ..Self::default() }
    }
}

/// Branch protection of one branch, as far as checks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimProtection {
    pub id: i64,
    /// Check-run names or status contexts that must pass before merging.
    pub contexts: Vec<String>,
    /// "Require branches to be up to date before merging".
    pub strict: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A merge group: the commit a merge queue builds for one pull request (on
/// top of the base branch and the groups ahead of it) and runs checks on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMergeGroup {
    pub pr_number: i64,
    pub head_sha: String,
    /// `refs/heads/gh-readonly-queue/{base}/pr-{number}-{base_sha}`.
    pub head_ref: String,
    /// `refs/heads/{base}`.
    pub base_ref: String,
    /// The commit the group is built on: the base branch's head, or the head of the group ahead.
    pub base_sha: String,
    /// When the pull request entered the queue (kept when its group is rebuilt).
    pub enqueued_at: DateTime<Utc>,
    /// When this group's commit was made.
    pub created_at: DateTime<Utc>,
    pub enqueuer: String,
    /// Why the group ended (one of [`MERGE_GROUP_REASONS`]); `None` while it is queued.
    pub destroyed: Option<String>,
}

impl SimMergeGroup {
    /// The base branch's name (`main`), without `refs/heads/`.
    pub fn base_branch(&self) -> &str {
        self.base_ref.strip_prefix("refs/heads/").unwrap_or(&self.base_ref)
    }

    /// The group's branch name (`gh-readonly-queue/main/pr-…`), without `refs/heads/`.
    pub fn head_branch(&self) -> &str {
        self.head_ref.strip_prefix("refs/heads/").unwrap_or(&self.head_ref)
    }

    pub fn is_active(&self) -> bool {
        self.destroyed.is_none()
    }
}

/// Where one required context stands on a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContextState {
    /// Neither a check run nor a status of that name (GitHub's "Expected").
    Missing,
    Pending,
    Failing,
    Passing,
}

/// The newest run of each name, oldest first: REST's `filter=latest`,
/// GraphQL's `checkType: LATEST`, and what rollups and suites are made of
/// (a re-run replaces the run it re-ran).
pub fn latest_runs<'a>(runs: impl IntoIterator<Item = &'a SimCheckRun>) -> Vec<&'a SimCheckRun> {
    let mut newest: std::collections::BTreeMap<&str, &SimCheckRun> = std::collections::BTreeMap::new();
    for run in runs {
        let entry = newest.entry(run.name.as_str()).or_insert(run);
        if run.id > entry.id {
            *entry = run;
        }
    }
    let mut latest: Vec<&SimCheckRun> = newest.into_values().collect();
    latest.sort_by_key(|run| run.id);
    latest
}

/// The combined state of a commit's latest statuses, as GitHub documents it
/// for `GET …/commits/{ref}/status`: `failure` if any context is `error` or
/// `failure`, `pending` if there are none or any is `pending`, else `success`.
pub fn combined_state(latest: &[&SimStatus]) -> &'static str {
    if latest.iter().any(|s| s.state == "error" || s.state == "failure") {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    }
}

impl SimRepo {
    /// Every status of a commit, oldest first.
    pub fn statuses_for(&self, sha: &str) -> &[SimStatus] {
        self.statuses.get(sha).map_or(&[], Vec::as_slice)
    }

    /// The latest status of each context, in the order the contexts first
    /// appeared (GitHub does not document the order).
    pub fn latest_statuses(&self, sha: &str) -> Vec<&SimStatus> {
        let all = self.statuses_for(sha);
        let mut latest: Vec<&SimStatus> = Vec::new();
        for status in all {
            match latest.iter_mut().find(|s| s.context == status.context) {
                Some(slot) => *slot = status,
                None => latest.push(status),
            }
        }
        latest
    }

    /// What branch protection requires on `branch` (nothing when unprotected).
    pub fn required_contexts(&self, branch: &str) -> &[String] {
        self.protection.get(branch).map_or(&[], |p| p.contexts.as_slice())
    }

    /// The merge group whose commit is `sha`, active or destroyed.
    pub fn merge_group(&self, sha: &str) -> Option<&SimMergeGroup> {
        self.merge_groups.iter().rev().find(|g| g.head_sha == sha)
    }

    /// The merge queue of a base branch: its active groups, front first.
    pub fn queue<'a>(&'a self, base_branch: &'a str) -> impl Iterator<Item = &'a SimMergeGroup> + 'a {
        self.merge_groups.iter().filter(move |g| g.is_active() && g.base_branch() == base_branch)
    }

    /// The active merge group of pull request `number`, if it is queued.
    pub fn queued_group(&self, number: i64) -> Option<&SimMergeGroup> {
        self.merge_groups.iter().find(|g| g.is_active() && g.pr_number == number)
    }

    /// The 1-based place of pull request `number` in its base branch's queue.
    pub fn queue_position(&self, number: i64) -> Option<usize> {
        let group = self.queued_group(number)?;
        self.queue(group.base_branch()).position(|g| g.pr_number == number).map(|i| i + 1)
    }

    /// Where `context` stands on `sha`, from the latest check run of that
    /// name and the latest status of that context. Should both exist, a
    /// failing one fails it and a pending one holds it (the stricter reading:
    /// GitHub does not say how it merges a check run and a status of one name).
    pub fn context_state(&self, sha: &str, context: &str) -> ContextState {
        let run = latest_runs(self.runs_for(sha)).into_iter().find(|r| r.name == context).map(|run| {
            match (run.status.as_str(), run.conclusion.as_deref()) {
                ("completed", Some(c)) if PASSING_CONCLUSIONS.contains(&c) => ContextState::Passing,
                ("completed", _) => ContextState::Failing,
                _ => ContextState::Pending,
            }
        });
        let status = self.latest_statuses(sha).into_iter().find(|s| s.context == context).map(|s| {
            match s.state.as_str() {
                "success" => ContextState::Passing,
                "pending" => ContextState::Pending,
                _ => ContextState::Failing,
            }
        });
        match (run, status) {
            (None, None) => ContextState::Missing,
            (Some(one), None) | (None, Some(one)) => one,
            (Some(a), Some(b)) if a == ContextState::Failing || b == ContextState::Failing => {
                ContextState::Failing
            }
            (Some(a), Some(b)) if a == ContextState::Pending || b == ContextState::Pending => {
                ContextState::Pending
            }
            (Some(_), Some(_)) => ContextState::Passing,
        }
    }

    /// The required contexts of `branch` that do not pass on `sha`, with where each stands.
    pub fn unmet_requirements(&self, branch: &str, sha: &str) -> Vec<(String, ContextState)> {
        self.required_contexts(branch)
            .iter()
            .map(|context| (context.clone(), self.context_state(sha, context)))
            .filter(|(_, state)| *state != ContextState::Passing)
            .collect()
    }
}

fn describe(unmet: &[(String, ContextState)]) -> String {
    unmet
        .iter()
        .map(|(context, state)| {
            let state = match state {
                ContextState::Missing => "expected",
                ContextState::Pending => "pending",
                ContextState::Failing => "failing",
                ContextState::Passing => "passing",
            };
            format!("{context} ({state})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl World {
    /// Posts a commit status: the `status` event. GitHub keeps every status;
    /// the latest of a context replaces the context's state.
    pub fn create_status(
        &mut self,
        repo_id: i64,
        sha: &str,
        spec: NewStatus,
    ) -> Result<(i64, Event), ModelError> {
        if !STATUS_STATES.contains(&spec.state.as_str()) {
            return Err(ModelError::Invalid(format!(
                "'{}' is not a status state (error, failure, pending or success)",
                spec.state
            )));
        }
        // GitHub defaults an omitted context to "default"; the simulator's
        // callers always name one, and an empty name is refused.
        if spec.context.trim().is_empty() {
            return Err(ModelError::Invalid("a status needs a context".into()));
        }
        if spec.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS) {
            return Err(ModelError::Invalid(format!(
                "description is too long (maximum is {MAX_DESCRIPTION_CHARS} characters)"
            )));
        }
        let id = self.new_status_id();
        let at = self.now();
        let repo = self.repo_mut(repo_id)?;
        if !repo.commits.contains(sha) {
            return Err(ModelError::Invalid(format!("no commit {sha} in {}", repo.full_name())));
        }
        let same_context = repo.statuses_for(sha).iter().filter(|s| s.context == spec.context).count();
        if same_context >= MAX_STATUSES_PER_CONTEXT {
            return Err(ModelError::Invalid(format!(
                "this SHA and context has reached the maximum number of statuses ({MAX_STATUSES_PER_CONTEXT})"
            )));
        }
        let creator = spec.creator.unwrap_or_else(|| repo.owner.clone());
        repo.statuses.entry(sha.to_owned()).or_default().push(SimStatus {
            id,
            sha: sha.to_owned(),
            context: spec.context,
            state: spec.state,
            description: spec.description,
            target_url: spec.target_url,
            creator,
            created_at: at,
            updated_at: at,
        });
        let body = EventBody::Status { sha: sha.to_owned(), status_id: id };
        // `status` is one of GitHub's events without an action.
        Ok((id, Event { name: "status", action: "", repo_id, body }))
    }

    /// Sets the checks branch protection requires on `branch` (check-run
    /// names or status contexts; an empty list keeps the protection but
    /// requires nothing): `branch_protection_rule` `created` the first time,
    /// `edited` (with the old list under `changes`) after.
    pub fn set_required_checks(
        &mut self,
        repo_id: i64,
        branch: &str,
        contexts: &[&str],
    ) -> Result<Event, ModelError> {
        if branch.is_empty() || branch.contains('*') {
            // Wildcards make a rule pattern, which the simulator does not model.
            return Err(ModelError::Invalid(format!("'{branch}' is not a branch name")));
        }
        let mut wanted: Vec<String> = Vec::new();
        for context in contexts {
            if context.is_empty() {
                return Err(ModelError::Invalid("a required check needs a name".into()));
            }
            if !wanted.iter().any(|c| c == context) {
                wanted.push((*context).to_owned());
            }
        }
        let id = self.new_id();
        let at = self.now();
        let repo = self.repo_mut(repo_id)?;
        let (action, changes) = match repo.protection.get_mut(branch) {
            Some(rule) => {
                let from = std::mem::replace(&mut rule.contexts, wanted);
                rule.updated_at = at;
                ("edited", json!({ "required_status_checks": { "from": from } }))
            }
            None => {
                repo.protection.insert(
                    branch.to_owned(),
                    SimProtection { id, contexts: wanted, strict: false, created_at: at, updated_at: at },
                );
                ("created", Value::Null)
            }
        };
        Ok(Event {
            name: "branch_protection_rule",
            action,
            repo_id,
            body: EventBody::BranchProtectionRule { branch: branch.to_owned(), changes },
        })
    }

    /// Refuses to change a queued pull request's head or state behind the
    /// queue's back: [`Self::dequeue`] first (the `Simulator` does, as GitHub
    /// removes a pull request from the queue when it is pushed to or closed).
    pub(super) fn refuse_if_queued(&self, repo_id: i64, number: i64) -> Result<(), ModelError> {
        if self.repo(repo_id)?.queued_group(number).is_some() {
            return Err(ModelError::Invalid(format!("#{number} is in the merge queue: dequeue it first")));
        }
        Ok(())
    }

    /// Makes a merge group commit for pull request `number` on `base_sha`.
    fn new_merge_group(
        &mut self,
        repo_id: i64,
        number: i64,
        base_branch: &str,
        base_sha: &str,
        enqueued_at: DateTime<Utc>,
        enqueuer: &str,
    ) -> Result<String, ModelError> {
        let head_sha = self.new_sha();
        let at = self.now();
        let repo = self.repo_mut(repo_id)?;
        repo.commits.insert(head_sha.clone());
        repo.merge_groups.push(SimMergeGroup {
            pr_number: number,
            head_sha: head_sha.clone(),
            head_ref: format!("refs/heads/gh-readonly-queue/{base_branch}/pr-{number}-{base_sha}"),
            base_ref: format!("refs/heads/{base_branch}"),
            base_sha: base_sha.to_owned(),
            enqueued_at,
            created_at: at,
            enqueuer: enqueuer.to_owned(),
            destroyed: None,
        });
        Ok(head_sha)
    }

    /// Adds an open pull request to its base branch's merge queue: a merge
    /// group commit on top of the base branch (or of the last group queued
    /// ahead of it), `pull_request` `enqueued` and `merge_group`
    /// `checks_requested`. Returns the group's head SHA.
    ///
    /// As on GitHub, the pull request must meet its base branch's required
    /// checks first (they run again on the merge group).
    pub fn enqueue(&mut self, repo_id: i64, number: i64) -> Result<(String, Vec<Event>), ModelError> {
        let at = self.now();
        let repo = self.repo(repo_id)?;
        let pr = repo.pulls.get(&number).ok_or(ModelError::NoPullRequest(repo.full_name(), number))?;
        if pr.state != PrState::Open {
            return Err(ModelError::Invalid(format!("#{number} is not open")));
        }
        if pr.draft {
            return Err(ModelError::Invalid(format!("#{number} is a draft: drafts cannot be queued")));
        }
        if repo.queued_group(number).is_some() {
            return Err(ModelError::Invalid(format!("#{number} is already in the merge queue")));
        }
        let unmet = repo.unmet_requirements(&pr.base_ref, &pr.head_sha);
        if !unmet.is_empty() {
            return Err(ModelError::Invalid(format!(
                "#{number} cannot be queued: required checks have not passed: {}",
                describe(&unmet)
            )));
        }
        let base_branch = pr.base_ref.clone();
        let base_sha = repo
            .queue(&base_branch)
            .last()
            .map(|g| g.head_sha.clone())
            .or_else(|| repo.branch_heads.get(&base_branch).cloned())
            .unwrap_or_else(|| pr.base_sha.clone());
        let enqueuer = pr.author.clone();
        let head_sha = self.new_merge_group(repo_id, number, &base_branch, &base_sha, at, &enqueuer)?;
        let events = vec![
            pr_event(repo_id, number, "enqueued", Value::Null),
            merge_group_event(repo_id, "checks_requested", &head_sha, None),
        ];
        Ok((head_sha, events))
    }

    /// The merge group of pull request `number` passed: the pull request is
    /// merged (the base branch moves to the group's commit, which becomes the
    /// merge commit), `pull_request` `closed` and `merge_group` `destroyed`
    /// with reason `merged`.
    ///
    /// Stricter than a script would need, as GitHub is: the group must be at
    /// the front of its queue and every required check must pass on it.
    pub fn merge_group_passed(&mut self, repo_id: i64, number: i64) -> Result<Vec<Event>, ModelError> {
        let repo = self.repo(repo_id)?;
        let group = repo
            .queued_group(number)
            .ok_or_else(|| ModelError::Invalid(format!("#{number} is not in the merge queue")))?;
        let front = repo.queue(group.base_branch()).next().map(|g| g.pr_number);
        if front != Some(number) {
            return Err(ModelError::Invalid(format!(
                "#{number} is not at the front of the merge queue (#{} is)",
                front.unwrap_or_default()
            )));
        }
        let unmet = repo.unmet_requirements(group.base_branch(), &group.head_sha);
        if !unmet.is_empty() {
            return Err(ModelError::Invalid(format!(
                "the merge group of #{number} has not passed its required checks: {}",
                describe(&unmet)
            )));
        }
        let head_sha = group.head_sha.clone();
        self.destroy_group(repo_id, &head_sha, "merged")?;
        let closed = self.close_merging(repo_id, number, Some(head_sha.clone()))?;
        Ok(vec![closed, merge_group_event(repo_id, "destroyed", &head_sha, Some("merged"))])
    }

    /// Takes pull request `number` out of the merge queue: `pull_request`
    /// `dequeued` and `merge_group` `destroyed` with `reason` (`dequeued`, or
    /// `invalidated` when the group could no longer be built). The groups
    /// queued behind it were built on its commit, so GitHub rebuilds them:
    /// each is destroyed as `invalidated` and a new one requested.
    pub fn dequeue(&mut self, repo_id: i64, number: i64, reason: &str) -> Result<Vec<Event>, ModelError> {
        let reason: &'static str = match reason {
            "dequeued" => "dequeued",
            "invalidated" => "invalidated",
            other => {
                return Err(ModelError::Invalid(format!(
                    "'{other}' is not a reason to dequeue (dequeued or invalidated)"
                )))
            }
        };
        // `pull_request.dequeued`'s `reason` is a free string on GitHub; these
        // are the values seen for a manual removal and an unbuildable group.
        let pr_reason = if reason == "dequeued" { "MANUAL" } else { "MERGE_CONFLICT" };
        let repo = self.repo(repo_id)?;
        let group = repo
            .queued_group(number)
            .ok_or_else(|| ModelError::Invalid(format!("#{number} is not in the merge queue")))?
            .clone();
        let behind: Vec<SimMergeGroup> =
            repo.queue(group.base_branch()).skip_while(|g| g.pr_number != number).skip(1).cloned().collect();
        self.destroy_group(repo_id, &group.head_sha, reason)?;
        let mut events = vec![
            pr_event(repo_id, number, "dequeued", json!({ "reason": pr_reason })),
            merge_group_event(repo_id, "destroyed", &group.head_sha, Some(reason)),
        ];
        let mut base_sha = group.base_sha.clone();
        for stale in behind {
            self.destroy_group(repo_id, &stale.head_sha, "invalidated")?;
            events.push(merge_group_event(repo_id, "destroyed", &stale.head_sha, Some("invalidated")));
            let rebuilt = self.new_merge_group(
                repo_id,
                stale.pr_number,
                stale.base_branch(),
                &base_sha,
                stale.enqueued_at,
                &stale.enqueuer,
            )?;
            events.push(merge_group_event(repo_id, "checks_requested", &rebuilt, None));
            base_sha = rebuilt;
        }
        Ok(events)
    }

    /// [`Self::dequeue`] (reason `dequeued`) when `number` is queued; nothing otherwise.
    pub fn dequeue_if_queued(&mut self, repo_id: i64, number: i64) -> Result<Vec<Event>, ModelError> {
        if self.repo(repo_id)?.queued_group(number).is_some() {
            self.dequeue(repo_id, number, "dequeued")
        } else {
            Ok(Vec::new())
        }
    }

    fn destroy_group(&mut self, repo_id: i64, head_sha: &str, reason: &str) -> Result<(), ModelError> {
        let repo = self.repo_mut(repo_id)?;
        let group = repo
            .merge_groups
            .iter_mut()
            .find(|g| g.head_sha == head_sha && g.is_active())
            .ok_or_else(|| ModelError::Invalid(format!("no queued merge group {head_sha}")))?;
        group.destroyed = Some(reason.to_owned());
        Ok(())
    }

    /// Re-runs a completed check run as GitHub does: `check_run`
    /// `rerequested` for the old run, and a new run of the same name on the
    /// same commit (a new id, queued): `check_run` `created`. The old run
    /// stays, listed only under `filter=all` / `checkType: ALL`. Returns the new id.
    pub fn rerun_check_run(&mut self, run_id: i64) -> Result<(i64, Vec<Event>), ModelError> {
        let (repo_id, run) = self.run_mut(run_id)?;
        // GitHub offers a re-run once a run is completed; the `rerequested`
        // payload's schema requires status `completed`.
        if run.status != "completed" {
            return Err(ModelError::Invalid(format!(
                "check run {run_id} is not completed: it cannot be re-run"
            )));
        }
        let (sha, name) = (run.head_sha.clone(), run.name.clone());
        let (new_id, created) = self.create_check_run(repo_id, &sha, &name)?;
        let rerequested =
            Event { name: "check_run", action: "rerequested", repo_id, body: EventBody::CheckRun { run_id } };
        Ok((new_id, vec![rerequested, created]))
    }
}

fn merge_group_event(
    repo_id: i64,
    action: &'static str,
    head_sha: &str,
    reason: Option<&'static str>,
) -> Event {
    Event {
        name: "merge_group",
        action,
        repo_id,
        body: EventBody::MergeGroup { head_sha: head_sha.to_owned(), reason },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::NewPr;

    fn world() -> (World, i64) {
        let mut world = World::new(1, 42);
        world.add_installation(7, "acme");
        world.add_repo(7, 100, "acme", "widgets").expect("repo");
        (world, 100)
    }

    /// A status of commit `aaa…` for unit tests (here and in the GraphQL rollup's).
    pub(crate) fn status(id: i64, context: &str, state: &str) -> SimStatus {
        SimStatus {
            id,
            sha: "a".repeat(40),
            context: context.into(),
            state: state.into(),
            description: None,
            target_url: None,
            creator: "ci".into(),
            created_at: crate::model::now(),
            updated_at: crate::model::now(),
        }
    }

    #[test]
    fn the_combined_state_follows_githubs_documented_table() {
        assert_eq!(combined_state(&[]), "pending", "no statuses: pending");
        // Every combination of two contexts' latest states.
        for a in STATUS_STATES {
            for b in STATUS_STATES {
                let (x, y) = (status(1, "ci", a), status(2, "lint", b));
                let expected = if [a, b].iter().any(|s| *s == "error" || *s == "failure") {
                    "failure"
                } else if [a, b].contains(&"pending") {
                    "pending"
                } else {
                    "success"
                };
                assert_eq!(combined_state(&[&x, &y]), expected, "{a} + {b}");
            }
            let only = status(1, "ci", a);
            let alone = match a {
                "error" | "failure" => "failure",
                "pending" => "pending",
                _ => "success",
            };
            assert_eq!(combined_state(&[&only]), alone, "{a} alone");
        }
    }

    #[test]
    fn the_latest_status_of_a_context_is_its_state_and_every_status_is_kept() {
        let (mut world, repo) = world();
        world.open_pr(repo, NewPr::new("t", "alice")).expect("open");
        let sha = world.repo(repo).expect("repo").pulls[&1].head_sha.clone();
        world.create_status(repo, &sha, NewStatus::new("ci", "pending")).expect("status");
        world.create_status(repo, &sha, NewStatus::new("lint", "success")).expect("status");
        let (id, event) = world.create_status(repo, &sha, NewStatus::new("ci", "failure")).expect("status");
        assert_eq!((event.name, event.action), ("status", ""));
        assert!(id > i64::from(i32::MAX));
        let r = world.repo(repo).expect("repo");
        assert_eq!(r.statuses_for(&sha).len(), 3);
        let latest: Vec<(&str, &str)> =
            r.latest_statuses(&sha).iter().map(|s| (s.context.as_str(), s.state.as_str())).collect();
        assert_eq!(latest, [("ci", "failure"), ("lint", "success")]);
        assert_eq!(combined_state(&r.latest_statuses(&sha)), "failure");
        // GitHub's rules: known states, a known commit, short descriptions.
        assert!(world.create_status(repo, &sha, NewStatus::new("ci", "passed")).is_err());
        assert!(world.create_status(repo, &"0".repeat(40), NewStatus::new("ci", "success")).is_err());
        let mut long = NewStatus::new("ci", "success");
        long.description = Some("x".repeat(141));
        assert!(world.create_status(repo, &sha, long).is_err());
    }

    #[test]
    fn required_contexts_are_met_by_a_passing_latest_run_or_status() {
        let (mut world, repo) = world();
        world.open_pr(repo, NewPr::new("t", "alice")).expect("open");
        let sha = world.repo(repo).expect("repo").pulls[&1].head_sha.clone();
        let created = world.set_required_checks(repo, "main", &["build", "ci/jenkins"]).expect("set");
        assert_eq!((created.name, created.action), ("branch_protection_rule", "created"));
        let r = world.repo(repo).expect("repo");
        assert_eq!(r.required_contexts("main"), ["build", "ci/jenkins"]);
        assert!(r.required_contexts("develop").is_empty());
        assert_eq!(r.context_state(&sha, "build"), ContextState::Missing);

        let (build, _) = world.create_check_run(repo, &sha, "build").expect("run");
        assert_eq!(world.repo(repo).expect("repo").context_state(&sha, "build"), ContextState::Pending);
        world.complete_check_run(build, "failure").expect("complete");
        assert_eq!(world.repo(repo).expect("repo").context_state(&sha, "build"), ContextState::Failing);
        // A passing re-run meets it.
        let (rerun, _) = world.rerun_check_run(build).expect("rerun");
        world.complete_check_run(rerun, "success").expect("complete");
        world.create_status(repo, &sha, NewStatus::new("ci/jenkins", "success")).expect("status");
        let r = world.repo(repo).expect("repo");
        assert_eq!(r.context_state(&sha, "build"), ContextState::Passing);
        assert!(r.unmet_requirements("main", &sha).is_empty());

        let edited = world.set_required_checks(repo, "main", &["build"]).expect("edit");
        assert_eq!(edited.action, "edited");
        match edited.body {
            EventBody::BranchProtectionRule { changes, .. } => {
                assert_eq!(changes["required_status_checks"]["from"], json!(["build", "ci/jenkins"]));
            }
            other => panic!("{other:?}"),
        }
        assert!(world.set_required_checks(repo, "release/*", &["build"]).is_err());
    }

    #[test]
    fn a_merge_group_lives_from_enqueue_to_merge_and_the_groups_behind_are_rebuilt() {
        let (mut world, repo) = world();
        for title in ["a", "b", "c"] {
            world.open_pr(repo, NewPr::new(title, "alice")).expect("open");
        }
        world.set_required_checks(repo, "main", &["build"]).expect("protect");
        // The PR's own head must pass first.
        assert!(world.enqueue(repo, 1).is_err());
        for n in 1..=3 {
            let head = world.repo(repo).expect("repo").pulls[&n].head_sha.clone();
            let (run, _) = world.create_check_run(repo, &head, "build").expect("run");
            world.complete_check_run(run, "success").expect("complete");
        }
        let base_1 = world.repo(repo).expect("repo").pulls[&1].base_sha.clone();
        let (g1, events) = world.enqueue(repo, 1).expect("enqueue 1");
        let names: Vec<(&str, &str)> = events.iter().map(|e| (e.name, e.action)).collect();
        assert_eq!(names, [("pull_request", "enqueued"), ("merge_group", "checks_requested")]);
        let (g2, _) = world.enqueue(repo, 2).expect("enqueue 2");
        let (g3, _) = world.enqueue(repo, 3).expect("enqueue 3");
        assert!(world.enqueue(repo, 2).is_err(), "once");
        {
            let r = world.repo(repo).expect("repo");
            let first = r.merge_group(&g1).expect("group");
            assert_eq!(first.head_ref, format!("refs/heads/gh-readonly-queue/main/pr-1-{base_1}"));
            assert_eq!(first.base_ref, "refs/heads/main");
            // Stacked: each group is built on the one ahead.
            assert_eq!(r.merge_group(&g2).expect("group").base_sha, g1);
            assert_eq!(r.merge_group(&g3).expect("group").base_sha, g2);
            assert_eq!((r.queue_position(1), r.queue_position(3)), (Some(1), Some(3)));
            assert!(r.prs_with_head(&g1).next().is_none(), "a merge group is no PR's head");
        }
        // A check run on the group belongs to its branch.
        let (gate, _) = world.create_check_run(repo, &g1, "build").expect("run on the group");
        assert_eq!(
            world.repo(repo).expect("repo").check_runs[&gate].head_branch,
            format!("gh-readonly-queue/main/pr-1-{base_1}")
        );
        // Not before its required checks pass, and only from the front.
        assert!(world.merge_group_passed(repo, 1).is_err());
        world.complete_check_run(gate, "success").expect("complete");
        assert!(world.merge_group_passed(repo, 2).is_err(), "not at the front");
        assert!(world.push(repo, 2).is_err(), "queued: dequeue first");

        // #2 leaves: #3's group was built on #2's and is rebuilt on #1's.
        let events = world.dequeue(repo, 2, "dequeued").expect("dequeue");
        let names: Vec<(&str, &str)> = events.iter().map(|e| (e.name, e.action)).collect();
        assert_eq!(
            names,
            [
                ("pull_request", "dequeued"),
                ("merge_group", "destroyed"),
                ("merge_group", "destroyed"),
                ("merge_group", "checks_requested"),
            ]
        );
        assert!(matches!(&events[1].body, EventBody::MergeGroup { reason: Some("dequeued"), .. }));
        assert!(
            matches!(&events[2].body, EventBody::MergeGroup { reason: Some("invalidated"), head_sha, .. } if *head_sha == g3)
        );
        let g3b = world.repo(repo).expect("repo").queued_group(3).expect("rebuilt").head_sha.clone();
        assert_ne!(g3b, g3);
        assert_eq!(world.repo(repo).expect("repo").merge_group(&g3b).expect("group").base_sha, g1);

        let events = world.merge_group_passed(repo, 1).expect("merged");
        let names: Vec<(&str, &str)> = events.iter().map(|e| (e.name, e.action)).collect();
        assert_eq!(names, [("pull_request", "closed"), ("merge_group", "destroyed")]);
        let r = world.repo(repo).expect("repo");
        let pr = &r.pulls[&1];
        assert_eq!(pr.state, PrState::Merged);
        assert_eq!(pr.merge_commit_sha.as_deref(), Some(g1.as_str()));
        assert_eq!(r.branch_heads["main"], g1);
        assert_eq!(r.merge_group(&g1).expect("group").destroyed.as_deref(), Some("merged"));
        assert_eq!(r.queue_position(3), Some(1));
        assert!(world.dequeue(repo, 3, "merged").is_err(), "merged is not a reason to dequeue");
    }

    #[test]
    fn a_rerun_is_a_new_run_of_the_same_name_and_latest_shows_only_it() {
        let (mut world, repo) = world();
        world.open_pr(repo, NewPr::new("t", "alice")).expect("open");
        let sha = world.repo(repo).expect("repo").pulls[&1].head_sha.clone();
        let (build, _) = world.create_check_run(repo, &sha, "build").expect("run");
        let (lint, _) = world.create_check_run(repo, &sha, "lint").expect("run");
        assert!(world.rerun_check_run(build).is_err(), "not completed yet");
        world.complete_check_run(build, "failure").expect("complete");
        let (rerun, events) = world.rerun_check_run(build).expect("rerun");
        let shape: Vec<(&str, &str, &EventBody)> =
            events.iter().map(|e| (e.name, e.action, &e.body)).collect();
        assert_eq!(
            shape,
            [
                ("check_run", "rerequested", &EventBody::CheckRun { run_id: build }),
                ("check_run", "created", &EventBody::CheckRun { run_id: rerun }),
            ]
        );
        let r = world.repo(repo).expect("repo");
        let new = &r.check_runs[&rerun];
        assert_eq!(
            (new.name.as_str(), new.head_sha.as_str(), new.status.as_str()),
            ("build", sha.as_str(), "queued")
        );
        assert_eq!(new.check_suite_id, r.check_runs[&build].check_suite_id, "the same suite");
        let latest: Vec<i64> = latest_runs(r.runs_for(&sha)).iter().map(|run| run.id).collect();
        assert_eq!(latest, [lint, rerun]);
        assert_eq!(r.runs_for(&sha).count(), 3, "the old run stays");
    }

    #[test]
    fn the_clock_offset_moves_what_the_world_stamps_and_nothing_else() {
        let (mut world, repo) = world();
        world.open_pr(repo, NewPr::new("t", "alice")).expect("open");
        let sha = world.repo(repo).expect("repo").pulls[&1].head_sha.clone();
        world.set_clock_offset(chrono::Duration::hours(-2));
        let (run, _) = world.create_check_run(repo, &sha, "build").expect("run");
        world.set_clock_offset(chrono::Duration::zero());
        let started = world.repo(repo).expect("repo").check_runs[&run].started_at.expect("started");
        let ago = crate::model::now() - started;
        assert!(ago >= chrono::Duration::minutes(119) && ago <= chrono::Duration::minutes(121), "{ago}");
        let (status, _) = world.create_status(repo, &sha, NewStatus::new("ci", "success")).expect("status");
        let posted = world.repo(repo).expect("repo").statuses_for(&sha)[0].clone();
        assert_eq!(posted.id, status);
        assert!(crate::model::now() - posted.created_at < chrono::Duration::minutes(1));
    }
}
