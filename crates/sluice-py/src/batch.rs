//! One engine run driven from Python: Python hands over request lines
//! (parsed by the engine's own parser, so the rules and messages are the
//! CLI's) and takes back result lines, both by plain calls that never wait.
//! When there is nothing to take (or no room to give), Python waits on the
//! run's *bell*: a socket pair whose read end the asyncio loop watches
//! (`loop.add_reader`), rung from the engine's side with one byte.
//!
//! So no engine thread ever takes the GIL, and Python is woken once per
//! batch of results, not per result: when results arrive while Python
//! waits, the bell rings once [`WAKE_AT`] of them are ready, once the run
//! has nothing else in flight, or [`COALESCE`] after the first, whichever
//! comes first. A consumer that keeps up therefore spends its time on its
//! own loop body, not on hand-offs (measured in BENCHMARKS.md).
//!
//! Backpressure is the engine's: it reads inputs only while it has room,
//! the input queue here holds at most [`INPUT_ROOM`] items (Python waits
//! for room beyond), and at most [`RESULT_ROOM`] results wait for Python
//! (the engine is held back beyond). So when Python stops taking results,
//! sending stops, and memory stays flat.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use futures::{FutureExt, Stream, StreamExt};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::parse::{LineOrigin, ParseOptions, parse_line};
use sluice::stats::{Outcome, Tally};
use sluice::{Event, Input, InvalidLine, Run};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::options;
use crate::summary;

/// The name request messages give the input: `requests:3: invalid JSON ...`.
const ORIGIN: &str = "requests";
/// Items Python may hand over before the engine has taken them; Python
/// waits for room beyond this (and is woken when half of it is free).
const INPUT_ROOM: usize = 1024;
/// Results waiting for Python before the engine is held back.
const RESULT_ROOM: usize = 512;
/// A waiting Python is woken at once when this many results are ready.
const WAKE_AT: usize = 256;
/// ... and otherwise at most this long after the first one arrived.
const COALESCE: Duration = Duration::from_millis(1);
/// Events taken from the engine at once before they are handed over.
const PUMP_BATCH: usize = 256;

/// A running batch (one `client.stream(...)`, `client.request(...)` or
/// `sluice.run(...)`).
#[pyclass(module = "sluice._sluice")]
pub struct Batch {
    shared: Arc<Shared>,
    /// The read end of the bell, watched by the asyncio loop.
    bell: UnixStream,
    pump: JoinHandle<()>,
    started: Instant,
}

/// What Python and the engine's side share.
struct Shared {
    state: Mutex<State>,
    /// The engine's input stream waits here for items.
    input_ready: AtomicWaker,
    /// The pump waits here for room for results.
    room: Notify,
    /// The write end of the bell.
    ring: UnixStream,
}

/// An item as Python gave it: its line, and its text or why it is bad.
struct Raw {
    line: u64,
    text: Option<String>,
    bad: Option<String>,
}

#[derive(Default)]
struct State {
    inputs: VecDeque<Raw>,
    input_closed: bool,
    /// Line numbers given so far (the next item is `lines + 1`).
    lines: u64,
    /// Items given that have no result and were not dropped yet.
    outstanding: u64,
    results: VecDeque<(String, bool)>,
    /// Set once the run is over: `Err` when the engine failed.
    ended: Option<Result<(), String>>,
    /// Python waits for results (or the end) and wants the bell rung.
    wants_results: bool,
    /// Python waits for room for input and wants the bell rung.
    wants_room: bool,
    tally: Tally,
    /// Requests left without a record because their origin closed, and why.
    lost: u64,
    closed: Vec<String>,
}

impl Shared {
    fn lock(&self) -> PyResult<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| poisoned())
    }

    /// Rings the bell when `waits` (then cleared). The socket is
    /// non-blocking: a full buffer means the bell already rings.
    fn wake(&self, waits: &mut bool) {
        if std::mem::take(waits) {
            let _ = (&self.ring).write(&[1]);
        }
    }
}

