//! GitHub's JSON shapes for the simulator's objects.
//!
//! Each object starts from GitHub's own example (fixtures/github/payloads),
//! so every field GitHub sends is there with the right type; the simulator
//! then writes its own values over the fields it models.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::model::{
    latest_runs, PrState, SimCheckRun, SimInstallation, SimMergeGroup, SimPr, SimProtection, SimRepo,
    SimStatus,
};

/// The owner, repository and host names the templates were recorded with.
const TEMPLATE_FULL_NAME: &str = "Codertocat/Hello-World";
const TEMPLATE_OWNER: &str = "Codertocat";
const TEMPLATE_API: &str = "https://api.github.com";
const TEMPLATE_HTML: &str = "https://github.com";

struct Templates {
    pull_request: Value,
    repository: Value,
    user: Value,
    check_run: Value,
    check_suite: Value,
    label: Value,
    installation: Value,
}

fn parse(text: &str, key: &str) -> Value {
    // The templates are compiled in and parsed once; a broken one is a build defect.
    #[allow(clippy::expect_used)]
    let value: Value = serde_json::from_str(text).expect("template fixtures are JSON");
    value[key].clone()
}

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let opened = include_str!("../../../fixtures/github/payloads/pull_request/opened.json");
        let labeled = include_str!("../../../fixtures/github/payloads/pull_request/labeled.json");
        let completed = include_str!("../../../fixtures/github/payloads/check_run/completed.json");
        let suite = include_str!("../../../fixtures/github/payloads/check_suite/completed.json");
        let installation = include_str!("../../../fixtures/github/payloads/installation/created.json");
        let mut check_run = parse(completed, "check_run");
        // The example's suite carries a deployment that the model does not have.
        if let Some(run) = check_run.as_object_mut() {
            run.remove("deployment");
        }
        Templates {
            pull_request: parse(opened, "pull_request"),
            repository: parse(opened, "repository"),
            user: parse(opened, "sender"),
            check_run,
            check_suite: parse(suite, "check_suite"),
            label: parse(labeled, "label"),
            installation: parse(installation, "installation"),
        }
    })
}

/// Where links in rendered objects point.
#[derive(Debug, Clone)]
pub struct Urls {
    /// The API root, e.g. `http://127.0.0.1:4000/api/v3`.
    pub api: String,
    /// The web root for html_url fields.
    pub html: String,
}

/// Replaces `from` by `to` inside every string of `value`.
fn rewrite(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| rewrite(v, from, to)),
        _ => {}
    }
}

fn set(value: &mut Value, key: &str, new: Value) {
    if let Some(map) = value.as_object_mut() {
        map.insert(key.to_owned(), new);
    }
}

fn time(at: DateTime<Utc>) -> Value {
    Value::String(at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn opt_time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, time)
}

/// A stable positive id for a login, so the same user always has the same id.
pub fn user_id(login: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in login.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 900_000_000) as i64 + 1_000_000
}

/// The global node id of an object: REST's `node_id`, the webhooks' `node_id`
/// and GraphQL's `id` are this one string, so a client can join them.
pub(crate) fn node_id(kind: &str, id: i64) -> String {
    format!("{kind}_sim{id}")
}

pub fn user(urls: &Urls, login: &str) -> Value {
    let mut user = templates().user.clone();
    rewrite(&mut user, TEMPLATE_API, &urls.api);
    rewrite(&mut user, TEMPLATE_HTML, &urls.html);
    rewrite(&mut user, TEMPLATE_OWNER, login);
    set(&mut user, "login", json!(login));
    set(&mut user, "id", json!(user_id(login)));
    set(&mut user, "node_id", json!(node_id("U", user_id(login))));
    set(&mut user, "type", json!("User"));
    user
}

pub fn repository(urls: &Urls, repo: &SimRepo) -> Value {
    let mut value = templates().repository.clone();
    let full_name = repo.full_name();
    rewrite(&mut value, TEMPLATE_API, &urls.api);
    rewrite(&mut value, TEMPLATE_HTML, &urls.html);
    rewrite(&mut value, TEMPLATE_FULL_NAME, &full_name);
    rewrite(&mut value, "git://github.com", "git://sim.invalid");
    set(&mut value, "id", json!(repo.id));
    set(&mut value, "node_id", json!(node_id("R", repo.id)));
    set(&mut value, "name", json!(repo.name));
    set(&mut value, "full_name", json!(full_name));
    set(&mut value, "owner", user(urls, &repo.owner));
    set(&mut value, "private", json!(true));
    set(&mut value, "visibility", json!("private"));
    value
}

