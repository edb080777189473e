//! A GitHub simulator: an in-memory GitHub served over real HTTP, for the
//! tests, `prmonitor demo` and the benchmarks (these machines cannot reach
//! GitHub). It serves the REST endpoints prmonitor calls with GitHub's JSON
//! shapes, `Link` pagination, ETags and 304s, `x-ratelimit-*` budgets, App JWT
//! verification and installation tokens; injects faults; counts every
//! request; and sends signed webhooks when its model changes.
//!
//! It is as strict as GitHub where GitHub documents it:
//! - An ETag belongs to the token that earned it: under another token (a
//!   renewed installation token, the static token) the same validator gets a
//!   200 with the full body, which costs a point of the primary budget. A 304
//!   is free only within one token's lifetime.
//! - Installation tokens expire after [`SimConfig::token_lifetime`] (an hour,
//!   as on GitHub) and [`Simulator::expire_tokens`] (or `POST
//!   /_sim/tokens/expire`) ends them all at once; an ended token gets 401 `Bad
//!   credentials`.
//! - Secondary rate limits count every request, 304s, errors, injected faults
//!   and the refused requests themselves included: per caller (installation,
//!   static token, App), at most [`SimConfig::secondary_points_per_minute`]
//!   points per endpoint (route template) in a sliding window (reads 1 point,
//!   writes 5) and at most [`SimConfig::max_concurrent_requests`] in flight.
//!   Beyond them: 403 with GitHub's message and a `Retry-After`, the primary
//!   `x-ratelimit-*` headers unchanged; [`Stats::secondary_limited`] counts them.
//!
//! CI as GitHub's merge box shows it ([`model::ci`]):
//! - Commit statuses ([`Simulator::set_status`], [`Simulator::post_status`]):
//!   every status kept, the latest per context current; the `status`
//!   webhook; `GET /repos/{owner}/{repo}/commits/{ref}/status` (the combined
//!   state as GitHub documents it) and `…/statuses` (all, newest first).
//! - Required checks ([`Simulator::set_required_checks`]): check-run names or
//!   status contexts a branch requires; `GET
//!   /repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks`
//!   (404 `Branch not protected` / `Required status checks not enabled`), the
//!   `branch_protection_rule` webhook, GraphQL `isRequired(pullRequestNumber:
//!   | pullRequestId:)` on `CheckRun` and `StatusContext`.
//! - Merge queues ([`Simulator::enqueue`], [`Simulator::merge_group_passed`],
//!   [`Simulator::dequeue`]): merge group commits on
//!   `gh-readonly-queue/{base}/pr-{n}-{base_sha}`, stacked on the group
//!   ahead; `pull_request` `enqueued`/`dequeued` and `merge_group`
//!   `checks_requested`/`destroyed`; GraphQL `isInMergeQueue` and
//!   `mergeQueueEntry`. A PR must pass its required checks to be queued, and
//!   its group must pass them at the front of the queue to merge.
//! - Re-runs ([`Simulator::rerun_check_run`]): a new run of the same name;
//!   `filter=latest` / `checkType: LATEST` show only the newest of each name.
//! - A clock per simulator ([`Simulator::set_clock_offset`]): the times the
//!   world stamps can lie in the past, so nothing needs to sleep.
//!
//! It also serves GitHub's GraphQL API at `POST /graphql` (`/api/graphql`
//! beside Enterprise's `/api/v3`): repositories, pull requests with labels,
//! assignees, head ref, commits and merge queue entries, check suites and
//! runs (`checkType` `ALL` or the latest per name), commit `status`,
//! `statusCheckRollup` (check runs and status contexts together),
//! `node`/`nodes` and `rateLimit`, every type and field checked against
//! GitHub's published schema, ids equal to REST's `node_id`s. GitHub's rules
//! hold before a query runs — `first`/`last` of 1 to 100 on every connection,
//! at most 500,000 nodes, GitHub's point cost charged to a per-caller
//! `graphql` budget (`RATE_LIMITED` with HTTP 200 once spent) — and errors
//! come in GitHub's shapes, a failed field null (and its parent, when it may
//! not be null) as the GraphQL spec has it. Known differences: a pull request
//! has one commit (its head), the head branch counts as deleted once the pull
//! request is closed (`headRef` null), refs other than SHAs and open PR heads
//! are not kept (the status endpoints take SHAs only), no mutations, and
//! GraphQL has no injected faults or secondary limits yet.
//!
//! Every webhook attempt is recorded ([`HookDelivery`]) and served as GitHub's
//! App webhook deliveries API, App JWT only and under the secondary limits:
//! `GET /app/hook/deliveries` (newest first, `per_page` ≤ 100, `cursor` paging
//! through the `Link` header, `status=success|failure`; attempts older than
//! GitHub's 3 days are not listed, see [`Simulator::age_deliveries`]), `GET
//! /app/hook/deliveries/{id}` (adding `url`, `request` and `response`) and
//! `POST /app/hook/deliveries/{id}/attempts` (202; the same bytes and guid
//! again, a new attempt with `redelivery: true`). A delivery dropped by the
//! loss injection is listed as a failed attempt that could not connect, as a
//! receiver outage shows on GitHub.
//!
//! Its world changes from inside the process (`open_pr`, `push`, …,
//! [`Simulator::activity`]) and from outside it: `POST /_sim/activity` makes
//! many changes in one call, `{"changes": 300, "repositories": ["owner/a"],
//! "seed": 7, "webhooks": true}` (a realistic random mix, the same for a
//! seed on the same world) or `{"operations": [{"op": "push", "repository":
//! "o/r", "number": 3}, …]}` (applied whole or not at all), and answers with
//! each change and the webhooks it caused (see [`activity`]).

