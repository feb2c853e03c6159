//! Limits learned from an origin's own rate-limit headers: one
//! origin's model of the server's quota, fed each response's [`Snapshot`]
//! and asked when the next request may start.
//!
//! The model is a GCRA at the learned request rate with a burst of about a
//! second's worth (at most the server's quota), plus, for fixed windows, the
//! quota left until the window ends. Each snapshot is the server's state
//! when it admitted *that* request, so what sluice sent after it is
//! subtracted, and so is what was still in flight when it was sent (the
//! server may have admitted those after it). What is left is a lower bound
//! on the server's quota now: sluice never counts on more.
//!
//! - **Rate.** A refilling bucket (OpenAI, Anthropic) refills at
//!   `(limit − remaining) / reset`; since `remaining` is rounded down,
//!   sluice takes `(limit − remaining − 1) / reset`, the slowest rate the
//!   headers allow, from the snapshot with the largest deficit seen, where
//!   the roundings matter least. A fixed window (GitHub, IETF) paces at `limit / window`, the
//!   window being the IETF `w` or the longest reset seen.
//! - **Quota now.** A newer snapshot than the last one used moves the
//!   limiter to what it proves is left (tighter: another client spent the
//!   quota; looser: sluice was too careful). The bound is pessimistic by
//!   what was in flight, which costs a one-time offset of that many
//!   requests, not rate.
//! - **Fixed windows** keep their own count (see `learn_window`).
//! - **Empty.** `remaining == 0` holds the origin (a bucket until a
//!   request's worth has refilled, a window until it ends), and says so
//!   with a `Paused` event, as a 429 would.
//! - **Refused anyway.** A 429 while the model let the request go lowers
//!   the learned rate by a tenth, for the rest of the run.
//!
//! Token limits (`tokens.rs`) are kept beside the request limit by the
//! same rules: a start waits until both admit it.
//!
//! Learned limits only ever add a limit: `--rate`, `--per-host-rate` and
//! `--budget` stay ceilings, since every limiter must agree before a start.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::attempt::Outcome;
use crate::event::{Event, Learned as Report};
use crate::gcra::Gcra;
use crate::ratelimit::lag::DateLags;
use crate::ratelimit::{Dialect, Dimension, Headroom, Limit, Snapshot, Tokens, Window};

use super::tokens::{LearnedTokens, TokenDispatch};

/// What a start of this origin was, for the snapshot its response carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dispatch {
    /// The origin's starts so far, this one included.
    pub(crate) number: u64,
    /// Attempts of the origin in flight when it started (not counting it).
    pub(crate) in_flight: u64,
    /// Its tokens, for the origin's token limits.
    pub(crate) tokens: TokenDispatch,
}

/// Each 429 the model did not predict multiplies the learned rate by this.
const LOWER_ON_REFUSAL: f64 = 0.9;

/// The learned rate is never lowered below this share of what the headers say.
const LOWEST_FACTOR: f64 = 0.05;

/// A rate change smaller than this (relative) keeps the limiter as it is.
pub(super) const REBUILD_TOLERANCE: f64 = 0.01;

/// One origin's learned limits.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    dialect: Option<Dialect>,
    /// Requests a second the server gives back (headroom not applied).
    rate: f64,
    /// The deficit of the bucket snapshot `rate` came from.
    deficit: u64,
    /// The longest fixed window seen, in seconds.
    window: f64,
    /// The server's request quota.
    quota: Option<u64>,
    /// Lowered by each 429 the model did not predict.
    factor: Option<f64>,
    gcra: Option<Gcra>,
    /// Fixed windows: requests left until the window ends.
    left: Option<(i64, Instant)>,
    /// Fixed windows: the lowest `remaining` of the window and its end.
    window_seen: Option<(i64, Instant)>,
    /// The end of the last pause told of (fixed windows).
    announced: Option<Instant>,
    /// Fixed windows: where the server's whole seconds fall (see
    /// `dated_end`).
    lags: DateLags,
    /// The starts so far when the `Date` first placed a window's end.
    dated_after: Option<u64>,
    /// A 429 refuted the `Date`'s whole seconds as window ends.
    undated: bool,
    /// Holds every start until then (an empty bucket or window).
    hold_until: Option<Instant>,
    /// The newest dispatch whose snapshot was used.
    newest: u64,
    /// Starts of the origin so far.
    dispatched: u64,
    /// Time the head request waited for the learned limits.
    paced: Duration,
    held_since: Option<Instant>,
    refused: u64,
    /// The starts so far when the rate was last lowered.
    lowered_after: u64,
    /// The final account was given.
    told: bool,
    warned: BTreeSet<String>,
    /// (rate, burst) last reported.
    reported: Option<(Option<f64>, u64)>,
    /// The token limits.
    tokens: LearnedTokens,
}

