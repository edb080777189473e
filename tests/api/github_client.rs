//! The `github` client against the simulator, over real HTTP, with the ETag
//! store in a real PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use github_sim::{Faults, Generate, NewPr, SimConfig, Simulator, SIM_APP_ID, SIM_APP_PRIVATE_KEY};
use prmonitor::config::{parse_api_url, GitHubAuth, GitHubSettings, Secret};
use prmonitor::github::{self, Fetched, GitHubClient, Listing, PageItems, PullQuery, PullState, Purpose};

use prmonitor::ids::{InstallationId, PullRequestNumber};
use prmonitor_testkit::{connect, TestDatabase};

const INSTALLATION: i64 = github_sim::generate::GENERATED_INSTALLATION;
/// The installation as the client takes it.
const AS_INSTALLATION: Option<InstallationId> = Some(InstallationId(INSTALLATION));
const PULLS: &str = "GET /repos/{owner}/{repo}/pulls";
const PULL: &str = "GET /repos/{owner}/{repo}/pulls/{number}";
const TOKENS: &str = "POST /app/installations/{id}/access_tokens";

fn app_settings(api_url: &str) -> GitHubSettings {
    let auth = GitHubAuth::App { app_id: SIM_APP_ID, private_key: Secret::new(SIM_APP_PRIVATE_KEY) };
    let mut settings = GitHubSettings::new(parse_api_url(api_url).expect("api url"), Some(auth));
    // Short backoffs keep the tests quick; the policy is the same.
    settings.retry_base_delay = Duration::from_millis(20);
    settings
}

async fn client(db: &TestDatabase, settings: &GitHubSettings) -> GitHubClient {
    let pool = prmonitor::db::build_pool(&db.database_url(), 4).expect("pool");
    GitHubClient::new(settings, pool).expect("client")
}

async fn sim(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator")
}

fn one_repo(prs: usize) -> SimConfig {
    SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: prs, check_runs: 0 }),
        ..SimConfig::default()
    }
}

/// Stores a listing's validators, as the pipeline does after storing its rows.
async fn store_validators<T>(db: &TestDatabase, listing: &Listing<T>) {
    let mut conn = connect(&db.url).await;
    github::cache::save(&mut conn, &listing.validators()).await.expect("save validators");
}

fn statuses<T>(listing: &Listing<T>) -> Vec<&'static str> {
    listing
        .pages()
        .iter()
        .map(|page| match page.items {
            PageItems::Fresh { .. } => "200",
            PageItems::Unchanged { .. } => "304",
        })
        .collect()
}

#[tokio::test]
async fn the_github_app_path_works_and_renews_an_expired_token() {
    let sim = sim(SimConfig { token_lifetime: Duration::from_secs(2), ..one_repo(3) }).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;

    let listing = client
        .list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Webhook)
        .await
        .expect("JWT → installation token → API call");
    assert_eq!(listing.fresh_items().count(), 3);
    let stats = sim.stats();
    // octocrab renews a token 30 s before it expires: a 2-second token is
    // renewed on every call. (Real tokens last an hour: one per hour.)
    let first_tokens = stats.count(TOKENS, 201);
    assert!(first_tokens >= 1, "{:?}", stats.counts());
    assert_eq!(stats.count(PULLS, 200), 1);
    // ETags belong to the token that earned them: with a token per call, a
    // stored validator never earns a 304, and each listing costs a point.
    store_validators(&db, &listing).await;
    let before = sim.budget(INSTALLATION).expect("bucket").remaining;
    let again = client
        .list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Webhook)
        .await
        .expect("listing under a renewed token");
    assert_eq!(statuses(&again), ["200"]);
    assert_eq!(sim.budget(INSTALLATION).expect("bucket").remaining, before - 1);
    assert!(sim.stats().count(TOKENS, 201) > first_tokens, "{:?}", sim.stats().counts());
    let first_tokens = sim.stats().count(TOKENS, 201);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fetched = client
        .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook)
        .await
        .expect("renewed");
    assert!(matches!(fetched, Fetched::Fresh { ref data, .. } if data.number == 1));
    let stats = sim.stats();
    assert!(stats.count(TOKENS, 201) > first_tokens, "the expired token was replaced: {:?}", stats.counts());
    assert_eq!(stats.count(PULL, 401), 0, "no call went out with the expired token");

    // The App's own endpoint takes the JWT, not an installation token.
    let installations = client.list_installations().await.expect("installations");
    assert_eq!(installations.fresh_items().map(|i| i.id).collect::<Vec<_>>(), [InstallationId(INSTALLATION)]);
    let repositories = client.list_installation_repositories(AS_INSTALLATION).await.expect("repositories");
    assert_eq!(repositories.fresh_items().map(|r| r.full_name.as_str()).collect::<Vec<_>>(), ["acme/repo-0"]);
}

