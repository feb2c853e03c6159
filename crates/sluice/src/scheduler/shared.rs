//! The scheduler's side of the shared limiter ([`crate::shared`]): under
//! `--redis`, the global rate and budget are Redis's, and a request starts
//! only when it holds a grant (a start reserved on Redis, with its budget
//! cells, due at an instant). The driver tops the grants up asynchronously;
//! here they are only held and spent, so the scheduler stays pure.
//! Pauses and closures that other processes published are applied as if
//! seen here.

use std::collections::{HashMap, VecDeque};

use tokio::time::Instant;

use super::Scheduler;
use crate::shared::Grant;
use std::time::Duration;

/// The reason of a pause that another process of the job saw; such pauses
/// are not published again.
pub const PEER_PAUSE: &str = "Retry-After seen by another process of the job";

/// A grant not used this long after its instant is dropped: used later, it
/// would bunch up with the starts other processes reserved after it. The
/// local limiter credits late timers as much ([`crate::gcra::CATCH_UP`]),
/// which the 0.5% pacing margin absorbs over windows of 0.6 s and more.
const STALE: Duration = crate::gcra::CATCH_UP;

/// Reserve more when fewer grants than this are held.
const LOW_WATER: usize = 4;

/// The grants held, and what other processes said.
#[derive(Debug, Default)]
pub(super) struct Grants {
    /// Reserved starts: when each may go, and its budget cells.
    starts: VecDeque<(Instant, u64)>,
    /// A reservation is asked for and not answered.
    asked: bool,
    /// Redis had no start within its horizon: ask again only from then.
    not_before: Option<Instant>,
    /// Redis is gone for good: every origin is closed, new ones too.
    lost: Option<String>,
    /// Pauses and closures of origins this process has not seen yet.
    peer_pauses: HashMap<String, Instant>,
    peer_closed: HashMap<String, String>,
}

/// Whether the oldest ready request may start, as far as grants go.
pub(super) enum Gate {
    Open,
    At(Instant),
    Shut,
}

impl Grants {
    /// A grant for a start of `cells` cells: grants too small for it are
    /// dropped (their cells go unused, which only ever lowers the rate).
    /// A grant more than [`STALE`] old is dropped too: used late, it would
    /// bunch up with the starts other processes reserved after it.
    pub(super) fn gate(&mut self, now: Instant, cells: u64) -> Gate {
        let stale = |at: Instant| at + STALE < now;
        while self
            .starts
            .front()
            .is_some_and(|&(at, c)| c < cells || stale(at))
        {
            self.starts.pop_front();
        }
        match (self.starts.front(), self.not_before) {
            (Some(&(at, _)), _) if at <= now => Gate::Open,
            (Some(&(at, _)), _) => Gate::At(at),
            (None, Some(at)) if at > now && !self.asked => Gate::At(at),
            (None, _) => Gate::Shut,
        }
    }

    /// Spends the grant [`Grants::gate`] opened.
    pub(super) fn take(&mut self) {
        self.starts.pop_front();
    }

    /// Waiting for Redis: no grant, and a reservation asked for (or Redis gone).
    pub(super) fn waiting(&self) -> bool {
        self.starts.is_empty() || self.asked || self.lost.is_some()
    }
}

impl Scheduler {
    /// Under `--redis`: how many starts to reserve, of how many budget
    /// cells each, when the grants run low and work is ready. The driver
    /// asks Redis and answers with [`Scheduler::shared_granted`].
    pub fn shared_demand(&mut self, now: Instant) -> Option<(u32, u64)> {
        let cells = self
            .ready
            .first_key_value()
            .and_then(|(_, &o)| self.origins[o].head())
            .filter(|_| self.config.budget.is_some())
            .map_or(0, |j| j.cells);
        let grants = self.grants.as_mut()?;
        if grants.asked || grants.lost.is_some() || self.ready.is_empty() || self.draining {
            return None;
        }
        if grants.not_before.is_some_and(|at| at > now) {
            return None;
        }
        if grants.starts.len() >= LOW_WATER {
            return None;
        }
        grants.asked = true;
        let wanted = self.ready_queued.clamp(1, crate::shared::MOST as usize) as u32;
        Some((wanted, cells))
    }

