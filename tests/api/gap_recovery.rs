//! Gap recovery: deliveries that failed while the service was down are found
//! in the App's deliveries API and stored like any other, once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use github_sim::{Event, EventBody, Generate, NewPr, SimConfig, Simulator};
use prmonitor::config::{DeliveryRecovery, GitHubAuth, Secret, Settings};
use prmonitor::github::GitHubClient;
use prmonitor::scheduler::Scheduler;
use prmonitor::webhook::recovery::{self, RecoveryOptions};
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, register_repositories, settings_for, start_service, webhook_target};
use prmonitor_testkit::{count, TestDatabase};

const LIST: &str = "GET /app/hook/deliveries";
const DETAIL: &str = "GET /app/hook/deliveries/{delivery_id}";
/// Sweeps that stood for recovered deliveries.
const RECOVERY_SWEEPS: &str = "SELECT count(DISTINCT d.job_id) FROM webhook_deliveries d \
                               JOIN jobs j ON j.id = d.job_id WHERE d.source = 'recovery' AND j.kind = 'sweep'";
const REDELIVER: &str = "POST /app/hook/deliveries/{delivery_id}/attempts";

/// A simulator of `repositories` repositories with a few PRs each, stored
/// and current in a fresh database (read by a first service, now stopped),
/// whose webhooks now go to that service's closed port: every delivery fails.
async fn world_after_an_outage(repositories: usize) -> (Simulator, TestDatabase, String) {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories, pull_requests: 2, check_runs: 1 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    register_repositories(&db, &sim).await;
    let first = start_service(&db, &settings_for(&db, &sim, &[])).await;
    let address = first.address().expect("http").to_string();
    let api = prmonitor_testkit::world::Api::new(&address);
    api.reconcile_all().await;
    converge(&db.url, &sim, Duration::from_secs(60)).await.unwrap_or_else(|d| panic!("the first read: {d}"));
    drain(&db.url, Duration::from_secs(60)).await;
    first.stop().await;
    sim.set_webhook(Some(webhook_target(&address)));
    (sim, db, address)
}

/// `changes` changes spread over the simulator's repositories: a new PR in
/// each, then labels, titles, drafts, new PRs and pushes with their checks,
/// some failing.
fn make_changes(sim: &Simulator, changes: usize) {
    let repos: Vec<String> = sim.world(|w| w.repos.values().map(|r| r.full_name()).collect());
    let mut worked_on = Vec::new();
    for i in 0..changes {
        let repo = &repos[i % repos.len()];
        let round = i / repos.len();
        let new_pr = |title: String| NewPr { title, author: "octocat".into(), ..NewPr::default() };
        if round == 0 {
            worked_on.push(sim.open_pr(repo, new_pr(format!("Outage work in {repo}"))).expect("open"));
            continue;
        }
        let number = worked_on[i % repos.len()];
        match round % 5 {
            0 => sim.label(repo, number, &format!("label-{round}")).expect("label"),
            1 => {
                let sha = sim.push(repo, number).expect("push");
                let run = sim.create_check_run(repo, &sha, "ci").expect("check run");
                let conclusion = if round % 3 == 1 { "failure" } else { "success" };
                sim.complete_check_run(run, conclusion).expect("complete");
            }
            2 => sim.edit_pr(repo, number, Some(&format!("Retitled {round}")), None).expect("retitle"),
            3 => sim.set_draft(repo, number, round % 2 == 1).expect("draft"),
            _ => {
                sim.open_pr(repo, new_pr(format!("New {round}"))).expect("open");
            }
        }
    }
}

/// The service's GitHub client, as its worker has it.
fn github_client(settings: &Settings) -> GitHubClient {
    let pool = prmonitor::db::build_pool(&settings.database_url, 2).expect("pool");
    GitHubClient::new(&settings.github, pool).expect("client")
}

fn options(mode: DeliveryRecovery, max_pages: usize) -> RecoveryOptions {
    RecoveryOptions { mode, max_pages, max_attempts: 3, since: None, sweep_above: None }
}

/// The deliveries that never got through: id → event.
fn failed_guids(sim: &Simulator) -> HashMap<String, String> {
    sim.hook_deliveries()
        .into_iter()
        .filter(|d| !d.succeeded())
        .map(|d| (d.guid, d.event.to_owned()))
        .collect()
}

