//! Settings from the environment and an optional TOML file.
//!
//! Every setting has one environment variable (`DATABASE_URL`, `PRMONITOR_*`)
//! and one key in the file: the variable's name in lower case without the
//! `PRMONITOR_` prefix (`PRMONITOR_LISTEN` ↔ `listen`). The environment wins
//! over the file. A malformed value is an error that names the variable and
//! never repeats a secret's value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/prmonitor";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DB_POOL_SIZE: usize = 10;
/// A check queued or in progress this long is stuck.
pub const DEFAULT_STUCK_CHECK_AFTER: Duration = Duration::from_secs(3600);
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// Bodies of deliveries being received, together, in MiB.
pub const DEFAULT_WEBHOOK_BUFFER_MIB: usize = 64;
/// Change feed streams one process serves at once.
pub const DEFAULT_CHANGE_FEED_MAX_CLIENTS: usize = 1000;

/// A value that must never reach a log line, an error message or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where it is used (HMAC key, header compare).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A PostgreSQL connection URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Secret);

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err("must start with postgres:// or postgresql://".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host".into());
        }
        let name = url.path().trim_start_matches('/');
        if name.is_empty() || name.contains('/') {
            return Err("must name one database, e.g. postgres://user@host:5432/prmonitor".into());
        }
        Ok(Self(Secret::new(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with the password replaced, for logs: in the user part and in
    /// a `password=` query parameter, the two places libpq-style URLs take it.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // set_password only fails for URLs that cannot have one.
                    let _ = url.set_password(Some("redacted"));
                }
                let secret_query = url.query_pairs().any(|(key, _)| key.eq_ignore_ascii_case("password"));
                if secret_query {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(key, value)| {
                            let value =
                                if key.eq_ignore_ascii_case("password") { "redacted".into() } else { value };
                            (key.into_owned(), value.into_owned())
                        })
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                url.to_string()
            }
            Err(_) => "[unparseable database url]".into(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `PRMONITOR_SECRET_KEY`: 32 bytes that seal the stored App credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// 64 hexadecimal digits (`openssl rand -hex 32`); the reason if not.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() != 64 {
            return Err(format!("expected 64 hexadecimal digits (32 bytes), got {} characters; make one with `openssl rand -hex 32`", raw.len()));
        }
        let bytes = hex::decode(raw).map_err(|_| {
            "expected 64 hexadecimal digits (32 bytes); make one with `openssl rand -hex 32`".to_owned()
        })?;
        let mut key = [0; 32];
        key.copy_from_slice(&bytes);
        Ok(Self(key))
    }

    /// The key itself: call only where values are sealed or opened.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the service reads at start-up.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub listen: SocketAddr,
    /// The operations listener (`/metrics`, `/healthz`, `/readyz`, the admin
    /// API), apart from `listen`, which then faces GitHub and people alone.
    pub ops_listen: Option<SocketAddr>,
    /// The URL GitHub reaches this service on (`/setup` prefills its form
    /// with it; without it, with the request's Host).
    pub public_url: Option<url::Url>,
    /// Seals the App credentials `/setup` stores in the database.
    pub secret_key: Option<SecretKey>,
    /// Any of them verifies a delivery, so a secret can be rotated without downtime.
    pub webhook_secrets: Vec<Secret>,
    /// Bytes of request bodies that deliveries being received may hold together;
    /// beyond it intake answers 503 with `Retry-After`.
    pub webhook_buffer_limit: usize,
    pub admin_token: Option<Secret>,
    /// Bearer token of the read API (the admin token works there too).
    pub read_token: Option<Secret>,
    pub db_pool_size: usize,
    pub log_format: LogFormat,
    /// HTTP worker threads; each runs its own event loop.
    pub http_workers: usize,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// A check queued or in progress longer than this is stuck (read API, metrics).
    pub stuck_check_after: Duration,
    /// Serve the board and its event stream without a login (a private network).
    pub board_public: bool,
    /// Change feed streams (`GET /api/v1/events`) served at once; beyond it 503.
    pub change_feed_max_clients: usize,
    pub github: GitHubSettings,
    pub worker: WorkerSettings,
}

/// The worker and the scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSettings {
    /// Jobs run at once by one process.
    pub concurrency: usize,
    /// How often each active repository is swept (the backstop for lost webhooks).
    pub sweep_interval: Duration,
    /// How sweeps and backfills read GitHub in bulk.
    pub bulk_reads: BulkReads,
    /// Repositories surveyed by one GraphQL query in a sweep.
    pub sweep_batch_repositories: usize,
    /// How often the App's installations are listed (`None`: never); with
    /// token auth, how often `repositories` are registered.
    pub installation_sync_interval: Option<Duration>,
    /// With token auth (no App, so no installations to list): the
    /// repositories to keep, as `owner/name`.
    pub repositories: Vec<String>,
    /// A backfill stores PRs closed longer ago than this without their check
    /// runs (their checks no longer change, and reading them is most of a
    /// backfill's cost).
    pub backfill_checks_for_closed: Duration,
    /// How long a claimed job is held before another worker may take it over
    /// (renewed while the job runs; matters only when a worker dies).
    pub lease: Duration,
    /// How often an idle worker looks for due jobs when no notification came.
    pub poll_interval: Duration,
    /// The first retry's delay; each further attempt doubles it (with jitter).
    pub retry_delay: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: i32,
    /// How long raw webhook payloads are kept.
    pub payload_retention: Duration,
    /// How long change feed events are kept: a client resuming from an
    /// older one is told to reload (`reset`).
    pub change_feed_retention: Duration,
    /// How often deliveries GitHub failed to make are looked for in the App's
    /// deliveries API (`None`: never).
    pub delivery_recovery_interval: Option<Duration>,
    /// What is done with a delivery found missing.
    pub delivery_recovery: DeliveryRecovery,
    /// Listing pages (100 deliveries each) one recovery run reads at most;
    /// the next run goes on where it stopped.
    pub delivery_recovery_max_pages: usize,
    /// A repository with more missing deliveries than this is swept once
    /// instead of fetching each (`None`: always fetch).
    pub delivery_recovery_sweep_above: Option<usize>,
}