#[tokio::test]
async fn a_wrong_app_key_is_an_auth_error_not_a_retry_loop() {
    let sim = sim(one_repo(1)).await;
    let db = TestDatabase::migrated().await;
    let mut settings = app_settings(&sim.api_url());
    settings.auth =
        Some(GitHubAuth::App { app_id: SIM_APP_ID + 1, private_key: Secret::new(SIM_APP_PRIVATE_KEY) });
    let client = client(&db, &settings).await;
    let error = client
        .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook)
        .await
        .expect_err("the simulator refuses the JWT");
    assert!(matches!(error, github::GitHubError::Auth(_)), "{error}");
    assert_eq!(sim.stats().count(TOKENS, 401), 1, "tried once");
}

#[tokio::test]
async fn listing_500_prs_is_5_requests_then_5_free_304s_then_only_the_changed_page() {
    let sim = sim(one_repo(500)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let list = || client.list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Sweep);

    let first = list().await.expect("first listing");
    assert_eq!(first.fresh_items().count(), 500);
    let numbers: BTreeSet<i64> = first.fresh_items().map(|pr| pr.number).collect();
    assert_eq!(numbers.len(), 500);
    assert_eq!(statuses(&first), ["200"; 5]);
    assert_eq!(sim.stats().count_route(PULLS), 5);
    store_validators(&db, &first).await;

    // All within one token's lifetime: that token's ETags match (after a
    // rotation every page pays again: after_a_token_rotation_every_page_…).
    let before = sim.budget(INSTALLATION).expect("bucket");
    sim.reset_stats();
    let second = list().await.expect("second listing");
    assert_eq!(statuses(&second), ["304"; 5]);
    assert_eq!(sim.stats().count(PULLS, 304), 5);
    assert_eq!(sim.stats().count_route(PULLS), 5);
    assert_eq!(sim.budget(INSTALLATION).expect("bucket").remaining, before.remaining, "304s are free");

    // The most recently updated PR changes: it stays first on page 1, which alone differs.
    let newest = first.fresh_items().next().map(|pr| pr.number).expect("a PR");
    sim.edit_pr("acme/repo-0", newest, Some("A new title"), None).expect("edit");
    sim.reset_stats();
    let third = list().await.expect("third listing");
    assert_eq!(statuses(&third), ["200", "304", "304", "304", "304"]);
    assert_eq!(
        third.fresh_items().find(|pr| pr.number == newest).map(|pr| pr.title.as_str()),
        Some("A new title")
    );
    assert_eq!(sim.budget(INSTALLATION).expect("bucket").remaining, before.remaining - 1);
}

#[tokio::test]
async fn after_a_token_rotation_every_page_is_paid_again_then_free_under_the_new_token() {
    // GitHub's ETags belong to the token that earned them: a 304 is free only
    // within one token's lifetime.
    let sim = sim(one_repo(250)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let list = || client.list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Sweep);
    let first = list().await.expect("first listing");
    store_validators(&db, &first).await;
    let under_the_first_token = list().await.expect("second listing");
    assert_eq!(statuses(&under_the_first_token), ["304"; 3]);
    assert_eq!(sim.stats().count(TOKENS, 201), 1);

    // Every token ends (a rotation): the client's cached token is refused
    // once, the client mints a new one and asks again.
    assert_eq!(sim.expire_tokens(), 1);
    let before = sim.budget(INSTALLATION).expect("bucket");
    sim.reset_stats();
    let rotated = list().await.expect("the listing survives the rotation");
    assert_eq!(statuses(&rotated), ["200"; 3], "old ETags do not match under the new token");
    assert_eq!(rotated.fresh_items().count(), 250, "full bodies");
    assert_eq!(
        sim.budget(INSTALLATION).expect("bucket").remaining,
        before.remaining - 3,
        "every page costs a point again"
    );
    let stats = sim.stats();
    assert_eq!(stats.count(PULLS, 401), 1, "one refusal of the ended token: {:?}", stats.counts());
    assert_eq!(stats.count(TOKENS, 201), 1, "one new token: {:?}", stats.counts());
    let old: Vec<_> = first.validators().into_iter().map(|v| v.etag).collect();
    let new: Vec<_> = rotated.validators().into_iter().map(|v| v.etag).collect();
    assert!(old.iter().zip(&new).all(|(old, new)| old != new), "{old:?} vs {new:?}");

    // The new ETags stored, the next listing under the new token is free again.
    store_validators(&db, &rotated).await;
    let before = sim.budget(INSTALLATION).expect("bucket");
    let again = list().await.expect("listing under the new token");
    assert_eq!(statuses(&again), ["304"; 3]);
    assert_eq!(sim.budget(INSTALLATION).expect("bucket").remaining, before.remaining);
}

