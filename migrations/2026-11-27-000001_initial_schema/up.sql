-- The whole schema of prmonitor (DESIGN.md §4).
-- Every GitHub id is BIGINT: real check-run ids exceed 2^31.
-- Times that come from GitHub are prefixed gh_; the others are our own clock.

CREATE TABLE repositories (
    id                   BIGSERIAL PRIMARY KEY,
    github_id            BIGINT      NOT NULL UNIQUE,
    owner                TEXT        NOT NULL,
    name                 TEXT        NOT NULL,
    installation_id      BIGINT,
    active               BOOLEAN     NOT NULL DEFAULT TRUE,
    consecutive_failures INTEGER     NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_failure_reason  TEXT,
    last_failure_at      TIMESTAMPTZ,
    last_synced_at       TIMESTAMPTZ,
    last_swept_at        TIMESTAMPTZ,
    -- GitHub's updated_at of the newest PR seen by the last complete sweep:
    -- the next sweep lists PRs updated since then.
    sweep_watermark      TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- GitHub treats owner/name case-insensitively; look-ups by name use lower().
CREATE INDEX repositories_full_name_idx ON repositories (lower(owner), lower(name));
CREATE INDEX repositories_installation_idx ON repositories (installation_id);

CREATE TABLE pull_requests (
    id              BIGSERIAL PRIMARY KEY,
    repository_id   BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    github_id       BIGINT      NOT NULL UNIQUE,
    number          INTEGER     NOT NULL CHECK (number > 0),
    title           TEXT        NOT NULL,
    author          TEXT        NOT NULL,
    state           TEXT        NOT NULL CHECK (state IN ('open', 'closed', 'merged')),
    draft           BOOLEAN     NOT NULL DEFAULT FALSE,
    base_branch     TEXT        NOT NULL,
    base_sha        TEXT        NOT NULL,
    head_branch     TEXT        NOT NULL,
    head_sha        TEXT        NOT NULL,
    html_url        TEXT        NOT NULL,
    body            TEXT,
    labels          TEXT[]      NOT NULL DEFAULT '{}',
    assignees       TEXT[]      NOT NULL DEFAULT '{}',
    metadata        JSONB       NOT NULL DEFAULT '{}',
    gh_created_at   TIMESTAMPTZ NOT NULL,
    gh_updated_at   TIMESTAMPTZ NOT NULL,
    gh_closed_at    TIMESTAMPTZ,
    gh_merged_at    TIMESTAMPTZ,
    -- Set when GitHub no longer knows the PR (404/410 on a direct read).
    deleted_at      TIMESTAMPTZ,
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repository_id, number)
);
CREATE INDEX pull_requests_repository_state_idx ON pull_requests (repository_id, state, gh_updated_at DESC);
-- check_run / check_suite events name a head SHA: find the PRs whose head it is.
CREATE INDEX pull_requests_head_sha_idx ON pull_requests (repository_id, head_sha);

CREATE TABLE check_runs (
    id              BIGSERIAL PRIMARY KEY,
    repository_id   BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    github_id       BIGINT      NOT NULL UNIQUE,
    check_suite_id  BIGINT,
    head_sha        TEXT        NOT NULL,
    name            TEXT        NOT NULL,
    app_slug        TEXT,
    status          TEXT        NOT NULL,
    conclusion      TEXT,
    details_url     TEXT,
    html_url        TEXT,
    output_title    TEXT,
    output_summary  TEXT,
    gh_started_at   TIMESTAMPTZ,
    gh_completed_at TIMESTAMPTZ,
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- A PR's checks are those of its head SHA.
CREATE INDEX check_runs_head_sha_idx ON check_runs (repository_id, head_sha);

CREATE TABLE pr_state_history (
    id              BIGSERIAL PRIMARY KEY,
    pull_request_id BIGINT      NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    field           TEXT        NOT NULL CHECK (field IN ('state', 'draft', 'head_sha')),
    old_value       TEXT,
    new_value       TEXT        NOT NULL,
    -- GitHub's time of the transition (the PR's updated_at that showed it).
    gh_changed_at   TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    cause           TEXT        NOT NULL CHECK (cause IN ('webhook', 'sweep', 'backfill', 'manual')),
    delivery_id     TEXT
);
CREATE INDEX pr_state_history_pull_request_idx ON pr_state_history (pull_request_id, gh_changed_at);

CREATE TABLE jobs (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('event', 'install', 'sweep', 'backfill')),
    -- Jobs with the same key coalesce while one of them is pending.
    coalesce_key    TEXT,
    payload         JSONB       NOT NULL DEFAULT '{}',
    state           TEXT        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'running', 'done', 'dead')),
    -- How many enqueue requests (deliveries, sweep ticks) this job stands for.
    coalesced_count INTEGER     NOT NULL DEFAULT 1 CHECK (coalesced_count >= 1),
    run_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    INTEGER     NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    lease_owner     TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ
);
-- At most one pending job per key: the coalescing point of intake and scheduler.
CREATE UNIQUE INDEX jobs_pending_coalesce_key_idx ON jobs (coalesce_key) WHERE state = 'pending';
-- The claim query: due pending jobs, oldest first.
CREATE INDEX jobs_claimable_idx ON jobs (run_at, id) WHERE state = 'pending';
-- Crash recovery: running jobs whose lease has expired.
CREATE INDEX jobs_running_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_dead_idx ON jobs (updated_at) WHERE state = 'dead';

CREATE TABLE webhook_deliveries (
    delivery_id     TEXT        PRIMARY KEY,
    event           TEXT        NOT NULL,
    action          TEXT,
    installation_id BIGINT,
    repository_github_id BIGINT,
    repository_full_name TEXT,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at    TIMESTAMPTZ,
    outcome         TEXT        NOT NULL
                                CHECK (outcome IN ('queued', 'ignored', 'ping', 'processed', 'failed')),
    job_id          BIGINT      REFERENCES jobs (id) ON DELETE SET NULL,
    -- The raw body exactly as signed (bytes, not jsonb: jsonb rejects \u0000,
    -- which a PR body may carry). NULL once the retention has passed.
    payload         BYTEA,
    payload_size    INTEGER     NOT NULL CHECK (payload_size >= 0)
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);
CREATE INDEX webhook_deliveries_job_idx ON webhook_deliveries (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE http_cache (
    installation_id BIGINT      NOT NULL,
    url             TEXT        NOT NULL,
    etag            TEXT,
    last_modified   TEXT,
    -- The page's rel="next" link: a 304 may come without a Link header, and
    -- the rest of the listing must still be reachable.
    next_url        TEXT,
    stored_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (installation_id, url)
);
CREATE INDEX http_cache_last_used_idx ON http_cache (last_used_at);

-- Wake idle workers as soon as a job is committed (NOTIFY is delivered at
-- commit). Workers also poll, for retries whose time has come.
CREATE FUNCTION prmonitor_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('prmonitor_jobs', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION prmonitor_jobs_notify();
