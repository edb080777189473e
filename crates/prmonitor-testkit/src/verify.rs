//! Is the database the simulator's model, field by field? For the tests and
//! the benchmarks: the simulator is the truth, prmonitor's tables the copy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use github_sim::model::PrState as SimState;
use github_sim::Simulator;
use prmonitor::db::schema::{
    check_runs, commit_statuses, merge_groups, pull_requests, repositories, required_checks,
};

type PrRow = (
    i64,
    i32,
    String,
    String,
    String,
    bool,
    (String, String, String, String),
    String,
    Option<String>,
    (Vec<String>, Vec<String>),
    (DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>),
);

type RunRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    (Option<String>, Option<String>),
);

/// `Ok` when every PR and check run of the simulator's repository `github_id`
/// is stored exactly, and nothing else is; otherwise what differs.
pub async fn diff(db_url: &str, sim: &Simulator, github_id: i64) -> Result<(), String> {
    let conn = &mut crate::database::connect(db_url).await;
    let (sim_prs, sim_runs, sim_groups, html, sim_statuses, sim_required) = sim.world(|w| {
        let r = w.repo(github_id).map_err(|e| e.to_string())?;
        let latest: Vec<StatusRow> = r
            .statuses
            .keys()
            .flat_map(|sha| r.latest_statuses(sha))
            .map(|s| {
                (
                    s.sha.clone(),
                    s.context.clone(),
                    s.state.clone(),
                    s.description.clone(),
                    s.target_url.clone(),
                    s.created_at,
                )
            })
            .collect();
        let required: BTreeMap<String, Vec<String>> = r
            .protection
            .iter()
            .map(|(branch, rule)| {
                let mut contexts = rule.contexts.clone();
                contexts.sort();
                (branch.clone(), contexts)
            })
            .collect();
        Ok::<_, String>((
            r.pulls.clone(),
            r.check_runs.clone(),
            r.merge_groups.clone(),
            format!("http://{}/web/{}", sim.address(), r.full_name()),
            latest,
            required,
        ))
    })?;
    let repo_id: Option<i64> = repositories::table
        .filter(repositories::github_id.eq(github_id))
        .select(repositories::id)
        .first(conn)
        .await
        .optional()
        .map_err(|e| e.to_string())?;
    let Some(repo_id) = repo_id else { return Err(format!("repository {github_id} is not stored")) };
    let rows: Vec<PrRow> = pull_requests::table
        .filter(pull_requests::repository_id.eq(repo_id))
        .order(pull_requests::number)
        .select((
            pull_requests::github_id,
            pull_requests::number,
            pull_requests::title,
            pull_requests::author,
            pull_requests::state,
            pull_requests::draft,
            (
                pull_requests::base_branch,
                pull_requests::base_sha,
                pull_requests::head_branch,
                pull_requests::head_sha,
            ),
            pull_requests::html_url,
            pull_requests::body,
            (pull_requests::labels, pull_requests::assignees),
            (
                pull_requests::gh_created_at,
                pull_requests::gh_updated_at,
                pull_requests::gh_closed_at,
                pull_requests::gh_merged_at,
            ),
        ))
        .load(conn)
        .await
        .map_err(|e| e.to_string())?;
    let expected: Vec<PrRow> = sim_prs
        .values()
        .map(|pr| {
            let state = match pr.state {
                SimState::Open => "open",
                SimState::Closed => "closed",
                SimState::Merged => "merged",
            };
            let mut labels = pr.labels.clone();
            labels.sort();
            let mut assignees = pr.assignees.clone();
            assignees.sort();
            (
                pr.id,
                pr.number as i32,
                pr.title.clone(),
                pr.author.clone(),
                state.to_owned(),
                pr.draft,
                (pr.base_ref.clone(), pr.base_sha.clone(), pr.head_ref.clone(), pr.head_sha.clone()),
                format!("{html}/pull/{}", pr.number),
                pr.body.clone(),
                (labels, assignees),
                (pr.created_at, pr.updated_at, pr.closed_at, pr.merged_at),
            )
        })
        .collect();
    if rows.len() != expected.len() {
        return Err(format!("{} PRs stored, {} in the simulator", rows.len(), expected.len()));
    }
    if let Some((row, want)) = rows.iter().zip(&expected).find(|(row, want)| row != want) {
        return Err(format!("PR #{} differs:\n stored {row:?}\n wanted {want:?}", want.1));
    }
    let runs: Vec<RunRow> = check_runs::table
        .filter(check_runs::repository_id.eq(repo_id))
        .order(check_runs::github_id)
        .select((
            check_runs::github_id,
            check_runs::check_suite_id.assume_not_null(),
            check_runs::head_sha,
            check_runs::name,
            check_runs::status,
            check_runs::conclusion,
            (check_runs::gh_started_at, check_runs::gh_completed_at),
            (check_runs::output_title, check_runs::output_summary),
        ))
        .load(conn)
        .await
        .map_err(|e| e.to_string())?;
    let expected: Vec<RunRow> = sim_runs
        .values()
        .map(|r| {
            (
                r.id,
                r.check_suite_id,
                r.head_sha.clone(),
                r.name.clone(),
                r.status.clone(),
                r.conclusion.clone(),
                (r.started_at, r.completed_at),
                (r.output_title.clone(), r.output_summary.clone()),
            )
        })
        .collect();
    if runs.len() != expected.len() {
        return Err(format!("{} check runs stored, {} in the simulator", runs.len(), expected.len()));
    }
    if let Some((row, want)) = runs.iter().zip(&expected).find(|(row, want)| row != want) {
        return Err(format!("check run {} differs:\n stored {row:?}\n wanted {want:?}", want.0));
    }
    let groups: Vec<(String, i32, String)> = merge_groups::table
        .filter(merge_groups::repository_id.eq(repo_id))
        .select((merge_groups::head_sha, merge_groups::pr_number, merge_groups::state))
        .load(conn)
        .await
        .map_err(|e| e.to_string())?;
    merge_groups_agree(&groups, &sim_groups)?;
    diff_statuses(conn, repo_id, &sim_prs, sim_statuses).await?;
    diff_required(conn, repo_id, &sim_prs, &sim_required).await
}

