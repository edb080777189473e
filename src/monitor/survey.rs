//! Sweeps that cost almost nothing: one GraphQL query surveys many
//! repositories of an installation (their open PRs with what tells whether
//! they changed, and the closed PRs updated last), the survey is compared
//! with the stored rows, and only what differs is read in full.
//!
//! What the survey can see change: a PR's update time (edits, labels,
//! pushes, state changes all move it), head, draft flag and state, a stored
//! open PR leaving the open list, a closed PR updated since the last sweep,
//! and the head's rollup state (a check failing, or the last pending one
//! finishing). What it cannot see: one of several pending checks finishing
//! while others still run (the rollup stays `PENDING`), so every head with
//! unfinished stored runs is re-read as well — through GraphQL too, 50
//! commits a query. Buying certainty with `checkRunCountsByState` would cost
//! a point per hundred PRs on every sweep; re-reading what is pending costs
//! only where something is.
//!
//! Cost: 50 repositories a query cost 1 point (2 connections each); a
//! changed PR costs 1 REST read plus its share of a check-runs query.
//! Each open PR's merge queue entry rides along (an object, not a
//! connection: no points), so the survey also heals lost `merge_group`
//! webhooks ([`crate::db::merge_groups::apply_sweep`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::bulk::{self, RepoCommit};
use super::detect::Cause;
use super::discovery::queue_entries;
use super::processor::{PrProcessor, ProcessingResult, Target, WorkContext};
use crate::db::merge_groups::{QueueEntry, QueueSnapshot};
use crate::db::pull_requests::{self, SurveyedPr};
use crate::db::reads::PASSING_CONCLUSIONS;
use crate::db::repositories::Repository;
use crate::db::DbPool;
use crate::github::graphql::{self, SurveyRepository, SurveyTarget};
use crate::github::{GitHubClient, Purpose};
use crate::ids::{CommitSha, InstallationId, PullRequestNumber};

/// What a survey says to read of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// PRs to read in full (REST): new, changed, left the open list, or
    /// closed and updated since the last sweep.
    pub numbers: Vec<PullRequestNumber>,
    /// Commits whose check runs to re-read.
    pub commits: BTreeSet<String>,
    /// The newest update the survey saw: the next sweep's watermark.
    pub watermark: Option<DateTime<Utc>>,
    /// The survey could not tell everything (more than a page of open PRs,
    /// or more closed PRs updated since the watermark than it listed): the
    /// repository is swept on its own instead.
    pub inconclusive: bool,
    /// The open PRs' merge queue entries (the survey lists every open PR
    /// when it is conclusive).
    pub merge_queue: Vec<QueueEntry>,
    /// Every listed entry named its group's commit.
    pub merge_queue_complete: bool,
}

/// A stored check run as the rollup reads it: name, status, conclusion, GitHub id.
pub type RollupRun<'a> = (&'a str, &'a str, Option<&'a str>, i64);

/// GitHub's rollup state of a head's check runs and statuses, as the stored
/// rows give it: the newest run of each name decides; a completed run whose
/// conclusion is not one of [`PASSING_CONCLUSIONS`] (the read side's rule),
/// or a status `error` or `failure`, makes it `FAILURE`, else any run not
/// completed or status `pending` `PENDING`, else `SUCCESS`; neither gives no
/// rollup (GitHub's `statusCheckRollup: null`). Where GitHub judges
/// otherwise, the two disagree and the head is re-read: a cost, never a
/// wrong row.
pub fn stored_rollup<'a>(
    runs: impl IntoIterator<Item = RollupRun<'a>>,
    statuses: impl IntoIterator<Item = &'a str>,
) -> Option<&'static str> {
    let statuses: Vec<&str> = statuses.into_iter().collect();
    let mut newest: BTreeMap<&str, (i64, &str, Option<&str>)> = BTreeMap::new();
    for (name, status, conclusion, id) in runs {
        let entry = newest.entry(name).or_insert((id, status, conclusion));
        if id > entry.0 {
            *entry = (id, status, conclusion);
        }
    }
    if newest.is_empty() && statuses.is_empty() {
        return None;
    }
    let failing = |c: Option<&str>| c.is_some_and(|c| !PASSING_CONCLUSIONS.contains(&c));
    if newest.values().any(|(_, status, conclusion)| *status == "completed" && failing(*conclusion))
        || statuses.iter().any(|s| matches!(*s, "error" | "failure"))
    {
        Some("FAILURE")
    } else if newest.values().any(|(_, status, _)| *status != "completed") || statuses.contains(&"pending") {
        Some("PENDING")
    } else {
        Some("SUCCESS")
    }
}

