//! Bulk reads through GraphQL against the simulator's GraphQL API: the same
//! rows as REST for a fraction of the points, sweeps that heal lost webhooks
//! at a cost counted by the simulator, and a GraphQL budget kept apart from
//! REST's.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use github_sim::{Generate, SimConfig, Simulator};
use prmonitor::monitor::Cause;
use prmonitor::queue::{self, NewJob, SurveyJob};
use prmonitor_testkit::database::{connect, TestDatabase};
use prmonitor_testkit::verify::diff_all;
use prmonitor_testkit::world::{register_repositories, settings_for};
use prmonitor_testkit::TestWorld;

const GRAPHQL: &str = "POST /graphql";
const CHECK_RUNS: &str = "GET /repos/{owner}/{repo}/commits/{ref}/check-runs";
const ONE_PR: &str = "GET /repos/{owner}/{repo}/pulls/{number}";
const INSTALLATION: i64 = github_sim::generate::GENERATED_INSTALLATION;

/// Every stored PR and check run as one text, ordered, without prmonitor's
/// own ids and times: what two databases compare.
async fn stored_rows(db: &TestDatabase) -> String {
    #[derive(diesel::QueryableByName)]
    struct Rows {
        #[diesel(sql_type = Text)]
        rows: String,
    }
    let conn = &mut connect(&db.url).await;
    let query = "SELECT concat_ws(E'\\n', \
        (SELECT string_agg(row(r.github_id, p.github_id, p.node_id, p.number, p.title, p.author, p.state, p.draft, \
                               p.base_branch, p.base_sha, p.head_branch, p.head_sha, p.html_url, p.body, p.labels, \
                               p.assignees, p.metadata, p.gh_created_at, p.gh_updated_at, p.gh_closed_at, \
                               p.gh_merged_at, p.deleted_at IS NULL)::text, E'\\n' ORDER BY r.github_id, p.number) \
           FROM pull_requests p JOIN repositories r ON r.id = p.repository_id), \
        (SELECT string_agg(row(r.github_id, c.github_id, c.node_id, c.check_suite_id, c.head_sha, c.name, c.app_slug, \
                               c.status, c.conclusion, c.details_url, c.html_url, c.output_title, c.output_summary, \
                               c.gh_started_at, c.gh_completed_at)::text, E'\\n' ORDER BY c.github_id) \
           FROM check_runs c JOIN repositories r ON r.id = c.repository_id)) AS rows";
    let rows: Rows = diesel::sql_query(query).get_result(conn).await.expect("rows");
    rows.rows
}

/// Registers the simulator's repositories in a new database and backfills
/// them with `bulk_reads`; returns the database.
async fn backfill(sim: &Simulator, bulk_reads: &str) -> TestDatabase {
    let db = TestDatabase::migrated().await;
    let settings = settings_for(&db, sim, &[("PRMONITOR_BULK_READS", bulk_reads)]);
    let pool = prmonitor::db::build_pool(&settings.database_url, settings.db_pool_size).expect("pool");
    let github = prmonitor::github::GitHubClient::new(&settings.github, pool.clone()).expect("client");
    let processor = prmonitor::startup::processor(&github, &pool, &settings);
    for repo in register_repositories(&db, sim).await {
        let result = processor.process_repository(&repo, Cause::Backfill).await;
        assert!(result.success, "{bulk_reads} backfill of {}: {:?}", repo.full_name(), result.errors);
    }
    db
}

