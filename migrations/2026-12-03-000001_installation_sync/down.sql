DELETE FROM jobs WHERE kind = 'installations';
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('event', 'install', 'sweep', 'backfill', 'survey'));
