//! The `sluice._sluice` extension module: a thin layer between Python and
//! the engine crate. The Python package (`python/sluice`) wraps it in the
//! public API (`Client`, `run`, `run_file`, `MockServer`); everything here
//! runs on one tokio runtime with the GIL released while it waits.

mod batch;
mod bell;
mod bridge;
mod filejob;
mod mock;
mod options;
mod summary;

use pyo3::prelude::*;

// As the CLI (see crates/sluice-py/Cargo.toml for why): only the Rust side's
// allocations; Python's objects keep Python's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module.
#[pymodule]
fn _sluice(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<batch::Engine>()?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<bell::PyDoorbell>()?;
    m.add_class::<mock::Mock>()?;
    m.add_function(wrap_pyfunction!(mock::start_mock, m)?)?;
    m.add_function(wrap_pyfunction!(filejob::run_file, m)?)?;
    m.add_function(wrap_pyfunction!(check_options, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::shutdown, m)?)?;
    m.add("UsageError", m.py().get_type::<filejob::UsageError>())?;
    Ok(())
}

/// Checks options without running anything (so `Client(...)` raises at
/// construction, as a bad CLI option fails before anything is sent).
#[pyfunction]
#[pyo3(signature = (options=None))]
fn check_options(options: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<()> {
    options::parse(options, false).map(|_| ())
}
