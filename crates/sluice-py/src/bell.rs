//! How a lane wakes Python without an engine thread ever taking the GIL.
//!
//! A lane's [`Bell`] is rung from the engine's side when results are
//! ready, room for input is free, or the lane is over. Python hears it one
//! of two ways:
//!
//! - **a socket** (Unix): the read end of a socket pair, which the asyncio
//!   loop watches with `loop.add_reader`; a ring is one byte. The loop
//!   wakes in its own `select`, nothing else runs.
//! - **the client's [`Doorbell`]** (everywhere): where the loop cannot
//!   watch a file (Windows, whose Proactor loop has no `add_reader`, or a
//!   loop that raises `NotImplementedError` for it), a ring adds the lane
//!   to the doorbell's list and wakes one Python thread per client, which
//!   waits on it with the GIL released and passes each ring to the loop
//!   with `loop.call_soon_threadsafe`.
//!
//! A lane starts with its socket (where there is one) and moves to the
//! doorbell once, when Python says the loop cannot watch it; a ring that
//! was already in the socket then is passed on, so none is lost (Python
//! registers the bell with its watcher before it switches).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[cfg(unix)]
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::unix::net::UnixStream;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// The rings of one client's lanes that use no socket.
#[derive(Default)]
pub struct Doorbell {
    state: Mutex<DoorState>,
    rang: Condvar,
}

#[derive(Default)]
struct DoorState {
    /// Lanes rung since the watcher last looked, each once.
    rung: Vec<u64>,
    /// The client's run is over (or the client is gone): the watcher ends.
    closed: bool,
}

impl Doorbell {
    fn ring(&self, lane: u64) {
        if let Ok(mut s) = self.state.lock() {
            if !s.rung.contains(&lane) {
                s.rung.push(lane);
            }
            self.rang.notify_one();
        }
    }

    /// No ring will come any more: the watcher takes what is left, then ends.
    pub fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.rang.notify_all();
    }

    /// The lanes rung, waiting up to `timeout` for one: an empty list when
    /// none rang, None once closed and every ring was taken.
    fn wait(&self, timeout: Duration) -> Option<Vec<u64>> {
        let s = self.state.lock().ok()?;
        let (mut s, _) = self
            .rang
            .wait_timeout_while(s, timeout, |s| s.rung.is_empty() && !s.closed)
            .ok()?;
        if s.rung.is_empty() && s.closed {
            return None;
        }
        Some(std::mem::take(&mut s.rung))
    }
}

/// The doorbell as Python's watcher thread sees it.
#[pyclass(module = "sluice._sluice", name = "Doorbell", frozen, weakref)]
pub struct PyDoorbell(pub Arc<Doorbell>);

#[pymethods]
impl PyDoorbell {
    /// The ids of the lanes rung, waiting (GIL released) at most `timeout`
    /// seconds: an empty list when none rang, None once the client's run
    /// is over (the watcher then ends).
    fn wait(&self, py: Python<'_>, timeout: f64) -> Option<Vec<u64>> {
        let timeout = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
        py.detach(|| self.0.wait(timeout))
    }

    /// Ends the watcher (at interpreter exit).
    fn close(&self) {
        self.0.close();
    }
}

/// One lane's bell.
pub struct Bell {
    /// The lane's id in its client's doorbell.
    pub id: u64,
    doorbell: Arc<Doorbell>,
    /// The socket pair (read end, write end) while the lane uses it; None
    /// once it moved to the doorbell (and always where there are none).
    #[cfg(unix)]
    socket: Mutex<Option<(UnixStream, UnixStream)>>,
}

impl Bell {
    /// A lane's bell: a socket pair where there is one.
    pub fn new(id: u64, doorbell: Arc<Doorbell>) -> PyResult<Bell> {
        #[cfg(unix)]
        {
            let pair = UnixStream::pair()
                .and_then(|(a, b)| {
                    a.set_nonblocking(true)?;
                    b.set_nonblocking(true)?;
                    Ok((a, b))
                })
                .map_err(|e| {
                    PyOSError::new_err(format!("sluice: cannot make a socket pair: {e}"))
                })?;
            Ok(Bell {
                id,
                doorbell,
                socket: Mutex::new(Some(pair)),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = PyOSError::new_err; // Only Unix makes sockets here.
            Ok(Bell { id, doorbell })
        }
    }

    /// Rings it. The socket is non-blocking: a full buffer means the bell
    /// already rings.
    pub fn ring(&self) {
        #[cfg(unix)]
        if let Ok(socket) = self.socket.lock()
            && let Some((_, write)) = &*socket
        {
            let _ = (&*write).write(&[1]);
            return;
        }
        self.doorbell.ring(self.id);
    }

    /// The file descriptor the loop watches, or None (the doorbell).
    pub fn fileno(&self) -> Option<i32> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let socket = self.socket.lock().ok()?;
            socket.as_ref().map(|(read, _)| read.as_raw_fd())
        }
        #[cfg(not(unix))]
        None
    }

    /// Empties the socket (the loop saw it ring); true when it had rung.
    pub fn hush(&self) -> bool {
        #[cfg(unix)]
        if let Ok(socket) = self.socket.lock()
            && let Some((read, _)) = &*socket
        {
            let mut buf = [0u8; 64];
            let mut rang = false;
            while matches!((&*read).read(&mut buf), Ok(n) if n > 0) {
                rang = true;
            }
            return rang;
        }
        false
    }

    /// From now on rings go to the doorbell (the loop cannot watch the
    /// socket); a ring still in the socket is passed on. Rings and this
    /// switch hold the same lock, so none falls between.
    pub fn use_doorbell(&self) {
        #[cfg(unix)]
        if let Ok(mut socket) = self.socket.lock()
            && let Some((read, _)) = socket.take()
        {
            let mut buf = [0u8; 64];
            if matches!((&read).read(&mut buf), Ok(n) if n > 0) {
                self.doorbell.ring(self.id);
            }
        }
    }
}
