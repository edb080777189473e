//! Installations: repositories the App is installed on are registered and
//! backfilled from GitHub, suspended ones left alone.

use std::time::Duration;

use github_sim::{Generate, SimConfig, Simulator};
use prmonitor::startup::{Components, Service};
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, start_service, webhook_target};
use prmonitor_testkit::TestWorld;
use prmonitor_testkit::{count, TestDatabase};

use crate::scenarios::{send_installation_event, CONVERGE, REPO};

#[tokio::test]
async fn an_installation_is_registered_and_backfilled() {
    let world = TestWorld::builder(2).prs(3, 2).unregistered().start().await;
    assert_eq!(world.count("SELECT count(*) FROM repositories").await, 0);
    world.install().await;
    world.settle().await;
    assert_eq!(world.count("SELECT count(*) FROM pull_requests").await, 6);
    assert_eq!(world.count("SELECT count(*) FROM check_runs").await, 12);
    // finish() compares every stored row with the simulator's world.
    world.finish().await;
}

#[tokio::test]
async fn a_repository_that_a_webhook_registers_before_its_installation_is_backfilled() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 8, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    let settings = settings_for(&db, &sim, &[]);
    // No scheduler: the backfill must follow from the registration, not from a sweep.
    let pool = prmonitor::db::build_pool(&db.database_url(), settings.db_pool_size).expect("pool");
    let service = Service::start(&settings, pool, Components { http: true, worker: true, scheduler: false })
        .expect("service");
    let address = service.address().expect("http").to_string();
    sim.set_webhook(Some(webhook_target(&address)));
    // One PR's webhook, before any installation event: it registers the repository.
    sim.label(REPO, 1, "bug").expect("label");
    sim.wait_for_deliveries().await;
    converge(&db.url, &sim, CONVERGE)
        .await
        .unwrap_or_else(|d| panic!("PRs no webhook named are missing: {d}"));
    assert_eq!(count(&db.url, "SELECT count(*) FROM pull_requests").await, 8);
    // The installation's job comes later and finds the repository read already.
    assert_eq!(send_installation_event(&address, "created").await, 202);
    drain(&db.url, CONVERGE).await;
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'backfill'").await, 1, "read once");
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE state <> 'done'").await, 0);
    service.stop().await;
}

#[tokio::test]
async fn an_installation_is_registered_and_backfilled_then_suspended_and_left_alone() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 3, pull_requests: 12, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    let settings = settings_for(&db, &sim, &[("PRMONITOR_SWEEP_INTERVAL", "2s")]);
    let service = start_service(&db, &settings).await;
    let address = service.address().expect("http").to_string();
    let send = |action: &'static str| send_installation_event(&address, action);
    assert_eq!(send("created").await, 202);
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("the backfill did not complete: {d}"));
    assert_eq!(count(&db.url, "SELECT count(*) FROM repositories WHERE active").await, 3);
    drain(&db.url, CONVERGE).await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'backfill' AND state = 'done'").await,
        3
    );

    assert_eq!(send("suspend").await, 202);
    let started = std::time::Instant::now();
    while count(&db.url, "SELECT count(*) FROM repositories WHERE active").await > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never deactivated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sweeps_before = count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'sweep'").await;
    // Several sweep intervals pass: nothing is scheduled for suspended repositories.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'sweep'").await, sweeps_before);
    assert_eq!(count(&db.url, "SELECT count(*) FROM pull_requests").await, 36, "data is kept");
    service.stop().await;
}

