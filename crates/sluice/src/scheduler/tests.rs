//! The scheduler on a made-up clock: no sockets, no sleeping. A simulated
//! driver feeds it inputs, outcomes and time, carries out its actions and
//! checks every promise of the contract as it goes.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::{Action, Scheduler, Ticket};
use crate::attempt::{Failed, Outcome};
use crate::config::Config;
use crate::event::Event;
use crate::gcra::CATCH_UP;
use crate::record::{ErrorKind, Id, Record};
use crate::request::{Input, InvalidLine, Request};

/// How an attempt ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Ok,
    TooMany(Option<u64>),
    Unavailable,
    Forbidden,
    Reset,
    Timeout,
}

fn outcome(end: End) -> Outcome {
    let response = |status, headers| super::simulated::response(status, headers, None);
    let failed = |kind| {
        Outcome::failed(Failed {
            kind,
            sent: true,
            message: "simulated".into(),
            status: None,
            local: false,
            headers: None,
        })
    };
    match end {
        End::Ok => response(200, HeaderMap::new()),
        End::TooMany(after) => {
            let mut headers = HeaderMap::new();
            if let Some(secs) = after {
                headers.insert("retry-after", HeaderValue::from(secs));
            }
            response(429, headers)
        }
        End::Unavailable => response(503, HeaderMap::new()),
        End::Forbidden => response(403, HeaderMap::new()),
        End::Reset => failed(ErrorKind::Reset),
        End::Timeout => failed(ErrorKind::Timeout),
    }
}

/// One attempt start as the server would see it.
#[derive(Clone, Debug)]
struct Start {
    at: Instant,
    origin: String,
    line: u64,
    cells: u64,
}

/// A driver with a made-up clock that checks the contract at every action.
struct Sim {
    s: Scheduler,
    config: Arc<Config>,
    t0: Instant,
    now: Instant,
    next_line: u64,
    running: Vec<(Ticket, u64, String)>,
    starts: Vec<Start>,
    /// How many times each line left (record or drop); skipped lines are
    /// never listed.
    left: HashMap<u64, u32>,
    offered: Vec<u64>,
    skipped: Vec<u64>,
    records: Vec<Record>,
    pauses: HashMap<String, Instant>,
    /// Lines waiting to retry: when they are due, and their origin.
    retry_due: HashMap<u64, (Instant, String)>,
    cells: HashMap<u64, u64>,
    events: Vec<Event>,
    /// Lines the scheduler took in (an event names them).
    admitted: std::collections::HashSet<u64>,
    drained: bool,
}

fn origin_url(k: usize) -> url::Url {
    url::Url::parse(&format!("http://127.0.0.{}:8080/fast", k + 1)).expect("a valid URL")
}

