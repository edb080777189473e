//! The `prmonitor` binary as a child process: started with a clean
//! environment, its JSON log lines collected, stopped politely or not.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::app::TEST_SECRET;
use crate::database::TestDatabase;

/// Where the binary is: integration tests and benchmarks know it as
/// `env!("CARGO_BIN_EXE_prmonitor")`, which only they are given.
#[derive(Debug, Clone, Copy)]
pub struct Binary(pub &'static str);

/// A running `prmonitor serve` and the log lines it has written so far.
pub struct Serve {
    pub child: Child,
    /// The HTTP address; empty for `prmonitor worker`.
    pub address: String,
    pub logs: Arc<Mutex<Vec<Value>>>,
}

impl Binary {
    /// The binary with a clean environment: only what the test gives it.
    pub fn command(self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(self.0);
        command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in env {
            command.env(key, value);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    }

    /// Starts `prmonitor ARGS` on `db` with JSON logs and `extra` settings, and
    /// waits until it listens (`serve`) or its worker runs (`worker`).
    pub async fn start(self, args: &[&str], db: &TestDatabase, extra: &[(&str, &str)]) -> Serve {
        let mut env = vec![
            ("DATABASE_URL", db.url.as_str()),
            ("PRMONITOR_LISTEN", "127.0.0.1:0"),
            ("PRMONITOR_WEBHOOK_SECRETS", TEST_SECRET),
            ("PRMONITOR_LOG_FORMAT", "json"),
            ("PRMONITOR_HTTP_WORKERS", "1"),
            ("PRMONITOR_DB_POOL_SIZE", "4"),
        ];
        env.extend_from_slice(extra);
        let mut child = self.command(args, &env).spawn().expect("start prmonitor");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sink = logs.clone();
        let worker_only = args.first() == Some(&"worker");
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    sink.lock().expect("lock").push(Value::String(line));
                    continue;
                };
                let ready = match entry["message"].as_str() {
                    Some("listening") if !worker_only => entry["address"].as_str().map(str::to_owned),
                    Some("worker started") if worker_only => Some(String::new()),
                    _ => None,
                };
                if let Some(address) = ready {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(address);
                    }
                }
                sink.lock().expect("lock").push(entry);
            }
        });
        let address = tokio::time::timeout(Duration::from_secs(60), ready_rx)
            .await
            .unwrap_or_else(|_| panic!("prmonitor did not start: {:?}", logs.lock().expect("lock")))
            .unwrap_or_else(|_| panic!("prmonitor exited before starting: {:?}", logs.lock().expect("lock")));
        Serve { child, address, logs }
    }
}

impl Serve {
    /// The operations listener's address (`PRMONITOR_OPS_LISTEN`), from its
    /// log line, which may follow the line `start` waited for.
    pub async fn operations_address(&self) -> String {
        for _ in 0..100 {
            let found = self.logs.lock().expect("lock").iter().find_map(|line| {
                (line["message"] == "operations listening")
                    .then(|| line["address"].as_str().map(str::to_owned))
            });
            if let Some(address) = found.flatten() {
                return address;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no operations listener: {:?}", self.logs.lock().expect("lock"));
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let url = format!("http://{}/readyz", self.address);
        for _ in 0..300 {
            if client.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} never became ready: {:?}", self.address, self.logs.lock().expect("lock"));
    }

    pub fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
    }

    /// SIGKILL: no goodbye, no lease given back.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait")
            .code()
    }
}
