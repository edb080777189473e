//! CI state as GitHub's merge box shows it: commit statuses beside check
//! runs, combined as `statusCheckRollup` combines them, and the checks the
//! base branch requires apart from the others.

use github_sim::model::NewStatus;
use github_sim::NewPr;
use prmonitor_testkit::TestWorld;

const REPO: &str = "acme/repo-0";

/// One row of the rollup table: the check runs of a head (status,
/// conclusion), the statuses posted on it in order (context, state), and the
/// PR's `checks` GitHub's rollup rule gives.
struct Row {
    runs: &'static [(&'static str, Option<&'static str>)],
    statuses: &'static [(&'static str, &'static str)],
    checks: &'static str,
}

/// GitHub's documented states and conclusions, alone and together. The rule:
/// any failing run (a completed run whose conclusion is not success, neutral
/// or skipped) or any status `error`/`failure` fails; else anything
/// unfinished (a run not completed, a status `pending`) is pending; else
/// passing; nothing reporting is none. The latest status of a context counts.
const ROWS: &[Row] = &[
    Row { runs: &[], statuses: &[], checks: "none" },
    Row { runs: &[], statuses: &[("ci/jenkins", "success")], checks: "passing" },
    Row { runs: &[], statuses: &[("ci/jenkins", "pending")], checks: "pending" },
    Row { runs: &[], statuses: &[("ci/jenkins", "error")], checks: "failing" },
    Row { runs: &[], statuses: &[("ci/jenkins", "failure")], checks: "failing" },
    Row { runs: &[], statuses: &[("ci/jenkins", "failure"), ("ci/jenkins", "success")], checks: "passing" },
    Row { runs: &[], statuses: &[("ci/jenkins", "success"), ("ci/jenkins", "error")], checks: "failing" },
    Row {
        runs: &[("completed", Some("success"))],
        statuses: &[("ci/jenkins", "pending")],
        checks: "pending",
    },
    Row {
        runs: &[("completed", Some("success"))],
        statuses: &[("ci/jenkins", "success")],
        checks: "passing",
    },
    Row { runs: &[("in_progress", None)], statuses: &[("ci/jenkins", "success")], checks: "pending" },
    Row { runs: &[("queued", None)], statuses: &[], checks: "pending" },
    Row { runs: &[("in_progress", None)], statuses: &[("ci/jenkins", "failure")], checks: "failing" },
    Row {
        runs: &[("completed", Some("failure"))],
        statuses: &[("ci/jenkins", "success")],
        checks: "failing",
    },
    Row {
        runs: &[("completed", Some("neutral")), ("completed", Some("skipped"))],
        statuses: &[("ci/jenkins", "success"), ("ci/lint", "success")],
        checks: "passing",
    },
    Row {
        runs: &[("completed", Some("success"))],
        statuses: &[("ci/jenkins", "error"), ("ci/lint", "success")],
        checks: "failing",
    },
    Row { runs: &[("completed", Some("timed_out"))], statuses: &[], checks: "failing" },
    Row {
        runs: &[("completed", Some("cancelled"))],
        statuses: &[("ci/jenkins", "pending")],
        checks: "failing",
    },
    Row { runs: &[("completed", Some("action_required"))], statuses: &[], checks: "failing" },
    Row { runs: &[("completed", Some("stale"))], statuses: &[("ci/jenkins", "success")], checks: "failing" },
];

#[tokio::test]
async fn check_runs_and_statuses_combine_as_githubs_rollup_does() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    let mut prs = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let number = github.open_pr(REPO, NewPr::new(&format!("row {i}"), "octocat"));
        let head = github.head(REPO, number);
        for (n, (status, conclusion)) in row.runs.iter().enumerate() {
            let run = github.0.create_check_run(REPO, &head, &format!("check-{n}")).expect("run");
            if *status != "queued" {
                github.0.start_check_run(run).expect("start");
            }
            if let Some(conclusion) = conclusion {
                github.0.complete_check_run(run, conclusion).expect("complete");
            }
        }
        for (context, state) in row.statuses {
            github.0.set_status(REPO, &head, context, state, Some("from the table")).expect("status");
        }
        prs.push(number);
    }
    world.settle().await;
    for (row, number) in ROWS.iter().zip(&prs) {
        let pr = world.api.pull(REPO, *number).await;
        assert_eq!(
            pr["checks"], row.checks,
            "runs {:?}, statuses {:?}: {}",
            row.runs, row.statuses, pr["statuses"]
        );
        // The listing says the same as the detail.
        let (_, listed) =
            world.api.get(&format!("/api/v1/repositories/{REPO}/pulls?checks={}", row.checks)).await;
        let numbers: Vec<i64> =
            listed["items"].as_array().expect("items").iter().filter_map(|p| p["number"].as_i64()).collect();
        assert!(numbers.contains(number), "#{number} missing from ?checks={}: {listed}", row.checks);
    }
    // The simulator's own rollup agrees row by row (GraphQL's statusCheckRollup).
    for (row, number) in ROWS.iter().zip(&prs) {
        let rollup = github.0.world(|w| {
            let repo = w.repo(w.repo_id(REPO).expect("repo")).expect("repo");
            repo.rollup(&repo.pulls[number].head_sha)
        });
        let as_checks = match rollup {
            None => "none",
            Some("SUCCESS") => "passing",
            Some("PENDING" | "EXPECTED") => "pending",
            Some(_) => "failing",
        };
        assert_eq!(as_checks, row.checks, "the simulator's rollup of {:?} / {:?}", row.runs, row.statuses);
    }
    world.finish().await;
}

