//! Delivery headers and the few payload fields intake needs (pure).
//!
//! Intake reads only what routes a delivery: the action, the installation,
//! the repository and the pull request number or head SHA. The worker re-reads
//! everything else from the API, so the rest of the payload is validated as
//! JSON and otherwise skipped.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ids::{CommitSha, GithubRepoId, InstallationId, PullRequestNumber};
use crate::queue::{EventTarget, InstallationTarget, NewJob, RepoRef};

/// The events prmonitor knows by name: the tracked ones, `ping`, and `push`
/// (ignored, but common enough to count apart). Metrics label only these,
/// so a header cannot create unbounded label values.
pub const KNOWN_EVENTS: [&str; 12] = [
    "pull_request",
    "check_run",
    "check_suite",
    "merge_group",
    "status",
    "branch_protection_rule",
    "repository_ruleset",
    "installation",
    "installation_repositories",
    "repository",
    "ping",
    "push",
];

/// GitHub's delivery ids are GUIDs (36 characters); anything far longer is not one.
pub const MAX_DELIVERY_ID_LEN: usize = 128;
pub const MAX_EVENT_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the X-GitHub-Event header is missing")]
    MissingEvent,
    #[error("the X-GitHub-Delivery header is missing")]
    MissingDelivery,
    #[error("the X-GitHub-Event header is not an event name (lower-case letters and '_', at most 64)")]
    MalformedEvent,
    #[error("the X-GitHub-Delivery header is not a delivery id (letters, digits and '-', at most 128)")]
    MalformedDelivery,
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("a {event} payload must carry {field}")]
    MissingField { event: &'static str, field: &'static str },
    #[error("a {event} payload has an invalid {field}")]
    InvalidField { event: &'static str, field: &'static str },
}

/// The two headers that identify a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHeaders {
    pub delivery_id: String,
    pub event: String,
}

/// An `X-GitHub-Event` name: lower-case letters and `_`, at most 64.
pub fn is_event_name(event: &[u8]) -> bool {
    !event.is_empty()
        && event.len() <= MAX_EVENT_NAME_LEN
        && event.iter().all(|b| b.is_ascii_lowercase() || *b == b'_')
}

pub fn parse_headers(
    event: Option<&[u8]>,
    delivery: Option<&[u8]>,
) -> Result<DeliveryHeaders, EnvelopeError> {
    let event = event.ok_or(EnvelopeError::MissingEvent)?;
    let delivery = delivery.ok_or(EnvelopeError::MissingDelivery)?;
    if !is_event_name(event) {
        return Err(EnvelopeError::MalformedEvent);
    }
    let delivery_ok = !delivery.is_empty()
        && delivery.len() <= MAX_DELIVERY_ID_LEN
        && delivery.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    if !delivery_ok {
        return Err(EnvelopeError::MalformedDelivery);
    }
    // Both are ASCII by the checks above.
    Ok(DeliveryHeaders {
        delivery_id: String::from_utf8_lossy(delivery).into_owned(),
        event: String::from_utf8_lossy(event).into_owned(),
    })
}

/// The request headers kept with a delivery, as GitHub names them: the ones
/// that describe it (no secret is among them; the signature is an HMAC).
pub const RECORDED_HEADERS: [&str; 8] = [
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-Type",
    "X-GitHub-Hook-Installation-Target-ID",
    "User-Agent",
    "Content-Type",
    "X-Hub-Signature-256",
];
/// A recorded header value is cut at this many characters: a stranger's
/// request cannot make every stored row large (GitHub's values are short).
pub const MAX_RECORDED_HEADER_CHARS: usize = 256;

