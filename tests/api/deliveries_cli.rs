//! `prmonitor deliveries list | show | replay`: the real binary on the
//! database of a running service that took real signed webhooks from the
//! simulator.

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use github_sim::NewPr;
use prmonitor_testkit::{connect, new_delivery_id, sign, TestWorld};

use crate::PRMONITOR;

const REPO: &str = "acme/repo-0";
const OTHER: &str = "acme/repo-1";

/// What a run of the binary printed, and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn prmonitor(world: &TestWorld, args: &[&str]) -> Run {
    let output =
        PRMONITOR.command(args, &[("DATABASE_URL", &world.db.url)]).output().await.expect("prmonitor runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `deliveries list ARGS`, which must succeed: the delivery ids it lists, in its order.
async fn listed(world: &TestWorld, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["deliveries", "list"];
    args.extend_from_slice(filters);
    let run = prmonitor(world, &args).await;
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    let mut lines = run.stdout.lines();
    let header = lines.next().expect("a header line");
    for column in ["received at", "delivery id", "event.action", "repository", "outcome", "job"] {
        assert!(header.contains(column), "{header}");
    }
    lines.map(|line| line.split_whitespace().nth(1).expect("a delivery id column").to_owned()).collect()
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    delivery_id: String,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    job_id: Option<i64>,
}

/// The stored deliveries that `condition` selects, newest first (as the listing orders them).
async fn stored(world: &TestWorld, condition: &str) -> Vec<Row> {
    let mut conn = connect(&world.db.url).await;
    diesel::sql_query(format!(
        "SELECT delivery_id, outcome, job_id FROM webhook_deliveries WHERE {condition} \
         ORDER BY received_at DESC, delivery_id DESC"
    ))
    .load(&mut conn)
    .await
    .expect("deliveries")
}

fn ids(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|r| r.delivery_id.clone()).collect()
}

