-- The change feed (GET /api/v1/events): one row per stored row that really
-- changed, written by statement-level triggers in the writing transaction,
-- so every write path (sync, merge-group deliveries, mark_gone, sweep
-- bookkeeping, installation handling) is covered and an event commits or
-- rolls back with its change. A statement writes its events with one
-- INSERT … SELECT over its transition tables, however many rows it touched.
--
-- Readers order events by (xid, id), not by id alone: ids are taken at
-- insert, so a transaction may commit after a later one took a higher id.
-- An event is served only once its transaction is older than every
-- transaction still running (xid < pg_snapshot_xmin(pg_current_snapshot())):
-- nothing can then appear before it in that order (src/db/change_events.rs).
CREATE TABLE change_events (
    id            BIGSERIAL   PRIMARY KEY,
    -- The writing transaction (pg_current_xact_id()).
    xid           XID8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    repository_id BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    kind          TEXT        NOT NULL
                              CHECK (kind IN ('pull_request', 'check_run', 'status', 'merge_group',
                                              'required_checks', 'repository')),
    pr_number     INTEGER,
    head_sha      TEXT,
    -- What a reader needs to act without reading the row again (never a body
    -- or a secret): see the trigger functions below.
    data          JSONB       NOT NULL DEFAULT '{}'
);
-- The feed's reads: after a position, in (xid, id) order.
CREATE INDEX change_events_position_idx ON change_events (xid, id);
-- The housekeeping's purge by age.
CREATE INDEX change_events_recorded_idx ON change_events (recorded_at);
-- ON DELETE CASCADE from repositories.
CREATE INDEX change_events_repository_idx ON change_events (repository_id);

-- One notification per transaction (identical payloads are folded, and
-- delivered at commit): the listeners then read the table.
CREATE FUNCTION prmonitor_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('prmonitor_changes', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER change_events_notify AFTER INSERT ON change_events
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_changes_notify();

-- The names of the columns that differ between o and n (NULLs removed).
-- Each function lists the columns that matter to a reader: bookkeeping
-- (last_changed_at, first_seen_at, node_id, GitHub's updated_at alone) is
-- not a change, so a guard-passing upsert of identical values writes nothing.

CREATE FUNCTION prmonitor_pull_request_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_events (repository_id, kind, pr_number, head_sha, data)
        SELECT n.repository_id, 'pull_request', n.number, n.head_sha,
               jsonb_build_object('change', 'new', 'changed', '[]'::jsonb,
                                  'state', n.state, 'draft', n.draft, 'title', n.title,
                                  'author', n.author, 'head_sha', n.head_sha,
                                  'base_branch', n.base_branch, 'gone', n.deleted_at IS NOT NULL)
        FROM new_rows n ORDER BY n.id;
    ELSE
        INSERT INTO change_events (repository_id, kind, pr_number, head_sha, data)
        SELECT n.repository_id, 'pull_request', n.number, n.head_sha,
               jsonb_build_object('change', CASE WHEN n.deleted_at IS NOT NULL AND o.deleted_at IS NULL
                                                 THEN 'gone' ELSE 'updated' END,
                                  'changed', to_jsonb(c.fields),
                                  'state', n.state, 'draft', n.draft, 'title', n.title,
                                  'author', n.author, 'head_sha', n.head_sha,
                                  'base_branch', n.base_branch, 'gone', n.deleted_at IS NOT NULL)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
            CASE WHEN n.title IS DISTINCT FROM o.title THEN 'title' END,
            CASE WHEN n.author IS DISTINCT FROM o.author THEN 'author' END,
            CASE WHEN n.state IS DISTINCT FROM o.state THEN 'state' END,
            CASE WHEN n.draft IS DISTINCT FROM o.draft THEN 'draft' END,
            CASE WHEN n.base_branch IS DISTINCT FROM o.base_branch THEN 'base_branch' END,
            CASE WHEN n.base_sha IS DISTINCT FROM o.base_sha THEN 'base_sha' END,
            CASE WHEN n.head_branch IS DISTINCT FROM o.head_branch THEN 'head_branch' END,
            CASE WHEN n.head_sha IS DISTINCT FROM o.head_sha THEN 'head_sha' END,
            CASE WHEN n.html_url IS DISTINCT FROM o.html_url THEN 'html_url' END,
            CASE WHEN n.body IS DISTINCT FROM o.body THEN 'body' END,
            CASE WHEN n.labels IS DISTINCT FROM o.labels THEN 'labels' END,
            CASE WHEN n.assignees IS DISTINCT FROM o.assignees THEN 'assignees' END,
            CASE WHEN n.gh_closed_at IS DISTINCT FROM o.gh_closed_at THEN 'closed_at' END,
            CASE WHEN n.gh_merged_at IS DISTINCT FROM o.gh_merged_at THEN 'merged_at' END,
            CASE WHEN n.deleted_at IS DISTINCT FROM o.deleted_at THEN 'gone' END,
            CASE WHEN n.repository_id IS DISTINCT FROM o.repository_id THEN 'repository' END
        ], NULL) AS fields) c
        WHERE cardinality(c.fields) > 0
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER pull_requests_change_events_insert AFTER INSERT ON pull_requests
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_pull_request_events();
CREATE TRIGGER pull_requests_change_events_update AFTER UPDATE ON pull_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_pull_request_events();

