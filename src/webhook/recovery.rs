//! Gap recovery: deliveries GitHub made, or failed to make, that were never
//! stored — the service was down, a proxy lost them — found in the App's
//! webhook deliveries API (FACTS §1, §4) and stored like any other.
//!
//! GitHub does not redeliver failed deliveries by itself. A run pages the
//! listing newest first down to the stored watermark (less an overlap, since
//! an attempt is listed only once it ended), bounded in pages; a run that
//! stops at the bound leaves a cursor the next one goes on from. The listing
//! names each attempt's event and action, so untracked ones are skipped
//! without another call, and ids already stored cost nothing but one query a
//! page. For each tracked delivery not stored, either its payload is fetched
//! and stored through intake's own path (deduplicated by delivery id, so a
//! redelivery that arrives later is a duplicate), or GitHub is asked to
//! deliver it again.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::envelope;
use super::store::{self, DeliveryRecord, StoreError, Stored};
use crate::config::DeliveryRecovery;
use crate::db::repositories::{self, Repository};
use crate::db::schema::{delivery_recovery, delivery_redelivery_requests};
use crate::db::{deliveries, DbPool};
use crate::github::models::HookDeliverySummary;
use crate::github::{GitHubClient, GitHubError};
use crate::ids::{GithubRepoId, InstallationId};
use crate::queue::{NewJob, RepositoryJob};

/// The `how` labels of `prmonitor_webhook_deliveries_recovered_total`:
/// fetched and stored, covered by a sweep, redelivered on request.
pub(crate) const RECOVERED_HOW: [&str; 3] = ["payload", "sweep", "redelivery"];

/// How long GitHub keeps deliveries: older ones are neither listed nor fetched.
pub const RETENTION: Duration = Duration::from_secs(3 * 86_400);
/// Re-examined below the watermark: an attempt may be listed only once it
/// ends, up to GitHub's 10 s timeout after the time it is listed with. The
/// watermark is GitHub's own time, so clocks do not matter. Every run pays
/// for the overlap (a page per 100 deliveries in it), so it stays short.
pub const OVERLAP: Duration = Duration::from_secs(120);
/// GitHub's largest page.
const PER_PAGE: u32 = 100;
/// Details fetched at once (well below GitHub's 100 concurrent requests).
const CONCURRENT_FETCHES: usize = 8;
/// A redelivery asked for is not asked for again within this time.
const REDELIVERY_PATIENCE: Duration = Duration::from_secs(3600);

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    pub mode: DeliveryRecovery,
    /// Listing pages read at most.
    pub max_pages: usize,
    /// For the jobs of stored deliveries.
    pub max_attempts: i32,
    /// Examine back to this time instead of the watermark (still within the
    /// retention).
    pub since: Option<DateTime<Utc>>,
    /// A stored repository with more missing deliveries than this is swept
    /// once instead of fetching each (`None`: always fetch).
    pub sweep_above: Option<usize>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Listing pages read.
    pub pages: usize,
    /// Distinct delivery ids listed within the window.
    pub examined: usize,
    /// Of those, events prmonitor does not track: never fetched.
    pub untracked: usize,
    /// Tracked and stored already.
    pub already_stored: usize,
    /// Tracked and never stored.
    pub missing: usize,
    /// Fetched and stored (outcome `recovered`).
    pub recovered: usize,
    /// Stored without their payloads, covered by a sweep of their repository.
    pub covered_by_sweeps: usize,
    /// Repositories swept because many of their deliveries were missing.
    pub sweeps: usize,
    /// Fetched, but stored meanwhile (GitHub's redelivery won the race).
    pub raced: usize,
    /// Redeliveries asked of GitHub.
    pub redeliveries_requested: usize,
    /// Missing ones GitHub no longer had, or whose payload intake would refuse.
    pub unrecoverable: usize,
    /// The run reached the watermark (or the end of the listing); otherwise
    /// it stopped at its page bound and the next run goes on.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("GitHub: {0}")]
    GitHub(#[from] GitHubError),
    #[error("the database: {0}")]
    Database(String),
}

impl From<diesel::result::Error> for RecoveryError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.to_string())
    }
}

impl From<StoreError> for RecoveryError {
    fn from(error: StoreError) -> Self {
        Self::Database(error.to_string())
    }
}

/// Whether a delivery of `event` with `action` can change what prmonitor
/// stores: decided from the listing, before anything is fetched.
pub fn tracks(event: &str, action: Option<&str>) -> bool {
    match event {
        // Review requests, milestones, locks and auto-merge change nothing stored.
        "pull_request" => !matches!(
            action,
            Some(
                "review_requested"
                    | "review_request_removed"
                    | "milestoned"
                    | "demilestoned"
                    | "locked"
                    | "unlocked"
                    | "auto_merge_enabled"
                    | "auto_merge_disabled"
            )
        ),
        // A re-run request creates a new run, which has its own delivery.
        "check_run" => !matches!(action, Some("rerequested" | "requested_action")),
        // merge_group: both actions change a stored merge group.
        "check_suite"
        | "merge_group"
        | "installation"
        | "installation_repositories"
        | "repository"
        | "status"
        | "branch_protection_rule"
        | "repository_ruleset" => true,
        _ => false,
    }
}

