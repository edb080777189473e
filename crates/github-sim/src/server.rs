//! The simulator's HTTP side: GitHub's REST endpoints that prmonitor calls,
//! with auth, ETags, pagination, rate limits, fault injection and accounting;
//! plus a small admin API under `/_sim`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::model::{PrState, World};
use crate::prng::SplitMix64;
use crate::render::{self, Urls};
use crate::webhooks::{Dispatcher, WebhookTarget};

/// Faults to inject into the REST endpoints (not the App token route).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Share of requests answered with a 5xx.
    #[serde(default)]
    pub error_rate: f64,
    /// Added to every request.
    #[serde(default)]
    pub latency_ms: u64,
    /// The next this-many requests get a secondary rate limit (403 + Retry-After).
    #[serde(default)]
    pub secondary_limits: u32,
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u64,
    /// Request paths (below the API prefix, without query) answered 404.
    #[serde(default)]
    pub not_found: Vec<String>,
    /// Path prefixes (below the API prefix) always answered 500: a repository having a bad day.
    #[serde(default)]
    pub failing_paths: Vec<String>,
}

fn default_retry_after() -> u64 {
    60
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    /// Seconds since the Unix epoch, with fractions.
    pub at: f64,
    pub route: &'static str,
    pub path: String,
    pub status: u16,
    pub installation: Option<i64>,
    /// GraphQL points the request was charged (REST requests: 0).
    pub cost: u64,
    /// Refused for a rate limit: `"secondary"` (per-minute points, concurrency,
    /// or an injected one) or `"primary"` (the hourly budget is spent).
    pub limited: Option<&'static str>,
}

/// Every request, and counts by route and status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: Vec<LoggedRequest>,
}

impl Stats {
    /// `"GET /repos/{owner}/{repo}/pulls 304"` → count.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for request in &self.requests {
            *counts.entry(format!("{} {}", request.route, request.status)).or_default() += 1;
        }
        counts
    }

    pub fn count(&self, route: &str, status: u16) -> u64 {
        self.requests.iter().filter(|r| r.route == route && r.status == status).count() as u64
    }

    pub fn count_route(&self, route: &str) -> u64 {
        self.requests.iter().filter(|r| r.route == route).count() as u64
    }

    /// GraphQL points charged so far, over every caller.
    pub fn graphql_points(&self) -> u64 {
        self.requests.iter().filter(|r| r.route == crate::graphql::ROUTE).map(|r| r.cost).sum()
    }
    /// Requests refused for a secondary rate limit (a 403 that is not the primary budget).
    pub fn secondary_limited(&self) -> u64 {
        self.requests.iter().filter(|r| r.limited == Some(SECONDARY)).count() as u64
    }
}

const SECONDARY: &str = "secondary";
const PRIMARY: &str = "primary";
/// The endpoint key GraphQL's own per-minute limit applies to.
pub(crate) const GRAPHQL_ENDPOINT: &str = "POST /graphql";
const SECONDARY_MESSAGE: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID";
const SECONDARY_DOCS: &str =
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

/// GitHub's secondary rate limits, per caller (FACTS §2): points per
/// endpoint in a sliding window, and requests in flight at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SecondaryLimits {
    pub rest_points_per_window: u32,
    pub graphql_points_per_window: u32,
    pub max_concurrent: u32,
    pub window: Duration,
}

impl SecondaryLimits {
    fn points_per_window(&self, endpoint: &str) -> u32 {
        if endpoint == GRAPHQL_ENDPOINT {
            self.graphql_points_per_window
        } else {
            self.rest_points_per_window
        }
    }
}

/// GitHub's secondary-limit points of a request: reads 1, writes 5.
pub(crate) fn points(method: &actix_web::http::Method) -> u32 {
    use actix_web::http::Method;
    if [Method::GET, Method::HEAD, Method::OPTIONS].contains(method) {
        1
    } else {
        5
    }
}

/// The points one caller spent on one endpoint in the sliding window: the
/// requests in arrival order with a running sum, trimmed on each call, so
/// admission stays O(1) amortised however many requests a benchmark sends.
#[derive(Debug, Default)]
struct PointsWindow {
    spent: VecDeque<(Instant, u32)>,
    total: u64,
}

impl PointsWindow {
    /// Charges `points` at `now` (a refused request is charged too, as GitHub
    /// counts it); `Err` holds how long until a request of the same cost fits.
    fn charge(&mut self, now: Instant, window: Duration, limit: u32, points: u32) -> Result<(), Duration> {
        while let Some(&(at, spent)) = self.spent.front() {
            if now.saturating_duration_since(at) < window {
                break;
            }
            self.spent.pop_front();
            self.total -= u64::from(spent);
        }
        let fits = self.total + u64::from(points) <= u64::from(limit);
        self.spent.push_back((now, points));
        self.total += u64::from(points);
        if fits {
            return Ok(());
        }
        // Enough of the oldest entries must leave the window for the next
        // request of this cost to fit; the refused one stays in it.
        let excess = (self.total + u64::from(points)).saturating_sub(u64::from(limit));
        let mut freed = 0;
        for &(at, spent) in &self.spent {
            freed += u64::from(spent);
            if freed >= excess {
                return Err(at.checked_add(window).map_or(window, |end| end.saturating_duration_since(now)));
            }
        }
        Err(window)
    }
}

