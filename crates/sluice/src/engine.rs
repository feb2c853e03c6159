//! The run: one dispatcher task owns every limit (global and per-origin
//! concurrency, rates, budget, origin pauses and closures) and starts an
//! attempt only when all of them agree, oldest request first. Attempts run as
//! their own tasks; a request waiting to retry sits on a timer and holds no
//! slot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::attempt::{self, Outcome};
use crate::client::{self, ClientError, Clients};
use crate::config::Config;
use crate::event::Event;
use crate::gcra::Gcra;
use crate::intake::{Checked, Intake};
use crate::order::Reorder;
use crate::record::{ErrorKind, Record, RecordError};
use crate::request::{Input, Request};
use crate::retry::{self, Failure};
use crate::timing::Stopwatch;

/// A running batch: a stream of [`Event`]s that ends when every request has
/// its record (or the run drained). Dropping it cancels everything in flight.
pub struct Run {
    events: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
}

impl Stream for Run {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Run {
    /// After the stream has ended: `Err` when the engine stopped because of
    /// a bug (a panic) rather than because the work was done, so a caller
    /// never mistakes a crash for a finished run.
    pub async fn join(&mut self) -> Result<(), String> {
        match (&mut self.task).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_panic() => Err("the engine stopped on an internal error (a bug: please report it); run again with --resume to continue".into()),
            Err(_) => Err("the engine was cancelled".into()),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a run on the current tokio runtime.
///
/// `inputs` is read with bounded read-ahead; `shutdown` resolving starts a
/// drain: no new starts, waiting requests are dropped unwritten, in-flight
/// ones finish and get their records. Fails only when the HTTP client cannot
/// be built from `config` (for example an unreadable CA certificate).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// let mock = sluice_mock::MockServer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
/// let url = url::Url::parse(&format!("{}/fast", mock.url())).unwrap();
/// let requests = (1..=3).map(move |line| sluice::Input::Request(sluice::Request::get(line, url.clone())));
/// let config = sluice::Config::builder().concurrency(2).build().unwrap();
/// let run = sluice::run(config, futures::stream::iter(requests), std::future::pending()).unwrap();
/// let records: Vec<sluice::Record> = run
///     .filter_map(|e| async move { if let sluice::Event::Record(r) = e { Some(r) } else { None } })
///     .collect()
///     .await;
/// assert_eq!(records.len(), 3);
/// assert!(records.iter().all(|r| r.ok && r.attempts == 1));
/// # }
/// ```
pub fn run<S, F>(config: Config, inputs: S, shutdown: F) -> Result<Run, ClientError>
where
    S: Stream<Item = Input> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let client = client::build(&config)?;
    let (tx, rx) = mpsc::channel(1024);
    let dispatcher = Dispatcher::new(Arc::new(config), client, tx);
    let task = tokio::spawn(dispatcher.run(Box::pin(inputs), Box::pin(shutdown)));
    Ok(Run { events: rx, task })
}

/// A request and its progress through attempts.
struct Job {
    req: Arc<Request>,
    cells: u64,
    origin: usize,
    seq: u64,
    attempts: u32,
    first: Option<(Instant, SystemTime)>,
    not_before: Option<Instant>,
    safe: bool,
    /// An earlier attempt of a non-idempotent request failed after it was
    /// written: whatever the final outcome, the server may have applied it.
    maybe_applied: bool,
    /// Where its time goes, for the record's `wait_ms` and `attempt_log`.
    watch: Box<Stopwatch>,
}

/// Per-origin state: its queue and its own limits.
struct Origin {
    name: String,
    queue: VecDeque<Job>,
    in_flight: usize,
    paused_until: Option<Instant>,
    rate: Option<Gcra>,
    closed: bool,
    hard_failures: u32,
    /// Key of this origin's entry in `ready`, when it has one.
    ready_key: Option<u64>,
    /// This origin's queue length counted in `ready_queued`.
    counted: usize,
    wake_at: Option<Instant>,
}

enum Timer {
    Retry(Job),
    Wake(usize),
    Global,
}

type Done = (Job, Outcome, Instant);

struct Dispatcher {
    config: Arc<Config>,
    client: Clients,
    events: mpsc::Sender<Event>,
    outbox: VecDeque<Event>,
    intake: Intake,
    order: Option<Reorder>,
    origins: Vec<Origin>,
    by_name: HashMap<String, usize>,
    /// Origins that could start their head request now, by the head's seq.
    ready: BTreeMap<u64, usize>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    global_wake: Option<Instant>,
    rate: Option<Gcra>,
    budget: Option<Gcra>,
    tasks: JoinSet<Done>,
    in_flight: usize,
    queued: usize,
    /// Queued requests of origins in `ready`.
    ready_queued: usize,
    retry_waiting: usize,
    next_seq: u64,
    pending: Option<Input>,
    input_done: bool,
    draining: bool,
}

impl Dispatcher {
    fn new(config: Arc<Config>, client: Clients, events: mpsc::Sender<Event>) -> Dispatcher {
        let now = Instant::now();
        let burst = u64::from(config.burst.get());
        Dispatcher {
            intake: Intake::new(config.effective_budget_burst(), config.redactor.clone()),
            order: config.ordered.then(Reorder::default),
            rate: config.rate.map(|r| Gcra::new(r, burst, now)),
            budget: config
                .budget
                .map(|b| Gcra::new(b, config.effective_budget_burst().unwrap_or(1), now)),
            config,
            client,
            events,
            outbox: VecDeque::new(),
            origins: Vec::new(),
            by_name: HashMap::new(),
            ready: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            global_wake: None,
            tasks: JoinSet::new(),
            in_flight: 0,
            queued: 0,
            ready_queued: 0,
            retry_waiting: 0,
            next_seq: 0,
            pending: None,
            input_done: false,
            draining: false,
        }
    }

