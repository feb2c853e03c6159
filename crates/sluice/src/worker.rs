//! A second thread for a run: its own current-thread tokio runtime, where
//! [`crate::engine::run_with_worker`] runs the attempts and their
//! connections while the driver (and the caller's consumer) stay on the
//! caller's thread. See ARCHITECTURE.md, "The process".

use std::cell::RefCell;
use std::sync::Arc;
use std::task::{Poll, Waker};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::ends;
use crate::tasks::{Ended, Ends};

/// A thread running a tokio runtime of its own. Cheap to clone: the thread
/// stops once the last clone is dropped (every [`crate::Run`] started on it
/// holds one), and the tasks still on it are then dropped (their
/// connections closed).
#[derive(Clone, Debug)]
pub struct Worker(Arc<Thread>);

#[derive(Debug)]
struct Thread {
    handle: Handle,
    /// Dropped, it tells the thread to stop.
    _stop: oneshot::Sender<()>,
}

impl Worker {
    /// Starts the thread (named `sluice-worker`) and its runtime, with IO
    /// and time enabled.
    ///
    /// # Errors
    ///
    /// When the runtime or the thread cannot be created (the process is
    /// out of threads or file descriptors).
    pub fn start() -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(send_held)
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sluice-worker".into())
            .spawn(move || {
                HELD.set(Some(Vec::new()));
                runtime.block_on(async {
                    let _flusher = tokio::spawn(flush_held());
                    let _ = stopped.await;
                });
                // Nothing waits for blocking calls still running (a name
                // being resolved): like the process's own runtime at exit.
                runtime.shutdown_background();
            })?;
        Ok(Worker(Arc::new(Thread {
            handle,
            _stop: stop,
        })))
    }

    /// The worker's runtime, to spawn on.
    pub(crate) fn handle(&self) -> &Handle {
        &self.0.handle
    }
}

thread_local! {
    /// On a worker's thread, the ends of attempts not yet sent to their
    /// drivers (`None` on every other thread).
    static HELD: RefCell<Option<Vec<(Ends, ends::End)>>> = const { RefCell::new(None) };
}

thread_local! {
    /// On a worker's thread, [`flush_held`]'s waker while no end is held.
    static FLUSHER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// At most this many ends are held before they are sent.
const HOLD: usize = 64;

/// Sends an attempt's end to its driver. On a worker's thread the ends are
/// held until the thread is about to park (it has nothing else to do), its
/// next turn ([`flush_held`]: a busy worker may never park) or [`HOLD`]
/// are held, then sent together: the first send wakes the driver's
/// thread, the rest find it already woken. Sent one by one, each batch of
/// the few that ended during one turn of the worker cost a wake-up of the
/// other thread (an `eventfd` write, an `epoll_wait` return, a context
/// switch).
pub(crate) fn send_end(ends: &Ends, key: usize, end: Ended) {
    let (first, full) = HELD.with_borrow_mut(|held| match held {
        Some(held) => {
            held.push((ends.clone(), (key, end)));
            (held.len() == 1, held.len() >= HOLD)
        }
        None => {
            ends.leave((key, end));
            (false, false)
        }
    });
    if first && let Some(flusher) = FLUSHER.take() {
        flusher.wake();
    }
    if full {
        send_held();
    }
}

/// Sends the ends held on a worker's thread at its next turn: woken by the
/// first end held, it yields once (the tasks ready now run, and IO is
/// polled, so the ends they make join the batch), then sends them. A
/// worker that never runs out of ready tasks (a few large downloads) never
/// parks, and would otherwise hold its ends until [`HOLD`] are held.
async fn flush_held() {
    loop {
        std::future::poll_fn(|cx| {
            if HELD.with_borrow(|held| held.as_ref().is_some_and(|h| !h.is_empty())) {
                Poll::Ready(())
            } else {
                FLUSHER.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        tokio::task::yield_now().await;
        send_held();
    }
}

/// Sends the ends held on this thread (a worker's, about to park).
fn send_held() {
    HELD.with_borrow_mut(|held| {
        // A wake-up wakes a task of another runtime: no code of this thread
        // runs meanwhile, so the list stays borrowed (and keeps its room).
        if let Some(held) = held {
            ends::leave_all(held);
        }
    });
}
