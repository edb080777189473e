DROP INDEX webhook_deliveries_job_idx;
CREATE INDEX webhook_deliveries_job_idx ON webhook_deliveries (job_id) WHERE job_id IS NOT NULL;
ALTER TABLE webhook_deliveries RESET (toast_tuple_target);
ALTER TABLE webhook_deliveries ALTER COLUMN payload SET COMPRESSION DEFAULT;