/// What one snapshot changed.
#[derive(Debug, Default)]
pub(crate) struct Learning {
    /// The event to emit, when something worth saying changed.
    pub(crate) report: Option<Report>,
    /// The origin is now held this long (the quota is spent).
    pub(crate) pause: Option<Duration>,
    /// The snapshot's token limits were used: they cover its request's cost.
    pub(crate) covered: bool,
    /// The pause is the token limits' (no token is left).
    pub(crate) tokens_spent: bool,
}

impl Learned {
    /// True once a response spoke a rate-limit dialect.
    pub(crate) fn knows(&self) -> bool {
        self.dialect.is_some()
    }

    /// True while starts must say what they cost in tokens.
    pub(crate) fn counts_tokens(&self) -> bool {
        self.tokens.counts()
    }

    /// True once a token limit paces the origin (its answers' `usage` is read).
    pub(crate) fn knows_tokens(&self) -> bool {
        self.tokens.knows()
    }

    /// The learned rate, its burst and the requests left now, once the
    /// headers gave a rate.
    pub(crate) fn shape(&self, now: Instant) -> Option<(f64, u64, i64)> {
        let g = self.gcra.as_ref()?;
        Some((g.per_second(), g.burst(), g.available(now)))
    }

    /// When the learned limits let the next request, costing `cost`
    /// tokens, start, if not now.
    pub(crate) fn ready_at(&mut self, now: Instant, cost: Tokens) -> Option<Instant> {
        let hold = self.hold_until.filter(|&h| h > now);
        let window = self.left.filter(|&(n, end)| n <= 0 && end > now);
        let rate = self.gcra.as_mut().map(|g| g.ready_at(now, 1));
        let tokens = self.tokens.ready_at(now, cost);
        let at = [hold, window.map(|(_, end)| end), rate, tokens]
            .into_iter()
            .flatten()
            .max()
            .filter(|&at| at > now);
        if at.is_some() {
            self.held_since.get_or_insert(now);
        }
        at
    }

    /// A request costing `cost` tokens starts now (the learned limits
    /// allowed it): charges them and says which start it is.
    pub(crate) fn start(&mut self, now: Instant, in_flight: usize, cost: Tokens) -> Dispatch {
        if let Some(g) = &mut self.gcra {
            g.take(now, 1);
        }
        if let Some((n, end)) = &mut self.left
            && *end > now
        {
            *n -= 1;
        }
        if let Some(since) = self.held_since.take() {
            self.paced += now.saturating_duration_since(since);
        }
        self.dispatched += 1;
        Dispatch {
            number: self.dispatched,
            in_flight: in_flight as u64,
            tokens: self.tokens.start(now, cost),
        }
    }

    /// An attempt of the origin ended.
    pub(crate) fn ended(&mut self, dispatch: &Dispatch) {
        self.tokens.ended(&dispatch.tokens);
    }

    /// The answer to `dispatch`, whose token snapshot was not used, says it
    /// cost `actual` tokens.
    pub(crate) fn used(&mut self, dispatch: &Dispatch, actual: Tokens, now: Instant) {
        self.tokens.used(&dispatch.tokens, actual, now);
    }

    /// Reads one response's snapshot; `dispatch` is the start it answers.
    pub(crate) fn observe(
        &mut self,
        origin: &str,
        snapshot: &Snapshot,
        dispatch: Dispatch,
        in_flight: usize,
        headroom: Headroom,
        now: Instant,
    ) -> Learning {
        self.dialect = Some(snapshot.dialect);
        // Once per header and problem: a server repeating a bad value on
        // every response is told of once, and memory stays flat.
        let warnings: Vec<String> = snapshot
            .warnings
            .iter()
            .filter(|w| self.warned.insert(format!("{}\0{:?}", w.header, w.problem)))
            .map(ToString::to_string)
            .collect();
        let mut learning = Learning::default();
        if let Some(limit) = snapshot.limit(Dimension::Requests) {
            self.learn_rate(snapshot.window, limit);
            self.rebuild(headroom, now);
            if snapshot.window == Window::Fixed {
                // Whole-second deltas (GitHub's epoch resets are read
                // from the `Date` already, a bound late by its lag only).
                let whole = matches!(
                    snapshot.dialect,
                    Dialect::IetfStructured | Dialect::IetfLegacy
                );
                let lag = snapshot.date_lag.filter(|_| whole);
                learning.pause = self.learn_window(limit, lag, in_flight, now);
            } else if dispatch.number > self.newest {
                self.newest = dispatch.number;
                learning.pause = self.learn_quota(limit, dispatch, now);
            }
        }
        let factor = self.factor.unwrap_or(1.0);
        let tokens = (self.tokens).observe(
            snapshot,
            dispatch.number,
            &dispatch.tokens,
            headroom,
            factor,
            now,
        );
        learning.covered = tokens.covered;
        learning.tokens_spent = tokens.pause.is_some() && tokens.pause >= learning.pause;
        learning.pause = learning.pause.max(tokens.pause);
        learning.report = self.report(origin, warnings, false);
        learning
    }