-- A check run names the open PRs whose head it is on, so a board can place
-- it without another read (pull_requests_head_sha_idx serves the join).
CREATE FUNCTION prmonitor_check_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_events (repository_id, kind, head_sha, data)
        SELECT n.repository_id, 'check_run', n.head_sha,
               jsonb_build_object('change', 'new', 'changed', '[]'::jsonb,
                                  'check_run_id', n.github_id, 'name', n.name, 'status', n.status,
                                  'conclusion', n.conclusion, 'app_slug', n.app_slug,
                                  'started_at', n.gh_started_at, 'completed_at', n.gh_completed_at,
                                  'pull_requests', to_jsonb(ARRAY(
                                      SELECT p.number FROM pull_requests p
                                      WHERE p.repository_id = n.repository_id AND p.head_sha = n.head_sha
                                        AND p.deleted_at IS NULL ORDER BY p.number)))
        FROM new_rows n ORDER BY n.id;
    ELSE
        INSERT INTO change_events (repository_id, kind, head_sha, data)
        SELECT n.repository_id, 'check_run', n.head_sha,
               jsonb_build_object('change', 'updated', 'changed', to_jsonb(c.fields),
                                  'check_run_id', n.github_id, 'name', n.name, 'status', n.status,
                                  'conclusion', n.conclusion, 'app_slug', n.app_slug,
                                  'started_at', n.gh_started_at, 'completed_at', n.gh_completed_at,
                                  'pull_requests', to_jsonb(ARRAY(
                                      SELECT p.number FROM pull_requests p
                                      WHERE p.repository_id = n.repository_id AND p.head_sha = n.head_sha
                                        AND p.deleted_at IS NULL ORDER BY p.number)))
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
            CASE WHEN n.name IS DISTINCT FROM o.name THEN 'name' END,
            CASE WHEN n.status IS DISTINCT FROM o.status THEN 'status' END,
            CASE WHEN n.conclusion IS DISTINCT FROM o.conclusion THEN 'conclusion' END,
            CASE WHEN n.head_sha IS DISTINCT FROM o.head_sha THEN 'head_sha' END,
            CASE WHEN n.check_suite_id IS DISTINCT FROM o.check_suite_id THEN 'check_suite_id' END,
            CASE WHEN n.app_slug IS DISTINCT FROM o.app_slug THEN 'app_slug' END,
            CASE WHEN n.details_url IS DISTINCT FROM o.details_url THEN 'details_url' END,
            CASE WHEN n.html_url IS DISTINCT FROM o.html_url THEN 'html_url' END,
            CASE WHEN n.output_title IS DISTINCT FROM o.output_title THEN 'output_title' END,
            CASE WHEN n.output_summary IS DISTINCT FROM o.output_summary THEN 'output_summary' END,
            CASE WHEN n.gh_started_at IS DISTINCT FROM o.gh_started_at THEN 'started_at' END,
            CASE WHEN n.gh_completed_at IS DISTINCT FROM o.gh_completed_at THEN 'completed_at' END
        ], NULL) AS fields) c
        WHERE cardinality(c.fields) > 0
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER check_runs_change_events_insert AFTER INSERT ON check_runs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_check_run_events();
CREATE TRIGGER check_runs_change_events_update AFTER UPDATE ON check_runs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_check_run_events();

CREATE FUNCTION prmonitor_status_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_events (repository_id, kind, head_sha, data)
        SELECT n.repository_id, 'status', n.sha,
               jsonb_build_object('change', 'new', 'changed', '[]'::jsonb, 'context', n.context,
                                  'state', n.state, 'description', n.description,
                                  'target_url', n.target_url, 'created_at', n.gh_created_at)
        FROM new_rows n ORDER BY n.id;
    ELSE
        INSERT INTO change_events (repository_id, kind, head_sha, data)
        SELECT n.repository_id, 'status', n.sha,
               jsonb_build_object('change', 'updated', 'changed', to_jsonb(c.fields), 'context', n.context,
                                  'state', n.state, 'description', n.description,
                                  'target_url', n.target_url, 'created_at', n.gh_created_at)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
            CASE WHEN n.state IS DISTINCT FROM o.state THEN 'state' END,
            CASE WHEN n.description IS DISTINCT FROM o.description THEN 'description' END,
            CASE WHEN n.target_url IS DISTINCT FROM o.target_url THEN 'target_url' END,
            CASE WHEN n.gh_created_at IS DISTINCT FROM o.gh_created_at THEN 'created_at' END
        ], NULL) AS fields) c
        WHERE cardinality(c.fields) > 0
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER commit_statuses_change_events_insert AFTER INSERT ON commit_statuses
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_status_events();
CREATE TRIGGER commit_statuses_change_events_update AFTER UPDATE ON commit_statuses
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_status_events();