    async fn run(
        mut self,
        mut inputs: Pin<Box<dyn Stream<Item = Input> + Send>>,
        mut shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) {
        loop {
            self.admit_pending();
            self.dispatch(Instant::now());
            if self.flush().await.is_err() {
                return; // Nobody is listening any more.
            }
            if self.finished() {
                break;
            }
            let next_timer = self.timers.first_key_value().map(|(k, _)| k.0);
            let wants_input = self.wants_input();
            tokio::select! {
                biased;
                _ = &mut shutdown, if !self.draining => self.drain(),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match done {
                        Ok((job, outcome, at)) => self.complete(job, outcome, at),
                        Err(e) if e.is_cancelled() => {}
                        // Attempts catch their own panics, so this cannot happen.
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
                _ = wait_until(next_timer), if next_timer.is_some() => {
                    self.fire_timers(Instant::now());
                }
                item = inputs.next(), if wants_input => match item {
                    Some(item) => self.accept(item),
                    None => self.input_done = true,
                },
            }
        }
        let _ = self.flush().await;
    }

    async fn flush(&mut self) -> Result<(), ()> {
        while let Some(event) = self.outbox.pop_front() {
            self.events.send(event).await.map_err(|_| ())?;
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        (self.input_done || self.draining)
            && self.pending.is_none()
            && self.queued == 0
            && self.retry_waiting == 0
            && self.tasks.is_empty()
    }

    /// Read-ahead counts only requests whose origin could start them now:
    /// an origin held back (paused, at its own limit or rate) must not stop
    /// the reading of requests to other origins. Held requests, and those
    /// waiting to retry, are bounded separately, so memory stays flat.
    fn wants_input(&self) -> bool {
        let ahead = self.config.read_ahead + self.config.concurrency.get();
        !self.draining
            && !self.input_done
            && self.pending.is_none()
            && self.ready_queued < ahead
            && self.queued + self.retry_waiting < ahead * HELD_FACTOR
    }

    // ---- intake ---------------------------------------------------------

    /// Under `ordered`, an item may enter only within the reorder window.
    fn accept(&mut self, item: Input) {
        self.pending = Some(item);
        self.admit_pending();
    }

    fn admit_pending(&mut self) {
        let Some(item) = self.pending.take() else {
            return;
        };
        if let Some(order) = &self.order {
            let window = self.config.reorder_window.get() as u64;
            if order
                .oldest()
                .is_some_and(|oldest| item.line() > oldest + window)
            {
                self.pending = Some(item);
                return;
            }
        }
        match self.intake.check(item) {
            Checked::Skip => {}
            Checked::Reject(record) => {
                self.register(record.line);
                self.emit_record(record);
            }
            Checked::Run(req, cells) => self.enqueue_new(req, cells),
        }
    }

    fn register(&mut self, line: u64) {
        if let Some(order) = &mut self.order {
            order.register(line);
        }
    }

    fn enqueue_new(&mut self, req: Request, cells: u64) {
        self.register(req.line);
        let origin = self.origin_of(&req);
        if self.origins[origin].closed {
            self.drop_line(req.line, 0);
            return;
        }
        self.outbox.push_back(Event::Waiting {
            line: req.line,
            id: req.id.clone(),
        });
        let safe =
            retry::safe_to_repeat(&req.method, &req.headers, self.config.retry_non_idempotent)
                || retry::safe_to_repeat(&req.method, &self.config.headers, false);
        let now = Instant::now();
        let job = Job {
            req: Arc::new(req),
            cells,
            origin,
            seq: 0,
            attempts: 0,
            first: None,
            not_before: None,
            safe,
            maybe_applied: false,
            watch: Box::new(Stopwatch::new(now, SystemTime::now())),
        };
        self.enqueue(job, now);
    }

    fn origin_of(&mut self, req: &Request) -> usize {
        let name = req.url.origin().ascii_serialization();
        if let Some(&i) = self.by_name.get(&name) {
            return i;
        }
        let burst = u64::from(self.config.burst.get());
        self.origins.push(Origin {
            name: name.clone(),
            queue: VecDeque::new(),
            in_flight: 0,
            paused_until: None,
            rate: self
                .config
                .per_host_rate
                .map(|r| Gcra::new(r, burst, Instant::now())),
            closed: false,
            hard_failures: 0,
            ready_key: None,
            counted: 0,
            wake_at: None,
        });
        self.by_name.insert(name, self.origins.len() - 1);
        self.origins.len() - 1
    }

    /// Queues a new request at the back of its origin's queue.
    fn enqueue(&mut self, mut job: Job, now: Instant) {
        job.seq = self.next_seq;
        self.next_seq += 1;
        self.requeue(job, now);
    }

    /// Queues a request in order of its first arrival: a retry keeps its
    /// place ahead of requests read after it, so its wait is the one the
    /// server asked for, not that plus a whole queue.
    fn requeue(&mut self, mut job: Job, now: Instant) {
        job.watch.queued(now);
        let o = job.origin;
        let queue = &mut self.origins[o].queue;
        let at = queue.partition_point(|j| j.seq < job.seq);
        queue.insert(at, job);
        self.queued += 1;
        self.refresh(o, now);
    }

    // ---- scheduling -----------------------------------------------------

    /// Recomputes whether origin `o` could start its head request now.
    fn refresh(&mut self, o: usize, now: Instant) {
        if let Some(key) = self.origins[o].ready_key.take() {
            self.ready.remove(&key);
            self.ready_queued -= std::mem::take(&mut self.origins[o].counted);
        }
        // A pause that has ended releases its queue spread out, whichever
        // event notices it first.
        let origin = &mut self.origins[o];
        if origin.paused_until.is_some_and(|p| p <= now) {
            origin.paused_until = None;
            spread(&mut origin.queue, now);
        }
        let per_host = self
            .config
            .per_host_concurrency
            .map_or(usize::MAX, |n| n.get());
        let origin = &self.origins[o];
        let Some(head) = origin.queue.front() else {
            return;
        };
        if origin.closed || origin.in_flight >= per_host {
            return;
        }
        let rate_at = origin.rate.as_ref().map(|g| g.ready_at(now, 1));
        let wake = [origin.paused_until, head.not_before, rate_at]
            .into_iter()
            .flatten()
            .max();
        match wake {
            Some(at) if at > now => {
                if rate_at == Some(at) {
                    self.held_by_rate(o, now);
                }
                self.wake_origin(o, at)
            }
            _ => {
                let (seq, len) = (head.seq, origin.queue.len());
                self.origins[o].ready_key = Some(seq);
                self.origins[o].counted = len;
                self.ready_queued += len;
                self.ready.insert(seq, o);
            }
        }
    }

    fn wake_origin(&mut self, o: usize, at: Instant) {
        let origin = &mut self.origins[o];
        if origin.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        origin.wake_at = Some(at);
        self.add_timer(at, Timer::Wake(o));
    }

    fn add_timer(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    /// Starts attempts, oldest ready request first, while every limit allows.
    fn dispatch(&mut self, now: Instant) {
        while !self.draining && self.in_flight < self.config.concurrency.get() {
            let Some((_, &o)) = self.ready.first_key_value() else {
                return;
            };
            let cells = self.origins[o].queue.front().map_or(0, |j| j.cells);
            if let Some(at) = self.global_ready_at(now, cells) {
                self.held_by_rate(o, now);
                if self.global_wake.is_none_or(|w| w > at || w <= now) {
                    self.global_wake = Some(at);
                    self.add_timer(at, Timer::Global);
                }
                return;
            }
            self.start(o, cells, now);
        }
    }

    /// Origin `o`'s head request is next but a rate or budget limit holds it.
    fn held_by_rate(&mut self, o: usize, now: Instant) {
        if let Some(head) = self.origins[o].queue.front_mut() {
            head.watch.held_by_rate(now);
        }
    }

    /// When the global rate or budget cannot pass now, the instant they can.
    fn global_ready_at(&self, now: Instant, cells: u64) -> Option<Instant> {
        let rate = self.rate.as_ref().map(|g| g.ready_at(now, 1));
        let budget = self
            .budget
            .as_ref()
            .filter(|_| cells > 0)
            .map(|g| g.ready_at(now, cells));
        [rate, budget]
            .into_iter()
            .flatten()
            .max()
            .filter(|&at| at > now)
    }

    fn start(&mut self, o: usize, cells: u64, now: Instant) {
        if let Some(g) = &mut self.rate {
            g.take(now, 1);
        }
        if let Some(g) = self.budget.as_mut().filter(|_| cells > 0) {
            g.take(now, cells);
        }
        let origin = &mut self.origins[o];
        if let Some(g) = &mut origin.rate {
            g.take(now, 1);
        }
        let mut job = origin.queue.pop_front().expect("a ready origin has a head");
        origin.in_flight += 1;
        self.queued -= 1;
        self.in_flight += 1;
        job.attempts += 1;
        job.first.get_or_insert((now, SystemTime::now()));
        job.watch.started(now);
        self.refresh(o, now);
        self.outbox.push_back(Event::Started {
            line: job.req.line,
            id: job.req.id.clone(),
            attempt: job.attempts,
            in_flight: self.in_flight,
        });
        let (client, config) = (self.client.clone(), Arc::clone(&self.config));
        self.tasks.spawn(async move {
            let mut sent = None;
            let outcome = AssertUnwindSafe(attempt::run(&client, &config, &job.req, &mut sent))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| internal_failure());
            // `duration_ms` and `started_at` run from when the first attempt
            // was sent, not from its start (which may wait for a connection).
            if let (1, Some(at)) = (job.attempts, sent) {
                let ago = Instant::now().saturating_duration_since(at);
                job.first = Some((
                    at,
                    SystemTime::now()
                        .checked_sub(ago)
                        .unwrap_or_else(SystemTime::now),
                ));
            }
            (job, outcome, Instant::now())
        });
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Retry(job) => {
                    self.retry_waiting -= 1;
                    if self.draining || self.origins[job.origin].closed {
                        self.drop_line(job.req.line, job.attempts);
                    } else {
                        self.requeue(job, now);
                    }
                }
                Timer::Wake(o) => self.wake(o, now),
                Timer::Global => self.global_wake = None,
            }
        }
    }