    /// A 429 came back although the model let its request go. The rate is
    /// lowered once per round trip: refusals of requests sent before the
    /// last lowering do not lower it again.
    pub(crate) fn refused(
        &mut self,
        origin: &str,
        dispatch: Dispatch,
        headroom: Headroom,
        now: Instant,
    ) -> Option<Report> {
        if !self.knows() {
            return None;
        }
        self.refused += 1;
        if self
            .dated_after
            .is_some_and(|after| dispatch.number > after)
        {
            // The server's windows do not end on its whole seconds.
            self.undated = true;
            self.dated_after = None;
        }
        if dispatch.number <= self.lowered_after {
            return self.report(origin, Vec::new(), false);
        }
        self.lowered_after = self.dispatched;
        let factor = self.factor.unwrap_or(1.0);
        let factor = (factor * LOWER_ON_REFUSAL).max(LOWEST_FACTOR);
        self.factor = Some(factor);
        self.rebuild(headroom, now);
        self.tokens.rebuild(headroom, factor, now);
        self.report(origin, Vec::new(), false)
    }

    /// The final account, once the run has finished.
    pub(crate) fn last_word(&mut self, origin: &str) -> Option<Report> {
        if !self.knows() || self.told {
            return None;
        }
        self.told = true;
        self.reported = None;
        self.report(origin, Vec::new(), true)
    }

    fn learn_rate(&mut self, window: Window, limit: &Limit) {
        self.quota = limit.limit.or(self.quota);
        match window {
            Window::Bucket => {
                if let Some((deficit, rate)) = refill(limit)
                    && deficit >= self.deficit
                {
                    self.deficit = deficit;
                    self.rate = rate;
                }
            }
            Window::Fixed => {
                let seen = limit
                    .window
                    .or(limit.reset)
                    .map_or(0.0, |w| w.as_secs_f64());
                self.window = self.window.max(seen);
                if let Some(cap) = limit.limit.filter(|_| self.window > 0.0) {
                    self.rate = cap as f64 / self.window;
                }
            }
        }
    }

    /// The pace: the learned rate, headroom and lowering applied.
    fn pace(&self, headroom: Headroom) -> Option<f64> {
        let pace = self.rate * headroom.get() * self.factor.unwrap_or(1.0);
        (pace.is_finite() && pace > 0.0).then_some(pace.min(crate::ratelimit::MAX_RATE))
    }

    /// A new limiter when the pace or burst changed; it starts with its
    /// whole burst, and the quota the snapshot proves takes it from there.
    fn rebuild(&mut self, headroom: Headroom, now: Instant) {
        let Some(pace) = self.pace(headroom) else {
            return;
        };
        let burst = burst(pace, self.quota, headroom);
        let same = self.gcra.as_ref().is_some_and(|g| {
            g.burst() == burst && (g.per_second() - pace).abs() <= pace * REBUILD_TOLERANCE
        });
        if !same {
            let mut gcra = Gcra::with_rate(pace, burst, now);
            match (&self.gcra, self.left) {
                // Keep what the old limiter had spent: never more at once.
                (Some(old), _) => gcra.hold(now, old.available(now)),
                // The first limiter starts from what is known to be left.
                (None, Some((left, end))) if end > now => gcra.set_available(now, left),
                (None, _) => {}
            }
            self.gcra = Some(gcra);
        }
    }

