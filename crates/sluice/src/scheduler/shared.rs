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

    /// Redis answered: starts reserved (each due at its instant, with
    /// `cells` budget cells), when to ask again if none was (the next
    /// start is beyond the horizon), and the pauses and closures everyone
    /// sees.
    #[allow(clippy::too_many_arguments)]
    pub fn shared_granted(
        &mut self,
        starts: Vec<Instant>,
        cells: u64,
        retry_at: Option<Instant>,
        pauses: Vec<(String, Instant)>,
        closed: Vec<(String, String)>,
        now: Instant,
    ) {
        if let Some(grants) = self.grants.as_mut() {
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
