//! SIGINT and SIGTERM as a stream of [`Signal`]s: the batch loop drains on
//! the first and cancels on the second (a copy of the first that arrives
//! right after it is not a second one).

use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// An interrupt the user (or a supervisor) sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// A polite kill.
    Terminate,
}

impl Signal {
    /// Its name, for the summary.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// A copy of the first signal arriving this soon after it is the same
/// request, not a second one: GNU `timeout` sends SIGTERM to the child and
/// then to its process group, and a terminal's Ctrl-C reaches every process
/// of a pipeline.
pub const SAME_SIGNAL_WITHIN: Duration = Duration::from_millis(500);

/// Starts listening; fails only if the runtime cannot install handlers.
/// Copies of the first signal within [`SAME_SIGNAL_WITHIN`] are dropped.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let mut first: Option<(Signal, Instant)> = None;
        loop {
            let sig = tokio::select! {
                Some(()) = int.recv() => Signal::Interrupt,
                Some(()) = term.recv() => Signal::Terminate,
                else => return,
            };
            match first {
                Some((s, at)) if s == sig && at.elapsed() < SAME_SIGNAL_WITHIN => continue,
                Some(_) => {}
                None => first = Some((sig, Instant::now())),
            }
            if tx.send(sig).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