/// A signed `push`, which prmonitor stores and ignores.
async fn send_push(world: &TestWorld) -> String {
    let id = new_delivery_id();
    let body = br#"{"ref":"refs/heads/main","repository":{"id":500000,"full_name":"acme/repo-0"},"installation":{"id":1001}}"#;
    let answer = reqwest::Client::new()
        .post(format!("http://{}/webhooks/github", world.address()))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/test")
        .header("x-github-event", "push")
        .header("x-github-delivery", &id)
        .header("x-hub-signature-256", sign(body))
        .body(body.to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(answer.status(), 202);
    id
}

/// Two repositories' worth of webhooks, processed: a PR opened and pushed
/// with a failing check in one, a PR opened in the other, and an ignored push.
async fn busy_world() -> (TestWorld, i64, String) {
    let world = TestWorld::with_repos(2).await;
    let number = world.github.open_pr(REPO, NewPr::new("Deliveries on the command line", "alice"));
    let head = world.github.push(REPO, number);
    world.github.check(REPO, &head, "build", "failure");
    world.github.open_pr(OTHER, NewPr::new("Elsewhere", "bob"));
    world.settle().await;
    send_push(&world).await;
    (world, number, head)
}

/// Leaves what the service's own end-of-test checks expect: an ignored
/// delivery is never processed, so it goes.
async fn finish(world: TestWorld) {
    let mut conn = connect(&world.db.url).await;
    diesel::sql_query("DELETE FROM webhook_deliveries WHERE outcome = 'ignored'")
        .execute(&mut conn)
        .await
        .expect("delete");
    world.finish().await;
}

#[tokio::test]
async fn list_shows_the_newest_first_and_each_filter_narrows_it() {
    let (world, _, _) = busy_world().await;
    let all = stored(&world, "true").await;
    assert_eq!(all.len(), 7, "opened, synchronize, check_run ×2, check_suite, opened, push: {all:?}");
    assert_eq!(listed(&world, &[]).await, ids(&all), "newest first");

    let other = stored(&world, "repository_full_name = 'acme/repo-1'").await;
    assert_eq!(other.len(), 1);
    assert_eq!(listed(&world, &["--repo", OTHER]).await, ids(&other));
    assert_eq!(listed(&world, &["--repo", "ACME/Repo-1"]).await, ids(&other), "as GitHub compares names");

    let checks = stored(&world, "event = 'check_run'").await;
    assert_eq!(checks.len(), 2, "created and completed");
    assert_eq!(listed(&world, &["--event", "check_run"]).await, ids(&checks));

    let ignored = stored(&world, "outcome = 'ignored'").await;
    assert_eq!(ignored.len(), 1);
    assert_eq!(listed(&world, &["--outcome", "ignored"]).await, ids(&ignored));
    let processed = stored(&world, "outcome = 'processed'").await;
    assert_eq!(processed.len(), all.len() - 1);
    assert_eq!(listed(&world, &["--outcome", "processed", "--limit", "1000"]).await, ids(&processed));

    // One delivery received three days ago: `--since` takes durations and times.
    let old = &all[all.len() - 1].delivery_id;
    let mut conn = connect(&world.db.url).await;
    diesel::sql_query(
        "UPDATE webhook_deliveries SET received_at = now() - interval '3 days' WHERE delivery_id = $1",
    )
    .bind::<Text, _>(old)
    .execute(&mut conn)
    .await
    .expect("backdate");
    let recent = listed(&world, &["--since", "2d"]).await;
    assert_eq!(recent.len(), all.len() - 1);
    assert!(!recent.contains(old));
    assert_eq!(listed(&world, &["--since", "90m"]).await, recent);
    assert_eq!(listed(&world, &["--since", "4d"]).await.len(), all.len());
    assert!(listed(&world, &["--since", "2999-01-01T00:00:00Z"]).await.is_empty());
    assert_eq!(listed(&world, &["--since", "2000-01-01T00:00:00+02:00"]).await.len(), all.len());

    let newest = listed(&world, &["--limit", "2"]).await;
    assert_eq!(newest, ids(&all)[..2]);
    // Filters combine.
    let combined = stored(
        &world,
        "repository_full_name = 'acme/repo-0' AND event = 'pull_request' AND received_at >= now() - interval '2 days'",
    )
    .await;
    assert_eq!(combined.len(), 1, "the synchronize: the opened one is three days old now");
    assert_eq!(
        listed(&world, &["--repo", REPO, "--event", "pull_request", "--since", "2d"]).await,
        ids(&combined)
    );

    // The row shows event.action, repository, outcome and job.
    let run = prmonitor(&world, &["deliveries", "list", "--event", "check_suite"]).await;
    let line = run.stdout.lines().nth(1).expect("a row");
    let suite = &stored(&world, "event = 'check_suite'").await[0];
    for expected in [
        suite.delivery_id.as_str(),
        "check_suite.completed",
        REPO,
        "processed",
        &suite.job_id.expect("a job").to_string(),
    ] {
        assert!(line.contains(expected), "{expected}: {line}");
    }
    finish(world).await;
}

#[tokio::test]
async fn show_prints_the_fields_headers_payload_summary_and_job() {
    let (world, number, head) = busy_world().await;
    let opened = &stored(
        &world,
        "event = 'pull_request' AND action = 'opened' AND repository_full_name = 'acme/repo-0'",
    )
    .await[0];
    let run = prmonitor(&world, &["deliveries", "show", &opened.delivery_id]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    let job = opened.job_id.expect("a job");
    for expected in [
        format!("delivery      {}", opened.delivery_id),
        "event         pull_request.opened".to_owned(),
        "outcome       processed".to_owned(),
        "repository    acme/repo-0 (id 500000)".to_owned(),
        "installation  1001".to_owned(),
        format!("job           {job}"),
        // The headers GitHub sent (the simulator's), as stored by intake.
        "X-GitHub-Event: pull_request".to_owned(),
        format!("X-GitHub-Delivery: {}", opened.delivery_id),
        "X-GitHub-Hook-ID: 1".to_owned(),
        "X-GitHub-Hook-Installation-Target-Type: integration".to_owned(),
        "X-GitHub-Hook-Installation-Target-ID: 4242".to_owned(),
        "User-Agent: GitHub-Hookshot/sim".to_owned(),
        "Content-Type: application/json".to_owned(),
        "X-Hub-Signature-256: sha256=".to_owned(),
        // The payload, summarised.
        "  sender        alice".to_owned(),
        format!("pull request  #{number} \"Deliveries on the command line\" (open)"),
        // The job it became.
        format!("job {job}\n  kind          event"),
        "  state         done".to_owned(),
        "  outcome       processed".to_owned(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    let size = world
        .count(&format!(
            "SELECT payload_size FROM webhook_deliveries WHERE delivery_id = '{}'",
            opened.delivery_id
        ))
        .await;
    assert!(out.contains(&format!("payload ({size} bytes)")), "{out}");
    // The opened payload names the first head, not the pushed one.
    assert!(!out.contains(&head), "{out}");

    let completed = &stored(&world, "event = 'check_run' AND action = 'completed'").await[0];
    let run = prmonitor(&world, &["deliveries", "show", &completed.delivery_id]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("check run     \"build\""), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("completed, conclusion failure, head {head}")), "{}", run.stdout);

    // An ignored delivery has no job; the request headers are those it came with.
    let ignored = &stored(&world, "outcome = 'ignored'").await[0];
    let run = prmonitor(&world, &["deliveries", "show", &ignored.delivery_id]).await;
    assert!(run.stdout.contains("event         push") && run.stdout.contains("job: none"), "{}", run.stdout);
    assert!(run.stdout.contains("User-Agent: GitHub-Hookshot/test"), "{}", run.stdout);

    // Pruned: the row remains, its payload does not.
    let mut conn = connect(&world.db.url).await;
    diesel::sql_query("UPDATE webhook_deliveries SET payload = NULL WHERE delivery_id = $1")
        .bind::<Text, _>(&completed.delivery_id)
        .execute(&mut conn)
        .await
        .expect("prune");
    let run = prmonitor(&world, &["deliveries", "show", &completed.delivery_id]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("payload pruned"), "{}", run.stdout);
    assert!(!run.stdout.contains("check run     "), "nothing to summarise: {}", run.stdout);

    let unknown = prmonitor(&world, &["deliveries", "show", "no-such-delivery"]).await;
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("no delivery no-such-delivery is stored"), "{}", unknown.stderr);
    finish(world).await;
}

#[tokio::test]
async fn replay_runs_the_job_again_and_the_delivery_is_processed_again() {
    let (world, number, _) = busy_world().await;
    let opened = &stored(
        &world,
        "event = 'pull_request' AND action = 'opened' AND repository_full_name = 'acme/repo-0'",
    )
    .await[0];
    let first_job = opened.job_id.expect("a job");
    let mut jobs = vec![first_job];
    // Twice: a replayed delivery can be replayed again.
    for _ in 0..2 {
        let run = prmonitor(&world, &["deliveries", "replay", &opened.delivery_id]).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let job: i64 = run
            .stdout
            .trim()
            .strip_prefix(&format!("{}\tjob ", opened.delivery_id))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("prints the job: {:?}", run.stdout));
        assert!(!jobs.contains(&job), "a new job: {job} after {jobs:?}");
        jobs.push(job);
        let row = &stored(&world, &format!("delivery_id = '{}'", opened.delivery_id)).await[0];
        assert_eq!(row.job_id, Some(job), "the delivery points at its new job");
        world.settle().await;
        let row = &stored(&world, &format!("delivery_id = '{}'", opened.delivery_id)).await[0];
        assert_eq!(row.outcome, "processed");
        assert_eq!(
            world
                .count(&format!(
                    "SELECT count(*) FROM jobs WHERE id = {job} AND state = 'done' AND attempts >= 1"
                ))
                .await,
            1
        );
        assert_eq!(
            world.count(&format!("SELECT count(*) FROM webhook_deliveries WHERE delivery_id = '{}' AND processed_at > now() - interval '1 minute'", opened.delivery_id)).await,
            1
        );
    }
    // The job was the PR's own: it ran against the PR and left it as GitHub has it.
    let job_key = world
        .count(&format!(
            "SELECT count(*) FROM jobs WHERE id = {} AND coalesce_key = 'pr:500000:{number}'",
            jobs[2]
        ))
        .await;
    assert_eq!(job_key, 1);
    assert_eq!(world.api.pull(REPO, number).await["title"], "Deliveries on the command line");
    finish(world).await;
}

#[tokio::test]
async fn replay_reports_each_delivery_it_cannot_replay_and_replays_the_others() {
    let (world, _, _) = busy_world().await;
    let other = &stored(&world, "repository_full_name = 'acme/repo-1'").await[0];
    let pruned = &stored(&world, "event = 'check_run' AND action = 'created'").await[0];
    let ignored = &stored(&world, "outcome = 'ignored'").await[0];
    let mut conn = connect(&world.db.url).await;
    diesel::sql_query("UPDATE webhook_deliveries SET payload = NULL WHERE delivery_id = $1")
        .bind::<Text, _>(&pruned.delivery_id)
        .execute(&mut conn)
        .await
        .expect("prune");
    let run = prmonitor(
        &world,
        &[
            "deliveries",
            "replay",
            "no-such-delivery",
            &pruned.delivery_id,
            &other.delivery_id,
            &ignored.delivery_id,
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "some failed: {}", run.stderr);
    let replayed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(replayed.len(), 1, "{}", run.stdout);
    assert!(replayed[0].starts_with(&format!("{}\tjob ", other.delivery_id)), "{}", run.stdout);
    for (id, reason) in [
        ("no-such-delivery", "no such delivery is stored"),
        (pruned.delivery_id.as_str(), "its payload was pruned"),
        (ignored.delivery_id.as_str(), "a push delivery is ignored: it has no job to run"),
    ] {
        assert!(run.stderr.contains(&format!("delivery {id}: {reason}")), "{id}: {}", run.stderr);
    }
    assert!(run.stderr.contains("3 of 4 deliveries were not replayed"), "{}", run.stderr);
    // Only the one replayed changed.
    assert_eq!(
        stored(&world, &format!("delivery_id = '{}'", ignored.delivery_id)).await[0].outcome,
        "ignored"
    );
    let pruned_now = &stored(&world, &format!("delivery_id = '{}'", pruned.delivery_id)).await[0];
    assert_eq!((pruned_now.outcome.as_str(), pruned_now.job_id), ("processed", pruned.job_id));
    world.settle().await;
    assert_eq!(
        stored(&world, &format!("delivery_id = '{}'", other.delivery_id)).await[0].outcome,
        "processed"
    );

    // With JSON logs, each failure is a JSON line naming the delivery.
    let output = PRMONITOR
        .command(
            &["deliveries", "replay", "no-such-delivery"],
            &[("DATABASE_URL", &world.db.url), ("PRMONITOR_LOG_FORMAT", "json")],
        )
        .output()
        .await
        .expect("prmonitor runs");
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "delivery not replayed" && l["delivery_id"] == "no-such-delivery"),
        "{lines:?}"
    );
    finish(world).await;
}

