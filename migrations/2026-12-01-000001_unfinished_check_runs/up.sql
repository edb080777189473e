-- Sweeps re-read the commits that still have unfinished check runs, also
-- when the commit is no longer an open PR's head (a push moved the PR on, or
-- it was closed): GitHub sends no webhook when a run starts, and a lost
-- completion would otherwise never be healed. This index serves that query
-- (`pull_requests::unfinished_check_heads`): few rows, as most runs complete.
CREATE INDEX check_runs_unfinished_idx ON check_runs (repository_id, first_seen_at DESC)
    WHERE status <> 'completed';

-- And the commits that stopped being a PR's head since the last sweep
-- (`pull_requests::replaced_heads`): a run created there while its webhook
-- was lost is found nowhere else.
CREATE INDEX pr_state_history_head_changes_idx ON pr_state_history (recorded_at)
    WHERE field = 'head_sha';