    /// A refilling bucket: moves the limiter to the quota the snapshot
    /// proves is left; returns the pause when none is.
    fn learn_quota(&mut self, limit: &Limit, dispatch: Dispatch, now: Instant) -> Option<Duration> {
        let remaining = i64::try_from(limit.remaining?).unwrap_or(i64::MAX);
        let after =
            i64::try_from(self.dispatched.saturating_sub(dispatch.number)).unwrap_or(i64::MAX);
        let unsure = i64::try_from(dispatch.in_flight).unwrap_or(i64::MAX);
        // At least this many are left for new starts; at most `unsure` more.
        // At least this many are left for new starts, and it is the best
        // bound known: the limiter takes it, looser or tighter. It was
        // more generous than even `lo + unsure` allows when another client
        // spends the quota (or the server counts differently).
        let lo = remaining.saturating_sub(after).saturating_sub(unsure);
        let mut surprised = false;
        if let Some(g) = &mut self.gcra {
            surprised = g.available(now) > lo.saturating_add(unsure);
            g.set_available(now, lo);
        }
        let reset = limit.reset.filter(|r| !r.is_zero());
        let Some(g) = &mut self.gcra else {
            // No rate yet: spend what is left, then wait for the reset.
            let end = now + reset?;
            self.left = Some((lo, end));
            return if lo <= 0 { self.hold(now, end) } else { None };
        };
        self.left = None;
        // The limiter repays any debt at the learned rate: a pause worth
        // telling only when the model did not expect it.
        let at = g.ready_at(now, 1);
        if surprised && lo <= 0 && at > now {
            return self.hold(now, at);
        }
        None
    }

    /// A fixed window: nothing comes back before it ends. Within one
    /// window, `remaining` only falls in the order the server admitted
    /// requests, so every request admitted after the one that saw the
    /// lowest `remaining` has not answered yet: at least `lowest − in
    /// flight` are left. The window's end is the earliest any response
    /// put it at (resets in whole seconds are rounded up). A response that
    /// comes after that end starts a new window; one admitted in the old
    /// window only understates the new one. `lag` is the response's
    /// `Date` lag (see `dated_end`).
    fn learn_window(
        &mut self,
        limit: &Limit,
        lag: Option<i64>,
        in_flight: usize,
        now: Instant,
    ) -> Option<Duration> {
        let remaining = i64::try_from(limit.remaining?).unwrap_or(i64::MAX);
        let reset = limit.reset.filter(|r| !r.is_zero())?;
        let end = self.dated_end(reset, lag, now);
        let (lowest, until) = match self.window_seen {
            Some((lowest, until)) if now < until => (lowest.min(remaining), until.min(end)),
            _ => (remaining, end),
        };
        self.window_seen = Some((lowest, until));
        let left = lowest.saturating_sub(i64::try_from(in_flight).unwrap_or(i64::MAX));
        self.left = Some((left, until));
        if left > 0 || self.announced.is_some_and(|a| a > now) {
            return None;
        }
        self.announced = Some(until);
        Some(until - now)
    }

    /// Where a fixed window ends on the local clock, `reset` after the
    /// response read at `now`. A reset in whole seconds (the IETF forms'
    /// `t`, `RateLimit-Reset`) says only that the end is within a second
    /// after `now + reset − 1`: read as is, each window would open up to a
    /// second late (and, learned from its first answer, later each
    /// window). But a server whose windows start on its clock's whole
    /// seconds (as fixed windows keyed by `floor(time / w)` do) counts the
    /// reset from its `Date`, also in whole seconds: the window ends at
    /// `Date + reset` on its clock. The least lag from a `Date` to its arrival
    /// places the server's seconds on the local clock to within the
    /// quickest answer's way back, so the end is moved earlier by this
    /// response's lag beyond that least one (`DateLags`: only lags in line
    /// with the recent ones count, so one far-off `Date` moves no end). A
    /// 429 despite it (a server whose windows start elsewhere) turns this
    /// off for the run.
    fn dated_end(&mut self, reset: Duration, lag: Option<i64>, now: Instant) -> Instant {
        let Some(lag) = lag.filter(|_| !self.undated) else {
            return now + reset;
        };
        self.dated_after.get_or_insert(self.dispatched);
        now + reset.saturating_sub(self.lags.early(lag))
    }

