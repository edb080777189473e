//! Stored deliveries for operators (`prmonitor deliveries`): a listing, one
//! delivery in detail with a summary of its payload and the job it became,
//! and replay, which processes a stored payload again.
//!
//! Replay parses the stored bytes with intake's own parser, so a replayed
//! delivery becomes the job it would become if it arrived now; the worker
//! then reads it from the delivery row like any other.

use std::fmt::{self, Write as _};

use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use serde_json::Value;

use super::envelope::{self, Disposition, EnvelopeError, RECORDED_HEADERS};
use crate::db::deliveries::{self, DeliveryRow};
use crate::queue::{self, EnqueuedJob, JobView};

/// `--since`: a duration back from `now` (`90m`, `2h`, `3d`, as the
/// settings take them) or an RFC 3339 time.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = crate::config::parse_duration(raw).ok_or_else(|| {
        "expected a duration such as 90m, 2h or 3d, or an RFC 3339 time such as 2026-12-01T10:00:00Z"
            .to_owned()
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| format!("{raw} reaches back before any representable time"))
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn event_action(event: &str, action: Option<&str>) -> String {
    match action {
        Some(action) => format!("{event}.{action}"),
        None => event.to_owned(),
    }
}

/// `rows` as a table, newest first as [`deliveries::list`] gives them:
/// received at, delivery id, event.action, repository, outcome, job id.
pub fn table(rows: &[DeliveryRow]) -> String {
    let header = ["received at", "delivery id", "event.action", "repository", "outcome", "job"];
    let lines: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                time(row.received_at),
                row.delivery_id.clone(),
                event_action(&row.event, row.action.as_deref()),
                row.repository_full_name.clone().unwrap_or_else(|| "-".into()),
                // A recovered delivery says so after its job ends too.
                if row.source == "recovery" && row.outcome != "recovered" {
                    format!("{} (recovered)", row.outcome)
                } else {
                    row.outcome.clone()
                },
                row.job_id.map_or_else(|| "-".into(), |id| id.to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: [&str; 6]| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(header);
    for line in &lines {
        push(line.each_ref().map(String::as_str));
    }
    out
}

/// What a payload is about, from the fields GitHub puts in every delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadSummary {
    pub action: Option<String>,
    pub repository: Option<String>,
    pub repository_id: Option<i64>,
    pub sender: Option<String>,
    pub installation_id: Option<i64>,
    pub subject: Option<Subject>,
}

/// The object a delivery is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    PullRequest {
        number: i64,
        title: String,
        state: String,
        draft: bool,
        head_sha: Option<String>,
    },
    CheckRun {
        id: Option<i64>,
        name: String,
        status: String,
        conclusion: Option<String>,
        head_sha: Option<String>,
    },
    CheckSuite {
        id: Option<i64>,
        status: String,
        conclusion: Option<String>,
        head_sha: Option<String>,
    },
}

/// Summarises a raw payload; `Err` says why it is not a JSON object.
pub fn summarize(payload: &[u8]) -> Result<PayloadSummary, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let pull_request = &value["pull_request"];
    let check_run = &value["check_run"];
    let check_suite = &value["check_suite"];
    let subject = if pull_request.is_object() {
        let merged =
            pull_request["merged"].as_bool().unwrap_or(false) || pull_request["merged_at"].is_string();
        let state = text(&pull_request["state"]).unwrap_or_else(|| "unknown".into());
        Some(Subject::PullRequest {
            number: pull_request["number"].as_i64().or_else(|| value["number"].as_i64()).unwrap_or(0),
            title: text(&pull_request["title"]).unwrap_or_default(),
            state: if merged { "merged".into() } else { state },
            draft: pull_request["draft"].as_bool().unwrap_or(false),
            head_sha: text(&pull_request["head"]["sha"]),
        })
    } else if check_run.is_object() {
        Some(Subject::CheckRun {
            id: check_run["id"].as_i64(),
            name: text(&check_run["name"]).unwrap_or_default(),
            status: text(&check_run["status"]).unwrap_or_else(|| "unknown".into()),
            conclusion: text(&check_run["conclusion"]),
            head_sha: text(&check_run["head_sha"]),
        })
    } else if check_suite.is_object() {
        Some(Subject::CheckSuite {
            id: check_suite["id"].as_i64(),
            status: text(&check_suite["status"]).unwrap_or_else(|| "unknown".into()),
            conclusion: text(&check_suite["conclusion"]),
            head_sha: text(&check_suite["head_sha"]),
        })
    } else {
        None
    };
    Ok(PayloadSummary {
        action: text(&value["action"]),
        repository: text(&value["repository"]["full_name"]),
        repository_id: value["repository"]["id"].as_i64(),
        sender: text(&value["sender"]["login"]),
        installation_id: value["installation"]["id"].as_i64(),
        subject,
    })
}

