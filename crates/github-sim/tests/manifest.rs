//! The App manifest flow over real HTTP: a simulator started without an App
//! registers one from a manifest, converts the code into its credentials,
//! installs it on an account and sends the signed `installation` webhook;
//! and refuses what GitHub refuses.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use github_sim::{Generate, SimConfig, Simulator};
use serde_json::{json, Value};

/// Deliveries received: (event, signature, body bytes).
type Inbox = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn receive(req: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    inbox.lock().unwrap().push((header("x-github-event"), header("x-hub-signature-256"), body.to_vec()));
    HttpResponse::Accepted().finish()
}

fn start_receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let data = web::Data::new(inbox.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhooks/github", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route("/webhooks/github", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, inbox)
}

async fn without_app() -> Simulator {
    Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 2, pull_requests: 2, check_runs: 1 }),
        app_registered: false,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn manifest(hook_url: &str) -> Value {
    json!({
        "name": "prmonitor-test",
        "url": "http://prmonitor.invalid",
        "hook_attributes": { "url": hook_url, "active": true },
        "redirect_url": "http://prmonitor.invalid/setup/complete",
        "setup_url": "http://prmonitor.invalid/setup/installed",
        "public": false,
        "default_permissions": { "pull_requests": "read", "checks": "read", "metadata": "read" },
        "default_events": ["pull_request", "check_run"],
    })
}

async fn post_form(url: &str, fields: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    let response = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), location)
}

/// The hidden `token` of the confirmation page.
fn confirmation_token(page: &str) -> String {
    let start = page.find("name=\"token\" value=\"").expect("a token field") + 20;
    page[start..].split('"').next().unwrap().to_owned()
}

/// Posts the manifest and confirms it: the redirect's `code`.
async fn register(sim: &Simulator, hook_url: &str, state: &str) -> String {
    let new = format!("{}/organizations/acme/settings/apps/new", sim.web_url());
    let manifest = manifest(hook_url).to_string();
    let (status, page, _) = post_form(&new, &[("manifest", &manifest), ("state", state)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Create GitHub App for acme"), "{page}");
    assert!(page.contains("id=\"create-app\""), "{page}");
    let confirm = format!("{}/settings/apps/new/confirm", sim.web_url());
    let (status, _, location) = post_form(&confirm, &[("token", &confirmation_token(&page))]).await;
    assert_eq!(status, 302);
    let location = url::Url::parse(&location.expect("a Location")).unwrap();
    assert_eq!(location.path(), "/setup/complete");
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some(state), "state echoed exactly");
    query["code"].clone()
}

async fn convert(sim: &Simulator, code: &str) -> (u16, Value) {
    let response =
        client().post(format!("{}/app-manifests/{code}/conversions", sim.api_url())).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

fn jwt(app_id: u64) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let now = chrono::Utc::now().timestamp();
    let key = EncodingKey::from_rsa_pem(github_sim::SIM_APP_PRIVATE_KEY.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::RS256), &json!({ "iat": now - 60, "exp": now + 540, "iss": app_id }), &key)
        .unwrap()
}