#[pymethods]
impl Batch {
    /// Starts a run with these options (the CLI's, with underscores).
    #[new]
    #[pyo3(signature = (options=None))]
    fn new(options: Option<&Bound<'_, PyDict>>) -> PyResult<Batch> {
        let opts = options::parse(options, false)?;
        let (bell, ring) = UnixStream::pair()
            .and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ok((a, b))
            })
            .map_err(|e| PyOSError::new_err(format!("sluice: cannot make a socket pair: {e}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            input_ready: AtomicWaker::new(),
            room: Notify::new(),
            ring,
        });
        let inputs = Inputs {
            shared: Arc::clone(&shared),
            parse: opts.parse,
        };
        let runtime = crate::bridge::runtime();
        let _entered = runtime.enter();
        let run = sluice::run(opts.config, inputs, std::future::pending())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let pump = runtime.spawn(pump(Arc::clone(&shared), run));
        Ok(Batch {
            shared,
            bell,
            pump,
            started: Instant::now(),
        })
    }

    /// The bell's file descriptor, for `loop.add_reader`.
    fn fileno(&self) -> i32 {
        self.bell.as_raw_fd()
    }

    /// Empties the bell (called by the loop when it rang).
    fn hush(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.bell).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Hands over items: each a request line (a JSON object's text, or a
    /// URL), or `None` where `bad` gives the message for that position.
    /// True when taken; False when there is no room (nothing taken: wait
    /// for the bell and offer again); None once the run takes no more input.
    fn offer(
        &self,
        lines: Vec<Option<String>>,
        bad: Vec<(usize, String)>,
    ) -> PyResult<Option<bool>> {
        let mut state = self.shared.lock()?;
        if state.input_closed {
            return Ok(None);
        }
        if state.inputs.len() >= INPUT_ROOM {
            state.wants_room = true;
            return Ok(Some(false));
        }
        let mut bad = bad.into_iter().peekable();
        let n = lines.len() as u64;
        for (i, text) in lines.into_iter().enumerate() {
            let line = state.lines + 1 + i as u64;
            let bad = bad.next_if(|(at, _)| *at == i).map(|(_, m)| m);
            state.inputs.push_back(Raw { line, text, bad });
        }
        state.lines += n;
        state.outstanding += n;
        drop(state);
        self.shared.input_ready.wake();
        Ok(Some(true))
    }

    /// No more input: the run ends once every request has its result.
    fn close_input(&self) -> PyResult<()> {
        self.shared.lock()?.input_closed = true;
        self.shared.input_ready.wake();
        Ok(())
    }

    /// The results ready now as `(JSON line, ok)` pairs, at most `max`: an
    /// empty list when none is (wait for the bell), None when the run is
    /// over. `ok` comes apart so a consumer that only checks it never
    /// parses the line.
    fn take(&self, max: usize) -> PyResult<Option<Vec<(String, bool)>>> {
        let mut state = self.shared.lock()?;
        if state.results.is_empty() {
            return match &state.ended {
                Some(Ok(())) => Ok(None),
                Some(Err(e)) => Err(PyRuntimeError::new_err(e.clone())),
                None => {
                    state.wants_results = true;
                    Ok(Some(Vec::new()))
                }
            };
        }
        let n = max.min(state.results.len());
        let out: Vec<(String, bool)> = state.results.drain(..n).collect();
        drop(state);
        self.shared.room.notify_one();
        Ok(Some(out))
    }

    /// Cancels the run: nothing more is sent, requests in flight are
    /// abandoned (their connections closed), and `take` returns None.
    fn cancel(&self) -> PyResult<()> {
        self.pump.abort(); // The pump owns the run: dropping it cancels.
        let mut state = self.shared.lock()?;
        let state = &mut *state;
        state.input_closed = true;
        state.inputs.clear();
        state.results.clear();
        state.ended.get_or_insert(Ok(()));
        self.shared.wake(&mut state.wants_results);
        self.shared.wake(&mut state.wants_room);
        Ok(())
    }

    /// Once the run is over: why some requests got no result (their origin
    /// closed: `halt_after`, or a `Retry-After` beyond `max_retry_after`),
    /// or None when every request got one.
    fn incomplete(&self) -> PyResult<Option<String>> {
        let state = self.shared.lock()?;
        Ok((state.lost > 0).then(|| {
            format!(
                "{} request{} got no result because {} closed: {}",
                state.lost,
                if state.lost == 1 { "" } else { "s" },
                if state.closed.len() == 1 {
                    "its origin was"
                } else {
                    "their origins were"
                },
                state.closed.join("; ")
            )
        }))
    }

    /// The summary of the results handed over so far, as JSON text.
    fn summary(&self) -> PyResult<String> {
        let state = self.shared.lock()?;
        Ok(summary::json(
            &state.tally,
            &state.tally,
            self.started.elapsed(),
            None,
        ))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// The engine's input: items Python handed over, parsed as they are taken.
/// Every item becomes exactly one input: a blank or `#` line, which a file
/// would skip, is a bad request here (nothing is dropped silently).
struct Inputs {
    shared: Arc<Shared>,
    parse: ParseOptions,
}

impl Stream for Inputs {
    type Item = Input;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Input>> {
        let raw = {
            let Ok(mut state) = self.shared.state.lock() else {
                return Poll::Ready(None);
            };
            let state = &mut *state;
            match state.inputs.pop_front() {
                Some(raw) => {
                    if state.inputs.len() <= INPUT_ROOM / 2 {
                        self.shared.wake(&mut state.wants_room);
                    }
                    raw
                }
                None if state.input_closed => return Poll::Ready(None),
                None => {
                    // Under the lock: an item offered after this look wakes us.
                    self.shared.input_ready.register(cx.waker());
                    return Poll::Pending;
                }
            }
        };
        Poll::Ready(Some(to_input(raw, &self.parse)))
    }
}

fn to_input(raw: Raw, parse: &ParseOptions) -> Input {
    let origin = LineOrigin {
        file: ORIGIN,
        file_line: raw.line,
    };
    match (raw.text, raw.bad) {
        (Some(text), None) => parse_line(text.as_bytes(), raw.line, &origin, parse)
            .unwrap_or_else(|| {
                invalid(raw.line, format!("{origin}: an empty string or a `#` comment is not a request: give a URL or a request dict"))
            }),
        (_, Some(m)) => invalid(raw.line, format!("{origin}: {m}")),
        (None, None) => invalid(raw.line, format!("{origin}: not a request")),
    }
}

/// Moves the run's events to Python's side: records become result lines
/// (on this thread, not Python's), losses are counted, and the bell rings
/// as the module documentation says.
async fn pump(shared: Arc<Shared>, mut run: Run) {
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let full = shared
            .state
            .lock()
            .map(|s| s.results.len() >= RESULT_ROOM)
            .unwrap_or(true);
        let first = tokio::select! {
            biased;
            _ = sleep_until(deadline) => {
                deadline = None;
                if let Ok(mut state) = shared.state.lock() && !state.results.is_empty() {
                    shared.wake(&mut state.wants_results);
                }
                continue;
            }
            _ = shared.room.notified(), if full => continue,
            e = run.next(), if !full => e,
        };
        let Some(first) = first else {
            let ended = run.join().await.map_err(|e| e.to_string());
            if let Ok(mut state) = shared.state.lock() {
                let state = &mut *state;
                state.ended = Some(ended);
                shared.wake(&mut state.wants_results);
                shared.wake(&mut state.wants_room);
            }
            return;
        };
        let mut events = vec![first];
        while events.len() < PUMP_BATCH {
            match run.next().now_or_never() {
                Some(Some(e)) => events.push(e),
                _ => break,
            }
        }
        let mut lines = Vec::with_capacity(events.len());
        let mut seen = Vec::with_capacity(events.len());
        let mut gone = Vec::new();
        let mut dropped = 0u64;
        for event in events {
            match event {
                Event::Record(rec) => {
                    seen.push(Outcome::from(&rec));
                    lines.push((rec.to_json_line(), rec.ok));
                }
                Event::Dropped { .. } => dropped += 1,
                Event::OriginClosed { origin, reason } => gone.push(format!("{origin}: {reason}")),
                _ => {}
            }
        }
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        state.outstanding = state
            .outstanding
            .saturating_sub(lines.len() as u64 + dropped);
        state.lost += dropped;
        state.closed.extend(gone);
        for o in seen {
            state.tally.add(o);
        }
        state.results.extend(lines);
        if state.wants_results && !state.results.is_empty() {
            if state.results.len() >= WAKE_AT || state.outstanding == 0 {
                shared.wake(&mut state.wants_results);
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + COALESCE);
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn poisoned() -> PyErr {
    PyRuntimeError::new_err("sluice: internal lock poisoned (a bug: please report it)")
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