fn or_dash<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PullRequest { number, title, state, draft, head_sha } => {
                let draft = if *draft { ", draft" } else { "" };
                write!(
                    f,
                    "pull request  #{number} {title:?} ({state}{draft}), head {}",
                    or_dash(head_sha.as_deref())
                )
            }
            Self::CheckRun { id, name, status, conclusion, head_sha } => write!(
                f,
                "check run     {name:?} (id {}) {status}, conclusion {}, head {}",
                or_dash(*id),
                or_dash(conclusion.as_deref()),
                or_dash(head_sha.as_deref())
            ),
            Self::CheckSuite { id, status, conclusion, head_sha } => write!(
                f,
                "check suite   id {} {status}, conclusion {}, head {}",
                or_dash(*id),
                or_dash(conclusion.as_deref()),
                or_dash(head_sha.as_deref())
            ),
        }
    }
}

/// One delivery with everything `deliveries show` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryDetail {
    pub row: DeliveryRow,
    /// `None` once the retention has pruned it.
    pub payload: Option<Vec<u8>>,
    /// The job the delivery became, if it became one and the job is still stored.
    pub job: Option<JobView>,
}

/// The delivery `delivery_id` and its job; `None` when no such delivery is stored.
pub async fn show(
    conn: &mut AsyncPgConnection,
    delivery_id: &str,
) -> diesel::QueryResult<Option<DeliveryDetail>> {
    let Some((row, payload)) = deliveries::find(conn, delivery_id).await? else { return Ok(None) };
    let job = match row.job_id {
        Some(id) => queue::get(conn, id).await?,
        None => None,
    };
    Ok(Some(DeliveryDetail { row, payload, job }))
}

