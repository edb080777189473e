//! Latency as Prometheus histograms with buckets, read from a child
//! `prmonitor serve`: GitHub's delivery delay (receipt minus the payload's
//! own time of the change), prmonitor's delivery-to-commit time, job
//! durations.

use std::collections::BTreeMap;

use chrono::{SubsecRound as _, Utc};
use github_sim::NewPr;
use prmonitor_testkit::world::webhook_target;
use prmonitor_testkit::{count, sign};
use serde_json::Value;

use crate::read_api::{metric, parse_metrics};
use crate::scenarios::{child_env, world, CONVERGE, REPO};

/// Checks every histogram of a Prometheus text: each series has buckets
/// that never decrease with `le`, ending at `+Inf` equal to its `_count`,
/// and nothing is a summary. Returns the `_bucket` series it checked.
pub(crate) fn assert_histograms_are_whole(text: &str) -> usize {
    assert!(!text.contains("quantile="), "histograms, not summaries: {text}");
    // (name, labels without le) → [(le, count)] in the order rendered.
    let mut series: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let Some((name, labels)) = key.split_once("_bucket{") else { continue };
        let labels = labels.trim_end_matches('}');
        let (others, le): (Vec<&str>, Vec<&str>) = labels.split(',').partition(|l| !l.starts_with("le="));
        let le = le.first().expect("a bucket has le").trim_start_matches("le=").trim_matches('"');
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("a number") };
        let value = value.parse().expect("a count");
        series.entry((name.to_owned(), others.join(","))).or_default().push((le, value));
    }
    let counts = parse_metrics(text);
    for ((name, labels), buckets) in &series {
        assert!(
            buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}{{{labels}}}: {buckets:?}"
        );
        let (le, last) = buckets.last().copied().expect("buckets");
        assert_eq!(le, f64::INFINITY, "{name}{{{labels}}} ends at +Inf");
        let key =
            if labels.is_empty() { format!("{name}_count") } else { format!("{name}_count{{{labels}}}") };
        assert_eq!(counts.get(&key), Some(&last), "{name}{{{labels}}}: +Inf is the count");
    }
    series.len()
}

/// The count of bucket `le` of a histogram series.
fn bucket(m: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)], le: &str) -> f64 {
    let mut labels = labels.to_vec();
    labels.push(("le", le));
    metric(m, &format!("{name}_bucket"), &labels)
}

