//! PostgreSQL: the pool, embedded migrations, database creation, readiness.
//!
//! Queries live in the submodules and take `&mut AsyncPgConnection`, so the
//! caller decides which transaction they run in.

pub mod change_events;
pub mod deliveries;
pub mod merge_groups;
pub mod pull_requests;
pub mod reads;
pub mod repairs;
pub mod repositories;
pub mod schema;
pub mod statuses;

use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Text};
use diesel::QueryableByName;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;

pub type DbPool = Pool<AsyncPgConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Session-level advisory lock key that serializes migrations across instances
/// ("prmonitr" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7072_6d6f_6e69_7472;

/// Waiting for a free connection: long enough to ride out a burst, short
/// enough that a webhook still gets an answer within GitHub's 10 s.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Opening a connection: PostgreSQL answers in milliseconds when it is up, and
/// an unreachable server must turn into a 503 within 2 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Checking an idle connection before handing it out (`SELECT 1`).
pub const RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections opened outside the pool (creating the database, migrations).
const SETUP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

/// Makes a hand-written statement (a struct whose `QueryFragment` pushes
/// fixed SQL and its binds) one diesel prepares once per connection and
/// caches by its text. diesel never caches `sql_query`, `UPDATE`s or upserts:
/// PostgreSQL parsed and planned them on every call, and for the hot ones
/// that cost about as much as running them.
macro_rules! prepared_statement {
    ($name:ident) => {
        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }
    };
}
pub(crate) use prepared_statement;

