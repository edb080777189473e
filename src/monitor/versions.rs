//! The versions of the stored rows change detection compared with.
//!
//! Detection runs before the repository's lock (the processor decides from
//! it which check runs to read from GitHub), so another job may write the
//! same rows before this one takes the lock. The processor reads the rows'
//! versions before it asks its detector; the synchronizer reads them again
//! under the lock and writes only if they still hold. Otherwise the
//! detector's decisions are stale ([`super::error::SyncError::Stale`]), and
//! the processor asks its detector again: whichever detector the processor
//! was given decides what is written, on rows no one has changed since.
//!
//! A version is PostgreSQL's `xmin`, the transaction that wrote the row:
//! every write of a row changes it, a write the never-backwards guard
//! refuses does not, and no writer has to remember to bump it.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{check_runs, pull_requests};
use crate::ids::{PullRequestNumber, RepositoryId};

/// The rows detection was asked about: every key, and the versions of the
/// keys that had a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions<K> {
    keys: Vec<K>,
    stored: Vec<(K, String)>,
}

/// What change detection compared with, for each kind of row (`None`: not
/// known, so not checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredVersions {
    pub prs: Option<Versions<PullRequestNumber>>,
    pub check_runs: Option<Versions<i64>>,
}

impl StoredVersions {
    /// Whether the stored rows are still the ones detection compared with.
    pub async fn hold(&self, conn: &mut AsyncPgConnection, repository_id: RepositoryId) -> QueryResult<bool> {
        if let Some(prs) = &self.prs {
            if Versions::of_prs(conn, repository_id, prs.keys.clone()).await? != *prs {
                return Ok(false);
            }
        }
        if let Some(runs) = &self.check_runs {
            if Versions::of_check_runs(conn, runs.keys.clone()).await? != *runs {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Versions<PullRequestNumber> {
    /// The versions of a repository's PRs `numbers`.
    pub async fn of_prs(
        conn: &mut AsyncPgConnection,
        repository_id: RepositoryId,
        mut numbers: Vec<PullRequestNumber>,
    ) -> QueryResult<Self> {
        numbers.sort_unstable();
        numbers.dedup();
        if numbers.is_empty() {
            return Ok(Self::default());
        }
        let stored = pull_requests::table
            .filter(pull_requests::repository_id.eq(repository_id))
            .filter(pull_requests::number.eq_any(&numbers))
            .select((pull_requests::number, sql::<Text>("xmin::text")))
            .order(pull_requests::number)
            .load(conn)
            .await?;
        Ok(Self { keys: numbers, stored })
    }
}

impl Versions<i64> {
    /// The versions of check runs `ids` (by GitHub id, as detection loads them).
    pub async fn of_check_runs(conn: &mut AsyncPgConnection, mut ids: Vec<i64>) -> QueryResult<Self> {
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(Self::default());
        }
        let stored = check_runs::table
            .filter(check_runs::github_id.eq_any(&ids))
            .select((check_runs::github_id, sql::<Text>("xmin::text")))
            .order(check_runs::github_id)
            .load(conn)
            .await?;
        Ok(Self { keys: ids, stored })
    }
}
