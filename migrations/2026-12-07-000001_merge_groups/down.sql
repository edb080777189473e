DELETE FROM sweep_repairs WHERE kind = 'merge_group';
ALTER TABLE sweep_repairs DROP CONSTRAINT sweep_repairs_kind_check;
ALTER TABLE sweep_repairs ADD CONSTRAINT sweep_repairs_kind_check
    CHECK (kind IN ('pr_new', 'pr_updated', 'pr_gone', 'check_run_new', 'check_run_updated',
                    'status_new', 'status_updated', 'required_checks'));
DROP TABLE merge_groups;