/// Waits until `sql` (a count) reaches `want`, at most 20 s.
async fn wait_for_count(world: &TestWorld, sql: &str, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = world.count(sql).await;
        if got == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{sql}: {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_installation_webhook_lost_while_down_is_recovered_when_the_service_starts() {
    // No `installation` delivery is ever sent: the App's installations are
    // listed at start-up.
    let world = TestWorld::builder(2)
        .prs(3, 2)
        .unregistered()
        .setting("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "1h")
        .start()
        .await;
    wait_for_count(&world, "SELECT count(*) FROM repositories WHERE active", 2).await;
    world.settle().await;
    assert_eq!(world.count("SELECT count(*) FROM pull_requests").await, 6);
    assert_eq!(world.count("SELECT count(*) FROM check_runs").await, 12);
    assert_eq!(
        world.count("SELECT count(*) FROM jobs WHERE kind = 'installations' AND state = 'done'").await,
        1
    );
    // finish() compares every stored row with the simulator's world.
    world.finish().await;
}

#[tokio::test]
async fn an_installation_deleted_while_down_is_deactivated_by_the_next_listing() {
    let world = TestWorld::builder(2).setting("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "1h").start().await;
    wait_for_count(&world, "SELECT count(*) FROM jobs WHERE kind = 'installations' AND state = 'done'", 1)
        .await;
    world.settle().await;
    assert_eq!(world.count("SELECT count(*) FROM repositories WHERE active").await, 2);
    // Uninstalled without a webhook reaching the service.
    world.github.without_webhooks(|w| {
        w.installations.clear();
        Ok(())
    });
    let mut conn = prmonitor_testkit::database::connect(&world.db.url).await;
    prmonitor::queue::enqueue(&mut conn, &prmonitor::queue::NewJob::installations()).await.expect("enqueued");
    world.settle().await;
    assert_eq!(
        world.count("SELECT count(*) FROM repositories WHERE active").await,
        0,
        "its repositories are deactivated"
    );
}

#[tokio::test]
async fn the_installations_are_listed_once_per_interval_for_all_instances_and_only_for_an_app() {
    let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
    let db = TestDatabase::migrated().await;
    let settings = settings_for(&db, &sim, &[("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "1h")]);
    let pool = prmonitor::db::build_pool(&settings.database_url, 2).expect("pool");
    let first = prmonitor::scheduler::Scheduler::new(pool.clone(), settings.worker.clone(), &settings.github);
    let second =
        prmonitor::scheduler::Scheduler::new(pool.clone(), settings.worker.clone(), &settings.github);
    assert!(first.schedule_installation_sync().await.expect("schedule"), "at start-up");
    assert!(
        !second.schedule_installation_sync().await.expect("schedule"),
        "another instance: one is pending"
    );
    let listing = "SELECT count(*) FROM jobs WHERE kind = 'installations'";
    assert_eq!(count(&db.url, listing).await, 1);
    let mut conn = prmonitor_testkit::database::connect(&db.url).await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE jobs SET state = 'done', finished_at = now() - interval '30 minutes'"),
        &mut conn,
    )
    .await
    .expect("done");
    assert!(!first.schedule_installation_sync().await.expect("schedule"), "listed within the interval");
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE jobs SET finished_at = now() - interval '61 minutes'"),
        &mut conn,
    )
    .await
    .expect("older");
    assert!(first.schedule_installation_sync().await.expect("schedule"), "the interval has passed");
    // A token has no installations to list.
    let token = settings_for(&db, &sim, &[("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "1h")]);
    let mut token = token;
    token.github.auth = Some(prmonitor::config::GitHubAuth::Token(prmonitor::config::Secret::new("ghp_x")));
    let with_token = prmonitor::scheduler::Scheduler::new(pool, token.worker.clone(), &token.github);
    diesel_async::RunQueryDsl::execute(diesel::sql_query("DELETE FROM jobs"), &mut conn)
        .await
        .expect("cleared");
    assert!(!with_token.schedule_installation_sync().await.expect("schedule"));
    sim.stop().await;
}

#[tokio::test]
async fn with_a_token_the_named_repositories_are_registered_and_backfilled_without_any_webhook() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 3, pull_requests: 3, check_runs: 2 }),
        static_token: Some("ghp_sim_token".into()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    let mut settings = settings_for(&db, &sim, &[("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "1h")]);
    settings.github.auth =
        Some(prmonitor::config::GitHubAuth::Token(prmonitor::config::Secret::new("ghp_sim_token")));
    settings.worker.repositories = vec!["acme/repo-0".into(), "acme/repo-2".into()];
    let service = start_service(&db, &settings).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(&db.url, "SELECT count(*) FROM repositories WHERE active AND installation_id IS NULL").await
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "the named repositories were never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drain(&db.url, CONVERGE).await;
    for name in ["repo-0", "repo-2"] {
        let id = sim.repo_id(&format!("acme/{name}")).expect("repo");
        prmonitor_testkit::verify::diff(&db.url, &sim, id).await.expect("backfilled");
    }
    assert_eq!(count(&db.url, "SELECT count(*) FROM repositories").await, 2, "only the named ones");
    service.stop().await;
    sim.stop().await;
}
