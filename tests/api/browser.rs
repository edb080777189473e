//! The board in a real browser (headless Chromium through ChromeDriver):
//! what people see, with JavaScript running, at a desktop's and a phone's
//! width. Each page is saved as a screenshot under the target directory.

use std::collections::BTreeSet;
use std::time::Duration;

use github_sim::NewPr;
use prmonitor_testkit::browser::Browser;
use prmonitor_testkit::world::READ_TOKEN;
use prmonitor_testkit::TestWorld;
use serde_json::json;

const REPO: &str = "acme/repo-0";

/// Opens the login form and logs in with the read token, coming back to `next`.
async fn log_in(browser: &Browser, world: &TestWorld, next: &str) {
    browser.goto(&world.api.url(next)).await;
    assert!(browser.url().await.contains("/login?next="), "a page without a login goes to the form");
    let token = browser.find("#token").await;
    browser.type_into(&token, READ_TOKEN).await;
    browser.click(&browser.find("#log-in").await).await;
    wait_for_url(browser, &world.api.url(next)).await;
    assert_eq!(browser.url().await, world.api.url(next), "back where the login began");
}

async fn no_console_errors(browser: &Browser, page: &str) {
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "{page} logged errors: {errors:?}");
}

/// `data-pr` of every listed row.
async fn listed(browser: &Browser) -> BTreeSet<String> {
    let rows = browser.execute(
        "return Array.from(document.querySelectorAll('tr[data-pr]')).map(r => r.dataset.pr + ' ' + r.dataset.checks);",
        json!([]),
    );
    rows.await.as_array().expect("rows").iter().map(|v| v.as_str().expect("text").to_owned()).collect()
}

#[tokio::test]
async fn the_board_in_a_browser_shows_the_repositories_filters_by_ci_and_the_timeline() {
    let Some(browser) = Browser::start(1280, 900).await else { return };
    let world = TestWorld::builder(3).prs(4, 2).backfilled().start().await;
    let github = &world.github;
    let failing = github.open_pr(REPO, NewPr::new("Broken build", "alice"));
    let first = github.head(REPO, failing);
    github.check(REPO, &first, "build", "failure");
    github.check(REPO, &first, "lint", "success");
    world.settle().await;

    log_in(&browser, &world, "/").await;
    assert_eq!(browser.title().await, "Overview · prmonitor");
    let shown: BTreeSet<String> = {
        let mut names = BTreeSet::new();
        for row in browser.find_all("tr[data-repository]").await {
            names.insert(browser.attribute(&row, "data-repository").await.expect("a name"));
        }
        names
    };
    let simulated: BTreeSet<String> =
        github.world(|w| w.repos.values().map(|r| format!("{}/{}", r.owner, r.name)).collect());
    assert_eq!(shown, simulated, "the overview lists the simulator's repositories");
    browser.screenshot("overview").await;
    no_console_errors(&browser, "the overview").await;

    // Filtering by "failing" with the form: exactly what the API calls failing.
    browser.goto(&world.api.url("/pulls")).await;
    browser.select("select[name=checks]", "failing").await;
    browser.click(&browser.find("form.filters button[type=submit]").await).await;
    wait_for_url(&browser, &world.api.url("/pulls?")).await;
    assert!(browser.url().await.contains("checks=failing"), "the filters live in the URL");
    let mut expected = BTreeSet::new();
    for repo in simulated.iter() {
        let (_, body) =
            world.api.get(&format!("/api/v1/repositories/{repo}/pulls?checks=failing&per_page=100")).await;
        for item in body["items"].as_array().expect("items") {
            expected.insert(format!("{repo}#{} failing", item["number"]));
        }
    }
    assert!(expected.contains(&format!("{REPO}#{failing} failing")));
    assert_eq!(listed(&browser).await, expected);
    browser.screenshot("pulls-failing").await;
    no_console_errors(&browser, "the failing PRs").await;

    // Every control has a label; the keyboard alone opens a PR (Enter on its link).
    let unlabelled = browser
        .execute(
            "return Array.from(document.querySelectorAll('select, input:not([type=hidden])')).filter(e => !e.closest('label')).length;",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, 0, "every filter has a label");
    let link = browser.find(&format!("tr[data-pr='{REPO}#{failing}'] a.title")).await;
    browser.type_into(&link, "\u{E007}").await;
    wait_for_url(&browser, &world.api.url(&format!("/pulls/{REPO}/{failing}"))).await;
    assert_eq!(browser.url().await, world.api.url(&format!("/pulls/{REPO}/{failing}")));

    // A PR's page after a force-push: the timeline has the move and both results.
    let second = github.push(REPO, failing);
    github.check(REPO, &second, "build", "success");
    world.settle().await;
    browser.goto(&world.api.url(&format!("/pulls/{REPO}/{failing}"))).await;
    let timeline = browser.text(&browser.find("#timeline").await).await;
    assert!(timeline.contains(&format!("head moved {} → {}", &first[..7], &second[..7])), "{timeline}");
    assert!(timeline.contains(&format!("check build failure on {}", &first[..7])), "{timeline}");
    assert!(timeline.contains(&format!("check build success on {}", &second[..7])), "{timeline}");
    browser.screenshot("pull-request").await;
    no_console_errors(&browser, "the PR page").await;

    // A phone's width: nothing wider than the screen, every row still there.
    browser.resize(390, 844).await;
    browser.goto(&world.api.url("/pulls?state=all")).await;
    let overflow =
        browser.execute("return document.documentElement.scrollWidth - window.innerWidth;", json!([])).await;
    assert!(
        overflow.as_i64().expect("a number") <= 0,
        "the page scrolls sideways on a phone by {overflow}px"
    );
    browser.screenshot("pulls-phone").await;
    no_console_errors(&browser, "the phone-width list").await;
    browser.stop().await;
    world.finish().await;
}