fn origin_name(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

impl Sim {
    fn new(config: Config, seed: u64) -> Sim {
        let config = Arc::new(config);
        let t0 = Instant::now();
        Sim {
            s: Scheduler::new(Arc::clone(&config), t0, SystemTime::UNIX_EPOCH, seed),
            config,
            t0,
            now: t0,
            next_line: 1,
            running: Vec::new(),
            starts: Vec::new(),
            left: HashMap::new(),
            offered: Vec::new(),
            skipped: Vec::new(),
            records: Vec::new(),
            pauses: HashMap::new(),
            retry_due: HashMap::new(),
            cells: HashMap::new(),
            events: Vec::new(),
            admitted: std::collections::HashSet::new(),
            drained: false,
        }
    }

    fn offer(&mut self, origin: usize, cost: u64) -> bool {
        if !self.s.wants_input() {
            return false;
        }
        let line = self.next_line;
        self.next_line += 1;
        let mut req = Request::get(line, origin_url(origin));
        req.cost = cost as f64;
        self.cells.insert(line, cost);
        self.offered.push(line);
        self.s.offer(Input::from(req), self.now);
        self.collect();
        true
    }

    fn offer_other(&mut self, recorded: bool) {
        if !self.s.wants_input() {
            return;
        }
        let line = self.next_line;
        self.next_line += 1;
        let item = if recorded {
            self.skipped.push(line);
            Input::Recorded {
                line,
                id: Id::line(line),
            }
        } else {
            self.offered.push(line);
            Input::from(InvalidLine {
                line,
                id: None,
                method: None,
                url: None,
                message: "bad".into(),
            })
        };
        self.s.offer(item, self.now);
        self.collect();
    }

    fn complete(&mut self, i: usize, end: End) {
        if self.running.is_empty() {
            return;
        }
        let (ticket, _, _) = self.running.remove(i % self.running.len());
        self.s.complete(ticket, outcome(end), self.now);
        self.collect();
    }

    /// Moves the clock by `by`; with `on_time`, never past the next wake-up
    /// (the timer fires exactly when asked).
    fn sleep(&mut self, by: Duration, on_time: bool) {
        let mut to = self.now + by;
        if on_time && let Some(wake) = self.s.next_wake() {
            to = to.min(wake.max(self.now));
        }
        self.now = to;
        self.s.advance(self.now);
        self.collect();
    }

    /// The timer fires exactly at the next wake-up.
    fn fire(&mut self) {
        if let Some(wake) = self.s.next_wake() {
            self.now = self.now.max(wake);
            self.s.advance(self.now);
            self.collect();
        }
    }

    fn drain(&mut self) {
        self.drained = true;
        self.s.drain(self.now);
        self.collect();
    }

    fn end_input(&mut self) {
        self.s.end_input(self.now);
        self.collect();
    }

    /// Carries out the actions, checking each start against the contract.
    fn collect(&mut self) {
        while let Some(action) = self.s.next_action() {
            match action {
                Action::Start(a) => self.started(a.ticket, &a.request),
                Action::Emit(event) => self.event(event),
            }
        }
    }

    fn started(&mut self, ticket: Ticket, req: &Request) {
        let origin = origin_name(&req.url);
        let now = self.now;
        if let Some(&until) = self.pauses.get(&origin) {
            assert!(
                now >= until,
                "line {} started during its origin's pause",
                req.line
            );
        }
        // A retry the retry budget holds back may be overtaken: it waits
        // holding no slot.
        let budgeted = self.config.retry_budget.is_some();
        for (&line, (due, o)) in &self.retry_due {
            assert!(
                budgeted || !(o == &origin && *due <= now && line < req.line),
                "line {} overtook line {line}, due to retry since {:?}",
                req.line,
                now - *due
            );
        }
        self.retry_due.remove(&req.line);
        self.running.push((ticket, req.line, origin.clone()));
        assert!(self.running.len() <= self.config.concurrency.get());
        if let Some(limit) = self.config.per_host_concurrency {
            let n = self.running.iter().filter(|r| r.2 == origin).count();
            assert!(n <= limit.get(), "{n} in flight to {origin}");
        }
        self.starts.push(Start {
            at: now,
            origin,
            line: req.line,
            cells: self.cells.get(&req.line).copied().unwrap_or(1),
        });
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::Waiting { line, .. } => {
                self.admitted.insert(*line);
            }
            Event::Record(r) => {
                self.admitted.insert(r.line);
                *self.left.entry(r.line).or_default() += 1;
                self.retry_due.remove(&r.line);
                self.records.push((**r).clone());
            }
            Event::Dropped { line, .. } => {
                self.admitted.insert(*line);
                *self.left.entry(*line).or_default() += 1;
                self.retry_due.remove(line);
            }
            Event::Paused { origin, wait, .. } => {
                let until = self.now + *wait;
                let at = self.pauses.entry(origin.clone()).or_insert(until);
                *at = (*at).max(until);
            }
            Event::Retrying { line, wait, .. } => {
                let origin = self
                    .running_origin(*line)
                    .or_else(|| {
                        self.starts
                            .iter()
                            .rev()
                            .find(|s| s.line == *line)
                            .map(|s| s.origin.clone())
                    })
                    .unwrap_or_default();
                self.retry_due.insert(*line, (self.now + *wait, origin));
            }
            _ => {}
        }
        self.events.push(event);
    }

    fn running_origin(&self, line: u64) -> Option<String> {
        self.running
            .iter()
            .find(|r| r.1 == line)
            .map(|r| r.2.clone())
    }

    /// Ends the run: no more input, every attempt succeeds, timers fire.
    fn finish(&mut self) {
        self.end_input();
        for _ in 0..100_000 {
            if self.s.finished() {
                break;
            }
            while !self.running.is_empty() {
                self.complete(0, End::Ok);
            }
            self.fire();
        }
        assert!(self.s.finished(), "the run never finished");
        assert!(self.running.is_empty());
    }

    /// Each line leaves exactly once: a record, a drop, or (resumed)
    /// nothing. Only a line held back by `ordered` when the run drains was
    /// never admitted: it leaves no trace, and `--resume` sends it.
    fn assert_each_line_left_once(&self) {
        let mut unadmitted = 0;
        for line in &self.offered {
            if !self.admitted.contains(line) {
                assert!(
                    self.drained && self.config.ordered,
                    "line {line} never admitted"
                );
                unadmitted += 1;
                continue;
            }
            assert_eq!(self.left.get(line), Some(&1), "line {line}");
        }
        assert!(unadmitted <= 1);
        for line in &self.skipped {
            assert_eq!(self.left.get(line), None, "skipped line {line}");
        }
        assert_eq!(self.left.len(), self.offered.len() - unadmitted);
    }
}

