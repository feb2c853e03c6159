//! What the user sees while and after a batch runs: the progress line, `-v`
//! logs and the summary (text on stderr, JSON with `--summary-json`).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sluice::attempt::show;
use sluice::stats::{Latency, Tally};
use sluice::{Event, Record};

use crate::cli::ProgressMode;

/// Progress display and per-request logs; every method is a no-op when off.
pub struct Display {
    bar: Option<ProgressBar>,
    /// `--progress always` without a terminal: a plain line every second.
    plain: Option<std::cell::Cell<std::time::Instant>>,
    verbose: bool,
    echo: EchoGuard,
}

impl Display {
    /// A display on stderr as `mode`, `quiet` and `verbose` ask.
    pub fn new(mode: ProgressMode, quiet: bool, verbose: bool) -> Display {
        let terminal = std::io::stderr().is_terminal();
        let show = !quiet
            && match mode {
                ProgressMode::Always => true,
                ProgressMode::Never => false,
                ProgressMode::Auto => terminal,
            };
        let plain = (show && !terminal).then(|| std::cell::Cell::new(std::time::Instant::now()));
        let show = show && terminal;
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(5));
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .expect("the progress template is valid");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let echo = if bar.is_some() {
            EchoGuard::quiet_ctl_echo()
        } else {
            EchoGuard(None)
        };
        Display {
            bar,
            plain,
            verbose,
            echo,
        }
    }

    /// Updates the counters shown.
    pub fn update(&self, done: u64, read: u64, in_flight: usize, tally: &Tally, elapsed: Duration) {
        let rps = done as f64 / elapsed.as_secs_f64().max(0.001);
        let message = format!(
            "{in_flight} in flight · {} ok · {} failed · {rps:.0}/s",
            tally.ok,
            tally.failed()
        );
        if let Some(bar) = &self.bar {
            bar.set_length(read.max(done));
            bar.set_position(done);
            bar.set_message(message);
        } else if let Some(last) = &self.plain
            && last.get().elapsed() >= Duration::from_secs(1)
        {
            last.set(std::time::Instant::now());
            eprintln!("sluice: {done}/{} done · {message}", read.max(done));
        }
    }

    /// Prints a line above the progress bar (or plainly without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Logs one event under `-v`.
    pub fn log(&self, event: &Event) {
        if !self.verbose {
            return;
        }
        let line = match event {
            Event::Waiting { line, id } => format!("line {line} [{id}] waiting"),
            Event::Started {
                line,
                id,
                attempt,
                in_flight,
            } => {
                format!("line {line} [{id}] active (attempt {attempt}, {in_flight} in flight)")
            }
            Event::Retrying {
                line,
                id,
                attempt,
                wait,
                reason,
            } => format!(
                "line {line} [{id}] attempt {attempt} failed ({reason}); retrying in {}",
                show(*wait)
            ),
            Event::Record(r) => record_line(r),
            Event::Paused { origin, wait } => format!("{origin} paused for {}", show(*wait)),
            Event::OriginClosed { origin, reason } => format!("{origin} closed: {reason}"),
            Event::Dropped { line, .. } => {
                format!("line {line} dropped (no record; --resume sends it)")
            }
        };
        self.println(&line);
    }

    /// Removes the bar, leaving the terminal clean.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.echo.restore();
    }
}

/// While the bar is drawn, the terminal must not echo `^C`: the echo moves
/// the cursor under the bar, which then cannot be cleared. The setting is
/// restored when the display finishes or is dropped.
struct EchoGuard(Option<libc::termios>);

impl EchoGuard {
    fn quiet_ctl_echo() -> EchoGuard {
        // SAFETY: tcgetattr/tcsetattr only read and write the struct we pass,
        // on stderr, which is a terminal here.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(2, &mut t) != 0 {
                return EchoGuard(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHOCTL;
            if libc::tcsetattr(2, libc::TCSANOW, &t) != 0 {
                return EchoGuard(None);
            }
            EchoGuard(Some(saved))
        }
    }

