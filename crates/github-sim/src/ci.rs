//! The simulator's CI verbs beyond check runs: commit statuses, required
//! checks, merge queues, re-runs and the world's clock. Each sends the
//! webhooks GitHub sends for it; `Simulator::mutate_silently` with the
//! [`World`] method of the same name changes the world without them.

use chrono::{DateTime, Utc};

use crate::model::{ModelError, NewStatus, World};
use crate::Simulator;

impl Simulator {
    /// Posts a commit status on `sha` (the `status` webhook); returns its id.
    /// `state`: `error`, `failure`, `pending` or `success`. The status has no
    /// `target_url`; [`Self::post_status`] sets every field.
    pub fn set_status(
        &self,
        repo: &str,
        sha: &str,
        context: &str,
        state: &str,
        description: Option<&str>,
    ) -> Result<i64, ModelError> {
        let mut status = NewStatus::new(context, state);
        status.description = description.map(str::to_owned);
        self.post_status(repo, sha, status)
    }

    /// Posts a commit status with every field given; returns its id.
    pub fn post_status(&self, repo: &str, sha: &str, status: NewStatus) -> Result<i64, ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.create_status(repo_id, sha, status).map(|(id, e)| (id, vec![e])))
    }

    /// Sets the check-run names and status contexts branch protection
    /// requires on `branch` (`branch_protection_rule` `created`, then `edited`).
    pub fn set_required_checks(&self, repo: &str, branch: &str, contexts: &[&str]) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.set_required_checks(repo_id, branch, contexts).map(|e| ((), vec![e])))
    }

    /// Adds PR `number` to its base branch's merge queue (`pull_request`
    /// `enqueued`, `merge_group` `checks_requested`); returns the merge
    /// group's head SHA, on which check runs and statuses may then be made.
    pub fn enqueue(&self, repo: &str, number: i64) -> Result<String, ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.enqueue(repo_id, number))
    }

    /// PR `number`'s merge group passed: the PR is merged (`pull_request`
    /// `closed`) and the group destroyed (`merge_group` `destroyed`, reason `merged`).
    pub fn merge_group_passed(&self, repo: &str, number: i64) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.merge_group_passed(repo_id, number).map(|e| ((), e)))
    }

    /// Takes PR `number` out of the merge queue, `reason` `dequeued` or
    /// `invalidated` (`pull_request` `dequeued`, `merge_group` `destroyed`,
    /// and the groups behind it rebuilt).
    pub fn dequeue(&self, repo: &str, number: i64, reason: &str) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.dequeue(repo_id, number, reason).map(|e| ((), e)))
    }

    /// Re-runs a completed check run (`check_run` `rerequested` for it,
    /// `created` for the new run); returns the new run's id.
    pub fn rerun_check_run(&self, run_id: i64) -> Result<i64, ModelError> {
        self.mutate(|w| w.rerun_check_run(run_id))
    }

    /// Moves this simulator's clock: every time the world stamps from now on
    /// (PR, check run, status and merge group times) is real time plus
    /// `offset`; negative is the past. Webhook and token times stay real.
    /// Gives or takes away the installations' "Administration: read"
    /// permission, without which GitHub refuses branch protection (403).
    pub fn set_administration(&self, granted: bool) {
        self.shared.administration.store(granted, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        self.lock_world().set_clock_offset(offset);
    }

    /// The world's time now (real time plus the clock offset).
    pub fn now(&self) -> DateTime<Utc> {
        self.world(World::now)
    }
}
