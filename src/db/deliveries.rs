//! The `webhook_deliveries` log: one row per verified delivery id.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::webhook_deliveries;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Stored with a job that will process it.
    Queued,
    /// An event prmonitor does not track.
    Ignored,
    /// GitHub's `ping` on hook creation.
    Ping,
    /// Its job finished.
    Processed,
    /// Its job was dead-lettered.
    Failed,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ignored => "ignored",
            Self::Ping => "ping",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct NewDelivery<'a> {
    pub delivery_id: &'a str,
    pub event: &'a str,
    pub action: Option<&'a str>,
    pub installation_id: Option<i64>,
    pub repository_github_id: Option<i64>,
    pub repository_full_name: Option<&'a str>,
    pub outcome: &'static str,
    pub job_id: Option<i64>,
    pub payload: Option<&'a [u8]>,
    pub payload_size: i32,
}

/// Inserts the deliveries whose ids are not stored yet; returns the ids it
/// inserted. A concurrent insert of the same id waits for the other
/// transaction and then leaves the id out, so a delivery is never stored twice.
pub async fn insert_new(conn: &mut AsyncPgConnection, rows: &[NewDelivery<'_>]) -> QueryResult<Vec<String>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(webhook_deliveries::table)
        .values(rows)
        .on_conflict(webhook_deliveries::delivery_id)
        .do_nothing()
        .returning(webhook_deliveries::delivery_id)
        .get_results(conn)
        .await
}

/// The event and raw body of the deliveries folded into job `job_id`, oldest
/// first, at most `limit` of them.
pub async fn payloads_of_job(
    conn: &mut AsyncPgConnection,
    job_id: i64,
    limit: i64,
) -> QueryResult<Vec<(String, Option<Vec<u8>>)>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::job_id.eq(job_id))
        .order(webhook_deliveries::received_at.asc())
        .select((webhook_deliveries::event, webhook_deliveries::payload))
        .limit(limit)
        .load(conn)
        .await
}
