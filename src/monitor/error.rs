//! The pipeline's errors: what each step reports, and [`ProcessingError`],
//! what a unit of work reports about a repository. Every step returns them,
//! so they depend on no step.

use serde::Serialize;

use crate::db::repositories::Repository;
use crate::ids::PullRequestNumber;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    DiscoveryFailure,
    ChangeDetectionFailure,
    SynchronizationFailure,
}

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind:?} in {repository}{}: {context}", pr_number.map(|n| format!(" #{n}")).unwrap_or_default())]
pub struct ProcessingError {
    pub kind: ErrorKind,
    pub repository: String,
    pub pr_number: Option<PullRequestNumber>,
    pub check_run_id: Option<i64>,
    pub context: String,
}

impl ProcessingError {
    /// A failure of `kind` for the whole of `repo`.
    pub fn new(kind: ErrorKind, repo: &Repository, context: impl std::fmt::Display) -> Self {
        Self {
            kind,
            repository: repo.full_name(),
            pr_number: None,
            check_run_id: None,
            context: context.to_string(),
        }
    }

    /// Reading GitHub failed, for one PR when `pr_number` says which.
    pub fn discovery(
        repo: &Repository,
        pr_number: Option<PullRequestNumber>,
        context: impl std::fmt::Display,
    ) -> Self {
        Self { pr_number, ..Self::new(ErrorKind::DiscoveryFailure, repo, context) }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("change detection failed: {0}")]
pub struct DetectionError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("synchronization failed and was rolled back: {0}")]
    Failed(#[from] diesel::result::Error),
    /// A webhook snapshot ties with a row written since it was checked (by
    /// a concurrent job): nothing was written; read GitHub and try again.
    #[error("a delivered snapshot ties with the stored row; {0} need a read")]
    Undecided(usize),
    /// Rows change detection compared with were written since (by a
    /// concurrent job): nothing was written; detect again.
    #[error("stored rows changed since change detection compared with them")]
    Stale,
}
