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
pub struct Screen {
    bar: Option<ProgressBar>,
    /// `--progress always` without a terminal: a plain line every second.
    plain: Option<std::cell::Cell<std::time::Instant>>,
    verbose: bool,
    echo: EchoGuard,
}

impl Screen {
    /// A display on stderr as `mode`, `quiet` and `verbose` ask.
    pub fn new(mode: ProgressMode, quiet: bool, verbose: bool) -> Screen {
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
            let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr_with_hz(5));
            let style =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
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
        Screen {
            bar,
            plain,
            verbose,
            echo,
        }
    }

    /// Updates what is shown.
    pub fn update(&self, p: &Progress) {
        // The message is made only where it is shown: under `--progress
        // never` a paced run's ticks would format it for nothing.
        if let Some(bar) = &self.bar {
            // Never 0/0: indicatif draws that as a full bar (done), which is
            // what a terminal showed while waiting for standard input.
            bar.set_length(p.total.max(p.done).max(1));
            bar.set_position(p.done);
            bar.set_message(p.message());
        } else if let Some(last) = &self.plain
            && last.get().elapsed() >= Duration::from_secs(1)
        {
            last.set(std::time::Instant::now());
            eprintln!("sluice: {}", p.message());
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
            Event::Paused {
                origin,
                wait,
                reason,
            } => format!("{origin} paused for {} ({reason})", show(*wait)),
            Event::OriginClosed { origin, reason } => format!("{origin} closed: {reason}"),
            // Shown whatever -v says (State::handle).
            Event::Redis(_) => return,
            Event::Dropped { line, .. } => {
                format!("line {line} dropped (no record; --resume sends it)")
            }
            Event::Learned(l) => learned_line(l),
            Event::Concurrency(c) => concurrency_line(c),
            Event::StaleGrants { dropped, unsent } => format!(
                "Redis grants gone stale (each cost one start, none went late): \
                 {dropped} dropped before a start, {unsent} not sent when their attempt ran"
            ),
            Event::RetryBudget { waited, held } => format!(
                "retries waited {} for the retry budget ({} held)",
                show(*waited),
                plural(*held, "retry")
            ),
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

/// What the progress line shows.
pub struct Progress<'a> {
    /// Records in the output (under `--resume`, old ones included).
    pub done: u64,
    /// Request lines in the input: exact for counted files or an input read
    /// to its end, else those read so far (a lower bound).
    pub total: u64,
    pub exact: bool,
    pub in_flight: usize,
    /// Read, waiting for a first attempt.
    pub waiting: usize,
    /// Waiting to retry.
    pub retrying: usize,
    /// The origin paused longest, until when, and why.
    pub paused: Option<(&'a str, std::time::SystemTime, &'a str)>,
    /// This run's records.
    pub tally: &'a Tally,
    /// Records of this run that were sent.
    pub sent: u64,
    pub elapsed: Duration,
    /// Nothing read yet from standard input at a terminal.
    pub reading_stdin: bool,
    /// Under `--redis`: how long the shared limiter has been unreachable
    /// (no new request starts meanwhile).
    pub redis_down: Option<Duration>,
    /// Under `--adaptive`: the concurrency limit now, and `-c`.
    pub limit: Option<(usize, usize)>,
}

impl Progress<'_> {
    /// `1250/3000 · ETA 1m10s · 16 in flight · 1250 ok · 0 failed · 120/s`.
    fn message(&self) -> String {
        if self.reading_stdin {
            return "reading requests from standard input; Ctrl-D ends it".into();
        }
        let total = if self.exact {
            self.total.to_string()
        } else {
            format!("at least {}", self.total)
        };
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let rate = self.tally.records as f64 / secs;
        let mut parts = vec![format!("{}/{total}", self.done)];
        let left = self.total.saturating_sub(self.done);
        let held = self.paused.is_some() || self.redis_down.is_some();
        if self.exact && left > 0 && rate > 0.0 && !held {
            parts.push(format!("ETA {}", clock(left as f64 / rate)));
        }
        if let Some(down) = self.redis_down {
            parts.push(format!(
                "Redis unreachable for {}, reconnecting: no new request starts",
                clock(down.as_secs_f64())
            ));
        }
        match self.paused {
            // One count of what waits, its retries inside it: `60 waiting ·
            // 10 waiting to retry` read as 70 of 60 lines.
            Some((origin, until, why)) => {
                let retrying = match self.retrying {
                    0 => String::new(),
                    n => format!(" ({n} of them to retry)"),
                };
                parts.push(format!(
                    "{origin} paused by {why} until {}, {} waiting{retrying}",
                    local_time(until),
                    self.waiting + self.retrying
                ));
                if self.in_flight > 0 {
                    parts.push(format!("{} in flight", self.in_flight));
                }
            }
            None => {
                parts.push(match self.limit {
                    Some((limit, c)) => {
                        format!("{} in flight (limit {limit} of {c})", self.in_flight)
                    }
                    None => format!("{} in flight", self.in_flight),
                });
                if self.retrying > 0 {
                    parts.push(format!("{} waiting to retry", self.retrying));
                }
            }
        }
        parts.push(format!(
            "{} ok · {} failed",
            self.tally.ok,
            self.tally.failed()
        ));
        if self.paused.is_none() {
            parts.push(format!("{:.0}/s", self.sent as f64 / secs));
        }
        parts.join(" · ")
    }
}

