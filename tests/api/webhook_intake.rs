//! `POST /webhooks/github` through real HTTP against a real PostgreSQL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::Value;

use prmonitor::webhook::envelope::Disposition;
use prmonitor::webhook::store::{DeliveryRecord, DeliveryStore, StoreError, Stored};

use prmonitor_testkit::{
    connect, fixture, payload_fixtures, sign, spawn_app, spawn_app_on, spawn_app_with, test_settings,
    Delivery, TestDatabase, TEST_SECRET,
};

const TRACKED: [&str; 6] =
    ["pull_request", "check_run", "check_suite", "installation", "installation_repositories", "repository"];

fn pr_body(number: i64, action: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "number": number,
        "pull_request": { "number": number, "title": "x" },
        "repository": { "id": 1296269, "full_name": "octocat/Hello-World" },
        "installation": { "id": 77 },
    }))
    .expect("json")
}

#[derive(QueryableByName, Debug)]
struct DeliveryRow {
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Nullable<Text>)]
    action: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    installation_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    repository_github_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    repository_full_name: Option<String>,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Nullable<Text>)]
    coalesce_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    payload_size: i64,
}

async fn delivery_row(url: &str, delivery_id: &str) -> DeliveryRow {
    let mut conn = connect(url).await;
    diesel::sql_query(
        "SELECT d.event, d.action, d.installation_id, d.repository_github_id, d.repository_full_name, d.outcome, \
                j.coalesce_key, length(d.payload)::BIGINT AS payload_size \
         FROM webhook_deliveries d LEFT JOIN jobs j ON j.id = d.job_id WHERE d.delivery_id = $1",
    )
    .bind::<Text, _>(delivery_id)
    .get_result(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("delivery {delivery_id}: {e}"))
}

/// The job a payload must map to, worked out independently of the code under test.
fn expected_key(event: &str, payload: &Value) -> Option<String> {
    let repo = || payload["repository"]["id"].as_i64().expect("repository.id");
    match event {
        "pull_request" => Some(format!("pr:{}:{}", repo(), payload["pull_request"]["number"])),
        "check_run" | "check_suite" => {
            Some(format!("checks:{}:{}", repo(), payload[event]["head_sha"].as_str().expect("head_sha")))
        }
        "installation" | "installation_repositories" => {
            Some(format!("installation:{}", payload["installation"]["id"]))
        }
        "repository" => Some(format!("repository:{}", repo())),
        "status" => Some(format!("statuses:{}:{}", repo(), payload["sha"].as_str().expect("sha"))),
        "branch_protection_rule" | "repository_ruleset" => Some(format!("required:{}", repo())),
        _ => None,
    }
}

#[tokio::test]
async fn every_github_example_payload_gets_its_status_and_exactly_its_rows() {
    let app = spawn_app().await;
    let fixtures = payload_fixtures();
    assert!(fixtures.len() >= 59, "the fixtures are missing: {}", fixtures.len());
    let mut keys = BTreeSet::new();
    for (event, path) in &fixtures {
        let body = std::fs::read(path).expect("fixture");
        let payload: Value = serde_json::from_slice(&body).expect("fixture is JSON");
        let delivery = Delivery::new(event, body.clone());
        let response = app.send(&delivery).await;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("JSON answer");
        let name = path.display();

        let (expected_status, expected_outcome) = if event == "ping" {
            (200, "ping")
        } else if TRACKED.contains(&event.as_str()) {
            (202, "queued")
        } else {
            (202, "ignored")
        };
        assert_eq!(status, expected_status, "{name}: {answer}");
        assert_eq!(answer["status"], expected_outcome, "{name}");

        let row = delivery_row(&app.db.url, &delivery.delivery_id).await;
        assert_eq!(row.event, *event, "{name}");
        assert_eq!(row.action.as_deref(), payload["action"].as_str(), "{name}");
        assert_eq!(row.installation_id, payload["installation"]["id"].as_i64(), "{name}");
        assert_eq!(row.repository_github_id, payload["repository"]["id"].as_i64(), "{name}");
        assert_eq!(
            row.repository_full_name.as_deref(),
            payload["repository"]["full_name"].as_str(),
            "{name}"
        );
        assert_eq!(row.outcome, expected_outcome, "{name}");
        assert_eq!(row.payload_size, body.len() as i64, "{name}: the raw body is kept");
        let key = expected_key(event, &payload);
        assert_eq!(row.coalesce_key, key, "{name}");
        keys.extend(key);
    }
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, fixtures.len() as i64);
    // One pending job per distinct subject: deliveries for the same PR, commit
    // or installation were attached to one job.
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, keys.len() as i64);
    assert_eq!(app.count("SELECT count(*) FROM jobs WHERE state = 'pending'").await, keys.len() as i64);
    let tracked = fixtures.iter().filter(|(event, _)| TRACKED.contains(&event.as_str())).count() as i64;
    assert_eq!(app.count("SELECT sum(coalesced_count) FROM jobs").await, tracked);
}

