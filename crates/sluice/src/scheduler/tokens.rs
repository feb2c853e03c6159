//! Token limits learned from an origin's headers (OpenAI's
//! `x-ratelimit-*-tokens`, Anthropic's
//! `anthropic-ratelimit-{tokens,input-tokens,output-tokens}-*`): one bucket
//! per token dimension the origin reports, kept beside the request limit of
//! `learned.rs` by the same rules and the same arithmetic (its `refill` and
//! `burst`, and a [`Gcra`] whose cells are tokens).
//!
//! - **Costs.** Each start spends its request's tokens ([`Tokens`]: its
//!   `cost`, else the estimate from its body, `ratelimit::cost`), computed
//!   once per request and only while they matter: from the origin's first
//!   start until its first answer, and for as long as it limits tokens.
//! - **Snapshots.** A snapshot is the server's bucket when it admitted that
//!   request: the tokens sluice sent after it, and those in flight when it
//!   was sent, are subtracted from its `remaining`; what is left is a lower
//!   bound on the server's tokens now, which the bucket's limiter takes.
//! - **Rate.** `(limit − remaining − 1) / reset` from the snapshot with the
//!   largest deficit, headroom and any lowering after a 429 applied; a
//!   burst of about a second's worth, at most the quota.
//! - **All or nothing.** A request starts only when every bucket has its
//!   tokens (and the request limit agrees). A request costing more than a
//!   bucket's burst waits for a full bucket and then goes alone, charging
//!   all of it (a debt later starts repay), rather than waiting forever.
//! - **Usage.** A response whose own snapshot was not used (an older one
//!   than the newest, or none) corrects the buckets by what its `usage`
//!   says it cost, less what was charged for it: servers settle a request
//!   at what it used (Anthropic adjusts output tokens at the end of a
//!   request), and the next snapshot supersedes it anyway.
//! - **Empty.** The server saying no token is left, when the model expected
//!   more, holds the origin until the limiter has a token again (a `Paused`
//!   event, as for requests).

use std::time::Duration;

use tokio::time::Instant;

use crate::attempt::{Outcome, ReadBody};
use crate::event::TokenPace;
use crate::gcra::Gcra;
use crate::ratelimit::cost;
use crate::ratelimit::{Dimension, Headroom, Limit, MAX_RATE, Snapshot, Tokens, Window};

use super::learned::{REBUILD_TOLERANCE, burst, refill};

/// What a start spent in tokens, for the snapshot its response carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TokenDispatch {
    /// Its own cost.
    cost: Tokens,
    /// The origin's tokens sent so far, this start's included.
    sent: Tokens,
    /// The tokens of the origin's attempts in flight when it started.
    in_flight: Tokens,
}

/// One token dimension's learned limit.
#[derive(Debug)]
struct Bucket {
    dimension: Dimension,
    /// Tokens a second the server gives back (headroom not applied).
    rate: f64,
    /// The deficit of the snapshot `rate` came from.
    deficit: u64,
    /// The server's token quota.
    quota: Option<u64>,
    gcra: Option<Gcra>,
}

/// An origin's learned token limits.
#[derive(Debug, Default)]
pub(crate) struct LearnedTokens {
    buckets: Vec<Bucket>,
    /// The origin's first answer came: without token limits by then, costs
    /// are no longer counted.
    decided: bool,
    sent: Tokens,
    in_flight: Tokens,
    /// The newest dispatch whose snapshot was used.
    newest: u64,
    /// Holds every start until then (the server said none is left).
    hold_until: Option<Instant>,
    /// A pace changed since the last report.
    changed: bool,
}

/// What one snapshot's token limits changed.
#[derive(Debug, Default)]
pub(crate) struct TokenLearning {
    /// The snapshot was used: it covers its own request's cost.
    pub(crate) covered: bool,
    /// The origin is now held this long.
    pub(crate) pause: Option<Duration>,
}

impl LearnedTokens {
    /// True while starts must say what they cost (see the module docs).
    pub(crate) fn counts(&self) -> bool {
        !self.decided || !self.buckets.is_empty()
    }