fn label(urls: &Urls, repo: &SimRepo, name: &str) -> Value {
    let mut value = templates().label.clone();
    set(&mut value, "id", json!(user_id(name)));
    set(&mut value, "node_id", json!(node_id("LA", user_id(name))));
    set(&mut value, "url", json!(format!("{}/repos/{}/labels/{}", urls.api, repo.full_name(), name)));
    set(&mut value, "name", json!(name));
    set(&mut value, "description", Value::Null);
    set(&mut value, "default", json!(false));
    value
}

/// A label as the `labeled` / `unlabeled` events carry it.
pub fn event_label(urls: &Urls, repo: &SimRepo, name: &str) -> Value {
    label(urls, repo, name)
}

fn git_ref(urls: &Urls, repo: &SimRepo, repo_json: &Value, ref_name: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{ref_name}", repo.owner),
        "ref": ref_name,
        "sha": sha,
        "user": user(urls, &repo.owner),
        "repo": repo_json,
    })
}

pub fn pull_request(urls: &Urls, repo: &SimRepo, pr: &SimPr) -> Value {
    let mut value = templates().pull_request.clone();
    let full_name = repo.full_name();
    rewrite(&mut value, TEMPLATE_API, &urls.api);
    rewrite(&mut value, TEMPLATE_HTML, &urls.html);
    rewrite(&mut value, TEMPLATE_FULL_NAME, &full_name);
    let api = format!("{}/repos/{full_name}", urls.api);
    let html = format!("{}/{full_name}", urls.html);
    let n = pr.number;
    set(&mut value, "url", json!(format!("{api}/pulls/{n}")));
    set(&mut value, "id", json!(pr.id));
    set(&mut value, "node_id", json!(node_id("PR", pr.id)));
    set(&mut value, "html_url", json!(format!("{html}/pull/{n}")));
    set(&mut value, "diff_url", json!(format!("{html}/pull/{n}.diff")));
    set(&mut value, "patch_url", json!(format!("{html}/pull/{n}.patch")));
    set(&mut value, "issue_url", json!(format!("{api}/issues/{n}")));
    set(&mut value, "commits_url", json!(format!("{api}/pulls/{n}/commits")));
    set(&mut value, "review_comments_url", json!(format!("{api}/pulls/{n}/comments")));
    set(&mut value, "comments_url", json!(format!("{api}/issues/{n}/comments")));
    set(&mut value, "statuses_url", json!(format!("{api}/statuses/{}", pr.head_sha)));
    set(&mut value, "number", json!(n));
    let closed = pr.state != PrState::Open;
    set(&mut value, "state", json!(if closed { "closed" } else { "open" }));
    set(&mut value, "locked", json!(false));
    set(&mut value, "title", json!(pr.title));
    set(&mut value, "user", user(urls, &pr.author));
    set(&mut value, "body", pr.body.clone().map_or(Value::Null, Value::String));
    set(&mut value, "created_at", time(pr.created_at));
    set(&mut value, "updated_at", time(pr.updated_at));
    set(&mut value, "closed_at", opt_time(pr.closed_at));
    set(&mut value, "merged_at", opt_time(pr.merged_at));
    set(&mut value, "merge_commit_sha", pr.merge_commit_sha.clone().map_or(Value::Null, Value::String));
    let assignees: Vec<Value> = pr.assignees.iter().map(|login| user(urls, login)).collect();
    set(&mut value, "assignee", assignees.first().cloned().unwrap_or(Value::Null));
    set(&mut value, "assignees", Value::Array(assignees));
    set(&mut value, "requested_reviewers", json!([]));
    set(&mut value, "requested_teams", json!([]));
    set(&mut value, "labels", Value::Array(pr.labels.iter().map(|l| label(urls, repo, l)).collect()));
    set(&mut value, "milestone", Value::Null);
    let repo_json = repository(urls, repo);
    set(&mut value, "head", git_ref(urls, repo, &repo_json, &pr.head_ref, &pr.head_sha));
    set(&mut value, "base", git_ref(urls, repo, &repo_json, &pr.base_ref, &pr.base_sha));
    set(&mut value, "auto_merge", Value::Null);
    set(&mut value, "active_lock_reason", Value::Null);
    set(&mut value, "draft", json!(pr.draft));
    let merged = pr.state == PrState::Merged;
    set(&mut value, "merged", json!(merged));
    set(&mut value, "merged_by", if merged { user(urls, &repo.owner) } else { Value::Null });
    set(&mut value, "mergeable", Value::Null);
    set(&mut value, "rebaseable", Value::Null);
    set(&mut value, "mergeable_state", json!("unknown"));
    value
}

