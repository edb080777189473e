//! The simulator's webhook deliveries: payloads shaped like GitHub's, signed
//! like GitHub's, sent to a target with optional loss, duplication and
//! reordering.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::model::{Event, EventBody, ModelError, World};
use crate::prng::SplitMix64;
use crate::render::{self, Urls};

/// Where deliveries go and how unreliably.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
    /// Share of deliveries never sent (GitHub lost them).
    #[serde(default)]
    pub loss_rate: f64,
    /// Share of deliveries sent twice with the same delivery id.
    #[serde(default)]
    pub duplicate_rate: f64,
    /// Chance that a delivery swaps places with the next one in the queue.
    #[serde(default)]
    pub reorder_rate: f64,
    /// Deliveries in flight at once. GitHub sends many at a time, so more
    /// than one also reorders deliveries the way real traffic does.
    #[serde(default = "one")]
    pub concurrency: usize,
}

fn one() -> usize {
    1
}

/// A delivery as built from an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub delivery_id: String,
    pub event: &'static str,
    pub action: &'static str,
    pub body: Vec<u8>,
    /// Sent again on request (`POST /app/hook/deliveries/{id}/attempts`):
    /// GitHub marks such attempts `redelivery: true`.
    pub redelivery: bool,
}

/// What happened to a delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub event: &'static str,
    pub action: &'static str,
    /// The status of each attempt (two for a duplicate); empty when lost.
    pub statuses: Vec<u16>,
    pub lost: bool,
}

/// One attempt to deliver a webhook, as GitHub's App webhook deliveries API
/// (`GET /app/hook/deliveries`) shows it. A duplicate (two copies) is two
/// attempts, a redelivery another one with the same `guid`.
#[derive(Debug, Clone, PartialEq)]
pub struct HookDelivery {
    /// Unique per attempt and increasing in the order attempts finished.
    pub id: u64,
    /// `X-GitHub-Delivery`: the same for every attempt of one webhook.
    pub guid: String,
    /// When the attempt started.
    pub delivered_at: SystemTime,
    pub redelivery: bool,
    /// Seconds the attempt took.
    pub duration: f64,
    /// `"OK"` for a 2xx, `"Invalid HTTP Response: 503"` for another answer,
    /// `"failed to connect to host"` or `"timed out"` without one.
    pub status: String,
    /// 0 without an HTTP answer.
    pub status_code: u16,
    pub event: &'static str,
    pub action: &'static str,
    pub installation_id: Option<i64>,
    pub repository_id: Option<i64>,
    /// The webhook target.
    pub url: String,
    /// The headers sent, names in lower case.
    pub request_headers: BTreeMap<String, String>,
    /// The exact bytes sent (shared by the attempts of one delivery).
    pub body: Arc<Vec<u8>>,
    pub response_headers: BTreeMap<String, String>,
    /// The answer's body; `None` without an answer.
    pub response_body: Option<String>,
}

impl HookDelivery {
    /// GitHub's `status=success` filter: a status code of 200–399.
    pub fn succeeded(&self) -> bool {
        (200..400).contains(&self.status_code)
    }
}

/// Attempts recorded so far, oldest first, and the next attempt id.
#[derive(Debug, Default)]
pub(crate) struct HookLog {
    pub attempts: Vec<HookDelivery>,
    next_id: u64,
}

impl HookLog {
    /// Records `attempt` with the next id (ids start at 1).
    fn push(&mut self, mut attempt: HookDelivery) {
        self.next_id += 1;
        attempt.id = self.next_id;
        self.attempts.push(attempt);
    }
}

