//! The `merge_groups` table: the commits GitHub's merge queue builds for
//! queued pull requests, as `merge_group` webhooks report them and sweeps
//! find them. Rule 4 holds here too: a destroyed group never goes back to
//! `queued`, and a reason GitHub gave is never replaced by a sweep's guess.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::ids::{PullRequestNumber, RepositoryId};

/// Every value of `merge_groups.state`.
pub const STATES: [&str; 5] = ["queued", "merged", "dequeued", "invalidated", "ended"];

/// The state a `merge_group` `destroyed` reason leaves a group in. A reason
/// GitHub adds later is not one prmonitor can name: the group has ended, and
/// `reason` keeps GitHub's word.
pub fn state_of_reason(reason: &str) -> &'static str {
    match reason {
        "merged" => "merged",
        "dequeued" => "dequeued",
        "invalidated" => "invalidated",
        _ => "ended",
    }
}

/// A group's newest first among one PR's groups: the queued one (GitHub
/// queues a PR once at a time), then by the group commit's time. The id
/// cannot decide: a late `destroyed` delivery may insert an older group last.
pub const NEWEST_FIRST_SQL: &str =
    "(state = 'queued') DESC, coalesce(gh_created_at, enqueued_at, first_seen_at) DESC, id DESC";

/// A merge group as one `merge_group` delivery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredGroup {
    pub pr_number: PullRequestNumber,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    pub base_sha: String,
    /// The group commit's time.
    pub created_at: Option<DateTime<Utc>>,
    /// `destroyed`'s reason; `None` for `checks_requested`.
    pub destroyed: Option<String>,
}

/// Writes what a delivery says of a group: `checks_requested` stores it as
/// queued (a group already destroyed stays so: the delivery came late),
/// `destroyed` ends it with its reason unless a reason is already stored.
/// Returns whether a row changed.
pub async fn apply_delivered(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    group: &DeliveredGroup,
) -> QueryResult<bool> {
    // Rows inserted or updated: a refused update (the WHERE) counts none.
    let written = match &group.destroyed {
        None => diesel::sql_query(
            "INSERT INTO merge_groups (repository_id, pr_number, head_sha, head_ref, base_ref, base_sha, \
                                           state, gh_created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7) \
                 ON CONFLICT (repository_id, head_sha) DO UPDATE SET \
                     head_ref = coalesce(merge_groups.head_ref, excluded.head_ref), \
                     gh_created_at = coalesce(merge_groups.gh_created_at, excluded.gh_created_at), \
                     last_changed_at = now() \
                 WHERE (merge_groups.head_ref IS NULL AND excluded.head_ref IS NOT NULL) \
                    OR (merge_groups.gh_created_at IS NULL AND excluded.gh_created_at IS NOT NULL)",
        )
        .bind::<BigInt, _>(repository_id)
        .bind::<Integer, _>(group.pr_number)
        .bind::<Text, _>(&group.head_sha)
        .bind::<Text, _>(&group.head_ref)
        .bind::<Text, _>(&group.base_ref)
        .bind::<Text, _>(&group.base_sha)
        .bind::<Nullable<Timestamptz>, _>(group.created_at)
        .execute(conn)
        .await?,
        Some(reason) => {
            // 'ended' is a sweep's guess: GitHub's reason replaces it. Any
            // other destroyed state is GitHub's own word and final.
            diesel::sql_query(
                "INSERT INTO merge_groups (repository_id, pr_number, head_sha, head_ref, base_ref, base_sha, \
                                           state, reason, gh_created_at, destroyed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) \
                 ON CONFLICT (repository_id, head_sha) DO UPDATE SET \
                     state = excluded.state, reason = excluded.reason, \
                     destroyed_at = coalesce(merge_groups.destroyed_at, excluded.destroyed_at), \
                     head_ref = coalesce(merge_groups.head_ref, excluded.head_ref), \
                     gh_created_at = coalesce(merge_groups.gh_created_at, excluded.gh_created_at), \
                     last_changed_at = now() \
                 WHERE merge_groups.state IN ('queued', 'ended')",
            )
            .bind::<BigInt, _>(repository_id)
            .bind::<Integer, _>(group.pr_number)
            .bind::<Text, _>(&group.head_sha)
            .bind::<Text, _>(&group.head_ref)
            .bind::<Text, _>(&group.base_ref)
            .bind::<Text, _>(&group.base_sha)
            .bind::<Text, _>(state_of_reason(reason))
            .bind::<Text, _>(reason)
            .bind::<Nullable<Timestamptz>, _>(group.created_at)
            .execute(conn)
            .await?
        }
    };
    Ok(written > 0)
}

/// One queued pull request as a sweep read it from GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub pr_number: PullRequestNumber,
    /// The merge group's commit.
    pub head_sha: String,
    /// `refs/heads/{base}`, as the webhooks name it.
    pub base_ref: String,
    pub base_sha: String,
    pub enqueued_at: Option<DateTime<Utc>>,
}

