DELETE FROM sweep_repairs WHERE kind IN ('status_new', 'status_updated', 'required_checks');
ALTER TABLE sweep_repairs DROP CONSTRAINT sweep_repairs_kind_check;
ALTER TABLE sweep_repairs ADD CONSTRAINT sweep_repairs_kind_check
    CHECK (kind IN ('pr_new', 'pr_updated', 'pr_gone', 'check_run_new', 'check_run_updated'));
DROP TABLE required_checks;
DROP TABLE status_history;
DROP TABLE commit_statuses;