/// Starts (weighted by `weight`) in any window never exceed what the limiter
/// allows: `burst + (window + CATCH_UP) / period`, and over windows of 0.6 s
/// and more never `rate × window + burst` (windows up to 1.5 s: longer ones
/// follow).
fn assert_window_bound(starts: &[&Start], rate: crate::units::Rate, burst: u64, weight: bool) {
    let per_sec = rate.per_second();
    let paced = per_sec * 200.0 / 201.0;
    for (i, a) in starts.iter().enumerate() {
        let mut total = 0;
        for b in &starts[i..] {
            total += if weight { b.cells } else { 1 };
            let w = (b.at - a.at).as_secs_f64();
            if w > 1.5 {
                break;
            }
            let most = burst as f64 + (w + CATCH_UP.as_secs_f64()) * paced + 1e-6;
            assert!(
                total as f64 <= most,
                "{total} in {w} s at {per_sec}/s, burst {burst}"
            );
            // The pacing margin (0.5%) absorbs the catch-up credit.
            if w >= CATCH_UP.as_secs_f64() * 201.0 {
                assert!(total as f64 <= burst as f64 + w * per_sec + 1e-6);
            }
        }
    }
}

impl Sim {
    fn assert_rates(&self) {
        let burst = u64::from(self.config.burst.get());
        let all: Vec<&Start> = self.starts.iter().collect();
        if let Some(rate) = self.config.rate {
            assert_window_bound(&all, rate, burst, false);
        }
        if let Some(budget) = self.config.budget {
            let costly: Vec<&Start> = all.iter().copied().filter(|s| s.cells > 0).collect();
            let burst = self.config.effective_budget_burst().unwrap_or(1);
            assert_window_bound(&costly, budget, burst, true);
        }
        if let Some(rate) = self.config.per_host_rate {
            let mut origins: Vec<&str> = all.iter().map(|s| s.origin.as_str()).collect();
            origins.sort();
            origins.dedup();
            for origin in origins {
                let mine: Vec<&Start> =
                    all.iter().copied().filter(|s| s.origin == origin).collect();
                assert_window_bound(&mine, rate, burst, false);
            }
        }
    }
}

