//! An exact GCRA (generic cell rate algorithm) limiter, for `--rate`,
//! `--per-host-rate` and `--budget`.
//!
//! governor implements the same algorithm, but offers no way to ask "when
//! could n cells pass?" without taking them. An attempt starts only when its
//! global rate, per-host rate and budget all agree at the same instant, so each
//! limiter must be asked first and charged after. Time is kept as integer
//! nanoseconds scaled by the rate's count, so `7/s` is exact, not rounded.

use std::time::Duration;

use tokio::time::Instant;

use crate::units::Rate;

/// Periods are stretched by this ratio (201/200: 0.5% below the rate).
const PACING: (u128, u128) = (201, 200);

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
}

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
        }
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
    pub fn ready_at(&self, now: Instant, cells: u64) -> Instant {
        let needed =
            (self.tat + u128::from(cells) * self.period).saturating_sub(self.burst * self.period);
        let now_s = self.scaled(now);
        if needed <= now_s {
            return now;
        }
        let nanos = needed.div_ceil(self.count);
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Charges `cells`; call only when `ready_at(now, cells) <= now`.
    pub fn take(&mut self, now: Instant, cells: u64) {
        self.tat = self.tat.max(self.scaled(now)) + u128::from(cells) * self.period;
    }
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
