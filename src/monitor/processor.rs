//! The processor: discovery → change detection → synchronization for one
//! repository, or many at once, with failure tracking per repository.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::Serialize;

use super::data::{CheckRunData, PrData, StatusData};
use super::detect::{Cause, ChangeDetector, ChangeKind, ChangeSet, PrField, SweepMark};
use super::discovery::{Discovered, PrDiscovery, PrHead, PrLookup, Requirement};
use super::error::{DetectionError, ErrorKind, ProcessingError, SyncError};
use super::sync::Synchronizer;
use super::versions::{StoredVersions, Versions};
use crate::db::repositories::{self, Repository};
use crate::db::{pull_requests, DbPool};
use crate::github::Purpose;
use crate::ids::{CommitSha, PullRequestNumber, RepositoryId};

/// The outcome of processing one repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessingResult {
    pub repository: String,
    pub prs_discovered: usize,
    pub check_runs_discovered: usize,
    /// Resources GitHub answered with 304 (nothing to detect).
    pub unchanged_resources: usize,
    pub new_prs: usize,
    pub updated_prs: usize,
    pub new_check_runs: usize,
    pub updated_check_runs: usize,
    pub statuses_discovered: usize,
    pub new_statuses: usize,
    pub updated_statuses: usize,
    /// Rows written by the synchronization.
    pub changes_synchronized: usize,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub errors: Vec<ProcessingError>,
    /// No step failed for the repository as a whole; per-PR errors are listed
    /// in `errors` without making it a failure.
    pub success: bool,
}

