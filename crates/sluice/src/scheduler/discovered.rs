//! Limits discovered where no header tells them: an
//! origin that refuses with 429 or 503 although no rate-limit header
//! predicted it (nginx's `limit_req`, Stripe-style APIs) gets a request
//! rate of its own, lowered multiplicatively on each such refusal and
//! raised additively on success (AIMD on the rate).
//!
//! - **Start.** The first refusal starts the rate from what sluice sent
//!   the origin in the last second, never above a user's `--rate` or
//!   `--per-host-rate`.
//! - **Slow start.** Until the next lowering, each success adds
//!   [`SLOW_START`] request a second (the rate about doubles each second
//!   it is used), so a rate started low finds the server's limit in a few
//!   seconds. It overshoots by what the server's burst absorbs before it
//!   refuses, so the refusal that ends it halves the rate, as TCP does.
//! - **Avoidance.** After that, each second of successes adds
//!   [`INCREASE`] of the rate at the last lowering: the rate creeps towards
//!   the limit and crosses it rarely, since each crossing costs a pause.
//! - **Lowering.** A later refusal multiplies the rate by [`DECREASE`] (at
//!   most down to what the server accepted while sluice was busy), at most
//!   once per round trip: refusals of requests that started before the
//!   last lowering do not lower it again.
//! - **Gentle restarts.** The rate's burst is 100 ms' worth (it also absorbs late timer wake-ups, which a burst of one would lose as rate),
//!   so when a pause ends the waiting requests start at the rate, not with
//!   every slot at once.
//!
//! The pause a 429 or 503 asks for is the scheduler's, as before;
//! this only decides the pace once it has ended.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::gcra::Gcra;

/// A refusal multiplies the rate by this.
pub(crate) const DECREASE: f64 = 0.85;

/// Each second of successes (after slow start) adds this share of the rate
/// at the last lowering.
pub(crate) const INCREASE: f64 = 0.002;

/// The refusal that ends slow start multiplies the rate by this.
pub(crate) const AFTER_SLOW_START: f64 = 0.5;

/// What the server accepted while busy, times this, bounds a lowered rate
/// (the server's burst inflates the measure).
pub(crate) const ACCEPTED_SHARE: f64 = 0.92;

/// The refusal that ends slow start never lowers the rate below this share.
pub(crate) const SLOW_START_FLOOR: f64 = 0.3;

/// A refusal never lowers the rate below this share of it.
pub(crate) const DEEPEST: f64 = 0.5;

/// Slow start: each success adds this many requests a second.
pub(crate) const SLOW_START: f64 = 1.0;

/// A pause: completions this far apart end a busy stretch.
const GAP: Duration = Duration::from_millis(250);

/// The shortest busy stretch whose successes measure the accepted rate.
const SPAN: Duration = Duration::from_millis(300);

/// The slowest rate discovery sets, in requests a second.
pub(crate) const LOWEST: f64 = 1.0;

/// Completions further back than this no longer count as recent.
const RECENT: Duration = Duration::from_secs(1);

/// The most recent completions kept (a bound on memory at any rate).
const KEEP: usize = 100_000;

/// A rate change smaller than this (relative) keeps the limiter as it is.
const REBUILD_TOLERANCE: f64 = 0.01;

/// One origin's discovered rate.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    /// Requests a second, once a refusal started it.
    rate: Option<f64>,
    /// The rate at the last lowering (the additive step is a share of it).
    lowered_to: f64,
    /// Still doubling: no refusal of a request sent under the rate yet.
    slow_start: bool,
    gcra: Option<Gcra>,
    /// Starts of the origin so far.
    dispatched: u64,
    /// The starts so far when the rate was last lowered (or started).
    lowered_after: u64,
    /// When recent attempts started.
    starts: VecDeque<Instant>,
    /// When recent attempts completed.
    completions: VecDeque<Instant>,
    /// When recent attempts succeeded.
    successes: VecDeque<Instant>,
    /// Since when completions have come without a gap (a pause ends one).
    active_since: Option<Instant>,
    /// Successes since `active_since`.
    stretch_successes: u64,
    /// Refusals that lowered the rate.
    lowerings: u64,
    /// Time the head request waited for the rate.
    paced: Duration,
    held_since: Option<Instant>,
}

