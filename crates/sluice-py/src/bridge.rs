//! Rust futures as asyncio awaitables, on the binding's own tokio runtime.
//!
//! Each awaitable is an `asyncio.Future` of the running loop; the Rust
//! future runs on tokio without the GIL and, when done, hands its value to
//! the loop with `call_soon_threadsafe`. Cancelling the asyncio future drops
//! the Rust one (so a cancelled `next_batch` or `feed` stops at once).
//!
//! Why not `pyo3-async-runtimes`: its runtime cannot be stopped, so a tokio
//! thread may still be handing a result to Python while the interpreter
//! finalizes, which aborts the process ("PyGILState_Release: thread state
//! must be current", PyO3/pyo3-async-runtimes#40). Here every task that may
//! touch Python is counted, and [`shutdown`] (called by `atexit`) cancels
//! them and waits, with the GIL released, until none is left.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};

static RUNTIME: OnceLock<Handle> = OnceLock::new();

/// Tasks that will call into Python when they finish.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Wakes [`shutdown`] when `IN_FLIGHT` drops, and wakes every task when
/// the interpreter is exiting.
static CHANGED: Notify = Notify::const_new();
static EXITING: Mutex<bool> = Mutex::new(false);
static EXIT: Notify = Notify::const_new();

/// The runtime every engine run, test upstream and awaitable runs on: one
/// thread (`sluice-tokio`), as the CLI's. The engine, its attempts and
/// hyper's connections hand work to each other several times a request;
/// across worker threads each hand-over was a wake-up and a context switch
/// (and Python's own thread needs the other core). Blocking work goes to
/// tokio's blocking pool; nothing on this thread takes the GIL.
pub fn runtime() -> &'static Handle {
    RUNTIME.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the tokio runtime starts (threads and timers are available)");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("sluice-tokio".to_string())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("the runtime's thread starts");
        handle
    })
}

fn exiting() -> bool {
    EXITING.lock().map(|e| *e).unwrap_or(true)
}

/// Runs `fut` on the runtime and returns an `asyncio.Future` of the running
/// loop that resolves to its value.
pub fn to_py<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if exiting() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "sluice: the interpreter is exiting",
        ));
    }
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let cancel_tx = Mutex::new(Some(cancel_tx));
    let on_done = PyCFunction::new_closure(py, None, None, move |args, _| -> PyResult<()> {
        let fut = args.get_item(0)?;
        if fut.call_method0("cancelled")?.is_truthy()?
            && let Some(tx) = cancel_tx.lock().ok().and_then(|mut t| t.take())
        {
            let _ = tx.send(());
        }
        Ok(())
    })?;
    future.call_method1("add_done_callback", (on_done,))?;
    let (loop_ref, fut_ref) = (event_loop.unbind(), future.clone().unbind());
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    runtime().spawn(async move {
        let outcome = tokio::select! {
            out = fut => Some(out),
            _ = cancel_rx => None,
            _ = EXIT.notified() => None,
        };
        if let Some(out) = outcome.filter(|_| !exiting()) {
            // The GIL is taken on the blocking pool: the runtime's one
            // thread never waits for it.
            let _ = tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    let (value, error) = match out.and_then(|v| v.into_py_any(py)) {
                        Ok(v) => (Some(v), None),
                        Err(e) => (None, Some(e.into_value(py).into_any())),
                    };
                    let resolve = PyCFunction::new_closure(py, None, None, resolve);
                    if let Ok(resolve) = resolve {
                        // The loop may be closed already: nothing is waiting then.
                        let _ = loop_ref.bind(py).call_method1(
                            "call_soon_threadsafe",
                            (resolve, fut_ref.bind(py), value, error),
                        );
                    }
                    drop((loop_ref, fut_ref));
                });
            })
            .await;
        }
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        CHANGED.notify_waiters();
    });
    Ok(future)
}

/// On the event loop: sets the future's result or exception unless it was
/// cancelled meanwhile.
fn resolve(
    args: &Bound<'_, pyo3::types::PyTuple>,
    _: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<()> {
    let fut = args.get_item(0)?;
    if fut.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let error = args.get_item(2)?;
    if error.is_none() {
        fut.call_method1("set_result", (args.get_item(1)?,))?;
    } else {
        fut.call_method1("set_exception", (error,))?;
    }
    Ok(())
}

/// Called at interpreter exit (`atexit`): stops every pending awaitable's
/// task and waits (GIL released, at most a second) until no tokio thread
/// will call into Python again.
#[pyfunction]
pub fn shutdown(py: Python<'_>) {
    if let Ok(mut e) = EXITING.lock() {
        *e = true;
    }
    py.detach(|| {
        let Some(rt) = RUNTIME.get() else { return };
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
                    let changed = CHANGED.notified();
                    EXIT.notify_waiters();
                    if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(10), changed).await;
                }
            })
            .await;
        });
    });
}