/// The [`RECORDED_HEADERS`] that `get` finds (it looks a header up by name),
/// as a JSON object of strings, e.g. `{"X-GitHub-Event": "pull_request", …}`.
pub fn recorded_headers<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> serde_json::Value {
    let mut recorded = serde_json::Map::new();
    for name in RECORDED_HEADERS {
        if let Some(value) = get(name) {
            let text: String = String::from_utf8_lossy(value)
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_RECORDED_HEADER_CHARS)
                .collect();
            recorded.insert(name.to_owned(), serde_json::Value::String(text));
        }
    }
    serde_json::Value::Object(recorded)
}

/// What intake does with a verified delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// `ping`: answered, no job.
    Ping,
    /// An event prmonitor does not track: logged, no job.
    Ignore,
    /// A tracked event: stored with this job.
    Enqueue(NewJob),
}

/// The routing facts of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub action: Option<String>,
    pub installation_id: Option<InstallationId>,
    pub repository: Option<RepoRef>,
    pub disposition: Disposition,
    /// GitHub's time of the change the delivery reports (see [`changed_at`]).
    pub changed_at: Option<DateTime<Utc>>,
}

/// The time of the change a delivery reports, from its own object: a pull
/// request's `updated_at`; a check run's `completed_at`, else its
/// `started_at`; a check suite's `updated_at`. `None` for other events, or
/// when the field is missing, null or not an RFC 3339 time.
fn changed_at(event: &str, raw: &RawEnvelope) -> Option<DateTime<Utc>> {
    match event {
        "pull_request" => raw.pull_request.as_ref()?.updated_at.0,
        "check_run" => raw.check_run.as_ref().and_then(|run| run.completed_at.0.or(run.started_at.0)),
        "check_suite" => raw.check_suite.as_ref()?.updated_at.0,
        "status" => raw.updated_at.0,
        _ => None,
    }
}

/// How long GitHub took to deliver: `received` minus the time of the change,
/// zero when the change looks later than its receipt (the clocks disagree).
pub fn delivery_delay(received: DateTime<Utc>, changed_at: DateTime<Utc>) -> std::time::Duration {
    (received - changed_at).to_std().unwrap_or_default()
}

#[derive(Deserialize)]
struct RawEnvelope {
    action: Option<String>,
    installation: Option<RawId>,
    repository: Option<RawRepository>,
    pull_request: Option<RawPullRequest>,
    number: Option<i64>,
    check_run: Option<RawCheck>,
    check_suite: Option<RawCheck>,
    /// A `status` event's commit and time (its fields are at the top level).
    sha: Option<String>,
    #[serde(default)]
    updated_at: LenientTime,
    merge_group: Option<RawMergeGroup>,
}

/// A `merge_group` object: only its commit routes the delivery (the worker
/// reads the rest from the stored payload). Read as a map only: a derived
/// struct would also take a JSON array, so `["<sha>"]` would pass for a group.
struct RawMergeGroup {
    head_sha: Option<String>,
}

impl<'de> Deserialize<'de> for RawMergeGroup {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawMergeGroupVisitor)
    }
}

struct RawMergeGroupVisitor;

impl<'de> serde::de::Visitor<'de> for RawMergeGroupVisitor {
    type Value = RawMergeGroup;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a merge_group object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawMergeGroup, A::Error> {
        let mut head_sha = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "head_sha" {
                if head_sha.is_some() {
                    return Err(serde::de::Error::duplicate_field("head_sha"));
                }
                head_sha = Some(map.next_value::<Option<String>>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(RawMergeGroup { head_sha: head_sha.flatten() })
    }
}

#[derive(Deserialize)]
struct RawId {
    id: i64,
}

#[derive(Deserialize)]
struct RawRepository {
    id: i64,
    full_name: String,
}

#[derive(Deserialize)]
struct RawPullRequest {
    number: Option<i64>,
    #[serde(default)]
    updated_at: LenientTime,
}

/// A check run or a check suite: the times are the run's (`started_at`,
/// `completed_at`) or the suite's (`updated_at`).
#[derive(Deserialize)]
struct RawCheck {
    head_sha: Option<String>,
    #[serde(default)]
    started_at: LenientTime,
    #[serde(default)]
    completed_at: LenientTime,
    #[serde(default)]
    updated_at: LenientTime,
}

/// A time read in passing: an RFC 3339 string is a time, anything else
/// (null, a number, garbage, an object) is none. It only feeds a metric, so
/// it never turns a delivery away, and nothing is allocated for it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LenientTime(Option<DateTime<Utc>>);

impl<'de> Deserialize<'de> for LenientTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientTimeVisitor)
    }
}

