//! The deployment kit in deploy/: systemd units that systemd accepts, alert
//! rules promtool accepts, a dashboard and rules that name only metrics
//! prmonitor exports, an example configuration that loads; and the
//! `completions` command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use github_sim::NewPr;
use prmonitor::config::Settings;
use prmonitor_testkit::world::{ADMIN_TOKEN, READ_TOKEN};
use prmonitor_testkit::TestWorld;

use crate::PRMONITOR;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prmonitor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_systemd_units_verify_clean() {
    let units = ["prmonitor.service", "prmonitor-worker@.service"];
    let dir = temp_dir("units");
    let mut paths = Vec::new();
    for unit in units {
        let text = read(&format!("deploy/systemd/{unit}"));
        assert!(text.contains("ExecStart=/usr/local/bin/prmonitor "), "{unit}");
        for directive in [
            "User=prmonitor",
            "EnvironmentFile=/etc/prmonitor/prmonitor.env",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
        ] {
            assert!(text.lines().any(|line| line == directive), "{unit} lacks {directive}");
        }
        // systemd kills after TimeoutStopSec: it must outlast prmonitor's own drain.
        let stop: u64 = text
            .lines()
            .find_map(|line| line.strip_prefix("TimeoutStopSec="))
            .and_then(|value| value.trim_end_matches('s').parse().ok())
            .unwrap_or_else(|| panic!("{unit}: TimeoutStopSec in seconds"));
        assert!(stop > 30, "{unit}: TimeoutStopSec={stop} is not above the default shutdown timeout of 30 s");
        // verify wants the ExecStart binary to exist: the one under test stands in.
        let text = text.replace("/usr/local/bin/prmonitor", PRMONITOR.0);
        // Each process has its own operations port, which the environment file cannot give.
        let ops = text.lines().find_map(|line| line.strip_prefix("Environment=PRMONITOR_OPS_LISTEN="));
        let expected = if unit.contains('@') { "127.0.0.1:%i" } else { "127.0.0.1:9464" };
        assert_eq!(ops, Some(expected), "{unit}");
        let path = dir.join(unit.replace("@.", "@9465."));
        std::fs::write(&path, text).expect("write unit");
        paths.push(path);
    }
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && printed.is_empty(), "systemd-analyze verify: {printed}");
}

/// `promtool check WHAT FILE`; `None` (the test skips) without promtool,
/// unless `PRMONITOR_REQUIRE_PROMTOOL=1`.
fn promtool_check(what: &str, file: &str) -> Option<std::process::Output> {
    promtool(&["check", what], file)
}

/// `promtool ARGS FILE`, which must succeed; `None` as for [`promtool_check`].
fn promtool(args: &[&str], file: &str) -> Option<std::process::Output> {
    let Ok(output) = std::process::Command::new("promtool").args(args).arg(repo_file(file)).output() else {
        assert!(
            std::env::var("PRMONITOR_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "PRMONITOR_REQUIRE_PROMTOOL=1 but promtool is not installed"
        );
        eprintln!("skipped: promtool is not installed (Debian: apt-get install prometheus)");
        return None;
    };
    assert!(
        output.status.success(),
        "promtool {} {file}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(output)
}

#[test]
fn the_alert_rules_pass_promtool() {
    promtool_check("rules", "deploy/prometheus/prmonitor-rules.yml");
}

#[test]
fn the_alert_rules_fire_when_their_tests_say() {
    let Some(output) = promtool(&["test", "rules"], "deploy/prometheus/prmonitor-rules.test.yml") else {
        return;
    };
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("SUCCESS"), "{printed}");
    // Every alert has a test of when it fires.
    let rules = read("deploy/prometheus/prmonitor-rules.yml");
    let tests = read("deploy/prometheus/prmonitor-rules.test.yml");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let tested = lines.windows(3).any(|w| {
            w[0] == format!("alertname: {alert}") && w[1] == "exp_alerts:" && w[2].contains("exp_labels")
        });
        assert!(tested, "no test shows {alert} firing");
    }
}

/// The rules' expressions: each `expr:` line, or the indented block after `expr: |`.
fn rule_expressions(rules: &str) -> String {
    let mut expressions = String::new();
    let mut block: Option<usize> = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(expr_indent) = block {
            if indent > expr_indent || line.trim().is_empty() {
                expressions.push_str(line.trim());
                expressions.push('\n');
                continue;
            }
            block = None;
        }
        if let Some(rest) = line.trim().strip_prefix("expr:") {
            if rest.trim() == "|" {
                block = Some(indent);
            } else {
                expressions.push_str(rest.trim());
                expressions.push('\n');
            }
        }
    }
    expressions
}

#[test]
fn the_scrape_configuration_passes_promtool_and_scrapes_the_units_operations_ports() {
    let config = read("deploy/prometheus/prometheus.yml");
    for target in ["127.0.0.1:9464", "127.0.0.1:9465", "127.0.0.1:9466"] {
        assert!(config.lines().any(|line| line.trim() == format!("- {target}")), "{target}");
    }
    assert!(config.contains("job_name: prmonitor"), "the rules' job label");
    // Checks the rule file it loads as well.
    promtool_check("config", "deploy/prometheus/prometheus.yml");
}

/// Metric names (`prmonitor_…`, histogram series folded into their family) in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(found) = text[start..].find("prmonitor_") {
        let begin = start + found;
        let preceded = begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_');
        let end = text[begin..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| begin + n);
        if !preceded {
            let name = &text[begin..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(family.to_owned());
        }
        start = end;
    }
    names
}

