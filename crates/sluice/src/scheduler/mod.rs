//! Every decision of a run as a pure state machine: intake, which request
//! starts next, origin pauses and closures, retries, records and drops.
//!
//! The scheduler does no I/O, reads no clock and draws no randomness of its
//! own. Each step takes the time; backoff jitter and the spread after a pause
//! come from a seeded generator; wall-clock times in records are the run's
//! start plus the monotonic time passed in. What it decides comes out as
//! [`Action`]s, and [`Scheduler::next_wake`] says when it wants to be called
//! again. The tokio driver around it ([`crate::engine`]) carries the actions
//! out; tests drive it with a made-up clock and made-up outcomes.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use sluice::scheduler::{Action, Scheduler};
//!
//! let config = sluice::Config::builder().rate("10/s".parse().unwrap()).build().unwrap();
//! let t0 = tokio::time::Instant::now();
//! let mut s = Scheduler::new(Arc::new(config), t0, SystemTime::UNIX_EPOCH, 1);
//! let url = url::Url::parse("http://127.0.0.1:9/fast").unwrap();
//! for line in 1..=2 {
//!     s.offer(sluice::Input::from(sluice::Request::get(line, url.clone())), t0);
//! }
//! let starts = |s: &mut Scheduler| {
//!     std::iter::from_fn(|| s.next_action())
//!         .filter(|a| matches!(a, Action::Start(_)))
//!         .count()
//! };
//! assert_eq!(starts(&mut s), 1); // the rate lets one start now
//! let wake = s.next_wake().unwrap(); // and the next 100.5 ms later
//! assert_eq!(wake - t0, Duration::from_micros(100_500));
//! s.advance(wake);
//! assert_eq!(starts(&mut s), 1);
//! ```

mod adaptive;
mod discovered;
mod learned;
mod origin;
#[cfg(test)]
mod pacing_tests;
mod ready;
mod retrying;
mod shared;
#[cfg(test)]
mod simulated;
#[cfg(test)]
mod tests;
mod tokens;

pub use shared::PEER_PAUSE;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fnv::FnvHashMap;
use slab::Slab;
use tokio::time::Instant;

use crate::attempt::{self, Outcome};
use crate::config::{Config, Setting};
use crate::event::Event;
use crate::gcra::Gcra;
use crate::intake::{Checked, Intake};
use crate::order::Reorder;
use crate::record::{ErrorKind, Record, RecordError};
use crate::request::{Input, Request};
use crate::retry::{self, Failure};
use crate::timing::{RunClock, Stopwatch, later};

use origin::{Job, JobState, Origin, Readiness};
use ready::Ready;

/// Identifies one attempt between [`Action::Start`] and
/// [`Scheduler::complete`]: its slot among the attempts in flight, and its
/// request's sequence number, so a ticket of a slot used again since finds
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    slot: usize,
    seq: u64,
}

/// An attempt to start now.
#[derive(Debug)]
pub struct Attempt {
    /// Hand it back with the outcome.
    pub ticket: Ticket,
    /// What to send.
    pub request: Arc<Request>,
    /// 1 for the first attempt.
    pub number: u32,
    /// Under `--redis`: the latest instant its request may be sent (its
    /// grant's instant plus the lateness allowed). Its task checks it when
    /// it first runs: later, it does not send ([`Scheduler::unsent`]).
    pub send_by: Option<Instant>,
}

/// What the scheduler asks its driver to do, in order.
#[derive(Debug)]
// Actions pass through once; boxing the event would cost an allocation per
// event for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Run this attempt and report its outcome with [`Scheduler::complete`].
    Start(Attempt),
    /// Hand this event to the run's consumer.
    Emit(Event),
}

