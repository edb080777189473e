//! Chaos soak: the real service (two `prmonitor serve`, one `prmonitor
//! worker`) against the simulator with faults, lossy and duplicated
//! webhooks, SIGKILLed processes and PostgreSQL restarts; then faults off,
//! one reconcile, the queue drained, and a report of the invariants.
//!
//! Not a benchmark and not part of `cargo test`: `scripts/chaos.sh [MINUTES]`
//! starts a PostgreSQL cluster of its own and runs this program against it.
//! The cluster comes from the environment the script sets:
//!
//! - `CHAOS_DATABASE_URL`: the cluster's server URL (any database; never port 5432)
//! - `CHAOS_PG_CTL`, `CHAOS_PGDATA`, `CHAOS_PG_LOG`: how to restart it
//!
//! Optional: `CHAOS_RATE` (changes a second, default 3), `CHAOS_SEED`,
//! `CHAOS_DRAIN_SECS` (default 300), `CHAOS_LOG_DIR` (default
//! `$CARGO_TARGET_DIR/chaos`).
//!
//! Exit status: 0 when every invariant holds, 1 when one fails, 2 when the
//! soak itself could not run.

// A measuring program, not the service: a failed expectation ends the run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use github_sim::model::PrState;
use github_sim::prng::SplitMix64;
use github_sim::{self as sim, Faults, Generate, NewPr, SimConfig, Simulator, WebhookTarget};
use prmonitor::config::Secret;
use prmonitor_testkit::verify;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &str = "chaos webhook secret";
const ADMIN_TOKEN: &str = "chaos-admin-token";
const BINARY: &str = env!("CARGO_BIN_EXE_prmonitor");
const DATABASE: &str = "prmonitor_chaos";
const REPOSITORIES: usize = 5;
const INSTALLATION: i64 = sim::generate::GENERATED_INSTALLATION;

type Error = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// The PostgreSQL cluster the script started.

struct Cluster {
    server_url: url::Url,
    pg_ctl: String,
    data: String,
    log: String,
}

impl Cluster {
    fn from_env() -> Result<Self, Error> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("{name} is not set: run scripts/chaos.sh, not this program"))
        };
        let server_url = url::Url::parse(&var("CHAOS_DATABASE_URL")?)?;
        let port = server_url.port().unwrap_or(5432);
        if port == 5432 {
            return Err("CHAOS_DATABASE_URL names port 5432: the soak restarts its cluster, so it never \
                        runs on the machine's main PostgreSQL"
                .into());
        }
        if server_url.host_str() != Some("127.0.0.1") {
            return Err("CHAOS_DATABASE_URL must be on 127.0.0.1".into());
        }
        Ok(Self {
            server_url,
            pg_ctl: var("CHAOS_PG_CTL")?,
            data: var("CHAOS_PGDATA")?,
            log: var("CHAOS_PG_LOG")?,
        })
    }

    fn url(&self, database: &str) -> String {
        let mut url = self.server_url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// `pg_ctl ARGS -D DATA`, as the postgres user when we are root.
    async fn pg_ctl(&self, args: &[&str]) -> Result<(), Error> {
        let root = std::process::Command::new("id").arg("-u").output()?.stdout == b"0\n";
        let mut command = if root {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &self.pg_ctl]);
            c
        } else {
            tokio::process::Command::new(&self.pg_ctl)
        };
        command.args(args).args(["-D", &self.data]).stdin(Stdio::null());
        let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await??;
        if !output.status.success() {
            return Err(format!(
                "pg_ctl {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// A fast restart: connections are terminated, a checkpoint, up again.
    async fn restart_fast(&self) -> Result<(), Error> {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-l", &self.log]).await
    }

    /// A crash: immediate stop (no checkpoint; WAL replay at start), `down` later start.
    async fn crash_and_start(&self, down: Duration) -> Result<(), Error> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "60"]).await?;
        tokio::time::sleep(down).await;
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &self.log]).await
    }

    async fn wait_ready(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if AsyncPgConnection::establish(&self.url("postgres")).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

// ---------------------------------------------------------------------------
// prmonitor child processes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Serve,
    Worker,
}

struct Proc {
    name: &'static str,
    role: Role,
    generation: u32,
    child: tokio::process::Child,
    /// The HTTP address of a `serve`.
    address: String,
    log: PathBuf,
}

struct Launcher {
    env: Vec<(&'static str, String)>,
    log_dir: PathBuf,
}

impl Launcher {
    /// Starts `prmonitor serve|worker` with its stderr copied to
    /// `LOG_DIR/NAME-GENERATION.log`; resolves once it listens (serve) or its
    /// worker runs (worker).
    async fn start(&self, name: &'static str, role: Role, generation: u32) -> Result<Proc, Error> {
        let log = self.log_dir.join(format!("{name}-{generation}.log"));
        let mut file = std::fs::File::create(&log)?;
        let mut command = tokio::process::Command::new(BINARY);
        command
            .arg(match role {
                Role::Serve => "serve",
                Role::Worker => "worker",
            })
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        // For scripts/chaos.sh: what to kill should this program itself be killed.
        if let Some(pid) = child.id() {
            let mut pids =
                std::fs::OpenOptions::new().create(true).append(true).open(self.log_dir.join("pids"))?;
            writeln!(pids, "{pid}")?;
        }
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Unbuffered: a line is on disk even if this program dies.
                let _ = writeln!(file, "{line}");
                if ready_tx.is_none() {
                    continue;
                }
                let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
                let ready = match (role, entry["message"].as_str()) {
                    (Role::Serve, Some("listening")) => entry["address"].as_str().map(str::to_owned),
                    (Role::Worker, Some("worker started")) => Some(String::new()),
                    _ => None,
                };
                if let Some(address) = ready {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(address);
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(60), ready_rx).await {
            Ok(Ok(address)) => Ok(Proc { name, role, generation, child, address, log }),
            Ok(Err(_)) => {
                let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                Err(format!("{name} exited before it was ready ({status:?}); see {}", log.display()).into())
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(format!("{name} was not ready within 60 s; see {}", log.display()).into())
            }
        }
    }

