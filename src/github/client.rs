//! The one way prmonitor calls GitHub: octocrab for transport and App auth,
//! with this module's own conditional requests, pacing, retries and counting.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use http_body_util::BodyExt as _;
use octocrab::models::{AppId, InstallationId as OctocrabInstallationId};
use octocrab::Octocrab;
use serde::de::DeserializeOwned;

use super::cache::{self, Validator};
use super::graphql;
use super::link;
use super::models::{
    CheckRun, CommitStatus, HookDeliveryDetail, HookDeliveryPage, Installation, PullRequest, Repository,
    RequiredStatusChecks, Wrapped,
};
use super::pacing::{Budget, EndpointPace, Pacer, Purpose};
use super::policy::{self, LimitHeaders, Verdict};
use crate::config::{GitHubAuth, GitHubSettings};
use crate::db::DbPool;
use crate::ids::{InstallationId, PullRequestNumber};
use crate::jitter::Jitter;

/// GitHub's largest page.
const PER_PAGE: u32 = 100;
/// Lane and cache key for calls made with a plain token (no installation).
const TOKEN_KEY: i64 = 0;
/// Lane key for calls made as the App itself (JWT).
const APP_KEY: i64 = -1;
/// GitHub's secondary limit of GraphQL points a minute (a query is 1).
const GRAPHQL_SECONDARY_POINTS_PER_MINUTE: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("GitHub did not answer successfully after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("GitHub's answer could not be read: {0}")]
    Decode(String),
    #[error("GitHub authentication failed: {0}")]
    Auth(String),
    #[error("GitHub client configuration: {0}")]
    Config(String),
    #[error("the HTTP cache is unavailable: {0}")]
    Cache(String),
}

/// The result of a conditional GET of one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<T> {
    /// New data; store it, then save the validator in the same transaction.
    Fresh { data: T, validator: Option<Validator> },
    /// 304: what was stored with `validator` is current. Saving the validator
    /// again (in the caller's transaction) keeps it from expiring.
    Unchanged { validator: Validator },
    /// 404 or 410.
    Gone,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The request path and query (the cache key).
    pub url: String,
    pub items: PageItems<T>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PageItems<T> {
    Fresh {
        items: Vec<T>,
        validator: Option<Validator>,
    },
    /// 304: unchanged since `validator` was saved.
    Unchanged {
        validator: Validator,
    },
}

impl<T> Page<T> {
    pub fn fresh_items(&self) -> &[T] {
        match &self.items {
            PageItems::Fresh { items, .. } => items,
            PageItems::Unchanged { .. } => &[],
        }
    }

    /// The validator to save for this page: the new one, or the one a 304 confirmed.
    pub fn validator(&self) -> Option<&Validator> {
        match &self.items {
            PageItems::Fresh { validator, .. } => validator.as_ref(),
            PageItems::Unchanged { validator } => Some(validator),
        }
    }

    pub fn is_unchanged(&self) -> bool {
        matches!(self.items, PageItems::Unchanged { .. })
    }
}

/// A listing: its pages, or the resource it lists is gone.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing<T> {
    Pages(Vec<Page<T>>),
    Gone,
}

impl<T> Listing<T> {
    pub fn pages(&self) -> &[Page<T>] {
        match self {
            Self::Pages(pages) => pages,
            Self::Gone => &[],
        }
    }

    /// Every item of the pages that changed.
    pub fn fresh_items(&self) -> impl Iterator<Item = &T> {
        self.pages().iter().flat_map(|p| p.fresh_items().iter())
    }

    pub fn validators(&self) -> Vec<Validator> {
        self.pages().iter().filter_map(|p| p.validator().cloned()).collect()
    }
}

/// How far to list pull requests (always newest update first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullQuery {
    pub state: PullState,
    /// Stop after the first fresh page that reaches below this time.
    pub updated_since: Option<DateTime<Utc>>,
    /// Stop at the first page that is unchanged (304). With `state=all` this
    /// is exact: any update moves a PR to the top of the first page, so an
    /// unchanged first page means no PR changed at all.
    pub stop_at_unchanged: bool,
}

impl PullQuery {
    /// Every page, all states.
    pub fn all() -> Self {
        Self { state: PullState::All, updated_since: None, stop_at_unchanged: false }
    }
}

/// Which pull requests to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    Open,
    Closed,
    All,
}

impl PullState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::All => "all",
        }
    }
}

