//! `prmonitor demo`: the whole service against the GitHub simulator, in one
//! process, with a scripted stretch of activity and a table at the end.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use github_sim::{self as sim, Generate, NewPr, SimConfig, Simulator};

use crate::config::{DatabaseUrl, Secret, Settings};
use crate::db::{self, reads, repositories, DbPool};
use crate::simulated;
use crate::startup::{Components, Service};

/// Where the demo keeps its data when `DATABASE_URL` is not set: its own
/// database, made afresh each run, so it never touches real data.
pub const DEMO_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/prmonitor_demo";
const DEMO_SECRET: &str = "demo-webhook-secret";
const DEMO_ADMIN_TOKEN: &str = "demo-admin-token";

pub struct DemoOptions {
    /// Stop after the table (for CI); otherwise serve until Ctrl-C.
    pub exit: bool,
    /// `DATABASE_URL` was set explicitly: use it as it is.
    pub database_given: bool,
}

pub async fn run(mut settings: Settings, options: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("prmonitor demo: a simulated GitHub, the service, and a stretch of activity\n");

    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 2, pull_requests: 5, check_runs: 2 }),
        seed: 7,
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulator")?;
    println!(
        "  simulated GitHub   {} (App {}, installation {})",
        sim.api_url(),
        sim::SIM_APP_ID,
        sim::generate::GENERATED_INSTALLATION
    );

    if !options.database_given {
        settings.database_url = DatabaseUrl::parse(DEMO_DATABASE_URL).map_err(anyhow::Error::msg)?;
        reset_database(&settings.database_url).await?;
    }
    settings.webhook_secrets = vec![Secret::new(DEMO_SECRET)];
    settings.admin_token.get_or_insert_with(|| Secret::new(DEMO_ADMIN_TOKEN));
    // The demo's world is made up and its port local: the board needs no login.
    settings.board_public = true;
    simulated::use_simulator(&mut settings, &sim).map_err(anyhow::Error::msg)?;
    settings.github.retry_base_delay = Duration::from_millis(100);
    settings.worker.poll_interval = Duration::from_millis(200);
    settings.worker.retry_delay = Duration::from_millis(200);

    db::create_database_if_missing(&settings.database_url).await?;
    db::run_migrations(&settings.database_url).await?;
    let pool = db::build_pool(&settings.database_url, settings.db_pool_size)?;
    let service = match Service::start(&settings, pool.clone(), Components::ALL) {
        Ok(service) => service,
        Err(crate::startup::StartError::Listen { .. }) => {
            // The default port is taken (another prmonitor?): any free port will do.
            settings.listen.set_port(0);
            Service::start(&settings, pool.clone(), Components::ALL)?
        }
        Err(error) => return Err(error.into()),
    };
    let address = service.address().context("the service has no HTTP address")?;
    println!("  prmonitor          http://{address}  (database {})", settings.database_url);
    let secret = settings.webhook_secrets[0].expose().to_owned();
    sim.set_webhook(Some(simulated::webhook_target(&address.to_string(), &secret)));

    step("The App is installed: prmonitor registers and backfills the repositories");
    simulated::send_installation_created(
        &address.to_string(),
        &secret,
        "00000000-0000-4000-8000-000000000001",
    )
    .await?;
    simulated::settle(&pool, &sim, Duration::from_secs(60)).await?;

    step("Activity: PRs opened and pushed, checks queued, failing and passing, a merge, a label");
    let script = play(&sim)?;
    simulated::settle(&pool, &sim, Duration::from_secs(60)).await?;

    step("GitHub loses one webhook: a title change prmonitor never hears of");
    let (repo, number) = script.renamed;
    sim.mutate_silently(|w| {
        let id = w.repo_id(repo)?;
        w.edit_pr(id, number, Some("Retitled while the webhook was lost".into()), None)
    })?;
    let stored = stored_title(&pool, repo, number).await?;
    println!("    stored title of {repo}#{number}: {stored:?} (stale)");
    step("A sweep heals it (POST /api/v1/reconcile)");
    simulated::reconcile_all(
        &address.to_string(),
        settings.admin_token.as_ref().map_or(DEMO_ADMIN_TOKEN, |t| t.expose()),
    )
    .await?;
    simulated::settle(&pool, &sim, Duration::from_secs(60)).await?;
    println!("    stored title of {repo}#{number}: {:?}", stored_title(&pool, repo, number).await?);

    print_table(&pool, &sim).await?;
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    if options.exit {
        service.stop().await;
        sim.stop().await;
        return Ok(());
    }
    let stop_signal = crate::cli::shutdown_signal();
    println!("\nThe board: http://{address}/  (live: GitHub keeps changing a little every few seconds)");
    println!(
        "Still serving: http://{address}/readyz, POST http://{address}/api/v1/reconcile (Bearer {}). Ctrl-C stops.",
        settings.admin_token.as_ref().map_or(DEMO_ADMIN_TOKEN, |t| t.expose())
    );
    tokio::select! {
        _ = stop_signal => {}
        () = keep_changing(&sim) => {}
    }
    service.stop().await;
    sim.stop().await;
    Ok(())
}