/// A repository's merge queues as a sweep read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub entries: Vec<QueueEntry>,
    /// Every open PR was read: a stored queued group missing from `entries`
    /// has left the queue.
    pub complete: bool,
    /// When the read started: a group first stored later may be newer than
    /// the read, and its absence proves nothing.
    pub read_at: DateTime<Utc>,
}

/// Makes the stored groups agree with a sweep's read: a queued entry not
/// stored is inserted (its `checks_requested` was lost), and, when the read
/// was complete, a stored queued group it no longer shows has ended (its
/// `destroyed` was lost): `merged` when its PR is merged and it is the PR's
/// newest group, else `ended`, for the reason is unknown. Run it after the
/// sweep's PR upserts, in the same transaction, so the PR's state is the
/// one just read. Returns the rows repaired.
pub async fn apply_sweep(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    snapshot: &QueueSnapshot,
) -> QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = Bool)]
        inserted: bool,
    }

    let mut repaired = 0;
    if !snapshot.entries.is_empty() {
        let column = |f: fn(&QueueEntry) -> String| snapshot.entries.iter().map(f).collect::<Vec<String>>();
        let numbers: Vec<PullRequestNumber> = snapshot.entries.iter().map(|e| e.pr_number).collect();
        let enqueued: Vec<Option<DateTime<Utc>>> = snapshot.entries.iter().map(|e| e.enqueued_at).collect();
        // A row already stored keeps its state: the read may be older than a
        // `destroyed` written since. Only the queue time it lacks is filled.
        let rows: Vec<Inserted> = diesel::sql_query(
            "INSERT INTO merge_groups (repository_id, pr_number, head_sha, base_ref, base_sha, state, enqueued_at) \
             SELECT $1, u.pr_number, u.head_sha, u.base_ref, u.base_sha, 'queued', u.enqueued_at \
             FROM unnest($2, $3, $4, $5, $6) AS u(pr_number, head_sha, base_ref, base_sha, enqueued_at) \
             ON CONFLICT (repository_id, head_sha) DO UPDATE SET \
                 enqueued_at = excluded.enqueued_at, last_changed_at = now() \
             WHERE merge_groups.enqueued_at IS NULL AND excluded.enqueued_at IS NOT NULL \
             RETURNING (xmax = 0) AS inserted",
        )
        .bind::<BigInt, _>(repository_id)
        .bind::<Array<Integer>, _>(numbers)
        .bind::<Array<Text>, _>(column(|e| e.head_sha.clone()))
        .bind::<Array<Text>, _>(column(|e| e.base_ref.clone()))
        .bind::<Array<Text>, _>(column(|e| e.base_sha.clone()))
        .bind::<Array<Nullable<Timestamptz>>, _>(enqueued)
        .load(conn)
        .await?;
        repaired += rows.iter().filter(|r| r.inserted).count();
    }
    if snapshot.complete {
        let seen: Vec<&str> = snapshot.entries.iter().map(|e| e.head_sha.as_str()).collect();
        let ended = diesel::sql_query(
            "UPDATE merge_groups g SET \
                 state = CASE WHEN EXISTS (SELECT 1 FROM pull_requests p \
                                           WHERE p.repository_id = g.repository_id AND p.number = g.pr_number \
                                             AND p.state = 'merged') \
                               AND NOT EXISTS (SELECT 1 FROM merge_groups n \
                                               WHERE n.repository_id = g.repository_id \
                                                 AND n.pr_number = g.pr_number AND n.id <> g.id \
                                                 AND coalesce(n.gh_created_at, n.enqueued_at, n.first_seen_at) \
                                                   > coalesce(g.gh_created_at, g.enqueued_at, g.first_seen_at)) \
                              THEN 'merged' ELSE 'ended' END, \
                 destroyed_at = now(), last_changed_at = now() \
             WHERE g.repository_id = $1 AND g.state = 'queued' AND g.first_seen_at < $2 \
               AND NOT (g.head_sha = ANY($3))",
        )
        .bind::<BigInt, _>(repository_id)
        .bind::<Timestamptz, _>(snapshot.read_at)
        .bind::<Array<Text>, _>(seen)
        .execute(conn)
        .await?;
        repaired += ended;
    }
    Ok(repaired)
}

/// A PR's place in the merge queue, as the read API shows it: its newest group.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize, utoipa::ToSchema)]
#[diesel(check_for_backend(Pg))]
pub struct PullQueueState {
    #[diesel(sql_type = Text)]
    #[schema(value_type = MergeGroupState)]
    pub state: String,
    /// The merge group's commit (on a `gh-readonly-queue/*` branch), where the queue's checks run.
    #[diesel(sql_type = Text)]
    pub head_sha: String,
    /// When the pull request entered the queue, once a sweep has read it (webhooks do not carry it).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub enqueued_at: Option<DateTime<Utc>>,
}

