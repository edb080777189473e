//! The operations listener (`PRMONITOR_OPS_LISTEN`): `/metrics`, `/healthz`,
//! `/readyz` and the admin API move to it, so the webhook port faces GitHub
//! alone; `worker` processes serve it too.

use github_sim::NewPr;
use prmonitor::startup::{Components, Service};
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, webhook_target, ADMIN_TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::scenarios::{child_env, world, CONVERGE, REPO};

async fn status(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.expect("sent").status()
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.expect("sent").json().await.expect("json")
}

#[tokio::test]
async fn operations_move_to_their_own_listener_and_the_webhook_port_keeps_the_rest() {
    let (sim, db) = world(1).await;
    let settings = settings_for(&db, &sim, &[("PRMONITOR_OPS_LISTEN", "127.0.0.1:0")]);
    let pool = prmonitor::db::build_pool(&db.database_url(), settings.db_pool_size).expect("pool");
    let service = Service::start(&settings, pool, Components { http: true, worker: true, scheduler: false })
        .expect("service");
    let public = format!("http://{}", service.address().expect("public listener"));
    let ops = format!("http://{}", service.operations_address().expect("operations listener"));
    assert_ne!(public, ops);
    let client = reqwest::Client::new();

    // The public listener: no metrics, readiness or admin API, whoever asks.
    assert_eq!(status(client.get(format!("{public}/metrics"))).await, 404);
    assert_eq!(status(client.get(format!("{public}/readyz"))).await, 404);
    let reconcile = json!({ "repository": REPO });
    let refused = client.post(format!("{public}/api/v1/reconcile")).bearer_auth(ADMIN_TOKEN).json(&reconcile);
    assert_eq!(status(refused).await, 404);
    assert_eq!(status(client.get(format!("{public}/api/v1/jobs/1")).bearer_auth(ADMIN_TOKEN)).await, 404);
    // ... and everything else, webhooks first.
    assert_eq!(status(client.get(format!("{public}/healthz"))).await, 200);
    assert_eq!(status(client.get(format!("{public}/api/v1/openapi.json"))).await, 200);
    assert_eq!(
        status(client.get(format!("{public}/api/v1/repositories")).bearer_auth(ADMIN_TOKEN)).await,
        200
    );
    sim.set_webhook(Some(webhook_target(service.address().expect("public").to_string().as_str())));
    let number = sim.open_pr(REPO, NewPr::new("Through the webhook port", "ada")).expect("open");
    sim.wait_for_deliveries().await;
    assert!(sim.deliveries().iter().all(|d| d.statuses == [202]), "{:?}", sim.deliveries());
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("the PR never arrived: {d}"));
    assert!(number > 0);

    // The operations listener: metrics, readiness and the admin API; nothing public.
    let metrics = client.get(format!("{ops}/metrics")).send().await.expect("sent");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("prmonitor_build_info{"), "{text}");
    assert!(
        text.contains("prmonitor_webhook_deliveries_total"),
        "intake's counters are this process's: {text}"
    );
    assert_eq!(status(client.get(format!("{ops}/healthz"))).await, 200);
    let ready: Value = json_of(client.get(format!("{ops}/readyz"))).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["worker"]["heartbeat_age_secs"].as_f64().is_some(), "the worker's heartbeat: {ready}");
    assert_eq!(status(client.post(format!("{ops}/api/v1/reconcile")).json(&reconcile)).await, 401);
    let accepted = client
        .post(format!("{ops}/api/v1/reconcile"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&reconcile)
        .send()
        .await
        .expect("sent");
    assert_eq!(accepted.status(), 202);
    let answer: Value = accepted.json().await.expect("json");
    let job_id = answer["jobs"][0]["job_id"].as_i64().expect("job id");
    drain(&db.url, CONVERGE).await;
    let job = json_of(client.get(format!("{ops}/api/v1/jobs/{job_id}")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(job["state"], "done", "{job}");
    for path in ["/", "/pulls", "/api/v1/repositories", "/api/v1/events", "/setup"] {
        let answer = client.get(format!("{ops}{path}")).bearer_auth(ADMIN_TOKEN).send().await.expect("sent");
        assert_eq!(answer.status(), 404, "{path} is not an operations route");
    }
    let unsigned = client.post(format!("{ops}/webhooks/github")).body("{}").send().await.expect("sent");
    assert_eq!(unsigned.status(), 404, "webhooks are the public listener's");

    service.stop().await;
    for address in [&public, &ops] {
        assert!(client.get(format!("{address}/healthz")).send().await.is_err(), "{address} still answers");
    }
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_allow_and_an_unknown_path_404() {
    let app = prmonitor_testkit::spawn_app_with(&[("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let cases = [
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::GET, "/webhooks/github", "POST"),
        (reqwest::Method::DELETE, "/setup", "GET, POST"),
        (reqwest::Method::PUT, "/api/v1/repositories/acme/repo-0/pulls/1", "GET"),
        (reqwest::Method::GET, "/api/v1/reconcile", "POST"),
    ];
    for (method, path, allow) in cases {
        let answer = app.client.request(method.clone(), app.url(path)).send().await.expect("sent");
        assert_eq!(answer.status(), 405, "{method} {path}");
        assert_eq!(answer.headers()["allow"], allow, "{method} {path}");
        let body: Value = answer.json().await.expect("a JSON error");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(allow)), "{body}");
    }
    // The routes themselves still answer.
    assert_eq!(status(app.client.get(app.url("/healthz"))).await, 200);
    assert_eq!(status(app.client.post(app.url("/api/v1/reconcile")).json(&json!({"all": true}))).await, 401);
    for path in ["/no/such/path", "/api/v1/nothing", "/healthz/more"] {
        assert_eq!(status(app.client.post(app.url(path))).await, 404, "{path}");
    }
}

#[tokio::test]
async fn a_worker_process_serves_metrics_and_readiness_on_the_operations_listener() {
    let (sim, db) = world(1).await;
    let env = child_env(&sim);
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env_refs.push(("PRMONITOR_OPS_LISTEN", "127.0.0.1:0"));
    env_refs.push(("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN));
    let serve = crate::PRMONITOR.start(&["serve", "--no-worker"], &db, &env_refs).await;
    let worker = crate::PRMONITOR.start(&["worker"], &db, &env_refs).await;
    let worker_ops = format!("http://{}", worker.operations_address().await);
    let client = reqwest::Client::new();

    sim.set_webhook(Some(webhook_target(&serve.address)));
    sim.open_pr(REPO, NewPr::new("Processed by the worker process", "bo")).expect("open");
    sim.wait_for_deliveries().await;
    converge(&db.url, &sim, CONVERGE).await.unwrap_or_else(|d| panic!("never converged: {d}"));
    drain(&db.url, CONVERGE).await;

    let ready: Value = json_of(client.get(format!("{worker_ops}/readyz"))).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["worker"]["heartbeat_age_secs"].as_f64().is_some(), "{ready}");
    let text =
        client.get(format!("{worker_ops}/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(text.contains("prmonitor_build_info{"), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("prmonitor_job_duration_seconds_count") && !l.ends_with(" 0")),
        "the worker process reports the jobs it ran: {text}"
    );
    assert_eq!(
        status(client.post(format!("{worker_ops}/api/v1/reconcile")).json(&json!({"all": true}))).await,
        401
    );
    assert_eq!(status(client.get(format!("{worker_ops}/webhooks/github"))).await, 404);

    // The operations listener's thread (PRMONITOR_HTTP_WORKERS=1: one) yields the CPU to the rest.
    let nices = thread_nices(serve.child.id().expect("running"));
    assert_eq!(nices.iter().filter(|n| **n == 10).count(), 1, "{nices:?}");
    assert!(nices.iter().filter(|n| **n == 0).count() > 1, "intake and the rest at 0: {nices:?}");

    // The serve process's own operations listener counts what it received.
    let serve_ops = format!("http://{}", serve.operations_address().await);
    assert_ne!(serve_ops, worker_ops);
    let text =
        client.get(format!("{serve_ops}/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(
        text.lines().any(|l| l.starts_with("prmonitor_webhook_deliveries_total") && !l.ends_with(" 0")),
        "{text}"
    );
    worker.terminate();
    serve.terminate();
}

/// The nice value of each thread of process `pid` (Linux: /proc/PID/task/TID/stat, field 19).
fn thread_nices(pid: u32) -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc") {
        let stat = std::fs::read_to_string(task.expect("task").path().join("stat")).expect("stat");
        // The name in parentheses may hold spaces: fields count from after it.
        let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
        nices.push(fields[16].parse().expect("nice"));
    }
    nices
}