// ---- property tests -----------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Offer(usize, u64),
    OfferInvalid,
    OfferRecorded,
    Complete(usize, End),
    Sleep(u64),
    Fire,
    Drain,
    EndInput,
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        6 => Just(End::Ok),
        1 => proptest::option::of(0..4u64).prop_map(End::TooMany),
        1 => Just(End::Unavailable),
        1 => Just(End::Forbidden),
        1 => Just(End::Reset),
        1 => Just(End::Timeout),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 1..4u64).prop_map(|(o, c)| Op::Offer(o, c)),
        1 => Just(Op::OfferInvalid),
        1 => Just(Op::OfferRecorded),
        8 => (0..8usize, end()).prop_map(|(i, e)| Op::Complete(i, e)),
        4 => (0..400u64).prop_map(Op::Sleep),
        4 => Just(Op::Fire),
        1 => Just(Op::Drain),
        1 => Just(Op::EndInput),
    ]
}

fn rate() -> impl Strategy<Value = Option<crate::units::Rate>> {
    proptest::option::of(
        prop_oneof![Just("3/s"), Just("10/s"), Just("50/s"), Just("120/m")]
            .prop_map(|r| crate::units::Rate::parse(r).expect("a valid rate")),
    )
}

prop_compose! {
    fn any_config()(
        concurrency in 1..6usize,
        per_host in proptest::option::of(1..3usize),
        rate in rate(),
        per_host_rate in rate(),
        burst in 1..3u32,
        budget in proptest::option::of(Just("20/s")),
        retries in 0..4u32,
        halt_after in 0..4u32,
        ordered in any::<bool>(),
        read_ahead in 0..6usize,
        retry_budget in proptest::option::of(Just("0%+2/s")),
    ) -> Config {
        let mut b = Config::builder()
            .concurrency(nz(concurrency))
            .burst(NonZeroU32::new(burst).expect("burst from 1"))
            .retries(retries)
            .halt_after(halt_after)
            .ordered(ordered)
            .reorder_window(nz(8))
            .read_ahead(read_ahead)
            .backoff_initial(Duration::from_millis(100))
            .backoff_max(Duration::from_secs(1))
            .max_retry_after(Duration::from_secs(2))
            .retry_budget(retry_budget.map(|b| b.parse().expect("a valid retry budget")));
        if let Some(n) = per_host {
            b = b.per_host_concurrency(nz(n));
        }
        if let Some(r) = rate {
            b = b.rate(r);
        }
        if let Some(r) = per_host_rate {
            b = b.per_host_rate(r);
        }
        if let Some(r) = budget {
            b = b.budget(crate::units::Rate::parse(r).expect("a valid rate")).budget_burst(NonZeroU64::new(4).expect("4 is not zero"));
        }
        b.build().expect("a valid configuration")
    }
}

/// A limit for a test configuration; every one used here is at least 1.
fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("a limit of at least 1")
}

fn run_ops(config: Config, seed: u64, ops: &[Op], on_time: bool) -> Sim {
    let mut sim = Sim::new(config, seed);
    for op in ops {
        match op {
            Op::Offer(o, c) => {
                sim.offer(*o, *c);
            }
            Op::OfferInvalid => sim.offer_other(false),
            Op::OfferRecorded => sim.offer_other(true),
            Op::Complete(i, e) => sim.complete(*i, *e),
            Op::Sleep(ms) => sim.sleep(Duration::from_millis(*ms), on_time),
            Op::Fire => sim.fire(),
            Op::Drain => sim.drain(),
            Op::EndInput => sim.end_input(),
        }
    }
    sim.finish();
    sim
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Limits, windows, pauses, retry order and one exit per line hold over
    /// any sequence of inputs, outcomes, timer firings (on time or late) and
    /// drains.
    #[test]
    fn the_contract_holds_for_any_sequence(
        config in any_config(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..120),
        on_time in any::<bool>(),
    ) {
        let sim = run_ops(config, seed, &ops, on_time);
        sim.assert_each_line_left_once();
        sim.assert_rates();
    }
}

// ---- table tests --------------------------------------------------------

fn config(f: impl FnOnce(crate::config::ConfigBuilder) -> crate::config::ConfigBuilder) -> Config {
    f(Config::builder()).build().expect("a valid configuration")
}

