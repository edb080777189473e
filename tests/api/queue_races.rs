//! The job queue's transitions under concurrency: two connections and a
//! deterministic interleaving, observed through PostgreSQL's own lock waits.

use std::time::Duration;

use diesel::sql_types::{Integer, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prmonitor::queue::{self, EventTarget, FailOutcome, JobRef, JobState, NewJob, RepoRef};

use prmonitor::ids::{GithubRepoId, PullRequestNumber};
use prmonitor_testkit::{connect, count, TestDatabase};

const WORKER: &str = "worker-under-test";

fn pr_job() -> NewJob {
    let repository =
        RepoRef { github_id: GithubRepoId(1), full_name: "acme/hot".into(), installation_id: None };
    NewJob::event(&EventTarget::PullRequest { repository, number: PullRequestNumber(5), with_checks: false })
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    let row: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(conn).await.expect("pid");
    row.pid
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Waits until backend `pid` is blocked on a lock (here: the pending-key
/// index entry of intake's uncommitted insert).
async fn until_waiting_on_a_lock(db: &TestDatabase, pid: i32) {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND wait_event_type = 'Lock'");
    for _ in 0..200 {
        if count(&db.url, &sql).await == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the transition never waited for intake's insert");
}

/// The running (or dead) job `old` goes back to pending through `transition`
/// while intake, on another connection, holds an uncommitted pending job of
/// the same key: the transition checks, finds no pending job, tries its
/// update, waits for intake's commit — and must then merge into intake's job
/// instead of failing on the unique index.
async fn race_with_intake<F, Fut>(db: &TestDatabase, dead: bool, transition: F) -> Fut::Output
where
    F: FnOnce(AsyncPgConnection, JobRef) -> Fut,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut setup = connect(&db.url).await;
    let old = queue::enqueue(&mut setup, &pr_job()).await.expect("enqueue");
    let claimed = queue::claim(&mut setup, WORKER, Duration::from_secs(60), 1).await.expect("claim");
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), [old.id]);
    if dead {
        execute(
            &mut setup,
            &format!("UPDATE jobs SET state = 'dead', lease_owner = NULL WHERE id = {}", old.id),
        )
        .await;
    }
    execute(
        &mut setup,
        &format!(
            "INSERT INTO webhook_deliveries (delivery_id, event, outcome, job_id, payload_size) \
             VALUES ('old-delivery', 'pull_request', 'queued', {}, 0)",
            old.id
        ),
    )
    .await;

    let mut intake = connect(&db.url).await;
    execute(&mut intake, "BEGIN").await;
    let newer = queue::enqueue(&mut intake, &pr_job()).await.expect("intake's job");
    assert_ne!(newer.id, old.id, "a running or dead job takes no merges");

    let mut worker = connect(&db.url).await;
    let pid = backend_pid(&mut worker).await;
    let job = JobRef { id: old.id, worker: WORKER.to_owned() };
    let running = tokio::spawn(transition(worker, job));
    until_waiting_on_a_lock(db, pid).await;
    execute(&mut intake, "COMMIT").await;
    let output = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the transition finishes once intake commits")
        .expect("no panic");

    #[derive(QueryableByName)]
    struct Job {
        #[diesel(sql_type = Text)]
        state: String,
    }
    let state = |id: i64| format!("SELECT state FROM jobs WHERE id = {id}");
    let old_state: Job = diesel::sql_query(state(old.id)).get_result(&mut setup).await.expect("old job");
    let new_state: Job = diesel::sql_query(state(newer.id)).get_result(&mut setup).await.expect("new job");
    assert_eq!(old_state.state, "done", "the old job is folded into intake's");
    assert_eq!(new_state.state, "pending");
    assert_eq!(
        count(&db.url, &format!("SELECT coalesced_count FROM jobs WHERE id = {}", newer.id)).await,
        2,
        "intake's job stands for both requests"
    );
    assert_eq!(
        count(&db.url, &format!("SELECT count(*) FROM webhook_deliveries WHERE job_id = {}", newer.id)).await,
        1,
        "the old job's delivery moved to the job that will process it"
    );
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE state = 'running'").await, 0, "nothing stuck");
    output
}

#[tokio::test]
async fn a_failure_racing_intake_for_the_same_key_merges_into_intakes_job() {
    let db = TestDatabase::migrated().await;
    let outcome = race_with_intake(&db, false, |mut conn, job| async move {
        queue::fail(&mut conn, &job, "GitHub said 502", Duration::ZERO).await
    })
    .await;
    assert_eq!(outcome.expect("the failure is recorded"), FailOutcome::Merged);
}

#[tokio::test]
async fn a_release_racing_intake_for_the_same_key_merges_into_intakes_job() {
    let db = TestDatabase::migrated().await;
    let released =
        race_with_intake(&db, false, |mut conn, job| async move { queue::release(&mut conn, &job).await })
            .await;
    released.expect("the lease is given back");
}

#[tokio::test]
async fn a_dead_letter_retried_while_intake_adds_its_key_merges_into_intakes_job() {
    let db = TestDatabase::migrated().await;
    let retried =
        race_with_intake(
            &db,
            true,
            |mut conn, job| async move { queue::retry_dead(&mut conn, job.id).await },
        )
        .await;
    assert!(retried.expect("the retry is recorded"), "the dead letter was brought back");
}

#[tokio::test]
async fn every_job_state_round_trips_through_the_state_column() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let id = queue::enqueue(&mut conn, &pr_job()).await.expect("enqueue").id;
    for state in JobState::ALL {
        // Written as text, as every statement but diesel's writes it: the
        // column's CHECK constraint must accept each variant.
        execute(&mut conn, &format!("UPDATE jobs SET state = '{state}' WHERE id = {id}")).await;
        let job = queue::get(&mut conn, id).await.expect("get").expect("job");
        assert_eq!(job.state, state);
    }

    #[derive(Debug, QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        #[allow(dead_code)]
        state: JobState,
    }
    let unknown = diesel::sql_query("SELECT 'retrying'::text AS state").get_result::<Row>(&mut conn).await;
    assert!(unknown.is_err(), "an unknown state must not be read as a known one: {unknown:?}");
}

