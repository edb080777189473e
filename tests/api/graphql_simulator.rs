//! The simulator's GraphQL API over real HTTP: GitHub's limits and error
//! shapes, GitHub's cost formula charged to a budget of its own, and data
//! that agrees with the simulator's REST answers.

use crate::simulator::app_jwt;
use std::collections::{BTreeMap, BTreeSet};

use github_sim::{Generate, NewPr, SimConfig, Simulator};
use serde_json::{json, Value};

const STATIC_TOKEN: &str = "ghp_graphql_static";
const OWNER: &str = github_sim::generate::GENERATED_OWNER;
const INSTALLATION: i64 = github_sim::generate::GENERATED_INSTALLATION;

async fn sim(generate: Generate) -> Simulator {
    let fixture = serde_json::from_str(include_str!("../../fixtures/sim/small.json")).expect("fixture");
    Simulator::start(SimConfig {
        generate: Some(generate),
        fixture: Some(fixture),
        static_token: Some(STATIC_TOKEN.into()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The only error's field, for refusals.
    fn error(&self) -> &Value {
        let errors = self.body["errors"].as_array().unwrap_or_else(|| panic!("errors in {}", self.body));
        assert_eq!(errors.len(), 1, "{}", self.body);
        &errors[0]
    }
}

async fn post_raw(url: &str, token: Option<&str>, body: Vec<u8>) -> Answer {
    let mut request = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, headers, body }
}

async fn graphql(sim: &Simulator, token: &str, query: &str, variables: Value) -> Answer {
    let body = serde_json::to_vec(&json!({ "query": query, "variables": variables })).expect("json");
    post_raw(&sim.graphql_url(), Some(token), body).await
}

async fn rest(sim: &Simulator, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", sim.api_url()))
        .header("authorization", format!("Bearer {STATIC_TOKEN}"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// An installation token, obtained as a GitHub App does.
async fn installation_token(sim: &Simulator, installation: i64) -> String {
    crate::simulator::mint_for(&reqwest::Client::new(), &sim.api_url(), installation).await
}

const PR_FIELDS: &str = "id databaseId fullDatabaseId number title body url state isDraft merged mergedAt closedAt
    createdAt updatedAt author { login ... on User { databaseId } } baseRefName baseRefOid headRefName headRefOid
    labels(first: 10) { nodes { name } } assignees(first: 10) { nodes { login databaseId } }";

#[tokio::test]
async fn a_pull_requests_graphql_fields_equal_its_rest_json() {
    let sim = sim(Generate { repositories: 1, pull_requests: 60, check_runs: 1 }).await;
    let query = format!(
        "query($owner: String!, $name: String!) {{ repository(owner: $owner, name: $name) {{
            pullRequests(first: 100) {{ totalCount nodes {{ {PR_FIELDS} }} }} }} }}"
    );
    let answer = graphql(&sim, STATIC_TOKEN, &query, json!({ "owner": OWNER, "name": "repo-0" })).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    let nodes = answer.body["data"]["repository"]["pullRequests"]["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 60);
    assert_eq!(answer.body["data"]["repository"]["pullRequests"]["totalCount"], 60);
    // GitHub's default order: oldest first.
    let numbers: Vec<i64> = nodes.iter().map(|n| n["number"].as_i64().expect("number")).collect();
    assert_eq!(numbers, (1..=60).collect::<Vec<_>>());

    let rest_pulls = rest(&sim, &format!("/repos/{OWNER}/repo-0/pulls?state=all&per_page=100")).await;
    let by_number: BTreeMap<i64, &Value> =
        rest_pulls.as_array().expect("pulls").iter().map(|p| (p["number"].as_i64().expect("n"), p)).collect();
    let mut states = BTreeSet::new();
    for node in &nodes {
        let pr = by_number[&node["number"].as_i64().expect("number")];
        let expected_state = match (pr["state"].as_str(), pr["merged"].as_bool()) {
            (Some("open"), _) => "OPEN",
            (_, Some(true)) => "MERGED",
            _ => "CLOSED",
        };
        states.insert(expected_state);
        let names = |v: &Value, key: &str| -> Vec<Value> {
            v.as_array().expect("list").iter().map(|x| x[key].clone()).collect()
        };
        let expected = json!({
            "id": pr["node_id"],
            "databaseId": pr["id"],
            "fullDatabaseId": pr["id"].as_i64().expect("id").to_string(),
            "number": pr["number"],
            "title": pr["title"],
            "body": pr["body"].as_str().unwrap_or(""),
            "url": pr["html_url"],
            "state": expected_state,
            "isDraft": pr["draft"],
            "merged": pr["merged"],
            "mergedAt": pr["merged_at"],
            "closedAt": pr["closed_at"],
            "createdAt": pr["created_at"],
            "updatedAt": pr["updated_at"],
            "author": { "login": pr["user"]["login"], "databaseId": pr["user"]["id"] },
            "baseRefName": pr["base"]["ref"],
            "baseRefOid": pr["base"]["sha"],
            "headRefName": pr["head"]["ref"],
            "headRefOid": pr["head"]["sha"],
            "labels": { "nodes": names(&pr["labels"], "name").into_iter().map(|n| json!({ "name": n })).collect::<Vec<_>>() },
            "assignees": { "nodes": pr["assignees"].as_array().expect("assignees").iter()
                .map(|a| json!({ "login": a["login"], "databaseId": a["id"] })).collect::<Vec<_>>() },
        });
        assert_eq!(node, &expected, "PR #{}", pr["number"]);
    }
    assert_eq!(states.len(), 3, "open, closed and merged PRs were compared: {states:?}");

    // One PR by number, and by its node id: the same object.
    let one = graphql(
        &sim,
        STATIC_TOKEN,
        &format!("query($id: ID!) {{ repository(owner: \"{OWNER}\", name: \"repo-0\") {{ pullRequest(number: 7) {{ {PR_FIELDS} }} }}
            node(id: $id) {{ ... on PullRequest {{ {PR_FIELDS} }} }} }}"),
        json!({ "id": nodes[6]["id"] }),
    )
    .await;
    assert_eq!(one.body["data"]["repository"]["pullRequest"], nodes[6], "{}", one.body);
    assert_eq!(one.body["data"]["node"], nodes[6]);
}

#[tokio::test]
async fn check_runs_page_past_a_hundred_to_rests_set_with_rests_ids_above_two_to_the_31() {
    // 130 runs on each head: six names, re-run about 21 times each.
    let sim = sim(Generate { repositories: 1, pull_requests: 2, check_runs: 130 }).await;
    let head = sim.world(|w| w.repo(500_000).expect("repo").pulls[&1].head_sha.clone());
    let query = "query($after: String, $type: CheckRunType) { repository(owner: \"acme\", name: \"repo-0\") {
        pullRequest(number: 1) { commits(last: 1) { totalCount nodes { commit { oid
          checkSuites(first: 10) { totalCount nodes { id databaseId status conclusion app { slug name databaseId } commit { oid }
            checkRuns(first: 100, after: $after, filterBy: { checkType: $type }) {
              totalCount pageInfo { hasNextPage endCursor }
              nodes { id databaseId name status conclusion startedAt completedAt detailsUrl url permalink title summary externalId
                checkSuite { databaseId } } } } } } } } } } }";
    let suite_path = |body: &Value| {
        body["data"]["repository"]["pullRequest"]["commits"]["nodes"][0]["commit"]["checkSuites"].clone()
    };

    let mut all = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let answer = graphql(&sim, STATIC_TOKEN, query, json!({ "after": after, "type": "ALL" })).await;
        assert!(answer.body.get("errors").is_none(), "{}", answer.body);
        let suites = suite_path(&answer.body);
        assert_eq!(suites["totalCount"], 1, "one App, one suite a commit");
        let runs = &suites["nodes"][0]["checkRuns"];
        assert_eq!(runs["totalCount"], 130);
        all.extend(runs["nodes"].as_array().expect("nodes").iter().cloned());
        pages += 1;
        if runs["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = runs["pageInfo"]["endCursor"].clone();
    }
    assert_eq!((pages, all.len()), (2, 130));

    let rest_all: Vec<Value> = {
        let mut runs = Vec::new();
        for page in 1..=2 {
            let answer = rest(
                &sim,
                &format!("/repos/acme/repo-0/commits/{head}/check-runs?filter=all&per_page=100&page={page}"),
            )
            .await;
            runs.extend(answer["check_runs"].as_array().expect("runs").iter().cloned());
        }
        runs
    };
    let rest_by_id: BTreeMap<i64, &Value> =
        rest_all.iter().map(|r| (r["id"].as_i64().expect("id"), r)).collect();
    let graphql_ids: BTreeSet<i64> =
        all.iter().map(|r| r["databaseId"].as_i64().expect("64-bit databaseId")).collect();
    assert_eq!(
        graphql_ids,
        rest_by_id.keys().copied().collect::<BTreeSet<_>>(),
        "the same set as REST's filter=all"
    );
    for run in &all {
        let id = run["databaseId"].as_i64().expect("id");
        assert!(id > i64::from(i32::MAX), "{id} is above 2^31, written whole");
        let rest_run = rest_by_id[&id];
        assert_eq!(run["id"], rest_run["node_id"]);
        assert_eq!(run["name"], rest_run["name"]);
        assert_eq!(run["status"].as_str().map(str::to_lowercase).as_deref(), rest_run["status"].as_str());
        assert_eq!(
            run["conclusion"].as_str().map(str::to_lowercase),
            rest_run["conclusion"].as_str().map(str::to_owned)
        );
        assert_eq!(run["startedAt"], rest_run["started_at"]);
        assert_eq!(run["completedAt"], rest_run["completed_at"]);
        assert_eq!(run["detailsUrl"], rest_run["details_url"]);
        assert_eq!(run["url"], rest_run["html_url"]);
        assert_eq!(run["title"], rest_run["output"]["title"]);
        assert_eq!(run["summary"], rest_run["output"]["summary"]);
        assert_eq!(run["externalId"], rest_run["external_id"]);
        assert_eq!(run["checkSuite"]["databaseId"], rest_run["check_suite"]["id"]);
    }

    // The suite is REST's suite, with REST's App.
    let answer = graphql(&sim, STATIC_TOKEN, query, json!({})).await;
    let suite = &suite_path(&answer.body)["nodes"][0];
    let rest_run = &rest_all[0];
    assert_eq!(suite["id"], rest_run["check_suite"]["node_id"]);
    assert_eq!(suite["databaseId"], rest_run["check_suite"]["id"]);
    assert_eq!(
        suite["status"].as_str().map(str::to_lowercase).as_deref(),
        rest_run["check_suite"]["status"].as_str()
    );
    assert_eq!(suite["app"]["databaseId"], rest_run["app"]["id"]);
    assert_eq!(suite["app"]["name"], rest_run["app"]["name"]);
    let slug = suite["app"]["slug"].as_str().expect("slug");
    assert!(rest_run["app"]["html_url"].as_str().expect("url").ends_with(&format!("/apps/{slug}")), "{slug}");
    assert_eq!(suite["commit"]["oid"], json!(head));

    // Without checkType: the newest run of each name, REST's filter=latest.
    let latest = &suite["checkRuns"];
    let rest_latest = rest(&sim, &format!("/repos/acme/repo-0/commits/{head}/check-runs?per_page=100")).await;
    let rest_latest_ids: BTreeSet<i64> = rest_latest["check_runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    let latest_ids: BTreeSet<i64> = latest["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|r| r["databaseId"].as_i64().expect("id"))
        .collect();
    assert_eq!(latest["totalCount"], 6);
    assert_eq!(latest_ids, rest_latest_ids);
}