/// What recovery cost after an outage of `changes` changes over
/// `repositories` repositories: the simulator's requests after start-up and
/// the lost deliveries. The database equals the simulator within 60 s of
/// the service's readiness, or this fails.
async fn recover_after_outage(
    repositories: usize,
    changes: usize,
    settings: &[(&str, &str)],
) -> (github_sim::Stats, HashMap<String, String>, TestDatabase) {
    let (sim, db, _) = world_after_an_outage(repositories).await;
    make_changes(&sim, changes);
    sim.wait_for_deliveries().await;
    let lost = failed_guids(&sim);
    assert!(lost.len() >= changes, "every change's webhook failed: {}", lost.len());
    assert!(converge(&db.url, &sim, Duration::ZERO).await.is_err(), "the database is behind");
    sim.reset_stats();

    // Sweeps are off (the repositories were just swept and the interval is
    // an hour): only recovery can bring the changes in.
    let mut with = vec![("PRMONITOR_DELIVERY_RECOVERY_INTERVAL", "5m")];
    with.extend_from_slice(settings);
    let service = start_service(&db, &settings_for(&db, &sim, &with)).await;
    let ready = Instant::now();
    let took = converge(&db.url, &sim, Duration::from_secs(60))
        .await
        .unwrap_or_else(|d| panic!("not recovered within 60 s of readiness: {d}"));
    drain(&db.url, Duration::from_secs(60)).await;
    let stats = sim.stats();
    eprintln!(
        "{} lost deliveries recovered in {took:?} ({:?} to drain); API calls: {:?}",
        lost.len(),
        ready.elapsed(),
        stats.counts()
    );
    let known = count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE source = 'recovery'").await;
    assert_eq!(known as usize, lost.len(), "every lost delivery is stored, once");
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE outcome <> 'processed'").await,
        0
    );
    assert_eq!(stats.count_route(REDELIVER), 0);
    service.stop().await;
    (stats, lost, db)
}

/// Listing pages for `attempts` attempts, 100 a page.
fn pages_for(attempts: usize) -> u64 {
    attempts.div_ceil(100) as u64
}

#[tokio::test]
async fn three_hundred_changes_lost_while_down_are_stored_within_a_minute_of_start_up() {
    let (stats, lost, db) = recover_after_outage(10, 300, &[]).await;
    // Each repository lost more PR deliveries than the sweep threshold (20):
    // one sweep each instead of a detail per PR delivery (check deliveries
    // are fetched: a sweep reads only current heads' checks), so the whole
    // recovery, sweeps included, costs less than the listing and the details.
    let swept = count(&db.url, RECOVERY_SWEEPS).await;
    assert_eq!(swept, 10, "one sweep per repository");
    let checks = lost.values().filter(|event| *event != "pull_request").count();
    assert!(checks > 0 && checks < lost.len());
    assert_eq!(stats.count_route(DETAIL), checks as u64, "a detail per lost check delivery");
    assert!(stats.count_route(LIST) <= pages_for(lost.len()) + 1, "{:?}", stats.counts());
    let bound = pages_for(lost.len()) + 1 + lost.len() as u64;
    assert!((stats.requests.len() as u64) < bound, "{} calls, bound {bound}", stats.requests.len());
}

#[tokio::test]
async fn lost_deliveries_are_fetched_one_by_one_below_the_sweep_threshold() {
    let (stats, lost, db) =
        recover_after_outage(3, 60, &[("PRMONITOR_DELIVERY_RECOVERY_SWEEP_ABOVE", "0")]).await;
    // The listing once, a detail per lost delivery, and no sweep.
    assert!(stats.count_route(LIST) <= pages_for(lost.len()) + 1, "{:?}", stats.counts());
    assert_eq!(stats.count_route(DETAIL), lost.len() as u64, "one detail per lost delivery");
    assert_eq!(count(&db.url, RECOVERY_SWEEPS).await, 0);
    assert_eq!(
        count(
            &db.url,
            "SELECT count(*) FROM webhook_deliveries WHERE source = 'recovery' AND payload IS NOT NULL"
        )
        .await as usize,
        lost.len()
    );
}