/// The scheduling state of one run. See the module documentation.
pub struct Scheduler {
    config: Arc<Config>,
    clock: RunClock,
    rng: fastrand::Rng,
    intake: Intake,
    order: Option<Reorder>,
    origins: Vec<Origin>,
    /// Origin names to their index (FNV: a name is short, and hashed for
    /// every request).
    by_name: FnvHashMap<String, usize>,
    /// The origin found last: a run talks mostly to one origin, or to few
    /// in runs of lines, so its name is compared before any hashing.
    last_origin: usize,
    /// Origins that could start their head request now, by the head's seq.
    ready: Ready,
    /// Origins waiting for an instant (pause, spread, their own rate).
    wakes: BTreeSet<(Instant, usize)>,
    /// Requests waiting to retry, by due instant and seq. They hold no slot.
    retries: BTreeMap<(Instant, u64), Job>,
    /// When the global rate or budget lets the oldest ready request start.
    global_wake: Option<Instant>,
    rate: Option<Gcra>,
    budget: Option<Gcra>,
    /// Under `--redis`, the starts reserved there (the global rate and
    /// budget are Redis's, not `rate` and `budget`).
    grants: Option<shared::Grants>,
    /// What retries may spend (`--retry-budget`).
    retry_budget: Option<crate::retry_budget::Budget>,
    /// The concurrency limit under `--adaptive`.
    adaptive: Option<adaptive::Adaptive>,
    /// Attempts running, in the slots their tickets name: no hashing, and
    /// a freed slot is used again.
    in_flight: Slab<Job>,
    /// Requests in origin queues.
    queued: usize,
    /// Requests in the queues of origins in `ready`.
    ready_queued: usize,
    next_seq: u64,
    /// An item read but not yet admitted (`ordered` holds it back).
    pending: Option<Input>,
    input_done: bool,
    draining: bool,
    actions: VecDeque<Action>,
}

impl Scheduler {
    /// A scheduler for a run starting at `now` (monotonic) and `wall` (the
    /// same instant on the system clock). `seed` drives backoff jitter and
    /// the spread after a pause.
    pub fn new(config: Arc<Config>, now: Instant, wall: SystemTime, seed: u64) -> Scheduler {
        let burst = u64::from(config.burst.get());
        Scheduler {
            clock: RunClock::new(now, wall),
            rng: fastrand::Rng::with_seed(seed),
            intake: Intake::from_config(&config),
            order: config.ordered.then(Reorder::default),
            rate: (config.rate)
                .filter(|_| config.shared.is_none())
                .map(|r| Gcra::new(r, burst, now)),
            budget: (config.budget)
                .filter(|_| config.shared.is_none())
                .map(|b| Gcra::new(b, config.effective_budget_burst().unwrap_or(1), now)),
            grants: (config.shared.as_ref()).map(|_| shared::Grants::new(&config)),
            retry_budget: config
                .retry_budget
                .map(|b| crate::retry_budget::Budget::new(b, now)),
            adaptive: (config.adaptive)
                .then(|| adaptive::Adaptive::new(config.concurrency.get(), now)),
            config,
            origins: Vec::new(),
            by_name: FnvHashMap::default(),
            last_origin: usize::MAX,
            ready: Ready::default(),
            wakes: BTreeSet::new(),
            retries: BTreeMap::new(),
            global_wake: None,
            in_flight: Slab::new(),
            queued: 0,
            ready_queued: 0,
            next_seq: 0,
            pending: None,
            input_done: false,
            draining: false,
            actions: VecDeque::new(),
        }
    }

    // ---- the steps ------------------------------------------------------

    /// Takes one input item (call only while [`Scheduler::wants_input`]).
    pub fn offer(&mut self, item: Input, now: Instant) {
        self.pending = Some(item);
        self.step(now);
    }

    /// The input has ended.
    pub fn end_input(&mut self, now: Instant) {
        self.input_done = true;
        self.step(now);
    }

    /// An attempt ended with `outcome` at `now`.
    pub fn complete(&mut self, ticket: Ticket, outcome: Outcome, now: Instant) {
        if let Some(job) = self.take_in_flight(ticket) {
            self.attempt_ended(job, outcome, now);
        }
        self.step(now);
    }

    /// The attempt's request was abandoned ([`crate::Abandon`]) while in
    /// flight: its slot is free, it gets no record.
    pub fn abandoned(&mut self, ticket: Ticket, now: Instant) {
        if let Some(job) = self.take_in_flight(ticket) {
            let o = job.origin;
            self.origins[o].attempt_ended(&job.dispatch);
            self.drop_line(job.req.line, job.attempts);
            self.refresh(o, now);
        }
        self.step(now);
    }

    /// The attempt's request went out at `at` (its connection was there).
    /// A request's `started_at` and `duration_ms` run from when its first
    /// attempt was sent, not from its start, which may have waited for a
    /// connection; later attempts change nothing.
    pub fn sent(&mut self, ticket: Ticket, at: Instant) {
        let Some(job) = (self.in_flight.get_mut(ticket.slot)).filter(|j| j.seq == ticket.seq)
        else {
            return;
        };
        // The adaptive limit's round trip runs from here too: a connection
        // being made is not the server's latency.
        job.adaptive.sent(at);
        if job.attempts == 1 {
            job.first_started = Some(self.clock.nanos(at));
        }
    }