/// The scheduler's query recognises sweeps and backfills by their keys: a
/// repository with either waiting or running gets no second sweep.
#[tokio::test]
async fn the_scheduler_sweeps_only_repositories_without_a_sweep_or_backfill_in_flight() {
    use prmonitor::db::repositories::{self, NewRepository};
    use prmonitor::queue::RepositoryJob;

    let db = TestDatabase::migrated().await;
    let settings = prmonitor_testkit::test_settings(
        &db,
        &[("PRMONITOR_JOB_MAX_ATTEMPTS", "4"), ("PRMONITOR_BULK_READS", "rest")],
    );
    let mut conn = connect(&db.url).await;
    let mut ids = Vec::new();
    for (github_id, name) in [(101, "backfilled"), (102, "swept")] {
        let new =
            NewRepository { github_id: GithubRepoId(github_id), owner: "acme", name, installation_id: None };
        ids.push(repositories::upsert(&mut conn, &new).await.expect("register").id);
    }
    let (backfilled, swept) = (ids[0], ids[1]);
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    let scheduler = prmonitor::scheduler::Scheduler::new(pool, settings.worker.clone(), &settings.github);

    queue::enqueue(&mut conn, &NewJob::backfill(&RepositoryJob { repository_id: backfilled, manual: false }))
        .await
        .expect("enqueue");
    assert_eq!(scheduler.schedule_due_sweeps().await.expect("schedule"), 1, "a backfill waits for the other");
    let sweep =
        format!("SELECT count(*) FROM jobs WHERE coalesce_key = 'sweep:{swept}' AND max_attempts = 4");
    assert_eq!(count(&db.url, &sweep).await, 1, "the sweep carries the operator's limit");
    assert_eq!(scheduler.schedule_due_sweeps().await.expect("schedule"), 0, "both wait for their full read");

    let claimed = queue::claim(&mut conn, WORKER, Duration::from_secs(60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    assert_eq!(scheduler.schedule_due_sweeps().await.expect("schedule"), 0, "both are being read");

    execute(&mut conn, "UPDATE jobs SET state = 'done'").await;
    assert_eq!(scheduler.schedule_due_sweeps().await.expect("schedule"), 2, "never swept, nothing in flight");
}

/// With GraphQL bulk reads, due repositories are swept by one survey per
/// installation, never two at once, and never beside their full read.
#[tokio::test]
async fn the_scheduler_surveys_each_installation_once_at_a_time() {
    use prmonitor::db::repositories::{self, NewRepository};
    use prmonitor::ids::InstallationId;
    use prmonitor::queue::RepositoryJob;

    let db = TestDatabase::migrated().await;
    let settings = prmonitor_testkit::test_settings(&db, &[("PRMONITOR_JOB_MAX_ATTEMPTS", "4")]);
    let mut conn = connect(&db.url).await;
    let mut ids = Vec::new();
    for (github_id, name, installation) in [(101, "a", 1), (102, "b", 1), (103, "c", 2), (104, "d", 3)] {
        let new = NewRepository {
            github_id: GithubRepoId(github_id),
            owner: "acme",
            name,
            installation_id: Some(InstallationId(installation)),
        };
        ids.push(repositories::upsert(&mut conn, &new).await.expect("register").id);
    }
    // Installation 3's only repository is being backfilled: not due.
    queue::enqueue(&mut conn, &NewJob::backfill(&RepositoryJob { repository_id: ids[3], manual: false }))
        .await
        .expect("enqueue");
    let pool = prmonitor::db::build_pool(&db.database_url(), 2).expect("pool");
    let scheduler = prmonitor::scheduler::Scheduler::new(pool, settings.worker.clone(), &settings.github);
    assert_eq!(scheduler.schedule_due_sweeps().await.expect("schedule"), 2, "one survey per installation");
    let surveys = "SELECT count(*) FROM jobs WHERE kind = 'survey' AND max_attempts = 4                    AND coalesce_key IN ('survey:1', 'survey:2')";
    assert_eq!(count(&db.url, surveys).await, 2, "keyed by installation, with the operator's limit");
    assert_eq!(count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'sweep'").await, 0);
    assert_eq!(
        scheduler.schedule_due_sweeps().await.expect("schedule"),
        0,
        "pending surveys are not doubled"
    );
    let claimed = queue::claim(&mut conn, WORKER, Duration::from_secs(60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        scheduler.schedule_due_sweeps().await.expect("schedule"),
        0,
        "running surveys are not doubled"
    );
    execute(&mut conn, "UPDATE jobs SET state = 'done'").await;
    assert_eq!(scheduler.schedule_due_sweeps().await.expect("schedule"), 3, "still due once they are done");
}

#[derive(QueryableByName)]
struct Ending {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    lease_owner: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    leased: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    finished: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Text)]
    delivery: String,
}

/// A claimed job with one delivery, as intake and a claim leave it.
async fn claimed_with_a_delivery(conn: &mut AsyncPgConnection, number: i32) -> JobRef {
    let number = PullRequestNumber(number);
    let repository =
        RepoRef { github_id: GithubRepoId(1), full_name: "acme/hot".into(), installation_id: None };
    let job = NewJob::event(&EventTarget::PullRequest { repository, number, with_checks: false })
        .with_max_attempts(1);
    let id = queue::enqueue(conn, &job).await.expect("enqueue").id;
    execute(
        conn,
        &format!(
            "INSERT INTO webhook_deliveries (delivery_id, event, outcome, job_id, payload_size) \
             VALUES ('delivery-{id}', 'pull_request', 'queued', {id}, 0)"
        ),
    )
    .await;
    let claimed = queue::claim(conn, WORKER, Duration::from_secs(60), 1).await.expect("claim");
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), [id]);
    JobRef { id, worker: WORKER.to_owned() }
}

