//! Webhook snapshots: the `pull_request`, `check_run` and `merge_group`
//! objects that a job's deliveries carried. The processor applies them in place of a GitHub read
//! when they order themselves against the stored rows (see
//! [`super::detect::SnapshotFit`]); anything these functions cannot vouch for
//! makes them answer `None`, and the job reads GitHub as before.

use serde::Deserialize;

use super::data::{CheckRunData, PrData, StatusData};
use super::forward::check_run_progress;
use crate::db::merge_groups::DeliveredGroup;
use crate::github::models::{CheckRun, CommitStatus, IdOnly, PullRequest, User};
use crate::ids::{CommitSha, GithubRepoId, PullRequestNumber};

/// One delivery of a job, as stored by intake.
#[derive(Debug, Clone)]
pub struct DeliveredPayload {
    pub event: String,
    /// `None` once purged by retention.
    pub body: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct PullRequestEvent {
    pull_request: PullRequest,
    repository: IdOnly,
}

#[derive(Deserialize)]
struct CheckRunEvent {
    check_run: CheckRun,
    repository: IdOnly,
}

/// A `status` event: the status's own fields at the top level.
#[derive(Deserialize)]
struct StatusEvent {
    sha: String,
    #[serde(flatten)]
    status: CommitStatus,
    repository: IdOnly,
    #[serde(default)]
    sender: Option<User>,
}

/// The statuses of commit `sha` among the job's deliveries, the latest of
/// each context (by creation, then id: ids grow with every status posted),
/// or `None` when any delivery cannot stand in for a read (purged, malformed,
/// another commit, a state GitHub does not document).
pub fn statuses(
    payloads: &[DeliveredPayload],
    repository_github_id: GithubRepoId,
    sha: &CommitSha,
) -> Option<Vec<StatusData>> {
    let mut latest: Vec<StatusData> = Vec::new();
    for payload in payloads {
        if payload.event != "status" {
            return None;
        }
        let event: StatusEvent = serde_json::from_slice(payload.body.as_deref()?).ok()?;
        if event.repository.id != repository_github_id.0 || event.sha != sha.as_str() {
            return None;
        }
        let mut status = StatusData::from_github(sha, &event.status)?;
        if status.creator.is_none() {
            status.creator = event.sender.map(|u| u.login);
        }
        let key = |s: &StatusData| (s.created_at, s.github_id);
        match latest.iter_mut().find(|seen| seen.context == status.context) {
            None => latest.push(status),
            Some(seen) if key(&status) > key(seen) => *seen = status,
            Some(_) => {}
        }
    }
    (!latest.is_empty()).then_some(latest)
}

#[derive(Deserialize)]
struct MergeGroupEvent {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    merge_group: MergeGroupObject,
    repository: IdOnly,
}

#[derive(Deserialize)]
struct MergeGroupObject {
    head_sha: String,
    head_ref: String,
    base_ref: String,
    base_sha: String,
    #[serde(default)]
    head_commit: Option<HeadCommit>,
}

#[derive(Deserialize)]
struct HeadCommit {
    #[serde(default)]
    timestamp: Option<String>,
}

/// The pull request a merge group's branch was built for: GitHub names it
/// `refs/heads/gh-readonly-queue/{base}/pr-{number}-{base_sha}` (the base
/// may hold slashes, the last segment does not).
pub fn queued_pr_number(head_ref: &str) -> Option<PullRequestNumber> {
    let branch = head_ref.strip_prefix("refs/heads/").unwrap_or(head_ref);
    if !branch.starts_with("gh-readonly-queue/") {
        return None;
    }
    let last = branch.rsplit('/').next()?;
    let (number, _) = last.strip_prefix("pr-")?.split_once('-')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    PullRequestNumber::from_github(number.parse().ok()?)
}

/// The merge groups the job's `merge_group` deliveries describe, in their
/// order, and how many deliveries could not be used (purged, malformed,
/// another group, an action prmonitor does not know, or a branch that names
/// no pull request). Each usable one is applied as it is: the table's rules
/// make the order irrelevant (a destroyed group stays destroyed), and what
/// an unusable one said is healed by the next sweep.
pub fn merge_groups(
    payloads: &[DeliveredPayload],
    repository_github_id: GithubRepoId,
    head_sha: &CommitSha,
) -> (Vec<DeliveredGroup>, usize) {
    let mut groups = Vec::new();
    let mut unusable = 0;
    for payload in payloads {
        match merge_group(payload, repository_github_id, head_sha) {
            Some(group) => groups.push(group),
            None => unusable += 1,
        }
    }
    (groups, unusable)
}

fn merge_group(
    payload: &DeliveredPayload,
    repository_github_id: GithubRepoId,
    head_sha: &CommitSha,
) -> Option<DeliveredGroup> {
    if payload.event != "merge_group" {
        return None;
    }
    let event: MergeGroupEvent = serde_json::from_slice(payload.body.as_deref()?).ok()?;
    let group = event.merge_group;
    if event.repository.id != repository_github_id.0 || group.head_sha != head_sha.as_str() {
        return None;
    }
    let destroyed = match event.action.as_str() {
        "checks_requested" => None,
        // A destroyed group without a reason has still ended.
        "destroyed" => Some(event.reason.unwrap_or_default()),
        _ => return None,
    };
    let created_at = group
        .head_commit
        .and_then(|commit| commit.timestamp)
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    Some(DeliveredGroup {
        pr_number: queued_pr_number(&group.head_ref)?,
        head_sha: group.head_sha,
        head_ref: group.head_ref,
        base_ref: group.base_ref,
        base_sha: group.base_sha,
        created_at,
        destroyed,
    })
}

/// The newest snapshot of PR `number` among the job's deliveries, or `None`
/// when a read is needed: a delivery without a usable PR object (purged,
/// malformed, not this PR), or two different snapshots with the same
/// `updated_at` (GitHub's one-second resolution cannot order them).
pub fn newest_pr(
    payloads: &[DeliveredPayload],
    repository_github_id: GithubRepoId,
    number: PullRequestNumber,
) -> Option<PrData> {
    let mut newest: Option<PrData> = None;
    for payload in payloads {
        if payload.event != "pull_request" {
            return None;
        }
        let event: PullRequestEvent = serde_json::from_slice(payload.body.as_deref()?).ok()?;
        if event.repository.id != repository_github_id.0 || event.pull_request.number != i64::from(number.0) {
            return None;
        }
        let pr = PrData::from_github(&event.pull_request).ok()?;
        newest = match newest {
            None => Some(pr),
            Some(seen) if pr.updated_at > seen.updated_at => Some(pr),
            Some(seen) if pr.updated_at < seen.updated_at || pr == seen => Some(seen),
            Some(_) => return None,
        };
    }
    newest
}

/// The check-run snapshots of commit `head_sha` among the job's deliveries,
/// or `None` when any delivery cannot stand in for a read: a `check_suite`
/// event carries no runs, and two different snapshots of one run at the same
/// step cannot be ordered.
pub fn check_runs(
    payloads: &[DeliveredPayload],
    repository_github_id: GithubRepoId,
    head_sha: &CommitSha,
) -> Option<Vec<CheckRunData>> {
    let mut runs: Vec<CheckRunData> = Vec::new();
    for payload in payloads {
        if payload.event != "check_run" {
            return None;
        }
        let event: CheckRunEvent = serde_json::from_slice(payload.body.as_deref()?).ok()?;
        if event.repository.id != repository_github_id.0 || event.check_run.head_sha != head_sha.as_str() {
            return None;
        }
        let run = CheckRunData::from_github(&event.check_run);
        match runs.iter_mut().find(|seen| seen.github_id == run.github_id) {
            None => runs.push(run),
            Some(seen) if check_run_progress(&run) > check_run_progress(seen) => *seen = run,
            Some(seen) if check_run_progress(&run) < check_run_progress(seen) || run == *seen => {}
            Some(_) => return None,
        }
    }
    (!runs.is_empty()).then_some(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn fixture(path: &str) -> Value {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github/payloads/");
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}{path}")).expect("fixture"))
            .expect("json")
    }

    fn delivered(event: &str, value: &Value) -> DeliveredPayload {
        DeliveredPayload { event: event.into(), body: Some(serde_json::to_vec(value).expect("json")) }
    }

    fn pr_at(updated_at: &str, title: &str) -> Value {
        let mut payload = fixture("pull_request/synchronize.json");
        payload["pull_request"]["updated_at"] = json!(updated_at);
        payload["pull_request"]["title"] = json!(title);
        payload
    }

    #[test]
    fn the_newest_pr_snapshot_wins_whatever_the_order() {
        let payload = pr_at("2030-01-01T00:00:02Z", "new");
        let (repo, number) = (
            payload["repository"]["id"].as_i64().expect("id"),
            PullRequestNumber::from_github(payload["number"].as_i64().expect("n")).expect("a PR number"),
        );
        let older = delivered("pull_request", &pr_at("2030-01-01T00:00:01Z", "old"));
        let newer = delivered("pull_request", &payload);
        for order in [[older.clone(), newer.clone()], [newer.clone(), older.clone()]] {
            assert_eq!(newest_pr(&order, GithubRepoId(repo), number).expect("decided").title, "new");
        }
        // The same snapshot twice (a redelivery) is still decided.
        assert!(newest_pr(&[newer.clone(), newer.clone()], GithubRepoId(repo), number).is_some());
    }

    #[test]
    fn pr_snapshots_that_cannot_be_trusted_ask_for_a_read() {
        let payload = pr_at("2030-01-01T00:00:02Z", "a");
        let (repo, number) = (
            payload["repository"]["id"].as_i64().expect("id"),
            PullRequestNumber::from_github(payload["number"].as_i64().expect("n")).expect("a PR number"),
        );
        let a = delivered("pull_request", &payload);
        let tie = delivered("pull_request", &pr_at("2030-01-01T00:00:02Z", "b"));
        assert_eq!(
            newest_pr(&[a.clone(), tie], GithubRepoId(repo), number),
            None,
            "same second, different content"
        );
        assert_eq!(
            newest_pr(std::slice::from_ref(&a), GithubRepoId(repo + 1), number),
            None,
            "another repository"
        );
        assert_eq!(
            newest_pr(std::slice::from_ref(&a), GithubRepoId(repo), PullRequestNumber(number.0 + 1)),
            None,
            "another PR"
        );
        let purged = DeliveredPayload { event: "pull_request".into(), body: None };
        assert_eq!(newest_pr(&[a.clone(), purged], GithubRepoId(repo), number), None, "a purged payload");
        let garbage =
            DeliveredPayload { event: "pull_request".into(), body: Some(b"{\"pull_request\":1}".to_vec()) };
        assert_eq!(
            newest_pr(&[garbage], GithubRepoId(repo), number),
            None,
            "a payload that is not a PR event"
        );
        assert_eq!(newest_pr(&[], GithubRepoId(repo), number), None, "no deliveries");
    }

    const GROUP_SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    fn group_event(action: &str, reason: Option<&str>) -> Value {
        let mut event = json!({
            "action": action,
            "merge_group": {
                "head_sha": GROUP_SHA,
                "head_ref": format!("refs/heads/gh-readonly-queue/release/v2/pr-104-{GROUP_SHA}"),
                "base_ref": "refs/heads/release/v2",
                "base_sha": "929f82d3c1a1c1f0e8d1f8b2f0b0a9c8d7e6f5a4",
                "head_commit": { "id": GROUP_SHA, "timestamp": "2026-01-02T03:04:05+01:00" },
            },
            "repository": { "id": 42, "full_name": "o/r" },
        });
        if let Some(reason) = reason {
            event["reason"] = json!(reason);
        }
        event
    }

    #[test]
    fn a_merge_group_names_its_pull_request_in_its_branch() {
        let n = |head_ref: &str| queued_pr_number(head_ref).map(|n| n.0);
        assert_eq!(n(&format!("refs/heads/gh-readonly-queue/main/pr-104-{GROUP_SHA}")), Some(104));
        assert_eq!(n("gh-readonly-queue/release/v2/pr-7-abc"), Some(7));
        for bad in [
            "refs/heads/main",
            "refs/heads/feature/pr-1-abc",
            "refs/heads/gh-readonly-queue/main/pr--abc",
            "refs/heads/gh-readonly-queue/main/pr-0-abc",
            "refs/heads/gh-readonly-queue/main/pr-+1-abc",
            "refs/heads/gh-readonly-queue/main/pr-99999999999999999999-abc",
            "refs/heads/gh-readonly-queue/main/pr-12",
            "",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn merge_group_deliveries_become_groups_and_the_rest_is_counted() {
        let sha = CommitSha::from(GROUP_SHA);
        let requested = delivered("merge_group", &group_event("checks_requested", None));
        let destroyed = delivered("merge_group", &group_event("destroyed", Some("dequeued")));
        let (groups, unusable) = merge_groups(&[requested, destroyed], GithubRepoId(42), &sha);
        assert_eq!(unusable, 0);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].pr_number, PullRequestNumber(104));
        assert_eq!(groups[0].destroyed, None);
        assert_eq!(groups[0].base_ref, "refs/heads/release/v2");
        assert_eq!(
            groups[0].created_at.map(|t| t.to_rfc3339()),
            Some("2026-01-02T02:04:05+00:00".to_owned())
        );
        assert_eq!(groups[1].destroyed.as_deref(), Some("dequeued"));

        let mut no_pr = group_event("checks_requested", None);
        no_pr["merge_group"]["head_ref"] = json!("refs/heads/main");
        let mut odd_time = group_event("destroyed", None);
        odd_time["merge_group"]["head_commit"]["timestamp"] = json!("yesterday");
        let cases = [
            delivered("merge_group", &no_pr),
            delivered("merge_group", &group_event("requested_action", None)),
            delivered("merge_group", &json!({ "action": "destroyed", "merge_group": 7 })),
            delivered("check_run", &group_event("checks_requested", None)),
            DeliveredPayload { event: "merge_group".into(), body: None },
            DeliveredPayload { event: "merge_group".into(), body: Some(b"{not json".to_vec()) },
            delivered("merge_group", &odd_time),
        ];
        let (groups, unusable) = merge_groups(&cases, GithubRepoId(42), &sha);
        assert_eq!(unusable, 6);
        assert_eq!(groups.len(), 1, "a garbage time is no time, not a refusal");
        assert_eq!((groups[0].created_at, groups[0].destroyed.as_deref()), (None, Some("")));
        let good = [delivered("merge_group", &group_event("checks_requested", None))];
        assert_eq!(merge_groups(&good, GithubRepoId(43), &sha).1, 1, "another repository");
        assert_eq!(merge_groups(&good, GithubRepoId(42), &CommitSha::from("00")).1, 1, "another group");
    }

    #[test]
    fn check_run_snapshots_keep_the_furthest_step_and_refuse_suites() {
        let completed = fixture("check_run/completed.json");
        let (repo, sha) = (
            completed["repository"]["id"].as_i64().expect("id"),
            CommitSha::from(completed["check_run"]["head_sha"].as_str().expect("sha")),
        );
        let mut created = completed.clone();
        created["check_run"]["status"] = json!("queued");
        created["check_run"]["conclusion"] = Value::Null;
        created["check_run"]["completed_at"] = Value::Null;
        let runs = check_runs(
            &[delivered("check_run", &completed), delivered("check_run", &created)],
            GithubRepoId(repo),
            &sha,
        )
        .expect("decided");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, "completed", "a completion is never undone by a late 'created'");

        let mut relabelled = completed.clone();
        relabelled["check_run"]["conclusion"] = json!("failure");
        let tie = [delivered("check_run", &completed), delivered("check_run", &relabelled)];
        assert_eq!(check_runs(&tie, GithubRepoId(repo), &sha), None, "same step, different content");
        let suite = delivered("check_suite", &fixture("check_suite/completed.json"));
        assert_eq!(check_runs(&[delivered("check_run", &completed), suite], GithubRepoId(repo), &sha), None);
        assert_eq!(
            check_runs(&[delivered("check_run", &completed)], GithubRepoId(repo), &CommitSha::from("0000")),
            None,
            "another commit"
        );
    }