impl fmt::Display for DeliveryDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = &self.row;
        writeln!(f, "delivery      {}", row.delivery_id)?;
        writeln!(f, "event         {}", event_action(&row.event, row.action.as_deref()))?;
        writeln!(f, "received at   {}", time(row.received_at))?;
        writeln!(f, "processed at  {}", or_dash(row.processed_at.map(time)))?;
        writeln!(f, "outcome       {}", row.outcome)?;
        match row.github_delivered_at {
            Some(at) if row.source == "recovery" => writeln!(
                f,
                "source        recovery (from the deliveries API; GitHub's attempt at {})",
                time(at)
            )?,
            _ => writeln!(f, "source        {}", row.source)?,
        }
        let repository = match (&row.repository_full_name, row.repository_github_id) {
            (Some(name), Some(id)) => format!("{name} (id {id})"),
            (name, id) => or_dash(name.clone().or(id.map(|id| id.to_string()))),
        };
        writeln!(f, "repository    {repository}")?;
        writeln!(f, "installation  {}", or_dash(row.installation_id))?;
        writeln!(f, "job           {}", or_dash(row.job_id))?;

        writeln!(f, "\nheaders")?;
        match row.headers.as_ref().and_then(Value::as_object) {
            Some(headers) if !headers.is_empty() => {
                // GitHub's order first (JSONB keeps its own), then any others.
                let known = RECORDED_HEADERS.iter().filter_map(|name| headers.get(*name).map(|v| (*name, v)));
                let others = headers
                    .iter()
                    .filter(|(name, _)| !RECORDED_HEADERS.contains(&name.as_str()))
                    .map(|(n, v)| (n.as_str(), v));
                for (name, value) in known.chain(others) {
                    writeln!(
                        f,
                        "  {name}: {}",
                        value.as_str().map_or_else(|| value.to_string(), str::to_owned)
                    )?;
                }
            }
            _ => writeln!(f, "  (not stored)")?,
        }

        match &self.payload {
            None => writeln!(
                f,
                "\npayload pruned ({} bytes when received; the retention has passed)",
                row.payload_size
            )?,
            Some(payload) => {
                writeln!(f, "\npayload ({} bytes)", payload.len())?;
                match summarize(payload) {
                    Err(reason) => writeln!(f, "  {reason}")?,
                    Ok(summary) => {
                        writeln!(f, "  event         {}", row.event)?;
                        writeln!(f, "  action        {}", or_dash(summary.action.as_deref()))?;
                        let repository = match (&summary.repository, summary.repository_id) {
                            (Some(name), Some(id)) => format!("{name} (id {id})"),
                            (name, _) => or_dash(name.as_deref()),
                        };
                        writeln!(f, "  repository    {repository}")?;
                        writeln!(f, "  sender        {}", or_dash(summary.sender.as_deref()))?;
                        writeln!(f, "  installation  {}", or_dash(summary.installation_id))?;
                        if let Some(subject) = &summary.subject {
                            writeln!(f, "  {subject}")?;
                        }
                    }
                }
            }
        }

        match (&self.job, row.job_id) {
            (Some(job), _) => {
                writeln!(f, "\njob {}", job.id)?;
                writeln!(f, "  kind          {}", job.kind)?;
                writeln!(f, "  key           {}", or_dash(job.coalesce_key.as_deref()))?;
                writeln!(f, "  state         {}", job.state)?;
                writeln!(f, "  attempts      {}/{}", job.attempts, job.max_attempts)?;
                writeln!(f, "  deliveries    {}", job.coalesced_count)?;
                writeln!(f, "  created at    {}", time(job.created_at))?;
                writeln!(f, "  finished at   {}", or_dash(job.finished_at.map(time)))?;
                writeln!(f, "  last error    {}", or_dash(job.last_error.as_deref()))?;
                writeln!(f, "  outcome       {}", job_outcome(job))?;
            }
            (None, Some(id)) => writeln!(f, "\njob {id}: no longer stored")?,
            (None, None) => writeln!(f, "\njob: none (a delivery that is {} needs none)", row.outcome)?,
        }
        Ok(())
    }
}

/// What became of a job, in words.
fn job_outcome(job: &JobView) -> &'static str {
    use crate::queue::JobState;
    match job.state {
        JobState::Pending if job.attempts > 0 => "waiting to be retried",
        JobState::Pending => "waiting to run",
        JobState::Running => "running",
        // An absorbed job ends done with a note naming the job that took its deliveries.
        JobState::Done if job.last_error.is_some() => "folded into a newer job",
        JobState::Done => "processed",
        JobState::Dead => "dead-lettered (`prmonitor jobs retry` brings it back)",
    }
}

