//! A second thread for a run: its own current-thread tokio runtime, where
//! [`crate::engine::run_with_worker`] runs the engine (the driver, the
//! attempts and their connections) while the caller's thread consumes its
//! events. See ARCHITECTURE.md, "The process".

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

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
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sluice-worker".into())
            .spawn(move || {
                runtime.block_on(async {
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
