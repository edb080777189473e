//! The read API over a backfilled fixture world, and `/metrics` of a real
//! `prmonitor serve` process after a small scenario.

use std::collections::BTreeMap;
use std::time::Duration;

use github_sim::{NewPr, SimConfig, Simulator, WebhookTarget};
use prmonitor::db::repositories::{self, NewRepository};
use prmonitor::monitor::Cause;
use serde_json::Value;

use prmonitor::ids::{GithubRepoId, InstallationId};
use prmonitor_testkit::{connect, count, sign, spawn_app_on, test_settings, TestDatabase, TEST_SECRET};

const READ_TOKEN: &str = "read-token-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// The fixture world (fixtures/sim/small.json) backfilled into a database,
/// and the HTTP app serving it.
async fn backfilled() -> (prmonitor_testkit::TestApp, Simulator) {
    let fixture = serde_json::from_str(include_str!("../../fixtures/sim/small.json")).expect("fixture");
    let sim =
        Simulator::start(SimConfig { fixture: Some(fixture), ..SimConfig::default() }).await.expect("sim");
    let db = TestDatabase::migrated().await;
    let api = sim.api_url();
    let settings = test_settings(
        &db,
        &[
            ("PRMONITOR_READ_TOKEN", READ_TOKEN),
            ("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN),
            ("PRMONITOR_GITHUB_API_URL", &api),
            ("PRMONITOR_GITHUB_APP_ID", &github_sim::SIM_APP_ID.to_string()),
            ("PRMONITOR_GITHUB_PRIVATE_KEY", github_sim::SIM_APP_PRIVATE_KEY),
        ],
    );
    let pool = prmonitor::db::build_pool(&settings.database_url, 4).expect("pool");
    let github = prmonitor::github::GitHubClient::new(&settings.github, pool.clone()).expect("client");
    let processor = prmonitor::startup::processor(&github, &pool, &settings);
    let mut conn = connect(&db.url).await;
    for (github_id, name) in [(700_001, "api"), (700_002, "web")] {
        let repo = repositories::upsert(
            &mut conn,
            &NewRepository {
                github_id: GithubRepoId(github_id),
                owner: "octo-org",
                name,
                installation_id: Some(InstallationId(2001)),
            },
        )
        .await
        .expect("register");
        let result = processor.process_repository(&repo, Cause::Backfill).await;
        assert!(result.success, "{:?}", result.errors);
    }
    (spawn_app_on(db, settings).await, sim)
}

async fn get(app: &prmonitor_testkit::TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn numbers(page: &Value) -> Vec<i64> {
    page["items"].as_array().expect("items").iter().map(|i| i["number"].as_i64().expect("number")).collect()
}

#[tokio::test]
async fn the_read_api_wants_a_token_and_filters_and_pages() {
    let (app, _sim) = backfilled().await;
    let pulls = "/api/v1/repositories/octo-org/api/pulls";
    assert_eq!(get(&app, pulls, None).await.0, 401);
    assert_eq!(get(&app, pulls, Some("wrong")).await.0, 401);
    assert_eq!(get(&app, pulls, Some(READ_TOKEN)).await.0, 200);
    assert_eq!(get(&app, pulls, Some(ADMIN_TOKEN)).await.0, 200, "the admin token reads too");
    for scheme in ["bearer", "BEARER", "Bearer  "] {
        let response = app
            .client
            .get(app.url(pulls))
            .header("authorization", format!("{scheme} {READ_TOKEN}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "the scheme is case-insensitive: {scheme:?}");
    }

    let (_, repos) = get(&app, "/api/v1/repositories?per_page=1", Some(READ_TOKEN)).await;
    assert_eq!(repos["total"], 2);
    assert_eq!(repos["items"][0]["full_name"], "octo-org/api");
    assert_eq!(repos["items"][0]["consecutive_failures"], 0);
    assert!(repos["items"][0]["last_swept_at"].is_string(), "{repos}");
    // A backfill repairs nothing: every kind is there, at zero.
    assert_eq!(
        repos["items"][0]["repairs_last_24h"],
        serde_json::json!({
            "total": 0, "pr_new": 0, "pr_updated": 0, "pr_gone": 0, "check_run_new": 0, "check_run_updated": 0,
            "merge_group": 0, "status_new": 0, "status_updated": 0, "required_checks": 0
        })
    );
    let errors =
        crate::json_schema::Schemas::new().validate_response("get", "/api/v1/repositories", "200", &repos);
    assert_eq!(errors, Vec::<String>::new(), "the answer is what the OpenAPI document says: {repos}");
    let (_, second) = get(&app, "/api/v1/repositories?per_page=1&page=2", Some(READ_TOKEN)).await;
    assert_eq!(second["items"][0]["full_name"], "octo-org/web");

    // The fixture: #1 open with a failing test, #2 merged, #3 a draft with checks still running.
    let cases: [(&str, Vec<i64>); 10] = [
        ("", vec![3, 1]),
        ("?state=all", vec![3, 2, 1]),
        ("?state=merged", vec![2]),
        ("?state=closed", vec![]),
        ("?draft=true", vec![3]),
        ("?label=enhancement", vec![1]),
        ("?state=all&author=carol", vec![2]),
        ("?checks=failing", vec![1]),
        ("?checks=pending", vec![3]),
        ("?state=all&checks=passing", vec![2]),
    ];
    for (query, expected) in cases {
        let (status, page) = get(&app, &format!("{pulls}{query}"), Some(READ_TOKEN)).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(numbers(&page), expected, "{query}");
        assert_eq!(page["total"], expected.len(), "{query}");
    }
    let (_, paged) = get(&app, &format!("{pulls}?state=all&per_page=1&page=2"), Some(READ_TOKEN)).await;
    assert_eq!((numbers(&paged), paged["total"].as_i64()), (vec![2], Some(3)));
    let (_, first) = get(&app, &format!("{pulls}?label=enhancement"), Some(READ_TOKEN)).await;
    assert_eq!(first["items"][0]["checks"], "failing");
    assert_eq!(
        (first["items"][0]["checks_passing"].as_i64(), first["items"][0]["checks_failing"].as_i64()),
        (Some(1), Some(1))
    );

    for bad in ["?state=weird", "?checks=red", "?per_page=1000", "?page=0", "?draft=maybe", "?colour=blue"] {
        assert_eq!(get(&app, &format!("{pulls}{bad}"), Some(READ_TOKEN)).await.0, 400, "{bad}");
    }
    assert_eq!(get(&app, "/api/v1/repositories/octo-org/nope/pulls", Some(READ_TOKEN)).await.0, 404);
}

#[tokio::test]
async fn hostile_query_parameters_get_a_400_naming_the_parameter() {
    let (app, _sim) = backfilled().await;
    let pulls = "/api/v1/repositories/octo-org/api/pulls";
    let long = "x".repeat(300);
    let cases = [
        (format!("{pulls}?page=9223372036854775807"), "page"),
        (format!("{pulls}?page=1000001"), "page"),
        (format!("{pulls}?per_page=-1"), "per_page"),
        (format!("{pulls}?page=99999999999999999999999"), "page"),
        (format!("{pulls}?label=bug%00"), "label"),
        (format!("{pulls}?author=%00alice"), "author"),
        (format!("{pulls}?label={long}"), "label"),
        (format!("{pulls}?colour=blue"), "colour"),
        ("/api/v1/repositories?page=9223372036854775807".to_owned(), "page"),
        ("/api/v1/repositories/octo%00org/api/pulls".to_owned(), "owner"),
        ("/api/v1/repositories/octo-org/api%00/pulls/1".to_owned(), "name"),
    ];
    for (path, parameter) in cases {
        let (status, body) = get(&app, &path, Some(READ_TOKEN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(parameter), "{path}: the message names {parameter}: {message}");
    }
    // Still serving: nothing above broke the pool or the process.
    assert_eq!(get(&app, pulls, Some(READ_TOKEN)).await.0, 200);
    // The limit counts characters, as the document's `maxLength` does: 256
    // two-byte characters are a valid (if unmatched) label.
    let (status, body) =
        get(&app, &format!("{pulls}?label={}", "%C3%A9".repeat(256)), Some(READ_TOKEN)).await;
    assert_eq!((status, &body["total"]), (200, &Value::from(0)), "{body}");
}

#[tokio::test]
async fn a_pull_request_comes_with_its_head_checks_and_history() {
    let (app, _sim) = backfilled().await;
    let (status, pr) = get(&app, "/api/v1/repositories/octo-org/api/pulls/1", Some(READ_TOKEN)).await;
    assert_eq!(status, 200, "{pr}");
    assert_eq!(pr["title"], "Add rate limiting");
    assert_eq!(pr["labels"], serde_json::json!(["enhancement"]));
    let runs = pr["check_runs"].as_array().expect("runs");
    let mut names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().expect("name")).collect();
    names.sort_unstable();
    assert_eq!(names, ["build", "test"]);
    assert!(runs.iter().all(|r| r["id"].as_i64().is_some_and(|id| id > i64::from(i32::MAX))));
    assert_eq!(pr["history"][0]["field"], "state");
    assert_eq!(pr["history"][0]["new"], "open");
    assert_eq!(pr["history"][0]["cause"], "backfill");
    assert_eq!(get(&app, "/api/v1/repositories/octo-org/api/pulls/99", Some(READ_TOKEN)).await.0, 404);
    assert_eq!(get(&app, "/api/v1/repositories/octo-org/api/pulls/x", Some(READ_TOKEN)).await.0, 400);
    assert_eq!(get(&app, "/api/v1/repositories/octo-org/api/pulls/1", None).await.0, 401);
    let (status, document) = get(&app, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(document["paths"]["/api/v1/repositories/{owner}/{name}/pulls/{number}"]["get"].is_object());
}

/// `name{labels} value` lines of the Prometheus text format, keyed by `name{labels}`.
pub(crate) fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

pub(crate) fn metric(metrics: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(key, _)| {
            let (key_name, key_labels) = key.split_once('{').unwrap_or((key.as_str(), ""));
            key_name == name && labels.iter().all(|(k, v)| key_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let sim = Simulator::start(SimConfig {
        generate: Some(github_sim::Generate { repositories: 1, pull_requests: 0, check_runs: 0 }),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let db = TestDatabase::migrated().await;
    {
        let mut conn = connect(&db.url).await;
        let repo = repositories::upsert(
            &mut conn,
            &NewRepository {
                github_id: GithubRepoId(500_000),
                owner: "acme",
                name: "repo-0",
                installation_id: Some(InstallationId(1001)),
            },
        )
        .await
        .expect("register");
        repositories::record_sweep(&mut conn, repo.id, None).await.expect("stamp");
    }
    let key = format!("{}/fixtures/sim/app-private-key.pem", env!("CARGO_MANIFEST_DIR"));
    let api = sim.api_url();
    let app_id = github_sim::SIM_APP_ID.to_string();
    let env = [
        ("PRMONITOR_GITHUB_API_URL", api.as_str()),
        ("PRMONITOR_GITHUB_APP_ID", app_id.as_str()),
        ("PRMONITOR_GITHUB_PRIVATE_KEY_FILE", key.as_str()),
        ("PRMONITOR_JOB_POLL_INTERVAL", "100ms"),
        ("PRMONITOR_SWEEP_INTERVAL", "1h"),
        ("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let serve = crate::PRMONITOR.start(&["serve"], &db, &env).await;
    let address = serve.address.clone();
    sim.set_webhook(Some(WebhookTarget {
        url: format!("http://{address}/webhooks/github"),
        secret: TEST_SECRET.to_owned(),
        loss_rate: 0.0,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        concurrency: 1,
    }));
    // Two PRs opened, one labeled, a check run created and completed.
    let a = sim.open_pr("acme/repo-0", NewPr::new("One", "amy")).expect("open");
    sim.open_pr("acme/repo-0", NewPr::new("Two", "ben")).expect("open");
    sim.label("acme/repo-0", a, "bug").expect("label");
    let head = sim.world(|w| w.repo(500_000).expect("repo").pulls[&a].head_sha.clone());
    let run = sim.create_check_run("acme/repo-0", &head, "build").expect("run");
    sim.complete_check_run(run, "success").expect("complete");
    sim.wait_for_deliveries().await;
    // Two unsigned requests and one redelivery.
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = client
            .post(format!("http://{address}/webhooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", prmonitor_testkit::new_delivery_id())
            .body("{}")
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 401);
    }
    let ping = br#"{"zen":"Design for failure."}"#;
    for _ in 0..2 {
        client
            .post(format!("http://{address}/webhooks/github"))
            .header("x-github-event", "ping")
            .header("x-github-delivery", "11111111-2222-3333-4444-555555555555")
            .header("x-hub-signature-256", sign(ping))
            .body(ping.to_vec())
            .send()
            .await
            .expect("sent");
    }
    // A sweep, so the sweep's families have samples too (it finds nothing to repair).
    let sweep = client
        .post(format!("http://{address}/api/v1/reconcile"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "all": true }))
        .send()
        .await
        .expect("sent");
    assert_eq!(sweep.status(), 202);
    let started = std::time::Instant::now();
    while count(&db.url, "SELECT count(*) FROM jobs WHERE state <> 'done'").await > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "jobs did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    prmonitor_testkit::verify::diff_all(&db.url, &sim).await.unwrap_or_else(|d| panic!("{d}"));

    let text = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let m = parse_metrics(&text);
    let queued = count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE event <> 'ping'").await as f64;
    assert_eq!(metric(&m, "prmonitor_webhook_deliveries_total", &[("outcome", "queued")]), queued, "{text}");
    assert_eq!(
        metric(&m, "prmonitor_webhook_deliveries_total", &[("event", "pull_request"), ("outcome", "queued")]),
        3.0
    );
    assert_eq!(
        metric(&m, "prmonitor_webhook_deliveries_total", &[("event", "ping"), ("outcome", "ping")]),
        1.0
    );
    assert_eq!(metric(&m, "prmonitor_webhook_deliveries_total", &[("outcome", "duplicate")]), 1.0);
    assert_eq!(metric(&m, "prmonitor_webhook_deliveries_total", &[("outcome", "unauthorized")]), 2.0);
    assert_eq!(metric(&m, "prmonitor_webhook_signature_failures_total", &[]), 2.0);
    let jobs_done =
        count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'event' AND state = 'done'").await as f64;
    assert_eq!(metric(&m, "prmonitor_jobs_completed_total", &[("kind", "event")]), jobs_done);
    assert_eq!(metric(&m, "prmonitor_job_duration_seconds_count", &[("kind", "event")]), jobs_done);
    assert_eq!(metric(&m, "prmonitor_jobs_pending", &[("kind", "event")]), 0.0);
    assert_eq!(metric(&m, "prmonitor_jobs_dead", &[]), 0.0);
    assert_eq!(metric(&m, "prmonitor_sync_changes_total", &[("kind", "pr_new")]), 2.0);
    assert_eq!(metric(&m, "prmonitor_sync_changes_total", &[("kind", "check_run_new")]), 1.0);
    let api_calls = sim.stats().requests.iter().filter(|r| !r.route.starts_with("POST /app")).count() as f64;
    // 4xx: the required checks of an unprotected branch are GitHub's 404.
    let counted = metric(&m, "prmonitor_github_calls_total", &[("outcome", "2xx")])
        + metric(&m, "prmonitor_github_calls_total", &[("outcome", "304")])
        + metric(&m, "prmonitor_github_calls_total", &[("outcome", "4xx")]);
    assert_eq!(counted, api_calls, "every GitHub call is counted");
    let share = metric(&m, "prmonitor_github_not_modified_ratio", &[]);
    let expected_share = metric(&m, "prmonitor_github_calls_total", &[("outcome", "304")]) / counted;
    assert!((share - expected_share).abs() < 1e-9, "{share} vs {expected_share}");
    assert!(metric(&m, "prmonitor_github_rate_limit_remaining", &[("installation", "1001")]) > 4900.0);
    assert_eq!(metric(&m, "prmonitor_repositories_failing", &[]), 0.0);
    assert_eq!(metric(&m, "prmonitor_metrics_database_up", &[]), 1.0);
    assert!(metric(&m, "prmonitor_metrics_database_age_seconds", &[]) < 5.0, "{text}");
    assert_eq!(metric(&m, "prmonitor_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0, "{text}");
    assert!(metric(&m, "process_resident_memory_bytes", &[]) > 0.0, "{text}");
    assert!(metric(&m, "process_open_fds", &[]) >= 3.0, "{text}");
    assert!(metric(&m, "process_start_time_seconds", &[]) > 1_500_000_000.0, "{text}");
    assert_eq!(metric(&m, "prmonitor_jobs_completed_total", &[("kind", "sweep")]), 1.0, "{text}");
    every_family_has_help(&text);
    promtool_check_metrics(&text).await;

    // Within 5 s the database gauges are served as read, not read again:
    // a job added now does not show, and the age of the values grows.
    let age = metric(&m, "prmonitor_metrics_database_age_seconds", &[]);
    {
        let mut conn = connect(&db.url).await;
        prmonitor_testkit::database::execute(
            &mut conn,
            "UPDATE jobs SET state = 'dead' WHERE kind = 'event'",
        )
        .await;
    }
    let again = parse_metrics(&scrape(&client, &address).await);
    assert_eq!(metric(&again, "prmonitor_jobs_dead", &[]), 0.0, "served from the last read");
    assert!(metric(&again, "prmonitor_metrics_database_age_seconds", &[]) > age);
    tokio::time::sleep(prmonitor::http::METRICS_REFRESH_EVERY).await;
    let later = parse_metrics(&scrape(&client, &address).await);
    assert_eq!(metric(&later, "prmonitor_jobs_dead", &[]), jobs_done, "read again after 5 s");
    assert!(metric(&later, "prmonitor_metrics_database_age_seconds", &[]) < 1.0);

    // A refresh stuck on the database holds up its own scrape only: the
    // next scrape answers at once with the last values, and their age.
    let mut locker = connect(&db.url).await;
    prmonitor_testkit::database::execute(&mut locker, "BEGIN").await;
    prmonitor_testkit::database::execute(&mut locker, "LOCK TABLE repositories IN ACCESS EXCLUSIVE MODE")
        .await;
    tokio::time::sleep(prmonitor::http::METRICS_REFRESH_EVERY).await;
    let stuck = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move { scrape(&client, &address).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stuck.is_finished(), "the refresh waits on the lock");
    let beside = tokio::time::timeout(Duration::from_secs(2), scrape(&client, &address))
        .await
        .expect("a scrape beside a stuck refresh does not wait");
    let beside = parse_metrics(&beside);
    assert!(metric(&beside, "prmonitor_metrics_database_age_seconds", &[]) >= 5.0);
    assert_eq!(metric(&beside, "prmonitor_jobs_dead", &[]), jobs_done);
    prmonitor_testkit::database::execute(&mut locker, "COMMIT").await;
    let after = parse_metrics(&stuck.await.expect("scrape"));
    assert_eq!(metric(&after, "prmonitor_metrics_database_up", &[]), 1.0);
    assert!(metric(&after, "prmonitor_metrics_database_age_seconds", &[]) < 1.0);
    serve.terminate();
}

async fn scrape(client: &reqwest::Client, address: &str) -> String {
    let response = client.get(format!("http://{address}/metrics")).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

/// Every `# TYPE` family of a scrape has a `# HELP` line too.
pub(crate) fn every_family_has_help(text: &str) {
    let typed: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_whitespace().next()).collect();
    assert!(typed.len() > 20, "{text}");
    for family in typed {
        let help = format!("# HELP {family} ");
        assert!(text.lines().any(|l| l.starts_with(&help) && l.len() > help.len()), "no HELP for {family}");
    }
    // A sample line whose family has no TYPE would be untyped: none either.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {name} ")) || text.contains(&format!("# TYPE {family} histogram")),
            "{line} has no TYPE"
        );
    }
}

/// `promtool check metrics` on a scrape: no lint, exit 0. Skipped without
/// promtool, unless `PRMONITOR_REQUIRE_PROMTOOL=1` (CI), which fails then.
pub(crate) async fn promtool_check_metrics(text: &str) {
    use tokio::io::AsyncWriteExt as _;
    let child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var("PRMONITOR_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "PRMONITOR_REQUIRE_PROMTOOL=1 but promtool cannot run: {error}"
            );
            eprintln!(
                "skipped: promtool check metrics (promtool: {error}; Debian's prometheus package has it)"
            );
            return;
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

/// Every field of the detail endpoint against the simulator's own PR and
/// check runs: a column read into the wrong field would show here.
#[tokio::test]
async fn a_pull_request_detail_shows_each_field_from_its_own_column() {
    let (app, sim) = backfilled().await;
    let repo = sim.world(|w| w.repo(700_001).expect("repo").clone());
    for (number, expected) in &repo.pulls {
        let path = format!("/api/v1/repositories/octo-org/api/pulls/{number}");
        let (status, pr) = get(&app, &path, Some(READ_TOKEN)).await;
        assert_eq!(status, 200, "{pr}");
        let keys: Vec<&str> = pr.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "assignees",
                "author",
                "base_branch",
                "body",
                "check_runs",
                "checks",
                "checks_failing",
                "checks_passing",
                "checks_pending",
                "closed_at",
                "created_at",
                "draft",
                "head_branch",
                "head_sha",
                "history",
                "html_url",
                "labels",
                "merge_queue",
                "merged_at",
                "metadata",
                "number",
                "repository",
                "required_checks",
                "required_state",
                "state",
                "statuses",
                "title",
                "updated_at",
            ],
            "#{number}"
        );
        assert_eq!(pr["repository"], "octo-org/api");
        assert_eq!(pr["number"], *number);
        assert_eq!(pr["title"], expected.title);
        assert_eq!(pr["author"], expected.author);
        assert_eq!(pr["state"], serde_json::json!(expected.state));
        assert_eq!(pr["draft"], expected.draft);
        assert_eq!(pr["base_branch"], expected.base_ref);
        assert_eq!(pr["head_branch"], expected.head_ref);
        assert_eq!(pr["head_sha"], expected.head_sha);
        let url = pr["html_url"].as_str().expect("html_url");
        assert!(url.ends_with(&format!("/octo-org/api/pull/{number}")), "{url}");
        assert_eq!(pr["body"], serde_json::json!(expected.body));
        assert_eq!(pr["labels"], serde_json::json!(expected.labels));
        assert_eq!(pr["assignees"], serde_json::json!(expected.assignees));
        assert!(pr["metadata"].is_object(), "{pr}");
        assert_eq!(pr["merge_queue"], serde_json::Value::Null, "never queued");
        assert_eq!(pr["created_at"], serde_json::json!(expected.created_at));
        assert_eq!(pr["updated_at"], serde_json::json!(expected.updated_at));
        assert_eq!(pr["closed_at"], serde_json::json!(expected.closed_at));
        assert_eq!(pr["merged_at"], serde_json::json!(expected.merged_at));

        // Newest run first.
        let mut runs: Vec<_> = repo.runs_for(&expected.head_sha).collect();
        runs.sort_by_key(|run| std::cmp::Reverse(run.id));
        let served = pr["check_runs"].as_array().expect("check_runs");
        assert_eq!(served.len(), runs.len(), "#{number}: {pr}");
        for (served, run) in served.iter().zip(runs) {
            let keys: Vec<&str> = served.as_object().expect("object").keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "completed_at",
                    "conclusion",
                    "details_url",
                    "html_url",
                    "id",
                    "name",
                    "output_title",
                    "started_at",
                    "status"
                ]
            );
            assert_eq!(served["id"], run.id);
            assert_eq!(served["name"], run.name);
            assert_eq!(served["status"], run.status);
            assert_eq!(served["conclusion"], serde_json::json!(run.conclusion));
            let details = served["details_url"].as_str().expect("details_url");
            assert!(details.ends_with(&format!("/ci/octo-org/api/{}", run.id)), "{details}");
            let html = served["html_url"].as_str().expect("html_url");
            assert!(html.ends_with(&format!("/octo-org/api/runs/{}", run.id)), "{html}");
            assert_eq!(served["output_title"], serde_json::json!(run.output_title));
            assert_eq!(served["started_at"], serde_json::json!(run.started_at));
            assert_eq!(served["completed_at"], serde_json::json!(run.completed_at));
        }

        let history = pr["history"].as_array().expect("history");
        assert!(!history.is_empty(), "#{number}: a backfill records the first state");
        for entry in history {
            let keys: Vec<&str> = entry.as_object().expect("object").keys().map(String::as_str).collect();
            assert_eq!(keys, ["at", "cause", "delivery_id", "field", "new", "old"]);
            assert_eq!(entry["cause"], "backfill");
            assert_eq!(entry["delivery_id"], Value::Null, "a backfill has no delivery");
        }
        assert_eq!(history[0]["field"], "state");
        assert_eq!(history[0]["old"], Value::Null);
        assert_eq!(history[0]["new"], serde_json::json!(expected.state));
        assert!(history[0]["at"]
            .as_str()
            .is_some_and(|at| at.parse::<chrono::DateTime<chrono::Utc>>().is_ok()));
    }
}

/// The exact status and body of each refusal of the read API.
#[tokio::test]
async fn read_api_errors_are_json_bodies_naming_the_problem() {
    let (app, _sim) = backfilled().await;
    let pulls = "/api/v1/repositories/octo-org/api/pulls";
    let cases: Vec<(String, Option<&str>, u16, &str)> = vec![
        (pulls.to_owned(), None, 401, "a valid bearer token is required"),
        (pulls.to_owned(), Some("wrong"), 401, "a valid bearer token is required"),
        ("/api/v1/repositories".to_owned(), None, 401, "a valid bearer token is required"),
        (format!("{pulls}/1"), None, 401, "a valid bearer token is required"),
        (format!("{pulls}?page=0"), Some(READ_TOKEN), 400, "page must be a whole number from 1 to 1000000"),
        (
            format!("{pulls}?per_page=101"),
            Some(READ_TOKEN),
            400,
            "per_page must be a whole number from 1 to 100",
        ),
        (
            "/api/v1/repositories?per_page=x".to_owned(),
            Some(READ_TOKEN),
            400,
            "per_page must be a whole number from 1 to 100",
        ),
        (format!("{pulls}?draft=maybe"), Some(READ_TOKEN), 400, "draft must be true or false"),
        (format!("{pulls}?label=a%00b"), Some(READ_TOKEN), 400, "label must not contain a NUL character"),
        (
            format!("{pulls}?author={}", "x".repeat(257)),
            Some(READ_TOKEN),
            400,
            "author must be at most 256 characters",
        ),
        (
            format!("{pulls}?state=weird"),
            Some(READ_TOKEN),
            400,
            "state is open, closed, merged or all, not 'weird'",
        ),
        (format!("{pulls}?checks=red"), Some(READ_TOKEN), 400, "checks is failing, pending, passing or none"),
        (
            "/api/v1/repositories/octo-org/nope/pulls".to_owned(),
            Some(READ_TOKEN),
            404,
            "octo-org/nope is not a watched repository",
        ),
        (
            "/api/v1/repositories/octo-org/nope/pulls/1".to_owned(),
            Some(READ_TOKEN),
            404,
            "octo-org/nope is not a watched repository",
        ),
        (
            "/api/v1/repositories/oc%00to/api/pulls".to_owned(),
            Some(READ_TOKEN),
            400,
            "owner must not contain a NUL character",
        ),
        (
            format!("{pulls}?colour=blue"),
            Some(READ_TOKEN),
            400,
            "unknown or malformed query parameters: Query deserialize error: unknown field `colour`, \
             expected one of `state`, `draft`, `label`, `author`, `checks`, `flaky`, `stuck`, `page`, `per_page`",
        ),
        (format!("{pulls}/x"), Some(READ_TOKEN), 400, "a pull request number is a number"),
        (format!("{pulls}/99"), Some(READ_TOKEN), 404, "no pull request #99 in octo-org/api"),
    ];
    for (path, token, status, message) in cases {
        let mut request = app.client.get(app.url(&path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/json"), "{path}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body, serde_json::json!({ "error": message }), "{path}");
    }
}

/// Without a read or admin token configured the read API is off, and says how to turn it on.
#[tokio::test]
async fn the_read_api_without_tokens_says_it_is_disabled() {
    let app = prmonitor_testkit::spawn_app().await;
    for path in ["/api/v1/repositories", "/api/v1/repositories/o/n/pulls", "/api/v1/repositories/o/n/pulls/1"]
    {
        let (status, body) = get(&app, path, Some("anything")).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            body,
            serde_json::json!({
                "error": "the read API is disabled: set PRMONITOR_READ_TOKEN or PRMONITOR_ADMIN_TOKEN"
            }),
            "{path}"
        );
    }
}

/// A database that refuses connections is a 503 naming the pool's error, on every read route.
#[tokio::test]
async fn with_the_database_down_the_read_api_answers_503() {
    // A port nothing listens on: every connection attempt is refused.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let db = TestDatabase::unique();
    let mut settings = test_settings(&db, &[("PRMONITOR_READ_TOKEN", READ_TOKEN)]);
    settings.database_url = prmonitor::config::DatabaseUrl::parse(&format!(
        "postgres://postgres@127.0.0.1:{closed_port}/nowhere"
    ))
    .expect("url");
    let app = spawn_app_on(db, settings).await;
    for path in ["/api/v1/repositories", "/api/v1/repositories/o/n/pulls", "/api/v1/repositories/o/n/pulls/1"]
    {
        let (status, body) = get(&app, path, Some(READ_TOKEN)).await;
        assert_eq!(status, 503, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        // The pool's own words, then the driver's cause (whose OS wording varies).
        let expected = "the database is unavailable: Error occurred while creating a new object: \
                        error connecting to server: Connection refused";
        assert!(message.starts_with(expected), "{path}: {message}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{path}: {body}");
    }
}

/// What schemathesis found in the admin API: a repository name PostgreSQL
/// cannot compare was a 503 (the query failed as if the database were
/// down), and the body extractor's refusal was plain text.
#[tokio::test]
async fn reconcile_refuses_what_it_cannot_look_up_with_a_json_400() {
    let app = prmonitor_testkit::spawn_app_with(&[("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let reconcile = |body: Vec<u8>| {
        app.client
            .post(app.url("/api/v1/reconcile"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: [(Vec<u8>, u16, &str); 4] = [
        (br#"{"repository": "octo/a\u0000pi"}"#.to_vec(), 400, "repository must not contain a NUL character"),
        (format!(r#"{{"repository": "{}"}}"#, "x".repeat(300)).into_bytes(), 400, "at most 256 characters"),
        (br#"{"all": false}"#.to_vec(), 400, "give either"),
        (vec![b' '; 300 * 1024], 413, "the body could not be read"),
    ];
    for (body, status, message) in cases {
        let response = reconcile(body).await.expect("sent");
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("a JSON body");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(message)), "{body}");
    }
}
