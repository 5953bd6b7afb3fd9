//! A progress line for the commands that can run long (`verify` on a large
//! ledger, `bench` filling one): on stderr, redrawn in place a few times a
//! second, and only when stderr is a terminal, so piped output (a CI log,
//! a script) stays exactly as it was.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    label: &'static str,
    unit: &'static str,
    total: Option<u64>,
    on_terminal: bool,
    drawn_at: Option<Instant>,
}

impl Progress {
    /// `label` starts the line (`verify`), `unit` names what is counted
    /// (`entries checked`); `total`, when known, adds a percentage.
    pub fn new(label: &'static str, unit: &'static str, total: Option<u64>) -> Progress {
        Progress {
            label,
            unit,
            total,
            on_terminal: std::io::stderr().is_terminal(),
            drawn_at: None,
        }
    }

    /// Shows `done`, unless the line was drawn a moment ago.
    pub fn set(&mut self, done: u64) {
        if !self.on_terminal
            || self
                .drawn_at
                .is_some_and(|drawn| drawn.elapsed() < REDRAW_EVERY)
        {
            return;
        }
        let line = match self.total {
            Some(total) if total > 0 => format!(
                "{}: {done} of {total} {} ({}%)",
                self.label,
                self.unit,
                done.saturating_mul(100) / total
            ),
            _ => format!("{}: {done} {}", self.label, self.unit),
        };
        // \r and "erase to the end of the line": the next draw overwrites it.
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
        self.drawn_at = Some(Instant::now());
    }
}

impl Progress {
    /// Prints `line` to stderr as its own line (a terminal or not), above
    /// the progress line, which is drawn again at the next `set`.
    pub fn line(&mut self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.drawn_at.take().is_some() {
            let _ = write!(stderr, "\r\x1b[K");
        }
        let _ = writeln!(stderr, "{line}");
    }
}

impl Drop for Progress {
    /// Erases the line, so what the command prints next starts clean.
    fn drop(&mut self) {
        if self.drawn_at.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
        }
    }
}