/// A merge group's state (`merge_groups.state`): `queued` until GitHub
/// destroys the group, then the `merge_group` destroyed reason; `ended` when
/// a sweep found the group gone without a reason (its destroyed webhook was
/// lost) and its pull request not merged through it.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum MergeGroupState {
    Queued,
    Merged,
    Dequeued,
    Invalidated,
    Ended,
}

/// The newest group of PR `number`, if it was ever queued.
pub async fn newest_of_pull(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    number: PullRequestNumber,
) -> QueryResult<Option<PullQueueState>> {
    diesel::sql_query(format!(
        "SELECT state, head_sha, enqueued_at FROM merge_groups \
         WHERE repository_id = $1 AND pr_number = $2 ORDER BY {NEWEST_FIRST_SQL} LIMIT 1"
    ))
    .bind::<BigInt, _>(repository_id)
    .bind::<Integer, _>(number)
    .get_result(conn)
    .await
    .optional()
}

/// The SQL of a PR's `merge_queue` in the listing: a JSON object (`state`,
/// `head_sha`, `enqueued_at`) of the newest group of PR `{number}` of
/// repository `{repo}`, or NULL. Times are written as the API writes them.
pub fn newest_of_pull_json_sql(repo: &str, number: &str) -> String {
    format!(
        "(SELECT jsonb_build_object('state', state, 'head_sha', head_sha, 'enqueued_at', \
                 to_char(enqueued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) \
          FROM merge_groups WHERE repository_id = {repo} AND pr_number = {number} \
          ORDER BY {NEWEST_FIRST_SQL} LIMIT 1)"
    )
}

/// A merge group with the verdicts of its commit's checks (the newest run of each name).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize, utoipa::ToSchema)]
#[diesel(check_for_backend(Pg))]
pub struct GroupSummary {
    #[diesel(sql_type = Integer)]
    pub pr_number: PullRequestNumber,
    #[diesel(sql_type = Text)]
    pub head_sha: String,
    /// `refs/heads/gh-readonly-queue/{base}/pr-{number}-{base_sha}`; null for a group only a sweep has seen.
    #[diesel(sql_type = Nullable<Text>)]
    pub head_ref: Option<String>,
    #[diesel(sql_type = Text)]
    pub base_ref: String,
    #[diesel(sql_type = Text)]
    pub base_sha: String,
    #[diesel(sql_type = Text)]
    #[schema(value_type = MergeGroupState)]
    pub state: String,
    /// The `merge_group` destroyed webhook's reason, as GitHub sent it.
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    /// The merge group commit's time.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub enqueued_at: Option<DateTime<Utc>>,
    /// When prmonitor learnt the group was destroyed.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub destroyed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub first_seen_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub checks_passing: i64,
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub checks_failing: i64,
    #[diesel(sql_type = BigInt)]
    #[schema(minimum = 0)]
    pub checks_pending: i64,
    /// As a PR's `checks`: `failing`, `pending`, `passing` or `none`.
    #[diesel(sql_type = Text)]
    #[schema(value_type = crate::db::reads::values::ChecksState)]
    pub checks: String,
    #[diesel(sql_type = BigInt)]
    #[serde(skip)]
    total: i64,
}

/// One page of a repository's groups, newest first, and how many there are.
/// Its check runs and statuses are counted and judged as a PR's are
/// ([`crate::db::reads::commit_counts_sql`]).
pub async fn list(
    conn: &mut AsyncPgConnection,
    repository_id: RepositoryId,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<GroupSummary>, i64)> {
    let rows: Vec<GroupSummary> = diesel::sql_query(format!(
        "SELECT s.*, {checks} AS checks, count(*) OVER () AS total FROM ( \
             SELECT g.id, g.pr_number, g.head_sha, g.head_ref, g.base_ref, g.base_sha, g.state, g.reason, \
                    g.gh_created_at AS created_at, g.enqueued_at, g.destroyed_at, g.first_seen_at, \
                    c.passing + st.passing AS checks_passing, \
                    c.failing + st.failing AS checks_failing, \
                    c.pending + st.pending AS checks_pending \
             FROM merge_groups g {counts} \
             WHERE g.repository_id = $1) s \
         ORDER BY coalesce(s.created_at, s.enqueued_at, s.first_seen_at) DESC, s.id DESC \
         LIMIT $2 OFFSET $3",
        checks = crate::db::reads::CHECKS_FROM_COUNTS_SQL,
        counts = crate::db::reads::commit_counts_sql("g.repository_id", "g.head_sha"),
    ))
    .bind::<BigInt, _>(repository_id)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .load(conn)
    .await?;
    let total = <[GroupSummary]>::first(&rows).map_or(0, |r| r.total);
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_reasons_are_states_and_others_have_ended() {
        for reason in ["merged", "dequeued", "invalidated"] {
            assert_eq!(state_of_reason(reason), reason);
            assert!(STATES.contains(&state_of_reason(reason)));
        }
        assert_eq!(state_of_reason("abandoned"), "ended");
        assert_eq!(state_of_reason(""), "ended");
    }
}
