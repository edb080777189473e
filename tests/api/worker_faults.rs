//! Workers under faults and at scale: connections terminated, a job that
//! keeps failing, a service killed with SIGKILL, two worker processes on one
//! queue, and the delivery id on every log line of the job it became.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use github_sim::NewPr;
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, start_service, webhook_target};
use prmonitor_testkit::{connect, count};
use serde_json::Value;

use crate::scenarios::{child_env, churn, play_script, world, CONVERGE, REPO};

#[tokio::test]
async fn terminated_database_connections_lose_nothing() {
    let (sim, db) = world(1).await;
    let service = start_service(&db, &settings_for(&db, &sim, &[])).await;
    sim.set_webhook(Some(webhook_target(&service.address().expect("http").to_string())));
    let name = db.name.clone();
    let killer = tokio::spawn(async move {
        let mut terminated = 0;
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let mut conn = connect(&prmonitor_testkit::url_for("postgres")).await;
            let sql = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            );
            terminated += diesel::sql_query(sql).execute(&mut conn).await.unwrap_or(0);
        }
        terminated
    });
    play_script(&sim, REPO, 40);
    sim.wait_for_deliveries().await;
    let terminated = killer.await.expect("killer");
    assert!(terminated > 0, "no connection was terminated");
    // Deliveries refused while the database was away are GitHub's failed
    // deliveries: redelivered, as an operator would.
    for _ in 0..5 {
        if sim.redeliver_failed() == 0 {
            break;
        }
        sim.wait_for_deliveries().await;
    }
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("never converged: {d}"));
    drain(&db.url, CONVERGE).await;
    println!("{terminated} connections terminated during the run");
    service.stop().await;
}

#[tokio::test]
async fn a_failing_job_is_dead_lettered_and_jobs_retry_brings_it_back() {
    let (sim, db) = world(1).await;
    let settings = settings_for(&db, &sim, &[]);
    let service = start_service(&db, &settings).await;
    let id = {
        let mut conn = connect(&db.url).await;
        let job = prmonitor::queue::NewJob {
            kind: prmonitor::queue::JobKind::Event,
            coalesce_key: None,
            payload: serde_json::json!({ "target": "no_such_target" }),
            max_attempts: 3,
        };
        prmonitor::queue::enqueue(&mut conn, &job).await.expect("enqueue").id
    };
    let started = std::time::Instant::now();
    while count(&db.url, &format!("SELECT count(*) FROM jobs WHERE id = {id} AND state = 'dead'")).await == 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the job never died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.stop().await;
    let attempts = count(&db.url, &format!("SELECT attempts FROM jobs WHERE id = {id}")).await;
    assert_eq!(attempts, 3);
    let mut conn = connect(&db.url).await;
    let job = prmonitor::queue::get(&mut conn, id).await.expect("get").expect("job");
    assert!(job.last_error.as_deref().is_some_and(|e| e.contains("bad event payload")), "{job:?}");

    let output = crate::PRMONITOR
        .command(&["jobs", "retry", &id.to_string()], &[("DATABASE_URL", &db.url)])
        .output()
        .await
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let job = prmonitor::queue::get(&mut conn, id).await.expect("get").expect("job");
    assert_eq!((job.state.as_str(), job.attempts), ("pending", 0));
    let listed = crate::PRMONITOR
        .command(&["jobs", "list", "--state", "pending"], &[("DATABASE_URL", &db.url)])
        .output()
        .await
        .expect("run");
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id.to_string()));
}

#[tokio::test]
async fn a_sigkilled_service_restarts_and_loses_nothing() {
    let (sim, db) = world(1).await;
    let env = child_env(&sim);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = crate::PRMONITOR.start(&["serve"], &db, &env_refs).await;
    sim.set_webhook(Some(webhook_target(&first.address)));
    // A slow GitHub keeps the worker behind the webhooks, so jobs are in flight at the kill.
    sim.set_faults(github_sim::Faults { latency_ms: 40, ..Default::default() });
    churn(&sim, REPO, 500, 11);
    sim.wait_for_deliveries().await;
    // Mid-stream: acknowledged jobs are pending or running right now.
    first.kill().await;
    let in_flight = count(&db.url, "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')").await;
    println!("{in_flight} jobs pending or running at the kill");

    assert!(in_flight > 0, "the kill came after all the work");
    sim.set_faults(github_sim::Faults::default());
    let second = crate::PRMONITOR.start(&["serve"], &db, &env_refs).await;
    sim.set_webhook(Some(webhook_target(&second.address)));
    churn(&sim, REPO, 500, 12);
    sim.wait_for_deliveries().await;
    assert!(sim.deliveries().iter().all(|d| d.statuses == [202]), "every delivery was acknowledged");
    converge(&db.url, &sim, Duration::from_secs(120))
        .await
        .unwrap_or_else(|d| panic!("never converged: {d}"));
    drain(&db.url, Duration::from_secs(60)).await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE outcome <> 'processed'").await,
        0,
        "no job lost"
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM jobs WHERE state NOT IN ('done')").await,
        0,
        "none stuck"
    );
    second.terminate();
}

