//! Is the database the simulator's model, field by field? (see `prmonitor::sim::verify`)

use prmonitor::sim::{verify, Simulator};

use crate::helpers::connect;

pub async fn diff(db_url: &str, sim: &Simulator, github_id: i64) -> Result<(), String> {
    verify::diff(&mut connect(db_url).await, sim, github_id).await
}

/// Every repository of the simulator.
pub async fn diff_all(db_url: &str, sim: &Simulator) -> Result<(), String> {
    verify::diff_all(&mut connect(db_url).await, sim).await
}

/// Waits until the database equals the simulator, or `timeout` passes (then
/// returns the last difference).
pub async fn converge(
    db_url: &str,
    sim: &Simulator,
    timeout: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let started = std::time::Instant::now();
    loop {
        match diff_all(db_url, sim).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(difference) if started.elapsed() > timeout => return Err(difference),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}
