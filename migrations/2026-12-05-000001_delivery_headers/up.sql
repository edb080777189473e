-- The GitHub headers that describe a delivery (event, delivery id, hook,
-- installation target, user agent, content type, signature), kept for
-- `prmonitor deliveries show`. NULL for rows stored before, or by producers
-- that have no request to take them from.
ALTER TABLE webhook_deliveries ADD COLUMN headers JSONB;
