//! Discovery: what GitHub says is true now, for a repository, one PR, or the
//! check runs of a set of heads.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::bulk::{self, RepoCommit};
use super::data::{CheckRunData, PrData, StatusData};
use super::detect::RequiredChecks;
use super::error::ProcessingError;
use crate::config::BulkReads;
use crate::db::merge_groups::{QueueEntry, QueueSnapshot};
use crate::db::repositories::Repository;
use crate::github::cache::Validator;
use crate::github::graphql;
use crate::github::{Fetched, GitHubClient, GitHubError, Listing, PullQuery, PullState, Purpose};
use crate::ids::{CommitSha, PullRequestNumber};

/// What a discovery found: fresh items, the validators to save with them,
/// how many resources were unchanged (304), and per-item failures.
#[derive(Debug, Clone)]
pub struct Discovered<T> {
    pub items: Vec<T>,
    pub validators: Vec<Validator>,
    pub unchanged: usize,
    pub errors: Vec<ProcessingError>,
}

impl<T> Default for Discovered<T> {
    fn default() -> Self {
        Self { items: Vec::new(), validators: Vec::new(), unchanged: 0, errors: Vec::new() }
    }
}

/// The open PRs of a repository, and whether the listing was complete.
#[derive(Debug, Clone, Default)]
pub struct OpenPrs {
    pub prs: Discovered<PrData>,
    pub complete: bool,
}

/// One PR read on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum PrLookup {
    Fresh {
        pr: Box<PrData>,
        validator: Option<Validator>,
    },
    /// 304: stored data is current; save `validator` again to keep it fresh.
    Unchanged {
        validator: Validator,
    },
    Gone,
}

/// What one branch requires before merging, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Fresh {
        required: RequiredChecks,
        validator: Option<Validator>,
    },
    /// 304: what is stored is current.
    Unchanged {
        validator: Validator,
    },
}

/// A PR's head: the commit whose check runs are the PR's checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrHead {
    pub number: PullRequestNumber,
    pub head_sha: CommitSha,
}

impl From<&PrData> for PrHead {
    fn from(pr: &PrData) -> Self {
        Self { number: pr.number, head_sha: pr.head_sha.clone() }
    }
}

#[async_trait]
pub trait PrDiscovery: Send + Sync {
    /// The repository's PRs updated since `since` (all when `None`), newest first.
    async fn discover_prs(
        &self,
        repo: &Repository,
        since: Option<DateTime<Utc>>,
        purpose: Purpose,
    ) -> Result<Discovered<PrData>, ProcessingError>;

    async fn discover_pr(
        &self,
        repo: &Repository,
        number: PullRequestNumber,
        purpose: Purpose,
    ) -> Result<PrLookup, ProcessingError>;

    /// The repository's open PRs. `complete` is true when every page was
    /// fresh, so that `items` is the whole open set (a PR stored as open but
    /// missing from it changed or vanished). The default reads every PR.
    async fn discover_open_prs(
        &self,
        repo: &Repository,
        purpose: Purpose,
    ) -> Result<OpenPrs, ProcessingError> {
        let mut all = self.discover_prs(repo, None, purpose).await?;
        all.items.retain(|pr| pr.state == "open");
        Ok(OpenPrs { prs: all, complete: false })
    }

    /// The check runs of every head; one head's failure is an error in the
    /// result, not a failure of the batch.
    async fn discover_check_runs_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<CheckRunData>;

    /// The latest status of each context of every head; like
    /// [`Self::discover_check_runs_batch`], one head's failure is an error in
    /// the result.
    async fn discover_statuses_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<StatusData>;

    /// What `branch` requires before merging (nothing, when unprotected).
    async fn discover_requirement(
        &self,
        repo: &Repository,
        branch: &str,
        purpose: Purpose,
    ) -> Result<Requirement, ProcessingError>;

    /// Everything that reports on the heads: their check runs and, when
    /// `statuses`, their commit statuses. The default asks for each apart;
    /// a discovery that reads both at once (GraphQL) overrides it.
    async fn discover_commit_reports(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
        statuses: bool,
    ) -> (Discovered<CheckRunData>, Discovered<StatusData>) {
        let runs = self.discover_check_runs_batch(repo, heads, purpose).await;
        let statuses = if statuses {
            self.discover_statuses_batch(repo, heads, purpose).await
        } else {
            Discovered::default()
        };
        (runs, statuses)
    }
    /// The repository's merge queues: its open PRs' queue entries. `None`
    /// when this discovery does not read them (the stored groups are then
    /// left as they are).
    async fn discover_merge_queue(
        &self,
        _repo: &Repository,
        _purpose: Purpose,
    ) -> Result<Option<QueueSnapshot>, ProcessingError> {
        Ok(None)
    }
}