    fn wake(&mut self, o: usize, now: Instant) {
        self.origins[o].wake_at = None;
        self.refresh(o, now);
    }

    // ---- outcomes -------------------------------------------------------

    fn complete(&mut self, mut job: Job, outcome: Outcome, at: Instant) {
        job.watch.ended(at);
        let o = job.origin;
        self.origins[o].in_flight -= 1;
        self.in_flight -= 1;
        let verdict = self.judge(&job, &outcome, at);
        match verdict {
            Verdict::Retry(wait) => {
                let mut job = job;
                job.maybe_applied |= retry::maybe_applied(&job.req.method, failure_of(&outcome));
                self.schedule_retry(job, &outcome, wait, at)
            }
            Verdict::Drop => self.drop_line(job.req.line, job.attempts),
            Verdict::Final(error) => self.finish(job, outcome, error, at),
        }
        self.refresh(o, Instant::now());
    }

    /// Decides what follows an attempt, pausing or closing its origin as the
    /// server asks.
    fn judge(&mut self, job: &Job, outcome: &Outcome, now: Instant) -> Verdict {
        let failure = match outcome {
            Outcome::Response(r) if (200..300).contains(&r.status) => return Verdict::Final(None),
            Outcome::Response(r) => Failure::Status(r.status),
            Outcome::Failed(f) => Failure::Error {
                kind: f.kind,
                sent: f.sent,
            },
        };
        let asked = match outcome {
            Outcome::Response(r) => retry::retry_after(&r.headers, SystemTime::now()),
            Outcome::Failed(f) => f
                .headers
                .as_ref()
                .and_then(|h| retry::retry_after(h, SystemTime::now())),
        };
        let status = match outcome {
            Outcome::Response(r) => Some(r.status),
            Outcome::Failed(f) => f.status,
        };
        let backoff = retry::backoff(
            self.config.backoff_initial,
            self.config.backoff_max,
            job.attempts,
        );
        let max = self.config.max_retry_after;
        // A 429 or 503 asks the origin to slow down, even when its body
        // could not be read (too large, cut short).
        if let Some(status @ (429 | 503)) = status {
            if let Some(asked) = asked.filter(|&a| a > max) {
                let reason = format!(
                    "HTTP {status} with Retry-After {} exceeds --max-retry-after {}",
                    attempt::show(asked),
                    attempt::show(max)
                );
                self.close_origin(job.origin, &reason);
                return Verdict::Final(Some((ErrorKind::RetryAfterTooLong, reason)));
            }
            self.pause(job.origin, asked.unwrap_or(backoff), now);
        }
        let allowed = job.attempts <= self.config.retries
            && retry::wants_retry(&self.config.retry_on, failure, job.safe);
        if !allowed {
            return Verdict::Final(Some(describe_failure(outcome)));
        }
        if self.draining || self.origins[job.origin].closed {
            return Verdict::Drop;
        }
        Verdict::Retry(asked.map_or(backoff, |a| a.min(max)))
    }

