//! The `prmonitor` command line. Exit codes: 0 done, 1 failed while running,
//! 2 a usage or configuration error (nothing was started).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::db::deliveries::DeliveryOutcome;
use crate::startup::{Components, Service};
use crate::{db, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "prmonitor",
    version = crate::telemetry::LONG_VERSION,
    about = "Keeps a PostgreSQL copy of GitHub pull requests and check runs"
)]
struct Cli {
    /// A TOML file with settings; environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: webhook intake, worker and scheduler (flags turn parts off).
    Serve(ServeArgs),
    /// Run only the worker (any number may share the database).
    Worker,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Sweep a repository (or all) now: enqueue, or run it here with --wait.
    Reconcile(ReconcileArgs),
    /// Inspect the job queue and bring dead letters back.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspect stored webhook deliveries and process them again.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run the GitHub simulator (for trying prmonitor without GitHub).
    #[cfg(feature = "simulator")]
    Sim(SimArgs),
    /// The service against the simulator, a scripted stretch of activity, a table.
    #[cfg(feature = "simulator")]
    Demo(DemoArgs),
}

#[cfg(feature = "simulator")]
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Stop after printing the table, instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Do not run the worker in this process.
    #[arg(long)]
    no_worker: bool,
    /// Do not schedule sweeps from this process.
    #[arg(long)]
    no_scheduler: bool,
}

#[derive(Debug, clap::Args)]
struct ReconcileArgs {
    /// The repository, as owner/name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    repository: Option<String>,
    /// Every active repository.
    #[arg(long)]
    all: bool,
    /// Run the sweep in this process and print its result, instead of enqueueing it.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// The newest jobs, optionally in one state.
    List {
        #[arg(long, value_enum)]
        state: Option<JobStateArg>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Bring dead jobs back to pending, with fresh attempts.
    Retry {
        /// Job ids.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        ids: Vec<i64>,
        /// Every dead job.
        #[arg(long)]
        all_dead: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// The newest deliveries, optionally filtered.
    List {
        /// Only deliveries about this repository.
        #[arg(long, value_name = "OWNER/NAME", value_parser = parse_repository)]
        repo: Option<String>,
        /// Only this event (pull_request, check_run, …).
        #[arg(long, value_parser = parse_event)]
        event: Option<String>,
        /// Only deliveries with this outcome.
        #[arg(long, value_parser = outcome_parser())]
        outcome: Option<DeliveryOutcome>,
        /// Only deliveries received in the last DURATION (90m, 2h, 3d) or since an RFC 3339 TIME.
        // Hyphen values reach the parser, so `--since -3d` is told what --since takes.
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since, allow_hyphen_values = true)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// One delivery: its fields, headers, a summary of its payload and the job it became.
    Show {
        /// The delivery id (X-GitHub-Delivery).
        id: String,
    },
    /// Process stored deliveries again: each payload becomes its job, as on arrival.
    Replay {
        /// Delivery ids (X-GitHub-Delivery).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Gap recovery now: deliveries the App's deliveries API lists that were
    /// never stored are recovered (enqueued for the worker, or run here with --wait).
    Recover {
        /// Examine back to DURATION ago (90m, 2h, 3d) or an RFC 3339 TIME
        /// instead of where the last run stopped (GitHub keeps 3 days).
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since, allow_hyphen_values = true)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Run it in this process and print what it did, instead of enqueueing it.
        #[arg(long)]
        wait: bool,
    },
}

fn parse_repository(value: &str) -> Result<String, String> {
    if crate::ids::is_repository_full_name(value) {
        Ok(value.to_owned())
    } else {
        Err("expected a repository as owner/name".into())
    }
}

fn parse_event(value: &str) -> Result<String, String> {
    if crate::webhook::envelope::is_event_name(value.as_bytes()) {
        Ok(value.to_owned())
    } else {
        Err("expected an event name such as pull_request (lower-case letters and '_')".into())
    }
}

fn parse_since(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::webhook::deliveries::parse_since(value, chrono::Utc::now())
}

/// The outcomes by name; clap lists them when another value is given.
fn outcome_parser() -> impl clap::builder::TypedValueParser<Value = DeliveryOutcome> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(DeliveryOutcome::ALL.map(DeliveryOutcome::as_str))
        .try_map(|name| DeliveryOutcome::parse(&name).ok_or("not an outcome"))
}

/// A job's state, as `jobs list --state` takes it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum JobStateArg {
    Pending,
    Running,
    Done,
    Dead,
}

