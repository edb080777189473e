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
    // The deliveries API lists every attempt: each copy of a duplicate, and
    // each lost delivery as a failed attempt that could not connect.
    let attempts = sim.hook_deliveries();
    let copies: usize = records.iter().map(|r| r.statuses.len()).sum();
    assert_eq!(attempts.len(), copies + lost);
    let unreachable: Vec<_> = attempts.iter().filter(|a| a.status_code == 0).collect();
    assert_eq!(unreachable.len(), lost);
    assert!(unreachable.iter().all(|a| a.status == "failed to connect to host" && !a.succeeded()));
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
    // The injected limit is a secondary one; the spent budget is the primary one.
    assert_eq!(stats["secondary_limited"], 1);
    let limited: Vec<_> = sim.stats().requests.iter().map(|r| r.limited).collect();
    assert_eq!(limited, [None, Some("secondary"), Some("primary")]);
}

const PULLS: &str = "GET /repos/{owner}/{repo}/pulls";

/// The fixture world, read with a static token, and a client for raw HTTP.
async fn sim_with_token(config: SimConfig) -> (Simulator, String, reqwest::Client) {
    let fixture = serde_json::from_str(include_str!("../../fixtures/sim/small.json")).expect("fixture");
    let sim =
        Simulator::start(SimConfig { fixture: Some(fixture), static_token: Some("t".into()), ..config })
            .await
            .expect("simulator");
    let base = format!("http://{}", sim.address());
    (sim, base, reqwest::Client::new())
}

fn get(http: &reqwest::Client, url: &str, token: &str, etag: Option<&str>) -> reqwest::RequestBuilder {
    let request = http.get(url).bearer_auth(token);
    match etag {
        Some(etag) => request.header("if-none-match", etag),
        None => request,
    }
}

#[tokio::test]
async fn conditional_requests_answered_304_still_count_against_the_secondary_limit() {
    let (sim, base, http) =
        sim_with_token(SimConfig { secondary_points_per_minute: 5, ..SimConfig::default() }).await;
    let url = format!("{base}/repos/octo-org/api/pulls");
    let first = get(&http, &url, "t", None).send().await.expect("sent");
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let remaining = first.headers()["x-ratelimit-remaining"].to_str().expect("remaining").to_owned();
    // The 200 and four free 304s spend the 5 points of this endpoint …
    for i in 0..4 {
        let answer = get(&http, &url, "t", Some(&etag)).send().await.expect("sent");
        assert_eq!(answer.status(), 304, "conditional request {i}");
    }
    // … so the fifth conditional request, that would be a 304 too, is refused.
    let refused = get(&http, &url, "t", Some(&etag)).send().await.expect("sent");
    assert_eq!(refused.status(), 403);
    let retry_after: u64 =
        refused.headers()["retry-after"].to_str().expect("ascii").parse().expect("whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // The primary budget is not what refused it: its headers are unchanged.
    assert_eq!(refused.headers()["x-ratelimit-remaining"], remaining.as_str());
    assert_ne!(remaining, "0");
    let body: Value = refused.json().await.expect("json");
    let message = body["message"].as_str().expect("message");
    assert!(message.starts_with("You have exceeded a secondary rate limit."), "{message}");
    assert_eq!(
        body["documentation_url"],
        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
    );
    // The limit is per endpoint (route template): another one still answers.
    let pull =
        get(&http, &format!("{base}/repos/octo-org/api/pulls/1"), "t", None).send().await.expect("sent");
    assert_eq!(pull.status(), 200);

    let stats = sim.stats();
    assert_eq!(stats.secondary_limited(), 1);
    assert_eq!((stats.count(PULLS, 200), stats.count(PULLS, 304), stats.count(PULLS, 403)), (1, 4, 1));
    let admin: Value =
        http.get(format!("{base}/_sim/stats")).send().await.expect("sent").json().await.expect("json");
    assert_eq!(admin["secondary_limited"], 1);
}

#[tokio::test]
async fn a_request_beyond_the_concurrency_limit_is_refused_while_the_others_are_in_flight() {
    let (sim, base, http) = sim_with_token(SimConfig {
        max_concurrent_requests: 2,
        faults: github_sim::Faults { latency_ms: 1500, ..github_sim::Faults::default() },
        ..SimConfig::default()
    })
    .await;
    let url = format!("{base}/repos/octo-org/api/pulls");
    let answers = futures_util::future::join_all((0..3).map(|_| get(&http, &url, "t", None).send())).await;
    let mut statuses: Vec<u16> =
        answers.iter().map(|a| a.as_ref().expect("sent").status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 403]);
    let refused = answers.iter().flatten().find(|a| a.status() == 403).expect("the refused one");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(sim.stats().secondary_limited(), 1);
    // The two answered, their places are free again.
    assert_eq!(get(&http, &url, "t", None).send().await.expect("sent").status(), 200);
    assert_eq!(sim.stats().secondary_limited(), 1);
}

/// An App JWT as GitHub wants it (RS256, `iss` the App id, at most 10 minutes).
fn app_jwt() -> String {
    use octocrab::jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({ "iss": github_sim::SIM_APP_ID, "iat": now - 60, "exp": now + 540 });
    let key = EncodingKey::from_rsa_pem(github_sim::SIM_APP_PRIVATE_KEY.as_bytes()).expect("key");
    encode(&Header::new(Algorithm::RS256), &claims, &key).expect("jwt")
}

