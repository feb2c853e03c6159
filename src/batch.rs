//! The loop that drives one engine run from the CLI: it writes records
//! through the sink, feeds the display and the statistics, turns signals
//! into a drain (first) or a cancel (second), and decides the exit status.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{Stream, StreamExt};
use sluice::sink::Sink;
use sluice::stats::{Report, Sample, Tally};
use sluice::{Config, Event, Input};
use tokio::sync::{mpsc, oneshot};

use crate::report::{Display, Summary};
use crate::signals::Signal;

/// Exit statuses (SPEC section 3).
pub mod exit {
    /// Every request has an ok record.
    pub const OK: i32 = 0;
    /// Every request has a record and some failed.
    pub const FAILED: i32 = 1;
    /// Nothing was sent: usage, configuration, input or output error.
    pub const USAGE: i32 = 2;
    /// Stopped early; `--resume` continues.
    pub const STOPPED: i32 = 3;
    /// Interrupted by SIGINT.
    pub const SIGINT: i32 = 130;
    /// Interrupted by SIGTERM.
    pub const SIGTERM: i32 = 143;
}

/// Why the input stream stopped early.
#[derive(Clone, Debug)]
pub struct FeedError {
    /// What went wrong.
    pub message: String,
    /// The input does not match the records being resumed (exit 2), rather
    /// than a read failure (exit 3).
    pub changed_input: bool,
}

impl FeedError {
    /// A read failure.
    pub fn read(e: impl std::fmt::Display) -> FeedError {
        FeedError {
            message: e.to_string(),
            changed_input: false,
        }
    }
}

/// Input items, with a count of those read and the first read error.
pub struct Feed {
    /// Items read so far.
    pub read: Arc<AtomicU64>,
    /// Set when the input failed mid-stream.
    pub error: Arc<std::sync::Mutex<Option<FeedError>>>,
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
        };
        let (read, error) = (Arc::clone(&feed.read), Arc::clone(&feed.error));
        let stream = source
            .scan((), move |_, item| {
                let next = match item {
                    Ok(input) => {
                        if !matches!(input, Input::Recorded { .. }) {
                            read.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(input)
                    }
                    Err(e) => {
                        if let Ok(mut slot) = error.lock() {
                            *slot = Some(e);
                        }
                        None
                    }
                };
                futures::future::ready(next)
            })
            .boxed();
        (feed, stream)
    }
}

/// How the batch is shown and summarised.
pub struct Ui {
    pub display: Display,
    pub quiet: bool,
    pub summary_json: Option<std::path::PathBuf>,
    /// `--report FILE.html`, with the run's facts it shows.
    pub report: Option<(std::path::PathBuf, crate::settings::RunInfo)>,
}

/// Runs the engine to the end and returns the summary (with its exit code).
pub async fn drive(
    config: Config,
    feed: Feed,
    inputs: impl Stream<Item = Input> + Send + 'static,
    mut sink: Sink,
    prior: Option<Tally>,
    ui: Ui,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) -> Result<Summary> {
    let insecure = config.tls.insecure;
    let started = Instant::now();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let mut run = sluice::run(config, inputs, shutdown)
        .map_err(|e| crate::run::Usage(anyhow::anyhow!("{e}")))?;
    let resumed = prior.is_some();
    let mut state = State {
        all: prior.unwrap_or_default(),
        this_run: Tally::default(),
        in_flight: 0,
        closed: Vec::new(),
        report: ui.report.as_ref().map(|_| Report::default()),
        started,
        pending: std::collections::VecDeque::new(),
        settled: 0,
        resumed,
        stop_tx: Some(stop_tx),
        signal: None,
        write_error: None,
        engine_error: None,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            event = run.next() => match event {
                Some(event) => state.handle(event, &mut sink, &ui.display),
                None => {
                    if let Err(e) = run.join().await {
                        eprintln!("sluice: {e}");
                        state.engine_error = Some(e);
                    }
                    break;
                }
            },
            Some(signal) = signals.recv() => {
                if state.signal.is_some() {
                    // Second interrupt: cancel what is in flight.
                    break;
                }
                state.signal = Some(signal);
                state.stop();
                ui.display.println(&format!(
                    "sluice: {}: finishing the requests in flight; send it again to cancel them",
                    signal.name()
                ));
            }
            _ = tick.tick() => {
                if let Err(e) = sink.flush() {
                    state.write_failed(&sink, e);
                }
                state.settle(&sink);
                let read = feed.read.load(Ordering::Relaxed);
                ui.display.update(state.this_run.records, read, state.in_flight, &state.this_run, started.elapsed());
            }
        }
        if state.write_error.is_some() {
            break;
        }
    }
    drop(run);
    if let Err(e) = sink.finish() {
        state.write_failed(&sink, e);
    }
    state.settle(&sink);
    ui.display.finish();
    let read_error = feed.error.lock().ok().and_then(|e| e.clone());
    if let Some(e) = read_error.as_ref().filter(|_| ui.quiet) {
        eprintln!("sluice: {}", e.message);
    }
    let summary = state.summary(started.elapsed(), read_error, &feed, insecure);
    if !ui.quiet {
        eprint!("{}", summary.text());
    }
    if let Some(path) = &ui.summary_json {
        summary.write_json(path)?;
    }
    if let Some((path, info)) = &ui.report {
        let report = crate::recompute::whole_output(state.report.take(), resumed, info)?;
        crate::html::write(path, &summary, &report, crate::html::Source::Run(info))?;
    }
    Ok(summary)
}

