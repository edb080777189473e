//! Pacing by GitHub's rate-limit headers, per installation.
//!
//! Each installation (its own rate-limit bucket) gets a lane: a semaphore
//! bounding the calls in flight, the last rate-limit headers seen, a
//! "blocked until" set by a rate-limit answer so that every call of that
//! installation waits, not only the one that was refused, and the points
//! spent per endpoint in the last minute, so that a call waits for room under
//! GitHub's secondary limit (900 points a minute per REST endpoint, 304s
//! included) instead of being refused for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::policy::{self, LimitHeaders, MAX_WAIT};

/// Why a call is made: decides whether it may dip into the reserve, and labels its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Targeted discovery after a webhook: may use the reserve.
    Webhook,
    /// A periodic or manual full re-read: stops at the reserve.
    Sweep,
    /// The first full read of a repository: stops at the reserve.
    Backfill,
    /// Registering installations and their repositories: may use the reserve.
    Installation,
    /// Gap recovery from the App's deliveries API: may use the reserve (it
    /// stands in for webhooks that were lost).
    Recovery,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Sweep => "sweep",
            Self::Backfill => "backfill",
            Self::Installation => "installation",
            Self::Recovery => "recovery",
        }
    }

    /// Work that keeps data fresh now may spend the reserve; bulk work may not.
    pub fn may_use_reserve(self) -> bool {
        matches!(self, Self::Webhook | Self::Installation | Self::Recovery)
    }
}

/// What the last response said about the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Epoch seconds.
    pub reset: Option<u64>,
}

#[derive(Debug, Default)]
struct LaneState {
    budget: Budget,
    blocked_until: Option<Instant>,
    /// Points spent per endpoint key, for the secondary limit.
    endpoints: HashMap<&'static str, PointsWindow>,
}

/// How fast one lane may call one endpoint: GitHub's secondary limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointPace {
    /// Points per window (GitHub: 900 a minute per REST endpoint).
    pub points: u32,
    /// GitHub's minute; tests shorten it.
    pub window: Duration,
}

impl EndpointPace {
    /// Slack added to the window: GitHub counts a call when it arrives, a
    /// little after this side counted it, and a call sent the instant our
    /// window frees could still land in GitHub's if its predecessor took
    /// longer to arrive than it does. Two seconds of GitHub's minute.
    fn margin(&self) -> Duration {
        (self.window / 30).clamp(Duration::from_millis(500), Duration::from_secs(2))
    }
}

/// The points spent on one endpoint, oldest first, with their sum.
#[derive(Debug, Default)]
pub struct PointsWindow {
    spent: VecDeque<(Instant, u32)>,
    total: u64,
}

impl PointsWindow {
    /// How long until `points` more fit under `pace` (pure but for trimming
    /// what has left the window): `None` when they fit now. A call costing
    /// more than the whole limit goes once the window is empty.
    pub fn wait_for_room(&mut self, pace: EndpointPace, points: u32, now: Instant) -> Option<Duration> {
        let window = pace.window.saturating_add(pace.margin());
        while let Some(&(at, spent)) = self.spent.front() {
            if now.saturating_duration_since(at) < window {
                break;
            }
            self.spent.pop_front();
            self.total = self.total.saturating_sub(u64::from(spent));
        }
        if self.spent.is_empty() || self.total + u64::from(points) <= u64::from(pace.points) {
            return None;
        }
        let excess = (self.total + u64::from(points)).saturating_sub(u64::from(pace.points));
        let mut freed = 0;
        let mut until = now;
        for &(at, spent) in &self.spent {
            freed += u64::from(spent);
            until = at.checked_add(window).unwrap_or(now);
            if freed >= excess {
                break;
            }
        }
        Some(until.saturating_duration_since(now).min(MAX_WAIT))
    }

    pub fn record(&mut self, points: u32, now: Instant) {
        self.spent.push_back((now, points));
        self.total += u64::from(points);
    }
}