#[tokio::test]
async fn the_rollup_follows_the_latest_run_of_each_name_and_head_ref_ends_with_the_pr() {
    let sim = sim(Generate { repositories: 1, pull_requests: 0, check_runs: 0 }).await;
    let number = sim.open_pr("acme/repo-0", NewPr::new("Rollup", "alice")).expect("open");
    let head = sim.push("acme/repo-0", number).expect("push");
    let query = "query($n: Int!) { repository(owner: \"acme\", name: \"repo-0\") { pullRequest(number: $n) {
        statusCheckRollup { state }
        headRef { name target { ... on Commit { oid statusCheckRollup { state contexts(first: 10) {
          totalCount checkRunCount checkRunCountsByState { state count } statusContextCount
          nodes { __typename ... on CheckRun { name status conclusion } } } } } } } } } }";
    let state =
        |body: &Value| body["data"]["repository"]["pullRequest"]["statusCheckRollup"]["state"].clone();
    let ask = || graphql(&sim, STATIC_TOKEN, query, json!({ "n": number }));

    let answer = ask().await;
    assert_eq!(
        answer.body["data"]["repository"]["pullRequest"]["statusCheckRollup"],
        Value::Null,
        "no checks: null"
    );
    assert_eq!(
        answer.body["data"]["repository"]["pullRequest"]["headRef"]["target"]["oid"],
        json!(head),
        "{}",
        answer.body
    );

    let build = sim.create_check_run("acme/repo-0", &head, "build").expect("run");
    let lint = sim.create_check_run("acme/repo-0", &head, "lint").expect("run");
    assert_eq!(state(&ask().await.body), "PENDING");
    sim.complete_check_run(lint, "neutral").expect("complete");
    sim.complete_check_run(build, "failure").expect("complete");
    let answer = ask().await;
    assert_eq!(state(&answer.body), "FAILURE");
    let contexts = &answer.body["data"]["repository"]["pullRequest"]["headRef"]["target"]
        ["statusCheckRollup"]["contexts"];
    assert_eq!(contexts["totalCount"], 2);
    assert_eq!(contexts["checkRunCount"], 2);
    assert_eq!(contexts["statusContextCount"], 0);
    assert_eq!(
        contexts["checkRunCountsByState"],
        json!([{ "state": "FAILURE", "count": 1 }, { "state": "NEUTRAL", "count": 1 }])
    );
    assert_eq!(
        contexts["nodes"][0],
        json!({ "__typename": "CheckRun", "name": "build", "status": "COMPLETED", "conclusion": "FAILURE" })
    );

    // A re-run of the failed check: pending again, then passing once it passes.
    let rerun = sim.create_check_run("acme/repo-0", &head, "build").expect("re-run");
    assert_eq!(state(&ask().await.body), "PENDING");
    sim.complete_check_run(rerun, "success").expect("complete");
    assert_eq!(state(&ask().await.body), "SUCCESS");

    // Merged: the head branch is gone (headRef null), its SHA is not.
    sim.merge("acme/repo-0", number).expect("merge");
    let answer = ask().await;
    assert_eq!(answer.body["data"]["repository"]["pullRequest"]["headRef"], Value::Null);
    assert_eq!(state(&answer.body), "SUCCESS");
}

