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
//!   refuses; the refusal that ends it sets the rate from the climb
//!   replayed through a meter like the server's (see `replayed`), or,
//!   where the replay does not say, halves it, as TCP does.
//! - **Avoidance.** After that, each second of successes adds
//!   [`INCREASE`] of the rate at the last lowering: the rate creeps towards
//!   the limit and crosses it rarely, since each crossing costs a pause.
//! - **Lowering.** A later refusal multiplies the rate by [`DECREASE`] (at
//!   most down to what the server accepted while sluice was busy), at most
//!   once per round trip: refusals of requests that started before the
//!   last lowering do not lower it again.
//! - **Gentle restarts.** The rate's burst is 100 ms' worth (it also absorbs late timer wake-ups, which a burst of one would lose as rate),
//!   or the server's burst as the first wave proved it, once slow start has ended,
//!   so when a pause ends the waiting requests start at the rate, not with
//!   every slot at once.
//! - **Key-bound refusals.** Some refusals no rate avoids (a key without
//!   quota, one backend shard down: the same lines refused at any pace).
//!   Each lowering starts an epoch (the requests started until the next);
//!   at a refusal that would lower, the latest epochs holding [`EVIDENCE`]
//!   refusals are compared with earlier ones at [`APART`] times their rate
//!   or more. A rate limit accepts a larger share of what is sent at a
//!   lower rate (as many a second, of fewer); if the share accepted did not
//!   rise by [`PAID`], lowering did not pay: the refusals are key-bound
//!   (when at most half the answers were refused). The rate then goes back
//!   to the lowest of those higher rates and climbs again as in slow start,
//!   and from then on a refusal lowers it only when the requests started
//!   since the rate last changed hold more refusals than the key-bound
//!   share (measured at the lower rates) explains, by [`SIGMAS`] standard
//!   deviations: among first attempts, or among all (a limiter may refuse
//!   mostly the retries a pause released together). Lowering again stays
//!   on the same probation.
//!
//! The pause a 429 or 503 asks for is the scheduler's, as before, for
//! key-bound refusals too (every 429 or 503 pauses its origin, until the
//! `Retry-After` or for the backoff); this only decides the pace once a
//! pause has ended.

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

/// Where between the bounds slow start's climb puts the server's rate
/// success may raise the rate.
const TOP_SHARE: f64 = 0.25;

/// The replayed climb's rate is taken no higher than this times what the
/// server accepted over it.
const STRETCH_SLACK: f64 = 1.1;

/// Slow start ends at this share of the rate its climb proves.
const LANDING: f64 = 1.0;

/// The starts this close before the first refusal measure the server's
/// burst (the first wave, sent before anything was known).
const WAVE: Duration = Duration::from_millis(100);

/// A start of the climb unanswered when its refusal came counts as held
/// back by the server only when sent at least this long before the refused
/// one (answers at once arrive with some jitter).
const HELD_JITTER: Duration = Duration::from_millis(5);

/// The rate epochs (requests started between two lowerings) kept for the
/// key-bound test.
const EPOCHS: usize = 16;

/// The key-bound test compares the latest epochs with earlier ones at
/// rates at least this factor above theirs.
const APART: f64 = 1.5;

/// A lowering paid when it raised the share of answers accepted by more
/// than this factor (a rate limit's, above its limit, rises by the factor
/// the rate fell: at least [`APART`]).
const PAID: f64 = 1.2;

/// Each pool of the key-bound test needs at least this many refusals.
const EVIDENCE: u64 = 3;

/// Refusals of more than this share of answers are never judged key-bound
/// (most answers must be successes: a server down, or far past its limit,
/// keeps its rate lowered).
const MOST_KEY_BOUND: f64 = 0.5;

/// Refusals beyond the key-bound share by this many standard deviations
/// are the rate's.
const SIGMAS: f64 = 3.0;