impl From<JobStateArg> for crate::queue::JobState {
    fn from(arg: JobStateArg) -> Self {
        match arg {
            JobStateArg::Pending => Self::Pending,
            JobStateArg::Running => Self::Running,
            JobStateArg::Done => Self::Done,
            JobStateArg::Dead => Self::Dead,
        }
    }
}

#[cfg(feature = "simulator")]
#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
    /// Serve the API under this path, as GitHub Enterprise does (e.g. /api/v3).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Generate this many repositories (with --prs and --checks).
    #[arg(long, default_value_t = 2)]
    repos: usize,
    /// Pull requests per generated repository.
    #[arg(long, default_value_t = 10)]
    prs: usize,
    /// Check runs per generated head.
    #[arg(long, default_value_t = 3)]
    checks: usize,
    /// Also load this fixture (see fixtures/sim/).
    #[arg(long, value_name = "FILE")]
    fixture: Option<PathBuf>,
    /// Seed of the generator and the fault injection.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A token that reads every repository, for PRMONITOR_GITHUB_TOKEN setups.
    #[arg(long)]
    token: Option<String>,
    /// Where to send webhooks (e.g. http://127.0.0.1:8080/webhooks/github).
    #[arg(long)]
    webhook_url: Option<String>,
    /// The secret that signs them.
    #[arg(long, default_value = "")]
    webhook_secret: String,
    /// Start with no App registered (nothing installed, no webhooks): create
    /// it through prmonitor's /setup (GitHub's manifest flow) and install it.
    #[arg(long, conflicts_with = "webhook_url")]
    no_app: bool,
}

impl Cli {
    fn is_demo(&self) -> bool {
        #[cfg(feature = "simulator")]
        if matches!(self.command, Command::Demo(_)) {
            return true;
        }
        false
    }
}

const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