#[tokio::test]
async fn refusals_come_in_githubs_shapes() {
    let sim = sim(Generate { repositories: 1, pull_requests: 3, check_runs: 2 }).await;
    let url = sim.graphql_url();
    let repo = "repository(owner: \"acme\", name: \"repo-0\")";

    let answer =
        graphql(&sim, STATIC_TOKEN, &format!("{{ {repo} {{ pullRequests {{ totalCount }} }} }}"), json!({}))
            .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.get("data").is_none(), "refused before running: no data, {}", answer.body);
    assert_eq!(
        answer.error(),
        &json!({
            "type": "MISSING_PAGINATION_BOUNDARIES",
            "path": ["repository", "pullRequests"],
            "locations": [{ "line": 1, "column": 47 }],
            "message": "You must provide a `first` or `last` value to properly paginate the `pullRequests` connection.",
        })
    );

    let answer =
        graphql(&sim, STATIC_TOKEN, "query($n: Int) { r: repository(owner: \"acme\", name: \"repo-0\") { pullRequests(first: $n) { totalCount } } }", json!({ "n": 101 })).await;
    assert!(answer.body.get("data").is_none());
    assert_eq!(answer.error()["type"], "EXCESSIVE_PAGINATION");
    assert_eq!(answer.error()["path"], json!(["r", "pullRequests"]));
    assert_eq!(
        answer.error()["message"],
        "Requesting 101 records on the `pullRequests` connection exceeds the `first` limit of 100 records."
    );

    let answer = graphql(
        &sim,
        STATIC_TOKEN,
        &format!("{{ {repo} {{ pullRequests(first: 0) {{ totalCount }} }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(answer.error()["path"], json!(["repository", "pullRequests"]));
    assert!(answer.error()["message"].as_str().expect("message").contains("positive"), "{}", answer.body);

    let answer = graphql(
        &sim,
        STATIC_TOKEN,
        &format!("{{ {repo} {{ pullRequests(first: 100) {{ nodes {{ commits(last: 100) {{ nodes {{ commit {{
            checkSuites(first: 100) {{ nodes {{ checkRuns(first: 100) {{ totalCount }} }} }} }} }} }} }} }} }} }}"),
        json!({}),
    )
    .await;
    assert!(answer.body.get("data").is_none());
    assert_eq!(
        answer.error(),
        &json!({
            "type": "MAX_NODE_LIMIT_EXCEEDED",
            "message": "By the time this query traverses to the checkSuites connection, it is requesting up to 1,010,100 possible nodes which exceeds the maximum limit of 500,000.",
        })
    );

    let answer = graphql(&sim, STATIC_TOKEN, &format!("{{ {repo} {{ foo }} }}"), json!({})).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.get("data").is_none());
    assert_eq!(
        answer.body,
        json!({ "errors": [{
            "path": ["query", "repository", "foo"],
            "extensions": { "code": "undefinedField", "typeName": "Repository", "fieldName": "foo" },
            "locations": [{ "line": 1, "column": 47 }],
            "message": "Field 'foo' doesn't exist on type 'Repository'",
        }] })
    );

    let answer = graphql(
        &sim,
        STATIC_TOKEN,
        &format!("{{ {repo} {{ pullRequests(first: 1, color: RED) {{ totalCount }} }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(answer.error()["extensions"]["code"], "argumentNotAccepted", "{}", answer.body);
    assert_eq!(answer.error()["message"], "Field 'pullRequests' doesn't accept argument 'color'");

    let answer = graphql(&sim, STATIC_TOKEN, "{ repository(owner: \"acme\") { id } }", json!({})).await;
    assert_eq!(
        answer.error()["message"],
        "Field 'repository' is missing required arguments: name",
        "{}",
        answer.body
    );

    let answer = graphql(&sim, STATIC_TOKEN, "{ viewer }}", json!({})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "message": "Parse error on \"}\" (RCURLY) at [1, 11]", "locations": [{ "line": 1, "column": 11 }] }] })
    );

    let answer = post_raw(&url, Some(STATIC_TOKEN), b"{not json".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body,
        json!({ "message": "Problems parsing JSON", "documentation_url": "https://docs.github.com/graphql" })
    );

    let answer = post_raw(&url, Some(STATIC_TOKEN), br#"{"variables": {}}"#.to_vec()).await;
    assert_eq!(answer.error()["message"], "A query attribute must be specified and must be a string.");

    let ids: Vec<String> = (0..101).map(|i| format!("PR_sim{i}")).collect();
    let answer =
        graphql(&sim, STATIC_TOKEN, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", json!({ "ids": ids }))
            .await;
    assert_eq!(answer.error()["type"], "EXCESSIVE_PAGINATION");

    // Refusals before running cost nothing.
    assert_eq!(sim.stats().graphql_points(), 0);
}

#[tokio::test]
async fn tokens_are_checked_and_an_installation_sees_only_its_repositories() {
    let sim = sim(Generate { repositories: 1, pull_requests: 2, check_runs: 1 }).await;
    let url = sim.graphql_url();
    let body = serde_json::to_vec(&json!({ "query": "{ rateLimit { cost } }" })).expect("json");

    let answer = post_raw(&url, None, body.clone()).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["message"], "This endpoint requires you to be authenticated.");
    let answer = post_raw(&url, Some("ghs_not_a_token"), body.clone()).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body,
        json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql" })
    );
    // GitHub Apps query GraphQL with installation tokens, not with their JWT.
    let answer = post_raw(&url, Some(&app_jwt()), body).await;
    assert_eq!(answer.status, 401);

    let token = installation_token(&sim, INSTALLATION).await;
    let other_pr = sim.world(|w| w.repo(700_001).expect("octo-org/api").pulls[&1].id);
    let answer = graphql(
        &sim,
        &token,
        "query($id: ID!) { mine: repository(owner: \"acme\", name: \"repo-0\") { nameWithOwner owner { login } }
          theirs: repository(owner: \"octo-org\", name: \"api\") { id }
          node(id: $id) { id } }",
        json!({ "id": format!("PR_sim{other_pr}") }),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["data"]["mine"],
        json!({ "nameWithOwner": "acme/repo-0", "owner": { "login": "acme" } })
    );
    // Null, not left out: a failed field is null in GitHub's answers.
    assert!(answer.body["data"].get("theirs").is_some_and(Value::is_null), "{}", answer.body);
    assert!(answer.body["data"].get("node").is_some_and(Value::is_null), "{}", answer.body);
    let errors = answer.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{}", answer.body);
    assert_eq!(
        errors[0],
        json!({
            "type": "NOT_FOUND",
            "path": ["theirs"],
            "locations": [{ "line": 2, "column": 11 }],
            "message": "Could not resolve to a Repository with the name 'octo-org/api'.",
        })
    );
    assert_eq!(errors[1]["type"], "NOT_FOUND");
    assert_eq!(errors[1]["path"], json!(["node"]));
    // The static token sees every repository.
    let answer =
        graphql(&sim, STATIC_TOKEN, "{ repository(owner: \"octo-org\", name: \"api\") { name } }", json!({}))
            .await;
    assert_eq!(answer.body, json!({ "data": { "repository": { "name": "api" } } }));

    // Requests are logged per installation.
    let stats = sim.stats();
    assert_eq!(stats.count("POST /graphql", 401), 3);
    assert!(stats
        .requests
        .iter()
        .any(|r| r.route == "POST /graphql" && r.installation == Some(INSTALLATION)));
}

