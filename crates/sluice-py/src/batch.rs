//! The engine behind one `sluice.Client`: ONE engine run, so every stream
//! and request of the client shares one set of limits (concurrency, rates,
//! budget, pauses, learned limits), which the engine alone enforces.
//!
//! Each `stream()` or `request()` is a *lane*: Python hands its request
//! lines over (parsed by the engine's own parser and checked by its intake,
//! per lane, so ids are unique within a lane and the rules and messages are
//! the CLI's) and takes its result lines back, both by plain calls that
//! never wait. The lanes' requests enter the run in turn (one from each
//! lane with work, round robin), renumbered so the run sees unique lines;
//! the pump routes each record back to its lane with the lane's own line
//! and id. A lane is cancelled with the engine's [`Abandon`]: its requests
//! in flight stop at once, its queued ones never start, the others go on.
//!
//! When there is nothing to take (or no room to give), Python waits on the
//! lane's *bell* ([`crate::bell`]: a socket the asyncio loop watches, or
//! the client's doorbell where the loop cannot watch one), rung from the
//! engine's side. So no engine thread ever takes the GIL, and Python is
//! woken once per batch of results: when results arrive while Python waits, the bell rings once
//! [`WAKE_AT`] of them are ready, once the lane has nothing else in flight,
//! or [`COALESCE`] after the first, whichever comes first.
//!
//! Backpressure: the run reads inputs only while it has room; a lane holds
//! at most [`INPUT_ROOM`] items not yet taken by the run (Python waits for
//! room beyond); a lane whose consumer leaves [`RESULT_ROOM`] results
//! untaken gets no more requests into the run (nor, under `ordered`, one
//! beyond its reorder window). So when Python stops taking a lane's
//! results, that lane's sending stops, and memory stays flat.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use futures::{FutureExt, Stream, StreamExt};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::intake::{Checked, Intake};
use sluice::order::Reorder;
use sluice::parse::{LineOrigin, ParseOptions, parse_line};
use sluice::stats::{RecordFacts, Tally};
use sluice::{Abandon, Config, Event, Id, Input, InvalidLine, Record, Run};
use tokio::task::JoinHandle;

use crate::bell::{Bell, Doorbell, PyDoorbell};
use crate::options;
use crate::summary;

/// The name request messages give the input: `requests:3: invalid JSON ...`.
const ORIGIN: &str = "requests";
/// Items a lane may hand over before the run has taken them; Python waits
/// for room beyond this (and is woken when half of it is free).
const INPUT_ROOM: usize = 4096;
/// Results of a lane waiting for Python before its requests are held back.
const RESULT_ROOM: usize = 4096;
/// A waiting Python is woken at once when this many results are ready.
const WAKE_AT: usize = 256;
/// ... and otherwise at most this long after the first one arrived.
const COALESCE: Duration = Duration::from_millis(1);
/// Events taken from the run at once before they are routed.
const PUMP_BATCH: usize = 256;

/// One client's engine run.
#[pyclass(module = "sluice._sluice")]
pub struct Engine {
    hub: Arc<Hub>,
    pump: JoinHandle<()>,
    /// A lane's intake checks, as the run's (budget burst, redaction).
    config: Config,
    parse: Arc<ParseOptions>,
    /// `ordered` and `reorder_window` as the client's options say.
    ordered: bool,
    window: u64,
    /// Where lanes without a socket ring.
    doorbell: Arc<Doorbell>,
}

/// What the run's input, the pump and the lanes share.
struct Hub {
    state: Mutex<HubState>,
    /// The run's input waits here for items.
    input_ready: AtomicWaker,
}

#[derive(Default)]
struct HubState {
    /// Lanes that may still hand items to the run, served in turn.
    feeding: VecDeque<Arc<Lane>>,
    /// Every lane alive, to tell them when the run fails.
    lanes: Vec<Weak<Lane>>,
    /// The run's line of each request in it → its lane, line and id.
    routes: HashMap<u64, Route>,
    /// Lines given to the run so far.
    lines: u64,
    /// The client is closing: the run's input ends once every lane is done.
    closing: bool,
    /// Lanes made so far (each lane's id in the doorbell).
    made: u64,
    /// Origins the run closed, and why.
    closed: Vec<String>,
    /// What the run learned about each origin's limits.
    learned: summary::LearnedLimits,
    /// Under `adaptive`: the concurrency limit's latest account.
    adaptive: Option<sluice::event::Concurrency>,
    /// Under a retry budget, once the run has ended: how long retries waited.
    retry_budget: Option<(std::time::Duration, u64)>,
    /// The run has ended and every event it gave is accounted for, so a
    /// summary read now has its last words (the adaptive limit's account,
    /// the retry budget's waits).
    ended: bool,
}