impl ProcessingResult {
    fn start(repo: &Repository) -> Self {
        let now = Utc::now();
        Self {
            repository: repo.full_name(),
            prs_discovered: 0,
            check_runs_discovered: 0,
            unchanged_resources: 0,
            new_prs: 0,
            updated_prs: 0,
            new_check_runs: 0,
            updated_check_runs: 0,
            statuses_discovered: 0,
            new_statuses: 0,
            updated_statuses: 0,
            changes_synchronized: 0,
            started_at: now,
            finished_at: now,
            errors: Vec::new(),
            success: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchProcessingResult {
    pub repositories_processed: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub results: Vec<ProcessingResult>,
}

impl BatchProcessingResult {
    /// Share of repositories processed successfully, 0.0 to 1.0 (1.0 for an empty batch).
    pub fn success_rate(&self) -> f64 {
        if self.repositories_processed == 0 {
            1.0
        } else {
            self.succeeded as f64 / self.repositories_processed as f64
        }
    }
}

pub const DEFAULT_MAX_CONCURRENT_REPOS: usize = 10;

/// Why a unit of work stopped short.
enum Stop {
    Failed(ProcessingError),
    /// Delivered data tied with a row written under it; nothing was written.
    Undecided,
}

/// How many times a unit of work detects its changes when the rows they
/// were compared with keep changing under it (each time, another job wrote
/// them); then it fails, and its job is retried later.
const MAX_DETECTIONS: usize = 3;

/// What one synchronization came to.
enum Attempt {
    Written,
    /// Nothing was written: detection compared with rows written since.
    Stale,
}

impl From<ProcessingError> for Stop {
    fn from(error: ProcessingError) -> Self {
        Self::Failed(error)
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everything: a backfill.
    Full,
    /// PRs updated since the watermark, the open PRs, and the checks of open heads.
    Sweep,
    /// One PR (after a webhook); its head's checks when asked or when the head is new.
    PullRequest { number: PullRequestNumber, with_checks: bool },
    /// The check runs of one commit.
    Commit { head_sha: CommitSha },
    /// A PR as a webhook delivered it: applied without a read when it is
    /// strictly newer than the stored row, read like `PullRequest` when it
    /// ties with it ([`SnapshotFit`]).
    DeliveredPullRequest { pr: Box<PrData>, with_checks: bool },
    /// Check runs of one commit as webhooks delivered them; any tie with a
    /// stored run makes it a read of the commit, like `Commit`.
    DeliveredCheckRuns { head_sha: CommitSha, runs: Vec<CheckRunData> },
    /// The commit statuses of one commit (its combined status).
    CommitStatuses { sha: CommitSha },
    /// Statuses of one commit as `status` webhooks delivered them; one that
    /// cannot be ordered against the stored row makes it `CommitStatuses`.
    DeliveredStatuses { sha: CommitSha, statuses: Vec<StatusData> },
    /// What the branches of the repository's open PRs require before merging
    /// (after a `branch_protection_rule` or `repository_ruleset` event).
    RequiredChecks,
    /// A sweep after a survey ([`super::survey`]): the PRs that differ, read
    /// one by one, with the check runs already read of `commits`; a PR read
    /// with a head not among them has its head's runs read too.
    Surveyed {
        numbers: Vec<PullRequestNumber>,
        commits: Vec<CommitSha>,
        runs: Vec<CheckRunData>,
        /// The statuses of `commits`, read with their runs.
        statuses: Vec<StatusData>,
        /// Commits whose runs the survey's read could not get.
        failed: Vec<String>,
        watermark: Option<chrono::DateTime<Utc>>,
        /// The merge queues the survey read with the open PRs.
        merge_queue: Option<crate::db::merge_groups::QueueSnapshot>,
    },
}

impl Target {
    /// The kind of webhook snapshot the target carries, if any.
    fn delivered_object(&self) -> Option<&'static str> {
        match self {
            Self::DeliveredPullRequest { .. } => Some("pull_request"),
            Self::DeliveredCheckRuns { .. } => Some("check_runs"),
            Self::DeliveredStatuses { .. } => Some("statuses"),
            _ => None,
        }
    }

    /// The read that stands in for delivered data GitHub must arbitrate.
    fn read_instead(&self) -> Option<Self> {
        match self {
            Self::DeliveredPullRequest { pr, with_checks } => {
                Some(Self::PullRequest { number: pr.number, with_checks: *with_checks })
            }
            Self::DeliveredCheckRuns { head_sha, .. } => Some(Self::Commit { head_sha: head_sha.clone() }),
            Self::DeliveredStatuses { sha, .. } => Some(Self::CommitStatuses { sha: sha.clone() }),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Sweep => "sweep",
            Self::PullRequest { .. } => "pull_request",
            Self::Commit { .. } => "commit",
            Self::DeliveredPullRequest { .. } => "delivered_pull_request",
            Self::DeliveredCheckRuns { .. } => "delivered_check_runs",
            Self::CommitStatuses { .. } => "commit_statuses",
            Self::DeliveredStatuses { .. } => "delivered_statuses",
            Self::RequiredChecks => "required_checks",
            Self::Surveyed { .. } => "surveyed",
        }
    }
}

/// Why the work runs and what it completes.
#[derive(Debug, Clone, Default)]
pub struct WorkContext {
    pub cause: Cause,
    /// The job to complete in the work's transaction.
    pub job: Option<crate::queue::JobRef>,
    pub delivery_id: Option<String>,
}

/// Whether the check runs of the gathered PRs' own heads are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum PrHeads {
    /// The target lists the heads to read itself.
    #[default]
    Listed,
    /// When detection finds a new PR or a new head: a new head brings new checks.
    IfNew,
    /// Always: the webhook's action asks for them.
    Always,
}

impl PrHeads {
    fn asked(with_checks: bool) -> Self {
        if with_checks {
            Self::Always
        } else {
            Self::IfNew
        }
    }

    fn wanted(self, changes: &ChangeSet) -> bool {
        let new_head = || {
            changes
                .prs
                .iter()
                .any(|r| r.kind == ChangeKind::New || r.changes.iter().any(|c| c.field == PrField::HeadSha))
        };
        match self {
            Self::Listed => false,
            Self::IfNew => new_head(),
            Self::Always => true,
        }
    }
}

/// What a target gathered for change detection, and what the change set
/// carries beside the changes (validators, gone PRs, the sweep mark, whether
/// the data are webhook snapshots).
#[derive(Default)]
struct Gathered {
    prs: Vec<PrData>,
    /// Commits whose check runs to read.
    heads: Vec<PrHead>,
    pr_heads: PrHeads,
    /// Check runs a webhook delivered, or a survey read: detected without a
    /// (further) read.
    delivered_runs: Option<Vec<CheckRunData>>,
    /// The commits whose runs `delivered_runs` holds in full.
    commits_in_hand: BTreeSet<CommitSha>,
    /// Whether the statuses of `heads` are read with their check runs: in
    /// sweeps and backfills. Webhook work leaves them to `status` events.
    with_statuses: bool,
    /// Commits whose statuses alone to read.
    status_heads: Vec<PrHead>,
    /// Which requirements of the open PRs' base branches are read.
    requirements: Requirements,
    changes: ChangeSet,
}

impl Gathered {
    fn new(ctx: &WorkContext) -> Self {
        let changes = ChangeSet {
            cause: ctx.cause,
            delivery_id: ctx.delivery_id.clone(),
            job: ctx.job.clone(),
            ..ChangeSet::default()
        };
        Self { changes, ..Self::default() }
    }

    /// Takes in a listing of PRs.
    fn absorb(&mut self, found: Discovered<PrData>, result: &mut ProcessingResult) {
        result.unchanged_resources += found.unchanged;
        result.errors.extend(found.errors);
        self.changes.validators.extend(found.validators);
        self.prs.extend(found.items);
    }

    /// Takes in a direct read of PR `number`; true when GitHub answered 304.
    fn absorb_lookup(&mut self, number: PullRequestNumber, lookup: PrLookup) -> bool {
        match lookup {
            PrLookup::Fresh { pr, validator } => {
                self.changes.validators.extend(validator);
                self.prs.push(*pr);
                false
            }
            PrLookup::Unchanged { validator } => {
                self.changes.validators.push(validator);
                true
            }
            PrLookup::Gone => {
                self.changes.gone_prs.push(number);
                false
            }
        }
    }

    /// Ends a full read of the repository's PRs: the watermark moves to
    /// GitHub's newest `updated_at`, and the checks are read of every PR that
    /// changed, whatever its state (a lost check-run event before a merge is
    /// healed here too), and of every stored open PR's head.
    ///
    /// PRs closed before `closed_cutoff` are stored without their checks.
    fn end_listing(
        &mut self,
        stored_open: Vec<(PullRequestNumber, String)>,
        closed_cutoff: Option<chrono::DateTime<Utc>>,
    ) {
        let watermark = self.prs.iter().map(|pr| pr.updated_at).max();
        self.changes.sweep = Some(SweepMark { watermark });
        let wanted = |pr: &&PrData| match (pr.closed_at, closed_cutoff) {
            (Some(closed_at), Some(cutoff)) => closed_at >= cutoff,
            _ => true,
        };
        self.heads.extend(self.prs.iter().filter(wanted).map(PrHead::from));
        self.heads.extend(
            stored_open
                .into_iter()
                .map(|(number, head_sha)| PrHead { number, head_sha: CommitSha(head_sha) }),
        );
    }

    /// [`Target::Commit`]: the check runs of one commit.
    fn commit(&mut self, head_sha: &CommitSha) {
        self.heads.push(PrHead { number: PullRequestNumber(0), head_sha: head_sha.clone() });
    }

    /// [`Target::DeliveredPullRequest`]: kept only where strictly newer than
    /// the stored row, decided under the repository's lock; a tie rolls the
    /// transaction back and `process` reads GitHub instead.
    fn delivered_pull_request(&mut self, pr: &PrData, with_checks: bool) {
        self.prs.push(pr.clone());
        self.changes.delivered_prs = true;
        self.pr_heads = PrHeads::asked(with_checks);
    }

    /// [`Target::DeliveredCheckRuns`]: likewise, for check runs.
    fn delivered_check_runs(&mut self, runs: &[CheckRunData]) {
        self.delivered_runs = Some(runs.to_vec());
        self.changes.delivered_check_runs = true;
    }

    /// [`Target::DeliveredStatuses`]: applied where newer than the stored
    /// status; one the stored row cannot be ordered with rolls back, and
    /// `process` reads the commit's statuses instead.
    fn delivered_statuses(&mut self, statuses: &[StatusData]) {
        self.changes.statuses = statuses.to_vec();
        self.changes.delivered_statuses = true;
    }

    /// Full reads, sweeps and surveys: statuses with the runs, and what the
    /// base branches require — every branch for a backfill or an operator's
    /// reconcile, those not read for [`REQUIREMENTS_REFRESH`] for a scheduled
    /// sweep (`branch_protection_rule` events keep them current between).
    fn whole_repository(&mut self, cause: Cause) {
        self.with_statuses = true;
        self.requirements = match cause {
            Cause::Sweep => Requirements::Stale,
            Cause::Backfill | Cause::Manual | Cause::Webhook => Requirements::All,
        };
    }
}

/// How long a branch's stored requirement serves scheduled sweeps before
/// they read it again. Reading it costs a request per branch even when
/// unchanged (GitHub answers an unprotected branch 404, which no ETag
/// spares), and the `branch_protection_rule` event reports changes anyway.
pub const REQUIREMENTS_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// Which base branches' requirements a unit of work reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Requirements {
    /// Only the open PRs' branches never read (webhook work).
    #[default]
    Unknown,
    /// Those never read or read longer than [`REQUIREMENTS_REFRESH`] ago.
    Stale,
    /// Every open PR's branch.
    All,
}

/// The fields of [`Target::Surveyed`], borrowed.
struct Surveyed<'a> {
    numbers: &'a [PullRequestNumber],
    commits: &'a [CommitSha],
    runs: &'a [CheckRunData],
    failed: &'a [String],
    watermark: Option<chrono::DateTime<Utc>>,
    merge_queue: Option<&'a crate::db::merge_groups::QueueSnapshot>,
}