#[tokio::test]
async fn a_graphql_backfill_stores_the_rows_a_rest_backfill_stores_for_a_fraction_of_the_points() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 3, pull_requests: 30, check_runs: 4 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    // A head with more than a page of check runs: 130 runs of one suite.
    let repo = "acme/repo-0";
    let head =
        sim.world(|w| w.repo(w.repo_id(repo).expect("repo")).expect("repo").pulls[&1].head_sha.clone());
    for i in 0..130 {
        let run = sim.create_check_run(repo, &head, &format!("shard-{i}")).expect("run");
        if i % 3 == 0 {
            sim.complete_check_run(run, if i % 2 == 0 { "success" } else { "failure" }).expect("complete");
        }
    }

    sim.reset_stats();
    let rest = backfill(&sim, "rest").await;
    let rest_stats = sim.stats();
    sim.reset_stats();
    let graphql = backfill(&sim, "graphql").await;
    let graphql_stats = sim.stats();

    let (by_graphql, by_rest) = (stored_rows(&graphql).await, stored_rows(&rest).await);
    let differing = by_graphql.lines().zip(by_rest.lines()).find(|(g, r)| g != r);
    assert_eq!(differing, None, "the same rows, row by row (GraphQL, REST)");
    assert_eq!(by_graphql.lines().count(), by_rest.lines().count(), "as many rows");
    diff_all(&graphql.url, &sim).await.expect("the GraphQL backfill equals the simulator");
    let conn = &mut connect(&graphql.url).await;
    let (big, on_head): (i64, i64) = diesel::sql_query(format!(
        "SELECT count(*) FILTER (WHERE github_id > 2147483647) AS big, \
                count(*) FILTER (WHERE head_sha = '{head}') AS on_head FROM check_runs"
    ))
    .get_result::<Counts>(conn)
    .await
    .map(|c| (c.big, c.on_head))
    .expect("counts");
    assert!(big > 300, "check-run ids above 2^31 arrive whole: {big}");
    assert!(on_head > 130, "the head with more than 100 runs is read to its end: {on_head}");
    let node_ids_missing: i64 = prmonitor_testkit::database::count(
        &graphql.url,
        "SELECT (SELECT count(*) FROM check_runs WHERE node_id IS NULL) + (SELECT count(*) FROM pull_requests WHERE node_id IS NULL)",
    )
    .await;
    assert_eq!(node_ids_missing, 0, "GraphQL and REST objects join by node id");

    // REST reads each head's runs with a call; GraphQL 50 heads a query.
    let heads = rest_stats.count_route(CHECK_RUNS);
    assert!(heads >= 90, "REST: a call per head ({heads})");
    assert_eq!(graphql_stats.count_route(CHECK_RUNS), 0, "no REST check-run calls with GraphQL");
    let points = graphql_stats.graphql_points();
    assert!(points > 0 && points * 5 < heads, "GraphQL points {points} against {heads} REST calls");
    sim.stop().await;
}

#[derive(diesel::QueryableByName)]
struct Counts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    big: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    on_head: i64,
}

/// Makes every repository due for a sweep and runs the installation's survey job.
async fn survey_now(world: &TestWorld) {
    let conn = &mut connect(&world.db.url).await;
    diesel::sql_query("UPDATE repositories SET last_swept_at = now() - interval '2 days'")
        .execute(conn)
        .await
        .expect("due");
    let job =
        NewJob::survey(&SurveyJob { installation_id: Some(prmonitor::ids::InstallationId(INSTALLATION)) });
    queue::enqueue(conn, &job).await.expect("enqueued");
}

