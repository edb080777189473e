//! GitHub's App manifest flow (FACTS.md §4, "GitHub App manifest flow"), for
//! a simulator started without an App ([`crate::SimConfig::app_registered`]
//! false): its repositories exist under their accounts, nothing is
//! installed and no webhook is sent until the flow has run.
//!
//! 1. `POST /settings/apps/new` or `POST /organizations/{org}/settings/apps/new`
//!    (web pages, on the simulator's root as GitHub serves them on
//!    github.com) take the form fields `manifest` (JSON) and `state`; a valid
//!    manifest gets a confirmation page (GitHub asks the signed-in user to
//!    confirm), an invalid one a 422 page naming the problem.
//! 2. The confirmation (`POST /settings/apps/new/confirm`, a one-time token)
//!    registers the App and answers `302 Location: redirect_url?code=…&state=…`.
//! 3. `POST {api}/app-manifests/{code}/conversions` (no authentication)
//!    answers the App with its credentials, once per code and within an hour
//!    of the world's clock.
//!
//! Then `GET /apps/{slug}/installations/new` lists the accounts that may
//! install it and its `POST` installs it on every repository of one
//! account: the `installation` `created` webhook goes to the App's hook URL,
//! signed with its webhook secret, and the browser is sent to the manifest's
//! `setup_url`.
//!
//! Known differences from GitHub:
//! - The App's key pair is the fixture key pair ([`crate::SIM_APP_PRIVATE_KEY`]):
//!   generating RSA keys would need a heavy dependency for no gain in
//!   fidelity. Nothing else in the conversion answer differs.
//! - One App per simulator: a second registration is refused (422).
//! - There are no sessions: `/settings/apps/new` registers the App for the
//!   first account of the world (the "signed-in user"); an organization's
//!   page for that organization.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::model::SimInstallation;
use crate::server::{lock, Data};
use crate::webhooks::{Outgoing, WebhookTarget};

/// Form bodies of the web pages: a manifest is a few hundred bytes.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// GitHub: "The code … expires after one hour"; confirmation tokens likewise.
const CODE_LIFETIME: chrono::Duration = chrono::Duration::hours(1);
/// The conversion has no authentication; GitHub limits unauthenticated
/// calls to 60 an hour per client address. The simulator keeps one such
/// budget for all callers (stricter: they share it) over its rate window.
pub const CONVERSIONS_PER_WINDOW: u64 = 60;
/// GitHub caps App names at 34 characters.
const MAX_NAME_LEN: usize = 34;
/// The first id a registered App gets (the built-in App is 4242).
const FIRST_APP_ID: u64 = 900_001;

/// Permissions a manifest may ask for (GitHub's repository and organization
/// permission names the simulator knows); anything else is refused, as the
/// stricter reading of GitHub's undocumented validation.
const PERMISSIONS: &[&str] = &[
    "actions",
    "administration",
    "checks",
    "contents",
    "deployments",
    "issues",
    "members",
    "merge_queues",
    "metadata",
    "pages",
    "pull_requests",
    "repository_hooks",
    "statuses",
    "workflows",
];

/// Events an App may subscribe to, among those the simulator knows.
const EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "issue_comment",
    "issues",
    "merge_group",
    "pull_request",
    "pull_request_review",
    "push",
    "repository",
    "repository_ruleset",
    "status",
    "workflow_run",
];

/// Keys GitHub documents for a manifest; others are refused (stricter).
const MANIFEST_KEYS: &[&str] = &[
    "name",
    "url",
    "hook_attributes",
    "redirect_url",
    "callback_urls",
    "setup_url",
    "description",
    "public",
    "default_events",
    "default_permissions",
    "request_oauth_on_install",
    "setup_on_update",
];

/// A manifest as the simulator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub url: String,
    pub hook_url: String,
    pub hook_active: bool,
    pub redirect_url: String,
    pub setup_url: Option<String>,
    pub description: Option<String>,
    pub public: bool,
    pub permissions: BTreeMap<String, String>,
    pub events: Vec<String>,
}

