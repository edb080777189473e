//! GitHub's GraphQL API, for the bulk reads that REST makes expensive.
//!
//! REST stays for webhook-driven reads, where an ETag earned by the same
//! token often still gives a free 304. GraphQL serves two bulk reads:
//! - the check runs of many commits in one query (REST needs one call per
//!   commit, and after an installation token's rotation every one of them
//!   pays: ETags belong to the token that earned them);
//! - a survey of many repositories' open PRs in one query, with what tells
//!   whether a PR changed (`updatedAt`, head, draft, state, the head's rollup)
//!   and each one's merge queue entry;
//! - one repository's merge queues (its open PRs' queue entries), for the
//!   sweeps that do not survey: GitHub has no REST listing of merge queues.
//!
//! Every document here is built by a function of this module so that the
//! tests can validate each of them against GitHub's published schema
//! (fixtures/github/graphql/schema.graphql).
//!
//! Costs (GitHub's formula: the requests needed to fill every connection,
//! divided by 100): a commit costs 1 (its check suites) + [`SUITES_PER_COMMIT`]
//! (their runs), so 50 commits cost 3 points; a repository in the survey
//! costs 2 (its open PRs and its recently closed ones), so 50 repositories
//! cost 1 point.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Commits per check-run query. GitHub ends queries that run over 10 s; 50
/// heads with their runs stay far below that and cost 3 points.
pub const COMMITS_PER_QUERY: usize = 50;
/// Check suites read with each commit; a commit with more is finished by
/// [`check_suites_page`]. Few heads have more than a handful of apps reporting.
pub const SUITES_PER_COMMIT: u32 = 5;
/// GitHub's largest page.
pub const PAGE: u32 = 100;
/// Recently closed or merged PRs listed per repository in a survey; a
/// repository with more closed since the last sweep is swept on its own.
pub const RECENTLY_CLOSED_PER_REPOSITORY: u32 = 10;

/// A query and its variables, as POSTed to GitHub.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub query: String,
    pub variables: Value,
}

impl Document {
    pub fn body(&self) -> Value {
        json!({ "query": self.query, "variables": self.variables })
    }
}

/// The fields of a check run prmonitor stores, and what finds its suite.
const CHECK_SUITE_FIELDS: &str = "pageInfo { hasNextPage endCursor } \
     nodes { id databaseId app { slug } \
       checkRuns(first: 100, filterBy: { checkType: ALL }) { pageInfo { hasNextPage endCursor } \
         nodes { id databaseId name status conclusion startedAt completedAt detailsUrl url title summary } } }";

const RATE_LIMIT: &str = "rateLimit { cost remaining resetAt }";

/// A commit's latest status of each context. `Commit.status.contexts` is a
/// list, not a connection: it adds nothing to a query's cost. GraphQL gives
/// no REST id and no update time (a status never changes once posted).
const STATUS_FIELDS: &str =
    "status { contexts { id context state description targetUrl createdAt creator { login } } }";

/// One repository's commits whose check runs to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryCommits<'a> {
    pub owner: &'a str,
    pub name: &'a str,
    pub shas: Vec<&'a str>,
}