/// Pages of open PRs read for a repository's merge queues: a queue longer
/// than this many hundred PRs is read in part, and nothing is ended from it.
const MAX_MERGE_QUEUE_PAGES: usize = 10;

/// Turns GraphQL's queue entries (number, base branch, entry) into the
/// stored form. `complete` turns false where an entry lacks its group's
/// commit: that PR's stored groups cannot be told gone.
pub fn queue_entries<'a>(
    prs: impl IntoIterator<Item = (i64, Option<&'a str>, &'a graphql::MergeQueueEntry)>,
    complete: &mut bool,
) -> Vec<QueueEntry> {
    let mut entries = Vec::new();
    for (number, base_ref_name, entry) in prs {
        let (Some(pr_number), Some(head), Some(base_ref_name)) =
            (PullRequestNumber::from_github(number), entry.head_commit.as_ref(), base_ref_name)
        else {
            *complete = false;
            continue;
        };
        entries.push(QueueEntry {
            pr_number,
            head_sha: head.oid.clone(),
            base_ref: format!("refs/heads/{base_ref_name}"),
            base_sha: entry.base_commit.as_ref().map(|c| c.oid.clone()).unwrap_or_default(),
            enqueued_at: entry.enqueued_at,
        });
    }
    entries
}

/// Discovery through the `github` module.
pub struct GitHubPrDiscovery {
    client: GitHubClient,
    max_concurrent_requests: usize,
    bulk_reads: BulkReads,
}

impl GitHubPrDiscovery {
    /// REST for every read (see [`GitHubPrDiscovery::with_bulk_reads`]).
    pub fn new(client: GitHubClient, max_concurrent_requests: usize) -> Self {
        Self { client, max_concurrent_requests: max_concurrent_requests.max(1), bulk_reads: BulkReads::Rest }
    }

    /// With [`BulkReads::Graphql`], sweeps and backfills read check runs
    /// through GraphQL, 50 commits a query; webhook-driven reads stay REST,
    /// where an ETag earned by the same token often still gives a free 304.
    pub fn with_bulk_reads(mut self, bulk_reads: BulkReads) -> Self {
        self.bulk_reads = bulk_reads;
        self
    }