#[tokio::test]
async fn two_worker_processes_complete_every_job_exactly_once() {
    let (sim, db) = world(2).await;
    let env = child_env(&sim);
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Long leases: no job is taken over, so each runs exactly once.
    env_refs.retain(|(k, _)| *k != "PRMONITOR_JOB_LEASE");
    env_refs.push(("PRMONITOR_JOB_LEASE", "120s"));
    env_refs.push(("PRMONITOR_WORKER_CONCURRENCY", "2"));
    let serve = crate::PRMONITOR.start(&["serve"], &db, &env_refs).await;
    let worker = crate::PRMONITOR.start(&["worker"], &db, &env_refs).await;
    sim.set_webhook(Some(webhook_target(&serve.address)));
    churn(&sim, "acme/repo-0", 1000, 21);
    churn(&sim, "acme/repo-1", 1000, 22);
    sim.wait_for_deliveries().await;
    assert!(sim.deliveries().len() >= 2000, "{} deliveries", sim.deliveries().len());
    converge(&db.url, &sim, Duration::from_secs(180))
        .await
        .unwrap_or_else(|d| panic!("never converged: {d}"));
    drain(&db.url, Duration::from_secs(60)).await;
    let jobs = count(&db.url, "SELECT count(*) FROM jobs").await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM jobs WHERE state = 'done' AND attempts = 1").await,
        jobs,
        "each job ran once"
    );
    let owners = count(&db.url, "SELECT count(DISTINCT lease_owner) FROM jobs").await;
    println!("{jobs} jobs for {} deliveries, completed by {owners} workers", sim.deliveries().len());
    assert_eq!(owners, 2, "both processes worked");
    serve.terminate();
    worker.terminate();
}

#[tokio::test]
async fn every_delivery_id_is_on_the_log_lines_of_the_job_that_processed_it() {
    let (sim, db) = world(1).await;
    let env = child_env(&sim);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Intake alone first, so that the deliveries coalesce into few jobs.
    let intake = crate::PRMONITOR.start(&["serve", "--no-worker"], &db, &env_refs).await;
    sim.set_webhook(Some(webhook_target(&intake.address)));
    let first = sim.open_pr(REPO, NewPr::new("First", "alice")).expect("open");
    let second = sim.open_pr(REPO, NewPr::new("Second", "bob")).expect("open");
    for label in ["a", "b", "c", "d"] {
        sim.label(REPO, first, label).expect("label");
        sim.label(REPO, second, label).expect("label");
    }
    sim.wait_for_deliveries().await;
    let deliveries: Vec<String> = sim.deliveries().iter().map(|d| d.delivery_id.clone()).collect();
    assert_eq!(deliveries.len(), 10);
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs").await, 2, "ten deliveries, one job per PR");

    let mut worker = crate::PRMONITOR.start(&["worker"], &db, &env_refs).await;
    drain(&db.url, CONVERGE).await;
    worker.terminate();
    assert_eq!(worker.exit_code().await, Some(0));
    let logs = worker.logs.lock().expect("logs").clone();
    let job_lines: Vec<&Value> = logs.iter().filter(|line| line.to_string().contains("\"job_id\"")).collect();
    assert!(job_lines.len() >= 4, "{logs:?}");
    for id in &deliveries {
        assert!(
            job_lines.iter().any(|line| line.to_string().contains(id.as_str())),
            "delivery {id} is on no processing line: {job_lines:?}"
        );
    }
    // Every line of a job's processing names its deliveries, not only the first.
    for line in &job_lines {
        let text = line.to_string();
        assert!(text.contains("\"delivery_ids\""), "a job line without its deliveries: {text}");
    }
    drop(intake);
}
