//! Benchmarks: ingest, pipeline, backfill, sweep — each beside a physical
//! baseline measured in the same run. Prints a markdown report and writes
//! JSON under target/bench/. Nothing here asserts a time.
//!
//! `scripts/bench.sh [scenario…]` runs it (scenarios: ingest, pipeline,
//! backfill, sweep, scrapers, …; all by default). `scripts/bench-scrapers.sh`
//! runs `scrapers` beside a binary built from before the operations listener.

// A measuring program, not the service: a failed expectation ends the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Double};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use github_sim::prng::SplitMix64;
use github_sim::{self as sim, Generate, NewPr, SimConfig, Simulator, WebhookTarget};
use prmonitor::config::{parse_api_url, BulkReads, DatabaseUrl, GitHubAuth, Secret, Settings};
use prmonitor::db::repositories::{self, NewRepository};
use prmonitor::github::GitHubClient;
use prmonitor::ids::{GithubRepoId, InstallationId, RepositoryId};
use prmonitor::monitor::{
    Cause, ChangeSet, DatabaseChangeDetector, DatabaseSynchronizer, GitHubPrDiscovery, PrProcessor,
    SyncError, SyncReport, Synchronizer, Target, WorkContext,
};
use prmonitor_testkit::{verify, Binary, Serve, TestDatabase, TEST_SECRET};
use serde_json::{json, Value};

const SECRET: &str = TEST_SECRET;
const PRMONITOR: Binary = Binary(env!("CARGO_BIN_EXE_prmonitor"));

type Error = Box<dyn std::error::Error + Send + Sync>;
/// (event, delivery id, body, signature)
type Delivery = (&'static str, String, Vec<u8>, String);
type ScenarioFn =
    fn(&mut Report) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + '_>>;

#[derive(Debug, Clone, serde::Serialize)]
struct Figure {
    scenario: String,
    name: String,
    value: f64,
    unit: String,
    baseline: Option<(String, f64)>,
    /// value ÷ baseline (or baseline ÷ value for times: above 1 is better).
    ratio: Option<f64>,
    target: Option<String>,
}

#[derive(Default)]
struct Report {
    figures: Vec<Figure>,
}

impl Report {
    fn add(&mut self, scenario: &str, name: &str, value: f64, unit: &str) {
        self.figures.push(Figure {
            scenario: scenario.into(),
            name: name.into(),
            value,
            unit: unit.into(),
            baseline: None,
            ratio: None,
            target: None,
        });
    }

    fn compare(
        &mut self,
        scenario: &str,
        name: &str,
        value: f64,
        unit: &str,
        baseline: (&str, f64),
        target: &str,
    ) {
        self.figures.push(Figure {
            scenario: scenario.into(),
            name: name.into(),
            value,
            unit: unit.into(),
            ratio: (baseline.1 > 0.0).then(|| value / baseline.1),
            baseline: Some((baseline.0.into(), baseline.1)),
            target: Some(target.into()),
        });
    }

    fn target(&mut self, target: &str) {
        if let Some(last) = self.figures.last_mut() {
            last.target = Some(target.into());
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A `prmonitor` child process and its address.
struct Child {
    serve: Serve,
    address: String,
}

impl Child {
    async fn start(args: &[&str], db: &TestDatabase, extra: &[(&str, String)]) -> Result<Self, Error> {
        Self::start_binary(PRMONITOR, args, db, extra).await
    }

    async fn start_binary(
        binary: Binary,
        args: &[&str],
        db: &TestDatabase,
        extra: &[(&str, String)],
    ) -> Result<Self, Error> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from).to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("RUST_LOG", "warn,prmonitor::cli=info"),
            ("PRMONITOR_DB_POOL_SIZE", "20"),
            ("PRMONITOR_HTTP_WORKERS", &workers),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let serve = binary.start(args, db, &env).await;
        let address = serve.address.clone();
        Ok(Self { serve, address })
    }

    /// Peak resident memory (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.serve.child.id().map_or(0.0, |pid| peak_rss(&format!("/proc/{pid}/status")))
    }

    async fn stop(mut self) {
        self.serve.terminate();
        let _ = self.serve.exit_code().await;
    }
}

fn peak_rss(status_file: &str) -> f64 {
    std::fs::read_to_string(status_file)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn sim_env(sim: &Simulator) -> Vec<(&'static str, String)> {
    vec![
        ("PRMONITOR_GITHUB_API_URL", sim.api_url()),
        ("PRMONITOR_GITHUB_APP_ID", sim::SIM_APP_ID.to_string()),
        (
            "PRMONITOR_GITHUB_PRIVATE_KEY_FILE",
            format!("{}/fixtures/sim/app-private-key.pem", env!("CARGO_MANIFEST_DIR")),
        ),
        ("PRMONITOR_JOB_POLL_INTERVAL", "200ms".into()),
        ("PRMONITOR_SWEEP_INTERVAL", "24h".into()),
        ("PRMONITOR_WORKER_CONCURRENCY", "8".into()),
        // With the simulator's, see WIDENED_SECONDARY.
        ("PRMONITOR_GITHUB_SECONDARY_POINTS_PER_MINUTE", WIDENED_SECONDARY.to_string()),
    ]
}

/// The ingest, pipeline and backfill scenarios measure the machinery, so
/// besides the primary budget they widen GitHub's secondary limit (900
/// points a minute per endpoint), which would pace 10,000 check-run reads
/// over 11 minutes; the simulator and the client both get this instead. The
/// sweep scenario keeps GitHub's limits.
const WIDENED_SECONDARY: u32 = 1_000_000;

const WORDS: [&str; 48] = [
    "the", "build", "failed", "passed", "test", "error", "warning", "src", "main", "fix", "update", "merge",
    "branch", "commit", "review", "change", "add", "remove", "refactor", "docs", "ci", "step", "run", "job",
    "cargo", "npm", "compile", "link", "assert", "expected", "found", "line", "module", "function", "return",
    "value", "config", "deploy", "release", "version", "bump", "lint", "format", "check", "cache", "hit",
    "miss", "done",
];

/// Realistic deliveries: GitHub's own pull_request and check_run payloads,
/// padded (PR body, check-run output) to a uniform 5–25 KB in all, unique
/// delivery ids, signed.
fn deliveries(
    count: usize,
    repo: (i64, &str, i64),
    prs: i64,
) -> Vec<(&'static str, String, Vec<u8>, String)> {
    let pr: Value =
        serde_json::from_str(include_str!("../fixtures/github/payloads/pull_request/synchronize.json"))
            .expect("fixture");
    let run: Value =
        serde_json::from_str(include_str!("../fixtures/github/payloads/check_run/completed.json"))
            .expect("fixture");
    let rng = SplitMix64::new(42);
    let secret = Secret::new(SECRET);
    (0..count)
        .map(|i| {
            let size = 5_000 + rng.below(20_000) as usize;
            let number = 1 + rng.below(prs as u64) as i64;
            let (event, mut payload) =
                if i % 2 == 0 { ("pull_request", pr.clone()) } else { ("check_run", run.clone()) };
            payload["repository"]["id"] = json!(repo.0);
            payload["repository"]["full_name"] = json!(repo.1);
            payload["installation"] = json!({ "id": repo.2, "node_id": "x" });
            let padded = if event == "pull_request" {
                payload["number"] = json!(number);
                payload["pull_request"]["number"] = json!(number);
                &mut payload["pull_request"]["body"]
            } else {
                payload["check_run"]["head_sha"] = json!(format!("{:040x}", rng.next_u64() as u128 * 7919));
                &mut payload["check_run"]["output"]["text"]
            };
            *padded = json!("");
            let base = serde_json::to_vec(&payload).expect("json").len();
            // Words drawn at random compress about as well as prose and CI
            // logs do; a repeated character would compress to nothing and
            // flatter the storage.
            let mut text = String::with_capacity(size);
            while text.len() < size.saturating_sub(base) {
                text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
                text.push(if rng.chance(0.1) { '\n' } else { ' ' });
            }
            text.truncate(size.saturating_sub(base));
            let padded = if event == "pull_request" {
                &mut payload["pull_request"]["body"]
            } else {
                &mut payload["check_run"]["output"]["text"]
            };
            *padded = json!(text);
            let body = serde_json::to_vec(&payload).expect("json");
            let signature = prmonitor::webhook::signature::sign(&secret, &body);
            let id = format!("{:08x}-0000-4000-8000-{:012x}", i, rng.next_u64() & 0xffff_ffff_ffff);
            (event, id, body, signature)
        })
        .collect()
}

/// One signed delivery, as GitHub posts it.
async fn post_delivery(
    client: &reqwest::Client,
    url: &str,
    (event, id, body, signature): (&&'static str, &String, &Vec<u8>, &String),
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", *event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", signature)
        .body(body.clone())
        .send()
        .await
}

/// Sends every delivery at `concurrency` over keep-alive HTTP/1.1; returns
/// the wall time and each acknowledgement's latency in ms.
async fn send_all(
    address: &str,
    items: Arc<Vec<Delivery>>,
    concurrency: usize,
) -> Result<(Duration, Vec<f64>), Error> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).http1_only().build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("http://{address}/webhooks/github");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, items, url) = (client.clone(), next.clone(), items.clone(), url.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((event, id, body, signature)) = items.get(i) else { break };
                let sent = Instant::now();
                let response = post_delivery(&client, &url, (event, id, body, signature)).await;
                let ok = response.as_ref().is_ok_and(|r| r.status().as_u16() == 202);
                if !ok {
                    return Err(format!("delivery {i} failed: {:?}", response.map(|r| r.status())));
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(items.len());
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result??);
    }
    let elapsed = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    Ok((elapsed, latencies))
}

