//! The board's pages over real HTTP: the same data as the JSON API, the
//! login and its cookie, and hostile input.

use std::collections::BTreeSet;

use github_sim::NewPr;
use prmonitor_testkit::world::{ADMIN_TOKEN, READ_TOKEN};
use prmonitor_testkit::TestWorld;
use serde_json::Value;

const REPO: &str = "acme/repo-0";

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Every value of `attribute="…"` in `html`, in order (the values the pages
/// write are escaped, so they hold no quote).
fn attribute_values(html: &str, attribute: &str) -> Vec<String> {
    let needle = format!(" {attribute}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest[..rest.find('"').expect("a closing quote")].to_owned()
        })
        .collect()
}

/// The text of an HTML fragment: its tags dropped.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// `(PR, checks)` of every row of a PR listing page.
fn listed(html: &str) -> BTreeSet<(String, String)> {
    attribute_values(html, "data-pr").into_iter().zip(attribute_values(html, "data-checks")).collect()
}

async fn page(world: &TestWorld, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = client().get(world.api.url(path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("the board answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// Logs in with the read token; the `name=value` of the session cookie.
async fn log_in(world: &TestWorld) -> String {
    let response = client()
        .post(world.api.url("/login"))
        .form(&[("token", READ_TOKEN), ("next", "/pulls")])
        .send()
        .await
        .expect("the login answers");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/pulls");
    let set_cookie = response.headers()["set-cookie"].to_str().expect("ASCII").to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie} lacks {attribute}");
    }
    assert!(!set_cookie.contains(READ_TOKEN), "the cookie must not carry the token");
    set_cookie.split(';').next().expect("name=value").to_owned()
}

/// The API's `(PR, checks)` of every PR of every repository in `state` with `checks`.
async fn api_listing(
    world: &TestWorld,
    repos: &[&str],
    state: &str,
    checks: Option<&str>,
) -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for repo in repos {
        let mut path = format!("/api/v1/repositories/{repo}/pulls?state={state}&per_page=100");
        if let Some(checks) = checks {
            path.push_str(&format!("&checks={checks}"));
        }
        let (status, body) = world.api.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for item in body["items"].as_array().expect("items") {
            all.insert((
                format!("{repo}#{}", item["number"]),
                item["checks"].as_str().expect("checks").to_owned(),
            ));
        }
    }
    all
}

#[tokio::test]
async fn the_pages_show_what_the_api_says() {
    let world = TestWorld::builder(3).prs(7, 3).backfilled().start().await;
    let github = &world.github;
    // Every CI state on the board: failing, pending, passing, none.
    let failing = github.open_pr(REPO, NewPr::new("Failing build", "only-author"));
    github.check(REPO, &github.head(REPO, failing), "build", "failure");
    let passing = github.open_pr("acme/repo-1", NewPr::new("Green", "bob"));
    github.check("acme/repo-1", &github.head("acme/repo-1", passing), "build", "success");
    github.open_pr("acme/repo-2", NewPr::new("Nothing reports", "carol"));
    let pending = github.open_pr(REPO, NewPr::new("Still running", "dave"));
    github.0.create_check_run(REPO, &github.head(REPO, pending), "slow").expect("run");
    world.settle().await;
    let cookie = log_in(&world).await;
    let repos = ["acme/repo-0", "acme/repo-1", "acme/repo-2"];

    for state in ["open", "all", "closed", "merged"] {
        for checks in [None, Some("failing"), Some("pending"), Some("passing"), Some("none")] {
            let mut path = format!("/pulls?state={state}");
            if let Some(checks) = checks {
                path.push_str(&format!("&checks={checks}"));
            }
            let (status, html) = page(&world, &path, Some(&cookie)).await;
            assert_eq!(status, 200, "{path}");
            let expected = api_listing(&world, &repos, state, checks).await;
            assert!(expected.len() < 50, "one page holds them all");
            assert_eq!(listed(&html), expected, "{path}");
        }
    }
    let (_, failing_page) = page(&world, "/pulls?checks=failing", Some(&cookie)).await;
    assert!(listed(&failing_page).contains(&(format!("{REPO}#{failing}"), "failing".to_owned())));
    // One repository, an author, a label.
    let (_, one) = page(&world, "/pulls?repository=acme%2Frepo-1", Some(&cookie)).await;
    assert_eq!(listed(&one), api_listing(&world, &["acme/repo-1"], "open", None).await);
    let (_, by_author) = page(&world, "/pulls?author=only-author&state=all", Some(&cookie)).await;
    assert_eq!(listed(&by_author), BTreeSet::from([(format!("{REPO}#{failing}"), "failing".to_owned())]));

    // Stuck and flaky, as the API's own filters say.
    for extra in ["stuck=true", "stuck=false", "flaky=true", "flaky=false"] {
        let (_, html) = page(&world, &format!("/pulls?state=all&{extra}"), Some(&cookie)).await;
        let mut expected = BTreeSet::new();
        for repo in repos {
            let (_, body) = world
                .api
                .get(&format!("/api/v1/repositories/{repo}/pulls?state=all&per_page=100&{extra}"))
                .await;
            for item in body["items"].as_array().expect("items") {
                expected.insert((
                    format!("{repo}#{}", item["number"]),
                    item["checks"].as_str().expect("checks").to_owned(),
                ));
            }
        }
        assert_eq!(listed(&html), expected, "{extra}");
    }

    // Stale: no update for a day; the generated history is weeks old, the new PRs are not.
    let (_, stale) = page(&world, "/pulls?stale=1&state=all", Some(&cookie)).await;
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    let mut expected_stale = BTreeSet::new();
    let mut by_creation = Vec::new();
    for repo in repos {
        let (_, body) =
            world.api.get(&format!("/api/v1/repositories/{repo}/pulls?state=all&per_page=100")).await;
        for item in body["items"].as_array().expect("items") {
            let updated: chrono::DateTime<chrono::Utc> =
                item["updated_at"].as_str().expect("updated_at").parse().expect("a time");
            let name = format!("{repo}#{}", item["number"]);
            if updated < day_ago {
                expected_stale.insert((name.clone(), item["checks"].as_str().expect("checks").to_owned()));
            }
            let detail = world.api.pull(repo, item["number"].as_i64().expect("number")).await;
            by_creation.push((
                detail["created_at"]
                    .as_str()
                    .expect("created_at")
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .expect("a time"),
                name,
            ));
        }
    }
    assert!(!expected_stale.is_empty(), "the generated PRs are old");
    assert_eq!(listed(&stale), expected_stale);
    // Sorted by creation, newest first, as the API's times say.
    let (_, created) = page(&world, "/pulls?sort=created&state=all", Some(&cookie)).await;
    let created_at: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        by_creation.into_iter().map(|(at, name)| (name, at)).collect();
    let shown: Vec<_> = attribute_values(&created, "data-pr").iter().map(|name| created_at[name]).collect();
    assert_eq!(shown.len(), created_at.len());
    assert!(shown.windows(2).all(|w| w[0] >= w[1]), "not newest first: {shown:?}");

    // The overview counts each repository's open PRs by CI state.
    let (status, overview) = page(&world, "/", Some(&cookie)).await;
    assert_eq!(status, 200);
    for repo in repos {
        let open = api_listing(&world, &[repo], "open", None).await;
        let row_start = overview.find(&format!("data-repository=\"{repo}\"")).expect("a row per repository");
        let row = &overview[row_start..];
        let row = &row[..row.find("</tr>").expect("row end")];
        let cell = |field: &str| -> usize {
            let at = row.find(&format!("data-field=\"{field}\"")).expect(field);
            let cell = &row[at..];
            let cell = &cell[cell.find('>').expect(">") + 1..cell.find("</td>").expect("</td>")];
            text(cell).trim().parse().unwrap_or_else(|_| panic!("{field}: {cell}"))
        };
        assert_eq!(cell("open"), open.len(), "{repo} open");
        for verdict in ["failing", "pending", "passing"] {
            let count = open.iter().filter(|(_, c)| c == verdict).count();
            assert_eq!(cell(verdict), count, "{repo} {verdict}");
        }
    }

    // A PR's page lists the newest run of each name and the statuses, as the API does.
    for (repo, number) in [(REPO, failing), ("acme/repo-1", passing), (REPO, pending), (REPO, 1)] {
        let detail = world.api.pull(repo, number).await;
        let (status, html) = page(&world, &format!("/pulls/{repo}/{number}"), Some(&cookie)).await;
        assert_eq!(status, 200);
        let mut newest: Vec<&Value> = Vec::new();
        for run in detail["check_runs"].as_array().expect("runs") {
            if !newest.iter().any(|seen| seen["name"] == run["name"]) {
                newest.push(run);
            }
        }
        let mut expected: BTreeSet<String> =
            newest.iter().map(|run| run["name"].as_str().expect("name").to_owned()).collect();
        expected.extend(
            detail["statuses"]
                .as_array()
                .expect("statuses")
                .iter()
                .map(|s| s["context"].as_str().expect("context").to_owned()),
        );
        let shown: BTreeSet<String> = attribute_values(&html, "data-check").into_iter().collect();
        assert_eq!(shown, expected, "{repo}#{number}");
        assert!(html.contains(&format!("data-checks=\"{}\"", detail["checks"].as_str().expect("checks"))));
    }
    world.finish().await;
}

#[tokio::test]
async fn the_timeline_shows_a_force_push_and_the_check_results_with_their_causes() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    let number = github.open_pr(REPO, NewPr::new("Rewrite history", "alice"));
    let first = github.head(REPO, number);
    github.check(REPO, &first, "build", "failure");
    world.settle().await;
    let second = github.push(REPO, number);
    github.check(REPO, &second, "build", "success");
    world.settle().await;
    let cookie = log_in(&world).await;
    let (status, html) = page(&world, &format!("/pulls/{REPO}/{number}"), Some(&cookie)).await;
    assert_eq!(status, 200);
    let timeline = &html[html.find("id=\"timeline\"").expect("a timeline")..];
    let moved = format!("head moved {} → {}", &first[..7], &second[..7]);
    assert!(timeline.contains(&moved), "no '{moved}' in {timeline}");
    assert!(timeline.contains(&format!("check build failure on {}", &first[..7])), "{timeline}");
    assert!(timeline.contains(&format!("check build success on {}", &second[..7])), "{timeline}");
    // In order: opened, the first result, the push, the second result.
    let at = |text: &str| timeline.find(text).unwrap_or_else(|| panic!("{text} not in the timeline"));
    assert!(at("opened as open") < at("check build failure"));
    assert!(at("check build failure") < at(&moved));
    assert!(at(&moved) < at("check build success"));
    // Everything came from webhooks here, and says so.
    let causes = attribute_values(timeline, "class")
        .into_iter()
        .filter(|c| c.starts_with("cause "))
        .collect::<Vec<_>>();
    assert!(causes.len() >= 4, "{causes:?}");
    assert!(causes.iter().all(|c| c == "cause webhook"), "{causes:?}");
    // The head's checks are the new head's.
    assert_eq!(
        attribute_values(&html[..html.find("id=\"timeline\"").expect("timeline")], "data-check"),
        vec!["build"]
    );
    world.finish().await;
}

