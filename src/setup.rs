//! The GitHub App created in one click through `/setup` (GitHub's manifest
//! flow, FACTS.md §4): the manifest prmonitor asks for, the App's credentials
//! sealed under `PRMONITOR_SECRET_KEY` in `github_apps`, the one-time
//! `state`s that tie GitHub's redirect to a setup begun here, and the
//! [`AppSlot`] through which a running service starts using an App stored
//! while it runs (by itself, or by another instance sharing the database).
//!
//! Why PostgreSQL: every `serve`/`worker` process shares only the database
//! (DESIGN.md: no sticky state), so all of them find the App without files
//! copied between hosts; sealing means a dump of the database alone does not
//! reveal the private key or the secrets.

use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::{Secret, SecretKey};
use crate::db::schema::{github_apps, setup_states};
use crate::db::DbPool;
use crate::webhook::intake::IntakeConfig;

/// GitHub: the whole flow must finish within an hour; a state lives as long.
pub const STATE_LIFETIME_SECS: i64 = 3600;
/// How often a process without an App looks for one stored by another instance.
pub const APP_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// The nonce of XChaCha20-Poly1305, stored before each ciphertext.
const NONCE_LEN: usize = 24;

/// The permissions README's "App permissions" lists, all read-only:
/// administration for branch protection's required checks.
pub const PERMISSIONS: [(&str, &str); 6] = [
    ("pull_requests", "read"),
    ("checks", "read"),
    ("statuses", "read"),
    ("metadata", "read"),
    ("administration", "read"),
    ("merge_queues", "read"),
];

/// The events prmonitor tracks that an App subscribes to (the
/// `installation*` events come to every App without subscribing; `ping`,
/// `push` and `repository` are known to intake but not needed).
pub const EVENTS: [&str; 7] = [
    "pull_request",
    "check_run",
    "check_suite",
    "status",
    "merge_group",
    "branch_protection_rule",
    "repository_ruleset",
];

/// Why setting up failed. Its text never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the database is unavailable: {0}")]
    Database(String),
    #[error("a stored App credential could not be opened: {0}")]
    Sealed(String),
    #[error("GitHub's answer lacks '{0}'")]
    Answer(&'static str),
}

impl From<diesel::result::Error> for SetupError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error.to_string())
    }
}

/// The manifest of prmonitor's App for a service reached at `public_url`.
pub fn manifest(public_url: &url::Url, name: &str) -> Value {
    let base = public_url.as_str().trim_end_matches('/');
    let permissions: serde_json::Map<String, Value> =
        PERMISSIONS.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    json!({
        "name": name,
        "url": base,
        "hook_attributes": { "url": format!("{base}/webhooks/github"), "active": true },
        "redirect_url": format!("{base}/setup/complete"),
        "setup_url": format!("{base}/setup/installed"),
        "public": false,
        "default_permissions": permissions,
        "default_events": EVENTS,
    })
}

/// `prmonitor-<host>`, within GitHub's 34 characters for an App name.
pub fn default_name(public_url: &url::Url) -> String {
    let host = public_url.host_str().unwrap_or("service");
    let mut name = format!("prmonitor-{host}");
    name.truncate(34);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// A value sealed for column `field` of App `app_id`: nonce, then ciphertext
/// and tag. The App id and the column are the associated data, so a sealed
/// value moved to another row or column no longer opens.
pub fn seal(key: &SecretKey, app_id: i64, field: &str, plaintext: &str) -> Result<Vec<u8>, SetupError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key.expose())
        .map_err(|_| SetupError::Sealed("the key is not 32 bytes".into()))?;
    let nonce = XNonce::generate();
    let aad = associated_data(app_id, field);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: aad.as_bytes() })
        .map_err(|_| SetupError::Sealed("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The plaintext of [`seal`]'s output; an error for another key, row or column.
pub fn open(key: &SecretKey, app_id: i64, field: &str, sealed: &[u8]) -> Result<Secret, SetupError> {
    if sealed.len() < NONCE_LEN {
        return Err(SetupError::Sealed(format!("{field} is too short to be sealed")));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).map_err(|_| SetupError::Sealed("bad nonce".into()))?;
    let cipher = XChaCha20Poly1305::new_from_slice(key.expose())
        .map_err(|_| SetupError::Sealed("the key is not 32 bytes".into()))?;
    let aad = associated_data(app_id, field);
    let plain = cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: aad.as_bytes() }).map_err(|_| {
        SetupError::Sealed(format!("{field} does not open with PRMONITOR_SECRET_KEY (another key?)"))
    })?;
    String::from_utf8(plain).map(Secret::new).map_err(|_| SetupError::Sealed(format!("{field} is not text")))
}