/// Admission bookkeeping: per-(caller, endpoint) windows and per-caller requests in flight.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    windows: HashMap<(i64, &'static str), PointsWindow>,
    in_flight: HashMap<i64, u32>,
}

/// A request counted as in flight until this is dropped.
pub(crate) struct InFlight<'a> {
    shared: &'a Shared,
    caller: i64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut admission = lock(&self.shared.admission);
        if let Some(count) = admission.in_flight.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                admission.in_flight.remove(&self.caller);
            }
        }
    }
}

/// A `Retry-After` in whole seconds, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A rate-limit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds.
    pub reset: u64,
}

pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub faults: Mutex<Faults>,
    pub webhook: Arc<Mutex<Option<WebhookTarget>>>,
    pub tokens: Mutex<HashMap<String, (i64, SystemTime)>>,
    pub buckets: Mutex<HashMap<i64, Bucket>>,
    pub admission: Mutex<Admission>,
    pub secondary: SecondaryLimits,
    pub stats: Mutex<Stats>,
    pub urls: Urls,
    pub prefix: String,
    pub app_public_key: String,
    pub static_token: Option<String>,
    pub token_lifetime: Duration,
    pub rate_limit: u64,
    pub rate_window: Duration,
    pub rng: Arc<SplitMix64>,
    pub dispatcher: Dispatcher,
    /// Held by the activity being made (`POST /_sim/activity`): one at a time.
    pub activity: tokio::sync::Mutex<()>,
    /// Whether installations hold "Administration: read", which GitHub
    /// requires for branch protection (true unless a test takes it away).
    pub administration: std::sync::atomic::AtomicBool,
    /// The App manifest flow: the App it registered, pending confirmations
    /// and codes, installations not made yet.
    pub apps: Mutex<crate::manifest::Apps>,
    /// The App whose webhook this is (`X-GitHub-Hook-Installation-Target-ID`):
    /// the built-in App, or the one the manifest flow registered.
    pub hook_app_id: Arc<std::sync::atomic::AtomicU64>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn epoch_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The App itself, with a JWT.
    App,
    /// An installation token.
    Installation(i64),
    /// The static token: sees every repository. Bucket 0.
    Static,
}

impl Caller {
    pub(crate) fn bucket(self) -> i64 {
        match self {
            Self::App => -1,
            Self::Installation(id) => id,
            Self::Static => 0,
        }
    }

    pub(crate) fn installation(self) -> Option<i64> {
        match self {
            Self::Installation(id) => Some(id),
            _ => None,
        }
    }

    pub(crate) fn may_read(self, repo_installation: i64) -> bool {
        match self {
            Self::Static => true,
            Self::Installation(id) => id == repo_installation,
            Self::App => false,
        }
    }
}

pub(crate) fn routes(prefix: &str) -> impl FnOnce(&mut web::ServiceConfig) + '_ {
    move |cfg: &mut web::ServiceConfig| {
        // Before the REST scope: an empty prefix's scope would take `/graphql` too.
        cfg.route(&crate::graphql::path(prefix), web::post().to(crate::graphql::serve));
        cfg.service(
            web::scope(prefix)
                .route("/app/installations/{id}/access_tokens", web::post().to(create_token))
                .route("/app/installations", web::get().to(list_installations))
                .route("/app/hook/deliveries", web::get().to(crate::deliveries::list))
                .route("/app/hook/deliveries/{delivery_id}", web::get().to(crate::deliveries::detail))
                .route(
                    "/app/hook/deliveries/{delivery_id}/attempts",
                    web::post().to(crate::deliveries::redeliver),
                )
                .route("/app-manifests/{code}/conversions", web::post().to(crate::manifest::conversion))
                .route("/installation/repositories", web::get().to(installation_repositories))
                .route("/repos/{owner}/{repo}", web::get().to(get_repository))
                .route("/repos/{owner}/{repo}/pulls", web::get().to(list_pulls))
                .route("/repos/{owner}/{repo}/pulls/{number}", web::get().to(get_pull))
                .route("/repos/{owner}/{repo}/commits/{sha}/check-runs", web::get().to(list_check_runs))
                .route("/repos/{owner}/{repo}/commits/{sha}/status", web::get().to(combined_status))
                .route("/repos/{owner}/{repo}/commits/{sha}/statuses", web::get().to(list_statuses))
                .route(
                    "/repos/{owner}/{repo}/branches/{branch:.+}/protection/required_status_checks",
                    web::get().to(required_status_checks),
                ),
        );
    }
}

/// The web pages of the App manifest flow, on the simulator's root as
/// GitHub serves them on github.com (see [`crate::manifest`]).
pub(crate) fn web_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings/apps/new", web::post().to(crate::manifest::new_user_app))
        .route("/settings/apps/new/confirm", web::post().to(crate::manifest::confirm))
        .route("/organizations/{org}/settings/apps/new", web::post().to(crate::manifest::new_org_app))
        .route("/apps/{slug}/installations/new", web::get().to(crate::manifest::install_page))
        .route("/apps/{slug}/installations/new", web::post().to(crate::manifest::install));
}

pub(crate) fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/_sim/stats", web::get().to(admin_stats))
        .route("/_sim/faults", web::post().to(admin_faults))
        .route("/_sim/budget/{bucket}", web::post().to(admin_budget))
        .route("/_sim/graphql-budget/{bucket}", web::post().to(crate::graphql::admin_budget))
        .route("/_sim/tokens/expire", web::post().to(admin_expire_tokens))
        .route("/_sim/activity", web::post().to(admin_activity));
}

