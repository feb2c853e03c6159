//! An exact GCRA (generic cell rate algorithm) limiter, for `--rate`,
//! `--per-host-rate` and `--budget`.
//!
//! governor implements the same algorithm, but offers no way to ask "when
//! could n cells pass?" without taking them. An attempt starts only when its
//! global rate, per-host rate and budget all agree at the same instant, so each
//! limiter must be asked first and charged after. Time is kept as integer
//! nanoseconds scaled by the rate's count, so `7/s` is exact, not rounded.
//!
//! Timers are late: tokio's wheel ticks in milliseconds and rounds deadlines
//! up. While callers wait for the limiter (a cell was refused), cells are
//! charged at the instants they were due, up to [`CATCH_UP`] before the
//! caller's `now`, not at the late wake-up: so lateness never costs rate,
//! and every cell that is due passes in the same wake-up. The bound holds at
//! the instants the limiter charges; at the real starts a window may hold the
//! cells of `CATCH_UP` more.

use std::time::Duration;

use tokio::time::Instant;

use crate::units::Rate;

/// Periods are stretched by this ratio (201/200: 0.5% below the rate).
const PACING: (u128, u128) = (201, 200);

/// The most timer lateness a waiting caller is credited with: tokio's timer
/// fires up to about two milliseconds late. Over windows of 0.6 s and more
/// the credit stays inside the 0.5% pacing margin.
pub const CATCH_UP: Duration = Duration::from_millis(3);

/// How late a precise timer (the driver's `timerfd` alarm) fires on purpose, so that
/// one wake-up starts every request due within it: a little more than the
/// period at 1000/s (1.005 ms, paced), so at that rate a wake-up starts two.
/// Those starts are late, never early, and charged at the instants they
/// were due: the slack and the timer's own lateness together must stay
/// inside [`CATCH_UP`], which leaves 1.8 ms for the latter (a `timerfd`
/// fires within tens of microseconds on a quiet machine). tokio's wheel,
/// up to 2 ms late on its own, gets none.
pub const TIMER_SLACK: Duration = Duration::from_micros(1200);

/// A GCRA limiter: at most `burst + t / interval` cells in any window `t`.
#[derive(Clone, Debug)]
pub struct Gcra {
    origin: Instant,
    /// Period in nanoseconds; one cell costs `period` scaled units.
    period: u128,
    /// Time is scaled by this: scaled = nanos * count.
    count: u128,
    burst: u128,
    /// Theoretical arrival time, in scaled units since `origin`.
    tat: u128,
    /// A caller waits for this limiter: a cell was refused, and since then
    /// no cell has found it idle for longer than [`CATCH_UP`].
    backlogged: bool,
    /// Cells charged so far: a start's [`Mark`] is this count before it.
    charged: u64,
}

/// Where a start's cells fall among a limiter's charges (the cells charged
/// before it), for [`Gcra::began`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark(u64);

impl Gcra {
    /// A limiter for `rate` that lets `burst` cells bunch up.
    ///
    /// Cells are paced 0.5% below the rate: the bound holds at sluice by
    /// construction, and the margin keeps it holding at the server too,
    /// where network and scheduling jitter can bring arrivals closer
    /// together than their starts were.
    pub fn new(rate: Rate, burst: u64, now: Instant) -> Gcra {
        Gcra {
            origin: now,
            period: (rate.per.as_nanos() * PACING.0).div_ceil(PACING.1),
            count: u128::from(rate.count.get()),
            burst: u128::from(burst.max(1)),
            tat: 0,
            backlogged: false,
            charged: 0,
        }
    }

    /// A limiter for a learned rate of `per_second` cells a second (any
    /// finite positive fraction; at most 10^9), paced like [`Gcra::new`].
    /// The period is kept in whole nanoseconds: exact enough for any rate a
    /// server reports, and never faster than asked (it rounds up).
    pub fn with_rate(per_second: f64, burst: u64, now: Instant) -> Gcra {
        let per_second = per_second.clamp(1e-6, 1e9);
        let nanos = (1e9 / per_second).ceil() as u128;
        Gcra {
            origin: now,
            period: (nanos.max(1) * PACING.0).div_ceil(PACING.1),
            count: 1,
            burst: u128::from(burst.max(1)),
            tat: 0,
            backlogged: false,
            charged: 0,
        }
    }