fn associated_data(app_id: i64, field: &str) -> String {
    format!("prmonitor github_apps {app_id} {field}")
}

/// 32 random bytes as hex, for a setup `state`.
pub fn new_state() -> String {
    let bytes = chacha20poly1305::Key::generate();
    hex::encode(bytes.as_slice())
}

/// The App, with its credentials open.
#[derive(Clone, Debug)]
pub struct StoredApp {
    pub app_id: i64,
    pub slug: String,
    pub html_url: String,
    pub owner_login: String,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    pub private_key: Secret,
    pub webhook_secret: Secret,
    pub client_secret: Secret,
}

impl StoredApp {
    /// Reads GitHub's conversion answer (`POST /app-manifests/{code}/conversions`).
    pub fn from_conversion(answer: &Value) -> Result<Self, SetupError> {
        let text = |key: &'static str| {
            answer.get(key).and_then(Value::as_str).map(str::to_owned).ok_or(SetupError::Answer(key))
        };
        Ok(Self {
            app_id: answer
                .get("id")
                .and_then(Value::as_i64)
                .filter(|id| *id > 0)
                .ok_or(SetupError::Answer("id"))?,
            slug: text("slug")?,
            html_url: text("html_url")?,
            owner_login: answer
                .pointer("/owner/login")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(SetupError::Answer("owner.login"))?,
            client_id: text("client_id")?,
            created_at: Utc::now(),
            private_key: Secret::new(text("pem")?),
            webhook_secret: Secret::new(text("webhook_secret")?),
            client_secret: Secret::new(text("client_secret")?),
        })
    }
}

#[derive(Queryable)]
struct AppRow {
    app_id: i64,
    slug: String,
    html_url: String,
    owner_login: String,
    client_id: String,
    private_key_sealed: Vec<u8>,
    webhook_secret_sealed: Vec<u8>,
    client_secret_sealed: Vec<u8>,
    created_at: DateTime<Utc>,
}

