//! The driver's one timer, moved to each next wake-up: precise where it
//! can be (a Linux `timerfd`, [`crate::timerfd`]), tokio's wheel elsewhere.
//!
//! **Precise, with slack.** On the real clock under Linux the alarm is a
//! `timerfd`, which fires within microseconds of its deadline where tokio's
//! wheel fires up to two milliseconds late. That precision buys a slack:
//! the alarm fires [`TIMER_SLACK`] after the instant asked, so one wake-up
//! starts every request due within it (at `--rate 1000/s`, two a wake-up
//! instead of one; their answers then come back together, and a wake-up
//! costs more CPU than the work it wakes for). No start goes early, and the
//! limiters charge each one at the instant it was due (a late caller is
//! credited [`crate::gcra::CATCH_UP`], which covers the slack and the
//! timer's lateness), so the window bound and the rate are as without it.
//!
//! **tokio's wheel** elsewhere, and under tokio's paused clock (tests), which
//! a `timerfd` cannot follow: no slack there, since the wheel's own lateness
//! already spends most of what the limiters credit. tokio's time driver,
//! told of a deadline earlier than the wake-up it
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

use crate::gcra::TIMER_SLACK;

/// One tick of tokio's timer wheel.
const TICK: Duration = Duration::from_millis(1);

/// A timer armed for at most one instant at a time.
pub(crate) struct Alarm {
    clock: Clock,
    armed: Option<Instant>,
}

/// What the alarm waits on.
enum Clock {
    #[cfg(target_os = "linux")]
    Precise(crate::timerfd::TimerFd),
    Wheel(Wheel),
}

impl Alarm {
    /// A disarmed alarm: precise when it can be (Linux, the real clock, a
    /// `timerfd` to be had), on tokio's wheel otherwise.
    pub(crate) fn new() -> Alarm {
        Alarm {
            clock: precise().unwrap_or_else(|| Clock::Wheel(Wheel::new())),
            armed: None,
        }
    }

    /// Whether the alarm is precise (and so fires [`TIMER_SLACK`] late).
    #[cfg(test)]
    pub(crate) fn is_precise(&self) -> bool {
        !matches!(self.clock, Clock::Wheel(_))
    }

    /// Arms the alarm for `at`, or disarms it (`None`). Setting the instant
    /// already armed changes nothing.
    pub(crate) fn set(&mut self, at: Option<Instant>) {
        if at == self.armed {
            return;
        }
        self.armed = at;
        match &mut self.clock {
            #[cfg(target_os = "linux")]
            Clock::Precise(timer) => {
                if timer.set(at.map(|at| at + TIMER_SLACK)).is_err() {
                    self.fall_back();
                }
            }
            Clock::Wheel(wheel) => wheel.set(at),
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

    /// The `timerfd` failed (short of a broken kernel, only when tokio's
    /// clock was paused during the run): the wheel takes over, armed as the
    /// alarm was.
    fn fall_back(&mut self) {
        let mut wheel = Wheel::new();
        wheel.set(self.armed);
        self.clock = Clock::Wheel(wheel);
    }
}

/// A `timerfd` when the platform has one and tokio's clock is the real one.
#[cfg(target_os = "linux")]
fn precise() -> Option<Clock> {
    if clock_is_paused() {
        return None;
    }
    crate::timerfd::TimerFd::new().ok().map(Clock::Precise)
}

#[cfg(not(target_os = "linux"))]
fn precise() -> Option<Clock> {
    None
}

/// True under tokio's paused clock (`tokio::time::pause`), whose instants a
/// kernel timer cannot follow. tokio has no public way to ask, but its
/// clock, while paused, stands still between two reads on one thread
/// (it moves only when told to or when the runtime parks), while the real
/// one has visibly moved.
#[cfg(target_os = "linux")]
fn clock_is_paused() -> bool {
    let before = Instant::now();
    let real = std::time::Instant::now();
    while std::time::Instant::now() == real {
        std::hint::spin_loop();
    }
    Instant::now() == before
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
        let fired = match &mut alarm.clock {
            #[cfg(target_os = "linux")]
            Clock::Precise(timer) => match timer.poll_expired(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(_)) => {
                    alarm.fall_back();
                    // Polled once on the wheel, so it wakes this task.
                    return Pin::new(&mut Fired(alarm)).poll(cx);
                }
                Poll::Pending => false,
            },
            Clock::Wheel(wheel) => wheel.alarm.as_mut().poll(cx).is_ready(),
        };
        if fired {
            alarm.armed = None;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The alarm on tokio's wheel, with its guard (see the module's doc).
struct Wheel {
    alarm: Pin<Box<Sleep>>,
    guard: Option<Pin<Box<Sleep>>>,
    /// The instant armed last, fired or not.
    last: Option<Instant>,
}

impl Wheel {
    fn new() -> Wheel {
        Wheel {
            alarm: Box::pin(tokio::time::sleep_until(Instant::now())),
            guard: None,
            last: None,
        }
    }

    /// Arms the wheel's alarm for `at`, a new instant, or disarms it.
    fn set(&mut self, at: Option<Instant>) {
        let Some(at) = at else {
            // Both out of the wheel, so neither wakes the thread for nothing.
            self.guard = None;
            self.alarm = Box::pin(tokio::time::sleep_until(Instant::now()));
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
        assert!(!alarm.is_precise(), "a timerfd under a paused clock");
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

    /// tokio's clock paused after the alarm became a `timerfd`: the wheel
    /// takes over when the kernel's timer fires, so the paused clock (which
    /// only tokio's timers move) still reaches the instant.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn a_clock_paused_during_a_run_falls_back_to_the_wheel() {
        let mut alarm = Alarm::new();
        assert!(alarm.is_precise());
        tokio::time::pause();
        let t0 = Instant::now();
        alarm.set(Some(t0 + Duration::from_millis(5)));
        // The kernel's timer fires on the real clock, the paused one stays.
        std::thread::sleep(Duration::from_millis(10));
        alarm.fired().await;
        assert!(!alarm.is_precise());
        assert!(Instant::now() >= t0 + Duration::from_millis(5));
    }

    /// A clock paused during the run and moved ahead of the real one (an
    /// `advance`, or an idle runtime jumping to a far timer): the kernel
    /// fires at the deadline's real instant, long before tokio's clock
    /// reaches the deadline, and the wheel takes over (before, the alarm
    /// waited for the real clock to catch up with the paused one: forever
    /// when nothing else moved it).
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn a_clock_paused_ahead_of_the_real_one_falls_back_to_the_wheel() {
        let mut alarm = Alarm::new();
        assert!(alarm.is_precise());
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(60)).await;
        let at = Instant::now() + Duration::from_millis(5);
        alarm.set(Some(at));
        std::thread::sleep(Duration::from_millis(10));
        let fired = tokio::time::timeout(Duration::from_secs(1), alarm.fired()).await;
        assert!(fired.is_ok(), "the alarm never fired");
        assert!(!alarm.is_precise());
        assert!(Instant::now() >= at);
    }

    /// On the real clock under Linux the alarm is a `timerfd`: it fires
    /// the slack after the instant armed, never before.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn on_the_real_clock_fires_precisely_the_slack_late() {
        let mut alarm = Alarm::new();
        assert!(alarm.is_precise());
        for _ in 0..3 {
            let at = Instant::now() + Duration::from_millis(3);
            alarm.set(Some(at));
            alarm.fired().await;
            assert!(Instant::now() >= at + TIMER_SLACK, "fired before the slack");
            assert!(!alarm.is_armed());
        }
    }
}