    /// Redis answered: starts reserved (each due at its instant, with its
    /// budget cells), when to ask again if none was (the next start is
    /// beyond the horizon), and the pauses and closures everyone sees.
    pub fn shared_granted(&mut self, grant: Grant, now: Instant) {
        let Grant {
            answers,
            starts,
            cells,
            retry_at,
            pauses,
            closed,
        } = grant;
        if let Some(grants) = self.grants.as_mut().filter(|_| answers) {
            grants.asked = false;
            grants.not_before = retry_at.filter(|_| starts.is_empty());
            grants
                .starts
                .extend(starts.into_iter().map(|at| (at, cells)));
        }
        for (origin, until) in pauses {
            self.peer_pause(origin, until, now);
        }
        for (origin, reason) in closed {
            self.peer_close(origin, reason, now);
        }
        self.step(now);
    }

    /// Tells the run's consumer about Redis trouble (progress, `-v`).
    pub fn shared_trouble(&mut self, trouble: crate::shared::Trouble) {
        self.emit(crate::event::Event::Redis(trouble));
    }

    /// Redis did not answer; the reservation may be asked for again.
    pub fn shared_unanswered(&mut self, now: Instant) {
        if let Some(grants) = self.grants.as_mut() {
            grants.asked = false;
        }
        self.step(now);
    }

    /// Redis has been gone longer than `--redis-timeout`: every origin
    /// closes (their requests are neither sent nor written; `--resume`
    /// sends them), as if each had closed itself.
    pub fn shared_lost(&mut self, reason: String, now: Instant) {
        if let Some(grants) = self.grants.as_mut() {
            grants.lost = Some(reason.clone());
            grants.starts.clear();
        }
        for o in 0..self.origins.len() {
            self.close_origin(o, &reason, now);
        }
        self.step(now);
    }

    /// A new origin takes on what other processes said of it.
    pub(super) fn shared_new_origin(&mut self, o: usize, now: Instant) {
        let Some(grants) = self.grants.as_mut() else {
            return;
        };
        let name = self.origins[o].name().to_string();
        let reason = grants
            .lost
            .clone()
            .or_else(|| grants.peer_closed.remove(&name));
        let until = grants.peer_pauses.remove(&name);
        if let Some(reason) = reason {
            self.close_origin(o, &reason, now);
        } else if let Some(until) = until.filter(|&u| u > now) {
            self.pause(o, until - now, PEER_PAUSE.into(), now);
        }
    }

    fn peer_pause(&mut self, origin: String, until: Instant, now: Instant) {
        match self.by_name.get(&origin) {
            Some(&o) if until > now => self.pause(o, until - now, PEER_PAUSE.into(), now),
            Some(_) => {}
            None => {
                if let Some(grants) = self.grants.as_mut() {
                    grants.peer_pauses.insert(origin, until);
                }
            }
        }
    }

