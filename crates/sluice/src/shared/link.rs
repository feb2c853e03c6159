//! The engine's side of the shared limiter: a task that owns the Redis
//! connection, runs one call at a time, polls for pauses and closures when
//! nothing is asked, and reconnects with backoff when Redis is gone. The
//! driver talks to it through channels and never waits for Redis itself.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Call, Limiter, Reply};
use crate::event::Event;
use crate::scheduler::{PEER_PAUSE, Scheduler};

/// With nothing to reserve, pauses and closures are read this often.
const POLL: Duration = Duration::from_millis(100);

/// Starts due within this are reserved in one call.
pub const HORIZON: Duration = Duration::from_millis(50);

/// The most starts one call reserves.
pub const MOST: u32 = 64;

/// First wait before reconnecting; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The last try, at `--redis-timeout`, may take this long: a refused
/// connection fails well within it, and a Redis that hangs is given up on
/// this soon after the timeout.
const LAST_TRY: Duration = BACKOFF_MIN;

/// How a stop for lost Redis begins (it is not published to the others).
pub const REDIS_LOST: &str = "Redis unreachable";

/// What the driver asks of the link.
#[derive(Debug)]
enum Ask {
    /// Reserve up to `wanted` starts of `cells` budget cells each (for
    /// `origin`, with `--per-host-rate`).
    Reserve {
        wanted: u32,
        cells: u64,
        origin: Option<String>,
        lead: Duration,
    },
    /// Pause this origin for everyone.
    Pause(String, Duration),
    /// Close this origin for everyone.
    Close(String, String),
    /// Publish what was learned of this origin's limits.
    Learn(String, super::Dimension, i64),
}

/// Redis is not answering.
#[derive(Clone, Debug, PartialEq)]
pub enum Trouble {
    /// Unreachable since `for_` ago; reconnecting (the message says why).
    Down {
        /// How long it has been gone.
        for_: Duration,
        /// What failed last.
        message: String,
    },
    /// Reachable again.
    Back,
    /// Gone longer than `--redis-timeout`: the run stops.
    GaveUp {
        /// What failed last, and for how long.
        message: String,
    },
}

/// What Redis answered, on this process's clock.
#[derive(Debug, Default)]
pub struct Grant {
    /// The answer to a reservation asked for (not a poll's).
    pub answers: bool,
    /// Redis's clock when it answered, on this process's (never earlier
    /// than it was: see `RedisClock`).
    pub said_at: Option<Instant>,
    /// With `--per-host-rate`: the origin the starts are for.
    pub origin: Option<String>,
    /// When each reserved start may go.
    pub starts: Vec<Instant>,
    /// Budget cells each start holds.
    pub budget_cells: u64,
    /// The next start Redis could reserve is due beyond the horizon: ask
    /// again then.
    pub retry_at: Option<Instant>,
    /// Origins paused for everyone, until these instants.
    pub pauses: Vec<(String, Instant)>,
    /// Origins closed for everyone, and why.
    pub closed: Vec<(String, String)>,
}

/// What the link hands the driver.
#[derive(Debug)]
pub enum Reservation {
    /// Starts reserved, and the pauses and closures everyone sees.
    Granted(Grant),
    /// Redis trouble.
    Trouble(Trouble),
}

/// The driver's handle on the link task.
pub struct Link {
    asks: mpsc::UnboundedSender<Ask>,
    replies: mpsc::UnboundedReceiver<Reservation>,
    /// A reservation is asked for and not yet answered (since then).
    pub asked: bool,
    asked_at: Option<Instant>,
    /// How long the last answers took to reach the driver: from Redis's
    /// clock ([`Grant::said_at`]), and from the ask.
    delays: Recent,
    trips: Recent,
}

/// The last few durations seen.
#[derive(Debug, Default)]
struct Recent {
    last: [Duration; 16],
    seen: usize,
}

impl Recent {
    fn push(&mut self, d: Duration) {
        self.last[self.seen % self.last.len()] = d;
        self.seen += 1;
    }

    /// The median of those seen (zero before any): the tail is a stalled
    /// process's, which no lead or prefetch would serve.
    fn typical(&self) -> Duration {
        let mut seen: Vec<Duration> = self.last[..self.seen.min(self.last.len())].to_vec();
        seen.sort();
        seen.get(seen.len() / 2).copied().unwrap_or_default()
    }
}

/// The least time ahead to ask for grants: a timer's lateness.
const AHEAD_MIN: Duration = Duration::from_millis(2);

impl Link {
    /// Starts the link task on the current runtime.
    pub fn start(limiter: Limiter) -> Link {
        let (asks, asks_rx) = mpsc::unbounded_channel();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        tokio::spawn(serve(limiter, asks_rx, replies_tx));
        Link {
            asks,
            replies,
            asked: false,
            asked_at: None,
            delays: Recent::default(),
            trips: Recent::default(),
        }
    }

