//! A run over time in at most [`MAX_INTERVALS`] intervals, whatever its
//! length: when the records span more, adjacent intervals merge in pairs
//! (their width doubles), so a ten-hour run costs what a ten-second one does.
//!
//! Intervals are aligned on the system clock (multiples of their width since
//! 1970), so records may come in any order — several files, resumed runs —
//! and still land in the same intervals.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::stats::Sample;

/// Most intervals kept; between half and all of them are used once the
/// records span more than the narrowest width allows.
pub const MAX_INTERVALS: usize = 200;

/// The narrowest interval, 1/128 s; widths are this times a power of two.
const BASE_NS: u64 = 7_812_500;

/// The widest interval (2^40 × 1/128 s, about 272 years): no overflow.
const MAX_SHIFT: u32 = 40;

/// Most origin pauses kept; later ones merge into the last.
const MAX_PAUSES: usize = 2_000;

/// What happened in one interval.
#[derive(Clone, Debug, Default)]
pub struct Interval {
    /// Latency (µs) of ok requests that started in this interval.
    pub ok: Option<Histogram<u64>>,
    /// Latency (µs) of failed requests (with an attempt) that started here.
    pub failed: Option<Histogram<u64>>,
    /// Ok records completed in this interval.
    pub done_ok: u64,
    /// Failed records (with an attempt) completed in this interval.
    pub done_failed: u64,
    /// Attempts started in this interval.
    pub starts: u64,
    /// Of which retries (not a request's first attempt).
    pub retries: u64,
    /// Attempt time inside this interval, in nanoseconds: divided by the
    /// width it is the mean number of requests in flight.
    pub busy_ns: u128,
}

impl Interval {
    fn merge(&mut self, other: Interval) {
        merge_histogram(&mut self.ok, other.ok);
        merge_histogram(&mut self.failed, other.failed);
        self.done_ok += other.done_ok;
        self.done_failed += other.done_failed;
        self.starts += other.starts;
        self.retries += other.retries;
        self.busy_ns += other.busy_ns;
    }
}

fn merge_histogram(into: &mut Option<Histogram<u64>>, from: Option<Histogram<u64>>) {
    match (into.as_mut(), from) {
        (Some(a), Some(b)) => {
            // Auto-resizing histograms of the same precision always add.
            let _ = a.add(&b);
        }
        (None, Some(b)) => *into = Some(b),
        (_, None) => {}
    }
}

/// A time an origin was paused by the server (429 or 503), from the
/// attempts that asked for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pause {
    /// The origin, `scheme://host:port`.
    pub origin: String,
    /// From the end of the attempt that was told to wait.
    pub from: SystemTime,
    /// To when that request could be sent again.
    pub until: SystemTime,
    /// The statuses that asked for it.
    pub statuses: BTreeSet<u16>,
    /// Attempts answered with one of them.
    pub count: u64,
}

/// Counts over time, in aligned intervals of a power-of-two width.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    shift: u32,
    /// Index (time / width) of the first interval.
    first: u64,
    intervals: VecDeque<Interval>,
    /// Pauses by origin, by start (ns since 1970).
    pauses: BTreeMap<String, BTreeMap<u64, Pause>>,
    pause_count: usize,
}

impl Timeline {
    /// The width of every interval.
    pub fn width(&self) -> Duration {
        Duration::from_nanos(self.width_ns())
    }

    fn width_ns(&self) -> u64 {
        BASE_NS << self.shift
    }

    /// The start of the first interval, if any record had a time.
    pub fn start(&self) -> Option<SystemTime> {
        (!self.intervals.is_empty())
            .then(|| UNIX_EPOCH + Duration::from_nanos(self.first * self.width_ns()))
    }

    /// The intervals, oldest first, without gaps.
    pub fn intervals(&self) -> impl ExactSizeIterator<Item = &Interval> {
        self.intervals.iter()
    }

    /// Origin pauses, by origin then time.
    pub fn pauses(&self) -> impl Iterator<Item = &Pause> {
        self.pauses.values().flat_map(|p| p.values())
    }

