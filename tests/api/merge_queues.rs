//! Merge queues: `merge_group` webhooks keep a copy of each queued PR's
//! merge group, its checks stay apart from the PR's, and sweeps heal the
//! webhooks GitHub lost.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use github_sim::NewPr;
use prmonitor::db::merge_groups::{self, DeliveredGroup};
use prmonitor::db::schema::{merge_groups as groups_table, repositories};
use prmonitor::ids::{PullRequestNumber, RepositoryId};
use prmonitor_testkit::{connect, TestWorld};
use serde_json::Value;

use crate::json_schema::Schemas;
use crate::scenarios::REPO;

const GROUPS: &str = "/api/v1/repositories/acme/repo-0/merge-groups";

/// An open PR whose head passed its check, as a PR is before it is queued.
fn ready_pr(world: &TestWorld, title: &str) -> i64 {
    let number = world.github.open_pr(REPO, NewPr::new(title, "alice"));
    let head = world.github.head(REPO, number);
    world.github.check(REPO, &head, "build", "success");
    number
}

/// The stored state of the group with commit `head_sha`.
async fn group_state(world: &TestWorld, head_sha: &str) -> Option<String> {
    let conn = &mut connect(&world.db.url).await;
    groups_table::table
        .filter(groups_table::head_sha.eq(head_sha))
        .select(groups_table::state)
        .first(conn)
        .await
        .optional()
        .expect("query")
}

/// `GET …/merge-groups`, checked against the OpenAPI document.
async fn listed_groups(world: &TestWorld) -> Vec<Value> {
    let (status, body) = world.api.get(GROUPS).await;
    assert_eq!(status, 200, "{body}");
    let errors = Schemas::new().validate_response(
        "get",
        "/api/v1/repositories/{owner}/{name}/merge-groups",
        "200",
        &body,
    );
    assert_eq!(errors, Vec::<String>::new(), "the answer is what the OpenAPI document says: {body}");
    body["items"].as_array().expect("items").clone()
}

/// The PR listing's entry for `number`, checked against the OpenAPI document.
async fn listed_pull(world: &TestWorld, number: i64) -> Value {
    let (status, body) = world.api.get("/api/v1/repositories/acme/repo-0/pulls?state=all").await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().expect("items");
    let schemas = &mut Schemas::new();
    for item in items {
        let mut page = serde_json::json!({ "items": [], "page": 1, "per_page": 30, "total": 1 });
        page["items"] = serde_json::json!([item]);
        let summary =
            schemas.validate_response("get", "/api/v1/repositories/{owner}/{name}/pulls", "200", &page);
        assert_eq!(summary, Vec::<String>::new(), "{item}");
    }
    items.iter().find(|pr| pr["number"] == number).expect("the PR is listed").clone()
}

