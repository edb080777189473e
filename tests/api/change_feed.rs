//! The change feed, `GET /api/v1/events`: committed changes reach streams
//! (of any instance) with their data, a reconnecting client misses nothing
//! and sees nothing twice, transactions committing out of id order lose no
//! event, and hostile or unauthenticated requests get clear 4xx answers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use github_sim::NewPr;
use prmonitor::scheduler::Scheduler;
use prmonitor::startup::{Components, Service};
use prmonitor_testkit::sse::{Event, Item, SseStream};
use prmonitor_testkit::world::READ_TOKEN;
use prmonitor_testkit::{connect, count, spawn_app_with, TestApp, TestWorld};

use crate::scenarios::REPO;

const WAIT: Duration = Duration::from_secs(20);

/// A client without a total timeout: a stream is read for as long as a test wants.
fn stream_client() -> reqwest::Client {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("client")
}

/// `GET /api/v1/events{query}` on `address` (host:port) with the read token.
async fn request(address: &str, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request =
        stream_client().get(format!("http://{address}/api/v1/events{query}")).bearer_auth(READ_TOKEN);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("the service answers")
}

/// A stream, read up to its opening (the `retry:` and, from now, the
/// position block), so that everything committed afterwards is on it.
async fn open(address: &str, query: &str, last_event_id: Option<&str>) -> SseStream {
    let mut stream = SseStream::new(request(address, query, last_event_id).await);
    // The opening blocks are sent at once, before any event.
    assert!(
        stream.opened(last_event_id.is_none() && !query.contains("since"), WAIT).await,
        "the stream opens"
    );
    assert_eq!(stream.retry(), Some(3000), "the stream tells browsers when to reconnect");
    stream
}

fn address_of(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Every event after event `after` (0: all), in feed order.
async fn stored_after(db_url: &str, after: i64) -> Vec<i64> {
    let mut conn = connect(db_url).await;
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT e.id FROM change_events e \
         WHERE $1 = 0 OR (e.xid, e.id) > (SELECT xid, id FROM change_events WHERE id = $1) \
         ORDER BY e.xid, e.id",
    )
    .bind::<BigInt, _>(after)
    .load(&mut conn)
    .await
    .expect("events");
    rows.into_iter().map(|row| row.id).collect()
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A stored PR of repository 1, inserted directly: what a sync would write.
fn insert_pr(number: i32) -> String {
    format!(
        "INSERT INTO pull_requests (repository_id, github_id, number, title, author, state, base_branch, \
                                    base_sha, head_branch, head_sha, html_url, gh_created_at, gh_updated_at) \
         VALUES (1, {github_id}, {number}, 'PR {number}', 'alice', 'open', 'main', 'b', 'f{number}', 'h{number}', \
                 'https://example.test/{number}', now(), now())",
        github_id = 9000 + number
    )
}

/// A stream after every event stored so far. "From now" would do in
/// production, but here other tests' transactions on the same server may
/// still hold the setup's events back, which then arrive after "now".
async fn open_after_setup(app: &TestApp) -> SseStream {
    let newest = count(&app.db.url, "SELECT coalesce(max(id), 0) FROM change_events").await;
    open(&address_of(app), &format!("?since={newest}"), None).await
}

async fn app_with_repository(extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("PRMONITOR_READ_TOKEN", READ_TOKEN)];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(&settings).await;
    let mut conn = connect(&app.db.url).await;
    execute(&mut conn, "INSERT INTO repositories (id, github_id, owner, name) VALUES (1, 77, 'octo', 'api')")
        .await;
    app
}

