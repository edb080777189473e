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