/// PostgreSQL's own rate of durable single-row commits of the same payloads,
/// at the same client count (pgbench): each transaction inserts one of the
/// deliveries' bodies into a column stored as intake stores its payloads.
async fn pgbench_baseline(db_url: &str, clients: usize, bodies: &[&[u8]]) -> Result<f64, Error> {
    let rows = bodies.len();
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    for statement in [
        // The source rows are stored uncompressed, so each insert compresses
        // its payload as intake's do (a compressed datum would be copied as is).
        "CREATE TABLE bench_bodies (id INTEGER PRIMARY KEY, body BYTEA NOT NULL)",
        "ALTER TABLE bench_bodies ALTER COLUMN body SET STORAGE EXTERNAL",
        "CREATE TABLE bench_payloads (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)",
        "ALTER TABLE bench_payloads ALTER COLUMN payload SET COMPRESSION lz4",
        "ALTER TABLE bench_payloads SET (toast_tuple_target = 8160)",
    ] {
        diesel::sql_query(statement).execute(&mut conn).await?;
    }
    for (chunk_index, chunk) in bodies.chunks(1_000).enumerate() {
        let first = (chunk_index * 1_000) as i32 + 1;
        let ids: Vec<i32> = (first..first + chunk.len() as i32).collect();
        diesel::sql_query(
            "INSERT INTO bench_bodies (id, body) SELECT * FROM unnest($1::int4[], $2::bytea[])",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Integer>, _>(&ids)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Binary>, _>(chunk)
        .execute(&mut conn)
        .await?;
    }
    let script = std::env::temp_dir().join("prmonitor-bench-insert.sql");
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {rows})\nINSERT INTO bench_payloads (payload) SELECT body FROM bench_bodies WHERE id = :id;\n"
        ),
    )?;
    let url = url::Url::parse(db_url)?;
    let output = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", "2", "-t", &(rows / clients).to_string(), "-f"])
        .arg(&script)
        .args(["-h", url.host_str().unwrap_or("127.0.0.1"), "-p", &url.port().unwrap_or(5432).to_string()])
        .args([
            "-U",
            if url.username().is_empty() { "postgres" } else { url.username() },
            url.path().trim_start_matches('/'),
        ])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
        .ok_or_else(|| {
            format!("pgbench printed no tps: {text} {}", String::from_utf8_lossy(&output.stderr))
        })?;
    Ok(tps)
}

async fn ingest(report: &mut Report) -> Result<(), Error> {
    const COUNT: usize = 20_000;
    const CONCURRENCY: usize = 64;
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 500, check_runs: 0 }),
        rate_limit: 10_000_000,
        secondary_points_per_minute: WIDENED_SECONDARY,
        ..SimConfig::default()
    })
    .await?;
    let items =
        Arc::new(deliveries(COUNT, (500_000, "acme/repo-0", sim::generate::GENERATED_INSTALLATION), 500));
    let database = TestDatabase::migrated().await;
    let db = database.url.clone();
    let bodies: Vec<&[u8]> = items.iter().map(|(_, _, body, _)| body.as_slice()).collect();
    let baseline = pgbench_baseline(&db, CONCURRENCY, &bodies).await?;
    for (label, worker) in [("worker off", false), ("worker on", true)] {
        let database = TestDatabase::migrated().await;
        let mut args = vec!["serve", "--no-scheduler"];
        if !worker {
            args.push("--no-worker");
        }
        let child = Child::start(&args, &database, &sim_env(&sim)).await?;
        let (elapsed, latencies) = send_all(&child.address, items.clone(), CONCURRENCY).await?;
        let rate = COUNT as f64 / elapsed.as_secs_f64();
        let scenario = format!("ingest ({label})");
        report.compare(
            &scenario,
            "deliveries acknowledged",
            rate,
            "/s",
            ("pgbench single-row inserts of the same bodies", baseline),
            "≥ 1.0×",
        );
        report.add(&scenario, "ack latency p50", percentile(&latencies, 0.50), "ms");
        report.add(&scenario, "ack latency p99", percentile(&latencies, 0.99), "ms");
        report.add(&scenario, "ack latency max", percentile(&latencies, 1.0), "ms");
        report.add(&scenario, "peak RSS of the service", child.peak_rss_mib(), "MiB");
        report.target("< 100 MiB");
        child.stop().await;
    }
    sim.stop().await;
    Ok(())
}