    /// True once a token limit paces the origin.
    pub(crate) fn knows(&self) -> bool {
        self.buckets.iter().any(|b| b.gcra.is_some())
    }

    /// When every bucket has `cost`'s tokens, if not now.
    pub(crate) fn ready_at(&mut self, now: Instant, cost: Tokens) -> Option<Instant> {
        let hold = self.hold_until.filter(|&h| h > now);
        let buckets = self.buckets.iter_mut().filter_map(|b| {
            let g = b.gcra.as_mut()?;
            let cells = cost.of(b.dimension).min(g.burst());
            Some(g.ready_at(now, cells))
        });
        hold.into_iter().chain(buckets).max().filter(|&at| at > now)
    }

    /// A request costing `cost` starts now: charges every bucket.
    pub(crate) fn start(&mut self, now: Instant, cost: Tokens) -> TokenDispatch {
        for b in &mut self.buckets {
            if let Some(g) = &mut b.gcra {
                g.take(now, cost.of(b.dimension));
            }
        }
        self.sent = add(self.sent, cost);
        let dispatch = TokenDispatch {
            cost,
            sent: self.sent,
            in_flight: self.in_flight,
        };
        self.in_flight = add(self.in_flight, cost);
        dispatch
    }

    /// An attempt ended: its tokens are no longer in flight, and the
    /// origin has answered once.
    pub(crate) fn ended(&mut self, dispatch: &TokenDispatch) {
        self.decided = true;
        self.in_flight = Tokens {
            input: self.in_flight.input.saturating_sub(dispatch.cost.input),
            output: self.in_flight.output.saturating_sub(dispatch.cost.output),
        };
    }

    /// Reads a snapshot's token limits; `number` is the origin's start the
    /// snapshot answers, `factor` the lowering after 429s.
    pub(crate) fn observe(
        &mut self,
        snapshot: &Snapshot,
        number: u64,
        dispatch: &TokenDispatch,
        headroom: Headroom,
        factor: f64,
        now: Instant,
    ) -> TokenLearning {
        let mut learning = TokenLearning::default();
        // Token limits come as refilling buckets (OpenAI, Anthropic); the
        // IETF forms count requests only.
        if snapshot.window != Window::Bucket {
            return learning;
        }
        let newer = number > self.newest;
        let tokens = snapshot
            .limits
            .iter()
            .filter(|l| l.dimension != Dimension::Requests);
        let mut hold = None;
        for limit in tokens {
            let sent = self.sent;
            let b = bucket(&mut self.buckets, limit.dimension);
            b.learn_rate(limit);
            self.changed |= b.rebuild(headroom, factor, now);
            if newer && let Some(g) = &mut b.gcra {
                learning.covered = true;
                hold = hold.max(learn_quota(g, b.dimension, limit, dispatch, sent, now));
            }
        }
        if learning.covered {
            self.newest = number;
        }
        if let Some(end) = hold
            && self.hold_until.is_none_or(|h| h < end)
        {
            self.hold_until = Some(end);
            learning.pause = Some(end.saturating_duration_since(now)).filter(|d| !d.is_zero());
        }
        learning
    }

    /// The response to `dispatch`, whose own snapshot was not used, says
    /// it cost `actual`: each bucket is corrected by what it was charged
    /// beyond that (or short of it).
    pub(crate) fn used(&mut self, dispatch: &TokenDispatch, actual: Tokens, now: Instant) {
        for b in &mut self.buckets {
            let Some(g) = &mut b.gcra else { continue };
            let charged = i64::try_from(dispatch.cost.of(b.dimension)).unwrap_or(i64::MAX);
            let used = i64::try_from(actual.of(b.dimension)).unwrap_or(i64::MAX);
            let back = charged.saturating_sub(used);
            if back != 0 {
                g.set_available(now, g.available(now).saturating_add(back));
            }
        }
    }

    /// A lowering after a 429 changed `factor`: every pace follows.
    pub(crate) fn rebuild(&mut self, headroom: Headroom, factor: f64, now: Instant) {
        for b in &mut self.buckets {
            self.changed |= b.rebuild(headroom, factor, now);
        }
    }