    fn pause(&mut self, o: usize, wait: Duration, now: Instant) {
        let until = later(now, wait);
        let origin = &mut self.origins[o];
        if origin.paused_until.is_some_and(|p| p >= until) {
            return;
        }
        origin.paused_until = Some(until);
        self.outbox.push_back(Event::Paused {
            origin: self.origins[o].name.clone(),
            wait,
        });
        self.refresh(o, now);
    }

    fn schedule_retry(&mut self, mut job: Job, outcome: &Outcome, wait: Duration, now: Instant) {
        // Requests held by an origin pause come back spread over up to a second.
        let paused = self.origins[job.origin]
            .paused_until
            .is_some_and(|p| p > now);
        let jitter = if paused {
            Duration::from_secs_f64(fastrand::f64())
        } else {
            Duration::ZERO
        };
        let (kind, message) = describe_failure(outcome);
        let status = match outcome {
            Outcome::Response(r) => Some(r.status),
            Outcome::Failed(f) => f.status,
        };
        job.watch.retrying(now, status, kind);
        self.outbox.push_back(Event::Retrying {
            line: job.req.line,
            id: job.req.id.clone(),
            attempt: job.attempts,
            wait: wait + jitter,
            reason: format!("{kind}: {message}"),
        });
        self.retry_waiting += 1;
        self.add_timer(later(now, wait.saturating_add(jitter)), Timer::Retry(job));
    }