/// Builds the full payload of `event` from the world as it is now.
pub fn payload(world: &World, urls: &Urls, event: &Event) -> Result<Value, ModelError> {
    let repo = world.repo(event.repo_id)?;
    let repository = render::repository(urls, repo);
    let installation = render::installation_lite(repo.installation_id);
    let mut payload = match &event.body {
        EventBody::PullRequest { number, extra } => {
            let pr =
                repo.pulls.get(number).ok_or_else(|| ModelError::NoPullRequest(repo.full_name(), *number))?;
            let mut payload = json!({
                "action": event.action,
                "number": number,
                "pull_request": render::pull_request(urls, repo, pr),
            });
            if let (Some(map), Some(extra)) = (payload.as_object_mut(), extra.as_object()) {
                for (key, value) in extra {
                    if key == "label_name" {
                        let name = value.as_str().unwrap_or_default();
                        map.insert("label".into(), render::event_label(urls, repo, name));
                    } else {
                        map.insert(key.clone(), value.clone());
                    }
                }
            }
            (payload, pr.author.clone())
        }
        EventBody::CheckRun { run_id } => {
            let run = repo.check_runs.get(run_id).ok_or(ModelError::NoCheckRun(*run_id))?;
            (
                json!({ "action": event.action, "check_run": render::check_run(urls, repo, run) }),
                repo.owner.clone(),
            )
        }
        EventBody::CheckSuite { suite_id, head_sha } => (
            json!({ "action": event.action, "check_suite": render::check_suite(urls, repo, *suite_id, head_sha) }),
            repo.owner.clone(),
        ),
        EventBody::Status { sha, status_id } => {
            let status = repo
                .statuses_for(sha)
                .iter()
                .find(|s| s.id == *status_id)
                .ok_or_else(|| ModelError::Invalid(format!("no status {status_id} on {sha}")))?;
            (render::status_event(urls, repo, status), status.creator.clone())
        }
        EventBody::MergeGroup { head_sha, reason } => {
            let group = repo
                .merge_group(head_sha)
                .ok_or_else(|| ModelError::Invalid(format!("no merge group {head_sha}")))?;
            let mut body = json!({ "action": event.action, "merge_group": render::merge_group(repo, group) });
            if let (Some(map), Some(reason)) = (body.as_object_mut(), reason) {
                map.insert("reason".into(), json!(reason));
            }
            (body, group.enqueuer.clone())
        }
        EventBody::BranchProtectionRule { branch, changes } => {
            let rule = repo
                .protection
                .get(branch)
                .ok_or_else(|| ModelError::Invalid(format!("no protection on {branch}")))?;
            let mut body =
                json!({ "action": event.action, "rule": render::branch_protection_rule(repo, branch, rule) });
            if let (Some(map), true) = (body.as_object_mut(), changes.is_object()) {
                map.insert("changes".into(), changes.clone());
            }
            (body, repo.owner.clone())
        }
    };
    let (ref mut body, ref sender) = payload;
    if let Some(map) = body.as_object_mut() {
        map.insert("repository".into(), repository);
        map.insert("sender".into(), render::user(urls, sender));
        map.insert("installation".into(), installation);
    }
    Ok(payload.0)
}

/// A GUID-shaped id, as GitHub's `X-GitHub-Delivery`.
/// `X-Hub-Signature-256` as GitHub computes it: `sha256=` and the hex HMAC-SHA256
/// of the body under the webhook secret. Written here, not borrowed from the
/// receiver's verifier, so a mistake on one side cannot hide on the other.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn delivery_id(rng: &SplitMix64) -> String {
    let hex = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The queue between mutations and the sender task.
pub struct Dispatcher {
    sender: mpsc::UnboundedSender<Outgoing>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    pub records: Arc<Mutex<Vec<DeliveryRecord>>>,
    /// Every attempt, for the deliveries API.
    pub(crate) hooks: Arc<Mutex<HookLog>>,
    /// Sent but not answered with a 2xx: what GitHub lists as failed deliveries.
    failed: Arc<Mutex<Vec<Outgoing>>>,
}