/// Seconds as `45s`, `3m05s`, `2h10m`.
fn clock(secs: f64) -> String {
    let s = secs.ceil().min(1e9) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A moment as local `HH:MM:SS`.
fn local_time(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r only writes the struct we pass.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return format!("{secs} (Unix time)");
        }
        tm
    };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `1 request`, `2 requests`: a count with its noun.
pub fn plural(n: u64, noun: &str) -> String {
    match (n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "retry") => format!("{n} retries"),
        _ => format!("{n} {noun}s"),
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
            "{head} error {}: {} (after {}, {ms}ms)",
            e.kind,
            e.message,
            plural(u64::from(r.attempts), "attempt")
        ),
    }
}

/// One origin's learned limits as `-v` shows them, its header warnings on
/// lines of their own.
fn learned_line(l: &sluice::event::Learned) -> String {
    let what = if l.last { "learned in all" } else { "learned" };
    // `none`: no header spoke; the rate was discovered from refusals.
    let from = match l.dialect {
        "none" => "refusals (no rate-limit headers)".to_string(),
        dialect => format!("{dialect} rate-limit headers"),
    };
    let mut line = format!(
        "{} {what} from its {from}: {}",
        l.origin,
        LearnedOrigin::from(l).pace()
    );
    for w in &l.warnings {
        line += &format!("\n{}: {w}", l.origin);
    }
    line
}

/// What sluice learned about one origin's limits (`learned` in
/// `--summary-json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LearnedOrigin {
    /// The origin.
    pub origin: String,
    /// The rate-limit dialect of its headers.
    pub dialect: String,
    /// The request rate it was paced at, when the headers said enough.
    pub requests_per_second: Option<f64>,
    /// Starts that could bunch up under that rate.
    pub burst: u64,
    /// The token limits it was paced at, when its headers limit tokens.
    pub tokens: Vec<TokenPace>,
    /// Seconds its next request waited for the learned limits.
    pub paced_seconds: f64,
    /// 429s the learned limits did not predict.
    pub refused: u64,
}

/// One learned token limit (`learned[].tokens` in `--summary-json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenPace {
    /// What it counts: `tokens`, `input-tokens` or `output-tokens`.
    pub dimension: String,
    /// Tokens a second.
    pub per_second: f64,
    /// Tokens that could be spent at once.
    pub burst: u64,
}

impl From<&sluice::event::Learned> for LearnedOrigin {
    fn from(l: &sluice::event::Learned) -> LearnedOrigin {
        LearnedOrigin {
            origin: l.origin.clone(),
            dialect: l.dialect.to_string(),
            requests_per_second: l.requests_per_second,
            burst: l.burst,
            tokens: (l.tokens.iter())
                .map(|t| TokenPace {
                    dimension: t.dimension.to_string(),
                    per_second: t.per_second,
                    burst: t.burst,
                })
                .collect(),
            paced_seconds: l.paced.as_secs_f64(),
            refused: l.refused,
        }
    }
}