#[tokio::test]
async fn a_pr_whose_ci_reports_only_statuses_fails_and_passes() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    let number = github.open_pr(REPO, NewPr::new("Jenkins only", "octocat"));
    let head = github.head(REPO, number);
    github
        .0
        .set_status(REPO, &head, "continuous-integration/jenkins", "pending", Some("Build started"))
        .expect("s");
    world.settle().await;
    assert_eq!(world.api.pull(REPO, number).await["checks"], "pending");

    github
        .0
        .set_status(REPO, &head, "continuous-integration/jenkins", "failure", Some("Build failed"))
        .expect("s");
    world.settle().await;
    let pr = world.api.pull(REPO, number).await;
    assert_eq!(pr["checks"], "failing", "{pr}");
    assert_eq!(pr["statuses"][0]["description"], "Build failed", "{pr}");
    assert_eq!((pr["checks_failing"].as_i64(), pr["checks_passing"].as_i64()), (Some(1), Some(0)));

    github
        .0
        .set_status(REPO, &head, "continuous-integration/jenkins", "success", Some("Build passed"))
        .expect("s");
    world.settle().await;
    let pr = world.api.pull(REPO, number).await;
    assert_eq!(pr["checks"], "passing", "{pr}");
    // Each transition is in the history, with what brought it.
    let transitions = world
        .count(&format!(
            "SELECT count(*) FROM status_history WHERE sha = '{head}' AND cause = 'webhook' AND delivery_id IS NOT NULL"
        ))
        .await;
    assert_eq!(transitions, 3, "pending, failure, success");
    world.finish().await;
}

#[tokio::test]
async fn only_required_checks_decide_the_required_state_and_one_not_reported_is_missing() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    github.0.set_required_checks(REPO, "main", &["build", "ci/jenkins"]).expect("protection");
    let green = github.open_pr(REPO, NewPr::new("Required pass, lint fails", "octocat"));
    let half = github.open_pr(REPO, NewPr::new("Jenkins never reported", "octocat"));
    let red = github.open_pr(REPO, NewPr::new("Build fails", "octocat"));
    let waiting = github.open_pr(REPO, NewPr::new("Jenkins running", "octocat"));

    let head = github.head(REPO, green);
    github.check(REPO, &head, "build", "success");
    github.check(REPO, &head, "lint", "failure");
    github.0.set_status(REPO, &head, "ci/jenkins", "success", None).expect("status");
    let head = github.head(REPO, half);
    github.check(REPO, &head, "build", "success");
    let head = github.head(REPO, red);
    github.check(REPO, &head, "build", "failure");
    github.0.set_status(REPO, &head, "ci/jenkins", "success", None).expect("status");
    let head = github.head(REPO, waiting);
    github.check(REPO, &head, "build", "success");
    github.0.set_status(REPO, &head, "ci/jenkins", "pending", None).expect("status");
    world.settle().await;

    let state = |pr: &serde_json::Value| (pr["checks"].clone(), pr["required_state"].clone());
    let pr = world.api.pull(REPO, green).await;
    assert_eq!(state(&pr), ("failing".into(), "passing".into()), "a failing check not required: {pr}");
    assert_eq!(pr["required_checks"], serde_json::json!(["build", "ci/jenkins"]));
    let pr = world.api.pull(REPO, half).await;
    assert_eq!(state(&pr), ("passing".into(), "missing".into()), "{pr}");
    let pr = world.api.pull(REPO, red).await;
    assert_eq!(state(&pr), ("failing".into(), "failing".into()), "{pr}");
    let pr = world.api.pull(REPO, waiting).await;
    assert_eq!(state(&pr), ("pending".into(), "pending".into()), "{pr}");

    // The protection changes: the event re-reads it.
    github.0.set_required_checks(REPO, "main", &["build"]).expect("protection");
    world.settle().await;
    assert_eq!(world.api.pull(REPO, half).await["required_state"], "passing");
    // Unprotected: nothing is required.
    github.0.set_required_checks(REPO, "main", &[]).expect("protection");
    world.settle().await;
    assert_eq!(world.api.pull(REPO, red).await["required_state"], "none");
    world.finish().await;
}