/// An absolute http(s) URL, or why not.
fn http_url(value: &Value, key: &str) -> Result<String, String> {
    let text = value.as_str().ok_or_else(|| format!("{key} must be a string"))?;
    let url = url::Url::parse(text).map_err(|_| format!("{key} must be an absolute URL, got '{text}'"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{key} must be an http(s) URL, got '{text}'"));
    }
    Ok(text.to_owned())
}

/// Validates a manifest as GitHub does, and stricter where GitHub's rules are
/// not written down: `name` and `redirect_url` required (GitHub generates a
/// name, and without a redirect the flow cannot finish), unknown keys,
/// permissions and events refused.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let object = value.as_object().ok_or("the manifest must be a JSON object")?;
    if let Some(unknown) = object.keys().find(|k| !MANIFEST_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown manifest key '{unknown}'"));
    }
    let name = object.get("name").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err("name is required".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("name is too long (maximum is {MAX_NAME_LEN} characters)"));
    }
    if slug(name).is_empty() {
        return Err("name must contain a letter or a digit".into());
    }
    let url = http_url(object.get("url").ok_or("url is required")?, "url")?;
    let hook = object.get("hook_attributes").ok_or("hook_attributes is required")?;
    let hook = hook.as_object().ok_or("hook_attributes must be an object")?;
    let hook_url =
        http_url(hook.get("url").ok_or("hook_attributes.url is required")?, "hook_attributes.url")?;
    let hook_active = match hook.get("active") {
        None => true,
        Some(Value::Bool(active)) => *active,
        Some(_) => return Err("hook_attributes.active must be true or false".into()),
    };
    let redirect_url =
        http_url(object.get("redirect_url").ok_or("redirect_url is required")?, "redirect_url")?;
    let setup_url = object.get("setup_url").map(|v| http_url(v, "setup_url")).transpose()?;
    let description = match object.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err("description must be a string".into()),
    };
    let public = match object.get("public") {
        None => false,
        Some(Value::Bool(public)) => *public,
        Some(_) => return Err("public must be true or false".into()),
    };
    let mut permissions = BTreeMap::new();
    if let Some(given) = object.get("default_permissions") {
        let given = given.as_object().ok_or("default_permissions must be an object")?;
        for (permission, level) in given {
            if !PERMISSIONS.contains(&permission.as_str()) {
                return Err(format!("default_permissions: unknown permission '{permission}'"));
            }
            match level.as_str() {
                Some(level @ ("read" | "write")) => {
                    permissions.insert(permission.clone(), level.to_owned());
                }
                _ => return Err(format!("default_permissions.{permission} must be 'read' or 'write'")),
            }
        }
    }
    // Every App can read metadata (GitHub adds it).
    permissions.entry("metadata".into()).or_insert_with(|| "read".into());
    let mut events = Vec::new();
    if let Some(given) = object.get("default_events") {
        let given = given.as_array().ok_or("default_events must be an array of event names")?;
        for event in given {
            let event = event.as_str().ok_or("default_events must be an array of event names")?;
            if !EVENTS.contains(&event) {
                return Err(format!("default_events: unknown event '{event}'"));
            }
            if !events.iter().any(|e| e == event) {
                events.push(event.to_owned());
            }
        }
    }
    Ok(Manifest {
        name: name.to_owned(),
        url,
        hook_url,
        hook_active,
        redirect_url,
        setup_url,
        description,
        public,
        permissions,
        events,
    })
}

/// GitHub's slug of an App name: lower case, runs of other characters as one '-'.
pub fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

/// The App the flow registered, with its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredApp {
    pub id: u64,
    pub slug: String,
    pub owner: String,
    pub manifest: Manifest,
    pub client_id: String,
    pub client_secret: String,
    pub webhook_secret: String,
    pub created_at: DateTime<Utc>,
}

/// A manifest waiting for the user's confirmation.
#[derive(Debug, Clone)]
struct Pending {
    owner: String,
    manifest: Manifest,
    state: Option<String>,
    at: DateTime<Utc>,
}

/// A code handed to the redirect: single use, one hour.
#[derive(Debug, Clone)]
struct Code {
    issued_at: DateTime<Utc>,
    used: bool,
}