fn starts_of(sim: &Sim, from: usize) -> Vec<Duration> {
    sim.starts[from..].iter().map(|s| s.at - sim.t0).collect()
}

#[test]
fn a_429_pauses_its_origin_then_releases_the_queue_spread_out() {
    // Learning off: the spread alone (with it on, the discovered rate
    // paces the restart too; see the next test).
    let b = |b: crate::config::ConfigBuilder| b.concurrency(nz(1)).retries(3).learn_limits(false);
    let mut sim = Sim::new(config(b), 1);
    for _ in 0..20 {
        assert!(sim.offer(0, 1));
    }
    sim.end_input();
    assert_eq!(sim.starts.len(), 1);
    sim.complete(0, End::TooMany(Some(2)));
    let paused = sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Paused { wait, reason, .. } if *wait == Duration::from_secs(2) && reason == "Retry-After on HTTP 429"));
    assert!(paused, "{:?}", sim.events);
    // Nothing starts during the pause, however often the timer fires.
    while sim
        .s
        .next_wake()
        .is_some_and(|w| w < sim.t0 + Duration::from_secs(2))
    {
        sim.fire();
    }
    assert_eq!(sim.starts.len(), 1);
    // Then, one at a time (-c 1), every request by the end of the spread
    // (10 ms a request after the pause, the retry within a second).
    let from = sim.starts.len();
    sim.finish();
    let after = starts_of(&sim, from);
    assert_eq!(after.len(), 20);
    assert!(
        after.iter().all(|&t| t >= Duration::from_secs(2)),
        "{after:?}"
    );
    assert!(
        after.iter().all(|&t| t <= Duration::from_secs(3)),
        "{after:?}"
    );
    assert!(after.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        after[19] - after[0] > Duration::from_millis(50),
        "spread: {after:?}"
    );
    sim.assert_each_line_left_once();
    assert!(sim.records.iter().all(|r| r.ok));
}

/// Headerless discovery: after the pause an unpredicted 429 asked for, the
/// waiting requests restart at the rate the origin was sent before it (slow
/// start), not every slot within the spread's second.
#[test]
fn after_an_unpredicted_429_the_restart_is_paced_by_the_discovered_rate() {
    let mut sim = Sim::new(config(|b| b.concurrency(nz(15)).retries(3)), 1);
    for _ in 0..60 {
        assert!(sim.offer(0, 1));
    }
    sim.end_input();
    assert_eq!(sim.starts.len(), 15);
    // All 15 refused in the same round trip: one lowering.
    for _ in 0..15 {
        sim.complete(0, End::TooMany(Some(1)));
    }
    let learned = sim.events.iter().find_map(|e| match e {
        Event::Learned(l) => Some(l.clone()),
        _ => None,
    });
    let learned = learned.expect("a discovered rate");
    let lowered = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::Learned(_)))
        .count();
    assert_eq!(lowered, 1, "one lowering per round trip");
    assert_eq!(learned.dialect, "none");
    assert_eq!(learned.requests_per_second, Some(15.0));
    let from = sim.starts.len();
    sim.finish();
    sim.assert_each_line_left_once();
    assert!(sim.records.iter().all(|r| r.ok));
    // 45 waiting and 15 retried start after the pause at 15 a second,
    // growing by one a second per success (slow start): about 26 in the
    // first second, where the spread alone would start all 60.
    let after = starts_of(&sim, from);
    assert!(
        after.iter().all(|&t| t >= Duration::from_secs(1)),
        "{after:?}"
    );
    let first_second = after
        .iter()
        .filter(|&&t| t < Duration::from_secs(2))
        .count();
    assert!(
        first_second <= 40,
        "{first_second} in the first second: {after:?}"
    );
}

