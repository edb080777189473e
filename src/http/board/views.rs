//! The board's HTML. Every value goes through maud, which escapes it; the
//! pages carry no inline script or style, so the Content-Security-Policy can
//! forbid both.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::model::{CheckRow, Overview, PullPage, PullsPage, RepositoryRow, StatusRow};
use crate::db::reads::{PullSummary, CHECKS_STATES};

pub const CSS: &str = include_str!("assets/board.css");
pub const JS: &str = include_str!("assets/board.js");

/// A short fingerprint of an asset, so its URL changes when it does and
/// browsers may cache it for good.
fn fingerprint(asset: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(asset.as_bytes())[..6])
}

/// The assets' URLs, hashed once per process rather than on every page.
fn asset_urls() -> &'static (String, String) {
    static URLS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    URLS.get_or_init(|| {
        (
            format!("/assets/board.css?v={}", fingerprint(CSS)),
            format!("/assets/board.js?v={}", fingerprint(JS)),
        )
    })
}

/// What every page shares: the header, the live indicator, the assets.
pub struct Chrome<'a> {
    pub title: &'a str,
    /// The event stream the page follows, `None` for pages that do not update.
    pub live: Option<String>,
    /// Whether to offer "Log out" (a login made with the cookie).
    pub logged_in: bool,
}

pub fn page(chrome: &Chrome<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (chrome.title) " · prmonitor" }
                // No favicon request: a 404 would be a console error on every page.
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(asset_urls().0);
                script src=(asset_urls().1) defer {}
            }
            body data-live=[chrome.live.as_deref()] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "prmonitor" }
                    nav aria-label="Board" {
                        a href="/" { "Overview" }
                        a href="/pulls" { "Pull requests" }
                    }
                    @if chrome.live.is_some() {
                        span #live .live role="status" aria-live="polite" { "static" }
                    }
                    @if chrome.logged_in {
                        form.logout method="post" action="/logout" { button type="submit" { "Log out" } }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A table's header row: each column's name, and whether it holds numbers
/// (right-aligned).
fn head(columns: &[(&str, bool)]) -> Markup {
    html! {
        thead { tr {
            @for (name, numeric) in columns {
                th scope="col" .num[*numeric] { (name) }
            }
        } }
    }
}

/// The glyph and words of a CI state; the words are for screen readers and
/// for anyone who does not read colours.
fn glyph(checks: &str) -> Markup {
    let (symbol, words) = match checks {
        "failing" => ("✖", "failing"),
        "pending" => ("●", "pending"),
        "passing" => ("✔", "passing"),
        _ => ("–", "no checks"),
    };
    html! { span class={ "glyph " (checks) } role="img" aria-label=(words) title=(words) { (symbol) } }
}

/// "3/12 failing": how many of the head's checks are in its state.
pub fn checks_fraction(summary: &PullSummary) -> String {
    let total = summary.checks_passing + summary.checks_failing + summary.checks_pending;
    match summary.checks.as_str() {
        "failing" => format!("{}/{total} failing", summary.checks_failing),
        "pending" => format!("{}/{total} pending", summary.checks_pending),
        "passing" => format!("{total}/{total} passing"),
        _ => "no checks".to_owned(),
    }
}

fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds().max(0);
    match seconds {
        0..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) title=(at.format("%Y-%m-%d %H:%M:%S UTC")) { (ago(at, now)) } }
}

/// The PR listing of one repository, with one more filter (`("checks", "failing")`).
fn pulls_link(repository: &str, filter: Option<(&str, &str)>) -> String {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    url.append_pair("repository", repository);
    if let Some((name, value)) = filter {
        url.append_pair(name, value);
    }
    format!("/pulls?{}", url.finish())
}

pub fn pull_link(repository: &str, number: i32) -> String {
    format!("/pulls/{repository}/{number}")
}