/// What gap recovery does with a delivery GitHub made (or failed to make)
/// that was never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryRecovery {
    /// Fetch its payload from the deliveries API and store it as intake
    /// would: one call per delivery, processed at once.
    Ingest,
    /// Ask GitHub to deliver it again (`POST …/attempts`): it arrives signed
    /// through intake, but only if the endpoint is reachable from GitHub.
    Redeliver,
}

/// How sweeps and backfills read GitHub in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkReads {
    /// Check runs of many commits per GraphQL query; sweeps survey many
    /// repositories per query and read in full only what changed.
    Graphql,
    /// REST only: one call per head's check runs, each repository swept on
    /// its own (what GitHub Enterprise versions without the GraphQL fields need).
    Rest,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            sweep_interval: Duration::from_secs(6 * 3600),
            bulk_reads: BulkReads::Graphql,
            sweep_batch_repositories: 50,
            installation_sync_interval: Some(Duration::from_secs(3600)),
            repositories: Vec::new(),
            backfill_checks_for_closed: Duration::from_secs(30 * 86_400),
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            retry_delay: Duration::from_secs(5),
            max_attempts: 10,
            payload_retention: Duration::from_secs(7 * 86_400),
            change_feed_retention: Duration::from_secs(86_400),
            delivery_recovery_interval: Some(Duration::from_secs(300)),
            delivery_recovery: DeliveryRecovery::Ingest,
            delivery_recovery_max_pages: 50,
            // A job folding more deliveries than this reads GitHub anyway
            // instead of using their payloads (worker::jobs).
            delivery_recovery_sweep_above: Some(20),
        }
    }
}

/// `90`, `90s`, `15m`, `6h`, `7d` or `250ms`.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => return Some(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_GITHUB_WEB_URL: &str = "https://github.com";

/// How prmonitor authenticates to GitHub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitHubAuth {
    /// A GitHub App: JWTs signed with the private key buy installation tokens.
    App { app_id: u64, private_key: Secret },
    /// One token for everything (a personal or fine-grained token).
    Token(Secret),
}

/// The GitHub API: where it is, how to authenticate, and how carefully to call it.
#[derive(Clone, Debug, PartialEq)]
pub struct GitHubSettings {
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise.
    pub api_url: url::Url,
    /// GitHub's web pages: `https://github.com`, or `https://HOST` for
    /// GitHub Enterprise Server (where `/setup` sends the App manifest).
    pub web_url: url::Url,
    /// The GraphQL endpoint when set on its own; see [`GitHubSettings::graphql_url`].
    pub graphql_url_override: Option<url::Url>,
    /// `None` until the App or a token is configured; nothing calls GitHub then.
    pub auth: Option<GitHubAuth>,
    pub request_timeout: Duration,
    /// Retries after the first attempt, for 5xx, timeouts and rate limits.
    pub retry_attempts: u32,
    /// The first retry's delay; each further retry doubles it (with jitter).
    pub retry_base_delay: Duration,
    /// Calls in flight at once, per installation.
    pub max_concurrent_requests: usize,
    /// ETag entries unused for this long are purged.
    pub cache_ttl: Duration,
    /// Share of the rate limit kept for webhook-driven work, in percent.
    pub rate_limit_reserve_percent: u32,
    /// Points a minute per REST endpoint and installation the client keeps to
    /// (a GET is 1): GitHub's secondary limit is 900, and counts 304s too.
    pub secondary_points_per_minute: u32,
    /// The window of `secondary_points_per_minute`: GitHub's minute (no
    /// setting; tests shorten it).
    pub secondary_window: Duration,
}

impl GitHubSettings {
    pub fn new(api_url: url::Url, auth: Option<GitHubAuth>) -> Self {
        Self {
            graphql_url_override: None,
            api_url,
            // A constant that parses.
            #[allow(clippy::expect_used)]
            web_url: url::Url::parse(DEFAULT_GITHUB_WEB_URL).expect("the default web URL is a URL"),
            auth,
            request_timeout: Duration::from_secs(30),
            retry_attempts: 3,
            retry_base_delay: Duration::from_secs(1),
            max_concurrent_requests: 10,
            // Longer than the sweep interval: a sweep of an unchanged repository
            // is then all 304s. (The seed's 300 s would make every sweep pay.)
            cache_ttl: Duration::from_secs(86_400),
            rate_limit_reserve_percent: 10,
            secondary_points_per_minute: 900,
            secondary_window: Duration::from_secs(60),
        }
    }