/// An error answer in GitHub's shape, before it becomes a response.
#[derive(Debug, Clone)]
pub(crate) struct GhError {
    pub(crate) status: StatusCode,
    message: String,
    documentation_url: &'static str,
    retry_after: Option<u64>,
    /// Which rate limit refused the request, if one did.
    limited: Option<&'static str>,
}

impl GhError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            documentation_url: "https://docs.github.com/rest",
            retry_after: None,
            limited: None,
        }
    }

    /// GitHub's answer to a secondary-limit hit: 403 (GitHub also uses 429)
    /// with `Retry-After`; the primary budget is untouched.
    fn secondary(retry_after_secs: u64) -> Self {
        // A counter, not the seeded generator: drawing from that would shift
        // the injected faults that follow and change what a seed repeats.
        static REQUEST_IDS: std::sync::atomic::AtomicU64 =
            std::sync::atomic::AtomicU64::new(0x5EC0_0000_0001);
        let request_id = REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "{SECONDARY_MESSAGE} {:04X}:{:08X}.",
                request_id >> 48,
                request_id & 0xffff_ffff
            ),
            documentation_url: SECONDARY_DOCS,
            retry_after: Some(retry_after_secs),
            limited: Some(SECONDARY),
        }
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Which rate limit refused the request, if one did.
    pub(crate) fn limited(&self) -> Option<&'static str> {
        self.limited
    }

    pub(crate) fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status).json(json!({
            "message": self.message,
            "documentation_url": self.documentation_url,
            "status": self.status.as_u16().to_string(),
        }));
        if let Some(value) = self
            .retry_after
            .and_then(|secs| actix_web::http::header::HeaderValue::from_str(&secs.to_string()).ok())
        {
            response.headers_mut().insert(actix_web::http::header::RETRY_AFTER, value);
        }
        response
    }
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    GhError::new(status, message).response()
}

/// The ETag of `body` as served to `credential`: GitHub's ETags belong to
/// the token that earned them (FACTS §4), so a validator earned under one
/// token does not match under another, even for the same bytes.
fn etag(body: &[u8], credential: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update([0]);
    hasher.update(credential.as_bytes());
    format!("W/\"{}\"", hex::encode(&hasher.finalize()[..16]))
}

impl Shared {
    pub(crate) fn log(&self, route: &'static str, req: &HttpRequest, status: u16, caller: Option<Caller>) {
        self.log_limited(route, req, status, caller, None);
    }

    pub(crate) fn log_limited(
        &self,
        route: &'static str,
        req: &HttpRequest,
        status: u16,
        caller: Option<Caller>,
        limited: Option<&'static str>,
    ) {
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        lock(&self.stats).requests.push(LoggedRequest {
            at,
            route,
            path: req.uri().to_string(),
            status,
            installation: caller.and_then(Caller::installation),
            cost: 0,
            limited,
        });
    }