    fn restore(&self) {
        if let Some(saved) = &self.0 {
            // SAFETY: as above; `saved` came from tcgetattr.
            unsafe {
                libc::tcsetattr(2, libc::TCSANOW, saved);
            }
        }
    }
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

fn record_line(r: &Record) -> String {
    let head = format!("line {} [{}]", r.line, r.id);
    let ms = sluice::record::duration_ms(r.duration);
    let over = match r.transport {
        Some(t) => match t.tls_version {
            Some(tls) => format!(" over {} {tls}", t.http_version),
            None => format!(" over {}", t.http_version),
        },
        None => String::new(),
    };
    match &r.error {
        None => format!("{head} success {}{over} in {ms}ms", r.status.unwrap_or(0)),
        Some(e) => format!(
            "{head} error {}: {} (after {} attempts, {ms}ms)",
            e.kind, e.message, r.attempts
        ),
    }
}

/// The end-of-run summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Records in the output (after `--resume`, old ones included).
    pub records: u64,
    /// Of which ok.
    pub ok: u64,
    /// Of which failed.
    pub failed: u64,
    /// Records written by this run.
    pub sent_this_run: u64,
    /// The run continued an earlier output (`--resume`).
    pub resumed: bool,
    /// Count by final status.
    pub by_status: std::collections::BTreeMap<u16, u64>,
    /// Count by error kind.
    pub by_error: std::collections::BTreeMap<String, u64>,
    /// Attempts started.
    pub attempts: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Wall time of this run, seconds.
    pub wall_seconds: f64,
    /// Records of this run per second.
    pub requests_per_second: f64,
    /// Latency over records with at least one attempt.
    pub latency: Option<Latency>,
    /// Origins closed during the run, with the reason.
    pub closed_origins: Vec<String>,
    /// HTTP and TLS versions of this run's responses, per origin.
    pub protocols: sluice::stats::Protocols,
    /// Requests left without a record (interrupted or closed): `--resume` sends them.
    pub not_written: u64,
    /// How the run ended, if not normally.
    pub stopped: Option<String>,
    /// TLS verification was off.
    pub insecure: bool,
    /// The exit status.
    pub exit_code: i32,
}

impl Summary {
    /// Builds the summary from the whole-file tally and this run's.
    pub fn new(all: &Tally, this_run: &Tally, wall: Duration) -> Summary {
        Summary {
            records: all.records,
            ok: all.ok,
            failed: all.failed(),
            sent_this_run: this_run.records,
            resumed: false,
            by_status: all.by_status.clone(),
            by_error: all
                .by_kind
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
            attempts: all.attempts,
            retries: all.retries,
            wall_seconds: wall.as_secs_f64(),
            requests_per_second: this_run.records as f64 / wall.as_secs_f64().max(1e-9),
            latency: all.latency(),
            closed_origins: Vec::new(),
            protocols: sluice::stats::Protocols::default(),
            not_written: 0,
            stopped: None,
            insecure: false,
            exit_code: 0,
        }
    }

    /// The human-readable form, for stderr.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let resumed = if self.resumed {
            format!(" ({} sent this run)", self.sent_this_run)
        } else {
            String::new()
        };
        out += &format!(
            "sluice: {} requests{resumed}: {} ok, {} failed in {:.2}s ({:.1} req/s)\n",
            self.records, self.ok, self.failed, self.wall_seconds, self.requests_per_second
        );
        if !self.by_status.is_empty() {
            let s: Vec<String> = self
                .by_status
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out += &format!("  status   {}\n", s.join(", "));
        }
        if !self.by_error.is_empty() {
            let e: Vec<String> = self
                .by_error
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out += &format!("  errors   {}\n", e.join(", "));
        }
        out += &format!("  attempts {} ({} retries)\n", self.attempts, self.retries);
        if let Some(l) = self.latency {
            out += &format!(
                "  latency  p50 {:.1}ms  p90 {:.1}ms  p99 {:.1}ms  max {:.1}ms\n",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        }
        for (origin, versions) in &self.protocols.0 {
            let v: Vec<String> = versions.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            out += &format!("  protocol {origin} {}\n", v.join(", "));
        }
        for c in &self.closed_origins {
            out += &format!("  closed   {c}\n");
        }
        if self.not_written > 0 {
            out += &format!(
                "  {} requests have no record yet: run again with --resume to send them\n",
                self.not_written
            );
        }
        if let Some(s) = &self.stopped {
            out += &format!("  stopped  {s}\n");
        }
        if self.insecure {
            out += "  warning  TLS certificates were NOT verified (--insecure)\n";
        }
        out
    }

    /// Writes the JSON form to `path` (through a temporary file and a rename).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_string_pretty(self).expect("the summary serialises");
        std::fs::write(&tmp, json + "\n")
            .and_then(|_| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write the summary {}", path.display()))
    }
}
