//! `TestWorld`: a database from the template, the GitHub simulator, the whole
//! service in this process, and the simulator's webhooks wired to it.
//!
//! A test changes GitHub with domain verbs (`world.github.open_pr(...)`),
//! waits with [`TestWorld::settle`], reads through the service's own API
//! (`world.api`) and ends with [`TestWorld::finish`], which fails on anything
//! left behind: a dead job, an unprocessed delivery, a webhook the service
//! refused, a part of the service that failed, or a database that is not the
//! simulator's world.

use std::ops::Deref;
use std::time::Duration;

use github_sim::model::{ModelError, World};
use github_sim::{Fixture, Generate, NewPr, SimConfig, Simulator, WebhookTarget};
use prmonitor::config::Settings;
use prmonitor::db::repositories::{self, NewRepository};
use prmonitor::db::DbPool;
use prmonitor::ids::{GithubRepoId, InstallationId};
use prmonitor::monitor::Cause;
use prmonitor::simulated;
use prmonitor::startup::{Components, Service};
use serde_json::Value;

use crate::app::{new_delivery_id, test_settings, TEST_SECRET};
use crate::database::{connect, count, TestDatabase};
use crate::verify;

pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const READ_TOKEN: &str = "read-token-for-tests";
/// How long `settle` waits for the queue to drain before failing the test.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a service on `db` that reads `sim` as its GitHub: the test
/// tokens, short polls and retries, sweeps left to the test (every hour).
/// `extra` overrides any of them, as environment variables would.
pub fn settings_for(db: &TestDatabase, sim: &Simulator, extra: &[(&str, &str)]) -> Settings {
    let mut overrides = vec![
        ("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN),
        ("PRMONITOR_READ_TOKEN", READ_TOKEN),
        ("PRMONITOR_JOB_POLL_INTERVAL", "100ms"),
        ("PRMONITOR_JOB_LEASE", "5s"),
        ("PRMONITOR_JOB_RETRY_DELAY", "100ms"),
        ("PRMONITOR_SWEEP_INTERVAL", "1h"),
        ("PRMONITOR_DB_POOL_SIZE", "10"),
        ("PRMONITOR_HTTP_WORKERS", "2"),
        // The generated history is 30 days old; the tests compare every check
        // run with the simulator's unless they set the policy themselves.
        ("PRMONITOR_BACKFILL_CHECKS_FOR_CLOSED", "3650d"),
        // The tests announce installations themselves (webhooks, `install`)
        // unless they test the listing.
        ("PRMONITOR_INSTALLATION_SYNC_INTERVAL", "0s"),
        // Likewise gap recovery: it would read the deliveries API at start-up
        // and store the deliveries a test dropped on purpose.
        ("PRMONITOR_DELIVERY_RECOVERY_INTERVAL", "0s"),
    ];
    overrides.extend_from_slice(extra);
    let mut settings = test_settings(db, &overrides);
    simulated::use_simulator(&mut settings, sim).expect("the simulator's URL is valid");
    settings
}

/// The simulator's repositories registered in `db` as an installation
/// webhook would leave them, each stamped as just swept so that the
/// scheduler leaves them alone and only webhooks (or the test) drive them.
pub async fn register_repositories(db: &TestDatabase, sim: &Simulator) -> Vec<repositories::Repository> {
    let repos: Vec<(i64, String, String, i64)> = sim.world(|w| {
        w.repos.values().map(|r| (r.id, r.owner.clone(), r.name.clone(), r.installation_id)).collect()
    });
    let mut conn = connect(&db.url).await;
    let mut registered = Vec::new();
    for (github_id, owner, name, installation) in repos {
        let repo = repositories::upsert(
            &mut conn,
            &NewRepository {
                github_id: GithubRepoId(github_id),
                owner: &owner,
                name: &name,
                installation_id: Some(InstallationId(installation)),
            },
        )
        .await
        .expect("register a repository");
        repositories::record_sweep(&mut conn, repo.id, None).await.expect("stamp the sweep");
        registered.push(repo);
    }
    registered
}

/// What the world holds before the test begins.
#[derive(Debug, Clone)]
pub struct WorldBuilder {
    generate: Generate,
    fixture: Option<Fixture>,
    registered: bool,
    backfilled: bool,
    settings: Vec<(String, String)>,
}

impl WorldBuilder {
    /// Pull requests generated in each repository (with `checks` check runs each).
    pub fn prs(mut self, pull_requests: usize, checks: usize) -> Self {
        self.generate.pull_requests = pull_requests;
        self.generate.check_runs = checks;
        self
    }

    /// Also load a fixture world (see fixtures/sim/).
    pub fn fixture(mut self, fixture: Fixture) -> Self {
        self.fixture = Some(fixture);
        self
    }

    /// Leaves the repositories unknown to prmonitor, as before the App's
    /// installation webhook: [`TestWorld::install`] announces them.
    pub fn unregistered(mut self) -> Self {
        self.registered = false;
        self
    }

    /// Registers the repositories and backfills them before the service starts.
    /// The backfill's client has a token of its own, so the service's first
    /// reads of what it stored pay in full (ETags belong to one token), as
    /// after a restart on GitHub.
    pub fn backfilled(mut self) -> Self {
        self.backfilled = true;
        self
    }

    /// A setting of the service, as its environment variable would give it.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    pub async fn start(self) -> TestWorld {
        let sim = Simulator::start(SimConfig {
            generate: Some(self.generate),
            fixture: self.fixture,
            ..SimConfig::default()
        })
        .await
        .expect("the simulator starts");
        let db = TestDatabase::migrated().await;
        let extra: Vec<(&str, &str)> = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let settings = settings_for(&db, &sim, &extra);
        let pool = prmonitor::db::build_pool(&settings.database_url, settings.db_pool_size).expect("pool");
        if self.registered || self.backfilled {
            let repos = register_repositories(&db, &sim).await;
            if self.backfilled {
                let github = prmonitor::github::GitHubClient::new(&settings.github, pool.clone())
                    .expect("the GitHub client");
                let processor = prmonitor::startup::processor(&github, &pool, &settings);
                for repo in &repos {
                    let result = processor.process_repository(repo, Cause::Backfill).await;
                    assert!(
                        result.success,
                        "the backfill of {} failed: {:?}",
                        repo.full_name(),
                        result.errors
                    );
                }
            }
        }
        let service = Service::start(&settings, pool.clone(), Components::ALL).expect("the service starts");
        let address = service.address().expect("the service serves HTTP").to_string();
        sim.set_webhook(Some(simulated::webhook_target(&address, TEST_SECRET)));
        TestWorld { github: GitHub(sim), api: Api::new(&address), service: Some(service), pool, settings, db }
    }
}

