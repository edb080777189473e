//! Which checks pass: every read that classifies check runs, over a table of
//! statuses and conclusions in a real PostgreSQL, against the rule stated
//! here over `monitor`'s own reading of GitHub's values.

use std::collections::BTreeMap;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prmonitor::db::reads::{self, PullFilter, PullSummary, CHECKS_STATES, PASSING_CONCLUSIONS};
use prmonitor::db::repositories::{self, NewRepository};
use prmonitor::monitor::{CheckConclusion, CheckStatus};

use prmonitor::ids::GithubRepoId;
use prmonitor_testkit::{connect, TestDatabase};

/// Every status GitHub documents, and one it does not.
const STATUSES: [&str; 7] =
    ["queued", "in_progress", "completed", "waiting", "requested", "pending", "exploded"];

/// Every conclusion GitHub documents, none, and one it does not.
const CONCLUSIONS: [Option<&str>; 11] = [
    None,
    Some("success"),
    Some("failure"),
    Some("neutral"),
    Some("cancelled"),
    Some("timed_out"),
    Some("action_required"),
    Some("stale"),
    Some("skipped"),
    Some("startup_failure"),
    Some("exploded"),
];

/// The rule, in this test's words: a run is pending until completed, then
/// passing or failing by its conclusion; a completed run without one counts
/// nowhere. The match is exhaustive, so a conclusion added to `monitor` has to
/// be placed here.
fn verdict(status: &str, conclusion: Option<&str>) -> Option<&'static str> {
    use CheckConclusion::*;
    if CheckStatus::parse(status) != CheckStatus::Completed {
        return Some("pending");
    }
    match CheckConclusion::parse(conclusion?) {
        Success | Neutral | Skipped => Some("passing"),
        Failure | Cancelled | TimedOut | ActionRequired | Stale | StartupFailure | Unknown => Some("failing"),
    }
}

/// (passing, failing, pending, checks) of a PR whose head's newest run of each
/// name has these verdicts.
fn summary(verdicts: &[Option<&str>]) -> (i64, i64, i64, String) {
    let count = |v: &str| verdicts.iter().filter(|x| **x == Some(v)).count() as i64;
    let checks = ["failing", "pending", "passing"].into_iter().find(|v| count(v) > 0).unwrap_or("none");
    (count("passing"), count("failing"), count("pending"), checks.to_owned())
}

#[test]
fn the_passing_conclusions_are_the_documented_ones_the_rule_passes() {
    for (name, conclusion) in CONCLUSIONS.iter().flatten().map(|c| (*c, CheckConclusion::parse(c))) {
        if conclusion != CheckConclusion::Unknown {
            assert_eq!(conclusion.as_str(), name, "this test's list is monitor's");
        }
        let passes = verdict("completed", Some(name)) == Some("passing");
        assert_eq!(PASSING_CONCLUSIONS.contains(&name), passes, "{name}");
    }
}

