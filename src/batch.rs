//! The loop that drives one engine run from the CLI: it writes records
//! through the sink, feeds the display and the statistics, turns signals
//! into a drain (first) or a cancel (second), and decides the exit status.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use futures::{Stream, StreamExt};
use sluice::sink::Sink;
use sluice::stats::{Report, Sample, Tally};
use sluice::{Config, Event, Input};
use tokio::sync::{mpsc, oneshot};

use crate::exit::{Ending, ExitCode, Stop};
use crate::screen::{Progress, Screen, Summary};
use crate::signals::Signal;

/// The message for an engine that stopped early: a panic loses no record
/// that was written, so a resumable run says how to continue.
fn engine_stopped(e: sluice::RunError, resumable: bool) -> String {
    match e {
        sluice::RunError::Panicked if resumable => {
            format!("{e}; run again with --resume to continue")
        }
        _ => e.to_string(),
    }
}

/// Why the input stream stopped early (a read failure, or under `--resume`
/// an input that changed).
pub use sluice::filejob::InputError as FeedError;

/// Input items, with a count of those read and the first read error.
pub struct Feed {
    /// Items read so far (lines already recorded, under `--resume`, not
    /// counted).
    pub read: Arc<AtomicU64>,
    /// Set when the input failed mid-stream.
    pub error: Arc<std::sync::Mutex<Option<FeedError>>>,
    /// Set once the input was read to its end.
    pub ended: Arc<AtomicBool>,
    /// Request lines in the whole input, when it could be counted up front
    /// (regular files); set by a counting task while the run goes on.
    pub total: Arc<OnceLock<u64>>,
}

