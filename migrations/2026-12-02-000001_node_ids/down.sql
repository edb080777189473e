ALTER TABLE check_runs DROP COLUMN node_id;
ALTER TABLE pull_requests DROP COLUMN node_id;
