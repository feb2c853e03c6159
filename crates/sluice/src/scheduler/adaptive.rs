//! `--adaptive`: the run's concurrency limit found from the servers'
//! answers, within [1, `-c`] (AIMD on the limit, with a latency signal).
//!
//! - **Start.** The limit starts at [`INITIAL`] (or `-c`, if lower) and
//!   doubles after each full window of successes (slow start), until the
//!   first decrease. The first window only warms up: its round trips
//!   include the start of the process and of its connections.
//! - **Increase.** After that, each full window of successes adds one. A
//!   window is `limit` successes that completed while at least half the
//!   limit was in use: a limit the run does not use says nothing about the
//!   server, so it does not grow.
//! - **Latency.** Each window's median round trip is compared with the
//!   lowest window median of the run, the round trip without a queue (as
//!   Vegas and Netflix's Gradient2 do): a server past its capacity queues,
//!   so its latency grows before it refuses. Above [`HIGH`] times that
//!   baseline the limit is cut to what would bring it back to [`TARGET`]
//!   (`limit × TARGET / ratio`, at most halved); between [`LOW`] and
//!   [`HIGH`] it holds; at most [`LOW`], it grows.
//! - **Overload.** A 503, a 529, a timeout or a reset halves the limit
//!   ([`OVERLOAD`]); a 429 multiplies it by [`REFUSAL`]. At most one
//!   decrease per round trip: an answer to a request started before the
//!   last decrease changes nothing. A 503 without `Retry-After` is the
//!   limit's alone: it neither pauses its origin nor starts a discovered
//!   rate (`discovered`), which would hold every slot at the server's
//!   capacity and leave the limit nothing to learn from.
//!
//! Pure logic: every call takes the time; the scheduler feeds it starts and
//! completions and asks for the limit.

use std::time::Duration;

use tokio::time::Instant;

/// The limit slow start begins with (or `-c`, if lower): Netflix's
/// concurrency-limits start there too.
pub(crate) const INITIAL: usize = 20;

/// An overload signal multiplies the limit by this.
pub(crate) const OVERLOAD: f64 = 0.5;

/// A 429 multiplies the limit by this.
pub(crate) const REFUSAL: f64 = 0.9;

/// A window whose median round trip is at most this many times the
/// baseline (the lowest window median) lets the limit grow.
pub(crate) const LOW: f64 = 1.05;

/// Above this many times the baseline round trip, the limit is cut.
pub(crate) const HIGH: f64 = 1.15;

/// A latency cut aims at this many times the baseline round trip.
pub(crate) const TARGET: f64 = 1.05;

/// A latency cut never takes more than this share away at once.
const DEEPEST: f64 = 0.5;

/// What an ended attempt says about the server's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A 2xx: its round trip counts.
    Success,
    /// 503 without `Retry-After`, 529, a timeout, a reset.
    Overload,
    /// A 429.
    Refused,
    /// Anything else (a 404, a 500): says nothing about load.
    Neutral,
}

/// Which start an attempt was, and when, for its completion.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Start {
    number: u64,
    at: Option<Instant>,
}

impl Start {
    /// The request went out at `at` (its connection was there).
    pub(crate) fn sent(&mut self, at: Instant) {
        if self.at.is_some() {
            self.at = Some(at);
        }
    }
}

/// Why the limit changed, for `-v`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Why {
    SlowStart,
    Window,
    Latency(f64),
    Overload,
    Refused,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::SlowStart => f.write_str("slow start: a window of successes"),
            Why::Window => f.write_str("a window of successes"),
            Why::Latency(ratio) => write!(f, "latency {ratio:.2}× its baseline"),
            Why::Overload => f.write_str("overload (503, 529, timeout or reset)"),
            Why::Refused => f.write_str("a 429"),
        }
    }
}

/// The run's adaptive concurrency limit.
#[derive(Debug)]
pub(crate) struct Adaptive {
    ceiling: usize,
    limit: usize,
    slow_start: bool,
    /// Starts so far.
    dispatched: u64,
    /// The starts so far at the last decrease.
    decreased_after: u64,
    /// The starts so far at the last change.
    changed_after: u64,
    /// Round trips of this window's successes (those that came while at
    /// least half the limit was in use).
    window: Vec<Duration>,
    /// The lowest window median so far: the round trip without a queue.
    baseline: Option<Duration>,
    /// The first window has passed.
    warm: bool,
    decreases: u64,
    lowest: usize,
    highest: usize,
    /// The limit integrated over time (limit × seconds), for the mean.
    area: f64,
    since: Instant,
    start: Instant,
    /// The final account was given.
    told: bool,
}