pub struct PrProcessor {
    discovery: Arc<dyn PrDiscovery>,
    detector: Arc<dyn ChangeDetector>,
    synchronizer: Arc<dyn Synchronizer>,
    pool: DbPool,
    max_concurrent_repos: usize,
    /// PRs closed longer ago than this are stored without their check runs.
    checks_for_closed: Option<std::time::Duration>,
}

impl PrProcessor {
    pub fn new(
        discovery: Arc<dyn PrDiscovery>,
        detector: Arc<dyn ChangeDetector>,
        synchronizer: Arc<dyn Synchronizer>,
        pool: DbPool,
    ) -> Self {
        Self {
            discovery,
            detector,
            synchronizer,
            pool,
            max_concurrent_repos: DEFAULT_MAX_CONCURRENT_REPOS,
            checks_for_closed: None,
        }
    }

    /// Full reads and sweeps store PRs closed longer ago than `age` without
    /// their check runs: those no longer change, and reading them is most of
    /// what a backfill costs.
    pub fn with_checks_for_closed(mut self, age: std::time::Duration) -> Self {
        self.checks_for_closed = Some(age);
        self
    }

    fn closed_cutoff(&self) -> Option<chrono::DateTime<Utc>> {
        let age = chrono::Duration::from_std(self.checks_for_closed?).ok()?;
        Utc::now().checked_sub_signed(age)
    }