    /// How far after Redis's clock a reservation's first start must be so
    /// that its grant reaches the scheduler first: as long as answers
    /// typically take to reach it, so a grant is not late (and dropped)
    /// because Redis reserved it for an instant the reply could not reach
    /// in time. It costs no rate while the job's starts are reserved ahead
    /// (they are later than it anyway), and only it when the job's rate
    /// was idle: so the typical delay, not the slowest (a grant may be a
    /// little late: `late_allowed`).
    pub fn lead(&self) -> Duration {
        self.delays.typical().min(HORIZON / 4)
    }

    /// How long before its grants run out a process asks for more, so the
    /// next ones arrive in time: twice as long as asks typically take to
    /// be answered, and at most a fifth of the horizon (asking sooner on a
    /// slow machine would only add calls: several processes keep the
    /// job's grants ahead together).
    pub fn ahead(&self) -> Duration {
        (self.trips.typical() * 2).clamp(AHEAD_MIN, HORIZON / 5)
    }

    /// Asks for up to `wanted` starts of `cells` cells each (one at a time:
    /// ignored while one is asked).
    pub fn reserve(&mut self, wanted: u32, cells: u64, origin: Option<String>) {
        if !self.asked {
            self.asked = true;
            self.asked_at = Some(Instant::now());
            let _ = self.asks.send(Ask::Reserve {
                wanted,
                cells,
                origin,
                lead: self.lead(),
            });
        }
    }

    /// Pauses `origin` for every process.
    pub fn pause(&self, origin: &str, wait: Duration) {
        let _ = self.asks.send(Ask::Pause(origin.to_string(), wait));
    }

    /// Publishes the limits learned of `origin` for every process: a
    /// learned rate, and the requests its server's last answer left.
    pub fn learn(&self, origin: String, dim: super::Dimension, left: i64) {
        let _ = self.asks.send(Ask::Learn(origin, dim, left));
    }

    /// Closes `origin` for every process.
    pub fn close(&self, origin: &str, reason: &str) {
        let _ = self
            .asks
            .send(Ask::Close(origin.to_string(), reason.to_string()));
    }

    /// The next thing the link has to say.
    pub async fn recv(&mut self) -> Option<Reservation> {
        let got = self.replies.recv().await;
        let now = Instant::now();
        if let Some(Reservation::Granted(Grant {
            said_at: Some(at), ..
        })) = &got
        {
            self.delays.push(now.saturating_duration_since(*at));
        }
        if matches!(
            got,
            Some(Reservation::Granted(Grant { answers: true, .. })) | Some(Reservation::Trouble(_))
        ) {
            self.asked = false;
            if let Some(at) = self.asked_at.take()
                && matches!(got, Some(Reservation::Granted(_)))
            {
                self.trips.push(now.saturating_duration_since(at));
            }
        }
        got
    }
}

/// The link task: one call at a time, in the order asked; a poll when idle.
async fn serve(
    mut limiter: Limiter,
    mut asks: mpsc::UnboundedReceiver<Ask>,
    replies: mpsc::UnboundedSender<Reservation>,
) {
    // Pauses and closures beyond one of each per call wait for the next.
    let mut backlog: Vec<Ask> = Vec::new();
    let mut clock = RedisClock::default();
    loop {
        if backlog.is_empty() {
            tokio::select! {
                ask = asks.recv() => match ask {
                    Some(ask) => backlog.push(ask),
                    None => return,
                },
                () = tokio::time::sleep(POLL) => {}
            }
        }
        while let Ok(more) = asks.try_recv() {
            backlog.push(more);
        }
        let (call, rest) = batch(std::mem::take(&mut backlog));
        backlog = rest;
        let sent = Instant::now();
        let Some(reply) = call_until_answered(&mut limiter, &call, &replies).await else {
            return;
        };
        let at = clock.redis_now(reply.now_us, sent, Instant::now());
        let granted = Reservation::Granted(Grant {
            answers: call.wanted > 0,
            said_at: Some(at),
            origin: call.origin.clone(),
            starts: reply.starts.iter().map(|&d| at + d).collect(),
            budget_cells: call.budget_cells,
            retry_at: reply.missed.map(|m| at + m.saturating_sub(HORIZON)),
            pauses: reply.pauses.into_iter().map(|(o, d)| (o, at + d)).collect(),
            closed: reply.closed,
        });
        if replies.send(granted).is_err() {
            return;
        }
    }
}

