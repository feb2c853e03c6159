//! The attempts' timers, kept from one attempt to the next.
//!
//! An attempt races its exchange against one tokio timer for its whole
//! life (`attempt::Within`). A new timer an attempt was put in tokio's
//! timer wheel at its first poll and taken out again when it was dropped,
//! each under the time driver's lock. A timer kept here stays in the wheel
//! when the next attempt takes it, and is left there as it is when it
//! fires no later than that attempt's deadline (attempts start one after
//! another, with one timeout: the deadline of a timer kept is most often
//! earlier than the next attempt's). It then fires early, at most once an
//! attempt and only when it is still in flight a timeout after the
//! timer's first attempt began; it is moved to the deadline then
//! ([`Timer::poll`]). A timer set later than the deadline (a shorter
//! timeout), or that fired while it was kept, is moved at once. So a
//! timer fires at its attempt's deadline, on the real clock and on tokio's
//! paused one alike, and the common attempt asks tokio's timer for
//! nothing but a poll.
//!
//! At most as many timers are kept as attempts were in flight at once
//! (each taken is given back when its attempt ends), so the memory is
//! bounded by the concurrency, not by the requests made. A kept timer
//! still holds the waker of the last attempt that polled it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

/// The timers of a run's attempts not in use. They belong to the runtime
/// they were made on: a run's attempts all run on one.
#[derive(Default)]
pub(crate) struct Timers {
    free: Mutex<Vec<Pin<Box<Sleep>>>>,
}

impl Timers {
    /// A timer that fires at `deadline`, kept or new; given back when
    /// dropped.
    pub(crate) fn take(&self, deadline: Instant) -> Timer<'_> {
        let kept = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let sleep = match kept {
            Some(sleep) if sleep.deadline() <= deadline && !sleep.is_elapsed() => sleep,
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Timer {
            sleep: Some(sleep),
            deadline,
            home: self,
        }
    }
}

/// A timer lent to one attempt.
pub(crate) struct Timer<'a> {
    /// `None` only once given back.
    sleep: Option<Pin<Box<Sleep>>>,
    /// When it fires; the tokio timer may be set earlier.
    deadline: Instant,
    home: &'a Timers,
}

impl Timer<'_> {
    /// Ready once the deadline has come. The tokio timer, when it was
    /// left set earlier, is moved to the deadline once it fires.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sleep) = self.sleep.as_mut() else {
            return Poll::Pending;
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= self.deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(self.deadline);
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            let mut free = self
                .home
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            free.push(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A kept timer moved later fires at its new deadline, not its old
    /// one; moved earlier, at the earlier one; one that fired, at its
    /// next; and the timers kept are those given back, no more.
    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_fires_at_its_new_deadline() {
        let timers = Timers::default();
        let start = Instant::now();
        let mut first = timers.take(start + Duration::from_secs(1));
        // Polled once: it is in the wheel, as an attempt's timer is.
        let polled = futures::poll!(std::future::poll_fn(|cx| first.poll(cx)));
        assert!(polled.is_pending());
        drop(first);
        assert_eq!(timers.free.lock().expect("unpoisoned").len(), 1);
        let mut later = timers.take(start + Duration::from_secs(5));
        assert!(timers.free.lock().expect("unpoisoned").is_empty());
        std::future::poll_fn(|cx| later.poll(cx)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
        drop(later);
        let now = Instant::now();
        let mut earlier = timers.take(now + Duration::from_millis(300));
        let other = timers.take(now + Duration::from_secs(60));
        std::future::poll_fn(|cx| earlier.poll(cx)).await;
        assert_eq!(Instant::now() - now, Duration::from_millis(300));
        drop(other);
        drop(earlier);
        assert_eq!(timers.free.lock().expect("unpoisoned").len(), 2);
        // The last given back (the one that fired) is taken first: put in
        // the wheel again, it waits for its new deadline.
        let now = Instant::now();
        let mut again = timers.take(now + Duration::from_secs(2));
        std::future::poll_fn(|cx| again.poll(cx)).await;
        assert_eq!(Instant::now() - now, Duration::from_secs(2));
    }
}