#[derive(QueryableByName)]
struct Latency {
    #[diesel(sql_type = Double)]
    ms: f64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn scalar(conn: &mut AsyncPgConnection, sql: &str) -> Result<i64, Error> {
    Ok(diesel::sql_query(sql).get_result::<Count>(conn).await?.n)
}

async fn register_and_backfill(db: &str, address: &str) -> Result<(), Error> {
    let mut payload: Value =
        serde_json::from_str(include_str!("../fixtures/github/payloads/installation/created.json"))?;
    payload["installation"]["id"] = json!(sim::generate::GENERATED_INSTALLATION);
    let body = serde_json::to_vec(&payload)?;
    reqwest::Client::new()
        .post(format!("http://{address}/webhooks/github"))
        .header("x-github-event", "installation")
        .header("x-github-delivery", "00000000-0000-4000-8000-0000000000aa")
        .header("x-hub-signature-256", prmonitor::webhook::signature::sign(&Secret::new(SECRET), &body))
        .body(body)
        .send()
        .await?;
    wait_idle(db, Duration::from_secs(600)).await
}

async fn wait_idle(db: &str, timeout: Duration) -> Result<(), Error> {
    let mut conn = AsyncPgConnection::establish(db).await?;
    let started = Instant::now();
    // Two index probes, not a count over every job: the poll must not load
    // the database it measures.
    let busy = "SELECT (EXISTS (SELECT 1 FROM jobs WHERE state = 'pending') \
                        OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running'))::int4::int8 AS n";
    while scalar(&mut conn, busy).await? > 0 {
        if started.elapsed() > timeout {
            return Err("the queue did not drain".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A realistic mix of changes on open PRs, each sending its webhooks; at
/// most `rate` changes a second when given, else as fast as they are made.
async fn activity(sim: &Simulator, events: usize, repos: usize, rate: Option<f64>) -> Result<(), Error> {
    let rng = SplitMix64::new(99);
    let started = Instant::now();
    let mut sent = 0;
    while sent < events {
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let repo = format!("acme/repo-{}", rng.below(repos as u64));
        let open: Vec<(i64, String)> = sim.world(|w| {
            w.repo(w.repo_id(&repo).expect("repo"))
                .map(|r| {
                    r.pulls
                        .values()
                        .filter(|p| p.state == sim::model::PrState::Open)
                        .map(|p| (p.number, p.head_sha.clone()))
                        .collect()
                })
                .unwrap_or_default()
        });
        if open.is_empty() {
            sim.open_pr(&repo, NewPr::new("refill", "bot"))?;
            sent += 1;
            continue;
        }
        let (n, head) = &open[rng.below(open.len() as u64) as usize];
        let roll = rng.below(100);
        let result = match roll {
            0..=19 => sim.push(&repo, *n).map(|_| ()),
            20..=49 => sim.create_check_run(&repo, head, &format!("job-{}", rng.below(4))).map(|_| ()),
            50..=79 => {
                let queued = sim.world(|w| {
                    w.repo(w.repo_id(&repo).expect("repo")).ok().and_then(|r| {
                        r.check_runs
                            .values()
                            .find(|c| &c.head_sha == head && c.status != "completed")
                            .map(|c| c.id)
                    })
                });
                match queued {
                    Some(run) => {
                        sim.complete_check_run(run, if rng.chance(0.2) { "failure" } else { "success" })
                    }
                    None => sim.create_check_run(&repo, head, "late").map(|_| ()),
                }
            }
            80..=89 => sim.label(&repo, *n, &format!("l{}", rng.below(1000))),
            90..=94 => sim.close(&repo, *n),
            _ => sim.merge(&repo, *n).or_else(|_| sim.close(&repo, *n)),
        };
        if result.is_ok() {
            sent += 1;
        }
    }
    Ok(())
}

async fn metric_sum(address: &str, name: &str, label: &str) -> Result<BTreeMap<String, f64>, Error> {
    let text = reqwest::get(format!("http://{address}/metrics")).await?.text().await?;
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(0.0);
        let label_value = key
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_owned();
        *sums.entry(label_value).or_default() += value;
    }
    Ok(sums)
}

/// Sends `items` open-loop at `rate` a second (each at its own time, not
/// after the previous answer, so a slow answer cannot hide the queue behind
/// it); returns each acknowledgement's latency in ms, sorted.
async fn send_paced(address: &str, items: Arc<Vec<Delivery>>, rate: f64) -> Result<Vec<f64>, Error> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).http1_only().build()?;
    let url = format!("http://{address}/webhooks/github");
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..items.len() {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate)).await;
        let (client, items, url) = (client.clone(), items.clone(), url.clone());
        tasks.spawn(async move {
            let (event, id, body, signature) = &items[i];
            let sent = Instant::now();
            let response = post_delivery(&client, &url, (event, id, body, signature)).await;
            match response {
                Ok(r) if r.status().as_u16() == 202 => Ok(sent.elapsed().as_secs_f64() * 1000.0),
                other => Err(format!("delivery {i} failed: {:?}", other.map(|r| r.status()))),
            }
        });
    }
    let mut latencies = Vec::with_capacity(items.len());
    while let Some(result) = tasks.join_next().await {
        latencies.push(result??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// `count` scrapers, each looping `GET /metrics` then `GET /readyz` on
/// `base` until `stop`, without a pause or once `every`; returns the scrapes completed. They
/// run on a thread of their own at nice 10: real scrapers run on other
/// hosts, so their own CPU should not be what slows intake here (what the
/// service spends on their requests is what is measured).
fn start_scrapers(
    base: String,
    count: usize,
    every: Option<Duration>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        // SAFETY: plain integers; changes the calling thread's nice value only.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::builder().http1_only().build().expect("client");
            let mut scrapers = tokio::task::JoinSet::new();
            for _ in 0..count {
                let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
                scrapers.spawn(async move {
                    let mut scrapes = 0;
                    let mut ticks = every.map(|every| {
                        let mut ticks = tokio::time::interval(every);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ticks
                    });
                    while !*stop.borrow() {
                        if let Some(ticks) = &mut ticks {
                            ticks.tick().await;
                        }
                        let metrics = client.get(format!("{base}/metrics")).send().await;
                        let metrics = match metrics {
                            Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                            _ => false,
                        };
                        let ready = client.get(format!("{base}/readyz")).send().await;
                        if metrics && ready.is_ok_and(|r| r.status() == 200) {
                            scrapes += 1;
                        }
                    }
                    scrapes
                });
            }
            let mut total = 0;
            while let Some(done) = scrapers.join_next().await {
                total += done.unwrap_or(0);
            }
            total
        })
    })
}

