//! `POST /webhooks/github`: verify, then store the delivery and its job in one
//! transaction (shared with concurrent deliveries, see [`super::store`]), and
//! only then acknowledge (DESIGN.md §5 rules 1–3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde_json::json;
use tracing::Instrument as _;

use super::envelope::{self, Envelope, EnvelopeError};
use super::signature::{self, SignatureError};
use super::store::{DeliveryRecord, DeliveryStore, StoreError, Stored};
use crate::config::Secret;
use crate::db::deliveries::DeliveryOutcome;

/// GitHub caps payloads at 25 MB and does not deliver larger ones; a larger
/// body is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// A body that trickles in slower than this is dropped rather than holding a
/// connection open (GitHub sends the whole body at once).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole database write. GitHub gives up after 10 s; answering 503 before
/// that lets it record a failed delivery that can be redelivered.
const STORE_DEADLINE: Duration = Duration::from_secs(8);
/// Pre-allocation is capped: a Content-Length is a claim, not a body.
const MAX_PREALLOCATION: usize = 1024 * 1024;

/// What intake needs besides the pool.
#[derive(Clone)]
pub struct IntakeConfig {
    /// Shared by every clone: `/setup` adds the new App's webhook secret
    /// while the service runs. The hot path takes the read lock only to
    /// clone the inner `Arc`, never holding it while a signature is checked.
    secrets: Arc<std::sync::RwLock<Arc<[Secret]>>>,
    /// Attempts of the jobs deliveries become, before they are dead-lettered.
    max_attempts: i32,
    buffers: BodyBudget,
}

impl IntakeConfig {
    /// `buffer_limit`: bytes of bodies all deliveries being received may hold together.
    pub fn new(secrets: Vec<Secret>, max_attempts: i32, buffer_limit: usize) -> Self {
        Self {
            secrets: Arc::new(std::sync::RwLock::new(secrets.into())),
            max_attempts,
            buffers: BodyBudget::new(buffer_limit),
        }
    }

    /// The secrets a delivery may be signed with, now.
    fn secrets(&self) -> Arc<[Secret]> {
        self.secrets.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Accepts deliveries signed with `secret` from now on (the App that
    /// `/setup` stored), beside the configured ones.
    pub fn add_secret(&self, secret: Secret) {
        let mut secrets = self.secrets.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !secrets.contains(&secret) {
            let mut updated: Vec<Secret> = secrets.to_vec();
            updated.push(secret);
            *secrets = updated.into();
        }
    }
}

/// The memory that request bodies may take together, in KiB permits: a body
/// is buffered in full before its signature can be checked, so without a
/// bound a stranger's concurrent large posts decide the process's size.
#[derive(Clone)]
struct BodyBudget {
    kib: Arc<tokio::sync::Semaphore>,
}

/// Reservations grow in steps of at least this many KiB (chunked bodies).
const BUDGET_STEP_KIB: u32 = 256;

impl BodyBudget {
    fn new(limit_bytes: usize) -> Self {
        let kib = (limit_bytes / 1024).min(tokio::sync::Semaphore::MAX_PERMITS);
        Self { kib: Arc::new(tokio::sync::Semaphore::new(kib)) }
    }

    /// Takes `kib` KiB now, or refuses (the caller answers 503): waiting
    /// would hold the connection and the memory of the waiters' sockets.
    fn reserve(&self, kib: u32) -> Result<tokio::sync::OwnedSemaphorePermit, IntakeError> {
        self.kib.clone().try_acquire_many_owned(kib).map_err(|_| IntakeError::Busy)
    }
}

fn kib_of(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the body exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the body did not arrive within {BODY_READ_TIMEOUT:?}")]
    BodyTimeout,
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error("{0}")]
    Unsigned(#[from] SignatureError),
    #[error("{0}")]
    Malformed(#[from] EnvelopeError),
    #[error("too many large deliveries are being received at once")]
    Busy,
    #[error("the database is unavailable, the delivery was not stored: {0}")]
    Unavailable(String),
    #[error("the delivery could not be stored: {0}")]
    Internal(String),
}

impl From<StoreError> for IntakeError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => Self::Unavailable(reason),
            StoreError::Refused(reason) => Self::Internal(reason),
        }
    }
}

impl IntakeError {
    /// The word the delivery log line uses for this rejection.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Unsigned(_) => "unauthorized",
            Self::Unavailable(_) => "unavailable",
            Self::Busy => "busy",
            Self::Internal(_) => "failed",
            _ => "rejected",
        }
    }
}