/// The check suites (with their runs) of commits across repositories; at
/// most [`COMMITS_PER_QUERY`] commits in all. Aliases: `r{i}` per
/// repository, `c{j}` per commit within it.
pub fn check_runs_of_commits(repositories: &[RepositoryCommits<'_>]) -> Document {
    let mut declarations = Vec::new();
    let mut selections = String::new();
    let mut variables = Map::new();
    for (i, repo) in repositories.iter().enumerate() {
        declarations.push(format!("$o{i}: String!, $n{i}: String!"));
        variables.insert(format!("o{i}"), json!(repo.owner));
        variables.insert(format!("n{i}"), json!(repo.name));
        let _ = write!(selections, " r{i}: repository(owner: $o{i}, name: $n{i}) {{");
        for (j, sha) in repo.shas.iter().enumerate() {
            declarations.push(format!("$s{i}_{j}: GitObjectID!"));
            variables.insert(format!("s{i}_{j}"), json!(sha));
            let _ = write!(
                selections,
                " c{j}: object(oid: $s{i}_{j}) {{ ... on Commit {{ oid {STATUS_FIELDS} checkSuites(first: {SUITES_PER_COMMIT}) {{ {CHECK_SUITE_FIELDS} }} }} }}"
            );
        }
        selections.push_str(" }");
    }
    Document {
        query: format!(
            "query CheckRunsOfCommits({}) {{{selections} {RATE_LIMIT} }}",
            declarations.join(", ")
        ),
        variables: Value::Object(variables),
    }
}

/// The next check suites of one commit, after `cursor`.
pub fn check_suites_page(owner: &str, name: &str, sha: &str, cursor: &str) -> Document {
    Document {
        query: format!(
            "query CheckSuitesPage($owner: String!, $name: String!, $sha: GitObjectID!, $after: String!) {{ \
               repository(owner: $owner, name: $name) {{ object(oid: $sha) {{ ... on Commit {{ oid \
                 checkSuites(first: {PAGE}, after: $after) {{ {CHECK_SUITE_FIELDS} }} }} }} }} {RATE_LIMIT} }}"
        ),
        variables: json!({ "owner": owner, "name": name, "sha": sha, "after": cursor }),
    }
}

/// The next check runs of one suite (by node id), after `cursor`.
pub fn check_runs_page(suite_id: &str, cursor: &str) -> Document {
    Document {
        query: format!(
            "query CheckRunsPage($suite: ID!, $after: String!) {{ node(id: $suite) {{ ... on CheckSuite {{ \
               checkRuns(first: {PAGE}, after: $after, filterBy: {{ checkType: ALL }}) {{ pageInfo {{ hasNextPage endCursor }} \
                 nodes {{ id databaseId name status conclusion startedAt completedAt detailsUrl url title summary }} }} }} }} {RATE_LIMIT} }}"
        ),
        variables: json!({ "suite": suite_id, "after": cursor }),
    }
}

/// A pull request's place in its base branch's merge queue: no connection,
/// so it costs nothing beyond the PR it is read with.
const MERGE_QUEUE_ENTRY: &str =
    "baseRefName mergeQueueEntry { state position enqueuedAt headCommit { oid } baseCommit { oid } }";

/// The merge queue entries of one repository's open PRs, [`PAGE`] PRs a
/// page (`after` the previous page's end cursor): 1 point a page.
pub fn merge_queue(owner: &str, name: &str, after: Option<&str>) -> Document {
    Document {
        query: format!(
            "query MergeQueue($owner: String!, $name: String!, $after: String) {{ \
               repository(owner: $owner, name: $name) {{ \
                 pullRequests(states: [OPEN], first: {PAGE}, after: $after) {{ \
                   pageInfo {{ hasNextPage endCursor }} nodes {{ number {MERGE_QUEUE_ENTRY} }} }} }} {RATE_LIMIT} }}"
        ),
        variables: json!({ "owner": owner, "name": name, "after": after }),
    }
}

/// One repository in a survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurveyTarget<'a> {
    pub owner: &'a str,
    pub name: &'a str,
}

/// What tells whether repositories' PRs changed, for many repositories at
/// once (alias `r{i}`): every open PR (up to [`PAGE`]) with its update
/// time, head, draft flag, state and the head's rollup state; and the
/// [`RECENTLY_CLOSED_PER_REPOSITORY`] closed or merged PRs updated last.
///
/// The rollup is reached through `headRef { target }`, not `commits(last:
/// 1)`: no inner connection, so 100 repositories cost 2 points instead of
/// 102. Counts of check runs by state would tell more and cost a point per
/// hundred PRs; the sweep instead re-reads every head it holds unfinished
/// runs for, which the rollup cannot see change (FACTS §4).
pub fn survey(repositories: &[SurveyTarget<'_>]) -> Document {
    let mut declarations = Vec::new();
    let mut selections = String::new();
    let mut variables = Map::new();
    for (i, repo) in repositories.iter().enumerate() {
        declarations.push(format!("$o{i}: String!, $n{i}: String!"));
        variables.insert(format!("o{i}"), json!(repo.owner));
        variables.insert(format!("n{i}"), json!(repo.name));
        let _ = write!(
            selections,
            " r{i}: repository(owner: $o{i}, name: $n{i}) {{ \
               open: pullRequests(states: [OPEN], first: {PAGE}, orderBy: {{ field: UPDATED_AT, direction: DESC }}) {{ \
                 totalCount pageInfo {{ hasNextPage endCursor }} \
                 nodes {{ number updatedAt headRefOid isDraft state {MERGE_QUEUE_ENTRY} \
                   headRef {{ target {{ ... on Commit {{ statusCheckRollup {{ state }} }} }} }} }} }} \
               closed: pullRequests(states: [CLOSED, MERGED], first: {RECENTLY_CLOSED_PER_REPOSITORY}, orderBy: {{ field: UPDATED_AT, direction: DESC }}) {{ \
                 pageInfo {{ hasNextPage }} nodes {{ number updatedAt }} }} }}"
        );
    }
    Document {
        query: format!("query Survey({}) {{{selections} {RATE_LIMIT} }}", declarations.join(", ")),
        variables: Value::Object(variables),
    }
}

// ---- Answers -----------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    #[serde(default)]
    pub has_next_page: bool,
    #[serde(default)]
    pub end_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    pub page_info: PageInfo,
    /// GitHub's lists hold nullable entries.
    #[serde(default = "Vec::new")]
    pub nodes: Vec<Option<T>>,
    #[serde(default)]
    pub total_count: Option<i64>,
}