struct Route {
    lane: Arc<Lane>,
    line: u64,
    id: Id,
}

/// One stream or request of the client.
struct Lane {
    state: Mutex<LaneState>,
    bell: Bell,
    /// Gives up the lane's requests in the run.
    abandon: Abandon,
    parse: Arc<ParseOptions>,
}

/// An item as Python gave it: its line, and its text or why it is bad.
struct Raw {
    line: u64,
    text: Option<String>,
    bad: Option<String>,
}

struct LaneState {
    inputs: VecDeque<Raw>,
    input_closed: bool,
    cancelled: bool,
    /// Line numbers given so far (the next item is `lines + 1`).
    lines: u64,
    /// Items given that have no result and were not dropped yet.
    outstanding: u64,
    results: VecDeque<(String, bool)>,
    /// Set when the run failed (a bug): Python raises it.
    failed: Option<String>,
    /// Python waits for results (or the end) and wants the bell rung.
    wants_results: bool,
    /// Python waits for room for input and wants the bell rung.
    wants_room: bool,
    /// Ids unique within the lane, costs within the budget burst.
    intake: Intake,
    /// Under `ordered`: records held until their turn, and the window.
    order: Option<(Reorder, u64)>,
    tally: Tally,
    /// Requests left without a record because their origin closed.
    lost: u64,
    started: Instant,
}

impl LaneState {
    /// No more results will come.
    fn finished(&self) -> bool {
        self.cancelled
            || self.failed.is_some()
            || (self.input_closed && self.inputs.is_empty() && self.outstanding == 0)
    }

    /// Whether the lane's next item may enter the run now.
    fn may_feed(&self) -> bool {
        let Some(next) = self.inputs.front() else {
            return false;
        };
        let in_window = self.order.as_ref().is_none_or(|(order, window)| {
            order
                .oldest()
                .is_none_or(|oldest| next.line <= oldest + window)
        });
        in_window && self.results.len() < RESULT_ROOM
    }

    /// A result (or the loss of one) arrived: the lane's accounts.
    #[allow(
        clippy::vec_box,
        reason = "the engine's records come boxed (Event::Record, Reorder): never unboxed"
    )]
    fn deliver(&mut self, records: Vec<Box<Record>>) {
        for rec in records {
            self.tally.add(RecordFacts::from(&*rec));
            self.results.push_back((rec.to_json_line(), rec.ok));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| poisoned())
}

impl Lane {
    /// Rings the bell when `waits` (then cleared). The socket is
    /// non-blocking: a full buffer means the bell already rings.
    fn wake(&self, waits: &mut bool) {
        if std::mem::take(waits) {
            self.bell.ring();
        }
    }

    /// After results arrived: rings now, later (`true`: the pump's
    /// coalescing timer), or not at all.
    fn settle(&self, state: &mut LaneState) -> bool {
        if !state.wants_results {
            return false;
        }
        if state.finished() || state.results.len() >= WAKE_AT || state.outstanding == 0 {
            self.wake(&mut state.wants_results);
            return false;
        }
        !state.results.is_empty()
    }
}

#[pymethods]
impl Engine {
    /// Starts the client's run with these options (the CLI's, with underscores).
    #[new]
    #[pyo3(signature = (options=None))]
    fn new(options: Option<&Bound<'_, PyDict>>) -> PyResult<Engine> {
        let opts = options::parse(options, false)?;
        let mut config = opts.config;
        let (ordered, window) = (config.ordered, config.reorder_window.get() as u64);
        // Order is per lane (the run mixes lanes).
        config.ordered = false;
        let hub = Arc::new(Hub {
            state: Mutex::new(HubState::default()),
            input_ready: AtomicWaker::new(),
        });
        let inputs = Inputs {
            hub: Arc::clone(&hub),
        };
        let runtime = crate::bridge::runtime();
        let _entered = runtime.enter();
        let run = sluice::run(config.clone(), inputs, std::future::pending())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let doorbell = Arc::new(Doorbell::default());
        let pump = runtime.spawn(pump(Arc::clone(&hub), run, Arc::clone(&doorbell)));
        Ok(Engine {
            hub,
            pump,
            config,
            parse: Arc::new(opts.parse),
            ordered,
            window,
            doorbell,
        })
    }