#[tokio::test]
async fn a_recovered_delivery_redelivered_later_is_stored_and_processed_once() {
    let (sim, db, _) = world_after_an_outage(1).await;
    let repo = sim.world(|w| w.repos.values().next().map(|r| r.full_name())).expect("a repository");
    sim.label(&repo, 1, "lost").expect("label");
    sim.wait_for_deliveries().await;
    let lost = failed_guids(&sim);
    assert_eq!(lost.len(), 1);

    let settings = settings_for(&db, &sim, &[]);
    let service = start_service(&db, &settings).await;
    let address = service.address().expect("http").to_string();
    let github = github_client(&settings);
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    let options = options(DeliveryRecovery::Ingest, 10);
    let report = recovery::recover(&github, &pool, &options).await.expect("recovery");
    assert_eq!((report.missing, report.recovered), (1, 1), "{report:?}");
    drain(&db.url, Duration::from_secs(30)).await;

    // GitHub delivers it again (an operator's redelivery): a duplicate.
    sim.set_webhook(Some(webhook_target(&address)));
    assert_eq!(sim.redeliver_failed(), 1);
    sim.wait_for_deliveries().await;
    drain(&db.url, Duration::from_secs(30)).await;
    let guid = lost.keys().next().expect("one");
    assert_eq!(
        count(&db.url, &format!("SELECT count(*) FROM webhook_deliveries WHERE delivery_id = '{guid}'"))
            .await,
        1
    );
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'event'").await,
        1,
        "processed once: the redelivery enqueued nothing"
    );
    // A second run finds nothing missing and fetches nothing.
    sim.reset_stats();
    let again = recovery::recover(&github, &pool, &options).await.expect("recovery");
    assert_eq!((again.missing, again.recovered), (0, 0), "{again:?}");
    assert_eq!(sim.stats().count_route(DETAIL), 0);
    converge(&db.url, &sim, Duration::from_secs(10)).await.unwrap_or_else(|d| panic!("{d}"));
    service.stop().await;
}