/// Calls counted by purpose and outcome (`2xx`, `304`, `4xx`, `5xx`, `error`, `retried`).
#[derive(Debug, Default)]
struct Counters(Mutex<BTreeMap<(Purpose, &'static str), u64>>);

impl Counters {
    fn add(&self, purpose: Purpose, outcome: &'static str) {
        metrics::counter!("prmonitor_github_calls_total", "purpose" => purpose.as_str(), "outcome" => outcome)
            .increment(1);
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((purpose, outcome)).or_default() += 1;
        // The share of answers that were free 304s, over this client's life.
        let answers: u64 = map
            .iter()
            .filter(|((_, o), _)| matches!(*o, "2xx" | "304" | "4xx" | "5xx"))
            .map(|(_, n)| n)
            .sum();
        let free: u64 = map.iter().filter(|((_, o), _)| *o == "304").map(|(_, n)| n).sum();
        if answers > 0 {
            metrics::gauge!("prmonitor_github_not_modified_ratio").set(free as f64 / answers as f64);
        }
    }

    fn snapshot(&self) -> BTreeMap<(Purpose, &'static str), u64> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

fn outcome_label(status: u16) -> &'static str {
    match status {
        304 => "304",
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// How requests authenticate. Clients are shared, never cloned: cloning an
/// `Octocrab` copies its token cache, and the copy's new tokens would be lost.
enum Auth {
    /// The App's own client (JWT) and one client per installation, each
    /// caching its installation token and renewing it 30 s before it expires.
    App {
        app: Arc<Octocrab>,
        installations: Mutex<HashMap<i64, InstallationClient>>,
    },
    Token(Arc<Octocrab>),
}

/// An installation's client, and the lock that lets one caller at a time
/// renew its token (so a burst of calls does not mint a token each).
#[derive(Clone)]
struct InstallationClient {
    octocrab: Arc<Octocrab>,
    renewal: Arc<tokio::sync::Mutex<()>>,
}

/// A successful exchange, before decoding.
enum Answer {
    Body { headers: http::HeaderMap, body: bytes::Bytes },
    NotModified { headers: http::HeaderMap },
    Gone,
}

/// The GitHub API client. Cheap to clone.
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Auth,
    settings: GitHubSettings,
    /// The API's path prefix (`/api/v3` on GitHub Enterprise, empty on github.com).
    base_path: String,
    /// GraphQL goes through a client without auth of its own, rooted at the
    /// GraphQL URL's origin: octocrab joins every path to its base path, and
    /// GitHub Enterprise's `/api/graphql` lies outside REST's `/api/v3`.
    /// The installation's token is added to each request.
    graphql_transport: Octocrab,
    /// The GraphQL endpoint's path.
    graphql_path: String,
    pool: DbPool,
    pacer: Pacer,
    /// GraphQL has its own budget (`x-ratelimit-resource: graphql`): its own lanes.
    graphql_pacer: Pacer,
    counters: Counters,
    jitter: Jitter,
}

impl GitHubClient {
    /// Builds the client from settings. Needs a Tokio runtime.
    pub fn new(settings: &GitHubSettings, pool: DbPool) -> Result<Self, GitHubError> {
        let auth = match &settings.auth {
            None => {
                return Err(GitHubError::Config(
                    "no GitHub credentials: set PRMONITOR_GITHUB_APP_ID with a private key, or PRMONITOR_GITHUB_TOKEN"
                        .into(),
                ))
            }
            Some(GitHubAuth::App { app_id, private_key }) => {
                let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(private_key.expose().as_bytes())
                    .map_err(|e| GitHubError::Config(format!("PRMONITOR_GITHUB_PRIVATE_KEY is not an RSA key: {e}")))?;
                let app = builder(settings)?
                    .app(AppId(*app_id), key)
                    .build()
                    .map_err(|e| GitHubError::Config(e.to_string()))?;
                Auth::App { app: Arc::new(app), installations: Mutex::default() }
            }
            Some(GitHubAuth::Token(token)) => Auth::Token(Arc::new(
                builder(settings)?
                    .personal_token(token.expose().to_owned())
                    .build()
                    .map_err(|e| GitHubError::Config(e.to_string()))?,
            )),
        };
        let graphql_url = settings.graphql_url();
        let graphql_origin = graphql_url.origin().ascii_serialization();
        let graphql_transport = octocrab::Octocrab::builder()
            .base_uri(graphql_origin.as_str())
            .map_err(|e| GitHubError::Config(format!("PRMONITOR_GITHUB_GRAPHQL_URL: {e}")))?
            .set_connect_timeout(Some(settings.request_timeout))
            .set_read_timeout(Some(settings.request_timeout))
            .build()
            .map_err(|e| GitHubError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                auth,
                base_path: settings.api_url.path().trim_end_matches('/').to_owned(),
                graphql_transport,
                graphql_path: graphql_url.path().to_owned(),
                pool,
                pacer: Pacer::new(
                    settings.max_concurrent_requests,
                    settings.rate_limit_reserve_percent,
                    EndpointPace {
                        points: settings.secondary_points_per_minute,
                        window: settings.secondary_window,
                    },
                ),
                // GitHub's secondary limit for GraphQL: 2,000 points a minute, a query costing 1.
                graphql_pacer: Pacer::new(
                    settings.max_concurrent_requests,
                    settings.rate_limit_reserve_percent,
                    EndpointPace {
                        points: GRAPHQL_SECONDARY_POINTS_PER_MINUTE,
                        window: settings.secondary_window,
                    },
                ),
                counters: Counters::default(),
                jitter: Jitter::new(),
                settings: settings.clone(),
            }),
        })
    }

    /// Whether calls are made as a GitHub App (installations) rather than with one token.
    pub fn is_app(&self) -> bool {
        matches!(self.inner.auth, Auth::App { .. })
    }

    /// Calls so far by purpose and outcome, for metrics.
    pub fn call_counts(&self) -> BTreeMap<(Purpose, &'static str), u64> {
        self.inner.counters.snapshot()
    }

    /// The last rate-limit headers seen, by installation (0: token, -1: the App).
    pub fn budgets(&self) -> Vec<(i64, Budget)> {
        self.inner.pacer.budgets()
    }

    /// `GET /repos/{repo}/pulls`, newest update first, following the pages as
    /// `query` says.
    pub async fn list_pull_requests(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        query: PullQuery,
        purpose: Purpose,
    ) -> Result<Listing<PullRequest>, GitHubError> {
        let path = format!(
            "/repos/{}/pulls?state={}&sort=updated&direction=desc&per_page={PER_PAGE}",
            repo_path(repo)?,
            query.state.as_str()
        );
        let stop = |items: &[PullRequest]| match (query.updated_since, items.last()) {
            (Some(since), Some(oldest)) => oldest.updated_at < since,
            _ => false,
        };
        self.list(self.who(installation)?, purpose, &path, stop, query.stop_at_unchanged).await
    }

    /// `GET /repos/{repo}/pulls/{number}`.
    pub async fn get_pull_request(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        number: PullRequestNumber,
        purpose: Purpose,
    ) -> Result<Fetched<PullRequest>, GitHubError> {
        let path = format!("/repos/{}/pulls/{number}", repo_path(repo)?);
        self.get(self.who(installation)?, purpose, &path).await
    }

    /// `GET /repos/{repo}/commits/{sha}/check-runs?filter=all`, every page:
    /// re-runs too, so the stored runs mirror GitHub's (readers pick the
    /// newest run of each name).
    pub async fn list_check_runs(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        head_sha: &str,
        purpose: Purpose,
    ) -> Result<Listing<CheckRun>, GitHubError> {
        if head_sha.is_empty() || !head_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitHubError::Config(format!("'{head_sha}' is not a commit SHA")));
        }
        let path = format!(
            "/repos/{}/commits/{head_sha}/check-runs?filter=all&per_page={PER_PAGE}",
            repo_path(repo)?
        );
        self.list(self.who(installation)?, purpose, &path, |_: &[CheckRun]| false, false).await
    }

    /// The check runs of many commits, at most `concurrency` requests at once.
    /// The stored validators of all of them are read with one query.
    pub async fn list_check_runs_for_heads(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        head_shas: &[String],
        purpose: Purpose,
        concurrency: usize,
    ) -> Result<Vec<(String, Result<Listing<CheckRun>, GitHubError>)>, GitHubError> {
        self.list_for_commits(installation, repo, head_shas, "check-runs?filter=all&", purpose, concurrency)
            .await
    }

    /// `GET /repos/{repo}/commits/{sha}/status` for each SHA: the latest
    /// status of each context (the combined status), conditionally like
    /// [`Self::list_check_runs_for_heads`].
    pub async fn list_statuses_for_heads(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        head_shas: &[String],
        purpose: Purpose,
        concurrency: usize,
    ) -> Result<Vec<(String, Result<Listing<CommitStatus>, GitHubError>)>, GitHubError> {
        self.list_for_commits(installation, repo, head_shas, "status?", purpose, concurrency).await
    }

    /// One listing per commit, `/repos/{repo}/commits/{sha}/{what}per_page=…`,
    /// with the cached validators of all first pages looked up at once.
    async fn list_for_commits<T: DeserializeOwned + Send>(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        head_shas: &[String],
        what: &str,
        purpose: Purpose,
        concurrency: usize,
    ) -> Result<Vec<(String, Result<Listing<T>, GitHubError>)>, GitHubError> {
        use futures_util::StreamExt as _;
        let who = self.who(installation)?;
        let repo = repo_path(repo)?;
        let mut firsts = Vec::with_capacity(head_shas.len());
        for sha in head_shas {
            if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(GitHubError::Config(format!("'{sha}' is not a commit SHA")));
            }
            let url =
                format!("{}/repos/{repo}/commits/{sha}/{what}per_page={PER_PAGE}", self.inner.base_path);
            firsts.push((sha.clone(), url));
        }
        let urls: Vec<String> = firsts.iter().map(|(_, url)| url.clone()).collect();
        let mut known = {
            let mut conn = self.inner.pool.get().await.map_err(|e| GitHubError::Cache(e.to_string()))?;
            cache::lookup_many(&mut conn, who.key(), &urls, self.inner.settings.cache_ttl)
                .await
                .map_err(|e| GitHubError::Cache(e.to_string()))?
        };
        let results = futures_util::stream::iter(firsts.into_iter().map(|(sha, url)| {
            let validator = known.remove(&url);
            async move {
                let listing = self.list_from(who, purpose, url, validator, |_: &[T]| false, false).await;
                (sha, listing)
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
        Ok(results)
    }

    /// `GET /repos/{repo}/branches/{branch}/protection/required_status_checks`,
    /// conditionally. `Gone` (404) is GitHub's answer for a branch without
    /// protection or whose protection requires no checks.
    pub async fn get_required_status_checks(
        &self,
        installation: Option<InstallationId>,
        repo: &str,
        branch: &str,
        purpose: Purpose,
    ) -> Result<Fetched<RequiredStatusChecks>, GitHubError> {
        // Slashes stay (GitHub takes `feature/x` as it is); anything else
        // beyond the plain characters is percent-encoded, so a branch name
        // can never change the path or add a query.
        let branch: String = branch
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'/' | b'-' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        if branch.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
            return Err(GitHubError::Config(format!("'{branch}' is not a branch name")));
        }
        let path = format!("/repos/{}/branches/{branch}/protection/required_status_checks", repo_path(repo)?);
        self.get(self.who(installation)?, purpose, &path).await
    }

    /// `GET /repos/{repo}`: one repository as the configured token sees it.
    pub async fn get_repository(
        &self,
        installation: Option<InstallationId>,
        full_name: &str,
    ) -> Result<Fetched<Repository>, GitHubError> {
        let path = format!("/repos/{}", repo_path(full_name)?);
        self.get(self.who(installation)?, Purpose::Installation, &path).await
    }

    /// `GET /installation/repositories`: what an installation may read.
    pub async fn list_installation_repositories(
        &self,
        installation: Option<InstallationId>,
    ) -> Result<Listing<Repository>, GitHubError> {
        let path = format!("/installation/repositories?per_page={PER_PAGE}");
        self.list(self.who(installation)?, Purpose::Installation, &path, |_: &[Repository]| false, false)
            .await
    }

    /// `GET /app/installations`, as the App (JWT).
    pub async fn list_installations(&self) -> Result<Listing<Installation>, GitHubError> {
        if !matches!(self.inner.auth, Auth::App { .. }) {
            return Err(GitHubError::Config("listing installations needs GitHub App credentials".into()));
        }
        let path = format!("/app/installations?per_page={PER_PAGE}");
        self.list(Who::App, Purpose::Installation, &path, |_: &[Installation]| false, false).await
    }

    /// One page of the App's webhook deliveries (`GET /app/hook/deliveries`),
    /// newest first, as the App (JWT); `cursor` is the previous page's
    /// `next_cursor`. Never conditional: the listing changes with every
    /// delivery, and a validator would only cost a cache row.
    pub async fn list_hook_deliveries(
        &self,
        cursor: Option<&str>,
        per_page: u32,
    ) -> Result<HookDeliveryPage, GitHubError> {
        self.require_app("the deliveries API")?;
        let mut url = format!("{}/app/hook/deliveries?per_page={per_page}", self.inner.base_path);
        if let Some(cursor) = cursor {
            url.push_str("&cursor=");
            url.push_str(cursor);
        }
        match self.send(Who::App, Purpose::Recovery, Call::Get { url: &url, validator: None }).await? {
            Answer::Body { headers, body } => {
                let items = decode(&body)?;
                let next_cursor = headers
                    .get(http::header::LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(super::link::next_link)
                    .and_then(|next| super::link::query_value(&next, "cursor"));
                Ok(HookDeliveryPage { items, next_cursor })
            }
            Answer::NotModified { .. } | Answer::Gone => Err(GitHubError::Api {
                status: 404,
                message: "the App has no webhook deliveries endpoint (is a webhook configured?)".into(),
            }),
        }
    }

    /// One delivery attempt with its request (`GET /app/hook/deliveries/{id}`);
    /// `None` once GitHub no longer has it (past its retention).
    pub async fn get_hook_delivery(&self, id: u64) -> Result<Option<HookDeliveryDetail>, GitHubError> {
        self.require_app("the deliveries API")?;
        let url = format!("{}/app/hook/deliveries/{id}", self.inner.base_path);
        match self.send(Who::App, Purpose::Recovery, Call::Get { url: &url, validator: None }).await? {
            Answer::Body { body, .. } => Ok(Some(decode(&body)?)),
            Answer::NotModified { .. } | Answer::Gone => Ok(None),
        }
    }

    /// Asks GitHub to deliver attempt `id` again
    /// (`POST /app/hook/deliveries/{id}/attempts`, answered 202). False when
    /// GitHub no longer has it.
    pub async fn redeliver_hook_delivery(&self, id: u64) -> Result<bool, GitHubError> {
        self.require_app("the deliveries API")?;
        let url = format!("{}/app/hook/deliveries/{id}/attempts", self.inner.base_path);
        match self.send(Who::App, Purpose::Recovery, Call::Post { url: &url }).await? {
            Answer::Body { .. } => Ok(true),
            Answer::NotModified { .. } | Answer::Gone => Ok(false),
        }
    }

    fn require_app(&self, what: &str) -> Result<(), GitHubError> {
        match self.inner.auth {
            Auth::App { .. } => Ok(()),
            _ => Err(GitHubError::Config(format!("{what} needs GitHub App credentials"))),
        }
    }

    /// POSTs a GraphQL document with the installation's token (or the
    /// configured token), paced and retried like REST calls but against the
    /// `graphql` budget. An answer whose errors go beyond objects GitHub
    /// could not resolve is an error.
    pub async fn graphql(
        &self,
        installation: Option<InstallationId>,
        purpose: Purpose,
        document: &graphql::Document,
    ) -> Result<graphql::Answer, GitHubError> {
        let who = self.who(installation)?;
        let body = bytes::Bytes::from(
            serde_json::to_vec(&document.body()).map_err(|e| GitHubError::Decode(e.to_string()))?,
        );
        let Answer::Body { body, .. } = self.send(who, purpose, Call::Graphql { body: &body }).await? else {
            return Err(GitHubError::Api {
                status: 304,
                message: "a GraphQL query answered without a body".into(),
            });
        };
        let answer: graphql::Answer = decode(&body)?;
        if let Some(cost) = answer.cost() {
            metrics::counter!("prmonitor_github_graphql_points_total", "purpose" => purpose.as_str())
                .increment(cost);
        }
        if let Some(first) = answer.fatal_errors().first() {
            return Err(GitHubError::Api {
                status: 200,
                message: format!(
                    "GraphQL: {}{}",
                    first.kind.as_deref().map(|k| format!("{k}: ")).unwrap_or_default(),
                    first.message
                ),
            });
        }
        Ok(answer)
    }

    fn who(&self, installation: Option<InstallationId>) -> Result<Who, GitHubError> {
        match (&self.inner.auth, installation) {
            (Auth::Token(_), _) => Ok(Who::Token),
            (Auth::App { .. }, Some(id)) if id.0 > 0 => Ok(Who::Installation(id.0)),
            (Auth::App { .. }, _) => {
                Err(GitHubError::Config("a GitHub App call needs the repository's installation id".into()))
            }
        }
    }

    /// The client for `who`; for an installation, with a current token.
    ///
    /// A token GitHub refuses before its expiry (a rotation, a revocation) is
    /// octocrab's to replace: on a 401 to an installation token it drops the
    /// cached token and sends the request once more with a new one, and a
    /// second 401 reaches [`Self::send`] as the real authentication failure it
    /// is (Fatal, not retried). `tests/api/github_client.rs` pins both.
    async fn octocrab(&self, who: Who) -> Result<Arc<Octocrab>, GitHubError> {
        let installation = match (&self.inner.auth, who) {
            (Auth::Token(octo), _) => return Ok(octo.clone()),
            (Auth::App { app, .. }, Who::App) => return Ok(app.clone()),
            (Auth::App { .. }, Who::Token) => return Err(GitHubError::Config("no token configured".into())),
            (Auth::App { app, installations }, Who::Installation(id)) => {
                let mut clients = installations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match clients.get(&id) {
                    Some(client) => client.clone(),
                    None => {
                        let id_u64 = u64::try_from(id)
                            .map_err(|_| GitHubError::Config(format!("bad installation id {id}")))?;
                        let octocrab = app
                            .installation(OctocrabInstallationId(id_u64))
                            .map_err(|e| GitHubError::Auth(e.to_string()))?;
                        let client = InstallationClient {
                            octocrab: Arc::new(octocrab),
                            renewal: Arc::new(tokio::sync::Mutex::new(())),
                        };
                        clients.insert(id, client.clone());
                        client
                    }
                }
            }
        };
        // One renewal at a time; the others find the fresh token cached.
        let _turn = installation.renewal.lock().await;
        installation.octocrab.installation_token().await.map_err(|e| match e {
            octocrab::Error::GitHub { source, .. } if source.status_code.is_server_error() => {
                GitHubError::Exhausted { attempts: 1, last: format!("token exchange: {}", source.message) }
            }
            other => GitHubError::Auth(token_error(other)),
        })?;
        Ok(installation.octocrab)
    }

    async fn cache_lookup(&self, who: Who, url: &str) -> Result<Option<Validator>, GitHubError> {
        let mut conn = self.inner.pool.get().await.map_err(|e| GitHubError::Cache(e.to_string()))?;
        cache::lookup(&mut conn, who.key(), url, self.inner.settings.cache_ttl)
            .await
            .map_err(|e| GitHubError::Cache(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        who: Who,
        purpose: Purpose,
        path: &str,
    ) -> Result<Fetched<T>, GitHubError> {
        let url = format!("{}{path}", self.inner.base_path);
        let validator = self.cache_lookup(who, &url).await?;
        match self.send(who, purpose, Call::Get { url: &url, validator: validator.as_ref() }).await? {
            Answer::Body { headers, body } => {
                let data = decode(&body)?;
                Ok(Fetched::Fresh { data, validator: Some(validator_from(who, &url, &headers, None)) })
            }
            Answer::NotModified { .. } => match validator {
                Some(validator) => Ok(Fetched::Unchanged { validator }),
                None => {
                    Err(GitHubError::Api { status: 304, message: "304 to an unconditional request".into() })
                }
            },
            Answer::Gone => Ok(Fetched::Gone),
        }
    }

    async fn list<T: DeserializeOwned>(
        &self,
        who: Who,
        purpose: Purpose,
        path: &str,
        stop_after: impl Fn(&[T]) -> bool,
        stop_at_unchanged: bool,
    ) -> Result<Listing<T>, GitHubError> {
        let first = format!("{}{path}", self.inner.base_path);
        let known = self.cache_lookup(who, &first).await?;
        self.list_from(who, purpose, first, known, stop_after, stop_at_unchanged).await
    }

    /// Follows a listing from `first`, whose validator the caller looked up.
    async fn list_from<T: DeserializeOwned>(
        &self,
        who: Who,
        purpose: Purpose,
        first: String,
        first_validator: Option<Validator>,
        stop_after: impl Fn(&[T]) -> bool,
        stop_at_unchanged: bool,
    ) -> Result<Listing<T>, GitHubError> {
        let mut pages = Vec::new();
        let mut known = Some(first_validator);
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let validator = match known.take() {
                Some(validator) => validator,
                None => self.cache_lookup(who, &url).await?,
            };
            match self.send(who, purpose, Call::Get { url: &url, validator: validator.as_ref() }).await? {
                Answer::Body { headers, body } => {
                    let items = decode_items::<T>(&body)?;
                    next = self.next_page(&headers)?;
                    let stop = stop_after(&items);
                    let validator = validator_from(who, &url, &headers, next.clone());
                    pages.push(Page { url, items: PageItems::Fresh { items, validator: Some(validator) } });
                    if stop {
                        break;
                    }
                }
                Answer::NotModified { headers } => {
                    let Some(validator) = validator else {
                        return Err(GitHubError::Api {
                            status: 304,
                            message: "304 to an unconditional request".into(),
                        });
                    };
                    // GitHub may leave the Link header off a 304: the stored one leads on.
                    next = match self.next_page(&headers)? {
                        Some(link) => Some(link),
                        None => validator.next_url.clone(),
                    };
                    pages.push(Page { url, items: PageItems::Unchanged { validator } });
                    if stop_at_unchanged {
                        break;
                    }
                }
                Answer::Gone if pages.is_empty() => return Ok(Listing::Gone),
                // A later page vanishing means the listing shifted under us.
                Answer::Gone => {
                    return Err(GitHubError::Exhausted {
                        attempts: 1,
                        last: format!("{url} vanished mid-listing"),
                    })
                }
            }
        }
        Ok(Listing::Pages(pages))
    }

    /// The next page's path and query, checked to stay on the API's host.
    fn next_page(&self, headers: &http::HeaderMap) -> Result<Option<String>, GitHubError> {
        let Some(header) = headers.get(http::header::LINK).and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let Some(target) = link::next_link(header) else {
            return Ok(None);
        };
        let url = url::Url::parse(&target)
            .map_err(|e| GitHubError::Decode(format!("bad next link {target}: {e}")))?;
        let base = &self.inner.settings.api_url;
        if url.origin() != base.origin() || !url.path().starts_with(&self.inner.base_path) {
            return Err(GitHubError::Decode(format!("next link {target} leaves {base}")));
        }
        Ok(Some(match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }))
    }

    /// One logical call: paced, timed out, retried.
    async fn send(&self, who: Who, purpose: Purpose, call: Call<'_>) -> Result<Answer, GitHubError> {
        let octo = self.octocrab(who).await?;
        let validator = match call {
            Call::Get { validator, .. } => validator,
            Call::Graphql { .. } | Call::Post { .. } => None,
        };
        let (lane, endpoint) = match call {
            Call::Get { url, .. } | Call::Post { url } => (
                self.inner.pacer.lane(who.key()),
                endpoint_key(url.strip_prefix(self.inner.base_path.as_str()).unwrap_or(url)),
            ),
            Call::Graphql { .. } => (self.inner.graphql_pacer.lane(who.key()), "graphql"),
        };
        let settings = &self.inner.settings;
        let attempts = settings.retry_attempts + 1;
        let mut last_failure = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.inner.counters.add(purpose, "retried");
            }
            // A GET or a GraphQL query is one point of the endpoint's
            // secondary limit, a write five (FACTS §4).
            let points = if matches!(call, Call::Post { .. }) { 5 } else { 1 };
            let permit = lane.turn(purpose, endpoint, points).await;
            let exchange = tokio::time::timeout(settings.request_timeout, async {
                match call {
                    Call::Get { url, validator } => exchange(&octo, url, validator).await,
                    Call::Post { url } => exchange_post(&octo, url).await,
                    Call::Graphql { body } => self.exchange_graphql(&octo, body).await,
                }
            })
            .await;
            drop(permit);
            let (status, headers, body) = match exchange {
                Err(_) => {
                    self.inner.counters.add(purpose, "error");
                    last_failure = format!("no answer within {:?}", settings.request_timeout);
                    self.pause(attempt, attempts).await;
                    continue;
                }
                Ok(Err(ExchangeError::Auth(message))) => {
                    self.inner.counters.add(purpose, "error");
                    return Err(GitHubError::Auth(message));
                }
                Ok(Err(ExchangeError::Transport(message))) => {
                    self.inner.counters.add(purpose, "error");
                    last_failure = message;
                    self.pause(attempt, attempts).await;
                    continue;
                }
                Ok(Ok(answer)) => answer,
            };
            self.inner.counters.add(purpose, outcome_label(status));
            let limits = LimitHeaders::parse(|name| {
                headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
            });
            lane.observe(&limits);
            // The limit beside what remains: installations' limits differ
            // (5,000 to 15,000 an hour), so alerts compare the two.
            let (remaining_gauge, limit_gauge) = match call {
                Call::Get { .. } | Call::Post { .. } => {
                    ("prmonitor_github_rate_limit_remaining", "prmonitor_github_rate_limit_limit")
                }
                Call::Graphql { .. } => (
                    "prmonitor_github_graphql_rate_limit_remaining",
                    "prmonitor_github_graphql_rate_limit_limit",
                ),
            };
            if let Some(remaining) = limits.remaining {
                metrics::gauge!(remaining_gauge, "installation" => who.key().to_string())
                    .set(remaining as f64);
            }
            if let Some(limit) = limits.limit {
                metrics::gauge!(limit_gauge, "installation" => who.key().to_string()).set(limit as f64);
            }
            let message = github_message(&body);
            // GitHub answers an exhausted GraphQL budget with 200 and an error.
            // Decoded only when it may be one: `graphql()` decodes every answer anyway.
            let graphql_limited = matches!(call, Call::Graphql { .. })
                && status == 200
                && body.windows(b"RATE_LIMITED".len()).any(|w| w == b"RATE_LIMITED")
                && serde_json::from_slice::<graphql::Answer>(&body).is_ok_and(|a| a.is_rate_limited());
            let verdict = if graphql_limited {
                Verdict::RateLimited { wait: policy::rate_limit_wait(&limits, SystemTime::now()) }
            } else {
                policy::classify(status, &limits, &message, SystemTime::now())
            };
            match verdict {
                Verdict::Success => return Ok(Answer::Body { headers, body }),
                Verdict::NotModified if validator.is_some() => return Ok(Answer::NotModified { headers }),
                Verdict::NotModified => {
                    return Err(GitHubError::Api {
                        status,
                        message: "304 to an unconditional request".into(),
                    })
                }
                Verdict::Gone => return Ok(Answer::Gone),
                Verdict::Fatal => return Err(GitHubError::Api { status, message }),
                Verdict::RateLimited { wait } => {
                    // Rate limits are per installation: hold the whole lane, not just this call.
                    let wait = wait.max(self.backoff(attempt.saturating_sub(1)));
                    tracing::warn!(status, wait_ms = wait.as_millis() as u64, %message, "rate limited by GitHub");
                    if attempt < attempts {
                        lane.block_for(wait);
                    }
                    last_failure = format!("{status}: {message}");
                }
                Verdict::Retryable => {
                    last_failure = format!("{status}: {message}");
                    self.pause(attempt, attempts).await;
                }
            }
        }
        Err(GitHubError::Exhausted { attempts, last: last_failure })
    }

    fn backoff(&self, retry: u32) -> std::time::Duration {
        if retry == 0 {
            return std::time::Duration::ZERO;
        }
        policy::backoff(self.inner.settings.retry_base_delay, retry, self.inner.jitter.fraction())
    }

    /// Sleeps before the next attempt, unless there is none.
    async fn pause(&self, attempt: u32, attempts: u32) {
        if attempt < attempts {
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// One GraphQL POST with the credential `octo` holds.
    async fn exchange_graphql(
        &self,
        octo: &Octocrab,
        body: &bytes::Bytes,
    ) -> Result<(u16, http::HeaderMap, bytes::Bytes), ExchangeError> {
        use octocrab::secrecy::ExposeSecret as _;
        let token = match &self.inner.auth {
            Auth::Token(_) => match &self.inner.settings.auth {
                Some(GitHubAuth::Token(token)) => token.expose().to_owned(),
                _ => return Err(ExchangeError::Auth("no token configured".into())),
            },
            // The cached token, renewed by `octocrab` before this call.
            Auth::App { .. } => octo
                .installation_token()
                .await
                .map_err(|e| ExchangeError::Auth(token_error(e)))?
                .expose_secret()
                .to_owned(),
        };
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.inner.graphql_path.as_str())
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(octocrab::OctoBody::from(body.clone()))
            .map_err(|e| ExchangeError::Transport(e.to_string()))?;
        let response = self
            .inner
            .graphql_transport
            .execute(request)
            .await
            .map_err(|e| ExchangeError::Transport(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| ExchangeError::Transport(e.to_string()))?.to_bytes();
        Ok((parts.status.as_u16(), parts.headers, body))
    }
}

/// What one logical call sends.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// A REST GET, conditional when a validator is known.
    Get { url: &'a str, validator: Option<&'a Validator> },
    /// A GraphQL query (JSON body).
    Graphql { body: &'a bytes::Bytes },
    /// A REST POST without a body (asking for a redelivery).
    Post { url: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Token,
    App,
    Installation(i64),
}

impl Who {
    /// The rate-limit bucket and cache namespace.
    fn key(self) -> i64 {
        match self {
            Self::Token => TOKEN_KEY,
            Self::App => APP_KEY,
            Self::Installation(id) => id,
        }
    }
}

fn builder(
    settings: &GitHubSettings,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
    GitHubError,
> {
    // No retry layer is compiled in (octocrab's `retry` feature is off): this module retries.
    octocrab::Octocrab::builder()
        .base_uri(settings.api_url.as_str())
        .map_err(|e| GitHubError::Config(format!("PRMONITOR_GITHUB_API_URL: {e}")))
        .map(|b| {
            b.set_connect_timeout(Some(settings.request_timeout))
                .set_read_timeout(Some(settings.request_timeout))
        })
}

enum ExchangeError {
    /// The installation token could not be obtained: not worth retrying.
    Auth(String),
    /// Connection refused, reset, or a broken body: worth retrying.
    Transport(String),
}

async fn exchange(
    octo: &Octocrab,
    url: &str,
    validator: Option<&Validator>,
) -> Result<(u16, http::HeaderMap, bytes::Bytes), ExchangeError> {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/vnd.github+json"));
    headers.insert("x-github-api-version", http::HeaderValue::from_static("2022-11-28"));
    if let Some(validator) = validator {
        if let Some(value) = validator.etag.as_deref().and_then(|e| http::HeaderValue::from_str(e).ok()) {
            headers.insert(http::header::IF_NONE_MATCH, value);
        }
        if let Some(value) =
            validator.last_modified.as_deref().and_then(|e| http::HeaderValue::from_str(e).ok())
        {
            headers.insert(http::header::IF_MODIFIED_SINCE, value);
        }
    }
    let response = octo._get_with_headers(url, Some(headers)).await.map_err(exchange_error)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| ExchangeError::Transport(e.to_string()))?.to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

async fn exchange_post(
    octo: &Octocrab,
    url: &str,
) -> Result<(u16, http::HeaderMap, bytes::Bytes), ExchangeError> {
    let response = octo._post(url, None::<&()>).await.map_err(exchange_error)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| ExchangeError::Transport(e.to_string()))?.to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

/// GitHub's manifest flow, step 3: `POST /app-manifests/{code}/conversions`
/// (no authentication) answers the App created from the manifest with its
/// credentials. One attempt only: a code works once, so a retry of a request
/// whose answer was lost could only be refused. The answer holds secrets:
/// it is returned, never logged, and an error carries only GitHub's message.
pub async fn convert_manifest_code(
    settings: &GitHubSettings,
    code: &str,
) -> Result<serde_json::Value, GitHubError> {
    let octo = builder(settings)?.build().map_err(|e| GitHubError::Config(e.to_string()))?;
    let path = settings.api_url.path().trim_end_matches('/');
    let url = format!("{path}/app-manifests/{code}/conversions");
    let (status, _, body) = exchange_post(&octo, &url).await.map_err(|e| match e {
        ExchangeError::Transport(reason) | ExchangeError::Auth(reason) => {
            GitHubError::Exhausted { attempts: 1, last: reason }
        }
    })?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(serde_json::Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "no message".to_owned());
        return Err(GitHubError::Api { status, message });
    }
    serde_json::from_slice(&body).map_err(|e| GitHubError::Decode(format!("the App conversion: {e}")))
}

fn exchange_error(error: octocrab::Error) -> ExchangeError {
    match error {
        // octocrab reports a failed token exchange as GitHub's own error: a
        // refusal is final, GitHub being down is worth another try.
        octocrab::Error::GitHub { source, .. } if source.status_code.is_server_error() => {
            ExchangeError::Transport(format!("token exchange: {} ({})", source.message, source.status_code))
        }
        octocrab::Error::GitHub { source, .. } => {
            ExchangeError::Auth(format!("{} ({})", source.message, source.status_code))
        }
        octocrab::Error::JWT { source, .. } => ExchangeError::Auth(source.to_string()),
        other => ExchangeError::Transport(other.to_string()),
    }
}

fn token_error(error: octocrab::Error) -> String {
    match error {
        octocrab::Error::GitHub { source, .. } => format!("{} ({})", source.message, source.status_code),
        other => other.to_string(),
    }
}

fn validator_from(who: Who, url: &str, headers: &http::HeaderMap, next_url: Option<String>) -> Validator {
    let header =
        |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Validator {
        installation_id: who.key(),
        url: url.to_owned(),
        etag: header(http::header::ETAG),
        last_modified: header(http::header::LAST_MODIFIED),
        next_url,
    }
}

/// GitHub's `message` field of an error body, or the start of the body.
fn github_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => error.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|e| GitHubError::Decode(e.to_string()))
}

/// A page is either a JSON array or an object wrapping one.
fn decode_items<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, GitHubError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        decode(body)
    } else {
        decode::<Wrapped<T>>(body).map(|w| w.items)
    }
}