impl Feed {
    /// Wraps a source stream: counts items, and ends it at the first error,
    /// which is kept for the summary (exit 3).
    pub fn wrap<S>(source: S) -> (Feed, impl Stream<Item = Input> + Send + 'static)
    where
        S: Stream<Item = Result<Input, FeedError>> + Send + 'static,
    {
        let feed = Feed {
            read: Arc::new(AtomicU64::new(0)),
            error: Arc::new(std::sync::Mutex::new(None)),
            ended: Arc::new(AtomicBool::new(false)),
            total: Arc::new(OnceLock::new()),
        };
        let (read, error, ended) = (
            Arc::clone(&feed.read),
            Arc::clone(&feed.error),
            Arc::clone(&feed.ended),
        );
        let stream = futures::stream::unfold(Some(source.boxed()), move |inner| {
            let (read, error, ended) = (Arc::clone(&read), Arc::clone(&error), Arc::clone(&ended));
            async move {
                let mut inner = inner?;
                match inner.next().await {
                    Some(Ok(input)) => {
                        if !matches!(input, Input::Recorded { .. }) {
                            read.fetch_add(1, Ordering::Relaxed);
                        }
                        Some((input, Some(inner)))
                    }
                    Some(Err(e)) => {
                        if let Ok(mut slot) = error.lock() {
                            *slot = Some(e);
                        }
                        None
                    }
                    None => {
                        ended.store(true, Ordering::Relaxed);
                        None
                    }
                }
            }
        })
        .boxed();
        (feed, stream)
    }

    /// Requests without a record: exact when the input was counted up front
    /// (or read to its end), else a lower bound (the flag says which).
    fn remaining(&self, all: &Tally, this_run: &Tally) -> (u64, bool) {
        match self.total.get() {
            Some(&total) => (total.saturating_sub(all.records), true),
            None => (
                self.read
                    .load(Ordering::Relaxed)
                    .saturating_sub(this_run.records),
                self.ended.load(Ordering::Relaxed),
            ),
        }
    }
}

/// How the batch is shown and summarised.
pub struct Ui {
    pub display: Screen,
    pub quiet: bool,
    pub summary_json: Option<std::path::PathBuf>,
    /// `--report FILE.html`, with the run's facts it shows.
    pub report: Option<(std::path::PathBuf, crate::settings::RunInfo)>,
    /// The output is a regular file, so `--resume` can continue the run.
    pub resumable: bool,
    /// The input is standard input at a terminal (say where input is read from).
    pub stdin_terminal: bool,
    /// Under `--redis`, the shared limiter, connected before anything is sent.
    pub shared: Option<sluice::shared::Limiter>,
}

/// Runs the engine to the end and returns the summary (with its exit code).
pub async fn drive(
    config: Config,
    feed: Feed,
    inputs: impl Stream<Item = Input> + Send + 'static,
    sink: Sink,
    prior: Option<Tally>,
    mut ui: Ui,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<Summary> {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let shared = ui.shared.take();
    let mut batch = Batch::new(&config, feed, sink, prior, ui, stop_tx);
    let mut run = crate::worker::start_run(config, shared, inputs, shutdown)
        .map_err(|e| crate::run::Usage(e.into()))?;
    batch.greet();
    let mut tick = Tick::new();
    loop {
        let flow = tokio::select! {
            event = run.next() => match event {
                Some(event) => match batch.on_event(event, &mut run) {
                    ControlFlow::Continue(()) if tick.due() => batch.on_tick(),
                    flow => flow,
                },
                None => batch.on_end(run.join().await),
            },
            Some(signal) = signals.recv() => batch.on_signal(signal),
            _ = tick.fired() => batch.on_tick(),
        };
        if flow.is_break() {
            break;
        }
    }
    drop(run);
    batch.finish()
}

/// How often the output is flushed and the progress redrawn.
const TICK: Duration = Duration::from_millis(200);

/// The clock of [`Batch::on_tick`]: its work rides on the wake-ups that
/// bring records while they come at least every [`TICK`], and its timer,
/// moved on each time (moved later, it wakes nothing), fires only when they
/// stop. A paced run then pays no wake-up of its own for flushing (at
/// 100/s, 50 of about 2,100 in 10 s, each with a second `epoll_wait` turn:
/// tokio unparks itself when a fired timer is armed again). Records reach
/// the output within two ticks of being written, well inside the second
/// promised.
struct Tick {
    timer: Pin<Box<tokio::time::Sleep>>,
    last: tokio::time::Instant,
}

impl Tick {
    fn new() -> Tick {
        let now = tokio::time::Instant::now();
        Tick {
            timer: Box::pin(tokio::time::sleep_until(now)),
            last: now,
        }
    }

    /// After records: true when a tick's work is due (it is then taken as
    /// done). The timer goes two ticks on, so records that keep coming
    /// carry the next tick's work before it fires.
    fn due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.last) < TICK {
            return false;
        }
        self.last = now;
        self.timer.as_mut().reset(now + 2 * TICK);
        true
    }

    /// Resolves when the timer fires: records stopped coming (or the run
    /// just began); the next tick is then one tick on.
    async fn fired(&mut self) {
        self.timer.as_mut().await;
        self.last = tokio::time::Instant::now();
        self.timer.as_mut().reset(self.last + TICK);
    }
}

/// One run as the CLI carries it out: what the engine's events, the
/// signals and the clock do to the output, the display and the summary.
/// Each `on_` method says whether the loop goes on.
struct Batch {
    state: State,
    sink: Sink,
    ui: Ui,
    feed: Feed,
    /// `--insecure`, for the summary's warning.
    insecure: bool,
}

impl Batch {
    fn new(
        config: &Config,
        feed: Feed,
        sink: Sink,
        prior: Option<Tally>,
        ui: Ui,
        stop_tx: oneshot::Sender<()>,
    ) -> Batch {
        let report = ui.report.as_ref().map(|_| Report::default());
        let state = State::new(config, prior, report, ui.resumable, stop_tx);
        Batch {
            state,
            sink,
            ui,
            feed,
            insecure: config.tls.insecure,
        }
    }

    /// Says where input is read from when it is a terminal.
    fn greet(&self) {
        if self.ui.stdin_terminal && !self.ui.quiet {
            self.ui.display.println(
                "sluice: reading requests from standard input, one per line; Ctrl-D ends it",
            );
        }
    }