#[tokio::test]
async fn node_ids_are_rests_and_resolve_back() {
    let sim = sim(Generate { repositories: 1, pull_requests: 1, check_runs: 2 }).await;
    let pr = rest(&sim, "/repos/acme/repo-0/pulls/1").await;
    let head = pr["head"]["sha"].as_str().expect("sha").to_owned();
    let runs = rest(&sim, &format!("/repos/acme/repo-0/commits/{head}/check-runs")).await;
    let run = &runs["check_runs"][0];
    let ids = [
        pr["node_id"].clone(),
        pr["base"]["repo"]["node_id"].clone(),
        run["node_id"].clone(),
        run["check_suite"]["node_id"].clone(),
    ];
    let answer = graphql(
        &sim,
        STATIC_TOKEN,
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        json!({ "ids": ids }),
    )
    .await;
    let nodes = answer.body["data"]["nodes"].as_array().expect("nodes").clone();
    assert_eq!(
        nodes.iter().map(|n| n["__typename"].as_str().expect("typename")).collect::<Vec<_>>(),
        ["PullRequest", "Repository", "CheckRun", "CheckSuite"]
    );
    assert_eq!(nodes.iter().map(|n| n["id"].clone()).collect::<Vec<_>>(), ids);

    let answer = graphql(
        &sim,
        STATIC_TOKEN,
        &format!("{{ repository(owner: \"acme\", name: \"repo-0\") {{ object(oid: \"{head}\") {{ ... on Commit {{ oid abbreviatedOid }} }} }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(
        answer.body["data"]["repository"]["object"],
        json!({ "oid": head, "abbreviatedOid": &head[..7] })
    );
}

/// FACTS §4's sweep: open PRs of 100 repositories in one query, aliased.
fn hundred_repositories(through_commits: bool) -> String {
    let head = if through_commits {
        "commits(last: 1) { nodes { commit { statusCheckRollup { state } } } }"
    } else {
        "headRef { target { ... on Commit { statusCheckRollup { state } } } }"
    };
    let mut query = String::from("query {\n");
    for i in 0..100 {
        query.push_str(&format!(
            "  r{i}: repository(owner: \"acme\", name: \"repo-{i}\") {{ pullRequests(states: OPEN, first: 100) {{ nodes {{ number {head} }} }} }}\n"
        ));
    }
    query.push_str("  rateLimit { cost remaining limit used nodeCount resetAt }\n}");
    query
}

#[tokio::test]
async fn githubs_worked_costs_are_charged_exactly_to_a_graphql_budget_of_its_own() {
    let sim = sim(Generate { repositories: 100, pull_requests: 3, check_runs: 2 }).await;

    let answer = graphql(&sim, STATIC_TOKEN, &hundred_repositories(false), json!({})).await;
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    let rate = &answer.body["data"]["rateLimit"];
    assert_eq!(
        (rate["cost"].clone(), rate["remaining"].clone(), rate["used"].clone()),
        (json!(1), json!(4_999), json!(1))
    );
    assert_eq!(rate["nodeCount"], 10_000);
    assert_eq!(rate["limit"], 5_000);
    let open: usize = (0..100)
        .map(|i| {
            answer.body["data"][format!("r{i}")]["pullRequests"]["nodes"].as_array().expect("nodes").len()
        })
        .sum();
    let expected_open = sim.world(|w| {
        w.repos
            .values()
            .filter(|r| r.owner == "acme")
            .flat_map(|r| r.pulls.values())
            .filter(|p| p.state == github_sim::model::PrState::Open)
            .count()
    });
    assert_eq!(open, expected_open);
    assert_eq!(answer.header("x-ratelimit-resource"), "graphql");
    assert_eq!(answer.header("x-ratelimit-remaining"), "4999");
    assert_eq!(answer.header("x-ratelimit-used"), "1");
    assert_eq!(answer.header("x-ratelimit-limit"), "5000");

    let answer = graphql(&sim, STATIC_TOKEN, &hundred_repositories(true), json!({})).await;
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    assert_eq!(answer.body["data"]["rateLimit"]["cost"], 101);
    assert_eq!(answer.body["data"]["rateLimit"]["remaining"], 4_898);
    assert_eq!(sim.graphql_budget(0).map(|b| b.remaining), Some(4_898));

    // 100 PRs with their head's suites and runs: 12 points (the repository has 3 PRs; the cost is static).
    let query = "{ repository(owner: \"acme\", name: \"repo-0\") { pullRequests(first: 100) { nodes { number
        commits(last: 1) { nodes { commit { checkSuites(first: 10) { nodes { checkRuns(first: 50) { nodes { databaseId } } } } } } } } } }
        rateLimit { cost nodeCount remaining } }";
    let answer = graphql(&sim, STATIC_TOKEN, query, json!({})).await;
    assert_eq!(
        answer.body["data"]["rateLimit"],
        json!({ "cost": 12, "nodeCount": 51_200, "remaining": 4_886 }),
        "{}",
        answer.body
    );

    // `rateLimit` alone costs 1; a dry run reports the cost and charges nothing.
    let answer = graphql(&sim, STATIC_TOKEN, "{ rateLimit { cost remaining } }", json!({})).await;
    assert_eq!(answer.body["data"]["rateLimit"], json!({ "cost": 1, "remaining": 4_885 }));
    let answer = graphql(
        &sim,
        STATIC_TOKEN,
        &hundred_repositories(true).replace("rateLimit {", "rateLimit(dryRun: true) {"),
        json!({}),
    )
    .await;
    assert_eq!(answer.body["data"]["rateLimit"]["cost"], 101);
    assert_eq!(answer.body["data"]["rateLimit"]["remaining"], 4_885);

    // The REST budget is another one, untouched.
    assert_eq!(sim.budget(0), None);
    let stats = sim.stats();
    assert_eq!(stats.graphql_points(), 1 + 101 + 12 + 1);
    assert_eq!(stats.count("POST /graphql", 200), 5);
    let admin: Value = reqwest::get(format!("http://{}/_sim/stats", sim.address()))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(admin["graphql"], json!({ "requests": 5, "points": 115 }));
}

