//! The change feed's table: the events the triggers of migration
//! `2026-12-08-000001_change_events` write, read in the order in which no
//! event can ever appear behind one already served.
//!
//! Ids are taken at insert, not at commit: transaction A may take id 10,
//! B id 11, and B commit first. Reading "id > last" would then skip 10 for
//! good. So events are served by [`Position`], (transaction id, id), and only
//! those of transactions older than every transaction still running
//! (`xid < pg_snapshot_xmin(pg_current_snapshot())`): every such transaction
//! has ended, and any event committed later belongs to a transaction at or
//! above that horizon, so it sorts after everything served. Within one
//! transaction the ids keep the order of its statements.
//!
//! The cost of the rule: an event waits until every older transaction has
//! ended (milliseconds for the service's own transactions; a session left
//! idle in a transaction that wrote something holds the feed back).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::ids::RepositoryId;

/// Where an event sits in the feed: ordered by the writing transaction,
/// then by id. Serving in this order, only up to the oldest running
/// transaction, is what makes resuming after a position lossless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub xid: u64,
    pub id: i64,
}

impl Position {
    /// Before every event: where a reader asking for everything starts.
    pub const START: Self = Self { xid: 0, id: 0 };
}

/// One committed change, as a feed client receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub position: Position,
    pub kind: String,
    pub repository_id: RepositoryId,
    /// `owner/name` as stored now.
    pub repository: String,
    pub pr_number: Option<i32>,
    pub head_sha: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl FeedEvent {
    pub fn id(&self) -> i64 {
        self.position.id
    }

    /// The event's JSON on one line (serde_json escapes every newline), as
    /// an SSE `data:` field must be.
    pub fn json(&self) -> String {
        serde_json::json!({
            "id": self.position.id,
            "kind": self.kind,
            "repository": self.repository,
            "number": self.pr_number,
            "head_sha": self.head_sha,
            "recorded_at": self.recorded_at,
            "data": self.data,
        })
        .to_string()
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    xid: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    repository_id: i64,
    #[diesel(sql_type = Text)]
    repository: String,
    #[diesel(sql_type = Nullable<Integer>)]
    pr_number: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    head_sha: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    recorded_at: DateTime<Utc>,
    #[diesel(sql_type = Jsonb)]
    data: serde_json::Value,
    #[diesel(sql_type = Bool)]
    ready: bool,
}

/// A transaction id as PostgreSQL prints it: xid8 has no diesel type, so it
/// travels as text. A value that does not parse cannot come from the column.
fn parse_xid(text: &str) -> Result<u64, diesel::result::Error> {
    text.parse().map_err(|_| {
        diesel::result::Error::DeserializationError(format!("not a transaction id: {text:?}").into())
    })
}

/// The committed events after `after` that are safe to serve (see the
/// module), at most `limit`, in feed order; and whether committed events
/// beyond them wait for an older transaction to end (read again soon).
pub async fn read_after(
    conn: &mut AsyncPgConnection,
    after: Position,
    limit: i64,
) -> Result<(Vec<FeedEvent>, bool), diesel::result::Error> {
    // `ready` in the same statement as the read: the horizon is that of the
    // snapshot the rows come from.
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT e.id, e.xid::text AS xid, e.kind, e.repository_id, r.owner || '/' || r.name AS repository, \
                e.pr_number, e.head_sha, e.recorded_at, e.data, \
                e.xid < pg_snapshot_xmin(pg_current_snapshot()) AS ready \
         FROM change_events e JOIN repositories r ON r.id = e.repository_id \
         WHERE (e.xid, e.id) > ($1::xid8, $2) \
         ORDER BY e.xid, e.id \
         LIMIT $3",
    )
    .bind::<Text, _>(after.xid.to_string())
    .bind::<BigInt, _>(after.id)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    let mut waiting = false;
    for row in rows {
        // In xid order the ready rows come first; the first one not ready
        // and everything after it wait.
        if !row.ready {
            waiting = true;
            break;
        }
        events.push(FeedEvent {
            position: Position { xid: parse_xid(&row.xid)?, id: row.id },
            kind: row.kind,
            repository_id: RepositoryId(row.repository_id),
            repository: row.repository,
            pr_number: row.pr_number,
            head_sha: row.head_sha,
            recorded_at: row.recorded_at,
            data: row.data,
        });
    }
    Ok((events, waiting))
}

#[derive(QueryableByName)]
struct PositionRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    xid: String,
}

/// The position of the newest event that is safe to serve: "now" for a
/// reader that wants only what comes next. [`Position::START`] when there is
/// none, which loses nothing: everything committed later sorts after it.
pub async fn tail(conn: &mut AsyncPgConnection) -> Result<Position, diesel::result::Error> {
    let rows: Vec<PositionRow> = diesel::sql_query(
        "SELECT id, xid::text AS xid FROM change_events \
         WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY xid DESC, id DESC LIMIT 1",
    )
    .load(conn)
    .await?;
    match <[PositionRow]>::first(&rows) {
        Some(row) => Ok(Position { xid: parse_xid(&row.xid)?, id: row.id }),
        None => Ok(Position::START),
    }
}

/// The position of event `id`, if it is still kept: where a client that
/// last saw it resumes.
pub async fn position_of(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> Result<Option<Position>, diesel::result::Error> {
    let rows: Vec<PositionRow> =
        diesel::sql_query("SELECT id, xid::text AS xid FROM change_events WHERE id = $1")
            .bind::<BigInt, _>(id)
            .load(conn)
            .await?;
    match <[PositionRow]>::first(&rows) {
        Some(row) => Ok(Some(Position { xid: parse_xid(&row.xid)?, id: row.id })),
        None => Ok(None),
    }
}

/// Deletes events recorded longer ago than `keep`; returns how many.
pub async fn purge(
    conn: &mut AsyncPgConnection,
    keep: std::time::Duration,
) -> Result<usize, diesel::result::Error> {
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    diesel::sql_query("DELETE FROM change_events WHERE recorded_at < $1")
        .bind::<Timestamptz, _>(cutoff)
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_id() {
        let a = Position { xid: 100, id: 11 };
        let b = Position { xid: 105, id: 10 };
        // B took the lower id but belongs to the younger transaction.
        assert!(a < b);
        assert!(Position::START < a);
        assert!(Position { xid: 100, id: 12 } > a);
    }

    #[test]
    fn an_event_is_one_line_of_json() {
        let event = FeedEvent {
            position: Position { xid: 7, id: 3 },
            kind: "pull_request".into(),
            repository_id: RepositoryId(1),
            repository: "octo/api".into(),
            pr_number: Some(5),
            head_sha: Some("abc".into()),
            recorded_at: Utc::now(),
            data: serde_json::json!({ "title": "two\nlines\r\n" }),
        };
        let line = event.json();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(parsed["id"], 3);
        assert_eq!(parsed["number"], 5);
        assert_eq!(parsed["repository"], "octo/api");
        assert_eq!(parsed["data"]["title"], "two\nlines\r\n");
    }
}