    /// Admits one request of `caller` (a [`Caller::bucket`] key: installation
    /// id, 0 for the static token, -1 for the App) to `endpoint` (a route
    /// template such as `GET /repos/{owner}/{repo}/pulls`, or
    /// [`GRAPHQL_ENDPOINT`]), costing `points`, under GitHub's secondary
    /// limits. Every request counts, whatever its answer will be, and so does
    /// a refused one. The guard holds the request's place among the caller's
    /// requests in flight (REST and GraphQL share them) until it is dropped.
    pub(crate) fn admit(
        &self,
        caller: i64,
        endpoint: &'static str,
        points: u32,
    ) -> Result<InFlight<'_>, GhError> {
        let limit = self.secondary.points_per_window(endpoint);
        let mut admission = lock(&self.admission);
        let charged = admission.windows.entry((caller, endpoint)).or_default().charge(
            Instant::now(),
            self.secondary.window,
            limit,
            points,
        );
        if let Err(wait) = charged {
            return Err(GhError::secondary(retry_after_secs(wait)));
        }
        let in_flight = admission.in_flight.entry(caller).or_insert(0);
        if *in_flight >= self.secondary.max_concurrent {
            // When one of the others finishes is unknown: GitHub's least wait.
            return Err(GhError::secondary(1));
        }
        *in_flight += 1;
        Ok(InFlight { shared: self, caller })
    }

    /// Invalidates every installation token minted so far (a forced rotation); returns how many.
    pub(crate) fn expire_tokens(&self) -> usize {
        let mut tokens = lock(&self.tokens);
        let count = tokens.len();
        tokens.clear();
        count
    }

    fn bearer(req: &HttpRequest) -> Option<String> {
        let value = req.headers().get("authorization")?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token "))?;
        Some(token.trim().to_owned())
    }

    /// The caller and the credential it presented (the ETags' scope).
    pub(crate) fn authenticate_token(&self, req: &HttpRequest) -> Result<(Caller, String), GhError> {
        let token = Self::bearer(req)
            .ok_or_else(|| GhError::new(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
        if self.static_token.as_deref() == Some(token.as_str()) {
            return Ok((Caller::Static, token));
        }
        let installation = match lock(&self.tokens).get(&token) {
            Some((installation, expires)) if *expires > SystemTime::now() => *installation,
            _ => return Err(GhError::new(StatusCode::UNAUTHORIZED, "Bad credentials")),
        };
        Ok((Caller::Installation(installation), token))
    }

    pub(crate) fn authenticate_app(&self, req: &HttpRequest, app_id: u64) -> Result<Caller, GhError> {
        let jwt = Self::bearer(req)
            .ok_or_else(|| GhError::new(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded"))?;
        // No App registered yet (a simulator started without one): no JWT
        // can name it.
        if app_id == 0 {
            return Err(GhError::new(StatusCode::UNAUTHORIZED, "Integration not found"));
        }
        verify_jwt(&jwt, &self.app_public_key, app_id)
            .map(|()| Caller::App)
            .map_err(|reason| GhError::new(StatusCode::UNAUTHORIZED, reason))
    }

    /// Injected faults for one REST request, after auth and admission.
    async fn faults(&self, req: &HttpRequest) -> Option<GhError> {
        let faults = lock(&self.faults).clone();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        let path = req.path().strip_prefix(self.prefix.as_str()).unwrap_or(req.path());
        if faults.not_found.iter().any(|p| p == path) {
            return Some(GhError::new(StatusCode::NOT_FOUND, "Not Found"));
        }
        if faults.failing_paths.iter().any(|p| path.starts_with(p.as_str())) {
            return Some(GhError::new(StatusCode::INTERNAL_SERVER_ERROR, "Server Error"));
        }
        // Taken under the lock: concurrent requests may race for the last one.
        let limited = {
            let mut current = lock(&self.faults);
            let armed = current.secondary_limits > 0;
            current.secondary_limits = current.secondary_limits.saturating_sub(1);
            armed
        };
        if limited {
            return Some(GhError::secondary(faults.retry_after_secs));
        }
        if self.rng.chance(faults.error_rate) {
            let status = if self.rng.chance(0.5) {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return Some(GhError::new(status, "Server Error"));
        }
        None
    }

    /// The caller's bucket, renewed when its window has passed.
    fn bucket(&self, caller: Caller) -> Bucket {
        let now = epoch_now();
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(caller.bucket()).or_insert(Bucket {
            limit: self.rate_limit,
            remaining: self.rate_limit,
            reset: now + self.rate_window.as_secs(),
        });
        if bucket.reset <= now {
            bucket.remaining = bucket.limit;
            bucket.reset = now + self.rate_window.as_secs();
        }
        *bucket
    }

    fn spend(&self, caller: Caller) {
        if let Some(bucket) = lock(&self.buckets).get_mut(&caller.bucket()) {
            bucket.remaining = bucket.remaining.saturating_sub(1);
        }
    }

    fn with_limits(&self, mut response: HttpResponse, bucket: Bucket) -> HttpResponse {
        let headers = response.headers_mut();
        let pairs = [
            ("x-ratelimit-limit", bucket.limit.to_string()),
            ("x-ratelimit-remaining", bucket.remaining.to_string()),
            ("x-ratelimit-used", (bucket.limit - bucket.remaining.min(bucket.limit)).to_string()),
            ("x-ratelimit-reset", bucket.reset.to_string()),
            ("x-ratelimit-resource", "core".to_owned()),
        ];
        for (name, value) in pairs {
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
                headers.insert(actix_web::http::header::HeaderName::from_static(name), value);
            }
        }
        response
    }

    /// A refusal (an injected fault or a secondary limit) with the caller's unchanged budget.
    fn refuse(
        &self,
        route: &'static str,
        req: &HttpRequest,
        caller: Caller,
        refusal: &GhError,
    ) -> HttpResponse {
        let response = self.with_limits(refusal.response(), self.bucket(caller));
        self.log_limited(route, req, response.status().as_u16(), Some(caller), refusal.limited);
        response
    }

    /// The REST pipeline around a handler's data: auth, faults, budget, ETag, headers, accounting.
    async fn serve_rest(
        &self,
        req: &HttpRequest,
        route: &'static str,
        body: impl FnOnce(Caller, &World) -> Result<(Value, Option<PageLinks>), GhError>,
    ) -> HttpResponse {
        let (caller, credential) = match self.authenticate_token(req) {
            Ok(authenticated) => authenticated,
            Err(refusal) => {
                self.log(route, req, refusal.status.as_u16(), None);
                return refusal.response();
            }
        };
        // Before the faults: injected errors and latency count and occupy a
        // place in flight like any other answer.
        let _in_flight = match self.admit(caller.bucket(), route, points(req.method())) {
            Ok(in_flight) => in_flight,
            Err(refusal) => return self.refuse(route, req, caller, &refusal),
        };
        if let Some(refusal) = self.faults(req).await {
            return self.refuse(route, req, caller, &refusal);
        }
        let bucket = self.bucket(caller);
        if bucket.remaining == 0 {
            let response = self.with_limits(
                error(
                    StatusCode::FORBIDDEN,
                    &format!("API rate limit exceeded for installation ID {}.", caller.bucket()),
                ),
                bucket,
            );
            self.log_limited(route, req, 403, Some(caller), Some(PRIMARY));
            return response;
        }
        let result = {
            let world = lock(&self.world);
            body(caller, &world)
        };
        let (value, links) = match result {
            Ok(ok) => ok,
            Err(refusal) => {
                self.spend(caller);
                let response = self.with_limits(refusal.response(), self.bucket(caller));
                self.log(route, req, response.status().as_u16(), Some(caller));
                return response;
            }
        };
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let etag = etag(&bytes, &credential);
        let link = links.map(|l| l.header(&self.urls, req));
        let matches = req
            .headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|candidate| candidate.trim() == etag));
        // A 304 costs nothing from the primary budget, as on GitHub (it was
        // charged to the secondary limits on admission).
        let (mut response, bucket) = if matches {
            (HttpResponse::NotModified().finish(), bucket)
        } else {
            self.spend(caller);
            (
                HttpResponse::Ok().content_type("application/json; charset=utf-8").body(bytes),
                self.bucket(caller),
            )
        };
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&etag) {
            response.headers_mut().insert(actix_web::http::header::ETAG, value);
        }
        if let Some(value) = link.and_then(|l| actix_web::http::header::HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(actix_web::http::header::LINK, value);
        }
        let response = self.with_limits(response, bucket);
        self.log(route, req, response.status().as_u16(), Some(caller));
        response
    }
}

