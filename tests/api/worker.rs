//! The living system: the simulator sends signed webhooks to the running
//! service, whose worker turns them into rows. Real PostgreSQL, real HTTP.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use github_sim::prng::SplitMix64;
use github_sim::{Generate, NewPr, SimConfig, Simulator};
use prmonitor::startup::{Components, Service};
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{
    drain, register_repositories, settings_for as live_settings, start_service as start,
    webhook_target as target, ADMIN_TOKEN,
};
use prmonitor_testkit::{connect, count, sign, TestDatabase};
use serde_json::Value;
const REPO: &str = "acme/repo-0";
const CONVERGE: Duration = Duration::from_secs(60);

fn key_file() -> String {
    format!("{}/fixtures/sim/app-private-key.pem", env!("CARGO_MANIFEST_DIR"))
}

fn child_env(sim: &Simulator) -> Vec<(&'static str, String)> {
    vec![
        ("PRMONITOR_GITHUB_API_URL", sim.api_url()),
        ("PRMONITOR_GITHUB_APP_ID", github_sim::SIM_APP_ID.to_string()),
        ("PRMONITOR_GITHUB_PRIVATE_KEY_FILE", key_file()),
        ("PRMONITOR_JOB_POLL_INTERVAL", "100ms".into()),
        ("PRMONITOR_JOB_LEASE", "3s".into()),
        ("PRMONITOR_JOB_RETRY_DELAY", "100ms".into()),
        ("PRMONITOR_SWEEP_INTERVAL", "1h".into()),
        ("PRMONITOR_DB_POOL_SIZE", "8".into()),
        ("RUST_LOG", "warn,prmonitor=info".into()),
    ]
}

/// A simulator with empty repositories, all registered and just swept, so
/// that webhooks alone drive what happens.
async fn world(repositories: usize) -> (Simulator, TestDatabase) {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories, pull_requests: 0, check_runs: 0 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    register_repositories(&db, &sim).await;
    (sim, db)
}

/// GitHub activity on `prs` new PRs: pushes, labels, check runs created,
/// started and completed, closes and merges.
fn play_script(sim: &Simulator, repo: &str, prs: usize) {
    let authors = ["alice", "bob", "carol"];
    let mut numbers = Vec::new();
    for i in 0..prs {
        let mut pr = NewPr::new(&format!("Change {i}"), authors[i % 3]);
        pr.body = Some(format!("Body {i}"));
        numbers.push(sim.open_pr(repo, pr).expect("open"));
    }
    for (i, n) in numbers.iter().enumerate() {
        if i % 3 == 0 {
            sim.push(repo, *n).expect("push");
        }
        if i % 4 == 0 {
            sim.label(repo, *n, "bug").expect("label");
        }
        let head =
            sim.world(|w| w.repo(w.repo_id(repo).expect("repo")).expect("repo").pulls[n].head_sha.clone());
        let build = sim.create_check_run(repo, &head, "build").expect("build");
        let test = sim.create_check_run(repo, &head, "test").expect("test");
        sim.start_check_run(build).expect("start");
        sim.complete_check_run(build, if i % 5 == 0 { "failure" } else { "success" }).expect("complete");
        if i % 2 == 0 {
            sim.start_check_run(test).expect("start");
            sim.complete_check_run(test, "success").expect("complete");
        }
    }
    for (i, n) in numbers.iter().enumerate() {
        match i % 10 {
            1 => sim.close(repo, *n).expect("close"),
            2 => sim.merge(repo, *n).expect("merge"),
            3 => sim.edit_pr(repo, *n, Some(&format!("Change {i}, retitled")), None).expect("edit"),
            _ => {}
        }
    }
}

/// Random activity on the open PRs of `repo`: `events` mutations.
fn churn(sim: &Simulator, repo: &str, events: usize, seed: u64) {
    let rng = SplitMix64::new(seed);
    let mut done = 0;
    while done < events {
        let (numbers, heads): (Vec<i64>, Vec<String>) = sim.world(|w| {
            let r = w.repo(w.repo_id(repo).expect("repo")).expect("repo");
            r.pulls
                .values()
                .filter(|p| p.state == github_sim::model::PrState::Open)
                .map(|p| (p.number, p.head_sha.clone()))
                .unzip()
        });
        if numbers.len() < 5 {
            sim.open_pr(repo, NewPr::new(&format!("Churn {done}"), "dave")).expect("open");
            done += 1;
            continue;
        }
        let pick = rng.below(numbers.len() as u64) as usize;
        let (n, head) = (numbers[pick], &heads[pick]);
        let ok = match rng.below(8) {
            0 => sim.push(repo, n).map(|_| ()),
            1 => sim.label(repo, n, &format!("l{}", rng.below(4))),
            2 => sim.edit_pr(repo, n, Some(&format!("Title {done}")), None),
            3 => sim.create_check_run(repo, head, &format!("job-{}", rng.below(3))).map(|_| ()),
            4 => {
                let queued: Option<i64> = sim.world(|w| {
                    w.repo(w.repo_id(repo).expect("repo"))
                        .expect("repo")
                        .check_runs
                        .values()
                        .find(|r| &r.head_sha == head && r.status != "completed")
                        .map(|r| r.id)
                });
                match queued {
                    Some(run) => sim.complete_check_run(run, "success"),
                    None => sim.create_check_run(repo, head, "late").map(|_| ()),
                }
            }
            5 if rng.chance(0.3) => sim.close(repo, n),
            6 => sim.open_pr(repo, NewPr::new(&format!("New {done}"), "erin")).map(|_| ()),
            _ => sim.unlabel(repo, n, &format!("l{}", rng.below(4))),
        };
        if ok.is_ok() {
            done += 1;
        }
    }
}