fn pr_ref_for_check(urls: &Urls, repo: &SimRepo, pr: &SimPr) -> Value {
    let repo_ref = json!({ "id": repo.id, "url": format!("{}/repos/{}", urls.api, repo.full_name()), "name": repo.name });
    json!({
        "url": format!("{}/repos/{}/pulls/{}", urls.api, repo.full_name(), pr.number),
        "id": pr.id,
        "number": pr.number,
        "head": { "ref": pr.head_ref, "sha": pr.head_sha, "repo": repo_ref },
        "base": { "ref": pr.base_ref, "sha": pr.base_sha, "repo": repo_ref },
    })
}

/// The open PRs whose head is `sha`: what GitHub lists in `pull_requests`.
fn prs_for_sha(urls: &Urls, repo: &SimRepo, sha: &str) -> Value {
    Value::Array(
        repo.prs_with_head(sha)
            .filter(|pr| pr.state == PrState::Open)
            .map(|pr| pr_ref_for_check(urls, repo, pr))
            .collect(),
    )
}

/// A suite's status and conclusion, from the latest run of each name: a
/// passing re-run clears the failure it re-ran, and a queued re-run reopens the suite.
pub(crate) fn suite_status(repo: &SimRepo, suite_id: i64, sha: &str) -> (&'static str, Value) {
    let runs = latest_runs(repo.runs_for(sha).filter(|r| r.check_suite_id == suite_id));
    if runs.iter().all(|r| r.status == "completed") {
        let failed = runs
            .iter()
            .any(|r| matches!(r.conclusion.as_deref(), Some("failure" | "timed_out" | "cancelled")));
        ("completed", json!(if failed { "failure" } else { "success" }))
    } else if runs.iter().any(|r| r.status == "in_progress") {
        ("in_progress", Value::Null)
    } else {
        ("queued", Value::Null)
    }
}

pub fn check_suite(urls: &Urls, repo: &SimRepo, suite_id: i64, head_sha: &str) -> Value {
    let mut value = templates().check_suite.clone();
    rewrite(&mut value, TEMPLATE_API, &urls.api);
    rewrite(&mut value, TEMPLATE_HTML, &urls.html);
    rewrite(&mut value, TEMPLATE_FULL_NAME, &repo.full_name());
    let runs: Vec<&SimCheckRun> = repo.runs_for(head_sha).filter(|r| r.check_suite_id == suite_id).collect();
    let (status, conclusion) = suite_status(repo, suite_id, head_sha);
    let created = runs.iter().filter_map(|r| r.started_at).min().unwrap_or_else(crate::model::now);
    let updated = runs.iter().filter_map(|r| r.completed_at.or(r.started_at)).max().unwrap_or(created);
    set(&mut value, "id", json!(suite_id));
    set(&mut value, "node_id", json!(node_id("CS", suite_id)));
    set(&mut value, "head_branch", json!(runs.first().map_or("main", |r| r.head_branch.as_str())));
    set(&mut value, "head_sha", json!(head_sha));
    set(&mut value, "status", json!(status));
    set(&mut value, "conclusion", conclusion);
    set(&mut value, "url", json!(format!("{}/repos/{}/check-suites/{suite_id}", urls.api, repo.full_name())));
    set(&mut value, "after", json!(head_sha));
    set(&mut value, "pull_requests", prs_for_sha(urls, repo, head_sha));
    set(
        &mut value,
        "check_runs_url",
        json!(format!("{}/repos/{}/check-suites/{suite_id}/check-runs", urls.api, repo.full_name())),
    );
    set(&mut value, "latest_check_runs_count", json!(latest_runs(runs.iter().copied()).len()));
    set(&mut value, "created_at", time(created));
    set(&mut value, "updated_at", time(updated));
    let commit = head_commit(&value, head_sha);
    set(&mut value, "head_commit", commit);
    value
}

fn head_commit(suite: &Value, sha: &str) -> Value {
    let mut commit = suite["head_commit"].clone();
    set(&mut commit, "id", json!(sha));
    set(&mut commit, "tree_id", json!(sha));
    commit
}