    fn finish(
        &mut self,
        job: Job,
        outcome: Outcome,
        error: Option<(ErrorKind, String)>,
        at: Instant,
    ) {
        self.count_hard_failure(&job, &outcome, error.is_some());
        let record = self.record(job, outcome, error, at);
        self.emit_record(record);
    }

    /// `--halt-after`: consecutive final failures that mean the origin refuses
    /// us (401, 403, 407, dns, tls, connect) close it.
    fn count_hard_failure(&mut self, job: &Job, outcome: &Outcome, failed: bool) {
        let hard = failed
            && match outcome {
                Outcome::Response(r) => matches!(r.status, 401 | 403 | 407),
                // Running out of file descriptors is not the origin's fault.
                Outcome::Failed(f) => {
                    !f.local
                        && matches!(f.kind, ErrorKind::Dns | ErrorKind::Tls | ErrorKind::Connect)
                }
            };
        let origin = &mut self.origins[job.origin];
        origin.hard_failures = if hard { origin.hard_failures + 1 } else { 0 };
        let limit = self.config.halt_after;
        if limit > 0 && origin.hard_failures >= limit && !origin.closed {
            let reason = format!(
                "{limit} consecutive requests failed with 401/403/407 or dns/tls/connect (--halt-after)"
            );
            self.close_origin(job.origin, &reason);
        }
    }