/// The simulator, the service and its database, wired together.
pub struct TestWorld {
    pub github: GitHub,
    pub api: Api,
    // Before `db`: the service lets go of the database before it is dropped.
    service: Option<Service>,
    pool: DbPool,
    pub settings: Settings,
    pub db: TestDatabase,
}

impl TestWorld {
    /// `repositories` empty repositories (`acme/repo-0`, …), registered and just swept.
    pub async fn with_repos(repositories: usize) -> Self {
        Self::builder(repositories).start().await
    }

    pub fn builder(repositories: usize) -> WorldBuilder {
        WorldBuilder {
            generate: Generate { repositories, pull_requests: 0, check_runs: 0 },
            fixture: None,
            registered: true,
            backfilled: false,
            settings: Vec::new(),
        }
    }

    /// The service's HTTP address (host:port).
    pub fn address(&self) -> &str {
        &self.api.address
    }

    pub fn service(&self) -> &Service {
        self.service.as_ref().expect("the service runs until finish")
    }

    /// Waits until every webhook is sent and no job is pending or running;
    /// fails the test if the service has failed meanwhile.
    pub async fn settle(&self) {
        simulated::settle(&self.pool, &self.github, SETTLE_TIMEOUT).await.expect("the world settles");
        self.assert_service_alive();
    }

    /// The App is installed: the `installation` `created` delivery, signed and sent.
    pub async fn install(&self) {
        simulated::send_installation_created(self.address(), TEST_SECRET, &new_delivery_id())
            .await
            .expect("the installation delivery is accepted");
    }

    /// A number from the database: `sql` is a scalar expression.
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.db.url, sql).await
    }

    /// `Ok` when the database equals the simulator's world, else what differs.
    pub async fn diff(&self) -> Result<(), String> {
        verify::diff_all(&self.db.url, &self.github).await
    }

    fn assert_service_alive(&self) {
        if let Some(reason) = self.service().failure() {
            panic!("the service failed: {reason}");
        }
    }

    /// Settles, then fails the test on anything left behind; stops everything.
    pub async fn finish(self) {
        self.finish_with(true).await;
    }

    /// As [`TestWorld::finish`], without comparing the database with the
    /// world: for a world a policy keeps from being a full copy (old closed
    /// PRs stored without their checks), which the test checks itself.
    pub async fn finish_partial_copy(self) {
        self.finish_with(false).await;
    }

    async fn finish_with(mut self, full_copy: bool) {
        self.settle().await;
        assert_eq!(self.count("SELECT count(*) FROM jobs WHERE state = 'dead'").await, 0, "dead jobs remain");
        assert_eq!(
            self.count("SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL").await,
            0,
            "deliveries were never processed"
        );
        let refused: Vec<_> = self
            .github
            .deliveries()
            .into_iter()
            .filter(|d| !d.lost && !d.statuses.iter().all(|s| (200..300).contains(s)))
            .collect();
        assert!(refused.is_empty(), "the service refused webhooks: {refused:?}");
        if full_copy {
            if let Err(difference) = self.diff().await {
                panic!("the database is not the simulator's world: {difference}");
            }
        }
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
        self.github.stop().await;
    }
}

