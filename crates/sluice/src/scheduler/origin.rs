//! One origin (`scheme://host:port`): its queue of waiting requests and its
//! own limits. The scheduler asks it questions and tells it what happened;
//! it never reaches into its fields.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::event::Learned as Report;
use crate::gcra::{Gcra, Mark};
use crate::ratelimit::{Headroom, Snapshot, Tokens, cost};
use crate::request::Request;
use crate::timing::Stopwatch;

use super::discovered::Discovered;
use super::learned::{Dispatch, Learned, Learning};

/// A request and its progress through attempts, boxed once when it
/// enters: it moves between its origin's queue, the attempts in flight and
/// the retries as a pointer, not as its few hundred bytes.
pub(crate) type Job = Box<JobState>;

/// What a [`Job`] holds.
pub(crate) struct JobState {
    pub(crate) req: Arc<Request>,
    /// Budget cells each attempt spends.
    pub(crate) budget_cells: u64,
    pub(crate) origin: usize,
    /// Order of first arrival: a retry keeps its place by it.
    pub(crate) seq: u64,
    pub(crate) attempts: u32,
    /// When the first attempt started (nanoseconds of the run, see
    /// [`crate::timing::RunClock`]).
    pub(crate) first_started: Option<u64>,
    /// Held back until then (the spread after a pause).
    pub(crate) not_before: Option<Instant>,
    /// Every failure the policy lists may be retried.
    pub(crate) repeatable: bool,
    /// An earlier attempt of a non-idempotent request failed after it was
    /// written: whatever the final outcome, the server may have applied it.
    pub(crate) maybe_applied: bool,
    /// Where its time goes, for the record's `wait_ms` and `attempt_log`.
    pub(crate) watch: Stopwatch,
    /// Which start of its origin the current attempt was (learned limits).
    pub(crate) dispatch: Dispatch,
    /// Its token cost, computed the first time an origin asks
    /// (`cost::of_request`).
    pub(crate) tokens: Option<Tokens>,
    /// Where its coming retry stands with the retry budget.
    pub(crate) budget: crate::retry_budget::RetryHold,
    /// Which start of the run the current attempt was (`adaptive`).
    pub(crate) adaptive: super::adaptive::Start,
    /// Where the current attempt was charged on each limiter.
    pub(crate) marks: Marks,
}

/// Where an attempt's start was charged on the global rate, the budget and
/// its origin's rate, so that when it really began (`Scheduler::began`)
/// a start that slipped is re-timed on each.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Marks {
    pub(crate) rate: Option<Mark>,
    pub(crate) budget: Option<Mark>,
    pub(crate) host: Option<Mark>,
}

/// Whether an origin could start its head request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Now.
    Now,
    /// Not before this instant; `rate` when the origin's rate is what
    /// holds it.
    At { at: Instant, rate: bool },
    /// Not until something happens to it (it has nothing queued, is closed
    /// or at its own concurrency limit).
    Idle,
}

/// Per-origin state, in the shape of lychee's `Host`.
pub(crate) struct Origin {
    name: String,
    queue: VecDeque<Job>,
    in_flight: usize,
    paused_until: Option<Instant>,
    rate: Option<Gcra>,
    closed: bool,
    hard_failures: u32,
    /// What its rate-limit headers taught.
    learned: Learned,
    /// The rate its unpredicted refusals taught (no headers).
    discovered: Discovered,
    /// The discovered rate's final account was given.
    discovered_told: bool,
    /// Key of this origin's entry in the scheduler's `ready` map.
    pub(crate) ready_key: Option<u64>,
    /// This origin's queue length counted in the scheduler's `ready_queued`.
    pub(crate) counted: usize,
    /// The instant of this origin's one entry in the scheduler's wake-ups.
    pub(crate) wake_at: Option<Instant>,
}