#[test]
fn a_429_without_retry_after_pauses_for_the_backoff() {
    let b = |b: crate::config::ConfigBuilder| {
        b.concurrency(nz(2))
            .backoff_initial(Duration::from_millis(400))
            .backoff_max(Duration::from_millis(400))
    };
    let mut sim = Sim::new(config(b), 3);
    for _ in 0..4 {
        sim.offer(0, 1);
    }
    sim.complete(0, End::TooMany(None));
    let wait = sim.events.iter().find_map(|e| match e {
        Event::Paused { wait, reason, .. } => {
            assert_eq!(reason, "HTTP 429 without Retry-After (backoff)");
            Some(*wait)
        }
        _ => None,
    });
    assert!(
        wait.is_some_and(|w| w <= Duration::from_millis(400)),
        "{wait:?}"
    );
    sim.finish();
    sim.assert_each_line_left_once();
}

#[test]
fn a_retry_after_above_the_maximum_closes_the_origin() {
    let mut sim = Sim::new(
        config(|b| b.concurrency(nz(1)).max_retry_after(Duration::from_secs(5))),
        1,
    );
    for origin in [0, 0, 0, 1] {
        sim.offer(origin, 1);
    }
    sim.complete(0, End::TooMany(Some(10)));
    sim.finish();
    let first = sim
        .records
        .iter()
        .find(|r| r.line == 1)
        .expect("a record for line 1");
    let error = first.error.as_ref().expect("an error");
    assert_eq!(error.kind, ErrorKind::RetryAfterTooLong);
    assert!(
        error.message.contains("10s") || error.message.contains("10 s"),
        "{}",
        error.message
    );
    let closed = sim
        .events
        .iter()
        .any(|e| matches!(e, Event::OriginClosed { .. }));
    assert!(closed);
    // The rest of that origin is dropped unsent; the other origin is served.
    let dropped: Vec<u64> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Dropped { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [2, 3]);
    assert!(sim.records.iter().any(|r| r.line == 4 && r.ok));
    sim.assert_each_line_left_once();
}

#[test]
fn a_retry_after_within_the_maximum_is_waited_for() {
    let mut sim = Sim::new(config(|b| b.max_retry_after(Duration::from_secs(5))), 1);
    sim.offer(0, 1);
    sim.complete(0, End::TooMany(Some(5)));
    sim.finish();
    let again = starts_of(&sim, 1);
    assert_eq!(again.len(), 1);
    assert!(again[0] >= Duration::from_secs(5) && again[0] <= Duration::from_secs(6));
    assert!(sim.records[0].ok && sim.records[0].attempts == 2);
}

#[test]
fn halt_after_closes_an_origin_after_consecutive_hard_failures() {
    let mut sim = Sim::new(config(|b| b.concurrency(nz(1)).halt_after(3)), 1);
    for origin in [0, 0, 0, 0, 0, 1] {
        sim.offer(origin, 1);
    }
    // A success in between resets the count.
    for end in [End::Forbidden, End::Ok, End::Forbidden, End::Forbidden] {
        sim.complete(0, end);
    }
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, Event::OriginClosed { .. }))
    );
    sim.complete(0, End::Forbidden);
    let reason = sim.events.iter().find_map(|e| match e {
        Event::OriginClosed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.is_some_and(|r| r.contains("(halt_after)")));
    sim.finish();
    assert_eq!(
        sim.records.iter().filter(|r| r.status == Some(403)).count(),
        4
    );
    assert!(sim.records.iter().any(|r| r.line == 6 && r.ok));
    sim.assert_each_line_left_once();
}

#[test]
fn halt_after_zero_never_closes() {
    let mut sim = Sim::new(config(|b| b.concurrency(nz(1)).halt_after(0)), 1);
    for _ in 0..30 {
        sim.offer(0, 1);
    }
    for _ in 0..30 {
        sim.complete(0, End::Forbidden);
    }
    sim.finish();
    assert_eq!(sim.records.len(), 30);
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, Event::OriginClosed { .. }))
    );
}