struct State {
    all: Tally,
    this_run: Tally,
    in_flight: usize,
    closed: Vec<String>,
    /// What `--report` shows, from this run's records.
    report: Option<Report>,
    started: Instant,
    /// Outcomes of records not yet handed to the OS, oldest first: counted
    /// only once written, so the summary says how far the output got.
    pending: std::collections::VecDeque<(sluice::stats::Outcome, Duration)>,
    settled: u64,
    resumed: bool,
    stop_tx: Option<oneshot::Sender<()>>,
    signal: Option<Signal>,
    write_error: Option<String>,
    engine_error: Option<String>,
}

impl State {
    fn handle(&mut self, event: Event, sink: &mut Sink, display: &Display) {
        display.log(&event);
        match event {
            Event::Record(record) => {
                if let Some(report) = &mut self.report {
                    report.add(&Sample::of(&record));
                }
                if record.attempts > 0 {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                self.pending
                    .push_back(((&record).into(), self.started.elapsed()));
                if let Err(e) = sink.write(&record) {
                    self.write_failed(sink, e);
                }
                self.settle(sink);
            }
            Event::Started { in_flight, .. } => self.in_flight = in_flight,
            Event::Retrying { .. } => self.in_flight = self.in_flight.saturating_sub(1),
            Event::OriginClosed { origin, reason } => {
                display.println(&format!("sluice: closed {origin}: {reason}"));
                self.closed.push(format!("{origin}: {reason}"));
            }
            Event::Dropped { attempts, .. } => {
                self.all.add_unrecorded_attempts(attempts);
                self.this_run.add_unrecorded_attempts(attempts);
            }
            Event::Waiting { .. } | Event::Paused { .. } => {}
        }
    }

    /// Counts the records the sink has written since the last call.
    fn settle(&mut self, sink: &Sink) {
        while self.settled < sink.lines_written() {
            let Some((outcome, _)) = self.pending.pop_front() else {
                break;
            };
            self.settled += 1;
            self.all.add(outcome);
            self.this_run.add(outcome);
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
            eprintln!(
                "sluice: {msg}; stopping (records written so far are intact; fix the output and run again with --resume)"
            );
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
        let mut s = Summary::new(&self.all, &self.this_run, wall);
        s.resumed = self.resumed;
        s.closed_origins = self.closed.clone();
        let read = feed.read.load(Ordering::Relaxed);
        s.not_written = read.saturating_sub(self.this_run.records);
        s.insecure = insecure;
        let (code, why) = if let Some(sig) = self.signal {
            (
                sig.exit_code(),
                Some(format!("interrupted by {}", sig.name())),
            )
        } else if let Some(e) = self.write_error.as_ref().or(self.engine_error.as_ref()) {
            (exit::STOPPED, Some(e.clone()))
        } else if let Some(e) = read_error {
            if e.changed_input {
                (exit::USAGE, Some(e.message))
            } else {
                (
                    exit::STOPPED,
                    Some(format!("reading the input failed: {}", e.message)),
                )
            }
        } else if !self.closed.is_empty() {
            (
                exit::STOPPED,
                Some("origins were closed; run again with --resume later".into()),
            )
        } else if self.all.failed() > 0 {
            (exit::FAILED, None)
        } else {
            (exit::OK, None)
        };
        s.exit_code = code;
        s.stopped = why;
        s
    }
}