impl LearnedOrigin {
    /// `12.5 req/s (burst 12), 20000 tokens/s (burst 20000), paced 3.20s,
    /// 0 refused despite it`.
    pub fn pace(&self) -> String {
        let mut rate = match self.requests_per_second {
            Some(r) => format!("{r:.1} req/s (burst {})", self.burst),
            None => "no request rate".into(),
        };
        for t in &self.tokens {
            rate += &format!(
                ", {:.0} {}/s (burst {})",
                t.per_second, t.dimension, t.burst
            );
        }
        format!(
            "{rate}, paced {:.2}s, {} refused despite it",
            self.paced_seconds, self.refused
        )
    }
}

/// The adaptive concurrency limit as `-v` shows it.
fn concurrency_line(c: &sluice::event::Concurrency) -> String {
    if c.last {
        return format!(
            "concurrency limit in all: {}",
            AdaptiveAccount::from(c).describe()
        );
    }
    format!("concurrency limit {} ({})", c.limit, c.why)
}

/// The adaptive concurrency limit's account (`adaptive` in
/// `--summary-json`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct AdaptiveAccount {
    /// The limit at the end.
    pub limit: usize,
    /// The lowest it was.
    pub lowest: usize,
    /// The highest it was.
    pub highest: usize,
    /// Its mean over the run, weighted by time.
    pub mean: f64,
    /// How many times it was lowered.
    pub decreases: u64,
}

impl From<&sluice::event::Concurrency> for AdaptiveAccount {
    fn from(c: &sluice::event::Concurrency) -> AdaptiveAccount {
        AdaptiveAccount {
            limit: c.limit,
            lowest: c.lowest,
            highest: c.highest,
            mean: c.mean,
            decreases: c.decreases,
        }
    }
}

impl AdaptiveAccount {
    /// `22 at the end (mean 23.4, lowest 10, highest 40; lowered 5 times)`.
    pub fn describe(&self) -> String {
        format!(
            "{} at the end (mean {:.1}, lowest {}, highest {}; lowered {})",
            self.limit,
            self.mean,
            self.lowest,
            self.highest,
            match self.decreases {
                1 => "once".to_string(),
                n => format!("{n} times"),
            }
        )
    }
}