    pub fn with_max_concurrent_repos(mut self, max: usize) -> Self {
        self.max_concurrent_repos = max.max(1);
        self
    }

    /// Reads the whole repository from GitHub and writes what changed in one
    /// transaction: PRs newest update first, stopping where GitHub says
    /// nothing changed, then the checks of every fresh PR's head and every
    /// stored open PR's head.
    pub async fn process_repository(&self, repo: &Repository, cause: Cause) -> ProcessingResult {
        self.process(repo, Target::Full, WorkContext { cause, ..WorkContext::default() }).await
    }

    /// Runs one unit of work on `repo` and records its success or failure.
    #[tracing::instrument(skip_all, fields(repository = %repo.full_name(), cause = ctx.cause.as_str(), target = target.name()))]
    pub async fn process(&self, repo: &Repository, target: Target, ctx: WorkContext) -> ProcessingResult {
        let mut result = ProcessingResult::start(repo);
        let mut outcome = self.run(repo, &target, &ctx, &mut result).await;
        if let Some(object) = target.delivered_object() {
            let snapshot = match &outcome {
                Err(Stop::Undecided) => "undecided",
                Ok(()) if result.changes_synchronized > 0 => "applied",
                Ok(()) => "known",
                Err(Stop::Failed(_)) => "failed",
            };
            metrics::counter!("prmonitor_webhook_snapshots_total", "object" => object, "outcome" => snapshot)
                .increment(1);
        }
        if let (Err(Stop::Undecided), Some(read)) = (&outcome, target.read_instead()) {
            // The snapshot ties with the stored row (same second, other
            // content): nothing was written, and GitHub decides.
            tracing::info!("a delivered snapshot ties with the stored row; reading GitHub");
            result = ProcessingResult::start(repo);
            outcome = self.run(repo, &read, &ctx, &mut result).await;
        }
        result.finished_at = Utc::now();
        let outcome = outcome.map_err(|stop| match stop {
            Stop::Failed(error) => error,
            Stop::Undecided => ProcessingError::new(
                ErrorKind::SynchronizationFailure,
                repo,
                "a read target reported an undecided snapshot",
            ),
        });
        match outcome {
            Ok(()) => result.success = true,
            Err(error) => {
                tracing::warn!(%error, "repository processing failed");
                let reason = error.to_string();
                result.errors.insert(0, error);
                if let Err(e) = self.record_failure(repo.id, &reason).await {
                    tracing::error!(error = %e, "could not record the failure");
                }
            }
        }
        tracing::info!(
            prs = result.prs_discovered,
            check_runs = result.check_runs_discovered,
            unchanged = result.unchanged_resources,
            written = result.changes_synchronized,
            errors = result.errors.len(),
            "repository processed"
        );
        result
    }