/// Pagination of one listing.
struct PageLinks {
    page: usize,
    last: usize,
}

impl PageLinks {
    fn header(&self, urls: &Urls, req: &HttpRequest) -> String {
        let origin = origin(urls);
        let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let link = |page: usize, rel: &str| {
            let mut serializer = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &query {
                serializer.append_pair(k, v);
            }
            serializer.append_pair("page", &page.to_string());
            format!("<{origin}{}?{}>; rel=\"{rel}\"", req.path(), serializer.finish())
        };
        let mut parts = Vec::new();
        if self.page > 1 {
            parts.push(link(self.page - 1, "prev"));
        }
        if self.page < self.last {
            parts.push(link(self.page + 1, "next"));
            parts.push(link(self.last, "last"));
        }
        if self.page > 1 {
            parts.push(link(1, "first"));
        }
        parts.join(", ")
    }
}

/// `http://host:port` of the API root, without the prefix: the request path carries it.
pub(crate) fn origin(urls: &Urls) -> &str {
    let base = urls.api.trim_end_matches('/');
    base.find("://").and_then(|i| base[i + 3..].find('/').map(|j| &base[..i + 3 + j])).unwrap_or(base)
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// Cuts `items` to the requested page; GitHub's defaults: 30 a page, at most 100.
fn paginate<T>(items: Vec<T>, query: &PageQuery) -> (Vec<T>, Option<PageLinks>) {
    let per_page = query.per_page.unwrap_or(30).clamp(1, 100);
    let page = query.page.unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let items: Vec<T> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let links = (last > 1).then_some(PageLinks { page, last });
    (items, links)
}

pub(crate) type Data = web::Data<Shared>;

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Value,
    iat: i64,
    exp: i64,
}

/// RS256 against the App's public key; `iss` is the App id (number or string).
fn verify_jwt(jwt: &str, public_key_pem: &str, app_id: u64) -> Result<(), String> {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let key =
        DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(|e| format!("bad app key: {e}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 60;
    // `iss` is checked below: jsonwebtoken's own check expects a string, and
    // GitHub Apps send the numeric App id.
    validation.set_required_spec_claims(&["exp", "iat"]);
    let claims = decode::<Claims>(jwt, &key, &validation)
        .map_err(|e| format!("A JSON web token could not be decoded: {e}"))?
        .claims;
    let issuer_ok = match &claims.iss {
        Value::Number(n) => n.as_u64() == Some(app_id),
        Value::String(s) => s == &app_id.to_string(),
        _ => false,
    };
    if !issuer_ok {
        return Err("'Issuer' claim ('iss') must be the App's id".into());
    }
    if claims.exp - claims.iat > 660 {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    Ok(())
}

async fn create_token(req: HttpRequest, path: web::Path<i64>, shared: Data) -> HttpResponse {
    const ROUTE: &str = "POST /app/installations/{id}/access_tokens";
    let installation_id = path.into_inner();
    let app_id = lock(&shared.world).app_id;
    if let Err(refusal) = shared.authenticate_app(&req, app_id) {
        shared.log(ROUTE, &req, 401, None);
        return refusal.response();
    }
    // The App is a caller of its own under the secondary limits.
    let _in_flight = match shared.admit(Caller::App.bucket(), ROUTE, points(req.method())) {
        Ok(in_flight) => in_flight,
        Err(refusal) => {
            let caller = Some(Caller::Installation(installation_id));
            shared.log_limited(ROUTE, &req, refusal.status.as_u16(), caller, refusal.limited);
            return refusal.response();
        }
    };
    let known = lock(&shared.world).installations.get(&installation_id).map(|i| i.suspended);
    let response = match known {
        None => error(StatusCode::NOT_FOUND, "Not Found"),
        Some(true) => error(StatusCode::FORBIDDEN, "This installation has been suspended"),
        Some(false) => {
            let token = format!("ghs_sim{:016x}{:016x}", shared.rng.next_u64(), shared.rng.next_u64());
            let expires = SystemTime::now() + shared.token_lifetime;
            lock(&shared.tokens).insert(token.clone(), (installation_id, expires));
            let expires_at: chrono::DateTime<chrono::Utc> = expires.into();
            // GitHub lists only the permissions the installation holds.
            let mut permissions = json!({
                "pull_requests": "read",
                "checks": "read",
                "statuses": "read",
                "merge_queues": "read",
                "metadata": "read",
            });
            if shared.administration.load(std::sync::atomic::Ordering::Relaxed) {
                permissions["administration"] = json!("read");
            }
            HttpResponse::Created().json(json!({
                "token": token,
                "expires_at": expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "permissions": permissions,
                "repository_selection": "all",
            }))
        }
    };
    shared.log(ROUTE, &req, response.status().as_u16(), Some(Caller::Installation(installation_id)));
    response
}

async fn list_installations(req: HttpRequest, query: web::Query<PageQuery>, shared: Data) -> HttpResponse {
    const ROUTE: &str = "GET /app/installations";
    let app_id = lock(&shared.world).app_id;
    if let Err(refusal) = shared.authenticate_app(&req, app_id) {
        shared.log(ROUTE, &req, 401, None);
        return refusal.response();
    }
    let _in_flight = match shared.admit(Caller::App.bucket(), ROUTE, points(req.method())) {
        Ok(in_flight) => in_flight,
        Err(refusal) => {
            shared.log_limited(ROUTE, &req, refusal.status.as_u16(), Some(Caller::App), refusal.limited);
            return refusal.response();
        }
    };
    let items: Vec<Value> = {
        let world = lock(&shared.world);
        world.installations.values().map(|i| render::installation(&shared.urls, app_id, i)).collect()
    };
    let (items, links) = paginate(items, &query);
    let mut response = HttpResponse::Ok().json(items);
    if let Some(value) =
        links.and_then(|l| actix_web::http::header::HeaderValue::from_str(&l.header(&shared.urls, &req)).ok())
    {
        response.headers_mut().insert(actix_web::http::header::LINK, value);
    }
    shared.log(ROUTE, &req, 200, Some(Caller::App));
    response
}

async fn installation_repositories(
    req: HttpRequest,
    query: web::Query<PageQuery>,
    shared: Data,
) -> HttpResponse {
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /installation/repositories", |caller, world| {
            let repos: Vec<Value> = world
                .repos
                .values()
                .filter(|r| caller.may_read(r.installation_id))
                .map(|r| render::repository(&urls, r))
                .collect();
            let total = repos.len();
            let (items, links) = paginate(repos, &query);
            Ok((json!({ "total_count": total, "repository_selection": "all", "repositories": items }), links))
        })
        .await
}

/// The repository at `owner/repo` if the caller may read it; GitHub says 404 otherwise.
fn find_repo<'w>(
    world: &'w World,
    caller: Caller,
    owner: &str,
    name: &str,
) -> Result<&'w crate::model::SimRepo, GhError> {
    world
        .repos
        .values()
        .find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
        .filter(|r| caller.may_read(r.installation_id))
        .ok_or_else(|| GhError::new(StatusCode::NOT_FOUND, "Not Found"))
}

