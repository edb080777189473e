-- Raw webhook bodies are 5–25 KB of JSON and written once per delivery.
-- Compressing them with pglz was the largest single cost of intake inside
-- PostgreSQL (about a quarter of its CPU in the ingest benchmark's profile);
-- lz4 compresses several times faster. Rows already stored keep pglz.
ALTER TABLE webhook_deliveries ALTER COLUMN payload SET COMPRESSION lz4;
-- A compressed body of a few KB stays in the row instead of going to the
-- TOAST table (which costs a second heap insert and an index insert per
-- delivery); rows are read by key, so wider rows cost little.
ALTER TABLE webhook_deliveries SET (toast_tuple_target = 8160);
-- A job's deliveries are read oldest first; with only (job_id) indexed the
-- planner walked the received_at index instead, filtering every delivery.
DROP INDEX webhook_deliveries_job_idx;
CREATE INDEX webhook_deliveries_job_idx ON webhook_deliveries (job_id, received_at) WHERE job_id IS NOT NULL;