    /// `https://api.github.com/graphql`, or `https://HOST/api/graphql`:
    /// follows `api_url` unless set on its own.
    pub fn graphql_url(&self) -> url::Url {
        self.graphql_url_override
            .clone()
            .unwrap_or_else(|| crate::github::graphql::endpoint_for(&self.api_url))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{key} is required: {hint}")]
    Missing { key: &'static str, hint: &'static str },
    #[error("{key} is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// One setting: its environment variable and whether its value is secret.
struct Key {
    env: &'static str,
    secret: bool,
}

const KEYS: &[Key] = &[
    Key { env: "DATABASE_URL", secret: true },
    Key { env: "PRMONITOR_LISTEN", secret: false },
    Key { env: "PRMONITOR_OPS_LISTEN", secret: false },
    Key { env: "PRMONITOR_PUBLIC_URL", secret: false },
    Key { env: "PRMONITOR_WEBHOOK_SECRETS", secret: true },
    Key { env: "PRMONITOR_WEBHOOK_BUFFER_MIB", secret: false },
    Key { env: "PRMONITOR_ADMIN_TOKEN", secret: true },
    Key { env: "PRMONITOR_READ_TOKEN", secret: true },
    Key { env: "PRMONITOR_SECRET_KEY", secret: true },
    Key { env: "PRMONITOR_STUCK_CHECK_AFTER", secret: false },
    Key { env: "PRMONITOR_BOARD_PUBLIC", secret: false },
    Key { env: "PRMONITOR_DB_POOL_SIZE", secret: false },
    Key { env: "PRMONITOR_LOG_FORMAT", secret: false },
    Key { env: "PRMONITOR_HTTP_WORKERS", secret: false },
    Key { env: "PRMONITOR_SHUTDOWN_TIMEOUT_SECS", secret: false },
    Key { env: "PRMONITOR_WORKER_CONCURRENCY", secret: false },
    Key { env: "PRMONITOR_SWEEP_INTERVAL", secret: false },
    Key { env: "PRMONITOR_BULK_READS", secret: false },
    Key { env: "PRMONITOR_SWEEP_BATCH_REPOSITORIES", secret: false },
    Key { env: "PRMONITOR_BACKFILL_CHECKS_FOR_CLOSED", secret: false },
    Key { env: "PRMONITOR_INSTALLATION_SYNC_INTERVAL", secret: false },
    Key { env: "PRMONITOR_REPOSITORIES", secret: false },
    Key { env: "PRMONITOR_DELIVERY_RECOVERY_INTERVAL", secret: false },
    Key { env: "PRMONITOR_DELIVERY_RECOVERY", secret: false },
    Key { env: "PRMONITOR_DELIVERY_RECOVERY_MAX_PAGES", secret: false },
    Key { env: "PRMONITOR_DELIVERY_RECOVERY_SWEEP_ABOVE", secret: false },
    Key { env: "PRMONITOR_JOB_LEASE", secret: false },
    Key { env: "PRMONITOR_JOB_POLL_INTERVAL", secret: false },
    Key { env: "PRMONITOR_JOB_RETRY_DELAY", secret: false },
    Key { env: "PRMONITOR_JOB_MAX_ATTEMPTS", secret: false },
    Key { env: "PRMONITOR_PAYLOAD_RETENTION", secret: false },
    Key { env: "PRMONITOR_CHANGE_FEED_RETENTION", secret: false },
    Key { env: "PRMONITOR_CHANGE_FEED_MAX_CLIENTS", secret: false },
    Key { env: "PRMONITOR_GITHUB_API_URL", secret: false },
    Key { env: "PRMONITOR_GITHUB_GRAPHQL_URL", secret: false },
    Key { env: "PRMONITOR_GITHUB_WEB_URL", secret: false },
    Key { env: "PRMONITOR_GITHUB_APP_ID", secret: false },
    Key { env: "PRMONITOR_GITHUB_PRIVATE_KEY", secret: true },
    Key { env: "PRMONITOR_GITHUB_PRIVATE_KEY_FILE", secret: false },
    Key { env: "PRMONITOR_GITHUB_TOKEN", secret: true },
    Key { env: "PRMONITOR_GITHUB_TIMEOUT_SECS", secret: false },
    Key { env: "PRMONITOR_GITHUB_RETRY_ATTEMPTS", secret: false },
    Key { env: "PRMONITOR_GITHUB_MAX_CONCURRENT_REQUESTS", secret: false },
    Key { env: "PRMONITOR_GITHUB_CACHE_TTL_SECS", secret: false },
    Key { env: "PRMONITOR_GITHUB_RATE_LIMIT_RESERVE_PERCENT", secret: false },
    Key { env: "PRMONITOR_GITHUB_SECONDARY_POINTS_PER_MINUTE", secret: false },
];

/// The file key of an environment variable: `PRMONITOR_LISTEN` → `listen`.
fn file_key(env: &str) -> String {
    env.strip_prefix("PRMONITOR_").unwrap_or(env).to_ascii_lowercase()
}

/// A raw value before parsing: a string, or (from the file) a list of strings.
#[derive(Clone, Debug)]
enum Raw {
    One(String),
    List(Vec<String>),
}

/// Raw values by environment-variable name, the environment over the file.
struct RawSettings(BTreeMap<&'static str, Raw>);

impl RawSettings {
    fn collect(file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            values = read_file(path)?;
        }
        for key in KEYS {
            if let Some(value) = env(key.env) {
                values.insert(key.env, Raw::One(value));
            }
        }
        Ok(Self(values))
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Raw::One(value)) => Ok(Some(value.clone())),
            Some(Raw::List(_)) => {
                Err(ConfigError::Invalid { key, reason: "expected a single value, not a list".into() })
            }
        }
    }

    fn list(&self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Raw::One(value)) => Ok(Some(value.split(',').map(|s| s.trim().to_owned()).collect())),
            Some(Raw::List(values)) => Ok(Some(values.clone())),
        }
    }

    fn number<T>(
        &self,
        key: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.string(key)? else {
            return Ok(default);
        };
        let invalid = || ConfigError::Invalid {
            key,
            reason: format!(
                "expected a whole number from {} to {}, got '{}'",
                range.start(),
                range.end(),
                raw
            ),
        };
        let value: T = raw.trim().parse().map_err(|_| invalid())?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(invalid())
        }
    }
}