    fn record(
        &self,
        job: Job,
        outcome: Outcome,
        error: Option<(ErrorKind, String)>,
        at: Instant,
    ) -> Record {
        let (start, wall) = job.first.unwrap_or((at, SystemTime::now()));
        let timing = job.watch.finish().map(Box::new);
        let req = &job.req;
        let redactor = &self.config.redactor;
        let maybe_applied = error.is_some()
            && (job.maybe_applied || retry::maybe_applied(&req.method, failure_of(&outcome)));
        let mut record = Record {
            id: req.id.clone(),
            line: req.line,
            method: Some(req.method.to_string()),
            url: Some(redactor.url(&req.url)),
            ok: error.is_none(),
            status: None,
            attempts: job.attempts,
            started_at: Some(wall),
            duration: at.saturating_duration_since(start),
            headers: None,
            body: None,
            error: error.map(|(kind, message)| RecordError {
                kind,
                message,
                maybe_applied,
            }),
            final_url: None,
            transport: None,
            timing,
        };
        match outcome {
            Outcome::Response(r) => {
                record.status = Some(r.status);
                if self.config.include_headers {
                    record.headers = Some(attempt::recorded_headers(&r.headers, redactor));
                }
                record.transport = Some(r.transport);
                record.body = r.body;
                record.final_url = r.final_url.map(|u| redactor.url(&u));
            }
            Outcome::Failed(f) => record.status = f.status,
        }
        record
    }

    fn emit_record(&mut self, record: Record) {
        match &mut self.order {
            Some(order) => {
                let ready = order.complete(record);
                self.outbox.extend(ready.into_iter().map(Event::Record));
            }
            None => self.outbox.push_back(Event::Record(record)),
        }
    }

    fn drop_line(&mut self, line: u64, attempts: u32) {
        self.outbox.push_back(Event::Dropped { line, attempts });
        if let Some(order) = &mut self.order {
            let ready = order.drop_line(line);
            self.outbox.extend(ready.into_iter().map(Event::Record));
        }
    }

    fn close_origin(&mut self, o: usize, reason: &str) {
        if self.origins[o].closed {
            return;
        }
        self.origins[o].closed = true;
        let dropped: Vec<Job> = self.origins[o].queue.drain(..).collect();
        self.queued -= dropped.len();
        for job in dropped {
            self.drop_line(job.req.line, job.attempts);
        }
        // Requests of this origin waiting to retry go too, now: waiting for
        // their timers would hold the run (and, under --ordered, every later
        // record) for as long as the longest backoff.
        let waiting: Vec<(Instant, u64)> = self
            .timers
            .iter()
            .filter(|(_, t)| matches!(t, Timer::Retry(job) if job.origin == o))
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            if let Some(Timer::Retry(job)) = self.timers.remove(&key) {
                self.retry_waiting -= 1;
                self.drop_line(job.req.line, job.attempts);
            }
        }
        self.refresh(o, Instant::now());
        self.outbox.push_back(Event::OriginClosed {
            origin: self.origins[o].name.clone(),
            reason: reason.to_string(),
        });
    }