impl Discovered {
    /// The rate, once a refusal started it.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// How many refusals lowered the rate.
    pub(crate) fn lowerings(&self) -> u64 {
        self.lowerings
    }

    /// The limiter's burst.
    pub(crate) fn burst(&self) -> u64 {
        self.gcra.as_ref().map_or(0, Gcra::burst)
    }

    /// When the discovered rate lets the next request start, if not now.
    pub(crate) fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        let at = self
            .gcra
            .as_mut()
            .map(|g| g.ready_at(now, 1))
            .filter(|&at| at > now);
        if at.is_some() {
            self.held_since.get_or_insert(now);
        }
        at
    }

    /// How long the head request waited for the rate.
    pub(crate) fn paced(&self) -> Duration {
        self.paced
    }

    /// A request starts now; returns which start of the origin it is.
    pub(crate) fn start(&mut self, now: Instant) -> u64 {
        if let Some(g) = &mut self.gcra {
            g.take(now, 1);
        }
        if let Some(since) = self.held_since.take() {
            self.paced += now.saturating_duration_since(since);
        }
        self.dispatched += 1;
        trim(&mut self.starts, now);
        self.starts.push_back(now);
        self.dispatched
    }

    /// An attempt completed: `refused` when it was a 429 or 503 that no
    /// rate-limit header predicted; `number` is the start it answers;
    /// `ceiling` the user's own rate for the origin, if any. True when the
    /// rate changed enough to tell.
    pub(crate) fn completed(
        &mut self,
        refused: bool,
        success: bool,
        number: u64,
        ceiling: Option<f64>,
        now: Instant,
    ) -> bool {
        self.note(success, now);
        let before = self.rate;
        if refused {
            self.lower(number, ceiling, now);
        } else if success {
            self.raise(ceiling);
        }
        self.rebuild(now);
        match (before, self.rate) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => refused && (a - b).abs() > a * REBUILD_TOLERANCE,
            _ => false,
        }
    }

    fn note(&mut self, success: bool, now: Instant) {
        let gap = self
            .completions
            .back()
            .is_none_or(|&t| now.saturating_duration_since(t) > GAP);
        if gap {
            self.active_since = Some(now);
            self.stretch_successes = 0;
        }
        self.stretch_successes += u64::from(success);
        trim(&mut self.completions, now);
        trim(&mut self.successes, now);
        self.completions.push_back(now);
        if success {
            self.successes.push_back(now);
        }
    }

    /// Successes a second over the recent time the origin was busy (not
    /// paused), when that time is long enough to say: while sluice sends
    /// faster than the server's limit, about that limit.
    fn accepted(&self, now: Instant) -> Option<f64> {
        let since = self.active_since?.max(now.checked_sub(RECENT)?);
        let span = now.saturating_duration_since(since);
        if span < SPAN {
            return None;
        }
        let count = self.successes.iter().filter(|&&t| t >= since).count();
        Some(count as f64 / span.as_secs_f64())
    }

    /// Successes a second since the origin was last idle or paused (the
    /// whole stretch, not only its last second), when it is long enough.
    fn stretch(&self, now: Instant) -> Option<f64> {
        let span = now.saturating_duration_since(self.active_since?);
        (span >= SPAN).then(|| self.stretch_successes as f64 / span.as_secs_f64())
    }

    /// Starts in the last second, per second: what the server was sent
    /// when it first refused.
    fn observed(&self) -> f64 {
        self.starts.len() as f64 / RECENT.as_secs_f64()
    }

    fn lower(&mut self, number: u64, ceiling: Option<f64>, now: Instant) {
        if number <= self.lowered_after {
            return;
        }
        let next = match self.rate {
            None => self.observed(),
            Some(rate) if self.slow_start => {
                // Slow start overshoots by as much as the server's burst
                // let it: halved, as TCP does, and no faster than the
                // server accepted over the whole climb (its slow start
                // below the limit and its overshoot above, averaged: under
                // the limit, where halving alone may stay above it and
                // cost another refusal, another pause).
                self.slow_start = false;
                let halved = rate * AFTER_SLOW_START;
                self.stretch(now)
                    .map_or(halved, |a| halved.min(a).max(rate * SLOW_START_FLOOR))
            }
            Some(rate) => {
                // What the server accepted bounds the new rate, within
                // reason: the factor alone would take several more
                // refusals (each a pause) to come down from an overshoot.
                let accepted = self.accepted(now).unwrap_or(f64::INFINITY);
                (rate * DECREASE)
                    .min(accepted * ACCEPTED_SHARE)
                    .max(rate * DEEPEST)
            }
        };
        if self.rate.is_none() {
            self.slow_start = true;
        }
        let next = cap(next.max(LOWEST), ceiling);
        self.rate = Some(next);
        self.lowered_to = next;
        self.lowered_after = self.dispatched;
        self.lowerings += 1;
    }

    fn raise(&mut self, ceiling: Option<f64>) {
        let Some(rate) = self.rate else {
            return;
        };
        let step = if self.slow_start {
            SLOW_START
        } else {
            INCREASE * self.lowered_to / rate
        };
        self.rate = Some(cap(rate + step, ceiling));
    }

    /// A new limiter when the rate moved; it keeps what the old one had
    /// spent, so a rebuild never lets more through at once.
    fn rebuild(&mut self, now: Instant) {
        let Some(rate) = self.rate else {
            return;
        };
        let burst = ((rate / 10.0).floor() as u64).max(1);
        let same = self.gcra.as_ref().is_some_and(|g| {
            g.burst() == burst && (g.per_second() - rate).abs() <= rate * REBUILD_TOLERANCE
        });
        if same {
            return;
        }
        let mut gcra = Gcra::with_rate(rate, burst, now);
        match &self.gcra {
            Some(old) => gcra.hold(now, old.available(now)),
            // The first limiter starts empty: the refusal says the
            // server's allowance is spent.
            None => gcra.set_available(now, 0),
        }
        self.gcra = Some(gcra);
    }
}

