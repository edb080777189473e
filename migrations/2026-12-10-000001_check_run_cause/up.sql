-- What last wrote each check run (webhook, sweep, backfill, manual,
-- recovery) and under which delivery, so a PR's timeline can say where each
-- check result came from, as pr_state_history and status_history do.
ALTER TABLE check_runs ADD COLUMN last_cause TEXT, ADD COLUMN last_delivery_id TEXT;
