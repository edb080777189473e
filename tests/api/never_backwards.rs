//! Rule 4, never backwards: the upserts' SQL guards and change detection's
//! Rust predicates are one rule (`prmonitor::monitor::forward`). Each guard
//! runs here in PostgreSQL over every combination of its inputs, and every
//! verdict must be the predicate's.

use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use prmonitor::monitor::forward::{self, CheckRunVersion, PrVersion};

use prmonitor_testkit::{connect, TestDatabase};

#[derive(QueryableByName)]
struct Verdict {
    #[diesel(sql_type = BigInt)]
    i: i64,
    #[diesel(sql_type = Nullable<Bool>)]
    may_replace: Option<bool>,
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("time") + Duration::seconds(second)
}

/// The guard's verdicts, in case order. A NULL verdict is a refusal, as
/// `WHERE` reads it.
fn verdicts(rows: Vec<Verdict>, cases: usize) -> Vec<bool> {
    assert_eq!(rows.len(), cases);
    rows.iter().enumerate().for_each(|(n, row)| assert_eq!(row.i, n as i64 + 1));
    rows.into_iter().map(|row| row.may_replace.unwrap_or(false)).collect()
}

#[tokio::test]
async fn the_pull_request_guard_in_sql_and_in_rust_agree_on_every_case() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    // Every stored state against every incoming one, older, as old and newer;
    // `bogus` stands for any text the state column might hold.
    let states = ["open", "closed", "merged", "bogus"];
    let mut cases = Vec::new();
    for stored in states {
        for incoming in states {
            for second in [-1, 0, 1] {
                cases.push((
                    PrVersion { updated_at: at(0), state: stored },
                    PrVersion { updated_at: at(second), state: incoming },
                ));
            }
        }
    }
    // The guard as the upsert carries it: `pull_requests` is the stored row,
    // `excluded` the incoming one.
    let sql = format!(
        "SELECT c.i, ({}) AS may_replace \
         FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS c(stored_at, stored_state, incoming_at, incoming_state, i) \
         CROSS JOIN LATERAL (SELECT c.stored_at AS gh_updated_at, c.stored_state AS state) AS pull_requests \
         CROSS JOIN LATERAL (SELECT c.incoming_at AS gh_updated_at, c.incoming_state AS state) AS excluded \
         ORDER BY c.i",
        forward::pr_guard_sql()
    );
    let rows: Vec<Verdict> = diesel::sql_query(sql)
        .bind::<Array<Timestamptz>, _>(cases.iter().map(|(s, _)| s.updated_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(cases.iter().map(|(s, _)| s.state).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(cases.iter().map(|(_, n)| n.updated_at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(cases.iter().map(|(_, n)| n.state).collect::<Vec<_>>())
        .load(&mut conn)
        .await
        .expect("the guard runs");
    let sql_verdicts = verdicts(rows, cases.len());
    for ((stored, incoming), in_sql) in cases.iter().zip(sql_verdicts) {
        assert_eq!(
            forward::pr_may_replace(*stored, *incoming),
            in_sql,
            "stored {stored:?}, incoming {incoming:?}"
        );
    }
    // The cases cover both answers of each part of the rule.
    let merged = |state| PrVersion { updated_at: at(1), state };
    assert!(!forward::pr_may_replace(merged("merged"), PrVersion { updated_at: at(0), state: "merged" }));
    assert!(!forward::pr_may_replace(merged("merged"), merged("closed")));
    assert!(forward::pr_may_replace(merged("closed"), merged("open")));
}

#[tokio::test]
async fn the_check_run_guard_in_sql_and_in_rust_agree_on_every_case() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    // Every status GitHub documents, ours for the rest, and text neither knows;
    // every pair of completion times (none, earlier, the same, later).
    let statuses =
        ["queued", "in_progress", "completed", "waiting", "requested", "pending", "unknown", "exploded"];
    let times = [None, Some(at(-1)), Some(at(0)), Some(at(1))];
    let mut cases = Vec::new();
    for stored in statuses {
        for incoming in statuses {
            for stored_at in [None, Some(at(0))] {
                for incoming_at in times {
                    cases.push((
                        CheckRunVersion { status: stored, completed_at: stored_at },
                        CheckRunVersion { status: incoming, completed_at: incoming_at },
                    ));
                }
            }
        }
    }
    let sql = format!(
        "SELECT c.i, ({}) AS may_replace \
         FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS c(stored_status, stored_at, incoming_status, incoming_at, i) \
         CROSS JOIN LATERAL (SELECT c.stored_status AS status, c.stored_at AS gh_completed_at) AS check_runs \
         CROSS JOIN LATERAL (SELECT c.incoming_status AS status, c.incoming_at AS gh_completed_at) AS excluded \
         ORDER BY c.i",
        forward::check_run_guard_sql()
    );
    let rows: Vec<Verdict> = diesel::sql_query(sql)
        .bind::<Array<Text>, _>(cases.iter().map(|(s, _)| s.status).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            cases.iter().map(|(s, _)| s.completed_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(cases.iter().map(|(_, n)| n.status).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            cases.iter().map(|(_, n)| n.completed_at).collect::<Vec<_>>(),
        )
        .load(&mut conn)
        .await
        .expect("the guard runs");
    let sql_verdicts = verdicts(rows, cases.len());
    let refused = sql_verdicts.iter().filter(|v| !**v).count();
    for ((stored, incoming), in_sql) in cases.iter().zip(sql_verdicts) {
        assert_eq!(
            forward::check_run_may_replace(*stored, *incoming),
            in_sql,
            "stored {stored:?}, incoming {incoming:?}"
        );
    }
    assert!(refused > 0 && refused < cases.len(), "the cases cover both answers");
}

#[tokio::test]
async fn the_status_guard_in_sql_lets_through_all_the_rust_rule_does_and_only_what_the_lock_decides() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let ids = [None, Some(1_i64), Some(2)];
    let mut cases = Vec::new();
    for stored_id in ids {
        for incoming_id in ids {
            for second in [-1, 0, 1] {
                cases.push((
                    forward::StatusVersion { created_at: at(0), github_id: stored_id, at: None },
                    forward::StatusVersion { created_at: at(second), github_id: incoming_id, at: None },
                ));
            }
        }
    }
    let sql = format!(
        "SELECT c.i, ({}) AS may_replace \
         FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS c(stored_at, stored_id, incoming_at, incoming_id, i) \
         CROSS JOIN LATERAL (SELECT c.stored_at AS gh_created_at, c.stored_id AS github_id) AS commit_statuses \
         CROSS JOIN LATERAL (SELECT c.incoming_at AS gh_created_at, c.incoming_id AS github_id) AS excluded \
         ORDER BY c.i",
        forward::status_guard_sql()
    );
    let rows: Vec<Verdict> = diesel::sql_query(sql)
        .bind::<Array<Timestamptz>, _>(cases.iter().map(|(s, _)| s.created_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(cases.iter().map(|(s, _)| s.github_id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(cases.iter().map(|(_, n)| n.created_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(cases.iter().map(|(_, n)| n.github_id).collect::<Vec<_>>())
        .load(&mut conn)
        .await
        .expect("the guard runs");
    for ((stored, incoming), in_sql) in cases.iter().zip(verdicts(rows, cases.len())) {
        let in_rust = forward::status_may_replace(*stored, *incoming);
        // The one case the statement cannot judge (it does not see when a
        // read began): a status without an id on a tie with one that has an
        // id. The synchronizer decides it under the repository's lock.
        let lock_decides = stored.github_id.is_some()
            && incoming.github_id.is_none()
            && stored.created_at == incoming.created_at;
        if lock_decides {
            assert!(in_sql && !in_rust, "stored {stored:?}, incoming {incoming:?}");
        } else {
            assert_eq!(in_rust, in_sql, "stored {stored:?}, incoming {incoming:?}");
        }
    }
}
