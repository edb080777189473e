//! The `webhook_deliveries` log: one row per verified delivery id.

use chrono::{DateTime, Utc};
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
    /// Found missing and fetched from GitHub's deliveries API, its job not
    /// finished yet (then processed or failed, as a queued one).
    Recovered,
}

impl DeliveryOutcome {
    pub const ALL: [Self; 6] =
        [Self::Queued, Self::Ignored, Self::Ping, Self::Processed, Self::Failed, Self::Recovered];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ignored => "ignored",
            Self::Ping => "ping",
            Self::Processed => "processed",
            Self::Failed => "failed",
            Self::Recovered => "recovered",
        }
    }
}

/// Where a stored delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverySource {
    /// GitHub delivered it to intake (a redelivery included).
    Webhook,
    /// Fetched from the App's deliveries API by gap recovery.
    Recovery,
}

impl DeliverySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Recovery => "recovery",
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
    pub source: &'static str,
    pub github_delivered_at: Option<chrono::DateTime<chrono::Utc>>,
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
    use diesel::sql_types::{Array, BigInt, Binary, Integer, Jsonb, Nullable, Text, Timestamptz};

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
                                         source, github_delivered_at, headers) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], \
                              $7::text[], $8::int8[], $9::bytea[], $10::int4[], $11::text[], $12::timestamptz[], $13::jsonb[]) \
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
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.source).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(rows.iter().map(|r| r.github_delivered_at).collect::<Vec<_>>())
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
        // Recovered deliveries stored together share a receipt time: GitHub's
        // time of each orders them.
        .order((webhook_deliveries::received_at.asc(), webhook_deliveries::github_delivered_at.asc()))
        .select((webhook_deliveries::delivery_id, webhook_deliveries::event, webhook_deliveries::payload))
        .limit(limit)
        .load(conn)
        .await
}

/// Which of `ids` are stored (as delivered, recovered or ignored).
pub async fn stored_among(
    conn: &mut AsyncPgConnection,
    ids: &[&str],
) -> QueryResult<std::collections::HashSet<String>> {
    if ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let stored: Vec<String> = webhook_deliveries::table
        .filter(webhook_deliveries::delivery_id.eq_any(ids))
        .select(webhook_deliveries::delivery_id)
        .load(conn)
        .await?;
    Ok(stored.into_iter().collect())
}

/// A stored delivery as operators see it: every column but the payload
/// (its size is here; [`find`] reads the bytes).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<InstallationId>,
    pub repository_github_id: Option<GithubRepoId>,
    pub repository_full_name: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub job_id: Option<i64>,
    pub payload_size: i32,
    pub headers: Option<serde_json::Value>,
    /// `webhook` or `recovery` ([`DeliverySource`]).
    pub source: String,
    /// GitHub's time of the attempt, for recovered deliveries.
    pub github_delivered_at: Option<DateTime<Utc>>,
}

/// Which deliveries [`list`] shows; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// `owner/name`, compared case-insensitively as GitHub does.
    pub repository: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<DeliveryOutcome>,
    /// Received at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>);

/// The deliveries `filter` selects, newest first.
pub async fn list(conn: &mut AsyncPgConnection, filter: &DeliveryFilter) -> QueryResult<Vec<DeliveryRow>> {
    let mut query = webhook_deliveries::table.select(DeliveryRow::as_select()).into_boxed();
    if let Some(repository) = &filter.repository {
        query = query.filter(lower(webhook_deliveries::repository_full_name).eq(repository.to_lowercase()));
    }
    if let Some(event) = &filter.event {
        query = query.filter(webhook_deliveries::event.eq(event));
    }
    if let Some(outcome) = filter.outcome {
        query = query.filter(webhook_deliveries::outcome.eq(outcome.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(webhook_deliveries::received_at.ge(since));
    }
    query
        .order((webhook_deliveries::received_at.desc(), webhook_deliveries::delivery_id.desc()))
        .limit(filter.limit)
        .load(conn)
        .await
}

/// One delivery and its raw payload (`None` once the retention has pruned it).
pub async fn find(
    conn: &mut AsyncPgConnection,
    delivery_id: &str,
) -> QueryResult<Option<(DeliveryRow, Option<Vec<u8>>)>> {
    webhook_deliveries::table
        .find(delivery_id)
        .select((DeliveryRow::as_select(), webhook_deliveries::payload))
        .first(conn)
        .await
        .optional()
}

/// Points a delivery at `job_id`, to be processed again: `queued`, not
/// processed. Returns whether the delivery exists.
pub async fn requeue(conn: &mut AsyncPgConnection, delivery_id: &str, job_id: i64) -> QueryResult<bool> {
    let updated = diesel::update(webhook_deliveries::table.find(delivery_id))
        .set((
            webhook_deliveries::job_id.eq(job_id),
            webhook_deliveries::outcome.eq(DeliveryOutcome::Queued.as_str()),
            webhook_deliveries::processed_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(updated == 1)
}
