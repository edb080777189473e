//! `/healthz` and `/readyz`.

use serde_json::Value;

use prmonitor_testkit::{spawn_app, spawn_app_on, test_settings, TestDatabase};

#[tokio::test]
async fn healthz_and_readyz_answer_200_on_a_current_database() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let answer: Value = ready.json().await.expect("json");
    assert_eq!(answer["schema"], "current");
}

#[tokio::test]
async fn readyz_is_503_while_migrations_are_missing() {
    // A database that exists but was never migrated.
    let db = TestDatabase::unique();
    let mut conn = prmonitor_testkit::connect(&prmonitor_testkit::url_for("postgres")).await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!("CREATE DATABASE {}", prmonitor::db::quote_identifier(&db.name))),
        &mut conn,
    )
    .await
    .expect("create");
    let settings = test_settings(&db, &[]);
    let app = spawn_app_on(db, settings).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let answer: Value = ready.json().await.expect("json");
    assert!(
        answer["reason"].as_str().is_some_and(|r| r.starts_with("schema: migrations not applied")),
        "{answer}"
    );

    prmonitor::db::run_migrations(&app.db.database_url()).await.expect("migrate");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "ready as soon as the schema is current");
}