#[tokio::test]
async fn the_dashboard_and_the_rules_name_only_metrics_prmonitor_exports() {
    let dashboard = read("deploy/grafana/prmonitor.json");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let mut expressions = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            expressions.push_str(target["expr"].as_str().expect("expr"));
            expressions.push('\n');
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("variables") {
        if let Some(query) = variable["query"].as_str() {
            expressions.push_str(query);
            expressions.push('\n');
        }
    }
    let rules = read("deploy/prometheus/prmonitor-rules.yml");
    let rule_exprs = rule_expressions(&rules);
    assert!(rule_exprs.contains("up{"), "the rules watch the scrape itself");
    // The multi-line expressions were read too.
    assert!(rule_exprs.contains("prmonitor_github_rate_limit_limit"), "{rule_exprs}");
    let used = metric_names(&format!("{expressions}{rule_exprs}"));
    assert!(used.len() > 15, "the parse found the names: {used:?}");

    // Exported: a scrape after PRs, checks and a reconcile, and every described family.
    let world = TestWorld::builder(2).prs(3, 2).backfilled().start().await;
    let number = world.github.open_pr("acme/repo-0", NewPr::new("Deploy kit", "alice"));
    world.github.check("acme/repo-0", &world.github.head("acme/repo-0", number), "build", "failure");
    world.settle().await;
    prmonitor::simulated::reconcile_all(world.address(), ADMIN_TOKEN).await.expect("reconcile");
    world.settle().await;
    // An unsigned delivery, and a change feed stream held open while scraping.
    let client = reqwest::Client::new();
    let unsigned = client
        .post(format!("http://{}/webhooks/github", world.address()))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "deploy-kit-unsigned")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(unsigned.status(), 401);
    let stream = client
        .get(format!("http://{}/api/v1/events", world.address()))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .expect("change feed");
    assert_eq!(stream.status(), 200);
    let scrape = reqwest::get(format!("http://{}/metrics", world.address()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    drop(stream);
    let mut exported = metric_names(&scrape);
    // Families that need a fault to appear (a dead job's failure, a panicking
    // part, deliveries lost while down) are in the scrape only after one; each
    // is described (HELP) in telemetry.rs, which a unit test keeps complete.
    exported.extend(metric_names(&read("src/telemetry.rs")));
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "the dashboard and rules use metrics prmonitor does not export: {missing:?}");
    world.finish().await;
}

fn documented_settings() -> Vec<String> {
    read("README.md")
        .lines()
        .skip_while(|line| !line.starts_with("## Settings"))
        .take_while(|line| !line.starts_with("## Setting up"))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .map(str::to_owned)
        .collect()
}

fn file_key(variable: &str) -> String {
    variable.strip_prefix("PRMONITOR_").unwrap_or(variable).to_lowercase()
}

#[test]
fn the_example_configuration_names_every_setting_and_loads_once_filled_in() {
    let example = read("deploy/prmonitor.toml.example");
    let settings = documented_settings();
    assert!(settings.len() > 30, "{settings:?}");
    let missing: Vec<_> = settings
        .iter()
        .filter(|variable| {
            let key = file_key(variable);
            !example.lines().any(|line| {
                let line = line.trim_start_matches("# ");
                line.starts_with(&format!("{key} = "))
            })
        })
        .collect();
    assert!(missing.is_empty(), "the example lacks {missing:?}");

    let filled = example
        .replace("<database-password>", "pw")
        .replace("<webhook-secret>", "whsec")
        .replace("<admin-token>", "admin-example-token");
    assert!(!filled.lines().filter(|l| !l.starts_with('#')).any(|l| l.contains('<')), "placeholders left");
    let dir = temp_dir("example-config");
    let path = dir.join("prmonitor.toml");
    std::fs::write(&path, &filled).expect("write");
    let no_env = |_: &str| None;
    let loaded = Settings::load_from(Some(&path), &no_env).expect("the filled-in example loads");
    assert_eq!(loaded.webhook_secrets.len(), 1);

    // Every default shown (a commented `key = value`) is one the settings accept.
    let defaults: String = filled
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if settings.iter().any(|v| rest.starts_with(&format!("{} = ", file_key(v)))) => {
                rest.to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The unset settings shown as examples stay commented: auth is an App or a
    // token, not both, and their values are placeholders.
    let defaults: String = defaults
        .lines()
        .filter(|line| {
            ![
                "github_app_id = ",
                "github_private_key = ",
                "github_private_key_file = ",
                "github_token = ",
                "repositories = ",
                "secret_key = ",
                "read_token = ",
            ]
            .iter()
            .any(|key| line.starts_with(key))
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, defaults).expect("write");
    Settings::load_from(Some(&path), &no_env).expect("the example with its defaults uncommented loads");
}

#[tokio::test]
async fn completions_print_a_script_naming_the_subcommands_and_an_unknown_shell_exits_2() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = PRMONITOR.command(&["completions", shell], &[]).output().await.expect("run");
        assert!(output.status.success(), "{shell}: {}", String::from_utf8_lossy(&output.stderr));
        let script = String::from_utf8_lossy(&output.stdout);
        for subcommand in ["serve", "worker", "migrate", "reconcile", "jobs", "deliveries", "completions"] {
            assert!(script.contains(subcommand), "{shell}: no {subcommand}");
        }
    }
    let bash = PRMONITOR.command(&["completions", "bash"], &[]).output().await.expect("run");
    assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F"), "a bash completion script");
    let unknown = PRMONITOR.command(&["completions", "tcsh"], &[]).output().await.expect("run");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(unknown.stdout.is_empty());
}