/// Intake's acknowledgement latency while 16 scrapers loop on `/metrics` and
/// `/readyz`: with none; on the webhook port (the binary of
/// `PRMONITOR_BENCH_BEFORE_BIN`, built from before the operations listener
/// and the shared gauges, when given: scripts/bench-scrapers.sh builds it);
/// on the webhook port now (gauges and readiness shared); and on the
/// operations port (`PRMONITOR_OPS_LISTEN`).
async fn scrapers(report: &mut Report) -> Result<(), Error> {
    const DELIVERIES: usize = 4_000;
    const RATE: f64 = 100.0;
    const SCRAPERS: usize = 16;
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 20, pull_requests: 50, check_runs: 4 }),
        rate_limit: 10_000_000,
        secondary_points_per_minute: WIDENED_SECONDARY,
        ..SimConfig::default()
    })
    .await?;
    let repo_id = sim.world(|w| w.repo_id("acme/repo-0"))?;
    let items =
        Arc::new(deliveries(DELIVERIES, (repo_id, "acme/repo-0", sim::generate::GENERATED_INSTALLATION), 50));
    // Leaked: a Binary names its path for the whole run.
    let before: Option<&'static str> =
        std::env::var("PRMONITOR_BENCH_BEFORE_BIN").ok().map(|p| &*Box::leak(p.into_boxed_str()));
    let before_label = std::env::var("PRMONITOR_BENCH_BEFORE_LABEL").unwrap_or_else(|_| "before".into());
    enum Scrape {
        None,
        Webhook,
        Operations,
    }
    // Looping: as many scrapes as the service answers. Paced: 16 scrapers
    // 5 times a second each (80 a second), a load the earlier binary could
    // still answer, so before and after serve the same scrapes.
    const PACED: Duration = Duration::from_millis(200);
    let mut setups = vec![("no scrapers".to_owned(), PRMONITOR, Scrape::None, None)];
    let now = |what: &str, scrape, every| (format!("{SCRAPERS} scrapers {what}"), PRMONITOR, scrape, every);
    match before {
        Some(path) => {
            let earlier = |what: &str, every| {
                (format!("{SCRAPERS} scrapers {what}, {before_label}"), Binary(path), Scrape::Webhook, every)
            };
            setups.push(earlier("looping on the webhook port", None));
            setups.push(earlier("at 5/s each on the webhook port", Some(PACED)));
        }
        None => eprintln!("scrapers: PRMONITOR_BENCH_BEFORE_BIN unset, no run of the earlier binary"),
    }
    setups.push(now("looping on the webhook port, now", Scrape::Webhook, None));
    setups.push(now("looping on the operations port", Scrape::Operations, None));
    setups.push(now("at 5/s each on the operations port", Scrape::Operations, Some(PACED)));
    let mut p99s = Vec::new();
    for (label, binary, scrape, every) in setups {
        let database = TestDatabase::migrated().await;
        let mut env = sim_env(&sim);
        if matches!(scrape, Scrape::Operations) {
            env.push(("PRMONITOR_OPS_LISTEN", "127.0.0.1:0".into()));
        }
        let child = Child::start_binary(binary, &["serve", "--no-scheduler"], &database, &env).await?;
        // Stored rows for the gauges' queries to read: 1,000 PRs, 4,000 check runs.
        register_and_backfill(&database.url, &child.address).await?;
        let base = match scrape {
            Scrape::Operations => format!("http://{}", child.serve.operations_address().await),
            _ => format!("http://{}", child.address),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scraping = match scrape {
            Scrape::None => None,
            _ => Some(start_scrapers(base, SCRAPERS, every, stopped)),
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let latencies = send_paced(&child.address, items.clone(), RATE).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let _ = stop.send(true);
        let scrapes = match scraping {
            None => 0,
            Some(thread) => tokio::task::spawn_blocking(move || thread.join().unwrap_or(0)).await?,
        };
        let scenario = format!("intake at {RATE} deliveries/s, {label}");
        report.add(&scenario, "ack latency p50", percentile(&latencies, 0.50), "ms");
        report.add(&scenario, "ack latency p99", percentile(&latencies, 0.99), "ms");
        report.add(&scenario, "ack latency max", percentile(&latencies, 1.0), "ms");
        if scrapes > 0 {
            report.add(&scenario, "scrapes served (metrics + readyz)", scrapes as f64 / elapsed, "/s");
        }
        // What the scrapes cost the database: the gauges' reads, timed by the service.
        let scrape = match scrape {
            Scrape::Operations => format!("http://{}", child.serve.operations_address().await),
            _ => format!("http://{}", child.address),
        };
        let text = reqwest::get(format!("{scrape}/metrics")).await?.text().await?;
        let series = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
        };
        let (sum, count) = (
            series("prmonitor_metrics_database_refresh_seconds_sum"),
            series("prmonitor_metrics_database_refresh_seconds_count"),
        );
        if count > 0.0 {
            report.add(&scenario, "database gauge reads", count / elapsed, "/s");
            report.add(&scenario, "database gauge read, mean", sum / count * 1000.0, "ms");
        }
        p99s.push((label, percentile(&latencies, 0.99)));
        child.stop().await;
    }
    // Ratios: a setup's p99 over the p99 without scrapers (1.0 = scrapers cost intake nothing).
    if let Some(alone) = <[(String, f64)]>::first(&p99s).map(|(_, p99)| *p99) {
        for (label, p99) in p99s.iter().skip(1) {
            report.compare("intake p99 beside scrapers", label, *p99, "ms", ("no scrapers", alone), "≈ 1.0×");
        }
    }
    sim.stop().await;
    Ok(())
}

async fn pipeline(report: &mut Report) -> Result<(), Error> {
    pipeline_at(report, "pipeline", 10_000, None).await
}

/// The same world fed at a fixed rate: what delivery → commit looks like
/// when the service keeps up (sizing), rather than the backlog of a flood.
async fn pipeline_paced(report: &mut Report) -> Result<(), Error> {
    pipeline_at(report, "pipeline at 300 changes/s", 6_000, Some(300.0)).await
}

async fn pipeline_at(
    report: &mut Report,
    scenario: &str,
    changes: usize,
    rate: Option<f64>,
) -> Result<(), Error> {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 20, pull_requests: 100, check_runs: 0 }),
        rate_limit: 10_000_000,
        secondary_points_per_minute: WIDENED_SECONDARY,
        ..SimConfig::default()
    })
    .await?;
    let database = TestDatabase::migrated().await;
    let db = database.url.clone();
    let child = Child::start(&["serve", "--no-scheduler"], &database, &sim_env(&sim)).await?;
    register_and_backfill(&db, &child.address).await?;
    let calls_before = metric_sum(&child.address, "prmonitor_github_calls_total", "purpose").await?;
    sim.reset_stats();
    sim.set_webhook(Some(WebhookTarget {
        url: format!("http://{}/webhooks/github", child.address),
        secret: SECRET.into(),
        loss_rate: 0.0,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        concurrency: 64,
    }));
    let started = Instant::now();
    activity(&sim, changes, 20, rate).await?;
    sim.wait_for_deliveries().await;
    wait_idle(&db, Duration::from_secs(1200)).await?;
    let elapsed = started.elapsed();
    let events = sim.deliveries().len();
    let mut conn = AsyncPgConnection::establish(&db).await?;
    let mut latencies: Vec<f64> = diesel::sql_query(
        "SELECT (EXTRACT(EPOCH FROM processed_at - received_at) * 1000)::float8 AS ms FROM webhook_deliveries \
         WHERE processed_at IS NOT NULL AND event <> 'installation'",
    )
    .load::<Latency>(&mut conn)
    .await?
    .into_iter()
    .map(|l| l.ms)
    .collect();
    latencies.sort_by(f64::total_cmp);
    let verified = verify::diff_all(&db, &sim).await;
    let api = sim.stats().requests.iter().filter(|r| !r.route.starts_with("POST /app")).count();
    let calls_after = metric_sum(&child.address, "prmonitor_github_calls_total", "purpose").await?;
    report.add(scenario, "events fully synchronized", events as f64 / elapsed.as_secs_f64(), "/s");
    report.target("≥ 1,000/s");
    report.add(scenario, "delivery → commit p50", percentile(&latencies, 0.50), "ms");
    report.add(scenario, "delivery → commit p99", percentile(&latencies, 0.99), "ms");
    report.target("< 250 ms");
    report.add(scenario, "GitHub calls per event", api as f64 / events as f64, "calls");
    report.target("≤ 0.5");
    for (purpose, after) in &calls_after {
        let before = calls_before.get(purpose).copied().unwrap_or(0.0);
        report.add(
            scenario,
            &format!("GitHub calls, {purpose} (incl. retries/304s)"),
            after - before,
            "calls",
        );
    }
    report.add(scenario, "peak RSS of the service", child.peak_rss_mib(), "MiB");
    report.add(scenario, "database equals the simulator", f64::from(u8::from(verified.is_ok())), "1 = yes");
    if let Err(difference) = verified {
        eprintln!("{scenario}: the database differs from the simulator: {difference}");
    }
    child.stop().await;
    sim.stop().await;
    Ok(())
}

fn settings_for(db: &str, sim: &Simulator) -> Result<Settings, Error> {
    let mut settings = Settings::load_from(None, &|_| None)?;
    settings.database_url = DatabaseUrl::parse(db)?;
    settings.github.api_url = parse_api_url(&sim.api_url())?;
    settings.github.auth =
        Some(GitHubAuth::App { app_id: sim::SIM_APP_ID, private_key: Secret::new(sim::SIM_APP_PRIVATE_KEY) });
    Ok(settings)
}

