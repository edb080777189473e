//! `/setup`: the GitHub App in one click through GitHub's manifest flow,
//! end to end against a simulator that starts with no App: the form, the
//! manifest posted to the simulator's page, the confirmation, the redirect
//! back, the App stored sealed and used at once, the installation, its
//! webhook accepted and the repositories backfilled. And what it refuses.

use std::collections::HashMap;

use diesel::sql_types::{BigInt, Bytea};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use github_sim::{Generate, SimConfig, Simulator};
use prmonitor::config::{SecretKey, Settings};
use prmonitor::startup::{Components, Service};
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, ADMIN_TOKEN};
use prmonitor_testkit::{connect, count, TestDatabase};

use crate::scenarios::CONVERGE;

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The simulator without an App, the service in setup mode on a fresh database.
pub(crate) struct Setup {
    pub(crate) sim: Simulator,
    pub(crate) db: TestDatabase,
    settings: Settings,
    service: Service,
    address: String,
    client: reqwest::Client,
}

impl Setup {
    pub(crate) async fn start(secret_key: bool) -> Self {
        let sim = Simulator::start(SimConfig {
            generate: Some(Generate { repositories: 2, pull_requests: 3, check_runs: 2 }),
            app_registered: false,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let db = TestDatabase::migrated().await;
        let mut settings: Settings = settings_for(&db, &sim, &[]);
        // Nothing about GitHub in the settings: the App comes from /setup.
        settings.github.auth = None;
        settings.webhook_secrets.clear();
        settings.secret_key = secret_key.then(|| SecretKey::parse(KEY_HEX).expect("key"));
        let service = start_instance(&settings);
        let address = service.address().expect("http").to_string();
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { sim, db, settings, service, address, client }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn get(&self, url: &str) -> (u16, String, Option<String>) {
        answer(self.client.get(url).send().await.expect("answered")).await
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("answered");
        answer(response).await
    }

    /// `POST /setup` for this service's own address: the page's form action and manifest.
    async fn begin(&self, organization: &str) -> (String, String) {
        let public = format!("http://{}", self.address);
        let (status, page, _) = self
            .post_form(&self.url("/setup"), &[("public_url", &public), ("organization", organization)])
            .await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("id=\"create-on-github\""), "{page}");
        (attribute(&page, "action=\""), attribute(&page, "name=\"manifest\" value=\""))
    }

    async fn stored_apps(&self) -> i64 {
        count(&self.db.url, "SELECT count(*) FROM github_apps").await
    }

    pub(crate) async fn stop(self) {
        self.service.stop().await;
        self.sim.stop().await;
    }
}

/// One more instance of the service on the same database.
fn start_instance(settings: &Settings) -> Service {
    let pool = prmonitor::db::build_pool(&settings.database_url, settings.db_pool_size).expect("pool");
    Service::start(settings, pool, Components::ALL).expect("the service starts without an App")
}

/// A `ping` signed with `secret`, posted to the service at `address`: the status.
async fn ping(client: &reqwest::Client, address: &str, secret: &str) -> u16 {
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    client
        .post(format!("http://{address}/webhooks/github"))
        .header("x-github-event", "ping")
        .header("x-github-delivery", prmonitor_testkit::new_delivery_id())
        .header("x-hub-signature-256", github_sim::webhooks::sign(secret, body))
        .body(body.to_vec())
        .send()
        .await
        .expect("answered")
        .status()
        .as_u16()
}

async fn answer(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|v| v.to_str().expect("ascii").to_owned());
    (status, response.text().await.expect("a body"), location)
}

/// The value after `prefix` up to the next quote, HTML-unescaped.
fn attribute(page: &str, prefix: &str) -> String {
    let start = page.find(prefix).unwrap_or_else(|| panic!("no {prefix} in {page}")) + prefix.len();
    let raw = page[start..].split('"').next().expect("a closing quote");
    raw.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location).expect("a URL").query_pairs().into_owned().collect()
}