/// Compares one repository's survey with its stored rows. `rollups` holds
/// the stored rollup of each stored open head.
pub fn plan(
    survey: &SurveyRepository,
    stored: &[SurveyedPr],
    rollups: &HashMap<String, Option<&'static str>>,
    watermark: Option<DateTime<Utc>>,
) -> Plan {
    let by_number: HashMap<i64, &SurveyedPr> = stored.iter().map(|pr| (i64::from(pr.number.0), pr)).collect();
    let mut plan = Plan { inconclusive: survey.open.page_info.has_next_page, watermark, ..Plan::default() };
    let read = |plan: &mut Plan, number: i64| {
        if let Some(number) = PullRequestNumber::from_github(number) {
            if !plan.numbers.contains(&number) {
                plan.numbers.push(number);
            }
        }
    };
    let mut listed_open = BTreeSet::new();
    let mut complete = true;
    plan.merge_queue =
        queue_entries(
            survey.open.nodes.iter().flatten().filter_map(|pr| {
                Some((pr.number, pr.base_ref_name.as_deref(), pr.merge_queue_entry.as_ref()?))
            }),
            &mut complete,
        );
    plan.merge_queue_complete = complete;
    for pr in survey.open.nodes.iter().flatten() {
        listed_open.insert(pr.number);
        plan.watermark = plan.watermark.max(Some(pr.updated_at));
        let known = by_number.get(&pr.number);
        let changed = known.is_none_or(|s| {
            s.updated_at != pr.updated_at
                || s.head_sha != pr.head_ref_oid
                || s.draft != pr.is_draft
                || s.state != "open"
        });
        if changed {
            read(&mut plan, pr.number);
        }
        let head_moved = known.is_none_or(|s| s.head_sha != pr.head_ref_oid);
        let rollup_differs = match &pr.head_ref {
            // The head branch is gone while the PR is open: nothing to compare with.
            None => true,
            Some(_) => rollups.get(&pr.head_ref_oid).copied().flatten() != pr.rollup(),
        };
        if head_moved || rollup_differs {
            plan.commits.insert(pr.head_ref_oid.clone());
        }
    }
    // Stored as open, no longer listed open: closed, merged or gone.
    for pr in stored.iter().filter(|pr| pr.state == "open") {
        if !listed_open.contains(&i64::from(pr.number.0)) {
            read(&mut plan, i64::from(pr.number.0));
            // Its last checks may have finished unseen before it closed.
            plan.commits.insert(pr.head_sha.clone());
        }
    }
    let mut all_newer = true;
    for pr in survey.closed.nodes.iter().flatten() {
        plan.watermark = plan.watermark.max(Some(pr.updated_at));
        all_newer &= watermark.is_some_and(|w| pr.updated_at >= w);
        match by_number.get(&pr.number) {
            Some(s) if s.updated_at >= pr.updated_at && s.state != "open" => {}
            _ => read(&mut plan, pr.number),
        }
    }
    // Every listed closed PR is newer than the watermark and there are more:
    // some updated since may be unlisted.
    if survey.closed.page_info.has_next_page && (all_newer || watermark.is_none()) {
        plan.inconclusive = true;
    }
    plan
}

/// What sweeping one installation's repositories did.
#[derive(Debug, Default)]
pub struct SurveyReport {
    pub results: Vec<ProcessingResult>,
    /// Repositories swept on their own (REST) because the survey could not tell.
    pub swept_alone: usize,
}

