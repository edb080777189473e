// Diesel's view of migrations/. Keep it in step with them by hand or with
// `diesel print-schema`; tests/api/schema_drift.rs fails when they disagree.

/// PostgreSQL types diesel has no name for.
pub mod sql_types {
    /// `xid8`: a 64-bit transaction id (`pg_current_xact_id()`).
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "xid8"))]
    pub struct Xid8;
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Xid8;

    change_events (id) {
        id -> Int8,
        xid -> Xid8,
        recorded_at -> Timestamptz,
        repository_id -> Int8,
        kind -> Text,
        pr_number -> Nullable<Int4>,
        head_sha -> Nullable<Text>,
        data -> Jsonb,
    }
}

diesel::table! {
    check_runs (id) {
        id -> Int8,
        repository_id -> Int8,
        github_id -> Int8,
        check_suite_id -> Nullable<Int8>,
        head_sha -> Text,
        name -> Text,
        app_slug -> Nullable<Text>,
        status -> Text,
        conclusion -> Nullable<Text>,
        details_url -> Nullable<Text>,
        html_url -> Nullable<Text>,
        output_title -> Nullable<Text>,
        output_summary -> Nullable<Text>,
        gh_started_at -> Nullable<Timestamptz>,
        gh_completed_at -> Nullable<Timestamptz>,
        first_seen_at -> Timestamptz,
        last_changed_at -> Timestamptz,
        node_id -> Nullable<Text>,
        last_cause -> Nullable<Text>,
        last_delivery_id -> Nullable<Text>,
    }
}

diesel::table! {
    commit_statuses (id) {
        id -> Int8,
        repository_id -> Int8,
        sha -> Text,
        context -> Text,
        github_id -> Nullable<Int8>,
        node_id -> Nullable<Text>,
        state -> Text,
        description -> Nullable<Text>,
        target_url -> Nullable<Text>,
        creator -> Nullable<Text>,
        gh_created_at -> Timestamptz,
        gh_updated_at -> Timestamptz,
        first_seen_at -> Timestamptz,
        last_changed_at -> Timestamptz,
    }
}