    /// The attempt's request began at `at`: its task first ran then, which
    /// on a busy thread may be well after the start was decided and
    /// charged. A start that slipped past the lateness the limiters credit
    /// is re-timed on each of them, so the starts after it keep their
    /// distance from it at the wire (see [`crate::gcra`]). Call it before
    /// the next step; without limiters of its own it does nothing.
    pub fn began(&mut self, ticket: Ticket, at: Instant, now: Instant) {
        let Some(job) = (self.in_flight.get(ticket.slot)).filter(|j| j.seq == ticket.seq) else {
            return;
        };
        let (marks, o) = (job.marks, job.origin);
        let mut moved = false;
        if let (Some(g), Some(mark)) = (&mut self.rate, marks.rate) {
            moved |= g.began(mark, at);
        }
        if let (Some(g), Some(mark)) = (&mut self.budget, marks.budget) {
            moved |= g.began(mark, at);
        }
        if let Some(mark) = marks.host
            && self.origins[o].began(mark, at)
        {
            // Its origin may no longer be ready now.
            self.refresh(o, now);
            moved = true;
        }
        if moved {
            self.step(now);
        }
    }

    /// True when the scheduler's own limiters pace starts (a rate, a budget
    /// or a per-origin rate not shared on Redis): only then does
    /// [`Scheduler::began`] matter.
    pub fn paces(&self) -> bool {
        self.rate.is_some()
            || self.budget.is_some()
            || (self.config.per_host_rate.is_some() && self.config.shared.is_none())
    }

    /// The attempt `ticket` names, out of flight.
    fn take_in_flight(&mut self, ticket: Ticket) -> Option<Job> {
        let job = self.in_flight.get(ticket.slot)?;
        (job.seq == ticket.seq).then(|| self.in_flight.remove(ticket.slot))
    }

    /// Time has passed: fires what is due and starts what may start.
    pub fn advance(&mut self, now: Instant) {
        self.step(now);
    }

    /// The first interrupt: no new starts; queued and waiting requests are
    /// dropped unwritten; in-flight ones finish.
    pub fn drain(&mut self, now: Instant) {
        self.draining = true;
        let mut jobs = Vec::new();
        for origin in &mut self.origins {
            jobs.extend(origin.take_queue());
            origin.ready_key = None;
            origin.counted = 0;
        }
        self.ready.clear();
        self.queued = 0;
        self.ready_queued = 0;
        jobs.extend(std::mem::take(&mut self.retries).into_values());
        self.pending = None;
        for job in jobs {
            self.drop_line(job.req.line, job.attempts);
        }
        self.step(now);
    }

    /// Every step ends here: admit a held item, fire due timers, start what
    /// may start, check the invariants.
    fn step(&mut self, now: Instant) {
        self.admit_pending(now);
        self.fire(now);
        self.dispatch(now);
        if self.finished() {
            self.learned_last_words();
            self.retry_budget_account();
            self.shared_last_word();
            self.adaptive_last_word(now);
        }
        debug_assert!(self.invariants_hold(), "scheduler invariants broken");
    }

    // ---- what the driver asks -------------------------------------------

    /// The next thing to do, in the order decided.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the scheduler wants [`Scheduler::advance`] called, if it waits
    /// for time at all.
    pub fn next_wake(&self) -> Option<Instant> {
        let retry = self.retries.first_key_value().map(|(k, _)| k.0);
        let origin = self.wakes.first().map(|&(at, _)| at);
        [retry, origin, self.global_wake]
            .into_iter()
            .flatten()
            .min()
    }

    /// Read-ahead counts only requests whose origin could start them now:
    /// an origin held back (paused, at its own limit or rate) must not stop
    /// the reading of requests to other origins. Held requests, and those
    /// waiting to retry, are bounded separately, so memory stays flat.
    pub fn wants_input(&self) -> bool {
        let ahead = self.config.read_ahead + self.config.concurrency.get();
        !self.draining
            && !self.input_done
            && self.pending.is_none()
            && self.ready_queued < ahead
            && self.queued + self.retries.len() < ahead * HELD_FACTOR
    }

    /// True once draining started.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// True when nothing is left to do (the actions aside).
    pub fn finished(&self) -> bool {
        (self.input_done || self.draining)
            && self.pending.is_none()
            && self.queued == 0
            && self.retries.is_empty()
            && self.in_flight.is_empty()
    }

    /// Attempts running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    // ---- intake ---------------------------------------------------------

