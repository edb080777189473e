-- Merge groups: the commits GitHub's merge queue builds on
-- gh-readonly-queue/* branches, one per queued pull request (rebuilt with a
-- new commit when a group ahead leaves the queue). Fed by `merge_group`
-- webhooks and healed by sweeps, which read the open PRs' queue entries.
-- The group's check runs are the check_runs rows of its head_sha: a merge
-- group commit is never a PR's head, so they never count as a PR's checks.
CREATE TABLE merge_groups (
    id              BIGSERIAL PRIMARY KEY,
    repository_id   BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    pr_number       INTEGER     NOT NULL CHECK (pr_number > 0),
    head_sha        TEXT        NOT NULL,
    -- Only webhooks carry the group's branch: a group a sweep found has none.
    head_ref        TEXT,
    base_ref        TEXT        NOT NULL,
    base_sha        TEXT        NOT NULL,
    -- 'queued' until GitHub destroys the group; then the `merge_group`
    -- destroyed reason, or 'ended' when a sweep saw it gone without knowing why.
    state           TEXT        NOT NULL
                                CHECK (state IN ('queued', 'merged', 'dequeued', 'invalidated', 'ended')),
    -- The destroyed webhook's reason as GitHub sent it.
    reason          TEXT,
    -- The group commit's time (the webhook's head_commit.timestamp).
    gh_created_at   TIMESTAMPTZ,
    -- When the PR entered the queue (GraphQL's enqueuedAt; kept across rebuilds).
    enqueued_at     TIMESTAMPTZ,
    destroyed_at    TIMESTAMPTZ,
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repository_id, head_sha)
);
-- A PR's newest group (the read API) and a repository's queued groups (sweeps).
CREATE INDEX merge_groups_repository_pr_idx ON merge_groups (repository_id, pr_number);
CREATE INDEX merge_groups_queued_idx ON merge_groups (repository_id) WHERE state = 'queued';

-- Sweeps repair merge groups too.
ALTER TABLE sweep_repairs DROP CONSTRAINT sweep_repairs_kind_check;
ALTER TABLE sweep_repairs ADD CONSTRAINT sweep_repairs_kind_check
    CHECK (kind IN ('pr_new', 'pr_updated', 'pr_gone', 'check_run_new', 'check_run_updated',
                    'status_new', 'status_updated', 'required_checks', 'merge_group'));
