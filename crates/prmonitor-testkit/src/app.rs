//! The service in this process on port 0, its settings, and GitHub-shaped
//! deliveries signed and sent to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use prmonitor::config::{Secret, Settings};
use prmonitor::db;
use prmonitor::startup::Application;
use prmonitor::webhook::signature;

use crate::database::{count, TestDatabase};

/// The webhook secret every test service is configured with.
pub const TEST_SECRET: &str = "test webhook secret";

static DELIVERY_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Settings for an in-process app on `db`, with `overrides` applied.
pub fn test_settings(db: &TestDatabase, overrides: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("PRMONITOR_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("PRMONITOR_WEBHOOK_SECRETS".to_owned(), TEST_SECRET.to_owned()),
        ("PRMONITOR_HTTP_WORKERS".to_owned(), "1".to_owned()),
        ("PRMONITOR_DB_POOL_SIZE".to_owned(), "4".to_owned()),
        ("PRMONITOR_SHUTDOWN_TIMEOUT_SECS".to_owned(), "5".to_owned()),
    ]);
    for (key, value) in overrides {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    Settings::load_from(None, &|key| env.get(key).cloned()).expect("valid test settings")
}

/// The service running in this process against its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    // Last: the database is dropped after the server has let go of it.
    pub db: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let db = TestDatabase::migrated().await;
    let settings = test_settings(&db, overrides);
    spawn_app_on(db, settings).await
}

/// Runs the app with `settings` (whose database may be unreachable: the pool
/// connects lazily, as in production).
pub async fn spawn_app_on(db: TestDatabase, settings: Settings) -> TestApp {
    let pool = db::build_pool(&settings.database_url, settings.db_pool_size).expect("pool");
    let app = Application::build(&settings, pool).expect("bind");
    let address = format!("http://{}", app.address());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    TestApp { address, client, db }
}

/// A delivery as GitHub would send it.
pub struct Delivery<'a> {
    pub event: &'a str,
    pub delivery_id: String,
    pub body: Vec<u8>,
}

impl<'a> Delivery<'a> {
    pub fn new(event: &'a str, body: impl Into<Vec<u8>>) -> Self {
        Self { event, delivery_id: new_delivery_id(), body: body.into() }
    }
}

/// A GUID-shaped delivery id, unique within the test run.
pub fn new_delivery_id() -> String {
    let n = DELIVERY_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let hex = format!("{:032x}", nanos ^ (u128::from(n) << 96) ^ u128::from(std::process::id()));
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

pub fn sign(body: &[u8]) -> String {
    signature::sign(&Secret::new(TEST_SECRET), body)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("the request reaches the server")
    }

    /// A webhook request with GitHub's headers, not yet signed.
    pub fn webhook(&self, delivery: &Delivery<'_>) -> reqwest::RequestBuilder {
        self.client
            .post(self.url("/webhooks/github"))
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/test")
            .header("x-github-event", delivery.event)
            .header("x-github-delivery", &delivery.delivery_id)
            .body(delivery.body.clone())
    }

    /// Signs `delivery` with the test secret and sends it.
    pub async fn send(&self, delivery: &Delivery<'_>) -> reqwest::Response {
        self.webhook(delivery)
            .header("x-hub-signature-256", sign(&delivery.body))
            .send()
            .await
            .expect("the request reaches the server")
    }

    /// A count from a new connection: what is committed, not what this app's pool sees.
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.db.url, sql).await
    }
}

/// The fixtures folder of GitHub's example payloads, by event.
pub fn payload_fixtures() -> Vec<(String, PathBuf)> {
    let root = crate::repository_root().join("fixtures/github/payloads");
    let mut out = Vec::new();
    for event_dir in std::fs::read_dir(&root).expect("fixtures").flatten() {
        if !event_dir.path().is_dir() {
            continue;
        }
        let event = event_dir.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(event_dir.path()).expect("event dir").flatten() {
            out.push((event.clone(), file.path()));
        }
    }
    out.sort();
    out
}

pub fn fixture(relative: &str) -> Vec<u8> {
    let path = crate::repository_root().join("fixtures/github/payloads").join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
