//! Where attempts leave what became of them for their driver: a list
//! behind a lock, taken whole by the driver, which is woken by the first
//! end left while it waits.
//!
//! A tokio channel cost about 220 instructions an end: a send writes the
//! end into a block of slots (atomics on the block and the semaphore, the
//! receiver's waker), a receive reads it out and through a `Result` again.
//! Here an end is one push under an uncontended lock, the driver takes every
//! end left so far in one swap (one lock a batch), and a worker hands over
//! the ends it held in one lock a batch too ([`EndsOut::leave_all`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use crate::attempt::Outcome;
use crate::scheduler::Ticket;

/// What became of an attempt.
#[derive(Debug)]
pub(crate) enum Fate {
    /// It ran: how it ended.
    Done(Outcome),
    /// Its request was abandoned ([`crate::Abandon`]) first.
    Abandoned,
    /// Not sent: its task first ran after the latest instant its shared
    /// grant allowed ([`crate::scheduler::Attempt::send_by`]).
    Unsent,
}

/// What an attempt's task gives back: its ticket, what became of it, when
/// its request was sent and when it ended.
pub(crate) type Ended = (Ticket, Fate, Option<Instant>, Instant);

/// An attempt's end with its key in the driver's [`crate::tasks::Tasks`].
pub(crate) type End = (usize, Ended);

/// The list both sides share.
#[derive(Default)]
struct Shared {
    ends: VecDeque<End>,
    /// The driver's waker while it waits with nothing left to take.
    waker: Option<Waker>,
    /// The driver has gone: ends left are dropped at once.
    closed: bool,
}

/// The attempts' side: cheap to clone (one per attempt's report).
#[derive(Clone)]
pub(crate) struct EndsOut(Arc<Mutex<Shared>>);

/// The driver's side: the ends taken but not yet handed to it.
pub(crate) struct EndsIn {
    shared: Arc<Mutex<Shared>>,
    taken: VecDeque<End>,
}

/// A new list: where attempts leave their ends, and where the driver takes
/// them.
pub(crate) fn list() -> (EndsOut, EndsIn) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let ends_in = EndsIn {
        shared: Arc::clone(&shared),
        taken: VecDeque::new(),
    };
    (EndsOut(shared), ends_in)
}

impl EndsOut {
    /// Leaves one end; the first one left while the driver waits wakes it.
    pub(crate) fn leave(&self, end: End) {
        let waker = {
            let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            shared.leave(end);
            shared.waker.take()
        };
        // Woken outside the lock: the driver may run at once (another thread).
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Leaves the ends `held` (each with its list, in the order they ended),
/// one lock for each run of ends of the same list: a worker's batch, most
/// often all of one run. Each end is copied once, into its list.
pub(crate) fn leave_all(held: &mut Vec<(EndsOut, End)>) {
    while let Some((out, _)) = held.first() {
        let out = out.clone();
        let run = held
            .iter()
            .take_while(|(next, _)| Arc::ptr_eq(&next.0, &out.0))
            .count();
        let waker = {
            let mut shared = out.0.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, end) in held.drain(..run) {
                shared.leave(end);
            }
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Shared {
    /// Keeps `end` for the driver, unless the driver has gone.
    fn leave(&mut self, end: End) {
        if !self.closed {
            self.ends.push_back(end);
        }
    }
}

impl EndsIn {
    /// The next end, waiting for one if none was left yet.
    pub(crate) async fn next(&mut self) -> End {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next end already left, without waiting.
    pub(crate) fn next_ready(&mut self) -> Option<End> {
        if self.taken.is_empty() {
            self.take();
        }
        self.taken.pop_front()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if let Some(end) = self.taken.pop_front() {
            return Poll::Ready(end);
        }
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.ends.is_empty() {
            if !shared
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                shared.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut shared.ends, &mut self.taken);
        drop(shared);
        self.taken.pop_front().map_or(Poll::Pending, Poll::Ready)
    }

    /// Takes every end left so far (into an empty `taken`).
    fn take(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut shared.ends, &mut self.taken);
    }
}

impl Drop for EndsIn {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.closed = true;
        shared.waker = None;
        shared.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::config::Config;
    use crate::request::{Input, Request};
    use crate::scheduler::{Action, Scheduler};

    /// An end under `key` (its ticket a real one: the scheduler's first).
    fn end(key: usize) -> End {
        let now = Instant::now();
        let config = Arc::new(Config::default());
        let mut scheduler = Scheduler::new(config, now, std::time::SystemTime::now(), 1);
        let url = url::Url::parse("http://127.0.0.1:9/").expect("a URL");
        scheduler.offer(Input::from(Request::get(1, url)), now);
        let ticket = std::iter::from_fn(|| scheduler.next_action())
            .find_map(|a| match a {
                Action::Start(attempt) => Some(attempt.ticket),
                Action::Emit(_) => None,
            })
            .expect("the scheduler starts the request it was offered");
        (key, (ticket, Fate::Abandoned, None, now))
    }

    /// Counts its wake-ups.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A worker's batch holding the ends of two runs, interleaved: each
    /// run's list gets its own, in the order they ended, and nothing is
    /// left held.
    #[test]
    fn held_ends_reach_their_own_lists_in_order() {
        let (a, mut a_in) = list();
        let (b, mut b_in) = list();
        let mut held = vec![
            (a.clone(), end(1)),
            (a.clone(), end(2)),
            (b.clone(), end(10)),
            (a.clone(), end(3)),
        ];
        leave_all(&mut held);
        assert!(held.is_empty());
        let keys = |ends: &mut EndsIn| {
            std::iter::from_fn(|| ends.next_ready().map(|e| e.0)).collect::<Vec<_>>()
        };
        assert_eq!(keys(&mut a_in), [1, 2, 3]);
        assert_eq!(keys(&mut b_in), [10]);
    }

    /// The driver waiting with nothing to take is woken by the first end
    /// left, once, and takes every end left meanwhile.
    #[test]
    fn the_first_end_wakes_the_waiting_driver_once() {
        let (out, mut ends_in) = list();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(ends_in.poll_next(&mut cx).is_pending());
        out.leave(end(1));
        out.leave(end(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(ends_in.poll_next(&mut cx), Poll::Ready((1, _))));
        assert_eq!(ends_in.next_ready().map(|e| e.0), Some(2));
        assert!(ends_in.next_ready().is_none());
    }

    /// Ends left after the driver went are dropped at once, not kept for
    /// as long as an attempt holds the list.
    #[test]
    fn ends_left_after_the_driver_went_are_dropped() {
        let (out, ends_in) = list();
        drop(ends_in);
        out.leave(end(1));
        assert!(out.0.lock().expect("not poisoned").ends.is_empty());
    }
}