/// The stored progress through the listing.
#[derive(Debug, Clone, Default, Queryable)]
struct Progress {
    watermark: Option<DateTime<Utc>>,
    resume_cursor: Option<String>,
    resume_top: Option<DateTime<Utc>>,
}

async fn load_progress(conn: &mut AsyncPgConnection) -> QueryResult<Progress> {
    Ok(delivery_recovery::table
        .select((
            delivery_recovery::watermark,
            delivery_recovery::resume_cursor,
            delivery_recovery::resume_top,
        ))
        .first::<Progress>(conn)
        .await
        .optional()?
        .unwrap_or_default())
}

async fn save_progress(conn: &mut AsyncPgConnection, progress: &Progress) -> QueryResult<()> {
    let row = (
        delivery_recovery::id.eq(true),
        delivery_recovery::watermark.eq(progress.watermark),
        delivery_recovery::resume_cursor.eq(progress.resume_cursor.as_deref()),
        delivery_recovery::resume_top.eq(progress.resume_top),
        delivery_recovery::last_run_at.eq(Utc::now()),
        delivery_recovery::updated_at.eq(Utc::now()),
    );
    diesel::insert_into(delivery_recovery::table)
        .values(row)
        .on_conflict(delivery_recovery::id)
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    Ok(())
}

fn ago(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX)
}

/// One run of gap recovery.
#[tracing::instrument(skip_all, fields(mode = ?options.mode))]
pub async fn recover(
    github: &GitHubClient,
    pool: &DbPool,
    options: &RecoveryOptions,
) -> Result<RecoveryReport, RecoveryError> {
    let now = Utc::now();
    let mut conn = pool.get().await.map_err(|e| RecoveryError::Database(e.to_string()))?;
    let stored = load_progress(&mut conn).await?;
    let retention_floor = ago(now, RETENTION);
    let floor = options
        .since
        .or(stored.watermark.map(|w| ago(w, OVERLAP)))
        .map_or(retention_floor, |floor| floor.max(retention_floor));
    // An operator's `--since` starts from the top; a timed run goes on
    // where the last one stopped.
    let mut progress = match options.since {
        Some(_) => Progress { watermark: stored.watermark, ..Progress::default() },
        None => stored.clone(),
    };
    let mut report = RecoveryReport::default();
    let outcome = page_through(github, &mut conn, options, floor, &mut progress, &mut report).await;
    if options.since.is_none() || report.complete {
        save_progress(&mut conn, &progress).await?;
    }
    outcome?;
    let counts = [report.recovered, report.covered_by_sweeps, report.redeliveries_requested];
    for (how, n) in RECOVERED_HOW.into_iter().zip(counts) {
        metrics::counter!("prmonitor_webhook_deliveries_recovered_total", "how" => how).increment(n as u64);
    }
    tracing::info!(
        pages = report.pages,
        examined = report.examined,
        missing = report.missing,
        recovered = report.recovered,
        covered_by_sweeps = report.covered_by_sweeps,
        redeliveries_requested = report.redeliveries_requested,
        complete = report.complete,
        "delivery recovery run"
    );
    Ok(report)
}