    /// Lets at most `available` cells pass from `now` on before the rate
    /// refills more (a negative `available` is a debt the rate repays
    /// first). Only ever holds back more than the limiter already does:
    /// what a server reports can lower what passes, never raise it.
    pub fn hold(&mut self, now: Instant, available: i64) {
        let now_s = self.scaled(now);
        let short = self.burst as i128 - i128::from(available);
        let tat = if short <= 0 {
            now_s
        } else {
            now_s + (short as u128).saturating_mul(self.period)
        };
        self.tat = self.tat.max(tat);
    }

    /// How many cells could pass at `now` (negative: a debt that must be
    /// repaid first), at most the burst.
    pub fn available(&self, now: Instant) -> i64 {
        let room = (self.scaled(now) + self.burst * self.period) as i128 - self.tat as i128;
        let cells = room.div_euclid(self.period as i128);
        i64::try_from(cells.min(self.burst as i128)).unwrap_or(i64::MIN)
    }

    /// Lets exactly `available` cells (at most the burst; negative: a debt)
    /// pass at `now` before the rate refills more: what a server said it
    /// has left, looser or tighter than this limiter's own count.
    pub fn set_available(&mut self, now: Instant, available: i64) {
        let short = self.burst as i128 - i128::from(available);
        let now_s = self.scaled(now) as i128;
        let tat = now_s + short.max(0) * self.period as i128;
        self.tat = u128::try_from(tat).unwrap_or(0);
    }

    /// The rate the limiter lets through, in cells a second, before the
    /// pacing margin.
    pub fn per_second(&self) -> f64 {
        self.count as f64 * 1e9 / self.period as f64 * PACING.0 as f64 / PACING.1 as f64
    }

    /// The most cells that can ever pass at once.
    pub fn burst(&self) -> u64 {
        u64::try_from(self.burst).unwrap_or(u64::MAX)
    }

    fn scaled(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.origin).as_nanos() * self.count
    }

    /// The earliest instant at which `cells` may pass (`now` if they may now).
    /// Cells beyond the burst never pass; callers reject such costs up front.
    /// A later instant means the caller waits (see [`CATCH_UP`]).
    pub fn ready_at(&mut self, now: Instant, cells: u64) -> Instant {
        let needed =
            (self.tat + u128::from(cells) * self.period).saturating_sub(self.burst * self.period);
        let now_s = self.scaled(now);
        if needed <= now_s {
            if needed + self.catch_up() < now_s {
                // Free for longer than any timer is late: idle, not waiting.
                self.backlogged = false;
            }
            return now;
        }
        self.backlogged = true;
        let nanos = div_ceil(needed, self.count);
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Charges `cells`; call only when `ready_at(now, cells) <= now`. While
    /// callers wait, cells are charged when they were due (at most
    /// [`CATCH_UP`] ago), not at the late instant they come. The mark names
    /// these cells for [`Gcra::began`].
    pub fn take(&mut self, now: Instant, cells: u64) -> Mark {
        let now_s = self.scaled(now);
        let from = if self.backlogged {
            now_s.saturating_sub(self.catch_up())
        } else {
            now_s
        };
        self.tat = self.tat.max(from) + u128::from(cells) * self.period;
        self.mark(cells)
    }

    /// The start charged at `mark` really went out at `at`. Its cells count
    /// as charged no sooner than [`CATCH_UP`] before `at`, and every cell
    /// charged after them waits its turn behind them again: the limiter's
    /// state becomes what it would be had the start been charged then (a
    /// GCRA's next instant is the latest of each charge's instant plus the
    /// periods of the cells charged since). True when that holds the next
    /// cell back longer: the start slipped past what lateness is credited.
    pub fn began(&mut self, mark: Mark, at: Instant) -> bool {
        let since = u128::from(self.charged.saturating_sub(mark.0));
        let from = self.scaled(at).saturating_sub(self.catch_up());
        let tat = from + since * self.period;
        if tat <= self.tat {
            return false;
        }
        self.tat = tat;
        true
    }

    fn mark(&mut self, cells: u64) -> Mark {
        let mark = Mark(self.charged);
        self.charged = self.charged.saturating_add(cells);
        mark
    }

    fn catch_up(&self) -> u128 {
        CATCH_UP.as_nanos() * self.count
    }

    /// The earliest instant, not before `now`, at which `cells` conform,
    /// with no credit for late timers: the arithmetic the shared limiter's
    /// script does on Redis ([`crate::shared`]), which reserves ahead and
    /// has no timer to be late.
    pub fn earliest(&self, now: Instant, cells: u64) -> Instant {
        let needed =
            (self.tat + u128::from(cells) * self.period).saturating_sub(self.burst * self.period);
        let nanos = div_ceil(needed, self.count);
        let at = self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        at.max(now)
    }

    /// Charges `cells` at `at` (an instant [`Gcra::earliest`] gave, or later).
    pub fn charge(&mut self, at: Instant, cells: u64) -> Mark {
        self.tat = self.tat.max(self.scaled(at)) + u128::from(cells) * self.period;
        self.mark(cells)
    }

    /// The limiter's shape in integer nanoseconds, reduced: one cell costs
    /// `period` units, time counts `count` units per nanosecond, and
    /// `burst` cells may bunch up. The shared limiter passes these to Redis
    /// so both sides do the same exact arithmetic.
    pub fn shape(&self) -> (u128, u128, u128) {
        let g = gcd(self.period, self.count);
        (self.period / g, self.count / g, self.burst)
    }
}