pub fn overview(overview: &Overview, now: DateTime<Utc>) -> Markup {
    let totals = overview.totals();
    html! {
        h1 { "Overview" }
        section #overview-summary data-live-region {
            p.summary {
                strong { (totals.open) } " open pull requests across " strong { (overview.repositories.len()) }
                " repositories: "
                a.count.failing href="/pulls?checks=failing" { (totals.failing) " failing" } ", "
                a.count.pending href="/pulls?checks=pending" { (totals.pending) " pending" } ", "
                a.count.passing href="/pulls?checks=passing" { (totals.passing) " passing" } "."
            }
        }
        section #repositories data-live-region aria-label="Repositories" {
            @if overview.repositories.is_empty() {
                p.empty { "No repository is watched yet: install the GitHub App on some, or run a reconcile." }
            } @else {
                table.repositories {
                    (head(&[
                        ("Repository", false), ("Open", true), ("Failing", true), ("Pending", true),
                        ("Passing", true), ("Stuck", true), ("Flaky (7 d)", true), ("Last swept", false),
                        ("Sync", false), ("Repairs (24 h)", true),
                    ]))
                    tbody {
                        @for repo in &overview.repositories { (repository_row(repo, now)) }
                    }
                }
            }
        }
    }
}

fn repository_row(repo: &RepositoryRow, now: DateTime<Utc>) -> Markup {
    let name = repo.full_name.as_str();
    html! {
        tr data-repository=(name) {
            th scope="row" data-label="Repository" { a href=(pulls_link(name, None)) { (name) } }
            td.num data-label="Open" data-field="open" { (repo.open) }
            td.num data-label="Failing" data-field="failing" {
                @if repo.failing > 0 { a.count.failing href=(pulls_link(name, Some(("checks", "failing")))) { (repo.failing) } }
                @else { "0" }
            }
            td.num data-label="Pending" data-field="pending" { (repo.pending) }
            td.num data-label="Passing" data-field="passing" { (repo.passing) }
            td.num data-label="Stuck" data-field="stuck" {
                @if repo.stuck > 0 { a href=(pulls_link(name, Some(("stuck", "true")))) { (repo.stuck) } }
                @else { "0" }
            }
            td.num data-label="Flaky (7 d)" data-field="flaky" { (repo.flaky_7d) }
            td data-label="Last swept" {
                @match repo.last_swept_at { Some(at) => (time(at, now)), None => span.muted { "never" } }
            }
            td data-label="Sync" data-field="sync" {
                @if repo.consecutive_failures > 0 {
                    span.badge.bad title=[repo.last_failure_reason.as_deref()] {
                        (repo.consecutive_failures) " failing in a row"
                    }
                } @else { span.badge.good { "ok" } }
            }
            td.num data-label="Repairs (24 h)" data-field="repairs" { (repo.repairs_24h) }
        }
    }
}