pub fn check_run(urls: &Urls, repo: &SimRepo, run: &SimCheckRun) -> Value {
    let mut value = templates().check_run.clone();
    let full_name = repo.full_name();
    rewrite(&mut value, TEMPLATE_API, &urls.api);
    rewrite(&mut value, TEMPLATE_HTML, &urls.html);
    rewrite(&mut value, TEMPLATE_FULL_NAME, &full_name);
    set(&mut value, "id", json!(run.id));
    set(&mut value, "node_id", json!(node_id("CR", run.id)));
    set(&mut value, "head_sha", json!(run.head_sha));
    // GitHub's REST App object carries the slug (its example payload does not):
    // the same one GraphQL's `CheckSuite.app.slug` gives.
    if let Some(app) = value.get_mut("app") {
        set(app, "slug", json!(check_app(urls).slug));
    }
    set(&mut value, "external_id", json!(run.id.to_string()));
    set(&mut value, "url", json!(format!("{}/repos/{full_name}/check-runs/{}", urls.api, run.id)));
    set(&mut value, "html_url", json!(format!("{}/{full_name}/runs/{}", urls.html, run.id)));
    set(&mut value, "details_url", json!(format!("{}/ci/{full_name}/{}", urls.html, run.id)));
    set(&mut value, "status", json!(run.status));
    set(&mut value, "conclusion", run.conclusion.clone().map_or(Value::Null, Value::String));
    set(&mut value, "started_at", opt_time(run.started_at));
    set(&mut value, "completed_at", opt_time(run.completed_at));
    set(&mut value, "name", json!(run.name));
    let mut output = Map::new();
    output.insert("title".into(), run.output_title.clone().map_or(Value::Null, Value::String));
    output.insert("summary".into(), run.output_summary.clone().map_or(Value::Null, Value::String));
    output.insert("text".into(), Value::Null);
    output.insert("annotations_count".into(), json!(0));
    output.insert(
        "annotations_url".into(),
        json!(format!("{}/repos/{full_name}/check-runs/{}/annotations", urls.api, run.id)),
    );
    set(&mut value, "output", Value::Object(output));
    let mut suite = value["check_suite"].clone();
    let (status, conclusion) = suite_status(repo, run.check_suite_id, &run.head_sha);
    set(&mut suite, "id", json!(run.check_suite_id));
    set(&mut suite, "node_id", json!(node_id("CS", run.check_suite_id)));
    set(&mut suite, "head_branch", json!(run.head_branch));
    set(&mut suite, "head_sha", json!(run.head_sha));
    set(&mut suite, "status", json!(status));
    set(&mut suite, "conclusion", conclusion);
    set(
        &mut suite,
        "url",
        json!(format!("{}/repos/{full_name}/check-suites/{}", urls.api, run.check_suite_id)),
    );
    set(&mut suite, "after", json!(run.head_sha));
    set(&mut suite, "pull_requests", prs_for_sha(urls, repo, &run.head_sha));
    set(&mut value, "check_suite", suite);
    set(&mut value, "pull_requests", prs_for_sha(urls, repo, &run.head_sha));
    value
}

/// The App behind every check suite and run: the one REST's `check_run.app`
/// shows (GitHub's example payload), so GraphQL's `CheckSuite.app` agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckApp {
    pub id: i64,
    pub node_id: String,
    pub name: String,
    /// The example has no `slug`; GitHub's slug is the last part of the App's page URL.
    pub slug: String,
    pub html_url: String,
}

pub(crate) fn check_app(urls: &Urls) -> CheckApp {
    let mut app = templates().check_run["app"].clone();
    rewrite(&mut app, TEMPLATE_HTML, &urls.html);
    let text = |key: &str| app[key].as_str().unwrap_or_default().to_owned();
    let html_url = text("html_url");
    CheckApp {
        id: app["id"].as_i64().unwrap_or_default(),
        node_id: text("node_id"),
        name: text("name"),
        slug: html_url.rsplit('/').next().unwrap_or_default().to_owned(),
        html_url,
    }
}