#[tokio::test]
async fn webhooks_become_exact_rows_within_seconds() {
    let (sim, db) = world(1).await;
    let service = start(&db, &live_settings(&db, &sim, &[])).await;
    sim.set_webhook(Some(target(&service.address().expect("http").to_string())));
    play_script(&sim, REPO, 50);
    sim.wait_for_deliveries().await;
    let took = converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("never converged: {d}"));
    let events = sim.deliveries().len();
    println!(
        "{events} events; the database equalled the simulator {:.2} s after the last delivery",
        took.as_secs_f64()
    );
    assert!(events > 200, "{events} events");
    assert!(sim.deliveries().iter().all(|d| d.statuses == [202]));
    drain(&db.url, CONVERGE).await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE outcome <> 'processed'").await,
        0
    );
    assert_eq!(count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL").await, 0);
    service.stop().await;
}

#[tokio::test]
async fn lost_webhooks_are_healed_by_a_reconcile_through_the_endpoint() {
    let (sim, db) = world(1).await;
    let service = start(&db, &live_settings(&db, &sim, &[])).await;
    let address = service.address().expect("http").to_string();
    let mut lossy = target(&address);
    lossy.loss_rate = 0.3;
    sim.set_webhook(Some(lossy));
    play_script(&sim, REPO, 50);
    sim.wait_for_deliveries().await;
    let lost = sim.deliveries().iter().filter(|d| d.lost).count();
    assert!(lost > 10, "only {lost} deliveries were dropped");
    drain(&db.url, CONVERGE).await;
    assert!(
        prmonitor_testkit::verify::diff_all(&db.url, &sim).await.is_err(),
        "lost webhooks leave a gap before the sweep"
    );

    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{address}/api/v1/reconcile"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "all": true }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.expect("json");
    let job_id = answer["jobs"][0]["job_id"].as_i64().expect("a job id");
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("the sweep did not heal: {d}"));
    drain(&db.url, CONVERGE).await;
    let job: Value = client
        .get(format!("http://{address}/api/v1/jobs/{job_id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "sweep");
    service.stop().await;
}

#[tokio::test]
async fn duplicated_and_shuffled_webhooks_end_in_the_exact_truth() {
    let (sim, db) = world(1).await;
    let service = start(&db, &live_settings(&db, &sim, &[])).await;
    let mut chaos = target(&service.address().expect("http").to_string());
    chaos.duplicate_rate = 1.0;
    chaos.reorder_rate = 0.5;
    sim.set_webhook(Some(chaos));
    sim.reset_stats();
    play_script(&sim, REPO, 30);
    sim.wait_for_deliveries().await;
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("never converged: {d}"));
    drain(&db.url, CONVERGE).await;
    let deliveries = sim.deliveries();
    assert!(
        deliveries.iter().all(|d| d.statuses == [202, 200]),
        "every copy after the first is a 200 duplicate"
    );
    let stats = sim.stats();
    let api_calls = stats.requests.iter().filter(|r| !r.route.starts_with("POST /app")).count();
    let events = deliveries.len();
    println!(
        "{events} events (each delivered twice, shuffled): {api_calls} GitHub API calls, {:.2} per event; {:?}",
        api_calls as f64 / events as f64,
        stats.counts()
    );
    // Re-reading GitHub for every event cost 1.17 calls per event here; the
    // webhooks' own objects are applied when they are strictly newer, so a
    // read is left only for new heads and same-second ties.
    assert!(api_calls < events, "{api_calls} GitHub calls for {events} events: snapshots are not being used");
    service.stop().await;
}

