//! Sweep repairs: what a sweep or a reconcile changed after webhooks were
//! lost is counted (`prmonitor_sweep_repairs_total`), kept (`sweep_repairs`,
//! in the sync's transaction), shown (`repairs_last_24h`) and written to the
//! history with its cause, and what webhooks changed is not a repair. The
//! counter is read from a child `prmonitor serve`, whose metrics are its own.

use github_sim::model::SimRepo;
use github_sim::{NewPr, Simulator, WebhookTarget};
use prmonitor::db::repositories;
use prmonitor::monitor::Cause;
use prmonitor_testkit::database::execute;
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, webhook_target, ADMIN_TOKEN, READ_TOKEN};
use prmonitor_testkit::{connect, count, Serve, TestDatabase};
use serde_json::{json, Value};

use crate::latency::assert_histograms_are_whole;
use crate::read_api::{metric, parse_metrics};
use crate::scenarios::{child_env, world, CONVERGE, REPO};

/// What changed in one repository of the simulator between two snapshots,
/// by the kinds of `prmonitor_sync_changes_total`, and the transitions
/// `pr_state_history` records (a new PR's first state; state, draft and
/// head changes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Changed {
    pr_new: i64,
    pr_updated: i64,
    pr_gone: i64,
    check_run_new: i64,
    check_run_updated: i64,
    transitions: i64,
}

impl Changed {
    fn between(before: &SimRepo, after: &SimRepo) -> Self {
        let mut changed = Self::default();
        for (number, pr) in &after.pulls {
            match before.pulls.get(number) {
                None => {
                    changed.pr_new += 1;
                    changed.transitions += 1;
                }
                Some(old) if old != pr => {
                    changed.pr_updated += 1;
                    changed.transitions += i64::from(old.state != pr.state)
                        + i64::from(old.draft != pr.draft)
                        + i64::from(old.head_sha != pr.head_sha);
                }
                Some(_) => {}
            }
        }
        changed.pr_gone = before.pulls.keys().filter(|n| !after.pulls.contains_key(n)).count() as i64;
        for (id, run) in &after.check_runs {
            match before.check_runs.get(id) {
                None => changed.check_run_new += 1,
                Some(old) if old != run => changed.check_run_updated += 1,
                Some(_) => {}
            }
        }
        changed
    }

    fn plus(self, other: Self) -> Self {
        Self {
            pr_new: self.pr_new + other.pr_new,
            pr_updated: self.pr_updated + other.pr_updated,
            pr_gone: self.pr_gone + other.pr_gone,
            check_run_new: self.check_run_new + other.check_run_new,
            check_run_updated: self.check_run_updated + other.check_run_updated,
            transitions: self.transitions + other.transitions,
        }
    }