    /// Stops the loop once a write failed.
    fn go_on(&self) -> ControlFlow<()> {
        if self.state.write_error.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// An event, and the rest of the engine's batch without a poll each.
    fn on_event(&mut self, event: Event, run: &mut sluice::Run) -> ControlFlow<()> {
        let state = &mut self.state;
        state.handle(event, &mut self.sink, &self.ui.display);
        while state.write_error.is_none()
            && let Some(event) = run.next_ready()
        {
            state.handle(event, &mut self.sink, &self.ui.display);
        }
        self.go_on()
    }

    /// The engine's stream ended: it finished, or stopped on a bug.
    fn on_end(&mut self, joined: Result<(), sluice::RunError>) -> ControlFlow<()> {
        if let Err(e) = joined {
            let message = engine_stopped(e, self.state.resumable);
            eprintln!("sluice: {message}");
            self.state.engine_error = Some(message);
        }
        ControlFlow::Break(())
    }

    /// The first interrupt drains; a second cancels what is in flight.
    fn on_signal(&mut self, signal: Signal) -> ControlFlow<()> {
        let state = &mut self.state;
        if state.signal.is_some() {
            state.cancel(signal, &self.ui.display);
            return ControlFlow::Break(());
        }
        state.signal = Some(signal);
        state.stop();
        self.ui.display.println(&format!(
            "sluice: {}: finishing the requests in flight; send it again to cancel them",
            signal.name()
        ));
        self.go_on()
    }

    /// Flushes the output, counts what reached it, redraws the progress.
    fn on_tick(&mut self) -> ControlFlow<()> {
        if let Err(e) = self.sink.flush() {
            self.state.write_failed(&self.sink, e);
        }
        self.state.settle(&self.sink);
        let progress = self.state.progress(&self.feed, self.ui.stdin_terminal);
        self.ui.display.update(&progress);
        self.go_on()
    }

    /// After the engine is gone: the output closed, the summary printed and
    /// written, the report written.
    fn finish(mut self) -> Result<Summary> {
        let (state, ui, feed) = (&mut self.state, &self.ui, &self.feed);
        if let Err(e) = self.sink.finish() {
            state.write_failed(&self.sink, e);
        }
        state.settle(&self.sink);
        ui.display.finish();
        let read_error = feed.error.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = read_error.as_ref().filter(|_| ui.quiet) {
            eprintln!("sluice: {}", sluice::filejob::describe(e));
        }
        let summary = state.summary(state.started.elapsed(), read_error, feed, self.insecure);
        if summary.exit_code == ExitCode::Ok
            && summary.records == 0
            && feed.read.load(Ordering::Relaxed) == 0
            && feed.ended.load(Ordering::Relaxed)
        {
            eprintln!(
                "sluice: warning: the input holds no requests (no lines, or only empty and # lines); nothing was sent"
            );
        }
        if !ui.quiet {
            eprint!("{}", summary.text());
        }
        if let Some(path) = &ui.summary_json {
            summary.write_json(path)?;
        }
        if let Some((path, info)) = &ui.report {
            let report = crate::recompute::whole_output(state.report.take(), state.resumed, info)?;
            crate::html::write(path, &summary, &report, crate::html::Source::Run(info))?;
        }
        Ok(summary)
    }
}

/// The hasher of the sets of line numbers kept per request: a line number
/// times a large odd constant (Fibonacci hashing) spreads sequential lines
/// over the table, for a multiplication instead of a SipHash (three of
/// them a request).
type ByLine = std::hash::BuildHasherDefault<LineHasher>;

#[derive(Default)]
struct LineHasher(u64);

impl std::hash::Hasher for LineHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other input is folded in.
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Where a request read and not yet recorded is.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// Waiting for its first attempt.
    Waiting,
    /// In flight, with the attempts it has started.
    InFlight(u32),
    /// Waiting to retry.
    Retrying,
}