/// `a / b` rounded up, in 64 bits while both fit (a run's first 200 days
/// at 1000/s): a 128-bit division is a slow library call, and it is on
/// every limiter check.
fn div_ceil(a: u128, b: u128) -> u128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from(a.div_ceil(b)),
        _ => a.div_ceil(b),
    }
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    /// Simulates greedy starts and counts them in every window.
    fn starts(gcra: &mut Gcra, t0: Instant, horizon: Duration) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut now = t0;
        while now < t0 + horizon {
            let at = gcra.ready_at(now, 1);
            if at > now {
                now = at;
                continue;
            }
            gcra.take(now, 1);
            out.push(now - t0);
        }
        out
    }

    #[test]
    fn never_exceeds_rate_times_window_plus_burst() {
        let t0 = Instant::now();
        for (r, burst) in [("10/s", 1), ("7/s", 3), ("3000/m", 5), ("1000/s", 1)] {
            let rate = rate(r);
            let mut g = Gcra::new(rate, burst, t0);
            let s = starts(&mut g, t0, Duration::from_secs(3));
            let per_sec = rate.per_second();
            for (i, &start) in s.iter().enumerate() {
                let window = Duration::from_millis(500);
                let n = s[i..].iter().take_while(|&&t| t < start + window).count() as f64;
                assert!(n <= per_sec * 0.5 + burst as f64, "{r}: {n} in 500ms");
            }
            // Never above rate x 3 s + burst; reached within 1% (paced 0.5% below).
            let (got, most) = (s.len() as f64, per_sec * 3.0 + burst as f64);
            assert!(
                got <= most && got >= per_sec * 3.0 * 0.99,
                "{r}: {got} starts in 3 s"
            );
        }
    }

    /// Wakes as tokio's timer does: at the next millisecond tick after the
    /// deadline, plus some scheduling delay.
    #[test]
    fn late_timers_cost_no_rate() {
        let t0 = Instant::now();
        for r in ["1000/s", "400/s", "7/s"] {
            let rate = rate(r);
            let mut g = Gcra::new(rate, 1, t0);
            let (mut now, mut s) = (t0, Vec::new());
            while now < t0 + Duration::from_secs(5) {
                let at = g.ready_at(now, 1);
                if at > now {
                    let tick = (at - t0).as_nanos().div_ceil(1_000_000) as u64;
                    now = t0 + Duration::from_millis(tick) + Duration::from_micros(300);
                    continue;
                }
                g.take(now, 1);
                s.push(now - t0);
            }
            let per_sec = rate.per_second();
            let got = s.len() as f64 / 5.0;
            assert!(got >= per_sec * 0.99, "{r}: {got}/s");
            // Never above the rate over a second (the catch-up credit fits
            // inside the pacing margin), and never two at once at burst 1
            // below 500/s.
            for (i, &start) in s.iter().enumerate() {
                let n = s[i..]
                    .iter()
                    .take_while(|&&t| t < start + Duration::from_secs(1))
                    .count() as f64;
                assert!(n <= per_sec + 1.0, "{r}: {n} in 1 s");
            }
            if per_sec < 500.0 {
                assert!(s.windows(2).all(|w| w[1] > w[0]), "{r}");
            }
        }
    }

    #[test]
    fn a_fractional_rate_and_a_hold() {
        let t0 = Instant::now();
        let mut g = Gcra::with_rate(2.5, 3, t0);
        // Three at once (the burst), then one per 400 ms (plus the pacing).
        for _ in 0..3 {
            assert_eq!(g.ready_at(t0, 1), t0);
            g.take(t0, 1);
        }
        assert_eq!(g.ready_at(t0, 1), t0 + Duration::from_millis(402));
        // A fresh limiter told only one cell is left lets one pass, then
        // waits a period; told of a debt of two, it waits three periods.
        let mut g = Gcra::with_rate(10.0, 5, t0);
        g.hold(t0, 1);
        assert_eq!(g.ready_at(t0, 1), t0);
        g.take(t0, 1);
        assert_eq!(g.ready_at(t0, 1), t0 + Duration::from_micros(100_500));
        let mut g = Gcra::with_rate(10.0, 5, t0);
        g.hold(t0, -2);
        assert_eq!(g.ready_at(t0, 1), t0 + Duration::from_micros(301_500));
        // A hold never loosens: more available than the limiter allows is ignored.
        g.hold(t0, 5);
        assert_eq!(g.ready_at(t0, 1), t0 + Duration::from_micros(301_500));
    }

    /// A start that went out later than the lateness credited is re-timed:
    /// the next waits a period from its real start (less the credit), and
    /// so does every start charged after it.
    #[test]
    fn a_start_that_began_late_is_retimed() {
        let t0 = Instant::now();
        let period = Duration::from_micros(10_050);
        let mut g = Gcra::new(rate("100/s"), 1, t0);
        let first = g.take(t0, 1);
        // Within the credit: nothing moves.
        assert!(!g.began(first, t0 + Duration::from_millis(2)));
        assert_eq!(g.ready_at(t0, 1), t0 + period);
        // 20 ms late: the next goes a period after 17 ms.
        assert!(g.began(first, t0 + Duration::from_millis(20)));
        assert_eq!(g.ready_at(t0, 1), t0 + Duration::from_millis(17) + period);
        // Told after a second start was charged, both wait behind it.
        let mut g = Gcra::new(rate("100/s"), 1, t0);
        let first = g.take(t0, 1);
        g.take(t0 + period, 1);
        assert!(g.began(first, t0 + Duration::from_millis(20)));
        assert_eq!(
            g.ready_at(t0, 1),
            t0 + Duration::from_millis(17) + 2 * period
        );
    }

    #[test]
    fn idle_time_earns_no_credit() {
        let t0 = Instant::now();
        let mut g = Gcra::new(rate("10/s"), 1, t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(g.ready_at(later, 1), later);
        g.take(later, 1);
        // A full period (plus pacing) after the last start, not less.
        assert_eq!(g.ready_at(later, 1), later + Duration::from_micros(100_500));
    }

    #[test]
    fn weighted_cells_wait_their_turn() {
        let t0 = Instant::now();
        let mut g = Gcra::new(rate("100/s"), 100, t0);
        assert_eq!(g.ready_at(t0, 100), t0);
        g.take(t0, 100);
        // 50 cells are back after half a second (plus the 0.5% pacing), not before.
        let back = t0 + Duration::from_micros(502_500);
        assert_eq!(g.ready_at(t0, 50), back);
        assert_eq!(g.ready_at(back, 50), back);
        let just_before = back - Duration::from_micros(1);
        assert_eq!(g.ready_at(just_before, 50), back);
    }
}
