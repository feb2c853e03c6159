//! Where a request's time went: waits in its queue, for rate and budget
//! tokens and between retries, and the service time of each attempt.
//!
//! The engine keeps a [`Stopwatch`] per request and tells it what happened
//! at the instants it already knows (queued, held by a rate limit, attempt
//! started, attempt ended); the record carries the result as a [`Timing`],
//! so reports can split a request's time into waiting and service from the
//! records alone.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::record::ErrorKind;

/// `now + wait`, saturating far in the future instead of overflowing (a
/// wait as long as a `Retry-After` may ask for).
pub(crate) fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Time spent waiting, summed over a request's life, in milliseconds.
///
/// From entering the engine to the final outcome, a request's time is
/// `queue + rate + retry` plus the service time of its attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Waits {
    /// Waiting for its turn: a concurrency slot (`concurrency`,
    /// `per_host_concurrency`), earlier requests, or an origin pause.
    pub queue: f64,
    /// First in line but held by a rate or budget limit (`rate`,
    /// `per_host_rate`, `budget`).
    pub rate: f64,
    /// Between a failed attempt and the request's return to its queue
    /// (backoff or the server's `Retry-After`).
    pub retry: f64,
}

/// One attempt of a request, as written in `attempt_log`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptTime {
    /// Its start, in milliseconds after the record's `started_at`.
    pub start_ms: f64,
    /// From its start to its outcome (its service time).
    pub duration_ms: f64,
    /// On an attempt that was retried: the status it got, if a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// On an attempt that was retried: why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
    /// On an attempt that was retried: the wait before the request went
    /// back to its queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<f64>,
}

/// The timing facts of a record with at least one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// When the request entered the engine (after it was read).
    pub queued_at: SystemTime,
    /// Waits over the request's life.
    pub waits: Waits,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptTime>,
}

impl Timing {
    /// Service time: the sum of the attempts' durations, in milliseconds.
    pub fn service_ms(&self) -> f64 {
        self.attempts.iter().map(|a| a.duration_ms).sum()
    }

    /// Appends the record's `wait_ms` and `attempt_log` members, each after
    /// a comma, as serde_json writes their derived `Serialize` (a test in
    /// `record` holds them equal).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        use crate::json::{push_f64, push_str, push_u64};
        let w = &self.waits;
        out.extend_from_slice(b",\"wait_ms\":{\"queue\":");
        push_f64(out, w.queue);
        out.extend_from_slice(b",\"rate\":");
        push_f64(out, w.rate);
        out.extend_from_slice(b",\"retry\":");
        push_f64(out, w.retry);
        out.extend_from_slice(b"},\"attempt_log\":[");
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"start_ms\":");
            push_f64(out, a.start_ms);
            out.extend_from_slice(b",\"duration_ms\":");
            push_f64(out, a.duration_ms);
            if let Some(status) = a.status {
                out.extend_from_slice(b",\"status\":");
                push_u64(out, u64::from(status));
            }
            if let Some(kind) = a.error {
                out.extend_from_slice(b",\"error\":");
                push_str(out, kind.as_str());
            }
            if let Some(wait) = a.wait_ms {
                out.extend_from_slice(b",\"wait_ms\":");
                push_f64(out, wait);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
}

/// Accumulates a request's [`Timing`] inside the engine. Every method takes
/// the instant from its caller, so it reads no clock of its own.
///
/// Instants are nanoseconds since the run's start (a [`RunClock`]'s
/// [`RunClock::nanos`]): a request's bookkeeping is integer arithmetic,
/// where subtracting `Instant`s cost a call each, several a request.
#[derive(Clone, Debug)]
pub struct Stopwatch {
    queued_at: u64,
    /// Start of the current wait in the queue.
    since: u64,
    /// When the request, first in line, was first held by a rate limit in
    /// the current wait.
    rate_since: Option<u64>,
    /// The first attempt's start: attempt offsets count from it.
    first: Option<u64>,
    /// The current attempt's start, while it runs.
    running: Option<u64>,
    /// The end of a failed attempt, while the request waits to retry.
    retry_from: Option<u64>,
    waits: Waits,
    attempts: Vec<AttemptTime>,
}