    async fn run(
        &self,
        repo: &Repository,
        target: &Target,
        ctx: &WorkContext,
        result: &mut ProcessingResult,
    ) -> Result<(), Stop> {
        let purpose = ctx.cause.purpose();
        let mut work = Gathered::new(ctx);
        match target {
            Target::Full => {
                work.whole_repository(ctx.cause);
                self.read_full(repo, purpose, &mut work, result).await?
            }
            Target::Sweep => {
                work.whole_repository(ctx.cause);
                self.read_sweep(repo, purpose, &mut work, result).await?
            }
            Target::PullRequest { number, with_checks } => {
                self.read_pull_request(repo, *number, *with_checks, purpose, &mut work, result).await?
            }
            Target::Commit { head_sha } => work.commit(head_sha),
            Target::DeliveredPullRequest { pr, with_checks } => work.delivered_pull_request(pr, *with_checks),
            Target::DeliveredCheckRuns { runs, .. } => work.delivered_check_runs(runs),
            Target::CommitStatuses { sha } => {
                work.status_heads.push(PrHead { number: PullRequestNumber(0), head_sha: sha.clone() })
            }
            Target::DeliveredStatuses { statuses, .. } => work.delivered_statuses(statuses),
            Target::RequiredChecks => work.requirements = Requirements::All,
            Target::Surveyed { numbers, commits, runs, statuses, failed, watermark, merge_queue } => {
                work.whole_repository(ctx.cause);
                work.changes.statuses.extend(statuses.iter().cloned());
                let survey = Surveyed {
                    numbers,
                    commits,
                    runs,
                    failed,
                    watermark: *watermark,
                    merge_queue: merge_queue.as_ref(),
                };
                self.read_surveyed(repo, survey, purpose, &mut work, result).await
            }
        }
        self.detect_and_synchronize(repo, purpose, work, result).await
    }

    /// [`Target::Full`]: every PR, newest update first, stopping where GitHub
    /// says nothing changed; the checks of their heads and of every stored
    /// open PR's head.
    async fn read_full(
        &self,
        repo: &Repository,
        purpose: Purpose,
        work: &mut Gathered,
        result: &mut ProcessingResult,
    ) -> Result<(), ProcessingError> {
        work.absorb(self.discovery.discover_prs(repo, None, purpose).await?, result);
        let stored_open = self.stored_open_heads(repo).await?;
        work.end_listing(stored_open, self.closed_cutoff());
        Ok(())
    }

    /// [`Target::Sweep`]: the PRs updated since the watermark, the open PRs
    /// (a stored open PR GitHub no longer lists is read on its own), the
    /// checks of their heads and of the commits that may have changed unseen.
    async fn read_sweep(
        &self,
        repo: &Repository,
        purpose: Purpose,
        work: &mut Gathered,
        result: &mut ProcessingResult,
    ) -> Result<(), ProcessingError> {
        work.absorb(self.discovery.discover_prs(repo, repo.sweep_watermark, purpose).await?, result);
        // Read once: checked against GitHub's open list here, and their
        // heads' checks are read.
        let stored_open = self.stored_open_heads(repo).await?;
        let open = self.discovery.discover_open_prs(repo, purpose).await?;
        let listed: HashSet<PullRequestNumber> =
            open.prs.items.iter().chain(work.prs.iter()).map(|pr| pr.number).collect();
        work.absorb(open.prs, result);
        if open.complete {
            // Open here, absent from GitHub's open list: closed, merged or gone.
            for &(number, _) in stored_open.iter().filter(|(number, _)| !listed.contains(number)) {
                match self.discovery.discover_pr(repo, number, purpose).await {
                    Ok(lookup) => {
                        work.absorb_lookup(number, lookup);
                    }
                    Err(error) => result.errors.push(error),
                }
            }
        }
        work.end_listing(stored_open, self.closed_cutoff());
        // Commits that are no open PR's head but may have changed unseen: a
        // run's start sends no webhook, and a lost webhook on an old head
        // would otherwise never be healed.
        let commits = self.commits_to_recheck(repo).await?;
        work.heads.extend(
            commits
                .into_iter()
                .map(|head_sha| PrHead { number: PullRequestNumber(0), head_sha: CommitSha(head_sha) }),
        );
        work.changes.merge_queue = self.read_merge_queue(repo, purpose).await;
        Ok(())
    }