/// Waits until the page's change-feed connection is open.
async fn wait_until_live(browser: &Browser) {
    let live = browser
        .wait_for("return document.getElementById('live').textContent === 'live';", Duration::from_secs(10))
        .await;
    assert!(live.is_some(), "the page never connected to the change feed");
}

#[tokio::test]
async fn a_change_on_github_appears_on_an_open_page_without_a_reload() {
    let Some(browser) = Browser::start(1280, 900).await else { return };
    let world = TestWorld::with_repos(2).await;
    let github = &world.github;
    let number = github.open_pr(REPO, NewPr::new("Waiting for CI", "alice"));
    let head = github.head(REPO, number);
    let run = github.0.create_check_run(REPO, &head, "build").expect("run");
    world.settle().await;

    log_in(&browser, &world, "/pulls").await;
    wait_until_live(&browser).await;
    let row = format!("tr[data-pr='{REPO}#{number}']");
    assert_eq!(browser.attribute(&browser.find(&row).await, "data-checks").await.as_deref(), Some("pending"));
    // A mark only this document has: a reload would lose it.
    browser.execute("window.sameDocument = true; return true;", json!([])).await;

    // The check fails on GitHub. Once the worker has committed it, the page
    // shows it within 2 s: the change feed's NOTIFY, the stream, the refresh.
    github.0.start_check_run(run).expect("start");
    github.0.complete_check_run(run, "failure").expect("complete");
    wait_for_commit(&world, "SELECT count(*) FROM check_runs WHERE conclusion = 'failure'").await;
    let shown = browser
        .wait_for(
            &format!(
                "const r = document.querySelector(\"{row}\"); return r && r.dataset.checks === 'failing';"
            ),
            Duration::from_secs(2),
        )
        .await;
    assert!(shown.is_some(), "the failure did not reach the open page within 2 s");
    assert_eq!(
        browser.execute("return window.sameDocument === true;", json!([])).await,
        true,
        "the page reloaded"
    );

    // A new PR appears in the open list too.
    let other = github.open_pr("acme/repo-1", NewPr::new("Brand new", "bob"));
    wait_for_commit(
        &world,
        &format!("SELECT count(*) FROM pull_requests WHERE number = {other} AND title = 'Brand new'"),
    )
    .await;
    let appeared = browser
        .wait_for(
            &format!("return !!document.querySelector(\"tr[data-pr='acme/repo-1#{other}']\");"),
            Duration::from_secs(2),
        )
        .await;
    assert!(appeared.is_some(), "the new PR did not appear within 2 s");
    browser.screenshot("pulls-live").await;

    // A PR's open page follows a force-push: the timeline grows, no reload.
    browser.goto(&world.api.url(&format!("/pulls/{REPO}/{number}"))).await;
    wait_until_live(&browser).await;
    browser.execute("window.sameDocument = true; return true;", json!([])).await;
    let pushed = github.push(REPO, number);
    wait_for_commit(&world, &format!("SELECT count(*) FROM pull_requests WHERE head_sha = '{pushed}'")).await;
    let moved = browser
        .wait_for(
            &format!(
                "return document.getElementById('timeline').textContent.includes('→ {}');",
                &pushed[..7]
            ),
            Duration::from_secs(2),
        )
        .await;
    assert!(moved.is_some(), "the force-push did not reach the PR's open page within 2 s");
    assert_eq!(
        browser.execute("return window.sameDocument === true;", json!([])).await,
        true,
        "the page reloaded"
    );
    no_console_errors(&browser, "the live pages").await;
    browser.stop().await;
    world.finish().await;
}

