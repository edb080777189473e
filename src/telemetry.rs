//! Logging: human-readable on a terminal, one JSON object per line for
//! collectors. Logs go to stderr; stdout is for command output.

use std::io::IsTerminal as _;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The filter comes from `RUST_LOG`
/// (default `info`). A second call is a no-op, which suits tests.
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// As [`init`], with another filter when `RUST_LOG` is not set.
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only where a person reads them, not in files or pipes.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}

/// The commit this binary was built from (see build.rs), or `unknown`.
pub const COMMIT: &str = env!("PRMONITOR_BUILD_COMMIT");

/// `0.1.0 (abc123def456)`: what `prmonitor --version` prints after the name.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PRMONITOR_BUILD_COMMIT"), ")");

/// Buckets of every duration histogram (`*_seconds`), in seconds: from a
/// fast job (5 ms) to GitHub's slowest deliveries and long sweeps (10 min).
pub const DURATION_BUCKETS: [f64; 17] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0];

/// Buckets of `prmonitor_intake_batch_deliveries`: powers of two up to
/// intake's batch limit (128).
pub const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The exporter's configuration: every histogram with buckets (`_bucket`,
/// `_sum`, `_count`), which Prometheus can aggregate across instances and
/// over any window, where the exporter's default summaries can be neither.
fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("prmonitor_intake_batch_deliveries".into()), &BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)?
        // A histogram matching neither still gets buckets rather than a summary.
        .set_buckets(&DURATION_BUCKETS)
}

/// The process's Prometheus recorder, installed on first use. Metrics are
/// process-wide: every part records into it, `/metrics` renders it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = prometheus_builder().unwrap_or_else(|error| {
            // Only empty bucket lists fail, and ours are constants: summaries then, not no metrics.
            tracing::error!(%error, "histogram buckets refused; histograms render as summaries");
            PrometheusBuilder::new()
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; ours then renders nothing, which tests would show.
        let _ = ::metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// HELP lines and units of the metrics defined here, and the repair
/// counters at zero: "no repairs" is worth seeing too.
fn describe() {
    ::metrics::describe_histogram!(
        "prmonitor_github_delivery_delay_seconds",
        ::metrics::Unit::Seconds,
        "receipt of a webhook minus the time of the change its payload names (GitHub's delivery delay)"
    );
    ::metrics::describe_histogram!(
        "prmonitor_delivery_to_commit_seconds",
        ::metrics::Unit::Seconds,
        "receipt of a webhook to the commit of the sync its job made"
    );
    ::metrics::describe_histogram!(
        "prmonitor_job_duration_seconds",
        ::metrics::Unit::Seconds,
        "job run time"
    );
    ::metrics::describe_histogram!(
        "prmonitor_intake_batch_deliveries",
        ::metrics::Unit::Count,
        "deliveries stored per intake transaction"
    );
    ::metrics::describe_counter!(
        "prmonitor_sweep_repairs_total",
        ::metrics::Unit::Count,
        "rows a sweep or reconcile changed that webhooks had not (lost or not yet processed)"
    );
    for (kind, _) in crate::monitor::SyncReport::default().by_kind() {
        ::metrics::counter!("prmonitor_sweep_repairs_total", "kind" => kind).increment(0);
    }
    ::metrics::describe_counter!(
        "prmonitor_merge_queue_read_failures_total",
        ::metrics::Unit::Count,
        "sweeps that could not read the merge queues (their merge groups were left as stored)"
    );
    // From zero, so an alert on its rate sees the series before the first failure.
    ::metrics::counter!("prmonitor_merge_queue_read_failures_total").increment(0);
    ::metrics::describe_counter!(
        "prmonitor_required_checks_unreadable_total",
        ::metrics::Unit::Count,
        "reads of a branch's required checks GitHub refused (403: the App lacks Administration: read)"
    );
    ::metrics::counter!("prmonitor_required_checks_unreadable_total").increment(0);
    describe_others();
}