/// The account of the limit (for events and the summary).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Account {
    pub(crate) limit: usize,
    pub(crate) lowest: usize,
    pub(crate) highest: usize,
    pub(crate) mean: f64,
    pub(crate) decreases: u64,
}

impl Adaptive {
    /// A limit within [1, `ceiling`], for a run starting at `now`.
    pub(crate) fn new(ceiling: usize, now: Instant) -> Adaptive {
        let ceiling = ceiling.max(1);
        let limit = INITIAL.min(ceiling);
        Adaptive {
            ceiling,
            limit,
            slow_start: true,
            dispatched: 0,
            decreased_after: 0,
            changed_after: 0,
            window: Vec::new(),
            baseline: None,
            warm: false,
            decreases: 0,
            lowest: limit,
            highest: limit,
            area: 0.0,
            since: now,
            start: now,
            told: false,
        }
    }

    /// Attempts that may be in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// An attempt starts: returns which start it is (hand it back with
    /// its completion).
    pub(crate) fn start(&mut self) -> u64 {
        self.dispatched += 1;
        self.dispatched
    }

    /// An attempt that was start `number` ended at `now` after `rtt`, with
    /// `in_use` attempts in flight (it included). Returns why the limit
    /// changed, if it did.
    pub(crate) fn completed(
        &mut self,
        signal: Signal,
        number: u64,
        rtt: Duration,
        in_use: usize,
        now: Instant,
    ) -> Option<Why> {
        let before = self.limit;
        let why = match signal {
            // A window measures the limit in effect: answers to requests
            // started before the last change tell of the one before it.
            Signal::Success if number > self.changed_after => self.success(rtt, in_use),
            Signal::Success => None,
            Signal::Overload => self.decrease(number, OVERLOAD, Why::Overload),
            Signal::Refused => self.decrease(number, REFUSAL, Why::Refused),
            Signal::Neutral => None,
        };
        if self.limit == before {
            return None;
        }
        self.changed(before, now);
        why
    }

    /// The account so far, the mean over the run up to `now`.
    pub(crate) fn account(&self, now: Instant) -> Account {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let current = now.saturating_duration_since(self.since).as_secs_f64();
        let area = self.area + self.limit as f64 * current;
        Account {
            limit: self.limit,
            lowest: self.lowest,
            highest: self.highest,
            mean: if elapsed > 0.0 {
                area / elapsed
            } else {
                self.limit as f64
            },
            decreases: self.decreases,
        }
    }

    /// The final account, once.
    pub(crate) fn last_word(&mut self, now: Instant) -> Option<Account> {
        (!std::mem::replace(&mut self.told, true)).then(|| self.account(now))
    }

    fn success(&mut self, rtt: Duration, in_use: usize) -> Option<Why> {
        // A limit the run does not use says nothing about the server.
        if in_use * 2 < self.limit {
            return None;
        }
        self.window.push(rtt);
        if self.window.len() < self.limit {
            return None;
        }
        if !std::mem::replace(&mut self.warm, true) {
            // The first window's round trips include the start of the
            // process and of its connections: they say nothing of the server.
            self.window.clear();
            return None;
        }
        let ratio = self.ratio();
        self.window.clear();
        if ratio > HIGH || (self.slow_start && ratio > LOW) {
            let cut = (self.limit as f64 * TARGET / ratio).max(self.limit as f64 * DEEPEST);
            self.slow_start = false;
            self.lower_to(cut);
            return Some(Why::Latency(ratio));
        }
        if ratio > LOW {
            return None;
        }
        if self.slow_start {
            self.limit = (self.limit * 2).min(self.ceiling);
            return Some(Why::SlowStart);
        }
        self.limit = (self.limit + 1).min(self.ceiling);
        Some(Why::Window)
    }

    /// The window's median round trip over the lowest window median seen
    /// before (1 for the first window); the lowest becomes the baseline.
    /// Medians, not single round trips: one fast answer must not make
    /// every later window look slow.
    fn ratio(&mut self) -> f64 {
        self.window.sort_unstable();
        let median = self.window[self.window.len() / 2];
        let ratio = match self.baseline.filter(|b| !b.is_zero()) {
            Some(b) => median.as_secs_f64() / b.as_secs_f64(),
            None => 1.0,
        };
        if self.baseline.is_none_or(|b| median < b) {
            self.baseline = Some(median);
        }
        ratio
    }

