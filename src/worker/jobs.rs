//! What each kind of job does. Errors are strings for the job's `last_error`.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, RunQueryDsl};

use super::WorkerDeps;
use crate::db::repositories::{self, NewRepository, Repository};
use crate::db::schema::webhook_deliveries;
use crate::db::DbPool;
use crate::db::{deliveries, merge_groups};
use crate::github::{GitHubError, Listing};
use crate::ids::RepositoryId;
use crate::monitor::delivered::{self, DeliveredPayload};
use crate::monitor::{Cause, Target, WorkContext};
use crate::queue::{
    self, ClaimedJob, EventTarget, InstallationTarget, JobKind, JobRef, NewJob, RecoveryJob, RepoRef,
    RepositoryJob, SurveyJob,
};
use crate::webhook::recovery::{self, RecoveryOptions};

/// Delivery ids kept for logs and the history trail.
const MAX_LOGGED_DELIVERIES: usize = 20;

/// A job folding more deliveries than this reads GitHub once instead of
/// loading every payload: one call is cheap next to 20 events, and a pooled
/// connection keeps a buffer as large as the largest answer it received.
const MAX_SNAPSHOT_DELIVERIES: usize = 20;

/// The deliveries folded into a job, oldest first.
#[derive(Debug, Default)]
pub struct JobDeliveries {
    /// Their ids (at most [`MAX_LOGGED_DELIVERIES`]), for logs and history.
    pub ids: Vec<String>,
    /// How many there are, and the newest one's id when `ids` is cut short.
    total: usize,
    last: Option<String>,
    /// For event jobs with few enough deliveries, their payloads, used as
    /// snapshots; empty means "read GitHub".
    payloads: Vec<DeliveredPayload>,
}

