//! The `webhook_deliveries` log: one row per verified delivery id.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::webhook_deliveries;
use crate::ids::{GithubRepoId, InstallationId};

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
    pub installation_id: Option<InstallationId>,
    pub repository_github_id: Option<GithubRepoId>,
    pub repository_full_name: Option<&'a str>,
    pub outcome: &'static str,
    pub job_id: Option<i64>,
    pub payload: Option<&'a [u8]>,
    pub payload_size: i32,
    pub headers: Option<&'a serde_json::Value>,
}

/// Inserts the deliveries whose ids are not stored yet; returns the ids it
/// inserted. A concurrent insert of the same id waits for the other
/// transaction and then leaves the id out, so a delivery is never stored twice.
///
/// The rows travel as one array per column: the statement text is the same
/// for any number of rows, so PostgreSQL parses and plans it once per
/// connection instead of once per batch (planning a many-row `VALUES` list
/// was a visible share of intake's profile).
pub async fn insert_new(conn: &mut AsyncPgConnection, rows: &[NewDelivery<'_>]) -> QueryResult<Vec<String>> {
    use diesel::sql_types::{Array, BigInt, Binary, Integer, Jsonb, Nullable, Text};

    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = Text)]
        delivery_id: String,
    }

    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO webhook_deliveries (delivery_id, event, action, installation_id, repository_github_id, \
                                         repository_full_name, outcome, job_id, payload, payload_size, \
                                         headers) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], \
                              $7::text[], $8::int8[], $9::bytea[], $10::int4[], $11::jsonb[]) \
         ON CONFLICT (delivery_id) DO NOTHING \
         RETURNING delivery_id",
    )
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.delivery_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.event).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.action).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(rows.iter().map(|r| r.installation_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(rows.iter().map(|r| r.repository_github_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|r| r.repository_full_name).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.outcome).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(rows.iter().map(|r| r.job_id).collect::<Vec<_>>())
    .bind::<Array<Nullable<Binary>>, _>(rows.iter().map(|r| r.payload).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(rows.iter().map(|r| r.payload_size).collect::<Vec<_>>())
    .bind::<Array<Nullable<Jsonb>>, _>(rows.iter().map(|r| r.headers).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(inserted.into_iter().map(|row| row.delivery_id).collect())
}

/// The id, event and raw body of the deliveries folded into job `job_id`,
/// oldest first, at most `limit` of them.
pub async fn payloads_of_job(
    conn: &mut AsyncPgConnection,
    job_id: i64,
    limit: i64,
) -> QueryResult<Vec<(String, String, Option<Vec<u8>>)>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::job_id.eq(job_id))
        .order(webhook_deliveries::received_at.asc())
        .select((webhook_deliveries::delivery_id, webhook_deliveries::event, webhook_deliveries::payload))
        .limit(limit)
        .load(conn)
        .await
}
