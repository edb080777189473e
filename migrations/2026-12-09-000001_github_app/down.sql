DROP TABLE setup_states;
DROP TABLE github_apps;
