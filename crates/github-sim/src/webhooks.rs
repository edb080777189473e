//! The simulator's webhook deliveries: payloads shaped like GitHub's, signed
//! like GitHub's, sent to a target with optional loss, duplication and
//! reordering.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Sent but not answered with a 2xx: what GitHub lists as failed deliveries.
    failed: Arc<Mutex<Vec<Outgoing>>>,
}

impl Dispatcher {
    /// Starts the sender task on the current runtime.
    pub fn start(target: Arc<Mutex<Option<WebhookTarget>>>, rng: Arc<SplitMix64>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let records = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let task = SenderTask {
            receiver,
            target,
            rng,
            pending: pending.clone(),
            idle: idle.clone(),
            records: records.clone(),
            failed: failed.clone(),
        };
        tokio::spawn(task.run());
        Self { sender, pending, idle, records, failed }
    }

    /// Sends every failed delivery again, with its original delivery id (an
    /// operator pressing "Redeliver" on GitHub). Returns how many.
    pub fn redeliver_failed(&self) -> usize {
        let failed: Vec<Outgoing> =
            std::mem::take(&mut *self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let count = failed.len();
        for outgoing in failed {
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
    target: Arc<Mutex<Option<WebhookTarget>>>,
    rng: Arc<SplitMix64>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    records: Arc<Mutex<Vec<DeliveryRecord>>>,
    failed: Arc<Mutex<Vec<Outgoing>>>,
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
        if self.rng.chance(target.loss_rate) {
            record.lost = true;
            return record;
        }
        let copies = if self.rng.chance(target.duplicate_rate) { 2 } else { 1 };
        let signature = sign(&target.secret, &outgoing.body);
        let mut delivered = false;
        for _ in 0..copies {
            let response = client
                .post(&target.url)
                .header("content-type", "application/json")
                .header("user-agent", "GitHub-Hookshot/sim")
                .header("x-github-event", outgoing.event)
                .header("x-github-delivery", &outgoing.delivery_id)
                .header("x-github-hook-id", "1")
                .header("x-github-hook-installation-target-type", "integration")
                .header("x-hub-signature-256", &signature)
                .body(outgoing.body.clone())
                .send()
                .await;
            let status = response.map_or(0, |r| r.status().as_u16());
            delivered |= (200..300).contains(&status);
            record.statuses.push(status);
        }
        if !delivered {
            self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(outgoing);
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
