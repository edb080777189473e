-- What sweeps and reconciles repaired: the rows a sync with cause 'sweep' or
-- 'manual' changed, which a webhook should have changed first (it was lost,
-- or not yet processed). One row per kind of change and sync, written in the
-- sync's own transaction, so the record and the repair commit together.
-- The kinds are those of the metric prmonitor_sync_changes_total.
CREATE TABLE sweep_repairs (
    id            BIGSERIAL PRIMARY KEY,
    repository_id BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    kind          TEXT        NOT NULL
                              CHECK (kind IN ('pr_new', 'pr_updated', 'pr_gone', 'check_run_new', 'check_run_updated')),
    cause         TEXT        NOT NULL CHECK (cause IN ('sweep', 'manual')),
    rows          INTEGER     NOT NULL CHECK (rows > 0),
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The read API's repairs of the last 24 hours per repository
-- (`repairs::recent`), and the housekeeping's purge by age.
CREATE INDEX sweep_repairs_repository_recorded_idx ON sweep_repairs (repository_id, recorded_at);
CREATE INDEX sweep_repairs_recorded_idx ON sweep_repairs (recorded_at);