#[tokio::test]
async fn a_pr_opened_and_a_check_completed_reach_a_stream_with_their_data() {
    let world = TestWorld::with_repos(2).await;
    let mut stream = open(world.address(), "", None).await;
    let pr = world.github.open_pr(REPO, NewPr::new("Live on the board", "alice"));
    // Stored before its check runs, so that they name it.
    world.settle().await;
    let head = world.github.head(REPO, pr);
    let run = world.github.check(REPO, &head, "build", "failure");
    world.settle().await;
    let events = stream
        .events_until(WAIT, |events| {
            events.iter().any(|e| e.event == "pull_request")
                && events.iter().any(|e| e.event == "check_run" && e.json()["data"]["status"] == "completed")
        })
        .await;
    let opened = events
        .iter()
        .map(Event::json)
        .find(|e| e["kind"] == "pull_request" && e["data"]["change"] == "new")
        .unwrap_or_else(|| panic!("no pull_request event: {events:?}"));
    assert_eq!(opened["repository"], REPO);
    assert_eq!(opened["number"], pr);
    assert_eq!(opened["head_sha"], head.as_str());
    assert_eq!(opened["data"]["title"], "Live on the board");
    assert_eq!(opened["data"]["state"], "open");
    assert_eq!(opened["data"]["draft"], false);
    assert_eq!(opened["data"]["author"], "alice");
    let completed = events
        .iter()
        .map(Event::json)
        .find(|e| e["kind"] == "check_run" && e["data"]["status"] == "completed")
        .expect("the completion");
    assert_eq!(completed["repository"], REPO);
    assert_eq!(completed["head_sha"], head.as_str());
    assert_eq!(completed["data"]["check_run_id"], run);
    assert_eq!(completed["data"]["name"], "build");
    assert_eq!(completed["data"]["conclusion"], "failure");
    assert_eq!(completed["data"]["pull_requests"], serde_json::json!([pr]), "the check names its PR");
    for event in &events {
        // The SSE id, the event type and the JSON agree.
        let json = event.json();
        assert_eq!(json["id"], event.id_number());
        assert_eq!(json["kind"], event.event.as_str());
        assert!(json["recorded_at"].is_string());
    }
    world.finish().await;
}

#[tokio::test]
async fn a_client_that_reconnects_with_its_last_event_id_misses_nothing_and_sees_nothing_twice() {
    let world = TestWorld::with_repos(2).await;
    let mut first = open(world.address(), "", None).await;
    let start: i64 = first.last_event_id().expect("the stream gives its position").parse().expect("a number");
    let github = &world.github;
    // Changes keep being committed while the client is away.
    let changes = async {
        for i in 0..12 {
            let repo = if i % 2 == 0 { "acme/repo-0" } else { "acme/repo-1" };
            let pr = github.open_pr(repo, NewPr::new(&format!("change {i}"), "bob"));
            github.check(repo, &github.head(repo, pr), "test", "success");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let address = world.address().to_owned();
    let reconnecting = async move {
        let before = first.events_until(WAIT, |events| events.len() >= 5).await;
        assert!(before.len() >= 5, "events arrive while changes are made: {before:?}");
        let last = before.last().and_then(|e| e.id.clone()).expect("an id");
        drop(first);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let second = open(&address, "", Some(&last)).await;
        (before, second)
    };
    let ((), (before, mut second)) = tokio::join!(changes, reconnecting);
    world.settle().await;
    let expected = stored_after(&world.db.url, start).await;
    let already = before.len();
    let after = second.events_until(WAIT, |events| already + events.len() >= expected.len()).await;
    let received: Vec<i64> = before.iter().chain(&after).map(Event::id_number).collect();
    let unique: HashSet<i64> = received.iter().copied().collect();
    assert_eq!(unique.len(), received.len(), "no event twice: {received:?}");
    assert_eq!(received, expected, "every committed event, in feed order");
    // At least each PR and its check run (a check run's steps may fold into one job).
    assert!(expected.len() >= 24, "{} events", expected.len());
    // Nothing more: the stream is quiet apart from heartbeats.
    assert_eq!(second.next_event(Duration::from_millis(500)).await, None);
    world.finish().await;
}

#[tokio::test]
async fn a_change_committed_by_one_instance_reaches_a_stream_of_another() {
    let world = TestWorld::with_repos(1).await;
    // The second instance serves HTTP only: the change is the first one's worker's.
    let pool = prmonitor::db::build_pool(&world.settings.database_url, 4).expect("pool");
    let other =
        Service::start(&world.settings, pool, Components { http: true, worker: false, scheduler: false })
            .expect("the second instance starts");
    let other_address = other.address().expect("http").to_string();
    assert_ne!(other_address, world.address());
    let mut stream = open(&other_address, "?repository=acme/repo-0", None).await;
    let pr = world.github.open_pr(REPO, NewPr::new("Seen everywhere", "carol"));
    world.settle().await;
    let events = stream.events_until(WAIT, |events| events.iter().any(|e| e.event == "pull_request")).await;
    let event = events.iter().find(|e| e.event == "pull_request").map(Event::json).expect("the PR's event");
    assert_eq!((&event["repository"], &event["number"]), (&serde_json::json!(REPO), &serde_json::json!(pr)));
    assert_eq!(event["data"]["title"], "Seen everywhere");
    // A graceful stop ends open streams instead of waiting out the
    // shutdown timeout for them.
    let started = Instant::now();
    other.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3), "the stop took {:?}", started.elapsed());
    assert!(stream.ends_within(Duration::from_secs(2)).await, "the stream ends with the instance");
    world.finish().await;
}

