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
/// An App JWT as GitHub wants it (RS256, `iss` the App id, at most 10 minutes).
pub(crate) fn app_jwt() -> String {
    use octocrab::jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({ "iss": github_sim::SIM_APP_ID, "iat": now - 60, "exp": now + 540 });
    let key = EncodingKey::from_rsa_pem(github_sim::SIM_APP_PRIVATE_KEY.as_bytes()).expect("key");
    encode(&Header::new(Algorithm::RS256), &claims, &key).expect("jwt")
}

async fn mint(http: &reqwest::Client, base: &str) -> String {
    mint_for(http, base, 2001).await
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

// ---------------------------------------------------------------- commit statuses, required checks, merge queues

/// The head SHA of PR `number` in `repo`.
fn head_of(sim: &Simulator, repo: &str, number: i64) -> String {
    sim.world(|w| w.repo(w.repo_id(repo)?).map(|r| r.pulls[&number].head_sha.clone())).expect("a PR")
}

/// An installation token, obtained as a GitHub App does: a JWT for the App, exchanged.
pub(crate) async fn mint_for(http: &reqwest::Client, base: &str, installation: i64) -> String {
    let answer: Value = http
        .post(format!("{base}/app/installations/{installation}/access_tokens"))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    answer["token"].as_str().expect("a token").to_owned()
}

fn seconds_ago(at: &Value) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(at.as_str().expect("a time")).expect("RFC 3339");
    (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds()
}

#[tokio::test]
async fn the_combined_status_and_the_statuses_listing_answer_as_github_with_token_scoped_etags() {
    let (sim, base, http) = sim_with_token(SimConfig::default()).await;
    let repo = "octo-org/api";
    let sha = head_of(&sim, repo, 1);
    let combined_url = format!("{base}/repos/{repo}/commits/{sha}/status");
    let listing_url = format!("{base}/repos/{repo}/commits/{sha}/statuses");

    // No statuses yet: pending, as GitHub documents.
    let empty: Value =
        get(&http, &combined_url, "t", None).send().await.expect("sent").json().await.expect("json");
    assert_eq!((empty["state"].as_str(), empty["total_count"].as_u64()), (Some("pending"), Some(0)));

    let first = sim.set_status(repo, &sha, "ci/jenkins", "pending", Some("Build started")).expect("status");
    let lint = sim.set_status(repo, &sha, "lint", "success", None).expect("status");
    let latest = sim.set_status(repo, &sha, "ci/jenkins", "failure", Some("2 tests failed")).expect("status");
    assert!(first > i64::from(i32::MAX), "status ids pass 2^31 as GitHub's do");

    let answer = get(&http, &combined_url, "t", None).send().await.expect("sent");
    assert_eq!(answer.status(), 200);
    let etag = answer.headers()["etag"].to_str().expect("etag").to_owned();
    let combined: Value = answer.json().await.expect("json");
    assert_eq!(combined["state"], "failure", "{combined}");
    assert_eq!(combined["sha"], sha.as_str());
    assert_eq!(combined["total_count"], 2, "one entry per context");
    let contexts: Vec<(&str, &str, i64)> = combined["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| {
            (
                s["context"].as_str().expect("c"),
                s["state"].as_str().expect("s"),
                s["id"].as_i64().expect("id"),
            )
        })
        .collect();
    assert_eq!(contexts, [("ci/jenkins", "failure", latest), ("lint", "success", lint)]);
    assert_eq!(combined["statuses"][0]["description"], "2 tests failed");
    assert_eq!(combined["statuses"][0]["node_id"], format!("SC_sim{latest}"));
    assert_eq!(combined["repository"]["full_name"], repo);
    assert!(combined["commit_url"].as_str().expect("commit_url").ends_with(&format!("/commits/{sha}")));
    assert!(combined["url"].as_str().expect("url").ends_with(&format!("/commits/{sha}/status")));

    // Token-scoped ETags: a free 304 under the same token, a full 200 under another.
    assert_eq!(get(&http, &combined_url, "t", Some(&etag)).send().await.expect("sent").status(), 304);
    let token = mint_for(&http, &base, 2001).await;
    let other = get(&http, &combined_url, &token, Some(&etag)).send().await.expect("sent");
    assert_eq!(other.status(), 200);
    assert_ne!(other.headers()["etag"].to_str().expect("etag"), etag);

    // Every status, newest first, paginated like the other listings.
    let answer = get(&http, &format!("{listing_url}?per_page=2"), "t", None).send().await.expect("sent");
    assert_eq!(answer.status(), 200);
    let link = answer.headers()["link"].to_str().expect("link").to_owned();
    assert!(link.contains("page=2") && link.contains("rel=\"next\""), "{link}");
    let listing_etag = answer.headers()["etag"].to_str().expect("etag").to_owned();
    let page_1: Value = answer.json().await.expect("json");
    let page_2: Value = get(&http, &format!("{listing_url}?per_page=2&page=2"), "t", None)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let ids: Vec<i64> = page_1
        .as_array()
        .expect("page")
        .iter()
        .chain(page_2.as_array().expect("page"))
        .map(|s| s["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [latest, lint, first]);
    assert_eq!(page_1[0]["creator"]["login"], "octo-org");
    assert!(page_1[0]["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let again = get(&http, &format!("{listing_url}?per_page=2"), "t", Some(&listing_etag))
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304);
    assert_eq!(
        get(&http, &format!("{listing_url}?per_page=2"), &token, Some(&listing_etag))
            .send()
            .await
            .expect("sent")
            .status(),
        200
    );

    // A change shows at once: the old validator no longer matches.
    sim.set_status(repo, &sha, "ci/jenkins", "success", None).expect("status");
    let changed = get(&http, &combined_url, "t", Some(&etag)).send().await.expect("sent");
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.json::<Value>().await.expect("json")["state"], "success");
    sim.set_status(repo, &sha, "deploy", "pending", None).expect("status");
    let pending: Value =
        get(&http, &combined_url, "t", None).send().await.expect("sent").json().await.expect("json");
    assert_eq!((pending["state"].as_str(), pending["total_count"].as_u64()), (Some("pending"), Some(3)));

    // An unknown commit, no token, a bad state.
    let unknown = get(&http, &format!("{base}/repos/{repo}/commits/{}/status", "0".repeat(40)), "t", None)
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 422);
    assert_eq!(http.get(&combined_url).send().await.expect("sent").status(), 401);
    assert!(sim.set_status(repo, &sha, "ci", "passed", None).is_err());
    let stats = sim.stats();
    assert_eq!(stats.count("GET /repos/{owner}/{repo}/commits/{ref}/status", 304), 1);
    assert_eq!(stats.count("GET /repos/{owner}/{repo}/commits/{ref}/statuses", 304), 1);
}

#[tokio::test]
async fn required_status_checks_answer_githubs_shape_and_404s() {
    let (sim, base, http) = sim_with_token(SimConfig {
        generate: Some(github_sim::Generate { repositories: 1, pull_requests: 1, check_runs: 0 }),
        ..SimConfig::default()
    })
    .await;
    let url = format!("{base}/repos/octo-org/api/branches/main/protection/required_status_checks");
    let not_protected = get(&http, &url, "t", None).send().await.expect("sent");
    assert_eq!(not_protected.status(), 404);
    assert_eq!(not_protected.json::<Value>().await.expect("json")["message"], "Branch not protected");

    sim.set_required_checks("octo-org/api", "main", &["build", "ci/jenkins"]).expect("protect");
    let answer = get(&http, &url, "t", None).send().await.expect("sent");
    assert_eq!(answer.status(), 200);
    let etag = answer.headers()["etag"].to_str().expect("etag").to_owned();
    let rule: Value = answer.json().await.expect("json");
    assert_eq!(rule["strict"], false);
    assert_eq!(rule["contexts"], serde_json::json!(["build", "ci/jenkins"]));
    assert_eq!(
        rule["checks"],
        serde_json::json!([{ "context": "build", "app_id": null }, { "context": "ci/jenkins", "app_id": null }])
    );
    assert!(rule["url"].as_str().expect("url").ends_with("/branches/main/protection/required_status_checks"));
    assert!(rule["contexts_url"].as_str().expect("url").ends_with("/required_status_checks/contexts"));
    assert_eq!(get(&http, &url, "t", Some(&etag)).send().await.expect("sent").status(), 304);

    // A branch name with a slash is one path parameter.
    sim.set_required_checks("octo-org/api", "release/1.x", &["build"]).expect("protect");
    let slashed = format!("{base}/repos/octo-org/api/branches/release/1.x/protection/required_status_checks");
    let answer: Value =
        get(&http, &slashed, "t", None).send().await.expect("sent").json().await.expect("json");
    assert_eq!(answer["contexts"], serde_json::json!(["build"]));

    // Protected but requiring nothing.
    sim.set_required_checks("octo-org/api", "main", &[]).expect("unrequire");
    let none = get(&http, &url, "t", None).send().await.expect("sent");
    assert_eq!(none.status(), 404);
    assert_eq!(none.json::<Value>().await.expect("json")["message"], "Required status checks not enabled");

    // The same auth as every repository endpoint.
    assert_eq!(http.get(&url).send().await.expect("sent").status(), 401);
    let outsider = mint_for(&http, &base, github_sim::generate::GENERATED_INSTALLATION).await;
    assert_eq!(get(&http, &url, &outsider, None).send().await.expect("sent").status(), 404);
    let own = mint_for(&http, &base, 2001).await;
    assert_eq!(get(&http, &slashed, &own, None).send().await.expect("sent").status(), 200);
}

#[tokio::test]
async fn a_rerun_is_listed_alone_under_filter_latest_and_beside_the_old_run_under_all() {
    let (sim, base, http) = sim_with_token(SimConfig::default()).await;
    let repo = "octo-org/api";
    let sha = head_of(&sim, repo, 1);
    let ids = |body: &Value| -> Vec<(i64, String)> {
        body["check_runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| (r["id"].as_i64().expect("id"), r["status"].as_str().expect("status").to_owned()))
            .collect()
    };
    let runs = |filter: &'static str| {
        let url = format!("{base}/repos/{repo}/commits/{sha}/check-runs{filter}");
        let request = get(&http, &url, "t", None);
        async move { request.send().await.expect("sent").json::<Value>().await.expect("json") }
    };
    let before = runs("").await;
    assert_eq!(before["total_count"], 2, "build and test");
    let test_run = before["check_runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["name"] == "test")
        .and_then(|r| r["id"].as_i64())
        .expect("the failed test run");
    let build_run = before["check_runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["name"] == "build")
        .and_then(|r| r["id"].as_i64())
        .expect("build");

    let rerun = sim.rerun_check_run(test_run).expect("re-run");
    assert!(rerun > test_run);
    for (filter, expected) in [("", 2), ("?filter=latest", 2), ("?filter=all", 3)] {
        let body = runs(filter).await;
        assert_eq!(body["total_count"], expected, "{filter}: {body}");
    }
    let latest = ids(&runs("").await);
    assert_eq!(latest, [(rerun, "queued".to_owned()), (build_run, "completed".to_owned())]);
    let all: Vec<i64> = ids(&runs("?filter=all").await).into_iter().map(|(id, _)| id).collect();
    assert_eq!(all, [rerun, test_run, build_run], "newest first");
    let new_run = &runs("").await["check_runs"][0];
    assert_eq!((new_run["name"].as_str(), new_run["head_sha"].as_str()), (Some("test"), Some(sha.as_str())));
    // The suite is open again until the re-run completes; a pass clears the failure it re-ran.
    assert_eq!(new_run["check_suite"]["status"], "queued");
    sim.complete_check_run(rerun, "success").expect("complete");
    assert_eq!(runs("").await["check_runs"][0]["check_suite"]["conclusion"], "success");
    assert!(sim.rerun_check_run(rerun).is_ok(), "a completed re-run can be re-run again");
    let queued = sim.create_check_run(repo, &sha, "lint").expect("run");
    assert!(sim.rerun_check_run(queued).is_err(), "only a completed run is re-run");
}

#[tokio::test]
async fn the_clock_offset_backdates_what_the_world_stamps_without_sleeping() {
    let (sim, base, http) = sim_with_token(SimConfig::default()).await;
    let repo = "octo-org/api";
    let sha = head_of(&sim, repo, 1);
    sim.set_clock_offset(chrono::Duration::hours(-2));
    let stuck = sim.create_check_run(repo, &sha, "e2e").expect("run");
    sim.start_check_run(stuck).expect("start");
    sim.set_status(repo, &sha, "ci/legacy", "pending", None).expect("status");
    assert!((sim.now() - chrono::Utc::now()).num_minutes() <= -119);
    sim.set_clock_offset(chrono::Duration::zero());
    let fresh = sim.create_check_run(repo, &sha, "lint").expect("run");

    let body: Value = get(&http, &format!("{base}/repos/{repo}/commits/{sha}/check-runs"), "t", None)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let started = |id: i64| -> i64 {
        let run =
            body["check_runs"].as_array().expect("runs").iter().find(|r| r["id"] == id).expect("the run");
        seconds_ago(&run["started_at"])
    };
    assert!((7_170..=7_230).contains(&started(stuck)), "started two hours ago: {}s", started(stuck));
    assert!(started(fresh) < 60, "the clock is back: {}s", started(fresh));
    let statuses: Value = get(&http, &format!("{base}/repos/{repo}/commits/{sha}/statuses"), "t", None)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!((7_170..=7_230).contains(&seconds_ago(&statuses[0]["created_at"])), "{statuses}");
}

/// A delivery as the service stored it, by event and action.
async fn stored_payloads(app: &TestApp) -> Vec<(String, String, Value)> {
    let mut conn = connect(&app.db.url).await;
    let stored: Vec<Stored> = diesel::sql_query(
        "SELECT event, coalesce(action, '') AS action, payload FROM webhook_deliveries ORDER BY received_at",
    )
    .load(&mut conn)
    .await
    .expect("deliveries");
    stored
        .into_iter()
        .map(|d| (d.event, d.action, serde_json::from_slice(&d.payload).expect("JSON")))
        .collect()
}

fn keys(value: &Value) -> Vec<&str> {
    value.as_object().expect("an object").keys().map(String::as_str).collect()
}

#[tokio::test]
async fn status_and_merge_group_webhooks_are_signed_and_shaped_as_githubs() {
    use hmac::{KeyInit, Mac};
    let app = spawn_app().await;
    let sim = sim_with_repo().await;
    sim.set_webhook(Some(target(&app, TEST_SECRET)));
    let repo = "octo-org/api";
    let sha = head_of(&sim, repo, 1);
    let mut status = github_sim::NewStatus::new("ci/jenkins", "failure");
    status.description = Some("Build failed".into());
    status.target_url = Some("https://ci.example.com/1000/output".into());
    let status_id = sim.post_status(repo, &sha, status).expect("status");
    sim.set_required_checks(repo, "main", &["build"]).expect("protect");
    let group_1 = sim.enqueue(repo, 1).expect("queued");
    let gate = sim.create_check_run(repo, &group_1, "build").expect("a check on the merge group");
    sim.dequeue(repo, 1, "dequeued").expect("dequeued");
    let group_2 = sim.enqueue(repo, 1).expect("queued again");
    assert_ne!(group_1, group_2);
    sim.complete_check_run(gate, "success").expect("the old group's check ends");
    assert!(sim.merge_group_passed(repo, 1).is_err(), "the new group has not passed yet");
    let gate = sim.create_check_run(repo, &group_2, "build").expect("check");
    sim.complete_check_run(gate, "success").expect("complete");
    sim.merge_group_passed(repo, 1).expect("merged");
    sim.wait_for_deliveries().await;

    let records = sim.deliveries();
    assert!(records.iter().all(|r| r.statuses == [202]), "the service verified every signature: {records:?}");
    // GitHub's headers, and a signature checked here independently of both sides.
    let attempts = sim.hook_deliveries();
    let status_attempt = attempts.iter().find(|a| a.event == "status").expect("a status delivery");
    let headers = &status_attempt.request_headers;
    assert_eq!(headers["x-github-event"], "status");
    assert_eq!(headers["x-github-delivery"], status_attempt.guid);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["user-agent"].starts_with("GitHub-Hookshot/"));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TEST_SECRET.as_bytes()).expect("key");
    mac.update(&status_attempt.body);
    assert_eq!(
        headers["x-hub-signature-256"],
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );

    let stored = stored_payloads(&app).await;
    let seen: Vec<String> =
        stored.iter().map(|(e, a, _)| if a.is_empty() { e.clone() } else { format!("{e}/{a}") }).collect();
    assert_eq!(
        seen,
        [
            "status",
            "branch_protection_rule/created",
            "pull_request/enqueued",
            "merge_group/checks_requested",
            "check_run/created",
            "pull_request/dequeued",
            "merge_group/destroyed",
            "pull_request/enqueued",
            "merge_group/checks_requested",
            "check_run/completed",
            "check_suite/completed",
            "check_run/created",
            "check_run/completed",
            "check_suite/completed",
            "pull_request/closed",
            "merge_group/destroyed",
        ]
    );

    // `status`: GitHub's required fields, no action.
    let (_, _, payload) = &stored[0];
    let mut fields = keys(payload);
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "avatar_url",
            "branches",
            "commit",
            "context",
            "created_at",
            "description",
            "id",
            "installation",
            "name",
            "repository",
            "sender",
            "sha",
            "state",
            "target_url",
            "updated_at",
        ]
    );
    assert_eq!(payload["id"], status_id);
    assert_eq!((payload["sha"].as_str(), payload["name"].as_str()), (Some(sha.as_str()), Some(repo)));
    assert_eq!(
        (payload["context"].as_str(), payload["state"].as_str()),
        (Some("ci/jenkins"), Some("failure"))
    );
    assert_eq!(payload["description"], "Build failed");
    assert_eq!(payload["target_url"], "https://ci.example.com/1000/output");
    assert_eq!(payload["commit"]["sha"], sha.as_str());
    for key in ["node_id", "commit", "url", "html_url", "comments_url", "author", "committer", "parents"] {
        assert!(payload["commit"].get(key).is_some(), "commit.{key}");
    }
    assert_eq!(payload["branches"][0]["name"], "rate-limits", "the PR's head branch holds the commit");
    assert_eq!(payload["installation"]["id"], 2001);
    assert_eq!(payload["sender"]["login"], "octo-org");
    assert!(chrono::DateTime::parse_from_rfc3339(payload["created_at"].as_str().expect("time")).is_ok());

    let (_, _, rule) = &stored[1];
    assert_eq!(rule["rule"]["name"], "main");
    assert_eq!(rule["rule"]["required_status_checks"], serde_json::json!(["build"]));
    assert_eq!(rule["rule"]["required_status_checks_enforcement_level"], "non_admins");

    // pull_request enqueued/dequeued/closed validate against GitHub's schemas.
    let mut schemas = Schemas::new();
    for (event, action, payload) in stored.iter().filter(|(e, _, _)| e == "pull_request" || e == "check_run")
    {
        let errors = schemas.validate(event, action, payload);
        assert!(errors.is_empty(), "{event}/{action}: {errors:#?}");
    }
    let dequeued = &stored[5].2;
    assert_eq!(dequeued["reason"], "MANUAL");

    // merge_group: GitHub's fields, the readonly branch, the group's reason.
    let (_, _, requested) = &stored[3];
    let mut fields = keys(requested);
    fields.sort_unstable();
    assert_eq!(fields, ["action", "installation", "merge_group", "repository", "sender"]);
    let group = &requested["merge_group"];
    // Built on the base branch's head: the merge commit of #2, merged in the fixture.
    let base_sha = sim
        .world(|w| w.repo(w.repo_id(repo)?).map(|r| r.pulls[&2].merge_commit_sha.clone()))
        .expect("a PR")
        .expect("#2 is merged");
    assert_eq!(group["head_sha"], group_1.as_str());
    assert_eq!(group["head_ref"], format!("refs/heads/gh-readonly-queue/main/pr-1-{base_sha}"));
    assert_eq!(
        (group["base_ref"].as_str(), group["base_sha"].as_str()),
        (Some("refs/heads/main"), Some(base_sha.as_str()))
    );
    let mut commit_fields = keys(&group["head_commit"]);
    commit_fields.sort_unstable();
    assert_eq!(commit_fields, ["author", "committer", "id", "message", "timestamp", "tree_id"]);
    assert_eq!(group["head_commit"]["id"], group_1.as_str());
    assert_eq!(requested["sender"]["login"], "alice");
    // A check run on the group's commit belongs to the group's branch, not to the PR.
    let (_, _, on_group) = &stored[4];
    assert_eq!(on_group["check_run"]["head_sha"], group_1.as_str());
    assert_eq!(on_group["check_run"]["pull_requests"], serde_json::json!([]));
    assert_eq!(
        on_group["check_run"]["check_suite"]["head_branch"],
        format!("gh-readonly-queue/main/pr-1-{base_sha}")
    );
    let destroyed = [(&stored[6].2, "dequeued", &group_1), (&stored[15].2, "merged", &group_2)];
    for (payload, reason, head) in destroyed {
        assert_eq!(
            (payload["action"].as_str(), payload["reason"].as_str()),
            (Some("destroyed"), Some(reason))
        );
        assert_eq!(payload["merge_group"]["head_sha"], head.as_str());
    }
    let closed = &stored[14].2;
    assert_eq!(
        (closed["pull_request"]["merged"].as_bool(), closed["pull_request"]["merge_commit_sha"].as_str()),
        (Some(true), Some(group_2.as_str()))
    );
    // The deliveries API lists the action-less event with a null action, as GitHub does.
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/app/hook/deliveries?per_page=100", sim.api_url()))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let status_item =
        listed.as_array().expect("deliveries").iter().find(|d| d["event"] == "status").expect("listed");
    assert_eq!(status_item["action"], Value::Null);
    assert!(status_item.as_object().is_some_and(|d| d.contains_key("action")));
    let merge_item =
        listed.as_array().expect("deliveries").iter().find(|d| d["event"] == "merge_group").expect("listed");
    assert_eq!(merge_item["action"], "destroyed", "newest first");
}