/// The endpoint a request path (below the API's prefix) belongs to, for
/// GitHub's per-endpoint secondary limit: its route template, with owner,
/// repository, number and SHA left out. Paths this client does not call share
/// one key, which paces them together (stricter, never looser).
fn endpoint_key(path: &str) -> &'static str {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["repos", _, _, "pulls"] => "pulls",
        ["repos", _, _, "pulls", _] => "pull",
        ["repos", _, _, "commits", _, "check-runs"] => "check-runs",
        ["repos", _, _, "commits", _, "status"] => "status",
        ["repos", _, _, "branches", .., "required_status_checks"] => "required-status-checks",
        ["installation", "repositories"] => "installation-repositories",
        ["app", "installations"] => "installations",
        _ => "other",
    }
}

/// `owner/name`, checked to be a plain repository name (it goes into a URL path).
fn repo_path(full_name: &str) -> Result<&str, GitHubError> {
    if crate::ids::is_repository_full_name(full_name) {
        Ok(full_name)
    } else {
        Err(GitHubError::Config(format!("'{full_name}' is not an owner/name repository")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_cannot_escape_the_path() {
        assert!(repo_path("octocat/Hello-World").is_ok());
        assert!(repo_path("o/r.js").is_ok());
        for bad in ["octocat", "o/r/x", "../r", "o/..", "o/r?x=1", "o/r#", "o /r", "/r", "o/"] {
            assert!(repo_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_decode_from_arrays_and_wrappers() {
        let wrapped = br#"{"total_count":1,"check_runs":[{"id":16354767716,"head_sha":"a","name":"ci","status":"queued"}]}"#;
        let runs: Vec<CheckRun> = decode_items(wrapped).expect("wrapped");
        assert_eq!(runs[0].id, 16_354_767_716);
        let repos: Vec<Repository> =
            decode_items(br#"{"total_count":0,"repositories":[]}"#).expect("wrapped repositories");
        assert!(repos.is_empty());
        let installations: Vec<Installation> = decode_items(br#"[{"id":1,"account":null}]"#).expect("array");
        assert_eq!(installations[0].id, InstallationId(1));
        assert!(decode_items::<Installation>(b"{\"message\":\"x\"}").is_err());
    }

    #[test]
    fn endpoints_are_route_templates_not_urls() {
        assert_eq!(endpoint_key("/repos/o/r/pulls?state=all&page=3"), "pulls");
        assert_eq!(endpoint_key("/repos/other/repo/pulls"), "pulls");
        assert_eq!(endpoint_key("/repos/o/r/pulls/17"), "pull");
        assert_eq!(endpoint_key("/repos/o/r/commits/0abc/check-runs?filter=all"), "check-runs");
        assert_eq!(endpoint_key("/repos/o/r/commits/0abc/status?per_page=100"), "status");
        assert_eq!(endpoint_key("/installation/repositories?per_page=100"), "installation-repositories");
        assert_eq!(endpoint_key("/app/installations"), "installations");
        assert_eq!(endpoint_key("/repos/o/r/issues"), "other");
    }

    #[test]
    fn error_messages_come_from_githubs_body() {
        assert_eq!(
            github_message(br#"{"message":"Bad credentials","documentation_url":"x"}"#),
            "Bad credentials"
        );
        assert_eq!(github_message(b"<html>502</html>"), "<html>502</html>");
    }
}