async fn register(db: &str, sim: &Simulator) -> Result<repositories::Repository, Error> {
    let mut conn = AsyncPgConnection::establish(db).await?;
    let (id, owner, name) = sim
        .world(|w| w.repos.values().next().map(|r| (r.id, r.owner.clone(), r.name.clone())))
        .ok_or("no repo")?;
    Ok(repositories::upsert(
        &mut conn,
        &NewRepository {
            github_id: GithubRepoId(id),
            owner: &owner,
            name: &name,
            installation_id: Some(InstallationId(sim::generate::GENERATED_INSTALLATION)),
        },
    )
    .await?)
}

async fn backfill(report: &mut Report) -> Result<(), Error> {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 10_000, check_runs: 10 }),
        // 10,100 calls: more than an hour of a real installation's 5,000/h.
        // The benchmark measures the machinery, so the window is widened.
        rate_limit: 10_000_000,
        secondary_points_per_minute: WIDENED_SECONDARY,
        ..SimConfig::default()
    })
    .await?;
    let database = TestDatabase::migrated().await;
    let db = database.url.clone();
    let mut settings = settings_for(&db, &sim)?;
    settings.github.secondary_points_per_minute = WIDENED_SECONDARY;
    let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
    let github = GitHubClient::new(&settings.github, pool.clone())?;
    // The production pipeline, its synchronizer wrapped to time the write
    // (the transaction), apart from reading GitHub and detecting changes.
    let write = Arc::new(TimedSynchronizer {
        inner: DatabaseSynchronizer::new(pool.clone()),
        elapsed: std::sync::Mutex::new(Duration::ZERO),
    });
    let processor = PrProcessor::new(
        Arc::new(GitHubPrDiscovery::new(github.clone(), settings.github.max_concurrent_requests)),
        Arc::new(DatabaseChangeDetector::new(pool.clone())),
        write.clone(),
        pool.clone(),
    );
    let repo = register(&db, &sim).await?;
    let started = Instant::now();
    let result = processor.process_repository(&repo, Cause::Backfill).await;
    let elapsed = started.elapsed();
    let write_elapsed = *write.elapsed.lock().map_err(|_| "poisoned")?;
    if !result.success {
        return Err(format!("backfill failed: {:?}", result.errors).into());
    }
    let rows = result.changes_synchronized as f64;
    let calls = sim.stats().requests.iter().filter(|r| !r.route.starts_with("POST /app")).count();

    // Baseline: the same rows loaded with COPY into tables of the same shape.
    let dir = std::env::temp_dir();
    let (prs_csv, runs_csv) = (dir.join("prmonitor-bench-prs.csv"), dir.join("prmonitor-bench-runs.csv"));
    let psql = |commands: Vec<String>| {
        let mut command = std::process::Command::new("psql");
        command.args(["-q", "-v", "ON_ERROR_STOP=1", &db]);
        for c in commands {
            command.args(["-c", &c]);
        }
        command.output()
    };
    psql(vec![
        format!("\\copy pull_requests TO '{}' CSV", prs_csv.display()),
        format!("\\copy check_runs TO '{}' CSV", runs_csv.display()),
        "CREATE TABLE copy_prs (LIKE pull_requests INCLUDING ALL); CREATE TABLE copy_runs (LIKE check_runs INCLUDING ALL)".into(),
    ])?;
    let copy_started = Instant::now();
    let copied = psql(vec![
        format!("\\copy copy_prs FROM '{}' CSV", prs_csv.display()),
        format!("\\copy copy_runs FROM '{}' CSV", runs_csv.display()),
    ])?;
    let copy_elapsed = copy_started.elapsed();
    if !copied.status.success() {
        return Err(format!("COPY failed: {}", String::from_utf8_lossy(&copied.stderr)).into());
    }
    let mut conn = AsyncPgConnection::establish(&db).await?;
    let copy_rows = (scalar(&mut conn, "SELECT count(*) AS n FROM copy_prs").await?
        + scalar(&mut conn, "SELECT count(*) AS n FROM copy_runs").await?) as f64;
    report.add("backfill (10,000 PRs, 100,000 check runs)", "wall time", elapsed.as_secs_f64(), "s");
    report.compare(
        "backfill (10,000 PRs, 100,000 check runs)",
        "rows written",
        rows / elapsed.as_secs_f64(),
        "rows/s",
        ("COPY of the same rows", copy_rows / copy_elapsed.as_secs_f64()),
        "≥ 0.5×",
    );
    report.compare(
        "backfill (10,000 PRs, 100,000 check runs)",
        "rows written, write phase alone (the synchronizing transaction)",
        rows / write_elapsed.as_secs_f64(),
        "rows/s",
        ("COPY of the same rows", copy_rows / copy_elapsed.as_secs_f64()),
        "",
    );
    report.add(
        "backfill (10,000 PRs, 100,000 check runs)",
        "share of wall time spent writing",
        100.0 * write_elapsed.as_secs_f64() / elapsed.as_secs_f64(),
        "%",
    );
    report.add("backfill (10,000 PRs, 100,000 check runs)", "GitHub calls", calls as f64, "calls");
    report.add(
        "backfill (10,000 PRs, 100,000 check runs)",
        "peak RSS, bench process incl. simulator",
        peak_rss("/proc/self/status"),
        "MiB",
    );
    let _ = std::fs::remove_file(prs_csv);
    let _ = std::fs::remove_file(runs_csv);
    sim.stop().await;
    Ok(())
}

/// Times the synchronizer it wraps (the pipeline's extension point).
struct TimedSynchronizer {
    inner: DatabaseSynchronizer,
    elapsed: std::sync::Mutex<Duration>,
}

#[async_trait::async_trait]
impl Synchronizer for TimedSynchronizer {
    async fn synchronize_changes(
        &self,
        repository_id: RepositoryId,
        changes: &ChangeSet,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let result = self.inner.synchronize_changes(RepositoryId(repository_id.into()), changes).await;
        if let Ok(mut elapsed) = self.elapsed.lock() {
            *elapsed += started.elapsed();
        }
        result
    }
}

async fn sweep(report: &mut Report) -> Result<(), Error> {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 1_000, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await?;
    let database = TestDatabase::migrated().await;
    let db = database.url.clone();
    let settings = settings_for(&db, &sim)?;
    let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
    let github = GitHubClient::new(&settings.github, pool.clone())?;
    let processor = prmonitor::startup::processor(&github, &pool, &settings);
    let repo = register(&db, &sim).await?;
    let backfilled = processor.process_repository(&repo, Cause::Backfill).await;
    if !backfilled.success {
        return Err(format!("backfill failed: {:?}", backfilled.errors).into());
    }
    // The first sweep after a backfill reads the open-PR listing once (the
    // backfill lists all states); the second shows the steady state within
    // one token's lifetime; the third, after a token rotation (tokens last an
    // hour, sweeps come every few), what a scheduled sweep really costs: ETags
    // belong to one token, so every page is a 200 and a point again.
    let rounds = [
        (1, "first sweep after the backfill"),
        (2, "unchanged sweep, same token"),
        (3, "unchanged sweep after a token rotation"),
    ];
    for (round, label) in rounds {
        // Sweeps come hours apart: the secondary-limit window of the reads
        // before has passed, and the wall time is the sweep's, not a wait.
        tokio::time::sleep(settings.github.secondary_window + Duration::from_secs(3)).await;
        if round == 3 {
            sim.expire_tokens();
        }
        let mut conn = AsyncPgConnection::establish(&db).await?;
        let repo = repositories::find(&mut conn, repo.id).await?;
        let budget = sim.budget(sim::generate::GENERATED_INSTALLATION).map_or(0, |b| b.remaining);
        sim.reset_stats();
        let started = Instant::now();
        let ctx = WorkContext { cause: Cause::Sweep, ..WorkContext::default() };
        let result = processor.process(&repo, Target::Sweep, ctx).await;
        let elapsed = started.elapsed();
        if !result.success {
            return Err(format!("sweep {round} failed: {:?}", result.errors).into());
        }
        let stats = sim.stats();
        let calls = stats.requests.iter().filter(|r| !r.route.starts_with("POST /app")).count();
        let spent = budget - sim.budget(sim::generate::GENERATED_INSTALLATION).map_or(0, |b| b.remaining);
        let scenario = format!("sweep of a 1,000-PR repository: {label}");
        report.add(&scenario, "GitHub calls", calls as f64, "calls");
        report.add(
            &scenario,
            "of which 304 (free)",
            stats.requests.iter().filter(|r| r.status == 304).count() as f64,
            "calls",
        );
        report.add(&scenario, "REST budget spent", spent as f64, "points");
        if round == 2 {
            report.target("0");
        }
        // The head's check runs are read through GraphQL (sweeps' bulk reads).
        report.add(&scenario, "GraphQL points spent", stats.graphql_points() as f64, "points");
        report.add(&scenario, "secondary-limit refusals", stats.secondary_limited() as f64, "requests");
        report.target("0");
        report.add(&scenario, "wall time", elapsed.as_secs_f64(), "s");
    }
    sim.stop().await;
    Ok(())
}