    /// Adds one record: its latency at its first start, its completion at
    /// its end, and each attempt's start and time in flight.
    pub fn add(&mut self, s: &Sample) {
        let (Some(start), Some(end)) = (s.started_at, s.ended_at()) else {
            return;
        };
        if s.facts.attempts == 0 {
            return;
        }
        let (start, end) = (nanos(start), nanos(end));
        self.cover(start, end);
        let us = u64::try_from(s.facts.duration.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let at = self.slot(start);
        let h = if s.facts.ok {
            &mut at.ok
        } else {
            &mut at.failed
        };
        let h = h.get_or_insert_with(new_histogram);
        // It grows to fit (auto-resize); clamp only if even that fails.
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
        let done = self.slot(end);
        if s.facts.ok {
            done.done_ok += 1;
        } else {
            done.done_failed += 1;
        }
        match &s.timing {
            Some(t) => {
                for (i, a) in t.attempts.iter().enumerate() {
                    let a_start = start.saturating_add(ms_to_ns(a.start_ms));
                    let a_end = a_start.saturating_add(ms_to_ns(a.duration_ms));
                    self.attempt(a_start, a_end, i > 0);
                    if let (Some(429 | 503), Some(wait), Some(origin)) =
                        (a.status, a.wait_ms, &s.origin)
                    {
                        self.pause(
                            origin,
                            a_end,
                            a_end.saturating_add(ms_to_ns(wait)),
                            a.status,
                        );
                    }
                }
            }
            // Older records: one attempt over the whole duration.
            None => self.attempt(start, end, false),
        }
    }

    fn attempt(&mut self, start: u64, end: u64, retry: bool) {
        self.cover(start, end);
        let slot = self.slot(start);
        slot.starts += 1;
        slot.retries += u64::from(retry);
        let w = self.width_ns();
        let mut t = start;
        while t < end {
            let next = (t / w + 1).saturating_mul(w).min(end);
            self.slot(t).busy_ns += u128::from(next - t);
            t = next;
        }
    }

    fn pause(&mut self, origin: &str, from: u64, until: u64, status: Option<u16>) {
        let slack = self.width_ns();
        let bands = self.pauses.entry(origin.to_string()).or_default();
        // Merge with a band that overlaps or nearly touches this one.
        let near = bands
            .range(..=until.saturating_add(slack))
            .next_back()
            .filter(|(_, p)| nanos(p.until).saturating_add(slack) >= from)
            .map(|(k, _)| *k);
        let full = self.pause_count >= MAX_PAUSES;
        let key = match near.or_else(|| full.then(|| bands.keys().next_back().copied()).flatten()) {
            Some(k) => k,
            None => {
                self.pause_count += 1;
                from
            }
        };
        let band = bands.remove(&key).unwrap_or_else(|| Pause {
            origin: origin.to_string(),
            from: at(from),
            until: at(until),
            statuses: BTreeSet::new(),
            count: 0,
        });
        let merged = Pause {
            from: band.from.min(at(from)),
            until: band.until.max(at(until)),
            count: band.count + 1,
            statuses: band.statuses.into_iter().chain(status).collect(),
            ..band
        };
        bands.insert(nanos(merged.from), merged);
    }

    /// Makes room for `[from, to]`, widening the intervals as needed.
    fn cover(&mut self, from: u64, to: u64) {
        loop {
            let w = self.width_ns();
            let (a, b) = (from / w, to / w);
            let (lo, hi) = if self.intervals.is_empty() {
                (a, b)
            } else {
                let last = self.first + self.intervals.len() as u64 - 1;
                (a.min(self.first), b.max(last))
            };
            if hi - lo < MAX_INTERVALS as u64 || self.shift >= MAX_SHIFT {
                if self.intervals.is_empty() {
                    self.first = lo;
                    self.intervals.push_back(Interval::default());
                }
                while self.first > lo {
                    self.first -= 1;
                    self.intervals.push_front(Interval::default());
                }
                while self.first + (self.intervals.len() as u64) <= hi {
                    self.intervals.push_back(Interval::default());
                }
                return;
            }
            self.widen();
        }
    }

    /// Doubles the width, merging intervals in aligned pairs.
    fn widen(&mut self) {
        self.shift += 1;
        let old_first = self.first;
        self.first = old_first / 2;
        let mut merged: VecDeque<Interval> = VecDeque::new();
        for (i, interval) in std::mem::take(&mut self.intervals).into_iter().enumerate() {
            let at = ((old_first + i as u64) / 2 - self.first) as usize;
            if merged.len() <= at {
                merged.push_back(Interval::default());
            }
            merged[at].merge(interval);
        }
        self.intervals = merged;
    }

    /// The interval holding `t`, which [`Timeline::cover`] made room for.
    fn slot(&mut self, t: u64) -> &mut Interval {
        let i = (t / self.width_ns()).saturating_sub(self.first) as usize;
        let last = self.intervals.len() - 1;
        &mut self.intervals[i.min(last)]
    }
}

fn new_histogram() -> Histogram<u64> {
    // Two significant digits (1%) per interval: enough for p50 and p99
    // lines, and small; the run's overall histogram keeps three.
    Histogram::new(2).expect("2 significant digits is a valid precision")
}

fn nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn at(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn ms_to_ns(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1e6).min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// A percentile of a histogram in milliseconds.
pub fn percentile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.median_equivalent(h.value_at_quantile(q)) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::RecordFacts;
    use crate::timing::{AttemptTime, Timing, Waits};

    fn sample(start_s: f64, ms: f64, ok: bool) -> Sample {
        let started = UNIX_EPOCH + Duration::from_secs_f64(1_800_000_000.0 + start_s);
        Sample {
            facts: RecordFacts {
                ok,
                status: Some(if ok { 200 } else { 500 }),
                kind: None,
                attempts: 1,
                duration: Duration::from_secs_f64(ms / 1000.0),
            },
            message: None,
            started_at: Some(started),
            origin: Some("http://h:1".into()),
            timing: None,
        }
    }

    #[test]
    fn a_long_run_keeps_a_bounded_number_of_intervals_and_every_count() {
        let mut t = Timeline::default();
        // Ten hours, one request a second, in shuffled order.
        let mut order: Vec<u64> = (0..36_000).collect();
        fastrand::Rng::with_seed(7).shuffle(&mut order);
        for s in order {
            t.add(&sample(s as f64, 100.0, s % 10 != 0));
        }
        let n = t.intervals().len();
        assert!((MAX_INTERVALS / 2..=MAX_INTERVALS).contains(&n), "{n}");
        let done: u64 = t.intervals().map(|i| i.done_ok + i.done_failed).sum();
        let failed: u64 = t.intervals().map(|i| i.done_failed).sum();
        assert_eq!((done, failed), (36_000, 3_600));
        let busy: u128 = t.intervals().map(|i| i.busy_ns).sum();
        assert_eq!(busy, 36_000 * 100_000_000);
        assert!(t.width() >= Duration::from_secs(36_000 / MAX_INTERVALS as u64));
    }

    #[test]
    fn a_short_run_gets_fine_intervals_and_its_percentiles() {
        let mut t = Timeline::default();
        for i in 0..100 {
            t.add(&sample(i as f64 * 0.01, 1000.0 + i as f64 * 0.6, true));
        }
        // Two seconds from the first start to the last end: 1/64 s intervals.
        assert_eq!(t.width(), Duration::from_nanos(2 * BASE_NS));
        let ok: Vec<&Histogram<u64>> = t.intervals().filter_map(|i| i.ok.as_ref()).collect();
        assert_eq!(ok.iter().map(|h| h.len()).sum::<u64>(), 100);
        let p = percentile_ms(ok[0], 0.5);
        assert!((1000.0..1010.0).contains(&p), "{p}");
    }

    #[test]
    fn retries_and_pauses_come_from_the_attempt_log() {
        let mut s = sample(0.0, 2100.0, true);
        s.facts.attempts = 2;
        s.timing = Some(Timing {
            queued_at: s.started_at.unwrap(),
            waits: Waits::default(),
            attempts: vec![
                AttemptTime {
                    start_ms: 0.0,
                    duration_ms: 50.0,
                    status: Some(429),
                    wait_ms: Some(2000.0),
                    ..AttemptTime::default()
                },
                AttemptTime {
                    start_ms: 2050.0,
                    duration_ms: 50.0,
                    ..AttemptTime::default()
                },
            ],
        });
        let mut t = Timeline::default();
        t.add(&s);
        t.add(&s); // a second request told the same: one band
        let starts: u64 = t.intervals().map(|i| i.starts).sum();
        let retries: u64 = t.intervals().map(|i| i.retries).sum();
        assert_eq!((starts, retries), (4, 2));
        let pauses: Vec<&Pause> = t.pauses().collect();
        assert_eq!(pauses.len(), 1);
        assert_eq!(pauses[0].count, 2);
        assert_eq!(pauses[0].statuses, BTreeSet::from([429]));
        assert_eq!(
            pauses[0].until.duration_since(pauses[0].from).unwrap(),
            Duration::from_secs(2)
        );
    }
}