/// Pages the listing from `progress`'s cursor down to `floor`, then deals
/// with what is missing; `progress` moves only once all of it is stored.
async fn page_through(
    github: &GitHubClient,
    conn: &mut AsyncPgConnection,
    options: &RecoveryOptions,
    floor: DateTime<Utc>,
    progress: &mut Progress,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    // Attempts of one delivery share its id; the first seen is the newest.
    let mut seen: HashSet<String> = HashSet::new();
    let mut missing: Vec<HookDeliverySummary> = Vec::new();
    let mut next = progress.clone();
    while report.pages < options.max_pages {
        let page = github.list_hook_deliveries(next.resume_cursor.as_deref(), PER_PAGE).await?;
        report.pages += 1;
        if next.resume_top.is_none() {
            next.resume_top = page.items.iter().map(|a| a.delivered_at).max();
        }
        let mut reached_floor = false;
        let mut candidates: Vec<HookDeliverySummary> = Vec::new();
        for attempt in page.items {
            if attempt.delivered_at < floor {
                reached_floor = true;
                continue;
            }
            if !seen.insert(attempt.guid.clone()) {
                continue;
            }
            report.examined += 1;
            if tracks(&attempt.event, attempt.action.as_deref()) {
                candidates.push(attempt);
            } else {
                report.untracked += 1;
            }
        }
        let ids: Vec<&str> = candidates.iter().map(|a| a.guid.as_str()).collect();
        let stored = deliveries::stored_among(conn, &ids).await?;
        let tracked = candidates.len();
        missing.extend(candidates.into_iter().filter(|a| !stored.contains(&a.guid)));
        report.already_stored += tracked - (missing.len() - report.missing);
        report.missing = missing.len();
        match page.next_cursor {
            Some(cursor) if !reached_floor => next.resume_cursor = Some(cursor),
            _ => {
                // Everything down to the floor is examined: the newest
                // delivery this run (or the one it continued) saw is the
                // new watermark.
                next.watermark = next.resume_top.max(next.watermark);
                next.resume_cursor = None;
                next.resume_top = None;
                report.complete = true;
                break;
            }
        }
    }
    let (swept, fetched) = split_for_sweeps(conn, missing, options.sweep_above).await?;
    if !swept.is_empty() {
        sweep_instead(conn, &swept, options.max_attempts, report).await?;
    }
    match options.mode {
        DeliveryRecovery::Ingest => ingest(github, conn, &fetched, options.max_attempts, report).await?,
        DeliveryRecovery::Redeliver => redeliver(github, conn, &fetched, report).await?,
    }
    *progress = next;
    Ok(())
}

/// `pull_request` deliveries that name a stored repository, grouped by it,
/// for the repositories with more than `sweep_above` of them; and the rest,
/// to be fetched one by one. A sweep reads every PR updated since the last
/// one, but only the check runs of current heads: check runs on a head a
/// push replaced would be lost, so check deliveries are always fetched (as
/// are installation and repository events, which a sweep does not replay).
async fn split_for_sweeps(
    conn: &mut AsyncPgConnection,
    missing: Vec<HookDeliverySummary>,
    sweep_above: Option<usize>,
) -> QueryResult<(Vec<(Repository, Vec<HookDeliverySummary>)>, Vec<HookDeliverySummary>)> {
    let Some(limit) = sweep_above else { return Ok((Vec::new(), missing)) };
    let mut by_repository: BTreeMap<i64, Vec<HookDeliverySummary>> = BTreeMap::new();
    let mut fetched = Vec::new();
    for attempt in missing {
        match attempt.repository_id {
            Some(id) if attempt.event == "pull_request" => {
                by_repository.entry(id).or_default().push(attempt);
            }
            _ => fetched.push(attempt),
        }
    }
    let mut swept = Vec::new();
    for (github_id, attempts) in by_repository {
        let repository = if attempts.len() > limit {
            repositories::find_by_github_id(conn, GithubRepoId(github_id)).await?.filter(|r| r.active)
        } else {
            None
        };
        match repository {
            Some(repository) => swept.push((repository, attempts)),
            // Few, or a repository not stored (its webhook registers it).
            None => fetched.extend(attempts),
        }
    }
    Ok((swept, fetched))
}

/// One sweep per repository stands for its many missing deliveries, stored
/// without their payloads (they are known, so a later redelivery is a
/// duplicate) and marked processed when the sweep ends.
async fn sweep_instead(
    conn: &mut AsyncPgConnection,
    swept: &[(Repository, Vec<HookDeliverySummary>)],
    max_attempts: i32,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    let mut records = Vec::new();
    for (repository, attempts) in swept {
        let job = NewJob::sweep(&RepositoryJob { repository_id: repository.id, manual: false })
            .with_max_attempts(max_attempts);
        tracing::info!(
            repository = %repository.full_name(),
            deliveries = attempts.len(),
            "many deliveries missing: the repository is swept instead"
        );
        for attempt in attempts {
            records.push(DeliveryRecord::without_payload(
                attempt.guid.clone(),
                attempt.event.clone(),
                attempt.action.clone(),
                attempt.installation_id.map(InstallationId),
                Some((repository.github_id, repository.full_name())),
                job.clone(),
                attempt.delivered_at,
            ));
        }
        report.sweeps += 1;
    }
    for stored in store::store_now(conn, &records).await? {
        match stored {
            Stored::New { .. } => report.covered_by_sweeps += 1,
            Stored::Duplicate => report.raced += 1,
        }
    }
    Ok(())
}