    /// Holds every start until `end`; the pause when it is new.
    fn hold(&mut self, now: Instant, end: Instant) -> Option<Duration> {
        let new = self.hold_until.is_none_or(|h| h < end);
        if new {
            self.hold_until = Some(end);
        }
        new.then(|| end.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// An event when the pace changed (or always for the last word).
    fn report(&mut self, origin: &str, warnings: Vec<String>, last: bool) -> Option<Report> {
        let rate = self.gcra.as_ref().map(Gcra::per_second);
        let burst = self.gcra.as_ref().map_or(0, Gcra::burst);
        let changed = self.reported.is_none_or(|(r, b)| {
            b != burst
                || match (r, rate) {
                    (Some(a), Some(b)) => (a - b).abs() > a * REBUILD_TOLERANCE,
                    (a, b) => a.is_some() != b.is_some(),
                }
        });
        let tokens_changed = self.tokens.take_changed();
        if !changed && !tokens_changed && warnings.is_empty() && !last {
            return None;
        }
        self.reported = Some((rate, burst));
        Some(Report {
            origin: origin.to_string(),
            dialect: self.dialect?.name(),
            requests_per_second: rate,
            burst,
            tokens: self.tokens.paces(),
            paced: self.paced,
            refused: self.refused,
            warnings,
            last,
        })
    }
}

/// The refill of a bucket snapshot, as (deficit, tokens a second): the
/// reset is the time until the bucket is full, and `remaining` is rounded
/// down, so the bucket lacks more than `deficit − 1`: the slowest refill
/// the headers allow. `None` for a deficit under 2 or no reset.
pub(super) fn refill(limit: &Limit) -> Option<(u64, f64)> {
    let (cap, left, reset) = (limit.limit?, limit.remaining?, limit.reset?);
    let deficit = cap.checked_sub(left)?;
    (deficit >= 2 && !reset.is_zero())
        .then(|| (deficit, (deficit - 1) as f64 / reset.as_secs_f64()))
}

/// About a second's worth of `pace`, at least 1, at most the (shared) quota.
pub(super) fn burst(pace: f64, quota: Option<u64>, headroom: Headroom) -> u64 {
    let second = (pace.floor() as u64).max(1);
    match quota {
        Some(q) => second.min(((q as f64 * headroom.get()).floor() as u64).max(1)),
        None => second,
    }
}

#[cfg(test)]
#[path = "learned_tests.rs"]
mod tests;

// ---- the scheduler's hooks ----------------------------------------------

impl super::Scheduler {
    /// Reads what an attempt's response said about the origin's limits
    /// (under `learn_limits`), before the verdict on the attempt.
    pub(super) fn learn_from(&mut self, job: &super::Job, outcome: &Outcome, now: Instant) {
        if !self.config.learn_limits {
            return;
        }
        let (status, headers) = match outcome {
            Outcome::Response(r) => (Some(r.status), Some(&r.headers)),
            Outcome::Failed(f) => (f.status, f.headers.as_ref()),
        };
        let headroom = self.config.limit_headroom;
        let o = job.origin;
        let snapshot = headers.and_then(|h| crate::ratelimit::observe(h, self.clock.at(now)));
        let mut covered = false;
        if let Some(snapshot) = snapshot {
            let learning = self.origins[o].learn(&snapshot, job.dispatch, headroom, now);
            covered = learning.covered;
            if let Some(report) = learning.report {
                self.emit(Event::Learned(Box::new(report)));
            }
            if let Some(wait) = learning.pause {
                let origin = self.origins[o].name().to_string();
                let what = if learning.tokens_spent {
                    "token"
                } else {
                    "request"
                };
                let reason = format!(
                    "its rate-limit headers ({}) say no {what} is left",
                    snapshot.dialect.name()
                );
                self.emit(Event::Paused {
                    origin,
                    wait,
                    reason,
                });
            }
        }
        if !covered {
            self.tokens_used(job, outcome, now);
        }
        if status == Some(429)
            && let Some(report) = self.origins[o].refused(job.dispatch, headroom, now)
        {
            self.emit(Event::Learned(Box::new(report)));
        }
        // Under --adaptive an overload 503 is the concurrency limit's.
        let status = status.filter(|_| !self.adaptive_takes(outcome));
        // Discovery first: what is shared must include what this answer
        // taught (the first refusal sets the discovered rate).
        self.discover_from(job, status, now);
        self.shared_learned(o, now);
    }

    /// Headerless discovery (see `discovered`): every completion feeds the
    /// origin's discovered rate; a 429 or 503 no header predicted lowers it.
    fn discover_from(&mut self, job: &super::Job, status: Option<u16>, now: Instant) {
        let ceiling = [self.config.rate, self.config.per_host_rate]
            .into_iter()
            .flatten()
            .map(|r| r.per_second())
            .reduce(f64::min);
        let refused = matches!(status, Some(429 | 503));
        let success = status.is_some_and(|s| (200..300).contains(&s));
        let (number, first) = (job.dispatch.number, job.attempts <= 1);
        if let Some(report) =
            self.origins[job.origin].discover(refused, success, first, number, ceiling, now)
        {
            self.emit(Event::Learned(Box::new(report)));
        }
    }

    /// Once the run has finished: what was learned about each origin.
    pub(super) fn learned_last_words(&mut self) {
        for o in 0..self.origins.len() {
            if let Some(report) = self.origins[o].learned_last_word() {
                self.emit(Event::Learned(Box::new(report)));
            }
        }
    }
}