#[tokio::test]
async fn delivery_delay_delivery_to_commit_and_job_durations_are_histograms() {
    let (sim, db) = world(1).await;
    let env = child_env(&sim);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serve = crate::PRMONITOR.start(&["serve"], &db, &env_refs).await;
    sim.set_webhook(Some(webhook_target(&serve.address)));
    // A pull_request and a check_run delivery from GitHub, sent as the changes happen.
    let number = sim.open_pr(REPO, NewPr::new("Timed", "amy")).expect("open");
    let head =
        sim.world(|w| w.repo(w.repo_id(REPO)?).map(|r| r.pulls[&number].head_sha.clone())).expect("pr");
    let run = sim.create_check_run(REPO, &head, "build").expect("run");
    sim.start_check_run(run).expect("start");
    sim.wait_for_deliveries().await;
    assert!(sim.deliveries().iter().all(|d| d.statuses == [202]), "{:?}", sim.deliveries());
    let sent = |event: &str| sim.deliveries().iter().filter(|d| d.event == event).count() as f64;
    assert_eq!((sent("pull_request"), sent("check_run"), sent("check_suite")), (1.0, 1.0, 0.0));

    // A check_suite delivery about a change 30 seconds ago.
    let changed_at = Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(30);
    let mut payload: Value =
        serde_json::from_slice(&prmonitor_testkit::fixture("check_suite/completed.json")).expect("json");
    let repo_id = sim.repo_id(REPO).expect("repo");
    payload["repository"]["id"] = repo_id.into();
    payload["repository"]["full_name"] = REPO.into();
    payload["installation"]["id"] = github_sim::generate::GENERATED_INSTALLATION.into();
    payload["check_suite"]["head_sha"] = head.clone().into();
    payload["check_suite"]["updated_at"] = changed_at.to_rfc3339().into();
    let body = serde_json::to_vec(&payload).expect("json");
    let response = reqwest::Client::new()
        .post(format!("http://{}/webhooks/github", serve.address))
        .header("x-github-event", "check_suite")
        .header("x-github-delivery", prmonitor_testkit::new_delivery_id())
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    prmonitor_testkit::world::drain(&db.url, CONVERGE).await;
    prmonitor_testkit::verify::diff_all(&db.url, &sim).await.unwrap_or_else(|d| panic!("{d}"));

    let text = reqwest::get(format!("http://{}/metrics", serve.address))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    let m = parse_metrics(&text);
    assert!(assert_histograms_are_whole(&text) >= 5, "{text}");

    let delay = "prmonitor_github_delivery_delay_seconds";
    for (event, deliveries) in [("pull_request", 1.0), ("check_run", 1.0), ("check_suite", 1.0)] {
        let labels = [("event", event)];
        assert_eq!(metric(&m, &format!("{delay}_count"), &labels), deliveries, "{event}: {text}");
        assert_eq!(bucket(&m, delay, &labels, "+Inf"), deliveries, "{event}");
    }
    // GitHub's own deliveries here are sent as the change happens (their
    // times have whole seconds, so up to a second and the sending).
    assert_eq!(bucket(&m, delay, &[("event", "pull_request")], "10"), 1.0, "{text}");
    // The one about a change 30 s ago is at or above the 30 s boundary.
    let suite = [("event", "check_suite")];
    assert_eq!(bucket(&m, delay, &suite, "10"), 0.0, "{text}");
    assert_eq!(bucket(&m, delay, &suite, "60"), 1.0, "{text}");
    let observed = metric(&m, &format!("{delay}_sum"), &suite);
    assert!((30.0..60.0).contains(&observed), "{observed}");

    // One observation per delivery a sync's commit completed.
    let to_commit = "prmonitor_delivery_to_commit_seconds";
    let processed =
        count(&db.url, "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'processed'").await as f64;
    assert_eq!(processed, 3.0);
    assert_eq!(metric(&m, &format!("{to_commit}_count"), &[]), processed, "{text}");
    assert_eq!(bucket(&m, to_commit, &[], "+Inf"), processed);
    // Each is at least its delivery's receipt to its job's transaction
    // (`processed_at`), and at most that and the transaction itself.
    let waited_ms = |rounding: &str| {
        format!(
            "SELECT {rounding}(sum(EXTRACT(EPOCH FROM processed_at - received_at)) * 1000)::int8 \
             FROM webhook_deliveries WHERE outcome = 'processed'"
        )
    };
    let at_least = count(&db.url, &waited_ms("floor")).await as f64 / 1000.0;
    let at_most = count(&db.url, &waited_ms("ceil")).await as f64 / 1000.0 + processed * 2.0;
    let total = metric(&m, &format!("{to_commit}_sum"), &[]);
    assert!((at_least..=at_most).contains(&total), "{total} s, not within {at_least}..={at_most}");

    let jobs =
        count(&db.url, "SELECT count(*) FROM jobs WHERE kind = 'event' AND state = 'done'").await as f64;
    assert!(jobs >= 2.0, "{jobs}");
    let duration = "prmonitor_job_duration_seconds";
    assert_eq!(bucket(&m, duration, &[("kind", "event")], "+Inf"), jobs, "{text}");
    assert_eq!(metric(&m, &format!("{duration}_count"), &[("kind", "event")]), jobs);
    assert!(bucket(&m, duration, &[("kind", "event")], "0.005") <= jobs);
    // Intake's batch sizes have count buckets, not seconds.
    let batches = "prmonitor_intake_batch_deliveries";
    let bounds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{batches}_bucket{{le=\"")))
        .filter_map(|rest| rest.split_once('"').map(|(le, _)| le))
        .collect();
    assert_eq!(bounds, ["1", "2", "4", "8", "16", "32", "64", "128", "+Inf"], "{text}");
    let stored = count(&db.url, "SELECT count(*) FROM webhook_deliveries").await as f64;
    assert_eq!(metric(&m, &format!("{batches}_sum"), &[]), stored, "every stored delivery was in a batch");
    serve.terminate();
}