impl JobDeliveries {
    pub fn first_id(&self) -> Option<&str> {
        <[String]>::first(&self.ids).map(String::as_str)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// The ids for a log field, so that grepping any one delivery id finds
    /// the lines of the job that processed it: all of them, or (past
    /// [`MAX_LOGGED_DELIVERIES`]) the first and the last with the count.
    pub fn log_ids(&self) -> String {
        match &self.last {
            Some(last) if self.total > self.ids.len() => {
                format!("{}…{last} ({} deliveries)", self.first_id().unwrap_or(""), self.total)
            }
            _ => self.ids.join(","),
        }
    }

    fn new(mut ids: Vec<String>, payloads: Vec<DeliveredPayload>) -> Self {
        let total = ids.len();
        ids.truncate(MAX_LOGGED_DELIVERIES);
        Self { ids, total, last: None, payloads }
    }
}

/// How many deliveries a job has and the newest one's id (for jobs with more
/// than were loaded).
async fn count_and_last(
    conn: &mut diesel_async::AsyncPgConnection,
    job_id: i64,
) -> diesel::QueryResult<(i64, Option<String>)> {
    let total: i64 = webhook_deliveries::table
        .filter(webhook_deliveries::job_id.eq(job_id))
        .count()
        .get_result(conn)
        .await?;
    let last = webhook_deliveries::table
        .filter(webhook_deliveries::job_id.eq(job_id))
        .order(webhook_deliveries::received_at.desc())
        .select(webhook_deliveries::delivery_id)
        .first(conn)
        .await
        .optional()?;
    Ok((total, last))
}

/// Loads a job's deliveries in one query (payloads only for event jobs).
/// A failure leaves them empty: logs lose the ids, the job reads GitHub.
pub async fn deliveries_of(pool: &DbPool, job: &ClaimedJob) -> JobDeliveries {
    let Ok(mut conn) = pool.get().await else { return JobDeliveries::default() };
    // One more than is kept, to know whether there are more.
    let limit = MAX_LOGGED_DELIVERIES.max(MAX_SNAPSHOT_DELIVERIES) as i64 + 1;
    let mut loaded = if job.kind != JobKind::Event.as_str() {
        webhook_deliveries::table
            .filter(webhook_deliveries::job_id.eq(job.id))
            .order(webhook_deliveries::received_at)
            .select(webhook_deliveries::delivery_id)
            .limit(limit)
            .load(&mut conn)
            .await
            .map(|ids| JobDeliveries::new(ids, Vec::new()))
    } else {
        deliveries::payloads_of_job(&mut conn, job.id, limit).await.map(|rows| {
            let ids = rows.iter().map(|(id, _, _)| id.clone()).collect();
            let payloads = if rows.len() <= MAX_SNAPSHOT_DELIVERIES {
                rows.into_iter().map(|(_, event, body)| DeliveredPayload { event, body }).collect()
            } else {
                Vec::new()
            };
            JobDeliveries::new(ids, payloads)
        })
    };
    if let Ok(found) = &mut loaded {
        if found.total > MAX_LOGGED_DELIVERIES {
            if let Ok((total, last)) = count_and_last(&mut conn, job.id).await {
                found.total = usize::try_from(total).unwrap_or(found.total);
                found.last = last;
            }
        }
    }
    loaded.unwrap_or_else(|error| {
        tracing::warn!(%error, job_id = job.id, "cannot load the job's deliveries; reading GitHub instead");
        JobDeliveries::default()
    })
}

pub async fn run(
    deps: &WorkerDeps,
    job: &ClaimedJob,
    job_ref: &JobRef,
    deliveries: &JobDeliveries,
) -> Result<(), String> {
    let delivery_id = deliveries.first_id().map(str::to_owned);
    let kind = JobKind::parse(&job.kind).ok_or_else(|| format!("unknown job kind '{}'", job.kind))?;
    match kind {
        JobKind::Event => {
            let target: EventTarget =
                serde_json::from_value(job.payload.clone()).map_err(|e| format!("bad event payload: {e}"))?;
            run_event(deps, target, job_ref, delivery_id, &deliveries.payloads).await
        }
        JobKind::Install => {
            let target: InstallationTarget = serde_json::from_value(job.payload.clone())
                .map_err(|e| format!("bad install payload: {e}"))?;
            run_installation(deps, &target, job_ref).await
        }
        JobKind::Installations => run_installations(deps, job_ref).await,
        JobKind::RecoverDeliveries => {
            let target: RecoveryJob = serde_json::from_value(job.payload.clone())
                .map_err(|e| format!("bad recovery payload: {e}"))?;
            run_recovery(deps, &target, job_ref).await
        }
        JobKind::Survey => {
            let target: SurveyJob = serde_json::from_value(job.payload.clone())
                .map_err(|e| format!("bad survey payload: {e}"))?;
            run_survey(deps, &target, job_ref).await
        }
        JobKind::Sweep | JobKind::Backfill => {
            let target: RepositoryJob = serde_json::from_value(job.payload.clone())
                .map_err(|e| format!("bad repository payload: {e}"))?;
            let cause = match (kind, target.manual) {
                (_, true) => Cause::Manual,
                (JobKind::Backfill, false) => Cause::Backfill,
                _ => Cause::Sweep,
            };
            let repo = {
                let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
                repositories::find(&mut conn, target.repository_id)
                    .await
                    .optional()
                    .map_err(|e| e.to_string())?
            };
            match repo {
                Some(repo) if repo.active => {
                    let scope = if kind == JobKind::Backfill { Target::Full } else { Target::Sweep };
                    process(deps, &repo, scope, cause, job_ref, None).await
                }
                // Deleted or deactivated since: nothing to read.
                _ => complete(deps, job_ref).await,
            }
        }
    }
}

async fn process(
    deps: &WorkerDeps,
    repo: &Repository,
    target: Target,
    cause: Cause,
    job: &JobRef,
    delivery_id: Option<String>,
) -> Result<(), String> {
    let ctx = WorkContext { cause, job: Some(job.clone()), delivery_id };
    let result = deps.processor.process(repo, target, ctx).await;
    if result.success {
        Ok(())
    } else {
        Err(<[_]>::first(&result.errors).map_or_else(|| "processing failed".to_owned(), ToString::to_string))
    }
}

/// The sweeps of one installation's due repositories through surveys
/// ([`crate::monitor::survey`]). Each repository commits on its own; one that
/// fails stays due and is surveyed again at the scheduler's next tick.
async fn run_survey(deps: &WorkerDeps, target: &SurveyJob, job: &JobRef) -> Result<(), String> {
    let repos = {
        let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
        let due = crate::queue::repositories_due_for_sweep(&mut conn, deps.settings.sweep_interval)
            .await
            .map_err(|e| e.to_string())?;
        repositories::find_many(&mut conn, &due).await.map_err(|e| e.to_string())?
    };
    let repos: Vec<Repository> =
        repos.into_iter().filter(|r| r.active && r.installation_id == target.installation_id).collect();
    let report = crate::monitor::survey::sweep_installation(
        &deps.github,
        &deps.processor,
        &deps.pool,
        target.installation_id,
        &repos,
        deps.settings.sweep_batch_repositories,
    )
    .await;
    let failed = report.results.iter().filter(|r| !r.success).count();
    tracing::info!(
        repositories = repos.len(),
        swept_alone = report.swept_alone,
        failed,
        "installation surveyed"
    );
    complete(deps, job).await
}

/// Gap recovery from the App's deliveries API ([`crate::webhook::recovery`]).
/// A token has no deliveries API: nothing to do.
async fn run_recovery(deps: &WorkerDeps, target: &RecoveryJob, job: &JobRef) -> Result<(), String> {
    if deps.github.is_app() {
        let options = RecoveryOptions {
            mode: deps.settings.delivery_recovery,
            max_pages: deps.settings.delivery_recovery_max_pages,
            max_attempts: deps.settings.max_attempts,
            since: target.since,
            sweep_above: deps.settings.delivery_recovery_sweep_above,
        };
        recovery::recover(&deps.github, &deps.pool, &options).await.map_err(|e| e.to_string())?;
    } else {
        tracing::info!("no GitHub App configured: no deliveries to recover");
    }
    complete(deps, job).await
}

async fn complete(deps: &WorkerDeps, job: &JobRef) -> Result<(), String> {
    super::complete_now(&deps.pool, job).await.map(|_| ())
}

/// The stored repository a webhook names, registered on first sight (the
/// webhook proves the App is installed there) with its backfill: the
/// installation's own job may come later and find the repository already
/// active. `None` when it was deactivated.
async fn known_repository(deps: &WorkerDeps, repo: &RepoRef) -> Result<Option<Repository>, String> {
    let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
    match repositories::find_by_github_id(&mut conn, repo.github_id).await.map_err(|e| e.to_string())? {
        Some(stored) if !stored.active => Ok(None),
        Some(stored) if stored.full_name() == repo.full_name => Ok(Some(stored)),
        _ => {
            let (owner, name) = repo.full_name.split_once('/').ok_or("a repository without owner/name")?;
            let new = NewRepository {
                github_id: repo.github_id,
                owner,
                name,
                installation_id: repo.installation_id,
            };
            let max_attempts = deps.settings.max_attempts;
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let stored = repositories::upsert(conn, &new).await?;
                backfill_if_never_read(conn, &stored, max_attempts).await?;
                Ok(Some(stored))
            })
            .await
            .map_err(|e| e.to_string())
        }
    }
}