fn read_file(path: &Path) -> Result<BTreeMap<&'static str, Raw>, ConfigError> {
    let file_error = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.message().to_owned()))?;
    let mut values = BTreeMap::new();
    for (name, value) in table {
        let key = KEYS
            .iter()
            .find(|k| file_key(k.env) == name)
            .ok_or_else(|| file_error(format!("unknown key '{name}'")))?;
        let raw = match value {
            toml::Value::String(s) => Raw::One(s),
            toml::Value::Integer(i) => Raw::One(i.to_string()),
            toml::Value::Array(items) => Raw::List(
                items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s),
                        _ => Err(file_error(format!("'{name}' must be a list of strings"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ if key.secret => return Err(file_error(format!("'{name}' must be a string"))),
            other => {
                return Err(file_error(format!("'{name}' has an unsupported {} value", other.type_str())))
            }
        };
        values.insert(key.env, raw);
    }
    Ok(values)
}

impl Settings {
    /// Reads the process environment and, when given, the TOML file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, &|key| std::env::var(key).ok())
    }

    /// As [`Settings::load`], with the environment given as a function (for tests).
    pub fn load_from(file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw = RawSettings::collect(file, env)?;

        let database_url = raw.string("DATABASE_URL")?.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let database_url = DatabaseUrl::parse(&database_url)
            .map_err(|reason| ConfigError::Invalid { key: "DATABASE_URL", reason })?;

        let listen = raw.string("PRMONITOR_LISTEN")?.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = socket_address("PRMONITOR_LISTEN", &listen, "0.0.0.0:8080")?;
        let ops_listen = match raw.string("PRMONITOR_OPS_LISTEN")? {
            None => None,
            Some(text) => {
                let address = socket_address("PRMONITOR_OPS_LISTEN", &text, "127.0.0.1:9464")?;
                // Port 0 picks a free port for each, so two zeros never collide.
                if address == listen && address.port() != 0 {
                    return Err(ConfigError::Invalid {
                        key: "PRMONITOR_OPS_LISTEN",
                        reason: format!("is PRMONITOR_LISTEN's address ({listen}); give the operations listener its own port, or unset it to serve everything on one"),
                    });
                }
                Some(address)
            }
        };

        let webhook_secrets = match raw.list("PRMONITOR_WEBHOOK_SECRETS")? {
            None => Vec::new(),
            Some(list) => {
                if let Some(position) = list.iter().position(|s| s.is_empty()) {
                    return Err(ConfigError::Invalid {
                        key: "PRMONITOR_WEBHOOK_SECRETS",
                        reason: format!("entry {} of the comma-separated list is empty", position + 1),
                    });
                }
                list.into_iter().map(Secret::new).collect()
            }
        };

        let admin_token =
            bearer_token(&raw, "PRMONITOR_ADMIN_TOKEN", "unset it to disable the admin endpoints")?;
        let read_token = bearer_token(&raw, "PRMONITOR_READ_TOKEN", "unset it to use only the admin token")?;

        let log_format = match raw.string("PRMONITOR_LOG_FORMAT")?.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "PRMONITOR_LOG_FORMAT",
                    reason: format!("expected 'text' or 'json', got '{other}'"),
                })
            }
        };

        let board_public = match raw.string("PRMONITOR_BOARD_PUBLIC")?.as_deref().map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "PRMONITOR_BOARD_PUBLIC",
                    reason: format!("expected 'true' or 'false', got '{other}'"),
                })
            }
        };

        let public_url = match raw.string("PRMONITOR_PUBLIC_URL")? {
            None => None,
            Some(text) => Some(
                parse_api_url(&text)
                    .map_err(|reason| ConfigError::Invalid { key: "PRMONITOR_PUBLIC_URL", reason })?,
            ),
        };
        let secret_key = match raw.string("PRMONITOR_SECRET_KEY")? {
            None => None,
            // The reason never repeats the value.
            Some(text) => Some(
                SecretKey::parse(&text)
                    .map_err(|reason| ConfigError::Invalid { key: "PRMONITOR_SECRET_KEY", reason })?,
            ),
        };

        let default_workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        Ok(Self {
            database_url,
            listen,
            ops_listen,
            public_url,
            secret_key,
            webhook_secrets,
            // At least one largest delivery (25 MiB) must fit.
            webhook_buffer_limit: raw.number(
                "PRMONITOR_WEBHOOK_BUFFER_MIB",
                DEFAULT_WEBHOOK_BUFFER_MIB,
                25..=65_536,
            )? * 1024
                * 1024,
            admin_token,
            read_token,
            stuck_check_after: duration(
                &raw,
                "PRMONITOR_STUCK_CHECK_AFTER",
                DEFAULT_STUCK_CHECK_AFTER,
                Duration::from_secs(1),
            )?,
            board_public,
            db_pool_size: raw.number("PRMONITOR_DB_POOL_SIZE", DEFAULT_DB_POOL_SIZE, 1..=1000)?,
            log_format,
            http_workers: raw.number("PRMONITOR_HTTP_WORKERS", default_workers, 1..=256)?,
            shutdown_timeout: Duration::from_secs(raw.number(
                "PRMONITOR_SHUTDOWN_TIMEOUT_SECS",
                DEFAULT_SHUTDOWN_TIMEOUT_SECS,
                0..=3600,
            )?),
            change_feed_max_clients: raw.number(
                "PRMONITOR_CHANGE_FEED_MAX_CLIENTS",
                DEFAULT_CHANGE_FEED_MAX_CLIENTS,
                1..=100_000,
            )?,
            github: github_settings(&raw)?,
            worker: worker_settings(&raw)?,
        })
    }

    /// The worker reads GitHub: it needs an App or a token in the settings,
    /// or the key that opens the App `/setup` stored in the database.
    pub fn require_github_or_stored_app(&self) -> Result<(), ConfigError> {
        if self.github.auth.is_none() && self.secret_key.is_none() {
            return Err(ConfigError::Missing {
                key: "PRMONITOR_GITHUB_APP_ID",
                hint: "the worker reads GitHub: set PRMONITOR_GITHUB_APP_ID with PRMONITOR_GITHUB_PRIVATE_KEY(_FILE), \
                       or PRMONITOR_GITHUB_TOKEN, or PRMONITOR_SECRET_KEY to use the App created through /setup",
            });
        }
        Ok(())
    }

    /// `serve` cannot verify deliveries without at least one secret.
    pub fn require_webhook_secrets(&self) -> Result<(), ConfigError> {
        if self.webhook_secrets.is_empty() {
            return Err(ConfigError::Missing {
                key: "PRMONITOR_WEBHOOK_SECRETS",
                hint: "set it to the webhook secret of the GitHub App (comma-separated to accept several during a rotation)",
            });
        }
        Ok(())
    }
}

fn socket_address(key: &'static str, text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    text.trim().parse().map_err(|_| ConfigError::Invalid {
        key,
        reason: format!("expected an address and port such as {example}, got '{text}'"),
    })
}

