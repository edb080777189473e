//! Wires the parts into a running service: the HTTP application, the worker
//! and the scheduler, each optional. `serve`, `worker` and the tests all use
//! [`Service`], so the tests run exactly what production runs.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{DatabaseUrl, GitHubAuth, Settings};
use crate::db::{self, DbPool};
use crate::feed::ChangeFeed;
use crate::github::GitHubClient;
use crate::http::{self, AdminConfig, ReadConfig, Readiness, SetupConfig};
use crate::monitor::{DatabaseChangeDetector, DatabaseSynchronizer, GitHubPrDiscovery, PrProcessor};
use crate::scheduler::Scheduler;
use crate::setup::AppSlot;
use crate::supervise::{supervise, Fatal, Restart};
use crate::webhook::intake::IntakeConfig;
use crate::webhook::store::{self, DeliveryStore};
use crate::worker::{Heartbeat, Worker, WorkerDeps};

/// The HTTP application on a bound socket, with its change feed.
pub struct Application {
    address: SocketAddr,
    server: Server,
    feed: Arc<ChangeFeed>,
    database_url: DatabaseUrl,
    stopping: watch::Receiver<bool>,
    fatal: Fatal,
    /// Keeps `stopping` open when the application runs without a
    /// [`Service`] (which owns the stop signal otherwise).
    _own_stop: Option<watch::Sender<bool>>,
    /// The operations listener, when `PRMONITOR_OPS_LISTEN` sets one.
    operations: Option<OperationsListener>,
}

/// What the operations routes need: shared by the public listener and the
/// operations listener of one process, so both report the same readiness
/// and the database gauges are read once for both.
#[derive(Clone)]
struct OperationsData {
    pool: web::Data<DbPool>,
    admin: web::Data<AdminConfig>,
    readiness: web::Data<Readiness>,
    read: web::Data<ReadConfig>,
    database_gauges: web::Data<http::metrics::DatabaseGauges>,
}

impl OperationsData {
    fn new(settings: &Settings, pool: DbPool, heartbeat: Option<Arc<Heartbeat>>) -> Self {
        Self {
            pool: web::Data::new(pool),
            admin: web::Data::new(AdminConfig::new(
                settings.admin_token.clone(),
                settings.worker.max_attempts,
            )),
            readiness: web::Data::new(Readiness::new(heartbeat, settings.worker.poll_interval)),
            read: web::Data::new(
                ReadConfig::new(settings.read_token.clone(), settings.admin_token.clone())
                    .with_stuck_after(settings.stuck_check_after)
                    .with_board_public(settings.board_public),
            ),
            // One per process, shared by every HTTP worker's scrapes.
            database_gauges: web::Data::new(http::metrics::DatabaseGauges::default()),
        }
    }

    fn register(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.pool.clone())
            .app_data(self.admin.clone())
            .app_data(self.readiness.clone())
            .app_data(self.read.clone())
            .app_data(self.database_gauges.clone());
    }
}

/// The operations listener (`PRMONITOR_OPS_LISTEN`): `/metrics`,
/// `/healthz`, `/readyz`, the admin API. It needs only the database, so
/// `worker` processes serve it too.
struct OperationsListener {
    address: SocketAddr,
    server: Server,
}

impl OperationsListener {
    /// Operators and one orchestrator: two HTTP workers are plenty.
    const WORKERS: usize = 2;

    /// The nice value of its threads: above intake's 0, so however many
    /// scrapes and probes arrive, webhook acknowledgements get the CPU first
    /// (scrapes use what intake leaves).
    const NICE: i32 = 10;

    fn build(address: SocketAddr, settings: &Settings, data: OperationsData) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let server = HttpServer::new(move || {
            // Runs on each of the listener's worker threads as it starts.
            lower_this_threads_priority(Self::NICE);
            let data = data.clone();
            App::new().configure(move |cfg| {
                data.register(cfg);
                http::operations_routes(cfg);
            })
        })
        .workers(Self::WORKERS.min(settings.http_workers))
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self { address, server })
    }
}

