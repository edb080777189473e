//! The `http_cache` table: ETag / Last-Modified validators per (installation, URL).
//!
//! A validator is written only by the caller, in the transaction that stores
//! the data it came with: a 304 then truly means "what you stored is current".

use std::time::Duration;

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::http_cache;

/// What makes a GET conditional, and where its listing goes next.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = http_cache)]
pub struct Validator {
    pub installation_id: i64,
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub next_url: Option<String>,
}

impl Validator {
    /// Worth storing only when GitHub gave something to send back.
    pub fn is_useful(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

/// The oldest `last_used_at` still within `ttl`.
fn cutoff(ttl: Duration) -> chrono::DateTime<chrono::Utc> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now().checked_sub_signed(ttl).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// The validator for `url`, unless it went unused for longer than `ttl`.
pub async fn lookup(
    conn: &mut AsyncPgConnection,
    installation_id: i64,
    url: &str,
    ttl: Duration,
) -> QueryResult<Option<Validator>> {
    http_cache::table
        .filter(http_cache::installation_id.eq(installation_id))
        .filter(http_cache::url.eq(url))
        .filter(http_cache::last_used_at.gt(cutoff(ttl)))
        .select(Validator::as_select())
        .first(conn)
        .await
        .optional()
}

/// The validators of many URLs with one query, by URL.
pub async fn lookup_many(
    conn: &mut AsyncPgConnection,
    installation_id: i64,
    urls: &[String],
    ttl: Duration,
) -> QueryResult<std::collections::HashMap<String, Validator>> {
    let mut found = std::collections::HashMap::with_capacity(urls.len());
    for chunk in urls.chunks(10_000) {
        let rows: Vec<Validator> = http_cache::table
            .filter(http_cache::installation_id.eq(installation_id))
            .filter(http_cache::url.eq_any(chunk))
            .filter(http_cache::last_used_at.gt(cutoff(ttl)))
            .select(Validator::as_select())
            .load(conn)
            .await?;
        found.extend(rows.into_iter().map(|v| (v.url.clone(), v)));
    }
    Ok(found)
}

/// Stores validators (new ones, and those a 304 confirmed, which refreshes
/// their `last_used_at`); call it in the transaction that stored their data.
pub async fn save(conn: &mut AsyncPgConnection, validators: &[Validator]) -> QueryResult<usize> {
    let useful: Vec<&Validator> = validators.iter().filter(|v| v.is_useful()).collect();
    if useful.is_empty() {
        return Ok(0);
    }
    let mut saved = 0;
    // 5 bound columns a row: far below PostgreSQL's 65,535 parameters per statement.
    for chunk in useful.chunks(10_000) {
        saved += diesel::insert_into(http_cache::table)
            .values(chunk.iter().copied().cloned().collect::<Vec<_>>())
            .on_conflict((http_cache::installation_id, http_cache::url))
            .do_update()
            .set((
                http_cache::etag.eq(excluded(http_cache::etag)),
                http_cache::last_modified.eq(excluded(http_cache::last_modified)),
                http_cache::next_url.eq(excluded(http_cache::next_url)),
                http_cache::stored_at.eq(diesel::dsl::now),
                http_cache::last_used_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(saved)
}

/// Deletes the validators unused for longer than `ttl`.
pub async fn purge(conn: &mut AsyncPgConnection, ttl: Duration) -> QueryResult<usize> {
    diesel::delete(http_cache::table.filter(http_cache::last_used_at.le(cutoff(ttl)))).execute(conn).await
}
