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
            eprint!("{}", bar(done, self.total, self.what, label));
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

/// The bar's line: a carriage return (so it redraws in place), the bar, the count.
fn bar(done: usize, total: usize, what: &str, label: &str) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH).min(WIDTH);
    format!("\r[{}{}] {done}/{total} {what} {label:<40}", "#".repeat(filled), " ".repeat(WIDTH - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_redraws_in_place() {
        let line = bar(3, 4, "repositories", "acme/api");
        assert!(line.starts_with("\r["), "{line:?}");
        assert!(!line.contains('\\'), "a literal backslash: {line:?}");
        assert!(line.contains("3/4 repositories acme/api"), "{line:?}");
        assert_eq!(line.matches('#').count(), 22);
        assert!(bar(1, 0, "x", "y").contains(&"#".repeat(30)), "an empty total is a full bar");
    }
}