/// Runs `n` requests of cost `cost` to each of `origins` origins, every
/// attempt ending at once, with timers that fire at the next millisecond
/// tick and later, as tokio's do; the starts at each origin.
fn run_with_late_timers(
    config: Config,
    origins: usize,
    n: usize,
    cost: u64,
) -> (Sim, Vec<Vec<Instant>>) {
    let mut sim = Sim::new(config, 1);
    for _ in 0..n {
        for o in 0..origins {
            assert!(sim.offer(o, cost));
        }
    }
    sim.end_input();
    while !sim.s.finished() {
        while !sim.running.is_empty() {
            sim.complete(0, End::Ok);
        }
        if let Some(wake) = sim.s.next_wake() {
            let tick = (wake - sim.t0).as_nanos().div_ceil(1_000_000) as u64;
            sim.now = sim.t0 + Duration::from_millis(tick) + Duration::from_micros(400);
            sim.s.advance(sim.now);
            sim.collect();
        }
    }
    let per_origin = (0..origins)
        .map(|o| {
            let name = origin_name(&origin_url(o));
            let at: Vec<Instant> = sim
                .starts
                .iter()
                .filter(|s| s.origin == name)
                .map(|s| s.at)
                .collect();
            assert_eq!(at.len(), n, "{name}");
            at
        })
        .collect();
    (sim, per_origin)
}

/// Starts a second from the first start to the last.
fn achieved(at: &[Instant]) -> f64 {
    let span = (at[at.len() - 1] - at[0]).as_secs_f64();
    (at.len() - 1) as f64 / span
}

#[test]
fn a_rate_is_reached_within_one_percent_with_late_timers() {
    for (rate, n) in [("1000/s", 2000), ("100/s", 300), ("10/s", 30)] {
        let rate = crate::units::Rate::parse(rate).expect("a valid rate");
        let c = config(|b| b.concurrency(nz(64)).rate(rate).read_ahead(n));
        let (sim, at) = run_with_late_timers(c, 1, n, 1);
        let achieved = achieved(&at[0]);
        assert!(
            achieved >= rate.per_second() * 0.99,
            "{achieved}/s at {rate:?}"
        );
        sim.assert_rates();
    }
}

/// Each origin reaches its own rate, however many share the timer.
#[test]
fn a_per_host_rate_is_reached_at_each_origin_within_one_percent_with_late_timers() {
    for (rate, n) in [("1000/s", 500), ("100/s", 300), ("10/s", 30)] {
        let rate = crate::units::Rate::parse(rate).expect("a valid rate");
        let c = config(|b| b.concurrency(nz(64)).per_host_rate(rate).read_ahead(2 * n));
        let (sim, at) = run_with_late_timers(c, 2, n, 1);
        for (o, at) in at.iter().enumerate() {
            let achieved = achieved(at);
            assert!(
                achieved >= rate.per_second() * 0.99,
                "origin {o}: {achieved}/s at {rate:?}"
            );
        }
        sim.assert_rates();
    }
}

/// The budget is spent at its rate: cost-10 requests under 1000 units a
/// second start 100 a second.
#[test]
fn a_budget_is_reached_within_one_percent_with_late_timers() {
    let budget = crate::units::Rate::parse("1000/s").expect("a valid rate");
    let n = 300;
    let c = config(|b| {
        b.concurrency(nz(64))
            .budget(budget)
            .budget_burst(NonZeroU64::new(10).expect("10 is not zero"))
            .read_ahead(n)
    });
    let (sim, at) = run_with_late_timers(c, 1, n, 10);
    let achieved = achieved(&at[0]) * 10.0;
    assert!(achieved >= 1000.0 * 0.99, "{achieved} units/s at 1000/s");
    sim.assert_rates();
}

#[test]
fn limits_hold_exactly_while_work_waits() {
    let mut sim = Sim::new(
        config(|b| b.concurrency(nz(4)).per_host_concurrency(nz(2))),
        1,
    );
    for k in 0..12 {
        sim.offer(k % 3, 1);
    }
    // Exactly -c in flight while work waits: the per-origin limit (2) leaves
    // room for three origins, the global one (4) is the bound.
    assert_eq!(sim.running.len(), 4);
    sim.finish();
    sim.assert_each_line_left_once();
}

