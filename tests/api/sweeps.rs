//! Sweeps: what webhooks missed, a sweep brings back — on the timer, or when
//! an operator asks through `POST /api/v1/reconcile` or `prmonitor reconcile`.

use github_sim::NewPr;
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, start_service, webhook_target, ADMIN_TOKEN};
use prmonitor_testkit::TestWorld;
use serde_json::Value;

use crate::scenarios::{child_env, play_script, world, CONVERGE, REPO};

#[tokio::test]
async fn a_sweep_heals_a_retitle_whose_webhook_was_lost() {
    let world = TestWorld::with_repos(1).await;
    let pr = world.github.open_pr(REPO, NewPr::new("Before", "alice"));
    world.settle().await;
    world.github.without_webhooks(|w| w.edit_pr(w.repo_id(REPO)?, pr, Some("After".into()), None));
    assert_eq!(world.api.pull(REPO, pr).await["title"], "Before");
    world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(world.api.pull(REPO, pr).await["title"], "After");
    world.finish().await;
}

#[tokio::test]
async fn the_reconcile_endpoint_runs_a_sweep_of_every_repository() {
    let world = TestWorld::with_repos(2).await;
    let jobs = world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(jobs.len(), 2, "one sweep per repository: {jobs:?}");
    for id in jobs {
        let job = world.api.job(id).await;
        assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("sweep"), Some("done")), "{job}");
    }
    world.finish().await;
}

#[tokio::test]
async fn lost_webhooks_are_healed_by_a_reconcile_through_the_endpoint() {
    let (sim, db) = world(1).await;
    let service = start_service(&db, &settings_for(&db, &sim, &[])).await;
    let address = service.address().expect("http").to_string();
    let mut lossy = webhook_target(&address);
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
async fn the_reconcile_endpoint_wants_the_admin_token() {
    let (sim, db) = world(1).await;
    let service = start_service(&db, &settings_for(&db, &sim, &[])).await;
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