    /// [`Launcher::start`], retried while PostgreSQL may be coming back.
    async fn start_retrying(&self, name: &'static str, role: Role, generation: u32) -> Result<Proc, Error> {
        let mut last = None;
        for attempt in 0..10u32 {
            match self.start(name, role, generation + attempt).await {
                Ok(proc) => return Ok(proc),
                Err(e) => {
                    eprintln!("chaos: starting {name} failed: {e}; retrying");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| "never started".into()))
    }
}

// ---------------------------------------------------------------------------
// The simulator's activity: a few changes a second on every repository.

#[derive(Default)]
struct Churn {
    made: BTreeMap<&'static str, u64>,
    refused: u64,
    /// Every change made, with its time since the start.
    log: Vec<String>,
}

impl Churn {
    fn total(&self) -> u64 {
        self.made.values().sum()
    }
}

struct Snapshot {
    open: Vec<(i64, String, bool, Vec<String>)>,
    closed: Vec<i64>,
    /// Runs not completed, on any commit.
    unfinished: Vec<(i64, String)>,
}

fn snapshot(sim: &Simulator, repo: &str) -> Option<Snapshot> {
    sim.world(|w| {
        let r = w.repo(w.repo_id(repo).ok()?).ok()?;
        let open: Vec<(i64, String, bool, Vec<String>)> = r
            .pulls
            .values()
            .filter(|p| p.state == PrState::Open)
            .map(|p| (p.number, p.head_sha.clone(), p.draft, p.labels.clone()))
            .collect();
        let closed = r.pulls.values().filter(|p| p.state == PrState::Closed).map(|p| p.number).collect();
        // Any commit's: CI finishes the runs of a commit after a push or a close too.
        let unfinished = r
            .check_runs
            .values()
            .filter(|c| c.status != "completed")
            .map(|c| (c.id, c.status.clone()))
            .collect();
        Some(Snapshot { open, closed, unfinished })
    })
}

/// One change on a random repository: its kind and what it was, in words
/// that name the objects (`acme/repo-1#4`, `run 16000000123`), for the
/// report's explanations.
fn change(sim: &Simulator, rng: &SplitMix64, step: u64) -> Result<(&'static str, String), String> {
    const AUTHORS: [&str; 4] = ["alice", "bob", "carol", "dave"];
    const CHECKS: [&str; 4] = ["build", "test", "lint", "e2e"];
    const CONCLUSIONS: [&str; 5] = ["success", "success", "success", "failure", "cancelled"];
    let repo = sim::generate::generated_repo_name(rng.below(REPOSITORIES as u64) as usize);
    let s = snapshot(sim, &repo).ok_or("no repository")?;
    let pick = |n: usize| rng.below(n as u64) as usize;
    let roll = if s.open.len() < 3 { 0 } else { rng.below(100) };
    let e = |e: sim::ModelError| e.to_string();
    if roll < 8 {
        let mut pr = NewPr::new(&format!("Chaos change {step}"), AUTHORS[pick(4)]);
        pr.body = rng.chance(0.7).then(|| format!("Body of change {step}."));
        pr.draft = rng.chance(0.2);
        let number = sim.open_pr(&repo, pr).map_err(e)?;
        return Ok(("open", format!("{repo}#{number} opened")));
    }
    let (number, head, draft, labels) = &s.open[pick(s.open.len())];
    let number = *number;
    let pr = format!("{repo}#{number}");
    let short = |sha: &str| sha.chars().take(8).collect::<String>();
    let create = |name: &str| {
        sim.create_check_run(&repo, head, name)
            .map(|run| {
                ("check run created", format!("run {run} ({name}) created on {} (head of {pr})", short(head)))
            })
            .map_err(e)
    };
    match roll {
        8..=19 => sim
            .push(&repo, number)
            .map(|new| ("push", format!("{pr} pushed: head {} -> {}", short(head), short(&new))))
            .map_err(e),
        20..=29 => {
            let label = format!("l{}", rng.below(6));
            sim.label(&repo, number, &label).map(|()| ("label", format!("{pr} labeled {label}"))).map_err(e)
        }
        30..=35 => match labels.first() {
            Some(label) => sim
                .unlabel(&repo, number, label)
                .map(|()| ("unlabel", format!("{pr} unlabeled {label}")))
                .map_err(e),
            None => sim
                .label(&repo, number, "triage")
                .map(|()| ("label", format!("{pr} labeled triage")))
                .map_err(e),
        },
        36..=41 => {
            let body = format!("Edited at step {step}.");
            let body = rng.chance(0.3).then_some(body.as_str());
            let title = format!("Retitled {step}");
            sim.edit_pr(&repo, number, Some(&title), body)
                .map(|()| {
                    (
                        "edit",
                        format!("{pr} edited: title {title:?}{}", if body.is_some() { ", body" } else { "" }),
                    )
                })
                .map_err(e)
        }
        42..=45 => sim
            .set_draft(&repo, number, !draft)
            .map(|()| ("draft toggle", format!("{pr} draft -> {}", !draft)))
            .map_err(e),
        46..=65 => create(CHECKS[pick(4)]),
        66..=73 => match s.unfinished.iter().find(|(_, status)| status == "queued") {
            Some((run, _)) => sim
                .start_check_run(*run)
                .map(|()| ("check run started", format!("run {run} started (no webhook)")))
                .map_err(e),
            None => create("late"),
        },
        74..=89 => match s.unfinished.get(pick(s.unfinished.len().max(1))) {
            Some((run, _)) => {
                let conclusion = CONCLUSIONS[pick(5)];
                sim.complete_check_run(*run, conclusion)
                    .map(|()| ("check run completed", format!("run {run} completed: {conclusion}")))
                    .map_err(e)
            }
            None => create("late"),
        },
        90..=93 => sim.close(&repo, number).map(|()| ("close", format!("{pr} closed"))).map_err(e),
        94..=97 => {
            if *draft {
                sim.set_draft(&repo, number, false)
                    .map(|()| ("draft toggle", format!("{pr} draft -> false")))
                    .map_err(e)
            } else {
                sim.merge(&repo, number).map(|()| ("merge", format!("{pr} merged"))).map_err(e)
            }
        }
        _ => match s.closed.first() {
            Some(closed) => sim
                .reopen(&repo, *closed)
                .map(|()| ("reopen", format!("{repo}#{closed} reopened")))
                .map_err(e),
            None => sim.close(&repo, number).map(|()| ("close", format!("{pr} closed"))).map_err(e),
        },
    }
}

/// Changes at `rate` a second until `deadline` (and at most rate × time × 2 of them).
async fn churn(
    sim: Arc<Simulator>,
    seed: u64,
    rate: f64,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) -> Churn {
    let rng = SplitMix64::new(seed);
    let mut churn = Churn::default();
    let started = Instant::now();
    let limit = (rate * deadline.saturating_duration_since(started).as_secs_f64() * 2.0) as u64 + 10;
    let mut step = 0u64;
    while Instant::now() < deadline && step < limit && !stop.load(Ordering::Relaxed) {
        let due = started + Duration::from_secs_f64(step as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        step += 1;
        match change(&sim, &rng, step) {
            Ok((kind, what)) => {
                *churn.made.entry(kind).or_default() += 1;
                churn.log.push(format!("{:7.1} s  {what}", epoch.elapsed().as_secs_f64()));
            }
            Err(_) => churn.refused += 1,
        }
    }
    churn
}

// ---------------------------------------------------------------------------
// Database look-ups. In a module of their own: diesel-async's `RunQueryDsl`
// is implemented for every type, and its `load` would shadow `AtomicBool::load`.

mod db {
    use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    use super::Error;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        delivery_id: String,
    }

    #[derive(QueryableByName, Debug)]
    pub struct JobRow {
        #[diesel(sql_type = BigInt)]
        pub id: i64,
        #[diesel(sql_type = Text)]
        pub kind: String,
        #[diesel(sql_type = Text)]
        pub state: String,
        #[diesel(sql_type = Nullable<Text>)]
        pub coalesce_key: Option<String>,
        #[diesel(sql_type = Integer)]
        pub attempts: i32,
        #[diesel(sql_type = Nullable<Text>)]
        pub lease_owner: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        pub lease_expires_at: Option<String>,
        #[diesel(sql_type = Text)]
        pub run_at: String,
        #[diesel(sql_type = Nullable<Text>)]
        pub last_error: Option<String>,
    }

    #[derive(QueryableByName)]
    struct StateCount {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    const JOB_COLUMNS: &str = "id, kind, state, coalesce_key, attempts, lease_owner, \
                               lease_expires_at::text AS lease_expires_at, run_at::text AS run_at, last_error";

    pub async fn scalar(conn: &mut AsyncPgConnection, sql: &str) -> Result<i64, Error> {
        Ok(diesel::sql_query(format!("SELECT ({sql})::int8 AS n")).get_result::<Count>(conn).await?.n)
    }

    pub async fn jobs_where(
        conn: &mut AsyncPgConnection,
        condition: &str,
        limit: i64,
    ) -> Result<Vec<JobRow>, Error> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} ORDER BY id LIMIT {limit}");
        Ok(diesel::sql_query(sql).load(conn).await?)
    }