    /// True once after any pace changed.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The paces, for reports.
    pub(crate) fn paces(&self) -> Vec<TokenPace> {
        self.buckets
            .iter()
            .filter_map(|b| {
                let g = b.gcra.as_ref()?;
                Some(TokenPace {
                    dimension: b.dimension.name(),
                    per_second: g.per_second(),
                    burst: g.burst(),
                })
            })
            .collect()
    }
}

impl Bucket {
    fn learn_rate(&mut self, limit: &Limit) {
        self.quota = limit.limit.or(self.quota);
        if let Some((deficit, rate)) = refill(limit)
            && deficit >= self.deficit
        {
            self.deficit = deficit;
            self.rate = rate;
        }
    }

    /// A new limiter when the pace or burst changed (keeping what the old
    /// one had spent); true when it did.
    fn rebuild(&mut self, headroom: Headroom, factor: f64, now: Instant) -> bool {
        let pace = self.rate * headroom.get() * factor;
        if !(pace.is_finite() && pace > 0.0) {
            return false;
        }
        let pace = pace.min(MAX_RATE);
        let burst = burst(pace, self.quota, headroom);
        let same = self.gcra.as_ref().is_some_and(|g| {
            g.burst() == burst && (g.per_second() - pace).abs() <= pace * REBUILD_TOLERANCE
        });
        if same {
            return false;
        }
        let mut gcra = Gcra::with_rate(pace, burst, now);
        if let Some(old) = &self.gcra {
            gcra.hold(now, old.available(now));
        }
        self.gcra = Some(gcra);
        true
    }
}

/// Moves `g` to the tokens the snapshot proves are left: its `remaining`,
/// less the tokens sent after its request (`sent` now, against the
/// dispatch's) and those in flight when it was sent. The end of a hold
/// when the server had none left and the model expected more.
fn learn_quota(
    g: &mut Gcra,
    dimension: Dimension,
    limit: &Limit,
    dispatch: &TokenDispatch,
    sent: Tokens,
    now: Instant,
) -> Option<Instant> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let remaining = count(limit.remaining?);
    let after = count(
        sent.of(dimension)
            .saturating_sub(dispatch.sent.of(dimension)),
    );
    let unsure = count(dispatch.in_flight.of(dimension));
    let lo = remaining.saturating_sub(after).saturating_sub(unsure);
    let surprised = g.available(now) > lo.saturating_add(unsure);
    g.set_available(now, lo);
    let at = g.ready_at(now, 1);
    (surprised && remaining == 0 && at > now).then_some(at)
}

/// The bucket of `dimension`, made when it is new.
fn bucket(buckets: &mut Vec<Bucket>, dimension: Dimension) -> &mut Bucket {
    let i = match buckets.iter().position(|b| b.dimension == dimension) {
        Some(i) => i,
        None => {
            buckets.push(Bucket {
                dimension,
                rate: 0.0,
                deficit: 0,
                quota: None,
                gcra: None,
            });
            buckets.len() - 1
        }
    };
    &mut buckets[i]
}

fn add(a: Tokens, b: Tokens) -> Tokens {
    Tokens {
        input: a.input.saturating_add(b.input),
        output: a.output.saturating_add(b.output),
    }
}

// ---- the scheduler's hook ------------------------------------------------

impl super::Scheduler {
    /// Corrects the origin's token limits by what the response's `usage`
    /// says its request cost, when its own snapshot did not (see the module
    /// docs). The body is read only for origins paced by token limits.
    pub(super) fn tokens_used(&mut self, job: &super::Job, outcome: &Outcome, now: Instant) {
        let origin = &mut self.origins[job.origin];
        if !origin.knows_tokens() {
            return;
        }
        let Outcome::Response(response) = outcome else {
            return;
        };
        let actual = (response.body.as_ref())
            .and_then(ReadBody::text)
            .and_then(cost::usage);
        if let Some(actual) = actual {
            origin.used(&job.dispatch, actual, now);
        }
    }
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
