//! The `prmonitor` binary itself: start-up errors, several instances on a
//! fresh database, graceful shutdown.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use prmonitor_testkit::{count, sign, Serve, TestDatabase};

use crate::PRMONITOR;

async fn start_serve(db: &TestDatabase) -> Serve {
    PRMONITOR.start(&["serve", "--no-worker"], db, &[]).await
}

#[tokio::test]
async fn serve_with_github_access_but_without_a_webhook_secret_exits_2_naming_the_setting() {
    let db = TestDatabase::unique();
    // Without any GitHub access `serve` starts for /setup; with a token it
    // needs the secret of the App's webhook.
    let env = [("DATABASE_URL", db.url.as_str()), ("PRMONITOR_GITHUB_TOKEN", "ghp_x")];
    let output = PRMONITOR.command(&["serve"], &env).output().await.expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("PRMONITOR_WEBHOOK_SECRETS"), "{stderr}");
    assert!(!db.exists().await, "nothing was started");
}

#[tokio::test]
async fn malformed_settings_exit_2_naming_the_setting_and_not_the_secret() {
    let cases = [
        ("PRMONITOR_DB_POOL_SIZE", "lots"),
        ("PRMONITOR_LISTEN", "everywhere"),
        ("PRMONITOR_LOG_FORMAT", "yaml"),
        ("DATABASE_URL", "mysql://root:db-password@localhost/x"),
    ];
    for (key, value) in cases {
        let mut env = vec![("PRMONITOR_WEBHOOK_SECRETS", "s3cr3t-value")];
        env.push((key, value));
        let output = PRMONITOR.command(&["serve"], &env).output().await.expect("run");
        assert_eq!(output.status.code(), Some(2), "{key}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(!stderr.contains("s3cr3t-value") && !stderr.contains("db-password"), "{stderr}");
    }
    let missing_file = PRMONITOR
        .command(&["--config", "/nonexistent/prmonitor.toml", "migrate"], &[])
        .output()
        .await
        .expect("run");
    assert_eq!(missing_file.status.code(), Some(2));
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    let db = TestDatabase::unique();
    for _ in 0..2 {
        let output =
            PRMONITOR.command(&["migrate"], &[("DATABASE_URL", &db.url)]).output().await.expect("run");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(db.exists().await);
    assert_eq!(count(&db.url, "SELECT count(*) FROM __diesel_schema_migrations").await, migrations());
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations'").await,
        17,
        "the seven tables of DESIGN.md §4, sweep_repairs, delivery_recovery, delivery_redelivery_requests, \
         commit_statuses, status_history, required_checks, merge_groups, change_events, github_apps, setup_states"
    );
}

#[tokio::test]
async fn two_instances_started_at_once_on_a_fresh_database_both_become_ready() {
    let db = TestDatabase::unique();
    assert!(!db.exists().await);
    let (mut first, mut second) = tokio::join!(start_serve(&db), start_serve(&db));
    let client = reqwest::Client::new();
    tokio::join!(first.wait_ready(&client), second.wait_ready(&client));
    assert_eq!(count(&db.url, "SELECT count(*) FROM __diesel_schema_migrations").await, migrations());

    // Both take deliveries into the one database.
    for serve in [&first, &second] {
        let body = br#"{"action":"opened","number":1,"pull_request":{"number":1},"repository":{"id":5,"full_name":"o/r"}}"#;
        let response = client
            .post(format!("http://{}/webhooks/github", serve.address))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", prmonitor_testkit::new_delivery_id())
            .header("x-hub-signature-256", sign(body))
            .body(body.to_vec())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 202);
    }
    assert_eq!(count(&db.url, "SELECT count(*) FROM webhook_deliveries").await, 2);
    assert_eq!(count(&db.url, "SELECT coalesced_count FROM jobs").await, 2);

    first.terminate();
    second.terminate();
    assert_eq!(first.exit_code().await, Some(0));
    assert_eq!(second.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let db = TestDatabase::migrated().await;
    let mut serve = start_serve(&db).await;
    serve.wait_ready(&reqwest::Client::new()).await;

    let body = br#"{"action":"opened","number":2,"pull_request":{"number":2},"repository":{"id":5,"full_name":"o/r"}}"#;
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-github-event: pull_request\r\nx-github-delivery: {}\r\nx-hub-signature-256: {}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        serve.address,
        prmonitor_testkit::new_delivery_id(),
        sign(body),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&serve.address).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(&body[..10]).await.expect("write part of the body");
    // The request is now in flight: the handler waits for the rest of the body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&body[10..]).await.expect("write the rest");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");

    assert_eq!(serve.exit_code().await, Some(0));
    assert_eq!(count(&db.url, "SELECT count(*) FROM webhook_deliveries").await, 1);
    let logs = serve.logs.lock().expect("lock");
    assert!(
        logs.iter().any(|l| l["message"] == "stopping: finishing in-flight requests and jobs"),
        "{logs:?}"
    );
    // Each delivery logs one line with its id, event, action, repository, outcome and latency.
    let line = logs.iter().find(|l| l["message"] == "delivery accepted").expect("delivery line");
    for field in ["event", "action", "repository", "outcome", "latency_ms"] {
        assert!(!line[field].is_null(), "{field} missing from {line}");
    }
    assert!(line["span"]["delivery_id"].is_string(), "{line}");
}