#[tokio::test]
async fn old_and_untracked_deliveries_are_never_fetched() {
    let (sim, db, _) = world_after_an_outage(1).await;
    let repo = sim.world(|w| w.repos.values().next().map(|r| r.full_name())).expect("a repository");
    sim.label(&repo, 1, "old").expect("label");
    sim.wait_for_deliveries().await;
    // Past GitHub's retention: no longer listed.
    sim.age_deliveries(Duration::from_secs(3 * 86_400 + 60));
    sim.label(&repo, 1, "recent").expect("label");
    sim.wait_for_deliveries().await;
    // Untracked: a review request changes nothing prmonitor stores.
    let repo_id = sim.repo_id(&repo).expect("repository");
    let review_requested = Event {
        name: "pull_request",
        action: "review_requested",
        repo_id,
        body: EventBody::PullRequest { number: 1, extra: serde_json::json!({}) },
    };
    sim.mutate(|_| Ok(((), vec![review_requested]))).expect("review request");
    sim.wait_for_deliveries().await;

    let settings = settings_for(&db, &sim, &[]);
    let github = github_client(&settings);
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    sim.reset_stats();
    let options = options(DeliveryRecovery::Ingest, 10);
    let report = recovery::recover(&github, &pool, &options).await.expect("recovery");
    assert_eq!(
        (report.examined, report.untracked, report.missing, report.recovered),
        (2, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!(sim.stats().count_route(DETAIL), 1, "only the recent tracked delivery is fetched");
}

#[tokio::test]
async fn redeliver_mode_asks_github_once_and_the_redelivery_arrives_through_intake() {
    let (sim, db, _) = world_after_an_outage(1).await;
    let repo = sim.world(|w| w.repos.values().next().map(|r| r.full_name())).expect("a repository");
    sim.label(&repo, 1, "lost").expect("label");
    sim.wait_for_deliveries().await;
    let settings = settings_for(&db, &sim, &[]);
    let service = start_service(&db, &settings).await;
    sim.set_webhook(Some(webhook_target(&service.address().expect("http").to_string())));
    let github = github_client(&settings);
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    sim.reset_stats();
    let options = options(DeliveryRecovery::Redeliver, 10);
    let report = recovery::recover(&github, &pool, &options).await.expect("recovery");
    assert_eq!((report.missing, report.redeliveries_requested), (1, 1), "{report:?}");
    sim.wait_for_deliveries().await;
    converge(&db.url, &sim, Duration::from_secs(30)).await.unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(sim.stats().count_route(REDELIVER), 1);
    assert_eq!(sim.stats().count_route(DETAIL), 0, "nothing fetched: GitHub sends it");
    assert_eq!(count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE source = 'webhook'").await, 1);
    // The next run finds it stored: nothing asked again.
    let again = recovery::recover(&github, &pool, &options).await.expect("recovery");
    assert_eq!(again.redeliveries_requested, 0, "{again:?}");
    assert_eq!(sim.stats().count_route(REDELIVER), 1);
    service.stop().await;
}

#[tokio::test]
async fn a_run_stops_at_its_page_bound_and_the_next_goes_on_from_there() {
    let (sim, db, _) = world_after_an_outage(2).await;
    make_changes(&sim, 250);
    sim.wait_for_deliveries().await;
    let lost = failed_guids(&sim);
    let settings = settings_for(&db, &sim, &[]);
    let github = github_client(&settings);
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    let options = options(DeliveryRecovery::Ingest, 1);
    let mut recovered = 0;
    let mut runs = 0;
    loop {
        let report = recovery::recover(&github, &pool, &options).await.expect("recovery");
        assert_eq!(report.pages, 1);
        recovered += report.recovered;
        runs += 1;
        if report.complete {
            break;
        }
        assert!(runs < 10, "never completes");
    }
    assert_eq!(recovered, lost.len());
    assert!(runs >= 3, "{} deliveries take several pages", lost.len());
    // Later, a run reads down to the watermark (less the overlap) and stops.
    sim.age_deliveries(recovery::OVERLAP + Duration::from_secs(60));
    sim.label(&sim.world(|w| w.repos.values().next().map(|r| r.full_name())).expect("a repo"), 1, "new")
        .expect("label");
    sim.wait_for_deliveries().await;
    sim.reset_stats();
    let report = recovery::recover(&github, &pool, &options).await.expect("recovery");
    assert!(report.complete && report.examined == 1 && report.recovered == 1, "{report:?}");
    assert_eq!((sim.stats().count_route(LIST), sim.stats().count_route(DETAIL)), (1, 1));
}

#[tokio::test]
async fn recovery_is_scheduled_once_per_interval_for_all_instances_and_only_for_an_app() {
    let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
    let db = TestDatabase::migrated().await;
    let settings = settings_for(&db, &sim, &[("PRMONITOR_DELIVERY_RECOVERY_INTERVAL", "5m")]);
    let pool = prmonitor::db::build_pool(&settings.database_url, 2).expect("pool");
    let first = Scheduler::new(pool.clone(), settings.worker.clone(), &settings.github);
    let second = Scheduler::new(pool.clone(), settings.worker.clone(), &settings.github);
    assert!(first.schedule_delivery_recovery().await.expect("schedule"), "at start-up");
    assert!(!second.schedule_delivery_recovery().await.expect("schedule"), "one is pending");
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'recover_deliveries'").await, 1);
    // A token has no deliveries API; `0s` turns recovery off.
    let mut token = settings.clone();
    token.github.auth = Some(GitHubAuth::Token(Secret::new("ghp_x")));
    let off = settings_for(&db, &sim, &[("PRMONITOR_DELIVERY_RECOVERY_INTERVAL", "0s")]);
    let mut conn = prmonitor_testkit::database::connect(&db.url).await;
    diesel_async::RunQueryDsl::execute(diesel::sql_query("DELETE FROM jobs"), &mut conn)
        .await
        .expect("cleared");
    for settings in [token, off] {
        let scheduler = Scheduler::new(pool.clone(), settings.worker.clone(), &settings.github);
        assert!(!scheduler.schedule_delivery_recovery().await.expect("schedule"));
    }
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn deliveries_recover_wait_recovers_now_and_the_listing_shows_it() {
    let (sim, db, _) = world_after_an_outage(1).await;
    let repo = sim.world(|w| w.repos.values().next().map(|r| r.full_name())).expect("a repository");
    sim.label(&repo, 1, "lost").expect("label");
    sim.wait_for_deliveries().await;
    let lost = failed_guids(&sim);
    let guid = lost.keys().next().expect("one lost delivery").clone();
    let mut env: Vec<(&str, String)> = crate::scenarios::child_env(&sim);
    env.push(("DATABASE_URL", db.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run =
        crate::PRMONITOR.command(&["deliveries", "recover", "--wait"], &env).output().await.expect("runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the report as JSON");
    assert_eq!((report["missing"].as_u64(), report["recovered"].as_u64()), (Some(1), Some(1)), "{report}");
    let listing = crate::PRMONITOR
        .command(&["deliveries", "list", "--outcome", "recovered"], &env)
        .output()
        .await
        .expect("runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().skip(1).any(|line| line.contains(&guid)), "{listing}");
    // Without --wait it is enqueued for the worker; without an App it is refused.
    let run = crate::PRMONITOR
        .command(&["deliveries", "recover", "--since", "2h"], &env)
        .output()
        .await
        .expect("runs");
    assert!(String::from_utf8_lossy(&run.stdout).contains("recovery enqueued as job"));
    assert_eq!(
        count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'recover_deliveries' AND payload ? 'since'")
            .await,
        1
    );
    let run = crate::PRMONITOR
        .command(&["deliveries", "recover"], &[("DATABASE_URL", db.url.as_str())])
        .output()
        .await
        .expect("runs");
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("deliveries API"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