/// Forgets instants older than [`RECENT`], and the oldest beyond [`KEEP`].
fn trim(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) > RECENT)
        || times.len() >= KEEP
    {
        times.pop_front();
    }
}

fn cap(rate: f64, ceiling: Option<f64>) -> f64 {
    match ceiling {
        Some(c) => rate.min(c),
        None => rate.min(crate::ratelimit::MAX_RATE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_refusal_starts_from_the_recent_sending_rate() {
        let t0 = Instant::now();
        let mut d = Discovered::default();
        for i in 0..40 {
            d.start(at(t0, i * 10));
            assert!(!d.completed(false, true, i + 1, None, at(t0, i * 10 + 5)));
        }
        assert_eq!(d.rate(), None, "no refusal, no rate");
        assert!(d.completed(true, false, 40, None, at(t0, 400)));
        assert_eq!(d.rate(), Some(40.0));
        // Started empty: the next start waits.
        assert!(d.ready_at(at(t0, 400)).is_some());
    }

    #[test]
    fn a_refusal_lowers_once_per_round_trip() {
        let t0 = Instant::now();
        let mut d = Discovered::default();
        for n in 1..=20 {
            d.start(t0);
            if n <= 10 {
                d.completed(false, true, n, None, t0);
            }
        }
        d.completed(true, false, 11, None, t0);
        let first = d.rate().expect("started");
        // The other 19 were sent before the lowering: no further change.
        assert_eq!(first, 20.0);
        for n in 12..=20 {
            d.completed(true, false, n, None, t0);
        }
        assert_eq!(d.rate(), Some(first));
        // A request sent after it, refused, lowers it (ending slow start),
        // and the next one by the factor.
        let n = d.start(at(t0, 2000));
        d.completed(true, false, n, None, at(t0, 2001));
        let halved = d.rate().expect("rate");
        assert!(
            (halved - first * AFTER_SLOW_START).abs() < 1e-9,
            "{halved} vs {first}"
        );
        let n = d.start(at(t0, 4000));
        d.completed(true, false, n, None, at(t0, 4001));
        let lowered = d.rate().expect("rate");
        assert!(
            (lowered - halved * DECREASE).abs() < 1e-9,
            "{lowered} vs {halved}"
        );
        assert_eq!(d.lowerings(), 3);
    }

    #[test]
    fn successes_raise_the_rate_never_above_the_ceiling() {
        let t0 = Instant::now();
        let mut d = Discovered::default();
        let n = d.start(t0);
        d.completed(true, false, n, Some(5.0), t0);
        assert!(d.rate().expect("rate") <= 5.0);
        for i in 0..1000 {
            let n = d.start(at(t0, i));
            d.completed(false, true, n, Some(5.0), at(t0, i + 1));
            assert!(d.rate().expect("rate") <= 5.0);
        }
        assert_eq!(d.rate(), Some(5.0));
    }

    #[test]
    fn slow_start_ends_halved_and_then_a_second_of_successes_adds_a_share() {
        let t0 = Instant::now();
        let mut d = Discovered::default();
        for _ in 0..100 {
            let n = d.start(t0);
            d.completed(false, true, n, None, t0);
        }
        let n = d.start(t0);
        d.completed(true, false, n, None, t0);
        assert!(d.slow_start);
        let started = d.rate().expect("rate");
        let n = d.start(at(t0, 10));
        d.completed(true, false, n, None, at(t0, 10));
        assert!(!d.slow_start);
        let lowered = d.rate().expect("rate");
        assert!((lowered - started * AFTER_SLOW_START).abs() < 1e-9);
        // About `rate` successes make a second's worth.
        let mut rate = lowered;
        let mut ms = 20;
        let mut count = 0.0;
        while count < lowered {
            let n = d.start(at(t0, ms));
            d.completed(false, true, n, None, at(t0, ms));
            ms += 1;
            count += 1.0;
            rate = d.rate().expect("rate");
        }
        let gained = rate - lowered;
        assert!(
            gained > INCREASE * lowered * 0.9 && gained < INCREASE * lowered * 1.1,
            "{gained}"
        );
    }

    #[test]
    fn a_restart_after_a_pause_is_paced_not_all_at_once() {
        let t0 = Instant::now();
        let mut d = Discovered::default();
        for _ in 0..100 {
            let n = d.start(t0);
            d.completed(false, true, n, None, t0);
        }
        let n = d.start(t0);
        d.completed(true, false, n, None, t0);
        // A second later (the pause over), 15 waiting requests start no
        // faster than the rate's small burst allows.
        let resume = at(t0, 1000);
        let mut now = resume;
        let mut starts = Vec::new();
        while starts.len() < 15 {
            match d.ready_at(now) {
                Some(at) => now = at,
                None => {
                    d.start(now);
                    starts.push(now);
                }
            }
        }
        let rate = d.rate().expect("rate");
        let burst = d.burst();
        // A tenth of a second's worth: fewer than the 15 waiting.
        assert!(burst as f64 <= rate / 10.0 && burst < 15, "{burst}");
        let spread = (starts[14] - starts[0]).as_secs_f64();
        assert!(spread >= (15 - burst) as f64 / rate * 0.99, "{spread}");
    }

    proptest::proptest! {
        /// Whatever the completions, the rate stays within the ceiling and
        /// at least the floor, and each lowering answers a request started
        /// after the previous one.
        #[test]
        fn the_rate_never_exceeds_the_ceiling_and_lowers_once_per_round_trip(
            events in proptest::collection::vec((0u8..4, 0u64..20, 0u64..50), 1..300),
            ceiling in proptest::option::of(1.0f64..500.0),
        ) {
            let t0 = Instant::now();
            let mut d = Discovered::default();
            let mut ms = 0;
            let mut in_flight: Vec<u64> = Vec::new();
            let mut last_lowering_after = 0;
            for (kind, pick, step) in events {
                ms += step;
                let now = at(t0, ms);
                if kind == 0 || in_flight.is_empty() {
                    if d.ready_at(now).is_none() {
                        in_flight.push(d.start(now));
                    }
                    continue;
                }
                let number = in_flight.remove(pick as usize % in_flight.len());
                let before = d.lowerings();
                d.completed(kind == 1, kind == 2, number, ceiling, now);
                if d.lowerings() > before {
                    proptest::prop_assert!(number > last_lowering_after);
                    last_lowering_after = d.dispatched;
                }
                if let Some(rate) = d.rate() {
                    proptest::prop_assert!(rate <= ceiling.unwrap_or(f64::MAX));
                    proptest::prop_assert!(rate >= LOWEST.min(ceiling.unwrap_or(f64::MAX)));
                }
            }
        }
    }
}
