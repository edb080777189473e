DROP TABLE http_cache;
DROP TABLE webhook_deliveries;
DROP TRIGGER jobs_notify ON jobs;
DROP FUNCTION prmonitor_jobs_notify();
DROP TABLE jobs;
DROP TABLE pr_state_history;
DROP TABLE check_runs;
DROP TABLE pull_requests;
DROP TABLE repositories;