/// GitHub's price of what the simulator counted: REST answers other than
/// 304 and token exchanges cost a point each, GraphQL queries what GitHub's
/// formula charges. (requests, points, secondary-limit refusals)
fn github_cost(stats: &sim::Stats) -> (usize, u64, u64) {
    let rest: Vec<_> = stats
        .requests
        .iter()
        .filter(|r| r.route != "POST /graphql" && !r.route.starts_with("POST /app"))
        .collect();
    let rest_points = rest.iter().filter(|r| r.status != 304).count() as u64;
    let graphql = stats.requests.iter().filter(|r| r.route == "POST /graphql").count();
    (rest.len() + graphql, rest_points + stats.graphql_points(), stats.secondary_limited())
}

/// A processor and its client, as the service builds them, with fresh
/// installation tokens (a new client mints its own).
fn pipeline_for(
    settings: &Settings,
    pool: &prmonitor::db::DbPool,
) -> Result<(GitHubClient, PrProcessor), Error> {
    let github = GitHubClient::new(&settings.github, pool.clone())?;
    let processor = prmonitor::startup::processor(&github, pool, settings);
    Ok((github, processor))
}

async fn register_all(db: &str, sim: &Simulator) -> Result<Vec<repositories::Repository>, Error> {
    let mut conn = AsyncPgConnection::establish(db).await?;
    let repos: Vec<(i64, String, String, i64)> = sim.world(|w| {
        w.repos.values().map(|r| (r.id, r.owner.clone(), r.name.clone(), r.installation_id)).collect()
    });
    let mut stored = Vec::new();
    for (id, owner, name, installation) in repos {
        let new = NewRepository {
            github_id: GithubRepoId(id),
            owner: &owner,
            name: &name,
            installation_id: Some(InstallationId(installation)),
        };
        stored.push(repositories::upsert(&mut conn, &new).await?);
    }
    Ok(stored)
}

/// Backfills of the same world through REST and through GraphQL, side by
/// side: points (REST + GraphQL), requests, wall time; and the policy for
/// old closed PRs.
async fn bulk_backfill(report: &mut Report) -> Result<(), Error> {
    // 10,000 PRs through GraphQL; REST's side is measured on 1,000 of them
    // (10,100 REST calls would take GitHub's secondary limit of 900 a
    // minute per endpoint past 11 minutes) and reported per 1,000 PRs.
    for (bulk, prs) in [("graphql", 10_000), ("rest", 1_000)] {
        let sim = Simulator::start(SimConfig {
            generate: Some(Generate { repositories: 1, pull_requests: prs, check_runs: 10 }),
            rate_limit: 1_000_000,
            ..SimConfig::default()
        })
        .await?;
        let database = TestDatabase::migrated().await;
        let mut settings = settings_for(&database.url, &sim)?;
        settings.worker.bulk_reads = if bulk == "rest" { BulkReads::Rest } else { BulkReads::Graphql };
        // Every PR with its checks: the figure the target names.
        settings.worker.backfill_checks_for_closed = Duration::from_secs(3650 * 86_400);
        let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
        let (_, processor) = pipeline_for(&settings, &pool)?;
        let repos = register_all(&database.url, &sim).await?;
        sim.reset_stats();
        let started = Instant::now();
        let result = processor.process_repository(&repos[0], Cause::Backfill).await;
        let elapsed = started.elapsed();
        if !result.success {
            return Err(format!("{bulk} backfill failed: {:?}", result.errors).into());
        }
        verify::diff_all(&database.url, &sim).await?;
        let (requests, points, limited) = github_cost(&sim.stats());
        let per_1000 = 1000.0 / prs as f64;
        let scenario = format!("backfill, {bulk} ({prs} PRs × 10 check runs)");
        report.add(&scenario, "points per 1,000 PRs (REST + GraphQL)", points as f64 * per_1000, "points");
        if bulk == "graphql" {
            report.target("≤ 120");
        }
        report.add(&scenario, "requests per 1,000 PRs", requests as f64 * per_1000, "requests");
        report.add(&scenario, "secondary-limit refusals", limited as f64, "");
        report.add(&scenario, "wall time", elapsed.as_secs_f64(), "s");
        sim.stop().await;
    }
    // Old closed PRs stored without their checks: the generated history is
    // 30 days old, so with a 7-day policy every closed PR is "old".
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 5_000, check_runs: 10 }),
        ..SimConfig::default()
    })
    .await?;
    let database = TestDatabase::migrated().await;
    let mut settings = settings_for(&database.url, &sim)?;
    settings.worker.backfill_checks_for_closed = Duration::from_secs(7 * 86_400);
    let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
    let (_, processor) = pipeline_for(&settings, &pool)?;
    let repos = register_all(&database.url, &sim).await?;
    // Close the open ones long ago too, silently: a repository of old history.
    sim.mutate_silently(|w| {
        let repo_id = repos[0].github_id.0;
        let open: Vec<i64> = w
            .repo(repo_id)?
            .pulls
            .values()
            .filter(|p| p.state == sim::model::PrState::Open)
            .map(|p| p.number)
            .collect();
        for number in open {
            let created = w.repo(repo_id)?.pulls[&number].created_at;
            w.close_pr(repo_id, number, false)?;
            w.backdate(repo_id, number, created + chrono::Duration::hours(2))?;
        }
        Ok(())
    })?;
    sim.reset_stats();
    let result = processor.process_repository(&repos[0], Cause::Backfill).await;
    if !result.success {
        return Err(format!("closed backfill failed: {:?}", result.errors).into());
    }
    let (requests, points, _) = github_cost(&sim.stats());
    let scenario = "backfill of 5,000 old closed PRs (policy: checks for PRs closed within 7 days)";
    report.add(scenario, "points per 1,000 PRs", points as f64 / 5.0, "points");
    report.target("≤ 15");
    report.add(scenario, "requests per 1,000 PRs", requests as f64 / 5.0, "requests");
    sim.stop().await;
    Ok(())
}