async fn ending(conn: &mut AsyncPgConnection, id: i64) -> Ending {
    diesel::sql_query(format!(
        "SELECT j.state, j.lease_owner, j.lease_expires_at IS NOT NULL AS leased, \
                j.finished_at IS NOT NULL AS finished, j.last_error, d.outcome AS delivery \
         FROM jobs j JOIN webhook_deliveries d ON d.job_id = j.id WHERE j.id = {id}"
    ))
    .get_result(conn)
    .await
    .expect("job and delivery")
}

#[tokio::test]
async fn a_completion_by_the_lease_holder_closes_the_job_and_its_deliveries() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let job = claimed_with_a_delivery(&mut conn, 1).await;

    let stranger = JobRef { id: job.id, worker: "another-worker".to_owned() };
    assert!(!queue::complete(&mut conn, &stranger).await.expect("complete"), "not the lease holder");
    let untouched = ending(&mut conn, job.id).await;
    assert_eq!((untouched.state.as_str(), untouched.delivery.as_str()), ("running", "queued"));
    assert!(untouched.leased && !untouched.finished);

    assert!(queue::complete(&mut conn, &job).await.expect("complete"));
    let done = ending(&mut conn, job.id).await;
    assert_eq!((done.state.as_str(), done.delivery.as_str()), ("done", "processed"));
    assert_eq!(done.lease_owner.as_deref(), Some(WORKER), "records which worker completed it");
    assert!(!done.leased && done.finished && done.last_error.is_none());
    assert!(!queue::complete(&mut conn, &job).await.expect("complete"), "a job completes once");
}

#[tokio::test]
async fn a_synchronization_completes_its_job_and_records_the_repositorys_success() {
    use prmonitor::db::repositories::{self, NewRepository};

    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let new = NewRepository { github_id: GithubRepoId(1), owner: "acme", name: "hot", installation_id: None };
    let repo = repositories::upsert(&mut conn, &new).await.expect("register");
    execute(
        &mut conn,
        &format!(
            "UPDATE repositories SET consecutive_failures = 3, last_failure_reason = 'x' WHERE id = {}",
            repo.id
        ),
    )
    .await;
    let job = claimed_with_a_delivery(&mut conn, 2).await;

    queue::complete_sync(&mut conn, &job, repo.id).await.expect("complete");
    let done = ending(&mut conn, job.id).await;
    assert_eq!((done.state.as_str(), done.delivery.as_str()), ("done", "processed"));
    let sql = format!(
        "SELECT count(*) FROM repositories WHERE id = {} AND consecutive_failures = 0 \
         AND last_failure_reason IS NULL AND last_synced_at IS NOT NULL",
        repo.id
    );
    assert_eq!(count(&db.url, &sql).await, 1);
}

#[tokio::test]
async fn a_failure_out_of_attempts_is_a_dead_letter_and_fails_its_deliveries() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let job = claimed_with_a_delivery(&mut conn, 3).await;

    let outcome = queue::fail(&mut conn, &job, "GitHub said 404", Duration::ZERO).await.expect("fail");
    assert_eq!(outcome, FailOutcome::Dead);
    let dead = ending(&mut conn, job.id).await;
    assert_eq!((dead.state.as_str(), dead.delivery.as_str()), ("dead", "failed"));
    assert_eq!(dead.last_error.as_deref(), Some("GitHub said 404"));
    assert!(dead.lease_owner.is_none() && !dead.leased && dead.finished);
}