    fn decrease(&mut self, number: u64, factor: f64, why: Why) -> Option<Why> {
        if number <= self.decreased_after {
            return None;
        }
        self.slow_start = false;
        self.lower_to(self.limit as f64 * factor);
        Some(why)
    }

    /// Lowers the limit (at least 1); later answers to requests started
    /// before now do not lower it again.
    fn lower_to(&mut self, limit: f64) {
        self.limit = (limit.floor() as usize).clamp(1, self.ceiling);
        self.decreased_after = self.dispatched;
        self.decreases += 1;
        self.window.clear();
    }

    /// Accounts the time spent at the limit `before`, which held until now.
    fn changed(&mut self, before: usize, now: Instant) {
        self.changed_after = self.dispatched;
        self.window.clear();
        let spent = now.saturating_duration_since(self.since).as_secs_f64();
        self.area += spent * before as f64;
        self.since = now;
        self.lowest = self.lowest.min(self.limit);
        self.highest = self.highest.max(self.limit);
    }
}

// ---- the scheduler's hooks ----------------------------------------------

impl super::Scheduler {
    /// Attempts that may be in flight now: `-c`, or under `--adaptive`
    /// the limit found so far.
    pub(super) fn concurrency_limit(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(self.config.concurrency.get(), Adaptive::limit)
    }

    /// An attempt starts now.
    pub(super) fn adaptive_start(&mut self, now: Instant) -> Start {
        match &mut self.adaptive {
            Some(a) => Start {
                number: a.start(),
                at: Some(now),
            },
            None => Start::default(),
        }
    }

    /// Feeds an ended attempt to the limit; says so when it changed.
    pub(super) fn adaptive_completed(
        &mut self,
        start: Start,
        outcome: &crate::attempt::Outcome,
        now: Instant,
    ) {
        let in_use = self.in_flight.len() + 1;
        let Some(a) = &mut self.adaptive else {
            return;
        };
        let rtt = start
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        let signal = signal_of(outcome);
        if let Some(why) = a.completed(signal, start.number, rtt, in_use, now) {
            let event = a.account(now).event(why.to_string(), false);
            self.emit(crate::event::Event::Concurrency(event));
        }
    }

    /// Once the run has finished: the limit's account.
    pub(super) fn adaptive_last_word(&mut self, now: Instant) {
        if let Some(account) = self.adaptive.as_mut().and_then(|a| a.last_word(now)) {
            let event = account.event(String::new(), true);
            self.emit(crate::event::Event::Concurrency(event));
        }
    }
}

impl super::Scheduler {
    /// Under `adaptive`, an overload 503 (one that asks for no wait) is the
    /// concurrency limit's to answer: it neither pauses its origin nor
    /// starts a discovered rate, which at a server's capacity would hold
    /// every slot and leave the limit nothing to learn from.
    pub(super) fn adaptive_takes(&self, outcome: &crate::attempt::Outcome) -> bool {
        use crate::attempt::Outcome;
        if self.adaptive.is_none() {
            return false; // Asked of every outcome: no header lookups when off.
        }
        let (status, headers) = match outcome {
            Outcome::Response(r) => (Some(r.status), Some(&r.headers)),
            Outcome::Failed(f) => (f.status, f.headers.as_ref()),
        };
        // The headers last: they are looked up only for a 503.
        let asks_wait = || {
            headers.is_some_and(|h| {
                h.contains_key(reqwest::header::RETRY_AFTER) || h.contains_key("retry-after-ms")
            })
        };
        status == Some(503) && !asks_wait()
    }
}

/// What an attempt's outcome says about load.
pub(crate) fn signal_of(outcome: &crate::attempt::Outcome) -> Signal {
    use crate::attempt::Outcome;
    use crate::record::ErrorKind;
    let status = match outcome {
        Outcome::Failed(f) if matches!(f.kind, ErrorKind::Timeout | ErrorKind::Reset) => {
            return Signal::Overload;
        }
        Outcome::Failed(f) => f.status,
        Outcome::Response(r) => Some(r.status),
    };
    match (status, outcome) {
        (Some(429), _) => Signal::Refused,
        (Some(503 | 529), _) => Signal::Overload,
        (Some(200..=299), Outcome::Response(_)) => Signal::Success,
        _ => Signal::Neutral,
    }
}