#[tokio::test]
async fn an_enqueued_pr_gets_a_queued_group_whose_checks_are_not_the_prs() {
    let world = TestWorld::with_repos(1).await;
    let number = ready_pr(&world, "Queue me");
    world.settle().await;
    assert_eq!(world.api.pull(REPO, number).await["merge_queue"], Value::Null, "never queued");
    let before = world.api.pull(REPO, number).await;

    let group = world.github.enqueue(REPO, number).expect("queued");
    world.settle().await;
    let pr = world.api.pull(REPO, number).await;
    assert_eq!(pr["merge_queue"]["state"], "queued", "{pr}");
    assert_eq!(pr["merge_queue"]["head_sha"], group.as_str());
    assert_eq!(listed_pull(&world, number).await["merge_queue"]["state"], "queued");

    // The queue's CI fails on the group's commit: the group's checks, not the PR's.
    world.github.check(REPO, &group, "build", "failure");
    world.github.check(REPO, &group, "integration", "success");
    // A CI reporting through the Statuses API on the group's commit, too.
    world.github.0.set_status(REPO, &group, "ci/jenkins", "success", None).expect("status");
    world.settle().await;
    let pr = world.api.pull(REPO, number).await;
    assert_eq!(pr["check_runs"], before["check_runs"], "the PR's checks are its head's: {pr}");
    assert_eq!(pr["statuses"], before["statuses"], "and so are its statuses: {pr}");
    let listed = listed_pull(&world, number).await;
    assert_eq!(
        (listed["checks"].as_str(), listed["checks_failing"].as_i64(), listed["checks_passing"].as_i64()),
        (Some("passing"), Some(0), Some(1)),
        "{listed}"
    );
    let groups = listed_groups(&world).await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    let listed = &groups[0];
    assert_eq!(listed["head_sha"], group.as_str());
    assert_eq!(listed["pr_number"], number);
    assert_eq!(listed["state"], "queued");
    assert_eq!(listed["base_ref"], "refs/heads/main");
    assert!(
        listed["head_ref"].as_str().is_some_and(|r| r.contains("gh-readonly-queue/main/pr-")),
        "{listed}"
    );
    assert_eq!(
        (listed["checks"].as_str(), listed["checks_failing"].as_i64(), listed["checks_passing"].as_i64()),
        (Some("failing"), Some(1), Some(2)),
        "the group's runs and status: {listed}"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_group_that_passes_merges_its_pr_and_a_dequeue_shows_dequeued() {
    let world = TestWorld::with_repos(1).await;
    let first = ready_pr(&world, "First");
    let second = ready_pr(&world, "Second");
    let third = ready_pr(&world, "Third");
    world.settle().await;
    let g1 = world.github.enqueue(REPO, first).expect("queued");
    let g2 = world.github.enqueue(REPO, second).expect("queued");
    let g3 = world.github.enqueue(REPO, third).expect("queued");
    world.settle().await;

    world.github.merge_group_passed(REPO, first).expect("merged");
    world.settle().await;
    let pr = world.api.pull(REPO, first).await;
    assert_eq!(pr["state"], "merged", "{pr}");
    assert_eq!(pr["merge_queue"]["state"], "merged", "{pr}");
    assert_eq!(group_state(&world, &g1).await.as_deref(), Some("merged"));

    // Out of the queue: the group behind was built on it, so GitHub rebuilds it.
    world.github.dequeue(REPO, second, "dequeued").expect("dequeued");
    world.settle().await;
    let pr = world.api.pull(REPO, second).await;
    assert_eq!((pr["state"].as_str(), pr["merge_queue"]["state"].as_str()), (Some("open"), Some("dequeued")));
    assert_eq!(pr["merge_queue"]["head_sha"], g2.as_str());
    assert_eq!(group_state(&world, &g3).await.as_deref(), Some("invalidated"));
    let rebuilt = world.api.pull(REPO, third).await;
    assert_eq!(rebuilt["merge_queue"]["state"], "queued", "the rebuilt group is the newest: {rebuilt}");
    assert_ne!(rebuilt["merge_queue"]["head_sha"], g3.as_str());
    let groups = listed_groups(&world).await;
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert_eq!(groups[0]["state"], "queued", "newest first: {groups:?}");
    world.finish().await;
}

#[tokio::test]
async fn a_sweep_heals_lost_merge_group_webhooks() {
    let world = TestWorld::with_repos(1).await;
    let first = ready_pr(&world, "First");
    let second = ready_pr(&world, "Second");
    world.settle().await;
    // GitHub loses every webhook of the queue.
    let g1 = world.github.without_webhooks(|w| w.enqueue(w.repo_id(REPO)?, first).map(|(sha, _)| sha));
    let g2 = world.github.without_webhooks(|w| w.enqueue(w.repo_id(REPO)?, second).map(|(sha, _)| sha));
    assert!(world.diff().await.is_err(), "the lost webhooks leave the queue unknown");
    world.api.reconcile_all().await;
    world.settle().await;
    world.diff().await.expect("the sweep stored the queued groups");
    assert_eq!(group_state(&world, &g2).await.as_deref(), Some("queued"));
    let pr = world.api.pull(REPO, second).await;
    assert!(pr["merge_queue"]["enqueued_at"].is_string(), "a sweep knows when it was queued: {pr}");

    // The first merges and the second leaves the queue, unheard.
    world.github.without_webhooks(|w| w.merge_group_passed(w.repo_id(REPO)?, first).map(|_| ()));
    world.github.without_webhooks(|w| w.dequeue(w.repo_id(REPO)?, second, "dequeued").map(|_| ()));
    assert!(world.diff().await.is_err());
    world.api.reconcile_all().await;
    world.settle().await;
    world.diff().await.expect("the sweep ended the groups it no longer sees");
    assert_eq!(group_state(&world, &g1).await.as_deref(), Some("merged"), "its PR merged through it");
    assert_eq!(group_state(&world, &g2).await.as_deref(), Some("ended"), "gone, for a reason unknown");
    assert_eq!(world.api.pull(REPO, first).await["state"], "merged");
    let repaired = world
        .count("SELECT COALESCE(sum(rows), 0)::int8 FROM sweep_repairs WHERE kind = 'merge_group'")
        .await;
    assert_eq!(repaired, 4, "two groups stored, two ended");
    let (_, repositories) = world.api.get("/api/v1/repositories").await;
    assert_eq!(repositories["items"][0]["repairs_last_24h"]["merge_group"], 4, "{repositories}");
    world.finish().await;
}

#[tokio::test]
async fn a_destroyed_group_never_goes_back_to_queued() {
    let world = TestWorld::with_repos(1).await;
    let number = ready_pr(&world, "Late");
    world.settle().await;
    let head_sha = world.github.without_webhooks(|w| w.enqueue(w.repo_id(REPO)?, number).map(|(sha, _)| sha));
    world.github.without_webhooks(|w| w.dequeue(w.repo_id(REPO)?, number, "dequeued").map(|_| ()));
    let conn = &mut connect(&world.db.url).await;
    let repository_id: RepositoryId =
        repositories::table.select(repositories::id).first(conn).await.expect("repo");
    let group = |destroyed: Option<&str>| DeliveredGroup {
        pr_number: PullRequestNumber(number as i32),
        head_sha: head_sha.clone(),
        head_ref: format!("refs/heads/gh-readonly-queue/main/pr-{number}-{head_sha}"),
        base_ref: "refs/heads/main".into(),
        base_sha: head_sha.clone(),
        created_at: None,
        destroyed: destroyed.map(str::to_owned),
    };
    // Delivered out of order: the end first, the request after it.
    assert!(merge_groups::apply_delivered(conn, repository_id, &group(Some("dequeued")))
        .await
        .expect("write"));
    merge_groups::apply_delivered(conn, repository_id, &group(None)).await.expect("write");
    assert_eq!(group_state(&world, &head_sha).await.as_deref(), Some("dequeued"));
    // Redelivered, or contradicted: GitHub's first reason stays.
    assert!(!merge_groups::apply_delivered(conn, repository_id, &group(Some("dequeued")))
        .await
        .expect("write"));
    assert!(!merge_groups::apply_delivered(conn, repository_id, &group(Some("merged")))
        .await
        .expect("write"));
    // A sweep sees no queue: nothing to end, nothing to bring back.
    world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(group_state(&world, &head_sha).await.as_deref(), Some("dequeued"));
    world.finish().await;
}

/// Makes every repository due for a sweep and enqueues the installation's survey.
async fn survey_now(world: &TestWorld) {
    use prmonitor::queue::{self, NewJob, SurveyJob};
    let conn = &mut connect(&world.db.url).await;
    diesel::sql_query("UPDATE repositories SET last_swept_at = now() - interval '2 days'")
        .execute(conn)
        .await
        .expect("due");
    let installation = prmonitor::ids::InstallationId(github_sim::generate::GENERATED_INSTALLATION);
    let job = NewJob::survey(&SurveyJob { installation_id: Some(installation) });
    queue::enqueue(conn, &job).await.expect("enqueued");
}

#[tokio::test]
async fn a_survey_reads_the_queues_with_the_open_prs_and_heals_lost_webhooks() {
    let world = TestWorld::with_repos(2).await;
    let first = ready_pr(&world, "First");
    let second = ready_pr(&world, "Second");
    world.settle().await;
    let g1 = world.github.without_webhooks(|w| w.enqueue(w.repo_id(REPO)?, first).map(|(sha, _)| sha));
    let g2 = world.github.without_webhooks(|w| w.enqueue(w.repo_id(REPO)?, second).map(|(sha, _)| sha));
    assert!(world.diff().await.is_err(), "the lost webhooks leave the queue unknown");
    world.github.reset_stats();
    survey_now(&world).await;
    world.settle().await;
    world.diff().await.expect("the survey stored the queued groups");
    // Surveyed, not swept one by one: no REST listing of the PRs.
    assert_eq!(world.github.stats().count_route("GET /repos/{owner}/{repo}/pulls"), 0);

    world.github.without_webhooks(|w| w.merge_group_passed(w.repo_id(REPO)?, first).map(|_| ()));
    world.github.without_webhooks(|w| w.dequeue(w.repo_id(REPO)?, second, "dequeued").map(|_| ()));
    assert!(world.diff().await.is_err());
    survey_now(&world).await;
    world.settle().await;
    world.diff().await.expect("the survey ended the groups it no longer lists");
    assert_eq!(group_state(&world, &g1).await.as_deref(), Some("merged"));
    assert_eq!(group_state(&world, &g2).await.as_deref(), Some("ended"));
    world.finish().await;
}