/// Makes every stored repository due for a sweep.
/// An outage: the service down while 2,000 changes happen across 50
/// repositories, every webhook failing. The same world caught up two ways,
/// each from a copy of the database as the outage left it: gap recovery
/// from the App's deliveries API (with the worker running what it queues),
/// and the older backstop, one sweep of every repository.
async fn outage(report: &mut Report) -> Result<(), Error> {
    const REPOS: usize = 50;
    const CHANGES: usize = 2_000;
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: REPOS, pull_requests: 10, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await?;
    let database = TestDatabase::migrated().await;
    let db = database.url.clone();
    let settings = settings_for(&db, &sim)?;
    let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
    let repos = register_all(&db, &sim).await?;
    {
        let (_, processor) = pipeline_for(&settings, &pool)?;
        let backfilled =
            processor.with_max_concurrent_repos(8).process_repositories(&repos, Cause::Backfill).await;
        if backfilled.failed > 0 {
            return Err(format!("{} backfills failed", backfilled.failed).into());
        }
    }
    let mut conn = AsyncPgConnection::establish(&db).await?;
    diesel::sql_query("UPDATE repositories SET last_swept_at = now(), sweep_watermark = now()")
        .execute(&mut conn)
        .await?;
    // Nothing listens there: every delivery fails, as with the service down.
    sim.set_webhook(Some(prmonitor::simulated::webhook_target("127.0.0.1:9", SECRET)));
    activity(&sim, CHANGES, REPOS, None).await?;
    sim.wait_for_deliveries().await;
    let lost = sim.hook_deliveries().iter().filter(|d| !d.succeeded()).count();
    // The baseline's copy of the outage's database.
    let copy = TestDatabase::unique();
    drop(pool);
    let mut maintenance =
        AsyncPgConnection::establish(&prmonitor_testkit::database::url_for("postgres")).await?;
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        database.name
    ))
    .execute(&mut maintenance)
    .await?;
    diesel::sql_query(format!("CREATE DATABASE {} TEMPLATE {}", copy.name, database.name))
        .execute(&mut maintenance)
        .await?;
    let scenario = format!("outage: {CHANGES} changes across {REPOS} repositories, {lost} deliveries lost");

    // Gap recovery, then the jobs it queued.
    sim.expire_tokens();
    sim.reset_stats();
    let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
    let started = Instant::now();
    let github = GitHubClient::new(&settings.github, pool.clone())?;
    let options = prmonitor::webhook::recovery::RecoveryOptions {
        mode: settings.worker.delivery_recovery,
        max_pages: settings.worker.delivery_recovery_max_pages,
        max_attempts: settings.worker.max_attempts,
        since: None,
        sweep_above: settings.worker.delivery_recovery_sweep_above,
    };
    let recovered = prmonitor::webhook::recovery::recover(&github, &pool, &options).await?;
    let worker = prmonitor::startup::Service::start(
        &settings,
        pool.clone(),
        prmonitor::startup::Components { http: false, worker: true, scheduler: false },
    )?;
    wait_idle(&db, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    worker.stop().await;
    let (requests, points, limited) = github_cost(&sim.stats());
    let app_calls = sim.stats().requests.iter().filter(|r| r.route.starts_with("GET /app/hook")).count();
    let wrong = repositories_differing(&db, &sim).await;
    let label = format!("{scenario}, gap recovery");
    report.add(&label, "API requests (installation + App)", (requests + app_calls) as f64, "requests");
    report.add(&label, "of which deliveries API", app_calls as f64, "requests");
    report.add(&label, "points", (points + app_calls as u64) as f64, "points");
    report.add(&label, "secondary-limit refusals", limited as f64, "");
    report.target("0");
    report.add(&label, "repositories swept instead", recovered.sweeps as f64, "");
    report.add(&label, "wall time to a drained queue", elapsed.as_secs_f64(), "s");
    report.target("< 60 s");
    report.add(&label, "repositories differing from the simulator after", wrong as f64, "");
    report.target("0");
    let recovery_requests = (requests + app_calls) as f64;

    // The baseline: one sweep of every repository (recovery off).
    sim.expire_tokens();
    sim.reset_stats();
    let copy_url = prmonitor_testkit::database::url_for(&copy.name);
    let mut baseline_settings = settings.clone();
    baseline_settings.database_url = DatabaseUrl::parse(&copy_url)?;
    let pool = prmonitor::db::build_pool(&baseline_settings.database_url, 16)?;
    make_due(&copy_url).await?;
    let started = Instant::now();
    let (github, processor) = pipeline_for(&baseline_settings, &pool)?;
    let mut conn = AsyncPgConnection::establish(&copy_url).await?;
    let repos = repositories::list_active(&mut conn).await?;
    prmonitor::monitor::survey::sweep_installation(
        &github,
        &processor,
        &pool,
        Some(InstallationId(sim::generate::GENERATED_INSTALLATION)),
        &repos,
        baseline_settings.worker.sweep_batch_repositories,
    )
    .await;
    let elapsed = started.elapsed();
    let (requests, points, _) = github_cost(&sim.stats());
    let wrong = repositories_differing(&copy_url, &sim).await;
    let label = format!("{scenario}, baseline: a sweep of every repository");
    report.add(&label, "API requests", requests as f64, "requests");
    report.add(&label, "points", points as f64, "points");
    report.add(&label, "wall time", elapsed.as_secs_f64(), "s");
    report.add(&label, "repositories differing from the simulator after", wrong as f64, "");
    report.add(&scenario, "requests, recovery / sweep", recovery_requests / requests.max(1) as f64, "×");
    Ok(())
}

/// How many of the simulator's repositories the database at `db` does not equal.
async fn repositories_differing(db: &str, sim: &Simulator) -> usize {
    let ids: Vec<i64> = sim.world(|w| w.repos.keys().copied().collect());
    let mut differing = 0;
    for id in ids {
        if verify::diff(db, sim, id).await.is_err() {
            differing += 1;
        }
    }
    differing
}