impl Account {
    fn event(self, why: String, last: bool) -> crate::event::Concurrency {
        crate::event::Concurrency {
            limit: self.limit,
            lowest: self.lowest,
            highest: self.highest,
            mean: self.mean,
            decreases: self.decreases,
            why,
            last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `n` busy successes of round trip `rtt`, each started and answered.
    fn successes(a: &mut Adaptive, n: usize, rtt: Duration, now: Instant) -> Vec<Why> {
        (0..n)
            .filter_map(|_| {
                let number = a.start();
                let in_use = a.limit();
                a.completed(Signal::Success, number, rtt, in_use, now)
            })
            .collect()
    }

    /// A limit past its first window (the warm-up, which decides nothing).
    fn warm(ceiling: usize, t0: Instant) -> Adaptive {
        let mut a = Adaptive::new(ceiling, t0);
        assert!(successes(&mut a, INITIAL.min(ceiling), ms(500), t0).is_empty());
        assert_eq!(a.limit(), INITIAL.min(ceiling));
        a
    }

    #[test]
    fn slow_start_doubles_each_window_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut a = warm(100, t0);
        assert_eq!(a.limit(), INITIAL);
        let mut limits = vec![a.limit()];
        for _ in 0..4 {
            let limit = a.limit();
            successes(&mut a, limit, ms(50), t0);
            limits.push(a.limit());
        }
        assert_eq!(limits, [20, 40, 80, 100, 100]);
        // A ceiling below the initial limit is the limit.
        assert_eq!(Adaptive::new(3, t0).limit(), 3);
    }

    #[test]
    fn an_idle_limit_does_not_grow() {
        let t0 = Instant::now();
        let mut a = Adaptive::new(100, t0);
        for _ in 0..100 {
            let number = a.start();
            // One in flight of a limit of 20: not half of it in use.
            assert_eq!(a.completed(Signal::Success, number, ms(50), 1, t0), None);
        }
        assert_eq!(a.limit(), INITIAL);
    }

    #[test]
    fn overload_halves_and_a_429_takes_a_tenth_once_per_round_trip() {
        let t0 = Instant::now();
        let mut a = warm(100, t0);
        successes(&mut a, 20, ms(50), t0);
        assert_eq!(a.limit(), 40);
        let numbers: Vec<u64> = (0..40).map(|_| a.start()).collect();
        let why = a.completed(Signal::Overload, numbers[0], ms(5), 40, t0);
        assert_eq!((why, a.limit()), (Some(Why::Overload), 20));
        // The other 39 started before the decrease: no further change.
        for &n in &numbers[1..] {
            assert_eq!(a.completed(Signal::Overload, n, ms(5), 20, t0), None);
        }
        assert_eq!(a.limit(), 20);
        let n = a.start();
        assert_eq!(
            a.completed(Signal::Refused, n, ms(5), 20, t0),
            Some(Why::Refused)
        );
        assert_eq!(a.limit(), 18);
        // After slow start has ended, a window adds one.
        let why = successes(&mut a, 18, ms(50), t0);
        assert_eq!((why.as_slice(), a.limit()), ([Why::Window].as_slice(), 19));
        // Never below one.
        for _ in 0..10 {
            let n = a.start();
            a.completed(Signal::Overload, n, ms(5), 1, t0);
        }
        assert_eq!(a.limit(), 1);
        assert_eq!(a.account(t0).lowest, 1);
        assert_eq!(a.account(t0).highest, 40);
    }

    #[test]
    fn latency_past_the_baseline_cuts_towards_the_target() {
        let t0 = Instant::now();
        let mut a = warm(200, t0);
        successes(&mut a, 20, ms(50), t0);
        assert_eq!(a.limit(), 40);
        // At twice the baseline round trip: cut to limit × TARGET / 2.
        let why = successes(&mut a, 40, ms(100), t0);
        assert!(
            matches!(why[..], [Why::Latency(r)] if (r - 2.0).abs() < 1e-9),
            "{why:?}"
        );
        assert_eq!(a.limit(), (40.0 * TARGET / 2.0) as usize);
        // Between LOW and HIGH: held.
        let held = a.limit();
        assert!(successes(&mut a, held, ms(56), t0).is_empty());
        assert_eq!(a.limit(), held);
        // Far past it: at most halved.
        successes(&mut a, held, ms(500), t0);
        assert_eq!(a.limit(), held / 2);
    }

    #[test]
    fn the_mean_is_weighted_by_time() {
        let t0 = Instant::now();
        let mut a = warm(100, t0);
        successes(&mut a, 20, ms(50), t0 + Duration::from_secs(1));
        // 20 for a second, then 40 for three.
        let mean = a.account(t0 + Duration::from_secs(4)).mean;
        assert!((mean - 35.0).abs() < 1e-9, "{mean}");
        assert!(a.last_word(t0).is_some());
        assert!(a.last_word(t0).is_none(), "the final account is given once");
    }

    /// A server with a capacity knee (the mock's `/knee`): a request takes
    /// `base × max(1, n / capacity)`, `n` in flight when it arrives, and
    /// beyond `2 × capacity` is refused with 503 at once. Runs `count`
    /// requests at `-c ceiling` under the limit and returns the limit's
    /// account and the makespan.
    fn knee(capacity: usize, base: Duration, ceiling: usize, count: u64) -> (Account, Duration) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let t0 = Instant::now();
        let mut a = Adaptive::new(ceiling, t0);
        let mut now = t0;
        // (when it ends, its start number, when it started, refused)
        let mut flying: BinaryHeap<Reverse<(Instant, u64, Instant, bool)>> = BinaryHeap::new();
        let (mut done, mut sent) = (0, 0);
        while done < count {
            while flying.len() < a.limit() && sent < count {
                let n = flying.len() + 1;
                let number = a.start();
                sent += 1;
                let (took, refused) = if n > 2 * capacity {
                    (Duration::from_micros(200), true)
                } else {
                    (base.mul_f64((n as f64 / capacity as f64).max(1.0)), false)
                };
                flying.push(Reverse((now + took, number, now, refused)));
            }
            let Some(Reverse((end, number, started, refused))) = flying.pop() else {
                break;
            };
            now = end;
            let signal = if refused {
                sent -= 1; // sent again
                Signal::Overload
            } else {
                done += 1;
                Signal::Success
            };
            a.completed(signal, number, end - started, flying.len() + 1, now);
        }
        (a.account(now), now - t0)
    }

