DROP TABLE delivery_redelivery_requests;
DROP TABLE delivery_recovery;
ALTER TABLE webhook_deliveries DROP COLUMN github_delivered_at;
ALTER TABLE webhook_deliveries DROP COLUMN source;
UPDATE webhook_deliveries SET outcome = 'queued' WHERE outcome = 'recovered';
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_outcome_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_outcome_check
    CHECK (outcome IN ('queued', 'ignored', 'ping', 'processed', 'failed'));
DELETE FROM jobs WHERE kind = 'recover_deliveries';
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('event', 'install', 'sweep', 'backfill', 'survey', 'installations'));