/// The `installation` object of `GET /app/installations`.
pub fn installation(urls: &Urls, app_id: u64, installation: &SimInstallation) -> Value {
    let mut value = templates().installation.clone();
    rewrite(&mut value, TEMPLATE_API, &urls.api);
    rewrite(&mut value, TEMPLATE_HTML, &urls.html);
    set(&mut value, "id", json!(installation.id));
    set(&mut value, "account", user(urls, &installation.account));
    set(&mut value, "app_id", json!(app_id));
    set(&mut value, "target_id", json!(user_id(&installation.account)));
    set(
        &mut value,
        "access_tokens_url",
        json!(format!("{}/app/installations/{}/access_tokens", urls.api, installation.id)),
    );
    set(&mut value, "repositories_url", json!(format!("{}/installation/repositories", urls.api)));
    set(
        &mut value,
        "suspended_at",
        if installation.suspended { time(crate::model::now()) } else { Value::Null },
    );
    value
}

/// `installation` as webhook payloads carry it (the "lite" form).
pub fn installation_lite(id: i64) -> Value {
    json!({ "id": id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{id}") })
}

// ---------------------------------------------------------------- commit statuses

/// A commit as GraphQL names it (`Commit.id`): the `node_id` REST gives it too.
pub(crate) fn commit_node_id(repo: &SimRepo, sha: &str) -> String {
    format!("C_sim{}_{sha}", repo.id)
}

/// A commit status as the combined status lists it (GitHub's example there
/// has no `creator`).
pub fn simple_status(urls: &Urls, repo: &SimRepo, status: &SimStatus) -> Value {
    json!({
        "url": format!("{}/repos/{}/statuses/{}", urls.api, repo.full_name(), status.sha),
        "avatar_url": user(urls, &status.creator)["avatar_url"],
        "id": status.id,
        "node_id": node_id("SC", status.id),
        "state": status.state,
        "description": status.description,
        "target_url": status.target_url,
        "context": status.context,
        "created_at": time(status.created_at),
        "updated_at": time(status.updated_at),
    })
}

/// A commit status as `GET …/statuses` lists it: with its `creator`.
pub fn status(urls: &Urls, repo: &SimRepo, status: &SimStatus) -> Value {
    let mut value = simple_status(urls, repo, status);
    set(&mut value, "creator", user(urls, &status.creator));
    value
}

/// `GET /repos/{owner}/{repo}/commits/{ref}/status`: one page of the latest
/// status of each context, `total_count` of all contexts, the combined state.
pub fn combined_status(
    urls: &Urls,
    repo: &SimRepo,
    sha: &str,
    state: &str,
    page: &[&SimStatus],
    total: usize,
) -> Value {
    let commit_url = format!("{}/repos/{}/commits/{sha}", urls.api, repo.full_name());
    json!({
        "state": state,
        "statuses": page.iter().map(|s| simple_status(urls, repo, s)).collect::<Vec<_>>(),
        "sha": sha,
        "total_count": total,
        "repository": repository(urls, repo),
        "commit_url": commit_url,
        "url": format!("{commit_url}/status"),
    })
}

/// The branches that contain `sha` as far as the simulator knows them (open
/// PR heads, queued merge groups, base branch heads), at most 10 as GitHub's.
fn branches_with(urls: &Urls, repo: &SimRepo, sha: &str) -> Value {
    let mut names: Vec<String> = repo
        .prs_with_head(sha)
        .filter(|pr| pr.state == PrState::Open)
        .map(|pr| pr.head_ref.clone())
        .collect();
    names.extend(
        repo.merge_groups
            .iter()
            .filter(|g| g.is_active() && g.head_sha == sha)
            .map(|g| g.head_branch().to_owned()),
    );
    names.extend(repo.branch_heads.iter().filter(|(_, head)| *head == sha).map(|(name, _)| name.clone()));
    names.sort();
    names.dedup();
    Value::Array(
        names
            .into_iter()
            .take(10)
            .map(|name| {
                json!({
                    "name": name,
                    "commit": { "sha": sha, "url": format!("{}/repos/{}/commits/{sha}", urls.api, repo.full_name()) },
                    "protected": repo.protection.contains_key(&name),
                })
            })
            .collect(),
    )
}

/// A commit as the `status` event carries it. The simulator keeps no commit
/// contents: the author is the pull request's (or the owner), the dates the status's.
fn status_commit(urls: &Urls, repo: &SimRepo, sha: &str, at: DateTime<Utc>) -> Value {
    let full_name = repo.full_name();
    let author = repo.prs_with_head(sha).next().map_or(repo.owner.as_str(), |pr| pr.author.as_str());
    let person = |login: &str| json!({ "name": login, "email": format!("{login}@users.noreply.github.com"), "date": time(at) });
    json!({
        "sha": sha,
        "node_id": commit_node_id(repo, sha),
        "commit": {
            "author": person(author),
            "committer": person(author),
            "message": format!("Commit {}", &sha[..sha.len().min(7)]),
            "tree": { "sha": sha, "url": format!("{}/repos/{full_name}/git/trees/{sha}", urls.api) },
            "url": format!("{}/repos/{full_name}/git/commits/{sha}", urls.api),
            "comment_count": 0,
            "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null },
        },
        "url": format!("{}/repos/{full_name}/commits/{sha}", urls.api),
        "html_url": format!("{}/{full_name}/commit/{sha}", urls.html),
        "comments_url": format!("{}/repos/{full_name}/commits/{sha}/comments", urls.api),
        "author": user(urls, author),
        "committer": user(urls, author),
        "parents": [],
    })
}

/// The `status` event's body (GitHub's event has no `action`), before
/// `repository`, `sender` and `installation` are added.
pub fn status_event(urls: &Urls, repo: &SimRepo, status: &SimStatus) -> Value {
    json!({
        "id": status.id,
        "sha": status.sha,
        "name": repo.full_name(),
        "avatar_url": user(urls, &status.creator)["avatar_url"],
        "target_url": status.target_url,
        "context": status.context,
        "description": status.description,
        "state": status.state,
        "commit": status_commit(urls, repo, &status.sha, status.created_at),
        "branches": branches_with(urls, repo, &status.sha),
        "created_at": time(status.created_at),
        "updated_at": time(status.updated_at),
    })
}

// ---------------------------------------------------------------- protection and merge queues

/// `GET …/branches/{branch}/protection/required_status_checks`. Every
/// requirement accepts any App (`app_id` null), as one set without choosing an App does.
pub fn required_status_checks(urls: &Urls, repo: &SimRepo, branch: &str, rule: &SimProtection) -> Value {
    let url = format!(
        "{}/repos/{}/branches/{branch}/protection/required_status_checks",
        urls.api,
        repo.full_name()
    );
    json!({
        "url": url,
        "strict": rule.strict,
        "contexts": rule.contexts,
        "contexts_url": format!("{url}/contexts"),
        "checks": rule.contexts.iter().map(|c| json!({ "context": c, "app_id": null })).collect::<Vec<_>>(),
    })
}

/// The `rule` of a `branch_protection_rule` event: GitHub's fields, with
/// everything but required status checks switched off.
pub fn branch_protection_rule(repo: &SimRepo, branch: &str, rule: &SimProtection) -> Value {
    let checks_level = if rule.contexts.is_empty() { "off" } else { "non_admins" };
    json!({
        "id": rule.id,
        "repository_id": repo.id,
        "name": branch,
        "created_at": time(rule.created_at),
        "updated_at": time(rule.updated_at),
        "pull_request_reviews_enforcement_level": "off",
        "required_approving_review_count": 0,
        "dismiss_stale_reviews_on_push": false,
        "require_code_owner_review": false,
        "authorized_dismissal_actors_only": false,
        "ignore_approvals_from_contributors": false,
        "require_last_push_approval": false,
        "required_status_checks": rule.contexts,
        "required_status_checks_enforcement_level": checks_level,
        "strict_required_status_checks_policy": rule.strict,
        "signature_requirement_enforcement_level": "off",
        "linear_history_requirement_enforcement_level": "off",
        "admin_enforced": false,
        "create_protected": false,
        "allow_force_pushes_enforcement_level": "off",
        "allow_deletions_enforcement_level": "off",
        "merge_queue_enforcement_level": "off",
        "required_deployments_enforcement_level": "off",
        "required_conversation_resolution_level": "off",
        "authorized_actors_only": false,
        "authorized_actor_names": [],
    })
}

/// The `merge_group` of the `merge_group` events.
pub fn merge_group(repo: &SimRepo, group: &SimMergeGroup) -> Value {
    let head = repo.pulls.get(&group.pr_number).map_or("", |pr| pr.head_ref.as_str());
    json!({
        "head_sha": group.head_sha,
        "head_ref": group.head_ref,
        "base_ref": group.base_ref,
        "base_sha": group.base_sha,
        "head_commit": {
            "id": group.head_sha,
            "tree_id": group.head_sha,
            "message": format!("Merge pull request #{} from {}/{head}", group.pr_number, repo.owner),
            "timestamp": time(group.created_at),
            "author": { "name": group.enqueuer, "email": format!("{}@users.noreply.github.com", group.enqueuer) },
            "committer": { "name": "GitHub", "email": "noreply@github.com" },
        },
    })
}
