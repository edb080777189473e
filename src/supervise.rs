//! Supervision of the service's long-running parts (worker slots, the job
//! listener, the scheduler, intake's writers, the HTTP server).
//!
//! A part that panics, or ends while the service is not stopping, is
//! restarted after a short pause and counted; one that keeps failing makes
//! the process exit non-zero, so the orchestrator restarts it. Never a
//! process that looks alive and does nothing.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tokio::sync::{watch, Notify};

/// More restarts than this within [`RESTART_WINDOW`] and the part is given up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// The pause before a restart doubles from this, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// When a part's ending counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Only a panic: the part ends by itself when its work is over.
    OnPanic,
    /// A panic, or any end before the service stops.
    UnlessStopping,
}

/// The process-wide "a part has failed for good", which `serve` waits on
/// beside the signals.
#[derive(Clone, Default)]
pub struct Fatal(Arc<FatalState>);

#[derive(Default)]
struct FatalState {
    reason: Mutex<Option<String>>,
    notify: Notify,
}

impl Fatal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the first fatal failure and wakes whoever waits.
    pub fn fail(&self, reason: String) {
        let mut first = self.0.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.is_none() {
            *first = Some(reason);
        }
        drop(first);
        self.0.notify.notify_waiters();
        self.0.notify.notify_one();
    }

    /// Resolves with the reason once a part has failed for good.
    pub async fn failed(&self) -> String {
        loop {
            let notified = self.0.notify.notified();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    pub fn reason(&self) -> Option<String> {
        self.0.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Runs the part that `start` makes, restarting it as `policy` says, until
/// `stop` turns true (or the part ends as its policy allows).
pub async fn supervise<F, Fut>(
    part: &'static str,
    policy: Restart,
    stop: watch::Receiver<bool>,
    fatal: Fatal,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    let mut pause = FIRST_PAUSE;
    loop {
        let outcome = AssertUnwindSafe(start()).catch_unwind().await;
        if *stop.borrow() {
            return;
        }
        let reason = match outcome {
            Ok(()) if policy == Restart::OnPanic => return,
            Ok(()) => "it ended unexpectedly".to_owned(),
            Err(payload) => format!("it panicked: {}", panic_message(payload.as_ref())),
        };
        metrics::counter!("prmonitor_part_restarts_total", "part" => part).increment(1);
        let now = Instant::now();
        restarts.push_back(now);
        while restarts.front().is_some_and(|at| now.duration_since(*at) > RESTART_WINDOW) {
            restarts.pop_front();
        }
        if restarts.len() > MAX_RESTARTS {
            tracing::error!(part, %reason, restarts = restarts.len(), "part failed too often; stopping the process");
            fatal.fail(format!(
                "the {part} failed {} times within {RESTART_WINDOW:?}: {reason}",
                restarts.len()
            ));
            return;
        }
        tracing::error!(part, %reason, pause_ms = pause.as_millis() as u64, "part restarted");
        let mut stopped = stop.clone();
        let stopping = async {
            // No sender left: nobody can ask to stop any more.
            if stopped.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            () = stopping => return,
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Logs every panic as one structured `tracing` event (message "panicked",
/// with the panic's text and location), instead of the default hook's lines
/// on stderr, so JSON logs stay one object a line. For the binary only:
/// tests keep the default hook and its output.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let thread = std::thread::current();
        tracing::error!(
            panic_message = %panic_message(info.payload()),
            location = location.as_deref().unwrap_or("unknown"),
            thread = thread.name().unwrap_or("unnamed"),
            "panicked"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_part_is_restarted_then_given_up_as_fatal() {
        let (_stop_tx, stop) = watch::channel(false);
        let fatal = Fatal::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        supervise("test part", Restart::UnlessStopping, stop, fatal.clone(), move || {
            let starts = counted.clone();
            async move {
                // Even starts end without a panic: also unexpected for this policy.
                if starts.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                    return;
                }
                panic!("boom");
            }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), MAX_RESTARTS + 1, "restarted until it failed too often");
        let reason = fatal.reason().expect("fatal");
        assert!(reason.contains("test part") && reason.contains("6 times"), "{reason}");
        assert!(reason.contains("panicked: boom"), "the last failure is named: {reason}");
    }

    #[tokio::test]
    async fn a_part_that_ends_its_work_is_not_restarted_and_stopping_ends_supervision() {
        let (stop_tx, stop) = watch::channel(false);
        let fatal = Fatal::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        supervise("finisher", Restart::OnPanic, stop.clone(), fatal.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        stop_tx.send(true).expect("send");
        supervise("stopping", Restart::UnlessStopping, stop, fatal.clone(), || async {}).await;
        assert_eq!(fatal.reason(), None);
    }

    /// A writer into a shared buffer, for capturing log lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_is_logged_as_one_json_object() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || writer.clone()).finish();
        let previous = std::panic::take_hook();
        log_panics();
        let outcome = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("kaboom {}", 42))
        });
        std::panic::set_hook(previous);
        assert!(outcome.is_err());
        let text = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(event["message"], "panicked");
        assert_eq!(event["level"], "ERROR");
        assert_eq!(event["panic_message"], "kaboom 42");
        assert!(event["location"].as_str().is_some_and(|l| l.contains("supervise.rs")), "{event}");
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let text: Box<dyn Any + Send> = Box::new("static text");
        assert_eq!(panic_message(text.as_ref()), "static text");
        let owned: Box<dyn Any + Send> = Box::new(format!("formatted {}", 1));
        assert_eq!(panic_message(owned.as_ref()), "formatted 1");
        let other: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
    }
}