async fn get_repository(req: HttpRequest, path: web::Path<(String, String)>, shared: Data) -> HttpResponse {
    let (owner, name) = path.into_inner();
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /repos/{owner}/{repo}", |caller, world| {
            let repo = find_repo(world, caller, &owner, &name)?;
            Ok((render::repository(&urls, repo), None))
        })
        .await
}

#[derive(Debug, Deserialize)]
struct PullsQuery {
    state: Option<String>,
    sort: Option<String>,
    direction: Option<String>,
}

// Two query extractors rather than `#[serde(flatten)]`, which turns numbers in
// query strings into strings and fails on them.
async fn list_pulls(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<PullsQuery>,
    pages: web::Query<PageQuery>,
    shared: Data,
) -> HttpResponse {
    let (owner, name) = path.into_inner();
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /repos/{owner}/{repo}/pulls", |caller, world| {
            let repo = find_repo(world, caller, &owner, &name)?;
            let state = query.state.as_deref().unwrap_or("open");
            let mut pulls: Vec<&crate::model::SimPr> = repo
                .pulls
                .values()
                .filter(|pr| match state {
                    "open" => pr.state == PrState::Open,
                    "closed" => pr.state != PrState::Open,
                    _ => true,
                })
                .collect();
            let sort = query.sort.as_deref().unwrap_or("created");
            // GitHub: desc by default when sorting by creation, asc otherwise.
            let descending = match query.direction.as_deref() {
                Some(direction) => direction == "desc",
                None => sort == "created",
            };
            if sort == "updated" {
                pulls.sort_by_key(|pr| (pr.updated_at, pr.number));
            } else {
                pulls.sort_by_key(|pr| (pr.created_at, pr.number));
            }
            if descending {
                pulls.reverse();
            }
            let (page, links) = paginate(pulls, &pages);
            let items: Vec<Value> =
                page.into_iter().map(|pr| render::pull_request(&urls, repo, pr)).collect();
            Ok((Value::Array(items), links))
        })
        .await
}

async fn get_pull(req: HttpRequest, path: web::Path<(String, String, String)>, shared: Data) -> HttpResponse {
    let (owner, name, number) = path.into_inner();
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /repos/{owner}/{repo}/pulls/{number}", |caller, world| {
            let repo = find_repo(world, caller, &owner, &name)?;
            let pr = number
                .parse::<i64>()
                .ok()
                .and_then(|n| repo.pulls.get(&n))
                .ok_or_else(|| GhError::new(StatusCode::NOT_FOUND, "Not Found"))?;
            Ok((render::pull_request(&urls, repo, pr), None))
        })
        .await
}

#[derive(Debug, Deserialize)]
struct ChecksQuery {
    filter: Option<String>,
}