    /// A new lane (one stream or request): `ordered` overrides the client's.
    #[pyo3(signature = (ordered=None))]
    fn lane(&self, ordered: Option<bool>) -> PyResult<Batch> {
        let id = {
            let mut hub = lock(&self.hub.state)?;
            hub.made += 1;
            hub.made
        };
        let bell = Bell::new(id, Arc::clone(&self.doorbell))?;
        let order = ordered
            .unwrap_or(self.ordered)
            .then(|| (Reorder::default(), self.window));
        let lane = Arc::new(Lane {
            state: Mutex::new(LaneState {
                inputs: VecDeque::new(),
                input_closed: false,
                cancelled: false,
                lines: 0,
                outstanding: 0,
                results: VecDeque::new(),
                failed: None,
                wants_results: false,
                wants_room: false,
                intake: Intake::from_config(&self.config),
                order,
                tally: Tally::default(),
                lost: 0,
                started: Instant::now(),
            }),
            bell,
            abandon: Abandon::new(),
            parse: Arc::clone(&self.parse),
        });
        let mut hub = lock(&self.hub.state)?;
        if hub.closing {
            return Err(PyRuntimeError::new_err("this sluice.Client is closed"));
        }
        hub.lanes.retain(|l| l.strong_count() > 0);
        hub.lanes.push(Arc::downgrade(&lane));
        hub.feeding.push_back(Arc::clone(&lane));
        Ok(Batch {
            lane,
            hub: Arc::clone(&self.hub),
        })
    }

    /// No more lanes: the run ends once every lane is done (and at once
    /// when none is running).
    fn close(&self) -> PyResult<()> {
        lock(&self.hub.state)?.closing = true;
        self.hub.input_ready.wake();
        Ok(())
    }

    /// Whether the run has ended and its last events are in the summaries
    /// (polled by `Client.aclose` after `close`).
    fn ended(&self) -> PyResult<bool> {
        Ok(lock(&self.hub.state)?.ended)
    }

    /// Origins the run closed so far, and why.
    fn closed_origins(&self) -> PyResult<Vec<String>> {
        Ok(lock(&self.hub.state)?.closed.clone())
    }

    /// The doorbell of the client's lanes that ring without a socket, for
    /// the Python thread that watches it.
    fn doorbell(&self) -> PyDoorbell {
        PyDoorbell(Arc::clone(&self.doorbell))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.pump.abort(); // The pump owns the run: dropping it cancels.
        self.doorbell.close();
    }
}

/// A running lane (one `client.stream(...)` or `client.request(...)`).
#[pyclass(module = "sluice._sluice")]
pub struct Batch {
    lane: Arc<Lane>,
    hub: Arc<Hub>,
}

#[pymethods]
impl Batch {
    /// The bell's file descriptor, for `loop.add_reader`; None where the
    /// lane has no socket (it rings the client's doorbell).
    fn fileno(&self) -> Option<i32> {
        self.lane.bell.fileno()
    }

    /// The lane's id in the client's doorbell.
    fn bell_id(&self) -> u64 {
        self.lane.bell.id
    }

    /// Empties the bell's socket (called by the loop when it rang).
    fn hush(&self) {
        self.lane.bell.hush();
    }

    /// The loop cannot watch the socket: ring the client's doorbell instead.
    fn use_doorbell(&self) {
        self.lane.bell.use_doorbell();
    }

    /// Hands over items: each a request line (a JSON object's text, or a
    /// URL), or `None` where `bad` gives the message for that position.
    /// True when taken; False when there is no room (nothing taken: wait
    /// for the bell and offer again); None once the lane takes no more input.
    fn offer(
        &self,
        lines: Vec<Option<String>>,
        bad: Vec<(usize, String)>,
    ) -> PyResult<Option<bool>> {
        let mut state = lock(&self.lane.state)?;
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
        self.hub.input_ready.wake();
        Ok(Some(true))
    }

    /// No more input: the lane ends once every request has its result.
    fn close_input(&self) -> PyResult<()> {
        let mut state = lock(&self.lane.state)?;
        state.input_closed = true;
        self.lane.settle(&mut state);
        drop(state);
        self.hub.input_ready.wake();
        Ok(())
    }

    /// The results ready now as `(JSON line, ok)` pairs, at most `max`: an
    /// empty list when none is (wait for the bell), None when the lane is
    /// over. `ok` comes apart so a consumer that only checks it never
    /// parses the line.
    fn take(&self, max: usize) -> PyResult<Option<Vec<(String, bool)>>> {
        let mut state = lock(&self.lane.state)?;
        if let Some(e) = &state.failed {
            return Err(PyRuntimeError::new_err(e.clone()));
        }
        if state.results.is_empty() {
            if state.finished() {
                return Ok(None);
            }
            state.wants_results = true;
            return Ok(Some(Vec::new()));
        }
        let held = state.results.len() >= RESULT_ROOM;
        let n = max.min(state.results.len());
        let out: Vec<(String, bool)> = state.results.drain(..n).collect();
        drop(state);
        if held {
            self.hub.input_ready.wake(); // Its requests may go on.
        }
        Ok(Some(out))
    }