/// Stores `app` as the one App, replacing any stored before (one transaction).
pub async fn store_app(
    conn: &mut AsyncPgConnection,
    key: &SecretKey,
    app: &StoredApp,
) -> Result<(), SetupError> {
    let id = app.app_id;
    let private_key = seal(key, id, "private_key", app.private_key.expose())?;
    let webhook_secret = seal(key, id, "webhook_secret", app.webhook_secret.expose())?;
    let client_secret = seal(key, id, "client_secret", app.client_secret.expose())?;
    conn.transaction::<_, diesel::result::Error, _>(async |c| {
        diesel::delete(github_apps::table).execute(c).await?;
        diesel::insert_into(github_apps::table)
            .values((
                github_apps::app_id.eq(id),
                github_apps::slug.eq(&app.slug),
                github_apps::html_url.eq(&app.html_url),
                github_apps::owner_login.eq(&app.owner_login),
                github_apps::client_id.eq(&app.client_id),
                github_apps::private_key_sealed.eq(&private_key),
                github_apps::webhook_secret_sealed.eq(&webhook_secret),
                github_apps::client_secret_sealed.eq(&client_secret),
                github_apps::created_at.eq(app.created_at),
            ))
            .execute(c)
            .await?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Whether an App is stored (its credentials need no key to know that).
pub async fn app_stored(conn: &mut AsyncPgConnection) -> Result<bool, SetupError> {
    let count: i64 = github_apps::table.count().get_result(conn).await?;
    Ok(count > 0)
}

/// The stored App with its credentials opened under `key`, if one is stored.
pub async fn load_app(
    conn: &mut AsyncPgConnection,
    key: &SecretKey,
) -> Result<Option<StoredApp>, SetupError> {
    let row: Option<AppRow> = github_apps::table
        .select((
            github_apps::app_id,
            github_apps::slug,
            github_apps::html_url,
            github_apps::owner_login,
            github_apps::client_id,
            github_apps::private_key_sealed,
            github_apps::webhook_secret_sealed,
            github_apps::client_secret_sealed,
            github_apps::created_at,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredApp {
        private_key: open(key, row.app_id, "private_key", &row.private_key_sealed)?,
        webhook_secret: open(key, row.app_id, "webhook_secret", &row.webhook_secret_sealed)?,
        client_secret: open(key, row.app_id, "client_secret", &row.client_secret_sealed)?,
        app_id: row.app_id,
        slug: row.slug,
        html_url: row.html_url,
        owner_login: row.owner_login,
        client_id: row.client_id,
        created_at: row.created_at,
    }))
}

/// Records a new setup `state` (and forgets those past their hour).
pub async fn create_state(conn: &mut AsyncPgConnection) -> Result<String, SetupError> {
    let state = new_state();
    diesel::sql_query(format!(
        "DELETE FROM setup_states WHERE created_at < now() - interval '{} seconds'",
        STATE_LIFETIME_SECS * 24
    ))
    .execute(conn)
    .await?;
    diesel::insert_into(setup_states::table).values(setup_states::state.eq(&state)).execute(conn).await?;
    Ok(state)
}

/// Uses `state` up: true only for a known state, unused and under an hour
/// old, and only once (a concurrent second use finds it used).
pub async fn consume_state(conn: &mut AsyncPgConnection, state: &str) -> Result<bool, SetupError> {
    let cutoff = Utc::now() - chrono::Duration::seconds(STATE_LIFETIME_SECS);
    let used = diesel::update(
        setup_states::table
            .filter(setup_states::state.eq(state))
            .filter(setup_states::used_at.is_null())
            .filter(setup_states::created_at.gt(cutoff)),
    )
    .set(setup_states::used_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(used == 1)
}

/// Where the running service learns of an App stored while it runs.
#[derive(Clone)]
pub struct AppSlot {
    inner: Arc<SlotInner>,
}

struct SlotInner {
    /// An App or a token is configured in settings: setup is closed, and
    /// nothing waits for an App.
    from_settings: bool,
    app: watch::Sender<Option<StoredApp>>,
    intake: IntakeConfig,
}

impl AppSlot {
    pub fn new(from_settings: bool, intake: IntakeConfig) -> Self {
        let (app, _) = watch::channel(None);
        Self { inner: Arc::new(SlotInner { from_settings, app, intake }) }
    }

    /// Whether the settings configure GitHub access (an App id or a token).
    pub fn from_settings(&self) -> bool {
        self.inner.from_settings
    }

    /// The App applied to this process, if any.
    pub fn applied(&self) -> Option<StoredApp> {
        self.inner.app.borrow().clone()
    }

    /// Starts using `app` in this process: intake accepts its webhook secret
    /// at once, and whatever waits for an App (worker, scheduler) starts.
    pub fn apply(&self, app: StoredApp) {
        self.inner.intake.add_secret(app.webhook_secret.clone());
        tracing::info!(app_id = app.app_id, slug = %app.slug, "using the GitHub App stored by /setup");
        self.inner.app.send_replace(Some(app));
    }

    /// Waits for an App: applied here, or found in the database (stored by
    /// another instance; looked for every [`APP_POLL_INTERVAL`]). `None` when
    /// `stop` turns true first.
    pub async fn wait(
        &self,
        pool: &DbPool,
        key: Option<&SecretKey>,
        mut stop: watch::Receiver<bool>,
    ) -> Option<StoredApp> {
        let mut applied = self.inner.app.subscribe();
        let mut warned = false;
        loop {
            if let Some(app) = applied.borrow_and_update().clone() {
                return Some(app);
            }
            if *stop.borrow() {
                return None;
            }
            if let Some(key) = key {
                match self.look_in_database(pool, key).await {
                    Ok(Some(app)) => {
                        self.apply(app.clone());
                        return Some(app);
                    }
                    Ok(None) => {}
                    Err(error) if !warned => {
                        warned = true;
                        tracing::warn!(%error, "cannot read the stored GitHub App; still waiting for one");
                    }
                    Err(_) => {}
                }
            }
            tokio::select! {
                _ = applied.changed() => {}
                _ = stop.changed() => {}
                () = tokio::time::sleep(APP_POLL_INTERVAL) => {}
            }
        }
    }

    async fn look_in_database(
        &self,
        pool: &DbPool,
        key: &SecretKey,
    ) -> Result<Option<StoredApp>, SetupError> {
        let mut conn = pool.get().await.map_err(|e| SetupError::Database(e.to_string()))?;
        load_app(&mut conn, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::parse(&hex::encode([byte; 32])).expect("64 hex digits")
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_row_and_column() {
        let sealed = seal(&key(1), 42, "private_key", "-----BEGIN PEM-----").expect("sealed");
        assert!(!String::from_utf8_lossy(&sealed).contains("BEGIN"), "not the plain text");
        assert_eq!(open(&key(1), 42, "private_key", &sealed).expect("opens").expose(), "-----BEGIN PEM-----");
        assert!(open(&key(2), 42, "private_key", &sealed).is_err(), "another key");
        assert!(open(&key(1), 43, "private_key", &sealed).is_err(), "another App");
        assert!(open(&key(1), 42, "webhook_secret", &sealed).is_err(), "another column");
        assert!(open(&key(1), 42, "private_key", &sealed[..10]).is_err(), "cut short");
        let again = seal(&key(1), 42, "private_key", "-----BEGIN PEM-----").expect("sealed");
        assert_ne!(sealed, again, "a fresh nonce each time");
        let error = open(&key(2), 42, "private_key", &sealed).expect_err("another key").to_string();
        assert!(!error.contains("BEGIN"), "{error}");
    }

    #[test]
    fn the_manifest_asks_for_what_the_readme_lists() {
        let url = url::Url::parse("https://prmonitor.example.com/").expect("url");
        let manifest = manifest(&url, &default_name(&url));
        assert_eq!(manifest["name"], "prmonitor-prmonitor.example.com");
        assert_eq!(manifest["hook_attributes"]["url"], "https://prmonitor.example.com/webhooks/github");
        assert_eq!(manifest["redirect_url"], "https://prmonitor.example.com/setup/complete");
        assert_eq!(manifest["setup_url"], "https://prmonitor.example.com/setup/installed");
        assert_eq!(manifest["default_permissions"]["administration"], "read");
        assert!(manifest["default_permissions"].as_object().expect("object").values().all(|v| v == "read"));
        for event in EVENTS {
            assert!(crate::webhook::envelope::KNOWN_EVENTS.contains(&event), "{event} is tracked");
        }
        let long = url::Url::parse("https://a-very-long-host-name.example.com").expect("url");
        assert!(default_name(&long).len() <= 34);
    }

    #[test]
    fn states_are_32_random_bytes_in_hex() {
        let (a, b) = (new_state(), new_state());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
