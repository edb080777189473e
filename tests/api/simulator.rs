//! The simulator's webhooks: signed like GitHub's, shaped like GitHub's,
//! delivered (or lost, duplicated, reordered) on request.

use std::collections::BTreeMap;

use diesel::sql_types::{Bytea, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use github_sim::{NewPr, SimConfig, Simulator, WebhookTarget};
use serde_json::Value;

use crate::json_schema::Schemas;
use prmonitor_testkit::{connect, spawn_app, TestApp, TEST_SECRET};

fn target(app: &TestApp, secret: &str) -> WebhookTarget {
    WebhookTarget {
        url: app.url("/webhooks/github"),
        secret: secret.to_owned(),
        loss_rate: 0.0,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        concurrency: 1,
    }
}

async fn sim_with_repo() -> Simulator {
    let fixture = serde_json::from_str(include_str!("../../fixtures/sim/small.json")).expect("fixture");
    Simulator::start(SimConfig { fixture: Some(fixture), ..SimConfig::default() }).await.expect("simulator")
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Bytea)]
    payload: Vec<u8>,
}

/// Every kind of change the simulator models, each once.
fn play_every_mutation(sim: &Simulator) {
    let repo = "octo-org/api";
    let n = sim.open_pr(repo, NewPr::new("Schema check", "alice")).expect("opened");
    sim.edit_pr(repo, n, Some("Schema check, edited"), Some("now with a body")).expect("edited");
    sim.label(repo, n, "bug").expect("labeled");
    sim.unlabel(repo, n, "bug").expect("unlabeled");
    sim.set_draft(repo, n, true).expect("converted_to_draft");
    sim.set_draft(repo, n, false).expect("ready_for_review");
    let sha = sim.push(repo, n).expect("synchronize");
    let build = sim.create_check_run(repo, &sha, "build").expect("check_run created");
    sim.start_check_run(build).expect("no event");
    sim.complete_check_run(build, "failure").expect("check_run completed + check_suite completed");
    sim.close(repo, n).expect("closed");
    sim.reopen(repo, n).expect("reopened");
    sim.merge(repo, n).expect("closed (merged)");
}

#[tokio::test]
async fn simulated_webhooks_verify_with_the_secret_and_validate_against_githubs_schemas() {
    let app = spawn_app().await;
    let sim = sim_with_repo().await;
    sim.set_webhook(Some(target(&app, TEST_SECRET)));
    play_every_mutation(&sim);
    sim.wait_for_deliveries().await;

    let records = sim.deliveries();
    assert_eq!(records.len(), 13, "{records:?}");
    // 202 from prmonitor means the signature verified with the configured secret.
    assert!(records.iter().all(|r| r.statuses == [202]), "{records:?}");

    let mut conn = connect(&app.db.url).await;
    let stored: Vec<Stored> = diesel::sql_query(
        "SELECT event, coalesce(action, '') AS action, payload FROM webhook_deliveries ORDER BY received_at",
    )
    .load(&mut conn)
    .await
    .expect("deliveries");
    assert_eq!(stored.len(), 13);
    let mut schemas = Schemas::new();
    let mut seen = BTreeMap::new();
    for delivery in &stored {
        let payload: Value = serde_json::from_slice(&delivery.payload).expect("JSON");
        let errors = schemas.validate(&delivery.event, &delivery.action, &payload);
        assert!(errors.is_empty(), "{}/{}: {errors:#?}", delivery.event, delivery.action);
        *seen.entry(format!("{}/{}", delivery.event, delivery.action)).or_insert(0) += 1;
    }
    let expected = [
        ("check_run/completed", 1),
        ("check_run/created", 1),
        ("check_suite/completed", 1),
        ("pull_request/closed", 2),
        ("pull_request/converted_to_draft", 1),
        ("pull_request/edited", 1),
        ("pull_request/labeled", 1),
        ("pull_request/opened", 1),
        ("pull_request/ready_for_review", 1),
        ("pull_request/reopened", 1),
        ("pull_request/synchronize", 1),
        ("pull_request/unlabeled", 1),
    ];
    assert_eq!(seen, expected.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect());
}