impl Dispatcher {
    /// Starts the sender task on the current runtime; `app_id` is the App
    /// whose webhook this is (`X-GitHub-Hook-Installation-Target-ID`).
    pub fn start(
        target: Arc<Mutex<Option<WebhookTarget>>>,
        rng: Arc<SplitMix64>,
        app_id: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let records = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let hooks = Arc::new(Mutex::new(HookLog::default()));
        let task = SenderTask {
            receiver,
            app_id,
            target,
            rng,
            pending: pending.clone(),
            idle: idle.clone(),
            records: records.clone(),
            hooks: hooks.clone(),
            failed: failed.clone(),
        };
        tokio::spawn(task.run());
        Self { sender, pending, idle, records, hooks, failed }
    }

    /// Sends the webhook of attempt `id` again with its guid and bytes,
    /// marked as a redelivery (GitHub's `POST
    /// /app/hook/deliveries/{id}/attempts`). `false` for an unknown id.
    pub(crate) fn redeliver(&self, id: u64) -> bool {
        let outgoing = {
            let hooks = self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            hooks.attempts.iter().find(|a| a.id == id).map(|a| Outgoing {
                delivery_id: a.guid.clone(),
                event: a.event,
                action: a.action,
                body: a.body.as_ref().clone(),
                redelivery: true,
            })
        };
        match outgoing {
            Some(outgoing) => {
                self.enqueue(outgoing);
                true
            }
            None => false,
        }
    }

