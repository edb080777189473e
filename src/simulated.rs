//! The service wired to the GitHub simulator (`github-sim`): what `prmonitor
//! demo`, the test kit and the benchmarks all need, written once. The
//! simulator knows nothing of prmonitor; this module is where the two meet.

use std::time::{Duration, Instant};

use github_sim::{
    generate::GENERATED_INSTALLATION, Simulator, WebhookTarget, SIM_APP_ID, SIM_APP_PRIVATE_KEY,
};

use crate::config::{parse_api_url, GitHubAuth, Secret, Settings};
use crate::db::DbPool;
use crate::webhook::signature;

/// Points `settings` at `sim` as its GitHub, authenticated as the simulated
/// App, with retries and polling short enough for a demo or a test.
pub fn use_simulator(settings: &mut Settings, sim: &Simulator) -> Result<(), String> {
    settings.github.api_url = parse_api_url(&sim.api_url())?;
    // The manifest flow's pages (`/setup` posts there).
    settings.github.web_url = parse_api_url(&sim.web_url())?;
    settings.github.auth =
        Some(GitHubAuth::App { app_id: SIM_APP_ID, private_key: Secret::new(SIM_APP_PRIVATE_KEY) });
    settings.github.retry_base_delay = Duration::from_millis(20);
    Ok(())
}

/// A reliable webhook target: the service at `address` (host:port), signing with `secret`.
pub fn webhook_target(address: &str, secret: &str) -> WebhookTarget {
    WebhookTarget {
        url: format!("http://{address}/webhooks/github"),
        secret: secret.to_owned(),
        loss_rate: 0.0,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        concurrency: 1,
    }
}

/// The `installation` `created` delivery GitHub sends when the simulated App
/// is installed on the generated repositories (GitHub's example payload, with
/// the simulator's ids).
pub fn installation_created_payload() -> Result<Vec<u8>, serde_json::Error> {
    let mut payload: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/github/payloads/installation/created.json"))?;
    payload["installation"]["id"] = serde_json::Value::from(GENERATED_INSTALLATION);
    payload["installation"]["app_id"] = serde_json::Value::from(SIM_APP_ID);
    serde_json::to_vec(&payload)
}

/// Why talking to the service or waiting for it failed.
#[derive(Debug, thiserror::Error)]
pub enum SimulatedError {
    #[error("cannot reach the service: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Answer(String),
    #[error(transparent)]
    Payload(#[from] serde_json::Error),
    #[error(transparent)]
    Pool(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("{0} jobs still unfinished after {1:?}")]
    Unsettled(i64, Duration),
}

/// Signs and sends the installation delivery to the service at `address`.
pub async fn send_installation_created(
    address: &str,
    secret: &str,
    delivery_id: &str,
) -> Result<(), SimulatedError> {
    let body = installation_created_payload()?;
    let response = reqwest::Client::new()
        .post(format!("http://{address}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "installation")
        .header("x-github-delivery", delivery_id)
        .header("x-hub-signature-256", signature::sign(&Secret::new(secret), &body))
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(SimulatedError::Answer(format!("the installation webhook got {}", response.status())));
    }
    Ok(())
}

/// `POST /api/v1/reconcile` for every repository, as an operator would.
pub async fn reconcile_all(address: &str, admin_token: &str) -> Result<serde_json::Value, SimulatedError> {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/api/v1/reconcile"))
        .header("authorization", format!("Bearer {admin_token}"))
        .header("content-type", "application/json")
        .body(r#"{"all":true}"#)
        .send()
        .await?;
    if response.status().as_u16() != 202 {
        return Err(SimulatedError::Answer(format!("reconcile answered {}", response.status())));
    }
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}

/// Waits until the simulator has sent every webhook and no job is pending or
/// running (or `timeout` passes).
pub async fn settle(pool: &DbPool, sim: &Simulator, timeout: Duration) -> Result<(), SimulatedError> {
    sim.wait_for_deliveries().await;
    wait_for_queue(pool, timeout).await
}

/// Waits until no job is pending or running (or `timeout` passes).
pub async fn wait_for_queue(pool: &DbPool, timeout: Duration) -> Result<(), SimulatedError> {
    let deadline = Instant::now() + timeout;
    loop {
        let busy: i64 = {
            let mut conn = pool.get().await?;
            crate::queue::unfinished(&mut conn).await?
        };
        if busy == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SimulatedError::Unsettled(busy, timeout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
