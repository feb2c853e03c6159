//! One engine run driven from Python: the input side takes batches of
//! request lines (parsed by the engine's own parser, so the rules and
//! messages are the CLI's), the output side hands back batches of result
//! lines. Both are awaited on the tokio runtime with the GIL released; no
//! Python code runs while requests are in flight.
//!
//! Backpressure is the engine's: it reads inputs only while it has room, and
//! hands on events only while they are taken; the input channel holds one
//! batch. So when Python stops asking for results, sending stops.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::parse::{LineOrigin, ParseOptions, parse_line};
use sluice::stats::Tally;
use sluice::{Event, Input, InvalidLine, Run};
use tokio::sync::Notify;

use crate::options;
use crate::summary;

/// The name request messages give the input: `requests:3: invalid JSON ...`.
const ORIGIN: &str = "requests";

/// A running batch (one `client.stream(...)`, `client.request(...)` or
/// `sluice.run(...)`).
#[pyclass(module = "sluice._sluice")]
pub struct Batch {
    inputs: Mutex<Option<mpsc::Sender<Vec<Input>>>>,
    run: Arc<tokio::sync::Mutex<Option<Run>>>,
    cancelled: Arc<Notify>,
    parse: Arc<ParseOptions>,
    /// Line numbers given so far (the next item is `lines + 1`).
    lines: Arc<Mutex<u64>>,
    tally: Arc<Mutex<Tally>>,
    /// Requests left without a record because their origin closed, and why.
    lost: Arc<Mutex<Lost>>,
    started: Instant,
}

/// What an origin closing took away (the CLI reports it in its summary).
#[derive(Default)]
struct Lost {
    requests: u64,
    closed: Vec<String>,
}

#[pymethods]
impl Batch {
    /// Starts a run with these options (the CLI's, with underscores).
    #[new]
    #[pyo3(signature = (options=None))]
    fn new(options: Option<&Bound<'_, PyDict>>) -> PyResult<Batch> {
        let opts = options::parse(options, false)?;
        let (tx, rx) = mpsc::channel::<Vec<Input>>(0);
        let inputs = rx.flat_map(futures::stream::iter);
        let runtime = crate::bridge::runtime();
        let _entered = runtime.enter();
        let run = sluice::run(opts.config, inputs, std::future::pending())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(Batch {
            inputs: Mutex::new(Some(tx)),
            run: Arc::new(tokio::sync::Mutex::new(Some(run))),
            cancelled: Arc::new(Notify::new()),
            parse: Arc::new(opts.parse),
            lines: Arc::new(Mutex::new(0)),
            tally: Arc::new(Mutex::new(Tally::default())),
            lost: Arc::default(),
            started: Instant::now(),
        })
    }

