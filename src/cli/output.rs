//! Standard output that survives a closed pipe, and progress on standard error.

use bilevel::BilevelError;
use bilevel::problem::Oracle;
use bilevel::solver::{Iterate, Observer};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Write `text` to standard output. A closed pipe (`bilevel list | head -1`) ends the process quietly with
/// status 0: the reader has all it asked for. Any other write error is an I/O error.
pub fn emit(text: &str) -> Result<(), BilevelError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(BilevelError::io("write", std::path::Path::new("standard output"), &e)),
    }
}

/// [`emit`] with a newline.
pub fn emitln(text: &str) -> Result<(), BilevelError> {
    emit(&format!("{text}\n"))
}

/// Progress of a long job on standard error: a self-overwriting line on a terminal, plain lines (at most one every
/// two seconds) when forced with `--progress` onto a file or pipe, nothing otherwise. Never touches stdout.
pub struct Progress {
    total: u64,
    done: u64,
    what: &'static str,
    mode: Mode,
    start: Instant,
    last: Option<Instant>,
}

#[derive(PartialEq)]
enum Mode {
    Off,
    Terminal,
    Lines,
}

impl Progress {
    /// Progress over `total` units of `what` (e.g. "iterations"); shown on a terminal, or everywhere if `force`.
    pub fn new(total: u64, what: &'static str, force: bool) -> Self {
        let mode = if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else if force {
            Mode::Lines
        } else {
            Mode::Off
        };
        Progress {
            total,
            done: 0,
            what,
            mode,
            start: Instant::now(),
            last: None,
        }
    }

    /// Change the number of units (a shard runs only part of the work).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// Whether anything is drawn (callers skip work that only feeds the display).
    pub fn enabled(&self) -> bool {
        self.mode != Mode::Off
    }

    /// Set the number of finished units to `done`, with an optional label of the last one.
    pub fn set(&mut self, done: u64, label: &str) {
        self.done = done.min(self.total);
        if self.mode == Mode::Off {
            return;
        }
        let every = match self.mode {
            Mode::Terminal => Duration::from_millis(100),
            _ => Duration::from_secs(2),
        };
        let now = Instant::now();
        let due = self.last.is_none_or(|t| now - t >= every) || self.done == self.total;
        if !due {
            return;
        }
        self.last = Some(now);
        let secs = self.start.elapsed().as_secs_f64();
        let frac = self.done as f64 / self.total.max(1) as f64;
        let eta = if self.done > 0 && self.done < self.total {
            format!(", ~{:.0} s left", secs * (1.0 - frac) / frac)
        } else {
            String::new()
        };
        let line = format!(
            "progress: {}/{} {} ({:.0}%), {:.1} s{eta}{}{}",
            self.done,
            self.total,
            self.what,
            100.0 * frac,
            secs,
            if label.is_empty() { "" } else { "  " },
            label
        );
        let mut err = std::io::stderr().lock();
        let _ = match self.mode {
            Mode::Terminal => write!(err, "\r\x1b[K{line}"),
            _ => writeln!(err, "{line}"),
        };
        let _ = err.flush();
    }

    /// One more unit finished.
    pub fn inc(&mut self, label: &str) {
        self.set(self.done + 1, label);
    }

    /// Clear the terminal line (plain lines stay).
    pub fn finish(&mut self) {
        if self.mode == Mode::Terminal {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

/// An observer that forwards to `inner` and reports the iteration count to a [`Progress`].
pub struct ProgressObserver<'a> {
    /// The observer that records.
    pub inner: &'a mut dyn Observer,
    /// The display.
    pub progress: Progress,
}

impl Observer for ProgressObserver<'_> {
    fn observe(&mut self, o: &Oracle, state: &Iterate) -> bilevel::Result<()> {
        self.inner.observe(o, state)?;
        // Cheap: a clock read every 1024 iterations.
        if self.progress.enabled() && state.k % 1024 == 0 {
            self.progress.set(state.k as u64, "");
        }
        Ok(())
    }
}