#[tokio::test]
async fn without_administration_read_the_required_checks_are_unknown_and_nothing_fails() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    github.0.set_administration(false);
    github.0.set_required_checks(REPO, "main", &["build"]).expect("protection");
    let number = github.open_pr(REPO, NewPr::new("Protected, unreadably", "octocat"));
    let head = github.head(REPO, number);
    github.check(REPO, &head, "build", "failure");
    world.settle().await;
    let pr = world.api.pull(REPO, number).await;
    assert_eq!(
        (pr["checks"].as_str(), pr["required_state"].as_str()),
        (Some("failing"), Some("none")),
        "{pr}"
    );
    assert_eq!(
        world.count("SELECT count(*) FROM jobs WHERE state <> 'done'").await,
        0,
        "no job failed on the 403"
    );
    let refused = github
        .0
        .stats()
        .count("GET /repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks", 403);
    assert!(refused >= 1, "GitHub refused the read");
    // The permission granted, an operator's reconcile reads it.
    github.0.set_administration(true);
    world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(world.api.pull(REPO, number).await["required_state"], "failing");
    world.finish().await;
}

#[tokio::test]
async fn a_required_check_missing_long_after_the_push_is_stuck() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    github.0.set_required_checks(REPO, "main", &["ci/jenkins"]).expect("protection");
    // Pushed two hours ago by GitHub's clock; nothing has reported since.
    github.0.set_clock_offset(chrono::Duration::hours(-2));
    let old = github.open_pr(REPO, NewPr::new("Forgotten", "octocat"));
    github.0.set_clock_offset(chrono::Duration::zero());
    let fresh = github.open_pr(REPO, NewPr::new("Just pushed", "octocat"));
    world.settle().await;
    let (status, stuck) = world.api.get(&format!("/api/v1/repositories/{REPO}/pulls?stuck=true")).await;
    assert_eq!(status, 200, "{stuck}");
    let numbers: Vec<i64> =
        stuck["items"].as_array().expect("items").iter().filter_map(|p| p["number"].as_i64()).collect();
    assert_eq!(numbers, [old], "both miss ci/jenkins; only one for longer than 1 h");
    assert_eq!(world.api.pull(REPO, fresh).await["required_state"], "missing");
    world.finish().await;
}

#[tokio::test]
async fn statuses_and_requirements_lost_with_their_webhooks_are_healed_by_a_sweep() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    let a = github.open_pr(REPO, NewPr::new("A", "octocat"));
    let b = github.open_pr(REPO, NewPr::new("B", "octocat"));
    let (head_a, head_b) = (github.head(REPO, a), github.head(REPO, b));
    github.0.set_status(REPO, &head_a, "ci/jenkins", "pending", None).expect("status");
    world.settle().await;
    world.diff().await.expect("webhooks alone: the database is the simulator");

    // GitHub loses these deliveries.
    github.without_webhooks(|w| {
        let repo = w.repo_id(REPO)?;
        w.create_status(repo, &head_a, NewStatus::new("ci/jenkins", "failure"))?;
        w.create_status(repo, &head_b, NewStatus::new("ci/deploy", "success"))?;
        w.set_required_checks(repo, "main", &["ci/deploy"])
    });
    assert_eq!(world.api.pull(REPO, a).await["checks"], "pending");
    assert!(world.diff().await.is_err(), "the lost deliveries leave a gap");
    world.api.reconcile_all().await;
    world.settle().await;
    world.diff().await.expect("after the sweep, the database is the simulator");
    assert_eq!(world.api.pull(REPO, a).await["checks"], "failing");
    assert_eq!(world.api.pull(REPO, a).await["required_state"], "missing");
    assert_eq!(world.api.pull(REPO, b).await["required_state"], "passing");
    let repaired = world
        .count(
            "SELECT coalesce(sum(rows), 0) FROM sweep_repairs WHERE kind IN ('status_new', 'status_updated')",
        )
        .await;
    assert_eq!(repaired, 2, "one status updated, one new");
    let required = world.count("SELECT count(*) FROM sweep_repairs WHERE kind = 'required_checks'").await;
    assert_eq!(required, 1);
    world.finish().await;
}

#[tokio::test]
async fn hostile_status_deliveries_are_refused_and_store_nothing() {
    let app = prmonitor_testkit::spawn_app().await;
    let repo = r#""repository":{"id":1,"full_name":"acme/repo-0"},"installation":{"id":1}"#;
    let sha = "a".repeat(40);
    for body in [
        format!(r#"{{"id":1,"context":"ci","state":"success",{repo}}}"#),
        format!(r#"{{"id":1,"sha":null,"context":"ci","state":"success",{repo}}}"#),
        format!(r#"{{"id":1,"sha":"not-a-sha","context":"ci","state":"success",{repo}}}"#),
        format!(r#"{{"id":1,"sha":"{sha}/../x","context":"ci","state":"success",{repo}}}"#),
        format!(r#"{{"id":1,"sha":["{sha}"],"context":"ci","state":"success",{repo}}}"#),
        format!(r#"{{"id":1,"sha":"{sha}","context":"ci","state":"success"}}"#),
    ] {
        let delivery = prmonitor_testkit::Delivery::new("status", body.clone());
        let response = app.send(&delivery).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM commit_statuses").await, 0);
}
