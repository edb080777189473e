//! A panic never stops work: hostile rate-limit headers, and a job that
//! panics, leave every worker slot running.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use github_sim::generate::GENERATED_INSTALLATION;
use github_sim::{Generate, NewPr, SimConfig, Simulator};
use prmonitor::db::repositories::{self, Repository};
use prmonitor::github::{GitHubClient, Purpose};
use prmonitor::monitor::{
    CheckRunData, DatabaseChangeDetector, DatabaseSynchronizer, Discovered, GitHubPrDiscovery, PrData,
    PrDiscovery, PrHead, PrLookup, PrProcessor, ProcessingError,
};
use prmonitor::queue::{self, NewJob, RepositoryJob};
use prmonitor::supervise::Fatal;
use prmonitor::worker::{Worker, WorkerDeps};

use prmonitor::ids::{GithubRepoId, InstallationId, PullRequestNumber};
use prmonitor_testkit::verify::converge;
use prmonitor_testkit::world::{drain, settings_for, start_service, webhook_target};
use prmonitor_testkit::{connect, count, TestDatabase};

#[tokio::test]
async fn a_rate_limit_reset_beyond_the_clock_stops_no_worker() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 0, check_runs: 0 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    // Every answer of this installation says the budget resets at 2^63 s.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let bucket =
        sim.set_budget(GENERATED_INSTALLATION, None, Some(4_000), Some(Duration::from_secs((1 << 63) - now)));
    assert_eq!(bucket.reset, 1 << 63);
    let service =
        start_service(&db, &settings_for(&db, &sim, &[("PRMONITOR_WORKER_CONCURRENCY", "2")])).await;
    sim.set_webhook(Some(webhook_target(&service.address().expect("http").to_string())));
    // More webhooks than slots, each job reading GitHub after the headers were seen.
    for i in 0..6 {
        let number = sim.open_pr("acme/repo-0", NewPr::new(&format!("Change {i}"), "alice")).expect("open");
        sim.push("acme/repo-0", number).expect("push");
    }
    sim.wait_for_deliveries().await;
    converge(&db.url, &sim, Duration::from_secs(60))
        .await
        .unwrap_or_else(|d| panic!("the worker stopped working: {d}"));
    drain(&db.url, Duration::from_secs(30)).await;
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE state <> 'done'").await, 0);
    service.stop().await;
}

/// A discovery that panics for one repository, as a bug in any part of a job might.
struct PanicsFor {
    inner: GitHubPrDiscovery,
    repository: &'static str,
}

impl PanicsFor {
    fn check(&self, repo: &Repository) {
        if repo.full_name() == self.repository {
            panic!("a bug while discovering {}", self.repository);
        }
    }
}

#[async_trait]
impl PrDiscovery for PanicsFor {
    async fn discover_prs(
        &self,
        repo: &Repository,
        since: Option<DateTime<Utc>>,
        purpose: Purpose,
    ) -> Result<Discovered<PrData>, ProcessingError> {
        self.check(repo);
        self.inner.discover_prs(repo, since, purpose).await
    }

    async fn discover_pr(
        &self,
        repo: &Repository,
        number: PullRequestNumber,
        purpose: Purpose,
    ) -> Result<PrLookup, ProcessingError> {
        self.check(repo);
        self.inner.discover_pr(repo, number, purpose).await
    }

    async fn discover_check_runs_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<CheckRunData> {
        self.check(repo);
        self.inner.discover_check_runs_batch(repo, heads, purpose).await
    }

    async fn discover_statuses_batch(
        &self,
        repo: &Repository,
        heads: &[PrHead],
        purpose: Purpose,
    ) -> Discovered<prmonitor::monitor::StatusData> {
        self.check(repo);
        self.inner.discover_statuses_batch(repo, heads, purpose).await
    }

    async fn discover_requirement(
        &self,
        repo: &Repository,
        branch: &str,
        purpose: Purpose,
    ) -> Result<prmonitor::monitor::Requirement, ProcessingError> {
        self.check(repo);
        self.inner.discover_requirement(repo, branch, purpose).await
    }
}

#[tokio::test]
async fn a_job_that_panics_fails_like_any_other_and_its_slot_goes_on() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 2, pull_requests: 3, check_runs: 1 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let db = TestDatabase::migrated().await;
    // One slot: had the panic taken it, nothing after it would run.
    let settings = settings_for(&db, &sim, &[("PRMONITOR_WORKER_CONCURRENCY", "1")]);
    let pool = prmonitor::db::build_pool(&db.database_url(), 4).expect("pool");
    let github = GitHubClient::new(&settings.github, pool.clone()).expect("client");
    let processor = PrProcessor::new(
        Arc::new(PanicsFor { inner: GitHubPrDiscovery::new(github.clone(), 4), repository: "acme/repo-0" }),
        Arc::new(DatabaseChangeDetector::new(pool.clone())),
        Arc::new(DatabaseSynchronizer::new(pool.clone())),
        pool.clone(),
    );
    let mut conn = connect(&db.url).await;
    let mut jobs = Vec::new();
    for name in ["repo-0", "repo-1"] {
        let github_id = sim.repo_id(&format!("acme/{name}")).expect("repo");
        let repo = repositories::upsert(
            &mut conn,
            &repositories::NewRepository {
                github_id: GithubRepoId(github_id),
                owner: "acme",
                name,
                installation_id: Some(InstallationId(GENERATED_INSTALLATION)),
            },
        )
        .await
        .expect("register");
        let mut job = NewJob::backfill(&RepositoryJob { repository_id: repo.id, manual: false });
        job.max_attempts = 2;
        jobs.push(queue::enqueue(&mut conn, &job).await.expect("enqueue").id);
    }
    let worker = Worker::new(WorkerDeps {
        pool: pool.clone(),
        database_url: settings.database_url.clone(),
        github,
        processor: Arc::new(processor),
        settings: settings.worker.clone(),
    });
    let heartbeat = worker.heartbeat();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let fatal = Fatal::new();
    let running = tokio::spawn(worker.run(stopped, Duration::from_secs(5), fatal.clone()));
    drain(&db.url, Duration::from_secs(60)).await;

    let panicked = queue::get(&mut conn, jobs[0]).await.expect("get").expect("job");
    assert_eq!((panicked.state.as_str(), panicked.attempts), ("dead", 2), "retried, then a dead letter");
    let error = panicked.last_error.unwrap_or_default();
    assert!(error.contains("panicked") && error.contains("a bug while discovering"), "{error}");
    let fine = queue::get(&mut conn, jobs[1]).await.expect("get").expect("job");
    assert_eq!(fine.state, queue::JobState::Done, "the slot ran the next job");
    prmonitor_testkit::verify::diff(&db.url, &sim, sim.repo_id("acme/repo-1").expect("repo"))
        .await
        .expect("repo-1 read");
    assert!(heartbeat.age().is_some_and(|age| age < Duration::from_secs(5)), "the slot still beats");
    assert_eq!(fatal.reason(), None, "a panicking job is not a failing part");
    stop.send(true).expect("stop");
    running.await.expect("the worker stops cleanly");
}
