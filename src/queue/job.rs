//! What a job asks the worker to do, as stored in `jobs.kind` and `jobs.payload`.

use crate::ids::{CommitSha, GithubRepoId, InstallationId, PullRequestNumber, RepositoryId};
use serde::{Deserialize, Serialize};

/// Attempts before a job is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Targeted discovery after a webhook (one PR, one commit's checks, one repository).
    Event,
    /// Register or deactivate an installation's repositories.
    Install,
    /// Full re-read of one repository: the backstop for lost events.
    Sweep,
    /// First full read of a newly registered repository.
    Backfill,
    /// The sweeps of one installation's due repositories, surveyed through
    /// GraphQL many repositories a query.
    Survey,
    /// List the App's installations: each one's repositories are synced (an
    /// `installation` webhook lost while the service was down is recovered).
    Installations,
    /// Look for deliveries GitHub made (or failed to make) that were never
    /// stored, in the App's deliveries API, and store them.
    RecoverDeliveries,
}

impl JobKind {
    /// Every kind: what `/metrics` reports the queue by.
    pub const ALL: [Self; 7] = [
        Self::Event,
        Self::Install,
        Self::Sweep,
        Self::Backfill,
        Self::Survey,
        Self::Installations,
        Self::RecoverDeliveries,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "event" => Some(Self::Event),
            "install" => Some(Self::Install),
            "sweep" => Some(Self::Sweep),
            "backfill" => Some(Self::Backfill),
            "survey" => Some(Self::Survey),
            "installations" => Some(Self::Installations),
            "recover_deliveries" => Some(Self::RecoverDeliveries),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Install => "install",
            Self::Sweep => "sweep",
            Self::Backfill => "backfill",
            Self::Survey => "survey",
            Self::Installations => "installations",
            Self::RecoverDeliveries => "recover_deliveries",
        }
    }
}

/// A repository as a webhook names it: GitHub's id, `owner/name`, and the
/// installation whose token reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub github_id: GithubRepoId,
    pub full_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<InstallationId>,
}

/// The resource an event job must re-read from GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum EventTarget {
    PullRequest {
        repository: RepoRef,
        number: PullRequestNumber,
        /// Also read the head SHA's check runs (opened, reopened, synchronize).
        /// Written only when true, so coalescing never clears it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        with_checks: bool,
    },
    /// The check runs of one commit, attached to every PR whose head it is.
    CommitChecks { repository: RepoRef, head_sha: CommitSha },
    /// The commit statuses of one commit (`status` events).
    CommitStatuses { repository: RepoRef, sha: CommitSha },
    /// What the repository's branches require before merging
    /// (`branch_protection_rule`, `repository_ruleset`).
    RequiredChecks { repository: RepoRef },
    /// A merge queue's group, by its commit (`merge_group` events): the
    /// deliveries of one group coalesce, and the worker applies them.
    MergeGroup { repository: RepoRef, head_sha: CommitSha },
    /// A `repository` event: renamed, transferred, deleted, archived, ...
    Repository {
        repository: RepoRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
    },
}

impl EventTarget {
    /// Deliveries with the same key share one pending job.
    pub fn coalesce_key(&self) -> String {
        match self {
            Self::PullRequest { repository, number, .. } => format!("pr:{}:{number}", repository.github_id),
            Self::CommitChecks { repository, head_sha } => {
                format!("checks:{}:{head_sha}", repository.github_id)
            }
            Self::CommitStatuses { repository, sha } => format!("statuses:{}:{sha}", repository.github_id),
            Self::RequiredChecks { repository } => format!("required:{}", repository.github_id),
            Self::MergeGroup { repository, head_sha } => {
                format!("merge_group:{}:{head_sha}", repository.github_id)
            }
            Self::Repository { repository, .. } => format!("repository:{}", repository.github_id),
        }
    }
}

/// The start of a sweep's coalescing key; the rest is `repositories.id`.
/// The scheduler's query matches keys by these prefixes, so they are
/// defined once.
pub(super) const SWEEP_KEY_PREFIX: &str = "sweep:";
/// The one key of the installations listing.
pub(super) const INSTALLATIONS_KEY: &str = "installations";
/// The one key of gap recovery.
pub(super) const RECOVER_DELIVERIES_KEY: &str = "recover_deliveries";
/// As [`SWEEP_KEY_PREFIX`], for backfills.
pub(super) const BACKFILL_KEY_PREFIX: &str = "backfill:";