#[tokio::test]
async fn a_repository_event_is_queued_for_its_repository() {
    let app = spawn_app().await;
    let body =
        br#"{"action":"renamed","repository":{"id":99,"full_name":"o/new-name"},"installation":{"id":5}}"#;
    let delivery = Delivery::new("repository", body.to_vec());
    assert_eq!(app.send(&delivery).await.status(), 202);
    let row = delivery_row(&app.db.url, &delivery.delivery_id).await;
    assert_eq!(row.coalesce_key.as_deref(), Some("repository:99"));
    assert_eq!(row.outcome, "queued");
}

#[tokio::test]
async fn a_flipped_byte_of_body_or_signature_is_401_and_leaves_no_row() {
    let app = spawn_app().await;
    let body = fixture("pull_request/opened.json");

    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'C').expect("a 'C' in the payload");
    tampered[at] = b'D';
    let delivery = Delivery::new("pull_request", tampered);
    let response =
        app.webhook(&delivery).header("x-hub-signature-256", sign(&body)).send().await.expect("sent");
    assert_eq!(response.status(), 401);

    let mut signature = sign(&body).into_bytes();
    let last = signature.len() - 1;
    signature[last] = if signature[last] == b'0' { b'1' } else { b'0' };
    let delivery = Delivery::new("pull_request", body.clone());
    let response = app
        .webhook(&delivery)
        .header("x-hub-signature-256", String::from_utf8(signature).expect("ascii"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);

    let response = app.webhook(&delivery).send().await.expect("sent");
    assert_eq!(response.status(), 401, "no signature header");
    let answer: Value = response.json().await.expect("JSON error");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("signed")), "{answer}");

    let legacy_only =
        app.webhook(&delivery).header("x-hub-signature", "sha1=0000").send().await.expect("sent");
    assert_eq!(legacy_only.status(), 401, "the SHA-1 header alone is not accepted");

    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn with_two_secrets_a_delivery_signed_by_either_is_accepted() {
    let app = spawn_app_with(&[("PRMONITOR_WEBHOOK_SECRETS", &format!("old secret,{TEST_SECRET}"))]).await;
    let body = pr_body(1, "edited");
    let by_new = Delivery::new("pull_request", body.clone());
    assert_eq!(app.send(&by_new).await.status(), 202);

    let by_old = Delivery::new("pull_request", body.clone());
    let old_signature =
        prmonitor::webhook::signature::sign(&prmonitor::config::Secret::new("old secret"), &body);
    let response =
        app.webhook(&by_old).header("x-hub-signature-256", old_signature).send().await.expect("sent");
    assert_eq!(response.status(), 202);

    let by_stranger = Delivery::new("pull_request", body.clone());
    let stranger = prmonitor::webhook::signature::sign(&prmonitor::config::Secret::new("not ours"), &body);
    let response =
        app.webhook(&by_stranger).header("x-hub-signature-256", stranger).send().await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 2);
}

#[tokio::test]
async fn a_duplicate_delivery_id_is_200_and_stores_nothing_more() {
    let app = spawn_app().await;
    let delivery = Delivery::new("pull_request", pr_body(3, "opened"));
    assert_eq!(app.send(&delivery).await.status(), 202);
    for _ in 0..3 {
        let response = app.send(&delivery).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["status"], "duplicate");
    }
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);
    assert_eq!(app.count("SELECT coalesced_count FROM jobs").await, 1);
}

#[tokio::test]
async fn concurrent_redeliveries_of_one_id_store_it_once() {
    let app = spawn_app().await;
    let delivery = Delivery::new("pull_request", pr_body(4, "opened"));
    let responses = futures_util::future::join_all((0..8).map(|_| app.send(&delivery))).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 202]);
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 1);
    assert_eq!(app.count("SELECT coalesced_count FROM jobs").await, 1);
}