pub fn pulls(view: &PullsPage, now: DateTime<Utc>) -> Markup {
    let f = &view.filters;
    let selected = |value: &str, current: &Option<String>| current.as_deref() == Some(value);
    html! {
        h1 { "Pull requests" }
        form.filters method="get" action="/pulls" aria-label="Filters" {
            label { "Repository"
                select name="repository" {
                    option value="" { "all" }
                    @for name in &view.repositories {
                        option value=(name) selected[selected(name, &f.repository)] { (name) }
                    }
                }
            }
            label { "State"
                select name="state" {
                    @for state in ["open", "closed", "merged", "all"] {
                        option value=(state) selected[f.state.as_deref().unwrap_or("open") == state] { (state) }
                    }
                }
            }
            label { "CI"
                select name="checks" {
                    option value="" { "any" }
                    @for state in CHECKS_STATES {
                        option value=(state) selected[selected(state, &f.checks)] { (state) }
                    }
                }
            }
            label { "Draft"
                select name="draft" {
                    option value="" { "any" }
                    option value="true" selected[selected("true", &f.draft)] { "drafts" }
                    option value="false" selected[selected("false", &f.draft)] { "ready" }
                }
            }
            label { "Stuck"
                select name="stuck" {
                    option value="" { "any" }
                    option value="true" selected[selected("true", &f.stuck)] { "stuck" }
                    option value="false" selected[selected("false", &f.stuck)] { "not stuck" }
                }
            }
            label { "Flaky"
                select name="flaky" {
                    option value="" { "any" }
                    option value="true" selected[selected("true", &f.flaky)] { "flaky" }
                    option value="false" selected[selected("false", &f.flaky)] { "not flaky" }
                }
            }
            label { "Author" input type="text" name="author" value=[f.author.as_deref()] maxlength="100" autocomplete="off"; }
            label { "Label" input type="text" name="label" value=[f.label.as_deref()] maxlength="100" autocomplete="off"; }
            label { "No update for (days)"
                input type="number" name="stale" min="1" max="3650" value=[f.stale.as_deref()];
            }
            label { "Sort"
                select name="sort" {
                    option value="updated" selected[f.sort.as_deref().unwrap_or("updated") == "updated"] { "recently updated" }
                    option value="created" selected[selected("created", &f.sort)] { "recently created" }
                }
            }
            button type="submit" { "Filter" }
            a.reset href="/pulls" { "Clear" }
        }
        section #pulls data-live-region aria-label="Pull requests" {
            p.count-line {
                (view.total) " pull requests"
                @if view.total > 0 {
                    ", showing " (view.first()) "–" (view.last())
                }
            }
            @if view.items.is_empty() {
                p.empty { "No pull request matches these filters." }
            } @else {
                table.pulls {
                    (head(&[
                        ("CI", false), ("Pull request", false), ("Repository", false), ("Author", false),
                        ("Updated", false),
                    ]))
                    tbody {
                        @for pull in &view.items {
                            @let s = &pull.summary;
                            tr data-pr={ (pull.repository) "#" (s.number) } data-checks=(s.checks) {
                                td data-label="CI" {
                                    (glyph(&s.checks)) " " span.fraction { (checks_fraction(s)) }
                                    @if s.required_state != "none" && s.required_state != "passing" {
                                        " " span class={ "badge required " (s.required_state) } { "required " (s.required_state) }
                                    }
                                }
                                td data-label="Pull request" {
                                    a.title href=(pull_link(&pull.repository, s.number.0)) { (s.title) }
                                    " " span.muted { "#" (s.number) }
                                    @if s.draft { " " span.badge { "draft" } }
                                    @if s.state != "open" { " " span class={ "badge state " (s.state) } { (s.state) } }
                                    @for label in &s.labels { " " span.label { (label) } }
                                }
                                td data-label="Repository" { (pull.repository) }
                                td data-label="Author" { (s.author) }
                                td data-label="Updated" { (time(s.updated_at, now)) }
                            }
                        }
                    }
                }
            }
            nav.pages aria-label="Pages" {
                @if let Some(previous) = &view.previous { a rel="prev" href=(previous) { "← Newer" } }
                @if let Some(next) = &view.next { a rel="next" href=(next) { "Older →" } }
            }
        }
    }
}

