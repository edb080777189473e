//! The test harness: a fresh database per test, the real application on port 0,
//! and helpers to sign and send deliveries.
//!
//! Databases are copies of a template that is migrated once per schema
//! version (its name carries a hash of migrations/), so a test pays for a
//! `CREATE DATABASE … TEMPLATE`, not for the migrations. The server comes from
//! `TEST_DATABASE_URL`, else `DATABASE_URL`, else the local PostgreSQL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prmonitor::config::{DatabaseUrl, Secret, Settings};
use prmonitor::db::{self, quote_identifier};
use prmonitor::startup::Application;
use prmonitor::webhook::signature;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

pub const TEST_SECRET: &str = "test webhook secret";
const TEST_DB_PREFIX: &str = "prmonitor_test_";
const TEMPLATE_PREFIX: &str = "prmonitor_template_";
/// Serializes template creation across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x7072_6d74_6d70_6c74;

/// The PostgreSQL server tests run against, as a URL whose database is to be replaced.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `server_url()` pointed at database `name`.
pub fn url_for(name: &str) -> String {
    let mut url = url::Url::parse(&server_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

pub async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn maintenance() -> AsyncPgConnection {
    connect(&url_for("postgres")).await
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.strip_prefix(&dir).expect("below migrations/").to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).expect("read migration"));
    }
    hex::encode(&hasher.finalize()[..6])
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The migrated template's name, creating it on first use.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("{TEMPLATE_PREFIX}{}", migrations_hash());
            let mut conn = maintenance().await;
            execute(&mut conn, &format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})")).await;
            drop_leftovers(&mut conn, &name).await;
            let exists: Vec<Name> =
                diesel::sql_query("SELECT datname AS name FROM pg_database WHERE datname = $1")
                    .bind::<Text, _>(&name)
                    .load(&mut conn)
                    .await
                    .expect("look up template");
            if exists.is_empty() {
                // Built under another name and renamed when complete, so a run
                // that dies half-way never leaves a half-migrated template.
                let building = format!("{name}_building");
                execute(
                    &mut conn,
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(&building)),
                )
                .await;
                execute(&mut conn, &format!("CREATE DATABASE {}", quote_identifier(&building))).await;
                let url = DatabaseUrl::parse(&url_for(&building)).expect("valid url");
                db::run_migrations(&url).await.expect("migrate the template");
                execute(
                    &mut conn,
                    &format!(
                        "ALTER DATABASE {} RENAME TO {}",
                        quote_identifier(&building),
                        quote_identifier(&name)
                    ),
                )
                .await;
            }
            execute(&mut conn, &format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})")).await;
            name
        })
        .await
}

/// Drops test databases whose process is gone and templates of other schemas.
async fn drop_leftovers(conn: &mut AsyncPgConnection, current_template: &str) {
    let names: Vec<Name> = diesel::sql_query(
        "SELECT datname AS name FROM pg_database WHERE datname LIKE 'prmonitor\\_test\\_%' OR datname LIKE 'prmonitor\\_template\\_%'",
    )
    .load(conn)
    .await
    .expect("list databases");
    for Name { name } in names {
        let stale = if let Some(rest) = name.strip_prefix(TEST_DB_PREFIX) {
            let pid = rest.split('_').next().unwrap_or("");
            !Path::new("/proc").join(pid).exists()
        } else {
            name != current_template && !name.ends_with("_building")
        };
        if stale {
            execute(conn, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(&name))).await;
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, dropped when the value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A migrated database, copied from the template.
    pub async fn migrated() -> Self {
        let template = template().await;
        let db = Self::unique();
        let mut conn = maintenance().await;
        let sql =
            format!("CREATE DATABASE {} TEMPLATE {}", quote_identifier(&db.name), quote_identifier(template));
        // The template's last connection may still be closing on the server.
        for attempt in 0.. {
            match diesel::sql_query(&sql).execute(&mut conn).await {
                Ok(_) => break,
                Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{sql}: {e}"),
            }
        }
        db
    }

    /// A name no database has yet: for tests of creating one.
    pub fn unique() -> Self {
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let url = url_for(&name);
        Self { name, url }
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url).expect("valid url")
    }

    pub async fn exists(&self) -> bool {
        let mut conn = maintenance().await;
        let rows: Vec<Name> = diesel::sql_query("SELECT datname AS name FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(&self.name)
            .load(&mut conn)
            .await
            .expect("look up database");
        !rows.is_empty()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on itself:
        // a thread with its own runtime does the DROP.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(&self.name));
        let joined = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut conn = maintenance().await;
                diesel::sql_query(&sql).execute(&mut conn).await.map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = joined {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

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
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
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

pub async fn count(url: &str, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let mut conn = connect(url).await;
    let row: Count = diesel::sql_query(format!("SELECT ({sql})::BIGINT AS count"))
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.count
}

/// The fixtures folder of GitHub's example payloads, by event.
pub fn payload_fixtures() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github/payloads");
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
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github/payloads").join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