/// A bearer token, trimmed: a header carries no surrounding white space
/// (RFC 9110 strips it), so a token kept with a newline from its file could
/// never match. Inner white space cannot be sent in a bearer token either.
fn bearer_token(
    raw: &RawSettings,
    key: &'static str,
    unset_hint: &str,
) -> Result<Option<Secret>, ConfigError> {
    let Some(token) = raw.string(key)? else { return Ok(None) };
    let token = token.trim();
    if token.is_empty() {
        return Err(ConfigError::Invalid { key, reason: format!("is empty ({unset_hint})") });
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Invalid {
            key,
            reason: "contains white space or control characters, which a bearer token cannot carry".into(),
        });
    }
    Ok(Some(Secret::new(token)))
}

/// Setting `key` as a duration of at least `min`, `default` when unset.
fn duration(
    raw: &RawSettings,
    key: &'static str,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    match raw.string(key)? {
        None => Ok(default),
        Some(text) => parse_duration(&text).filter(|d| *d >= min).ok_or_else(|| ConfigError::Invalid {
            key,
            reason: format!(
                "expected a duration of at least {min:?} such as 90s, 15m, 6h or 7d, got '{text}'"
            ),
        }),
    }
}

fn worker_settings(raw: &RawSettings) -> Result<WorkerSettings, ConfigError> {
    let defaults = WorkerSettings::default();
    let duration = |key: &'static str, default: Duration, min: Duration| duration(raw, key, default, min);
    Ok(WorkerSettings {
        concurrency: raw.number("PRMONITOR_WORKER_CONCURRENCY", defaults.concurrency, 1..=256)?,
        sweep_interval: duration(
            "PRMONITOR_SWEEP_INTERVAL",
            defaults.sweep_interval,
            Duration::from_secs(1),
        )?,
        bulk_reads: match raw.string("PRMONITOR_BULK_READS")?.as_deref().map(str::trim) {
            None => defaults.bulk_reads,
            Some("graphql") => BulkReads::Graphql,
            Some("rest") => BulkReads::Rest,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "PRMONITOR_BULK_READS",
                    reason: format!("expected 'graphql' or 'rest', got '{other}'"),
                })
            }
        },
        sweep_batch_repositories: raw.number(
            "PRMONITOR_SWEEP_BATCH_REPOSITORIES",
            defaults.sweep_batch_repositories,
            1..=100,
        )?,
        backfill_checks_for_closed: duration(
            "PRMONITOR_BACKFILL_CHECKS_FOR_CLOSED",
            defaults.backfill_checks_for_closed,
            Duration::ZERO,
        )?,
        // `0s` turns it off.
        installation_sync_interval: Some(duration(
            "PRMONITOR_INSTALLATION_SYNC_INTERVAL",
            defaults.installation_sync_interval.unwrap_or(Duration::ZERO),
            Duration::ZERO,
        )?)
        .filter(|interval| !interval.is_zero()),
        repositories: repositories(raw)?,
        lease: duration("PRMONITOR_JOB_LEASE", defaults.lease, Duration::from_secs(1))?,
        poll_interval: duration(
            "PRMONITOR_JOB_POLL_INTERVAL",
            defaults.poll_interval,
            Duration::from_millis(10),
        )?,
        retry_delay: duration("PRMONITOR_JOB_RETRY_DELAY", defaults.retry_delay, Duration::ZERO)?,
        max_attempts: raw.number("PRMONITOR_JOB_MAX_ATTEMPTS", defaults.max_attempts, 1..=100)?,
        payload_retention: duration(
            "PRMONITOR_PAYLOAD_RETENTION",
            defaults.payload_retention,
            Duration::ZERO,
        )?,
        // At least a minute: a client reconnecting after a blip must find
        // the events it missed.
        change_feed_retention: duration(
            "PRMONITOR_CHANGE_FEED_RETENTION",
            defaults.change_feed_retention,
            Duration::from_secs(60),
        )?,
        // `0s` turns it off.
        delivery_recovery_interval: Some(duration(
            "PRMONITOR_DELIVERY_RECOVERY_INTERVAL",
            defaults.delivery_recovery_interval.unwrap_or(Duration::ZERO),
            Duration::ZERO,
        )?)
        .filter(|interval| !interval.is_zero()),
        delivery_recovery: match raw.string("PRMONITOR_DELIVERY_RECOVERY")?.as_deref().map(str::trim) {
            None => defaults.delivery_recovery,
            Some("ingest") => DeliveryRecovery::Ingest,
            Some("redeliver") => DeliveryRecovery::Redeliver,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "PRMONITOR_DELIVERY_RECOVERY",
                    reason: format!("expected 'ingest' or 'redeliver', got '{other}'"),
                })
            }
        },
        delivery_recovery_max_pages: raw.number(
            "PRMONITOR_DELIVERY_RECOVERY_MAX_PAGES",
            defaults.delivery_recovery_max_pages,
            1..=1000,
        )?,
        // `0` turns it off: every missing delivery is fetched.
        delivery_recovery_sweep_above: Some(raw.number(
            "PRMONITOR_DELIVERY_RECOVERY_SWEEP_ABOVE",
            defaults.delivery_recovery_sweep_above.unwrap_or(0),
            0..=100_000,
        )?)
        .filter(|n| *n > 0),
    })
}

/// `PRMONITOR_REPOSITORIES`: `owner/name` entries, comma-separated or a list.
fn repositories(raw: &RawSettings) -> Result<Vec<String>, ConfigError> {
    let list = raw.list("PRMONITOR_REPOSITORIES")?.unwrap_or_default();
    let mut repositories = Vec::new();
    for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if !crate::ids::is_repository_full_name(entry) {
            return Err(ConfigError::Invalid {
                key: "PRMONITOR_REPOSITORIES",
                reason: format!("'{entry}' is not an owner/name repository"),
            });
        }
        repositories.push(entry.to_owned());
    }
    repositories.sort();
    repositories.dedup();
    Ok(repositories)
}