/// Redis's clock on this process's: where Redis's `now` of a reply falls
/// on this process's monotonic clock.
///
/// The instant a reply arrives is late by the reply's trip back and by the
/// wait for this task to run, which a loaded machine makes long and
/// uneven; grants mapped from it would start late by as much, each process
/// by its own amount, bunching starts Redis spaced apart. So, as NTP does,
/// the offset between the clocks is estimated from the quickest replies:
/// Redis's `now` lies between the call's sending and its reply, so
/// `arrival − now` is at least the offset, and the least of it seen is the
/// best estimate. It may creep up by [`RedisClock::CREEP`] (clocks drift;
/// Redis's is the wall clock), and an answer is never placed outside the
/// call's own sending and arrival.
#[derive(Debug, Default)]
struct RedisClock {
    /// The first reply: Redis's `now` (microseconds) and when it arrived.
    first: Option<(u64, Instant)>,
    /// The offset estimated: arrival − `now`, in microseconds since `first`,
    /// and when it was last lowered or crept.
    offset: Option<(i64, Instant)>,
}

impl RedisClock {
    /// How fast the estimate may rise between replies (1 ms a second,
    /// twice the fastest slew NTP applies to a clock).
    const CREEP: f64 = 1e-3;

    /// Where Redis's `now_us` falls on this clock, for a call sent at
    /// `sent` and answered at `arrived`.
    fn redis_now(&mut self, now_us: u64, sent: Instant, arrived: Instant) -> Instant {
        let &mut (first_us, first_at) = self.first.get_or_insert((now_us, arrived));
        let redis = now_us as i64 - first_us as i64;
        let local = arrived.saturating_duration_since(first_at).as_micros() as i64;
        let sample = local - redis;
        let offset = match self.offset {
            Some((offset, since)) => {
                let crept =
                    arrived.saturating_duration_since(since).as_secs_f64() * 1e6 * Self::CREEP;
                offset.saturating_add(crept as i64).min(sample)
            }
            None => sample,
        };
        self.offset = Some((offset, arrived));
        let at = redis + offset;
        let placed = if at >= 0 {
            first_at + Duration::from_micros(at as u64)
        } else {
            first_at
                .checked_sub(Duration::from_micros(at.unsigned_abs()))
                .unwrap_or(sent)
        };
        placed.clamp(sent, arrived)
    }
}

/// One call from the asks: the latest reservation, one pause and one
/// closure; the other pauses and closures are left for the next call.
fn batch(asks: Vec<Ask>) -> (Call, Vec<Ask>) {
    let mut call = Call {
        horizon: HORIZON,
        ..Call::default()
    };
    let mut rest = Vec::new();
    for ask in asks {
        match ask {
            Ask::Reserve {
                wanted,
                cells,
                origin,
                lead,
            } => {
                call.wanted = wanted.min(MOST);
                call.budget_cells = cells;
                call.origin = origin;
                call.lead = lead;
            }
            Ask::Pause(o, w) => match &mut call.pause {
                None => call.pause = Some((o, w)),
                Some((p, old)) if *p == o => *old = (*old).max(w),
                Some(_) => rest.push(Ask::Pause(o, w)),
            },
            Ask::Close(o, r) if call.close.is_none() => call.close = Some((o, r)),
            close @ Ask::Close(..) => rest.push(close),
            // The latest of an origin replaces the older; another waits.
            Ask::Learn(o, d, left) => match &mut call.learn {
                Some((p, _, _)) if *p != o => rest.push(Ask::Learn(o, d, left)),
                learn => *learn = Some((o, d, left)),
            },
        }
    }
    (call, rest)
}