/// Opens a connection. A failure keeps its whole cause ("error connecting
/// to server: Connection refused (os error 111)"): diesel-async's own
/// `establish` keeps only the first words, which tell an operator nothing.
pub async fn establish(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(error_chain(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// An error and its sources, one after another: `outer: inner: root`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether `error` means "the database is away" (trying later may work)
/// rather than "the database refused this": a lost connection, or the server
/// shutting down, starting up, recovering or full. diesel keeps PostgreSQL's
/// message but not its SQLSTATE, so the shutdown family (class 57P, and
/// 53300 too many connections) is recognised by the server's own words.
pub fn is_unavailable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    const AWAY: [&str; 7] = [
        "terminating connection", // 57P01 admin shutdown, 57P02 crash of another backend
        "the database system is", // 57P03: shutting down, starting up, in recovery mode…
        "not yet accepting connections",
        "too many clients already", // 53300
        "connection closed",
        "connection reset",
        "server closed the connection",
    ];
    match error {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            AWAY.iter().any(|words| message.contains(words))
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// A pooled connection, or why none could be had, in one line (the pool's
/// own error repeats its cause once in its message and again as its source).
pub async fn connection(
    pool: &DbPool,
) -> Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>, DbError> {
    use diesel_async::pooled_connection::deadpool::PoolError;
    pool.get().await.map_err(|error| {
        DbError::Unavailable(match error {
            PoolError::Backend(cause) => error_chain(&cause),
            PoolError::Timeout(_) => format!("no connection within {POOL_WAIT_TIMEOUT:?}"),
            other => error_chain(&other),
        })
    })
}

/// A pool with explicit timeouts: nothing waits on the database unbounded.
pub fn build_pool(url: &DatabaseUrl, max_size: usize) -> Result<DbPool, DbError> {
    let mut config = diesel_async::pooled_connection::ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(|url| Box::pin(establish(url)));
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url.expose(), config);
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(RECYCLE_TIMEOUT))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

async fn connect(url: &str, redacted: &str) -> Result<AsyncPgConnection, DbError> {
    let connect_error = |reason: String| DbError::Connect { url: redacted.to_owned(), reason };
    match tokio::time::timeout(SETUP_CONNECT_TIMEOUT, establish(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(e.to_string())),
        Err(_) => Err(connect_error(format!("no answer within {SETUP_CONNECT_TIMEOUT:?}"))),
    }
}

/// Creates the database that `url` names when it does not exist yet, through
/// the server's `postgres` database. Returns whether it created it. Safe to run
/// from several instances at once.
pub async fn create_database_if_missing(url: &DatabaseUrl) -> Result<bool, DbError> {
    let (maintenance_url, name) = maintenance_url(url.expose())?;
    // Errors name the database the operator configured, not the maintenance one.
    let mut conn = connect(&maintenance_url, &url.redacted()).await?;
    if database_exists(&mut conn, &name).await? {
        return Ok(false);
    }
    let create = format!("CREATE DATABASE {}", quote_identifier(&name));
    match diesel::sql_query(create).execute(&mut conn).await {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(true)
        }
        // Another instance created it between our check and our CREATE.
        Err(_) if database_exists(&mut conn, &name).await? => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool, DbError> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let row: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(conn)
            .await?;
    Ok(row.exists)
}

/// The same server's `postgres` database, and the name of the one `url` names.
pub fn maintenance_url(url: &str) -> Result<(String, String), DbError> {
    let invalid = |reason: &str| DbError::Connect { url: "DATABASE_URL".into(), reason: reason.into() };
    let mut parsed = url::Url::parse(url).map_err(|_| invalid("not a URL"))?;
    let encoded = parsed.path().trim_start_matches('/').to_owned();
    let name = url::form_urlencoded::parse(format!("n={encoded}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("names no database"))?;
    parsed.set_path("/postgres");
    Ok((parsed.to_string(), name))
}

/// `"name"` with embedded quotes doubled: identifiers cannot be bound as parameters.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies the embedded migrations that are not applied yet, holding an
/// advisory lock so that instances starting together take turns. Returns the
/// versions applied by this call.
pub async fn run_migrations(url: &DatabaseUrl) -> Result<Vec<String>, DbError> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || run_migrations_blocking(&url))
        .await
        .map_err(|e| DbError::Migration(format!("the migration task failed: {e}")))?
}

fn run_migrations_blocking(url: &DatabaseUrl) -> Result<Vec<String>, DbError> {
    // diesel's migration harness is synchronous; the wrapper drives the async
    // connection from this blocking thread.
    let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(url.expose())
        .map_err(|e| DbError::Connect { url: url.redacted(), reason: e.to_string() })?;
    // The synchronous RunQueryDsl: this connection is driven from a blocking thread.
    diesel::RunQueryDsl::execute(
        diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<BigInt, _>(MIGRATION_LOCK_KEY),
        &mut conn,
    )
    .map_err(DbError::Query)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| DbError::Migration(e.to_string()));
    // Closing the connection would release the lock too; unlock explicitly so
    // the next instance does not wait for the socket to be torn down.
    let unlocked = diesel::RunQueryDsl::execute(
        diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(MIGRATION_LOCK_KEY),
        &mut conn,
    );
    drop(conn);
    let applied = applied?;
    unlocked.map_err(DbError::Query)?;
    Ok(applied)
}

/// The versions of the migrations built into this binary.
pub fn embedded_versions() -> Result<Vec<String>, DbError> {
    let migrations = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(migrations.iter().map(|m| m.name().version().to_string()).collect())
}

/// Embedded migrations that the database has not applied (empty: schema current).
pub async fn pending_migrations(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let table_exists: Vec<Version> = diesel::sql_query(
        "SELECT 'x' AS version FROM pg_tables WHERE schemaname = current_schema() AND tablename = '__diesel_schema_migrations'",
    )
    .load(conn)
    .await?;
    let applied: Vec<String> = if table_exists.is_empty() {
        Vec::new()
    } else {
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load::<Version>(conn)
            .await?
            .into_iter()
            .map(|v| v.version)
            .collect()
    };
    Ok(embedded_versions()?.into_iter().filter(|v| !applied.contains(v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_url_swaps_the_database_and_decodes_its_name() {
        let (url, name) = maintenance_url("postgres://u:p@h:5432/my%20db?sslmode=disable").expect("valid");
        assert_eq!(url, "postgres://u:p@h:5432/postgres?sslmode=disable");
        assert_eq!(name, "my db");
        assert!(maintenance_url("postgres://h:5432/").is_err());
    }

    #[test]
    fn shutdown_and_lost_connections_mean_unavailable() {
        use diesel::result::{DatabaseErrorKind, Error};
        let error = |kind, message: &str| Error::DatabaseError(kind, Box::new(message.to_owned()));
        for message in [
            "terminating connection due to administrator command",
            "terminating connection because of crash of another server process",
            "the database system is shutting down",
            "the database system is starting up",
            "the database system is not yet accepting connections",
            "sorry, too many clients already",
        ] {
            assert!(is_unavailable(&error(DatabaseErrorKind::Unknown, message)), "{message}");
        }
        assert!(is_unavailable(&error(DatabaseErrorKind::ClosedConnection, "gone")));
        assert!(is_unavailable(&error(DatabaseErrorKind::UnableToSendCommand, "error communicating")));
        for refused in [
            error(DatabaseErrorKind::CheckViolation, "new row violates check constraint"),
            error(DatabaseErrorKind::Unknown, "invalid byte sequence for encoding \"UTF8\": 0x00"),
            error(DatabaseErrorKind::UniqueViolation, "duplicate key value"),
        ] {
            assert!(!is_unavailable(&refused), "{refused}");
        }
    }

    #[test]
    fn identifiers_are_quoted_against_injection() {
        assert_eq!(quote_identifier("prmonitor"), "\"prmonitor\"");
        assert_eq!(quote_identifier("a\"; DROP DATABASE x; --"), "\"a\"\"; DROP DATABASE x; --\"");
    }

    #[test]
    fn the_schema_migration_is_embedded() {
        let versions = embedded_versions().expect("embedded");
        assert!(!versions.is_empty());
    }
}
