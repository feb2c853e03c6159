//! The CLI's second thread: a busy unpaced run's attempts and connections run
//! there while the engine's driver and the batch loop stay on the main
//! thread (see ARCHITECTURE.md, "The process"). Started by the first run
//! that splits, it lives as long as the process: at exit, or after a second
//! Ctrl-C (the run dropped, its attempts aborted), nothing waits for it.

use std::future::Future;
use std::sync::OnceLock;

use futures::Stream;
use sluice::client::ClientError;
use sluice::engine::Run;
use sluice::shared::Limiter;
use sluice::worker::Worker;
use sluice::{Config, Input};

/// Starts the engine on `config`: on two threads when the engine says the
/// run splits and the second thread starts; on this one otherwise (a
/// process out of threads still runs, only slower).
pub fn start_run<S, F>(
    config: Config,
    limiter: Option<Limiter>,
    inputs: S,
    shutdown: F,
) -> Result<Run, ClientError>
where
    S: Stream<Item = Input> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    if sluice::engine::splits(&config)
        && let Some(worker) = worker()
    {
        return sluice::engine::run_with_worker(config, limiter, inputs, shutdown, worker);
    }
    sluice::engine::run_shared(config, limiter, inputs, shutdown)
}

/// The process's worker, started on first use; `None` when its thread
/// cannot start.
fn worker() -> Option<&'static Worker> {
    static WORKER: OnceLock<Option<Worker>> = OnceLock::new();
    WORKER.get_or_init(|| Worker::start().ok()).as_ref()
}
