//! A timer precise to the microsecond: a Linux `timerfd` registered with
//! tokio's reactor on the runtime's own thread.
//!
//! tokio's timer wheel ticks in milliseconds: a deadline is rounded up to
//! the next tick and the park's timeout is measured from a floored now, so
//! a timer fires up to two milliseconds late. A paced run spends that
//! lateness out of the [`crate::gcra::CATCH_UP`] its limiters credit,
//! leaving nothing for starting several due requests in one wake-up. A
//! `timerfd` takes a nanosecond deadline, and its expiry makes the fd
//! readable: the reactor's `epoll_wait` returns then, on the thread that
//! polls it, so no other thread wakes this one.
//!
//! It follows the real clock only: under tokio's paused clock (tests) the
//! driver keeps tokio's timer ([`crate::alarm`] chooses).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A one-shot timer on a `timerfd`, armed for at most one deadline.
///
/// Its count of expirations is never read (one syscall less a wake-up):
/// the reactor's epoll is edge-triggered and the kernel signals every
/// expiry, and setting the timer resets the count. Whether readiness is
/// this deadline's or a stale one is told by the clock.
pub(crate) struct TimerFd {
    fd: AsyncFd<OwnedFd>,
    /// The deadline on tokio's clock, and when the kernel fires it on the
    /// real one: the two differ once tokio's clock is paused.
    deadline: Option<(Instant, std::time::Instant)>,
}

impl TimerFd {
    /// A disarmed timer on the current runtime's reactor. Fails where
    /// there is no `timerfd` (a sandbox that forbids it) or no reactor.
    pub(crate) fn new() -> io::Result<TimerFd> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result
        // is a new descriptor that only this value owns.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just opened and owned by no one else.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an `OwnedFd` stays open, and is always the same
        // descriptor, for as long as the `AsyncFd` that owns it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }?;
        Ok(TimerFd { fd, deadline: None })
    }

    /// Arms the timer for `at` (at once if it has passed), or disarms it
    /// (`None`). An expiry not yet seen by [`TimerFd::poll_expired`] is
    /// forgotten.
    pub(crate) fn set(&mut self, at: Option<Instant>) -> io::Result<()> {
        let value = match at {
            // A zero value disarms, so "at once" is one nanosecond.
            Some(at) => at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO,
        };
        // Read before the timer is set: the kernel fires no sooner.
        self.deadline = at.map(|at| (at, std::time::Instant::now() + value));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(value.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: value.subsec_nanos().into(),
            },
        };
        // SAFETY: the descriptor is open (owned by `self.fd`); `spec` is a
        // valid itimerspec and the old value is not asked for (null).
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Ready when the deadline set last has passed (once per setting).
    /// Fails when tokio's clock was paused after the timer was made: the
    /// kernel fired at the deadline's real instant but tokio's clock has
    /// not reached it (paused behind, or ahead and the deadline further
    /// still), and only tokio's own timers can move that clock on.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            // Readiness from an expiry before the timer was set again is
            // stale: cleared, and the wait goes on.
            guard.clear_ready();
            let Some((at, real_at)) = self.deadline else {
                continue;
            };
            if Instant::now() >= at {
                self.deadline = None;
                return Poll::Ready(Ok(()));
            }
            if std::time::Instant::now() >= real_at {
                return Poll::Ready(Err(io::Error::other("tokio's clock is paused")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Fires at its deadline (not before, and well inside the millisecond
    /// tokio's wheel would add); a re-armed timer forgets the expiry it
    /// replaced; a disarmed one never fires.
    #[tokio::test(flavor = "current_thread")]
    async fn fires_at_the_deadline_and_forgets_a_replaced_one() {
        let mut timer = TimerFd::new().expect("a timerfd");
        let t0 = Instant::now();
        timer.set(Some(t0 + Duration::from_millis(5))).expect("set");
        poll_fn(|cx| timer.poll_expired(cx)).await.expect("fired");
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(5), "early: {waited:?}");

        // Expired, unseen, then set again: only the new deadline counts.
        timer.set(Some(Instant::now())).expect("set");
        std::thread::sleep(Duration::from_millis(2));
        let t1 = Instant::now();
        timer
            .set(Some(t1 + Duration::from_millis(20)))
            .expect("set");
        poll_fn(|cx| timer.poll_expired(cx)).await.expect("fired");
        assert!(
            t1.elapsed() >= Duration::from_millis(20),
            "a stale expiry fired"
        );

        timer
            .set(Some(Instant::now() + Duration::from_millis(5)))
            .expect("set");
        timer.set(None).expect("disarm");
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            poll_fn(|cx| timer.poll_expired(cx)),
        )
        .await;
        assert!(waited.is_err(), "a disarmed timer fired");
    }
}
