//! `sluice.MockServer`: the test upstream (the `sluice-mock` crate) on
//! 127.0.0.1, serving on the binding's tokio runtime, so Python users can
//! test their own code offline.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

/// A running test upstream.
#[pyclass(module = "sluice._sluice")]
pub struct Mock {
    server: Arc<Mutex<Option<sluice_mock::MockServer>>>,
    url: String,
}

/// Starts the test upstream on `host:port` (port 0: a free one).
#[pyfunction]
#[pyo3(signature = (host="127.0.0.1".to_string(), port=0, h2_max_streams=None, goaway_after=None, keep_alive=None))]
pub fn start_mock(
    py: Python<'_>,
    host: String,
    port: u16,
    h2_max_streams: Option<u32>,
    goaway_after: Option<u64>,
    keep_alive: Option<f64>,
) -> PyResult<Bound<'_, PyAny>> {
    let addr: std::net::SocketAddr = format!("{host}:{port}").parse().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "`{host}:{port}` is not an IP address and port"
        ))
    })?;
    let options = sluice_mock::MockOptions {
        h2_max_streams,
        goaway_after,
        keep_alive: keep_alive.map(std::time::Duration::from_secs_f64),
    };
    crate::bridge::to_py(py, async move {
        let server = sluice_mock::MockServer::start_with(addr, options)
            .await
            .map_err(|e| PyOSError::new_err(format!("cannot listen on {addr}: {e}")))?;
        Ok(Mock {
            url: server.url(),
            server: Arc::new(Mutex::new(Some(server))),
        })
    })
}

#[pymethods]
impl Mock {
    /// The base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// What the server saw, as JSON text (`GET /stats`, with arrivals).
    fn stats(&self) -> PyResult<String> {
        let guard = self
            .server
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lock poisoned"))?;
        let server = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the mock server is shut down"))?;
        serde_json::to_string(&server.stats()).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Clears the statistics and the `/fail` and `/ratelimit` state.
    fn reset_stats(&self) -> PyResult<()> {
        let guard = self
            .server
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lock poisoned"))?;
        if let Some(s) = guard.as_ref() {
            s.reset_stats();
        }
        Ok(())
    }

    /// Stops the server and closes every connection; resolves when done.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        crate::bridge::to_py(py, async move {
            if let Some(s) = server {
                s.shutdown().await;
            }
            Ok(())
        })
    }
}
