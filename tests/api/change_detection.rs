//! The sync pipeline against the simulator and a real PostgreSQL: discovery,
//! change detection, synchronization and the processor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use github_sim::model::PrState as SimState;
use github_sim::{Faults, Generate, SimConfig, Simulator, SIM_APP_ID, SIM_APP_PRIVATE_KEY};
use prmonitor::config::{parse_api_url, GitHubAuth, GitHubSettings, Secret};
use prmonitor::db::repositories::{self, NewRepository, Repository};
use prmonitor::db::schema::{check_runs, pr_state_history, pull_requests};
use prmonitor::db::DbPool;
use prmonitor::github::{GitHubClient, Purpose};
use prmonitor::monitor::{
    Cause, ChangeDetector, ChangeKind, ChangeSet, CheckRunChangeRecord, CheckRunData, DatabaseChangeDetector,
    DatabaseSynchronizer, DetectionError, Discovered, GitHubPrDiscovery, PrChangeRecord, PrData, PrDiscovery,
    PrField, PrHead, PrLookup, PrProcessor, ProcessingError, ProcessingResult, SyncError, Synchronizer,
    Target, WorkContext,
};

use prmonitor::ids::{GithubRepoId, InstallationId, PullRequestNumber, RepositoryId};
use prmonitor_testkit::{count, TestDatabase};

const INSTALLATION: i64 = github_sim::generate::GENERATED_INSTALLATION;
const PULLS: &str = "GET /repos/{owner}/{repo}/pulls";
const CHECKS: &str = "GET /repos/{owner}/{repo}/commits/{ref}/check-runs";
const STATUS: &str = "GET /repos/{owner}/{repo}/commits/{ref}/status";