    fn by_kind(&self) -> [(&'static str, i64); 9] {
        [
            ("pr_new", self.pr_new),
            ("pr_updated", self.pr_updated),
            ("pr_gone", self.pr_gone),
            ("check_run_new", self.check_run_new),
            ("check_run_updated", self.check_run_updated),
            // These scenarios queue nothing: tests/api/merge_queues.rs covers merge groups.
            ("merge_group", 0),
            // Nor do they post statuses or protect branches: tests/api/ci_state.rs does.
            ("status_new", 0),
            ("status_updated", 0),
            ("required_checks", 0),
        ]
    }

    fn total(&self) -> i64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    /// As the read API shows repairs.
    fn as_repairs(&self) -> Value {
        let mut repairs = json!({ "total": self.total() });
        for (kind, n) in self.by_kind() {
            repairs[kind] = json!(n);
        }
        repairs
    }
}

fn snapshot(sim: &Simulator) -> SimRepo {
    sim.world(|w| w.repo(w.repo_id(REPO)?).cloned()).expect("the repository")
}

/// Changes GitHub while every webhook it sends is lost; returns what changed
/// and how many deliveries were dropped.
async fn with_webhooks_lost(sim: &Simulator, change: impl FnOnce(&Simulator)) -> (Changed, usize) {
    sim.wait_for_deliveries().await;
    let lost_before = sim.deliveries().iter().filter(|d| d.lost).count();
    sim.set_webhook(Some(WebhookTarget { loss_rate: 1.0, ..webhook_target("127.0.0.1:9") }));
    let before = snapshot(sim);
    change(sim);
    let changed = Changed::between(&before, &snapshot(sim));
    sim.wait_for_deliveries().await;
    let lost = sim.deliveries().iter().filter(|d| d.lost).count() - lost_before;
    (changed, lost)
}

/// Waits for the next whole second of the clock.
async fn next_second() {
    let into_second = u64::from(chrono::Utc::now().timestamp_subsec_millis());
    tokio::time::sleep(std::time::Duration::from_millis(1000 - into_second.min(999) + 20)).await;
}

fn head(sim: &Simulator, number: i64) -> String {
    sim.world(|w| w.repo(w.repo_id(REPO)?).map(|r| r.pulls[&number].head_sha.clone())).expect("a PR")
}

/// Waits until the database is the simulator's world; fails with what
/// differs and the child's warnings.
async fn converged(serve: &Serve, db: &TestDatabase, sim: &Simulator, what: &str) {
    if let Err(difference) = converge(&db.url, sim, CONVERGE).await {
        let logs = serve.logs.lock().expect("logs");
        let warnings: Vec<&Value> = logs.iter().filter(|l| l["level"] != "INFO").collect();
        panic!("{what}: {difference}\nwarnings: {warnings:?}");
    }
    drain(&db.url, CONVERGE).await;
}

async fn scrape(serve: &Serve) -> (String, std::collections::BTreeMap<String, f64>) {
    let text = reqwest::get(format!("http://{}/metrics", serve.address))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    let parsed = parse_metrics(&text);
    (text, parsed)
}

async fn repository_answer(serve: &Serve) -> Value {
    let answer: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/repositories", serve.address))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let errors =
        crate::json_schema::Schemas::new().validate_response("get", "/api/v1/repositories", "200", &answer);
    assert_eq!(errors, Vec::<String>::new(), "the answer is what the OpenAPI document says: {answer}");
    assert_eq!(answer["items"][0]["full_name"], REPO, "{answer}");
    answer["items"][0].clone()
}

/// Asserts the child's repair counter, its sync counter, the read API and
/// the `sweep_repairs` rows against what GitHub changed.
async fn assert_repairs(serve: &Serve, db: &TestDatabase, repaired: Changed, by_webhooks: Changed) {
    let (text, m) = scrape(serve).await;
    for (kind, n) in repaired.by_kind() {
        assert_eq!(
            metric(&m, "prmonitor_sweep_repairs_total", &[("kind", kind)]),
            n as f64,
            "{kind}: {text}"
        );
        let synced = metric(&m, "prmonitor_sync_changes_total", &[("kind", kind)]);
        let webhook_kind = by_webhooks.by_kind().into_iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| n);
        assert_eq!(synced, (n + webhook_kind) as f64, "{kind}: every sync change is a repair or a webhook's");
    }
    assert_histograms_are_whole(&text);
    let repository = repository_answer(serve).await;
    assert_eq!(repository["repairs_last_24h"], repaired.as_repairs(), "{repository}");
    let stored = count(&db.url, "SELECT COALESCE(sum(rows), 0)::int8 FROM sweep_repairs").await;
    assert_eq!(stored, repaired.total());
}

