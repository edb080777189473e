DELETE FROM jobs WHERE kind = 'survey';
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('event', 'install', 'sweep', 'backfill'));
ALTER TABLE check_runs DROP COLUMN node_id;
ALTER TABLE pull_requests DROP COLUMN node_id;