pub mod activity;
mod ci;
mod deliveries;
pub mod generate;
mod graphql;
pub mod manifest;
pub mod model;
pub mod prng;
pub mod render;
mod server;
pub mod webhooks;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use activity::{Activity, ActivityReport, Operation};
pub use generate::{Fixture, Generate};
pub use model::{Event, EventBody, ModelError, NewPr, NewStatus, World};
pub use server::{Bucket, Faults, LoggedRequest, Stats};
pub use webhooks::{DeliveryRecord, HookDelivery, WebhookTarget};

use crate::prng::SplitMix64;
use render::Urls;
use server::Shared;
use webhooks::{Dispatcher, Outgoing};

/// The simulated App's id.
pub const SIM_APP_ID: u64 = 4242;
/// The App key pair the simulator ships with (test material, see fixtures/sim/README.md).
pub const SIM_APP_PRIVATE_KEY: &str = include_str!("../../../fixtures/sim/app-private-key.pem");
pub const SIM_APP_PUBLIC_KEY: &str = include_str!("../../../fixtures/sim/app-public-key.pem");

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Mount the API under this path, e.g. `/api/v3` as GitHub Enterprise does.
    pub path_prefix: String,
    pub app_id: u64,
    pub app_public_key: String,
    /// A token that reads every repository (for `PRMONITOR_GITHUB_TOKEN` setups).
    pub static_token: Option<String>,
    /// How long an installation token lasts: GitHub's hour by default.
    pub token_lifetime: Duration,
    pub rate_limit: u64,
    /// Points per window of each caller's GraphQL budget (GitHub: 5,000 an hour).
    pub graphql_rate_limit: u64,
    pub rate_window: Duration,
    /// GitHub's secondary limit per REST endpoint and caller: 900 points
    /// (GET/HEAD 1, POST/PATCH/PUT/DELETE 5) per [`Self::secondary_window`].
    pub secondary_points_per_minute: u32,
    /// GitHub's secondary limit of GraphQL: 2,000 points per window, per caller.
    pub graphql_points_per_minute: u32,
    /// GitHub's secondary limit of requests in flight at once per caller,
    /// REST and GraphQL together: 100.
    pub max_concurrent_requests: u32,
    /// The sliding window of the per-minute limits: GitHub's minute. Tests
    /// shorten it so that waiting for it stays short.
    pub secondary_window: Duration,
    pub seed: u64,
    pub faults: Faults,
    pub webhook: Option<WebhookTarget>,
    pub generate: Option<Generate>,
    pub fixture: Option<Fixture>,
    /// False: the simulator starts with no App at all, as a GitHub before
    /// the App is created. The world's repositories exist under their
    /// accounts but nothing is installed, no App JWT is accepted and no
    /// webhook is sent ([`Self::webhook`] is ignored) until the App manifest
    /// flow ([`manifest`]) registers the App and an account installs it.
    pub app_registered: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            path_prefix: String::new(),
            app_id: SIM_APP_ID,
            app_public_key: SIM_APP_PUBLIC_KEY.to_owned(),
            static_token: None,
            token_lifetime: Duration::from_secs(3600),
            rate_limit: 5000,
            graphql_rate_limit: 5000,
            rate_window: Duration::from_secs(3600),
            secondary_points_per_minute: 900,
            graphql_points_per_minute: 2000,
            max_concurrent_requests: 100,
            secondary_window: Duration::from_secs(60),
            seed: 1,
            faults: Faults::default(),
            webhook: None,
            generate: None,
            fixture: None,
            app_registered: true,
        }
    }
}

