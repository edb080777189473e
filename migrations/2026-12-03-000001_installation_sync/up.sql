-- The App's installations are listed on a timer (one job for all instances):
-- an `installation` webhook lost while the service was down is recovered.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('event', 'install', 'sweep', 'backfill', 'survey', 'installations'));