/// Sweeps `repos` (all of `installation`), `batch` repositories a survey.
pub async fn sweep_installation(
    github: &GitHubClient,
    processor: &PrProcessor,
    pool: &DbPool,
    installation: Option<InstallationId>,
    repos: &[Repository],
    batch: usize,
) -> SurveyReport {
    let mut report = SurveyReport::default();
    for chunk in repos.chunks(batch.max(1)) {
        let targets: Vec<SurveyTarget<'_>> =
            chunk.iter().map(|r| SurveyTarget { owner: &r.owner, name: &r.name }).collect();
        // Before the read: a merge group stored after it started may be newer than the read.
        let read_at = Utc::now();
        let answer = match github.graphql(installation, Purpose::Sweep, &graphql::survey(&targets)).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, repositories = chunk.len(), "the survey failed; sweeping each repository on its own");
                for repo in chunk {
                    report.results.push(sweep_alone(processor, repo).await);
                }
                report.swept_alone += chunk.len();
                continue;
            }
        };
        let mut plans: Vec<(&Repository, Plan)> = Vec::new();
        for (i, repo) in chunk.iter().enumerate() {
            let survey = answer.at(&[&format!("r{i}")]).map(graphql::decode::<SurveyRepository>);
            let plan = match survey {
                Some(Ok(survey)) => match plan_repository(pool, repo, &survey).await {
                    Ok(plan) => Some(plan),
                    Err(error) => {
                        tracing::warn!(%error, repository = %repo.full_name(), "cannot compare the survey");
                        None
                    }
                },
                // Unresolved (renamed, deleted, access lost) or unreadable.
                _ => None,
            };
            match plan {
                Some(plan) if !plan.inconclusive => plans.push((repo, plan)),
                _ => {
                    report.swept_alone += 1;
                    report.results.push(sweep_alone(processor, repo).await);
                }
            }
        }
        let commits: BTreeSet<RepoCommit> = plans
            .iter()
            .flat_map(|(repo, plan)| {
                plan.commits.iter().map(|sha| RepoCommit {
                    owner: repo.owner.clone(),
                    name: repo.name.clone(),
                    sha: sha.clone(),
                })
            })
            .collect();
        let mut runs = bulk::check_runs_of_commits(github, installation, &commits, Purpose::Sweep).await;
        for (repo, plan) in plans {
            let mut in_hand = Vec::new();
            let mut statuses = Vec::new();
            let mut read_commits = Vec::new();
            let mut failed = Vec::new();
            for sha in &plan.commits {
                let key = RepoCommit { owner: repo.owner.clone(), name: repo.name.clone(), sha: sha.clone() };
                match runs.remove(&key) {
                    Some(Ok(found)) => {
                        in_hand.extend(found.runs);
                        statuses.extend(found.statuses);
                        read_commits.push(CommitSha(sha.clone()));
                    }
                    Some(Err(error)) => failed.push(format!("check runs of {sha}: {error}")),
                    None => failed.push(format!("check runs of {sha} were not read")),
                }
            }
            let target = Target::Surveyed {
                numbers: plan.numbers,
                commits: read_commits,
                runs: in_hand,
                statuses,
                failed,
                watermark: plan.watermark,
                merge_queue: Some(QueueSnapshot {
                    entries: plan.merge_queue,
                    complete: plan.merge_queue_complete,
                    read_at,
                }),
            };
            let ctx = WorkContext { cause: Cause::Sweep, ..WorkContext::default() };
            report.results.push(processor.process(repo, target, ctx).await);
        }
    }
    report
}

async fn sweep_alone(processor: &PrProcessor, repo: &Repository) -> ProcessingResult {
    let ctx = WorkContext { cause: Cause::Sweep, ..WorkContext::default() };
    processor.process(repo, Target::Sweep, ctx).await
}