pub fn pull(view: &PullPage, now: DateTime<Utc>) -> Markup {
    let pr = &view.detail;
    html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/pulls" { "Pull requests" } " / "
            a href=(pulls_link(&view.repository, None)) { (view.repository) } " / "
            span { "#" (pr.number) }
        }
        h1 { (pr.title) " " span.muted { "#" (pr.number) } }
        section #pull-summary data-live-region aria-label="Summary" {
            p.meta {
                span class={ "badge state " (pr.state) } { (pr.state) }
                @if pr.draft { " " span.badge { "draft" } }
                " " strong { (pr.author) } " wants to merge "
                code { (pr.head_branch) } " into " code { (pr.base_branch) }
                " · head " code title=(pr.head_sha) { (short(pr.head_sha.as_str())) }
                " · " a href=(pr.html_url) rel="noopener noreferrer" { "Open on GitHub" }
            }
            @if let Some(summary) = &view.summary {
                p.ci data-checks=(summary.checks) {
                    (glyph(&summary.checks)) " " span.fraction { (checks_fraction(summary)) }
                    @if summary.required_state == "none" {
                        " · " span.muted { "no required checks" }
                    } @else {
                        " · required checks: " span class={ "badge required " (summary.required_state) } { (summary.required_state) }
                    }
                }
            }
            @if !pr.labels.is_empty() {
                p { @for label in &pr.labels { span.label { (label) } " " } }
            }
        }
        section #checks data-live-region aria-labelledby="checks-heading" {
            h2 #checks-heading { "Checks on the head" }
            @if view.checks.is_empty() && view.statuses.is_empty() {
                p.empty { "Nothing reports on this commit yet." }
            } @else {
                table.checks {
                    (head(&[
                        ("State", false), ("Check", false), ("Result", false), ("Duration", false),
                        ("Details", false),
                    ]))
                    tbody {
                        @for check in &view.checks { (check_row(check, now)) }
                        @for status in &view.statuses { (status_row(status)) }
                    }
                }
            }
            @if !view.required.is_empty() {
                p.required { "Required by " code { (pr.base_branch) } ": "
                    @for (i, name) in view.required.iter().enumerate() {
                        @if i > 0 { ", " } code { (name) }
                    }
                }
            }
        }
        section #timeline data-live-region aria-labelledby="timeline-heading" {
            h2 #timeline-heading { "Timeline" }
            @if view.timeline.is_empty() {
                p.empty { "No history recorded yet." }
            } @else {
                ol.timeline {
                    @for entry in &view.timeline {
                        li data-kind=(entry.kind) {
                            (time(entry.at, now)) " "
                            span.what { (entry.text) }
                            " " span class={ "cause " (entry.cause) } title=[entry.delivery_id.as_deref().map(|d| format!("delivery {d}"))] { (entry.cause) }
                        }
                    }
                }
            }
        }
    }
}

fn check_row(check: &CheckRow, now: DateTime<Utc>) -> Markup {
    html! {
        tr data-check=(check.name) data-checks=(check.verdict) {
            td data-label="State" { (glyph(check.verdict)) }
            td data-label="Check" { (check.name)
                @if check.earlier_runs > 0 { " " span.muted { "(" (check.earlier_runs) " earlier run" @if check.earlier_runs > 1 { "s" } ")" } }
            }
            td data-label="Result" { (check.result) }
            td data-label="Duration" {
                @match &check.duration { Some(d) => (d), None => @match check.started_at {
                    Some(at) => { "since " (time(at, now)) }, None => span.muted { "–" } } }
            }
            td data-label="Details" {
                @if let Some(url) = &check.url { a href=(url) rel="noopener noreferrer" { "details" } }
            }
        }
    }
}

fn status_row(status: &StatusRow) -> Markup {
    html! {
        tr data-check=(status.context) data-checks=(status.verdict) {
            td data-label="State" { (glyph(status.verdict)) }
            td data-label="Check" { (status.context) " " span.muted { "(status)" } }
            td data-label="Result" { (status.state) @if let Some(d) = &status.description { " — " (d) } }
            td data-label="Duration" { span.muted { "–" } }
            td data-label="Details" {
                @if let Some(url) = &status.target_url { a href=(url) rel="noopener noreferrer" { "details" } }
            }
        }
    }
}

pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

pub fn login(next: &str, problem: Option<&str>, enabled: bool) -> Markup {
    html! {
        h1 { "Log in" }
        @if !enabled {
            p.problem role="alert" {
                "The board is disabled: set PRMONITOR_READ_TOKEN (or PRMONITOR_ADMIN_TOKEN), "
                "or PRMONITOR_BOARD_PUBLIC=true on a private network."
            }
        } @else {
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form.login method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "Read token"
                    input #token type="password" name="token" required autocomplete="current-password" autofocus;
                }
                button #log-in type="submit" { "Log in" }
            }
            p.muted { "The token is PRMONITOR_READ_TOKEN (or the admin token). It is checked, never kept: the cookie "
                "holds a signature of it, valid for 7 days." }
        }
    }
}

pub fn error(status: u16, message: &str) -> Markup {
    html! {
        h1 { "Error " (status) }
        p.problem role="alert" { (message) }
        p { a href="/" { "Back to the overview" } }
    }
}

/// The pagination links of a listing: the same filters, another page.
pub fn page_link(query: &[(&str, String)], page: i64) -> String {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in query {
        url.append_pair(key, value);
    }
    url.append_pair("page", &page.to_string());
    format!("/pulls?{}", url.finish())
}
