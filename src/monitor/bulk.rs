//! Bulk reads through GraphQL: the check runs and commit statuses of many
//! commits per query, across repositories of one installation, finished by
//! follow-up queries where a connection has more than one page.
//!
//! The check runs read here are the same rows the REST listing gives
//! (`filter=all`, re-runs included): GraphQL's `id` is REST's `node_id`, its
//! `databaseId` REST's `id` (declared a 32-bit `Int`, decoded as i64),
//! `url` REST's `html_url`, `title`/`summary` REST's `output`.

use std::collections::{BTreeMap, BTreeSet};

use super::data::{CheckRunData, StatusData, STATUS_STATES};
use crate::github::graphql::{
    self, CommitChecks, RepositoryCommits, RunNode, StatusContextNode, SuiteNode, SuiteRunsPage,
};
use crate::github::{GitHubClient, Purpose};
use crate::ids::{CommitSha, InstallationId};

/// A repository's commit, as `owner/name` and SHA.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoCommit {
    pub owner: String,
    pub name: String,
    pub sha: String,
}

/// What reports on one commit: its check runs (re-runs included) and the
/// latest status of each context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reported {
    pub runs: Vec<CheckRunData>,
    pub statuses: Vec<StatusData>,
}

/// What reports on each commit, or why it could not be read.
pub type CommitRuns = BTreeMap<RepoCommit, Result<Reported, String>>;

/// The check runs (re-runs included) and statuses of `commits`, all of one installation,
/// [`graphql::COMMITS_PER_QUERY`] commits a query. A query that fails marks
/// its commits failed; the others still arrive. A commit GitHub does not know
/// has no check runs.
pub async fn check_runs_of_commits(
    client: &GitHubClient,
    installation: Option<InstallationId>,
    commits: &BTreeSet<RepoCommit>,
    purpose: Purpose,
) -> CommitRuns {
    let mut found = CommitRuns::new();
    let all: Vec<&RepoCommit> = commits.iter().collect();
    for chunk in all.chunks(graphql::COMMITS_PER_QUERY) {
        // Grouped by repository: one aliased `repository` per repository.
        let mut by_repo: BTreeMap<(&str, &str), Vec<&RepoCommit>> = BTreeMap::new();
        for commit in chunk {
            by_repo.entry((commit.owner.as_str(), commit.name.as_str())).or_default().push(commit);
        }
        let groups: Vec<Vec<&RepoCommit>> = by_repo.into_values().collect();
        let targets: Vec<RepositoryCommits<'_>> = groups
            .iter()
            .map(|group| RepositoryCommits {
                owner: &group[0].owner,
                name: &group[0].name,
                shas: group.iter().map(|c| c.sha.as_str()).collect(),
            })
            .collect();
        let document = graphql::check_runs_of_commits(&targets);
        let read_at = chrono::Utc::now();
        let answer = match client.graphql(installation, purpose, &document).await {
            Ok(answer) => answer,
            Err(error) => {
                for commit in chunk {
                    found.insert((*commit).clone(), Err(error.to_string()));
                }
                continue;
            }
        };
        for (i, group) in groups.iter().enumerate() {
            for (j, commit) in group.iter().enumerate() {
                let runs = match answer.at(&[&format!("r{i}"), &format!("c{j}")]) {
                    // Unknown to GitHub (or not a commit): nothing reports on it.
                    None => Ok(Reported::default()),
                    Some(value) => match graphql::decode::<CommitChecks>(value) {
                        Ok(mut checks) => {
                            let sha = CommitSha(checks.oid.clone());
                            let contexts = checks.status.take().map(|s| s.contexts).unwrap_or_default();
                            let statuses =
                                contexts.into_iter().filter_map(|c| status(&sha, c, read_at)).collect();
                            finish_commit(client, installation, commit, checks, purpose)
                                .await
                                .map(|runs| Reported { runs, statuses })
                        }
                        Err(error) => Err(format!("check suites of {}: {error}", commit.sha)),
                    },
                };
                found.insert((*commit).clone(), runs);
            }
        }
    }
    found
}

