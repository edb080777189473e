//! The simulator's App webhook deliveries API over HTTP, against a small
//! receiver started here: `GET /app/hook/deliveries` (cursor paging, status
//! filter, retention), `GET /app/hook/deliveries/{id}` and `POST
//! /app/hook/deliveries/{id}/attempts`, App JWT only.

use crate::simulator::{app_jwt, mint_for};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use github_sim::{NewPr, SimConfig, Simulator, WebhookTarget};
use serde_json::Value;

const REPO: &str = "octo-org/api";
const SECRET: &str = "deliveries-secret";

/// What the receiver got: the `X-GitHub-Delivery`, the signature and the body.
#[derive(Debug, Clone)]
struct Received {
    guid: String,
    signature: String,
    body: Value,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// Answers `POST /{status}` with that status, keeping what it received.
async fn receive(
    req: HttpRequest,
    status: web::Path<u16>,
    body: web::Bytes,
    inbox: web::Data<Inbox>,
) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    inbox.lock().unwrap().push(Received {
        guid: header("x-github-delivery"),
        signature: header("x-hub-signature-256"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let status = actix_web::http::StatusCode::from_u16(status.into_inner()).unwrap();
    HttpResponse::build(status).insert_header(("x-receiver", "test")).body(format!("answered {status}"))
}

/// A receiver on a free port: its base URL and its inbox.
fn start_receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let data = web::Data::new(inbox.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route("/{status}", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (base, inbox)
}

/// A URL nothing listens on: connections are refused.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn target(url: String) -> WebhookTarget {
    WebhookTarget {
        url,
        secret: SECRET.to_owned(),
        loss_rate: 0.0,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        concurrency: 1,
    }
}

async fn sim(url: String) -> (Simulator, String, reqwest::Client) {
    let fixture = serde_json::from_str(include_str!("../../fixtures/sim/small.json")).expect("fixture");
    let sim = Simulator::start(SimConfig {
        fixture: Some(fixture),
        webhook: Some(target(url)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let base = format!("http://{}", sim.address());
    (sim, base, reqwest::Client::new())
}

async fn open(sim: &Simulator, title: &str) {
    sim.open_pr(REPO, NewPr::new(title, "alice")).expect("opened");
    sim.wait_for_deliveries().await;
}

/// Every page of `url`, following `Link: rel="next"`: the items and how many pages.
async fn all_pages(http: &reqwest::Client, url: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next = Some(url.to_owned());
    let mut pages = 0;
    while let Some(url) = next.take() {
        let answer = http.get(&url).bearer_auth(app_jwt()).send().await.expect("sent");
        assert_eq!(answer.status(), 200, "{url}");
        next = answer.headers().get("link").map(|link| {
            let link = link.to_str().expect("ascii");
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            link.trim_start_matches('<').split('>').next().expect("a URL").to_owned()
        });
        let page: Vec<Value> = answer.json().await.expect("json");
        pages += 1;
        assert!(pages < 100, "the cursor never ends");
        items.extend(page);
    }
    (items, pages)
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_across_cursor_pages() {
    let (receiver, inbox) = start_receiver();
    let (sim, base, http) = sim(format!("{receiver}/200")).await;
    for i in 0..12 {
        sim.open_pr(REPO, NewPr::new(&format!("PR {i}"), "alice")).expect("opened");
    }
    sim.wait_for_deliveries().await;
    assert_eq!(inbox.lock().unwrap().len(), 12);

    let first = http
        .get(format!("{base}/app/hook/deliveries?per_page=5"))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent");
    let link = first.headers()["link"].to_str().expect("ascii").to_owned();
    assert!(link.starts_with(&format!("<{base}/app/hook/deliveries?per_page=5&cursor=")), "{link}");

    let (items, pages) = all_pages(&http, &format!("{base}/app/hook/deliveries?per_page=5")).await;
    assert_eq!(pages, 3, "5 + 5 + 2");
    let guids: Vec<&str> = items.iter().map(|i| i["guid"].as_str().expect("guid")).collect();
    let sent: Vec<String> = sim.deliveries().into_iter().rev().map(|d| d.delivery_id).collect();
    assert_eq!(guids, sent, "newest first, every guid the simulator sent");
    let ids: Vec<u64> = items.iter().map(|i| i["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "ids decrease: {ids:?}");
    let item = &items[0];
    assert_eq!(item["status"], "OK");
    assert_eq!(item["status_code"], 200);
    assert_eq!(item["event"], "pull_request");
    assert_eq!(item["action"], "opened");
    assert_eq!(item["redelivery"], false);
    assert!(item["throttled_at"].is_null());
    assert_eq!(item["repository_id"], sim.repo_id(REPO).expect("repo"));
    assert!(item["installation_id"].as_i64().is_some());
    assert!(item["duration"].as_f64().is_some());
    assert!(chrono::DateTime::parse_from_rfc3339(item["delivered_at"].as_str().expect("a time")).is_ok());
    assert!(item.get("request").is_none(), "list items carry no request");
    // Default page size: everything on one page, no Link.
    let one =
        http.get(format!("{base}/app/hook/deliveries")).bearer_auth(app_jwt()).send().await.expect("sent");
    assert!(one.headers().get("link").is_none());
    assert_eq!(one.json::<Vec<Value>>().await.expect("json").len(), 12);
    // Logged like the other App routes.
    assert_eq!(sim.stats().count("GET /app/hook/deliveries", 200), 5);
    sim.stop().await;
}

#[tokio::test]
async fn failures_show_their_status_and_the_detail_carries_the_request_sent() {
    let (receiver, inbox) = start_receiver();
    let (sim, base, http) = sim(format!("{receiver}/200")).await;
    open(&sim, "accepted").await;
    sim.set_webhook(Some(target(format!("{receiver}/503"))));
    open(&sim, "answered 503").await;
    sim.set_webhook(Some(target(closed_port_url())));
    open(&sim, "refused").await;

    let (items, _) = all_pages(&http, &format!("{base}/app/hook/deliveries")).await;
    let [refused, unavailable, accepted] = items.as_slice() else { panic!("three deliveries: {items:?}") };
    assert_eq!(
        (refused["status_code"].as_u64(), refused["status"].as_str()),
        (Some(0), Some("failed to connect to host"))
    );
    assert_eq!(
        (unavailable["status_code"].as_u64(), unavailable["status"].as_str()),
        (Some(503), Some("Invalid HTTP Response: 503"))
    );
    assert_eq!(accepted["status"], "OK");

    let received = inbox.lock().unwrap().clone();
    let detail: Value = http
        .get(format!("{base}/app/hook/deliveries/{}", unavailable["id"]))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["guid"], received[1].guid);
    assert_eq!(detail["url"], format!("{receiver}/503"));
    assert_eq!(detail["request"]["payload"], received[1].body, "the JSON that was sent");
    assert_eq!(detail["request"]["payload"]["pull_request"]["title"], "answered 503");
    let headers = &detail["request"]["headers"];
    assert_eq!(headers["x-hub-signature-256"], received[1].signature);
    assert_eq!(headers["x-github-delivery"], received[1].guid);
    assert_eq!(headers["x-github-event"], "pull_request");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["user-agent"].as_str().expect("UA").starts_with("GitHub-Hookshot/"));
    assert_eq!(detail["response"]["payload"], "answered 503 Service Unavailable");
    assert_eq!(detail["response"]["headers"]["x-receiver"], "test");
    let refused_detail: Value = http
        .get(format!("{base}/app/hook/deliveries/{}", refused["id"]))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(refused_detail["response"]["payload"].is_null(), "no answer");
    assert_eq!(refused_detail["request"]["payload"]["pull_request"]["title"], "refused");

    // Only the failures under status=failure; only the success under status=success.
    let (failures, _) = all_pages(&http, &format!("{base}/app/hook/deliveries?status=failure")).await;
    let ids = |items: &[Value]| items.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&failures), [refused["id"].clone(), unavailable["id"].clone()]);
    let (successes, _) = all_pages(&http, &format!("{base}/app/hook/deliveries?status=success")).await;
    assert_eq!(ids(&successes), [accepted["id"].clone()]);

    let missing = http
        .get(format!("{base}/app/hook/deliveries/999999"))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.expect("json")["message"], "Not Found");
    sim.stop().await;
}

#[tokio::test]
async fn a_redelivery_keeps_the_guid_and_is_listed_as_a_new_attempt() {
    let (receiver, inbox) = start_receiver();
    let (sim, base, http) = sim(format!("{receiver}/503")).await;
    open(&sim, "failed first").await;
    let (items, _) = all_pages(&http, &format!("{base}/app/hook/deliveries")).await;
    let failed = items[0].clone();
    assert_eq!(failed["status_code"], 503);

    sim.set_webhook(Some(target(format!("{receiver}/200"))));
    let answer = http
        .post(format!("{base}/app/hook/deliveries/{}/attempts", failed["id"]))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), 202);
    assert_eq!(answer.json::<Value>().await.expect("json"), serde_json::json!({}));
    sim.wait_for_deliveries().await;

    let received = inbox.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].guid, failed["guid"].as_str().expect("guid"), "the same X-GitHub-Delivery");
    assert_eq!(received[1].body, received[0].body, "the same payload");