/// Sets the calling thread's nice value (Linux threads each have their own).
/// A refusal (a seccomp filter, a platform without it) leaves the priority as
/// it was: the listener works the same, only without yielding to intake.
fn lower_this_threads_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers and touches no memory of
        // ours; with PRIO_PROCESS and who = 0 it changes the calling thread only.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, nice, "the operations listener runs at intake's CPU priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and prepares the server.
    pub fn build(settings: &Settings, pool: DbPool) -> std::io::Result<Self> {
        let (own_stop, stopping) = watch::channel(false);
        let intake = intake_config(settings);
        let slot = AppSlot::new(settings.github.auth.is_some(), intake.clone());
        let operations = OperationsData::new(settings, pool.clone(), None);
        let listener = match settings.ops_listen {
            Some(address) => Some(OperationsListener::build(address, settings, operations.clone())?),
            None => None,
        };
        let mut app =
            Self::build_with(settings, pool, (operations, listener), Fatal::new(), stopping, intake, slot)?;
        app._own_stop = Some(own_stop);
        Ok(app)
    }

    /// `stopping` turning true ends the change feed's streams and its
    /// listener, so a graceful stop does not wait on open streams. With an
    /// operations listener configured, this one leaves its routes to it.
    fn build_with(
        settings: &Settings,
        pool: DbPool,
        (operations, operations_listener): (OperationsData, Option<OperationsListener>),
        fatal: Fatal,
        stopping: watch::Receiver<bool>,
        intake: IntakeConfig,
        slot: AppSlot,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen)?;
        let address = listener.local_addr()?;
        let intake_pool =
            db::build_pool(&settings.database_url, store::WRITERS).map_err(std::io::Error::other)?;
        let store = web::Data::new(DeliveryStore::start(intake_pool, fatal.clone()));
        let feed =
            Arc::new(ChangeFeed::new(pool.clone(), settings.change_feed_max_clients, stopping.clone()));
        let feed_data = web::Data::from(feed.clone());
        let intake = web::Data::new(intake);
        let setup = web::Data::new(SetupConfig {
            slot,
            admin_token: settings.admin_token.clone(),
            public_url: settings.public_url.clone(),
            secret_key: settings.secret_key.clone(),
            github: settings.github.clone(),
        });
        let routes = if operations_listener.is_some() { http::public_routes } else { http::routes };
        let server = HttpServer::new(move || {
            let operations = operations.clone();
            App::new()
                .app_data(store.clone())
                .app_data(intake.clone())
                .app_data(feed_data.clone())
                .app_data(setup.clone())
                .configure(move |cfg| {
                    operations.register(cfg);
                    routes(cfg);
                })
        })
        .workers(settings.http_workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        // Signals are handled by the caller, which also stops the other parts.
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self {
            address,
            server,
            feed,
            database_url: settings.database_url.clone(),
            stopping,
            fatal,
            _own_stop: None,
            operations: operations_listener,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The operations listener's address, when it has one of its own.
    pub fn operations_address(&self) -> Option<SocketAddr> {
        self.operations.as_ref().map(|o| o.address)
    }

    /// Stops the server: `handle().stop(true)` finishes in-flight requests first.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The handles of this server and of the operations listener.
    pub fn handles(&self) -> Vec<ServerHandle> {
        let mut handles = vec![self.server.handle()];
        handles.extend(self.operations.as_ref().map(|o| o.server.handle()));
        handles
    }

    /// Serves until the server stops; the change feed's listener runs
    /// (supervised) as long as the server does, and the operations listener
    /// too: either ending ends both.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self { server, feed, database_url, stopping, fatal, _own_stop, operations, .. } = self;
        let stop = stopping.clone();
        let listener = tokio::spawn(supervise(
            "change feed listener",
            Restart::UnlessStopping,
            stopping,
            fatal,
            move || feed.clone().listen(database_url.clone(), stop.clone()),
        ));
        let result = match operations {
            None => server.await,
            Some(operations) => {
                let (public, ops) = (server.handle(), operations.server.handle());
                tokio::select! {
                    result = server => { ops.stop(true).await; result }
                    result = operations.server => { public.stop(true).await; result }
                }
            }
        };
        listener.abort();
        result
    }
}