impl Origin {
    pub(crate) fn new(name: String, rate: Option<Gcra>) -> Origin {
        Origin {
            name,
            queue: VecDeque::new(),
            in_flight: 0,
            paused_until: None,
            rate,
            closed: false,
            hard_failures: 0,
            learned: Learned::default(),
            discovered: Discovered::default(),
            discovered_told: false,
            ready_key: None,
            counted: 0,
            wake_at: None,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn head(&self) -> Option<&Job> {
        self.queue.front()
    }

    #[cfg(test)]
    pub(crate) fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.queue.iter()
    }

    /// True while a pause holds every start.
    pub(crate) fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|p| p > now)
    }

    /// Queues a request in order of its first arrival: a retry keeps its
    /// place ahead of requests read after it, so its wait is the one the
    /// server asked for, not that plus a whole queue.
    pub(crate) fn enqueue(&mut self, job: Job) {
        // A new request (the common case) goes last: no search.
        if self.queue.back().is_none_or(|j| j.seq < job.seq) {
            return self.queue.push_back(job);
        }
        let at = self.queue.partition_point(|j| j.seq < job.seq);
        self.queue.insert(at, job);
    }

    /// True when the origin is listed ready under its head's seq and
    /// nothing that waits for an instant could hold it (a pause, a rate of
    /// its own, learned or discovered limits, the spread after a pause):
    /// it stays ready at any later instant until its queue's head, its
    /// slots or its limits change, and a refresh has nothing to decide.
    pub(crate) fn stays_ready(&self, per_host: usize) -> bool {
        let Some(head) = self.queue.front() else {
            return false;
        };
        self.ready_key == Some(head.seq)
            && !self.closed
            && self.in_flight < per_host
            && self.untimed(head)
    }

    /// True when nothing that waits for an instant could hold `head` back:
    /// no pause, no rate of the origin's own, nothing learned or
    /// discovered, no spread after a pause. Cheap: asked at every refresh.
    fn untimed(&self, head: &Job) -> bool {
        head.not_before.is_none()
            && self.paused_until.is_none()
            && self.rate.is_none()
            && !self.learned.knows()
            && self.discovered.rate().is_none()
    }

    /// True when `seq` would go ahead of every request queued (a retry
    /// keeps its place), changing the head.
    pub(crate) fn would_lead(&self, seq: u64) -> bool {
        self.queue.front().is_none_or(|head| seq < head.seq)
    }

    /// Whether the head request could start at `now`. A pause that has ended
    /// releases the queue spread out (`spread`), whichever step notices it.
    pub(crate) fn readiness(
        &mut self,
        now: Instant,
        per_host: usize,
        rng: &mut fastrand::Rng,
    ) -> Readiness {
        if self.paused_until.is_some_and(|p| p <= now) {
            self.paused_until = None;
            spread(&mut self.queue, now, rng);
        }
        let Some(head) = self.queue.front() else {
            return Readiness::Idle;
        };
        if self.closed || self.in_flight >= per_host {
            return Readiness::Idle;
        }
        if self.untimed(head) {
            return Readiness::Now;
        }
        let not_before = head.not_before;
        let cost = self.head_tokens();
        let rate = self.rate.as_mut().map(|g| g.ready_at(now, 1));
        let learned = self.learned.ready_at(now, cost);
        let discovered = self.discovered.ready_at(now);
        match [self.paused_until, not_before, rate, learned, discovered]
            .into_iter()
            .flatten()
            .max()
        {
            Some(at) if at > now => Readiness::At {
                at,
                rate: rate == Some(at) || learned == Some(at) || discovered == Some(at),
            },
            _ => Readiness::Now,
        }
    }

    /// The head request's token cost, while the learned limits count tokens.
    fn head_tokens(&mut self) -> Tokens {
        match self.queue.front_mut() {
            Some(head) if self.learned.counts_tokens() => tokens_of(head),
            _ => Tokens::default(),
        }
    }

    /// True once a token limit paces the origin.
    pub(crate) fn knows_tokens(&self) -> bool {
        self.learned.knows_tokens()
    }

    /// The answer to `dispatch` says its request cost `actual` tokens.
    pub(crate) fn used(&mut self, dispatch: &Dispatch, actual: Tokens, now: Instant) {
        self.learned.used(dispatch, actual, now);
    }

    /// The head request is next but a rate or budget limit holds it (`now`
    /// in nanoseconds of the run).
    pub(crate) fn head_held_by_rate(&mut self, now: u64) {
        if let Some(head) = self.queue.front_mut() {
            head.watch.held_by_rate(now);
        }
    }

    /// Takes the head request for an attempt, charging the origin's rate.
    /// Call only when `readiness` said `Now`.
    pub(crate) fn start(&mut self, now: Instant) -> Option<Job> {
        let mut job = self.queue.pop_front()?;
        job.marks.host = self.rate.as_mut().map(|g| g.take(now, 1));
        let cost = if self.learned.counts_tokens() {
            tokens_of(&mut job)
        } else {
            Tokens::default()
        };
        job.dispatch = self.learned.start(now, self.in_flight, cost);
        self.discovered.start(now);
        self.in_flight += 1;
        Some(job)
    }

    /// The attempt charged at `mark` on this origin's rate began at `at`
    /// ([`Gcra::began`]); true when that holds the next start back longer.
    pub(crate) fn began(&mut self, mark: Mark, at: Instant) -> bool {
        self.rate.as_mut().is_some_and(|g| g.began(mark, at))
    }

    /// Takes the head request without starting it (it was abandoned).
    pub(crate) fn pop_head(&mut self) -> Option<Job> {
        self.queue.pop_front()
    }

    /// An attempt of this origin ended (`dispatch` was its start).
    pub(crate) fn attempt_ended(&mut self, dispatch: &Dispatch) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.learned.ended(dispatch);
    }

    /// Pauses every start until `until`; false when an equal or longer pause
    /// already holds.
    pub(crate) fn pause(&mut self, until: Instant) -> bool {
        if self.paused_until.is_some_and(|p| p >= until) {
            return false;
        }
        self.paused_until = Some(until);
        true
    }

    /// Counts a final outcome for `--halt-after`; returns the consecutive
    /// hard failures so far.
    pub(crate) fn count_final(&mut self, hard: bool) -> u32 {
        self.hard_failures = if hard { self.hard_failures + 1 } else { 0 };
        self.hard_failures
    }

    /// Closes the origin; returns its queued requests, which will not run.
    /// Empty when it was already closed.
    pub(crate) fn close(&mut self) -> Vec<Job> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        self.queue.drain(..).collect()
    }

    /// Learns from the rate-limit headers of a response to `dispatch`.
    pub(crate) fn learn(
        &mut self,
        snapshot: &Snapshot,
        dispatch: Dispatch,
        headroom: Headroom,
        now: Instant,
    ) -> Learning {
        self.learned.observe(
            &self.name,
            snapshot,
            dispatch,
            self.in_flight,
            headroom,
            now,
        )
    }

    /// The learned rate, its burst and the requests left now (`--redis`
    /// shares them with the job's other processes); where no header spoke,
    /// the rate discovered from refusals, nothing known of what is left.
    pub(crate) fn learned_shape(&self, now: Instant) -> Option<(f64, u64, i64)> {
        self.learned.shape(now).or_else(|| {
            let burst = self.discovered.burst();
            Some((self.discovered.rate()?, burst, burst as i64))
        })
    }

    /// A 429 although the learned limits let the request go; `None` when
    /// nothing was learned (the headers never spoke).
    pub(crate) fn refused(
        &mut self,
        dispatch: Dispatch,
        headroom: Headroom,
        now: Instant,
    ) -> Option<Report> {
        self.learned.refused(&self.name, dispatch, headroom, now)
    }

    /// What was learned, once, at the end of the run.
    pub(crate) fn learned_last_word(&mut self) -> Option<Report> {
        if !self.learned.knows() && !self.discovered_told {
            self.discovered_told = true;
            return self.discovered_report(true);
        }
        self.learned.last_word(&self.name)
    }

    /// Tells the discovered rate of an attempt that ended (no rate-limit
    /// header spoke for the origin): `refused` a 429 or 503, which the
    /// headers did not predict since there are none; `first` its request's
    /// first attempt. An event when the rate started or a refusal moved it.
    pub(crate) fn discover(
        &mut self,
        refused: bool,
        success: bool,
        first: bool,
        number: u64,
        ceiling: Option<f64>,
        now: Instant,
    ) -> Option<Report> {
        let refused = refused && !self.learned.knows();
        self.discovered
            .completed(refused, success, first, number, ceiling, now)
            .then(|| self.discovered_report(false))
            .flatten()
    }

    fn discovered_report(&self, last: bool) -> Option<Report> {
        let rate = self.discovered.rate()?;
        Some(Report {
            origin: self.name.clone(),
            dialect: "none",
            requests_per_second: Some(rate),
            burst: self.discovered.burst(),
            tokens: Vec::new(),
            paced: self.discovered.paced(),
            refused: self.discovered.lowerings(),
            warnings: Vec::new(),
            last,
        })
    }

    /// Empties the queue (the run drains).
    pub(crate) fn take_queue(&mut self) -> Vec<Job> {
        self.queue.drain(..).collect()
    }
}