/// Enqueues the backfill of a repository that was never read in full,
/// whoever registered it (a webhook, the installation, an operator). Returns
/// whether it did; a backfill already waiting or running is enough.
async fn backfill_if_never_read(
    conn: &mut diesel_async::AsyncPgConnection,
    repo: &Repository,
    max_attempts: i32,
) -> diesel::QueryResult<bool> {
    if repo.last_swept_at.is_some() {
        return Ok(false);
    }
    enqueue_backfill(conn, repo, max_attempts).await
}

async fn enqueue_backfill(
    conn: &mut diesel_async::AsyncPgConnection,
    repo: &Repository,
    max_attempts: i32,
) -> diesel::QueryResult<bool> {
    let backfill = NewJob::backfill(&RepositoryJob { repository_id: repo.id, manual: false })
        .with_max_attempts(max_attempts);
    queue::enqueue_unless_running(conn, &backfill).await
}

async fn run_event(
    deps: &WorkerDeps,
    target: EventTarget,
    job: &JobRef,
    delivery_id: Option<String>,
    payloads: &[DeliveredPayload],
) -> Result<(), String> {
    match target {
        EventTarget::PullRequest { repository, number, with_checks } => {
            let Some(repo) = known_repository(deps, &repository).await? else {
                return complete(deps, job).await;
            };
            // The deliveries' own PR object when they carry a usable one; a read otherwise.
            let target = match delivered::newest_pr(payloads, repository.github_id, number) {
                Some(pr) => Target::DeliveredPullRequest { pr: Box::new(pr), with_checks },
                None => Target::PullRequest { number, with_checks },
            };
            process(deps, &repo, target, Cause::Webhook, job, delivery_id).await
        }
        EventTarget::CommitChecks { repository, head_sha } => {
            let Some(repo) = known_repository(deps, &repository).await? else {
                return complete(deps, job).await;
            };
            let target = match delivered::check_runs(payloads, repository.github_id, &head_sha) {
                Some(runs) => Target::DeliveredCheckRuns { head_sha, runs },
                None => Target::Commit { head_sha },
            };
            process(deps, &repo, target, Cause::Webhook, job, delivery_id).await
        }
        EventTarget::CommitStatuses { repository, sha } => {
            let Some(repo) = known_repository(deps, &repository).await? else {
                return complete(deps, job).await;
            };
            // The deliveries' own statuses when they carry usable ones: a
            // status event holds everything the row keeps.
            let target = match delivered::statuses(payloads, repository.github_id, &sha) {
                Some(statuses) => Target::DeliveredStatuses { sha, statuses },
                None => Target::CommitStatuses { sha },
            };
            process(deps, &repo, target, Cause::Webhook, job, delivery_id).await
        }
        EventTarget::RequiredChecks { repository } => {
            let Some(repo) = known_repository(deps, &repository).await? else {
                return complete(deps, job).await;
            };
            process(deps, &repo, Target::RequiredChecks, Cause::Webhook, job, delivery_id).await
        }
        EventTarget::MergeGroup { repository, head_sha } => {
            let Some(repo) = known_repository(deps, &repository).await? else {
                return complete(deps, job).await;
            };
            run_merge_group(deps, &repo, &repository, &head_sha, job, payloads).await
        }
        EventTarget::Repository { repository, action } => {
            let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
            let job = job.clone();
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let stored = repositories::find_by_github_id(conn, repository.github_id).await?;
                match (action.as_deref(), stored) {
                    (Some("deleted"), Some(stored)) => {
                        repositories::deactivate(conn, &[stored.id]).await?;
                    }
                    (Some("deleted"), None) => {}
                    // Renamed, transferred, archived...: keep the name and installation current.
                    (_, Some(stored)) if stored.active => {
                        if let Some((owner, name)) = repository.full_name.split_once('/') {
                            let installation_id = repository.installation_id.or(stored.installation_id);
                            let new = NewRepository {
                                github_id: repository.github_id,
                                owner,
                                name,
                                installation_id,
                            };
                            repositories::upsert(conn, &new).await?;
                        }
                    }
                    // Unknown or inactive: installation events decide what is watched.
                    _ => {}
                }
                queue::complete(conn, &job).await?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())
        }
    }
}