#[tokio::test]
async fn the_board_takes_a_login_and_its_cookie_and_nothing_else() {
    let world = TestWorld::with_repos(1).await;
    let number = world.github.open_pr(REPO, NewPr::new("Behind a login", "alice"));
    world.settle().await;

    // Without a login: to the login form, coming back to the same page.
    let response = client().get(world.api.url("/pulls?checks=failing")).send().await.expect("answer");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2Fpulls%3Fchecks%3Dfailing");
    let (status, form) = page(&world, "/login?next=%2Fpulls", None).await;
    assert_eq!(status, 200);
    assert!(form.contains("type=\"password\""));

    // A wrong token: the form again, 401, no cookie.
    let wrong = client()
        .post(world.api.url("/login"))
        .form(&[("token", "not-the-token"), ("next", "/")])
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.expect("body").contains("That token is not valid."));

    let cookie = log_in(&world).await;
    let (status, html) = page(&world, "/pulls", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("data-pr=\"{REPO}#{number}\"")));
    assert!(html.contains("action=\"/logout\""), "a logged-in page offers to log out");
    assert!(!html.contains(READ_TOKEN) && !html.contains(ADMIN_TOKEN), "no secret reaches a page");

    // The cookie reads the JSON API too, but never the admin API.
    let read = client()
        .get(world.api.url(&format!("/api/v1/repositories/{REPO}/pulls")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("answer");
    assert_eq!(read.status(), 200);
    let admin = client()
        .post(world.api.url("/api/v1/reconcile"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "all": true }))
        .send()
        .await
        .expect("answer");
    assert_eq!(admin.status(), 401, "a cookie a browser sends by itself must not change anything");

    // The header works without a cookie.
    let bearer = client().get(world.api.url("/")).bearer_auth(READ_TOKEN).send().await.expect("answer");
    assert_eq!(bearer.status(), 200);

    // Forged, tampered and expired-looking cookies are a login again.
    let value = cookie.split_once('=').expect("name=value").1;
    let (head, tag) = value.rsplit_once('.').expect("v1.expiry.tag");
    let tampered_expiry = {
        let (version, expiry) = head.split_once('.').expect("v1.expiry");
        format!("{version}.{}.{tag}", expiry.parse::<i64>().expect("expiry") + 60)
    };
    for bad in [
        format!("prmonitor_session={tampered_expiry}"),
        format!("prmonitor_session={head}.{}", "0".repeat(tag.len())),
        "prmonitor_session=v1.1.00".to_owned(),
        format!("prmonitor_session={READ_TOKEN}"),
        "prmonitor_session=".to_owned(),
        format!("other={value}"),
    ] {
        let (status, _) = page(&world, "/", Some(&bad)).await;
        assert_eq!(status, 303, "{bad} was let in");
    }

    // The login never sends anyone to another site.
    for next in ["https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"] {
        let response = client()
            .post(world.api.url("/login"))
            .form(&[("token", READ_TOKEN), ("next", next)])
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/", "next={next}");
    }
    // Malformed and oversized login bodies.
    let no_token = client()
        .post(world.api.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("next=%2F")
        .send()
        .await
        .expect("answer");
    assert_eq!(no_token.status(), 400);
    let huge = client()
        .post(world.api.url("/login"))
        .form(&[("token", "x".repeat(100_000))])
        .send()
        .await
        .expect("answer");
    assert_eq!(huge.status(), 400);
    let json = client()
        .post(world.api.url("/login"))
        .json(&serde_json::json!({ "token": READ_TOKEN }))
        .send()
        .await
        .expect("answer");
    assert_eq!(json.status(), 400);

    // Logging out expires the cookie.
    let out = client().post(world.api.url("/logout")).header("cookie", &cookie).send().await.expect("answer");
    assert_eq!(out.status(), 303);
    let cleared = out.headers()["set-cookie"].to_str().expect("ASCII");
    assert!(cleared.starts_with("prmonitor_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    world.finish().await;
}

#[tokio::test]
async fn a_public_board_needs_no_login_but_the_api_still_does() {
    let world = TestWorld::builder(1).setting("PRMONITOR_BOARD_PUBLIC", "true").start().await;
    world.github.open_pr(REPO, NewPr::new("Open to the office", "alice"));
    world.settle().await;
    let (status, html) = page(&world, "/pulls", None).await;
    assert_eq!(status, 200);
    assert!(html.contains("Open to the office"));
    assert!(!html.contains("action=\"/logout\""), "nothing to log out of");
    let api = client()
        .get(world.api.url(&format!("/api/v1/repositories/{REPO}/pulls")))
        .send()
        .await
        .expect("answer");
    assert_eq!(api.status(), 401, "the JSON API keeps its token");
    world.finish().await;
}

#[tokio::test]
async fn hostile_input_gets_a_clear_error_page_and_text_is_escaped() {
    let world = TestWorld::with_repos(1).await;
    let github = &world.github;
    let mut pr = NewPr::new("<script>alert('title')</script> & \"quoted\"", "mallory");
    pr.labels = vec!["<img src=x onerror=alert(1)>".into()];
    let number = github.open_pr(REPO, pr);
    world.settle().await;
    let cookie = log_in(&world).await;

    for path in ["/pulls?state=all".to_owned(), format!("/pulls/{REPO}/{number}")] {
        let (status, html) = page(&world, &path, Some(&cookie)).await;
        assert_eq!(status, 200);
        assert!(!html.contains("<script>alert"), "{path}: a title is text, never markup");
        assert!(!html.contains("<img src=x"), "{path}: a label is text, never markup");
        assert!(
            html.contains("&lt;script&gt;alert('title')&lt;/script&gt; &amp; &quot;quoted&quot;"),
            "{path}"
        );
    }
    let response =
        client().get(world.api.url("/pulls")).header("cookie", &cookie).send().await.expect("answer");
    let csp = response.headers()["content-security-policy"].to_str().expect("ASCII").to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");

    let long = "a".repeat(300);
    for (path, status, says) in [
        ("/pulls?checks=broken", 400, "checks is failing, pending, passing or none"),
        ("/pulls?state=deleted", 400, "state is open, closed, merged or all"),
        ("/pulls?sort=random", 400, "sort is updated or created"),
        ("/pulls?stale=-1", 400, "stale must be a whole number from 1 to 3650"),
        ("/pulls?stale=ten", 400, "stale must be a whole number"),
        ("/pulls?page=0", 400, "page must be a whole number"),
        ("/pulls?draft=maybe", 400, "draft must be true or false"),
        ("/pulls?stuck=1", 400, "stuck must be true or false"),
        ("/pulls?flaky=yes", 400, "flaky must be true or false"),
        ("/pulls?author=%00", 400, "author must not contain a NUL character"),
        (&format!("/pulls?label={long}"), 400, "label must be at most 256 characters"),
        ("/pulls?repository=noslash", 400, "repository is owner/name"),
        ("/pulls?repository=acme%2Fnope", 404, "acme/nope is not a watched repository"),
        ("/pulls?unknown=1", 400, "unknown or malformed query parameters"),
        ("/?x=1", 400, "unknown or malformed query parameters"),
        (&format!("/pulls/{REPO}/0"), 400, "a pull request number is a positive number"),
        (&format!("/pulls/{REPO}/99999999999"), 400, "a pull request number is a positive number"),
        (&format!("/pulls/{REPO}/424242"), 404, "no pull request #424242 in acme/repo-0"),
        ("/pulls/acme/nope/1", 404, "acme/nope is not a watched repository"),
    ] {
        let (got, html) = page(&world, path, Some(&cookie)).await;
        assert_eq!(got, status, "{path}: {html}");
        assert!(html.contains(says), "{path} does not say '{says}': {html}");
        assert!(html.starts_with("<!DOCTYPE html>"), "{path}: an error page, not JSON");
    }
    // The assets are served with their types and cached for good.
    for (path, kind) in [("/assets/board.css", "text/css"), ("/assets/board.js", "text/javascript")] {
        let response = client().get(world.api.url(path)).send().await.expect("answer");
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().expect("ASCII").starts_with(kind));
        assert!(response.headers()["cache-control"].to_str().expect("ASCII").contains("immutable"));
    }
    world.finish().await;
}