/// A job's token cost, computed once.
fn tokens_of(job: &mut Job) -> Tokens {
    *job.tokens.get_or_insert_with(|| cost::of_request(&job.req))
}

/// After a pause, queued requests restart spread over up to a second (10 ms
/// per request), in queue order, so they do not arrive in lock-step.
fn spread(queue: &mut VecDeque<Job>, now: Instant, rng: &mut fastrand::Rng) {
    let n = queue.len().min(100);
    if n < 2 {
        return;
    }
    let window = Duration::from_millis(10 * n as u64);
    let mut offsets: Vec<Duration> = (0..n).map(|_| window.mul_f64(rng.f64())).collect();
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
        Box::new(JobState {
            req: Arc::new(Request::get(seq + 1, url)),
            budget_cells: 0,
            origin: 0,
            seq,
            attempts: 0,
            first_started: None,
            not_before: None,
            repeatable: true,
            maybe_applied: false,
            watch: Stopwatch::new(0),
            dispatch: Dispatch::default(),
            tokens: None,
            budget: Default::default(),
            adaptive: Default::default(),
            marks: Default::default(),
        })
    }

    #[test]
    fn an_ended_pause_releases_its_queue_spread_out_in_order() {
        let now = Instant::now();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut queue: VecDeque<Job> = (0..50).map(job).collect();
        spread(&mut queue, now, &mut rng);
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
        spread(&mut one, now, &mut rng);
        assert!(one[0].not_before.is_none());
    }

    #[test]
    fn a_retry_keeps_its_place_in_the_queue() {
        let mut origin = Origin::new("http://127.0.0.1".into(), None);
        for seq in [1, 2, 5, 6] {
            origin.enqueue(job(seq));
        }
        origin.enqueue(job(3));
        let order: Vec<u64> = origin.jobs().map(|j| j.seq).collect();
        assert_eq!(order, [1, 2, 3, 5, 6]);
    }
}