/// The flow's state in one simulator.
#[derive(Debug, Default)]
pub(crate) struct Apps {
    pub registered: Option<RegisteredApp>,
    pending: HashMap<String, Pending>,
    codes: HashMap<String, Code>,
    /// Installations not made yet, by id: each account's future installation.
    pub uninstalled: BTreeMap<i64, SimInstallation>,
    /// Conversions in the current window: (window start, count).
    conversions: Option<(std::time::Instant, u64)>,
}

/// The minimal HTML escaping the pages need.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><link rel=\"icon\" href=\"data:,\"></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        escape(title)
    ))
}

fn problem(status: StatusCode, message: &str) -> HttpResponse {
    page(status, "Something went wrong", &format!("<p id=\"error\">{}</p>", escape(message)))
}

/// A form body of at most [`MAX_FORM_BYTES`]: its fields, or the page to answer.
async fn form(req: &HttpRequest, payload: web::Payload) -> Result<HashMap<String, String>, HttpResponse> {
    let body = crate::server::read_body(req, payload, MAX_FORM_BYTES).await.map_err(|refusal| {
        problem(refusal.status, &format!("The form was refused: {}", refusal.message()))
    })?;
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The form must be sent as application/x-www-form-urlencoded.",
        ));
    }
    let mut fields = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        if fields.insert(key.into_owned(), value.into_owned()).is_some() {
            return Err(problem(StatusCode::BAD_REQUEST, "A form field was given twice."));
        }
    }
    Ok(fields)
}

fn token(shared: &Data, hex_digits: usize) -> String {
    let mut out = String::new();
    while out.len() < hex_digits {
        out.push_str(&format!("{:016x}", shared.rng.next_u64()));
    }
    out.truncate(hex_digits);
    out
}

/// `POST /settings/apps/new`: the signed-in user's App.
pub(crate) async fn new_user_app(req: HttpRequest, payload: web::Payload, shared: Data) -> HttpResponse {
    let owner = {
        let apps = lock(&shared.apps);
        let world = lock(&shared.world);
        apps.uninstalled.values().chain(world.installations.values()).map(|i| i.account.clone()).min()
    };
    match owner {
        Some(owner) => new_app(&req, payload, &shared, owner).await,
        None => problem(StatusCode::NOT_FOUND, "There is no signed-in user: the world has no accounts."),
    }
}

/// `POST /organizations/{org}/settings/apps/new`.
pub(crate) async fn new_org_app(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    shared: Data,
) -> HttpResponse {
    let org = path.into_inner();
    let known = {
        let apps = lock(&shared.apps);
        let world = lock(&shared.world);
        apps.uninstalled
            .values()
            .chain(world.installations.values())
            .find(|i| i.account.eq_ignore_ascii_case(&org))
            .map(|i| i.account.clone())
    };
    match known {
        Some(owner) => new_app(&req, payload, &shared, owner).await,
        None => problem(StatusCode::NOT_FOUND, &format!("No organization '{org}'.")),
    }
}

async fn new_app(req: &HttpRequest, payload: web::Payload, shared: &Data, owner: String) -> HttpResponse {
    let fields = match form(req, payload).await {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let Some(text) = fields.get("manifest") else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid manifest: the form has no manifest field.",
        );
    };
    let manifest = match parse_manifest(text) {
        Ok(manifest) => manifest,
        Err(reason) => {
            return problem(StatusCode::UNPROCESSABLE_ENTITY, &format!("Invalid manifest: {reason}"))
        }
    };
    let at = lock(&shared.world).now();
    let confirm = token(shared, 32);
    // GitHub's documented form carries the state in the action's query
    // (`…/settings/apps/new?state=…`); a form field is taken too.
    let query_state = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == "state")
        .map(|(_, value)| value.into_owned());
    let state = match (query_state, fields.get("state")) {
        (Some(query), Some(field)) if &query != field => {
            return problem(StatusCode::UNPROCESSABLE_ENTITY, "Two different states were given.");
        }
        (Some(query), _) => Some(query),
        (None, field) => field.cloned(),
    };
    let name = manifest.name.clone();
    {
        let mut apps = lock(&shared.apps);
        apps.pending.retain(|_, p| at - p.at < CODE_LIFETIME);
        apps.pending.insert(confirm.clone(), Pending { owner: owner.clone(), manifest, state, at });
    }
    page(
        StatusCode::OK,
        &format!("Create GitHub App for {owner}"),
        &format!(
            "<p>Create the GitHub App <strong id=\"app-name\">{}</strong> owned by {}?</p>\
             <form method=\"post\" action=\"/settings/apps/new/confirm\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\" id=\"create-app\">Create GitHub App for {}</button></form>",
            escape(&name),
            escape(&owner),
            escape(&confirm),
            escape(&owner)
        ),
    )
}