#[tokio::test]
async fn an_exhausted_budget_answers_rate_limited_with_status_200() {
    let sim = sim(Generate { repositories: 1, pull_requests: 1, check_runs: 0 }).await;
    let token = installation_token(&sim, INSTALLATION).await;
    let set: Value = reqwest::Client::new()
        .post(format!("http://{}/_sim/graphql-budget/{INSTALLATION}", sim.address()))
        .json(&json!({ "limit": 50, "remaining": 0, "reset_in_secs": 600 }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!((set["limit"].clone(), set["remaining"].clone()), (json!(50), json!(0)));
    let answer =
        graphql(&sim, &token, "{ repository(owner: \"acme\", name: \"repo-0\") { name } }", json!({})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        json!({ "errors": [{ "type": "RATE_LIMITED", "message": format!("API rate limit already exceeded for installation ID {INSTALLATION}.") }] })
    );
    assert_eq!(answer.header("x-ratelimit-remaining"), "0");
    assert_eq!(answer.header("x-ratelimit-resource"), "graphql");

    // Enough for a cheap query, not for a dear one: the dear one is refused and charged nothing.
    sim.set_graphql_budget(INSTALLATION, None, Some(5), None);
    let answer = graphql(&sim, &token, &hundred_repositories(false), json!({})).await;
    assert_eq!(answer.body["data"]["rateLimit"]["remaining"], 4, "{}", answer.body);
    let answer = graphql(&sim, &token, &hundred_repositories(true), json!({})).await;
    assert_eq!(answer.error()["type"], "RATE_LIMITED");
    assert_eq!(sim.graphql_budget(INSTALLATION).map(|b| b.remaining), Some(4));
}

#[tokio::test]
async fn under_the_enterprise_prefix_graphql_is_at_api_graphql() {
    let sim = Simulator::start(SimConfig {
        path_prefix: "/api/v3".into(),
        static_token: Some(STATIC_TOKEN.into()),
        generate: Some(Generate { repositories: 1, pull_requests: 1, check_runs: 0 }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    assert_eq!(sim.graphql_url(), format!("http://{}/api/graphql", sim.address()));
    let answer =
        graphql(&sim, STATIC_TOKEN, "{ repository(owner: \"acme\", name: \"repo-0\") { name } }", json!({}))
            .await;
    assert_eq!(answer.body, json!({ "data": { "repository": { "name": "repo-0" } } }));
    let body = serde_json::to_vec(&json!({ "query": "{ rateLimit { cost } }" })).expect("json");
    let answer = post_raw(&format!("{}/graphql", sim.api_url()), Some(STATIC_TOKEN), body).await;
    assert_eq!(answer.status, 404, "not under /api/v3");
}

#[tokio::test]
async fn graphql_queries_count_against_the_secondary_limits_shared_with_rest() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 1, check_runs: 0 }),
        static_token: Some(STATIC_TOKEN.into()),
        graphql_points_per_minute: 3,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let query = "query { rateLimit { remaining } }";
    for _ in 0..3 {
        assert_eq!(graphql(&sim, STATIC_TOKEN, query, json!({})).await.status, 200);
    }
    let refused = graphql(&sim, STATIC_TOKEN, query, json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body["message"].as_str().unwrap_or_default().contains("secondary rate limit"),
        "{}",
        refused.body
    );
    assert!(refused.header("retry-after").parse::<u64>().is_ok_and(|secs| secs >= 1), "a Retry-After");
    // GraphQL's per-minute points are its own: REST still answers.
    let rest_status = reqwest::Client::new()
        .get(format!("{}/repos/{OWNER}/repo-0/pulls", sim.api_url()))
        .header("authorization", format!("Bearer {STATIC_TOKEN}"))
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(rest_status, 200);
    assert_eq!(sim.stats().secondary_limited(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn a_graphql_query_waits_its_turn_behind_rest_requests_in_flight() {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 1, pull_requests: 1, check_runs: 0 }),
        static_token: Some(STATIC_TOKEN.into()),
        max_concurrent_requests: 1,
        faults: github_sim::Faults { latency_ms: 1_500, ..github_sim::Faults::default() },
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let url = format!("{}/repos/{OWNER}/repo-0/pulls", sim.api_url());
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .header("authorization", format!("Bearer {STATIC_TOKEN}"))
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let refused = graphql(&sim, STATIC_TOKEN, "query { rateLimit { remaining } }", json!({})).await;
    assert_eq!(
        refused.status, 403,
        "one request in flight at most, REST and GraphQL together: {}",
        refused.body
    );
    assert_eq!(slow.await.expect("joined"), 200);
    assert_eq!(graphql(&sim, STATIC_TOKEN, "query { rateLimit { remaining } }", json!({})).await.status, 200);
    sim.stop().await;
}

// ---------------------------------------------------------------- statuses, required checks, merge queues

const API: (&str, &str) = ("octo-org", "api");

/// A new PR in octo-org/api whose head has one passing `build` run; its number and head.
fn passing_pr(sim: &Simulator, base: Option<&str>) -> (i64, String) {
    let mut pr = NewPr::new("Statuses", "alice");
    pr.base_ref = base.map(str::to_owned);
    let number = sim.open_pr("octo-org/api", pr).expect("open");
    let head = sim
        .world(|w| w.repo(w.repo_id("octo-org/api")?).map(|r| r.pulls[&number].head_sha.clone()))
        .expect("head");
    let build = sim.create_check_run("octo-org/api", &head, "build").expect("run");
    sim.complete_check_run(build, "success").expect("complete");
    (number, head)
}

const ROLLUP: &str = "query($owner: String!, $name: String!, $n: Int!) { repository(owner: $owner, name: $name) {
    pullRequest(number: $n) {
      statusCheckRollup { state contexts(first: 20) {
        totalCount checkRunCount statusContextCount
        checkRunCountsByState { state count } statusContextCountsByState { state count }
        nodes { __typename
          ... on CheckRun { name conclusion }
          ... on StatusContext { id context state description targetUrl createdAt creator { login } } } } }
      headRef { target { ... on Commit {
        status { state contexts { context state description } context(name: \"ci/jenkins\") { state } } } } } } } }";

async fn rollup_of(sim: &Simulator, number: i64) -> Value {
    let answer =
        graphql(sim, STATIC_TOKEN, ROLLUP, json!({ "owner": API.0, "name": API.1, "n": number })).await;
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    answer.body["data"]["repository"]["pullRequest"].clone()
}

#[tokio::test]
async fn the_rollup_combines_commit_statuses_with_check_runs_as_github_does() {
    let sim = sim(Generate { repositories: 1, pull_requests: 1, check_runs: 1 }).await;
    let (number, head) = passing_pr(&sim, None);
    let pr = rollup_of(&sim, number).await;
    assert_eq!(pr["statusCheckRollup"]["state"], "SUCCESS");
    assert_eq!(pr["headRef"]["target"]["status"], Value::Null, "no status posted: null, as on GitHub");

    let mut failing = github_sim::NewStatus::new("ci/jenkins", "failure");
    failing.description = Some("2 tests failed".into());
    failing.target_url = Some("https://ci.example.com/1000/output".into());
    let status_id = sim.post_status("octo-org/api", &head, failing).expect("status");
    let pr = rollup_of(&sim, number).await;
    let rollup = &pr["statusCheckRollup"];
    assert_eq!(rollup["state"], "FAILURE", "a failing status fails passing checks: {rollup}");
    let contexts = &rollup["contexts"];
    assert_eq!((contexts["totalCount"].as_i64(), contexts["checkRunCount"].as_i64()), (Some(2), Some(1)));
    assert_eq!(contexts["statusContextCount"], 1);
    assert_eq!(contexts["checkRunCountsByState"], json!([{ "state": "SUCCESS", "count": 1 }]));
    assert_eq!(contexts["statusContextCountsByState"], json!([{ "state": "FAILURE", "count": 1 }]));
    let status = &contexts["nodes"][1];
    assert_eq!(status["__typename"], "StatusContext");
    assert_eq!(status["id"], format!("SC_sim{status_id}"));
    assert_eq!((status["context"].as_str(), status["state"].as_str()), (Some("ci/jenkins"), Some("FAILURE")));
    assert_eq!(status["description"], "2 tests failed");
    assert_eq!(status["targetUrl"], "https://ci.example.com/1000/output");
    assert_eq!(status["creator"]["login"], "octo-org");
    assert!(status["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    // REST shows the same status under the same node id.
    let rest_status = rest(&sim, &format!("/repos/octo-org/api/commits/{head}/status")).await;
    assert_eq!(rest_status["statuses"][0]["node_id"], status["id"]);
    assert_eq!(rest_status["state"], "failure");
    let commit_status = &pr["headRef"]["target"]["status"];
    assert_eq!(commit_status["state"], "FAILURE");
    assert_eq!(commit_status["context"]["state"], "FAILURE");

    // The latest status of a context replaces it; another context's pending holds the rollup.
    sim.set_status("octo-org/api", &head, "ci/jenkins", "success", None).expect("status");
    let pr = rollup_of(&sim, number).await;
    assert_eq!(pr["statusCheckRollup"]["state"], "SUCCESS");
    assert_eq!(pr["statusCheckRollup"]["contexts"]["statusContextCount"], 1);
    sim.set_status("octo-org/api", &head, "deploy/preview", "pending", None).expect("status");
    let pr = rollup_of(&sim, number).await;
    assert_eq!(pr["statusCheckRollup"]["state"], "PENDING");
    assert_eq!(
        pr["statusCheckRollup"]["contexts"]["statusContextCountsByState"],
        json!([{ "state": "PENDING", "count": 1 }, { "state": "SUCCESS", "count": 1 }])
    );
    assert_eq!(
        pr["headRef"]["target"]["status"]["contexts"],
        json!([
            { "context": "ci/jenkins", "state": "SUCCESS", "description": null },
            { "context": "deploy/preview", "state": "PENDING", "description": null },
        ])
    );
    sim.set_status("octo-org/api", &head, "deploy/preview", "error", Some("no runner")).expect("status");
    assert_eq!(rollup_of(&sim, number).await["statusCheckRollup"]["state"], "FAILURE", "error fails it too");
}

const REQUIRED: &str = "query($owner: String!, $name: String!, $n: Int!, $id: ID!) {
  repository(owner: $owner, name: $name) { pullRequest(number: $n) { statusCheckRollup { contexts(first: 20) { nodes {
    ... on CheckRun { name byNumber: isRequired(pullRequestNumber: $n) byId: isRequired(pullRequestId: $id) }
    ... on StatusContext { name: context byNumber: isRequired(pullRequestNumber: $n) byId: isRequired(pullRequestId: $id) }
  } } } } } }";

async fn required_flags(sim: &Simulator, number: i64) -> Vec<(String, bool, bool)> {
    let pr = rest(sim, &format!("/repos/octo-org/api/pulls/{number}")).await;
    let variables = json!({ "owner": API.0, "name": API.1, "n": number, "id": pr["node_id"] });
    let answer = graphql(sim, STATIC_TOKEN, REQUIRED, variables).await;
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    let nodes = &answer.body["data"]["repository"]["pullRequest"]["statusCheckRollup"]["contexts"]["nodes"];
    nodes
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let flag = |key: &str| n[key].as_bool().unwrap_or_else(|| panic!("{key} in {n}"));
            (n["name"].as_str().expect("name").to_owned(), flag("byNumber"), flag("byId"))
        })
        .collect()
}

#[tokio::test]
async fn is_required_answers_from_the_base_branchs_protection_and_needs_a_pull_request() {
    let sim = sim(Generate { repositories: 1, pull_requests: 1, check_runs: 1 }).await;
    let (number, head) = passing_pr(&sim, None);
    sim.create_check_run("octo-org/api", &head, "lint").expect("run");
    sim.set_status("octo-org/api", &head, "ci/jenkins", "pending", None).expect("status");
    sim.set_status("octo-org/api", &head, "coverage", "success", None).expect("status");
    let owned = |rows: &[(&str, bool, bool)]| -> Vec<(String, bool, bool)> {
        rows.iter().map(|(name, a, b)| ((*name).to_owned(), *a, *b)).collect()
    };
    let nothing_required = owned(&[
        ("build", false, false),
        ("lint", false, false),
        ("ci/jenkins", false, false),
        ("coverage", false, false),
    ]);
    assert_eq!(
        required_flags(&sim, number).await,
        nothing_required,
        "an unprotected branch requires nothing"
    );

    sim.set_required_checks("octo-org/api", "main", &["build", "ci/jenkins"]).expect("protect");
    assert_eq!(
        required_flags(&sim, number).await,
        owned(&[
            ("build", true, true),
            ("lint", false, false),
            ("ci/jenkins", true, true),
            ("coverage", false, false)
        ])
    );
    // Another base branch: its own protection (none) decides, even for the same commit's checks.
    let (other, _) = passing_pr(&sim, Some("develop"));
    assert_eq!(required_flags(&sim, other).await, owned(&[("build", false, false)]));

    // Without an argument GitHub refuses the field; the rest of the answer stands.
    let query = "query($owner: String!, $name: String!, $n: Int!) { repository(owner: $owner, name: $name) {
        pullRequest(number: $n) { number statusCheckRollup { contexts(first: 20) { nodes {
          ... on CheckRun { name isRequired } } } } } } }";
    let answer =
        graphql(&sim, STATIC_TOKEN, query, json!({ "owner": API.0, "name": API.1, "n": other })).await;
    assert_eq!(answer.status, 200);
    let error = answer.error();
    assert_eq!(error["type"], "UNPROCESSABLE", "{}", answer.body);
    assert_eq!(error["message"], "A pull request ID or pull request number is required.");
    assert_eq!(
        error["path"],
        json!(["repository", "pullRequest", "statusCheckRollup", "contexts", "nodes", 0, "isRequired"])
    );
    assert!(error["locations"][0]["line"].as_i64().is_some());
    let pr = &answer.body["data"]["repository"]["pullRequest"];
    assert_eq!(pr["number"], other);
    // The field may not be null: its node is null instead, as the GraphQL spec and GitHub have it.
    assert_eq!(pr["statusCheckRollup"]["contexts"]["nodes"], json!([null]), "{}", answer.body);

    // A pull request that does not exist.
    let query = "query($owner: String!, $name: String!, $n: Int!) { repository(owner: $owner, name: $name) {
        pullRequest(number: $n) { statusCheckRollup { contexts(first: 1) { nodes { ... on CheckRun { isRequired(pullRequestNumber: 999) } } } } } } }";
    let answer =
        graphql(&sim, STATIC_TOKEN, query, json!({ "owner": API.0, "name": API.1, "n": number })).await;
    assert_eq!(answer.error()["type"], "NOT_FOUND", "{}", answer.body);
}

/// `data.repository.pullRequest` of `query` for PR `number` of octo-org/api, which must not fail.
async fn pull_request_data(sim: &Simulator, query: &str, number: i64) -> Value {
    let answer =
        graphql(sim, STATIC_TOKEN, query, json!({ "owner": API.0, "name": API.1, "n": number })).await;
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    answer.body["data"]["repository"]["pullRequest"].clone()
}

#[tokio::test]
async fn a_merge_queue_entry_follows_its_group_whose_checks_stay_off_the_pr_head() {
    let sim = sim(Generate { repositories: 1, pull_requests: 1, check_runs: 1 }).await;
    let (number, _) = passing_pr(&sim, None);
    sim.set_required_checks("octo-org/api", "main", &["build"]).expect("protect");
    let query = "query($owner: String!, $name: String!, $n: Int!) { repository(owner: $owner, name: $name) {
        pullRequest(number: $n) { state isInMergeQueue headRefOid statusCheckRollup { state }
          mergeQueueEntry { id state position enqueuedAt jump solo enqueuer { login } pullRequest { number }
            baseCommit { oid }
            headCommit { oid statusCheckRollup { state }
              checkSuites(first: 5) { nodes {
                latest: checkRuns(first: 10) { nodes { databaseId status } }
                all: checkRuns(first: 10, filterBy: { checkType: ALL }) { nodes { databaseId } } } } } } } } }";
    let pr = pull_request_data(&sim, query, number).await;
    assert_eq!((pr["isInMergeQueue"].as_bool(), &pr["mergeQueueEntry"]), (Some(false), &Value::Null));

    let group = sim.enqueue("octo-org/api", number).expect("queued");
    let pr = pull_request_data(&sim, query, number).await;
    let entry = &pr["mergeQueueEntry"];
    assert_eq!(pr["isInMergeQueue"], true);
    assert_eq!((entry["state"].as_str(), entry["position"].as_i64()), (Some("AWAITING_CHECKS"), Some(1)));
    assert_eq!(entry["headCommit"]["oid"], group.as_str());
    assert_ne!(entry["headCommit"]["oid"], pr["headRefOid"], "the group's commit is not the PR head");
    assert_eq!(entry["headCommit"]["statusCheckRollup"], Value::Null);
    assert_eq!((entry["jump"].as_bool(), entry["solo"].as_bool()), (Some(false), Some(false)));
    assert_eq!(entry["enqueuer"]["login"], "alice");
    assert_eq!(entry["pullRequest"]["number"], number);
    let main_head = sim
        .world(|w| w.repo(w.repo_id("octo-org/api")?).map(|r| r.branch_heads.get("main").cloned()))
        .expect("repo")
        .expect("main moved when #2 merged");
    assert_eq!(entry["baseCommit"]["oid"], main_head.as_str());
    let node = graphql(
        &sim,
        STATIC_TOKEN,
        "query($id: ID!) { node(id: $id) { ... on MergeQueueEntry { position } } }",
        json!({ "id": entry["id"] }),
    )
    .await;
    assert_eq!(node.body["data"]["node"]["position"], 1, "{}", node.body);

    // A failing check on the group makes the entry unmergeable; the PR head's rollup does not move.
    let gate = sim.create_check_run("octo-org/api", &group, "build").expect("run");
    sim.complete_check_run(gate, "failure").expect("complete");
    let pr = pull_request_data(&sim, query, number).await;
    assert_eq!(pr["mergeQueueEntry"]["state"], "UNMERGEABLE");
    assert_eq!(pr["mergeQueueEntry"]["headCommit"]["statusCheckRollup"]["state"], "FAILURE");
    assert_eq!(pr["statusCheckRollup"]["state"], "SUCCESS");
    assert!(sim.merge_group_passed("octo-org/api", number).is_err());

    // Re-run: LATEST shows the new run alone, ALL both; once it passes the entry is mergeable.
    let rerun = sim.rerun_check_run(gate).expect("re-run");
    let pr = pull_request_data(&sim, query, number).await;
    let suite = &pr["mergeQueueEntry"]["headCommit"]["checkSuites"]["nodes"][0];
    assert_eq!(suite["latest"]["nodes"], json!([{ "databaseId": rerun, "status": "QUEUED" }]));
    assert_eq!(suite["all"]["nodes"], json!([{ "databaseId": gate }, { "databaseId": rerun }]));
    assert_eq!(pr["mergeQueueEntry"]["state"], "AWAITING_CHECKS");
    sim.complete_check_run(rerun, "success").expect("complete");
    assert_eq!(pull_request_data(&sim, query, number).await["mergeQueueEntry"]["state"], "MERGEABLE");

    sim.merge_group_passed("octo-org/api", number).expect("merged");
    let pr = pull_request_data(&sim, query, number).await;
    assert_eq!((pr["state"].as_str(), pr["isInMergeQueue"].as_bool()), (Some("MERGED"), Some(false)));
    assert_eq!(pr["mergeQueueEntry"], Value::Null);
}