/// Deliveries of one merge group read when the job's own were not loaded:
/// GitHub sends two per group, so this is far more than any group has.
const MAX_MERGE_GROUP_DELIVERIES: i64 = 1000;

/// Applies the job's `merge_group` deliveries to the stored group, in one
/// transaction with the job's completion. GitHub has no REST read of a merge
/// group: the deliveries are the news, and a lost or unusable one is healed
/// by the sweeps' read of the queue.
async fn run_merge_group(
    deps: &WorkerDeps,
    repo: &Repository,
    repository: &RepoRef,
    head_sha: &crate::ids::CommitSha,
    job: &JobRef,
    payloads: &[DeliveredPayload],
) -> Result<(), String> {
    let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
    let job = job.clone();
    let (written, unusable) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // Loaded with the job unless there were too many or the load
            // failed: read here then, since they are the only source.
            let loaded;
            let payloads = if payloads.is_empty() {
                loaded = deliveries::payloads_of_job(conn, job.id, MAX_MERGE_GROUP_DELIVERIES)
                    .await?
                    .into_iter()
                    .map(|(_, event, body)| DeliveredPayload { event, body })
                    .collect::<Vec<_>>();
                &loaded[..]
            } else {
                payloads
            };
            let (groups, unusable) = delivered::merge_groups(payloads, repository.github_id, head_sha);
            // The repository's writer lock, as every sync takes it: a sweep
            // ending groups it no longer sees must not interleave with this.
            crate::monitor::sync::lock_repository(conn, repo.id).await?;
            let mut written = 0;
            for group in &groups {
                if merge_groups::apply_delivered(conn, repo.id, group).await? {
                    written += 1;
                }
            }
            queue::complete(conn, &job).await?;
            Ok((written, unusable))
        })
        .await
        .map_err(|e| e.to_string())?;
    if unusable > 0 {
        tracing::warn!(unusable, head_sha = %head_sha, "merge_group deliveries that cannot be applied; the next sweep reads the queue");
    }
    if written > 0 {
        metrics::counter!("prmonitor_sync_changes_total", "kind" => "merge_group").increment(written);
    }
    Ok(())
}