/// `POST /settings/apps/new/confirm`: registers the App, redirects with a code.
pub(crate) async fn confirm(req: HttpRequest, payload: web::Payload, shared: Data) -> HttpResponse {
    let fields = match form(&req, payload).await {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let now = lock(&shared.world).now();
    let pending = {
        let mut apps = lock(&shared.apps);
        let pending = fields.get("token").and_then(|t| apps.pending.remove(t));
        match pending {
            Some(p) if now - p.at < CODE_LIFETIME => {
                if apps.registered.is_some() {
                    return problem(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "The simulator models one App, and it is registered already.",
                    );
                }
                p
            }
            _ => return problem(StatusCode::NOT_FOUND, "This confirmation is unknown, used or expired."),
        }
    };
    let app = RegisteredApp {
        id: FIRST_APP_ID,
        slug: slug(&pending.manifest.name),
        owner: pending.owner.clone(),
        client_id: format!("Iv1.{}", token(&shared, 16)),
        client_secret: token(&shared, 40),
        webhook_secret: token(&shared, 40),
        created_at: now,
        manifest: pending.manifest,
    };
    let code = token(&shared, 20);
    let mut location = match url::Url::parse(&app.manifest.redirect_url) {
        Ok(url) => url,
        Err(_) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "Invalid manifest: redirect_url"),
    };
    {
        let mut query = location.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = &pending.state {
            query.append_pair("state", state);
        }
    }
    {
        let mut apps = lock(&shared.apps);
        apps.codes.insert(code, Code { issued_at: now, used: false });
        apps.registered = Some(app.clone());
    }
    // The App exists from now on: its JWTs are accepted, its webhook is set.
    lock(&shared.world).app_id = app.id;
    shared.hook_app_id.store(app.id, std::sync::atomic::Ordering::Relaxed);
    if app.manifest.hook_active {
        *lock(&shared.webhook) = Some(WebhookTarget {
            url: app.manifest.hook_url.clone(),
            secret: app.webhook_secret.clone(),
            loss_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            concurrency: 1,
        });
    }
    HttpResponse::Found().insert_header((actix_web::http::header::LOCATION, location.as_str())).finish()
}

/// The App as GitHub's API renders it (`GET /app`, the conversion's answer without credentials).
fn render_app(shared: &Data, app: &RegisteredApp) -> Value {
    let urls = &shared.urls;
    let web = crate::server::origin(urls).to_owned();
    json!({
        "id": app.id,
        "slug": app.slug,
        "node_id": format!("A_sim{}", app.id),
        "client_id": app.client_id,
        "owner": crate::render::user(urls, &app.owner),
        "name": app.manifest.name,
        "description": app.manifest.description,
        "external_url": app.manifest.url,
        "html_url": format!("{web}/apps/{}", app.slug),
        "created_at": app.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "updated_at": app.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "permissions": app.manifest.permissions,
        "events": app.manifest.events,
    })
}

/// `POST /app-manifests/{code}/conversions`.
pub(crate) async fn conversion(req: HttpRequest, path: web::Path<String>, shared: Data) -> HttpResponse {
    const ROUTE: &str = "POST /app-manifests/{code}/conversions";
    let code = path.into_inner();
    let now = lock(&shared.world).now();
    let window = shared.rate_window;
    let answer = {
        let mut apps = lock(&shared.apps);
        let started = std::time::Instant::now();
        let (since, count) = apps.conversions.get_or_insert((started, 0));
        if started.duration_since(*since) >= window {
            *since = started;
            *count = 0;
        }
        *count += 1;
        if *count > CONVERSIONS_PER_WINDOW {
            Err(crate::server::GhError::new(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit.)",
            ))
        } else {
            match apps.codes.get_mut(&code) {
                Some(entry) if !entry.used && now - entry.issued_at < CODE_LIFETIME => {
                    entry.used = true;
                    apps.registered
                        .clone()
                        .ok_or_else(|| crate::server::GhError::new(StatusCode::NOT_FOUND, "Not Found"))
                }
                _ => Err(crate::server::GhError::new(StatusCode::NOT_FOUND, "Not Found")),
            }
        }
    };
    let response = match answer {
        Ok(app) => {
            let mut value = render_app(&shared, &app);
            if let Some(map) = value.as_object_mut() {
                map.insert("client_secret".into(), json!(app.client_secret));
                map.insert("webhook_secret".into(), json!(app.webhook_secret));
                map.insert("pem".into(), json!(crate::SIM_APP_PRIVATE_KEY));
            }
            HttpResponse::Created().json(value)
        }
        Err(refusal) => refusal.response(),
    };
    shared.log(ROUTE, &req, response.status().as_u16(), None);
    response
}

