//! The driver's one timer, moved to each next wake-up without making the
//! runtime wake itself up for it.
//!
//! tokio's time driver, told of a deadline earlier than the wake-up it
//! planned, unparks its thread (`time::Handle::reregister`): a write to the
//! runtime's eventfd and one more turn of `epoll_wait`, even when the thread
//! is awake and about to plan again anyway. A paced run moves its timer
//! after every start, and by then the timer that just fired has left the
//! wheel, so the wake-up planned is whatever comes after it (the CLI's
//! 200 ms tick, an attempt's timeout): every paced start paid that unpark,
//! one `write` and about one more `epoll_wait` a request. So a guard, a
//! second timer never polled, sits in the wheel after the alarm, as far
//! after it as the alarm moved last time (a paced run's period; at least
//! a tick, tokio's timers tick in milliseconds): when the alarm fires, even
//! late, the wake-up planned is the guard, and moving the alarm on by a
//! period wakes nothing. The guard never fires: each move of the alarm
//! moves it on too. While nothing is armed, both are out of the wheel, so
//! neither wakes the thread on its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One tick of tokio's timer wheel.
const TICK: Duration = Duration::from_millis(1);

/// A timer armed for at most one instant at a time.
pub(crate) struct Alarm {
    alarm: Pin<Box<Sleep>>,
    guard: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// The instant armed last, fired or not.
    last: Option<Instant>,
}

impl Alarm {
    pub(crate) fn new() -> Alarm {
        Alarm {
            alarm: Box::pin(tokio::time::sleep_until(Instant::now())),
            guard: None,
            armed: None,
            last: None,
        }
    }

    /// Arms the alarm for `at`, or disarms it (`None`). Setting the instant
    /// already armed changes nothing.
    pub(crate) fn set(&mut self, at: Option<Instant>) {
        if at == self.armed {
            return;
        }
        let was_armed = std::mem::replace(&mut self.armed, at).is_some();
        let Some(at) = at else {
            // Both out of the wheel, so neither wakes the thread for nothing.
            self.guard = None;
            if was_armed {
                self.alarm = Box::pin(tokio::time::sleep_until(Instant::now()));
            }
            return;
        };
        // The alarm first: while the guard still holds the old wake-up, an
        // alarm moved on by no more than the guard's lead moves nothing
        // earlier.
        self.alarm.as_mut().reset(at);
        let step = self
            .last
            .map_or(TICK, |last| at.saturating_duration_since(last));
        self.last = Some(at);
        let guard_at = at + step.max(TICK);
        match &mut self.guard {
            Some(guard) => guard.as_mut().reset(guard_at),
            None => {
                let mut guard = Box::pin(tokio::time::sleep_until(guard_at));
                // Into the wheel now: it is never polled.
                guard.as_mut().reset(guard_at);
                self.guard = Some(guard);
            }
        }
    }

    /// Whether an instant is armed.
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Resolves when the armed instant comes (pending while nothing is
    /// armed); the alarm is then disarmed.
    pub(crate) fn fired(&mut self) -> Fired<'_> {
        Fired(self)
    }
}

/// The future of [`Alarm::fired`].
pub(crate) struct Fired<'a>(&'a mut Alarm);

impl Future for Fired<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let alarm = &mut *self.0;
        if alarm.armed.is_none() {
            return Poll::Pending;
        }
        match alarm.alarm.as_mut().poll(cx) {
            Poll::Ready(()) => {
                alarm.armed = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fires at the instant armed, not before; re-arming moves it; a
    /// disarmed alarm never fires.
    #[tokio::test(start_paused = true)]
    async fn fires_at_the_instant_armed() {
        let t0 = Instant::now();
        let mut alarm = Alarm::new();
        alarm.set(Some(t0 + Duration::from_millis(10)));
        alarm.set(Some(t0 + Duration::from_millis(30)));
        alarm.fired().await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(30));
        assert!(!alarm.is_armed());
        alarm.set(Some(t0 + Duration::from_millis(40)));
        alarm.set(None);
        let waited = tokio::time::timeout(Duration::from_secs(1), alarm.fired()).await;
        assert!(waited.is_err(), "a disarmed alarm fired");
    }
}
