//! Progress of long work: a one-line bar on a terminal, plain lines elsewhere.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Progress {
    what: &'static str,
    total: usize,
    done: AtomicUsize,
    terminal: bool,
}

impl Progress {
    pub fn new(what: &'static str, total: usize) -> Self {
        Self { what, total, done: AtomicUsize::new(0), terminal: std::io::stderr().is_terminal() }
    }

    /// One more item done; `label` names it.
    pub fn advance(&self, label: &str) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.terminal {
            let width = 30;
            let filled = (done * width).checked_div(self.total).unwrap_or(width).min(width);
            eprint!(
                "\\r[{}{}] {done}/{} {} {label:<40}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.total,
                self.what
            );
            let _ = std::io::stderr().flush();
        } else {
            tracing::info!(done, total = self.total, item = label, "{} progress", self.what);
        }
    }

    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