async fn mint(http: &reqwest::Client, base: &str) -> String {
    let answer: Value = http
        .post(format!("{base}/app/installations/2001/access_tokens"))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    answer["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn an_etag_earned_under_an_ended_token_gets_the_full_body_and_costs_a_point_under_the_next() {
    let (sim, base, http) = sim_with_token(SimConfig::default()).await;
    let url = format!("{base}/repos/octo-org/api/pulls");
    let remaining = |answer: &reqwest::Response| -> u64 {
        answer.headers()["x-ratelimit-remaining"].to_str().expect("ascii").parse().expect("number")
    };
    let old_token = mint(&http, &base).await;
    let first = get(&http, &url, &old_token, None).send().await.expect("sent");
    assert_eq!(first.status(), 200);
    let old_etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let budget = remaining(&first);
    let body = first.bytes().await.expect("body");
    let same_token = get(&http, &url, &old_token, Some(&old_etag)).send().await.expect("sent");
    assert_eq!((same_token.status().as_u16(), remaining(&same_token)), (304, budget), "free under its token");

    let ended: Value = http
        .post(format!("{base}/_sim/tokens/expire"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(ended["expired"], 1);
    let refused = get(&http, &url, &old_token, Some(&old_etag)).send().await.expect("sent");
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.json::<Value>().await.expect("json")["message"], "Bad credentials");

    let new_token = mint(&http, &base).await;
    let renewed = get(&http, &url, &new_token, Some(&old_etag)).send().await.expect("sent");
    assert_eq!(renewed.status(), 200, "the old ETag does not match under the new token");
    assert_eq!(remaining(&renewed), budget - 1, "and the answer costs a point");
    let new_etag = renewed.headers()["etag"].to_str().expect("etag").to_owned();
    assert_ne!(new_etag, old_etag);
    assert_eq!(renewed.bytes().await.expect("body"), body, "the same full body");
    let again = get(&http, &url, &new_token, Some(&new_etag)).send().await.expect("sent");
    assert_eq!((again.status().as_u16(), remaining(&again)), (304, budget - 1));
    // The static token is a credential of its own, too.
    assert_eq!(get(&http, &url, "t", Some(&new_etag)).send().await.expect("sent").status(), 200);
    assert_eq!(sim.stats().count(PULLS, 401), 1);
}

#[derive(QueryableByName)]
struct StoredId {
    #[diesel(sql_type = Text)]
    delivery_id: String,
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Text)]
    action: String,
}

/// `POST /_sim/activity` from outside the simulator's process, as a
/// standalone `prmonitor sim` is driven: the changes' webhooks reach the
/// service, a silent activity sends none, a refused body changes nothing.
#[tokio::test]
async fn activity_over_http_reaches_the_service_with_the_webhooks_it_reports() {
    let app = spawn_app().await;
    let sim = sim_with_repo().await;
    sim.set_webhook(Some(target(&app, TEST_SECRET)));
    let http = reqwest::Client::new();
    let activity = format!("http://{}/_sim/activity", sim.address());
    let post = |body: Value| http.post(&activity).json(&body).send();

    let answer = post(serde_json::json!({ "changes": 40, "seed": 9 })).await.expect("sent");
    assert_eq!(answer.status(), 200);
    let report: Value = answer.json().await.expect("json");
    assert_eq!(report["changes"].as_array().expect("changes").len(), 40);
    let sent = report["totals"]["webhooks_sent"].as_i64().expect("a count");
    assert!(sent >= 40, "every change but starting a run sends one or more: {}", report["totals"]);
    sim.wait_for_deliveries().await;
    let mut conn = connect(&app.db.url).await;
    let stored: Vec<StoredId> = diesel::sql_query(
        "SELECT delivery_id, event, coalesce(action, '') AS action FROM webhook_deliveries",
    )
    .load(&mut conn)
    .await
    .expect("deliveries");
    let stored: BTreeMap<String, (String, String)> =
        stored.into_iter().map(|d| (d.delivery_id, (d.event, d.action))).collect();
    let reported: BTreeMap<String, (String, String)> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .flat_map(|c| c["webhooks"].as_array().expect("webhooks").iter())
        .map(|w| {
            let text = |key: &str| w[key].as_str().expect(key).to_owned();
            (text("delivery_id"), (text("event"), text("action")))
        })
        .collect();
    assert_eq!(reported.len() as i64, sent);
    assert_eq!(stored, reported, "the service stored exactly the reported webhooks");

    // Silent: the world changes, nothing is delivered.
    let heads = || {
        sim.world(|w| {
            w.repos.values().flat_map(|r| r.pulls.values().map(|p| p.head_sha.clone())).collect::<Vec<_>>()
        })
    };
    let before = heads();
    let silent = post(serde_json::json!({ "operations": [
        { "op": "push", "repository": "octo-org/api", "number": 1 }
    ], "webhooks": false }))
    .await
    .expect("sent");
    assert_eq!(silent.status(), 200);
    let silent: Value = silent.json().await.expect("json");
    assert_eq!(silent["totals"]["webhooks_sent"], 0);
    assert_ne!(heads(), before, "the push happened");
    sim.wait_for_deliveries().await;
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, sent);

    // Refused: a clear 4xx in GitHub's shape, nothing changed, nothing sent.
    let before = heads();
    for (body, status) in [
        (
            serde_json::json!({ "operations": [{ "op": "push", "repository": "octo-org/api", "number": 1 }, { "op": "merge", "repository": "octo-org/nope", "number": 1 }] }),
            422,
        ),
        (serde_json::json!({ "changes": "many" }), 422),
    ] {
        let answer = post(body).await.expect("sent");
        assert_eq!(answer.status().as_u16(), status);
        let error: Value = answer.json().await.expect("json");
        assert!(error["message"].is_string() && error["documentation_url"].is_string(), "{error}");
    }
    let malformed = http.post(&activity).body("{\"changes\":").send().await.expect("sent");
    assert_eq!(malformed.status(), 400);
    assert_eq!(heads(), before);
    sim.wait_for_deliveries().await;
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, sent);
    sim.stop().await;
}