struct State {
    /// Under `--resume`: the earlier runs' records and this run's. Without
    /// it the two are the same, so only `this_run` is kept (a record is
    /// counted once, not twice: see [`State::all`]).
    all: Option<Tally>,
    this_run: Tally,
    in_flight: usize,
    closed: Vec<String>,
    /// What `--report` shows, from this run's records.
    report: Option<Report>,
    started: Instant,
    /// Outcomes of records not yet handed to the OS, oldest first: counted
    /// only once written, so the summary says how far the output got.
    pending: std::collections::VecDeque<sluice::stats::RecordFacts>,
    /// HTTP and TLS versions per origin.
    protocols: sluice::stats::ProtocolCounter,
    settled: u64,
    resumed: bool,
    stop_tx: Option<oneshot::Sender<()>>,
    signal: Option<Signal>,
    write_error: Option<String>,
    engine_error: Option<String>,
    /// Requests read and not yet recorded or dropped, by line: one entry
    /// each, moved from stage to stage (three hash operations a request,
    /// where a set per stage took seven).
    lines: HashMap<u64, Stage, ByLine>,
    /// Of those, the requests waiting for their first attempt.
    waiting: usize,
    /// Of those, the requests waiting to retry.
    retrying: usize,
    /// Paused origins and until when.
    paused: HashMap<String, (SystemTime, String)>,
    /// Under `--redis`: since when Redis has been unreachable.
    redis_down: Option<std::time::Instant>,
    /// What each origin's rate-limit headers taught, latest first.
    learned: std::collections::BTreeMap<String, crate::screen::LearnedOrigin>,
    /// How long retries waited for the retry budget (once the run finished).
    retry_budget: Option<crate::screen::RetryBudgetAccount>,
    /// Under `--adaptive`: the concurrency limit's latest account, and `-c`.
    adaptive: Option<(crate::screen::AdaptiveAccount, usize)>,
    /// `-c`.
    ceiling: usize,
    /// Records of this run whose request was sent (at least one attempt).
    sent: u64,
    /// Of those, the records that reached the output (the summary's rate
    /// is over these, as its counts are).
    sent_recorded: u64,
    /// In-flight requests a second interrupt cancelled.
    cancelled: Option<u64>,
    resumable: bool,
}

impl State {
    fn new(
        config: &Config,
        prior: Option<Tally>,
        report: Option<Report>,
        resumable: bool,
        stop_tx: oneshot::Sender<()>,
    ) -> State {
        let resumed = prior.is_some();
        State {
            all: prior,
            this_run: Tally::default(),
            in_flight: 0,
            closed: Vec::new(),
            report,
            started: Instant::now(),
            pending: std::collections::VecDeque::new(),
            protocols: sluice::stats::ProtocolCounter::default(),
            settled: 0,
            resumed,
            resumable,
            stop_tx: Some(stop_tx),
            signal: None,
            write_error: None,
            engine_error: None,
            lines: HashMap::default(),
            waiting: 0,
            retrying: 0,
            paused: HashMap::new(),
            redis_down: None,
            learned: std::collections::BTreeMap::new(),
            retry_budget: None,
            adaptive: None,
            ceiling: config.concurrency.get(),
            sent: 0,
            sent_recorded: 0,
            cancelled: None,
        }
    }

    /// Every record of the output: the earlier runs' too under `--resume`.
    fn all(&self) -> &Tally {
        self.all.as_ref().unwrap_or(&self.this_run)
    }

    /// Attempts the server saw that leave no record (a dropped or
    /// cancelled request): counted in this run's tally and, under
    /// `--resume`, in the whole output's.
    fn unrecorded(&mut self, attempts: u32) {
        self.this_run.add_unrecorded_attempts(attempts);
        if let Some(all) = &mut self.all {
            all.add_unrecorded_attempts(attempts);
        }
    }