    #[test]
    fn at_a_capacity_knee_the_limit_settles_near_it_at_full_throughput() {
        // (Below 10, one step of the limit is more than a tenth of it.)
        for (capacity, base_ms) in [(20, 50), (10, 20), (50, 100), (200, 10), (1000, 30)] {
            let base = ms(base_ms);
            let count = (capacity as u64) * 200;
            let (account, took) = knee(capacity, base, 1000, count);
            let cap = capacity as f64;
            for limit in [account.limit as f64, account.mean] {
                assert!(
                    (limit - cap).abs() <= cap * 0.3,
                    "capacity {capacity}: {account:?}"
                );
            }
            // The best fixed -c serves `capacity` per base round trip.
            let ideal = base.mul_f64(count as f64 / cap);
            let share = ideal.as_secs_f64() / took.as_secs_f64();
            assert!(share >= 0.9, "capacity {capacity}: {share:.3} of the best");
        }
    }

    proptest::proptest! {
        /// Whatever the answers, the limit stays within [1, ceiling], and
        /// each decrease answers a request started after the previous one.
        #[test]
        fn the_limit_stays_in_bounds_and_decreases_once_per_round_trip(
            ceiling in 1usize..300,
            events in proptest::collection::vec((0u8..5, 0u64..40, 1u64..400), 1..400),
        ) {
            let t0 = Instant::now();
            let mut a = Adaptive::new(ceiling, t0);
            let mut now = t0;
            let mut flying: Vec<(u64, Instant)> = Vec::new();
            let mut last_decrease_after = 0;
            for (kind, pick, step) in events {
                now += ms(step);
                if kind == 0 || flying.is_empty() {
                    if flying.len() < a.limit() {
                        flying.push((a.start(), now));
                    }
                    continue;
                }
                let (number, at) = flying.remove(pick as usize % flying.len());
                let signal = [Signal::Success, Signal::Overload, Signal::Refused, Signal::Neutral]
                    [usize::from(kind - 1)];
                let before = a.account(now).decreases;
                a.completed(signal, number, now - at, flying.len() + 1, now);
                if a.account(now).decreases > before {
                    proptest::prop_assert!(number > last_decrease_after);
                    last_decrease_after = a.dispatched;
                }
                proptest::prop_assert!((1..=ceiling).contains(&a.limit()));
            }
        }
    }
}