    /// "kind state: n" for every pair.
    pub async fn jobs_by_state(conn: &mut AsyncPgConnection) -> Result<Vec<String>, Error> {
        let rows: Vec<StateCount> =
            diesel::sql_query("SELECT kind, state, count(*) AS n FROM jobs GROUP BY 1, 2 ORDER BY 1, 2")
                .load(conn)
                .await?;
        Ok(rows.into_iter().map(|c| format!("{} {}: {}", c.kind, c.state, c.n)).collect())
    }

    /// Which of `ids` are in `webhook_deliveries`.
    pub async fn stored_deliveries(
        conn: &mut AsyncPgConnection,
        ids: &[String],
    ) -> Result<Vec<String>, Error> {
        let rows: Vec<Id> =
            diesel::sql_query("SELECT delivery_id FROM webhook_deliveries WHERE delivery_id = ANY($1)")
                .bind::<Array<Text>, _>(ids)
                .load(conn)
                .await?;
        Ok(rows.into_iter().map(|r| r.delivery_id).collect())
    }

    #[derive(QueryableByName)]
    pub struct StoredRun {
        #[diesel(sql_type = BigInt)]
        pub github_id: i64,
        #[diesel(sql_type = Text)]
        pub status: String,
        #[diesel(sql_type = Nullable<Text>)]
        pub conclusion: Option<String>,
    }

    #[derive(QueryableByName)]
    pub struct StoredPr {
        #[diesel(sql_type = Integer)]
        pub number: i32,
        #[diesel(sql_type = Text)]
        pub state: String,
        #[diesel(sql_type = Text)]
        pub title: String,
        #[diesel(sql_type = Bool)]
        pub draft: bool,
        #[diesel(sql_type = Text)]
        pub head_sha: String,
        #[diesel(sql_type = Array<Text>)]
        pub labels: Vec<String>,
        #[diesel(sql_type = Nullable<Text>)]
        pub body: Option<String>,
        #[diesel(sql_type = Text)]
        pub updated_at: String,
    }

    #[derive(QueryableByName)]
    struct Mention {
        #[diesel(sql_type = Text)]
        line: String,
    }

    pub async fn runs_of(conn: &mut AsyncPgConnection, repository: i64) -> Result<Vec<StoredRun>, Error> {
        Ok(diesel::sql_query(
            "SELECT c.github_id, c.status, c.conclusion FROM check_runs c \
             JOIN repositories r ON r.id = c.repository_id WHERE r.github_id = $1",
        )
        .bind::<BigInt, _>(repository)
        .load(conn)
        .await?)
    }

    pub async fn prs_of(conn: &mut AsyncPgConnection, repository: i64) -> Result<Vec<StoredPr>, Error> {
        Ok(diesel::sql_query(
            "SELECT p.number, p.state, p.title, p.draft, p.head_sha, p.labels, p.body, \
             to_char(p.gh_updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS updated_at \
             FROM pull_requests p \
             JOIN repositories r ON r.id = p.repository_id WHERE r.github_id = $1",
        )
        .bind::<BigInt, _>(repository)
        .load(conn)
        .await?)
    }

    /// The stored deliveries whose payload contains `needle`, one line each.
    pub async fn deliveries_mentioning(
        conn: &mut AsyncPgConnection,
        needle: &str,
    ) -> Result<Vec<String>, Error> {
        let rows: Vec<Mention> = diesel::sql_query(
            "SELECT format('%s %s.%s received %s, outcome %s, job %s', delivery_id, event, \
             coalesce(action, ''), received_at, outcome, coalesce(job_id::text, '-')) AS line \
             FROM webhook_deliveries WHERE payload IS NOT NULL \
             AND position($1 IN convert_from(payload, 'UTF8')) > 0 ORDER BY received_at",
        )
        .bind::<Text, _>(needle)
        .load(conn)
        .await?;
        Ok(rows.into_iter().map(|m| m.line).collect())
    }

    pub async fn drop_database(server: &str, name: &str) -> Result<(), Error> {
        let mut conn = AsyncPgConnection::establish(server).await?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
        Ok(())
    }

    /// Pending and running jobs, from a fresh connection (PostgreSQL may have restarted).
    pub async fn busy_jobs(url: &str) -> Result<(i64, i64), Error> {
        let count = async {
            let mut conn = AsyncPgConnection::establish(url).await?;
            let pending = scalar(&mut conn, "SELECT count(*) FROM jobs WHERE state = 'pending'").await?;
            let running = scalar(&mut conn, "SELECT count(*) FROM jobs WHERE state = 'running'").await?;
            Ok::<_, Error>((pending, running))
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), count).await?
    }
}

use db::{busy_jobs, jobs_where, scalar, JobRow};

/// Where one repository's rows differ from the simulator, object by object,
/// with what the run did to each object and which deliveries of it were
/// stored; and a count of the differences by kind.
#[derive(Default)]
struct Explained {
    lines: Vec<String>,
    kinds: BTreeMap<String, usize>,
}