#[tokio::test]
async fn a_token_refused_twice_is_an_auth_failure_not_a_loop() {
    // Tokens that are over as soon as they are minted: every one is refused.
    let sim = sim(SimConfig { token_lifetime: Duration::ZERO, ..one_repo(1) }).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let error = client
        .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook)
        .await
        .expect_err("401");
    assert!(matches!(error, github::GitHubError::Api { status: 401, .. }), "{error}");
    let stats = sim.stats();
    assert_eq!(stats.count(PULL, 401), 2, "one more try with a new token, no more: {:?}", stats.counts());
    assert!(stats.count(TOKENS, 201) >= 2, "a new token for the second try: {:?}", stats.counts());
}

#[tokio::test]
async fn without_stored_validators_nothing_is_conditional() {
    // A 304 must mean "what you stored is current": unsaved validators are never sent.
    let sim = sim(one_repo(150)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    for _ in 0..2 {
        let listing = client
            .list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Sweep)
            .await
            .expect("listing");
        assert_eq!(statuses(&listing), ["200", "200"]);
    }
}

#[tokio::test]
async fn a_listing_stops_at_the_watermark() {
    let sim = sim(one_repo(350)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    sim.edit_pr("acme/repo-0", 10, Some("recently changed"), None).expect("edit");
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let listing = client
        .list_pull_requests(
            AS_INSTALLATION,
            "acme/repo-0",
            PullQuery { updated_since: Some(since), ..PullQuery::all() },
            Purpose::Sweep,
        )
        .await
        .expect("listing");
    assert_eq!(listing.pages().len(), 1, "the first page already reaches below the watermark");
    assert_eq!(listing.fresh_items().next().map(|pr| pr.number), Some(10));
}

#[tokio::test]
async fn with_30_percent_5xx_and_a_secondary_limit_all_500_prs_arrive_and_the_wait_is_silent() {
    let faults = Faults { error_rate: 0.3, secondary_limits: 1, retry_after_secs: 2, ..Faults::default() };
    let sim = sim(SimConfig { faults, seed: 7, ..one_repo(500) }).await;
    let db = TestDatabase::migrated().await;
    let mut settings = app_settings(&sim.api_url());
    settings.retry_attempts = 8;
    let client = client(&db, &settings).await;

    let listing = client
        .list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Sweep)
        .await
        .expect("the listing survives the faults");
    let numbers: BTreeSet<i64> = listing.fresh_items().map(|pr| pr.number).collect();
    assert_eq!(numbers.len(), 500);

    let requests: Vec<_> = sim.stats().requests.into_iter().filter(|r| r.route == PULLS).collect();
    let limited: Vec<_> = requests.iter().filter(|r| r.status == 403).collect();
    assert_eq!(limited.len(), 1, "one secondary limit");
    assert!(requests.iter().any(|r| r.status >= 500), "5xx were injected");
    let refused_at = limited[0].at;
    let next = requests.iter().find(|r| r.at > refused_at).expect("a request after the limit");
    // The Retry-After window: nothing is sent in it (the simulator's clock proves it).
    assert!(next.at - refused_at >= 1.95, "next request {:.3} s after the limit", next.at - refused_at);
    let counts = client.call_counts();
    assert!(counts.get(&(Purpose::Sweep, "retried")).copied().unwrap_or(0) >= 2, "{counts:?}");
    assert_eq!(counts.get(&(Purpose::Sweep, "4xx")).copied(), Some(1));
}