diesel::table! {
    delivery_recovery (id) {
        id -> Bool,
        watermark -> Nullable<Timestamptz>,
        resume_cursor -> Nullable<Text>,
        resume_top -> Nullable<Timestamptz>,
        last_run_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    delivery_redelivery_requests (delivery_id) {
        delivery_id -> Text,
        requested_at -> Timestamptz,
    }
}

diesel::table! {
    github_apps (app_id) {
        app_id -> Int8,
        slug -> Text,
        html_url -> Text,
        owner_login -> Text,
        client_id -> Text,
        private_key_sealed -> Bytea,
        webhook_secret_sealed -> Bytea,
        client_secret_sealed -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    http_cache (installation_id, url) {
        installation_id -> Int8,
        url -> Text,
        etag -> Nullable<Text>,
        last_modified -> Nullable<Text>,
        next_url -> Nullable<Text>,
        stored_at -> Timestamptz,
        last_used_at -> Timestamptz,
    }
}

diesel::table! {
    jobs (id) {
        id -> Int8,
        kind -> Text,
        coalesce_key -> Nullable<Text>,
        payload -> Jsonb,
        state -> Text,
        coalesced_count -> Int4,
        run_at -> Timestamptz,
        attempts -> Int4,
        max_attempts -> Int4,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    merge_groups (id) {
        id -> Int8,
        repository_id -> Int8,
        pr_number -> Int4,
        head_sha -> Text,
        head_ref -> Nullable<Text>,
        base_ref -> Text,
        base_sha -> Text,
        state -> Text,
        reason -> Nullable<Text>,
        gh_created_at -> Nullable<Timestamptz>,
        enqueued_at -> Nullable<Timestamptz>,
        destroyed_at -> Nullable<Timestamptz>,
        first_seen_at -> Timestamptz,
        last_changed_at -> Timestamptz,
    }
}

diesel::table! {
    pr_state_history (id) {
        id -> Int8,
        pull_request_id -> Int8,
        field -> Text,
        old_value -> Nullable<Text>,
        new_value -> Text,
        gh_changed_at -> Timestamptz,
        recorded_at -> Timestamptz,
        cause -> Text,
        delivery_id -> Nullable<Text>,
    }
}

diesel::table! {
    pull_requests (id) {
        id -> Int8,
        repository_id -> Int8,
        github_id -> Int8,
        number -> Int4,
        title -> Text,
        author -> Text,
        state -> Text,
        draft -> Bool,
        base_branch -> Text,
        base_sha -> Text,
        head_branch -> Text,
        head_sha -> Text,
        html_url -> Text,
        body -> Nullable<Text>,
        labels -> Array<Text>,
        assignees -> Array<Text>,
        metadata -> Jsonb,
        gh_created_at -> Timestamptz,
        gh_updated_at -> Timestamptz,
        gh_closed_at -> Nullable<Timestamptz>,
        gh_merged_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        first_seen_at -> Timestamptz,
        last_changed_at -> Timestamptz,
        node_id -> Nullable<Text>,
    }
}

diesel::table! {
    repositories (id) {
        id -> Int8,
        github_id -> Int8,
        owner -> Text,
        name -> Text,
        installation_id -> Nullable<Int8>,
        active -> Bool,
        consecutive_failures -> Int4,
        last_failure_reason -> Nullable<Text>,
        last_failure_at -> Nullable<Timestamptz>,
        last_synced_at -> Nullable<Timestamptz>,
        last_swept_at -> Nullable<Timestamptz>,
        sweep_watermark -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    required_checks (repository_id, branch) {
        repository_id -> Int8,
        branch -> Text,
        contexts -> Array<Text>,
        strict -> Bool,
        fetched_at -> Timestamptz,
    }
}

diesel::table! {
    setup_states (state) {
        state -> Text,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    status_history (id) {
        id -> Int8,
        repository_id -> Int8,
        sha -> Text,
        context -> Text,
        old_state -> Nullable<Text>,
        new_state -> Text,
        gh_changed_at -> Timestamptz,
        recorded_at -> Timestamptz,
        cause -> Text,
        delivery_id -> Nullable<Text>,
    }
}

diesel::table! {
    sweep_repairs (id) {
        id -> Int8,
        repository_id -> Int8,
        kind -> Text,
        cause -> Text,
        rows -> Int4,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (delivery_id) {
        delivery_id -> Text,
        event -> Text,
        action -> Nullable<Text>,
        installation_id -> Nullable<Int8>,
        repository_github_id -> Nullable<Int8>,
        repository_full_name -> Nullable<Text>,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        outcome -> Text,
        job_id -> Nullable<Int8>,
        payload -> Nullable<Bytea>,
        payload_size -> Int4,
        source -> Text,
        github_delivered_at -> Nullable<Timestamptz>,
        headers -> Nullable<Jsonb>,
    }
}

diesel::joinable!(change_events -> repositories (repository_id));
diesel::joinable!(check_runs -> repositories (repository_id));
diesel::joinable!(commit_statuses -> repositories (repository_id));
diesel::joinable!(merge_groups -> repositories (repository_id));
diesel::joinable!(pr_state_history -> pull_requests (pull_request_id));
diesel::joinable!(pull_requests -> repositories (repository_id));
diesel::joinable!(required_checks -> repositories (repository_id));
diesel::joinable!(status_history -> repositories (repository_id));
diesel::joinable!(sweep_repairs -> repositories (repository_id));
diesel::joinable!(webhook_deliveries -> jobs (job_id));

diesel::allow_tables_to_appear_in_same_query!(
    change_events,
    check_runs,
    commit_statuses,
    delivery_recovery,
    delivery_redelivery_requests,
    github_apps,
    http_cache,
    jobs,
    merge_groups,
    pr_state_history,
    pull_requests,
    repositories,
    required_checks,
    setup_states,
    status_history,
    sweep_repairs,
    webhook_deliveries,
);
