//! Sweeps: what webhooks missed, a sweep brings back — on the timer, or when
//! an operator asks through `POST /api/v1/reconcile`.

use github_sim::NewPr;
use prmonitor_testkit::TestWorld;

const REPO: &str = "acme/repo-0";

#[tokio::test]
async fn a_sweep_heals_a_retitle_whose_webhook_was_lost() {
    let world = TestWorld::with_repos(1).await;
    let pr = world.github.open_pr(REPO, NewPr::new("Before", "alice"));
    world.settle().await;
    world.github.without_webhooks(|w| w.edit_pr(w.repo_id(REPO)?, pr, Some("After".into()), None));
    assert_eq!(world.api.pull(REPO, pr).await["title"], "Before");
    world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(world.api.pull(REPO, pr).await["title"], "After");
    world.finish().await;
}

#[tokio::test]
async fn the_reconcile_endpoint_runs_a_sweep_of_every_repository() {
    let world = TestWorld::with_repos(2).await;
    let jobs = world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(jobs.len(), 2, "one sweep per repository: {jobs:?}");
    for id in jobs {
        let job = world.api.job(id).await;
        assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("sweep"), Some("done")), "{job}");
    }
    world.finish().await;
}
