//! Flaky and stuck checks: a check that failed and then passed on a re-run
//! of the same commit is flaky; one unfinished past the threshold is stuck
//! (the simulator's clock, no sleeps). Both filter the PR listing; the
//! flakiest names have an endpoint of their own.

use github_sim::NewPr;
use prmonitor_testkit::TestWorld;

const REPO: &str = "acme/repo-0";

fn numbers(body: &serde_json::Value) -> Vec<i64> {
    body["items"].as_array().expect("items").iter().map(|pr| pr["number"].as_i64().expect("number")).collect()
}

#[tokio::test]
async fn a_rerun_that_passes_after_a_failure_is_flaky_and_a_long_running_check_is_stuck() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    let rerun = github.open_pr(REPO, NewPr::new("Re-run me", "octocat"));
    let slow = github.open_pr(REPO, NewPr::new("Slow CI", "octocat"));
    let calm = github.open_pr(REPO, NewPr::new("Calm", "octocat"));

    // The same check failed, then passed on a re-run of the same commit.
    let head = github.head(REPO, rerun);
    let failed = github.check(REPO, &head, "integration", "failure");
    let again = github.0.rerun_check_run(failed).expect("re-run");
    github.0.start_check_run(again).expect("start");
    github.0.complete_check_run(again, "success").expect("complete");
    // A check that started two hours ago (GitHub's clock) and is still running.
    let slow_head = github.head(REPO, slow);
    github.0.set_clock_offset(chrono::Duration::hours(-2));
    let running = github.0.create_check_run(REPO, &slow_head, "e2e").expect("check run");
    github.0.start_check_run(running).expect("start");
    github.0.set_clock_offset(chrono::Duration::zero());
    // Fresh and finished: neither.
    let calm_head = github.head(REPO, calm);
    github.check(REPO, &calm_head, "integration", "success");
    github.check(REPO, &calm_head, "lint", "failure");
    world.settle().await;

    let path = format!("/api/v1/repositories/{REPO}/pulls");
    let (status, flaky) = world.api.get(&format!("{path}?flaky=true")).await;
    assert_eq!(status, 200, "{flaky}");
    assert_eq!(numbers(&flaky), [rerun], "a failure then a pass of the same name on one commit");
    let (_, steady) = world.api.get(&format!("{path}?flaky=false")).await;
    assert_eq!(numbers(&steady), [calm, slow]);
    let (_, stuck) = world.api.get(&format!("{path}?stuck=true")).await;
    assert_eq!(numbers(&stuck), [slow], "in progress for two hours, past the 1 h default");
    let (_, both) = world.api.get(&format!("{path}?stuck=true&flaky=true")).await;
    assert_eq!(numbers(&both), Vec::<i64>::new());
    // The re-run passed, so the PR's checks pass: the newest run of each name counts.
    assert_eq!(flaky["items"][0]["checks"], "passing", "{flaky}");

    let (status, flakiest) = world.api.get(&format!("/api/v1/repositories/{REPO}/checks/flaky")).await;
    assert_eq!(status, 200, "{flakiest}");
    assert_eq!(flakiest["last_7_days"], serde_json::json!([{ "name": "integration", "commits": 1 }]));
    assert_eq!(flakiest["last_30_days"], flakiest["last_7_days"]);

    for bad in ["?flaky=yes", "?stuck=1"] {
        let (status, body) = world.api.get(&format!("{path}{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = world.api.get(&format!("/api/v1/repositories/{REPO}/checks/flaky?days=7")).await;
    assert_eq!(status, 400, "the endpoint takes no parameter");
    let (status, _) = world.api.get("/api/v1/repositories/acme/nope/checks/flaky").await;
    assert_eq!(status, 404);

    // Per-repository gauges.
    let metrics = reqwest::get(format!("http://{}/metrics", world.address())).await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("prmonitor_checks_stuck{repository=\"acme/repo-0\"}"), "{text}");
    assert!(text.contains("prmonitor_checks_flaky_7d{repository=\"acme/repo-0\"}"), "{text}");
    world.finish().await;
}

#[tokio::test]
async fn the_stuck_threshold_is_a_setting() {
    let world = TestWorld::builder(1).setting("PRMONITOR_STUCK_CHECK_AFTER", "3h").start().await;
    let github = &world.github;
    let slow = github.open_pr(REPO, NewPr::new("Slow CI", "octocat"));
    let head = github.head(REPO, slow);
    github.0.set_clock_offset(chrono::Duration::hours(-2));
    let running = github.0.create_check_run(REPO, &head, "e2e").expect("check run");
    github.0.start_check_run(running).expect("start");
    github.0.set_clock_offset(chrono::Duration::zero());
    world.settle().await;
    let (_, stuck) = world.api.get(&format!("/api/v1/repositories/{REPO}/pulls?stuck=true")).await;
    assert_eq!(numbers(&stuck), Vec::<i64>::new(), "two hours is not past three");
    let (_, not_stuck) = world.api.get(&format!("/api/v1/repositories/{REPO}/pulls?stuck=false")).await;
    assert_eq!(numbers(&not_stuck), [slow]);
    world.finish().await;
}