/// HELP lines and units of the metrics recorded elsewhere, so every family
/// `/metrics` renders has one (`promtool check metrics` insists).
fn describe_others() {
    use ::metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "prmonitor_webhook_deliveries_total",
        Unit::Count,
        "webhook deliveries received, by event and outcome"
    );
    describe_counter!(
        "prmonitor_webhook_signature_failures_total",
        Unit::Count,
        "webhook requests unsigned or wrongly signed"
    );
    describe_counter!(
        "prmonitor_webhook_deliveries_recovered_total",
        Unit::Count,
        "lost deliveries recovered from the App's deliveries API, by how"
    );
    // From zero, so the lost-webhooks alert has a series before the first recovery.
    for how in crate::webhook::recovery::RECOVERED_HOW {
        ::metrics::counter!("prmonitor_webhook_deliveries_recovered_total", "how" => how).increment(0);
    }
    describe_counter!(
        "prmonitor_webhook_snapshots_total",
        Unit::Count,
        "event jobs served from their deliveries' objects, by object and outcome"
    );
    describe_gauge!("prmonitor_jobs_pending", Unit::Count, "jobs waiting to run, by kind");
    describe_gauge!("prmonitor_jobs_running", Unit::Count, "jobs leased by a worker, by kind");
    describe_gauge!("prmonitor_jobs_dead", Unit::Count, "jobs that ran out of attempts, by kind");
    describe_gauge!(
        "prmonitor_jobs_oldest_pending_age_seconds",
        Unit::Seconds,
        "age of the oldest pending job, by kind (0 when none)"
    );
    describe_counter!("prmonitor_jobs_completed_total", Unit::Count, "jobs that ran to success, by kind");
    describe_counter!(
        "prmonitor_jobs_failed_total",
        Unit::Count,
        "job runs that failed, by kind and outcome"
    );
    describe_gauge!(
        "prmonitor_repositories_failing",
        Unit::Count,
        "active repositories whose last sync failed"
    );
    describe_gauge!("prmonitor_checks_stuck", Unit::Count, "open PRs with a stuck check, by repository");
    describe_gauge!(
        "prmonitor_checks_flaky_7d",
        Unit::Count,
        "check names flaky in the last 7 days, by repository"
    );
    describe_gauge!(
        "prmonitor_metrics_database_up",
        "1 when the last read of the database gauges succeeded, else 0"
    );
    describe_gauge!(
        "prmonitor_metrics_database_age_seconds",
        Unit::Seconds,
        "age of the database gauges served (they are read at most every 5 s)"
    );
    describe_gauge!("prmonitor_change_feed_clients", Unit::Count, "change feed streams open in this process");
    describe_counter!(
        "prmonitor_change_feed_events_total",
        Unit::Count,
        "change feed events read and fanned out, by kind"
    );
    describe_counter!("prmonitor_sync_changes_total", Unit::Count, "rows a sync changed, by kind");
    describe_counter!(
        "prmonitor_part_restarts_total",
        Unit::Count,
        "supervised parts restarted after a panic or an unexpected end"
    );
    describe_counter!(
        "prmonitor_github_calls_total",
        Unit::Count,
        "GitHub API calls, by purpose and outcome"
    );
    describe_gauge!(
        "prmonitor_github_not_modified_ratio",
        "share of GitHub's answers that were free 304s (0 to 1)"
    );
    describe_gauge!(
        "prmonitor_github_rate_limit_remaining",
        Unit::Count,
        "the last x-ratelimit-remaining seen, by installation"
    );
    describe_gauge!(
        "prmonitor_github_graphql_rate_limit_remaining",
        Unit::Count,
        "the last GraphQL rate limit remaining seen, by installation"
    );
    describe_gauge!(
        "prmonitor_github_rate_limit_limit",
        Unit::Count,
        "the last x-ratelimit-limit seen (the hour's budget), by installation"
    );
    describe_gauge!(
        "prmonitor_github_graphql_rate_limit_limit",
        Unit::Count,
        "the last GraphQL rate limit seen (the hour's points), by installation"
    );
    describe_counter!(
        "prmonitor_github_graphql_points_total",
        Unit::Count,
        "GraphQL points spent, as rateLimit.cost reports them"
    );
    describe_gauge!("prmonitor_build_info", "1, labelled with the version and commit of this build");
    ::metrics::gauge!("prmonitor_build_info", "version" => env!("CARGO_PKG_VERSION"), "commit" => COMMIT)
        .set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram's series in `text`, as (le, count).
    fn buckets(text: &str, name: &str) -> Vec<(String, u64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                Some((le.to_owned(), count.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn every_histogram_renders_buckets_of_its_kind() {
        let recorder = prometheus_builder().expect("the buckets are valid").build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            ::metrics::histogram!("prmonitor_delivery_to_commit_seconds").record(0.2);
            ::metrics::histogram!("prmonitor_delivery_to_commit_seconds").record(45.0);
            ::metrics::histogram!("prmonitor_intake_batch_deliveries").record(3.0);
            ::metrics::histogram!("some_other_histogram").record(1.0);
        });
        let text = handle.render();
        let seconds = buckets(&text, "prmonitor_delivery_to_commit_seconds");
        assert_eq!(seconds.len(), DURATION_BUCKETS.len() + 1, "{text}");
        let at = |le: &str| seconds.iter().find(|(l, _)| l == le).map(|(_, c)| *c);
        assert_eq!(at("0.005"), Some(0));
        assert_eq!(at("0.25"), Some(1));
        assert_eq!(at("30"), Some(1), "45 s is above the 30 s bucket");
        assert_eq!(at("60"), Some(2));
        assert_eq!(at("600"), Some(2));
        assert_eq!(at("+Inf"), Some(2));
        assert!(text.contains("prmonitor_delivery_to_commit_seconds_count 2"), "{text}");
        let batches = buckets(&text, "prmonitor_intake_batch_deliveries");
        let les: Vec<&str> = batches.iter().map(|(le, _)| le.as_str()).collect();
        assert_eq!(les, ["1", "2", "4", "8", "16", "32", "64", "128", "+Inf"]);
        assert_eq!(batches.iter().map(|(_, c)| *c).collect::<Vec<_>>(), [0, 0, 1, 1, 1, 1, 1, 1, 1]);
        assert!(!buckets(&text, "some_other_histogram").is_empty(), "no summaries: {text}");
        assert!(!text.contains("quantile"), "{text}");
    }
}