    /// Under `ordered`, an item may enter only within the reorder window.
    fn admit_pending(&mut self, now: Instant) {
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
            Checked::Run(req, cells) => self.enqueue_new(req, cells, now),
        }
    }

    fn register(&mut self, line: u64) {
        if let Some(order) = &mut self.order {
            order.register(line);
        }
    }

    fn enqueue_new(&mut self, req: Box<Request>, cells: u64, now: Instant) {
        self.register(req.line);
        let origin = self.origin_of(&req, now);
        if self.origins[origin].is_closed() {
            self.drop_line(req.line, 0);
            return;
        }
        self.emit(Event::Waiting {
            line: req.line,
            id: req.id.clone(),
        });
        let repeatable =
            retry::safe_to_repeat(&req.method, &req.headers, self.config.retry_non_idempotent)
                || retry::safe_to_repeat(&req.method, &self.config.headers, false);
        let job = Box::new(JobState {
            req: Arc::from(req),
            budget_cells: cells,
            origin,
            seq: self.next_seq,
            attempts: 0,
            first_started: None,
            not_before: None,
            repeatable,
            maybe_applied: false,
            watch: Stopwatch::new(self.clock.nanos(now)),
            dispatch: Default::default(),
            tokens: None,
            budget: Default::default(),
            adaptive: Default::default(),
            marks: Default::default(),
        });
        self.next_seq += 1;
        self.requeue(job, now);
    }

    fn origin_of(&mut self, req: &Request, now: Instant) -> usize {
        let url = &req.url;
        // The last origin's name, then the path: that origin (a name has
        // no user information, so a URL with some never passes), found
        // without asking the URL for its parts.
        if let Some(last) = self.origins.get(self.last_origin)
            && (url.as_str().strip_prefix(last.name())).is_some_and(|rest| rest.starts_with('/'))
        {
            return self.last_origin;
        }
        // Without user information, an http(s) URL's text before the path
        // is its origin's serialisation: no allocation per request.
        let name: std::borrow::Cow<'_, str> =
            if url.username().is_empty() && url.password().is_none() {
                std::borrow::Cow::Borrowed(&url[..url::Position::BeforePath])
            } else {
                std::borrow::Cow::Owned(url.origin().ascii_serialization())
            };
        if let Some(&i) = self.by_name.get(name.as_ref()) {
            self.last_origin = i;
            return i;
        }
        let name = name.into_owned();
        let burst = u64::from(self.config.burst.get());
        // Under --redis, an origin's rate is Redis's (grants per origin).
        let rate = (self.config.per_host_rate)
            .filter(|_| self.config.shared.is_none())
            .map(|r| Gcra::new(r, burst, now));
        self.origins.push(Origin::new(name.clone(), rate));
        let o = self.origins.len() - 1;
        self.by_name.insert(name, o);
        self.last_origin = o;
        self.shared_new_origin(o, now);
        o
    }

    fn requeue(&mut self, mut job: Job, now: Instant) {
        job.watch.queued(self.clock.nanos(now));
        let o = job.origin;
        // Behind the head, a request changes only the origin's count.
        if self.origins[o].would_lead(job.seq) {
            self.unready(o);
        }
        self.origins[o].enqueue(job);
        self.queued += 1;
        self.refresh(o, now);
    }

    // ---- scheduling -----------------------------------------------------

    /// Takes origin `o` out of `ready` before its queue or limits change.
    fn unready(&mut self, o: usize) {
        if let Some(key) = self.origins[o].ready_key.take() {
            self.ready.remove(key);
            self.ready_queued -= std::mem::take(&mut self.origins[o].counted);
        }
    }

    /// Recomputes whether origin `o` could start its head request now.
    fn refresh(&mut self, o: usize, now: Instant) {
        let per_host = self
            .config
            .per_host_concurrency
            .map_or(usize::MAX, |n| n.get());
        if self.grants.is_none() && self.origins[o].stays_ready(per_host) {
            // The common case (no limit of its own): only its count moves.
            let origin = &mut self.origins[o];
            self.ready_queued = self.ready_queued - origin.counted + origin.queued();
            origin.counted = origin.queued();
            return;
        }
        self.unready(o);
        self.shared_unwant(o);
        match self.origins[o].readiness(now, per_host, &mut self.rng) {
            Readiness::Idle => {}
            Readiness::At { at, rate } => {
                if rate {
                    self.origins[o].head_held_by_rate(self.clock.nanos(now));
                }
                self.wake_origin(o, at)
            }
            Readiness::Now => {
                match self.shared_host_gate(o, now) {
                    shared::Gate::Open => {}
                    shared::Gate::At(at) => {
                        self.origins[o].head_held_by_rate(self.clock.nanos(now));
                        return self.wake_origin(o, at);
                    }
                    shared::Gate::Shut => {
                        return self.origins[o].head_held_by_rate(self.clock.nanos(now));
                    }
                }
                let origin = &mut self.origins[o];
                let Some(seq) = origin.head().map(|j| j.seq) else {
                    return;
                };
                origin.ready_key = Some(seq);
                origin.counted = origin.queued();
                self.ready_queued += origin.counted;
                self.ready.insert(seq, o);
            }
        }
    }

    /// Keeps one wake-up per origin, the earliest asked for: when it fires,
    /// `refresh` asks again.
    fn wake_origin(&mut self, o: usize, at: Instant) {
        let origin = &mut self.origins[o];
        if origin.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        if let Some(old) = origin.wake_at.replace(at) {
            self.wakes.remove(&(old, o));
        }
        self.wakes.insert((at, o));
    }

    /// Requeues retries and refreshes origins whose instant has come.
    fn fire(&mut self, now: Instant) {
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let job = entry.remove();
            if self.draining || self.origins[job.origin].is_closed() || job.req.is_abandoned() {
                self.drop_line(job.req.line, job.attempts);
            } else if let Some(job) = self.spend_retry_budget(job, now) {
                self.requeue(job, now);
            }
        }
        while let Some(&(at, o)) = self.wakes.first() {
            if at > now {
                break;
            }
            self.wakes.pop_first();
            self.origins[o].wake_at = None;
            self.refresh(o, now);
        }
    }

    /// Starts attempts, oldest ready request first, while every limit allows.
    fn dispatch(&mut self, now: Instant) {
        self.global_wake = None;
        while !self.draining && self.in_flight.len() < self.concurrency_limit() {
            let Some((_, o)) = self.ready.first() else {
                return;
            };
            if self.origins[o].head().is_some_and(|j| j.req.is_abandoned()) {
                self.drop_abandoned_head(o, now);
                continue;
            }
            let cells = self.origins[o].head().map_or(0, |j| j.budget_cells);
            let budget_cells = self.config.budget.map_or(0, |_| cells);
            if let Some(gate) = self.grants.as_mut().map(|g| g.gate(o, now, budget_cells)) {
                let per_host = self.grants.as_ref().is_some_and(shared::Grants::per_origin);
                match gate {
                    shared::Gate::Open => {}
                    // Its grant went stale since it became ready.
                    _ if per_host => {
                        self.refresh(o, now);
                        continue;
                    }
                    shared::Gate::At(at) => {
                        self.origins[o].head_held_by_rate(self.clock.nanos(now));
                        self.global_wake = Some(at);
                        return;
                    }
                    shared::Gate::Shut => {
                        self.origins[o].head_held_by_rate(self.clock.nanos(now));
                        return;
                    }
                }
            }
            if let Some(at) = self.global_ready_at(now, cells) {
                self.origins[o].head_held_by_rate(self.clock.nanos(now));
                self.global_wake = Some(at);
                return;
            }
            self.start(o, cells, now);
        }
    }

    /// An abandoned request reached the head of a ready origin: it goes
    /// without starting (nothing is charged).
    fn drop_abandoned_head(&mut self, o: usize, now: Instant) {
        self.unready(o);
        if let Some(job) = self.origins[o].pop_head() {
            self.queued -= 1;
            self.drop_line(job.req.line, job.attempts);
        }
        self.refresh(o, now);
    }

    /// When the global rate or budget cannot pass now, the instant they can.
    fn global_ready_at(&mut self, now: Instant, cells: u64) -> Option<Instant> {
        let rate = self.rate.as_mut().map(|g| g.ready_at(now, 1));
        let budget = self
            .budget
            .as_mut()
            .filter(|_| cells > 0)
            .map(|g| g.ready_at(now, cells));
        [rate, budget]
            .into_iter()
            .flatten()
            .max()
            .filter(|&at| at > now)
    }

    fn start(&mut self, o: usize, cells: u64, now: Instant) {
        let send_by = self.grants.as_mut().and_then(|g| g.take(o, now));
        let rate = self.rate.as_mut().map(|g| g.take(now, 1));
        let budget = (self.budget.as_mut())
            .filter(|_| cells > 0)
            .map(|g| g.take(now, cells));
        self.unready(o);
        let Some(mut job) = self.origins[o].start(now) else {
            return;
        };
        (job.marks.rate, job.marks.budget) = (rate, budget);
        self.queued -= 1;
        job.attempts += 1;
        job.adaptive = self.adaptive_start(now);
        self.first_attempt_fills_budget(&mut job, now);
        let t = self.clock.nanos(now);
        job.first_started.get_or_insert(t);
        job.watch.started(t);
        let (seq, request, number) = (job.seq, Arc::clone(&job.req), job.attempts);
        let slot = self.in_flight.insert(job);
        self.refresh(o, now);
        self.actions.push_back(Action::Start(Attempt {
            ticket: Ticket { slot, seq },
            request: Arc::clone(&request),
            number,
            send_by,
        }));
        self.emit(Event::Started {
            line: request.line,
            id: request.id.clone(),
            attempt: number,
            in_flight: self.in_flight.len(),
        });
    }

    // ---- outcomes -------------------------------------------------------

    fn attempt_ended(&mut self, mut job: Job, outcome: Outcome, now: Instant) {
        job.watch.ended(self.clock.nanos(now));
        let o = job.origin;
        self.origins[o].attempt_ended(&job.dispatch);
        self.adaptive_completed(job.adaptive, &outcome, now);
        self.learn_from(&job, &outcome, now);
        match self.judge(&job, &outcome, now) {
            Verdict::Retry(wait, asked) => {
                let mut job = job;
                job.budget.exempt = asked;
                job.maybe_applied |= retry::maybe_applied(&job.req.method, failure_of(&outcome));
                self.schedule_retry(job, &outcome, wait, now)
            }
            Verdict::Drop => self.drop_line(job.req.line, job.attempts),
            Verdict::Final(error) => self.finish(job, outcome, error, now),
        }
        self.refresh(o, now);
    }

    /// Decides what follows an attempt, pausing or closing its origin as the
    /// server asks.
    fn judge(&mut self, job: &Job, outcome: &Outcome, now: Instant) -> Verdict {
        let failure = match outcome {
            Outcome::Response(r) if (200..300).contains(&r.status) => return Verdict::Final(None),
            _ => failure_of(outcome),
        };
        let wall = self.clock.at(now);
        let (status, headers) = match outcome {
            Outcome::Response(r) => (Some(r.status), Some(&r.headers)),
            Outcome::Failed(f) => (f.status, f.headers.as_ref()),
        };
        let asked = headers.and_then(|h| retry::retry_after(h, wall));
        let backoff = retry::backoff(
            self.config.backoff_initial,
            self.config.backoff_max,
            job.attempts,
            &mut self.rng,
        );
        let max = self.config.max_retry_after;
        // A 429 or 503 asks the origin to slow down, even when its body
        // could not be read (too large, cut short).
        if let Some(status @ (429 | 503)) = status
            && !self.adaptive_takes(outcome)
        {
            if let Some(asked) = asked.filter(|&a| a > max) {
                let reason = format!(
                    "HTTP {status} with Retry-After {} exceeds {} {}",
                    attempt::show(asked),
                    self.config.name(Setting::MaxRetryAfter),
                    attempt::show(max)
                );
                self.close_origin(job.origin, &reason, now);
                return Verdict::Final(Some((ErrorKind::RetryAfterTooLong, reason)));
            }
            let reason = match asked {
                Some(_) => format!("Retry-After on HTTP {status}"),
                None => format!("HTTP {status} without Retry-After (backoff)"),
            };
            self.pause(job.origin, asked.unwrap_or(backoff), reason, now);
        }
        let allowed = job.attempts <= self.config.retries
            && retry::wants_retry(&self.config.retry_on, failure, job.repeatable);
        if !allowed {
            return Verdict::Final(Some(describe_failure(outcome)));
        }
        if self.draining || self.origins[job.origin].is_closed() {
            return Verdict::Drop;
        }
        Verdict::Retry(asked.map_or(backoff, |a| a.min(max)), asked.is_some())
    }

    fn pause(&mut self, o: usize, wait: Duration, reason: String, now: Instant) {
        if !self.origins[o].pause(later(now, wait)) {
            return;
        }
        self.emit(Event::Paused {
            origin: self.origins[o].name().to_string(),
            wait,
            reason,
        });
        self.refresh(o, now);
    }

    fn schedule_retry(&mut self, mut job: Job, outcome: &Outcome, wait: Duration, now: Instant) {
        // Requests held by an origin pause come back spread over up to a second.
        let jitter = if self.origins[job.origin].is_paused(now) {
            Duration::from_secs_f64(self.rng.f64())
        } else {
            Duration::ZERO
        };
        let (kind, message) = describe_failure(outcome);
        let status = match outcome {
            Outcome::Response(r) => Some(r.status),
            Outcome::Failed(f) => f.status,
        };
        job.watch.retrying(self.clock.nanos(now), status, kind);
        self.emit(Event::Retrying {
            line: job.req.line,
            id: job.req.id.clone(),
            attempt: job.attempts,
            wait: wait + jitter,
            reason: format!("{kind}: {message}"),
        });
        let due = later(now, wait.saturating_add(jitter));
        self.retries.insert((due, job.seq), job);
    }

    fn finish(
        &mut self,
        job: Job,
        outcome: Outcome,
        error: Option<(ErrorKind, String)>,
        now: Instant,
    ) {
        self.count_hard_failure(&job, &outcome, error.is_some(), now);
        let record = self.record(job, outcome, error, now);
        self.emit_record(record);
    }

    /// `--halt-after`: consecutive final failures that mean the origin refuses
    /// us (401, 403, 407, dns, tls, connect) close it.
    fn count_hard_failure(&mut self, job: &Job, outcome: &Outcome, failed: bool, now: Instant) {
        let hard = failed
            && match outcome {
                Outcome::Response(r) => matches!(r.status, 401 | 403 | 407),
                // Running out of file descriptors is not the origin's fault.
                Outcome::Failed(f) => {
                    !f.local
                        && matches!(f.kind, ErrorKind::Dns | ErrorKind::Tls | ErrorKind::Connect)
                }
            };
        let count = self.origins[job.origin].count_final(hard);
        let limit = self.config.halt_after;
        if limit > 0 && count >= limit {
            let reason = format!(
                "{limit} consecutive requests failed with 401/403/407 or dns/tls/connect ({})",
                self.config.name(Setting::HaltAfter)
            );
            self.close_origin(job.origin, &reason, now);
        }
    }

    fn record(
        &self,
        job: Job,
        outcome: Outcome,
        error: Option<(ErrorKind, String)>,
        now: Instant,
    ) -> Box<Record> {
        let end = self.clock.nanos(now);
        let start = job.first_started.unwrap_or(end);
        let timing = job.watch.finish(&self.clock).map(Box::new);
        let req = &job.req;
        let redactor = &self.config.redactor;
        let maybe_applied = error.is_some()
            && (job.maybe_applied || retry::maybe_applied(&req.method, failure_of(&outcome)));
        // Boxed where it is made: from here to the sink it moves as a pointer.
        let mut record = Box::new(Record {
            id: req.id.clone(),
            line: req.line,
            method: Some(req.method.as_str().to_owned()),
            url: Some(redactor.url(&req.url)),
            ok: error.is_none(),
            status: None,
            attempts: job.attempts,
            started_at: Some(self.clock.wall(start)),
            duration: Duration::from_nanos(end.saturating_sub(start)),
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
        });
        match outcome {
            Outcome::Response(r) => {
                record.status = Some(r.status);
                if self.config.include_headers {
                    record.headers = Some(attempt::recorded_headers(&r.headers, redactor));
                }
                record.transport = Some(r.transport);
                // Stored here, on the driver's thread (see `ReadBody`).
                record.body = r.body.and_then(attempt::ReadBody::store);
                record.final_url = r.final_url.map(|u| redactor.url(&u));
            }
            Outcome::Failed(f) => record.status = f.status,
        }
        record
    }

    fn emit(&mut self, event: Event) {
        self.actions.push_back(Action::Emit(event));
    }

    fn emit_record(&mut self, record: Box<Record>) {
        match &mut self.order {
            Some(order) => {
                let ready = order.complete(record);
                self.actions
                    .extend(ready.into_iter().map(|r| Action::Emit(Event::Record(r))));
            }
            None => self.emit(Event::Record(record)),
        }
    }

    fn drop_line(&mut self, line: u64, attempts: u32) {
        self.emit(Event::Dropped { line, attempts });
        if let Some(order) = &mut self.order {
            let ready = order.drop_line(line);
            self.actions
                .extend(ready.into_iter().map(|r| Action::Emit(Event::Record(r))));
        }
    }

    fn close_origin(&mut self, o: usize, reason: &str, now: Instant) {
        if self.origins[o].is_closed() {
            return;
        }
        self.unready(o);
        let dropped = self.origins[o].close();
        self.queued -= dropped.len();
        for job in dropped {
            self.drop_line(job.req.line, job.attempts);
        }
        // Requests of this origin waiting to retry go too, now: waiting for
        // their timers would hold the run (and, under --ordered, every later
        // record) for as long as the longest backoff.
        let waiting: Vec<(Instant, u64)> = self
            .retries
            .iter()
            .filter(|(_, job)| job.origin == o)
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            if let Some(job) = self.retries.remove(&key) {
                self.drop_line(job.req.line, job.attempts);
            }
        }
        self.refresh(o, now);
        self.emit(Event::OriginClosed {
            origin: self.origins[o].name().to_string(),
            reason: reason.to_string(),
        });
    }

    // ---- invariants -----------------------------------------------------

    /// ARCHITECTURE.md's invariants, as far as the scheduler's own state
    /// shows them. Checked after every step in debug builds; the per-request
    /// checks only in this crate's tests, where the runs are small.
    pub fn invariants_hold(&self) -> bool {
        let per_host = self
            .config
            .per_host_concurrency
            .map_or(usize::MAX, |n| n.get());
        let concurrency = self.config.concurrency.get();
        // Never more than -c in flight, nor the per-origin limit.
        let in_flight: usize = self.origins.iter().map(Origin::in_flight).sum();
        let limits = self.in_flight.len() <= concurrency
            && in_flight == self.in_flight.len()
            && self.origins.iter().all(|o| o.in_flight() <= per_host);
        // The hand-kept counts agree with what they count.
        let queued: usize = self.origins.iter().map(Origin::queued).sum();
        let counted: usize = self.ready.origins().map(|o| self.origins[o].counted).sum();
        let counts = queued == self.queued
            && counted == self.ready_queued
            && self.wakes.len() == self.origins.iter().filter(|o| o.wake_at.is_some()).count();
        // An origin is ready exactly when it is listed, under its head's seq,
        // and could start it.
        let ready = self.origins.iter().enumerate().all(|(i, o)| {
            let head = o.head().map(|j| j.seq);
            match o.ready_key {
                Some(key) => {
                    self.ready.get(key) == Some(i)
                        && head == Some(key)
                        && o.counted == o.queued()
                        && !o.is_closed()
                        && o.in_flight() < per_host
                }
                None => o.counted == 0,
            }
        }) && self.ready.len() <= self.origins.len()
            && self.ready.well_ordered();
        // Nothing stalls: an origin that could start its head but is not
        // ready has a wake-up; ready work with a free slot waits only for the
        // global rate or budget.
        let no_stall = self.origins.iter().enumerate().all(|(i, o)| {
            o.ready_key.is_some()
                || o.head().is_none()
                || o.is_closed()
                || o.in_flight() >= per_host
                || o.wake_at.is_some()
                || self.grants.as_ref().is_some_and(|g| g.holds_back(i))
        }) && (self.draining
            || self.ready.is_empty()
            || self.in_flight.len() >= self.concurrency_limit()
            || self.global_wake.is_some()
            || self.grants.as_ref().is_some_and(shared::Grants::waiting));
        // A closed origin holds nothing back; a draining run starts nothing.
        let closed = self
            .origins
            .iter()
            .all(|o| !o.is_closed() || o.queued() == 0);
        let drained = !self.draining
            || (self.queued == 0 && self.retries.is_empty() && self.pending.is_none());
        limits && counts && ready && no_stall && closed && drained && self.jobs_in_place()
    }

    /// Each request is in one place, and queues keep arrival order (a retry
    /// keeps its place). Costs a walk over every request: tests only.
    #[cfg(test)]
    fn jobs_in_place(&self) -> bool {
        let mut seen = std::collections::HashSet::new();
        let queues = self.origins.iter().enumerate().all(|(i, o)| {
            let seqs: Vec<u64> = o.jobs().map(|j| j.seq).collect();
            seqs.windows(2).all(|w| w[0] < w[1]) && o.jobs().all(|j| j.origin == i)
        });
        let all = self
            .origins
            .iter()
            .flat_map(|o| o.jobs())
            .chain(self.retries.values())
            .chain(self.in_flight.iter().map(|(_, j)| j));
        let unique = all.into_iter().all(|j| seen.insert(j.seq));
        let retries = self
            .retries
            .values()
            .all(|j| !self.origins[j.origin].is_closed());
        queues && unique && retries
    }

    #[cfg(not(test))]
    fn jobs_in_place(&self) -> bool {
        true
    }
}

enum Verdict {
    /// After this wait; true when the server asked for it (`Retry-After`).
    Retry(Duration, bool),
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

/// How many times the read-ahead may be held back by origins that cannot
/// start their requests (a pause, their own limits).
const HELD_FACTOR: usize = 8;