/// A simulator that allows 5 points per endpoint in a 2-second window
/// (GitHub: 900 a minute), with 7 pages of PRs to list.
fn tight_secondary_limit() -> SimConfig {
    SimConfig { secondary_points_per_minute: 5, secondary_window: Duration::from_secs(2), ..one_repo(700) }
}

#[tokio::test]
async fn a_listing_refused_for_the_secondary_limit_waits_for_retry_after_and_completes() {
    let sim = sim(SimConfig { static_token: Some("ghp_shared".into()), ..tight_secondary_limit() }).await;
    let db = TestDatabase::migrated().await;
    let mut settings = app_settings(&sim.api_url());
    settings.auth = Some(GitHubAuth::Token(Secret::new("ghp_shared")));
    // Backoffs far shorter than the window: only by waiting for Retry-After
    // can a refused call get through.
    settings.retry_base_delay = Duration::from_millis(1);
    settings.retry_attempts = 6;
    let client = client(&db, &settings).await;
    // Another process with the same token has just spent the endpoint's
    // points (tiny pages, so they surely fall in one window): this client's
    // own pacer cannot know, and its first page is refused.
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let url = format!("{}/repos/acme/repo-0/pulls?state=closed&per_page=1", sim.api_url());
        let answer = http.get(url).bearer_auth("ghp_shared").send().await.expect("sent");
        assert_eq!(answer.status(), 200);
    }
    let listing = client
        .list_pull_requests(None, "acme/repo-0", PullQuery::all(), Purpose::Sweep)
        .await
        .expect("the listing completes after the waits");
    assert_eq!(listing.fresh_items().map(|pr| pr.number).collect::<BTreeSet<_>>().len(), 700);
    let stats = sim.stats();
    assert!(stats.secondary_limited() >= 1, "{:?}", stats.counts());
    assert_eq!(stats.count(PULLS, 200), 5 + 7);
    let refused: Vec<_> = stats.requests.iter().filter(|r| r.limited.is_some()).collect();
    assert!(refused.iter().all(|r| r.status == 403 && r.limited == Some("secondary")), "{refused:?}");
    // Each refusal was waited out and retried; nothing else failed.
    let counts = client.call_counts();
    assert_eq!(counts.get(&(Purpose::Sweep, "4xx")).copied(), Some(stats.secondary_limited()));
    assert_eq!(counts.get(&(Purpose::Sweep, "retried")).copied(), Some(stats.secondary_limited()));
}

#[tokio::test]
async fn a_client_paced_at_the_secondary_limit_is_never_refused() {
    let sim = sim(tight_secondary_limit()).await;
    let db = TestDatabase::migrated().await;
    let mut settings = app_settings(&sim.api_url());
    settings.secondary_points_per_minute = 5;
    settings.secondary_window = Duration::from_secs(2);
    let client = client(&db, &settings).await;
    let list = || client.list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Sweep);
    let first = list().await.expect("listing");
    assert_eq!(statuses(&first), ["200"; 7]);
    store_validators(&db, &first).await;
    // 304s count against the secondary limit too: the pacer counts them.
    let second = list().await.expect("listing");
    assert_eq!(statuses(&second), ["304"; 7]);
    // 14 requests to one endpoint, 5 allowed per window: the client waited
    // for room each time rather than be refused.
    let stats = sim.stats();
    assert_eq!(stats.count_route(PULLS), 14, "{:?}", stats.counts());
    assert_eq!(stats.secondary_limited(), 0, "{:?}", stats.counts());
}