impl Stopwatch {
    /// A request entering the engine at `now`.
    pub fn new(now: u64) -> Stopwatch {
        Stopwatch {
            queued_at: now,
            since: now,
            rate_since: None,
            first: None,
            running: None,
            retry_from: None,
            waits: Waits::default(),
            attempts: Vec::new(),
        }
    }

    /// The request (back) in its queue at `now`; ends a wait to retry.
    pub fn queued(&mut self, now: u64) {
        if let Some(from) = self.retry_from.take() {
            let waited = ms(now.saturating_sub(from));
            self.waits.retry += waited;
            if let Some(last) = self.attempts.last_mut() {
                last.wait_ms = Some(waited);
            }
        }
        self.since = now;
        self.rate_since = None;
    }

    /// First in line at `now`, but a rate or budget limit holds it back.
    pub fn held_by_rate(&mut self, now: u64) {
        self.rate_since.get_or_insert(now);
    }

    /// An attempt starts at `now`.
    pub fn started(&mut self, now: u64) {
        let rate_from = self.rate_since.take().unwrap_or(now).max(self.since);
        self.waits.queue += ms(rate_from.saturating_sub(self.since));
        self.waits.rate += ms(now.saturating_sub(rate_from));
        let first = *self.first.get_or_insert(now);
        self.running = Some(now);
        let attempt = AttemptTime {
            start_ms: ms(now.saturating_sub(first)),
            ..AttemptTime::default()
        };
        if self.attempts.is_empty() {
            // Most requests make one attempt: room for exactly one, where
            // a push reserved four through the growth path.
            self.attempts = vec![attempt];
        } else {
            self.attempts.push(attempt);
        }
    }

    /// The running attempt was not sent after all (its shared grant went
    /// stale before its task ran): it leaves no trace in `attempt_log`, and
    /// the time since its start counts as waiting for a rate limit, so a
    /// request's time still sums up.
    pub fn unstarted(&mut self, now: u64) {
        if let Some(start) = self.running.take() {
            self.attempts.pop();
            if self.attempts.is_empty() {
                self.first = None;
            }
            self.waits.rate += ms(now.saturating_sub(start));
        }
    }

    /// The running attempt ended at `now`.
    pub fn ended(&mut self, now: u64) {
        if let (Some(start), Some(last)) = (self.running.take(), self.attempts.last_mut()) {
            last.duration_ms = ms(now.saturating_sub(start));
        }
    }

    /// The attempt that just ended failed (with `status`, if a response
    /// arrived) and the request waits to retry from `now`.
    pub fn retrying(&mut self, now: u64, status: Option<u16>, kind: ErrorKind) {
        if let Some(last) = self.attempts.last_mut() {
            last.status = status;
            last.error = Some(kind);
        }
        self.retry_from = Some(now);
    }

    /// What the record carries, its instants placed on `clock`; `None`
    /// before any attempt.
    pub fn finish(self, clock: &RunClock) -> Option<Timing> {
        (!self.attempts.is_empty()).then(|| Timing {
            queued_at: clock.wall(self.queued_at),
            waits: self.waits,
            attempts: self.attempts,
        })
    }
}

/// A run's time as integer nanoseconds since its start, and the wall-clock
/// instants they stand for: one subtraction of `Instant`s per instant met
/// (the last is remembered, and a step passes the same one to every call),
/// then integer arithmetic.
#[derive(Debug)]
pub struct RunClock {
    start: Instant,
    wall: SystemTime,
    /// The last instant converted, and its nanoseconds.
    last: Cell<(Instant, u64)>,
}