/// A pool whose connections count the SQL statements they run (pool
/// health checks excepted): bulk work must not grow with the row count.
fn counting_pool(url: &str) -> (DbPool, Arc<AtomicUsize>) {
    let statements = Arc::new(AtomicUsize::new(0));
    let counter = statements.clone();
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        let counter = counter.clone();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::StartQuery { query, .. } = event {
                    if !query.to_string().starts_with("SELECT 1") {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    let pool = diesel_async::pooled_connection::deadpool::Pool::builder(manager)
        .max_size(8)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("pool");
    (pool, statements)
}

struct Harness {
    sim: Simulator,
    db: TestDatabase,
    pool: DbPool,
    statements: Arc<AtomicUsize>,
    discovery: Arc<GitHubPrDiscovery>,
    detector: Arc<DatabaseChangeDetector>,
    synchronizer: Arc<DatabaseSynchronizer>,
    processor: PrProcessor,
}

async fn harness(config: SimConfig) -> Harness {
    harness_with(config, |_| {}).await
}

async fn harness_with(config: SimConfig, tune: impl FnOnce(&mut GitHubSettings)) -> Harness {
    let sim = Simulator::start(config).await.expect("simulator");
    let db = TestDatabase::migrated().await;
    let (pool, statements) = counting_pool(&db.url);
    let auth = GitHubAuth::App { app_id: SIM_APP_ID, private_key: Secret::new(SIM_APP_PRIVATE_KEY) };
    let mut settings = GitHubSettings::new(parse_api_url(&sim.api_url()).expect("url"), Some(auth));
    settings.retry_base_delay = Duration::from_millis(10);
    tune(&mut settings);
    let client = GitHubClient::new(&settings, pool.clone()).expect("client");
    let discovery = Arc::new(GitHubPrDiscovery::new(client, 10));
    let detector = Arc::new(DatabaseChangeDetector::new(pool.clone()));
    let synchronizer = Arc::new(DatabaseSynchronizer::new(pool.clone()));
    let processor = PrProcessor::new(discovery.clone(), detector.clone(), synchronizer.clone(), pool.clone());
    Harness { sim, db, pool, statements, discovery, detector, synchronizer, processor }
}

fn generated(repositories: usize, pull_requests: usize, check_runs: usize) -> SimConfig {
    SimConfig { generate: Some(Generate { repositories, pull_requests, check_runs }), ..SimConfig::default() }
}

impl Harness {
    async fn register(&self, full_name: &str) -> Repository {
        let (id, owner, name, installation) = self.sim.world(|w| {
            let repo = w.repo(w.repo_id(full_name).expect("repo")).expect("repo");
            (repo.id, repo.owner.clone(), repo.name.clone(), repo.installation_id)
        });
        let mut conn = self.pool.get().await.expect("conn");
        repositories::upsert(
            &mut conn,
            &NewRepository {
                github_id: GithubRepoId(id),
                owner: &owner,
                name: &name,
                installation_id: Some(InstallationId(installation)),
            },
        )
        .await
        .expect("register")
    }

    async fn reload(&self, repo: &Repository) -> Repository {
        let mut conn = self.pool.get().await.expect("conn");
        repositories::find(&mut conn, repo.id).await.expect("repository")
    }

    /// Discovery → detection of the PR listing, by hand, then synchronization.
    async fn step(&self, repo: &Repository, cause: Cause) -> ChangeSet {
        let prs = self.discovery.discover_prs(repo, None, cause.purpose()).await.expect("discover");
        let heads: Vec<PrHead> = prs.items.iter().map(PrHead::from).collect();
        let runs = self.discovery.discover_check_runs_batch(repo, &heads, cause.purpose()).await;
        assert!(runs.errors.is_empty(), "{:?}", runs.errors);
        let mut changes = ChangeSet {
            prs: self.detector.detect_pr_changes(repo.id, &prs.items).await.expect("detect"),
            check_runs: self.detector.detect_check_run_changes(repo.id, &runs.items).await.expect("detect"),
            validators: prs.validators,
            cause,
            ..ChangeSet::default()
        };
        changes.validators.extend(runs.validators);
        self.synchronizer.synchronize_changes(repo.id, &changes).await.expect("synchronize");
        changes
    }

    /// The stored PRs and check runs equal the simulator's model, field by field.
    async fn assert_matches_sim(&self, repo: &Repository) {
        if let Err(difference) =
            prmonitor_testkit::verify::diff(&self.db.url, &self.sim, repo.github_id.into()).await
        {
            panic!("{difference}");
        }
    }

    async fn history(&self, number: i32) -> Vec<(String, Option<String>, String, String)> {
        let mut conn = self.pool.get().await.expect("conn");
        pr_state_history::table
            .inner_join(pull_requests::table)
            .filter(pull_requests::number.eq(number))
            .order(pr_state_history::id)
            .select((
                pr_state_history::field,
                pr_state_history::old_value,
                pr_state_history::new_value,
                pr_state_history::cause,
            ))
            .load(&mut conn)
            .await
            .expect("history")
    }
}

/// Backfills a generated repository and returns the statements it took.
///
/// GitHub's secondary limit (900 points a minute per endpoint, 304s
/// included) would hold the 1,000 check-run reads of a 1,000-PR backfill, and
/// the 1,000 of processing it again, for about a minute each. These tests
/// count statements and calls, not pacing (github_client.rs tests that), so
/// the simulator and the client both allow more, as the benchmarks widen the
/// primary budget.
async fn backfill_statements(prs: usize) -> (usize, ProcessingResult, Harness, Repository) {
    const WIDENED: u32 = 100_000;
    let config = SimConfig { secondary_points_per_minute: WIDENED, ..generated(1, prs, 10) };
    let h = harness_with(config, |s| s.secondary_points_per_minute = WIDENED).await;
    let repo = h.register("acme/repo-0").await;
    h.sim.reset_stats();
    h.statements.store(0, Ordering::Relaxed);
    let result = h.processor.process_repository(&repo, Cause::Backfill).await;
    let statements = AtomicUsize::load(&h.statements, Ordering::Relaxed);
    (statements, result, h, repo)
}

#[tokio::test]
async fn a_backfill_of_1000_prs_and_10000_check_runs_is_exact_bulk_and_frugal() {
    let (small_statements, small, _small_h, _) = backfill_statements(100).await;
    assert!(small.success, "{:?}", small.errors);
    let (statements, result, h, repo) = backfill_statements(1000).await;
    assert!(result.success, "{:?}", result.errors);
    assert_eq!((result.prs_discovered, result.new_prs), (1000, 1000));
    assert_eq!((result.check_runs_discovered, result.new_check_runs), (10_000, 10_000));
    assert_eq!(result.changes_synchronized, 11_000);
    h.assert_matches_sim(&repo).await;

    // API calls through REST: the PR list pages, one check-run page and one
    // combined status per head (REST has no call for both; GraphQL reads
    // them in one query), and the base branch's required checks once.
    let stats = h.sim.stats();
    assert_eq!(stats.count(PULLS, 200), 10, "{:?}", stats.counts());
    assert_eq!(stats.count(CHECKS, 200), 1000, "{:?}", stats.counts());
    assert_eq!(stats.count(STATUS, 200), 1000, "{:?}", stats.counts());
    let api_calls = stats.requests.iter().filter(|r| !r.route.starts_with("POST /app")).count();
    assert_eq!(api_calls, 2011);

    // Bulk: ten times the rows, a handful more statements (one ETag look-up per
    // PR list page, a few more history chunks), never one per row.
    println!("SQL statements: {small_statements} for 100 PRs, {statements} for 1000 PRs");
    assert!(statements < 60, "{statements} statements for 1000 PRs");
    // 100 → 1000 PRs adds 9 list pages (one ETag look-up each) and a few history chunks;
    // per-row statements would add thousands.
    assert!(statements <= small_statements + 30, "{small_statements} → {statements}");

    // Processing it again: nothing changed, nothing written, nothing spent
    // (the same client, so the same installation token whose ETags these are).
    let budget = h.sim.budget(INSTALLATION).expect("bucket");
    h.sim.reset_stats();
    let again = h.processor.process_repository(&repo, Cause::Sweep).await;
    assert!(again.success, "{:?}", again.errors);
    assert_eq!(
        (
            again.new_prs,
            again.updated_prs,
            again.new_check_runs,
            again.updated_check_runs,
            again.changes_synchronized
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(h.sim.budget(INSTALLATION).expect("bucket").remaining, budget.remaining, "0 budget spent");
    let stats = h.sim.stats();
    assert!(stats.requests.iter().all(|r| r.status == 304), "{:?}", stats.counts());
    assert_eq!(stats.count(PULLS, 304), 1, "an unchanged first page ends the listing");

    // Ids above 2^31 round-trip unchanged.
    let max_id: i64 = h.sim.world(|w| {
        w.repo(repo.github_id.into()).expect("repo").check_runs.keys().max().copied().expect("runs")
    });
    assert!(max_id > i64::from(i32::MAX));
    let stored =
        count(&h.db.url, &format!("SELECT count(*) FROM check_runs WHERE github_id = {max_id}")).await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn each_single_field_change_is_one_update_with_old_and_new_and_transitions_have_history() {
    let h = harness(generated(1, 3, 2)).await;
    let repo = h.register("acme/repo-0").await;
    let backfill = h.step(&repo, Cause::Backfill).await;
    assert_eq!(backfill.new_prs(), 3);
    let full = "acme/repo-0";
    // A PR that is open in the generated world.
    let n = h.sim.world(|w| {
        w.repo(repo.github_id.into())
            .expect("repo")
            .pulls
            .values()
            .find(|p| p.state == SimState::Open)
            .map(|p| p.number)
    });
    let n = match n {
        Some(n) => n,
        None => h.sim.open_pr(full, github_sim::NewPr::new("fresh", "zoe")).expect("open"),
    };
    let number = n as i32;
    if backfill.prs.iter().all(|r| r.data.number != PullRequestNumber(number)) {
        h.step(&repo, Cause::Sweep).await;
    }
    // Start from a draft, so that the draft change below (ready for review)
    // leaves a PR that can be merged at the end.
    if !h.sim.world(|w| w.repo(repo.github_id.into()).expect("repo").pulls[&n].draft) {
        h.sim.mutate_silently(|w| w.set_draft(repo.github_id.into(), n, true)).expect("draft");
        h.step(&repo, Cause::Sweep).await;
    }
    let before = h.history(number).await.len();
    let old_title = h.sim.world(|w| w.repo(repo.github_id.into()).expect("repo").pulls[&n].title.clone());
    let old_head = h.sim.world(|w| w.repo(repo.github_id.into()).expect("repo").pulls[&n].head_sha.clone());

    type Change = (PrField, Option<String>, Option<String>, Option<&'static str>);
    let expect = |changes: ChangeSet, field: PrField, old: Option<&str>, new: Option<&str>| -> Change {
        assert_eq!(changes.prs.len(), 1, "{field:?}: {:?}", changes.prs);
        let record = &changes.prs[0];
        assert_eq!(record.kind, ChangeKind::Updated);
        let relevant: Vec<_> = record.changes.iter().collect();
        assert_eq!(relevant.len(), 1, "{field:?}: {relevant:?}");
        assert_eq!(
            (relevant[0].field, relevant[0].old.as_deref(), relevant[0].new.as_deref()),
            (field, old, new)
        );
        (field, relevant[0].old.clone(), relevant[0].new.clone(), field.history_name())
    };

    h.sim
        .mutate_silently(|w| w.edit_pr(repo.github_id.into(), n, Some("Retitled".into()), None))
        .expect("edit");
    let changes = h.step(&repo, Cause::Sweep).await;
    expect(changes, PrField::Title, Some(&old_title), Some("Retitled"));

    let old_labels = h.sim.world(|w| {
        let mut l = w.repo(repo.github_id.into()).expect("repo").pulls[&n].labels.clone();
        l.sort();
        l.join(",")
    });
    h.sim.mutate_silently(|w| w.add_label(repo.github_id.into(), n, "zz-urgent")).expect("label");
    let changes = h.step(&repo, Cause::Sweep).await;
    let new_labels =
        if old_labels.is_empty() { "zz-urgent".to_owned() } else { format!("{old_labels},zz-urgent") };
    expect(changes, PrField::Labels, Some(&old_labels), Some(&new_labels));

    let draft = h.sim.world(|w| w.repo(repo.github_id.into()).expect("repo").pulls[&n].draft);
    h.sim.mutate_silently(|w| w.set_draft(repo.github_id.into(), n, !draft)).expect("draft");
    let changes = h.step(&repo, Cause::Sweep).await;
    expect(changes, PrField::Draft, Some(&draft.to_string()), Some(&(!draft).to_string()));

    // A force-push: the PR's checks become those of the new head.
    let (new_head, _) = h.sim.mutate_silently(|w| w.push(repo.github_id.into(), n)).expect("push");
    let new_run = h
        .sim
        .mutate_silently(|w| w.create_check_run(repo.github_id.into(), &new_head, "build"))
        .expect("run")
        .0;
    let changes = h.step(&repo, Cause::Sweep).await;
    assert_eq!(changes.new_check_runs(), 1);
    expect(changes, PrField::HeadSha, Some(&old_head), Some(&new_head));
    let current: Vec<i64> = {
        let mut conn = h.pool.get().await.expect("conn");
        check_runs::table
            .inner_join(pull_requests::table.on(pull_requests::head_sha.eq(check_runs::head_sha)))
            .filter(pull_requests::number.eq(number))
            .select(check_runs::github_id)
            .load(&mut conn)
            .await
            .expect("current checks")
    };
    assert_eq!(current, [new_run], "the PR's checks are the new head's");
    let old_runs =
        count(&h.db.url, &format!("SELECT count(*) FROM check_runs WHERE head_sha = '{old_head}'")).await;
    assert_eq!(old_runs, 2, "the old head keeps its runs");

    h.sim.mutate_silently(|w| w.close_pr(repo.github_id.into(), n, false)).expect("close");
    let changes = h.step(&repo, Cause::Sweep).await;
    expect(changes, PrField::State, Some("open"), Some("closed"));
    h.sim.mutate_silently(|w| w.reopen_pr(repo.github_id.into(), n)).expect("reopen");
    h.step(&repo, Cause::Sweep).await;
    h.sim.mutate_silently(|w| w.close_pr(repo.github_id.into(), n, true)).expect("merge");
    let changes = h.step(&repo, Cause::Sweep).await;
    expect(changes, PrField::State, Some("open"), Some("merged"));

    // History: exactly one row per transition, none for title or labels.
    let history = h.history(number).await;
    let added: Vec<(String, Option<String>, String)> =
        history[before..].iter().map(|(f, o, n, _)| (f.clone(), o.clone(), n.clone())).collect();
    assert_eq!(
        added,
        [
            ("draft".to_owned(), Some(draft.to_string()), (!draft).to_string()),
            ("head_sha".to_owned(), Some(old_head.clone()), new_head.clone()),
            ("state".to_owned(), Some("open".to_owned()), "closed".to_owned()),
            ("state".to_owned(), Some("closed".to_owned()), "open".to_owned()),
            ("state".to_owned(), Some("open".to_owned()), "merged".to_owned()),
        ]
    );
    assert!(history[before..].iter().all(|(_, _, _, cause)| cause == "sweep"));
    h.assert_matches_sim(&repo).await;
}

#[tokio::test]
async fn older_snapshots_change_nothing_and_completed_checks_stay_completed() {
    let h = harness(generated(1, 1, 0)).await;
    let repo = h.register("acme/repo-0").await;
    let n = h.sim.open_pr("acme/repo-0", github_sim::NewPr::new("Order", "amy")).expect("open");
    let older =
        h.discovery.discover_pr(&repo, PullRequestNumber(n as i32), Purpose::Webhook).await.expect("read");
    let PrLookup::Fresh { pr: older, .. } = older else { panic!("fresh") };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sim
        .mutate_silently(|w| w.edit_pr(repo.github_id.into(), n, Some("Newer title".into()), None))
        .expect("edit");
    let PrLookup::Fresh { pr: newer, .. } =
        h.discovery.discover_pr(&repo, PullRequestNumber(n as i32), Purpose::Webhook).await.expect("read")
    else {
        panic!("fresh")
    };
    assert!(newer.updated_at > older.updated_at);

    let apply = |pr: PrData, kind: ChangeKind| ChangeSet {
        prs: vec![PrChangeRecord { kind, data: pr, changes: vec![] }],
        ..ChangeSet::default()
    };
    let changes = h.detector.detect_pr_changes(repo.id, &[(*newer).clone()]).await.expect("detect");
    h.synchronizer
        .synchronize_changes(repo.id, &ChangeSet { prs: changes, ..ChangeSet::default() })
        .await
        .expect("sync");
    // The older snapshot arrives late: detection sees nothing to do...
    assert!(h.detector.detect_pr_changes(repo.id, &[(*older).clone()]).await.expect("detect").is_empty());
    // ...and even forced through, the upsert's guard refuses it.
    let written =
        h.synchronizer.synchronize_changes(repo.id, &apply(*older, ChangeKind::Updated)).await.expect("sync");
    assert_eq!(written.written, 0);
    let title = count(
        &h.db.url,
        &format!("SELECT count(*) FROM pull_requests WHERE title = 'Newer title' AND number = {n}"),
    )
    .await;
    assert_eq!(title, 1);

    // Check runs: a completed run fed an older in-progress snapshot stays completed.
    let sha = newer.head_sha.clone();
    let run_id = h
        .sim
        .mutate_silently(|w| w.create_check_run(repo.github_id.into(), sha.as_str(), "ci"))
        .expect("run")
        .0;
    h.sim.start_check_run(run_id).expect("start");
    let head = [PrHead { number: PullRequestNumber(n as i32), head_sha: sha.clone() }];
    let snapshot = || async {
        let runs = h.discovery.discover_check_runs_batch(&repo, &head, Purpose::Webhook).await;
        runs.items.into_iter().find(|r| r.github_id == run_id).expect("run")
    };
    let in_progress = snapshot().await;
    h.sim.complete_check_run(run_id, "success").expect("complete");
    let completed = snapshot().await;
    let runs = |run: CheckRunData| ChangeSet {
        check_runs: vec![CheckRunChangeRecord { kind: ChangeKind::Updated, data: run, changes: vec![] }],
        ..ChangeSet::default()
    };
    h.synchronizer.synchronize_changes(repo.id, &runs(completed)).await.expect("sync");
    assert!(h
        .detector
        .detect_check_run_changes(repo.id, std::slice::from_ref(&in_progress))
        .await
        .expect("detect")
        .is_empty());
    assert_eq!(
        h.synchronizer.synchronize_changes(repo.id, &runs(in_progress)).await.expect("sync").written,
        0
    );
    let status = count(
        &h.db.url,
        &format!("SELECT count(*) FROM check_runs WHERE github_id = {run_id} AND status = 'completed' AND conclusion = 'success'"),
    )
    .await;
    assert_eq!(status, 1);
}

#[tokio::test]
async fn a_failure_in_the_last_row_leaves_the_database_as_it_was() {
    let h = harness(generated(1, 5, 2)).await;
    let repo = h.register("acme/repo-0").await;
    h.step(&repo, Cause::Backfill).await;
    let fingerprint = |url: String| async move {
        let mut parts = Vec::new();
        for table in ["pull_requests", "check_runs", "pr_state_history", "http_cache", "repositories"] {
            let sql = format!("SELECT count(*) + coalesce(sum(hashtext(t::text)::bigint), 0) FROM {table} t");
            parts.push(count(&url, &sql).await);
        }
        parts
    };
    let before = fingerprint(h.db.url.clone()).await;

    // 3,300 new PRs and a check run, written after them. The very last PR
    // breaks a constraint (a PR number must be positive).
    let PrLookup::Fresh { pr: template, .. } =
        h.discovery.discover_pr(&repo, PullRequestNumber(1), Purpose::Sweep).await.expect("read")
    else {
        panic!("PR #1 is fresh")
    };
    let mut records: Vec<PrChangeRecord> = (0..3300)
        .map(|i| {
            let mut pr = (*template).clone();
            pr.number = PullRequestNumber(10_000 + i);
            pr.github_id = 90_000_000 + i64::from(i);
            PrChangeRecord { kind: ChangeKind::New, data: pr, changes: vec![] }
        })
        .collect();
    records.last_mut().expect("last").data.number = PullRequestNumber(0);
    let check_run = CheckRunData {
        github_id: 5_000_000_000,
        node_id: None,
        check_suite_id: None,
        head_sha: template.head_sha.clone(),
        name: "extra".into(),
        app_slug: None,
        status: "queued".into(),
        conclusion: None,
        details_url: None,
        html_url: None,
        output_title: None,
        output_summary: None,
        started_at: None,
        completed_at: None,
    };
    let changes = ChangeSet {
        prs: records,
        check_runs: vec![CheckRunChangeRecord { kind: ChangeKind::New, data: check_run, changes: vec![] }],
        ..ChangeSet::default()
    };
    let error = h.synchronizer.synchronize_changes(repo.id, &changes).await.expect_err("the last row fails");
    assert!(error.to_string().contains("check"), "{error}");
    assert_eq!(fingerprint(h.db.url.clone()).await, before, "nothing of the change set remains");
}

#[tokio::test]
async fn a_failing_repository_is_counted_and_does_not_stop_the_batch() {
    let h = harness_with(generated(5, 3, 1), |s| s.retry_attempts = 1).await;
    let mut repos = Vec::new();
    for i in 0..5 {
        repos.push(h.register(&format!("acme/repo-{i}")).await);
    }
    h.sim.set_faults(Faults { failing_paths: vec!["/repos/acme/repo-2/".into()], ..Faults::default() });
    let batch = h.processor.process_repositories(&repos, Cause::Sweep).await;
    assert_eq!((batch.repositories_processed, batch.succeeded, batch.failed), (5, 4, 1));
    assert!((batch.success_rate() - 0.8).abs() < 1e-9);
    let failed = h.reload(&repos[2]).await;
    assert_eq!(failed.consecutive_failures, 1);
    let reason = failed.last_failure_reason.clone().expect("reason");
    assert!(reason.contains("500"), "{reason}");
    assert_eq!(batch.results[2].errors[0].kind, prmonitor::monitor::ErrorKind::DiscoveryFailure);
    for ok in [0, 1, 3, 4] {
        let repo = h.reload(&repos[ok]).await;
        assert_eq!(repo.consecutive_failures, 0);
        assert!(repo.last_synced_at.is_some());
    }

    // A second failure counts up; the next success resets the count.
    h.processor.process_repository(&repos[2], Cause::Sweep).await;
    assert_eq!(h.reload(&repos[2]).await.consecutive_failures, 2);
    h.sim.set_faults(Faults::default());
    let healed = h.processor.process_repository(&repos[2], Cause::Sweep).await;
    assert!(healed.success, "{:?}", healed.errors);
    let repo = h.reload(&repos[2]).await;
    assert_eq!((repo.consecutive_failures, repo.last_failure_reason.clone()), (0, None));
    h.assert_matches_sim(&repo).await;
}

/// An extension point: a discovery that drops PRs carrying excluded labels.
struct ExcludeLabels {
    inner: Arc<dyn PrDiscovery>,
    excluded: Vec<String>,
}

#[async_trait]
impl PrDiscovery for ExcludeLabels {
    async fn discover_prs(
        &self,
        repo: &Repository,
        since: Option<DateTime<Utc>>,
        purpose: Purpose,
    ) -> Result<Discovered<PrData>, ProcessingError> {
        let mut found = self.inner.discover_prs(repo, since, purpose).await?;
        found.items.retain(|pr| !pr.labels.iter().any(|l| self.excluded.contains(l)));
        Ok(found)
    }

    async fn discover_pr(
        &self,
        repo: &Repository,
        number: PullRequestNumber,
        purpose: Purpose,
    ) -> Result<PrLookup, ProcessingError> {
        self.inner.discover_pr(repo, number, purpose).await
    }

    async fn discover_check_runs_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<CheckRunData> {
        self.inner.discover_check_runs_batch(repo, heads, purpose).await
    }

    async fn discover_statuses_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<prmonitor::monitor::StatusData> {
        self.inner.discover_statuses_batch(repo, heads, purpose).await
    }

    async fn discover_requirement(
        &self,
        repo: &Repository,
        branch: &str,
        purpose: Purpose,
    ) -> Result<prmonitor::monitor::Requirement, ProcessingError> {
        self.inner.discover_requirement(repo, branch, purpose).await
    }
}

/// An extension point: a processor that records per-repository metrics.
struct MeteredProcessor {
    inner: PrProcessor,
    metrics: Mutex<BTreeMap<String, (usize, usize)>>,
}

impl MeteredProcessor {
    async fn process_repository(&self, repo: &Repository, cause: Cause) -> ProcessingResult {
        let result = self.inner.process_repository(repo, cause).await;
        let mut metrics = self.metrics.lock().expect("metrics");
        let entry = metrics.entry(result.repository.clone()).or_default();
        *entry = (entry.0 + 1, entry.1 + result.changes_synchronized);
        result
    }
}

#[tokio::test]
async fn the_traits_take_a_label_filter_and_a_metrics_wrapper_in_a_few_lines() {
    let h = harness(generated(1, 40, 1)).await;
    let repo = h.register("acme/repo-0").await;
    let wip = h.sim.world(|w| {
        w.repo(repo.github_id.into())
            .expect("repo")
            .pulls
            .values()
            .filter(|p| p.labels.contains(&"wip".to_owned()))
            .count()
    });
    assert!(wip > 0, "the generated world has WIP PRs");
    let filtered = Arc::new(ExcludeLabels { inner: h.discovery.clone(), excluded: vec!["wip".into()] });
    let processor = MeteredProcessor {
        inner: PrProcessor::new(filtered, h.detector.clone(), h.synchronizer.clone(), h.pool.clone()),
        metrics: Mutex::default(),
    };
    let result = processor.process_repository(&repo, Cause::Backfill).await;
    assert!(result.success, "{:?}", result.errors);
    assert_eq!(result.new_prs, 40 - wip);
    assert_eq!(count(&h.db.url, "SELECT count(*) FROM pull_requests WHERE 'wip' = ANY(labels)").await, 0);
    processor.process_repository(&repo, Cause::Sweep).await;
    let metrics = processor.metrics.lock().expect("metrics").clone();
    assert_eq!(metrics.get("acme/repo-0").map(|m| m.0), Some(2));
    assert_eq!(metrics["acme/repo-0"].1, result.changes_synchronized);
}

/// PR reads (single or listed) the simulator answered.
fn pr_reads(sim: &Simulator) -> usize {
    sim.stats().requests.iter().filter(|r| r.route.starts_with(PULLS)).count()
}

fn check_reads(sim: &Simulator) -> usize {
    sim.stats().requests.iter().filter(|r| r.route.starts_with(CHECKS)).count()
}

#[tokio::test]
async fn delivered_snapshots_are_applied_without_reads_and_ties_ask_github() {
    let h = harness(generated(1, 0, 0)).await;
    let repo = h.register("acme/repo-0").await;
    let n = h.sim.open_pr("acme/repo-0", github_sim::NewPr::new("First", "amy")).expect("open");
    let read = || async {
        match h
            .discovery
            .discover_pr(&repo, PullRequestNumber(n as i32), Purpose::Webhook)
            .await
            .expect("read")
        {
            PrLookup::Fresh { pr, .. } => *pr,
            other => panic!("{other:?}"),
        }
    };
    let first = read().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sim
        .mutate_silently(|w| w.edit_pr(repo.github_id.into(), n, Some("Second".into()), None))
        .expect("edit");
    let second = read().await;
    assert!(second.updated_at > first.updated_at);
    // Another state GitHub held within the same second (what a webhook
    // delivered just before the "Second" one).
    let same_second = PrData { title: "Same second".into(), ..second.clone() };
    let delivered =
        |pr: &PrData| Target::DeliveredPullRequest { pr: Box::new(pr.clone()), with_checks: false };
    let title = || async {
        let mut conn = h.pool.get().await.expect("conn");
        pull_requests::table
            .filter(pull_requests::number.eq(n as i32))
            .select(pull_requests::title)
            .first::<String>(&mut conn)
            .await
            .expect("stored")
    };
    h.sim.reset_stats();

    // New: applied from the delivery (a new PR's checks are still read).
    let result = h.processor.process(&repo, delivered(&first), WorkContext::default()).await;
    assert!(result.success && result.new_prs == 1, "{result:?}");
    assert_eq!((pr_reads(&h.sim), check_reads(&h.sim)), (0, 1));
    // Strictly newer: applied, no read.
    let result = h.processor.process(&repo, delivered(&same_second), WorkContext::default()).await;
    assert_eq!(result.updated_prs, 1, "{result:?}");
    assert_eq!(pr_reads(&h.sim), 0);
    // Older: nothing to do, no read.
    let result = h.processor.process(&repo, delivered(&first), WorkContext::default()).await;
    assert_eq!((result.success, result.changes_synchronized, pr_reads(&h.sim)), (true, 0, 0));
    assert_eq!(title().await, "Same second");
    // Same second, different content: only GitHub can order them — one read,
    // and the stored row is GitHub's.
    let result = h.processor.process(&repo, delivered(&second), WorkContext::default()).await;
    assert!(result.success, "{result:?}");
    assert_eq!(pr_reads(&h.sim), 1);
    assert_eq!(title().await, "Second");
    h.assert_matches_sim(&repo).await;

    // Check runs: queued then completed from deliveries, a late "queued"
    // ignored, all without reads; a tie at the same step is read.
    let sha = second.head_sha.clone();
    let run_id = h
        .sim
        .mutate_silently(|w| w.create_check_run(repo.github_id.into(), sha.as_str(), "ci"))
        .expect("run")
        .0;
    let head = [PrHead { number: PullRequestNumber(n as i32), head_sha: sha.clone() }];
    let snapshot = || async {
        let runs = h.discovery.discover_check_runs_batch(&repo, &head, Purpose::Webhook).await;
        runs.items.into_iter().find(|r| r.github_id == run_id).expect("run")
    };
    let queued = snapshot().await;
    h.sim.complete_check_run(run_id, "success").expect("complete");
    let completed = snapshot().await;
    let other_verdict = CheckRunData { conclusion: Some("failure".into()), ..completed.clone() };
    let runs = |runs: &[&CheckRunData]| Target::DeliveredCheckRuns {
        head_sha: sha.clone(),
        runs: runs.iter().map(|r| (*r).clone()).collect(),
    };
    h.sim.reset_stats();
    for target in [runs(&[&queued]), runs(&[&other_verdict]), runs(&[&queued])] {
        assert!(h.processor.process(&repo, target, WorkContext::default()).await.success);
    }
    assert_eq!(check_reads(&h.sim), 0);
    let conclusion =
        format!("SELECT count(*) FROM check_runs WHERE github_id = {run_id} AND conclusion = 'failure'");
    assert_eq!(count(&h.db.url, &conclusion).await, 1);
    assert!(h.processor.process(&repo, runs(&[&completed]), WorkContext::default()).await.success);
    assert_eq!(check_reads(&h.sim), 1, "a tie at the same step is read");
    h.assert_matches_sim(&repo).await;
}

#[tokio::test]
async fn a_delivered_snapshot_that_ties_under_the_lock_writes_nothing() {
    let h = harness(generated(1, 0, 0)).await;
    let repo = h.register("acme/repo-0").await;
    let n = h.sim.open_pr("acme/repo-0", github_sim::NewPr::new("Locked", "amy")).expect("open");
    let PrLookup::Fresh { pr, .. } =
        h.discovery.discover_pr(&repo, PullRequestNumber(n as i32), Purpose::Webhook).await.expect("read")
    else {
        panic!("fresh")
    };
    let record = |pr: PrData| PrChangeRecord { kind: ChangeKind::New, data: pr, changes: vec![] };
    h.synchronizer
        .synchronize_changes(repo.id, &ChangeSet { prs: vec![record((*pr).clone())], ..ChangeSet::default() })
        .await
        .expect("sync");
    // Detected before another job wrote the row above; decided under the lock.
    let tie = PrData { title: "Tie".into(), ..(*pr).clone() };
    let changes = ChangeSet { prs: vec![record(tie)], delivered_prs: true, ..ChangeSet::default() };
    let outcome = h.synchronizer.synchronize_changes(repo.id, &changes).await;
    assert!(matches!(outcome, Err(SyncError::Undecided(1))), "{outcome:?}");
    assert_eq!(count(&h.db.url, "SELECT count(*) FROM pull_requests WHERE title = 'Locked'").await, 1);
}

/// The head SHA of PR `number` in the simulator.
fn sim_head(sim: &Simulator, repo: &str, number: i64) -> String {
    sim.world(|w| w.repo(w.repo_id(repo).expect("repo")).expect("repo").pulls[&number].head_sha.clone())
}

async fn sweep(h: &Harness, repo: &Repository) -> ProcessingResult {
    let ctx = WorkContext { cause: Cause::Sweep, ..WorkContext::default() };
    h.processor.process(repo, Target::Sweep, ctx).await
}

#[tokio::test]
async fn a_check_run_read_that_fails_writes_what_was_read_and_fails_the_unit_of_work() {
    let h = harness_with(generated(1, 3, 2), |s| s.retry_attempts = 1).await;
    let repo = h.register("acme/repo-0").await;
    let head = sim_head(&h.sim, "acme/repo-0", 1);
    let path = format!("/repos/acme/repo-0/commits/{head}/check-runs");
    h.sim.set_faults(Faults { failing_paths: vec![path], ..Faults::default() });
    let result = h.processor.process_repository(&repo, Cause::Backfill).await;
    assert!(!result.success, "a head whose checks could not be read is not a success");
    assert!(result.errors.iter().any(|e| e.context.contains("500")), "{:?}", result.errors);
    assert_eq!(count(&h.db.url, "SELECT count(*) FROM pull_requests").await, 3, "what was read is written");
    assert_eq!(
        count(&h.db.url, &format!("SELECT count(*) FROM check_runs WHERE head_sha = '{head}'")).await,
        0
    );
    assert_eq!(count(&h.db.url, "SELECT count(*) FROM check_runs").await, 4, "the other heads' runs");
    let stamped = h.reload(&repo).await;
    assert_eq!(stamped.last_swept_at, None, "an incomplete read is not a finished backfill");
    assert_eq!(stamped.consecutive_failures, 1);

    h.sim.set_faults(Faults::default());
    let retried = h.processor.process_repository(&repo, Cause::Backfill).await;
    assert!(retried.success, "{:?}", retried.errors);
    h.assert_matches_sim(&repo).await;
}

#[tokio::test]
async fn a_sweep_heals_an_unfinished_run_on_a_commit_that_is_no_longer_a_head() {
    let h = harness(generated(1, 1, 0)).await;
    let repo = h.register("acme/repo-0").await;
    let old_head = sim_head(&h.sim, "acme/repo-0", 1);
    let run = h.sim.create_check_run("acme/repo-0", &old_head, "slow-test").expect("run");
    assert!(h.processor.process_repository(&repo, Cause::Backfill).await.success);
    // The PR moves on; the first sweep stores the new head.
    h.sim.push("acme/repo-0", 1).expect("push");
    assert!(sweep(&h, &repo).await.success);
    h.assert_matches_sim(&repo).await;
    // The old head's run starts and finishes; its webhooks are lost (a start sends none).
    h.sim.start_check_run(run).expect("start");
    h.sim.complete_check_run(run, "failure").expect("complete");
    let result = sweep(&h, &repo).await;
    assert!(result.success, "{:?}", result.errors);
    h.assert_matches_sim(&repo).await;
    assert_eq!(
        count(
            &h.db.url,
            &format!("SELECT count(*) FROM check_runs WHERE github_id = {run} AND status = 'completed'")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_sweep_finds_a_run_whose_webhook_was_lost_on_a_head_replaced_since_the_last_sweep() {
    let h = harness(generated(1, 1, 0)).await;
    let repo = h.register("acme/repo-0").await;
    assert!(h.processor.process_repository(&repo, Cause::Backfill).await.success);
    let old_head = sim_head(&h.sim, "acme/repo-0", 1);
    // A run is created on the head, its webhook lost, then the PR is pushed on.
    let run = h.sim.create_check_run("acme/repo-0", &old_head, "lint").expect("run");
    h.sim.push("acme/repo-0", 1).expect("push");
    let result = sweep(&h, &h.reload(&repo).await).await;
    assert!(result.success, "{:?}", result.errors);
    h.assert_matches_sim(&repo).await;
    assert_eq!(
        count(&h.db.url, &format!("SELECT count(*) FROM check_runs WHERE github_id = {run}")).await,
        1
    );
    // The push was recorded in that sweep's own transaction: the next sweep reads the old head once more.
    let later = h.sim.create_check_run("acme/repo-0", &old_head, "late").expect("run");
    assert!(sweep(&h, &h.reload(&repo).await).await.success);
    assert_eq!(
        count(&h.db.url, &format!("SELECT count(*) FROM check_runs WHERE github_id = {later}")).await,
        1
    );
}

/// An extension point: a detector that keeps draft toggles out of the
/// history (the row still takes the new draft flag).
struct NoDraftHistory {
    inner: Arc<dyn ChangeDetector>,
}

#[async_trait]
impl ChangeDetector for NoDraftHistory {
    async fn detect_pr_changes(
        &self,
        repository_id: RepositoryId,
        prs: &[PrData],
    ) -> Result<Vec<PrChangeRecord>, DetectionError> {
        let mut records = self.inner.detect_pr_changes(repository_id, prs).await?;
        for record in &mut records {
            record.changes.retain(|change| change.field != PrField::Draft);
        }
        Ok(records)
    }

    async fn detect_check_run_changes(
        &self,
        repository_id: RepositoryId,
        check_runs: &[CheckRunData],
    ) -> Result<Vec<CheckRunChangeRecord>, DetectionError> {
        self.inner.detect_check_run_changes(repository_id, check_runs).await
    }
}

#[tokio::test]
async fn the_detector_the_processor_was_given_decides_what_is_written() {
    let h = harness(generated(1, 0, 0)).await;
    let repo = h.register("acme/repo-0").await;
    let n = h.sim.open_pr("acme/repo-0", github_sim::NewPr::new("Drafted", "amy")).expect("open");
    let processor = PrProcessor::new(
        h.discovery.clone(),
        Arc::new(NoDraftHistory { inner: h.detector.clone() }),
        h.synchronizer.clone(),
        h.pool.clone(),
    );
    let target = || Target::PullRequest { number: PullRequestNumber(n as i32), with_checks: false };
    assert!(processor.process(&repo, target(), WorkContext::default()).await.success);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sim.mutate_silently(|w| w.set_draft(repo.github_id.into(), n, true)).expect("draft");

    let result = processor.process(&repo, target(), WorkContext::default()).await;
    assert!(result.success, "{:?}", result.errors);
    assert_eq!((result.updated_prs, result.changes_synchronized), (1, 1));
    let draft = format!("SELECT count(*) FROM pull_requests WHERE number = {n} AND draft");
    assert_eq!(count(&h.db.url, &draft).await, 1, "the row is written");
    let fields: Vec<String> = h.history(n as i32).await.into_iter().map(|(field, ..)| field).collect();
    assert_eq!(fields, ["state"], "the history is as the detector decided: no draft toggle");
}

/// A detector behind which another job writes the same rows, once: between
/// this job's detection and its synchronization.
struct Overtaken {
    inner: Arc<DatabaseChangeDetector>,
    other_job: Arc<DatabaseSynchronizer>,
    overtaken: std::sync::atomic::AtomicBool,
    detections: AtomicUsize,
}

#[async_trait]
impl ChangeDetector for Overtaken {
    async fn detect_pr_changes(
        &self,
        repository_id: RepositoryId,
        prs: &[PrData],
    ) -> Result<Vec<PrChangeRecord>, DetectionError> {
        self.detections.fetch_add(1, Ordering::Relaxed);
        let records = self.inner.detect_pr_changes(repository_id, prs).await?;
        if !self.overtaken.swap(true, Ordering::Relaxed) {
            let changes = ChangeSet { prs: records.clone(), ..ChangeSet::default() };
            self.other_job
                .synchronize_changes(repository_id, &changes)
                .await
                .map_err(|e| DetectionError(e.to_string()))?;
        }
        Ok(records)
    }

    async fn detect_check_run_changes(
        &self,
        repository_id: RepositoryId,
        check_runs: &[CheckRunData],
    ) -> Result<Vec<CheckRunChangeRecord>, DetectionError> {
        self.inner.detect_check_run_changes(repository_id, check_runs).await
    }
}

#[tokio::test]
async fn rows_written_between_detection_and_the_lock_are_detected_again() {
    let h = harness(generated(1, 0, 0)).await;
    let repo = h.register("acme/repo-0").await;
    let n = h.sim.open_pr("acme/repo-0", github_sim::NewPr::new("Raced", "amy")).expect("open");
    let detector = Arc::new(Overtaken {
        inner: h.detector.clone(),
        other_job: h.synchronizer.clone(),
        overtaken: Default::default(),
        detections: AtomicUsize::new(0),
    });
    let processor =
        PrProcessor::new(h.discovery.clone(), detector.clone(), h.synchronizer.clone(), h.pool.clone());
    let target = Target::PullRequest { number: PullRequestNumber(n as i32), with_checks: false };
    let result = processor.process(&repo, target, WorkContext::default()).await;
    assert!(result.success, "{:?}", result.errors);
    // The other job wrote the PR first: for this one it is no longer new,
    // and its history starts once.
    assert_eq!(h.history(n as i32).await.len(), 1);
    assert_eq!(result.new_prs, 0, "{result:?}");
    let detections = AtomicUsize::load(&detector.detections, Ordering::Relaxed);
    assert_eq!(detections, 2, "detected again on the other job's row");
}