type StatusRow = (String, String, String, Option<String>, Option<String>, DateTime<Utc>);

/// The latest status of each context, on every commit that is a PR's head
/// or has stored statuses: a status on any other commit (an old head) is
/// only as complete as its webhooks were, since sweeps read heads.
async fn diff_statuses(
    conn: &mut diesel_async::AsyncPgConnection,
    repo_id: i64,
    sim_prs: &BTreeMap<i64, github_sim::model::SimPr>,
    sim_statuses: Vec<StatusRow>,
) -> Result<(), String> {
    let mut stored: Vec<StatusRow> = commit_statuses::table
        .filter(commit_statuses::repository_id.eq(repo_id))
        .select((
            commit_statuses::sha,
            commit_statuses::context,
            commit_statuses::state,
            commit_statuses::description,
            commit_statuses::target_url,
            commit_statuses::gh_created_at,
        ))
        .load(conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut compared: BTreeSet<String> = sim_prs.values().map(|pr| pr.head_sha.clone()).collect();
    compared.extend(stored.iter().map(|row| row.0.clone()));
    let mut expected: Vec<StatusRow> =
        sim_statuses.into_iter().filter(|row| compared.contains(&row.0)).collect();
    stored.sort();
    expected.sort();
    if stored != expected {
        let missing: Vec<&StatusRow> = expected.iter().filter(|row| !stored.contains(row)).collect();
        let extra: Vec<&StatusRow> = stored.iter().filter(|row| !expected.contains(row)).collect();
        return Err(format!("statuses differ:\n missing {missing:?}\n not in the simulator {extra:?}"));
    }
    Ok(())
}

/// Every stored requirement is the simulator's, and every branch an open PR
/// targets that requires something has it stored.
async fn diff_required(
    conn: &mut diesel_async::AsyncPgConnection,
    repo_id: i64,
    sim_prs: &BTreeMap<i64, github_sim::model::SimPr>,
    sim_required: &BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    let stored: Vec<(String, Vec<String>)> = required_checks::table
        .filter(required_checks::repository_id.eq(repo_id))
        .select((required_checks::branch, required_checks::contexts))
        .load(conn)
        .await
        .map_err(|e| e.to_string())?;
    let stored: BTreeMap<String, Vec<String>> = stored
        .into_iter()
        .map(|(branch, mut contexts)| {
            contexts.sort();
            (branch, contexts)
        })
        .collect();
    for (branch, contexts) in &stored {
        let wanted = sim_required.get(branch).cloned().unwrap_or_default();
        if *contexts != wanted {
            return Err(format!("branch {branch} requires {wanted:?}; stored {contexts:?}"));
        }
    }
    for pr in sim_prs.values().filter(|pr| pr.state == SimState::Open) {
        let wanted = sim_required.get(&pr.base_ref).cloned().unwrap_or_default();
        if !wanted.is_empty() && stored.get(&pr.base_ref) != Some(&wanted) {
            return Err(format!("branch {} requires {wanted:?}; nothing stored", pr.base_ref));
        }
    }
    Ok(())
}

/// Stored merge groups (head SHA, PR, state) against the simulator's. A
/// queued group is stored as queued for its PR; a stored group is one of
/// GitHub's, for the same PR; a destroyed one stored with a reason has
/// GitHub's reason, or `ended` when only a sweep saw it go. A group that
/// came and went while its webhooks were lost leaves no row: nothing could
/// have told prmonitor of it.
pub fn merge_groups_agree(
    stored: &[(String, i32, String)],
    sim: &[github_sim::model::SimMergeGroup],
) -> Result<(), String> {
    for (head_sha, pr_number, state) in stored {
        let Some(group) = sim.iter().find(|g| &g.head_sha == head_sha) else {
            return Err(format!("merge group {head_sha} is stored but GitHub has none"));
        };
        if i64::from(*pr_number) != group.pr_number {
            return Err(format!(
                "merge group {head_sha} is stored for #{pr_number}, GitHub's is #{}",
                group.pr_number
            ));
        }
        let agrees = match (state.as_str(), group.destroyed.as_deref()) {
            ("queued", None) => true,
            ("ended", Some(_)) => true,
            (stored, Some(reason)) => stored == reason,
            _ => false,
        };
        if !agrees {
            return Err(format!(
                "merge group {head_sha} of #{pr_number} is stored '{state}', GitHub says {:?}",
                group.destroyed.as_deref().unwrap_or("queued")
            ));
        }
    }
    for group in sim.iter().filter(|g| g.is_active()) {
        if !stored.iter().any(|(head_sha, _, _)| *head_sha == group.head_sha) {
            return Err(format!(
                "the queued merge group {} of #{} is not stored",
                group.head_sha, group.pr_number
            ));
        }
    }
    Ok(())
}

/// Every repository of the simulator.
pub async fn diff_all(db_url: &str, sim: &Simulator) -> Result<(), String> {
    let ids: Vec<i64> = sim.world(|w| w.repos.keys().copied().collect());
    for id in ids {
        diff(db_url, sim, id).await?;
    }
    Ok(())
}

/// Waits until the database at `db_url` equals the simulator, or `timeout`
/// passes (then returns the last difference). `Ok` holds how long it took.
pub async fn converge(db_url: &str, sim: &Simulator, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        match diff_all(db_url, sim).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(difference) if started.elapsed() > timeout => return Err(difference),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