/// A slow trickle of GitHub activity (PRs opened, pushed, checks finishing),
/// with webhooks, so an open board shows its live updates. Never ends.
async fn keep_changing(sim: &Simulator) {
    loop {
        tokio::time::sleep(Duration::from_secs(4)).await;
        if let Err(error) = sim.activity(&sim::Activity::random(1)).await {
            tracing::warn!(%error, "the demo's simulated activity failed");
        }
    }
}

fn step(what: &str) {
    println!("\n- {what}");
}

async fn reset_database(url: &DatabaseUrl) -> anyhow::Result<()> {
    let (maintenance, name) = db::maintenance_url(url.expose())?;
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&maintenance)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {}", url.redacted()))?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db::quote_identifier(&name)))
        .execute(&mut conn)
        .await?;
    Ok(())
}

struct Script {
    renamed: (&'static str, i64),
}

fn play(sim: &Simulator) -> anyhow::Result<Script> {
    let repo = "acme/repo-0";
    let mut feature = NewPr::new("Add a health endpoint", "alice");
    feature.labels = vec!["enhancement".into()];
    let a = sim.open_pr(repo, feature)?;
    let b = sim.open_pr(repo, NewPr::new("Fix the flaky retry test", "bob"))?;
    let head_a = sim.push(repo, a)?;
    let head_b = sim.world(|w| w.repo(w.repo_id(repo)?).map(|r| r.pulls[&b].head_sha.clone()))?;
    for (head, verdict) in [(&head_a, "success"), (&head_b, "failure")] {
        let build = sim.create_check_run(repo, head, "build")?;
        let test = sim.create_check_run(repo, head, "test")?;
        sim.start_check_run(build)?;
        sim.complete_check_run(build, "success")?;
        sim.start_check_run(test)?;
        sim.complete_check_run(test, verdict)?;
    }
    sim.label(repo, b, "bug")?;
    sim.merge(repo, a)?;
    let c = sim.open_pr("acme/repo-1", NewPr::new("Draft: new storage layer", "carol"))?;
    sim.set_draft("acme/repo-1", c, true)?;
    let head_c = sim.world(|w| w.repo(w.repo_id("acme/repo-1")?).map(|r| r.pulls[&c].head_sha.clone()))?;
    sim.create_check_run("acme/repo-1", &head_c, "build")?;
    Ok(Script { renamed: (repo, b) })
}

async fn stored_title(pool: &DbPool, repo: &str, number: i64) -> anyhow::Result<String> {
    use crate::db::schema::pull_requests;
    let mut conn = pool.get().await?;
    let stored =
        repositories::find_by_full_name(&mut conn, repo).await?.context("repository not registered")?;
    Ok(pull_requests::table
        .filter(pull_requests::repository_id.eq(stored.id))
        .filter(pull_requests::number.eq(i32::try_from(number)?))
        .select(pull_requests::title)
        .first(&mut conn)
        .await?)
}

async fn print_table(pool: &DbPool, sim: &Simulator) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    println!("\nPull requests in PostgreSQL, with the CI state of their head commit:\n");
    println!(
        "  {:<14} {:>4}  {:<38} {:<7} {:<6} {:<14} {:<8} pass/fail/pend",
        "repository", "#", "title", "state", "draft", "labels", "checks"
    );
    for repo in repositories::list_active(&mut conn).await? {
        for pr in reads::pulls_with_checks(&mut conn, repo.id).await? {
            let title: String = if pr.title.chars().count() > 38 {
                format!("{}…", pr.title.chars().take(37).collect::<String>())
            } else {
                pr.title.clone()
            };
            println!(
                "  {:<14} {:>4}  {:<38} {:<7} {:<6} {:<14} {:<8} {}/{}/{}",
                repo.full_name(),
                pr.number,
                title,
                pr.state,
                if pr.draft { "yes" } else { "" },
                pr.labels.join(","),
                pr.checks,
                pr.checks_passing,
                pr.checks_failing,
                pr.checks_pending
            );
        }
    }
    let stats = sim.stats();
    let api: Vec<_> = stats.requests.iter().filter(|r| !r.route.starts_with("POST /app")).collect();
    let not_modified = api.iter().filter(|r| r.status == 304).count();
    let deliveries = sim.deliveries().len();
    println!(
        "\nGitHub API calls: {} ({} answered 304, free), {} installation tokens; {} webhooks delivered.",
        api.len(),
        not_modified,
        stats.count("POST /app/installations/{id}/access_tokens", 201),
        deliveries
    );
    for (route, calls) in stats.counts() {
        println!("  {calls:>5}  {route}");
    }
    if let Some(budget) = sim.budget(sim::generate::GENERATED_INSTALLATION) {
        println!("Rate limit: {} of {} left this hour.", budget.remaining, budget.limit);
    }
    Ok(())
}
