-- Commit statuses (the Statuses API that Jenkins and many CI services report
-- through): the latest status of each context of a commit. GitHub keeps every
-- status posted; the latest of a context is that context's state, so one row
-- per (repository, sha, context) holds it, and its transitions go to
-- status_history.
CREATE TABLE commit_statuses (
    id              BIGSERIAL PRIMARY KEY,
    repository_id   BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    sha             TEXT        NOT NULL,
    context         TEXT        NOT NULL,
    -- REST's id of the latest status (ids grow with each status posted);
    -- NULL when it was read through GraphQL, which does not give it.
    github_id       BIGINT,
    node_id         TEXT,
    state           TEXT        NOT NULL CHECK (state IN ('error', 'failure', 'pending', 'success')),
    description     TEXT,
    target_url      TEXT,
    creator         TEXT,
    gh_created_at   TIMESTAMPTZ NOT NULL,
    gh_updated_at   TIMESTAMPTZ NOT NULL,
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repository_id, sha, context)
);

-- Each state a context took on a commit, with what brought it.
CREATE TABLE status_history (
    id            BIGSERIAL PRIMARY KEY,
    repository_id BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    sha           TEXT        NOT NULL,
    context       TEXT        NOT NULL,
    old_state     TEXT,
    new_state     TEXT        NOT NULL,
    -- GitHub's time of the status that made the transition.
    gh_changed_at TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    cause         TEXT        NOT NULL CHECK (cause IN ('webhook', 'sweep', 'backfill', 'manual')),
    delivery_id   TEXT
);
CREATE INDEX status_history_commit_idx ON status_history (repository_id, sha, id);

-- The checks and statuses a branch's protection requires before merging, as
-- GitHub last answered for it (an unprotected branch requires nothing: an
-- empty list). Read per base branch of the open PRs, conditionally.
CREATE TABLE required_checks (
    repository_id BIGINT      NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    branch        TEXT        NOT NULL,
    contexts      TEXT[]      NOT NULL,
    strict        BOOLEAN     NOT NULL DEFAULT false,
    fetched_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, branch)
);

-- Repairs now include statuses and required checks.
ALTER TABLE sweep_repairs DROP CONSTRAINT sweep_repairs_kind_check;
ALTER TABLE sweep_repairs ADD CONSTRAINT sweep_repairs_kind_check
    CHECK (kind IN ('pr_new', 'pr_updated', 'pr_gone', 'check_run_new', 'check_run_updated',
                    'status_new', 'status_updated', 'required_checks'));