    /// The first interrupt: no new starts; queued and waiting requests are
    /// dropped unwritten; in-flight ones finish.
    fn drain(&mut self) {
        self.draining = true;
        let mut lines = Vec::new();
        for origin in &mut self.origins {
            lines.extend(origin.queue.drain(..).map(|j| (j.req.line, j.attempts)));
            origin.ready_key = None;
            origin.counted = 0;
        }
        self.ready.clear();
        self.queued = 0;
        self.ready_queued = 0;
        let timers = std::mem::take(&mut self.timers);
        for (_, timer) in timers {
            if let Timer::Retry(job) = timer {
                lines.push((job.req.line, job.attempts));
            }
        }
        self.retry_waiting = 0;
        self.pending = None;
        for (line, attempts) in lines {
            self.drop_line(line, attempts);
        }
    }
}

enum Verdict {
    Retry(Duration),
    Drop,
    Final(Option<(ErrorKind, String)>),
}

fn failure_of(outcome: &Outcome) -> Failure {
    match outcome {
        Outcome::Response(r) => Failure::Status(r.status),
        Outcome::Failed(f) => Failure::Error {
            kind: f.kind,
            sent: f.sent,
        },
    }
}

fn describe_failure(outcome: &Outcome) -> (ErrorKind, String) {
    match outcome {
        Outcome::Response(r) => {
            let reason = reqwest::StatusCode::from_u16(r.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let mut message = format!("HTTP {} {reason}", r.status).trim_end().to_string();
            if let Some(note) = &r.note {
                message = format!("{message} ({note})");
            }
            (ErrorKind::HttpStatus, message)
        }
        Outcome::Failed(f) => (f.kind, f.message.clone()),
    }
}

fn internal_failure() -> Outcome {
    Outcome::Failed(attempt::Failed {
        kind: ErrorKind::Protocol,
        sent: true,
        message: "internal error while handling the response (please report this)".into(),
        status: None,
        local: false,
        headers: None,
    })
}

/// How many times the read-ahead may be held back by origins that cannot
/// start their requests (a pause, their own limits).
const HELD_FACTOR: usize = 8;

/// `now + wait`, saturating far in the future instead of overflowing.
fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Timers closer than this are awaited by yielding rather than sleeping.
const SPIN: Duration = Duration::from_millis(1);

/// Timers closer than this are awaited by spinning on the clock.
const SPIN_HARD: Duration = Duration::from_micros(50);

/// Waits until `at`, precisely. tokio's timer ticks in milliseconds and
/// rounds deadlines up, so at `--rate 1000/s` every start would come about a
/// millisecond late and the rate would halve (with burst 1 lateness is never
/// made up). The last millisecond is spent yielding instead, which
/// keeps other events flowing, and the last 50 µs spinning.
async fn wait_until(at: Option<Instant>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    let left = at.saturating_duration_since(Instant::now());
    if left > SPIN {
        tokio::time::sleep_until(at - SPIN).await;
    } else if left > SPIN_HARD {
        tokio::task::yield_now().await;
    } else {
        // A few tens of microseconds: not worth giving the thread away.
        while Instant::now() < at {
            std::hint::spin_loop();
        }
    }
}

/// After a pause, queued requests restart spread over up to a second (10 ms
/// per request), in queue order, so they do not arrive in lock-step.
fn spread(queue: &mut VecDeque<Job>, now: Instant) {
    let n = queue.len().min(100);
    if n < 2 {
        return;
    }
    let window = Duration::from_millis(10 * n as u64);
    let mut offsets: Vec<Duration> = (0..n).map(|_| window.mul_f64(fastrand::f64())).collect();
    offsets.sort();
    for (job, offset) in queue.iter_mut().zip(offsets) {
        job.not_before = Some(now + offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64) -> Job {
        let url = url::Url::parse("http://127.0.0.1/").expect("a valid URL");
        Job {
            req: Arc::new(Request::get(seq + 1, url)),
            cells: 0,
            origin: 0,
            seq,
            attempts: 0,
            first: None,
            not_before: None,
            safe: true,
            maybe_applied: false,
            watch: Box::new(Stopwatch::new(Instant::now(), SystemTime::UNIX_EPOCH)),
        }
    }

    #[test]
    fn an_ended_pause_releases_its_queue_spread_out_in_order() {
        let now = Instant::now();
        let mut queue: VecDeque<Job> = (0..50).map(job).collect();
        spread(&mut queue, now);
        let starts: Vec<Instant> = queue.iter().map(|j| j.not_before.expect("set")).collect();
        // In queue order, within 10 ms per request (at most a second), and
        // not all at the same instant.
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            starts
                .iter()
                .all(|&t| t >= now && t <= now + Duration::from_millis(500))
        );
        assert!(
            starts[49] - starts[0] > Duration::from_millis(100),
            "{:?}",
            starts[49] - starts[0]
        );
        // A single waiting request goes at once.
        let mut one: VecDeque<Job> = (0..1).map(job).collect();
        spread(&mut one, now);
        assert!(one[0].not_before.is_none());
    }
}