#[tokio::test]
async fn twenty_deliveries_for_one_pr_make_one_pending_job() {
    let app = spawn_app().await;
    let actions = ["labeled", "synchronize", "edited", "unlabeled"];
    let deliveries: Vec<Delivery<'_>> =
        (0..20).map(|i| Delivery::new("pull_request", pr_body(8, actions[i % actions.len()]))).collect();
    let responses = futures_util::future::join_all(deliveries.iter().map(|d| app.send(d))).await;
    assert!(responses.iter().all(|r| r.status() == 202));
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 20);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);
    assert_eq!(app.count("SELECT coalesced_count FROM jobs WHERE state = 'pending'").await, 20);
    assert_eq!(app.count("SELECT count(DISTINCT job_id) FROM webhook_deliveries").await, 1);
    // One 'synchronize' among them asks for the head's checks; merging kept it.
    assert_eq!(app.count("SELECT count(*) FROM jobs WHERE payload->>'with_checks' = 'true'").await, 1);
    // Another PR gets its own job.
    assert_eq!(app.send(&Delivery::new("pull_request", pr_body(9, "opened"))).await.status(), 202);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 2);
}

#[tokio::test]
async fn a_delivery_for_a_pr_whose_job_is_running_gets_a_new_job() {
    let app = spawn_app().await;
    assert_eq!(app.send(&Delivery::new("pull_request", pr_body(5, "opened"))).await.status(), 202);
    // A worker has claimed the job and may already have read GitHub: a later
    // change must not be folded into it.
    let mut conn = connect(&app.db.url).await;
    diesel::sql_query("UPDATE jobs SET state = 'running'").execute(&mut conn).await.expect("claim");
    assert_eq!(app.send(&Delivery::new("pull_request", pr_body(5, "closed"))).await.status(), 202);
    assert_eq!(app.count("SELECT count(*) FROM jobs WHERE state = 'pending'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 2);
}

#[tokio::test]
async fn after_a_202_the_delivery_and_its_job_are_committed() {
    let app = spawn_app().await;
    for n in 1..=5 {
        let delivery = Delivery::new("pull_request", pr_body(n, "opened"));
        assert_eq!(app.send(&delivery).await.status(), 202);
        // A new connection, right after the answer: only committed rows are visible to it.
        let sql = format!(
            "SELECT count(*) FROM webhook_deliveries d JOIN jobs j ON j.id = d.job_id \
             WHERE d.delivery_id = '{}' AND j.state = 'pending'",
            delivery.delivery_id
        );
        assert_eq!(app.count(&sql).await, 1);
    }
}

#[tokio::test]
async fn a_body_over_25_mib_is_413_and_stores_nothing() {
    let app = spawn_app().await;
    // Valid JSON, correctly signed: only the size is wrong.
    let mut body = br#"{"action":"opened","padding":""#.to_vec();
    body.resize(26 * 1024 * 1024, b'a');
    body.extend_from_slice(br#""}"#);
    let delivery = Delivery::new("pull_request", body);
    let response = app.send(&delivery).await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);

    // Chunked, with no Content-Length to refuse up front: the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..27).map(|_| Ok(vec![b' '; 1024 * 1024])).collect();
    let stream = futures_util::stream::iter(chunks);
    let response = app
        .webhook(&delivery)
        .header("x-hub-signature-256", sign(b"irrelevant"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    // The server may close the connection before the client has sent it all;
    // either way nothing is stored.
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 0);
}

#[tokio::test]
async fn malformed_bodies_and_headers_are_400_and_store_nothing() {
    let app = spawn_app().await;
    let bodies: [&[u8]; 7] = [
        b"",
        b"{not json",
        b"[1,2,3]",
        b"\"a string\"",
        b"{\"action\": \"opened\"} {}",
        b"{\"pull_request\":{\"number\":1}}", // a pull_request without its repository
        b"{\"installation\":{\"id\":\"seven\"}}", // wrong type in a routed field
    ];
    for body in bodies {
        let response = app.send(&Delivery::new("pull_request", body.to_vec())).await;
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        let answer: Value = response.json().await.expect("JSON error");
        assert!(answer["error"].is_string());
    }

    let body = pr_body(1, "opened");
    let signature = sign(&body);
    let base = || {
        app.client
            .post(app.url("/webhooks/github"))
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
    };
    let no_event = base().header("x-github-delivery", "d1").send().await.expect("sent");
    assert_eq!(no_event.status(), 400);
    let no_delivery = base().header("x-github-event", "pull_request").send().await.expect("sent");
    assert_eq!(no_delivery.status(), 400);
    let hostile_id = base()
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "'; DROP TABLE jobs; --")
        .send()
        .await
        .expect("sent");
    assert_eq!(hostile_id.status(), 400);
    let hostile_event = base()
        .header("x-github-event", "../../etc/passwd")
        .header("x-github-delivery", "d2")
        .send()
        .await
        .expect("sent");
    assert_eq!(hostile_event.status(), 400);

    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn a_payload_with_nul_escapes_and_unicode_is_stored_byte_for_byte() {
    let app = spawn_app().await;
    // jsonb would refuse \u0000; the raw bytes are kept instead.
    let body = r#"{"action":"edited","number":6,"pull_request":{"number":6,"body":"a\u0000b ✓ 🚀"},"repository":{"id":1,"full_name":"o/r"}}"#;
    let delivery = Delivery::new("pull_request", body.as_bytes().to_vec());
    assert_eq!(app.send(&delivery).await.status(), 202);
    let sql = format!(
        "SELECT count(*) FROM webhook_deliveries WHERE delivery_id = '{}' AND payload = convert_to($${body}$$, 'UTF8')",
        delivery.delivery_id
    );
    assert_eq!(app.count(&sql).await, 1);
}

#[tokio::test]
async fn other_methods_and_routes_get_json_errors() {
    let app = spawn_app().await;
    // The path exists: another method is 405 naming the one it takes.
    let get = app.get("/webhooks/github").await;
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let answer: Value = get.json().await.expect("JSON error");
    assert!(answer["error"].is_string());
    let unknown = app.client.post(app.url("/webhooks/gitlab")).send().await.expect("sent");
    assert_eq!(unknown.status(), 404);
    let answer: Value = unknown.json().await.expect("JSON error");
    assert!(answer["error"].is_string());
}

#[tokio::test]
async fn with_the_database_down_intake_answers_503_within_two_seconds() {
    // A port nothing listens on: every connection attempt is refused.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let db = TestDatabase::unique();
    let mut settings = test_settings(&db, &[]);
    settings.database_url = prmonitor::config::DatabaseUrl::parse(&format!(
        "postgres://postgres@127.0.0.1:{closed_port}/nowhere"
    ))
    .expect("url");
    let app = spawn_app_on(db, settings).await;

    let started = Instant::now();
    let response = app.send(&Delivery::new("pull_request", pr_body(1, "opened"))).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // Not a timing benchmark: the bound is the documented contract (GitHub waits 10 s).
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let answer: Value = ready.json().await.expect("JSON reason");
    assert!(answer["reason"].as_str().is_some_and(|r| r.starts_with("database")), "{answer}");
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200, "the process itself is alive");
}

/// A trigger that makes PostgreSQL refuse one delivery id: a stand-in for
/// any error the database answers for one row of a batch.
async fn refuse_delivery(url: &str, delivery_id: &str) {
    let mut conn = connect(url).await;
    diesel::sql_query(format!(
        "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.delivery_id = '{delivery_id}' THEN RAISE EXCEPTION 'refused for the test'; END IF; \
           RETURN NEW; END $$"
    ))
    .execute(&mut conn)
    .await
    .expect("function");
    diesel::sql_query(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON webhook_deliveries FOR EACH ROW EXECUTE FUNCTION refuse_one()",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");
}

fn record(delivery: &Delivery<'_>) -> DeliveryRecord {
    let envelope =
        prmonitor::webhook::envelope::parse_payload(delivery.event, &delivery.body).expect("payload");
    assert!(matches!(envelope.disposition, Disposition::Enqueue(_)), "a tracked event");
    DeliveryRecord::from_envelope(
        delivery.delivery_id.clone(),
        delivery.event.to_owned(),
        &envelope,
        delivery.body.clone().into(),
        prmonitor::queue::DEFAULT_MAX_ATTEMPTS,
    )
}

#[tokio::test]
async fn concurrent_deliveries_for_the_same_prs_coalesce_per_pr() {
    let app = spawn_app().await;
    let deliveries: Vec<Delivery<'_>> =
        (0..60).map(|i| Delivery::new("pull_request", pr_body(200 + i % 30, "labeled"))).collect();
    let responses = futures_util::future::join_all(deliveries.iter().map(|d| app.send(d))).await;
    assert!(responses.iter().all(|r| r.status() == 202));
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 60);
    // Coalescing is unchanged by batching: two deliveries per PR, one job each.
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 30);
    assert_eq!(app.count("SELECT count(*) FROM jobs WHERE coalesced_count = 2").await, 30);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM webhook_deliveries d JOIN jobs j ON j.id = d.job_id \
             WHERE j.coalesce_key = 'pr:1296269:' || (convert_from(d.payload, 'UTF8')::jsonb->>'number')"
        )
        .await,
        60,
        "every delivery points at its own PR's job"
    );
}