/// Registers an installation's repositories (backfilling the new ones) and
/// deactivates those it no longer has; deactivates all when it is gone or suspended.
/// Lists the App's installations and enqueues the sync of each one's
/// repositories (registered with their backfill, or deactivated); an
/// installation stored but no longer listed (deleted while the service was
/// down) is synced as deleted. What a lost `installation` webhook would have done.
async fn run_installations(deps: &WorkerDeps, job: &JobRef) -> Result<(), String> {
    if !deps.github.is_app() {
        return run_configured_repositories(deps, job).await;
    }
    let listing = deps.github.list_installations().await.map_err(|e| e.to_string())?;
    let listed: Vec<&crate::github::models::Installation> = listing.fresh_items().collect();
    // A page answered 304 lists nothing: then what is missing cannot be told gone.
    let complete_listing = listing.pages().iter().all(|p| !p.is_unchanged());
    let max_attempts = deps.settings.max_attempts;
    let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
    let job = job.clone();
    let (synced, gone) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let stored = repositories::active_installations(conn).await?;
            let mut synced = 0;
            for installation in &listed {
                let action = installation.suspended_at.map(|_| "suspend".to_owned());
                let target = InstallationTarget { installation_id: installation.id, action };
                queue::enqueue(conn, &NewJob::installation(&target).with_max_attempts(max_attempts)).await?;
                synced += 1;
            }
            let mut gone = 0;
            let unlisted = stored.into_iter().filter(|id| !listed.iter().any(|i| i.id == *id));
            for installation_id in unlisted.filter(|_| complete_listing) {
                let target = InstallationTarget { installation_id, action: Some("deleted".into()) };
                queue::enqueue(conn, &NewJob::installation(&target).with_max_attempts(max_attempts)).await?;
                gone += 1;
            }
            queue::complete(conn, &job).await?;
            Ok((synced, gone))
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(installations = synced, gone, "installations listed");
    Ok(())
}

/// With token auth: registers the repositories the operator named
/// (`PRMONITOR_REPOSITORIES`), each with its backfill when new, and
/// deactivates the token's repositories no longer named.
async fn run_configured_repositories(deps: &WorkerDeps, job: &JobRef) -> Result<(), String> {
    let mut found = Vec::new();
    for full_name in &deps.settings.repositories {
        match deps.github.get_repository(None, full_name).await.map_err(|e| e.to_string())? {
            crate::github::Fetched::Fresh { data, .. } => found.push(data),
            crate::github::Fetched::Gone => {
                tracing::warn!(repository = %full_name, "PRMONITOR_REPOSITORIES names a repository the token cannot read")
            }
            // No validator is kept for these reads, so GitHub cannot answer 304.
            crate::github::Fetched::Unchanged { .. } => {}
        }
    }
    let max_attempts = deps.settings.max_attempts;
    let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
    let job = job.clone();
    let (registered, deactivated) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let known = repositories::without_installation(conn).await?;
            let (registered, deactivated) =
                sync_repositories(conn, &known, &found, None, max_attempts).await?;
            queue::complete(conn, &job).await?;
            Ok((registered, deactivated))
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(registered, deactivated, "configured repositories synced");
    Ok(())
}

