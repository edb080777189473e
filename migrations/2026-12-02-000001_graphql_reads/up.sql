-- GitHub's global node ids: GraphQL objects join the REST and webhook rows
-- by them (GraphQL's `id` is REST's `node_id`). Nullable: rows written
-- before this migration get theirs at their next change.
ALTER TABLE pull_requests ADD COLUMN node_id TEXT;
ALTER TABLE check_runs ADD COLUMN node_id TEXT;

-- Sweeps through GraphQL: one job surveys an installation's due repositories.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('event', 'install', 'sweep', 'backfill', 'survey'));