impl RunClock {
    /// A clock whose zero is `start` (monotonic), which is `wall` on the
    /// system clock.
    pub fn new(start: Instant, wall: SystemTime) -> RunClock {
        RunClock {
            start,
            wall,
            last: Cell::new((start, 0)),
        }
    }

    /// Nanoseconds from the start to `now` (0 before it; saturating after
    /// 584 years).
    pub fn nanos(&self, now: Instant) -> u64 {
        let (at, nanos) = self.last.get();
        if at == now {
            return nanos;
        }
        let d = now.saturating_duration_since(self.start);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.last.set((now, nanos));
        nanos
    }

    /// The wall-clock instant `nanos` after the start.
    pub fn wall(&self, nanos: u64) -> SystemTime {
        self.wall + Duration::from_nanos(nanos)
    }

    /// The wall-clock instant of `now`.
    pub fn at(&self, now: Instant) -> SystemTime {
        self.wall(self.nanos(now))
    }
}

/// Nanoseconds as milliseconds with microseconds, as
/// [`crate::record::duration_ms`] gives a `Duration` (the same value: the
/// same whole microseconds, converted from a `u64` rather than a `u128`,
/// which took a library call each, four a request).
fn ms(nanos: u64) -> f64 {
    (nanos / 1_000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_request_time_splits_into_waits_and_service() {
        let t0 = Instant::now();
        let clock = RunClock::new(t0, SystemTime::UNIX_EPOCH);
        let at = |d: Duration| clock.nanos(t0 + d);
        let mut w = Stopwatch::new(at(Duration::ZERO));
        // 10 ms waiting for a slot, then 5 ms for a rate token.
        w.held_by_rate(at(10 * MS));
        w.held_by_rate(at(12 * MS)); // only the first instant counts
        w.started(at(15 * MS));
        w.ended(at(25 * MS));
        w.retrying(at(25 * MS), Some(429), ErrorKind::HttpStatus);
        // 100 ms of backoff, 3 ms in the queue, then the second attempt.
        w.queued(at(125 * MS));
        w.started(at(128 * MS));
        w.ended(at(170 * MS));
        let t = w.finish(&clock).expect("attempts were made");
        assert_eq!(
            t.waits,
            Waits {
                queue: 13.0,
                rate: 5.0,
                retry: 100.0
            }
        );
        assert_eq!(
            t.attempts,
            vec![
                AttemptTime {
                    start_ms: 0.0,
                    duration_ms: 10.0,
                    status: Some(429),
                    error: Some(ErrorKind::HttpStatus),
                    wait_ms: Some(100.0),
                },
                AttemptTime {
                    start_ms: 113.0,
                    duration_ms: 42.0,
                    ..AttemptTime::default()
                },
            ]
        );
        // Everything from entering the engine to the outcome is accounted for.
        let total = t.waits.queue + t.waits.rate + t.waits.retry + t.service_ms();
        assert_eq!(total, 170.0);
    }

    #[test]
    fn nothing_to_report_before_an_attempt() {
        let clock = RunClock::new(Instant::now(), SystemTime::UNIX_EPOCH);
        assert!(Stopwatch::new(0).finish(&clock).is_none());
    }

    #[test]
    fn the_run_clock_counts_nanoseconds_from_its_start() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = RunClock::new(t0 + MS, wall);
        let d = Duration::new(3, 123_456_789);
        // The remembered instant and a fresh one agree, either way round.
        for _ in 0..2 {
            assert_eq!(clock.nanos(t0 + MS + d), 3_123_456_789);
            assert_eq!(clock.nanos(t0 + MS), 0);
        }
        assert_eq!(clock.nanos(t0), 0, "before the start");
        assert_eq!(clock.at(t0 + MS + d), wall + d);
        assert_eq!(ms(1_234_567), 1.234);
        for nanos in [0, 999, 1_000, 1_234_567, 86_400_123_456_789, u64::MAX] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(ms(nanos), crate::record::duration_ms(d), "{nanos} ns");
        }
    }
}