async fn list_check_runs(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    query: web::Query<ChecksQuery>,
    pages: web::Query<PageQuery>,
    shared: Data,
) -> HttpResponse {
    let (owner, name, sha) = path.into_inner();
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /repos/{owner}/{repo}/commits/{ref}/check-runs", |caller, world| {
            let repo = find_repo(world, caller, &owner, &name)?;
            if !repo.commits.contains(&sha) {
                return Err(GhError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("No commit found for SHA: {sha}"),
                ));
            }
            // `latest` (GitHub's default): the newest run of each name, so a
            // re-run hides the run it re-ran; `all` lists both.
            let mut runs: Vec<&crate::model::SimCheckRun> = match query.filter.as_deref() {
                Some("all") => repo.runs_for(&sha).collect(),
                _ => crate::model::latest_runs(repo.runs_for(&sha)),
            };
            runs.sort_by_key(|run| std::cmp::Reverse(run.id));
            let total = runs.len();
            let (page, links) = paginate(runs, &pages);
            let items: Vec<Value> = page.into_iter().map(|run| render::check_run(&urls, repo, run)).collect();
            Ok((json!({ "total_count": total, "check_runs": items }), links))
        })
        .await
}

/// The commit `sha` of `repo`, or GitHub's answer for a SHA it does not know.
fn known_commit(repo: &crate::model::SimRepo, sha: &str) -> Result<(), GhError> {
    if repo.commits.contains(sha) {
        Ok(())
    } else {
        Err(GhError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("No commit found for SHA: {sha}")))
    }
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/status`: the latest status of
/// each context (paginated: GitHub pages them past 100 contexts) and the
/// combined state. The ref must be a SHA (GitHub also takes branch and tag
/// names, which the simulator does not keep).
async fn combined_status(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    pages: web::Query<PageQuery>,
    shared: Data,
) -> HttpResponse {
    let (owner, name, sha) = path.into_inner();
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /repos/{owner}/{repo}/commits/{ref}/status", |caller, world| {
            let repo = find_repo(world, caller, &owner, &name)?;
            known_commit(repo, &sha)?;
            let latest = repo.latest_statuses(&sha);
            let state = crate::model::combined_state(&latest);
            let total = latest.len();
            let (page, links) = paginate(latest, &pages);
            Ok((render::combined_status(&urls, repo, &sha, state, &page, total), links))
        })
        .await
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/statuses`: every status posted
/// on the commit, newest first (GitHub: "reverse chronological order").
async fn list_statuses(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    pages: web::Query<PageQuery>,
    shared: Data,
) -> HttpResponse {
    let (owner, name, sha) = path.into_inner();
    let urls = shared.urls.clone();
    shared
        .serve_rest(&req, "GET /repos/{owner}/{repo}/commits/{ref}/statuses", |caller, world| {
            let repo = find_repo(world, caller, &owner, &name)?;
            known_commit(repo, &sha)?;
            let newest_first: Vec<&crate::model::SimStatus> = repo.statuses_for(&sha).iter().rev().collect();
            let (page, links) = paginate(newest_first, &pages);
            let items: Vec<Value> = page.into_iter().map(|s| render::status(&urls, repo, s)).collect();
            Ok((Value::Array(items), links))
        })
        .await
}

/// `GET /repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks`.
/// GitHub answers 404 `Branch not protected` for a branch without
/// protection and `Required status checks not enabled` for one whose
/// protection requires no checks. GitHub Apps also need the Administration
/// read permission for it: without it (`Simulator::set_administration`),
/// GitHub's 403 "Resource not accessible by integration".
async fn required_status_checks(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    shared: Data,
) -> HttpResponse {
    let (owner, name, branch) = path.into_inner();
    let urls = shared.urls.clone();
    let administration = shared.administration.load(std::sync::atomic::Ordering::Relaxed);
    shared
        .serve_rest(
            &req,
            "GET /repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks",
            |caller, world| {
                let repo = find_repo(world, caller, &owner, &name)?;
                if !administration {
                    return Err(GhError::new(
                        StatusCode::FORBIDDEN,
                        "Resource not accessible by integration",
                    ));
                }
                let rule = repo
                    .protection
                    .get(&branch)
                    .ok_or_else(|| GhError::new(StatusCode::NOT_FOUND, "Branch not protected"))?;
                if rule.contexts.is_empty() {
                    return Err(GhError::new(StatusCode::NOT_FOUND, "Required status checks not enabled"));
                }
                Ok((render::required_status_checks(&urls, repo, &branch, rule), None))
            },
        )
        .await
}

async fn admin_stats(shared: Data) -> HttpResponse {
    let stats = lock(&shared.stats).clone();
    HttpResponse::Ok().json(json!({
        "counts": stats.counts(),
        "requests": stats.requests.len(),
        "graphql": { "requests": stats.count_route(crate::graphql::ROUTE), "points": stats.graphql_points() },
        "secondary_limited": stats.secondary_limited(),
    }))
}

async fn admin_expire_tokens(shared: Data) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "expired": shared.expire_tokens() }))
}

/// `POST /_sim/activity`: many changes at once (see [`crate::activity`]).
async fn admin_activity(req: HttpRequest, payload: web::Payload, shared: Data) -> HttpResponse {
    use crate::activity::{Activity, ActivityError, MAX_BODY_BYTES};
    let body = match read_body(&req, payload, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(refusal) => return refusal.response(),
    };
    let activity = match Activity::from_json(&body) {
        Ok(activity) => activity,
        Err(ActivityError::Malformed(message)) => return error(StatusCode::BAD_REQUEST, &message),
        Err(ActivityError::Invalid(invalid)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, &invalid.to_string());
        }
    };
    match crate::activity::run(&shared, &activity).await {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(invalid) => error(StatusCode::UNPROCESSABLE_ENTITY, &invalid.to_string()),
    }
}