struct LenientTimeVisitor;

impl<'de> serde::de::Visitor<'de> for LenientTimeVisitor {
    type Value = LenientTime;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<LenientTime, E> {
        Ok(LenientTime(DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<LenientTime, E> {
        Ok(LenientTime(None))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<LenientTime, E> {
        Ok(LenientTime(None))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<LenientTime, E> {
        Ok(LenientTime(None))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<LenientTime, E> {
        Ok(LenientTime(None))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<LenientTime, E> {
        Ok(LenientTime(None))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<LenientTime, E> {
        Ok(LenientTime(None))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<LenientTime, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(LenientTime(None))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<LenientTime, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(LenientTime(None))
    }
}

/// Parses a verified body for `event`.
pub fn parse_payload(event: &str, body: &[u8]) -> Result<Envelope, EnvelopeError> {
    // serde_json would also read a struct from a JSON array; GitHub sends objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(EnvelopeError::NotAnObject);
    }
    // JSON is UTF-8; from_str checks all of it, where from_slice would let
    // invalid bytes through inside the fields it skips.
    let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    let raw: RawEnvelope =
        serde_json::from_str(text).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
    let installation_id = raw.installation.as_ref().map(|i| InstallationId(i.id));
    let repository = match &raw.repository {
        Some(repo) => Some(repo_ref(event_label(event), repo, installation_id)?),
        None => None,
    };
    let disposition = disposition(event, &raw, repository.as_ref(), installation_id)?;
    let changed_at = changed_at(event, &raw);
    Ok(Envelope { action: raw.action, installation_id, repository, disposition, changed_at })
}

/// A static name for error messages (the header value is not 'static).
fn event_label(event: &str) -> &'static str {
    match event {
        "pull_request" => "pull_request",
        "check_run" => "check_run",
        "check_suite" => "check_suite",
        "merge_group" => "merge_group",
        "installation" => "installation",
        "installation_repositories" => "installation_repositories",
        "repository" => "repository",
        "status" => "status",
        "branch_protection_rule" => "branch_protection_rule",
        "repository_ruleset" => "repository_ruleset",
        _ => "webhook",
    }
}

fn repo_ref(
    event: &'static str,
    raw: &RawRepository,
    installation_id: Option<InstallationId>,
) -> Result<RepoRef, EnvelopeError> {
    let valid = raw.id > 0
        && raw
            .full_name
            .split_once('/')
            .is_some_and(|(owner, name)| !owner.is_empty() && !name.is_empty() && !name.contains('/'));
    if !valid {
        return Err(EnvelopeError::InvalidField { event, field: "repository" });
    }
    Ok(RepoRef { github_id: GithubRepoId(raw.id), full_name: raw.full_name.clone(), installation_id })
}

fn disposition(
    event: &str,
    raw: &RawEnvelope,
    repository: Option<&RepoRef>,
    installation_id: Option<InstallationId>,
) -> Result<Disposition, EnvelopeError> {
    let event_label = event_label(event);
    let need_repo =
        || repository.cloned().ok_or(EnvelopeError::MissingField { event: event_label, field: "repository" });
    let target = match event {
        "ping" => return Ok(Disposition::Ping),
        "pull_request" => {
            let number =
                raw.pull_request.as_ref().and_then(|pr| pr.number).or(raw.number).ok_or(
                    EnvelopeError::MissingField { event: event_label, field: "pull_request.number" },
                )?;
            let number = PullRequestNumber::from_github(number)
                .ok_or(EnvelopeError::InvalidField { event: event_label, field: "pull_request.number" })?;
            let with_checks = matches!(raw.action.as_deref(), Some("opened" | "reopened" | "synchronize"));
            EventTarget::PullRequest { repository: need_repo()?, number, with_checks }
        }
        "check_run" | "check_suite" => {
            let (check, field) = if event == "check_run" {
                (raw.check_run.as_ref(), "check_run.head_sha")
            } else {
                (raw.check_suite.as_ref(), "check_suite.head_sha")
            };
            let head_sha = check
                .and_then(|c| c.head_sha.clone())
                .ok_or(EnvelopeError::MissingField { event: event_label, field })?;
            if !is_commit_sha(&head_sha) {
                return Err(EnvelopeError::InvalidField { event: event_label, field });
            }
            EventTarget::CommitChecks { repository: need_repo()?, head_sha: CommitSha(head_sha) }
        }
        "status" => {
            let sha =
                raw.sha.clone().ok_or(EnvelopeError::MissingField { event: event_label, field: "sha" })?;
            if !is_commit_sha(&sha) {
                return Err(EnvelopeError::InvalidField { event: event_label, field: "sha" });
            }
            EventTarget::CommitStatuses { repository: need_repo()?, sha: CommitSha(sha) }
        }
        // What a branch requires may have changed: re-read it for the
        // branches of the open PRs (a rule's pattern may match any of them).
        "branch_protection_rule" | "repository_ruleset" => {
            EventTarget::RequiredChecks { repository: need_repo()? }
        }
        "merge_group" => {
            let field = "merge_group.head_sha";
            let head_sha = raw
                .merge_group
                .as_ref()
                .and_then(|group| group.head_sha.clone())
                .ok_or(EnvelopeError::MissingField { event: event_label, field })?;
            if !is_commit_sha(&head_sha) {
                return Err(EnvelopeError::InvalidField { event: event_label, field });
            }
            EventTarget::MergeGroup { repository: need_repo()?, head_sha: CommitSha(head_sha) }
        }
        "repository" => EventTarget::Repository { repository: need_repo()?, action: raw.action.clone() },
        "installation" | "installation_repositories" => {
            let installation_id = installation_id
                .ok_or(EnvelopeError::MissingField { event: event_label, field: "installation.id" })?;
            let target = InstallationTarget { installation_id, action: raw.action.clone() };
            return Ok(Disposition::Enqueue(NewJob::installation(&target)));
        }
        _ => return Ok(Disposition::Ignore),
    };
    Ok(Disposition::Enqueue(NewJob::event(&target)))
}

/// A hex object id: SHA-1 (40) or SHA-256 (64) repositories.
fn is_commit_sha(value: &str) -> bool {
    matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::JobKind;

    const SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

    #[test]
    fn headers_must_be_present_and_well_formed() {
        let ok = parse_headers(Some(b"pull_request"), Some(b"72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert_eq!(ok.expect("valid").event, "pull_request");
        assert_eq!(parse_headers(None, Some(b"x")), Err(EnvelopeError::MissingEvent));
        assert_eq!(parse_headers(Some(b"ping"), None), Err(EnvelopeError::MissingDelivery));
        for bad_event in [&b""[..], b"Pull_Request", b"pull request", b"ping\n", &[b'a'; 65]] {
            assert_eq!(parse_headers(Some(bad_event), Some(b"x")), Err(EnvelopeError::MalformedEvent));
        }
        for bad_id in [&b""[..], b"../etc", b"a b", b"id\0", &[b'a'; 129], "é".as_bytes()] {
            assert_eq!(parse_headers(Some(b"ping"), Some(bad_id)), Err(EnvelopeError::MalformedDelivery));
        }
    }

    #[test]
    fn only_json_objects_are_accepted() {
        for body in [&b""[..], b"[]", b"[{\"action\":\"opened\"}]", b"\"text\"", b"42", b"null"] {
            assert_eq!(parse_payload("push", body), Err(EnvelopeError::NotAnObject), "{body:?}");
        }
        for body in [&b"{"[..], b"{\"action\":}", b"{} trailing", b"{\"a\":\"\xff\"}"] {
            assert!(matches!(parse_payload("push", body), Err(EnvelopeError::InvalidJson(_))), "{body:?}");
        }
    }

    #[test]
    fn deeply_nested_json_neither_overflows_nor_slips_through() {
        // Skipped fields are walked without recursion: deep nesting is harmless there.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("{{\"a\":{deep}}}");
        assert_eq!(parse_payload("push", body.as_bytes()).expect("valid").disposition, Disposition::Ignore);
        // In a field intake reads, it is the wrong type.
        let body = format!("{{\"installation\":{deep}}}");
        assert!(matches!(parse_payload("push", body.as_bytes()), Err(EnvelopeError::InvalidJson(_))));
        // Unbalanced nesting is invalid wherever it is.
        let body = format!("{{\"a\":{}}}", "[".repeat(100_000));
        assert!(matches!(parse_payload("push", body.as_bytes()), Err(EnvelopeError::InvalidJson(_))));
    }

    #[test]
    fn status_events_target_their_commit_and_protection_events_the_repository() {
        let body = format!(
            r#"{{"id":7,"sha":"{SHA}","context":"ci","state":"failure","updated_at":"2026-01-01T00:00:05Z",
                "repository":{{"id":42,"full_name":"o/r"}},"installation":{{"id":9}}}}"#
        );
        let envelope = parse_payload("status", body.as_bytes()).expect("valid");
        let Disposition::Enqueue(job) = envelope.disposition else { panic!("not enqueued") };
        assert_eq!(job.coalesce_key.as_deref(), Some(format!("statuses:42:{SHA}").as_str()));
        assert!(envelope.changed_at.is_some());
        let rule = br#"{"action":"edited","rule":{"name":"main"},"repository":{"id":42,"full_name":"o/r"}}"#;
        for event in ["branch_protection_rule", "repository_ruleset"] {
            let Disposition::Enqueue(job) = parse_payload(event, rule).expect("valid").disposition else {
                panic!("{event} not enqueued")
            };
            assert_eq!(job.coalesce_key.as_deref(), Some("required:42"));
        }
        for (bad, field) in [
            (r#"{"id":7,"repository":{"id":42,"full_name":"o/r"}}"#.to_owned(), "sha"),
            (r#"{"sha":"zz","repository":{"id":42,"full_name":"o/r"}}"#.to_owned(), "sha"),
            (format!(r#"{{"sha":"{SHA}"}}"#), "repository"),
        ] {
            let error = parse_payload("status", bad.as_bytes()).expect_err("refused");
            assert!(error.to_string().contains(field), "{bad}: {error}");
        }
        assert!(matches!(parse_payload("status", br#"{"sha":5}"#), Err(EnvelopeError::InvalidJson(_))));
    }

    #[test]
    fn pull_request_events_target_the_pr_and_its_checks_on_new_heads() {
        let body = br#"{"action":"synchronize","number":7,"pull_request":{"number":7},
            "repository":{"id":42,"full_name":"o/r"},"installation":{"id":9}}"#;
        let envelope = parse_payload("pull_request", body).expect("valid");
        assert_eq!(envelope.installation_id, Some(InstallationId(9)));
        let Disposition::Enqueue(job) = envelope.disposition else { panic!("not enqueued") };
        assert_eq!(job.kind, JobKind::Event);
        assert_eq!(job.coalesce_key.as_deref(), Some("pr:42:7"));
        assert_eq!(job.payload["with_checks"], true);

        let labeled = br#"{"action":"labeled","number":7,"pull_request":{"number":7},"repository":{"id":42,"full_name":"o/r"}}"#;
        let Disposition::Enqueue(job) = parse_payload("pull_request", labeled).expect("valid").disposition
        else {
            panic!("not enqueued")
        };
        assert!(job.payload.get("with_checks").is_none());
    }

    #[test]
    fn check_events_target_the_head_sha_even_without_pull_requests() {
        let body = format!(
            r#"{{"action":"completed","check_run":{{"id":16354767716,"head_sha":"{SHA}","pull_requests":[]}},
               "repository":{{"id":42,"full_name":"o/r"}}}}"#
        );
        let Disposition::Enqueue(job) =
            parse_payload("check_run", body.as_bytes()).expect("valid").disposition
        else {
            panic!("not enqueued")
        };
        assert_eq!(job.coalesce_key, Some(format!("checks:42:{SHA}")));
    }

    #[test]
    fn merge_group_events_target_the_group_commit() {
        for action in ["checks_requested", "destroyed"] {
            let body = format!(
                r#"{{"action":"{action}","reason":"merged","merge_group":{{"head_sha":"{SHA}",
                   "head_ref":"refs/heads/gh-readonly-queue/main/pr-7-{SHA}","base_ref":"refs/heads/main",
                   "base_sha":"{SHA}"}},"repository":{{"id":42,"full_name":"o/r"}},"installation":{{"id":9}}}}"#
            );
            let envelope = parse_payload("merge_group", body.as_bytes()).expect("valid");
            assert_eq!(envelope.action.as_deref(), Some(action));
            let Disposition::Enqueue(job) = envelope.disposition else { panic!("not enqueued") };
            assert_eq!(job.kind, JobKind::Event);
            assert_eq!(job.coalesce_key, Some(format!("merge_group:42:{SHA}")));
            // Not the commit's checks: a group's runs have their own deliveries.
            assert_ne!(job.coalesce_key, Some(format!("checks:42:{SHA}")));
        }
    }

    #[test]
    fn malformed_or_hostile_merge_groups_are_refused_not_panics() {
        let repo = r#""repository":{"id":1,"full_name":"o/r"}"#;
        let missing: [String; 5] = [
            format!(r#"{{"action":"checks_requested",{repo}}}"#),
            format!(r#"{{"action":"checks_requested","merge_group":null,{repo}}}"#),
            format!(r#"{{"action":"checks_requested","merge_group":{{}},{repo}}}"#),
            format!(r#"{{"action":"destroyed","merge_group":{{"head_sha":null}},{repo}}}"#),
            format!(r#"{{"merge_group":{{"head_sha":"{SHA}"}}}}"#),
        ];
        for body in &missing {
            assert!(
                matches!(
                    parse_payload("merge_group", body.as_bytes()),
                    Err(EnvelopeError::MissingField { .. })
                ),
                "{body}"
            );
        }
        let invalid = [
            "not-a-sha".to_owned(),
            String::new(),
            format!("{SHA}0"),
            format!("../../{}", &SHA[6..]),
            "g".repeat(40),
            "a".repeat(10_000),
        ];
        for sha in &invalid {
            let body = format!(r#"{{"merge_group":{{"head_sha":"{sha}"}},{repo}}}"#);
            assert_eq!(
                parse_payload("merge_group", body.as_bytes()),
                Err(EnvelopeError::InvalidField { event: "merge_group", field: "merge_group.head_sha" }),
                "{sha}"
            );
        }
        // Wrong types inside the object intake reads are invalid JSON, whatever they are.
        for value in ["42", r#"["a"]"#, r#""text""#, "true", r#"{"head_sha":7}"#, r#"{"head_sha":["x"]}"#] {
            let body = format!(r#"{{"merge_group":{value},{repo}}}"#);
            assert!(
                matches!(parse_payload("merge_group", body.as_bytes()), Err(EnvelopeError::InvalidJson(_))),
                "{value}"
            );
        }
        // Every refusal names the event and is a client's error.
        let error = parse_payload("merge_group", missing[0].as_bytes()).expect_err("refused");
        assert!(error.to_string().contains("merge_group"), "{error}");
    }

    #[test]
    fn tracked_events_missing_their_subject_are_rejected() {
        let cases: [(&str, &[u8]); 6] = [
            ("pull_request", br#"{"action":"opened","repository":{"id":1,"full_name":"o/r"}}"#),
            ("pull_request", br#"{"action":"opened","number":3}"#),
            ("pull_request", br#"{"number":-3,"repository":{"id":1,"full_name":"o/r"}}"#),
            (
                "check_run",
                br#"{"check_run":{"head_sha":"not-a-sha"},"repository":{"id":1,"full_name":"o/r"}}"#,
            ),
            ("check_suite", br#"{"check_suite":{},"repository":{"id":1,"full_name":"o/r"}}"#),
            ("installation", br#"{"action":"created"}"#),
        ];
        for (event, body) in cases {
            let result = parse_payload(event, body);
            assert!(
                matches!(
                    result,
                    Err(EnvelopeError::MissingField { .. } | EnvelopeError::InvalidField { .. })
                ),
                "{event} {}: {result:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn hostile_field_types_are_invalid_json_not_panics() {
        let cases: [&[u8]; 4] = [
            br#"{"installation":{"id":"9"}}"#,
            br#"{"installation":{"id":18446744073709551616}}"#,
            br#"{"repository":{"id":1,"full_name":"noslash"}}"#,
            br#"{"action":["opened"]}"#,
        ];
        for body in cases {
            assert!(parse_payload("push", body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a time").with_timezone(&Utc)
    }

    fn payload_fixture(path: &str) -> Vec<u8> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github/payloads/");
        std::fs::read(format!("{root}{path}")).expect("a GitHub example payload")
    }

    #[test]
    fn each_tracked_event_names_the_time_of_its_change() {
        // GitHub's own examples.
        let cases = [
            ("pull_request", "pull_request/opened.json", "2019-05-15T15:20:33Z"),
            ("check_run", "check_run/completed.json", "2019-05-15T15:21:12Z"),
            ("check_run", "check_run/created.json", "2019-05-15T15:21:12Z"),
            ("check_suite", "check_suite/completed.json", "2019-05-15T15:21:14Z"),
        ];
        for (event, path, expected) in cases {
            let envelope = parse_payload(event, &payload_fixture(path)).expect("valid");
            assert_eq!(envelope.changed_at, Some(at(expected)), "{path}");
        }
        let repo = r#""repository":{"id":42,"full_name":"o/r"}"#;
        // A check run's completion, else its start.
        let run = |times: &str| {
            let body = format!(r#"{{"check_run":{{"head_sha":"{SHA}",{times}}},{repo}}}"#);
            parse_payload("check_run", body.as_bytes()).expect("valid").changed_at
        };
        let (start, end) = ("2026-01-02T03:04:05Z", "2026-01-02T03:09:00+01:00");
        assert_eq!(run(&format!(r#""started_at":"{start}","completed_at":"{end}""#)), Some(at(end)));
        assert_eq!(run(&format!(r#""started_at":"{start}","completed_at":null"#)), Some(at(start)));
        assert_eq!(run(&format!(r#""started_at":"{start}""#)), Some(at(start)));
        assert_eq!(run(r#""name":"build""#), None);
        // Only the event's own object counts: a suite's time in a check_run
        // delivery is not the run's, and untracked events have none.
        let body = format!(
            r#"{{"check_run":{{"head_sha":"{SHA}"}},"check_suite":{{"updated_at":"{start}"}},{repo}}}"#
        );
        assert_eq!(parse_payload("check_run", body.as_bytes()).expect("valid").changed_at, None);
        let body = format!(r#"{{"pull_request":{{"updated_at":"{start}"}},{repo}}}"#);
        assert_eq!(parse_payload("push", body.as_bytes()).expect("valid").changed_at, None);
    }

    #[test]
    fn missing_or_garbage_times_are_no_time_and_never_refuse_the_delivery() {
        let repo = r#""repository":{"id":42,"full_name":"o/r"}"#;
        for value in [
            "null",
            "5",
            "-1.5e300",
            "true",
            r#""""#,
            r#""yesterday""#,
            r#""2026-13-45T99:99:99Z""#,
            r#""2026-01-02 03:04:05""#,
            r#""\u00e9t\u00e9""#,
            r#"{"seconds":5}"#,
            r#"[1,[2,{"a":3}]]"#,
        ] {
            let body = format!(r#"{{"number":7,"pull_request":{{"number":7,"updated_at":{value}}},{repo}}}"#);
            let envelope = parse_payload("pull_request", body.as_bytes()).expect("still a valid delivery");
            assert_eq!(envelope.changed_at, None, "{value}");
            assert!(matches!(envelope.disposition, Disposition::Enqueue(_)), "{value}");
            let suite = format!(r#"{{"check_suite":{{"head_sha":"{SHA}","updated_at":{value}}},{repo}}}"#);
            assert_eq!(parse_payload("check_suite", suite.as_bytes()).expect("valid").changed_at, None);
        }
        let missing = format!(r#"{{"number":7,"pull_request":{{"number":7}},{repo}}}"#);
        assert_eq!(parse_payload("pull_request", missing.as_bytes()).expect("valid").changed_at, None);
        // Invalid JSON inside the field is still invalid JSON.
        let broken = format!(r#"{{"number":7,"pull_request":{{"number":7,"updated_at":[1,}}}},{repo}}}"#);
        assert!(matches!(
            parse_payload("pull_request", broken.as_bytes()),
            Err(EnvelopeError::InvalidJson(_))
        ));
    }

    #[test]
    fn the_delay_is_receipt_minus_change_and_clock_skew_is_zero() {
        let changed = at("2026-01-02T03:04:05Z");
        let received = at("2026-01-02T03:04:35.250Z");
        assert_eq!(delivery_delay(received, changed), std::time::Duration::from_millis(30_250));
        assert_eq!(delivery_delay(changed, changed), std::time::Duration::ZERO);
        // GitHub's clock ahead of ours: the change looks later than its receipt.
        assert_eq!(delivery_delay(changed, received), std::time::Duration::ZERO);
    }

    #[test]
    fn recorded_headers_are_the_describing_ones_cut_short() {
        let long = "a".repeat(1000);
        let headers: [(&str, &[u8]); 5] = [
            ("x-github-event", b"pull_request"),
            ("x-github-delivery", b"72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("user-agent", long.as_bytes()),
            ("x-hub-signature-256", b"sha256=ab\x01cd"),
            ("authorization", b"Bearer secret"),
        ];
        let recorded = recorded_headers(|name| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
        });
        assert_eq!(recorded["X-GitHub-Event"], "pull_request");
        assert_eq!(recorded["X-GitHub-Delivery"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(recorded["User-Agent"].as_str().map(str::len), Some(MAX_RECORDED_HEADER_CHARS));
        assert_eq!(recorded["X-Hub-Signature-256"], "sha256=abcd", "control characters dropped");
        assert_eq!(recorded.as_object().map(|o| o.len()), Some(4), "only the describing headers: {recorded}");
    }

    #[test]
    fn untracked_events_are_ignored_and_ping_is_answered() {
        assert_eq!(parse_payload("push", b"{}").expect("valid").disposition, Disposition::Ignore);
        assert_eq!(parse_payload("ping", br#"{"zen":"x"}"#).expect("valid").disposition, Disposition::Ping);
    }
}