/// A running simulator. Dropping it does not stop the server; call [`Simulator::stop`].
pub struct Simulator {
    shared: web::Data<Shared>,
    graphql: web::Data<graphql::Budgets>,
    address: SocketAddr,
    handle: ServerHandle,
}

impl Simulator {
    /// Binds, fills the world and starts serving on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let listener = TcpListener::bind(config.listen)?;
        let address = listener.local_addr()?;
        let prefix = config.path_prefix.trim_end_matches('/').to_owned();
        let urls = Urls { api: format!("http://{address}{prefix}"), html: format!("http://{address}/web") };
        let mut world = World::new(config.app_id, config.seed);
        if let Some(spec) = config.generate {
            generate::generate(&mut world, spec)?;
        }
        if let Some(fixture) = &config.fixture {
            generate::load_fixture(&mut world, fixture)?;
        }
        let mut apps = manifest::Apps::default();
        if !config.app_registered {
            // Every account's installation waits for the App to be installed.
            apps.uninstalled = std::mem::take(&mut world.installations);
            world.app_id = 0;
        }
        let app_id = Arc::new(std::sync::atomic::AtomicU64::new(world.app_id));
        let rng = Arc::new(SplitMix64::new(config.seed ^ 0x5eed));
        let webhook = Arc::new(Mutex::new(if config.app_registered { config.webhook.clone() } else { None }));
        let shared = web::Data::new(Shared {
            world: Mutex::new(world),
            faults: Mutex::new(config.faults.clone()),
            webhook: webhook.clone(),
            tokens: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            admission: Mutex::default(),
            secondary: server::SecondaryLimits {
                rest_points_per_window: config.secondary_points_per_minute,
                graphql_points_per_window: config.graphql_points_per_minute,
                max_concurrent: config.max_concurrent_requests,
                window: config.secondary_window,
            },
            stats: Mutex::default(),
            urls,
            prefix: prefix.clone(),
            app_public_key: config.app_public_key.clone(),
            static_token: config.static_token.clone(),
            token_lifetime: config.token_lifetime,
            rate_limit: config.rate_limit,
            rate_window: config.rate_window,
            rng: rng.clone(),
            dispatcher: Dispatcher::start(webhook, rng, app_id.clone()),
            activity: tokio::sync::Mutex::new(()),
            administration: std::sync::atomic::AtomicBool::new(true),
            apps: Mutex::new(apps),
            hook_app_id: app_id,
        });
        let graphql = web::Data::new(graphql::Budgets::new(config.graphql_rate_limit, config.rate_window));
        let data = shared.clone();
        let graphql_data = graphql.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(graphql_data.clone())
                .configure(server::admin_routes)
                .configure(server::web_routes)
                .configure(server::routes(&prefix))
        })
        // Two workers: serializing and hashing answers happens outside the
        // world's lock, and a single worker was the backfill benchmark's
        // bottleneck (one core busy, the other idle).
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { shared, graphql, address, handle })
    }

    /// `http://127.0.0.1:PORT` plus the path prefix: what `PRMONITOR_GITHUB_API_URL` should be.
    pub fn api_url(&self) -> String {
        self.shared.urls.api.clone()
    }

    /// The GraphQL endpoint: `…/graphql`, or `…/api/graphql` under the Enterprise prefix `/api/v3`.
    pub fn graphql_url(&self) -> String {
        let prefix = self.shared.prefix.as_str();
        format!("http://{}{}", self.address, graphql::path(prefix))
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`: the web root (github.com's part), where the
    /// App manifest flow's pages are; what `PRMONITOR_GITHUB_WEB_URL` should be.
    pub fn web_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The App the manifest flow registered, if it ran.
    pub fn registered_app(&self) -> Option<manifest::RegisteredApp> {
        server::lock(&self.shared.apps).registered.clone()
    }

    /// Reads the world.
    pub fn world<T>(&self, read: impl FnOnce(&World) -> T) -> T {
        read(&self.lock_world())
    }

    fn lock_world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the world and sends the webhooks the change causes.
    pub fn mutate<T>(
        &self,
        change: impl FnOnce(&mut World) -> Result<(T, Vec<Event>), ModelError>,
    ) -> Result<T, ModelError> {
        let mut world = self.lock_world();
        let (value, events) = change(&mut world)?;
        self.dispatch(&world, &events)?;
        Ok(value)
    }

    /// Changes the world without any webhook, as when GitHub loses the delivery.
    pub fn mutate_silently<T>(
        &self,
        change: impl FnOnce(&mut World) -> Result<T, ModelError>,
    ) -> Result<T, ModelError> {
        change(&mut self.lock_world())
    }

    fn dispatch(&self, world: &World, events: &[Event]) -> Result<(), ModelError> {
        let configured =
            self.shared.webhook.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some();
        if !configured {
            return Ok(());
        }
        for event in events.iter().filter(|e| world.is_installed(e.repo_id)) {
            // The payload is rendered now: it shows the world as it was when the event happened.
            let payload = webhooks::payload(world, &self.shared.urls, event)?;
            self.shared.dispatcher.enqueue(Outgoing {
                delivery_id: webhooks::delivery_id(&self.shared.rng),
                event: event.name,
                action: event.action,
                body: serde_json::to_vec(&payload).unwrap_or_default(),
                redelivery: false,
            });
        }
        Ok(())
    }

    pub fn repo_id(&self, full_name: &str) -> Result<i64, ModelError> {
        self.world(|w| w.repo_id(full_name))
    }

    pub fn open_pr(&self, repo: &str, pr: NewPr) -> Result<i64, ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.open_pr(repo_id, pr).map(|(n, e)| (n, vec![e])))
    }

    pub fn edit_pr(
        &self,
        repo: &str,
        number: i64,
        title: Option<&str>,
        body: Option<&str>,
    ) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| {
            w.edit_pr(repo_id, number, title.map(str::to_owned), body.map(str::to_owned))
                .map(|e| ((), vec![e]))
        })
    }

    pub fn label(&self, repo: &str, number: i64, label: &str) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.add_label(repo_id, number, label).map(|e| ((), vec![e])))
    }

    pub fn unlabel(&self, repo: &str, number: i64, label: &str) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.remove_label(repo_id, number, label).map(|e| ((), vec![e])))
    }

    pub fn set_draft(&self, repo: &str, number: i64, draft: bool) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.set_draft(repo_id, number, draft).map(|e| ((), vec![e])))
    }

    /// Pushes a new head; returns its SHA. A queued PR leaves the merge queue first, as on GitHub.
    pub fn push(&self, repo: &str, number: i64) -> Result<String, ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| {
            let mut events = w.dequeue_if_queued(repo_id, number)?;
            let (sha, pushed) = w.push(repo_id, number)?;
            events.push(pushed);
            Ok((sha, events))
        })
    }

    /// Closes a PR (a queued one leaves the merge queue first).
    pub fn close(&self, repo: &str, number: i64) -> Result<(), ModelError> {
        self.close_pr(repo, number, false)
    }

    /// Merges a PR directly (a queued one leaves the merge queue first;
    /// [`Self::merge_group_passed`] merges through the queue).
    pub fn merge(&self, repo: &str, number: i64) -> Result<(), ModelError> {
        self.close_pr(repo, number, true)
    }

    fn close_pr(&self, repo: &str, number: i64, merge: bool) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| {
            let mut events = w.dequeue_if_queued(repo_id, number)?;
            events.push(w.close_pr(repo_id, number, merge)?);
            Ok(((), events))
        })
    }

    pub fn reopen(&self, repo: &str, number: i64) -> Result<(), ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.reopen_pr(repo_id, number).map(|e| ((), vec![e])))
    }

    /// Creates a queued check run on a commit; returns its id.
    pub fn create_check_run(&self, repo: &str, head_sha: &str, name: &str) -> Result<i64, ModelError> {
        let repo_id = self.repo_id(repo)?;
        self.mutate(|w| w.create_check_run(repo_id, head_sha, name).map(|(id, e)| (id, vec![e])))
    }

    pub fn start_check_run(&self, run_id: i64) -> Result<(), ModelError> {
        self.mutate(|w| w.start_check_run(run_id).map(|()| ((), Vec::new())))
    }

    pub fn complete_check_run(&self, run_id: i64, conclusion: &str) -> Result<(), ModelError> {
        self.mutate(|w| w.complete_check_run(run_id, conclusion).map(|e| ((), e)))
    }

    /// Makes many changes at once, as `POST /_sim/activity` does: random
    /// ones from a seed, or a list of operations applied whole or not at
    /// all (see [`activity`]). Each change sends its webhooks unless
    /// `activity.webhooks` is false.
    pub async fn activity(&self, activity: &Activity) -> Result<ActivityReport, ModelError> {
        activity::run(&self.shared, activity).await
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        *self.shared.webhook.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = target;
    }

    /// Sets an installation's rate-limit window (0: the static token, -1: the App).
    pub fn set_budget(
        &self,
        bucket: i64,
        limit: Option<u64>,
        remaining: Option<u64>,
        reset_in: Option<Duration>,
    ) -> Bucket {
        server::set_budget(&self.shared, bucket, limit, remaining, reset_in)
    }

    /// An installation's current rate-limit window, if it was used or set.
    pub fn budget(&self, bucket: i64) -> Option<Bucket> {
        self.shared.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&bucket).copied()
    }

    /// Sets a caller's GraphQL budget (installation id; 0: the static token),
    /// apart from its REST budget as on GitHub.
    pub fn set_graphql_budget(
        &self,
        bucket: i64,
        limit: Option<u64>,
        remaining: Option<u64>,
        reset_in: Option<Duration>,
    ) -> Bucket {
        self.graphql.set(bucket, limit, remaining, reset_in)
    }

    /// A caller's current GraphQL budget, if it was used or set.
    pub fn graphql_budget(&self, bucket: i64) -> Option<Bucket> {
        self.graphql.get(bucket)
    }

    /// Ends every installation token minted so far, as a rotation does: the
    /// next call with one gets 401 and the App must mint a new token (whose
    /// ETags are new too). Returns how many tokens ended.
    pub fn expire_tokens(&self) -> usize {
        self.shared.expire_tokens()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn reset_stats(&self) {
        *self.shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Stats::default();
    }

    /// Resolves once every webhook caused so far was sent or lost.
    pub async fn wait_for_deliveries(&self) {
        self.shared.dispatcher.wait_idle().await;
    }

    /// Sends the deliveries that were not acknowledged again, with the same
    /// delivery ids (GitHub's "Redeliver"). Returns how many.
    pub fn redeliver_failed(&self) -> usize {
        self.shared.dispatcher.redeliver_failed()
    }

    /// What happened to each webhook so far.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.shared.dispatcher.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Every delivery attempt so far, oldest first, as the deliveries API
    /// (`GET /app/hook/deliveries`) serves them, expired ones included.
    pub fn hook_deliveries(&self) -> Vec<HookDelivery> {
        server::lock(&self.shared.dispatcher.hooks).attempts.clone()
    }

    /// Moves every delivery attempt recorded so far `by` into the past, so
    /// that a test can push some beyond the deliveries API's 3-day retention.
    pub fn age_deliveries(&self, by: Duration) {
        self.shared.dispatcher.age(by);
    }

    /// The JSON payload `event` would carry now (for tests of payload shapes).
    pub fn render_event(&self, event: &Event) -> Result<serde_json::Value, ModelError> {
        webhooks::payload(&self.lock_world(), &self.shared.urls, event)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot build the world: {0}")]
    Model(#[from] ModelError),
}