#[tokio::test]
async fn transactions_committing_out_of_id_order_lose_no_event_for_a_resumed_reader() {
    let app = app_with_repository(&[]).await;
    let address = address_of(&app);
    let mut reader = open_after_setup(&app).await;
    let (mut a, mut b) = (connect(&app.db.url).await, connect(&app.db.url).await);

    // B's transaction is the older one, but A takes the lower event id.
    execute(&mut b, "BEGIN").await;
    execute(&mut b, "SELECT pg_current_xact_id()").await;
    execute(&mut a, "BEGIN").await;
    execute(&mut a, "SELECT pg_current_xact_id()").await;
    execute(&mut a, &insert_pr(1)).await;
    execute(&mut b, &insert_pr(2)).await;
    execute(&mut b, "COMMIT").await;
    let seen = reader.events_until(WAIT, |events| !events.is_empty()).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].json()["number"], 2);
    let resume_from = seen[0].id.clone().expect("an id");
    // The client goes away; A commits the lower id after the one it saw.
    drop(reader);
    execute(&mut a, "COMMIT").await;
    let ids: Vec<i64> = stored_after(&app.db.url, 0).await;
    let (id_a, id_b) = (ids[ids.len() - 2..].to_vec(), resume_from.parse::<i64>().expect("a number"));
    assert!(id_a.iter().any(|id| *id < id_b), "A's event has the lower id: {ids:?}");
    let mut resumed = open(&address, "", Some(&resume_from)).await;
    let missed = resumed.events_until(WAIT, |events| !events.is_empty()).await;
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].json()["number"], 1, "the lower id committed later still comes");
    assert!(missed[0].id_number() < id_b);

    // And the other way round: an event waits while an older transaction
    // that took a lower id runs, then both come in feed order.
    execute(&mut a, "BEGIN").await;
    execute(&mut a, &insert_pr(3)).await;
    execute(&mut b, "BEGIN").await;
    execute(&mut b, &insert_pr(4)).await;
    execute(&mut b, "COMMIT").await;
    assert_eq!(
        resumed.next_event(Duration::from_millis(800)).await,
        None,
        "4 waits for the older transaction"
    );
    execute(&mut a, "COMMIT").await;
    let both = resumed.events_until(WAIT, |events| events.len() >= 2).await;
    let numbers: Vec<i64> = both.iter().map(|e| e.json()["number"].as_i64().expect("number")).collect();
    assert_eq!(numbers, [3, 4]);
    // A rolled-back transaction leaves no event.
    execute(&mut a, "BEGIN").await;
    execute(&mut a, &insert_pr(5)).await;
    execute(&mut a, "ROLLBACK").await;
    assert_eq!(resumed.next_event(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn malformed_unknown_and_unauthenticated_requests_are_refused_clearly() {
    let app = app_with_repository(&[]).await;
    let address = address_of(&app);
    let client = stream_client();
    let url = format!("http://{address}/api/v1/events");
    for token in [None, Some("wrong")] {
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), 401, "token {token:?}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert!(body["error"].is_string());
    }
    let long = "9".repeat(20);
    let huge = "1".repeat(4000);
    for (query, header, needle) in [
        ("?since=abc", None, "since"),
        ("?since=-1", None, "since"),
        ("?since=%2B1", None, "since"),
        ("?since=", None, "since"),
        (&format!("?since={long}") as &str, None, "since"),
        ("?since=1%00", None, "since"),
        ("?since=1&colour=red", None, "unknown"),
        ("?repository=octo", None, "owner/name"),
        ("?repository=octo/api/x", None, "owner/name"),
        ("?repository=octo/a%00pi", None, "NUL"),
        ("", Some("abc"), "Last-Event-ID"),
        ("", Some("-5"), "Last-Event-ID"),
        ("", Some(long.as_str()), "Last-Event-ID"),
        ("", Some(huge.as_str()), "Last-Event-ID"),
        // The header wins: a good since does not excuse a bad header.
        ("?since=1", Some("1.5"), "Last-Event-ID"),
    ] {
        let response = request(&address, query, header).await;
        assert_eq!(response.status(), 400, "{query} {header:?}");
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{query} {header:?}: {message}");
    }
    let response = request(&address, "?repository=octo/nope", None).await;
    assert_eq!(response.status(), 404);
    // A known repository, matched as GitHub does, case-insensitively.
    let stream = open(&address, "?repository=Octo/API", None).await;
    drop(stream);
}

#[tokio::test]
async fn streams_are_bounded_and_a_closed_one_gives_its_slot_back() {
    let app = app_with_repository(&[("PRMONITOR_CHANGE_FEED_MAX_CLIENTS", "1")]).await;
    let address = address_of(&app);
    let first = open(&address, "", None).await;
    let refused = request(&address, "", None).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert!(body["error"].as_str().unwrap_or_default().contains("1 change feed streams"), "{body}");
    drop(first);
    // The server notices the closed connection and drops the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dropped = Instant::now();
    loop {
        let response = request(&address, "", None).await;
        if response.status() == 200 {
            println!("the slot came back {:?} after the client left", dropped.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's slot never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn resuming_from_a_pruned_event_starts_with_reset() {
    let app = app_with_repository(&[]).await;
    let address = address_of(&app);
    let mut conn = connect(&app.db.url).await;
    execute(&mut conn, &insert_pr(1)).await;
    let old = *stored_after(&app.db.url, 0).await.last().expect("an event");
    // Two days old: past the retention, pruned by the scheduler's housekeeping.
    execute(&mut conn, "UPDATE change_events SET recorded_at = now() - interval '2 days'").await;
    execute(&mut conn, &insert_pr(2)).await;
    let settings = prmonitor_testkit::test_settings(&app.db, &[]);
    let pool = prmonitor::db::build_pool(&settings.database_url, 2).expect("pool");
    Scheduler::new(pool, settings.worker.clone(), &settings.github)
        .housekeeping()
        .await
        .expect("housekeeping");
    assert_eq!(count(&app.db.url, &format!("SELECT count(*) FROM change_events WHERE id <= {old}")).await, 0);
    let kept = stored_after(&app.db.url, 0).await;
    assert_eq!(kept.len(), 1, "the newer event is kept");

    let mut stream = open(&address, &format!("?since={old}"), None).await;
    let reset = stream.next_event(WAIT).await.expect("an event");
    assert_eq!(reset.event, "reset");
    assert!(reset.json()["reason"].as_str().unwrap_or_default().contains("reload"));
    // Where to follow from: the newest event served, or the start when it
    // is still held back by an older transaction anywhere on the server
    // (other tests' databases share the server's transaction ids).
    let follow_from = reset.id_number();
    assert!(follow_from == kept[0] || follow_from == 0, "reset id {follow_from}, kept {kept:?}");
    execute(&mut conn, &insert_pr(3)).await;
    let next = stream.events_until(WAIT, |events| events.iter().any(|e| e.json()["number"] == 3)).await;
    let numbers: Vec<_> = next.iter().map(|e| e.json()["number"].as_i64().expect("number")).collect();
    let expected: &[i64] = if follow_from == 0 { &[2, 3] } else { &[3] };
    assert_eq!(numbers, expected);
    // since=0 replays everything kept, without a reset.
    let mut all = open(&address, "?since=0", None).await;
    let replayed = all.events_until(WAIT, |events| events.len() >= 2).await;
    let numbers: Vec<_> = replayed.iter().map(|e| e.json()["number"].clone()).collect();
    assert_eq!(numbers, [serde_json::json!(2), serde_json::json!(3)]);
}

#[tokio::test]
async fn an_upsert_or_a_sweep_that_changes_nothing_writes_no_event() {
    let world = TestWorld::with_repos(1).await;
    let pr = world.github.open_pr(REPO, NewPr::new("Unchanged", "dave"));
    world.github.check(REPO, &world.github.head(REPO, pr), "lint", "success");
    world.settle().await;
    let events = |kinds: &'static str| format!("SELECT count(*) FROM change_events WHERE kind IN ({kinds})");
    let rows = world.count(&events("'pull_request', 'check_run'")).await;
    assert!(rows >= 2, "the PR and its check made events");
    let rows_before_rewrites = world.count("SELECT coalesce(max(id), 0) FROM change_events").await;
    let mut stream = open(world.address(), "", None).await;
    // Rewrites of identical values, as a guard-passing upsert does, and a
    // job's bookkeeping.
    let mut conn = connect(&world.db.url).await;
    execute(
        &mut conn,
        "UPDATE pull_requests SET title = title, gh_updated_at = gh_updated_at, last_changed_at = now()",
    )
    .await;
    execute(
        &mut conn,
        "UPDATE check_runs SET status = status, conclusion = conclusion, last_changed_at = now()",
    )
    .await;
    execute(&mut conn, "UPDATE repositories SET last_synced_at = now(), updated_at = now()").await;
    // A sweep that reads GitHub again; the first may store what only
    // sweeps read (a branch's required checks), the second finds
    // everything as stored.
    world.api.reconcile_all().await;
    world.settle().await;
    let newest = world.count("SELECT coalesce(max(id), 0) FROM change_events").await;
    world.api.reconcile_all().await;
    world.settle().await;
    assert_eq!(world.count(&events("'pull_request', 'check_run'")).await, rows, "nothing changed");
    // The second sweep finishing is its one event.
    let since = |sql: &str| format!("{sql} WHERE id > {newest}");
    assert_eq!(world.count(&since("SELECT count(*) FROM change_events")).await, 1);
    let swept = world.count(&since("SELECT max(id) FROM change_events")).await;
    let seen = stream.events_until(WAIT, |events| events.iter().any(|e| e.id_number() == swept)).await;
    let sweep = seen.last().expect("the second sweep's event").json();
    assert_eq!(sweep["kind"], "repository");
    assert_eq!(sweep["data"]["changed"], serde_json::json!(["last_swept_at"]));
    // Before it on the stream, only what the first sweep and the identical
    // rewrites may have made: the first sweep's bookkeeping.
    assert!(seen.iter().all(|e| e.id_number() <= newest || e.id_number() == swept), "{seen:?}");
    assert!(stream.seen.iter().all(|item| {
        !matches!(item, Item::Event(e) if e.id_number() > rows_before_rewrites && (e.event == "pull_request" || e.event == "check_run"))
    }));
    world.finish().await;
}

#[tokio::test]
async fn a_backfill_of_thousands_of_rows_reaches_a_slow_stream_whole_and_in_order() {
    let app = app_with_repository(&[]).await;
    let mut stream = open_after_setup(&app).await;
    let mut conn = connect(&app.db.url).await;
    // One statement, one INSERT … SELECT of events: more than the channel
    // holds, so a stream that reads slowly falls behind and reads the table.
    let started = Instant::now();
    execute(
        &mut conn,
        "INSERT INTO pull_requests (repository_id, github_id, number, title, author, state, base_branch, \
                                    base_sha, head_branch, head_sha, html_url, gh_created_at, gh_updated_at) \
         SELECT 1, 100000 + n, n, 'PR ' || n, 'alice', 'open', 'main', 'b', 'f' || n, 'h' || n, \
                'https://example.test/' || n, now(), now() \
         FROM generate_series(1, 6000) AS n",
    )
    .await;
    println!("6,000 rows with their events in {:?}", started.elapsed());
    // Let the listener publish everything before the client reads a byte.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = stream.events_until(Duration::from_secs(60), |events| events.len() >= 6000).await;
    let numbers: Vec<i64> = events.iter().map(|e| e.json()["number"].as_i64().expect("number")).collect();
    assert_eq!(numbers, (1..=6000).collect::<Vec<i64>>(), "every row once, in order");
    assert_eq!(stream.next_event(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn merge_groups_statuses_and_a_merge_reach_the_stream_of_their_repository() {
    let world = TestWorld::with_repos(2).await;
    let number = world.github.open_pr(REPO, NewPr::new("Queue me", "erin"));
    world.settle().await;
    let mut stream = open(world.address(), "?repository=acme/repo-0", None).await;
    let group = world.github.enqueue(REPO, number).expect("queued");
    world.github.0.set_status(REPO, &group, "ci/jenkins", "success", None).expect("status");
    world.settle().await;
    world.github.dequeue(REPO, number, "dequeued").expect("dequeued");
    // Another repository's change is not on this stream.
    world.github.open_pr("acme/repo-1", NewPr::new("Elsewhere", "erin"));
    world.settle().await;
    let ended = |e: &Event| e.event == "merge_group" && e.json()["data"]["state"] == "dequeued";
    let events = stream.events_until(WAIT, |events| events.iter().any(ended)).await;
    assert!(events.iter().all(|e| e.json()["repository"] == REPO), "{events:?}");
    let queued = events
        .iter()
        .map(Event::json)
        .find(|e| e["kind"] == "merge_group" && e["data"]["change"] == "new")
        .unwrap_or_else(|| panic!("no new merge group: {events:?}"));
    assert_eq!(
        (&queued["number"], &queued["head_sha"]),
        (&serde_json::json!(number), &serde_json::json!(group))
    );
    assert_eq!(queued["data"]["state"], "queued");
    let dequeued = events.iter().find(|e| ended(e)).map(Event::json).expect("the end");
    assert_eq!(dequeued["data"]["reason"], "dequeued");
    assert!(dequeued["data"]["changed"].as_array().expect("changed").contains(&serde_json::json!("state")));
    let status = events
        .iter()
        .map(Event::json)
        .find(|e| e["kind"] == "status")
        .unwrap_or_else(|| panic!("no status: {events:?}"));
    assert_eq!(
        (&status["head_sha"], &status["data"]["context"]),
        (&serde_json::json!(group), &serde_json::json!("ci/jenkins"))
    );
    assert_eq!(status["data"]["state"], "success");
    world.finish().await;
}

#[tokio::test]
async fn a_pr_marked_gone_and_a_failing_repository_are_events_too() {
    let app = app_with_repository(&[]).await;
    let mut conn = connect(&app.db.url).await;
    execute(&mut conn, &insert_pr(1)).await;
    let mut stream = open_after_setup(&app).await;
    // What mark_gone and a failed sync write.
    execute(
        &mut conn,
        "UPDATE pull_requests SET deleted_at = now(), last_changed_at = now() WHERE number = 1",
    )
    .await;
    let pool = prmonitor::db::build_pool(&app.db.database_url(), 1).expect("pool");
    let mut pooled = pool.get().await.expect("a connection");
    prmonitor::db::repositories::record_failure(
        &mut pooled,
        prmonitor::ids::RepositoryId(1),
        "GitHub said 502",
    )
    .await
    .expect("recorded");
    let events = stream.events_until(WAIT, |events| events.len() >= 2).await;
    let gone = events[0].json();
    assert_eq!((gone["kind"].as_str(), gone["number"].as_i64()), (Some("pull_request"), Some(1)));
    assert_eq!(gone["data"]["change"], "gone");
    assert_eq!(gone["data"]["gone"], true);
    let failing = events[1].json();
    assert_eq!(failing["kind"], "repository");
    assert_eq!(failing["repository"], "octo/api");
    assert_eq!(failing["data"]["consecutive_failures"], 1);
    assert_eq!(failing["data"]["last_failure_reason"], "GitHub said 502");
}