/// Makes the stored repositories `known` (one installation's, or the
/// token's) the ones GitHub `listed`: each listed one upserted, with its
/// backfill when new or back from deactivation (or when never read in full:
/// a webhook can register a repository first); every other one deactivated.
/// Returns (registered, deactivated).
async fn sync_repositories(
    conn: &mut diesel_async::AsyncPgConnection,
    known: &[Repository],
    listed: &[crate::github::models::Repository],
    installation_id: Option<crate::ids::InstallationId>,
    max_attempts: i32,
) -> Result<(usize, usize), diesel::result::Error> {
    let mut keep = std::collections::HashSet::new();
    let mut registered = 0;
    for repo in listed {
        let was_active = known.iter().any(|k| k.github_id == repo.id && k.active);
        let new =
            NewRepository { github_id: repo.id, owner: &repo.owner.login, name: &repo.name, installation_id };
        let stored = repositories::upsert(conn, &new).await?;
        keep.insert(stored.id);
        if was_active {
            backfill_if_never_read(conn, &stored, max_attempts).await?;
        } else {
            enqueue_backfill(conn, &stored, max_attempts).await?;
            registered += 1;
        }
    }
    let stale: Vec<RepositoryId> = known.iter().filter(|k| !keep.contains(&k.id)).map(|k| k.id).collect();
    let deactivated = repositories::deactivate(conn, &stale).await?;
    Ok((registered, deactivated))
}

async fn run_installation(
    deps: &WorkerDeps,
    target: &InstallationTarget,
    job: &JobRef,
) -> Result<(), String> {
    let gone = matches!(target.action.as_deref(), Some("deleted" | "suspend"));
    let listing = if gone {
        None
    } else {
        match deps.github.list_installation_repositories(Some(target.installation_id)).await {
            Ok(listing @ Listing::Pages(_)) => Some(listing),
            Ok(Listing::Gone) => None,
            // The installation refuses us: treat it as gone; the next event will say otherwise.
            Err(GitHubError::Api { status: 401 | 403 | 404, .. }) | Err(GitHubError::Auth(_)) => None,
            Err(error) => return Err(error.to_string()),
        }
    };
    let listed: Vec<crate::github::models::Repository> =
        listing.iter().flat_map(|l| l.fresh_items().cloned()).collect();
    let max_attempts = deps.settings.max_attempts;
    let mut conn = deps.pool.get().await.map_err(|e| e.to_string())?;
    let job = job.clone();
    let installation_id = target.installation_id;
    let (registered, deactivated) = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            let known = repositories::of_installation(conn, installation_id).await?;
            let (registered, deactivated) =
                sync_repositories(conn, &known, &listed, Some(installation_id), max_attempts).await?;
            queue::complete(conn, &job).await?;
            Ok((registered, deactivated))
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        installation_id = installation_id.0,
        registered,
        deactivated,
        action = target.action.as_deref().unwrap_or(""),
        "installation synced"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_name_every_delivery_or_the_first_and_last_of_many() {
        let few = JobDeliveries::new(vec!["a".into(), "b".into(), "c".into()], Vec::new());
        assert_eq!(few.log_ids(), "a,b,c");
        let ids: Vec<String> = (0..MAX_LOGGED_DELIVERIES + 1).map(|i| format!("d{i}")).collect();
        let mut many = JobDeliveries::new(ids, Vec::new());
        many.total = 57;
        many.last = Some("d56".into());
        assert_eq!(many.log_ids(), "d0…d56 (57 deliveries)");
        assert_eq!(JobDeliveries::default().log_ids(), "");
    }
}
