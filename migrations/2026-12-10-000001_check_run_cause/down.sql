ALTER TABLE check_runs DROP COLUMN last_cause, DROP COLUMN last_delivery_id;