fn github_settings(raw: &RawSettings) -> Result<GitHubSettings, ConfigError> {
    let api_url =
        raw.string("PRMONITOR_GITHUB_API_URL")?.unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_owned());
    let api_url = parse_api_url(&api_url)
        .map_err(|reason| ConfigError::Invalid { key: "PRMONITOR_GITHUB_API_URL", reason })?;

    let app_id = raw.string("PRMONITOR_GITHUB_APP_ID")?;
    let inline_key = raw.string("PRMONITOR_GITHUB_PRIVATE_KEY")?.filter(|k| !k.trim().is_empty());
    let key_file = raw.string("PRMONITOR_GITHUB_PRIVATE_KEY_FILE")?.filter(|k| !k.trim().is_empty());
    let token = raw.string("PRMONITOR_GITHUB_TOKEN")?.filter(|t| !t.trim().is_empty());
    let auth = match (app_id, token) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "PRMONITOR_GITHUB_TOKEN",
                reason:
                    "set either PRMONITOR_GITHUB_APP_ID (a GitHub App) or PRMONITOR_GITHUB_TOKEN, not both"
                        .into(),
            })
        }
        (None, Some(token)) => Some(GitHubAuth::Token(Secret::new(token.trim()))),
        (Some(app_id), None) => {
            let app_id = app_id.trim().parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                ConfigError::Invalid {
                    key: "PRMONITOR_GITHUB_APP_ID",
                    reason: format!("expected the App's numeric id, got '{app_id}'"),
                }
            })?;
            let pem = match (inline_key, key_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid {
                        key: "PRMONITOR_GITHUB_PRIVATE_KEY_FILE",
                        reason: "set either PRMONITOR_GITHUB_PRIVATE_KEY or PRMONITOR_GITHUB_PRIVATE_KEY_FILE, not both"
                            .into(),
                    })
                }
                (Some(pem), None) => pem,
                (None, Some(path)) => std::fs::read_to_string(path.trim()).map_err(|e| ConfigError::Invalid {
                    key: "PRMONITOR_GITHUB_PRIVATE_KEY_FILE",
                    reason: format!("cannot read {}: {e}", path.trim()),
                })?,
                (None, None) => {
                    return Err(ConfigError::Missing {
                        key: "PRMONITOR_GITHUB_PRIVATE_KEY",
                        hint: "a GitHub App needs its private key (PEM), inline or via PRMONITOR_GITHUB_PRIVATE_KEY_FILE",
                    })
                }
            };
            if !pem.contains("-----BEGIN") {
                return Err(ConfigError::Invalid {
                    key: "PRMONITOR_GITHUB_PRIVATE_KEY",
                    reason: "is not a PEM private key (no -----BEGIN line)".into(),
                });
            }
            Some(GitHubAuth::App { app_id, private_key: Secret::new(pem) })
        }
        (None, None) => None,
    };

    // The defaults are `GitHubSettings::new`'s, and only there.
    let mut github = GitHubSettings::new(api_url, auth);
    if let Some(raw_url) = raw.string("PRMONITOR_GITHUB_GRAPHQL_URL")? {
        github.graphql_url_override = Some(
            parse_api_url(&raw_url)
                .map_err(|reason| ConfigError::Invalid { key: "PRMONITOR_GITHUB_GRAPHQL_URL", reason })?,
        );
    }
    if let Some(raw_url) = raw.string("PRMONITOR_GITHUB_WEB_URL")? {
        github.web_url = parse_api_url(&raw_url)
            .map_err(|reason| ConfigError::Invalid { key: "PRMONITOR_GITHUB_WEB_URL", reason })?;
    }
    github.request_timeout = Duration::from_secs(raw.number(
        "PRMONITOR_GITHUB_TIMEOUT_SECS",
        github.request_timeout.as_secs(),
        1..=600,
    )?);
    github.retry_attempts = raw.number("PRMONITOR_GITHUB_RETRY_ATTEMPTS", github.retry_attempts, 0..=20)?;
    github.max_concurrent_requests =
        raw.number("PRMONITOR_GITHUB_MAX_CONCURRENT_REQUESTS", github.max_concurrent_requests, 1..=100)?;
    github.cache_ttl = Duration::from_secs(raw.number(
        "PRMONITOR_GITHUB_CACHE_TTL_SECS",
        github.cache_ttl.as_secs(),
        1..=30 * 86_400,
    )?);
    github.rate_limit_reserve_percent =
        raw.number("PRMONITOR_GITHUB_RATE_LIMIT_RESERVE_PERCENT", github.rate_limit_reserve_percent, 0..=90)?;
    // Above 900 only for a GitHub (Enterprise Server) that allows more, or a simulator.
    github.secondary_points_per_minute = raw.number(
        "PRMONITOR_GITHUB_SECONDARY_POINTS_PER_MINUTE",
        github.secondary_points_per_minute,
        1..=1_000_000,
    )?;
    Ok(github)
}

