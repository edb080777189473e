//! Many changes in one call: `Simulator::activity` and `POST /_sim/activity`,
//! random (seeded) or explicit (all or none), with their webhooks sent to a
//! receiver started here.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use github_sim::activity::Change;
use github_sim::model::{PrState, SimRepo};
use github_sim::{Activity, Generate, ModelError, Operation, SimConfig, Simulator, WebhookTarget};
use serde_json::{json, Value};

/// What the receiver got, in arrival order: `X-GitHub-Event`, `X-GitHub-Delivery`, the body.
type Inbox = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn receive(req: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inbox.lock().unwrap().push((header("x-github-event"), header("x-github-delivery"), body));
    HttpResponse::Ok().finish()
}

fn start_receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let data = web::Data::new(inbox.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server =
        HttpServer::new(move || App::new().app_data(data.clone()).route("/hook", web::post().to(receive)))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
    tokio::spawn(server);
    (url, inbox)
}

/// Three generated repositories with a few PRs each, webhooks to a receiver.
async fn simulator() -> (Simulator, Inbox) {
    let sim = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 3, pull_requests: 6, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (url, inbox) = start_receiver();
    sim.set_webhook(Some(WebhookTarget {
        url,
        secret: "activity".into(),
        loss_rate: 0.0,
        duplicate_rate: 0.0,
        reorder_rate: 0.0,
        concurrency: 1,
    }));
    (sim, inbox)
}

fn repos(sim: &Simulator) -> BTreeMap<i64, SimRepo> {
    sim.world(|w| w.repos.clone())
}

/// `(event, action)` of every webhook the report says was sent, in order, with its delivery id.
fn reported_webhooks(changes: &[Change]) -> Vec<(String, String, String)> {
    changes
        .iter()
        .flat_map(|c| &c.webhooks)
        .map(|w| (w.event.to_owned(), w.action.to_owned(), w.delivery_id.clone().expect("sent")))
        .collect()
}

#[tokio::test]
async fn random_activity_makes_its_changes_and_sends_their_webhooks() {
    let (sim, inbox) = simulator().await;
    let before = repos(&sim);
    let report = sim.activity(&Activity::random(200).seed(7)).await.unwrap();
    assert_eq!(report.seed, Some(7));
    assert_eq!(report.changes.len(), 200);
    assert_eq!(report.totals.changes, 200);
    assert_eq!(report.totals.by_op.values().sum::<usize>(), 200);
    // A realistic mix: most kinds of change happen in 200.
    for op in
        ["open_pr", "push", "start_check_run", "complete_check_run", "edit_pr", "label", "close", "merge"]
    {
        assert!(report.totals.by_op.get(op).is_some_and(|n| *n > 0), "no {op}: {:?}", report.totals.by_op);
    }
    let after = repos(&sim);
    // Every change left its mark on the world.
    let mut last_head = BTreeMap::new();
    for change in &report.changes {
        let repo = after.values().find(|r| r.full_name() == change.repository).expect("a known repository");
        if let Some(number) = change.number {
            let pr = &repo.pulls[&number];
            let old = before.get(&repo.id).and_then(|r| r.pulls.get(&number));
            assert!(old.is_none_or(|old| pr.updated_at >= old.updated_at), "{change:?}");
        }
        if let (Some(number), Some(head), "open_pr" | "push") = (change.number, &change.head_sha, change.op) {
            last_head.insert((repo.id, number), head.clone());
            for id in &change.check_runs {
                assert_eq!(&repo.check_runs[id].head_sha, head, "a new head's runs are on it");
            }
        }
        if change.op == "complete_check_run" {
            let run = &repo.check_runs[&change.check_run_id.expect("a run")];
            assert_eq!(run.status, "completed");
            assert_eq!(run.conclusion, change.conclusion);
        }
        if change.op == "merge" {
            assert_eq!(repo.pulls[&change.number.expect("a PR")].state, PrState::Merged);
        }
    }
    assert!(!last_head.is_empty());
    for ((repo_id, number), head) in &last_head {
        assert_eq!(&after[repo_id].pulls[number].head_sha, head, "the last push is the head");
    }

    // The webhooks sent are the ones reported, in order, each as it was when its change happened.
    sim.wait_for_deliveries().await;
    let received = inbox.lock().unwrap().clone();
    let reported = reported_webhooks(&report.changes);
    assert_eq!(reported.len(), report.totals.webhooks_sent);
    assert_eq!(report.totals.webhooks, report.totals.webhooks_sent);
    assert_eq!(received.len(), reported.len());
    for ((event, guid, body), (r_event, r_action, r_guid)) in received.iter().zip(&reported) {
        assert_eq!((event, guid), (r_event, r_guid));
        assert_eq!(body["action"], r_action.as_str(), "{guid}");
    }
    let by_guid: BTreeMap<&str, &Value> =
        received.iter().map(|(_, guid, body)| (guid.as_str(), body)).collect();
    let pushes: Vec<&Change> = report.changes.iter().filter(|c| c.op == "push").collect();
    assert!(!pushes.is_empty());
    for push in pushes {
        let guid = push.webhooks[0].delivery_id.as_deref().expect("sent");
        assert_eq!(push.webhooks[0].action, "synchronize");
        assert_eq!(by_guid[guid]["pull_request"]["head"]["sha"], push.head_sha.as_deref().expect("a head"));
        assert_eq!(push.webhooks.len(), 1 + push.check_runs.len(), "synchronize, then a created run each");
    }
    sim.stop().await;
}