/// A request body of at most `limit` bytes; 413 beyond, whatever the
/// `Content-Length` claims, 400 for a body that breaks off.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, GhError> {
    use futures_util::StreamExt as _;
    let too_large = || GhError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {limit} bytes"));
    let claimed = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if claimed.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(claimed.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| GhError::new(StatusCode::BAD_REQUEST, format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn admin_faults(faults: web::Json<Faults>, shared: Data) -> HttpResponse {
    *lock(&shared.faults) = faults.into_inner();
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[derive(Debug, Deserialize)]
struct BudgetChange {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_in_secs: Option<u64>,
}

async fn admin_budget(path: web::Path<i64>, change: web::Json<BudgetChange>, shared: Data) -> HttpResponse {
    let bucket = set_budget(
        &shared,
        path.into_inner(),
        change.limit,
        change.remaining,
        change.reset_in_secs.map(Duration::from_secs),
    );
    HttpResponse::Ok().json(bucket)
}

/// Sets a bucket's numbers (tests and the admin API).
pub(crate) fn set_budget(
    shared: &Shared,
    bucket_key: i64,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_in: Option<Duration>,
) -> Bucket {
    let now = epoch_now();
    let mut buckets = lock(&shared.buckets);
    let bucket = buckets.entry(bucket_key).or_insert(Bucket {
        limit: shared.rate_limit,
        remaining: shared.rate_limit,
        reset: now + shared.rate_window.as_secs(),
    });
    if let Some(limit) = limit {
        bucket.limit = limit;
    }
    if let Some(remaining) = remaining {
        bucket.remaining = remaining.min(bucket.limit);
    }
    if let Some(reset_in) = reset_in {
        bucket.reset = now + reset_in.as_secs();
    }
    *bucket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_githubs_defaults_and_bounds() {
        let items: Vec<u32> = (0..250).collect();
        let (page, links) = paginate(items.clone(), &PageQuery { page: None, per_page: None });
        assert_eq!(page.len(), 30);
        assert_eq!(links.map(|l| l.last), Some(9));
        let (page, links) = paginate(items.clone(), &PageQuery { page: Some(3), per_page: Some(1000) });
        assert_eq!(page, (200..250).collect::<Vec<_>>());
        assert_eq!(links.map(|l| (l.page, l.last)), Some((3, 3)));
        let (page, links) = paginate(items, &PageQuery { page: Some(9), per_page: Some(100) });
        assert!(page.is_empty());
        assert!(links.is_some());
        let (_, links) = paginate(vec![1], &PageQuery { page: None, per_page: None });
        assert!(links.is_none(), "one page: no Link header");
    }

    #[test]
    fn an_etag_belongs_to_the_token_that_earned_it() {
        let body = br#"[{"number":1}]"#;
        assert_eq!(etag(body, "ghs_a"), etag(body, "ghs_a"));
        assert_ne!(etag(body, "ghs_a"), etag(body, "ghs_b"), "same bytes, another token");
        assert_ne!(etag(body, "ghs_a"), etag(br#"[{"number":2}]"#, "ghs_a"));
        // The credential cannot be shifted into the body to forge a match.
        assert_ne!(etag(b"ab", "c"), etag(b"a", "bc"));
        assert!(etag(body, "t").starts_with("W/\""));
    }

    #[test]
    fn the_window_counts_every_request_and_the_refused_ones_too() {
        let window = Duration::from_secs(60);
        let start = Instant::now();
        let mut spent = PointsWindow::default();
        for i in 0..5 {
            assert_eq!(spent.charge(start + Duration::from_secs(i), window, 5, 1), Ok(()), "request {i}");
        }
        // The sixth: refused, and the wait lasts until the first two have
        // left (the refused request stays in the window).
        let refused = spent.charge(start + Duration::from_secs(10), window, 5, 1);
        assert_eq!(refused, Err(Duration::from_secs(51)));
        assert_eq!(spent.total, 6);
        // Just before then, still refused (and charged); at that point, admitted.
        assert!(spent.charge(start + Duration::from_secs(60), window, 5, 1).is_err());
        assert_eq!(spent.charge(start + Duration::from_secs(62), window, 5, 1), Ok(()));
        // Everything leaves a window that has passed.
        assert_eq!(spent.charge(start + Duration::from_secs(500), window, 5, 5), Ok(()));
        assert_eq!(spent.total, 5);
    }

    #[test]
    fn writes_cost_five_points_and_a_request_beyond_the_limit_waits_a_window() {
        use actix_web::http::Method;
        assert_eq!(points(&Method::GET), 1);
        assert_eq!(points(&Method::HEAD), 1);
        for write in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
            assert_eq!(points(&write), 5, "{write}");
        }
        let window = Duration::from_secs(60);
        let now = Instant::now();
        let mut spent = PointsWindow::default();
        assert_eq!(spent.charge(now, window, 12, 5), Ok(()));
        assert_eq!(spent.charge(now, window, 12, 5), Ok(()));
        assert_eq!(spent.charge(now, window, 12, 5), Err(window));
        // Larger than the limit on its own: it never fits; the wait is a window, not forever.
        assert_eq!(PointsWindow::default().charge(now, window, 3, 5), Err(window));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(59)), 59);
    }
}