/// Waits (up to the settle timeout) until `sql` counts at least one row: the
/// change is committed, and the clock of the page's 2 s starts.
async fn wait_for_commit(world: &TestWorld, sql: &str) {
    let started = std::time::Instant::now();
    while world.count(sql).await == 0 {
        assert!(started.elapsed() < prmonitor_testkit::world::SETTLE_TIMEOUT, "never committed: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_flow_in_a_browser_creates_an_app_whose_webhooks_the_service_accepts() {
    let Some(browser) = Browser::start(1280, 900).await else { return };
    let setup = crate::setup_flow::Setup::start(true).await;

    browser.goto(&setup.url("/setup")).await;
    browser.screenshot("setup").await;
    no_console_errors(&browser, "the setup form").await;
    // The public URL is prefilled from the request; one click to GitHub's page.
    browser.click(&browser.find("#start-setup").await).await;
    wait_for_url(&browser, &setup.url("/setup")).await;
    browser.click(&browser.find("#create-on-github").await).await;
    // The simulator's confirmation page, as GitHub asks to confirm.
    assert!(
        browser.url().await.starts_with(&setup.sim.web_url()),
        "on GitHub's page: {}",
        browser.url().await
    );
    browser.click(&browser.find("#create-app").await).await;
    // Back on prmonitor: the App is created and stored.
    wait_for_url(&browser, &setup.url("/setup/complete?")).await;
    let registered = setup.sim.registered_app().expect("the simulator registered the App");
    let created = browser.text(&browser.find("main").await).await;
    assert!(created.contains(&format!("App {} created", registered.slug)), "{created}");
    assert!(!created.contains(&registered.webhook_secret), "a secret reached the page");
    browser.screenshot("setup-complete").await;
    no_console_errors(&browser, "the setup result").await;

    // Install it: the simulator's page, then back to prmonitor's.
    browser.click(&browser.find("#install-app-link").await).await;
    wait_for_url(&browser, &format!("{}/apps/", setup.sim.web_url())).await;
    browser.click(&browser.find("#install-app").await).await;
    wait_for_url(&browser, &setup.url("/setup/installed")).await;
    assert!(browser.text(&browser.find("main").await).await.contains("being discovered"));
    no_console_errors(&browser, "the installed page").await;

    // The service accepted the App's installation webhook and backfilled its repositories.
    setup.sim.wait_for_deliveries().await;
    let deliveries = setup.sim.deliveries();
    let installation =
        deliveries.iter().find(|d| d.event == "installation").expect("an installation delivery");
    assert_eq!(installation.statuses, [202], "{deliveries:?}");
    prmonitor_testkit::verify::converge(&setup.db.url, &setup.sim, crate::scenarios::CONVERGE)
        .await
        .unwrap_or_else(|d| panic!("the repositories were not backfilled: {d}"));
    browser.stop().await;
    setup.stop().await;
}

/// Waits until the page's address starts with `prefix` (a click that
/// submits a form returns before the redirects after it are followed).
async fn wait_for_url(browser: &Browser, prefix: &str) {
    let script =
        format!("return location.href.startsWith({}) && document.readyState === 'complete';", json!(prefix));
    let arrived = browser.wait_for(&script, Duration::from_secs(10)).await;
    assert!(arrived.is_some(), "never reached {prefix}: at {}", browser.url().await);
}