    /// Check runs and statuses through GraphQL, one installation's commits at a time.
    async fn reports_by_graphql(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> (Discovered<CheckRunData>, Discovered<StatusData>) {
        let commits: BTreeSet<RepoCommit> = heads
            .iter()
            .map(|h| RepoCommit {
                owner: repo.owner.clone(),
                name: repo.name.clone(),
                sha: h.head_sha.0.clone(),
            })
            .collect();
        let found = bulk::check_runs_of_commits(&self.client, repo.installation_id, &commits, purpose).await;
        let mut runs = Discovered::default();
        let mut statuses = Discovered::default();
        for (commit, reported) in found {
            match reported {
                Ok(reported) => {
                    runs.items.extend(reported.runs);
                    statuses.items.extend(reported.statuses);
                }
                Err(error) => {
                    let number = heads.iter().find(|h| h.head_sha.as_str() == commit.sha).map(|h| h.number);
                    runs.errors.push(ProcessingError::discovery(
                        repo,
                        number,
                        format!("check runs of {}: {error}", commit.sha),
                    ));
                }
            }
        }
        (runs, statuses)
    }

    /// Sweeps and backfills read through GraphQL when configured; webhook
    /// reads stay REST, where an ETag earned by the same token often still
    /// gives a free 304.
    fn uses_graphql(&self, purpose: Purpose) -> bool {
        self.bulk_reads == BulkReads::Graphql && purpose != Purpose::Webhook
    }

    /// Distinct SHAs of `heads`: several PRs may share a head.
    fn distinct_shas(heads: &[PrHead]) -> Vec<String> {
        heads.iter().map(|h| h.head_sha.0.clone()).collect::<BTreeSet<_>>().into_iter().collect()
    }
}

impl GitHubPrDiscovery {
    /// Lists PRs as `query` says and turns the fresh pages into `PrData`;
    /// also returns whether every page was fresh.
    async fn list(
        &self,
        repo: &Repository,
        query: PullQuery,
        purpose: Purpose,
    ) -> Result<(Discovered<PrData>, bool), ProcessingError> {
        let listing = self
            .client
            .list_pull_requests(repo.installation_id, &repo.full_name(), query, purpose)
            .await
            .map_err(|e| ProcessingError::discovery(repo, None, e))?;
        let Listing::Pages(pages) = &listing else {
            return Err(ProcessingError::discovery(repo, None, "the repository is gone (404)"));
        };
        let unchanged = pages.iter().filter(|p| p.is_unchanged()).count();
        let mut discovered =
            Discovered { validators: listing.validators(), unchanged, ..Discovered::default() };
        for pr in listing.fresh_items() {
            match PrData::from_github(pr) {
                // A page reaching below the watermark also holds older PRs: not wanted.
                Ok(pr) if query.updated_since.is_none_or(|since| pr.updated_at >= since) => {
                    discovered.items.push(pr)
                }
                Ok(_) => {}
                Err(e) => discovered.errors.push(ProcessingError::discovery(
                    repo,
                    PullRequestNumber::from_github(e.number),
                    e,
                )),
            }
        }
        Ok((discovered, unchanged == 0))
    }
}

#[async_trait]
impl PrDiscovery for GitHubPrDiscovery {
    /// One GraphQL query a hundred open PRs (GitHub has no REST listing of
    /// merge queues).
    async fn discover_merge_queue(
        &self,
        repo: &Repository,
        purpose: Purpose,
    ) -> Result<Option<QueueSnapshot>, ProcessingError> {
        let read_at = Utc::now();
        let mut entries = Vec::new();
        let mut complete = true;
        let mut after: Option<String> = None;
        for page in 1..=MAX_MERGE_QUEUE_PAGES {
            let document = graphql::merge_queue(&repo.owner, &repo.name, after.as_deref());
            let answer = self
                .client
                .graphql(repo.installation_id, purpose, &document)
                .await
                .map_err(|e| ProcessingError::discovery(repo, None, format!("merge queue: {e}")))?;
            let Some(found) = answer.at(&["repository"]) else {
                return Err(ProcessingError::discovery(repo, None, "merge queue: the repository is gone"));
            };
            let found: graphql::MergeQueueRepository = graphql::decode(found)
                .map_err(|e| ProcessingError::discovery(repo, None, format!("merge queue: {e}")))?;
            let prs = found.pull_requests.nodes.iter().flatten();
            entries.extend(queue_entries(
                prs.filter_map(|pr| {
                    Some((pr.number, pr.base_ref_name.as_deref(), pr.merge_queue_entry.as_ref()?))
                }),
                &mut complete,
            ));
            let info = found.pull_requests.page_info;
            if !info.has_next_page {
                break;
            }
            match info.end_cursor {
                Some(cursor) if page < MAX_MERGE_QUEUE_PAGES => after = Some(cursor),
                // More PRs than are read: what was not read cannot be told gone.
                _ => {
                    complete = false;
                    break;
                }
            }
        }
        Ok(Some(QueueSnapshot { entries, complete, read_at }))
    }

    async fn discover_prs(
        &self,
        repo: &Repository,
        since: Option<DateTime<Utc>>,
        purpose: Purpose,
    ) -> Result<Discovered<PrData>, ProcessingError> {
        let query = PullQuery { state: PullState::All, updated_since: since, stop_at_unchanged: true };
        Ok(self.list(repo, query, purpose).await?.0)
    }

    async fn discover_open_prs(
        &self,
        repo: &Repository,
        purpose: Purpose,
    ) -> Result<OpenPrs, ProcessingError> {
        let query = PullQuery { state: PullState::Open, updated_since: None, stop_at_unchanged: false };
        let (prs, complete) = self.list(repo, query, purpose).await?;
        Ok(OpenPrs { prs, complete })
    }

    async fn discover_pr(
        &self,
        repo: &Repository,
        number: PullRequestNumber,
        purpose: Purpose,
    ) -> Result<PrLookup, ProcessingError> {
        let fetched = self
            .client
            .get_pull_request(repo.installation_id, &repo.full_name(), number, purpose)
            .await
            .map_err(|e| ProcessingError::discovery(repo, Some(number), e))?;
        Ok(match fetched {
            Fetched::Fresh { data, validator } => {
                let pr = PrData::from_github(&data)
                    .map_err(|e| ProcessingError::discovery(repo, Some(number), e))?;
                PrLookup::Fresh { pr: Box::new(pr), validator }
            }
            Fetched::Unchanged { validator } => PrLookup::Unchanged { validator },
            Fetched::Gone => PrLookup::Gone,
        })
    }