CREATE FUNCTION prmonitor_merge_group_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_events (repository_id, kind, pr_number, head_sha, data)
        SELECT n.repository_id, 'merge_group', n.pr_number, n.head_sha,
               jsonb_build_object('change', 'new', 'changed', '[]'::jsonb, 'state', n.state,
                                  'reason', n.reason, 'base_ref', n.base_ref, 'head_ref', n.head_ref,
                                  'enqueued_at', n.enqueued_at, 'destroyed_at', n.destroyed_at)
        FROM new_rows n ORDER BY n.id;
    ELSE
        INSERT INTO change_events (repository_id, kind, pr_number, head_sha, data)
        SELECT n.repository_id, 'merge_group', n.pr_number, n.head_sha,
               jsonb_build_object('change', 'updated', 'changed', to_jsonb(c.fields), 'state', n.state,
                                  'reason', n.reason, 'base_ref', n.base_ref, 'head_ref', n.head_ref,
                                  'enqueued_at', n.enqueued_at, 'destroyed_at', n.destroyed_at)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
            CASE WHEN n.state IS DISTINCT FROM o.state THEN 'state' END,
            CASE WHEN n.reason IS DISTINCT FROM o.reason THEN 'reason' END,
            CASE WHEN n.head_ref IS DISTINCT FROM o.head_ref THEN 'head_ref' END,
            CASE WHEN n.enqueued_at IS DISTINCT FROM o.enqueued_at THEN 'enqueued_at' END,
            CASE WHEN n.destroyed_at IS DISTINCT FROM o.destroyed_at THEN 'destroyed_at' END
        ], NULL) AS fields) c
        WHERE cardinality(c.fields) > 0
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER merge_groups_change_events_insert AFTER INSERT ON merge_groups
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_merge_group_events();
CREATE TRIGGER merge_groups_change_events_update AFTER UPDATE ON merge_groups
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_merge_group_events();

-- A branch's required checks decide its PRs' required state.
CREATE FUNCTION prmonitor_required_checks_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_events (repository_id, kind, data)
        SELECT n.repository_id, 'required_checks',
               jsonb_build_object('change', 'new', 'branch', n.branch, 'contexts', to_jsonb(n.contexts),
                                  'strict', n.strict)
        FROM new_rows n ORDER BY n.repository_id, n.branch;
    ELSE
        INSERT INTO change_events (repository_id, kind, data)
        SELECT n.repository_id, 'required_checks',
               jsonb_build_object('change', 'updated', 'branch', n.branch, 'contexts', to_jsonb(n.contexts),
                                  'strict', n.strict)
        FROM new_rows n JOIN old_rows o ON o.repository_id = n.repository_id AND o.branch = n.branch
        WHERE (n.contexts, n.strict) IS DISTINCT FROM (o.contexts, o.strict)
        ORDER BY n.repository_id, n.branch;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER required_checks_change_events_insert AFTER INSERT ON required_checks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_required_checks_events();
CREATE TRIGGER required_checks_change_events_update AFTER UPDATE ON required_checks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_required_checks_events();

-- A repository's sync state: registered, renamed, (de)activated, failing or
-- recovered, a sweep finished. Not each job's last_synced_at: every event
-- job sets it, and the rows it changed have their own events.
CREATE FUNCTION prmonitor_repository_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_events (repository_id, kind, data)
        SELECT n.id, 'repository',
               jsonb_build_object('change', 'new', 'changed', '[]'::jsonb,
                                  'full_name', n.owner || '/' || n.name, 'active', n.active,
                                  'installation_id', n.installation_id,
                                  'consecutive_failures', n.consecutive_failures,
                                  'last_failure_reason', n.last_failure_reason,
                                  'last_swept_at', n.last_swept_at)
        FROM new_rows n ORDER BY n.id;
    ELSE
        INSERT INTO change_events (repository_id, kind, data)
        SELECT n.id, 'repository',
               jsonb_build_object('change', 'updated', 'changed', to_jsonb(c.fields),
                                  'full_name', n.owner || '/' || n.name, 'active', n.active,
                                  'installation_id', n.installation_id,
                                  'consecutive_failures', n.consecutive_failures,
                                  'last_failure_reason', n.last_failure_reason,
                                  'last_swept_at', n.last_swept_at)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
            CASE WHEN n.owner IS DISTINCT FROM o.owner OR n.name IS DISTINCT FROM o.name THEN 'full_name' END,
            CASE WHEN n.active IS DISTINCT FROM o.active THEN 'active' END,
            CASE WHEN n.installation_id IS DISTINCT FROM o.installation_id THEN 'installation_id' END,
            CASE WHEN n.consecutive_failures IS DISTINCT FROM o.consecutive_failures
                 THEN 'consecutive_failures' END,
            CASE WHEN n.last_failure_reason IS DISTINCT FROM o.last_failure_reason
                 THEN 'last_failure_reason' END,
            CASE WHEN n.last_swept_at IS DISTINCT FROM o.last_swept_at THEN 'last_swept_at' END
        ], NULL) AS fields) c
        WHERE cardinality(c.fields) > 0
        ORDER BY n.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER repositories_change_events_insert AFTER INSERT ON repositories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_repository_events();
CREATE TRIGGER repositories_change_events_update AFTER UPDATE ON repositories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_repository_events();
