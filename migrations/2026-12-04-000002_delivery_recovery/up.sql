-- Gap recovery: deliveries GitHub failed to make (or that were lost on the
-- way) are found in the App's deliveries API and stored like any other.

-- One job for all instances looks for them.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('event', 'install', 'sweep', 'backfill', 'survey', 'installations', 'recover_deliveries'));

-- Where a delivery came from: intake, or the deliveries API. `recovered` is
-- the outcome of a recovered delivery until its job ends (then processed or
-- failed, like a queued one); `source` keeps the origin for good.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_outcome_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_outcome_check
    CHECK (outcome IN ('queued', 'ignored', 'ping', 'processed', 'failed', 'recovered'));
ALTER TABLE webhook_deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook'
    CHECK (source IN ('webhook', 'recovery'));
-- GitHub's time of the (last) attempt, for recovered deliveries.
ALTER TABLE webhook_deliveries ADD COLUMN github_delivered_at TIMESTAMPTZ;

-- How far back the deliveries API has been examined (one row).
CREATE TABLE delivery_recovery (
    id              BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (id),
    -- Every delivery GitHub lists at or before this time has been examined.
    watermark       TIMESTAMPTZ,
    -- A run that stopped at its page bound goes on from this cursor...
    resume_cursor   TEXT,
    -- ...and, once it reaches the watermark, this is the new watermark.
    resume_top      TIMESTAMPTZ,
    last_run_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Redeliveries asked of GitHub (PRMONITOR_DELIVERY_RECOVERY=redeliver), so a
-- delivery still in flight is not asked for again on the next run.
CREATE TABLE delivery_redelivery_requests (
    delivery_id     TEXT        PRIMARY KEY,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX delivery_redelivery_requests_at_idx ON delivery_redelivery_requests (requested_at);