/// A check run as (name, status, conclusion).
type Run = (&'static str, &'static str, Option<&'static str>);
/// One PR's check runs on its head, oldest first.
type Runs = Vec<Run>;

/// A failed run on a commit that is no PR's head: nobody's check.
const ELSEWHERE: Run = ("build", "completed", Some("failure"));

fn cases() -> Vec<Runs> {
    let mut cases: Vec<Runs> = Vec::new();
    // One run of every status and conclusion.
    for status in STATUSES {
        for conclusion in CONCLUSIONS {
            cases.push(vec![("build", status, conclusion)]);
        }
    }
    // Several runs: the strongest verdict wins, and only the newest run of a name counts.
    let success = ("build", "completed", Some("success"));
    let failure = ("test", "completed", Some("failure"));
    let running = ("lint", "in_progress", None);
    cases.extend([
        vec![],
        vec![success, ("test", "completed", Some("skipped")), ("lint", "completed", Some("neutral"))],
        vec![success, running],
        vec![success, failure],
        vec![running, failure],
        vec![success, running, failure],
        vec![success, ("lint", "completed", None)],
        vec![("build", "completed", Some("failure")), success],
        vec![success, ("build", "queued", None)],
        vec![("build", "in_progress", None), ("build", "completed", Some("cancelled"))],
    ]);
    cases
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn sql_text(value: Option<&str>) -> String {
    value.map_or("NULL".to_owned(), |v| format!("'{v}'"))
}

#[tokio::test]
async fn every_read_classifies_check_runs_alike() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let repo = repositories::upsert(
        &mut conn,
        &NewRepository {
            github_id: GithubRepoId(900_001),
            owner: "rules",
            name: "checks",
            installation_id: None,
        },
    )
    .await
    .expect("register");
    let cases = cases();
    let mut expected: BTreeMap<i32, (i64, i64, i64, String)> = BTreeMap::new();
    let mut github_id = 5_000_000_000_i64;
    for (index, runs) in cases.iter().enumerate() {
        let number = index as i32 + 1;
        let head = format!("{number:040x}");
        execute(
            &mut conn,
            &format!(
                "INSERT INTO pull_requests (repository_id, github_id, number, title, author, state, \
                     base_branch, base_sha, head_branch, head_sha, html_url, gh_created_at, gh_updated_at) \
                 VALUES ({}, {}, {number}, 'case {number}', 'tester', 'open', 'main', '{}', 'topic', \
                     '{head}', 'https://github.test/pull/{number}', now(), now())",
                repo.id,
                700_000 + number,
                "0".repeat(40),
            ),
        )
        .await;
        let elsewhere = "f".repeat(40);
        let on_commits = runs.iter().map(|run| (*run, head.as_str()));
        for ((name, status, conclusion), sha) in on_commits.chain([(ELSEWHERE, elsewhere.as_str())]) {
            github_id += 1;
            execute(
                &mut conn,
                &format!(
                    "INSERT INTO check_runs (repository_id, github_id, head_sha, name, status, conclusion) \
                     VALUES ({}, {github_id}, '{sha}', '{name}', '{status}', {})",
                    repo.id,
                    sql_text(conclusion),
                ),
            )
            .await;
        }
        let mut newest: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for (name, status, conclusion) in runs {
            newest.insert(name, verdict(status, *conclusion));
        }
        expected.insert(number, summary(&newest.into_values().collect::<Vec<_>>()));
    }
    for state in CHECKS_STATES {
        assert!(expected.values().any(|e| e.3 == state), "the cases cover {state}");
    }

    let got = |rows: &[PullSummary]| -> BTreeMap<i32, (i64, i64, i64, String)> {
        rows.iter()
            .map(|r| (r.number.0, (r.checks_passing, r.checks_failing, r.checks_pending, r.checks.clone())))
            .collect()
    };

    let all = reads::pulls_with_checks(&mut conn, repo.id).await.expect("pulls_with_checks");
    assert_eq!(got(&all), expected, "pulls_with_checks");

    let (listed, total) =
        reads::list_pulls(&mut conn, repo.id, &PullFilter::default(), 1_000, 0).await.expect("list_pulls");
    assert_eq!(total, cases.len() as i64);
    assert_eq!(got(&listed), expected, "list_pulls");

    for state in CHECKS_STATES {
        let filter = PullFilter { checks: Some(state.to_owned()), ..PullFilter::default() };
        let (rows, total) = reads::list_pulls(&mut conn, repo.id, &filter, 1_000, 0).await.expect("filtered");
        let numbers: Vec<i32> = rows.iter().rev().map(|r| r.number.0).collect();
        let wanted: Vec<i32> = expected.iter().filter(|(_, e)| e.3 == state).map(|(n, _)| *n).collect();
        assert_eq!(numbers, wanted, "?checks={state}");
        assert_eq!(total, wanted.len() as i64, "?checks={state}");
        assert!(rows.iter().all(|r| r.checks == state), "?checks={state}");
    }
}
