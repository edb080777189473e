//! A fresh database per test.
//!
//! Databases are copies of a template that is migrated once per schema
//! version (its name carries a hash of migrations/), so a test pays for a
//! `CREATE DATABASE … TEMPLATE`, not for the migrations. The server comes from
//! `TEST_DATABASE_URL`, else `DATABASE_URL`, else the local PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prmonitor::config::DatabaseUrl;
use prmonitor::db::{self, quote_identifier};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

const TEST_DB_PREFIX: &str = "prmonitor_test_";
const TEMPLATE_PREFIX: &str = "prmonitor_template_";
/// Serializes template creation across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x7072_6d74_6d70_6c74;
/// First key of the advisory locks that mark a template in use (the second
/// is the hash of its name): every test process holds its template's lock
/// shared; a template is dropped only by whoever can take it exclusively.
const TEMPLATE_IN_USE_CLASS: i32 = 0x7072_6d74;

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

pub async fn maintenance() -> AsyncPgConnection {
    connect(&url_for("postgres")).await
}

pub async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

fn migrations_hash() -> String {
    let dir = crate::repository_root().join("migrations");
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
            hold_in_use(&name);
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

/// Marks template `name` in use for as long as this process lives: a shared
/// advisory lock on a connection of its own, on a thread of its own (a test's
/// runtime ends with the test, and its connections with it). Returns once the
/// lock is held.
fn hold_in_use(name: &str) {
    let (url, name) = (url_for("postgres"), name.to_owned());
    let (held, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let mut conn = connect(&url).await;
            diesel::sql_query(format!(
                "SELECT pg_advisory_lock_shared({TEMPLATE_IN_USE_CLASS}, hashtext($1))"
            ))
            .bind::<Text, _>(&name)
            .execute(&mut conn)
            .await
            .expect("mark the template in use");
            let _ = held.send(());
            // The connection (and the lock) lasts until the process exits.
            std::future::pending::<()>().await;
        });
    });
    wait.recv().expect("the template lock thread started");
}

/// Whether no other process uses template `name` (its in-use lock is free);
/// the lock taken to find out is released at once.
async fn unused(conn: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(QueryableByName)]
    struct Free {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        free: bool,
    }
    let free: Free = diesel::sql_query(format!(
        "SELECT pg_try_advisory_lock({TEMPLATE_IN_USE_CLASS}, hashtext($1)) AS free"
    ))
    .bind::<Text, _>(name)
    .get_result(conn)
    .await
    .expect("try the template lock");
    if free.free {
        diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_IN_USE_CLASS}, hashtext($1))"))
            .bind::<Text, _>(name)
            .execute(conn)
            .await
            .expect("release the template lock");
    }
    free.free
}

/// Drops test databases whose process is gone and templates of other schemas
/// that no running test process uses (tests of two checkouts may share a
/// server).
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
            name != current_template && !name.ends_with("_building") && unused(conn, &name).await
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

/// A number from a new connection to `url`: what is committed, not what a
/// pool sees. `sql` is a scalar expression, e.g. `SELECT count(*) FROM jobs`.
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
