//! SIGINT and SIGTERM as a stream of [`Signal`]s: the batch loop drains on
//! the first and cancels on the second.

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
    /// The exit status that reports it (128 + the signal number).
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => crate::batch::exit::SIGINT,
            Signal::Terminate => crate::batch::exit::SIGTERM,
        }
    }

    /// Its name, for the summary.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Starts listening; fails only if the runtime cannot install handlers.
pub fn listen() -> std::io::Result<mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                Some(()) = int.recv() => Signal::Interrupt,
                Some(()) = term.recv() => Signal::Terminate,
                else => return,
            };
            if tx.send(sig).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