    /// Cancels the lane: nothing more of it is sent, its requests in
    /// flight are abandoned (their connections closed), and `take` returns
    /// None. The client's other lanes go on.
    fn cancel(&self) -> PyResult<()> {
        self.lane.abandon.abandon();
        let mut state = lock(&self.lane.state)?;
        let state = &mut *state;
        state.cancelled = true;
        state.input_closed = true;
        state.inputs.clear();
        state.results.clear();
        self.lane.wake(&mut state.wants_results);
        self.lane.wake(&mut state.wants_room);
        Ok(())
    }

    /// Once the lane is over: why some requests got no result (their
    /// origin closed: `halt_after`, or a `Retry-After` beyond
    /// `max_retry_after`), or None when every request got one.
    fn incomplete(&self) -> PyResult<Option<String>> {
        let lost = lock(&self.lane.state)?.lost;
        let closed = lock(&self.hub.state)?.closed.clone();
        Ok((lost > 0).then(|| {
            format!(
                "{} request{} got no result because {} closed: {}",
                lost,
                if lost == 1 { "" } else { "s" },
                if closed.len() == 1 {
                    "its origin was"
                } else {
                    "their origins were"
                },
                closed.join("; ")
            )
        }))
    }

    /// The summary of the lane's results handed over so far, as JSON text,
    /// with the client's origins closed and limits learned so far.
    fn summary(&self) -> PyResult<String> {
        let facts = {
            let hub = lock(&self.hub.state)?;
            summary::JobFacts {
                closed_origins: hub.closed.clone(),
                learned: hub.learned.clone(),
                adaptive: hub.adaptive.clone(),
                retry_budget: hub.retry_budget,
                ..summary::JobFacts::default()
            }
        };
        let state = lock(&self.lane.state)?;
        Ok(summary::json(
            &state.tally,
            &state.tally,
            state.started.elapsed(),
            Some(&facts),
        ))
    }
}

impl Drop for Batch {
    /// A lane Python forgot (collected without `cancel`) stops too.
    fn drop(&mut self) {
        let _ = self.cancel();
    }
}

/// The run's input: the lanes' items in turn, parsed and checked as they
/// are taken. Every item becomes exactly one result: a blank or `#` line,
/// which a file would skip, is a bad request here (nothing is dropped
/// silently); a bad one gets its record from the lane's intake at once.
struct Inputs {
    hub: Arc<Hub>,
}

impl Stream for Inputs {
    type Item = Input;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Input>> {
        // First: any change after this wakes the run again.
        self.hub.input_ready.register(cx.waker());
        let Ok(mut hub) = self.hub.state.lock() else {
            return Poll::Ready(None);
        };
        let mut turns = hub.feeding.len();
        while turns > 0 {
            turns -= 1;
            let Some(lane) = hub.feeding.pop_front() else {
                break;
            };
            let Ok(mut state) = lane.state.lock() else {
                continue;
            };
            if state.cancelled || (state.input_closed && state.inputs.is_empty()) {
                continue; // Done feeding: out of the turn for good.
            }
            if !state.may_feed() {
                drop(state);
                hub.feeding.push_back(lane);
                continue;
            }
            let Some(raw) = state.inputs.pop_front() else {
                continue;
            };
            if state.inputs.len() <= INPUT_ROOM / 2 {
                lane.wake(&mut state.wants_room);
            }
            let local = raw.line;
            let input = to_input(raw, &lane.parse);
            let checked = state.intake.check(input);
            if let Some((order, _)) = &mut state.order
                && !matches!(checked, Checked::Skip)
            {
                order.register(local);
            }
            match checked {
                Checked::Run(mut req, _) => {
                    drop(state);
                    hub.lines += 1;
                    let line = hub.lines;
                    let id = std::mem::replace(&mut req.id, Id::line(line));
                    req.line = line;
                    req.abandon = Some(lane.abandon.clone());
                    hub.routes.insert(
                        line,
                        Route {
                            lane: Arc::clone(&lane),
                            line: local,
                            id,
                        },
                    );
                    hub.feeding.push_back(lane);
                    return Poll::Ready(Some(Input::Request(req)));
                }
                Checked::Reject(record) => {
                    state.outstanding -= 1;
                    let released = match &mut state.order {
                        Some((order, _)) => order.complete(record),
                        None => vec![record],
                    };
                    state.deliver(released);
                    lane.settle(&mut state);
                }
                Checked::Skip => state.outstanding -= 1,
            }
            drop(state);
            hub.feeding.push_back(lane);
            turns = hub.feeding.len();
        }
        if hub.closing && hub.feeding.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
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

/// What the pump hands one lane.
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every item is a record: boxing it would cost an allocation per request"
)]
enum Routed {
    Record(Box<Record>),
    Dropped(u64),
}