/// Calls until Redis answers: reconnects with backoff, says so, and gives
/// up after the limiter's timeout. `None` when the run is gone or Redis
/// gave out.
///
/// Redis counts as gone from the sending of the first call it did not
/// answer, and the run stops at `--redis-timeout` after that, not at the
/// end of the backoff step that crosses it: the last wait is cut short at
/// the deadline, and every try (a reconnect and the call) ends by the
/// deadline plus [`LAST_TRY`].
async fn call_until_answered(
    limiter: &mut Limiter,
    call: &Call,
    replies: &mpsc::UnboundedSender<Reservation>,
) -> Option<Reply> {
    let mut since: Option<Instant> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        let sent = Instant::now();
        let allowed = match since {
            // The first try is the loss's start: it too ends by the deadline.
            None => super::CALL_TIMEOUT.min(limiter.timeout + LAST_TRY),
            Some(since) => super::CALL_TIMEOUT
                .min((since + limiter.timeout + LAST_TRY).saturating_duration_since(sent)),
        };
        let reconnect = since.is_some();
        let attempt = async {
            if reconnect {
                limiter.reconnect().await?;
            }
            limiter.call(call).await
        };
        let result = match tokio::time::timeout(allowed, attempt).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {allowed:?}")),
        };
        let message = match result {
            Ok(reply) => {
                if since.is_some() {
                    replies.send(Reservation::Trouble(Trouble::Back)).ok()?;
                }
                return Some(reply);
            }
            Err(message) => message,
        };
        let start = *since.get_or_insert(sent);
        let for_ = start.elapsed();
        if for_ >= limiter.timeout {
            let message = format!(
                "{REDIS_LOST} for {:.1}s, longer than the {:?} allowed: {message}",
                for_.as_secs_f64(),
                limiter.timeout
            );
            let _ = replies.send(Reservation::Trouble(Trouble::GaveUp { message }));
            return None;
        }
        replies
            .send(Reservation::Trouble(Trouble::Down { for_, message }))
            .ok()?;
        tokio::time::sleep(backoff.min(limiter.timeout - for_)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

// ---- the driver's hooks: small, so the driver stays a thin loop -----------

/// Publishes what the scheduler learned of origins' limits, and asks for
/// a reservation when the scheduler wants one.
pub fn demand(link: &mut Link, scheduler: &mut Scheduler) {
    for (origin, per_second, burst, left) in scheduler.shared_learned_out() {
        link.learn(origin, super::Dimension::learned(per_second, burst), left);
    }
    if link.asked {
        return;
    }
    if let Some((wanted, cells, origin)) = scheduler.shared_demand(Instant::now(), link.ahead()) {
        link.reserve(wanted, cells, origin);
    }
}

/// What the link says next; never, without a link.
pub async fn next(link: &mut Option<Link>) -> Option<Reservation> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

/// Hands what the link said to the scheduler.
pub fn heard(said: Reservation, scheduler: &mut Scheduler, now: Instant) {
    match said {
        Reservation::Granted(grant) => scheduler.shared_granted(grant, now),
        Reservation::Trouble(Trouble::GaveUp { message }) => {
            scheduler.shared_trouble(Trouble::GaveUp {
                message: message.clone(),
            });
            scheduler.shared_lost(message, now);
        }
        Reservation::Trouble(trouble) => {
            scheduler.shared_trouble(trouble);
            scheduler.shared_unanswered(now);
        }
    }
}

/// Publishes what this process saw that every process must honour: a
/// pause (unless another process published it) and a closed origin.
pub fn publish(link: &Link, event: &Event) {
    match event {
        Event::Paused {
            origin,
            wait,
            reason,
        } if reason != PEER_PAUSE => link.pause(origin, *wait),
        // Closed because this process lost Redis: the others may have it.
        Event::OriginClosed { reason, .. } if reason.starts_with(REDIS_LOST) => {}
        Event::OriginClosed { origin, reason } => link.close(origin, reason),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_reply_is_placed_by_the_quickest_ones_not_by_its_arrival() {
        let t0 = Instant::now();
        let ms = |m: f64| t0 + Duration::from_secs_f64(m / 1000.0);
        // Whole microseconds: within 2 µs.
        let near = |a: Instant, b: Instant| {
            let off = a.max(b) - a.min(b);
            assert!(off <= Duration::from_micros(2), "{a:?} vs {b:?}");
        };
        let mut clock = RedisClock::default();
        // The first reply, slow: nothing better known than its arrival.
        near(clock.redis_now(1_000_000, ms(0.0), ms(10.0)), ms(10.0));
        // A quick one shows the first came 9.9 ms after Redis's now.
        near(clock.redis_now(1_020_000, ms(20.0), ms(20.1)), ms(20.1));
        // A reply 15 ms late is placed where Redis's clock was (plus the
        // 35 µs the estimate may creep in 35 ms), not at its arrival.
        let placed = clock.redis_now(1_040_000, ms(40.0), ms(55.0));
        near(placed, ms(40.135));
        // Never before the call was sent.
        near(clock.redis_now(1_000_000, ms(60.0), ms(61.0)), ms(60.0));
    }

    #[test]
    fn redis_now_is_never_placed_before_it_happened() {
        // Redis's clock runs `skew` ahead of this one; each call's way
        // there and back takes a random time, some very long (a loaded
        // machine): wherever an answer is placed, it is at or after the
        // instant Redis read its clock (within the microsecond Redis
        // rounds to).
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = Instant::now();
        let skew_us = 1_764_000_000_000_000u64;
        let mut clock = RedisClock::default();
        let mut sent = t0;
        for _ in 0..2000 {
            sent += Duration::from_micros(rng.u64(100..20_000));
            let mut trip = || {
                let most = if rng.u8(..10) == 0 { 30_000 } else { 500 };
                Duration::from_micros(rng.u64(20..=most))
            };
            let (there, back) = (trip(), trip());
            let read = sent + there;
            let now_us = skew_us + (read - t0).as_micros() as u64;
            let placed = clock.redis_now(now_us, sent, read + back);
            assert!(
                placed + Duration::from_micros(1) >= read,
                "placed {:?} before Redis read its clock",
                read - placed
            );
        }
    }
}