/// On the simulator: posts the manifest to `action`, confirms; GitHub's redirect.
async fn create_on_github(setup: &Setup, action: &str, manifest: &str) -> String {
    let (status, page, _) = setup.post_form(action, &[("manifest", manifest)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Create GitHub App for acme") && page.contains("id=\"create-app\""), "{page}");
    let token = attribute(&page, "name=\"token\" value=\"");
    let confirm = format!("{}/settings/apps/new/confirm", setup.sim.web_url());
    let (status, _, location) = setup.post_form(&confirm, &[("token", &token)]).await;
    assert_eq!(status, 302);
    location.expect("GitHub redirects back")
}

#[derive(QueryableByName)]
struct SealedRow {
    #[diesel(sql_type = BigInt)]
    app_id: i64,
    #[diesel(sql_type = Bytea)]
    private_key_sealed: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_is_created_stored_sealed_installed_and_its_repositories_backfilled() {
    let setup = Setup::start(true).await;
    // A second instance on the same database, which /setup never sees.
    let other = start_instance(&setup.settings);
    let other_address = other.address().expect("http").to_string();
    // Before the App: no webhook secret, so every delivery is refused.
    let unsigned = setup
        .client
        .post(setup.url("/webhooks/github"))
        .header("x-github-event", "ping")
        .header("x-github-delivery", prmonitor_testkit::new_delivery_id())
        .header("x-hub-signature-256", prmonitor_testkit::sign(b"{}"))
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(unsigned.status(), 401);

    let (status, page, _) = setup.get(&setup.url("/setup")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("value=\"http://{}\"", setup.address)), "prefilled from Host: {page}");
    assert!(page.contains("<main") && page.contains("id=\"start-setup\""), "{page}");

    let (action, manifest) = setup.begin("acme").await;
    let web = setup.sim.web_url();
    assert!(action.starts_with(&format!("{web}/organizations/acme/settings/apps/new?state=")), "{action}");
    let state = query(&action)["state"].clone();
    assert_eq!(state.len(), 64);
    let parsed: serde_json::Value = serde_json::from_str(&manifest).expect("the manifest is JSON");
    assert_eq!(parsed["hook_attributes"]["url"], format!("http://{}/webhooks/github", setup.address));
    assert_eq!(parsed["redirect_url"], format!("http://{}/setup/complete", setup.address));
    assert_eq!(parsed["default_permissions"]["pull_requests"], "read");

    let location = create_on_github(&setup, &action, &manifest).await;
    assert!(location.starts_with(&setup.url("/setup/complete?")), "{location}");
    assert_eq!(query(&location)["state"], state);
    let (status, page, _) = setup.get(&location).await;
    assert_eq!(status, 200, "{page}");
    let registered = setup.sim.registered_app().expect("the simulator registered the App");
    assert!(page.contains(&format!("App {} created", registered.slug)), "{page}");
    for secret in [registered.webhook_secret.as_str(), registered.client_secret.as_str(), "PRIVATE KEY"] {
        assert!(!page.contains(secret), "a secret reached the page");
    }
    let install = attribute(&page, "id=\"install-app-link\" href=\"");
    assert_eq!(install, format!("{web}/apps/{}/installations/new", registered.slug));