#[tokio::test]
async fn terminated_database_connections_lose_nothing() {
    let (sim, db) = world(1).await;
    let service = start(&db, &live_settings(&db, &sim, &[])).await;
    sim.set_webhook(Some(target(&service.address().expect("http").to_string())));
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
    let settings = live_settings(&db, &sim, &[]);
    let service = start(&db, &settings).await;
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

/// An `installation` delivery for the simulator's generated installation,
/// signed and sent to the service at `address`; returns the status.
async fn send_installation_event(address: &str, action: &str) -> u16 {
    let mut payload: Value =
        serde_json::from_slice(&prmonitor_testkit::fixture("installation/created.json")).expect("json");
    payload["action"] = Value::String(action.to_owned());
    payload["installation"]["id"] = Value::from(github_sim::generate::GENERATED_INSTALLATION);
    let body = serde_json::to_vec(&payload).expect("json");
    reqwest::Client::new()
        .post(format!("http://{address}/webhooks/github"))
        .header("x-github-event", "installation")
        .header("x-github-delivery", prmonitor_testkit::new_delivery_id())
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
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
    let settings = live_settings(&db, &sim, &[]);
    // No scheduler: the backfill must follow from the registration, not from a sweep.
    let pool = prmonitor::db::build_pool(&db.database_url(), settings.db_pool_size).expect("pool");
    let service = Service::start(&settings, pool, Components { http: true, worker: true, scheduler: false })
        .expect("service");
    let address = service.address().expect("http").to_string();
    sim.set_webhook(Some(target(&address)));
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
    let settings = live_settings(&db, &sim, &[("PRMONITOR_SWEEP_INTERVAL", "2s")]);
    let service = start(&db, &settings).await;
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

#[tokio::test]
async fn the_reconcile_endpoint_wants_the_admin_token() {
    let (sim, db) = world(1).await;
    let service = start(&db, &live_settings(&db, &sim, &[])).await;
    let address = service.address().expect("http").to_string();
    let client = reqwest::Client::new();
    let url = format!("http://{address}/api/v1/reconcile");
    let body = serde_json::json!({ "repository": REPO });
    assert_eq!(client.post(&url).json(&body).send().await.expect("sent").status(), 401);
    let wrong = client.post(&url).bearer_auth("not-the-token").json(&body).send().await.expect("sent");
    assert_eq!(wrong.status(), 401);
    let unknown =
        client.post(&url).bearer_auth(ADMIN_TOKEN).json(&serde_json::json!({ "repository": "no/such" }));
    assert_eq!(unknown.send().await.expect("sent").status(), 404);
    let malformed = client.post(&url).bearer_auth(ADMIN_TOKEN).body("{\"repository\": 5}");
    assert_eq!(malformed.send().await.expect("sent").status(), 400);

    sim.open_pr(REPO, NewPr::new("Made while nobody listened", "zed")).expect("open");
    let accepted = client.post(&url).bearer_auth(ADMIN_TOKEN).json(&body).send().await.expect("sent");
    assert_eq!(accepted.status(), 202);
    let answer: Value = accepted.json().await.expect("json");
    let job_id = answer["jobs"][0]["job_id"].as_i64().expect("job id");
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("the reconcile did not run: {d}"));
    drain(&db.url, CONVERGE).await;
    let job_url = format!("http://{address}/api/v1/jobs/{job_id}");
    assert_eq!(client.get(&job_url).send().await.expect("sent").status(), 401);
    let job: Value =
        client.get(&job_url).bearer_auth(ADMIN_TOKEN).send().await.expect("sent").json().await.expect("json");
    assert_eq!(job["state"], "done", "{job}");
    let ready: Value = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(ready["worker"]["heartbeat_age_secs"].as_f64().is_some(), "{ready}");
    assert_eq!(ready["queue"]["due_jobs"], 0, "{ready}");
    service.stop().await;
}

#[tokio::test]
async fn a_sigkilled_service_restarts_and_loses_nothing() {
    let (sim, db) = world(1).await;
    let env = child_env(&sim);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = crate::PRMONITOR.start(&["serve"], &db, &env_refs).await;
    sim.set_webhook(Some(target(&first.address)));
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
    sim.set_webhook(Some(target(&second.address)));
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
    sim.set_webhook(Some(target(&serve.address)));
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
async fn reconcile_wait_runs_the_sweep_here_and_prints_its_result() {
    let (sim, db) = world(1).await;
    sim.open_pr(REPO, NewPr::new("Seen only by the sweep", "yan")).expect("open");
    let env = child_env(&sim);
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env_refs.push(("DATABASE_URL", &db.url));
    let output =
        crate::PRMONITOR.command(&["reconcile", REPO, "--wait"], &env_refs).output().await.expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).expect("a ProcessingResult as JSON");
    assert_eq!(result["repository"], REPO);
    assert_eq!(result["success"], true);
    assert_eq!(result["new_prs"], 1);
    prmonitor_testkit::verify::diff_all(&db.url, &sim).await.unwrap_or_else(|d| panic!("{d}"));

    let unknown =
        crate::PRMONITOR.command(&["reconcile", "no/such", "--wait"], &env_refs).output().await.expect("run");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no/such is not a watched repository"));
}

#[tokio::test]
async fn every_delivery_id_is_on_the_log_lines_of_the_job_that_processed_it() {
    let (sim, db) = world(1).await;
    let env = child_env(&sim);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Intake alone first, so that the deliveries coalesce into few jobs.
    let intake = crate::PRMONITOR.start(&["serve", "--no-worker"], &db, &env_refs).await;
    sim.set_webhook(Some(target(&intake.address)));
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