async fn make_due(db: &str) -> Result<(), Error> {
    let mut conn = AsyncPgConnection::establish(db).await?;
    diesel::sql_query("UPDATE repositories SET last_swept_at = now() - interval '7 days'")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Sweeps of 1,000 repositories × 10 open PRs after a token rotation:
/// unchanged, then with 1 % of the PRs changed (GraphQL surveys), and the
/// unchanged sweep on the REST path for the record.
async fn bulk_sweep(report: &mut Report) -> Result<(), Error> {
    const REPOS: usize = 1_000;
    let sim = Simulator::start(SimConfig {
        // 14 generated PRs leave about 10 open per repository.
        generate: Some(Generate { repositories: REPOS, pull_requests: 14, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await?;
    // A world at rest: every check finished (a pending check is re-read by
    // every sweep until it finishes, by design).
    sim.mutate_silently(|w| {
        let unfinished: Vec<i64> = w
            .repos
            .values()
            .flat_map(|r| r.check_runs.values().filter(|c| c.status != "completed").map(|c| c.id))
            .collect();
        for run in unfinished {
            w.complete_check_run(run, "success")?;
        }
        Ok(())
    })?;
    let open = sim.world(|w| {
        w.repos
            .values()
            .flat_map(|r| r.pulls.values())
            .filter(|p| p.state == sim::model::PrState::Open)
            .count()
    });
    let database = TestDatabase::migrated().await;
    let db = database.url.clone();
    let mut settings = settings_for(&db, &sim)?;
    settings.worker.backfill_checks_for_closed = Duration::from_secs(3650 * 86_400);
    let pool = prmonitor::db::build_pool(&settings.database_url, 16)?;
    let repos = register_all(&db, &sim).await?;
    {
        let (_, processor) = pipeline_for(&settings, &pool)?;
        let processor = processor.with_max_concurrent_repos(8);
        let backfilled = processor.process_repositories(&repos, Cause::Backfill).await;
        if backfilled.failed > 0 {
            return Err(format!("{} backfills failed", backfilled.failed).into());
        }
    }
    let installation = Some(InstallationId(sim::generate::GENERATED_INSTALLATION));
    let sweep_graphql = |label: &'static str| {
        let (sim, db, settings, pool) = (&sim, db.clone(), settings.clone(), pool.clone());
        async move {
            make_due(&db).await?;
            // A new token: ETags earned before are worthless now, as on GitHub.
            sim.expire_tokens();
            let (github, processor) = pipeline_for(&settings, &pool)?;
            let mut conn = AsyncPgConnection::establish(&db).await?;
            let repos = repositories::list_active(&mut conn).await?;
            sim.reset_stats();
            let started = Instant::now();
            let swept = prmonitor::monitor::survey::sweep_installation(
                &github,
                &processor,
                &pool,
                installation,
                &repos,
                settings.worker.sweep_batch_repositories,
            )
            .await;
            let elapsed = started.elapsed();
            let failed = swept.results.iter().filter(|r| !r.success).count();
            if failed > 0 {
                return Err::<_, Error>(format!("{label}: {failed} repositories failed").into());
            }
            verify::diff_all(&db, sim).await?;
            Ok((github_cost(&sim.stats()), elapsed, swept.swept_alone))
        }
    };
    let scenario =
        format!("sweep of {REPOS} repositories × ~10 open PRs ({open} open) after a token rotation");
    let ((requests, points, limited), elapsed, alone) = sweep_graphql("unchanged").await?;
    report.add(&format!("{scenario}, unchanged, GraphQL"), "points", points as f64, "points");
    report.target("≤ 120 (moonshot ≤ 30)");
    report.add(&format!("{scenario}, unchanged, GraphQL"), "requests", requests as f64, "requests");
    report.target("≤ 150");
    report.add(&format!("{scenario}, unchanged, GraphQL"), "secondary-limit refusals", limited as f64, "");
    report.target("0");
    report.add(
        &format!("{scenario}, unchanged, GraphQL"),
        "repositories swept alone (survey inconclusive)",
        alone as f64,
        "",
    );
    report.add(&format!("{scenario}, unchanged, GraphQL"), "wall time", elapsed.as_secs_f64(), "s");
    report.target("< 60 s");
    let unchanged_points = points;

    // 1 % of the open PRs changed without a webhook: half retitled, half pushed.
    let changed = open / 100;
    let targets: Vec<(i64, i64)> = sim.world(|w| {
        w.repos
            .values()
            .flat_map(|r| {
                r.pulls.values().filter(|p| p.state == sim::model::PrState::Open).map(|p| (r.id, p.number))
            })
            .step_by(100)
            .take(changed)
            .collect()
    });
    sim.mutate_silently(|w| {
        for (i, (repo, number)) in targets.iter().enumerate() {
            if i % 2 == 0 {
                w.edit_pr(*repo, *number, Some(format!("Changed {i}")), None)?;
            } else {
                w.push(*repo, *number)?;
            }
        }
        Ok(())
    })?;
    let ((requests, points, limited), elapsed, _) = sweep_graphql("1 % changed").await?;
    report.add(&format!("{scenario}, {changed} PRs changed, GraphQL"), "points", points as f64, "points");
    report.add(
        &format!("{scenario}, {changed} PRs changed, GraphQL"),
        "points per changed PR beyond the unchanged sweep",
        (points.saturating_sub(unchanged_points)) as f64 / changed.max(1) as f64,
        "points",
    );
    report.target("≤ 2");
    report.add(
        &format!("{scenario}, {changed} PRs changed, GraphQL"),
        "requests",
        requests as f64,
        "requests",
    );
    report.add(
        &format!("{scenario}, {changed} PRs changed, GraphQL"),
        "secondary-limit refusals",
        limited as f64,
        "",
    );
    report.add(
        &format!("{scenario}, {changed} PRs changed, GraphQL"),
        "wall time",
        elapsed.as_secs_f64(),
        "s",
    );

    // The REST path, for the record: 100 of the repositories (12 calls each
    // after a rotation; all 1,000 would wait minutes on the secondary limit).
    make_due(&db).await?;
    sim.expire_tokens();
    let mut rest_settings = settings.clone();
    rest_settings.worker.bulk_reads = BulkReads::Rest;
    let (_, processor) = pipeline_for(&rest_settings, &pool)?;
    let mut conn = AsyncPgConnection::establish(&db).await?;
    let repos = repositories::list_active(&mut conn).await?;
    sim.reset_stats();
    let started = Instant::now();
    for repo in repos.iter().take(100) {
        let ctx = WorkContext { cause: Cause::Sweep, ..WorkContext::default() };
        let result = processor.process(repo, Target::Sweep, ctx).await;
        if !result.success {
            return Err(format!("REST sweep failed: {:?}", result.errors).into());
        }
    }
    let elapsed = started.elapsed();
    let (requests, points, limited) = github_cost(&sim.stats());
    let rest = format!("{scenario}, unchanged, REST (100 repositories measured, ×10)");
    report.add(&rest, "points", points as f64 * 10.0, "points");
    report.add(&rest, "requests", requests as f64 * 10.0, "requests");
    report.add(&rest, "secondary-limit refusals (100 repositories)", limited as f64, "");
    report.add(&rest, "wall time (100 repositories)", elapsed.as_secs_f64(), "s");
    sim.stop().await;
    Ok(())
}

fn machine() -> Value {
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": (memory * 10.0).round() / 10.0,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release (bench)" },
    })
}

fn print(report: &Report, machine: &Value) {
    println!("\n## prmonitor benchmarks\n");
    println!(
        "Machine: {} cores, {} GiB; build: {}.\n",
        machine["cores"],
        machine["memory_gib"],
        machine["profile"].as_str().unwrap_or("")
    );
    println!("| scenario | figure | value | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|---|");
    for f in &report.figures {
        let baseline = f
            .baseline
            .as_ref()
            .map_or(String::new(), |(name, value)| format!("{value:.1} {} ({name})", f.unit));
        let ratio = f.ratio.map_or(String::new(), |r| format!("{r:.2}×"));
        println!(
            "| {} | {} | {:.2} {} | {} | {} | {} |",
            f.scenario,
            f.name,
            f.value,
            f.unit,
            baseline,
            ratio,
            f.target.clone().unwrap_or_default()
        );
    }
}

fn main() -> Result<(), Error> {
    // `cargo bench` passes `--bench`; scenario names select.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut report = Report::default();
        let scenarios: [(&str, ScenarioFn); 9] = [
            ("bulk-backfill", |r| Box::pin(bulk_backfill(r))),
            ("bulk-sweep", |r| Box::pin(bulk_sweep(r))),
            ("ingest", |r| Box::pin(ingest(r))),
            ("pipeline", |r| Box::pin(pipeline(r))),
            ("paced", |r| Box::pin(pipeline_paced(r))),
            ("backfill", |r| Box::pin(backfill(r))),
            ("sweep", |r| Box::pin(sweep(r))),
            ("outage", |r| Box::pin(outage(r))),
            ("scrapers", |r| Box::pin(scrapers(r))),
        ];
        for (name, scenario) in scenarios {
            if runs(name) {
                eprintln!("running {name}…");
                let started = Instant::now();
                if let Err(error) = scenario(&mut report).await {
                    eprintln!("{name} failed: {error}");
                    report.add(name, &format!("FAILED: {error}"), 0.0, "");
                }
                eprintln!("{name} took {:.1} s", started.elapsed().as_secs_f64());
            }
        }
        let machine = machine();
        print(&report, &machine);
        let dir =
            std::path::Path::new(&std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("report.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&json!({ "machine": machine, "figures": report.figures }))?,
        )?;
        eprintln!("JSON report: {}", path.display());
        Ok(())
    })
}