async fn explain(
    conn: &mut AsyncPgConnection,
    sim: &Simulator,
    github_id: i64,
    changes: &[String],
    into: &mut Explained,
) -> Result<(), Error> {
    const MAX_LINES: usize = 150;
    let (name, sim_prs, sim_runs) =
        sim.world(|w| w.repo(github_id).map(|r| (r.full_name(), r.pulls.clone(), r.check_runs.clone())))?;
    // Which PRs have each SHA as their head now.
    let mut heads: BTreeMap<&str, Vec<(i64, &PrState)>> = BTreeMap::new();
    for pr in sim_prs.values() {
        heads.entry(pr.head_sha.as_str()).or_default().push((pr.number, &pr.state));
    }
    let stored_runs: BTreeMap<i64, db::StoredRun> =
        db::runs_of(conn, github_id).await?.into_iter().map(|r| (r.github_id, r)).collect();
    let stored_prs: BTreeMap<i64, db::StoredPr> =
        db::prs_of(conn, github_id).await?.into_iter().map(|p| (i64::from(p.number), p)).collect();
    let short = |sha: &str| sha.chars().take(8).collect::<String>();
    let history = |needles: &[String]| -> Vec<String> {
        changes
            .iter()
            .filter(|c| needles.iter().any(|n| c.contains(n.as_str())))
            .map(|c| format!("      change {}", c.trim()))
            .collect()
    };
    let out = &mut into.lines;
    for (id, run) in &sim_runs {
        let wanted = format!("{}/{}", run.status, run.conclusion.as_deref().unwrap_or("-"));
        let stored =
            stored_runs.get(id).map(|r| format!("{}/{}", r.status, r.conclusion.as_deref().unwrap_or("-")));
        if stored.as_deref() == Some(wanted.as_str()) {
            continue;
        }
        let prs = heads.get(run.head_sha.as_str()).cloned().unwrap_or_default();
        let place = if prs.is_empty() {
            "on an old head (no PR has that head now)"
        } else if prs.iter().any(|(_, state)| **state == PrState::Open) {
            "on an open PR's head"
        } else {
            "on a closed or merged PR's head"
        };
        let deliveries = db::deliveries_mentioning(conn, &format!("\"id\":{id},")).await?;
        let run_needle = format!("run {id} ");
        let made_here = changes.iter().any(|c| c.contains(&run_needle) && c.contains(" created on "));
        // Why the row is not the simulator's: what the run's latest change left for prmonitor to see.
        let stored_action =
            |action: &str| deliveries.iter().any(|d| d.contains(&format!("check_run.{action} ")));
        let why = if run.status == "completed" && stored_action("completed") {
            "its completion was delivered and stored, yet not applied"
        } else if run.status == "completed" {
            "its completion was not stored (webhook lost or refused)"
        } else if stored.is_some() {
            "started: GitHub sends no webhook for that"
        } else if stored_action("created") {
            "its creation was delivered and stored, yet not applied"
        } else if made_here {
            "its creation was not stored (webhook lost or refused)"
        } else {
            "made before the soak: the backfill did not store it"
        };
        *into.kinds.entry(format!("check run {place}, {why}")).or_default() += 1;
        if out.len() >= MAX_LINES {
            continue;
        }
        let context = if prs.is_empty() {
            "an old head".to_owned()
        } else {
            let list: Vec<String> = prs.iter().map(|(n, state)| format!("#{n} ({state:?})")).collect();
            format!("head of {}", list.join(", "))
        };
        out.push(format!(
            "{name}: check run {id} ({}) on {}: stored {}, simulator {wanted}; {context}; {why}",
            run.name,
            short(&run.head_sha),
            stored.unwrap_or_else(|| "nothing".into())
        ));
        // The run's own changes, its commit's (runs created on it, the push
        // that left it) and those of the PRs whose head it is.
        let mut needles = vec![run_needle, short(&run.head_sha)];
        needles.extend(prs.iter().map(|(n, _)| format!("{name}#{n} ")));
        out.extend(history(&needles));
        for line in deliveries {
            out.push(format!("      stored delivery {line}"));
        }
    }
    for id in stored_runs.keys().filter(|id| !sim_runs.contains_key(id)) {
        *into.kinds.entry("check run stored but not in the simulator".into()).or_default() += 1;
        out.push(format!("{name}: check run {id} is stored but not in the simulator"));
    }
    for (number, pr) in &sim_prs {
        let state = match pr.state {
            PrState::Open => "open",
            PrState::Closed => "closed",
            PrState::Merged => "merged",
        };
        let needles = [format!("{name}#{number} ")];
        let Some(stored) = stored_prs.get(number) else {
            *into.kinds.entry("PR not stored".into()).or_default() += 1;
            out.push(format!("{name}#{number}: not stored (simulator: {state}, {:?})", pr.title));
            out.extend(history(&needles));
            continue;
        };
        let mut fields = Vec::new();
        if stored.state != state {
            fields.push(format!("state {} vs {state}", stored.state));
        }
        if stored.title != pr.title {
            fields.push(format!("title {:?} vs {:?}", stored.title, pr.title));
        }
        if stored.draft != pr.draft {
            fields.push(format!("draft {} vs {}", stored.draft, pr.draft));
        }
        if stored.head_sha != pr.head_sha {
            fields.push(format!("head {} vs {}", short(&stored.head_sha), short(&pr.head_sha)));
        }
        let (mut stored_labels, mut labels) = (stored.labels.clone(), pr.labels.clone());
        stored_labels.sort();
        labels.sort();
        if stored_labels != labels {
            fields.push(format!("labels {stored_labels:?} vs {labels:?}"));
        }
        if stored.body != pr.body {
            fields.push(format!("body {:?} vs {:?}", stored.body, pr.body));
        }
        let updated = pr.updated_at.format("%Y-%m-%d %H:%M:%S").to_string();
        if stored.updated_at != updated {
            fields.push(format!("updated_at {} vs {updated}", stored.updated_at));
        }
        if !fields.is_empty() {
            *into.kinds.entry("PR fields differ".into()).or_default() += 1;
            if out.len() < MAX_LINES {
                out.push(format!("{name}#{number} (stored vs simulator): {}", fields.join("; ")));
                out.extend(history(&needles));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The logs.

#[derive(Default)]
struct LogScan {
    files: usize,
    lines: u64,
    panics: Vec<String>,
    part_restarts: Vec<String>,
    /// "repository processed" with errors: a unit of work that went on past a failed read.
    partial: Vec<(i64, String)>,
    /// ERROR and WARN lines by level and message.
    by_message: BTreeMap<(String, String), u64>,
}

fn scan_logs(dir: &Path) -> Result<LogScan, Error> {
    let mut scan = LogScan::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    for file in files {
        scan.files += 1;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(&file)?;
        for line in text.lines() {
            scan.lines += 1;
            match serde_json::from_str::<Value>(line) {
                Ok(entry) if entry.is_object() => {
                    let message = entry["message"].as_str().unwrap_or("");
                    if message == "panicked" {
                        scan.panics.push(format!("{name}: {line}"));
                    }
                    if message == "part restarted" {
                        scan.part_restarts.push(format!("{name}: {line}"));
                    }
                    if message == "repository processed" && entry["errors"].as_u64().unwrap_or(0) > 0 {
                        let job = &entry["spans"][0];
                        let job_id = job["job_id"].as_i64().unwrap_or(0);
                        scan.partial.push((job_id, format!(
                            "{name} {}: job {} ({}, attempt {}) {} {}: {} errors, {} rows written, {} PRs and {} check runs read",
                            entry["timestamp"].as_str().unwrap_or(""),
                            job["job_id"],
                            job["kind"].as_str().unwrap_or("?"),
                            job["attempt"],
                            entry["span"]["repository"].as_str().unwrap_or("?"),
                            entry["span"]["target"].as_str().unwrap_or("?"),
                            entry["errors"],
                            entry["written"],
                            entry["prs"],
                            entry["check_runs"],
                        )));
                    }
                    let level = entry["level"].as_str().unwrap_or("");
                    if level == "ERROR" || level == "WARN" {
                        *scan.by_message.entry((level.to_owned(), message.to_owned())).or_default() += 1;
                    }
                }
                _ => {
                    if line.contains("panicked at") {
                        scan.panics.push(format!("{name}: {line}"));
                    }
                }
            }
        }
    }
    Ok(scan)
}

// ---------------------------------------------------------------------------
// The report.

struct Row {
    check: String,
    value: String,
    expected: String,
    /// `Some` for an invariant.
    ok: Option<bool>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    details: Vec<(String, Vec<String>)>,
}

impl Report {
    fn info(&mut self, check: &str, value: impl ToString) {
        self.rows.push(Row {
            check: check.into(),
            value: value.to_string(),
            expected: String::new(),
            ok: None,
        });
    }

    fn invariant(&mut self, check: &str, value: impl ToString, expected: &str, ok: bool) {
        self.rows.push(Row {
            check: check.into(),
            value: value.to_string(),
            expected: expected.into(),
            ok: Some(ok),
        });
    }

    fn detail(&mut self, title: &str, lines: Vec<String>) {
        if !lines.is_empty() {
            self.details.push((title.into(), lines));
        }
    }

    fn failed(&self) -> Vec<&str> {
        self.rows.iter().filter(|r| r.ok == Some(false)).map(|r| r.check.as_str()).collect()
    }

    fn markdown(&self, title: &str) -> String {
        let mut out = format!("## {title}\n\n| check | value | expected | result |\n|---|---|---|---|\n");
        for r in &self.rows {
            let result = match r.ok {
                Some(true) => "ok",
                Some(false) => "**FAIL**",
                None => "",
            };
            let value = r.value.replace('|', "\\|");
            out.push_str(&format!("| {} | {value} | {} | {result} |\n", r.check, r.expected));
        }
        for (heading, lines) in &self.details {
            out.push_str(&format!("\n### {heading}\n\n```\n"));
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
            out.push_str("```\n");
        }
        out
    }

    fn plain(&self) -> String {
        let width = self.rows.iter().map(|r| r.check.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for r in &self.rows {
            let mark = match r.ok {
                Some(true) => "  ok  ",
                Some(false) => " FAIL ",
                None => "      ",
            };
            let pad = width - r.check.chars().count();
            out.push_str(&format!("{mark}{}{} : {}\n", r.check, " ".repeat(pad), r.value));
        }
        out
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn job_line(j: &JobRow) -> String {
    format!(
        "job {} {} {} key={} attempts={} lease_owner={} lease_expires_at={} run_at={} last_error={}",
        j.id,
        j.kind,
        j.state,
        j.coalesce_key.as_deref().unwrap_or("-"),
        j.attempts,
        j.lease_owner.as_deref().unwrap_or("-"),
        j.lease_expires_at.as_deref().unwrap_or("-"),
        j.run_at,
        truncate(j.last_error.as_deref().unwrap_or("-"), 600)
    )
}

// ---------------------------------------------------------------------------
// The run.

struct Timeline {
    started: Instant,
    events: Vec<String>,
}

impl Timeline {
    fn note(&mut self, what: impl AsRef<str>) {
        let line = format!("{:7.1} s  {}", self.started.elapsed().as_secs_f64(), what.as_ref());
        eprintln!("chaos: {line}");
        self.events.push(line);
    }
}

fn target(address: &str, chaotic: bool) -> WebhookTarget {
    WebhookTarget {
        url: format!("http://{address}/webhooks/github"),
        secret: SECRET.to_owned(),
        loss_rate: if chaotic { 0.1 } else { 0.0 },
        duplicate_rate: if chaotic { 0.2 } else { 0.0 },
        reorder_rate: if chaotic { 0.3 } else { 0.0 },
        concurrency: 4,
    }
}

fn chaos_faults(secondary_limits: u32) -> Faults {
    Faults { error_rate: 0.3, latency_ms: 5, secondary_limits, retry_after_secs: 2, ..Faults::default() }
}

async fn send_installation(address: &str) -> Result<u16, Error> {
    let mut payload: Value =
        serde_json::from_str(include_str!("../fixtures/github/payloads/installation/created.json"))?;
    payload["installation"]["id"] = json!(INSTALLATION);
    let body = serde_json::to_vec(&payload)?;
    let signature = prmonitor::webhook::signature::sign(&Secret::new(SECRET), &body);
    let response = reqwest::Client::new()
        .post(format!("http://{address}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "installation")
        .header("x-github-delivery", "c0ffee00-0000-4000-8000-000000000001")
        .header("x-hub-signature-256", signature)
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn reconcile(address: &str) -> Result<(u16, Value), Error> {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/api/v1/reconcile"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "all": true }))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

struct Settings {
    minutes: f64,
    rate: f64,
    seed: u64,
    drain: Duration,
    log_dir: PathBuf,
}

fn settings() -> Result<Settings, Error> {
    // `cargo bench` passes `--bench`; the first other argument is MINUTES.
    let minutes = match std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        Some(m) => m.parse::<f64>().map_err(|_| format!("MINUTES must be a number, not {m:?}"))?,
        None => 10.0,
    };
    if !(0.1..=24.0 * 60.0).contains(&minutes) {
        return Err("MINUTES must be between 0.1 and 1440".into());
    }
    let number = |name: &str, default: f64| -> Result<f64, Error> {
        match std::env::var(name) {
            Ok(v) => Ok(v.parse::<f64>().map_err(|_| format!("{name} must be a number"))?),
            Err(_) => Ok(default),
        }
    };
    let rate = number("CHAOS_RATE", 3.0)?.clamp(0.1, 100.0);
    let seed = match std::env::var("CHAOS_SEED") {
        Ok(v) => v.parse::<u64>().map_err(|_| "CHAOS_SEED must be an integer")?,
        Err(_) => SplitMix64::from_time().next_u64() % 1_000_000,
    };
    let drain = Duration::from_secs_f64(number("CHAOS_DRAIN_SECS", 300.0)?.clamp(10.0, 3600.0));
    let log_dir = match std::env::var("CHAOS_LOG_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join("chaos")
        }
    };
    Ok(Settings { minutes, rate, seed, drain, log_dir })
}

#[derive(Default)]
struct Chaos {
    kills: Vec<String>,
    restarts: u32,
    unexpected_exits: Vec<String>,
    pg_restarts: Vec<String>,
    secondary_arms: u32,
    squeezes: u32,
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chaos: no runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // On SIGINT or SIGTERM the run is dropped, and with it the children (kill on drop).
    let interruptible = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = run() => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted (SIGINT)".into()),
            _ = term.recv() => Err("interrupted (SIGTERM)".into()),
        }
    };
    match runtime.block_on(interruptible) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("chaos: the soak could not run: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool, Error> {
    let wall = Instant::now();
    let settings = settings()?;
    let cluster = Cluster::from_env()?;
    let duration = Duration::from_secs_f64(settings.minutes * 60.0);
    std::fs::create_dir_all(&settings.log_dir)?;
    for entry in std::fs::read_dir(&settings.log_dir)?.filter_map(Result::ok) {
        let name = entry.file_name();
        if entry.path().extension().is_some_and(|x| x == "log" || x == "md")
            || name == "pids"
            || name == "changes.txt"
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    eprintln!(
        "chaos: {} min, {} changes/s, seed {}, logs in {}",
        settings.minutes,
        settings.rate,
        settings.seed,
        settings.log_dir.display()
    );
    if !cluster.wait_ready(Duration::from_secs(30)).await {
        return Err("the chaos cluster does not answer".into());
    }
    db::drop_database(&cluster.url("postgres"), DATABASE).await?;
    let db_url = cluster.url(DATABASE);
    let rng = SplitMix64::new(settings.seed);

    let sim = Arc::new(
        Simulator::start(SimConfig {
            generate: Some(Generate { repositories: REPOSITORIES, pull_requests: 20, check_runs: 3 }),
            seed: settings.seed,
            faults: chaos_faults(3),
            ..SimConfig::default()
        })
        .await?,
    );
    let key_file = format!("{}/fixtures/sim/app-private-key.pem", env!("CARGO_MANIFEST_DIR"));
    let launcher = Launcher {
        env: vec![
            ("DATABASE_URL", db_url.clone()),
            ("PRMONITOR_LISTEN", "127.0.0.1:0".into()),
            ("PRMONITOR_WEBHOOK_SECRETS", SECRET.into()),
            ("PRMONITOR_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("PRMONITOR_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "warn,prmonitor=info".into()),
            ("PRMONITOR_HTTP_WORKERS", "2".into()),
            ("PRMONITOR_DB_POOL_SIZE", "6".into()),
            ("PRMONITOR_SHUTDOWN_TIMEOUT_SECS", "5".into()),
            ("PRMONITOR_GITHUB_API_URL", sim.api_url()),
            ("PRMONITOR_GITHUB_APP_ID", sim::SIM_APP_ID.to_string()),
            ("PRMONITOR_GITHUB_PRIVATE_KEY_FILE", key_file),
            ("PRMONITOR_GITHUB_TIMEOUT_SECS", "10".into()),
            ("PRMONITOR_JOB_POLL_INTERVAL", "100ms".into()),
            ("PRMONITOR_JOB_LEASE", "3s".into()),
            ("PRMONITOR_JOB_RETRY_DELAY", "200ms".into()),
            ("PRMONITOR_SWEEP_INTERVAL", "24h".into()),
            ("PRMONITOR_WORKER_CONCURRENCY", "4".into()),
        ],
        log_dir: settings.log_dir.clone(),
    };
    let mut timeline = Timeline { started: wall, events: Vec::new() };
    let mut chaos = Chaos::default();

    // Start-up: the first serve migrates the fresh database; the others follow.
    let mut procs: Vec<Proc> = vec![launcher.start("serve-a", Role::Serve, 1).await?];
    let (b, w) =
        tokio::join!(launcher.start("serve-b", Role::Serve, 1), launcher.start("worker", Role::Worker, 1));
    procs.push(b?);
    procs.push(w?);
    timeline.note(format!("started serve-a {}, serve-b {}, worker", procs[0].address, procs[1].address));

    // The App is installed: GitHub sends `installation` created; the
    // service registers and backfills the repositories.
    let mut installed = false;
    for _ in 0..20 {
        if let Ok(status) = send_installation(&procs[0].address).await {
            if (200..300).contains(&status) {
                installed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !installed {
        return Err("the installation webhook was never acknowledged".into());
    }
    let backfill_started = Instant::now();
    let mut backfilled = false;
    while backfill_started.elapsed() < Duration::from_secs(180) {
        let mut conn = AsyncPgConnection::establish(&db_url).await?;
        let active = scalar(&mut conn, "SELECT count(*) FROM repositories WHERE active").await?;
        let busy =
            scalar(&mut conn, "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')").await?;
        if active == REPOSITORIES as i64 && busy == 0 {
            backfilled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    timeline.note(if backfilled {
        format!("installation registered and backfilled in {:.1} s", backfill_started.elapsed().as_secs_f64())
    } else {
        "the installation was not backfilled within 180 s; going on".to_owned()
    });

    // Chaos.
    let mut current = 0usize; // the serve the webhooks go to
    sim.set_webhook(Some(target(&procs[current].address, true)));
    let started = Instant::now();
    let deadline = started + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let churn_task = tokio::spawn(churn(
        sim.clone(),
        settings.seed ^ 0xc4a05,
        settings.rate,
        deadline,
        stop.clone(),
        wall,
    ));
    timeline.note(format!("chaos for {:.0} s", duration.as_secs_f64()));
    let pg_restart_at = started + duration.mul_f64(0.35);
    let pg_crash_at = started + duration.mul_f64(0.70);
    let squeeze_at = started + duration.mul_f64(0.5);
    let (mut pg_restarted, mut pg_crashed, mut squeezed) = (false, false, false);
    let kill_gap = |rng: &SplitMix64| Duration::from_secs(20 + rng.below(21));
    let mut next_kill = started + kill_gap(&rng);
    let mut next_arm = started + Duration::from_secs(15);
    let max_ticks = (duration.as_secs() + 60) * 10;
    for _ in 0..max_ticks {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // A process that exited without being killed is restarted too, and reported.
        restart_exited(&mut procs, &launcher, &mut timeline, &mut chaos).await?;
        if procs[current].role == Role::Serve {
            sim.set_webhook(Some(target(&procs[current].address, true)));
        }
        if !pg_restarted && now >= pg_restart_at {
            pg_restarted = true;
            timeline.note("PostgreSQL: pg_ctl restart -m fast");
            match cluster.restart_fast().await {
                Ok(()) => chaos.pg_restarts.push("restart -m fast".into()),
                Err(e) => timeline.note(format!("PostgreSQL restart failed: {e}")),
            }
            timeline.note(format!("PostgreSQL up: {}", cluster.wait_ready(Duration::from_secs(60)).await));
            continue;
        }
        if !pg_crashed && now >= pg_crash_at {
            pg_crashed = true;
            timeline.note("PostgreSQL: pg_ctl stop -m immediate, start 3 s later");
            match cluster.crash_and_start(Duration::from_secs(3)).await {
                Ok(()) => chaos.pg_restarts.push("stop -m immediate, then start".into()),
                Err(e) => timeline.note(format!("PostgreSQL crash and start failed: {e}")),
            }
            timeline.note(format!("PostgreSQL up: {}", cluster.wait_ready(Duration::from_secs(60)).await));
            continue;
        }
        if !squeezed && now >= squeeze_at {
            squeezed = true;
            chaos.squeezes += 1;
            sim.set_budget(INSTALLATION, None, Some(2), Some(Duration::from_secs(10)));
            timeline.note("rate limit: installation budget set to 2 left, reset in 10 s");
        }
        if now >= next_arm {
            next_arm = now + Duration::from_secs(15);
            chaos.secondary_arms += 1;
            sim.set_faults(chaos_faults(3));
        }
        if now >= next_kill {
            next_kill = now + kill_gap(&rng);
            let victim = rng.below(procs.len() as u64) as usize;
            let (name, role, generation) = (procs[victim].name, procs[victim].role, procs[victim].generation);
            let pid = procs[victim].child.id().unwrap_or(0);
            let (pending, running) = busy_jobs(&db_url).await.unwrap_or((-1, -1));
            let _ = procs[victim].child.kill().await;
            let what =
                format!("SIGKILL {name}-{generation} (pid {pid}; jobs pending {pending}, running {running})");
            timeline.note(&what);
            chaos.kills.push(what);
            if victim == current {
                // GitHub keeps sending to the dead address for a moment.
                tokio::time::sleep(Duration::from_millis(500)).await;
                current =
                    procs.iter().position(|p| p.role == Role::Serve && p.name != name).unwrap_or(current);
                sim.set_webhook(Some(target(&procs[current].address, true)));
                timeline.note(format!("webhooks now go to {}", procs[current].name));
            }
            procs[victim] = launcher.start_retrying(name, role, generation + 1).await?;
            chaos.restarts += 1;
            timeline.note(format!("restarted {name}-{}", procs[victim].generation));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let churned = churn_task.await?;
    timeline.note(format!(
        "chaos over: {} changes made, {} refused by the model",
        churned.total(),
        churned.refused
    ));

    // Settle: GitHub behaves again, what was sent is sent, one reconcile.
    sim.set_faults(Faults::default());
    let budget = sim.set_budget(INSTALLATION, None, None, None);
    sim.set_budget(INSTALLATION, None, Some(budget.limit), None);
    sim.set_webhook(Some(target(&procs[current].address, false)));
    if tokio::time::timeout(Duration::from_secs(120), sim.wait_for_deliveries()).await.is_err() {
        timeline.note("the simulator's webhooks were still being sent after 120 s");
    }
    restart_exited(&mut procs, &launcher, &mut timeline, &mut chaos).await?;
    let mut reconciled = None;
    for _ in 0..10 {
        match reconcile(&procs[current].address).await {
            Ok((202, answer)) => {
                reconciled = Some(answer["jobs"].as_array().map_or(0, Vec::len));
                break;
            }
            Ok((status, answer)) => timeline.note(format!("reconcile answered {status}: {answer}")),
            Err(e) => timeline.note(format!("reconcile failed: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    timeline.note(format!("reconcile: {reconciled:?} sweep jobs"));
    let drain_started = Instant::now();
    let mut drained = false;
    let mut last_print = Instant::now();
    while drain_started.elapsed() < settings.drain {
        match busy_jobs(&db_url).await {
            Ok((0, 0)) => {
                drained = true;
                break;
            }
            Ok((pending, running)) if last_print.elapsed() > Duration::from_secs(10) => {
                last_print = Instant::now();
                eprintln!("chaos: draining: {pending} pending, {running} running");
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain_time = drain_started.elapsed();
    timeline.note(if drained {
        format!("queue drained in {:.1} s", drain_time.as_secs_f64())
    } else {
        format!("the queue did not drain within {:.0} s", settings.drain.as_secs_f64())
    });

    // The report.
    let mut conn = AsyncPgConnection::establish(&db_url).await?;
    let mut report = Report::default();
    let records = sim.deliveries();
    let acknowledged: Vec<String> = records
        .iter()
        .filter(|r| r.statuses.iter().any(|s| (200..300).contains(s)))
        .map(|r| r.delivery_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let stored: HashSet<String> =
        db::stored_deliveries(&mut conn, &acknowledged).await?.into_iter().collect();
    let missing: Vec<String> = records
        .iter()
        .filter(|r| r.statuses.iter().any(|s| (200..300).contains(s)) && !stored.contains(&r.delivery_id))
        .map(|r| format!("{} {}.{} statuses {:?}", r.delivery_id, r.event, r.action, r.statuses))
        .collect();
    report.info("deliveries acknowledged (2xx from prmonitor)", acknowledged.len());
    report.invariant(
        "of those, stored in webhook_deliveries",
        stored.len(),
        &format!("= {}", acknowledged.len()),
        stored.len() == acknowledged.len(),
    );
    report.detail("acknowledged but not stored", missing);

    let running = scalar(&mut conn, "SELECT count(*) FROM jobs WHERE state = 'running'").await?;
    let pending = scalar(&mut conn, "SELECT count(*) FROM jobs WHERE state = 'pending'").await?;
    report.invariant("jobs left running", running, "0", running == 0);
    report.invariant("jobs left pending", pending, "0", pending == 0);
    let stuck = jobs_where(&mut conn, "state IN ('pending', 'running')", 50).await?;
    report.detail("jobs left pending or running", stuck.iter().map(job_line).collect());
    let dead = jobs_where(&mut conn, "state = 'dead'", 200).await?;
    report.info("dead letters", dead.len());
    report.detail("dead letters", dead.iter().map(job_line).collect());
    let by_state = db::jobs_by_state(&mut conn).await?;
    report.info("jobs by kind and state", by_state.join(", "));
    let retried = scalar(&mut conn, "SELECT count(*) FROM jobs WHERE attempts > 1").await?;
    report.info("jobs that took more than one attempt", retried);
    let unprocessed = scalar(
        &mut conn,
        "SELECT count(*) FROM webhook_deliveries WHERE processed_at IS NULL AND job_id IS NOT NULL",
    )
    .await?;
    report.info("stored deliveries with a job but no processed_at", unprocessed);

    let repo_ids: Vec<(i64, String)> =
        sim.world(|w| w.repos.values().map(|r| (r.id, r.full_name())).collect());
    let mut differences = Vec::new();
    for (id, name) in &repo_ids {
        if let Err(difference) = verify::diff(&db_url, &sim, *id).await {
            differences.push(format!("{name}: {difference}"));
        }
    }
    let (prs, runs) = sim.world(|w| {
        (
            w.repos.values().map(|r| r.pulls.len()).sum::<usize>(),
            w.repos.values().map(|r| r.check_runs.len()).sum::<usize>(),
        )
    });
    report.invariant(
        "database equals the simulator",
        format!(
            "{} ({} of {} repositories equal; {prs} PRs, {runs} check runs in the simulator)",
            if differences.is_empty() { "yes" } else { "no" },
            repo_ids.len() - differences.len(),
            repo_ids.len()
        ),
        "yes",
        differences.is_empty(),
    );
    let mut explained = Explained::default();
    for (id, name) in &repo_ids {
        if differences.iter().any(|d| d.starts_with(&format!("{name}:"))) {
            if let Err(e) = explain(&mut conn, &sim, *id, &churned.log, &mut explained).await {
                explained.lines.push(format!("{name}: could not explain: {e}"));
            }
        }
    }
    if !explained.kinds.is_empty() {
        let unapplied: usize =
            explained.kinds.iter().filter(|(k, _)| k.contains("yet not applied")).map(|(_, n)| n).sum();
        report.info("of the differences, acknowledged deliveries that were not applied", unapplied);
        report.info(
            "differences by kind",
            explained.kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join("; "),
        );
    }
    report.detail("database differs from the simulator (first difference per repository)", differences);
    report.detail("the differences, object by object (with the run's changes to each)", explained.lines);

    let logs = scan_logs(&settings.log_dir)?;
    report.invariant("panics in the logs", logs.panics.len(), "0", logs.panics.is_empty());
    report.detail("panic lines", logs.panics.iter().take(30).map(|l| truncate(l, 1000)).collect());
    report.info(
        "units of work that logged discovery errors (\"repository processed\" with errors > 0)",
        logs.partial.len(),
    );
    let ids: Vec<String> = logs.partial.iter().map(|(id, _)| id.to_string()).collect();
    let finals: BTreeMap<i64, JobRow> = if ids.is_empty() {
        BTreeMap::new()
    } else {
        jobs_where(&mut conn, &format!("id IN ({})", ids.join(", ")), 1000)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect()
    };
    let completed_anyway = logs
        .partial
        .iter()
        .filter(|(id, line)| {
            finals
                .get(id)
                .is_some_and(|j| j.state == "done" && line.contains(&format!("attempt {})", j.attempts)))
        })
        .count();
    report.info("of those, the attempt whose job was then completed (errors not retried)", completed_anyway);
    report.detail(
        "\"repository processed\" with errors, and the job's final state",
        logs.partial
            .iter()
            .take(40)
            .map(|(id, line)| match finals.get(id) {
                Some(j) => format!("{line} -> job {} {} after {} attempt(s)", j.id, j.state, j.attempts),
                None => line.clone(),
            })
            .collect(),
    );
    report.info("parts restarted (\"part restarted\" lines)", logs.part_restarts.len());
    report.detail(
        "part restarted lines",
        logs.part_restarts.iter().take(30).map(|l| truncate(l, 600)).collect(),
    );
    let errors: u64 = logs.by_message.iter().filter(|((l, _), _)| l == "ERROR").map(|(_, n)| n).sum();
    let warnings: u64 = logs.by_message.iter().filter(|((l, _), _)| l == "WARN").map(|(_, n)| n).sum();
    report.info(
        "log lines ERROR / WARN",
        format!("{errors} / {warnings} (of {} lines in {} files)", logs.lines, logs.files),
    );
    let mut common: Vec<(&(String, String), &u64)> = logs.by_message.iter().collect();
    common.sort_by(|a, b| b.1.cmp(a.1));
    report.detail(
        "most frequent ERROR/WARN messages",
        common.iter().take(15).map(|((level, message), n)| format!("{n:6} {level} {message}")).collect(),
    );

    report.info(
        "processes killed (SIGKILL) and restarted",
        format!("{} / {}", chaos.kills.len(), chaos.restarts),
    );
    report.info("processes that exited on their own", chaos.unexpected_exits.len());
    report.detail("processes that exited on their own", chaos.unexpected_exits.clone());
    report.info(
        "PostgreSQL restarts",
        format!("{} ({})", chaos.pg_restarts.len(), chaos.pg_restarts.join("; ")),
    );
    report.info(
        "changes made in the simulator",
        format!(
            "{} ({})",
            churned.total(),
            churned.made.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
        ),
    );
    let lost = records.iter().filter(|r| r.lost).count();
    let duplicated = records.iter().filter(|r| r.statuses.len() > 1).count();
    let failed: Vec<&sim::DeliveryRecord> =
        records.iter().filter(|r| !r.lost && !r.statuses.iter().any(|s| (200..300).contains(s))).collect();
    let mut failed_by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &failed {
        *failed_by_status.entry(r.statuses.last().copied().unwrap_or(0)).or_default() += 1;
    }
    report.info(
        "webhooks: events / sent / lost / duplicated",
        format!("{} / {} / {lost} / {duplicated}", records.len(), records.len() - lost),
    );
    report.info(
        "webhooks sent but refused or unanswered",
        format!(
            "{} (by last status, 0 = no answer: {})",
            failed.len(),
            failed_by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
        ),
    );
    let stats = sim.stats();
    let api: Vec<&sim::LoggedRequest> =
        stats.requests.iter().filter(|r| !r.route.starts_with("POST /app")).collect();
    let count_status = |pred: &dyn Fn(u16) -> bool| api.iter().filter(|r| pred(r.status)).count();
    report.info(
        "GitHub API requests: all / 5xx / 403 / 304",
        format!(
            "{} / {} / {} / {}",
            api.len(),
            count_status(&|s| s >= 500),
            count_status(&|s| s == 403),
            count_status(&|s| s == 304)
        ),
    );
    report.info(
        "faults",
        format!(
            "error rate 0.3, secondary limits armed {} × 3 (Retry-After 2 s), rate-limit squeezes {}",
            chaos.secondary_arms + 1,
            chaos.squeezes
        ),
    );
    report.info("reconcile", reconciled.map_or("not accepted".to_owned(), |n| format!("{n} sweep jobs")));
    report.info(
        "drain after the reconcile",
        format!("{:.1} s{}", drain_time.as_secs_f64(), if drained { "" } else { " (timed out)" }),
    );
    report.info(
        "wall time",
        format!("{:.0} s (chaos {:.0} s)", wall.elapsed().as_secs_f64(), duration.as_secs_f64()),
    );
    report.info("seed", settings.seed);
    report.detail("timeline", timeline.events.clone());

    for proc in &mut procs {
        if let Some(pid) = proc.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }
    for proc in &mut procs {
        if tokio::time::timeout(Duration::from_secs(15), proc.child.wait()).await.is_err() {
            let _ = proc.child.kill().await;
        }
    }
    sim.stop().await;

    let failed = report.failed();
    let title = format!(
        "prmonitor chaos soak: {} min, {} — {}",
        settings.minutes,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if failed.is_empty() { "PASS".to_owned() } else { format!("FAIL ({})", failed.join("; ")) }
    );
    let markdown = report.markdown(&title);
    println!("\n{title}\n\n{}", report.plain());
    println!("{markdown}");
    std::fs::write(settings.log_dir.join("changes.txt"), churned.log.join("\n") + "\n")?;
    let path = settings.log_dir.join("report.md");
    std::fs::write(&path, &markdown)?;
    eprintln!("chaos: report in {}, logs in {}", path.display(), settings.log_dir.display());
    Ok(failed.is_empty())
}

/// Restarts, and reports, every process that exited without being killed.
async fn restart_exited(
    procs: &mut [Proc],
    launcher: &Launcher,
    timeline: &mut Timeline,
    chaos: &mut Chaos,
) -> Result<(), Error> {
    for proc in procs.iter_mut() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            let what = format!(
                "{}-{} exited on its own: {status} (log {})",
                proc.name,
                proc.generation,
                proc.log.display()
            );
            timeline.note(&what);
            chaos.unexpected_exits.push(what);
            *proc = launcher.start_retrying(proc.name, proc.role, proc.generation + 1).await?;
        }
    }
    Ok(())
}
