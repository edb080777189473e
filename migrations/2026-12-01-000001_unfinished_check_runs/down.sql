DROP INDEX check_runs_unfinished_idx;