    let (items, _) = all_pages(&http, &format!("{base}/app/hook/deliveries")).await;
    assert_eq!(items.len(), 2);
    let again = &items[0];
    assert_eq!(again["guid"], failed["guid"]);
    assert!(again["id"].as_u64() > failed["id"].as_u64(), "a new, newer id");
    assert_eq!(again["redelivery"], true);
    assert_eq!(again["status"], "OK");
    assert_eq!(items[1], failed, "the first attempt unchanged");
    // Redelivered and answered: no longer among the failed ones.
    assert_eq!(sim.redeliver_failed(), 0);
    assert_eq!(sim.stats().count("POST /app/hook/deliveries/{delivery_id}/attempts", 202), 1);

    let unknown = http
        .post(format!("{base}/app/hook/deliveries/999999/attempts"))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 404);
    sim.set_webhook(None);
    let unset = http
        .post(format!("{base}/app/hook/deliveries/{}/attempts", failed["id"]))
        .bearer_auth(app_jwt())
        .send()
        .await
        .expect("sent");
    assert_eq!(unset.status(), 404, "no webhook target");
    sim.stop().await;
}

#[tokio::test]
async fn deliveries_older_than_three_days_are_neither_listed_nor_found() {
    let (receiver, _inbox) = start_receiver();
    let (sim, base, http) = sim(format!("{receiver}/200")).await;
    open(&sim, "old").await;
    open(&sim, "also old").await;
    let (old, _) = all_pages(&http, &format!("{base}/app/hook/deliveries")).await;
    sim.age_deliveries(Duration::from_secs(3 * 24 * 3600 + 60));
    open(&sim, "recent").await;

    let (items, _) = all_pages(&http, &format!("{base}/app/hook/deliveries")).await;
    assert_eq!(items.len(), 1, "only the recent one: {items:?}");
    assert!(items[0]["id"].as_u64() > old[0]["id"].as_u64());
    for item in &old {
        let detail = http
            .get(format!("{base}/app/hook/deliveries/{}", item["id"]))
            .bearer_auth(app_jwt())
            .send()
            .await
            .expect("sent");
        assert_eq!(detail.status(), 404);
        let redeliver = http
            .post(format!("{base}/app/hook/deliveries/{}/attempts", item["id"]))
            .bearer_auth(app_jwt())
            .send()
            .await
            .expect("sent");
        assert_eq!(redeliver.status(), 404, "past the retention, not redeliverable");
    }
    assert_eq!(sim.hook_deliveries().len(), 3, "kept in memory, only hidden");
    sim.stop().await;
}