/// The registered App named `slug`, or the page GitHub shows for none.
fn app_named(shared: &Data, slug: &str) -> Result<RegisteredApp, Box<HttpResponse>> {
    lock(&shared.apps)
        .registered
        .clone()
        .filter(|app| app.slug == slug)
        .ok_or_else(|| Box::new(problem(StatusCode::NOT_FOUND, &format!("No GitHub App '{slug}'."))))
}

/// The accounts that may install `app` now: its owner (a private App) or
/// every account (a public one), among those not installed yet.
fn installable(shared: &Data, app: &RegisteredApp) -> BTreeSet<String> {
    lock(&shared.apps)
        .uninstalled
        .values()
        .map(|i| i.account.clone())
        .filter(|account| app.manifest.public || account.eq_ignore_ascii_case(&app.owner))
        .collect()
}

/// `GET /apps/{slug}/installations/new`.
pub(crate) async fn install_page(path: web::Path<String>, shared: Data) -> HttpResponse {
    let app = match app_named(&shared, &path.into_inner()) {
        Ok(app) => app,
        Err(page) => return *page,
    };
    let accounts = installable(&shared, &app);
    let mut body = format!("<p>Install {} on:</p>", escape(&app.manifest.name));
    if accounts.is_empty() {
        body.push_str("<p id=\"nothing-to-install\">No account can install it now.</p>");
    }
    for account in &accounts {
        body.push_str(&format!(
            "<form method=\"post\"><input type=\"hidden\" name=\"account\" value=\"{0}\">\
             <span>{0}</span> <button type=\"submit\" id=\"install-app\">Install</button></form>",
            escape(account)
        ));
    }
    page(StatusCode::OK, &format!("Install {}", app.manifest.name), &body)
}