    /// Sends one batch of items: each a request line (a JSON object's text,
    /// or a URL), or `None` where `bad` gives the message for that position.
    /// Resolves to False once the run takes no more input (cancelled).
    fn feed<'py>(
        &self,
        py: Python<'py>,
        lines: Vec<Option<String>>,
        bad: Vec<(usize, String)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let sender = self.inputs.lock().ok().and_then(|s| s.clone());
        let (parse, counter) = (Arc::clone(&self.parse), Arc::clone(&self.lines));
        crate::bridge::to_py(py, async move {
            let Some(mut sender) = sender else {
                return Ok(false);
            };
            let items = {
                let mut next = counter.lock().map_err(|_| poisoned())?;
                let first = *next + 1;
                *next += lines.len() as u64;
                to_inputs(lines, bad, first, &parse)
            };
            Ok(sender.send(items).await.is_ok())
        })
    }

    /// No more input: the run ends once every request has its result.
    fn close_input(&self) {
        if let Ok(mut s) = self.inputs.lock() {
            s.take();
        }
    }

    /// Resolves to the next results as `(JSON line, ok)` pairs (every
    /// result ready now, at least one, at most `max`), or None when the run
    /// is over. `ok` comes apart so a consumer that only checks it never
    /// parses the line.
    fn next_batch<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Bound<'py, PyAny>> {
        let (run, cancelled, tally, lost) = (
            Arc::clone(&self.run),
            Arc::clone(&self.cancelled),
            Arc::clone(&self.tally),
            Arc::clone(&self.lost),
        );
        crate::bridge::to_py(py, async move {
            let mut guard = run.lock().await;
            let Some(r) = guard.as_mut() else {
                return Ok(None);
            };
            let mut out = Vec::new();
            let mut seen = Vec::new();
            loop {
                let next = tokio::select! {
                    biased;
                    _ = cancelled.notified() => {
                        *guard = None; // Dropping the run cancels what is in flight.
                        return Ok(None);
                    }
                    e = r.next() => e,
                };
                match next {
                    Some(Event::Record(rec)) => {
                        seen.push(sluice::stats::Outcome::from(&rec));
                        out.push((rec.to_json_line(), rec.ok));
                        break;
                    }
                    Some(other) => note_loss(&lost, other),
                    None => {
                        let ended = r.join().await;
                        *guard = None;
                        return ended
                            .map(|()| None)
                            .map_err(|e| PyRuntimeError::new_err(e.to_string()));
                    }
                }
            }
            while out.len() < max {
                match r.next().now_or_never() {
                    Some(Some(Event::Record(rec))) => {
                        seen.push(sluice::stats::Outcome::from(&rec));
                        out.push((rec.to_json_line(), rec.ok));
                    }
                    Some(Some(other)) => note_loss(&lost, other),
                    _ => break,
                }
            }
            if let Ok(mut t) = tally.lock() {
                for o in seen {
                    t.add(o);
                }
            }
            Ok(Some(out))
        })
    }

    /// Cancels the run: nothing more is sent, requests in flight are
    /// abandoned (their connections closed), and a pending `next_batch`
    /// resolves to None.
    fn cancel(&self) {
        self.close_input();
        self.cancelled.notify_one();
        if let Ok(mut guard) = self.run.try_lock() {
            guard.take();
        }
    }

    /// Once the run is over: why some requests got no result (their origin
    /// closed: `halt_after`, or a `Retry-After` beyond `max_retry_after`),
    /// or None when every request got one.
    fn incomplete(&self) -> Option<String> {
        let lost = self.lost.lock().ok()?;
        (lost.requests > 0).then(|| {
            format!(
                "{} request{} got no result because {} closed: {}",
                lost.requests,
                if lost.requests == 1 { "" } else { "s" },
                if lost.closed.len() == 1 {
                    "its origin was"
                } else {
                    "their origins were"
                },
                lost.closed.join("; ")
            )
        })
    }

    /// The summary of the results handed out so far, as JSON text.
    fn summary(&self) -> PyResult<String> {
        let tally = self.tally.lock().map_err(|_| poisoned())?;
        Ok(summary::json(&tally, &tally, self.started.elapsed(), None))
    }
}

/// Counts what a closed origin leaves without a record.
fn note_loss(lost: &Mutex<Lost>, event: Event) {
    let Ok(mut lost) = lost.lock() else { return };
    match event {
        Event::Dropped { .. } => lost.requests += 1,
        Event::OriginClosed { origin, reason } => lost.closed.push(format!("{origin}: {reason}")),
        _ => {}
    }
}

fn poisoned() -> PyErr {
    PyRuntimeError::new_err("sluice: internal lock poisoned (a bug: please report it)")
}

/// Parses a batch with the engine's parser. Every item becomes exactly one
/// input: a blank or `#` line, which a file would skip, is a bad request
/// here (nothing is dropped silently).
fn to_inputs(
    lines: Vec<Option<String>>,
    bad: Vec<(usize, String)>,
    first: u64,
    parse: &ParseOptions,
) -> Vec<Input> {
    let mut bad = bad.into_iter().peekable();
    let mut out = Vec::with_capacity(lines.len());
    for (i, text) in lines.into_iter().enumerate() {
        let line = first + i as u64;
        let origin = LineOrigin {
            file: ORIGIN,
            file_line: line,
        };
        let message = bad.next_if(|(at, _)| *at == i).map(|(_, m)| m);
        let input = match (text, message) {
            (Some(text), None) => parse_line(text.as_bytes(), line, &origin, parse)
                .unwrap_or_else(|| {
                    invalid(line, format!("{origin}: an empty string or a `#` comment is not a request: give a URL or a request dict"))
                }),
            (_, Some(m)) => invalid(line, format!("{origin}: {m}")),
            (None, None) => invalid(line, format!("{origin}: not a request")),
        };
        out.push(input);
    }
    out
}

fn invalid(line: u64, message: String) -> Input {
    Input::Invalid(InvalidLine {
        line,
        id: None,
        method: None,
        url: None,
        message,
    })
}