    fn peer_close(&mut self, origin: String, reason: String, now: Instant) {
        match self.by_name.get(&origin) {
            Some(&o) => self.close_origin(o, &reason, now),
            None => {
                if let Some(grants) = self.grants.as_mut() {
                    grants.peer_closed.insert(origin, reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use crate::scheduler::{Action, Scheduler};
    use crate::shared::{Grant, SharedConfig};
    use crate::{Config, Event, Input, Request};

    fn scheduler(t0: tokio::time::Instant) -> Scheduler {
        let config = Config::builder()
            .rate("10/s".parse().unwrap())
            .shared(SharedConfig {
                url: "redis://127.0.0.1:1".into(),
                job: "t".into(),
                timeout: Duration::from_secs(1),
            })
            .build()
            .unwrap();
        Scheduler::new(Arc::new(config), t0, SystemTime::UNIX_EPOCH, 1)
    }

    fn offer(s: &mut Scheduler, lines: std::ops::RangeInclusive<u64>, now: tokio::time::Instant) {
        let url = url::Url::parse("http://127.0.0.1:9/fast").unwrap();
        for line in lines {
            s.offer(Input::Request(Request::get(line, url.clone())), now);
        }
    }

    fn grant(starts: Vec<tokio::time::Instant>, retry_at: Option<tokio::time::Instant>) -> Grant {
        Grant {
            answers: true,
            starts,
            retry_at,
            ..Grant::default()
        }
    }

    fn starts(s: &mut Scheduler) -> usize {
        std::iter::from_fn(|| s.next_action())
            .filter(|a| matches!(a, Action::Start(_)))
            .count()
    }

    #[test]
    fn nothing_starts_without_a_grant_and_each_grant_at_its_instant() {
        let t0 = tokio::time::Instant::now();
        let mut s = scheduler(t0);
        offer(&mut s, 1..=3, t0);
        assert_eq!(starts(&mut s), 0, "the local rate is not used: Redis's is");
        assert_eq!(s.next_wake(), None);
        assert_eq!(s.shared_demand(t0), Some((3, 0)));
        assert_eq!(s.shared_demand(t0), None, "one reservation at a time");
        let later = t0 + Duration::from_millis(100);
        s.shared_granted(grant(vec![t0, later], None), t0);
        assert_eq!(starts(&mut s), 1);
        assert_eq!(s.next_wake(), Some(later));
        s.advance(later);
        assert_eq!(starts(&mut s), 1);
        assert_eq!(s.shared_demand(later), Some((1, 0)));
    }

    #[test]
    fn a_grant_used_late_is_dropped_rather_than_bunched() {
        let t0 = tokio::time::Instant::now();
        let mut s = scheduler(t0);
        offer(&mut s, 1..=1, t0);
        s.shared_demand(t0);
        let late = t0 + Duration::from_millis(10);
        s.shared_granted(grant(vec![t0], None), late);
        assert_eq!(starts(&mut s), 0, "10 ms late: beyond CATCH_UP");
        assert!(s.shared_demand(late).is_some());
    }

    #[test]
    fn with_no_start_in_the_horizon_it_asks_again_only_when_one_is_due() {
        let t0 = tokio::time::Instant::now();
        let mut s = scheduler(t0);
        offer(&mut s, 1..=1, t0);
        s.shared_demand(t0);
        let due = t0 + Duration::from_millis(40);
        s.shared_granted(grant(vec![], Some(due)), t0);
        assert_eq!(s.shared_demand(t0), None);
        assert_eq!(s.next_wake(), Some(due));
        s.advance(due);
        assert!(s.shared_demand(due).is_some());
    }

    #[test]
    fn another_process_pause_holds_an_origin_even_one_not_seen_yet() {
        let t0 = tokio::time::Instant::now();
        let mut s = scheduler(t0);
        let until = t0 + Duration::from_secs(2);
        let origin = "http://127.0.0.1:9".to_string();
        let poll = Grant {
            pauses: vec![(origin, until)],
            ..Grant::default()
        };
        s.shared_granted(poll, t0);
        offer(&mut s, 1..=1, t0);
        let paused = std::iter::from_fn(|| s.next_action()).any(|a| {
            matches!(a, Action::Emit(Event::Paused { ref reason, .. }) if reason == super::PEER_PAUSE)
        });
        assert!(paused);
        assert_eq!(starts(&mut s), 0);
    }

    #[test]
    fn redis_lost_closes_every_origin_and_new_ones() {
        let t0 = tokio::time::Instant::now();
        let mut s = scheduler(t0);
        offer(&mut s, 1..=1, t0);
        s.shared_lost("Redis unreachable for 5m".into(), t0);
        let closed = std::iter::from_fn(|| s.next_action())
            .filter(|a| matches!(a, Action::Emit(Event::OriginClosed { .. })))
            .count();
        assert_eq!(closed, 1);
        let url = url::Url::parse("http://127.0.0.2:9/fast").unwrap();
        s.offer(Input::Request(Request::get(2, url)), t0);
        let closed = std::iter::from_fn(|| s.next_action())
            .filter(|a| matches!(a, Action::Emit(Event::OriginClosed { .. })))
            .count();
        assert_eq!(closed, 1, "a new origin closes too");
        s.end_input(t0);
        assert!(s.finished());
    }
}