/// What webhook intake checks deliveries with; shared with the [`AppSlot`],
/// which adds the secret of an App stored while the service runs.
fn intake_config(settings: &Settings) -> IntakeConfig {
    IntakeConfig::new(
        settings.webhook_secrets.clone(),
        settings.worker.max_attempts,
        settings.webhook_buffer_limit,
    )
}

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Components {
    pub http: bool,
    pub worker: bool,
    pub scheduler: bool,
}

impl Components {
    pub const ALL: Self = Self { http: true, worker: true, scheduler: true };
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("the worker needs GitHub access: {0}")]
    GitHub(String),
}

/// The pipeline with the database-backed detector and synchronizer.
pub fn processor(github: &GitHubClient, pool: &DbPool, settings: &Settings) -> PrProcessor {
    PrProcessor::new(
        Arc::new(
            GitHubPrDiscovery::new(github.clone(), settings.github.max_concurrent_requests)
                .with_bulk_reads(settings.worker.bulk_reads),
        ),
        Arc::new(DatabaseChangeDetector::new(pool.clone())),
        Arc::new(DatabaseSynchronizer::new(pool.clone())),
        pool.clone(),
    )
    .with_checks_for_closed(settings.worker.backfill_checks_for_closed)
}

/// Starts the worker and the scheduler (those `components` asks for) with
/// the GitHub access `settings` configure; the worker's heartbeat, if it runs.
fn start_background(
    settings: &Settings,
    pool: &DbPool,
    components: Components,
    stopped: &watch::Receiver<bool>,
    fatal: &Fatal,
    tasks: &mut JoinSet<()>,
) -> Result<Option<Arc<Heartbeat>>, StartError> {
    let mut heartbeat = None;
    if components.worker {
        let github = GitHubClient::new(&settings.github, pool.clone())
            .map_err(|e| StartError::GitHub(e.to_string()))?;
        let worker = Worker::new(WorkerDeps {
            pool: pool.clone(),
            database_url: settings.database_url.clone(),
            processor: Arc::new(processor(&github, pool, settings)),
            github,
            settings: settings.worker.clone(),
        });
        heartbeat = Some(worker.heartbeat());
        let grace = settings.shutdown_timeout;
        let (stopped, fatal) = (stopped.clone(), fatal.clone());
        tasks.spawn(async move { worker.run(stopped, grace, fatal).await });
    }
    if components.scheduler {
        let scheduler = Arc::new(Scheduler::new(pool.clone(), settings.worker.clone(), &settings.github));
        let stop = stopped.clone();
        tasks.spawn(supervise(
            "scheduler",
            Restart::UnlessStopping,
            stopped.clone(),
            fatal.clone(),
            move || {
                let (scheduler, stop) = (scheduler.clone(), stop.clone());
                async move { scheduler.run(stop).await }
            },
        ));
    }
    Ok(heartbeat)
}

/// An HTTP server that ends before the service stops fails the process:
/// its listener cannot be taken back, so the orchestrator must start a new one.
async fn fail_when_ended(
    server: impl std::future::Future<Output = std::io::Result<()>>,
    stopped: watch::Receiver<bool>,
    fatal: Fatal,
) {
    let result = server.await;
    if !*stopped.borrow() {
        let reason = match result {
            Ok(()) => "the HTTP server stopped unexpectedly".to_owned(),
            Err(error) => format!("the HTTP server failed: {error}"),
        };
        tracing::error!(%reason, "HTTP server ended");
        fatal.fail(reason);
    }
}

/// A running service.
pub struct Service {
    address: Option<SocketAddr>,
    operations_address: Option<SocketAddr>,
    /// Every HTTP server of the process (the public one, the operations one).
    http: Vec<ServerHandle>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    fatal: Fatal,
}