#[tokio::test]
async fn a_graphql_sweep_heals_lost_webhooks_in_50_repositories_for_a_few_points() {
    let world = TestWorld::builder(50).prs(3, 3).backfilled().start().await;
    world.settle().await;
    // Lost webhooks: a PR closed, a head pushed, a check completed while
    // others on its head are still pending.
    world.github.without_webhooks(|w| w.close_pr(w.repo_id("acme/repo-3")?, 1, false));
    world.github.without_webhooks(|w| w.push(w.repo_id("acme/repo-7")?, 2).map(|_| ()));
    let pending_run = world.github.world(|w| {
        w.repos.values().find_map(|repo| {
            repo.pulls.values().filter(|pr| pr.state == github_sim::model::PrState::Open).find_map(|pr| {
                let unfinished: Vec<i64> =
                    repo.runs_for(&pr.head_sha).filter(|r| r.status != "completed").map(|r| r.id).collect();
                (unfinished.len() >= 2).then(|| unfinished[0])
            })
        })
    });
    let pending_run = pending_run.expect("a head with two unfinished runs");
    world.github.without_webhooks(|w| w.complete_check_run(pending_run, "success").map(|_| ()));
    assert!(world.diff().await.is_err(), "the lost webhooks leave a gap");

    world.github.reset_stats();
    survey_now(&world).await;
    world.settle().await;
    world.diff().await.expect("the sweep healed every lost webhook");
    let stats = world.github.stats();
    let points = stats.graphql_points();
    let rest =
        stats.requests.iter().filter(|r| r.route != GRAPHQL && !r.route.contains("access_tokens")).count();
    // One survey of 50 repositories (1 point), the unfinished and changed
    // heads' runs (a few points), one REST read per changed PR.
    assert!(points <= 12, "{points} GraphQL points: {:?}", stats.counts());
    assert!(rest <= 4, "{rest} REST calls: {:?}", stats.counts());
    assert_eq!(stats.count_route(ONE_PR), rest as u64, "REST only reads the changed PRs");
    assert_eq!(
        world.count("SELECT count(*) FROM repositories WHERE last_swept_at < now() - interval '1 day'").await,
        0
    );
    world.finish().await;
}

#[tokio::test]
async fn an_exhausted_graphql_budget_holds_sweeps_until_its_reset_while_webhook_work_goes_on() {
    let world = TestWorld::builder(2).prs(2, 1).backfilled().start().await;
    world.settle().await;
    world.github.set_graphql_budget(INSTALLATION, Some(5000), Some(0), Some(Duration::from_secs(6)));
    survey_now(&world).await;
    // The survey is waiting for the GraphQL reset; a webhook's REST read is not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.github.retitle("acme/repo-1", 1, "Retitled while the sweep waits");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if world.api.pull("acme/repo-1", 1).await["title"] == "Retitled while the sweep waits" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "webhook work waited for the GraphQL budget");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let surveys_done =
        world.count("SELECT count(*) FROM jobs WHERE kind = 'survey' AND state = 'done'").await;
    assert_eq!(surveys_done, 0, "the sweep still waits for the GraphQL reset");
    world.settle().await;
    let surveys_done =
        world.count("SELECT count(*) FROM jobs WHERE kind = 'survey' AND state = 'done'").await;
    assert_eq!(surveys_done, 1, "after the reset the sweep ran");
    world.diff().await.expect("the database equals the simulator");
    world.finish().await;
}

#[tokio::test]
async fn a_backfill_stores_prs_closed_before_the_policy_without_their_check_runs() {
    // The generated history ends about 28 days ago: with a 7-day policy every
    // closed PR is old, every open one keeps its checks.
    let world = TestWorld::builder(1)
        .prs(30, 2)
        .setting("PRMONITOR_BACKFILL_CHECKS_FOR_CLOSED", "7d")
        .backfilled()
        .start()
        .await;
    let (open_runs, closed_heads) = world.github.world(|w| {
        let repo = w.repos.values().next().expect("repo");
        let open: usize = repo
            .pulls
            .values()
            .filter(|pr| pr.state == github_sim::model::PrState::Open)
            .map(|pr| repo.runs_for(&pr.head_sha).count())
            .sum();
        let closed = repo.pulls.values().filter(|pr| pr.state != github_sim::model::PrState::Open).count();
        (open, closed)
    });
    assert!(closed_heads > 3, "the world has closed PRs: {closed_heads}");
    assert_eq!(world.count("SELECT count(*) FROM pull_requests").await, 30, "every PR is stored");
    let stored_closed_runs = world
        .count(
            "SELECT count(*) FROM check_runs c JOIN pull_requests p \
               ON p.repository_id = c.repository_id AND p.head_sha = c.head_sha WHERE p.state <> 'open'",
        )
        .await;
    assert_eq!(stored_closed_runs, 0, "old closed PRs are stored without their runs");
    assert_eq!(
        world.count("SELECT count(*) FROM check_runs").await,
        open_runs as i64,
        "open PRs keep theirs"
    );
    world.finish_partial_copy().await;
}