async fn installations(sim: &Simulator, app_id: u64) -> (u16, Value) {
    let response = client()
        .get(format!("{}/app/installations", sim.api_url()))
        .bearer_auth(jwt(app_id))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_app_is_registered_converted_installed_and_then_works_like_the_built_in_one() {
    let sim = without_app().await;
    let (hook_url, inbox) = start_receiver();
    // Before the flow: no App, nothing installed, no webhooks.
    assert_eq!(installations(&sim, github_sim::SIM_APP_ID).await.0, 401);
    sim.label("acme/repo-0", 1, "bug").unwrap();
    sim.wait_for_deliveries().await;

    let state = "a b&c=d/é";
    let code = register(&sim, &hook_url, state).await;
    let (status, app) = convert(&sim, &code).await;
    assert_eq!(status, 201, "{app}");
    for key in [
        "id",
        "slug",
        "node_id",
        "owner",
        "name",
        "html_url",
        "external_url",
        "permissions",
        "events",
        "created_at",
        "updated_at",
        "client_id",
        "client_secret",
        "webhook_secret",
        "pem",
    ] {
        assert!(!app[key].is_null(), "{key} missing: {app}");
    }
    assert_eq!(app["slug"], "prmonitor-test");
    assert_eq!(app["owner"]["login"], "acme");
    assert_eq!(app["pem"], github_sim::SIM_APP_PRIVATE_KEY, "the fixture key pair");
    let app_id = app["id"].as_u64().unwrap();
    assert_ne!(app_id, github_sim::SIM_APP_ID);
    let secret = app["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);
    // A code works once.
    let (status, refused) = convert(&sim, &code).await;
    assert_eq!(status, 404);
    assert_eq!(refused["message"], "Not Found");
    assert!(refused["documentation_url"].is_string());

    // Registered, not installed: the JWT works, there is nothing to list,
    // and the built-in App's id is not the App.
    let (status, listed) = installations(&sim, app_id).await;
    assert_eq!((status, listed), (200, json!([])));
    assert_eq!(installations(&sim, github_sim::SIM_APP_ID).await.0, 401, "wrong iss");

    let install = format!("{}/installations/new", app["html_url"].as_str().unwrap());
    let page = client().get(&install).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"install-app\"") && page.contains("acme"), "{page}");
    let (status, page, _) = post_form(&install, &[("account", "someone-else")]).await;
    assert_eq!(status, 422, "{page}");
    let (status, _, location) = post_form(&install, &[("account", "acme")]).await;
    assert_eq!(status, 302);
    let location = location.unwrap();
    assert!(location.starts_with("http://prmonitor.invalid/setup/installed?installation_id="), "{location}");
    assert!(location.ends_with("&setup_action=install"), "{location}");
    let (status, _, _) = post_form(&install, &[("account", "acme")]).await;
    assert_eq!(status, 422, "installed already");

    sim.wait_for_deliveries().await;
    let received = inbox.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "only the installation: the label came before it");
    let (event, signature, body) = &received[0];
    assert_eq!(event, "installation");
    assert_eq!(signature, &github_sim::webhooks::sign(&secret, body), "signed with the App's secret");
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["installation"]["app_id"], app_id);
    assert_eq!(payload["repositories"].as_array().map(Vec::len), Some(2));
    // The deliveries API lists it, for the new App's JWT.
    let deliveries = client()
        .get(format!("{}/app/hook/deliveries", sim.api_url()))
        .bearer_auth(jwt(app_id))
        .send()
        .await
        .unwrap();
    assert_eq!(deliveries.status(), 200);
    let deliveries: Value = serde_json::from_slice(&deliveries.bytes().await.unwrap()).unwrap();
    assert_eq!(deliveries[0]["event"], "installation");

    // Installed: a token for the installation reads the repositories, and webhooks flow.
    let (_, listed) = installations(&sim, app_id).await;
    let installation = listed[0]["id"].as_i64().unwrap();
    let token = client()
        .post(format!("{}/app/installations/{installation}/access_tokens", sim.api_url()))
        .bearer_auth(jwt(app_id))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 201);
    let token: Value = serde_json::from_slice(&token.bytes().await.unwrap()).unwrap();
    let repos = client()
        .get(format!("{}/installation/repositories", sim.api_url()))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(repos.status(), 200);
    sim.label("acme/repo-1", 1, "bug").unwrap();
    sim.wait_for_deliveries().await;
    assert_eq!(inbox.lock().unwrap().last().unwrap().0, "pull_request");
    let stats = sim.stats();
    assert_eq!(stats.count("POST /app-manifests/{code}/conversions", 201), 1);
    assert_eq!(stats.count("POST /app-manifests/{code}/conversions", 404), 1);
    sim.stop().await;
}

#[tokio::test]
async fn invalid_and_oversized_manifests_and_unknown_confirmations_are_refused() {
    let sim = without_app().await;
    let new = format!("{}/settings/apps/new", sim.web_url());
    let (status, page, _) = post_form(&new, &[("state", "x")]).await;
    assert_eq!(status, 422);
    assert!(page.contains("no manifest field"), "{page}");
    let (status, page, _) = post_form(&new, &[("manifest", "{not json")]).await;
    assert_eq!(status, 422);
    assert!(page.contains("not JSON"), "{page}");
    let mut no_hook = manifest("http://x.invalid/hook");
    no_hook["hook_attributes"] = json!({});
    let (status, page, _) = post_form(&new, &[("manifest", &no_hook.to_string())]).await;
    assert_eq!(status, 422);
    assert!(page.contains("hook_attributes.url is required"), "{page}");
    let mut hostile = manifest("http://x.invalid/hook");
    hostile["name"] = json!("<script>alert(1)</script>");
    let (status, page, _) = post_form(&new, &[("manifest", &hostile.to_string())]).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script>"), "escaped: {page}");
    let big = "x".repeat(70 * 1024);
    let (status, _, _) = post_form(&new, &[("manifest", &big)]).await;
    assert_eq!(status, 413);
    let wrong_type =
        client().post(&new).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(wrong_type.status(), 415);
    let unknown_org = format!("{}/organizations/nobody/settings/apps/new", sim.web_url());
    let (status, _, _) =
        post_form(&unknown_org, &[("manifest", &manifest("http://x.invalid/h").to_string())]).await;
    assert_eq!(status, 404);
    let confirm = format!("{}/settings/apps/new/confirm", sim.web_url());
    assert_eq!(post_form(&confirm, &[("token", "guessed")]).await.0, 404);
    assert_eq!(convert(&sim, "guessed").await.0, 404);
    assert_eq!(
        client().get(format!("{}/apps/nope/installations/new", sim.web_url())).send().await.unwrap().status(),
        404
    );
    assert!(sim.registered_app().is_none(), "nothing registered");
    sim.stop().await;
}

#[tokio::test]
async fn a_code_expires_after_an_hour_of_the_simulators_clock() {
    let sim = without_app().await;
    let code = register(&sim, "http://127.0.0.1:9/hook", "s").await;
    sim.set_clock_offset(chrono::Duration::minutes(61));
    let (status, body) = convert(&sim, &code).await;
    assert_eq!(status, 404, "{body}");
    // And only one App: a second registration is refused.
    sim.set_clock_offset(chrono::Duration::zero());
    let new = format!("{}/settings/apps/new", sim.web_url());
    let (_, page, _) = post_form(&new, &[("manifest", &manifest("http://x.invalid/h").to_string())]).await;
    let confirm = format!("{}/settings/apps/new/confirm", sim.web_url());
    assert_eq!(post_form(&confirm, &[("token", &confirmation_token(&page))]).await.0, 422);
    tokio::time::sleep(Duration::from_millis(10)).await;
    sim.stop().await;
}