/// Fetches the missing deliveries' payloads and stores them in one
/// transaction, as intake would have.
async fn ingest(
    github: &GitHubClient,
    conn: &mut AsyncPgConnection,
    missing: &[HookDeliverySummary],
    max_attempts: i32,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    let mut records = Vec::with_capacity(missing.len());
    for chunk in missing.chunks(CONCURRENT_FETCHES) {
        let fetches: Vec<_> =
            chunk.iter().map(|attempt| fetch_record(github, attempt, max_attempts)).collect();
        for record in futures_util::future::join_all(fetches).await {
            match record? {
                Some(record) => records.push(record),
                None => report.unrecoverable += 1,
            }
        }
    }
    for (record, stored) in records.iter().zip(store::store_now(conn, &records).await?) {
        match stored {
            Stored::New { .. } => {
                tracing::info!(delivery_id = %record.delivery_id, event = %record.event, "delivery recovered");
                report.recovered += 1;
            }
            Stored::Duplicate => report.raced += 1,
        }
    }
    Ok(())
}

/// The record of one missing delivery, from its detail: `None` when GitHub
/// no longer has it or intake would refuse it (its refusal is logged).
async fn fetch_record(
    github: &GitHubClient,
    attempt: &HookDeliverySummary,
    max_attempts: i32,
) -> Result<Option<DeliveryRecord>, GitHubError> {
    let Some(detail) = github.get_hook_delivery(attempt.id).await? else {
        tracing::warn!(delivery_id = %attempt.guid, "the delivery is gone from GitHub");
        return Ok(None);
    };
    // The same checks intake makes of the headers and the payload: this
    // input comes from GitHub too, but is not signed.
    let parsed = envelope::parse_headers(Some(attempt.event.as_bytes()), Some(attempt.guid.as_bytes()))
        .and_then(|headers| {
            let body = serde_json::to_vec(&detail.request.payload)
                .map_err(|e| envelope::EnvelopeError::InvalidJson(e.to_string()))?;
            let envelope = envelope::parse_payload(&headers.event, &body)?;
            Ok((headers, envelope, body))
        });
    match parsed {
        Ok((headers, envelope, body)) => Ok(Some(
            DeliveryRecord::from_envelope(
                headers.delivery_id,
                headers.event,
                &envelope,
                Bytes::from(body),
                max_attempts,
            )
            .recovered(Some(attempt.delivered_at)),
        )),
        Err(error) => {
            tracing::warn!(delivery_id = %attempt.guid, %error, "a recovered delivery was refused");
            Ok(None)
        }
    }
}

/// Asks GitHub to deliver the missing ones again, except those asked for
/// recently (their redelivery may be on its way).
async fn redeliver(
    github: &GitHubClient,
    conn: &mut AsyncPgConnection,
    missing: &[HookDeliverySummary],
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    let ids: Vec<&str> = missing.iter().map(|a| a.guid.as_str()).collect();
    let asked: Vec<String> = delivery_redelivery_requests::table
        .filter(delivery_redelivery_requests::delivery_id.eq_any(&ids))
        .filter(delivery_redelivery_requests::requested_at.gt(ago(Utc::now(), REDELIVERY_PATIENCE)))
        .select(delivery_redelivery_requests::delivery_id)
        .load(conn)
        .await?;
    for attempt in missing.iter().filter(|a| !asked.contains(&a.guid)) {
        if github.redeliver_hook_delivery(attempt.id).await? {
            diesel::insert_into(delivery_redelivery_requests::table)
                .values(delivery_redelivery_requests::delivery_id.eq(&attempt.guid))
                .on_conflict(delivery_redelivery_requests::delivery_id)
                .do_update()
                .set(delivery_redelivery_requests::requested_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            tracing::info!(delivery_id = %attempt.guid, "redelivery requested");
            report.redeliveries_requested += 1;
        } else {
            report.unrecoverable += 1;
        }
    }
    // Requests past any use are forgotten.
    diesel::delete(
        delivery_redelivery_requests::table
            .filter(delivery_redelivery_requests::requested_at.lt(ago(Utc::now(), RETENTION))),
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untracked_events_and_actions_are_not_fetched() {
        for (event, action) in [
            ("pull_request", Some("opened")),
            ("pull_request", Some("synchronize")),
            ("pull_request", Some("labeled")),
            ("pull_request", None),
            ("check_run", Some("completed")),
            ("check_run", Some("created")),
            ("check_suite", Some("completed")),
            ("installation", Some("created")),
            ("installation_repositories", Some("added")),
            ("repository", Some("renamed")),
            ("merge_group", Some("checks_requested")),
            ("merge_group", Some("destroyed")),
            ("pull_request", Some("enqueued")),
            ("pull_request", Some("dequeued")),
        ] {
            assert!(tracks(event, action), "{event}.{action:?} is tracked");
        }
        for (event, action) in [
            ("push", None),
            ("ping", None),
            ("issues", Some("opened")),
            ("pull_request", Some("review_requested")),
            ("pull_request", Some("locked")),
            ("check_run", Some("rerequested")),
            ("", None),
        ] {
            assert!(!tracks(event, action), "{event}.{action:?} is not tracked");
        }
    }
}