/// Why a delivery was not replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no such delivery is stored")]
    NotFound,
    #[error("its payload was pruned (the retention has passed): nothing to replay")]
    Pruned,
    #[error("a {event} delivery is {outcome}: it has no job to run")]
    NoJob { event: String, outcome: &'static str },
    #[error("its stored payload does not parse: {0}")]
    Unparsable(#[from] EnvelopeError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

/// Processes delivery `delivery_id` again: its stored payload becomes the
/// job intake would make of it (with `max_attempts`), enqueued — merged
/// into a pending job of the same key, as intake does — and the delivery
/// points at that job, `queued` until the job finishes. Returns the job.
#[tracing::instrument(name = "replay", skip_all, fields(delivery_id = %delivery_id))]
pub async fn replay(
    conn: &mut AsyncPgConnection,
    delivery_id: &str,
    max_attempts: i32,
) -> Result<EnqueuedJob, ReplayError> {
    let (row, payload) = deliveries::find(conn, delivery_id).await?.ok_or(ReplayError::NotFound)?;
    let payload = payload.ok_or(ReplayError::Pruned)?;
    let mut job = match envelope::parse_payload(&row.event, &payload)?.disposition {
        Disposition::Enqueue(job) => job,
        Disposition::Ping => return Err(ReplayError::NoJob { event: row.event, outcome: "a ping" }),
        Disposition::Ignore => return Err(ReplayError::NoJob { event: row.event, outcome: "ignored" }),
    };
    job.max_attempts = max_attempts;
    let enqueued = conn
        .transaction::<_, ReplayError, _>(async |conn| {
            let enqueued = queue::enqueue(conn, &job).await?;
            if !deliveries::requeue(conn, delivery_id, enqueued.id).await? {
                // Deleted meanwhile: the job is rolled back with it.
                return Err(ReplayError::NotFound);
            }
            Ok(enqueued)
        })
        .await?;
    tracing::info!(job_id = enqueued.id, coalesced = enqueued.coalesced(), "delivery replayed");
    Ok(enqueued)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github/payloads/");
        std::fs::read(format!("{dir}{path}")).expect("fixture")
    }

    #[test]
    fn since_takes_a_duration_back_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").expect("time").with_timezone(&Utc);
        let at = |text: &str| DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc);
        assert_eq!(parse_since("90m", now), Ok(at("2026-12-05T10:30:00Z")));
        assert_eq!(parse_since("2h", now), Ok(at("2026-12-05T10:00:00Z")));
        assert_eq!(parse_since("3d", now), Ok(at("2026-12-02T12:00:00Z")));
        assert_eq!(parse_since("2026-12-01T10:00:00+01:00", now), Ok(at("2026-12-01T09:00:00Z")));
        for bad in ["", "soon", "3 weeks", "-2h", "2026-12-01", "99999999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_pull_request_payload_is_summarised_with_its_pr() {
        let summary = summarize(&fixture("pull_request/opened.json")).expect("summary");
        let value: Value = serde_json::from_slice(&fixture("pull_request/opened.json")).expect("json");
        assert_eq!(summary.action.as_deref(), Some("opened"));
        assert_eq!(summary.repository.as_deref(), value["repository"]["full_name"].as_str());
        assert_eq!(summary.sender.as_deref(), value["sender"]["login"].as_str());
        let Some(Subject::PullRequest { number, title, state, head_sha, .. }) = summary.subject else {
            panic!("a pull request: {summary:?}")
        };
        assert_eq!(number, value["number"].as_i64().expect("number"));
        assert_eq!(title, value["pull_request"]["title"].as_str().expect("title"));
        assert_eq!(state, "open");
        assert_eq!(head_sha.as_deref(), value["pull_request"]["head"]["sha"].as_str());
    }

    #[test]
    fn check_payloads_and_merged_prs_are_summarised() {
        let summary = summarize(&fixture("check_run/completed.json")).expect("summary");
        let Some(Subject::CheckRun { status, conclusion, head_sha, .. }) = &summary.subject else {
            panic!("a check run: {summary:?}")
        };
        assert_eq!(status, "completed");
        assert!(conclusion.is_some() && head_sha.as_deref().is_some_and(|s| s.len() == 40));
        let merged = br#"{"action":"closed","number":4,"pull_request":{"number":4,"title":"t","state":"closed","merged":true}}"#;
        let Some(Subject::PullRequest { state, .. }) = summarize(merged).expect("summary").subject else {
            panic!("a pull request")
        };
        assert_eq!(state, "merged");
        assert_eq!(summarize(br#"{"zen":"x"}"#).expect("summary").subject, None);
        assert!(summarize(b"[1]").is_err());
        assert!(summarize(b"{").is_err());
    }
}