/// The stored rows a survey is compared with, and the plan.
async fn plan_repository(
    pool: &DbPool,
    repo: &Repository,
    survey: &SurveyRepository,
) -> Result<Plan, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let closed: Vec<PullRequestNumber> = survey
        .closed
        .nodes
        .iter()
        .flatten()
        .filter_map(|pr| PullRequestNumber::from_github(pr.number))
        .collect();
    let stored = pull_requests::surveyed_prs(&mut conn, repo.id, &closed).await.map_err(|e| e.to_string())?;
    let heads: Vec<String> =
        stored.iter().filter(|pr| pr.state == "open").map(|pr| pr.head_sha.clone()).collect();
    let runs = pull_requests::runs_of_heads(&mut conn, repo.id, &heads).await.map_err(|e| e.to_string())?;
    let mut by_head: HashMap<&str, Vec<RollupRun<'_>>> = HashMap::new();
    for (sha, name, status, conclusion, id) in &runs {
        by_head.entry(sha.as_str()).or_default().push((
            name.as_str(),
            status.as_str(),
            conclusion.as_deref(),
            *id,
        ));
    }
    let stored_statuses = {
        let shas: Vec<&str> = heads.iter().map(String::as_str).collect();
        crate::db::statuses::load(&mut conn, repo.id, &shas).await.map_err(|e| e.to_string())?
    };
    let mut statuses_by_head: HashMap<&str, Vec<&str>> = HashMap::new();
    for status in &stored_statuses {
        statuses_by_head.entry(status.sha.as_str()).or_default().push(status.state.as_str());
    }
    let rollups: HashMap<String, Option<&'static str>> = heads
        .iter()
        .map(|sha| {
            let runs = by_head.get(sha.as_str()).into_iter().flatten().copied();
            let statuses = statuses_by_head.get(sha.as_str()).into_iter().flatten().copied();
            (sha.clone(), stored_rollup(runs, statuses))
        })
        .collect();
    let mut plan = plan(survey, &stored, &rollups, repo.sweep_watermark);
    // Runs GitHub may have finished without a webhook (a run's start sends
    // none), and heads replaced since the last sweep.
    let unfinished =
        pull_requests::unfinished_check_heads(&mut conn, repo.id).await.map_err(|e| e.to_string())?;
    let since = repo.last_swept_at.unwrap_or_else(|| Utc::now() - chrono::Duration::days(1));
    let replaced =
        pull_requests::replaced_heads(&mut conn, repo.id, since).await.map_err(|e| e.to_string())?;
    plan.commits.extend(unfinished);
    plan.commits.extend(replaced);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(minute: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).single().expect("time")
    }

    fn stored(number: i32, minute: u32, head: &str, state: &str) -> SurveyedPr {
        SurveyedPr {
            number: PullRequestNumber(number),
            updated_at: at(minute),
            head_sha: head.into(),
            draft: false,
            state: state.into(),
        }
    }

    fn survey(open: serde_json::Value, closed: serde_json::Value, more_closed: bool) -> SurveyRepository {
        graphql::decode(&json!({
            "open": { "totalCount": 0, "pageInfo": { "hasNextPage": false }, "nodes": open },
            "closed": { "pageInfo": { "hasNextPage": more_closed }, "nodes": closed },
        }))
        .expect("survey")
    }

    fn open_pr(number: i64, minute: u32, head: &str, rollup: Option<&str>) -> serde_json::Value {
        json!({
            "number": number, "updatedAt": at(minute), "headRefOid": head, "isDraft": false, "state": "OPEN",
            "headRef": { "target": { "statusCheckRollup": rollup.map(|state| json!({ "state": state })) } }
        })
    }

    #[test]
    fn an_unchanged_repository_reads_nothing() {
        let survey = survey(json!([open_pr(1, 5, "aa", Some("SUCCESS"))]), json!([]), false);
        let rollups = HashMap::from([("aa".to_owned(), Some("SUCCESS"))]);
        let plan = plan(&survey, &[stored(1, 5, "aa", "open")], &rollups, Some(at(5)));
        assert_eq!(plan, Plan { watermark: Some(at(5)), merge_queue_complete: true, ..Plan::default() });
    }

    #[test]
    fn changes_the_survey_sees_are_read() {
        let survey = survey(
            json!([
                open_pr(1, 9, "bb", Some("PENDING")), // pushed: new head
                open_pr(2, 5, "cc", Some("FAILURE")), // a check failed: rollup differs
                open_pr(4, 9, "dd", None),            // new
            ]),
            json!([{ "number": 3, "updatedAt": at(8) }]),
            false,
        );
        let stored = [stored(1, 5, "aa", "open"), stored(2, 5, "cc", "open"), stored(3, 5, "ee", "open")];
        let rollups = HashMap::from([
            ("aa".to_owned(), Some("SUCCESS")),
            ("cc".to_owned(), Some("PENDING")),
            ("ee".to_owned(), Some("SUCCESS")),
        ]);
        let plan = plan(&survey, &stored, &rollups, Some(at(5)));
        assert_eq!(plan.numbers, [1, 4, 3].map(PullRequestNumber));
        assert_eq!(plan.commits, ["bb", "cc", "dd", "ee"].map(str::to_owned).into_iter().collect());
        assert_eq!(plan.watermark, Some(at(9)));
        assert!(!plan.inconclusive);
    }

    #[test]
    fn a_survey_that_cannot_tell_sends_the_repository_to_a_sweep_of_its_own() {
        let closed: Vec<_> = (10..20).map(|n| json!({ "number": n, "updatedAt": at(30) })).collect();
        let survey = survey(json!([]), json!(closed), true);
        assert!(plan(&survey, &[], &HashMap::new(), Some(at(5))).inconclusive);
        let old: Vec<_> = (10..20).map(|n| json!({ "number": n, "updatedAt": at(1) })).collect();
        let settled = self::survey(json!([]), json!(old), true);
        assert!(!plan(&settled, &[], &HashMap::new(), Some(at(5))).inconclusive);
    }

    #[test]
    fn the_survey_reads_the_merge_queue_with_the_open_prs() {
        let mut queued = open_pr(1, 5, "aa", Some("SUCCESS"));
        queued["baseRefName"] = json!("main");
        queued["mergeQueueEntry"] = json!({
            "state": "AWAITING_CHECKS", "position": 1, "enqueuedAt": at(4),
            "headCommit": { "oid": "g1" }, "baseCommit": { "oid": "b1" }
        });
        let mut building = open_pr(2, 5, "bb", Some("SUCCESS"));
        building["baseRefName"] = json!("main");
        building["mergeQueueEntry"] = json!({ "state": "QUEUED", "position": 2, "enqueuedAt": at(4) });
        let plan = plan(&survey(json!([queued.clone()]), json!([]), false), &[], &HashMap::new(), None);
        assert!(plan.merge_queue_complete);
        assert_eq!(
            plan.merge_queue,
            [QueueEntry {
                pr_number: PullRequestNumber(1),
                head_sha: "g1".into(),
                base_ref: "refs/heads/main".into(),
                base_sha: "b1".into(),
                enqueued_at: Some(at(4)),
            }]
        );
        // An entry without its group's commit: nothing can be told gone.
        let partial =
            self::plan(&survey(json!([queued, building]), json!([]), false), &[], &HashMap::new(), None);
        assert_eq!((partial.merge_queue.len(), partial.merge_queue_complete), (1, false));
    }

    #[test]
    fn the_stored_rollup_follows_githubs_rule() {
        let none: [&str; 0] = [];
        assert_eq!(stored_rollup([], none), None);
        assert_eq!(stored_rollup([], ["success"]), Some("SUCCESS"));
        assert_eq!(stored_rollup([("a", "completed", Some("success"), 1)], ["pending"]), Some("PENDING"));
        assert_eq!(stored_rollup([("a", "in_progress", None, 1)], ["error"]), Some("FAILURE"));
        assert_eq!(
            stored_rollup(
                [("a", "completed", Some("success"), 1), ("b", "completed", Some("skipped"), 2)],
                none
            ),
            Some("SUCCESS")
        );
        assert_eq!(
            stored_rollup([("a", "completed", Some("success"), 1), ("b", "in_progress", None, 2)], none),
            Some("PENDING")
        );
        assert_eq!(
            stored_rollup([("a", "completed", Some("failure"), 1), ("b", "queued", None, 2)], none),
            Some("FAILURE")
        );
        // A re-run that passed replaces the failure.
        assert_eq!(
            stored_rollup(
                [("a", "completed", Some("failure"), 1), ("a", "completed", Some("success"), 2)],
                none
            ),
            Some("SUCCESS")
        );
    }
}
