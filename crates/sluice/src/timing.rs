//! Where a request's time went: waits in its queue, for rate and budget
//! tokens and between retries, and the service time of each attempt.
//!
//! The engine keeps a [`Stopwatch`] per request and tells it what happened
//! at the instants it already knows (queued, held by a rate limit, attempt
//! started, attempt ended); the record carries the result as a [`Timing`],
//! so reports can split a request's time into waiting and service from the
//! records alone.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::record::{ErrorKind, duration_ms};

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
#[derive(Clone, Debug)]
pub struct Stopwatch {
    queued_at: SystemTime,
    /// Start of the current wait in the queue.
    since: Instant,
    /// When the request, first in line, was first held by a rate limit in
    /// the current wait.
    rate_since: Option<Instant>,
    /// The first attempt's start: attempt offsets count from it.
    first: Option<Instant>,
    /// The current attempt's start, while it runs.
    running: Option<Instant>,
    /// The end of a failed attempt, while the request waits to retry.
    retry_from: Option<Instant>,
    waits: Waits,
    attempts: Vec<AttemptTime>,
}

impl Stopwatch {
    /// A request entering the engine at `now` (`wall` on the system clock).
    pub fn new(now: Instant, wall: SystemTime) -> Stopwatch {
        Stopwatch {
            queued_at: wall,
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
    pub fn queued(&mut self, now: Instant) {
        if let Some(from) = self.retry_from.take() {
            let waited = ms(now.saturating_duration_since(from));
            self.waits.retry += waited;
            if let Some(last) = self.attempts.last_mut() {
                last.wait_ms = Some(waited);
            }
        }
        self.since = now;
        self.rate_since = None;
    }

    /// First in line at `now`, but a rate or budget limit holds it back.
    pub fn held_by_rate(&mut self, now: Instant) {
        self.rate_since.get_or_insert(now);
    }

    /// An attempt starts at `now`.
    pub fn started(&mut self, now: Instant) {
        let rate_from = self.rate_since.take().unwrap_or(now).max(self.since);
        self.waits.queue += ms(rate_from.saturating_duration_since(self.since));
        self.waits.rate += ms(now.saturating_duration_since(rate_from));
        let first = *self.first.get_or_insert(now);
        self.running = Some(now);
        self.attempts.push(AttemptTime {
            start_ms: ms(now.saturating_duration_since(first)),
            ..AttemptTime::default()
        });
    }

    /// The running attempt ended at `now`.
    pub fn ended(&mut self, now: Instant) {
        if let (Some(start), Some(last)) = (self.running.take(), self.attempts.last_mut()) {
            last.duration_ms = ms(now.saturating_duration_since(start));
        }
    }

    /// The attempt that just ended failed (with `status`, if a response
    /// arrived) and the request waits to retry from `now`.
    pub fn retrying(&mut self, now: Instant, status: Option<u16>, kind: ErrorKind) {
        if let Some(last) = self.attempts.last_mut() {
            last.status = status;
            last.error = Some(kind);
        }
        self.retry_from = Some(now);
    }

    /// What the record carries; `None` before any attempt.
    pub fn finish(self) -> Option<Timing> {
        (!self.attempts.is_empty()).then_some(Timing {
            queued_at: self.queued_at,
            waits: self.waits,
            attempts: self.attempts,
        })
    }
}

fn ms(d: Duration) -> f64 {
    duration_ms(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_request_time_splits_into_waits_and_service() {
        let t0 = Instant::now();
        let mut w = Stopwatch::new(t0, SystemTime::UNIX_EPOCH);
        // 10 ms waiting for a slot, then 5 ms for a rate token.
        w.held_by_rate(t0 + 10 * MS);
        w.held_by_rate(t0 + 12 * MS); // only the first instant counts
        w.started(t0 + 15 * MS);
        w.ended(t0 + 25 * MS);
        w.retrying(t0 + 25 * MS, Some(429), ErrorKind::HttpStatus);
        // 100 ms of backoff, 3 ms in the queue, then the second attempt.
        w.queued(t0 + 125 * MS);
        w.started(t0 + 128 * MS);
        w.ended(t0 + 170 * MS);
        let t = w.finish().expect("attempts were made");
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
        let w = Stopwatch::new(Instant::now(), SystemTime::UNIX_EPOCH);
        assert!(w.finish().is_none());
    }
}