    /// The repository's merge queues, healing lost `merge_group` webhooks.
    /// A failed read leaves the stored groups as they are rather than failing
    /// the sweep: a GitHub without merge queues (an older Enterprise server)
    /// would otherwise fail every sweep, and the next one tries again.
    async fn read_merge_queue(
        &self,
        repo: &Repository,
        purpose: Purpose,
    ) -> Option<crate::db::merge_groups::QueueSnapshot> {
        match self.discovery.discover_merge_queue(repo, purpose).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::warn!(%error, "cannot read the merge queues; stored merge groups are kept as they are");
                metrics::counter!("prmonitor_merge_queue_read_failures_total").increment(1);
                None
            }
        }
    }

    /// [`Target::Surveyed`]: the PRs the survey found changed, read one by
    /// one (a failed read is an error of the result, the others go on); the
    /// check runs it already read; a PR whose head is not among them has
    /// its head's runs read too.
    async fn read_surveyed(
        &self,
        repo: &Repository,
        survey: Surveyed<'_>,
        purpose: Purpose,
        work: &mut Gathered,
        result: &mut ProcessingResult,
    ) {
        for &number in survey.numbers {
            match self.discovery.discover_pr(repo, number, purpose).await {
                Ok(lookup) => {
                    if work.absorb_lookup(number, lookup) {
                        result.unchanged_resources += 1;
                    }
                }
                Err(error) => result.errors.push(error),
            }
        }
        result.errors.extend(survey.failed.iter().map(|f| ProcessingError::discovery(repo, None, f)));
        work.pr_heads = PrHeads::IfNew;
        work.delivered_runs = Some(survey.runs.to_vec());
        work.commits_in_hand = survey.commits.iter().cloned().collect();
        work.changes.sweep = Some(SweepMark { watermark: survey.watermark });
        work.changes.merge_queue = survey.merge_queue.cloned();
    }

    /// [`Target::PullRequest`]: one PR, read on its own; its head's checks
    /// when asked, or when detection finds the head new.
    async fn read_pull_request(
        &self,
        repo: &Repository,
        number: PullRequestNumber,
        with_checks: bool,
        purpose: Purpose,
        work: &mut Gathered,
        result: &mut ProcessingResult,
    ) -> Result<(), ProcessingError> {
        if work.absorb_lookup(number, self.discovery.discover_pr(repo, number, purpose).await?) {
            result.unchanged_resources += 1;
        }
        work.pr_heads = PrHeads::asked(with_checks);
        Ok(())
    }

    /// What every target shares once it has read: change detection, the
    /// check runs detection calls for, and synchronization.
    async fn detect_and_synchronize(
        &self,
        repo: &Repository,
        purpose: Purpose,
        work: Gathered,
        result: &mut ProcessingResult,
    ) -> Result<(), Stop> {
        let Gathered {
            prs,
            mut heads,
            pr_heads,
            delivered_runs,
            commits_in_hand,
            with_statuses,
            status_heads,
            requirements,
            mut changes,
        } = work;
        result.prs_discovered = prs.len();
        self.detect_prs(repo, &prs, &mut changes).await?;
        if pr_heads.wanted(&changes) {
            heads.extend(prs.iter().map(PrHead::from));
        }
        let runs = match delivered_runs {
            Some(mut runs) => {
                // Heads detection asked for beyond the commits in hand (a
                // surveyed PR whose head moved again since the survey).
                heads.retain(|head| !commits_in_hand.contains(&head.head_sha));
                if let Some(more) =
                    self.read_check_runs(repo, heads, with_statuses, purpose, &mut changes, result).await
                {
                    runs.extend(more);
                }
                result.check_runs_discovered = runs.len();
                Some(runs)
            }
            None => self.read_check_runs(repo, heads, with_statuses, purpose, &mut changes, result).await,
        };
        if !status_heads.is_empty() {
            let found = self.discovery.discover_statuses_batch(repo, &status_heads, purpose).await;
            absorb_statuses(found, &mut changes, result);
        }
        self.read_requirements(repo, &prs, requirements, purpose, &mut changes, result).await?;
        result.statuses_discovered = changes.statuses.len();
        if let Some(runs) = &runs {
            self.detect_check_runs(repo, runs, &mut changes).await?;
        }
        let mut detections = 1;
        while let Attempt::Stale = self.synchronize(repo, &mut changes, result).await? {
            if detections == MAX_DETECTIONS {
                let context = format!("the stored rows changed under change detection {detections} times");
                return Err(Stop::Failed(ProcessingError::new(
                    ErrorKind::SynchronizationFailure,
                    repo,
                    context,
                )));
            }
            // Another job wrote the rows detection compared with: its
            // decisions would be stale, so the same detector decides again.
            tracing::info!(detections, "stored rows changed since detection; detecting again");
            detections += 1;
            self.detect_prs(repo, &prs, &mut changes).await?;
            if let Some(runs) = &runs {
                self.detect_check_runs(repo, runs, &mut changes).await?;
            }
        }
        Ok(())
    }

    /// The detector's decisions on `prs`, with the versions of the stored
    /// rows it compared them with, read first.
    async fn detect_prs(
        &self,
        repo: &Repository,
        prs: &[PrData],
        changes: &mut ChangeSet,
    ) -> Result<(), ProcessingError> {
        let versions = if prs.is_empty() {
            Versions::default()
        } else {
            let mut conn = self.pool.get().await.map_err(|e| stored_read_failure(repo, e))?;
            let numbers = prs.iter().map(|pr| pr.number).collect();
            Versions::of_prs(&mut conn, repo.id, numbers).await.map_err(|e| stored_read_failure(repo, e))?
        };
        changes.prs = self.detector.detect_pr_changes(repo.id, prs).await.map_err(|e| detection(repo, e))?;
        changes.compared.get_or_insert_with(StoredVersions::default).prs = Some(versions);
        Ok(())
    }

    /// Likewise for check runs.
    async fn detect_check_runs(
        &self,
        repo: &Repository,
        runs: &[CheckRunData],
        changes: &mut ChangeSet,
    ) -> Result<(), ProcessingError> {
        let versions = if runs.is_empty() {
            Versions::default()
        } else {
            let mut conn = self.pool.get().await.map_err(|e| stored_read_failure(repo, e))?;
            let ids = runs.iter().map(|run| run.github_id).collect();
            Versions::of_check_runs(&mut conn, ids).await.map_err(|e| stored_read_failure(repo, e))?
        };
        changes.check_runs =
            self.detector.detect_check_run_changes(repo.id, runs).await.map_err(|e| detection(repo, e))?;
        changes.compared.get_or_insert_with(StoredVersions::default).check_runs = Some(versions);
        Ok(())
    }

    /// What the base branches of the repository's open PRs (stored, and
    /// among `prs`) require, as `which` says; a branch GitHub says is
    /// unprotected requires nothing. A failed read is an error of the result.
    async fn read_requirements(
        &self,
        repo: &Repository,
        prs: &[PrData],
        which: Requirements,
        purpose: Purpose,
        changes: &mut ChangeSet,
        result: &mut ProcessingResult,
    ) -> Result<(), ProcessingError> {
        let mut branches: BTreeSet<String> =
            prs.iter().filter(|pr| pr.state == "open").map(|pr| pr.base_branch.clone()).collect();
        let stored = {
            let mut conn = self.pool.get().await.map_err(|e| stored_read_failure(repo, e))?;
            if which != Requirements::Unknown {
                branches.extend(
                    pull_requests::open_base_branches(&mut conn, repo.id)
                        .await
                        .map_err(|e| stored_read_failure(repo, e))?,
                );
            }
            if branches.is_empty() {
                return Ok(());
            }
            crate::db::statuses::requirements(&mut conn, repo.id)
                .await
                .map_err(|e| stored_read_failure(repo, e))?
        };
        let fresh_since = Utc::now() - chrono::Duration::from_std(REQUIREMENTS_REFRESH).unwrap_or_default();
        let keep: HashSet<String> = stored
            .into_iter()
            .filter(|r| match which {
                Requirements::Unknown => true,
                Requirements::Stale => r.fetched_at > fresh_since,
                Requirements::All => false,
            })
            .map(|r| r.branch)
            .collect();
        let wanted = branches.iter().map(String::as_str).filter(|b| !keep.contains(*b));
        self.read_branches(repo, wanted, purpose, changes, result).await;
        Ok(())
    }

    /// What each of `branches` requires, into `changes`; a failed read is an
    /// error of the result.
    async fn read_branches(
        &self,
        repo: &Repository,
        branches: impl Iterator<Item = &str>,
        purpose: Purpose,
        changes: &mut ChangeSet,
        result: &mut ProcessingResult,
    ) {
        for branch in branches {
            match self.discovery.discover_requirement(repo, branch, purpose).await {
                Ok(Requirement::Fresh { required, validator }) => {
                    changes.validators.extend(validator);
                    changes.required.push(required);
                }
                Ok(Requirement::Unchanged { validator }) => {
                    result.unchanged_resources += 1;
                    changes.validators.push(validator);
                }
                Err(error) => result.errors.push(error),
            }
        }
    }

    /// The check runs of `heads` (and their statuses when `with_statuses`,
    /// added to `changes`), or `None` when there are none to read.
    async fn read_check_runs(
        &self,
        repo: &Repository,
        mut heads: Vec<PrHead>,
        with_statuses: bool,
        purpose: Purpose,
        changes: &mut ChangeSet,
        result: &mut ProcessingResult,
    ) -> Option<Vec<CheckRunData>> {
        heads.sort();
        heads.dedup();
        if heads.is_empty() {
            return None;
        }
        let (runs, statuses) =
            self.discovery.discover_commit_reports(repo, &heads, purpose, with_statuses).await;
        absorb_statuses(statuses, changes, result);
        result.check_runs_discovered = runs.items.len();
        result.unchanged_resources += runs.unchanged;
        result.errors.extend(runs.errors);
        changes.validators.extend(runs.validators);
        Some(runs.items)
    }

    /// Writes `changes` and counts what was written.
    async fn synchronize(
        &self,
        repo: &Repository,
        changes: &mut ChangeSet,
        result: &mut ProcessingResult,
    ) -> Result<Attempt, Stop> {
        // A read that failed (after its retries) must not end the job as done:
        // what was read is written, and the job fails so it runs again.
        changes.incomplete = !result.errors.is_empty();
        let report = match self.synchronizer.synchronize_changes(repo.id, changes).await {
            Ok(report) => report,
            Err(SyncError::Stale) => return Ok(Attempt::Stale),
            Err(SyncError::Undecided(_)) => return Err(Stop::Undecided),
            Err(e) => {
                return Err(Stop::Failed(ProcessingError::new(ErrorKind::SynchronizationFailure, repo, e)))
            }
        };
        result.new_prs = report.new_prs;
        result.updated_prs = report.updated_prs;
        result.new_check_runs = report.new_check_runs;
        result.updated_check_runs = report.updated_check_runs;
        result.new_statuses = report.new_statuses;
        result.updated_statuses = report.updated_statuses;
        result.changes_synchronized = report.written;
        // Committed: what the transaction wrote is counted, and what a
        // sweep or reconcile wrote counted again as repairs.
        let repairs = changes.cause.repairs();
        for (kind, n) in report.by_kind() {
            if n > 0 {
                metrics::counter!("prmonitor_sync_changes_total", "kind" => kind).increment(n as u64);
                if repairs {
                    metrics::counter!("prmonitor_sweep_repairs_total", "kind" => kind).increment(n as u64);
                }
            }
        }
        // Committed: each delivery the job folded in is in the database now.
        if let Some(deliveries) = &report.completed_deliveries {
            for age in deliveries.ages_now() {
                metrics::histogram!("prmonitor_delivery_to_commit_seconds").record(age.as_secs_f64());
            }
        }
        if changes.incomplete {
            return Err(Stop::Failed(result.errors.remove(0)));
        }
        Ok(Attempt::Written)
    }

    async fn stored_open_heads(
        &self,
        repo: &Repository,
    ) -> Result<Vec<(PullRequestNumber, String)>, ProcessingError> {
        let mut conn = self.pool.get().await.map_err(|e| stored_read_failure(repo, e))?;
        pull_requests::open_heads(&mut conn, repo.id).await.map_err(|e| stored_read_failure(repo, e))
    }

    /// Commits with unfinished stored runs, and heads replaced since the last
    /// sweep (within the last day, before the first).
    async fn commits_to_recheck(&self, repo: &Repository) -> Result<Vec<String>, ProcessingError> {
        let mut conn = self.pool.get().await.map_err(|e| stored_read_failure(repo, e))?;
        let mut commits = pull_requests::unfinished_check_heads(&mut conn, repo.id)
            .await
            .map_err(|e| stored_read_failure(repo, e))?;
        let since = repo.last_swept_at.unwrap_or_else(|| Utc::now() - chrono::Duration::days(1));
        let replaced = pull_requests::replaced_heads(&mut conn, repo.id, since)
            .await
            .map_err(|e| stored_read_failure(repo, e))?;
        commits.extend(replaced);
        Ok(commits)
    }

    async fn record_failure(&self, repository_id: RepositoryId, reason: &str) -> Result<(), String> {
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        repositories::record_failure(&mut conn, repository_id, reason).await.map_err(|e| e.to_string())
    }

    /// Processes repositories, at most `max_concurrent_repos` at once; one
    /// repository's failure never stops the others.
    pub async fn process_repositories(&self, repos: &[Repository], cause: Cause) -> BatchProcessingResult {
        let total = repos.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<ProcessingResult> = futures_util::stream::iter(repos)
            .map(|repo| async {
                let result = self.process_repository(repo, cause).await;
                let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::info!(done, total, repository = %result.repository, prs = result.prs_discovered, written = result.changes_synchronized, "batch progress");
                result
            })
            .buffered(self.max_concurrent_repos)
            .collect()
            .await;
        let succeeded = results.iter().filter(|r| r.success).count();
        BatchProcessingResult {
            repositories_processed: results.len(),
            succeeded,
            failed: results.len() - succeeded,
            results,
        }
    }
}

/// Takes in statuses read from GitHub.
fn absorb_statuses(found: Discovered<StatusData>, changes: &mut ChangeSet, result: &mut ProcessingResult) {
    result.unchanged_resources += found.unchanged;
    result.errors.extend(found.errors);
    changes.validators.extend(found.validators);
    changes.statuses.extend(found.items);
}

/// Change detection failed.
fn detection(repo: &Repository, error: DetectionError) -> ProcessingError {
    ProcessingError::new(ErrorKind::ChangeDetectionFailure, repo, error)
}

/// Reading the stored rows a unit of work compares against failed.
fn stored_read_failure(repo: &Repository, error: impl std::fmt::Display) -> ProcessingError {
    ProcessingError::new(ErrorKind::ChangeDetectionFailure, repo, error)
}