impl<T> Connection<T> {
    pub fn items(self) -> impl Iterator<Item = T> {
        self.nodes.into_iter().flatten()
    }
}

/// A commit's check suites, and its statuses where the query asked for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitChecks {
    pub oid: String,
    pub check_suites: Option<Connection<SuiteNode>>,
    /// Null when nothing posted a status on the commit.
    #[serde(default)]
    pub status: Option<StatusNode>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusNode {
    #[serde(default)]
    pub contexts: Vec<StatusContextNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusContextNode {
    pub id: String,
    pub context: String,
    /// `ERROR`, `EXPECTED`, `FAILURE`, `PENDING` or `SUCCESS`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub creator: Option<Login>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppNode {
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteNode {
    pub id: String,
    /// Declared `Int` by GitHub, but GitHub serialises ids beyond 32 bits: read as i64.
    #[serde(default)]
    pub database_id: Option<i64>,
    #[serde(default)]
    pub app: Option<AppNode>,
    pub check_runs: Option<Connection<RunNode>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunNode {
    pub id: String,
    /// The REST id. Declared `Int` (32 bits) but above 2^31 on GitHub today.
    pub database_id: i64,
    pub name: String,
    /// `QUEUED`, `IN_PROGRESS`, `COMPLETED`, ... (REST's values, upper case).
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub details_url: Option<String>,
    /// The run's page: REST's `html_url`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

/// `node(id:)` holding a suite's next runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteRunsPage {
    pub check_runs: Option<Connection<RunNode>>,
}

/// One repository's survey.
#[derive(Debug, Clone, Deserialize)]
pub struct SurveyRepository {
    pub open: Connection<SurveyPr>,
    pub closed: Connection<SurveyClosedPr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyPr {
    pub number: i64,
    pub updated_at: DateTime<Utc>,
    pub head_ref_oid: String,
    pub is_draft: bool,
    /// `OPEN`, `CLOSED` or `MERGED`.
    pub state: String,
    #[serde(default)]
    pub head_ref: Option<HeadRef>,
    #[serde(default)]
    pub base_ref_name: Option<String>,
    #[serde(default)]
    pub merge_queue_entry: Option<MergeQueueEntry>,
}

impl SurveyPr {
    /// The head's rollup state (`SUCCESS`, `FAILURE`, `PENDING`, `ERROR`,
    /// `EXPECTED`), or `None`: no checks, or the head branch is gone.
    pub fn rollup(&self) -> Option<&str> {
        self.head_ref.as_ref()?.target.as_ref()?.status_check_rollup.as_ref().map(|r| r.state.as_str())
    }
}

/// One repository's open PRs with their merge queue entries.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeQueueRepository {
    pub pull_requests: Connection<QueuedPr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedPr {
    pub number: i64,
    #[serde(default)]
    pub base_ref_name: Option<String>,
    #[serde(default)]
    pub merge_queue_entry: Option<MergeQueueEntry>,
}

/// `MergeQueueEntry`: the merge group's commit is `headCommit`, built on `baseCommit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeQueueEntry {
    /// `AWAITING_CHECKS`, `MERGEABLE`, `UNMERGEABLE`, `QUEUED`, `LOCKED`.
    pub state: String,
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default)]
    pub enqueued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub head_commit: Option<Oid>,
    #[serde(default)]
    pub base_commit: Option<Oid>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Oid {
    pub oid: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeadRef {
    #[serde(default)]
    pub target: Option<HeadTarget>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadTarget {
    #[serde(default)]
    pub status_check_rollup: Option<Rollup>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rollup {
    pub state: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurveyClosedPr {
    pub number: i64,
    pub updated_at: DateTime<Utc>,
}

/// An error entry of a GraphQL answer.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphqlError {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub message: String,
    #[serde(default)]
    pub path: Vec<Value>,
}

/// A GraphQL answer: `data` (possibly partial) and `errors`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    #[serde(default)]
    pub errors: Vec<GraphqlError>,
}

impl Answer {
    /// GitHub answers an exhausted GraphQL budget with HTTP 200 and this error type.
    pub fn is_rate_limited(&self) -> bool {
        self.errors.iter().any(|e| e.kind.as_deref() == Some("RATE_LIMITED"))
    }

    /// Errors that concern one aliased object (a repository GitHub cannot
    /// resolve: `NOT_FOUND` at its path) leave the rest of the answer good;
    /// any other error fails the query.
    pub fn fatal_errors(&self) -> Vec<&GraphqlError> {
        self.errors.iter().filter(|e| e.kind.as_deref() != Some("NOT_FOUND") || e.path.is_empty()).collect()
    }

    /// The points GitHub says the query cost, when it was asked for.
    pub fn cost(&self) -> Option<u64> {
        self.data.as_ref()?.get("rateLimit")?.get("cost")?.as_u64()
    }

    /// The value at an alias path, e.g. `["r0", "c1"]`; `None` when null or absent.
    pub fn at(&self, path: &[&str]) -> Option<&Value> {
        let mut value = self.data.as_ref()?.get(*path.first()?)?;
        for key in &path[1..] {
            value = value.get(*key)?;
        }
        (!value.is_null()).then_some(value)
    }
}

/// Reads a typed object out of an answer.
pub fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| e.to_string())
}

/// GraphQL's enum values are REST's in upper case.
pub fn rest_value(graphql_enum: &str) -> String {
    graphql_enum.to_ascii_lowercase()
}

/// The GraphQL endpoint for a REST API root: `https://api.github.com` →
/// `https://api.github.com/graphql`; GitHub Enterprise's `https://HOST/api/v3`
/// → `https://HOST/api/graphql`.
pub fn endpoint_for(api_url: &url::Url) -> url::Url {
    let mut url = api_url.clone();
    let path = api_url.path().trim_end_matches('/');
    let graphql = match path.strip_suffix("/v3") {
        Some(api_root) => format!("{api_root}/graphql"),
        None => format!("{path}/graphql"),
    };
    url.set_path(&graphql);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published schema (fixtures/github/graphql/).
    fn github_schema() -> apollo_compiler::validation::Valid<apollo_compiler::Schema> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/github/graphql/schema.graphql");
        let text = std::fs::read_to_string(path).expect("GitHub's schema");
        // GitHub's published schema defines two fields of `EnterpriseOwnerInfo`
        // twice; the parser keeps the first and reports the second, which
        // does not concern the types queried here.
        let schema = match apollo_compiler::Schema::parse(text, "schema.graphql") {
            Ok(schema) => schema,
            Err(with_errors) => {
                let reported = with_errors.errors.to_string();
                assert!(reported.contains("EnterpriseOwnerInfo"), "unexpected schema errors: {reported}");
                with_errors.partial
            }
        };
        // Validating GitHub's own schema is not this test's business.
        apollo_compiler::validation::Valid::assume_valid(schema)
    }

    fn validate(schema: &apollo_compiler::validation::Valid<apollo_compiler::Schema>, doc: &Document) {
        if let Err(errors) =
            apollo_compiler::ExecutableDocument::parse_and_validate(schema, &doc.query, "query.graphql")
        {
            panic!("{}\n{}", doc.query, errors.errors);
        }
    }

    #[test]
    fn every_document_prmonitor_sends_validates_against_githubs_schema() {
        let schema = github_schema();
        let one = [RepositoryCommits { owner: "o", name: "a", shas: vec!["aa"] }];
        let two = [
            RepositoryCommits { owner: "o", name: "a", shas: vec!["aa", "bb"] },
            RepositoryCommits { owner: "o", name: "b", shas: vec!["cc"] },
        ];
        for document in [
            check_runs_of_commits(&one),
            check_runs_of_commits(&two),
            check_suites_page("o", "a", "aa", "Y3Vyc29y"),
            check_runs_page("CS_1", "Y3Vyc29y"),
            survey(&[SurveyTarget { owner: "o", name: "a" }]),
            survey(&[SurveyTarget { owner: "o", name: "a" }, SurveyTarget { owner: "o", name: "b" }]),
            merge_queue("o", "a", None),
            merge_queue("o", "a", Some("Y3Vyc29y")),
        ] {
            validate(&schema, &document);
        }
        // The check can fail: a field GitHub lacks, or a wrong argument type.
        for wrong in [
            "query { repository(owner: \"o\", name: \"a\") { pullRequests(first: 1) { nodes { ciState } } } }",
            "query($n: Int!) { repository(owner: \"o\", name: $n) { id } }",
        ] {
            let result = apollo_compiler::ExecutableDocument::parse_and_validate(&schema, wrong, "wrong.graphql");
            assert!(result.is_err(), "{wrong} should not validate");
        }
    }

    #[test]
    fn the_endpoint_follows_the_rest_root() {
        let of = |raw: &str| endpoint_for(&url::Url::parse(raw).expect("url")).to_string();
        assert_eq!(of("https://api.github.com"), "https://api.github.com/graphql");
        assert_eq!(of("https://ghe.example.com/api/v3"), "https://ghe.example.com/api/graphql");
        assert_eq!(of("http://127.0.0.1:9000"), "http://127.0.0.1:9000/graphql");
        assert_eq!(of("http://127.0.0.1:9000/prefix"), "http://127.0.0.1:9000/prefix/graphql");
    }

    #[test]
    fn documents_carry_one_variable_per_alias() {
        let doc = check_runs_of_commits(&[
            RepositoryCommits { owner: "o", name: "a", shas: vec!["aa", "bb"] },
            RepositoryCommits { owner: "o", name: "b", shas: vec!["cc"] },
        ]);
        assert!(doc.query.contains("r1: repository(owner: $o1, name: $n1)"));
        assert!(doc.query.contains("c1: object(oid: $s0_1)"));
        assert_eq!(doc.variables["s1_0"], "cc");
        assert_eq!(doc.variables.as_object().map(Map::len), Some(7));
        let survey = survey(&[SurveyTarget { owner: "o", name: "a" }]);
        assert_eq!(survey.variables, json!({ "o0": "o", "n0": "a" }));
    }

    #[test]
    fn big_ids_and_partial_answers_decode() {
        let run: RunNode = decode(&json!({
            "id": "CR_1", "databaseId": 16_354_767_716_i64, "name": "ci", "status": "COMPLETED",
            "conclusion": "SUCCESS", "startedAt": "2026-01-01T00:00:00Z", "completedAt": null,
            "detailsUrl": null, "url": "https://github.com/o/r/runs/16354767716", "title": null, "summary": null
        }))
        .expect("run");
        assert_eq!(run.database_id, 16_354_767_716);
        let answer: Answer = serde_json::from_value(json!({
            "data": { "r0": null, "r1": { "x": 1 }, "rateLimit": { "cost": 3 } },
            "errors": [{ "type": "NOT_FOUND", "path": ["r0"], "message": "Could not resolve to a Repository" }]
        }))
        .expect("answer");
        assert!(answer.fatal_errors().is_empty());
        assert!(answer.at(&["r0"]).is_none());
        assert_eq!(answer.at(&["r1", "x"]), Some(&json!(1)));
        assert_eq!(answer.cost(), Some(3));
        let limited: Answer = serde_json::from_value(json!({
            "errors": [{ "type": "RATE_LIMITED", "message": "API rate limit exceeded" }]
        }))
        .expect("limited");
        assert!(limited.is_rate_limited());
        assert_eq!(limited.fatal_errors().len(), 1);
    }
}