#[tokio::test]
async fn a_delivery_the_database_refuses_fails_alone_within_its_batch() {
    let db = TestDatabase::migrated().await;
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    let store = DeliveryStore::start(pool, prmonitor::supervise::Fatal::new());
    let deliveries: Vec<Delivery<'_>> =
        (0..41).map(|i| Delivery::new("pull_request", pr_body(300 + i, "opened"))).collect();
    let poison = &deliveries[20];
    refuse_delivery(&db.url, &poison.delivery_id).await;
    // All 41 are handed over before any writer runs (this runtime has one
    // thread), so they form one batch and the refusal hits the batch.
    let results = futures_util::future::join_all(deliveries.iter().map(|d| store.store(record(d)))).await;
    for (delivery, result) in deliveries.iter().zip(&results) {
        if delivery.delivery_id == poison.delivery_id {
            assert!(matches!(result, Err(StoreError::Refused(_))), "{result:?}");
        } else {
            assert!(matches!(result, Ok(Stored::New { job: Some(_), .. })), "{result:?}");
        }
    }
    let url = &db.url;
    assert_eq!(prmonitor_testkit::count(url, "SELECT count(*) FROM webhook_deliveries").await, 40);
    // The refused delivery's job went with it.
    assert_eq!(prmonitor_testkit::count(url, "SELECT count(*) FROM jobs").await, 40);
    assert_eq!(
        prmonitor_testkit::count(url, "SELECT count(*) FROM jobs WHERE coalesce_key = 'pr:1296269:320'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_batch_with_redeliveries_stores_only_the_new_ones_and_leaves_old_jobs_alone() {
    let db = TestDatabase::migrated().await;
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    let store = DeliveryStore::start(pool, prmonitor::supervise::Fatal::new());
    let old: Vec<Delivery<'_>> =
        (0..10).map(|i| Delivery::new("pull_request", pr_body(400 + i, "opened"))).collect();
    for result in futures_util::future::join_all(old.iter().map(|d| store.store(record(d)))).await {
        assert!(matches!(result, Ok(Stored::New { .. })), "{result:?}");
    }
    let new: Vec<Delivery<'_>> =
        (0..10).map(|i| Delivery::new("pull_request", pr_body(400 + i, "closed"))).collect();
    // Old and new interleaved in one batch, and one new id twice.
    let mut batch: Vec<&Delivery<'_>> = old.iter().zip(&new).flat_map(|(o, n)| [o, n]).collect();
    batch.push(&new[3]);
    let results = futures_util::future::join_all(batch.iter().map(|d| store.store(record(d)))).await;
    let mut outcomes = (0, 0);
    for (delivery, result) in batch.iter().zip(&results) {
        match result {
            Ok(Stored::Duplicate) => outcomes.0 += 1,
            Ok(Stored::New { job: Some(_), .. }) => {
                assert!(new.iter().any(|n| n.delivery_id == delivery.delivery_id), "an old id stored again");
                outcomes.1 += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(outcomes, (11, 10), "10 redeliveries and 1 repeat are duplicates; 10 are new");
    let url = &db.url;
    assert_eq!(prmonitor_testkit::count(url, "SELECT count(*) FROM webhook_deliveries").await, 20);
    // The 10 new ones were committed together: rows of one transaction share its xmin.
    assert_eq!(
        prmonitor_testkit::count(
            url,
            "SELECT count(DISTINCT xmin::text) FROM webhook_deliveries \
             WHERE convert_from(payload, 'UTF8')::jsonb->>'action' = 'closed'"
        )
        .await,
        1
    );
    // Each PR's pending job counts its two distinct deliveries, not the redelivery.
    assert_eq!(prmonitor_testkit::count(url, "SELECT count(*) FROM jobs").await, 10);
    assert_eq!(
        prmonitor_testkit::count(url, "SELECT count(*) FROM jobs WHERE coalesced_count = 2").await,
        10
    );
}

/// Sends request headers (and `first_bytes` of the body) over a raw socket,
/// then stops: the client still owes the rest of the body.
async fn start_post(address: &str, headers: &[(&str, String)], first_bytes: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request =
        format!("POST /webhooks/github HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("headers");
    stream.write_all(&vec![b' '; first_bytes]).await.expect("first bytes");
    stream
}

/// The status line of the answer, if one comes within `wait`.
async fn status_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(wait, stream.read(&mut buffer)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
    Some(text)
}

#[tokio::test]
async fn an_unsigned_post_is_refused_before_its_body_is_read() {
    let app = spawn_app().await;
    let size = (25 * 1024 * 1024).to_string();
    for signature in [None, Some("sha1=deadbeef"), Some("sha256=not-hex")] {
        let mut headers = vec![
            ("content-length", size.clone()),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", prmonitor_testkit::new_delivery_id()),
        ];
        if let Some(signature) = signature {
            headers.push(("x-hub-signature-256", signature.to_owned()));
        }
        // 1 KiB of the promised 25 MiB is sent: the answer must not wait for the rest.
        let mut stream = start_post(&app.address, &headers, 1024).await;
        let answer = status_within(&mut stream, Duration::from_secs(5)).await;
        let answer = answer.unwrap_or_else(|| panic!("{signature:?}: no answer before the body was sent"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{signature:?}: {answer}");
    }
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries").await, 0);
}

#[tokio::test]
async fn bodies_in_flight_share_a_bounded_buffer_and_the_rest_get_503() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_app_with(&[("PRMONITOR_WEBHOOK_BUFFER_MIB", "25")]).await;
    // Well-formed signatures (wrong ones: a stranger can make those).
    let headers = |size: usize| {
        vec![
            ("content-length", size.to_string()),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", prmonitor_testkit::new_delivery_id()),
            ("x-hub-signature-256", format!("sha256={}", "ab".repeat(32))),
        ]
    };
    const MIB: usize = 1024 * 1024;
    // The first has sent 20 of its 25 MiB and stalls: 20 MiB of the 25 are buffered.
    let mut first = start_post(&app.address, &headers(25 * MIB), 20 * MIB).await;
    assert_eq!(status_within(&mut first, Duration::from_millis(500)).await, None, "still reading the first");
    // The second needs more than what is left: refused as soon as it goes past it.
    let second = start_post(&app.address, &headers(10 * MIB), 0).await;
    let (mut reader, mut writer) = second.into_split();
    let answer = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buffer)).await;
        read.ok().and_then(Result::ok).map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
    });
    // The server may stop reading (and close) once it has answered.
    let _ = writer.write_all(&vec![b' '; 8 * MIB]).await;
    let answer = answer.await.expect("reader").expect("the second is answered while it sends");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
    // A small real delivery still fits beside the first.
    let body = br#"{"action":"opened","number":1,"pull_request":{"number":1},"repository":{"id":5,"full_name":"o/r"}}"#;
    assert_eq!(app.send(&Delivery::new("pull_request", body.to_vec())).await.status(), 202);
    // And once the first is gone, its share is free again.
    drop(first);
    let mut status = 0;
    for _ in 0..50 {
        let big = format!(
            r#"{{"action":"opened","number":2,"pull_request":{{"number":2}},"repository":{{"id":5,"full_name":"o/r"}},"padding":"{}"}}"#,
            "x".repeat(20 * MIB)
        );
        status = app.send(&Delivery::new("pull_request", big.into_bytes())).await.status().as_u16();
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 202, "a 20 MiB delivery fits once the first is gone");
}

#[tokio::test]
async fn the_headers_that_describe_a_delivery_are_stored_with_it_and_no_others() {
    #[derive(QueryableByName)]
    struct Headers {
        #[diesel(sql_type = Nullable<diesel::sql_types::Jsonb>)]
        headers: Option<Value>,
    }
    let app = spawn_app().await;
    let delivery = Delivery::new("pull_request", pr_body(5, "opened"));
    let signature = sign(&delivery.body);
    let response = app
        .webhook(&delivery)
        .header("x-hub-signature-256", &signature)
        .header("x-github-hook-id", "292430182")
        .header("x-github-hook-installation-target-type", "integration")
        .header("x-github-hook-installation-target-id", "79929171")
        .header("authorization", "Bearer not-for-the-log")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let mut conn = connect(&app.db.url).await;
    let stored: Headers = diesel::sql_query("SELECT headers FROM webhook_deliveries WHERE delivery_id = $1")
        .bind::<Text, _>(&delivery.delivery_id)
        .get_result(&mut conn)
        .await
        .expect("the row");
    assert_eq!(
        stored.headers,
        Some(serde_json::json!({
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": delivery.delivery_id,
            "X-GitHub-Hook-ID": "292430182",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": "79929171",
            "User-Agent": "GitHub-Hookshot/test",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature,
        }))
    );
}