#[tokio::test]
async fn a_webhook_signed_with_another_secret_is_refused() {
    let app = spawn_app().await;
    let sim = sim_with_repo().await;
    sim.set_webhook(Some(target(&app, "not the service's secret")));
    sim.open_pr("octo-org/api", NewPr::new("x", "bob")).expect("open");
    sim.wait_for_deliveries().await;
    assert_eq!(sim.deliveries()[0].statuses, [401]);
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 0);
}

#[tokio::test]
async fn loss_and_duplication_happen_at_their_rates() {
    let app = spawn_app().await;
    let sim = sim_with_repo().await;
    let mut unreliable = target(&app, TEST_SECRET);
    unreliable.loss_rate = 0.3;
    unreliable.duplicate_rate = 0.2;
    unreliable.reorder_rate = 0.5;
    sim.set_webhook(Some(unreliable));
    for i in 0..100 {
        sim.label("octo-org/api", 1, &format!("label-{i}")).expect("labeled");
    }
    sim.wait_for_deliveries().await;
    let records = sim.deliveries();
    assert_eq!(records.len(), 100);
    let lost = records.iter().filter(|r| r.lost).count();
    let doubled: Vec<_> = records.iter().filter(|r| r.statuses.len() == 2).collect();
    assert!((15..=45).contains(&lost), "lost {lost} of 100");
    assert!(!doubled.is_empty(), "some deliveries were sent twice");
    // A duplicate carries the same delivery id: the service stores it once and answers 200.
    assert!(doubled.iter().all(|r| r.statuses == [202, 200]), "{doubled:?}");
    let delivered = records.iter().filter(|r| !r.lost).count() as i64;
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, delivered);
    // Reordering: the labels did not all arrive in the order they were added.
    let mut conn = connect(&app.db.url).await;
    let ids: Vec<Stored> = diesel::sql_query(
        "SELECT event, coalesce(action, '') AS action, payload FROM webhook_deliveries ORDER BY received_at",
    )
    .load(&mut conn)
    .await
    .expect("deliveries");
    let order: Vec<u64> = ids
        .iter()
        .filter_map(|d| serde_json::from_slice::<Value>(&d.payload).ok())
        .filter_map(|p| {
            p["label"]["name"].as_str().and_then(|n| n.strip_prefix("label-")).and_then(|n| n.parse().ok())
        })
        .collect();
    assert!(order.windows(2).any(|w| w[0] > w[1]), "nothing was reordered: {order:?}");
}

#[tokio::test]
async fn faults_and_budgets_can_be_set_over_the_admin_api_while_running() {
    let sim = Simulator::start(SimConfig { static_token: Some("t".into()), ..SimConfig::default() })
        .await
        .expect("simulator");
    let base = format!("http://{}", sim.address());
    let http = reqwest::Client::new();
    let pulls = |http: &reqwest::Client| {
        http.get(format!("{base}/repos/octo-org/api/pulls")).header("authorization", "Bearer t").send()
    };
    // No such repository in an empty world: 404, counted.
    assert_eq!(pulls(&http).await.expect("sent").status(), 404);

    let faults = serde_json::json!({ "secondary_limits": 1, "retry_after_secs": 7 });
    let set = http.post(format!("{base}/_sim/faults")).json(&faults).send().await.expect("sent");
    assert_eq!(set.status(), 200);
    let limited = pulls(&http).await.expect("sent");
    assert_eq!(limited.status(), 403);
    assert_eq!(limited.headers()["retry-after"], "7");

    let budget = serde_json::json!({ "limit": 10, "remaining": 0, "reset_in_secs": 60 });
    let set = http.post(format!("{base}/_sim/budget/0")).json(&budget).send().await.expect("sent");
    assert_eq!(set.status(), 200);
    let exhausted = pulls(&http).await.expect("sent");
    assert_eq!(exhausted.status(), 403);
    assert_eq!(exhausted.headers()["x-ratelimit-remaining"], "0");

    let stats: Value =
        http.get(format!("{base}/_sim/stats")).send().await.expect("sent").json().await.expect("json");
    assert_eq!(stats["counts"]["GET /repos/{owner}/{repo}/pulls 404"], 1);
    assert_eq!(stats["counts"]["GET /repos/{owner}/{repo}/pulls 403"], 2);
    assert_eq!(stats["requests"], 3);
}