/// How long a call of `purpose` must wait before it may be sent (pure), at
/// most [`MAX_WAIT`]: the numbers come from response headers, so none of the
/// arithmetic may overflow whatever they say.
pub fn wait_needed(
    budget: &Budget,
    blocked_until: Option<Instant>,
    purpose: Purpose,
    reserve_percent: u32,
    now: Instant,
    wall: SystemTime,
) -> Option<Duration> {
    if let Some(until) = blocked_until.filter(|until| *until > now) {
        return Some((until - now).min(MAX_WAIT));
    }
    let (limit, remaining, reset) = (budget.limit?, budget.remaining?, budget.reset?);
    // Past the reset the old numbers no longer bind.
    let reset_passed = UNIX_EPOCH.checked_add(Duration::from_secs(reset)).is_some_and(|at| at < wall);
    if reset_passed {
        return None;
    }
    let until_reset = policy::until_epoch(reset, wall);
    // The reserve rounds up: with any reserve configured, at least one call is kept back.
    let reserve = limit.saturating_mul(u64::from(reserve_percent)).div_ceil(100);
    let exhausted = remaining == 0;
    let in_reserve = !purpose.may_use_reserve() && remaining <= reserve;
    // A second past the reset, so the new window has surely begun.
    (exhausted || in_reserve).then(|| until_reset.saturating_add(Duration::from_secs(1)).min(MAX_WAIT))
}

pub struct Lane {
    semaphore: Semaphore,
    state: Mutex<LaneState>,
    reserve_percent: u32,
    pace: EndpointPace,
}

impl Lane {
    fn new(max_concurrent: usize, reserve_percent: u32, pace: EndpointPace) -> Self {
        Self { semaphore: Semaphore::new(max_concurrent), state: Mutex::default(), reserve_percent, pace }
    }

    /// Waits until a call of `purpose` to `endpoint` (a route template key,
    /// e.g. `"pulls"`), costing `points` of the secondary limit, may go, then
    /// takes one of the lane's slots. Waits again if the budget or the
    /// endpoint's window changed while it waited for a slot.
    pub async fn turn(&self, purpose: Purpose, endpoint: &'static str, points: u32) -> SemaphorePermit<'_> {
        loop {
            self.wait_for_budget(purpose).await;
            self.wait_for_endpoint(endpoint, points).await;
            // The semaphore is never closed, so acquire cannot fail.
            let Ok(permit) = self.semaphore.acquire().await else { continue };
            let mut guard = self.lock();
            let state = &mut *guard;
            if self.wait_now(state, purpose).is_some() {
                continue;
            }
            let now = Instant::now();
            let window = state.endpoints.entry(endpoint).or_default();
            if window.wait_for_room(self.pace, points, now).is_some() {
                continue;
            }
            // Counted as spent now, so concurrent calls do not all see the same last unit.
            window.record(points, now);
            if let Some(remaining) = state.budget.remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
            }
            return permit;
        }
    }