pub fn main() -> ExitCode {
    // clap prints its own message and exits 2 on a usage error.
    let cli = Cli::parse();
    // Completions need no settings: an operator installs them before configuring anything.
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "prmonitor", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    #[cfg(feature = "simulator")]
    if let Command::Sim(args) = &cli.command {
        return run_sim(args);
    }
    let settings = match load_settings(&cli) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("prmonitor: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Panics become one structured log event (the parts that hit one are restarted).
    crate::supervise::log_panics();
    if cli.is_demo() {
        // The demo talks through its own lines; the service's logs would drown them.
        telemetry::init_with_default(settings.log_format, "warn");
    } else {
        telemetry::init(settings.log_format);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_FAILED);
    };
    let log_format = settings.log_format;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let components =
                    Components { http: true, worker: !args.no_worker, scheduler: !args.no_scheduler };
                serve(settings, components).await
            }
            Command::Worker => {
                serve(settings, Components { http: false, worker: true, scheduler: false }).await
            }
            Command::Migrate => migrate(settings).await,
            Command::Reconcile(args) => reconcile(settings, args).await,
            Command::Jobs(command) => jobs(settings, command).await,
            Command::Deliveries(command) => deliveries(settings, command).await,
            // Answered before the settings were read.
            Command::Completions { .. } => Ok(()),
            #[cfg(feature = "simulator")]
            Command::Demo(args) => {
                let database_given = std::env::var_os("DATABASE_URL").is_some() || cli.config.is_some();
                crate::demo::run(settings, crate::demo::DemoOptions { exit: args.exit, database_given }).await
            }
            #[cfg(feature = "simulator")]
            Command::Sim(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report_failure(log_format, &error);
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The error that stopped a command, once, on one line with its whole cause
/// chain: a JSON object for log collectors, plain text for people.
fn report_failure(format: crate::config::LogFormat, error: &anyhow::Error) {
    let text = format!("{error:#}").replace('\n', " ");
    match format {
        crate::config::LogFormat::Json => tracing::error!(error = %text, "prmonitor stopped with an error"),
        crate::config::LogFormat::Text => eprintln!("prmonitor: {text}"),
    }
}

fn load_settings(cli: &Cli) -> Result<Settings, ConfigError> {
    let settings = Settings::load(cli.config.as_deref())?;
    // Without GitHub access in the settings, `serve` starts for /setup (or
    // with the App /setup stored): that App brings its webhook secret.
    if matches!(cli.command, Command::Serve(_)) && settings.github.auth.is_some() {
        settings.require_webhook_secrets()?;
    }
    let needs_github = match &cli.command {
        Command::Worker => true,
        Command::Reconcile(args) => args.wait,
        _ => false,
    };
    if needs_github {
        settings.require_github_or_stored_app()?;
    }
    Ok(settings)
}

/// The App `/setup` stored, used when the settings configure no GitHub
/// access (the settings win when both exist; the log says which is used).
async fn use_stored_app(settings: &mut Settings, pool: &db::DbPool) -> anyhow::Result<()> {
    let mut conn = db::connection(pool)
        .await
        .with_context(|| format!("cannot use {}", settings.database_url.redacted()))?;
    let Some(key) = settings.secret_key.clone() else {
        if crate::setup::app_stored(&mut conn).await? {
            tracing::warn!(
                "a GitHub App stored by /setup exists, but PRMONITOR_SECRET_KEY is not set: it cannot be used"
            );
        }
        return Ok(());
    };
    let Some(app) = crate::setup::load_app(&mut conn, &key)
        .await
        .context("the GitHub App stored by /setup cannot be used")?
    else {
        return Ok(());
    };
    if settings.github.auth.is_some() {
        tracing::info!(
            slug = %app.slug,
            "GitHub access comes from the settings; the App stored by /setup is not used"
        );
        return Ok(());
    }
    tracing::info!(app_id = app.app_id, slug = %app.slug, "using the GitHub App stored by /setup");
    settings.github.auth = Some(crate::config::GitHubAuth::App {
        app_id: u64::try_from(app.app_id).unwrap_or_default(),
        private_key: app.private_key,
    });
    settings.webhook_secrets.push(app.webhook_secret);
    Ok(())
}

/// Creates the database when missing and applies migrations (under an advisory lock).
async fn prepare_database(settings: &Settings) -> anyhow::Result<()> {
    db::create_database_if_missing(&settings.database_url).await?;
    let applied = db::run_migrations(&settings.database_url).await?;
    tracing::info!(applied = applied.len(), versions = ?applied, "migrations current");
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    prepare_database(&settings).await
}

async fn serve(mut settings: Settings, components: Components) -> anyhow::Result<()> {
    prepare_database(&settings).await?;
    let pool = db::build_pool(&settings.database_url, settings.db_pool_size)?;
    use_stored_app(&mut settings, &pool).await?;
    let service = Service::start(&settings, pool, components)?;
    let stop_signal = shutdown_signal();
    if let Some(address) = service.operations_address() {
        tracing::info!(%address, serves = "/metrics, /healthz, /readyz, the admin API", "operations listening");
    }
    match service.address() {
        Some(address) => {
            tracing::info!(%address, worker = components.worker, scheduler = components.scheduler, "listening")
        }
        None => tracing::info!(worker = components.worker, scheduler = components.scheduler, "running"),
    }
    tokio::select! {
        signal = stop_signal => {
            tracing::info!(signal, "stopping: finishing in-flight requests and jobs");
            service.stop().await;
            tracing::info!("stopped");
            Ok(())
        }
        reason = service.failed() => {
            // A part could not be kept running: stop the rest and exit non-zero,
            // so the orchestrator starts a fresh process.
            service.stop().await;
            anyhow::bail!("{reason}")
        }
    }
}

async fn reconcile(mut settings: Settings, args: ReconcileArgs) -> anyhow::Result<()> {
    use crate::db::repositories;
    use crate::queue::{NewJob, RepositoryJob};
    let pool = db::build_pool(&settings.database_url, settings.db_pool_size)?;
    if args.wait {
        use_stored_app(&mut settings, &pool).await?;
    }
    let mut conn = db::connection(&pool)
        .await
        .with_context(|| format!("cannot use {}", settings.database_url.redacted()))?;
    let repos = match &args.repository {
        Some(name) => vec![repositories::find_by_full_name(&mut conn, name)
            .await?
            .with_context(|| format!("{name} is not a watched repository"))?],
        None => repositories::list_active(&mut conn).await?,
    };
    if repos.is_empty() {
        println!("nothing to sweep: no repository is active (installations register them)");
        return Ok(());
    }
    if !args.wait {
        for repo in &repos {
            let job = NewJob::sweep(&RepositoryJob { repository_id: repo.id, manual: true })
                .with_max_attempts(settings.worker.max_attempts);
            let enqueued = crate::queue::enqueue(&mut conn, &job).await?;
            println!("{}\tjob {}", repo.full_name(), enqueued.id);
        }
        return Ok(());
    }
    drop(conn);
    let github = crate::github::GitHubClient::new(&settings.github, pool.clone())?;
    let processor = crate::startup::processor(&github, &pool, &settings);
    let progress = crate::progress::Progress::new("repositories", repos.len());
    let mut failed = 0;
    for repo in &repos {
        let ctx = crate::monitor::WorkContext { cause: crate::monitor::Cause::Manual, ..Default::default() };
        let result = processor.process(repo, crate::monitor::Target::Sweep, ctx).await;
        failed += usize::from(!result.success);
        progress.advance(&repo.full_name());
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    progress.finish();
    anyhow::ensure!(failed == 0, "{failed} of {} repositories failed", repos.len());
    Ok(())
}

async fn jobs(settings: Settings, command: JobsCommand) -> anyhow::Result<()> {
    let pool = db::build_pool(&settings.database_url, settings.db_pool_size)?;
    let mut conn = db::connection(&pool)
        .await
        .with_context(|| format!("cannot use {}", settings.database_url.redacted()))?;
    match command {
        JobsCommand::List { state, limit } => {
            println!(
                "{:>8}  {:<8}  {:<8}  {:>8}  {:<24}  last error",
                "id", "kind", "state", "attempts", "key"
            );
            for job in crate::queue::list(&mut conn, state.map(Into::into), limit).await? {
                println!(
                    "{:>8}  {:<8}  {:<8}  {:>4}/{:<3}  {:<24}  {}",
                    job.id,
                    job.kind,
                    job.state,
                    job.attempts,
                    job.max_attempts,
                    job.coalesce_key.unwrap_or_default(),
                    job.last_error.unwrap_or_default()
                );
            }
        }
        JobsCommand::Retry { ids, all_dead } => {
            let ids = if all_dead {
                crate::queue::list(&mut conn, Some(crate::queue::JobState::Dead), i64::MAX)
                    .await?
                    .into_iter()
                    .map(|j| j.id)
                    .collect()
            } else {
                ids
            };
            let mut missing = Vec::new();
            for id in ids {
                if crate::queue::retry_dead(&mut conn, id).await? {
                    println!("job {id}: pending again");
                } else {
                    missing.push(id);
                }
            }
            anyhow::ensure!(missing.is_empty(), "not dead letters: {missing:?}");
        }
    }
    Ok(())
}

async fn deliveries(settings: Settings, command: DeliveriesCommand) -> anyhow::Result<()> {
    use crate::db::deliveries::DeliveryFilter;
    use crate::webhook::deliveries as stored;
    let pool = db::build_pool(&settings.database_url, 1)?;
    let mut conn = db::connection(&pool)
        .await
        .with_context(|| format!("cannot use {}", settings.database_url.redacted()))?;
    match command {
        DeliveriesCommand::List { repo, event, outcome, since, limit } => {
            let filter = DeliveryFilter { repository: repo, event, outcome, since, limit };
            print!("{}", stored::table(&db::deliveries::list(&mut conn, &filter).await?));
        }
        DeliveriesCommand::Show { id } => {
            let detail =
                stored::show(&mut conn, &id).await?.with_context(|| format!("no delivery {id} is stored"))?;
            print!("{detail}");
        }
        DeliveriesCommand::Replay { ids } => {
            let mut failed = 0;
            for id in &ids {
                match stored::replay(&mut conn, id, settings.worker.max_attempts).await {
                    Ok(job) => println!("{id}\tjob {}", job.id),
                    Err(error) => {
                        failed += 1;
                        match settings.log_format {
                            crate::config::LogFormat::Json => {
                                tracing::error!(delivery_id = %id, %error, "delivery not replayed");
                            }
                            crate::config::LogFormat::Text => eprintln!("prmonitor: delivery {id}: {error}"),
                        }
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of {} deliveries were not replayed", ids.len());
        }
        DeliveriesCommand::Recover { since, wait } => {
            anyhow::ensure!(
                matches!(settings.github.auth, Some(crate::config::GitHubAuth::App { .. })),
                "gap recovery reads the App's deliveries API: set PRMONITOR_GITHUB_APP_ID and its private key"
            );
            let target = crate::queue::RecoveryJob { since };
            if !wait {
                let job = crate::queue::NewJob::recover_deliveries(&target)
                    .with_max_attempts(settings.worker.max_attempts);
                let enqueued = crate::queue::enqueue(&mut conn, &job).await?;
                println!("recovery enqueued as job {}", enqueued.id);
                return Ok(());
            }
            drop(conn);
            let pool = db::build_pool(&settings.database_url, 2)?;
            let github = crate::github::GitHubClient::new(&settings.github, pool.clone())?;
            let options = crate::webhook::recovery::RecoveryOptions {
                mode: settings.worker.delivery_recovery,
                max_pages: settings.worker.delivery_recovery_max_pages,
                max_attempts: settings.worker.max_attempts,
                since,
                sweep_above: settings.worker.delivery_recovery_sweep_above,
            };
            let report = crate::webhook::recovery::recover(&github, &pool, &options).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("prmonitor: cannot start the async runtime: {error}");
            None
        }
    }
}

#[cfg(feature = "simulator")]
/// `prmonitor sim`: the simulator in the foreground until Ctrl-C or SIGTERM.
fn run_sim(args: &SimArgs) -> ExitCode {
    telemetry::init(crate::config::LogFormat::Text);
    let fixture = match &args.fixture {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<github_sim::Fixture>(&text).map_err(|e| e.to_string()))
        {
            Ok(fixture) => Some(fixture),
            Err(error) => {
                eprintln!("prmonitor: --fixture {}: {error}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let config = github_sim::SimConfig {
        listen: args.listen,
        path_prefix: args.prefix.clone(),
        static_token: args.token.clone(),
        seed: args.seed,
        generate: (args.repos > 0).then_some(github_sim::Generate {
            repositories: args.repos,
            pull_requests: args.prs,
            check_runs: args.checks,
        }),
        fixture,
        webhook: args.webhook_url.clone().map(|url| github_sim::WebhookTarget {
            url,
            secret: args.webhook_secret.clone(),
            loss_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            concurrency: 1,
        }),
        app_registered: !args.no_app,
        ..github_sim::SimConfig::default()
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_FAILED);
    };
    let result = runtime.block_on(async {
        let sim = github_sim::Simulator::start(config).await?;
        if args.no_app {
            tracing::info!(
                api_url = %sim.api_url(),
                web_url = %sim.web_url(),
                "no App registered: run prmonitor serve with PRMONITOR_GITHUB_API_URL and PRMONITOR_GITHUB_WEB_URL set to these and open its /setup"
            );
        }
        tracing::info!(
            api_url = %sim.api_url(),
            graphql_url = %sim.graphql_url(),
            app_id = github_sim::SIM_APP_ID,
            "simulator listening (private key: fixtures/sim/app-private-key.pem; admin: /_sim/stats, /_sim/faults, /_sim/budget/ID, /_sim/graphql-budget/ID, /_sim/tokens/expire, POST /_sim/activity (changes with their webhooks); webhook deliveries with the App JWT: /app/hook/deliveries)"
        );
        let signal = shutdown_signal().await;
        tracing::info!(signal, "stopping the simulator");
        sim.stop().await;
        Ok::<_, github_sim::SimError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("prmonitor: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Resolves on SIGTERM (the orchestrator) or SIGINT (Ctrl-C).
/// Resolves with the signal's name on SIGTERM or Ctrl-C. The handlers are
/// installed when this is called, not when the future is first polled, so a
/// signal sent right after the "listening" line (or the demo's "Still
/// serving") is seen instead of ending the process with the default action.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        if let (Some(mut sigterm), Some(mut sigint)) = handlers {
            return tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = sigint.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