/// A commit's runs: what the first answer held, and the pages it left.
async fn finish_commit(
    client: &GitHubClient,
    installation: Option<InstallationId>,
    commit: &RepoCommit,
    first: CommitChecks,
    purpose: Purpose,
) -> Result<Vec<CheckRunData>, String> {
    let mut runs = Vec::new();
    let mut suites = first.check_suites;
    while let Some(connection) = suites.take() {
        let next = connection.page_info.has_next_page.then_some(connection.page_info.end_cursor.clone());
        for suite in connection.items() {
            runs.extend(suite_runs(client, installation, &first.oid, suite, purpose).await?);
        }
        if let Some(cursor) = next {
            let cursor = cursor.ok_or("a check-suite page without an end cursor")?;
            let document = graphql::check_suites_page(&commit.owner, &commit.name, &commit.sha, &cursor);
            let answer = client.graphql(installation, purpose, &document).await.map_err(|e| e.to_string())?;
            suites = match answer.at(&["repository", "object"]) {
                Some(value) => graphql::decode::<CommitChecks>(value)?.check_suites,
                None => None,
            };
        }
    }
    Ok(runs)
}

/// A suite's runs, following its pages.
async fn suite_runs(
    client: &GitHubClient,
    installation: Option<InstallationId>,
    sha: &str,
    suite: SuiteNode,
    purpose: Purpose,
) -> Result<Vec<CheckRunData>, String> {
    let suite_id = suite.database_id;
    let app_slug = suite.app.as_ref().and_then(|a| a.slug.clone());
    let mut runs = Vec::new();
    let mut page = suite.check_runs;
    while let Some(connection) = page.take() {
        let next = connection.page_info.has_next_page.then_some(connection.page_info.end_cursor.clone());
        runs.extend(connection.items().map(|run| check_run(sha, suite_id, app_slug.clone(), run)));
        if let Some(cursor) = next {
            let cursor = cursor.ok_or("a check-run page without an end cursor")?;
            let document = graphql::check_runs_page(&suite.id, &cursor);
            let answer = client.graphql(installation, purpose, &document).await.map_err(|e| e.to_string())?;
            page = match answer.at(&["node"]) {
                Some(value) => graphql::decode::<SuiteRunsPage>(value)?.check_runs,
                None => None,
            };
        }
    }
    Ok(runs)
}

/// A status context as GraphQL gives it: no REST id, and no update time
/// (a posted status never changes: its update time is its creation's).
/// `None` for a state REST does not have (`EXPECTED` is the rollup's word for
/// a required context nothing reported; a posted status never has it).
fn status(
    sha: &CommitSha,
    context: StatusContextNode,
    read_at: chrono::DateTime<chrono::Utc>,
) -> Option<StatusData> {
    let state = graphql::rest_value(&context.state);
    STATUS_STATES.contains(&state.as_str()).then(|| StatusData {
        github_id: None,
        node_id: Some(context.id),
        sha: sha.clone(),
        context: context.context,
        state,
        description: context.description,
        target_url: context.target_url,
        creator: context.creator.map(|c| c.login),
        created_at: context.created_at,
        updated_at: context.created_at,
        read_at: Some(read_at),
    })
}

fn check_run(sha: &str, check_suite_id: Option<i64>, app_slug: Option<String>, run: RunNode) -> CheckRunData {
    CheckRunData {
        github_id: run.database_id,
        node_id: Some(run.id),
        check_suite_id,
        head_sha: CommitSha(sha.to_owned()),
        name: run.name,
        app_slug,
        status: graphql::rest_value(&run.status),
        conclusion: run.conclusion.as_deref().map(graphql::rest_value),
        details_url: run.details_url,
        html_url: run.url,
        output_title: run.title,
        output_summary: run.summary,
        started_at: run.started_at,
        completed_at: run.completed_at,
    }
}