#[tokio::test]
async fn invalid_flags_exit_2_naming_the_flag() {
    let world = TestWorld::with_repos(1).await;
    for (args, flag) in [
        (&["deliveries", "list", "--since", "yesterday"][..], "--since"),
        (&["deliveries", "list", "--since", "-3d"][..], "--since"),
        (&["deliveries", "list", "--repo", "no-slash"][..], "--repo"),
        (&["deliveries", "list", "--event", "Pull Request"][..], "--event"),
        (&["deliveries", "list", "--outcome", "lost"][..], "--outcome"),
        (&["deliveries", "list", "--limit", "0"][..], "--limit"),
        (&["deliveries", "replay"][..], "<IDS>"),
    ] {
        let run = prmonitor(&world, args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(flag), "{args:?} names {flag}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
    }
    let run = prmonitor(&world, &["deliveries", "list", "--since", "yesterday"]).await;
    assert!(
        run.stderr.contains("90m") && run.stderr.contains("RFC 3339"),
        "says what it takes: {}",
        run.stderr
    );
    let run = prmonitor(&world, &["deliveries", "list", "--outcome", "lost"]).await;
    assert!(
        run.stderr.contains("processed") && run.stderr.contains("ignored"),
        "lists the outcomes: {}",
        run.stderr
    );
    world.finish().await;
}