    async fn wait_for_endpoint(&self, endpoint: &'static str, points: u32) {
        loop {
            let wait = self.lock().endpoints.entry(endpoint).or_default().wait_for_room(
                self.pace,
                points,
                Instant::now(),
            );
            match wait {
                None => return,
                Some(wait) => {
                    tracing::debug!(
                        endpoint,
                        wait_ms = wait.as_millis() as u64,
                        "waiting for the secondary limit"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn wait_now(&self, state: &LaneState, purpose: Purpose) -> Option<Duration> {
        wait_needed(
            &state.budget,
            state.blocked_until,
            purpose,
            self.reserve_percent,
            Instant::now(),
            SystemTime::now(),
        )
    }

    async fn wait_for_budget(&self, purpose: Purpose) {
        loop {
            let wait = self.wait_now(&self.lock(), purpose);
            match wait {
                None => return,
                Some(wait) => {
                    tracing::debug!(
                        purpose = purpose.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        "waiting for the rate limit"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Records the rate-limit headers of a response.
    pub fn observe(&self, headers: &LimitHeaders) {
        let mut state = self.lock();
        if headers.limit.is_some() {
            state.budget.limit = headers.limit;
        }
        if headers.remaining.is_some() {
            state.budget.remaining = headers.remaining;
        }
        if headers.reset.is_some() {
            state.budget.reset = headers.reset;
        }
    }

    /// Holds every call of this lane for `wait` (a rate-limit answer).
    pub fn block_for(&self, wait: Duration) {
        let now = Instant::now();
        let until = now.checked_add(wait.min(MAX_WAIT)).unwrap_or(now);
        let mut state = self.lock();
        if state.blocked_until.is_none_or(|current| current < until) {
            state.blocked_until = Some(until);
        }
    }

    pub fn budget(&self) -> Budget {
        self.lock().budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        // A panic while holding this lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The lanes, created on first use.
pub struct Pacer {
    lanes: Mutex<HashMap<i64, Arc<Lane>>>,
    max_concurrent: usize,
    reserve_percent: u32,
    pace: EndpointPace,
}

impl Pacer {
    pub fn new(max_concurrent: usize, reserve_percent: u32, pace: EndpointPace) -> Self {
        let pace = EndpointPace { points: pace.points.max(1), window: pace.window };
        Self { lanes: Mutex::default(), max_concurrent: max_concurrent.max(1), reserve_percent, pace }
    }

    pub fn lane(&self, key: i64) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lanes
            .entry(key)
            .or_insert_with(|| Arc::new(Lane::new(self.max_concurrent, self.reserve_percent, self.pace)))
            .clone()
    }

    /// The last known budget of every lane, by key.
    pub fn budgets(&self) -> Vec<(i64, Budget)> {
        let lanes = self.lanes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(i64, Budget)> = lanes.iter().map(|(key, lane)| (*key, lane.budget())).collect();
        out.sort_by_key(|(key, _)| *key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64, remaining: u64, reset: u64) -> Budget {
        Budget { limit: Some(limit), remaining: Some(remaining), reset: Some(reset) }
    }

    #[test]
    fn sweeps_stop_at_the_reserve_while_webhooks_go_on() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let low = budget(5_000, 500, 1_030);
        assert_eq!(wait_needed(&low, None, Purpose::Sweep, 10, now, wall), Some(Duration::from_secs(31)));
        assert_eq!(wait_needed(&low, None, Purpose::Backfill, 10, now, wall), Some(Duration::from_secs(31)));
        assert_eq!(wait_needed(&low, None, Purpose::Webhook, 10, now, wall), None);
        assert_eq!(wait_needed(&low, None, Purpose::Installation, 10, now, wall), None);
        let plenty = budget(5_000, 501, 1_030);
        assert_eq!(wait_needed(&plenty, None, Purpose::Sweep, 10, now, wall), None);
    }

    #[test]
    fn an_empty_budget_holds_everyone_until_the_reset() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let empty = budget(5_000, 0, 1_010);
        assert_eq!(wait_needed(&empty, None, Purpose::Webhook, 10, now, wall), Some(Duration::from_secs(11)));
        // Past the reset the old numbers no longer bind.
        let stale = budget(5_000, 0, 900);
        assert_eq!(wait_needed(&stale, None, Purpose::Sweep, 10, now, wall), None);
        // Unknown budget: go.
        assert_eq!(wait_needed(&Budget::default(), None, Purpose::Sweep, 10, now, wall), None);
    }

    #[test]
    fn a_block_holds_every_purpose() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let blocked = Some(now + Duration::from_secs(2));
        assert_eq!(
            wait_needed(&Budget::default(), blocked, Purpose::Webhook, 10, now, wall),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn absurd_budgets_wait_at_most_the_maximum() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        for reset in [u64::MAX, 1 << 63, 1 << 40] {
            let absurd = budget(u64::MAX, 0, reset);
            assert_eq!(
                wait_needed(&absurd, None, Purpose::Webhook, 90, now, wall),
                Some(MAX_WAIT),
                "{reset}"
            );
            let reserve = budget(u64::MAX, 1, reset);
            assert_eq!(wait_needed(&reserve, None, Purpose::Sweep, 90, now, wall), Some(MAX_WAIT), "{reset}");
        }
        let lane = Lane::new(1, 10, GITHUB);
        lane.block_for(Duration::MAX);
        let state = lane.lock();
        assert!(wait_needed(&state.budget, state.blocked_until, Purpose::Webhook, 10, Instant::now(), wall)
            .is_some_and(|wait| wait <= MAX_WAIT));
    }

    #[tokio::test]
    async fn observed_headers_update_the_lane() {
        let pacer = Pacer::new(2, 10, GITHUB);
        let lane = pacer.lane(7);
        lane.observe(&LimitHeaders {
            limit: Some(100),
            remaining: Some(50),
            reset: Some(9),
            retry_after: None,
        });
        drop(lane.turn(Purpose::Sweep, "pulls", 1).await);
        assert_eq!(pacer.budgets(), vec![(7, budget(100, 49, 9))]);
    }

    const GITHUB: EndpointPace = EndpointPace { points: 900, window: Duration::from_secs(60) };

    #[test]
    fn an_endpoint_waits_until_its_oldest_points_leave_the_window() {
        let pace = EndpointPace { points: 3, window: Duration::from_secs(60) };
        let margin = pace.margin();
        assert_eq!(margin, Duration::from_secs(2));
        let start = Instant::now();
        let mut window = PointsWindow::default();
        for i in 0..3 {
            let at = start + Duration::from_secs(i);
            assert_eq!(window.wait_for_room(pace, 1, at), None, "call {i}");
            window.record(1, at);
        }
        let at = start + Duration::from_secs(10);
        // The first call leaves the window at 60 s plus the margin.
        assert_eq!(window.wait_for_room(pace, 1, at), Some(Duration::from_secs(52)));
        // Two points need the first two calls gone.
        assert_eq!(window.wait_for_room(pace, 2, at), Some(Duration::from_secs(53)));
        assert_eq!(window.wait_for_room(pace, 1, start + Duration::from_secs(62)), None);
        assert_eq!(window.total, 2, "the first call was trimmed");
    }

    #[test]
    fn a_call_larger_than_the_limit_waits_for_an_empty_window_not_forever() {
        let pace = EndpointPace { points: 2, window: Duration::from_secs(1) };
        assert_eq!(pace.margin(), Duration::from_millis(500), "at least half a second of slack");
        let now = Instant::now();
        let mut window = PointsWindow::default();
        assert_eq!(window.wait_for_room(pace, 5, now), None);
        window.record(5, now);
        assert_eq!(window.wait_for_room(pace, 5, now), Some(Duration::from_millis(1500)));
        assert_eq!(window.wait_for_room(pace, 1, now + Duration::from_millis(1500)), None);
    }

    #[tokio::test]
    async fn turns_of_one_endpoint_wait_while_another_endpoint_goes() {
        let pace = EndpointPace { points: 2, window: Duration::from_secs(1) };
        let lane = Arc::new(Lane::new(4, 10, pace));
        drop(lane.turn(Purpose::Sweep, "pulls", 1).await);
        drop(lane.turn(Purpose::Sweep, "pulls", 1).await);
        let third = {
            let lane = lane.clone();
            tokio::spawn(async move {
                drop(lane.turn(Purpose::Sweep, "pulls", 1).await);
            })
        };
        // Another endpoint has its own window.
        drop(lane.turn(Purpose::Sweep, "check-runs", 1).await);
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "the third call of the endpoint waits for room");
        third.await.expect("the third call goes once the window frees");
    }
}
