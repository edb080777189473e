//! The `sweep_repairs` table: what sweeps and operators' reconciles changed,
//! which a webhook should have changed first (it was lost, or not processed
//! yet). Written in the sync's own transaction; read per repository by the
//! read API; kept for [`KEEP_REPAIRS`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use super::schema::sweep_repairs;
use crate::ids::RepositoryId;

/// How long repairs are kept: long enough to compare this week's losses with
/// last month's.
pub const KEEP_REPAIRS: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

#[derive(Debug, Insertable)]
#[diesel(table_name = sweep_repairs)]
struct NewRepair<'a> {
    repository_id: RepositoryId,
    kind: &'a str,
    cause: &'a str,
    rows: i32,
}

/// Records a sync's repairs: one row per kind with rows written (`counts`
/// holds (kind, rows) pairs; kinds with none are left out). Run it in the
/// sync's transaction.
pub async fn record(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    cause: &str,
    counts: &[(&str, usize)],
) -> QueryResult<()> {
    let rows: Vec<NewRepair<'_>> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(kind, n)| NewRepair {
            repository_id,
            kind,
            cause,
            // A sync writes far fewer rows than 2^31; saturate rather than fail the sync.
            rows: i32::try_from(n).unwrap_or(i32::MAX),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    diesel::insert_into(sweep_repairs::table).values(&rows).execute(conn).await.map(|_| ())
}

/// Repairs by kind, as the read API shows them; every kind present, zeros included.
///
/// Rows that sweeps and reconciles (cause sweep or manual) changed: changes
/// a webhook should have brought first, because it was lost or not processed
/// yet. It also counts changes GitHub sends no tracked webhook for, such as
/// a check run moving to in_progress or a comment moving a pull request's
/// updated_at. The kinds are those of `prmonitor_sync_changes_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RepairCounts {
    /// The sum of the kinds.
    #[schema(minimum = 0)]
    pub total: i64,
    /// Pull requests stored for the first time.
    #[schema(minimum = 0)]
    pub pr_new: i64,
    /// Pull requests changed.
    #[schema(minimum = 0)]
    pub pr_updated: i64,
    /// Pull requests GitHub no longer knows, marked gone.
    #[schema(minimum = 0)]
    pub pr_gone: i64,
    /// Check runs stored for the first time.
    #[schema(minimum = 0)]
    pub check_run_new: i64,
    /// Check runs changed.
    #[schema(minimum = 0)]
    pub check_run_updated: i64,
    /// Merge groups inserted (a lost `checks_requested`) or ended (a lost `destroyed`).
    #[schema(minimum = 0)]
    pub merge_group: i64,
    /// Commit statuses (the latest of a context) stored for the first time.
    #[schema(minimum = 0)]
    pub status_new: i64,
    /// Commit statuses changed.
    #[schema(minimum = 0)]
    pub status_updated: i64,
    /// Branches whose required checks changed.
    #[schema(minimum = 0)]
    pub required_checks: i64,
}

impl RepairCounts {
    /// Adds `rows` repairs of `kind`; false for a kind it does not know
    /// (the table's CHECK allows none).
    pub fn add(&mut self, kind: &str, rows: i64) -> bool {
        let slot = match kind {
            "pr_new" => &mut self.pr_new,
            "pr_updated" => &mut self.pr_updated,
            "pr_gone" => &mut self.pr_gone,
            "check_run_new" => &mut self.check_run_new,
            "check_run_updated" => &mut self.check_run_updated,
            "merge_group" => &mut self.merge_group,
            "status_new" => &mut self.status_new,
            "status_updated" => &mut self.status_updated,
            "required_checks" => &mut self.required_checks,
            _ => return false,
        };
        *slot += rows;
        self.total += rows;
        true
    }
}

/// The repairs of each of `repositories` recorded since `since`; a
/// repository without any is absent. One query, served by
/// `sweep_repairs_repository_recorded_idx`.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    repositories: &[RepositoryId],
    since: DateTime<Utc>,
) -> QueryResult<HashMap<RepositoryId, RepairCounts>> {
    if repositories.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(RepositoryId, String, Option<i64>)> = sweep_repairs::table
        .filter(sweep_repairs::repository_id.eq_any(repositories))
        .filter(sweep_repairs::recorded_at.ge(since))
        .group_by((sweep_repairs::repository_id, sweep_repairs::kind))
        .select((sweep_repairs::repository_id, sweep_repairs::kind, diesel::dsl::sum(sweep_repairs::rows)))
        .load(conn)
        .await?;
    let mut counts: HashMap<RepositoryId, RepairCounts> = HashMap::new();
    for (repository_id, kind, rows) in rows {
        counts.entry(repository_id).or_default().add(&kind, rows.unwrap_or(0));
    }
    Ok(counts)
}

/// Deletes repairs older than `keep`; returns how many.
pub async fn purge(conn: &mut AsyncPgConnection, keep: std::time::Duration) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    diesel::delete(sweep_repairs::table.filter(sweep_repairs::recorded_at.lt(cutoff))).execute(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_kind_and_refuse_unknown_kinds() {
        let mut counts = RepairCounts::default();
        assert!(counts.add("pr_new", 2));
        assert!(counts.add("check_run_updated", 3));
        assert!(counts.add("pr_new", 1));
        assert!(counts.add("merge_group", 2));
        assert!(!counts.add("pr_renamed", 7));
        assert_eq!(
            counts,
            RepairCounts {
                total: 8,
                pr_new: 3,
                check_run_updated: 3,
                merge_group: 2,
                ..RepairCounts::default()
            }
        );
    }
}