/// Routes the run's events to their lanes: records get the lane's line and
/// id back and become result lines (on this thread, not Python's), losses
/// are counted, and bells ring as the module documentation says.
async fn pump(hub: Arc<Hub>, mut run: Run, doorbell: Arc<Doorbell>) {
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut later: Vec<Arc<Lane>> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = sleep_until(deadline) => {
                deadline = None;
                for lane in later.drain(..) {
                    if let Ok(mut state) = lane.state.lock() && !state.results.is_empty() {
                        lane.wake(&mut state.wants_results);
                    }
                }
                continue;
            }
            e = run.next() => e,
        };
        let Some(first) = first else {
            let ended = run.join().await;
            fail_lanes(&hub, ended.err().map(|e| e.to_string()));
            if let Ok(mut state) = hub.state.lock() {
                state.ended = true;
            }
            doorbell.close(); // Its watcher takes the last rings, then ends.
            return;
        };
        let mut events = vec![first];
        while events.len() < PUMP_BATCH {
            match run.next().now_or_never() {
                Some(Some(e)) => events.push(e),
                _ => break,
            }
        }
        let mut routed: Vec<(Arc<Lane>, Routed)> = Vec::with_capacity(events.len());
        {
            let Ok(mut state) = hub.state.lock() else {
                return;
            };
            for event in events {
                let (line, item) = match event {
                    Event::Record(rec) => (rec.line, Routed::Record(rec)),
                    Event::Dropped { line, .. } => (line, Routed::Dropped(line)),
                    Event::OriginClosed { origin, reason } => {
                        state.closed.push(format!("{origin}: {reason}"));
                        continue;
                    }
                    Event::Learned(l) => {
                        summary::note_learned(&mut state.learned, *l);
                        continue;
                    }
                    Event::Concurrency(c) => {
                        state.adaptive = Some(c);
                        continue;
                    }
                    Event::RetryBudget { waited, held } => {
                        state.retry_budget = Some((waited, held));
                        continue;
                    }
                    _ => continue,
                };
                let Some(route) = state.routes.remove(&line) else {
                    continue;
                };
                let item = match item {
                    Routed::Record(mut rec) => {
                        rec.line = route.line;
                        rec.id = route.id;
                        Routed::Record(rec)
                    }
                    Routed::Dropped(_) => Routed::Dropped(route.line),
                };
                routed.push((route.lane, item));
            }
        }
        let mut unheld = false;
        for (lane, item) in routed {
            let Ok(mut guard) = lane.state.lock() else {
                continue;
            };
            let state = &mut *guard;
            if state.cancelled {
                continue;
            }
            state.outstanding = state.outstanding.saturating_sub(1);
            let released = match (item, &mut state.order) {
                (Routed::Record(rec), Some((order, _))) => {
                    unheld = true;
                    order.complete(rec)
                }
                (Routed::Record(rec), None) => vec![rec],
                (Routed::Dropped(line), order) => {
                    state.lost += 1;
                    match order {
                        Some((order, _)) => {
                            unheld = true;
                            order.drop_line(line)
                        }
                        None => Vec::new(),
                    }
                }
            };
            state.deliver(released);
            if lane.settle(state) && !later.iter().any(|l| Arc::ptr_eq(l, &lane)) {
                drop(guard);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + COALESCE);
                later.push(lane);
            }
        }
        if unheld {
            hub.input_ready.wake(); // An ordered lane's window moved.
        }
    }
}

/// The run is over: every lane still waiting learns it (with the engine's
/// error when it failed).
fn fail_lanes(hub: &Hub, error: Option<String>) {
    let Ok(state) = hub.state.lock() else { return };
    for lane in state.lanes.iter().filter_map(Weak::upgrade) {
        if let Ok(mut s) = lane.state.lock() {
            let s = &mut *s;
            if let Some(e) = &error {
                s.failed.get_or_insert_with(|| e.clone());
            } else {
                s.cancelled |= !s.finished();
            }
            lane.wake(&mut s.wants_results);
            lane.wake(&mut s.wants_room);
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
    Input::from(InvalidLine {
        line,
        id: None,
        method: None,
        url: None,
        message,
    })
}