#[tokio::test]
async fn at_the_reserve_a_sweep_waits_for_the_reset_while_a_webhook_goes_through() {
    let sim = sim(one_repo(3)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    // 10 % of 100 is kept back; the window resets in 3 s.
    client
        .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook)
        .await
        .expect("warm up");
    let bucket = sim.set_budget(INSTALLATION, Some(100), Some(11), Some(Duration::from_secs(3)));
    client
        .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook)
        .await
        .expect("learns 10 left");
    sim.reset_stats();

    let sweep = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(2), Purpose::Sweep)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let webhook =
        client.get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(3), Purpose::Webhook).await;
    assert!(matches!(webhook, Ok(Fetched::Fresh { .. })), "the webhook call uses the reserve");
    assert!(!sweep.is_finished(), "the sweep call is still waiting");
    let sweep = sweep.await.expect("join").expect("the sweep call goes after the reset");
    assert!(matches!(sweep, Fetched::Fresh { .. }));

    let requests = sim.stats().requests;
    let at =
        |path_end: &str| requests.iter().find(|r| r.path.ends_with(path_end)).map(|r| r.at).expect("request");
    assert!(at("/pulls/3") < bucket.reset as f64, "webhook call inside the window");
    assert!(at("/pulls/2") >= bucket.reset as f64, "sweep call only after the reset");
}

#[tokio::test]
async fn gone_is_an_answer_and_other_4xx_fail_at_once() {
    let sim = sim(one_repo(2)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let missing = client
        .get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(99), Purpose::Webhook)
        .await;
    assert!(matches!(missing, Ok(Fetched::Gone)), "{missing:?}");
    sim.set_faults(Faults { not_found: vec!["/repos/acme/repo-0/pulls/1".into()], ..Faults::default() });
    let forced =
        client.get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook).await;
    assert!(matches!(forced, Ok(Fetched::Gone)), "{forced:?}");
    let unknown_repo = client
        .list_pull_requests(
            AS_INSTALLATION,
            "acme/nope",
            PullQuery { state: PullState::Open, ..PullQuery::all() },
            Purpose::Webhook,
        )
        .await;
    assert!(matches!(unknown_repo, Ok(Listing::Gone)), "{unknown_repo:?}");
    let bad_sha = client
        .list_check_runs(
            AS_INSTALLATION,
            "acme/repo-0",
            "0123456789abcdef0123456789abcdef01234567",
            Purpose::Webhook,
        )
        .await;
    assert!(matches!(bad_sha, Err(github::GitHubError::Api { status: 422, .. })), "{bad_sha:?}");
    assert_eq!(
        sim.stats().count_route("GET /repos/{owner}/{repo}/commits/{ref}/check-runs"),
        1,
        "no retry of a 422"
    );
}

#[tokio::test]
async fn an_enterprise_base_url_reaches_the_simulator_under_its_prefix() {
    let sim = sim(SimConfig { path_prefix: "/api/v3".into(), ..one_repo(130) }).await;
    assert!(sim.api_url().ends_with("/api/v3"));
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let listing = client
        .list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Backfill)
        .await
        .expect("listing under the prefix");
    assert_eq!(listing.fresh_items().count(), 130, "the next link kept the prefix");
    let requests = sim.stats().requests;
    assert!(requests.len() >= 3);
    assert!(requests.iter().all(|r| r.path.starts_with("/api/v3/")), "{requests:?}");
}