    fn handle(&mut self, event: Event, sink: &mut Sink, display: &Screen) {
        display.log(&event);
        match event {
            Event::Record(record) => {
                if let Some(report) = &mut self.report {
                    report.add(&Sample::of(&record));
                }
                if record.attempts > 0 {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.sent += 1;
                }
                self.forget(record.line);
                self.pending.push_back((&*record).into());
                self.protocols.note(&record);
                if let Err(e) = sink.write(&record) {
                    self.write_failed(sink, e);
                }
                self.settle(sink);
            }
            Event::Started {
                in_flight,
                line,
                attempt,
                ..
            } => {
                self.in_flight = in_flight;
                self.enter(line, Stage::InFlight(attempt));
            }
            Event::Retrying { line, .. } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.enter(line, Stage::Retrying);
            }
            Event::OriginClosed { origin, reason } => {
                display.println(&format!("sluice: closed {origin}: {reason}"));
                self.closed.push(format!("{origin}: {reason}"));
            }
            Event::Dropped { attempts, line } => {
                self.forget(line);
                self.unrecorded(attempts);
            }
            Event::Waiting { line, .. } => self.enter(line, Stage::Waiting),
            Event::Paused {
                origin,
                wait,
                reason,
            } => {
                self.paused
                    .insert(origin, (SystemTime::now() + wait, reason));
            }
            Event::Redis(trouble) => {
                if let Some(line) = crate::screen::redis_trouble(&trouble) {
                    display.println(&line);
                }
                self.redis_down = match trouble {
                    sluice::shared::Trouble::Down { for_, .. } => {
                        let now = std::time::Instant::now();
                        Some(now.checked_sub(for_).unwrap_or(now))
                    }
                    _ => None,
                };
            }
            Event::Learned(learned) => {
                self.learned
                    .insert(learned.origin.clone(), (&*learned).into());
            }
            Event::Concurrency(c) => {
                self.adaptive = Some(((&c).into(), self.ceiling));
            }
            // Told under -v only (`Screen::log`).
            Event::StaleGrants { .. } => {}
            Event::RetryBudget { waited, held } => {
                self.retry_budget = Some(crate::screen::RetryBudgetAccount {
                    waited_seconds: waited.as_secs_f64(),
                    retries_held: held,
                });
            }
        }
    }

    /// Request `line` is at `stage` now.
    fn enter(&mut self, line: u64, stage: Stage) {
        let was = self.lines.insert(line, stage);
        self.count(was, -1);
        self.count(Some(stage), 1);
    }

    /// A request has its record, or was dropped: it is no longer in flight,
    /// waiting to retry, or (never attempted) waiting.
    fn forget(&mut self, line: u64) {
        let was = self.lines.remove(&line);
        self.count(was, -1);
    }

    /// Moves the counts of waiting and retrying requests by `by` for a
    /// request at `stage`.
    fn count(&mut self, stage: Option<Stage>, by: isize) {
        let counter = match stage {
            Some(Stage::Waiting) => &mut self.waiting,
            Some(Stage::Retrying) => &mut self.retrying,
            Some(Stage::InFlight(_)) | None => return,
        };
        *counter = counter.saturating_add_signed(by);
    }

    /// A second interrupt: what is in flight is abandoned without a record.
    /// The server saw those attempts, so the statistics count them.
    fn cancel(&mut self, signal: Signal, display: &Screen) {
        let in_flight: Vec<u32> = (self.lines.values())
            .filter_map(|stage| match stage {
                Stage::InFlight(attempts) => Some(*attempts),
                _ => None,
            })
            .collect();
        self.lines
            .retain(|_, stage| !matches!(stage, Stage::InFlight(_)));
        let n = in_flight.len() as u64;
        for attempts in in_flight {
            self.unrecorded(attempts);
        }
        self.cancelled = Some(n);
        let again = if self.resumable {
            "; --resume sends them again"
        } else {
            ""
        };
        display.println(&format!(
            "sluice: {} again: cancelled {} in flight without a record{again}",
            signal.name(),
            crate::screen::plural(n, "request")
        ));
    }

    /// What the progress line shows now.
    fn progress<'a>(&'a mut self, feed: &Feed, stdin_terminal: bool) -> Progress<'a> {
        let now = SystemTime::now();
        self.paused.retain(|_, (until, _)| *until > now);
        let read = feed.read.load(Ordering::Relaxed);
        let prior = self.all().records - self.this_run.records;
        let (total, exact) = match feed.total.get() {
            Some(&total) => (total, true),
            None => (prior + read, feed.ended.load(Ordering::Relaxed)),
        };
        Progress {
            done: self.all().records,
            total,
            exact,
            in_flight: self.in_flight,
            waiting: self.waiting,
            retrying: self.retrying,
            paused: self
                .paused
                .iter()
                .max_by_key(|(_, (until, _))| *until)
                .map(|(o, (until, why))| (o.as_str(), *until, why.as_str())),
            tally: &self.this_run,
            sent: self.sent,
            elapsed: self.started.elapsed(),
            reading_stdin: stdin_terminal && read == 0 && !feed.ended.load(Ordering::Relaxed),
            redis_down: self.redis_down.map(|since| since.elapsed()),
            limit: self.adaptive.map(|(a, c)| (a.limit, c)),
        }
    }

    /// Counts the records the sink has written since the last call.
    fn settle(&mut self, sink: &Sink) {
        while self.settled < sink.lines_written() {
            let Some(outcome) = self.pending.pop_front() else {
                break;
            };
            self.settled += 1;
            if outcome.attempts > 0 {
                self.sent_recorded += 1;
            }
            self.this_run.add(outcome);
            if let Some(all) = &mut self.all {
                all.add(outcome);
            }
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }

    fn write_failed(&mut self, sink: &Sink, e: std::io::Error) {
        if self.write_error.is_none() {
            let msg = format!("writing results to {} failed: {e}", sink.name());
            let advice = if self.resumable {
                "records written so far are intact; fix the output and run again with --resume"
            } else {
                "records written so far went there; --resume needs results in a regular file, so to be able to continue a stopped run, write them with -o FILE"
            };
            eprintln!("sluice: {msg}; stopping ({advice})");
            self.write_error = Some(msg);
        }
        self.stop();
    }

    fn summary(
        &self,
        wall: Duration,
        read_error: Option<FeedError>,
        feed: &Feed,
        insecure: bool,
    ) -> Summary {
        // Records a failed write lost: the server saw their attempts.
        // Without --resume the whole output's tally is this run's: one
        // copy (a tally's histogram is a few hundred KiB).
        let lost = |tally: &Tally| {
            let mut tally = tally.clone();
            for lost in &self.pending {
                tally.add_unrecorded_attempts(lost.attempts);
            }
            tally
        };
        let this_run = lost(&self.this_run);
        let all = self.all.as_ref().map(lost);
        let mut s = Summary::new(all.as_ref().unwrap_or(&this_run), &this_run, wall);
        s.resumed = self.resumed;
        s.closed_origins = self.closed.clone();
        s.learned = self.learned.values().cloned().collect();
        s.retry_budget = self.retry_budget;
        s.adaptive = self.adaptive.map(|(a, _)| a);
        s.protocols = self.protocols.counts();
        (s.not_written, s.not_written_exact) = feed.remaining(self.all(), &self.this_run);
        s.insecure = insecure;
        s.resumable = self.resumable;
        s.cancelled = self.cancelled.unwrap_or(0);
        s.set_rate(self.sent_recorded, wall);
        let (stop, why) = if let Some(sig) = self.signal {
            let cancelled = match self.cancelled {
                Some(n) => format!(
                    "; a second {} cancelled {} in flight without a record",
                    sig.name(),
                    crate::screen::plural(n, "request")
                ),
                None => String::new(),
            };
            (
                None,
                Some(format!("interrupted by {}{cancelled}", sig.name())),
            )
        } else if let Some(e) = self.write_error.as_ref().or(self.engine_error.as_ref()) {
            (Some(Stop::Stopped), Some(e.clone()))
        } else if let Some(e) = read_error {
            let message = sluice::filejob::describe(&e);
            if e.changed_input() {
                (Some(Stop::Usage), Some(message))
            } else {
                (
                    Some(Stop::Stopped),
                    Some(format!("reading the input failed: {message}")),
                )
            }
        } else if !self.closed.is_empty() {
            (
                Some(Stop::Stopped),
                Some(if self.resumable {
                    "origins were closed; run again with --resume later".into()
                } else {
                    "origins were closed".into()
                }),
            )
        } else {
            (None, None)
        };
        s.exit_code = ExitCode::decide(Ending {
            signal: self.signal,
            stop,
            failed: self.all().failed() > 0,
        });
        s.stopped = why;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::Id;

    /// Each request read is in one stage until its record or its drop:
    /// the progress counts follow the events, and a second interrupt
    /// cancels exactly the requests in flight, with the attempts the
    /// server saw.
    #[test]
    fn requests_move_from_stage_to_stage_until_recorded_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::open(
            &dir.path().join("out.jsonl"),
            sluice::sink::OpenMode::Fresh,
            false,
        )
        .unwrap();
        let display = Screen::new(crate::cli::ProgressMode::Never, true, false);
        let config = Config::default();
        let (stop_tx, _stop_rx) = oneshot::channel();
        let mut state = State::new(&config, None, None, false, stop_tx);
        let id = |line| Id::line(line);
        let mut feed = |state: &mut State, event| state.handle(event, &mut sink, &display);
        for line in 1..=5 {
            feed(&mut state, Event::Waiting { line, id: id(line) });
        }
        let started = |line, attempt| Event::Started {
            line,
            id: id(line),
            attempt,
            in_flight: 1,
        };
        let retrying = |line, attempt| Event::Retrying {
            line,
            id: id(line),
            attempt,
            wait: Duration::from_millis(10),
            reason: String::new(),
        };
        feed(&mut state, started(1, 1));
        feed(&mut state, started(2, 1));
        feed(&mut state, retrying(1, 1));
        assert_eq!((state.waiting, state.retrying), (3, 1));
        feed(&mut state, started(1, 2));
        feed(&mut state, started(3, 1));
        feed(&mut state, retrying(3, 1));
        // Dropped while waiting, and while waiting to retry.
        feed(
            &mut state,
            Event::Dropped {
                line: 4,
                attempts: 0,
            },
        );
        feed(
            &mut state,
            Event::Dropped {
                line: 3,
                attempts: 1,
            },
        );
        assert_eq!((state.waiting, state.retrying), (1, 0));
        let mut record = sluice::Record::unsent(
            id(2),
            2,
            None,
            None,
            sluice::ErrorKind::Connect,
            String::new(),
        );
        record.attempts = 1;
        feed(&mut state, Event::Record(Box::new(record)));
        // In flight: line 1 (its second attempt); line 5 still waits.
        assert_eq!((state.waiting, state.retrying), (1, 0));
        assert_eq!(state.lines.len(), 2);
        let attempts = state.this_run.attempts;
        state.cancel(Signal::Interrupt, &display);
        assert_eq!(state.cancelled, Some(1));
        assert_eq!(state.this_run.attempts - attempts, 2);
        assert_eq!((state.lines.len(), state.waiting), (1, 1));
    }

    /// While records come at least every tick, the tick's work rides on
    /// them (every tick, on a record) and the timer never fires; when they
    /// stop, it fires two ticks after the last work, then every tick.
    #[tokio::test(start_paused = true)]
    async fn the_tick_rides_on_records_and_fires_only_when_they_stop() {
        let t0 = tokio::time::Instant::now();
        let mut tick = Tick::new();
        tick.fired().await;
        assert_eq!(t0.elapsed(), Duration::ZERO, "the first tick is at once");
        let mut works = 0;
        for _ in 0..40 {
            tokio::select! {
                biased;
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = tick.fired() => panic!("the timer fired while records came"),
            }
            works += u32::from(tick.due());
        }
        assert_eq!(works, 10, "one tick's work per 200 ms of records");
        let last = tick.last;
        tick.fired().await;
        assert_eq!(tick.last - last, 2 * TICK);
        let again = tick.last;
        tick.fired().await;
        assert_eq!(tick.last - again, TICK);
    }
}