#[tokio::test]
async fn pushing_to_or_closing_a_queued_pr_takes_it_out_of_the_queue_first() {
    let app = spawn_app().await;
    let sim = sim_with_repo().await;
    sim.set_webhook(Some(target(&app, TEST_SECRET)));
    let repo = "octo-org/api";
    let queued =
        |sim: &Simulator| sim.world(|w| w.repo(700_001).map(|r| r.queued_group(1).is_some())).expect("repo");
    let first = sim.enqueue(repo, 1).expect("queued");
    assert!(queued(&sim));
    let new_head = sim.push(repo, 1).expect("pushed");
    assert!(!queued(&sim), "a push takes the PR out of the queue");
    assert_eq!(head_of(&sim, repo, 1), new_head);
    let second = sim.enqueue(repo, 1).expect("queued again (nothing is required)");
    sim.close(repo, 1).expect("closed");
    assert!(!queued(&sim), "so does closing it");
    assert!(sim.enqueue(repo, 1).is_err(), "a closed PR is not queued");
    sim.wait_for_deliveries().await;
    let seen: Vec<String> = stored_payloads(&app)
        .await
        .iter()
        .map(|(e, a, p)| {
            let head = p["merge_group"]["head_sha"].as_str().map(|h| format!(" {h}")).unwrap_or_default();
            format!("{e}/{a}{head}")
        })
        .collect();
    assert_eq!(
        seen,
        [
            "pull_request/enqueued".to_owned(),
            format!("merge_group/checks_requested {first}"),
            "pull_request/dequeued".to_owned(),
            format!("merge_group/destroyed {first}"),
            "pull_request/synchronize".to_owned(),
            "pull_request/enqueued".to_owned(),
            format!("merge_group/checks_requested {second}"),
            "pull_request/dequeued".to_owned(),
            format!("merge_group/destroyed {second}"),
            "pull_request/closed".to_owned(),
        ]
    );
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