/// An http(s) base URL without a trailing slash in its path.
pub fn parse_api_url(raw: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http(s) URL such as https://api.github.com or https://HOST/api/v3".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".into());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load_from(None, &|key| env.get(key).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let settings = load(&[]).expect("defaults are valid");
        assert_eq!(settings.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert!(settings.webhook_secrets.is_empty());
        assert_eq!(settings.db_pool_size, DEFAULT_DB_POOL_SIZE);
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!(
            settings.require_webhook_secrets().unwrap_err().to_string().split(' ').next(),
            Some("PRMONITOR_WEBHOOK_SECRETS")
        );
    }

    /// The README's settings table: (variable, default cell) per row.
    fn readme_settings_table() -> Vec<(String, String)> {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
        let section = readme.split("\n## Settings\n").nth(1).expect("a Settings section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
                let variable = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((variable.to_owned(), cells.get(1)?.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_documents_every_setting_with_its_real_default() {
        let table = readme_settings_table();
        let documented: Vec<&str> = table.iter().map(|(variable, _)| variable.as_str()).collect();
        let known: Vec<&str> = KEYS.iter().map(|key| key.env).collect();
        assert_eq!(documented, known, "the README's table lists exactly the settings, in the same order");
        let defaults = format!("{:?}", load(&[]).expect("an empty environment is valid"));
        let mut literal_defaults = 0;
        for (variable, default) in &table {
            // A default written as one literal must be what an unset variable gives:
            // setting the variable to it changes nothing.
            let Some(literal) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
                continue;
            };
            literal_defaults += 1;
            let explicit =
                load(&[(variable, literal)]).unwrap_or_else(|e| panic!("{variable}={literal}: {e}"));
            assert_eq!(
                format!("{explicit:?}"),
                defaults,
                "{variable}: the README says the default is {literal}"
            );
        }
        assert!(literal_defaults >= 18, "only {literal_defaults} defaults were compared");
    }

    #[test]
    fn the_client_keeps_to_githubs_secondary_limit_unless_told_otherwise() {
        let github = load(&[]).expect("defaults").github;
        assert_eq!(
            (github.secondary_points_per_minute, github.secondary_window),
            (900, Duration::from_secs(60))
        );
        let raised = load(&[("PRMONITOR_GITHUB_SECONDARY_POINTS_PER_MINUTE", "5000")]).expect("valid").github;
        assert_eq!(raised.secondary_points_per_minute, 5000);
    }

    #[test]
    fn tokens_are_trimmed_and_inner_white_space_is_refused() {
        let settings =
            load(&[("PRMONITOR_ADMIN_TOKEN", " admin-token\n"), ("PRMONITOR_READ_TOKEN", "\tread-token ")])
                .expect("valid");
        assert_eq!(settings.admin_token.as_ref().map(Secret::expose), Some("admin-token"));
        assert_eq!(settings.read_token.as_ref().map(Secret::expose), Some("read-token"));
        for key in ["PRMONITOR_ADMIN_TOKEN", "PRMONITOR_READ_TOKEN"] {
            let err = load(&[(key, "two words")]).expect_err(key);
            assert!(err.to_string().starts_with(key), "{err}");
            assert!(!err.to_string().contains("two words"), "the token is not echoed: {err}");
        }
    }

    #[test]
    fn webhook_secrets_are_split_on_commas_and_trimmed() {
        let settings = load(&[("PRMONITOR_WEBHOOK_SECRETS", "old-secret, new secret ")]).expect("valid");
        let secrets: Vec<&str> = settings.webhook_secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["old-secret", "new secret"]);
    }

    #[test]
    fn the_operations_listener_is_off_unless_set_and_never_on_the_public_port() {
        assert_eq!(load(&[]).expect("defaults").ops_listen, None);
        let settings = load(&[("PRMONITOR_OPS_LISTEN", " 127.0.0.1:9464 ")]).expect("valid");
        assert_eq!(settings.ops_listen.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9464"));
        let same = load(&[("PRMONITOR_LISTEN", "0.0.0.0:9000"), ("PRMONITOR_OPS_LISTEN", "0.0.0.0:9000")]);
        assert!(same.unwrap_err().to_string().contains("its own port"));
        // Two port-0 listeners each get a free port of their own.
        let zeros = load(&[("PRMONITOR_LISTEN", "127.0.0.1:0"), ("PRMONITOR_OPS_LISTEN", "127.0.0.1:0")]);
        assert!(zeros.is_ok());
    }

    #[test]
    fn an_empty_secret_entry_is_rejected_without_echoing_the_others() {
        let err = load(&[("PRMONITOR_WEBHOOK_SECRETS", "hunter2,,x")]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("PRMONITOR_WEBHOOK_SECRETS"), "{text}");
        assert!(text.contains("entry 2"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            ("PRMONITOR_DB_POOL_SIZE", "ten"),
            ("PRMONITOR_DB_POOL_SIZE", "0"),
            ("PRMONITOR_LISTEN", "localhost"),
            ("PRMONITOR_OPS_LISTEN", "9464"),
            ("PRMONITOR_OPS_LISTEN", "127.0.0.1:8080"),
            ("PRMONITOR_LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x/y"),
            ("DATABASE_URL", "postgres://127.0.0.1:5432"),
            ("PRMONITOR_ADMIN_TOKEN", " "),
            ("PRMONITOR_SHUTDOWN_TIMEOUT_SECS", "-1"),
            ("PRMONITOR_GITHUB_SECONDARY_POINTS_PER_MINUTE", "0"),
            ("PRMONITOR_GITHUB_SECONDARY_POINTS_PER_MINUTE", "a lot"),
        ];
        for (key, value) in cases {
            let err = load(&[(key, value)]).expect_err(key);
            assert!(err.to_string().starts_with(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://app:pg-password@db:5432/prmonitor"),
            ("PRMONITOR_WEBHOOK_SECRETS", "webhook-secret"),
            ("PRMONITOR_ADMIN_TOKEN", "admin-token"),
        ])
        .expect("valid");
        let debug = format!("{settings:?}");
        for secret in ["pg-password", "webhook-secret", "admin-token"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert!(debug.contains("postgres://app:redacted@db:5432/prmonitor"), "{debug}");
    }

    #[test]
    fn a_password_in_the_query_is_redacted_too() {
        for raw in [
            "postgres://app@db:5432/prmonitor?password=pg-password",
            "postgres://app@db:5432/prmonitor?sslmode=disable&PassWord=pg-password&application_name=x",
            "postgres://app:pg-password@db:5432/prmonitor?password=pg-password",
        ] {
            let url = DatabaseUrl::parse(raw).expect("valid");
            for shown in [url.redacted(), url.to_string(), format!("{url:?}")] {
                assert!(!shown.contains("pg-password"), "{shown}");
                assert!(shown.contains("redacted"), "{shown}");
            }
        }
        let plain = DatabaseUrl::parse("postgres://app@db/prmonitor?sslmode=disable").expect("valid");
        assert_eq!(plain.redacted(), "postgres://app@db/prmonitor?sslmode=disable");
    }

    #[test]
    fn github_auth_is_an_app_or_a_token_never_both() {
        let settings = load(&[]).expect("valid");
        assert_eq!(settings.github.auth, None);
        assert_eq!(settings.github.api_url.as_str(), "https://api.github.com/");

        let token = load(&[("PRMONITOR_GITHUB_TOKEN", "ghp_x")]).expect("valid");
        assert_eq!(token.github.auth, Some(GitHubAuth::Token(Secret::new("ghp_x"))));

        let pem = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n";
        let app =
            load(&[("PRMONITOR_GITHUB_APP_ID", "42"), ("PRMONITOR_GITHUB_PRIVATE_KEY", pem)]).expect("valid");
        assert!(matches!(app.github.auth, Some(GitHubAuth::App { app_id: 42, .. })));

        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("PRMONITOR_GITHUB_APP_ID", "42"), ("PRMONITOR_GITHUB_TOKEN", "t")], "PRMONITOR_GITHUB_TOKEN"),
            (&[("PRMONITOR_GITHUB_APP_ID", "42")], "PRMONITOR_GITHUB_PRIVATE_KEY"),
            (
                &[("PRMONITOR_GITHUB_APP_ID", "x"), ("PRMONITOR_GITHUB_PRIVATE_KEY", pem)],
                "PRMONITOR_GITHUB_APP_ID",
            ),
            (
                &[("PRMONITOR_GITHUB_APP_ID", "1"), ("PRMONITOR_GITHUB_PRIVATE_KEY", "secret-ish")],
                "PRMONITOR_GITHUB_PRIVATE_KEY",
            ),
            (
                &[
                    ("PRMONITOR_GITHUB_APP_ID", "1"),
                    ("PRMONITOR_GITHUB_PRIVATE_KEY_FILE", "/nonexistent/key.pem"),
                ],
                "PRMONITOR_GITHUB_PRIVATE_KEY_FILE",
            ),
        ];
        for (env, key) in cases {
            let err = load(env).expect_err(key);
            assert!(err.to_string().starts_with(key), "{err}");
            assert!(!err.to_string().contains("secret-ish"), "{err}");
        }
    }

    #[test]
    fn the_secret_key_is_64_hex_digits_and_never_shown() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let settings = load(&[("PRMONITOR_SECRET_KEY", hex_key)]).expect("valid");
        assert_eq!(settings.secret_key.as_ref().map(|k| k.expose()[1]), Some(0x11));
        assert!(!format!("{settings:?}").contains(hex_key), "redacted in Debug");
        for bad in ["short", &hex_key.replace('0', "g"), &format!("{hex_key}00")] {
            let err = load(&[("PRMONITOR_SECRET_KEY", bad)]).expect_err(bad).to_string();
            assert!(err.starts_with("PRMONITOR_SECRET_KEY") && err.contains("openssl rand -hex 32"), "{err}");
            assert!(!err.contains(bad), "the value is not echoed: {err}");
        }
    }

    #[test]
    fn the_public_and_web_urls_are_http_urls() {
        let settings = load(&[
            ("PRMONITOR_PUBLIC_URL", "https://prmonitor.example.com/"),
            ("PRMONITOR_GITHUB_WEB_URL", "https://ghe.example.com"),
        ])
        .expect("valid");
        assert_eq!(settings.public_url.map(|u| u.to_string()), Some("https://prmonitor.example.com/".into()));
        assert_eq!(settings.github.web_url.as_str(), "https://ghe.example.com/");
        assert_eq!(load(&[]).expect("defaults").github.web_url.as_str(), "https://github.com/");
        for key in ["PRMONITOR_PUBLIC_URL", "PRMONITOR_GITHUB_WEB_URL"] {
            let err = load(&[(key, "ftp://x")]).expect_err(key);
            assert!(err.to_string().starts_with(key), "{err}");
        }
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("6h"), Some(Duration::from_secs(21_600)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        for bad in ["", "h", "6 hours", "-1s", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let settings = load(&[("PRMONITOR_SWEEP_INTERVAL", "30m")]).expect("valid");
        assert_eq!(settings.worker.sweep_interval, Duration::from_secs(1800));
        let err = load(&[("PRMONITOR_JOB_LEASE", "soon")]).unwrap_err();
        assert!(err.to_string().starts_with("PRMONITOR_JOB_LEASE"), "{err}");
    }

    #[test]
    fn repositories_for_token_auth_are_owner_name_pairs() {
        let settings = load(&[("PRMONITOR_REPOSITORIES", "octo/b, octo/a,octo/b")]).expect("valid");
        assert_eq!(settings.worker.repositories, ["octo/a", "octo/b"]);
        for bad in ["octo", "octo/a/b", "../x", "octo/a?x"] {
            assert!(load(&[("PRMONITOR_REPOSITORIES", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn enterprise_api_urls_keep_their_path() {
        let settings =
            load(&[("PRMONITOR_GITHUB_API_URL", "https://ghe.example.com/api/v3/")]).expect("valid");
        assert_eq!(settings.github.api_url.as_str(), "https://ghe.example.com/api/v3");
        assert_eq!(settings.github.graphql_url().as_str(), "https://ghe.example.com/api/graphql");
        let own = load(&[
            ("PRMONITOR_GITHUB_API_URL", "https://ghe.example.com/api/v3"),
            ("PRMONITOR_GITHUB_GRAPHQL_URL", "https://gql.example.com/graphql"),
        ])
        .expect("valid");
        assert_eq!(own.github.graphql_url().as_str(), "https://gql.example.com/graphql");
        assert!(load(&[("PRMONITOR_GITHUB_GRAPHQL_URL", "ftp://x")]).is_err());
        for bad in ["ftp://x", "not a url", "https://x/api?y=1"] {
            assert!(load(&[("PRMONITOR_GITHUB_API_URL", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_file_sets_keys_and_the_environment_overrides_them() {
        let dir = std::env::temp_dir().join(format!("prmonitor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("prmonitor.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\ndb_pool_size = 4\nwebhook_secrets = [\"a,b\", \"c\"]\n",
        )
        .expect("write");
        let env = |key: &str| (key == "PRMONITOR_DB_POOL_SIZE").then(|| "7".to_owned());
        let settings = Settings::load_from(Some(&path), &env).expect("valid");
        assert_eq!(settings.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.db_pool_size, 7);
        let secrets: Vec<&str> = settings.webhook_secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["a,b", "c"], "a list in the file may hold commas");

        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").expect("write");
        let err = Settings::load_from(Some(&path), &|_| None).unwrap_err();
        assert!(err.to_string().contains("unknown key 'lisen'"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