    /// Moves every recorded attempt `by` into the past (retention tests).
    pub(crate) fn age(&self, by: Duration) {
        let mut hooks = self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for attempt in &mut hooks.attempts {
            attempt.delivered_at = attempt.delivered_at.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH);
        }
    }

    /// Sends every failed delivery again, with its original delivery id (an
    /// operator pressing "Redeliver" on GitHub). Returns how many.
    pub fn redeliver_failed(&self) -> usize {
        let failed: Vec<Outgoing> =
            std::mem::take(&mut *self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let count = failed.len();
        for mut outgoing in failed {
            outgoing.redelivery = true;
            self.enqueue(outgoing);
        }
        count
    }

    pub fn enqueue(&self, outgoing: Outgoing) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.sender.send(outgoing).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Resolves once at most `limit` enqueued deliveries are unsent.
    pub(crate) async fn wait_below(&self, limit: usize) {
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) <= limit {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once every enqueued delivery was sent (or lost).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct SenderTask {
    receiver: mpsc::UnboundedReceiver<Outgoing>,
    /// Read at each delivery: the manifest flow registers the App later.
    app_id: Arc<std::sync::atomic::AtomicU64>,
    target: Arc<Mutex<Option<WebhookTarget>>>,
    rng: Arc<SplitMix64>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    records: Arc<Mutex<Vec<DeliveryRecord>>>,
    hooks: Arc<Mutex<HookLog>>,
    failed: Arc<Mutex<Vec<Outgoing>>>,
}

/// What GitHub's deliveries API says of an attempt that got no HTTP answer.
fn failure_status(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else {
        "failed to connect to host"
    }
}

fn header_map(headers: &reqwest::header::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect()
}

impl SenderTask {
    async fn run(mut self) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        while let Some(first) = self.receiver.recv().await {
            let mut batch = vec![first];
            while let Ok(next) = self.receiver.try_recv() {
                batch.push(next);
            }
            let target = self.target.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            if let Some(target) = &target {
                for i in 0..batch.len().saturating_sub(1) {
                    if self.rng.chance(target.reorder_rate) {
                        batch.swap(i, i + 1);
                    }
                }
            }
            let count = batch.len();
            let concurrency = target.as_ref().map_or(1, |t| t.concurrency.max(1));
            let mut sends = futures_util::stream::iter(batch)
                .map(|outgoing| async {
                    match &target {
                        Some(target) => self.deliver(&client, target, outgoing).await,
                        None => DeliveryRecord {
                            delivery_id: outgoing.delivery_id,
                            event: outgoing.event,
                            action: outgoing.action,
                            statuses: Vec::new(),
                            lost: true,
                        },
                    }
                })
                .buffered(concurrency);
            while let Some(record) = sends.next().await {
                self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(record);
            }
            self.pending.fetch_sub(count, Ordering::SeqCst);
            self.idle.notify_waiters();
        }
    }

    async fn deliver(
        &self,
        client: &reqwest::Client,
        target: &WebhookTarget,
        outgoing: Outgoing,
    ) -> DeliveryRecord {
        let mut record = DeliveryRecord {
            delivery_id: outgoing.delivery_id.clone(),
            event: outgoing.event,
            action: outgoing.action,
            statuses: Vec::new(),
            lost: false,
        };
        let payload: Value = serde_json::from_slice(&outgoing.body).unwrap_or(Value::Null);
        let id_at = |key: &str| payload.get(key).and_then(|v| v.get("id")).and_then(Value::as_i64);
        let signature = sign(&target.secret, &outgoing.body);
        let app_id = self.app_id.load(Ordering::Relaxed).to_string();
        let request_headers: BTreeMap<String, String> = [
            ("content-type", "application/json"),
            ("user-agent", "GitHub-Hookshot/sim"),
            ("x-github-event", outgoing.event),
            ("x-github-delivery", outgoing.delivery_id.as_str()),
            ("x-github-hook-id", "1"),
            // An App's webhook: the target is the App.
            ("x-github-hook-installation-target-type", "integration"),
            ("x-github-hook-installation-target-id", app_id.as_str()),
            ("x-hub-signature-256", signature.as_str()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let body = Arc::new(outgoing.body.clone());
        let attempt =
            |delivered_at: SystemTime, duration: f64, status: String, status_code: u16| HookDelivery {
                id: 0,
                guid: outgoing.delivery_id.clone(),
                delivered_at,
                redelivery: outgoing.redelivery,
                duration,
                status,
                status_code,
                event: outgoing.event,
                action: outgoing.action,
                installation_id: id_at("installation"),
                repository_id: id_at("repository"),
                url: target.url.clone(),
                request_headers: request_headers.clone(),
                body: body.clone(),
                response_headers: BTreeMap::new(),
                response_body: None,
            };
        if self.rng.chance(target.loss_rate) {
            // GitHub lists a webhook its receiver never got as a failed
            // attempt: a lost delivery is what a receiver outage looks like
            // in the deliveries API, so it is recorded as one that could not
            // connect (and can be redelivered from there).
            record.lost = true;
            let lost = attempt(SystemTime::now(), 0.0, "failed to connect to host".to_owned(), 0);
            self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(lost);
            return record;
        }
        let copies = if self.rng.chance(target.duplicate_rate) { 2 } else { 1 };
        let mut delivered = false;
        for _ in 0..copies {
            let delivered_at = SystemTime::now();
            let started = Instant::now();
            let mut request = client.post(&target.url);
            for (name, value) in &request_headers {
                request = request.header(name, value);
            }
            let response = request.body(outgoing.body.clone()).send().await;
            let mut sent = match response {
                Ok(response) => {
                    let code = response.status().as_u16();
                    let headers = header_map(response.headers());
                    let text = response.text().await.unwrap_or_default();
                    let status = if (200..300).contains(&code) {
                        "OK".to_owned()
                    } else {
                        format!("Invalid HTTP Response: {code}")
                    };
                    let mut sent = attempt(delivered_at, 0.0, status, code);
                    sent.response_headers = headers;
                    sent.response_body = Some(text);
                    sent
                }
                Err(error) => attempt(delivered_at, 0.0, failure_status(&error).to_owned(), 0),
            };
            sent.duration = started.elapsed().as_secs_f64();
            let status = sent.status_code;
            self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sent);
            delivered |= (200..300).contains(&status);
            record.statuses.push(status);
        }
        if !delivered {
            self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(outgoing);
        } else if outgoing.redelivery {
            // Delivered at last: no longer among the failed ones.
            self.failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|failed| failed.delivery_id != outgoing.delivery_id);
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::sign;

    #[test]
    fn signatures_match_githubs_test_vector() {
        // FACTS.md §1: GitHub's documented vector, no trailing newline.
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
