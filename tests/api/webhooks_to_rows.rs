//! A webhook reaches its row: GitHub's deliveries, signed by the simulator,
//! through intake, the queue and the worker, into the tables the API reads.

use github_sim::NewPr;
use prmonitor_testkit::TestWorld;
use serde_json::json;

const REPO: &str = "acme/repo-0";

#[tokio::test]
async fn a_labelled_pr_and_its_check_reach_their_rows() {
    let world = TestWorld::with_repos(1).await;
    let pr = world.github.open_pr(REPO, NewPr::new("Needs triage", "alice"));
    world.github.label(REPO, pr, "bug");
    world.github.check(REPO, &world.github.head(REPO, pr), "build", "failure");
    world.settle().await;
    let stored = world.api.pull(REPO, pr).await;
    assert_eq!((&stored["labels"], &stored["author"]), (&json!(["bug"]), &json!("alice")));
    assert_eq!(stored["check_runs"][0]["conclusion"], "failure", "{stored}");
    world.finish().await;
}
