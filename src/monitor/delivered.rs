//! Webhook snapshots: the `pull_request` and `check_run` objects that a job's
//! deliveries carried. The processor applies them in place of a GitHub read
//! when they order themselves against the stored rows (see
//! [`super::detect::SnapshotFit`]); anything these functions cannot vouch for
//! makes them answer `None`, and the job reads GitHub as before.

use serde::Deserialize;

use super::data::{CheckRunData, PrData, StatusData};
use super::forward::check_run_progress;
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
}
