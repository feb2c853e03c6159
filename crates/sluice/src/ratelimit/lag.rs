//! Where a server's whole seconds fall on the local clock, from the lags
//! of its responses' `Date`s ([`super::Snapshot::date_lag`]), robust to a
//! `Date` that is not the server's clock.
//!
//! A lag is the clocks' skew, plus how far into its second the server
//! answered (a `Date` has whole seconds), plus the way back. The least lag
//! seen places the server's seconds: a response whose lag exceeds it by
//! `d` was read `d` later into the server's second than the quickest one,
//! so a whole-second reset counted from its `Date` ends `d` earlier than
//! the reset read from now.
//!
//! One response with a far-off `Date` (a cache or proxy serving a stale
//! answer, a misconfigured node behind a balancer) would, as the least lag,
//! move every later window's end (far future: every end to "now", so each
//! window would open early and be refused), and as a response of its own
//! move its one end. So a lag counts only when it is in line with the
//! recent ones: within [`SPREAD`] of their median (a second of phase plus
//! round-trip variation). A lag out of line neither moves the least lag nor
//! is corrected by it (its reset is read from now, which is never early),
//! and a least lag no longer in line with the recent lags (it came first,
//! before there was a median to judge it by) is replaced by the least of
//! the recent lags that are.

use std::collections::VecDeque;
use std::time::Duration;

/// How many recent lags the median is taken over.
const RECENT: usize = 15;

/// How far from the recent median a lag may be and still be the server's
/// clock, in microseconds: a second of phase within the `Date`'s second,
/// and half a second of round-trip variation.
pub(crate) const SPREAD: i64 = 1_500_000;

/// The lags of one origin's dated responses.
#[derive(Debug, Default)]
pub(crate) struct DateLags {
    recent: VecDeque<i64>,
    least: Option<i64>,
}

impl DateLags {
    /// Takes one response's lag (microseconds, see `date_lag`); returns how
    /// much earlier than its reset, read from now, its window ends: its lag
    /// beyond the least one, or nothing when it is out of line.
    pub(crate) fn early(&mut self, lag: i64) -> Duration {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(lag);
        let median = self.median();
        let in_line = |l: i64| l.abs_diff(median) <= SPREAD.unsigned_abs();
        self.least = match self.least {
            Some(least) if in_line(least) => {
                Some(if in_line(lag) { least.min(lag) } else { least })
            }
            _ => self.recent.iter().copied().filter(|&l| in_line(l)).min(),
        };
        match self.least {
            Some(least) if in_line(lag) => {
                Duration::from_micros(u64::try_from(lag.saturating_sub(least)).unwrap_or(0))
            }
            _ => Duration::ZERO,
        }
    }

    /// The least lag in line, once there is one.
    #[cfg(test)]
    pub(crate) fn least(&self) -> Option<i64> {
        self.least
    }

    /// The upper median of the recent lags (with two, the later reading
    /// of the clock: a first far-off lag is then judged by the second).
    fn median(&self) -> i64 {
        let mut sorted: Vec<i64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        sorted[sorted.len() / 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const MS: i64 = 1_000;

    /// Each row: the lags in arrival order, then the `early` expected for
    /// each (milliseconds) and the least lag at the end.
    #[test]
    fn a_far_off_date_moves_no_window_end() {
        let hour = 3600 * S;
        let rows: &[(&str, &[i64], &[i64], i64)] = &[
            (
                "consistent lags: each is read against the least",
                &[300 * MS, 100 * MS, 900 * MS, 250 * MS],
                &[0, 0, 800, 150],
                100 * MS,
            ),
            (
                "one far-future Date in the middle (lag an hour negative)",
                &[300 * MS, 100 * MS, -hour, 900 * MS, 250 * MS],
                &[0, 0, 0, 800, 150],
                100 * MS,
            ),
            (
                "one far-past Date in the middle (lag an hour)",
                &[300 * MS, 100 * MS, hour, 900 * MS],
                &[0, 0, 0, 800],
                100 * MS,
            ),
            (
                "the very first Date far in the future",
                &[-hour, 300 * MS, 100 * MS, 900 * MS],
                &[0, 0, 0, 800],
                100 * MS,
            ),
            (
                "the very first Date far in the past",
                &[hour, 300 * MS, 100 * MS, 900 * MS],
                &[0, 0, 0, 800],
                100 * MS,
            ),
            (
                "a skewed clock is no outlier: the lags are all an hour off",
                &[hour + 300 * MS, hour + 100 * MS, hour + 900 * MS],
                &[0, 0, 800],
                hour + 100 * MS,
            ),
            (
                "a Date 3 s off is out of line too",
                &[300 * MS, 100 * MS, 400 * MS, -3 * S, 500 * MS],
                &[0, 0, 300, 0, 400],
                100 * MS,
            ),
        ];
        for (name, lags, early, least) in rows {
            let mut clock = DateLags::default();
            let got: Vec<i64> = lags
                .iter()
                .map(|&lag| clock.early(lag).as_micros() as i64 / MS)
                .collect();
            assert_eq!(&got, early, "{name}");
            assert_eq!(clock.least(), Some(*least), "{name}");
        }
    }

    /// After many bad `Date`s are gone from the recent ones, the least lag
    /// is the consistent responses' again.
    #[test]
    fn a_run_of_bad_dates_is_forgotten() {
        let mut clock = DateLags::default();
        for _ in 0..20 {
            clock.early(-3600 * S);
        }
        for _ in 0..RECENT {
            clock.early(200 * MS);
        }
        assert_eq!(clock.least(), Some(200 * MS));
        assert_eq!(clock.early(700 * MS), Duration::from_millis(500));
    }
}