/// `POST /apps/{slug}/installations/new`: installs the App on every
/// repository of the chosen account.
pub(crate) async fn install(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    shared: Data,
) -> HttpResponse {
    let app = match app_named(&shared, &path.into_inner()) {
        Ok(app) => app,
        Err(page) => return *page,
    };
    let fields = match form(&req, payload).await {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let Some(account) = fields.get("account") else {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "Choose an account to install the App on.");
    };
    if !installable(&shared, &app).contains(account) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("The App cannot be installed on '{account}'."),
        );
    }
    let (installation_id, body) = {
        let mut apps = lock(&shared.apps);
        let mut world = lock(&shared.world);
        let ids: Vec<i64> =
            apps.uninstalled.values().filter(|i| &i.account == account).map(|i| i.id).collect();
        let Some(&first) = ids.first() else {
            return problem(StatusCode::UNPROCESSABLE_ENTITY, "The App is installed there already.");
        };
        for id in &ids {
            if let Some(installation) = apps.uninstalled.remove(id) {
                world.installations.insert(*id, installation);
            }
        }
        let repositories: Vec<Value> = world
            .repos
            .values()
            .filter(|r| r.installation_id == first)
            .map(|r| {
                json!({
                    "id": r.id,
                    "node_id": crate::render::repository(&shared.urls, r)["node_id"],
                    "name": r.name,
                    "full_name": r.full_name(),
                    "private": true,
                })
            })
            .collect();
        let mut installation =
            crate::render::installation(&shared.urls, app.id, &world.installations[&first]);
        installation["permissions"] = json!(app.manifest.permissions);
        installation["events"] = json!(app.manifest.events);
        installation["repository_selection"] = json!("all");
        let payload = json!({
            "action": "created",
            "installation": installation,
            "repositories": repositories,
            "sender": crate::render::user(&shared.urls, account),
        });
        (first, serde_json::to_vec(&payload).unwrap_or_default())
    };
    if lock(&shared.webhook).is_some() {
        shared.dispatcher.enqueue(Outgoing {
            delivery_id: crate::webhooks::delivery_id(&shared.rng),
            event: "installation",
            action: "created",
            body,
            redelivery: false,
        });
    }
    match &app.manifest.setup_url {
        Some(setup) => {
            let mut location = match url::Url::parse(setup) {
                Ok(url) => url,
                Err(_) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "Invalid setup_url"),
            };
            location
                .query_pairs_mut()
                .append_pair("installation_id", &installation_id.to_string())
                .append_pair("setup_action", "install");
            HttpResponse::Found()
                .insert_header((actix_web::http::header::LOCATION, location.as_str()))
                .finish()
        }
        None => page(
            StatusCode::OK,
            &format!("{} installed", app.manifest.name),
            &format!("<p id=\"installed\">Installation {installation_id} on {}.</p>", escape(account)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(overrides: Value) -> String {
        let mut base = json!({
            "name": "prmonitor-example",
            "url": "https://prmonitor.example.com",
            "hook_attributes": { "url": "https://prmonitor.example.com/webhooks/github", "active": true },
            "redirect_url": "https://prmonitor.example.com/setup/complete",
            "default_permissions": { "pull_requests": "read", "checks": "read" },
            "default_events": ["pull_request", "check_run"],
        });
        if let (Some(base), Some(overrides)) = (base.as_object_mut(), overrides.as_object()) {
            for (key, value) in overrides {
                if value.is_null() {
                    base.remove(key);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        base.to_string()
    }

    #[test]
    fn a_valid_manifest_is_read_with_githubs_defaults() {
        let parsed = parse_manifest(&manifest(json!({}))).expect("valid");
        assert_eq!(parsed.name, "prmonitor-example");
        assert!(parsed.hook_active);
        assert!(!parsed.public);
        assert_eq!(parsed.permissions.get("metadata").map(String::as_str), Some("read"), "always granted");
        assert_eq!(parsed.events, ["pull_request", "check_run"]);
    }

    #[test]
    fn invalid_manifests_name_their_problem() {
        let cases = [
            (json!({ "name": null }), "name is required"),
            (json!({ "name": "   " }), "name is required"),
            (json!({ "name": "x".repeat(35) }), "too long"),
            (json!({ "url": null }), "url is required"),
            (json!({ "url": "/relative" }), "url must be an absolute URL"),
            (json!({ "url": "ftp://example.com" }), "http(s)"),
            (json!({ "hook_attributes": null }), "hook_attributes is required"),
            (json!({ "hook_attributes": { "active": true } }), "hook_attributes.url is required"),
            (json!({ "hook_attributes": { "url": "javascript:alert(1)" } }), "hook_attributes.url"),
            (json!({ "redirect_url": null }), "redirect_url is required"),
            (json!({ "default_permissions": { "checks": "admin" } }), "must be 'read' or 'write'"),
            (json!({ "default_permissions": { "secrets_of_the_universe": "read" } }), "unknown permission"),
            (json!({ "default_events": ["pull_requests"] }), "unknown event"),
            (json!({ "default_events": "pull_request" }), "array"),
            (json!({ "callback_url": "https://x" }), "unknown manifest key"),
        ];
        for (overrides, expected) in cases {
            let err = parse_manifest(&manifest(overrides.clone())).expect_err(&overrides.to_string());
            assert!(err.contains(expected), "{overrides}: {err}");
        }
        assert!(parse_manifest("[1]").expect_err("array").contains("object"));
        assert!(parse_manifest("{").expect_err("broken").contains("not JSON"));
    }

    #[test]
    fn slugs_are_lower_case_with_single_dashes() {
        assert_eq!(slug("prmonitor-ci.example.com"), "prmonitor-ci-example-com");
        assert_eq!(slug("  My  App!! "), "my-app");
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