#[tokio::test]
async fn the_demo_prints_its_table_and_exits_0() {
    let db = TestDatabase::unique();
    let output = PRMONITOR
        .command(&["demo", "--exit"], &[("DATABASE_URL", &db.url), ("PRMONITOR_LISTEN", "127.0.0.1:0")])
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("Retitled while the webhook was lost"), "the lost webhook was healed: {stdout}");
    assert!(stdout.contains("failing") && stdout.contains("passing"), "{stdout}");
    assert!(stdout.contains("GitHub API calls:"), "{stdout}");
    assert_eq!(count(&db.url, "SELECT count(*) FROM repositories").await, 2);
}

/// The migrations the binary embeds: one directory each.
fn migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let entries = std::fs::read_dir(dir).expect("migrations directory");
    entries.filter_map(Result::ok).filter(|e| e.path().join("up.sql").exists()).count() as i64
}

/// A PostgreSQL URL whose server refuses connections (a port nothing listens on).
fn refused_database_url(query: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // The listener is dropped here: the port is closed when the command connects.
    format!("postgres://app@127.0.0.1:{port}/configured_db{query}")
}

#[tokio::test]
async fn a_runtime_error_is_one_line_with_its_cause_naming_the_configured_database() {
    for (args, format) in
        [(&["migrate"][..], "text"), (&["jobs", "list"][..], "text"), (&["migrate"][..], "json")]
    {
        let url = refused_database_url("?password=query-password&sslmode=disable");
        let output = PRMONITOR
            .command(args, &[("DATABASE_URL", &url), ("PRMONITOR_LOG_FORMAT", format)])
            .output()
            .await
            .expect("run");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?} {format}: printed once: {stderr}");
        assert!(stderr.contains("Connection refused"), "{args:?}: the cause is kept: {stderr}");
        assert!(stderr.contains("/configured_db"), "{args:?}: names the configured database: {stderr}");
        assert!(!stderr.contains("/postgres"), "{args:?}: not the maintenance database: {stderr}");
        assert!(!stderr.contains("query-password"), "{args:?}: the password leaked: {stderr}");
        if format == "json" {
            let line: Value = serde_json::from_str(stderr.trim()).expect("one JSON object");
            assert_eq!(line["level"], "ERROR");
        }
    }
}

#[tokio::test]
async fn unknown_job_states_are_refused_and_an_empty_reconcile_says_so() {
    let db = TestDatabase::migrated().await;
    let bogus = PRMONITOR
        .command(&["jobs", "list", "--state", "bogus"], &[("DATABASE_URL", &db.url)])
        .output()
        .await
        .expect("run");
    assert_eq!(bogus.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bogus.stderr);
    assert!(stderr.contains("bogus") && stderr.contains("dead"), "names the value and the choices: {stderr}");

    let dead = PRMONITOR
        .command(&["jobs", "list", "--state", "dead"], &[("DATABASE_URL", &db.url)])
        .output()
        .await
        .expect("run");
    assert!(dead.status.success(), "{}", String::from_utf8_lossy(&dead.stderr));

    let empty =
        PRMONITOR.command(&["reconcile", "--all"], &[("DATABASE_URL", &db.url)]).output().await.expect("run");
    assert!(empty.status.success(), "{}", String::from_utf8_lossy(&empty.stderr));
    let stdout = String::from_utf8_lossy(&empty.stdout);
    assert!(stdout.contains("nothing to sweep"), "says what happened: {stdout:?}");
}

#[tokio::test]
async fn sigterm_stops_the_demo_as_ctrl_c_does() {
    let db = TestDatabase::unique();
    let mut demo =
        PRMONITOR.command(&["demo"], &[("DATABASE_URL", &db.url)]).spawn().expect("start the demo");
    let mut stdout = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let serving = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.contains("Still serving") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the demo reaches its serving state");
    assert!(serving, "the demo ended before serving");
    let pid = demo.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = tokio::time::timeout(Duration::from_secs(30), demo.wait())
        .await
        .expect("stops on SIGTERM")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn serve_without_any_github_setting_starts_for_setup_and_says_so() {
    let db = TestDatabase::unique();
    let serve = PRMONITOR.start(&["serve"], &db, &[("PRMONITOR_SECRET_KEY", &"ab".repeat(32))]).await;
    let pointed = serve.logs.lock().expect("lock").iter().any(|entry| {
        entry["message"].as_str().is_some_and(|m| m.contains("/setup") && m.contains("no GitHub App"))
    });
    assert!(pointed, "a log line points at /setup: {:?}", serve.logs.lock().expect("lock"));
    let page = reqwest::get(format!("http://{}/setup", serve.address)).await.expect("answered");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("id=\"start-setup\""));
    let logs = format!("{:?}", serve.logs.lock().expect("lock"));
    assert!(!logs.contains(&"ab".repeat(32)), "the secret key is not logged");
    serve.terminate();
}

#[tokio::test]
async fn a_worker_without_github_access_or_a_secret_key_exits_2_naming_both() {
    let db = TestDatabase::unique();
    let output = PRMONITOR.command(&["worker"], &[("DATABASE_URL", &db.url)]).output().await.expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PRMONITOR_GITHUB_APP_ID") && stderr.contains("PRMONITOR_SECRET_KEY"),
        "{stderr}"
    );
}

/// `--version` names the commit built: this checkout's HEAD, as git says it.
#[tokio::test]
async fn version_names_the_commit_it_was_built_from() {
    let output = PRMONITOR.command(&["--version"], &[]).output().await.expect("run");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    // Without git (a tarball build) the binary says `unknown`, as checked here.
    let commit = if git.status.success() {
        String::from_utf8_lossy(&git.stdout).trim().to_owned()
    } else {
        "unknown".to_owned()
    };
    assert_eq!(stdout.trim(), format!("prmonitor {} ({commit})", env!("CARGO_PKG_VERSION")));
}