/// The simulator with verbs that fail the test when GitHub would refuse them.
/// Everything else of [`Simulator`] is reachable through `Deref`.
pub struct GitHub(pub Simulator);

impl Deref for GitHub {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.0
    }
}

fn done<T>(what: &str, result: Result<T, ModelError>) -> T {
    result.unwrap_or_else(|e| panic!("GitHub refused to {what}: {e}"))
}

impl GitHub {
    pub fn open_pr(&self, repo: &str, pr: NewPr) -> i64 {
        done("open a PR", self.0.open_pr(repo, pr))
    }

    pub fn label(&self, repo: &str, number: i64, label: &str) {
        done("label", self.0.label(repo, number, label));
    }

    pub fn retitle(&self, repo: &str, number: i64, title: &str) {
        done("edit a PR", self.0.edit_pr(repo, number, Some(title), None));
    }

    /// Pushes a new head; returns its SHA.
    pub fn push(&self, repo: &str, number: i64) -> String {
        done("push", self.0.push(repo, number))
    }

    pub fn close(&self, repo: &str, number: i64) {
        done("close", self.0.close(repo, number));
    }

    pub fn merge(&self, repo: &str, number: i64) {
        done("merge", self.0.merge(repo, number));
    }

    /// The head SHA of PR `number`.
    pub fn head(&self, repo: &str, number: i64) -> String {
        done(
            "find a PR",
            self.0.world(|w| w.repo(w.repo_id(repo)?).map(|r| r.pulls[&number].head_sha.clone())),
        )
    }

    /// A check run on `sha` that runs and ends with `conclusion`; returns its id.
    pub fn check(&self, repo: &str, sha: &str, name: &str, conclusion: &str) -> i64 {
        let run = done("create a check run", self.0.create_check_run(repo, sha, name));
        done("start a check run", self.0.start_check_run(run));
        done("complete a check run", self.0.complete_check_run(run, conclusion));
        run
    }

    /// Changes GitHub without sending the webhooks the change causes, as when
    /// GitHub loses the deliveries.
    pub fn without_webhooks<T>(&self, change: impl FnOnce(&mut World) -> Result<T, ModelError>) -> T {
        done("change", self.0.mutate_silently(change))
    }

    /// The webhook target the world was wired with, to make it unreliable.
    pub fn set_target(&self, target: WebhookTarget) {
        self.0.set_webhook(Some(target));
    }
}

/// The service's HTTP API, with the test tokens.
pub struct Api {
    pub address: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(address: &str) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Self { address: address.to_owned(), client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `GET path` with the read token: the status and the JSON body (`null` if none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .expect("the service answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A stored pull request, as `GET …/pulls/{number}` shows it.
    pub async fn pull(&self, repo: &str, number: i64) -> Value {
        let (status, body) = self.get(&format!("/api/v1/repositories/{repo}/pulls/{number}")).await;
        assert_eq!(status, 200, "GET {repo}#{number}: {body}");
        body
    }

    /// `POST /api/v1/reconcile` for every repository; the ids of the sweep jobs.
    pub async fn reconcile_all(&self) -> Vec<i64> {
        let answer = simulated::reconcile_all(&self.address, ADMIN_TOKEN).await.expect("reconcile accepted");
        answer["jobs"]
            .as_array()
            .expect("the answer lists jobs")
            .iter()
            .map(|job| job["job_id"].as_i64().expect("a job id"))
            .collect()
    }

    /// `GET /api/v1/jobs/{id}` with the admin token.
    pub async fn job(&self, id: i64) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/api/v1/jobs/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("the service answers");
        assert_eq!(response.status(), 200);
        response.json().await.expect("a JSON job")
    }
}

/// The whole service on `db` with `settings`, in this process.
pub async fn start_service(db: &TestDatabase, settings: &Settings) -> Service {
    let pool = prmonitor::db::build_pool(&db.database_url(), settings.db_pool_size).expect("pool");
    Service::start(settings, pool, Components::ALL).expect("the service starts")
}

/// A reliable webhook target for the service at `address`, with the test secret.
pub fn webhook_target(address: &str) -> WebhookTarget {
    simulated::webhook_target(address, TEST_SECRET)
}

/// Waits until no job is pending or running in the database at `db_url`.
pub async fn drain(db_url: &str, timeout: Duration) {
    let url = prmonitor::config::DatabaseUrl::parse(db_url).expect("a database URL");
    let pool = prmonitor::db::build_pool(&url, 1).expect("pool");
    simulated::wait_for_queue(&pool, timeout).await.expect("the queue drains");
}