#[tokio::test]
async fn silent_activity_changes_the_world_and_sends_nothing() {
    let (sim, inbox) = simulator().await;
    let before = repos(&sim);
    let report = sim.activity(&Activity::random(50).seed(3).silent()).await.unwrap();
    assert_eq!(report.changes.len(), 50);
    assert!(report.totals.webhooks > 0, "the changes would cause webhooks");
    assert_eq!(report.totals.webhooks_sent, 0);
    assert!(report.changes.iter().flat_map(|c| &c.webhooks).all(|w| w.delivery_id.is_none()));
    assert_ne!(repos(&sim), before);
    sim.wait_for_deliveries().await;
    assert!(inbox.lock().unwrap().is_empty());
    assert!(sim.hook_deliveries().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn a_seed_repeats_its_changes_and_repositories_limit_them() {
    let start = || async {
        Simulator::start(SimConfig {
            generate: Some(Generate { repositories: 3, pull_requests: 6, check_runs: 2 }),
            ..SimConfig::default()
        })
        .await
        .unwrap()
    };
    let (a, b) = (start().await, start().await);
    let activity = Activity::random(120).seed(11).silent();
    // Callers may spawn an activity as a task of its own.
    fn sendable<T: Send>(future: T) -> T {
        future
    }
    let first = sendable(a.activity(&activity)).await.unwrap();
    let second = b.activity(&activity).await.unwrap();
    assert_eq!(first, second, "same world, same seed: same changes, numbers, ids and SHAs");
    assert_eq!(repos(&a), repos(&b));
    let other = b.activity(&Activity::random(120).seed(12).silent()).await.unwrap();
    assert_ne!(other.changes, first.changes);

    let only = a.activity(&Activity::random(40).in_repositories(&["acme/repo-1"]).silent()).await.unwrap();
    assert!(only.changes.iter().all(|c| c.repository == "acme/repo-1"), "{:?}", only.changes);
    assert!(only.seed.is_some(), "a drawn seed is reported so that the run can be repeated");
    let unknown = a.activity(&Activity::random(1).in_repositories(&["acme/repo-1", "acme/nope"])).await;
    assert_eq!(unknown.unwrap_err().to_string(), "repositories[1]: no repository acme/nope");
    a.stop().await;
    b.stop().await;
}

fn op(value: Value) -> Operation {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn explicit_operations_make_each_mutation_with_its_webhooks() {
    let (sim, inbox) = simulator().await;
    let repo = "acme/repo-0";
    let open = sim
        .activity(&Activity::operations(vec![op(json!({
            "op": "open_pr", "repository": repo, "title": "Explicit", "author": "bob", "checks": ["build"]
        }))]))
        .await
        .unwrap();
    let opened = &open.changes[0];
    let (n, build) = (opened.number.unwrap(), opened.check_runs[0]);
    let ops = vec![
        op(json!({"op": "edit_pr", "repository": repo, "number": n, "title": "Explicit, edited"})),
        op(json!({"op": "label", "repository": repo, "number": n, "label": "bug"})),
        op(json!({"op": "unlabel", "repository": repo, "number": n, "label": "bug"})),
        op(json!({"op": "set_draft", "repository": repo, "number": n, "draft": true})),
        op(json!({"op": "set_draft", "repository": repo, "number": n, "draft": false})),
        op(json!({"op": "start_check_run", "id": build})),
        op(json!({"op": "complete_check_run", "id": build, "conclusion": "failure"})),
        op(json!({"op": "push", "repository": repo, "number": n})),
        op(json!({"op": "create_check_run", "repository": repo, "number": n, "name": "test"})),
        op(json!({"op": "close", "repository": repo, "number": n})),
        op(json!({"op": "reopen", "repository": repo, "number": n})),
        op(json!({"op": "merge", "repository": repo, "number": n})),
    ];
    let report = sim.activity(&Activity::operations(ops.clone())).await.unwrap();
    assert_eq!(
        report.changes.iter().map(|c| c.op).collect::<Vec<_>>(),
        ops.iter().map(Operation::name).collect::<Vec<_>>()
    );
    let actions: Vec<String> = report
        .changes
        .iter()
        .map(|c| c.webhooks.iter().map(|w| format!("{}.{}", w.event, w.action)).collect::<Vec<_>>().join("+"))
        .collect();
    assert_eq!(
        actions,
        [
            "pull_request.edited",
            "pull_request.labeled",
            "pull_request.unlabeled",
            "pull_request.converted_to_draft",
            "pull_request.ready_for_review",
            "",
            "check_run.completed+check_suite.completed",
            "pull_request.synchronize",
            "check_run.created",
            "pull_request.closed",
            "pull_request.reopened",
            "pull_request.closed",
        ]
    );
    let world = repos(&sim);
    let stored = world.values().find(|r| r.full_name() == repo).unwrap();
    let pr = &stored.pulls[&n];
    assert_eq!((pr.title.as_str(), &pr.state), ("Explicit, edited", &PrState::Merged));
    assert_eq!(Some(&pr.head_sha), report.changes[7].head_sha.as_ref());
    let test_run = &stored.check_runs[&report.changes[8].check_run_id.unwrap()];
    assert_eq!((test_run.name.as_str(), &test_run.head_sha), ("test", &pr.head_sha));
    assert_eq!(stored.check_runs[&build].conclusion.as_deref(), Some("failure"));
    sim.wait_for_deliveries().await;
    assert_eq!(inbox.lock().unwrap().len(), open.totals.webhooks_sent + report.totals.webhooks_sent);
    sim.stop().await;
}

#[tokio::test]
async fn a_list_with_a_failing_entry_changes_nothing() {
    let (sim, inbox) = simulator().await;
    let before = repos(&sim);
    let repo = "acme/repo-0";
    let open_number = before
        .values()
        .next()
        .unwrap()
        .pulls
        .values()
        .find(|p| p.state == PrState::Open && !p.draft)
        .unwrap()
        .number;
    let cases = [
        // The third entry fails only after the first two: a merged PR cannot be reopened.
        (
            vec![
                op(json!({"op": "push", "repository": repo, "number": open_number})),
                op(json!({"op": "merge", "repository": repo, "number": open_number})),
                op(json!({"op": "reopen", "repository": repo, "number": open_number})),
            ],
            "operations[2] (reopen): #",
        ),
        (
            vec![
                op(json!({"op": "label", "repository": repo, "number": open_number, "label": "x"})),
                op(json!({"op": "push", "repository": "acme/missing", "number": 1})),
            ],
            "operations[1] (push): no repository acme/missing",
        ),
        (
            vec![op(json!({"op": "edit_pr", "repository": repo, "number": 999, "title": "t"}))],
            "operations[0] (edit_pr): no pull request #999 in acme/repo-0",
        ),
        (
            vec![op(json!({"op": "start_check_run", "id": 1}))],
            "operations[0] (start_check_run): no check run 1",
        ),
        (
            vec![op(json!({"op": "create_check_run", "repository": repo, "name": "x"}))],
            "operations[0] (create_check_run): give the PR's number or a head_sha",
        ),
    ];
    for (ops, expected) in cases {
        let error = sim.activity(&Activity::operations(ops)).await.unwrap_err();
        assert!(matches!(error, ModelError::At { .. }), "{error:?}");
        assert!(error.to_string().starts_with(expected), "{error} / {expected}");
        assert_eq!(repos(&sim), before, "{expected}: nothing was applied");
    }
    sim.wait_for_deliveries().await;
    assert!(inbox.lock().unwrap().is_empty(), "nothing was sent");
    // The ids and SHAs continue as if nothing had been tried.
    let pushed = sim
        .activity(&Activity::operations(vec![op(
            json!({"op": "push", "repository": repo, "number": open_number}),
        )]))
        .await
        .unwrap();
    let fresh = Simulator::start(SimConfig {
        generate: Some(Generate { repositories: 3, pull_requests: 6, check_runs: 2 }),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let same = fresh
        .activity(&Activity::operations(vec![op(
            json!({"op": "push", "repository": repo, "number": open_number}),
        )]))
        .await
        .unwrap();
    assert_eq!(pushed.changes[0].head_sha, same.changes[0].head_sha);
    sim.stop().await;
    fresh.stop().await;
}

/// `POST /_sim/activity` with `body`: the status and the JSON answer.
async fn post(sim: &Simulator, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/_sim/activity", sim.address()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_endpoint_answers_with_the_report_and_refuses_bad_bodies_changing_nothing() {
    let (sim, inbox) = simulator().await;
    let before = repos(&sim);
    let huge = format!(r#"{{"changes": 1, "padding": "{}"}}"#, "x".repeat(1024 * 1024));
    let too_many: Vec<Value> =
        (0..100_001).map(|_| json!({"op": "start_check_run", "id": 1})).collect::<Vec<_>>();
    let refusals: Vec<(String, u16, &str)> = vec![
        ("{\"changes\": ".into(), 400, "Problems parsing JSON"),
        ("[1, 2]".into(), 400, "JSON object"),
        (format!("{}1{}", "[".repeat(5000), "]".repeat(5000)), 400, "Problems parsing JSON"),
        ("{}".into(), 422, "give changes"),
        (r#"{"changes": 1000000}"#.into(), 422, "at most 100000"),
        (r#"{"changes": 5, "repositories": ["acme/nope"]}"#.into(), 422, "repositories[0]: no repository acme/nope"),
        (r#"{"operations": [{"op": "teleport", "repository": "acme/repo-0"}]}"#.into(), 422, "operations[0]: unknown variant `teleport`"),
        (
            r#"{"operations": [{"op": "label", "repository": "acme/repo-0", "number": 1, "label": "x"}, {"op": "push", "repository": "acme/repo-0", "number": 4242}]}"#.into(),
            422,
            "operations[1] (push): no pull request #4242 in acme/repo-0",
        ),
        (huge, 413, "exceeds 1048576 bytes"),
        (serde_json::to_string(&json!({ "operations": too_many })).unwrap(), 413, "exceeds"),
    ];
    for (body, status, message) in refusals {
        let shown: String = body.chars().take(80).collect();
        let (got, answer) = post(&sim, body).await;
        assert_eq!(got, status, "{shown}: {answer}");
        let text = answer["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{shown}: {answer}");
        assert!(answer["documentation_url"].is_string(), "GitHub's error shape: {answer}");
    }
    assert_eq!(repos(&sim), before, "nothing changed");

    let (status, report) = post(&sim, r#"{"changes": 25, "seed": 5, "repositories": ["acme/repo-2"]}"#).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["seed"], 5);
    assert_eq!(report["totals"]["changes"], 25);
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 25);
    assert!(changes.iter().all(|c| c["repository"] == "acme/repo-2" && c["op"].is_string()));
    let first =
        &changes.iter().find(|c| !c["webhooks"].as_array().unwrap().is_empty()).unwrap()["webhooks"][0];
    assert!(
        first["event"].is_string() && first["action"].is_string() && first["delivery_id"].is_string(),
        "{first}"
    );
    sim.wait_for_deliveries().await;
    assert_eq!(Some(inbox.lock().unwrap().len() as u64), report["totals"]["webhooks_sent"].as_u64());
    assert_ne!(repos(&sim), before);
    sim.stop().await;
}