    async fn discover_check_runs_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<CheckRunData> {
        if self.uses_graphql(purpose) {
            return self.reports_by_graphql(repo, heads, purpose).await.0;
        }
        let results = self
            .client
            .list_check_runs_for_heads(
                repo.installation_id,
                &repo.full_name(),
                &Self::distinct_shas(heads),
                purpose,
                self.max_concurrent_requests,
            )
            .await;
        per_commit(repo, heads, results, "check runs", |_, run| Some(CheckRunData::from_github(run)))
    }

    async fn discover_statuses_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<StatusData> {
        if self.uses_graphql(purpose) {
            return self.reports_by_graphql(repo, heads, purpose).await.1;
        }
        let results = self
            .client
            .list_statuses_for_heads(
                repo.installation_id,
                &repo.full_name(),
                &Self::distinct_shas(heads),
                purpose,
                self.max_concurrent_requests,
            )
            .await;
        per_commit(repo, heads, results, "statuses", StatusData::from_github)
    }

    async fn discover_requirement(
        &self,
        repo: &Repository,
        branch: &str,
        purpose: Purpose,
    ) -> Result<Requirement, ProcessingError> {
        let required =
            |contexts: Vec<String>, strict| RequiredChecks { branch: branch.to_owned(), contexts, strict };
        let fetched = match self
            .client
            .get_required_status_checks(repo.installation_id, &repo.full_name(), branch, purpose)
            .await
        {
            Ok(fetched) => fetched,
            // GitHub serves branch protection only to Apps with the
            // Administration permission. Without it nothing can be known:
            // stored as requiring nothing (read again at the hourly
            // refresh), rather than failing every job that reads it.
            Err(GitHubError::Api { status: 403, message }) => {
                tracing::warn!(branch, %message, "branch protection is not readable (Administration: read?)");
                metrics::counter!("prmonitor_required_checks_unreadable_total").increment(1);
                return Ok(Requirement::Fresh { required: required(Vec::new(), false), validator: None });
            }
            Err(e) => {
                return Err(ProcessingError::discovery(
                    repo,
                    None,
                    format!("required checks of {branch}: {e}"),
                ))
            }
        };
        Ok(match fetched {
            Fetched::Fresh { data, validator } => {
                let mut contexts = data.contexts;
                contexts.sort();
                contexts.dedup();
                Requirement::Fresh { required: required(contexts, data.strict), validator }
            }
            Fetched::Unchanged { validator } => Requirement::Unchanged { validator },
            // Unprotected, or protected without required checks.
            Fetched::Gone => Requirement::Fresh { required: required(Vec::new(), false), validator: None },
        })
    }

    async fn discover_commit_reports(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
        statuses: bool,
    ) -> (Discovered<CheckRunData>, Discovered<StatusData>) {
        if self.uses_graphql(purpose) {
            // One query reads both; the statuses cost nothing more.
            let (runs, found) = self.reports_by_graphql(repo, heads, purpose).await;
            return (runs, if statuses { found } else { Discovered::default() });
        }
        let runs = self.discover_check_runs_batch(repo, heads, purpose);
        if !statuses {
            return (runs.await, Discovered::default());
        }
        tokio::join!(runs, self.discover_statuses_batch(repo, heads, purpose))
    }
}

/// The REST listings of several commits, by SHA, or why none was made.
type CommitListings<T> = Result<Vec<(String, Result<Listing<T>, GitHubError>)>, GitHubError>;

/// What REST listings of each commit found, as one discovery: the fresh
/// items (`convert` drops what it cannot read), the validators, the 304s,
/// and one error per commit whose listing failed, named by its PR.
fn per_commit<T, U>(
    repo: &Repository,
    heads: &[PrHead],
    results: CommitListings<T>,
    what: &str,
    convert: impl Fn(&CommitSha, &T) -> Option<U>,
) -> Discovered<U> {
    let results = match results {
        Ok(results) => results,
        Err(error) => {
            return Discovered {
                errors: vec![ProcessingError::discovery(repo, None, error)],
                ..Discovered::default()
            }
        }
    };
    let mut discovered = Discovered::default();
    for (sha, result) in results {
        match result {
            Ok(listing) => {
                discovered.validators.extend(listing.validators());
                discovered.unchanged += listing.pages().iter().filter(|p| p.is_unchanged()).count();
                let commit = CommitSha(sha);
                discovered.items.extend(listing.fresh_items().filter_map(|item| convert(&commit, item)));
            }
            Err(error) => {
                let number = heads.iter().find(|h| h.head_sha.as_str() == sha).map(|h| h.number);
                discovered.errors.push(ProcessingError::discovery(
                    repo,
                    number,
                    format!("{what} of {sha}: {error}"),
                ));
            }
        }
    }
    discovered
}