#[tokio::test]
async fn check_runs_of_a_commit_come_back_with_64_bit_ids_across_pages() {
    let sim = sim(one_repo(1)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let sha = sim.push("acme/repo-0", 1).expect("push");
    for i in 0..130 {
        sim.create_check_run("acme/repo-0", &sha, &format!("job-{i}")).expect("create");
    }
    let listing = client
        .list_check_runs(AS_INSTALLATION, "acme/repo-0", &sha, Purpose::Webhook)
        .await
        .expect("check runs");
    assert_eq!(listing.pages().len(), 2);
    let ids: BTreeSet<i64> = listing.fresh_items().map(|run| run.id).collect();
    assert_eq!(ids.len(), 130);
    assert!(ids.iter().all(|id| *id > i64::from(i32::MAX)));
}

#[tokio::test]
async fn a_plain_token_reads_everything_it_is_given() {
    let sim = sim(SimConfig { static_token: Some("ghp_simulated".into()), ..one_repo(2) }).await;
    let db = TestDatabase::migrated().await;
    let mut settings = app_settings(&sim.api_url());
    settings.auth = Some(GitHubAuth::Token(Secret::new("ghp_simulated")));
    let client = client(&db, &settings).await;
    let listing = client
        .list_pull_requests(
            None,
            "acme/repo-0",
            PullQuery { state: PullState::Open, ..PullQuery::all() },
            Purpose::Webhook,
        )
        .await
        .expect("token listing");
    assert!(listing.fresh_items().count() >= 1);
    assert_eq!(sim.stats().count_route(TOKENS), 0, "no App token exchange");

    settings.auth = Some(GitHubAuth::Token(Secret::new("wrong")));
    let wrong = self::client(&db, &settings).await;
    let error = wrong
        .get_pull_request(None, "acme/repo-0", PullRequestNumber(1), Purpose::Webhook)
        .await
        .expect_err("401");
    assert!(matches!(error, github::GitHubError::Api { status: 401, .. }), "{error}");
}

#[tokio::test]
async fn new_prs_appear_on_the_next_listing() {
    let sim = sim(one_repo(0)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let empty = client
        .list_pull_requests(
            AS_INSTALLATION,
            "acme/repo-0",
            PullQuery { state: PullState::Open, ..PullQuery::all() },
            Purpose::Webhook,
        )
        .await
        .expect("listing");
    assert_eq!(empty.fresh_items().count(), 0);
    store_validators(&db, &empty).await;
    sim.open_pr("acme/repo-0", NewPr::new("First", "alice")).expect("open");
    let one = client
        .list_pull_requests(
            AS_INSTALLATION,
            "acme/repo-0",
            PullQuery { state: PullState::Open, ..PullQuery::all() },
            Purpose::Webhook,
        )
        .await
        .expect("listing");
    assert_eq!(statuses(&one), ["200"], "the ETag changed with the content");
    assert_eq!(one.fresh_items().map(|pr| pr.title.as_str()).collect::<Vec<_>>(), ["First"]);
}

#[tokio::test]
async fn validators_unused_past_the_ttl_are_ignored_and_purged() {
    let sim = sim(one_repo(5)).await;
    let db = TestDatabase::migrated().await;
    let mut settings = app_settings(&sim.api_url());
    settings.cache_ttl = Duration::from_secs(1);
    let client = client(&db, &settings).await;
    let list = || client.list_pull_requests(AS_INSTALLATION, "acme/repo-0", PullQuery::all(), Purpose::Sweep);
    let first = list().await.expect("listing");
    store_validators(&db, &first).await;
    assert_eq!(statuses(&list().await.expect("listing")), ["304"]);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(statuses(&list().await.expect("listing")), ["200"], "a stale validator is not sent");
    let mut conn = connect(&db.url).await;
    let purged = github::cache::purge(&mut conn, settings.cache_ttl).await.expect("purge");
    assert_eq!(purged, 1);
    assert_eq!(prmonitor_testkit::count(&db.url, "SELECT count(*) FROM http_cache").await, 0);
}

#[tokio::test]
async fn a_burst_of_calls_shares_one_installation_token() {
    let sim = sim(one_repo(30)).await;
    let db = TestDatabase::migrated().await;
    let client = client(&db, &app_settings(&sim.api_url())).await;
    let calls = (1..=30).map(|n| {
        client.get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(n), Purpose::Webhook)
    });
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| matches!(r, Ok(Fetched::Fresh { .. }))));
    assert_eq!(sim.stats().count(TOKENS, 201), 1, "{:?}", sim.stats().counts());
}

#[tokio::test]
async fn a_burst_across_a_token_rotation_is_refused_at_most_once_per_call_in_flight() {
    let sim = sim(one_repo(30)).await;
    let db = TestDatabase::migrated().await;
    let settings = app_settings(&sim.api_url());
    let client = client(&db, &settings).await;
    let burst = || {
        futures_util::future::join_all((1..=30).map(|n| {
            client.get_pull_request(AS_INSTALLATION, "acme/repo-0", PullRequestNumber(n), Purpose::Webhook)
        }))
    };
    assert!(burst().await.iter().all(|r| matches!(r, Ok(Fetched::Fresh { .. }))));
    sim.expire_tokens();
    sim.reset_stats();
    let results = burst().await;
    assert!(results.iter().all(|r| matches!(r, Ok(Fetched::Fresh { .. }))), "{results:?}");
    // Only the calls already sent with the ended token are refused, each once:
    // its retry goes with a new token, and later calls find one.
    let refused = sim.stats().count(PULL, 401);
    assert!((1..=settings.max_concurrent_requests as u64).contains(&refused), "{:?}", sim.stats().counts());
    assert_eq!(sim.stats().count(PULL, 200), 30);
}