    #[test]
    fn the_latest_status_of_each_context_stands_in_for_a_read() {
        let status = |id: i64, context: &str, state: &str, at: &str| DeliveredPayload {
            event: "status".into(),
            body: Some(
                serde_json::to_vec(&json!({
                    "id": id, "sha": "aa", "context": context, "state": state, "created_at": at,
                    "updated_at": at, "repository": { "id": 5 }, "sender": { "login": "ci-bot", "id": 1 }
                }))
                .expect("json"),
            ),
        };
        let sha = CommitSha("aa".into());
        let found = statuses(
            &[
                status(2, "ci", "success", "2030-01-01T00:00:01Z"),
                status(1, "ci", "pending", "2030-01-01T00:00:01Z"),
                status(3, "lint", "failure", "2030-01-01T00:00:00Z"),
            ],
            GithubRepoId(5),
            &sha,
        )
        .expect("usable");
        let by_context: Vec<(&str, &str, Option<i64>)> =
            found.iter().map(|s| (s.context.as_str(), s.state.as_str(), s.github_id)).collect();
        assert_eq!(by_context, [("ci", "success", Some(2)), ("lint", "failure", Some(3))]);
        assert_eq!(found[0].creator.as_deref(), Some("ci-bot"));
        // Another repository, a state GitHub does not have, a purged body: read instead.
        assert!(
            statuses(&[status(1, "ci", "success", "2030-01-01T00:00:00Z")], GithubRepoId(6), &sha).is_none()
        );
        assert!(
            statuses(&[status(1, "ci", "exploded", "2030-01-01T00:00:00Z")], GithubRepoId(5), &sha).is_none()
        );
        let purged = DeliveredPayload { event: "status".into(), body: None };
        assert!(statuses(&[purged], GithubRepoId(5), &sha).is_none());
    }
}