/// How long retries waited for the retry budget (`retry_budget` in
/// `--summary-json`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RetryBudgetAccount {
    /// Seconds retries waited for it, in all.
    pub waited_seconds: f64,
    /// Retries that found it empty and waited.
    pub retries_held: u64,
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
    /// What was learned from each origin's rate-limit headers.
    pub learned: Vec<LearnedOrigin>,
    /// How long retries waited for the retry budget (null when it is off,
    /// or recomputed from records).
    pub retry_budget: Option<RetryBudgetAccount>,
    /// The adaptive concurrency limit (null without `--adaptive`, and when
    /// recomputed from records).
    pub adaptive: Option<AdaptiveAccount>,
    /// HTTP and TLS versions of this run's responses, per origin.
    pub protocols: sluice::stats::Protocols,
    /// Requests left without a record (interrupted or closed): `--resume` sends them.
    /// Exact when the inputs are files (counted up front) or were read to
    /// their end; otherwise a lower bound.
    pub not_written: u64,
    /// `not_written` is exact (false: at least that many).
    pub not_written_exact: bool,
    /// In-flight requests cancelled without a record by a second interrupt
    /// (their attempts are counted in `attempts`).
    pub cancelled: u64,
    /// The output can be resumed (a regular file).
    #[serde(skip)]
    pub resumable: bool,
    /// Attempts this run started (a run whose records were lost to a failed
    /// write sent requests, yet has no rate).
    #[serde(skip)]
    pub attempts_this_run: u64,
    /// How the run ended, if not normally.
    pub stopped: Option<String>,
    /// TLS verification was off.
    pub insecure: bool,
    /// The exit status.
    pub exit_code: crate::exit::ExitCode,
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
            learned: Vec::new(),
            retry_budget: None,
            adaptive: None,
            protocols: sluice::stats::Protocols::default(),
            not_written: 0,
            not_written_exact: true,
            cancelled: 0,
            resumable: true,
            attempts_this_run: this_run.attempts,
            stopped: None,
            insecure: false,
            exit_code: crate::exit::ExitCode::Ok,
        }
    }

    /// Requests per second over the records of requests that were sent: a
    /// run that sent nothing (every line bad, or already recorded) has no
    /// rate.
    pub fn set_rate(&mut self, sent: u64, wall: Duration) {
        self.requests_per_second = if sent == 0 {
            0.0
        } else {
            sent as f64 / wall.as_secs_f64().max(1e-9)
        };
    }

    /// The human-readable form, for stderr.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let resumed = if self.resumed {
            format!(" ({} sent this run)", self.sent_this_run)
        } else {
            String::new()
        };
        let rate = if self.requests_per_second > 0.0 {
            format!("{:.1} req/s", self.requests_per_second)
        } else if self.attempts_this_run > 0 {
            "none recorded".into()
        } else {
            "nothing sent".into()
        };
        out += &format!(
            "sluice: {}{resumed}: {} ok, {} failed in {:.2}s ({rate})\n",
            plural(self.records, "request"),
            self.ok,
            self.failed,
            self.wall_seconds
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
        out += &format!(
            "  attempts {} ({})\n",
            self.attempts,
            plural(self.retries, "retry")
        );
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
        for l in &self.learned {
            out += &format!("  learned  {} {}: {}\n", l.origin, l.dialect, l.pace());
        }
        if let Some(b) = self.retry_budget.filter(|b| b.retries_held > 0) {
            out += &format!(
                "  budget   {} waited {:.2}s in all for the retry budget\n",
                plural(b.retries_held, "retry"),
                b.waited_seconds
            );
        }
        if let Some(a) = &self.adaptive {
            out += &format!("  limit    concurrency {}\n", a.describe());
        }
        if self.cancelled > 0 {
            out += &format!(
                "  cancelled {} in flight without a record (the server may have seen them; their attempts are counted)\n",
                plural(self.cancelled, "request")
            );
        }
        if self.not_written > 0 {
            let n = plural(self.not_written, "request");
            let n = if self.not_written_exact {
                n
            } else {
                format!("at least {n}")
            };
            let verb = if self.not_written == 1 && self.not_written_exact {
                "has"
            } else {
                "have"
            };
            let advice = if self.resumable {
                "run again with --resume to send them"
            } else {
                "--resume needs results in a regular file: to continue a stopped run, write them with -o FILE"
            };
            out += &format!("  {n} {verb} no record yet: {advice}\n");
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
        let json = serde_json::to_string_pretty(self).expect("the summary serialises");
        crate::outputs::replace(path, (json + "\n").as_bytes())
            .with_context(|| format!("cannot write the summary {}", path.display()))
    }
}

/// What Redis trouble looks like on stderr (`--redis`); `None` for nothing
/// worth a line.
pub fn redis_trouble(trouble: &sluice::shared::Trouble) -> Option<String> {
    use sluice::shared::Trouble;
    match trouble {
        Trouble::Down { for_, message } => Some(format!(
            "sluice: Redis unreachable for {:.1}s, no new request starts; reconnecting ({message})",
            for_.as_secs_f64()
        )),
        Trouble::Back => Some("sluice: Redis reachable again; requests start again".into()),
        Trouble::GaveUp { message } => {
            Some(format!("sluice: {message}; stopping (--resume continues)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_when_redis_holds_every_start() {
        let tally = Tally::default();
        let mut progress = Progress {
            done: 10,
            total: 100,
            exact: true,
            in_flight: 3,
            waiting: 87,
            retrying: 0,
            paused: None,
            tally: &tally,
            sent: 10,
            elapsed: Duration::from_secs(2),
            reading_stdin: false,
            redis_down: None,
            limit: None,
        };
        assert!(!progress.message().contains("Redis"));
        progress.redis_down = Some(Duration::from_millis(3_200));
        let text = progress.message();
        assert!(
            text.contains("Redis unreachable for 4s, reconnecting: no new request starts"),
            "{text}"
        );
        assert!(!text.contains("ETA"), "no ETA while nothing starts: {text}");
    }
}