    // Stored sealed: the plain PEM is not in the database; the key opens it.
    let mut conn = connect(&setup.db.url).await;
    let rows: Vec<SealedRow> = diesel::sql_query("SELECT app_id, private_key_sealed FROM github_apps")
        .load(&mut conn)
        .await
        .expect("read");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].app_id, i64::try_from(registered.id).expect("id"));
    assert!(!String::from_utf8_lossy(&rows[0].private_key_sealed).contains("PRIVATE KEY"));
    let key = SecretKey::parse(KEY_HEX).expect("key");
    let opened = prmonitor::setup::open(&key, rows[0].app_id, "private_key", &rows[0].private_key_sealed)
        .expect("opens with the key");
    assert_eq!(opened.expose(), github_sim::SIM_APP_PRIVATE_KEY);
    // This instance accepts the App's webhook secret at once; the other one
    // finds the App in the database within a few seconds.
    assert_eq!(ping(&setup.client, &setup.address, &registered.webhook_secret).await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while ping(&setup.client, &other_address, &registered.webhook_secret).await != 200 {
        assert!(std::time::Instant::now() < deadline, "the other instance never took the App");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ping(&setup.client, &other_address, "another secret").await, 401);
    // The redirect cannot be replayed.
    let replay = setup.client.get(&location).bearer_auth(ADMIN_TOKEN).send().await.expect("answered");
    assert_eq!(replay.status(), 400, "the state is used");

    let (status, page, _) = setup.get(&install).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"install-app\""), "{page}");
    let (status, _, location) = setup.post_form(&install, &[("account", "acme")]).await;
    assert_eq!(status, 302);
    let location = location.expect("to the setup URL");
    assert!(location.starts_with(&setup.url("/setup/installed?installation_id=")), "{location}");
    let (status, page, _) = setup.get(&location).await;
    assert_eq!(status, 200);
    assert!(page.contains("being discovered"), "{page}");

    // The installation webhook is signed with the new App's secret: accepted.
    setup.sim.wait_for_deliveries().await;
    let deliveries = setup.sim.deliveries();
    let installation =
        deliveries.iter().find(|d| d.event == "installation").expect("an installation delivery");
    assert_eq!(installation.statuses, [202], "{deliveries:?}");
    converge(&setup.db.url, &setup.sim, CONVERGE)
        .await
        .unwrap_or_else(|d| panic!("the repositories were not backfilled: {d}"));
    drain(&setup.db.url, CONVERGE).await;
    assert_eq!(count(&setup.db.url, "SELECT count(*) FROM repositories WHERE active").await, 2);
    assert_eq!(count(&setup.db.url, "SELECT count(*) FROM pull_requests").await, 6);
    assert_eq!(count(&setup.db.url, "SELECT count(*) FROM jobs WHERE state = 'dead'").await, 0);
    // Later changes arrive by webhook, signed with the App's secret.
    setup.sim.label("acme/repo-0", 1, "bug").expect("label");
    setup.sim.wait_for_deliveries().await;
    assert!(setup.sim.deliveries().iter().all(|d| d.statuses.iter().all(|s| (200..300).contains(s))));

    // An App exists: setup is hidden, unless the admin token is given.
    for path in ["/setup", "/setup/complete?code=x&state=y"] {
        let (status, _, _) = setup.get(&setup.url(path)).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = setup.post_form(&setup.url("/setup"), &[("public_url", "https://x.example")]).await;
    assert_eq!(status, 404);
    let admin =
        setup.client.get(setup.url("/setup")).bearer_auth(ADMIN_TOKEN).send().await.expect("answered");
    assert_eq!(admin.status(), 200);
    assert!(admin.text().await.expect("body").contains(&registered.slug));
    let wrong =
        setup.client.get(setup.url("/setup")).bearer_auth("not-the-token").send().await.expect("answered");
    assert_eq!(wrong.status(), 404);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_without_a_state_begun_here_or_with_a_refused_code_stores_nothing() {
    let setup = Setup::start(true).await;
    let complete = |query: &str| setup.url(&format!("/setup/complete{query}"));
    for (query, status) in [
        ("", 400),
        ("?code=abc", 400),
        ("?state=abc", 400),
        ("?code=abc&state=0000000000000000000000000000000000000000000000000000000000000000", 400),
        ("?code=%3Cscript%3E&state=x", 400),
    ] {
        let (got, page, _) = setup.get(&complete(query)).await;
        assert_eq!(got, status, "{query}: {page}");
        assert!(page.contains("Nothing was stored"), "{query}: {page}");
        assert!(!page.contains("<script>"), "{page}");
    }
    // A state begun here with a code GitHub refuses: the page says so, and
    // the state is spent.
    let (action, _) = setup.begin("").await;
    assert!(action.starts_with(&format!("{}/settings/apps/new?state=", setup.sim.web_url())), "{action}");
    let state = query(&action)["state"].clone();
    let (status, page, _) = setup.get(&complete(&format!("?code=not0a0real0code&state={state}"))).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("GitHub refused the code") && page.contains("Nothing was stored"), "{page}");
    let (status, page, _) = setup.get(&complete(&format!("?code=not0a0real0code&state={state}"))).await;
    assert_eq!(status, 400, "a used state: {page}");
    // A real code, arriving with another site's state, is refused before it is spent.
    let (action, manifest) = setup.begin("acme").await;
    let location = create_on_github(&setup, &action, &manifest).await;
    let code = query(&location)["code"].clone();
    let (status, _, _) = setup.get(&complete(&format!("?code={code}&state={}", "f".repeat(64)))).await;
    assert_eq!(status, 400);
    assert_eq!(setup.stored_apps().await, 0, "nothing stored");
    assert_eq!(
        setup.sim.stats().count_route("POST /app-manifests/{code}/conversions"),
        1,
        "only the refused code was tried"
    );
    // The code and its own state still work: nothing was spent by the forgery.
    let (status, page, _) = setup.get(&location).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(setup.stored_apps().await, 1);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_hostile_setup_forms_are_refused_and_create_no_state() {
    let setup = Setup::start(true).await;
    let url = setup.url("/setup");
    let json = setup
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(json.status(), 415);
    let big = format!("public_url={}", "a".repeat(20 * 1024));
    let oversized = setup
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .expect("answered");
    assert_eq!(oversized.status(), 413);
    let cases: [(&[(&str, &str)], u16); 7] = [
        (&[], 422),
        (&[("public_url", "ftp://prmonitor.example.com")], 422),
        (&[("public_url", "javascript:alert(1)")], 422),
        (&[("public_url", "not a url")], 422),
        (&[("public_url", "https://x.example"), ("organization", "a/../b")], 422),
        (&[("public_url", "https://x.example"), ("name", &"n".repeat(35))], 422),
        (&[("public_url", "https://x.example"), ("public_url", "https://y.example")], 400),
    ];
    for (fields, status) in cases {
        let (got, page, _) = setup.post_form(&url, fields).await;
        assert_eq!(got, status, "{fields:?}: {page}");
    }
    let (_, page, _) = setup.post_form(&url, &[("public_url", "<script>x</script>")]).await;
    assert!(!page.contains("<script>"), "escaped: {page}");
    assert_eq!(count(&setup.db.url, "SELECT count(*) FROM setup_states").await, 0);
    assert_eq!(setup.stored_apps().await, 0);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_secret_key_the_page_says_how_to_make_one_and_nothing_is_stored() {
    let setup = Setup::start(false).await;
    let (status, page, _) = setup.get(&setup.url("/setup")).await;
    assert_eq!(status, 200);
    assert!(page.contains("PRMONITOR_SECRET_KEY") && page.contains("openssl rand -hex 32"), "{page}");
    assert!(!page.contains("id=\"start-setup\""), "no form: {page}");
    let (status, _, _) = setup.post_form(&setup.url("/setup"), &[("public_url", "https://x.example")]).await;
    assert_eq!(status, 409);
    let (status, _, _) = setup.get(&setup.url("/setup/complete?code=abc&state=def")).await;
    assert_eq!(status, 409);
    assert_eq!(count(&setup.db.url, "SELECT count(*) FROM setup_states").await, 0);
    assert_eq!(setup.stored_apps().await, 0);
    setup.stop().await;
}

/// GitHub's installation ids are int64, as the OpenAPI document says: a
/// number past it is refused, not shown as if GitHub could have sent it.
#[tokio::test]
async fn an_installation_id_beyond_int64_is_refused() {
    let app = prmonitor_testkit::spawn_app().await;
    for (id, status) in [("9223372036854775807", 200), ("9223372036854775808", 400), ("-1", 400)] {
        let response = app.get(&format!("/setup/installed?installation_id={id}")).await;
        assert_eq!(response.status().as_u16(), status, "{id}");
    }
}