/// Answers and refusals of the requests started between two lowerings.
#[derive(Clone, Copy, Debug, Default)]
struct Epoch {
    /// Its first start (the origin's starts so far, plus one, at the lowering).
    first: u64,
    /// The rate the lowering set.
    rate: f64,
    /// Successes and refusals (other outcomes say nothing of the rate).
    answers: u64,
    refusals: u64,
    /// Those of first attempts.
    first_answers: u64,
    first_refusals: u64,
}

impl Epoch {
    fn add(&mut self, other: &Epoch) {
        self.answers += other.answers;
        self.refusals += other.refusals;
        self.first_answers += other.first_answers;
        self.first_refusals += other.first_refusals;
    }
}

/// What became of a start of the first wave or of slow start's climb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// No answer yet.
    Unanswered,
    /// A success: the server's meter admitted it.
    Admitted,
    /// Any other answer (a refusal, an error).
    Other,
}

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
    /// When recent attempts started, until the first refusal.
    starts: VecDeque<Instant>,
    /// When the last attempt completed (only the last is asked for: a
    /// window of them cost a push and a trim a request).
    last_completion: Option<Instant>,
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
    /// Before the first refusal, the starts of the last [`WAVE`] (number,
    /// instant, fate); then, until slow start ends, those of the wave
    /// the first refusal answered.
    wave: VecDeque<(u64, Instant, Fate)>,
    /// What the server's burst is at least, measured by the first wave
    /// once slow start has ended (0 until then).
    server_burst: u64,
    /// During slow start, its starts (number, instant, fate).
    climb: VecDeque<(u64, Instant, Fate)>,
    /// Success raises the rate no higher than this, once the climb
    /// bounded the server's rate (a later refusal forgets it).
    top: Option<f64>,
    /// The last [`EPOCHS`] rate epochs, the current one last.
    epochs: VecDeque<Epoch>,
    /// The shares of first attempts' answers and of all answers refused
    /// whatever the rate, once lowering it proved not to pay (see
    /// [`Discovered::unpaid`]).
    key_share: Option<(f64, f64)>,
    /// The last completion was a refusal judged key-bound.
    key_bound: bool,
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

    /// The last completion was a refusal that lowering the rate would not
    /// avoid (see the module doc). It lowers nothing, but it still pauses
    /// its origin as every 429 or 503 does: the pause is the contract's.
    #[cfg(test)]
    pub(crate) fn key_bound(&self) -> bool {
        self.key_bound
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
        if self.rate.is_none() {
            // Instants are compared with cutoffs, computed once: a
            // subtraction of instants per element cost more than the rest
            // of a start. The recent starts measure only the first
            // refusal's rate (`observed`): once a rate is set, none is kept.
            trim(&mut self.starts, cutoff(now, RECENT));
            self.starts.push_back(now);
            let wave_cutoff = cutoff(now, WAVE);
            while self.wave.front().is_some_and(|w| older(w.1, wave_cutoff))
                || self.wave.len() >= KEEP
            {
                self.wave.pop_front();
            }
            self.wave
                .push_back((self.dispatched, now, Fate::Unanswered));
        } else if self.slow_start && self.climb.len() < KEEP {
            self.climb
                .push_back((self.dispatched, now, Fate::Unanswered));
        }
        self.dispatched
    }

    /// An attempt completed: `refused` when it was a 429 or 503 that no
    /// rate-limit header predicted; `first` when it was its request's first
    /// attempt; `number` is the start it answers; `ceiling` the user's own
    /// rate for the origin, if any. True when the rate changed enough to
    /// tell.
    pub(crate) fn completed(
        &mut self,
        refused: bool,
        success: bool,
        first: bool,
        number: u64,
        ceiling: Option<f64>,
        now: Instant,
    ) -> bool {
        self.note(success, now);
        self.key_bound = false;
        if refused || success {
            self.tally(refused, first, number);
        }
        let fate = if success { Fate::Admitted } else { Fate::Other };
        for starts in [&mut self.wave, &mut self.climb] {
            if let Some(i) = position(starts, number) {
                starts[i].2 = fate;
            }
        }
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
            .last_completion
            .is_none_or(|t| older(t, cutoff(now, GAP)));
        if gap {
            self.active_since = Some(now);
            self.stretch_successes = 0;
        }
        self.stretch_successes += u64::from(success);
        self.last_completion = Some(now);
        if success {
            trim(&mut self.successes, cutoff(now, RECENT));
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
        self.key_bound = self.judge_key_bound(number, ceiling);
        if self.key_bound || number <= self.lowered_after {
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
                let (least, most) = self.wave_burst(rate);
                // The first wave is measured once (a slow start again,
                // after key-bound refusals, has none).
                self.server_burst = self.server_burst.max(least);
                let climb = std::mem::take(&mut self.climb);
                let halved = rate * AFTER_SLOW_START;
                let stretch = self.stretch(now);
                let heuristic =
                    stretch.map_or(halved, |a| halved.min(a).max(rate * SLOW_START_FLOOR));
                // A sanity bound on the replay (a loaded machine sends
                // and the server sees at different moments): not much
                // above what the server accepted over the whole climb.
                let sane = stretch.map_or(halved, |a| a * STRETCH_SLACK);
                match replayed(&climb, number, (least, most), rate, now) {
                    Some((lower, upper)) => {
                        let (lower, upper) = (lower.min(sane), upper.min(sane));
                        // Below the lower bound (the replay reads send
                        // times for arrivals, which answers late by
                        // varying delays blur), and success raises it no
                        // further than between the bounds, near the
                        // lower: creeping above the server's rate costs
                        // a pause.
                        self.top = Some(lower + (upper - lower) * TOP_SHARE);
                        (lower * LANDING).max(rate * SLOW_START_FLOOR)
                    }
                    None => heuristic,
                }
            }
            Some(rate) => {
                self.top = None;
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
            self.starts = VecDeque::new();
        }
        let next = cap(next.max(LOWEST), ceiling);
        self.set_epoch(next);
        self.lowerings += 1;
    }

    /// A new rate epoch at `rate`: the requests started from now on.
    fn set_epoch(&mut self, rate: f64) {
        self.rate = Some(rate);
        self.lowered_to = rate;
        self.lowered_after = self.dispatched;
        if self.epochs.len() >= EPOCHS {
            self.epochs.pop_front();
        }
        self.epochs.push_back(Epoch {
            first: self.dispatched + 1,
            rate,
            ..Epoch::default()
        });
    }

    /// Counts an answer (a success or a refusal) of start `number` in its
    /// epoch.
    fn tally(&mut self, refused: bool, first: bool, number: u64) {
        if self.rate.is_none() {
            return;
        }
        if let Some(e) = self.epochs.iter_mut().rev().find(|e| e.first <= number) {
            e.answers += 1;
            e.refusals += u64::from(refused);
            e.first_answers += u64::from(first);
            e.first_refusals += u64::from(first && refused);
        }
    }

    /// Whether a refusal (already tallied) is one lowering the rate would
    /// not avoid. Once lowering proved not to pay (`unpaid`), the rate
    /// climbs back (slow start again, from where the useless lowerings
    /// began) and refusals are key-bound while the requests started since
    /// the last change of rate hold no more of them than the key-bound
    /// shares explain (`beyond`).
    fn judge_key_bound(&mut self, number: u64, ceiling: Option<f64>) -> bool {
        if self.rate.is_none() {
            return false;
        }
        if number > self.lowered_after
            && let Some((share, rate)) = self.unpaid()
        {
            self.key_share = Some(share);
            self.slow_start = true;
            self.top = None;
            self.climb.clear();
            self.epochs.clear();
            self.set_epoch(cap(rate, ceiling));
            return true;
        }
        self.key_share.is_some_and(|share| !self.beyond(share))
    }

    /// Lowering did not pay: the share of answers accepted in the latest
    /// epochs (as many as hold [`EVIDENCE`] refusals) is not [`PAID`] times
    /// that of the earlier epochs at [`APART`] times their highest rate or
    /// more (with as many refusals). A rate limit accepts a larger share at
    /// a lower rate (as many a second, of fewer sent); refusals bound to
    /// keys or lines (a key without quota, a shard down) are the same share
    /// at any rate. Returns the key-bound shares (see [`Discovered::beyond`])
    /// and the lowest rate of the earlier epochs (the rate to go back to).
    fn unpaid(&self) -> Option<((f64, f64), f64)> {
        let (mut low, mut high) = (Epoch::default(), Epoch::default());
        high.rate = f64::INFINITY;
        for e in self.epochs.iter().rev() {
            if low.refusals < EVIDENCE {
                low.rate = low.rate.max(e.rate);
                low.add(e);
            } else if e.rate >= low.rate * APART {
                high.rate = high.rate.min(e.rate);
                high.add(e);
            }
        }
        if low.refusals < EVIDENCE || high.refusals < EVIDENCE {
            return None;
        }
        let refused = |e: &Epoch| e.refusals as f64 / e.answers as f64;
        let (low_share, high_share) = (refused(&low), refused(&high));
        let paid = 1.0 - low_share > (1.0 - high_share) * PAID;
        // What later refusals are held to: the share of first attempts
        // refused at the low rates (a rate limit's refusals, if any, came
        // at the high ones; retries of key-bound requests, refused again,
        // come at their backoff's pace, not the rate's), one refusal in two
        // answers added so that a few answers do not say it is nil.
        let first = (low.first_refusals as f64 + 1.0) / (low.first_answers as f64 + 2.0);
        let shares = (first.min(MOST_KEY_BOUND), low_share);
        (!paid && low_share <= MOST_KEY_BOUND).then_some((shares, high.rate))
    }

    /// More refusals among the answers to requests started since the last
    /// change of rate than the key-bound shares explain (`first` of first
    /// attempts, `all` of all: a rate limit may refuse mostly retries, sent
    /// together when a pause ends), by [`SIGMAS`] standard deviations and
    /// one more: the rate's own. Only answers since then: a rate lowered
    /// for its refusals must be judged afresh.
    fn beyond(&self, (first, all): (f64, f64)) -> bool {
        let Some(epoch) = self.epochs.back() else {
            return false;
        };
        let over = |refusals: u64, answers: u64, share: f64| {
            let expected = share * answers as f64;
            let spread = (expected * (1.0 - share)).sqrt();
            refusals as f64 > expected + SIGMAS * spread + 1.0
        };
        over(epoch.first_refusals, epoch.first_answers, first)
            || over(epoch.refusals, epoch.answers, all)
    }

    /// What the first wave proves of the server's burst, at least and at
    /// most. At most: the requests of it the server admitted (its refused
    /// request found the meter full, and no more than those in it). At
    /// least: those, less what the meter can have drained while they
    /// arrived at `peak` (a rate above the server's, since slow start at
    /// `peak` was refused). A meter (nginx's `limit_req`, a token bucket)
    /// holds at least that many at once; since sluice's rate is below the
    /// server's, a limiter with that burst sends nothing the server's
    /// meter would refuse, and after a pause it restarts with what the
    /// server's meter took back meanwhile, not a tenth of a second's worth.
    fn wave_burst(&mut self, peak: f64) -> (u64, u64) {
        let wave = std::mem::take(&mut self.wave);
        let mut admitted = wave.iter().filter(|w| w.2 == Fate::Admitted).map(|w| w.1);
        let Some(first) = admitted.next() else {
            return (0, 0);
        };
        let (count, last) = admitted.fold((1u64, first), |(n, _), t| (n + 1, t));
        let drained = peak * last.saturating_duration_since(first).as_secs_f64();
        ((count as f64 - drained).floor().max(0.0) as u64, count)
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
        let top = self.top.map_or(rate + step, |top| top.max(rate));
        self.rate = Some(cap((rate + step).min(top), ceiling));
    }

    /// A new limiter when the rate moved; it keeps what the old one had
    /// spent, so a rebuild never lets more through at once.
    fn rebuild(&mut self, now: Instant) {
        let Some(rate) = self.rate else {
            return;
        };
        let burst = ((rate / 10.0).floor() as u64).max(1).max(self.server_burst);
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

/// The server's rate, from slow start's climb replayed through a meter
/// like the server's (nginx's `limit_req`, a token bucket: a level that
/// drains at the rate; a request that would take it above the burst is
/// refused). The climb started on an empty meter (the pause before it
/// drained it) and ended with the start `refused`. Each start of it the
/// server admitted found the level at most `burst − 1`, and the first wave
/// proved the burst within `(least, most)`: so the rate is at least the one
/// at which the highest level the replay finds before an admitted start is
/// `most − 1`. The refused start found the level above `burst − 1`, so the
/// rate is below the one at which the replay puts it at `least − 1`. Both
/// bounds, when the first wave told the burst to within a request, are
/// within about a request's worth over the climb's busy time. A start
/// sent well before the refused one (see `held_before`) and still
/// unanswered when the refusal came (`now`) counts as admitted: a meter
/// refuses at once, so it is one the server holds back (nginx's
/// `limit_req` without `nodelay` delays what its burst admits by up to
/// burst ÷ rate), not one it refused; one sent just before is only late.
/// `None` when
/// the climb does not say (no burst measured, the start not among the
/// climb's, or levels no rate below `peak` explains).
fn replayed(
    climb: &VecDeque<(u64, Instant, Fate)>,
    refused: u64,
    (least, most): (u64, u64),
    peak: f64,
    now: Instant,
) -> Option<(f64, f64)> {
    let at = climb[climb.binary_search_by_key(&refused, |c| c.0).ok()?].1;
    // Sent this long before the refused start and still unanswered: held
    // back, where a server that answers at once would have answered (twice
    // the refusal's round trip; at least a few milliseconds of jitter).
    let held_before = at.checked_sub((now.saturating_duration_since(at) * 2).max(HELD_JITTER));
    let admitted: Vec<Instant> = climb
        .iter()
        .filter(|c| {
            c.1 <= at
                && (c.2 == Fate::Admitted
                    || (c.2 == Fate::Unanswered && held_before.is_some_and(|h| c.1 < h)))
        })
        .map(|c| c.1)
        .collect();
    // The level the refused start found, at `rate`.
    let found = |rate: f64| {
        let mut level = 0.0f64;
        for pair in admitted
            .windows(2)
            .chain([[*admitted.last()?, at].as_slice()])
        {
            level += 1.0;
            let drained = rate * pair[1].saturating_duration_since(pair[0]).as_secs_f64();
            level = (level - drained).max(0.0);
        }
        Some(level)
    };
    // The highest level an admitted start found, at `rate`.
    let highest = |rate: f64| {
        let (mut level, mut highest) = (0.0f64, 0.0f64);
        for pair in admitted.windows(2) {
            level += 1.0;
            let drained = rate * pair[1].saturating_duration_since(pair[0]).as_secs_f64();
            level = (level - drained).max(0.0);
            highest = highest.max(level);
        }
        highest
    };
    let (least, most) = (least as f64, most as f64);
    if most < 1.0 || admitted.len() < 2 || highest(peak) > most - 1.0 {
        return None;
    }
    if highest(LOWEST) <= most - 1.0 {
        return None;
    }
    let lower = bisect(peak, |rate| highest(rate) > most - 1.0);
    let upper = bisect(peak, |rate| found(rate).is_some_and(|l| l > least - 1.0));
    Some((lower, upper.max(lower)))
}

/// The rate in [`LOWEST`, `peak`] where `below` stops holding (it holds
/// for low rates and not for high ones).
fn bisect(peak: f64, below: impl Fn(f64) -> bool) -> f64 {
    let (mut lo, mut hi) = (LOWEST, peak);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if below(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Where start `number` is among `starts` (sorted by number, unique).
/// They are consecutive numbers (every start is pushed, the oldest
/// dropped first), so its place is its distance from the first, checked;
/// a binary search otherwise.
fn position(starts: &VecDeque<(u64, Instant, Fate)>, number: u64) -> Option<usize> {
    let first = starts.front()?.0;
    let guess = usize::try_from(number.checked_sub(first)?).ok()?;
    if starts.get(guess).is_some_and(|w| w.0 == number) {
        return Some(guess);
    }
    starts.binary_search_by_key(&number, |w| w.0).ok()
}

/// Forgets instants older than `cutoff` (see [`cutoff`]; [`RECENT`] ago),
/// and the oldest beyond [`KEEP`].
fn trim(times: &mut VecDeque<Instant>, cutoff: Option<Instant>) {
    while times.front().is_some_and(|&t| older(t, cutoff)) || times.len() >= KEEP {
        times.pop_front();
    }
}

/// `now - age`: an instant is more than `age` before `now` exactly when it
/// is before this ([`older`]). `None` when no instant is (the clock's
/// start is less than `age` ago).
fn cutoff(now: Instant, age: Duration) -> Option<Instant> {
    now.checked_sub(age)
}

/// True when `t` is before `cutoff`: `now - t > age` without a subtraction
/// per instant.
fn older(t: Instant, cutoff: Option<Instant>) -> bool {
    cutoff.is_some_and(|c| t < c)
}

fn cap(rate: f64, ceiling: Option<f64>) -> f64 {
    match ceiling {
        Some(c) => rate.min(c),
        None => rate.min(crate::ratelimit::MAX_RATE),
    }
}

#[cfg(test)]
#[path = "discovered_tests.rs"]
mod simulated;

#[cfg(test)]
mod tests {
    use super::*;

    /// A climb at 80 a second against a meter of 50 a second with a burst
    /// of 10 (nginx's `limit_req`), each start's fate as the meter decides,
    /// up to the first refusal; returns the climb and the refused start.
    fn climb_against_a_meter(t0: Instant) -> (VecDeque<(u64, Instant, Fate)>, u64) {
        let (mut climb, mut level) = (VecDeque::new(), 0.0f64);
        let mut last = t0;
        for n in 1..=200u64 {
            let now = t0 + Duration::from_micros(12_500 * n);
            level = (level - 50.0 * (now - last).as_secs_f64()).max(0.0);
            last = now;
            if level + 1.0 > 10.0 {
                climb.push_back((n, now, Fate::Other));
                return (climb, n);
            }
            level += 1.0;
            climb.push_back((n, now, Fate::Admitted));
        }
        unreachable!("80 a second overruns 50 a second with a burst of 10")
    }

    #[test]
    fn a_start_held_back_by_the_server_counts_as_admitted_in_the_replay() {
        let t0 = Instant::now();
        let (answered, refused) = climb_against_a_meter(t0);
        // The refusal comes back a millisecond after it was sent.
        let answered_at = answered.back().expect("a climb").1 + Duration::from_millis(1);
        let known = replayed(&answered, refused, (10, 10), 80.0, answered_at);
        let (lower, upper) = known.expect("the climb tells the rate");
        assert!(
            (45.0..=55.0).contains(&lower) && upper >= lower,
            "{lower}..{upper}"
        );
        // nginx without `nodelay` answers the refusal at once and holds
        // back the admitted starts of the last 200 ms.
        let at = answered.back().expect("a climb").1;
        let mut held = answered.clone();
        for start in held.iter_mut() {
            if start.2 == Fate::Admitted && at - start.1 < Duration::from_millis(200) {
                start.2 = Fate::Unanswered;
            }
        }
        assert_eq!(replayed(&held, refused, (10, 10), 80.0, answered_at), known);
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_refusal_starts_from_the_recent_sending_rate() {
        let t0 = Instant::now();
        let mut d = Discovered::default();
        for i in 0..40 {
            d.start(at(t0, i * 10));
            assert!(!d.completed(false, true, true, i + 1, None, at(t0, i * 10 + 5)));
        }
        assert_eq!(d.rate(), None, "no refusal, no rate");
        assert!(d.completed(true, false, true, 40, None, at(t0, 400)));
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
                d.completed(false, true, true, n, None, t0);
            }
        }
        d.completed(true, false, true, 11, None, t0);
        let first = d.rate().expect("started");
        // The other 19 were sent before the lowering: no further change.
        assert_eq!(first, 20.0);
        for n in 12..=20 {
            d.completed(true, false, true, n, None, t0);
        }
        assert_eq!(d.rate(), Some(first));
        // A request sent after it, refused, lowers it (ending slow start),
        // and the next one by the factor.
        let n = d.start(at(t0, 2000));
        d.completed(true, false, true, n, None, at(t0, 2001));
        let halved = d.rate().expect("rate");
        assert!(
            (halved - first * AFTER_SLOW_START).abs() < 1e-9,
            "{halved} vs {first}"
        );
        let n = d.start(at(t0, 4000));
        d.completed(true, false, true, n, None, at(t0, 4001));
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
        d.completed(true, false, true, n, Some(5.0), t0);
        assert!(d.rate().expect("rate") <= 5.0);
        for i in 0..1000 {
            let n = d.start(at(t0, i));
            d.completed(false, true, true, n, Some(5.0), at(t0, i + 1));
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
            d.completed(false, true, true, n, None, t0);
        }
        let n = d.start(t0);
        d.completed(true, false, true, n, None, t0);
        assert!(d.slow_start);
        let started = d.rate().expect("rate");
        let n = d.start(at(t0, 10));
        d.completed(true, false, true, n, None, at(t0, 10));
        assert!(!d.slow_start);
        let lowered = d.rate().expect("rate");
        assert!((lowered - started * AFTER_SLOW_START).abs() < 1e-9);
        // About `rate` successes make a second's worth.
        let mut rate = lowered;
        let mut ms = 20;
        let mut count = 0.0;
        while count < lowered {
            let n = d.start(at(t0, ms));
            d.completed(false, true, true, n, None, at(t0, ms));
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
            d.completed(false, true, true, n, None, t0);
        }
        let n = d.start(t0);
        d.completed(true, false, true, n, None, t0);
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

    /// Refusals of a steady share while the rate falls: after a few
    /// lowerings they are judged key-bound, the rate goes back up and no
    /// longer falls; refusals whose share falls with the rate (a limit's)
    /// keep lowering it.
    #[test]
    fn a_refused_share_that_lowering_does_not_move_is_key_bound() {
        for (limiter, key_bound) in [(false, true), (true, false)] {
            let t0 = Instant::now();
            let mut d = Discovered::default();
            let (mut ms, mut lowest, mut judged) = (0, f64::MAX, false);
            for i in 1..=2000u64 {
                ms += 10;
                let n = d.start(at(t0, ms));
                let rate = d.rate().unwrap_or(100.0);
                // One in eight refused at any rate, or (a limit of 20 a
                // second) the share sent above 20.
                let refused = match limiter {
                    false => i % 8 == 0,
                    true => (i % 100) as f64 >= 100.0 * 20.0 / rate.max(20.0),
                };
                d.completed(refused, !refused, true, n, None, at(t0, ms + 5));
                judged |= d.key_bound();
                lowest = lowest.min(d.rate().unwrap_or(f64::MAX));
            }
            assert_eq!(judged, key_bound, "limiter {limiter}");
            assert_eq!(d.key_share.is_some(), key_bound, "limiter {limiter}");
            if key_bound {
                assert!(lowest > LOWEST * 2.0, "{lowest}");
                assert!(d.rate().expect("a rate") > lowest * APART, "{:?}", d.rate());
            }
        }
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
                d.completed(kind == 1, kind == 2, true, number, ceiling, now);
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