/// The retry budget: with only 2 retries a second to spend, 10 requests
/// that each fail once (connection reset) retry no faster than that, and
/// the retries waiting for budget hold no slot (-c 2 starts the fresh
/// requests meanwhile); each ends ok, and the account comes at the end.
#[test]
fn retries_wait_for_the_budget_holding_no_slot() {
    let b = |b: crate::config::ConfigBuilder| {
        b.concurrency(nz(2))
            .retries(3)
            .backoff_initial(Duration::from_millis(1))
            .backoff_max(Duration::from_millis(1))
            .retry_budget(Some("0%+2/s".parse().expect("a valid budget")))
    };
    let mut sim = Sim::new(config(b), 5);
    for _ in 0..10 {
        sim.offer(0, 1);
    }
    sim.end_input();
    // Every first attempt fails; the fresh ones are not held back by the
    // retries waiting for budget.
    let mut firsts = 0;
    while firsts < 10 {
        sim.complete(0, End::Reset);
        firsts += 1;
        if sim.running.is_empty() {
            sim.fire();
        }
    }
    let first_attempts_done = sim.now - sim.t0;
    sim.finish();
    assert!(sim.records.iter().all(|r| r.ok));
    assert_eq!(sim.records.len(), 10);
    // 10 retries at 2 a second: the last no sooner than 4.5 s in.
    let retries: Vec<Duration> = sim.starts.iter().skip(10).map(|s| s.at - sim.t0).collect();
    assert_eq!(retries.len(), 10);
    assert!(
        first_attempts_done < Duration::from_secs(1),
        "{first_attempts_done:?}"
    );
    assert!(retries[9] >= Duration::from_millis(4_500), "{retries:?}");
    let account = sim.events.iter().find_map(|e| match e {
        Event::RetryBudget { waited, held } => Some((*waited, *held)),
        _ => None,
    });
    let (waited, held) = account.expect("the budget's account");
    assert!(held >= 8, "{held}");
    assert!(waited >= Duration::from_secs(10), "{waited:?}");
}

/// A request given up ([`crate::Abandon`]) while in flight frees its slot
/// at once, a queued one is dropped when it would start (it never starts),
/// both without a record, and the run's other requests go on.
#[test]
fn abandoned_requests_free_their_slot_and_never_start() {
    let config = Config::builder()
        .concurrency(NonZeroUsize::MIN)
        .build()
        .expect("a valid config");
    let t0 = Instant::now();
    let mut s = Scheduler::new(Arc::new(config), t0, SystemTime::UNIX_EPOCH, 1);
    let url = url::Url::parse("http://127.0.0.1:9/x").expect("a URL");
    let gone = crate::request::Abandon::new();
    for line in 1..=3 {
        let mut req = Request::get(line, url.clone());
        req.abandon = (line <= 2).then(|| gone.clone());
        s.offer(Input::from(req), t0);
    }
    let step = |s: &mut Scheduler| {
        let (mut starts, mut dropped, mut records) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(action) = s.next_action() {
            match action {
                Action::Start(a) => starts.push((a.ticket, a.request.line)),
                Action::Emit(Event::Dropped { line, .. }) => dropped.push(line),
                Action::Emit(Event::Record(r)) => records.push(r.line),
                Action::Emit(_) => {}
            }
        }
        (starts, dropped, records)
    };
    let (starts, _, _) = step(&mut s);
    assert_eq!(starts.iter().map(|s| s.1).collect::<Vec<_>>(), [1]);
    gone.abandon();
    s.abandoned(starts[0].0, t0);
    let (starts, dropped, records) = step(&mut s);
    assert_eq!(dropped, [1, 2]);
    assert_eq!(starts.iter().map(|s| s.1).collect::<Vec<_>>(), [3]);
    s.complete(starts[0].0, outcome(End::Ok), t0);
    let (_, _, done) = step(&mut s);
    assert!(records.is_empty());
    assert_eq!(done, [3]);
    s.end_input(t0);
    assert!(s.finished());
}