/// An `installation` or `installation_repositories` event. The worker re-reads
/// the installation's repositories, so deliveries for one installation coalesce;
/// `action` is the latest one received, a hint rather than the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationTarget {
    pub installation_id: InstallationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A sweep or backfill of one stored repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryJob {
    /// `repositories.id`.
    pub repository_id: RepositoryId,
    /// Operator-requested (reconcile): recorded as the cause in the history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

/// The sweeps of one installation's due repositories (`None`: the
/// repositories read with the configured token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<InstallationId>,
}

/// A run of gap recovery. `since` (an operator's `deliveries recover
/// --since`) examines back to that time instead of the stored watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub coalesce_key: Option<String>,
    pub payload: serde_json::Value,
    pub max_attempts: i32,
}

/// One constructor per kind: each knows its kind's coalescing key and
/// payload, and starts at [`DEFAULT_MAX_ATTEMPTS`].
impl NewJob {
    /// Targeted discovery of what a webhook names; one pending per target.
    pub fn event(target: &EventTarget) -> Self {
        Self::keyed(JobKind::Event, target.coalesce_key(), target)
    }

    /// The repositories of one installation; one pending per installation.
    pub fn installation(target: &InstallationTarget) -> Self {
        Self::keyed(JobKind::Install, format!("installation:{}", target.installation_id), target)
    }

    /// A full re-read of one stored repository; one pending per repository.
    pub fn sweep(target: &RepositoryJob) -> Self {
        Self::keyed(JobKind::Sweep, format!("{SWEEP_KEY_PREFIX}{}", target.repository_id), target)
    }

    /// The first full read of one stored repository; one pending per
    /// repository, apart from its sweeps.
    pub fn backfill(target: &RepositoryJob) -> Self {
        Self::keyed(JobKind::Backfill, format!("{BACKFILL_KEY_PREFIX}{}", target.repository_id), target)
    }

    /// The sweeps of one installation's due repositories; one pending per installation.
    pub fn survey(target: &SurveyJob) -> Self {
        let key = match target.installation_id {
            Some(id) => format!("survey:{id}"),
            None => "survey:token".to_owned(),
        };
        Self::keyed(JobKind::Survey, key, target)
    }

    /// Lists the App's installations; one pending for all instances.
    pub fn installations() -> Self {
        Self::keyed(JobKind::Installations, INSTALLATIONS_KEY.to_owned(), &serde_json::json!({}))
    }

    /// Gap recovery; one pending for all instances (coalesced payloads
    /// merge: a pending run keeps a `since` it was asked for, and a later
    /// `since` replaces it).
    pub fn recover_deliveries(target: &RecoveryJob) -> Self {
        Self::keyed(JobKind::RecoverDeliveries, RECOVER_DELIVERIES_KEY.to_owned(), target)
    }

    /// The operator's limit (`PRMONITOR_JOB_MAX_ATTEMPTS`) instead of the
    /// default. It is stamped on the job when enqueued, so a job keeps the
    /// limit it was enqueued with.
    pub fn with_max_attempts(self, max_attempts: i32) -> Self {
        Self { max_attempts, ..self }
    }

    fn keyed<T: Serialize>(kind: JobKind, key: String, payload: &T) -> Self {
        Self {
            kind,
            coalesce_key: Some(key),
            payload: to_payload(payload),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

fn to_payload<T: Serialize>(value: &T) -> serde_json::Value {
    // These types hold only strings, numbers and booleans: serialization cannot fail.
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoRef {
        RepoRef {
            github_id: GithubRepoId(1296269),
            full_name: "octocat/Hello-World".into(),
            installation_id: Some(InstallationId(7)),
        }
    }

    #[test]
    fn every_kind_is_listed_once_and_parses_back() {
        let names: std::collections::HashSet<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), JobKind::ALL.len());
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
            // A kind missing from ALL would be missing from /metrics: this
            // match stops compiling when a kind is added, pointing here.
            match kind {
                JobKind::Event
                | JobKind::Install
                | JobKind::Sweep
                | JobKind::Backfill
                | JobKind::Survey
                | JobKind::Installations
                | JobKind::RecoverDeliveries => {}
            }
        }
    }