#[tokio::test]
async fn installation_tokens_and_the_static_token_get_401_on_every_deliveries_endpoint() {
    let (receiver, _inbox) = start_receiver();
    let fixture = serde_json::from_str(include_str!("../../fixtures/sim/small.json")).expect("fixture");
    let sim = Simulator::start(SimConfig {
        fixture: Some(fixture),
        webhook: Some(target(format!("{receiver}/200"))),
        static_token: Some("static".into()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let base = format!("http://{}", sim.address());
    let http = reqwest::Client::new();
    open(&sim, "one").await;
    let id = sim.hook_deliveries()[0].id;
    let installation = mint_for(&http, &base, 2001).await;
    for token in [installation.as_str(), "static"] {
        let answers = [
            http.get(format!("{base}/app/hook/deliveries")).bearer_auth(token).send().await.expect("sent"),
            http.get(format!("{base}/app/hook/deliveries/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("sent"),
            http.post(format!("{base}/app/hook/deliveries/{id}/attempts"))
                .bearer_auth(token)
                .send()
                .await
                .expect("sent"),
        ];
        for answer in answers {
            assert_eq!(answer.status(), 401, "{}", answer.url());
            let message = answer.json::<Value>().await.expect("json")["message"]
                .as_str()
                .expect("a message")
                .to_owned();
            assert!(message.starts_with("A JSON web token could not be decoded"), "{message}");
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.count("GET /app/hook/deliveries", 401), 2);
    assert_eq!(stats.count("POST /app/hook/deliveries/{delivery_id}/attempts", 401), 2);
    assert_eq!(sim.hook_deliveries().len(), 1, "nothing redelivered");
    sim.stop().await;
}