#[tokio::test]
async fn repairs_are_the_rows_a_sweep_fixed_after_webhooks_were_lost() {
    let (sim, db) = world(1).await;
    // Before: four PRs with check runs, read in full (a backfill in this
    // process); GitHub sends no webhooks yet.
    for title in ["One", "Two", "Three", "Four"] {
        sim.open_pr(REPO, NewPr::new(title, "amy")).expect("open");
    }
    let queued = sim.create_check_run(REPO, &head(&sim, 1), "build").expect("run");
    let done = sim.create_check_run(REPO, &head(&sim, 4), "build").expect("run");
    sim.start_check_run(done).expect("start");
    sim.complete_check_run(done, "success").expect("complete");
    {
        let settings = settings_for(&db, &sim, &[]);
        let pool = prmonitor::db::build_pool(&settings.database_url, 2).expect("pool");
        let github = prmonitor::github::GitHubClient::new(&settings.github, pool.clone()).expect("client");
        let processor = prmonitor::startup::processor(&github, &pool, &settings);
        let mut conn = connect(&db.url).await;
        let repo = repositories::find_by_full_name(&mut conn, REPO).await.expect("read").expect("registered");
        assert!(processor.process_repository(&repo, Cause::Backfill).await.success);
    }
    prmonitor_testkit::verify::diff_all(&db.url, &sim).await.unwrap_or_else(|d| panic!("{d}"));
    let backfilled = count(&db.url, "SELECT count(*) FROM pr_state_history").await;

    // Every webhook of these changes is lost. GitHub's times have whole
    // seconds, and a survey sees a PR change by its `updated_at`: the
    // changes come in a later second than what the backfill read, as
    // between a backfill and a sweep (within one second a survey cannot
    // tell, and a REST sweep or the next change reads it).
    next_second().await;
    let (swept, lost) = with_webhooks_lost(&sim, |sim| {
        sim.open_pr(REPO, NewPr::new("Five", "ben")).expect("open");
        sim.open_pr(REPO, NewPr::new("Six", "ben")).expect("open");
        sim.edit_pr(REPO, 1, Some("One, retitled"), None).expect("edit");
        sim.close(REPO, 2).expect("close");
        sim.push(REPO, 3).expect("push");
        sim.create_check_run(REPO, &head(sim, 4), "lint").expect("run");
        sim.complete_check_run(queued, "failure").expect("complete");
    })
    .await;
    let expected = Changed {
        pr_new: 2,
        pr_updated: 3,
        check_run_new: 1,
        check_run_updated: 1,
        transitions: 4,
        pr_gone: 0,
    };
    assert_eq!(swept, expected, "what GitHub changed");
    assert!(lost >= 7, "one lost delivery or more per change: {lost}");

    // The scheduled sweep (a GraphQL survey) of a service started now.
    let mut conn = connect(&db.url).await;
    execute(&mut conn, "UPDATE repositories SET last_swept_at = now() - interval '2 hours'").await;
    let env = child_env(&sim);
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env_refs.extend([("PRMONITOR_READ_TOKEN", READ_TOKEN), ("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let serve = crate::PRMONITOR.start(&["serve"], &db, &env_refs).await;
    converged(&serve, &db, &sim, "the sweep did not heal").await;
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'survey' AND state = 'done'").await, 1);
    assert_repairs(&serve, &db, swept, Changed::default()).await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM pr_state_history WHERE cause = 'sweep'").await,
        swept.transitions
    );
    assert_eq!(count(&db.url, "SELECT count(*) FROM pr_state_history").await, backfilled + swept.transitions);
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM sweep_repairs WHERE cause <> 'sweep' OR rows <= 0").await,
        0
    );

    // Webhooks that arrive are not repairs.
    sim.set_webhook(Some(webhook_target(&serve.address)));
    let before = snapshot(&sim);
    sim.open_pr(REPO, NewPr::new("Seven", "cy")).expect("open");
    sim.label(REPO, 3, "bug").expect("label");
    let delivered = Changed::between(&before, &snapshot(&sim));
    sim.wait_for_deliveries().await;
    converged(&serve, &db, &sim, "the webhooks were not applied").await;
    assert_repairs(&serve, &db, swept, delivered).await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM pr_state_history WHERE cause = 'webhook'").await,
        delivered.transitions
    );

    // An operator's reconcile (a REST sweep) after more lost webhooks.
    let (reconciled, _) = with_webhooks_lost(&sim, |sim| {
        sim.merge(REPO, 4).expect("merge");
        let lint = sim.world(|w| {
            let repo = w.repo(w.repo_id(REPO).expect("repo")).expect("repo");
            repo.check_runs.values().find(|r| r.name == "lint").map(|r| r.id).expect("the lint run")
        });
        sim.complete_check_run(lint, "success").expect("complete");
        sim.label(REPO, 1, "ready").expect("label");
    })
    .await;
    assert_eq!(
        reconciled,
        Changed { pr_updated: 2, check_run_updated: 1, transitions: 1, ..Changed::default() },
        "what GitHub changed"
    );
    let answer = prmonitor::simulated::reconcile_all(&serve.address, ADMIN_TOKEN).await.expect("reconcile");
    assert_eq!(answer["jobs"].as_array().map(Vec::len), Some(1), "{answer}");
    converged(&serve, &db, &sim, "the reconcile did not heal").await;
    assert_repairs(&serve, &db, swept.plus(reconciled), delivered).await;
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM pr_state_history WHERE cause = 'manual'").await,
        reconciled.transitions
    );
    assert_eq!(
        count(&db.url, "SELECT COALESCE(sum(rows), 0)::int8 FROM sweep_repairs WHERE cause = 'manual'").await,
        reconciled.total()
    );
    serve.terminate();
}

#[tokio::test]
async fn housekeeping_drops_repairs_older_than_thirty_days() {
    let (sim, db) = world(1).await;
    let mut conn = connect(&db.url).await;
    let repo = repositories::find_by_full_name(&mut conn, REPO).await.expect("read").expect("registered");
    prmonitor::db::repairs::record(&mut conn, repo.id, "sweep", &[("pr_new", 2), ("check_run_new", 0)])
        .await
        .expect("record");
    prmonitor::db::repairs::record(&mut conn, repo.id, "manual", &[("pr_updated", 3)]).await.expect("record");
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM sweep_repairs").await,
        2,
        "kinds without rows are left out"
    );
    // One of them a month old.
    execute(
        &mut conn,
        "UPDATE sweep_repairs SET recorded_at = now() - interval '31 days' WHERE kind = 'pr_updated'",
    )
    .await;
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let recent = prmonitor::db::repairs::recent(&mut conn, &[repo.id], since).await.expect("recent");
    assert_eq!(recent[&repo.id].total, 2, "the last 24 hours only: {recent:?}");

    let settings = settings_for(&db, &sim, &[]);
    let pool = prmonitor::db::build_pool(&settings.database_url, 1).expect("pool");
    let scheduler = prmonitor::scheduler::Scheduler::new(pool, settings.worker.clone(), &settings.github);
    scheduler.housekeeping().await.expect("housekeeping");
    assert_eq!(count(&db.url, "SELECT count(*) FROM sweep_repairs").await, 1);
    assert_eq!(count(&db.url, "SELECT count(*) FROM sweep_repairs WHERE kind = 'pr_new'").await, 1);
}