impl ResponseError for IntakeError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Unsigned(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unavailable(_) | Self::Busy) {
            response.insert_header(("Retry-After", "5"));
        }
        // Unsigned requests learn only that they are unsigned: no detail about
        // which check failed or which secrets exist.
        let message = match self {
            Self::Unsigned(_) => "the request is not signed with a configured webhook secret".to_owned(),
            Self::Unavailable(_) => "the database is unavailable; the delivery was not stored".to_owned(),
            Self::Internal(_) => "the delivery could not be stored".to_owned(),
            other => other.to_string(),
        };
        response.json(json!({ "error": message }))
    }
}

/// Receive a GitHub webhook delivery.
///
/// Verifies `X-Hub-Signature-256`, stores the delivery and its job in one
/// transaction, then answers; a request without a well-formed signature
/// header is refused before its body is read.
#[utoipa::path(
    post,
    path = "/webhooks/github",
    tag = "webhooks",
    params(
        ("X-GitHub-Event" = String, Header, description = "the event, e.g. `pull_request`"),
        ("X-GitHub-Delivery" = String, Header, description = "the delivery's unique id"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=` and the HMAC-SHA256 of the body with the webhook secret, in hex"),
    ),
    request_body(content = Object, content_type = "application/json", description = "GitHub's payload, at most 25 MiB"),
    responses(
        (status = 200, description = "a ping, or a delivery id already stored (nothing queued again)", body = crate::http::openapi_answers::DeliveryAnswer),
        (status = 202, description = "stored, with the job it became (or ignored: an event prmonitor does not track)", body = crate::http::openapi_answers::DeliveryAnswer),
        (status = 400, description = "missing or malformed X-GitHub-* headers, or a body that is not a JSON object", body = crate::http::ErrorBody),
        (status = 401, description = "unsigned, or not signed with a configured webhook secret", body = crate::http::ErrorBody),
        (status = 408, description = "the body did not arrive within 20 s", body = crate::http::ErrorBody),
        (status = 413, description = "the body exceeds 25 MiB", body = crate::http::ErrorBody),
        (status = 500, description = "the database refused the delivery", body = crate::http::ErrorBody),
        (status = 503, description = "the database is unavailable, or too many large deliveries are being received at once (PRMONITOR_WEBHOOK_BUFFER_MIB); GitHub may redeliver", body = crate::http::ErrorBody,
            headers(("Retry-After" = i32, description = "seconds"))),
    )
)]
pub async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    store: web::Data<DeliveryStore>,
    config: web::Data<IntakeConfig>,
) -> Result<HttpResponse, IntakeError> {
    let started = Instant::now();
    let received = Utc::now();
    let headers = request.headers();
    let claimed_id = header_text(headers, "x-github-delivery");
    let span = tracing::info_span!("webhook", delivery_id = %claimed_id);
    async move {
        let result = handle(headers, payload, &store, &config).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        record_metrics(headers, &result, received);
        match &result {
            Ok(accepted) => tracing::info!(
                event = %accepted.event,
                action = accepted.envelope.action.as_deref().unwrap_or(""),
                repository = accepted.repository_name(),
                outcome = accepted.outcome(),
                job_id = accepted.job_id(),
                latency_ms,
                "delivery accepted"
            ),
            Err(error) => tracing::warn!(
                event = %header_text(headers, "x-github-event"),
                outcome = error.outcome(),
                status = error.status_code().as_u16(),
                latency_ms,
                error = %error,
                "delivery refused"
            ),
        }
        result.map(|accepted| accepted.response())
    }
    .instrument(span)
    .await
}

/// A delivery that got a 2xx.
struct Accepted {
    event: String,
    delivery_id: String,
    envelope: Envelope,
    stored: Stored,
}

impl Accepted {
    fn outcome(&self) -> &'static str {
        match &self.stored {
            Stored::New { outcome, .. } => outcome.as_str(),
            Stored::Duplicate => "duplicate",
        }
    }

    fn job_id(&self) -> Option<i64> {
        match &self.stored {
            Stored::New { job: Some(job), .. } => Some(job.id),
            _ => None,
        }
    }

    fn repository_name(&self) -> &str {
        self.envelope.repository.as_ref().map_or("", |r| r.full_name.as_str())
    }

    fn response(&self) -> HttpResponse {
        let body = json!({
            "status": self.outcome(),
            "delivery_id": self.delivery_id,
            "job_id": self.job_id(),
        });
        match &self.stored {
            // A redelivery or a ping changes nothing: 200.
            Stored::Duplicate | Stored::New { outcome: DeliveryOutcome::Ping, .. } => {
                HttpResponse::Ok().json(body)
            }
            // Stored for later processing: 202.
            Stored::New { .. } => HttpResponse::Accepted().json(body),
        }
    }
}

async fn handle(
    headers: &HeaderMap,
    payload: web::Payload,
    store: &DeliveryStore,
    config: &IntakeConfig,
) -> Result<Accepted, IntakeError> {
    // No well-formed signature header: refused before a byte of the body is read.
    let claimed = signature::parse_header(headers.get("x-hub-signature-256").map(|v| v.as_bytes()))?;
    // Held until the delivery is committed (or refused): the body lives that long.
    let (body, _buffer) =
        tokio::time::timeout(BODY_READ_TIMEOUT, read_body(headers, payload, &config.buffers))
            .await
            .map_err(|_| IntakeError::BodyTimeout)??;
    signature::verify_claimed(&config.secrets(), &body, &claimed)?;
    let delivery = envelope::parse_headers(
        headers.get("x-github-event").map(|v| v.as_bytes()),
        headers.get("x-github-delivery").map(|v| v.as_bytes()),
    )?;
    let envelope = envelope::parse_payload(&delivery.event, &body)?;
    let record = DeliveryRecord {
        headers: Some(envelope::recorded_headers(|name| headers.get(name).map(|v| v.as_bytes()))),
        ..DeliveryRecord::from_envelope(
            delivery.delivery_id.clone(),
            delivery.event.clone(),
            &envelope,
            body,
            config.max_attempts,
        )
    };
    let stored = tokio::time::timeout(STORE_DEADLINE, store.store(record))
        .await
        .map_err(|_| IntakeError::Unavailable(format!("no commit within {STORE_DEADLINE:?}")))??;
    Ok(Accepted { event: delivery.event, delivery_id: delivery.delivery_id, envelope, stored })
}

/// Reads the body within the size cap and the shared buffer budget; returns
/// it with the budget it holds.
async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    budget: &BodyBudget,
) -> Result<(web::Bytes, tokio::sync::OwnedSemaphorePermit), IntakeError> {
    let claimed = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if claimed.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(IntakeError::TooLarge);
    }
    // What is buffered is what counts, not what a header claims: a request
    // that claims 25 MiB and trickles holds only the bytes it really sent
    // (and the pre-allocation), so a few such requests cannot lock every
    // other delivery out of the budget.
    let preallocation = claimed.unwrap_or(0).min(MAX_PREALLOCATION);
    let mut reserved = budget.reserve(kib_of(preallocation))?;
    let mut body = web::BytesMut::with_capacity(preallocation);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| IntakeError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(IntakeError::TooLarge);
        }
        let needed = kib_of(body.len() + chunk.len());
        let held = u32::try_from(reserved.num_permits()).unwrap_or(u32::MAX);
        if needed > held {
            reserved.merge(budget.reserve((needed - held).max(BUDGET_STEP_KIB).min(kib_of(MAX_BODY_BYTES)))?);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), reserved))
}

/// Events are labelled by name only when prmonitor knows them: a header is
/// not allowed to create unbounded label values.
fn event_label(headers: &HeaderMap) -> &'static str {
    let event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or("");
    envelope::KNOWN_EVENTS.into_iter().find(|known| *known == event).unwrap_or("other")
}

fn record_metrics(headers: &HeaderMap, result: &Result<Accepted, IntakeError>, received: DateTime<Utc>) {
    let event = event_label(headers);
    let outcome = match result {
        Ok(accepted) => accepted.outcome(),
        Err(error) => error.outcome(),
    };
    metrics::counter!("prmonitor_webhook_deliveries_total", "event" => event, "outcome" => outcome)
        .increment(1);
    // GitHub's delivery delay, of deliveries stored now: a duplicate's was
    // recorded when its first copy came. Signed deliveries only (`Ok`), so
    // a stranger cannot skew it.
    if let Ok(Accepted { stored: Stored::New { .. }, envelope, .. }) = result {
        if let Some(changed_at) = envelope.changed_at {
            let delay = envelope::delivery_delay(received, changed_at);
            metrics::histogram!("prmonitor_github_delivery_delay_seconds", "event" => event)
                .record(delay.as_secs_f64());
        }
    }
    if matches!(result, Err(IntakeError::Unsigned(_))) {
        metrics::counter!("prmonitor_webhook_signature_failures_total").increment(1);
    }
}

/// A header as printable text for logs, cut short and stripped of control characters.
fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(envelope::MAX_DELIVERY_ID_LEN)
                .collect()
        })
        .unwrap_or_default()
}
