//! What several behaviour files share: the registered world, scripted and
//! random GitHub activity, the environment of a child `prmonitor`.

use std::time::Duration;

use github_sim::prng::SplitMix64;
use github_sim::{Generate, NewPr, SimConfig, Simulator};
use prmonitor_testkit::world::register_repositories;
use prmonitor_testkit::{sign, TestDatabase};
use serde_json::Value;

pub(crate) const REPO: &str = "acme/repo-0";

pub(crate) const CONVERGE: Duration = Duration::from_secs(60);

pub(crate) fn key_file() -> String {
    format!("{}/fixtures/sim/app-private-key.pem", env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn child_env(sim: &Simulator) -> Vec<(&'static str, String)> {
    vec![
        ("PRMONITOR_GITHUB_API_URL", sim.api_url()),
        ("PRMONITOR_GITHUB_APP_ID", github_sim::SIM_APP_ID.to_string()),
        ("PRMONITOR_GITHUB_PRIVATE_KEY_FILE", key_file()),
        ("PRMONITOR_JOB_POLL_INTERVAL", "100ms".into()),
        ("PRMONITOR_JOB_LEASE", "3s".into()),
        ("PRMONITOR_JOB_RETRY_DELAY", "100ms".into()),
        ("PRMONITOR_SWEEP_INTERVAL", "1h".into()),
        // The tests announce installations themselves (webhooks) and count jobs.
        ("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "0s".into()),
        ("PRMONITOR_DELIVERY_RECOVERY_INTERVAL", "0s".into()),
        ("PRMONITOR_DB_POOL_SIZE", "8".into()),
        ("RUST_LOG", "warn,prmonitor=info".into()),
    ]
}

/// A simulator with empty repositories, all registered and just swept, so
/// that webhooks alone drive what happens.
pub(crate) async fn world(repositories: usize) -> (Simulator, TestDatabase) {
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
pub(crate) fn play_script(sim: &Simulator, repo: &str, prs: usize) {
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
pub(crate) fn churn(sim: &Simulator, repo: &str, events: usize, seed: u64) {
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

/// An `installation` delivery for the simulator's generated installation,
/// signed and sent to the service at `address`; returns the status.
pub(crate) async fn send_installation_event(address: &str, action: &str) -> u16 {
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