impl Service {
    /// Starts the chosen parts on a prepared (migrated) database.
    pub fn start(settings: &Settings, pool: DbPool, components: Components) -> Result<Self, StartError> {
        // Installed before any part records a metric.
        crate::telemetry::metrics();
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let fatal = Fatal::new();
        let intake = intake_config(settings);
        let slot = AppSlot::new(settings.github.auth.is_some(), intake.clone());
        let mut heartbeat = None;
        if settings.github.auth.is_none() && components.http {
            tracing::info!(
                worker_waits = components.worker,
                "no GitHub App is configured: open /setup on this service to create one"
            );
        }
        if settings.github.auth.is_some() {
            heartbeat = start_background(settings, &pool, components, &stopped, &fatal, &mut tasks)?;
        } else if !components.worker {
            // A scheduler on its own reads only the database, as before any
            // App: it starts at once (an App stored later is used after a restart).
            start_background(settings, &pool, components, &stopped, &fatal, &mut tasks)?;
        } else {
            // No App yet: the worker and the scheduler start once an App is
            // stored (through this instance's /setup or another's).
            tracing::info!(
                scheduler = components.scheduler,
                "the worker waits for a GitHub App stored through /setup (looked for every 2 s)"
            );
            let (slot, pool, settings) = (slot.clone(), pool.clone(), settings.clone());
            let (stopped, fatal) = (stopped.clone(), fatal.clone());
            tasks.spawn(async move {
                let Some(app) = slot.wait(&pool, settings.secret_key.as_ref(), stopped.clone()).await else {
                    return;
                };
                let mut settings = settings;
                settings.github.auth = Some(GitHubAuth::App {
                    app_id: u64::try_from(app.app_id).unwrap_or_default(),
                    private_key: app.private_key.clone(),
                });
                let mut background = JoinSet::new();
                match start_background(&settings, &pool, components, &stopped, &fatal, &mut background) {
                    Ok(_) => {
                        tracing::info!(app_id = app.app_id, slug = %app.slug, "the worker and the scheduler start with the GitHub App")
                    }
                    Err(error) => fatal.fail(format!("the GitHub App {} cannot be used: {error}", app.slug)),
                }
                while background.join_next().await.is_some() {}
            });
        }
        let operations = OperationsData::new(settings, pool.clone(), heartbeat);
        let operations_listener = match settings.ops_listen {
            Some(address) => Some(
                OperationsListener::build(address, settings, operations.clone())
                    .map_err(|source| StartError::Listen { address, source })?,
            ),
            None => None,
        };
        let operations_address = operations_listener.as_ref().map(|o| o.address);
        let (mut address, mut http) = (None, Vec::new());
        if components.http {
            let app = Application::build_with(
                settings,
                pool,
                (operations, operations_listener),
                fatal.clone(),
                stopped.clone(),
                intake,
                slot,
            )
            .map_err(|source| StartError::Listen { address: settings.listen, source })?;
            address = Some(app.address());
            http = app.handles();
            tasks.spawn(fail_when_ended(app.run_until_stopped(), stopped.clone(), fatal.clone()));
        } else if let Some(listener) = operations_listener {
            // A worker process: the operations listener is its only HTTP.
            http.push(listener.server.handle());
            tasks.spawn(fail_when_ended(listener.server, stopped.clone(), fatal.clone()));
        }
        Ok(Self { address, operations_address, http, stop, tasks, fatal })
    }

    /// Resolves, with the reason, when a part has failed beyond restarting:
    /// the caller should stop the service and exit non-zero.
    pub async fn failed(&self) -> String {
        self.fatal.failed().await
    }

    /// Why a part has failed beyond restarting, if one has (see [`Service::failed`]).
    pub fn failure(&self) -> Option<String> {
        self.fatal.reason()
    }

    /// The HTTP address, when HTTP runs.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The operations listener's address, when `PRMONITOR_OPS_LISTEN` sets one.
    pub fn operations_address(&self) -> Option<SocketAddr> {
        self.operations_address
    }

    /// Graceful stop: HTTP finishes in-flight requests, the worker finishes its
    /// jobs (or gives their leases back), the scheduler ends its tick.
    pub async fn stop(mut self) {
        // Stopping first, so that supervisors do not restart what ends now,
        // and change feed streams end instead of holding HTTP's stop back.
        let _ = self.stop.send(true);
        for http in &self.http {
            http.stop(true).await;
        }
        while self.tasks.join_next().await.is_some() {}
    }
}