    #[test]
    fn event_payloads_round_trip_and_omit_false_flags() {
        let target =
            EventTarget::PullRequest { repository: repo(), number: PullRequestNumber(5), with_checks: false };
        let job = NewJob::event(&target);
        assert_eq!(job.coalesce_key.as_deref(), Some("pr:1296269:5"));
        assert!(job.payload.get("with_checks").is_none(), "a false flag must not be written");
        let back: EventTarget = serde_json::from_value(job.payload).expect("round trip");
        assert_eq!(back, target);

        let with_checks =
            EventTarget::PullRequest { repository: repo(), number: PullRequestNumber(5), with_checks: true };
        assert_eq!(NewJob::event(&with_checks).payload["with_checks"], true);
    }

    #[test]
    fn each_kind_builds_its_own_key_and_payload() {
        let repository = RepositoryJob { repository_id: RepositoryId(42), manual: true };
        let cases = [
            (
                NewJob::event(&EventTarget::PullRequest {
                    repository: repo(),
                    number: PullRequestNumber(5),
                    with_checks: true,
                }),
                JobKind::Event,
                "pr:1296269:5",
            ),
            (
                NewJob::event(&EventTarget::CommitChecks { repository: repo(), head_sha: "abc123".into() }),
                JobKind::Event,
                "checks:1296269:abc123",
            ),
            (
                NewJob::event(&EventTarget::MergeGroup { repository: repo(), head_sha: "abc123".into() }),
                JobKind::Event,
                "merge_group:1296269:abc123",
            ),
            (
                NewJob::event(&EventTarget::Repository {
                    repository: repo(),
                    action: Some("renamed".into()),
                }),
                JobKind::Event,
                "repository:1296269",
            ),
            (
                NewJob::installation(&InstallationTarget {
                    installation_id: InstallationId(7),
                    action: None,
                }),
                JobKind::Install,
                "installation:7",
            ),
            (NewJob::sweep(&repository), JobKind::Sweep, "sweep:42"),
            (NewJob::backfill(&repository), JobKind::Backfill, "backfill:42"),
        ];
        // The formats are stored in pending jobs: changing one would let a
        // job of the old format and one of the new run side by side.
        for (job, kind, key) in cases {
            assert_eq!((job.kind, job.coalesce_key.as_deref()), (kind, Some(key)));
            assert_eq!(job.max_attempts, DEFAULT_MAX_ATTEMPTS);
        }
        let sweep = NewJob::sweep(&repository);
        assert_eq!(serde_json::from_value::<RepositoryJob>(sweep.payload).expect("round trip"), repository);
    }

    #[test]
    fn sweep_and_backfill_keys_are_their_prefix_and_the_repository_id() {
        let target = RepositoryJob { repository_id: RepositoryId(9001), manual: false };
        assert_eq!(NewJob::sweep(&target).coalesce_key, Some(format!("{SWEEP_KEY_PREFIX}9001")));
        assert_eq!(NewJob::backfill(&target).coalesce_key, Some(format!("{BACKFILL_KEY_PREFIX}9001")));
        assert_ne!(NewJob::sweep(&target).coalesce_key, NewJob::backfill(&target).coalesce_key);
    }

    #[test]
    fn the_operators_limit_replaces_the_default_and_nothing_else() {
        let job = NewJob::sweep(&RepositoryJob { repository_id: RepositoryId(1), manual: false });
        let limited = job.clone().with_max_attempts(3);
        assert_eq!(limited, NewJob { max_attempts: 3, ..job });
    }

    #[test]
    fn keys_separate_prs_commits_repositories_and_installations() {
        let keys = [
            NewJob::event(&EventTarget::PullRequest {
                repository: repo(),
                number: PullRequestNumber(1),
                with_checks: false,
            }),
            NewJob::event(&EventTarget::PullRequest {
                repository: repo(),
                number: PullRequestNumber(2),
                with_checks: false,
            }),
            NewJob::event(&EventTarget::CommitChecks { repository: repo(), head_sha: "abc".into() }),
            NewJob::event(&EventTarget::MergeGroup { repository: repo(), head_sha: "abc".into() }),
            NewJob::event(&EventTarget::Repository { repository: repo(), action: None }),
            NewJob::installation(&InstallationTarget {
                installation_id: InstallationId(1296269),
                action: None,
            }),
        ]
        .map(|job| job.coalesce_key.expect("keyed"));
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
    }
}
