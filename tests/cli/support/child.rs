//! The controlled child by the names its older callers use: `Running::spawn`
//! with output to nothing and `wait` returning an [`Ended`]. A thin layer
//! over [`super::run`]; new tests use `Sluice::run(..).spawn()` and
//! `Running::finish` directly (this module is to be removed once no test
//! uses it).

use std::ffi::OsString;
use std::path::Path;

pub use super::arrivals::{achieved_rate, arrivals, max_in_window};
pub use super::records::complete_lines;

/// A running `sluice run ...` (see [`super::run::Running`]).
pub struct Running(super::Running);

/// How a controlled child ended: its exit code (None when a signal killed
/// it) and its standard error.
#[derive(Debug)]
pub struct Ended {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Running {
    /// Spawns `sluice run ARGS...` with empty standard input. (`dir` was
    /// where its output went; the one runner keeps output in memory.)
    pub fn spawn<I, S>(_dir: &Path, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Running(super::run::Sluice::run(args).spawn())
    }

    /// See [`super::run::Running::until`].
    pub async fn until(&mut self, what: &str, condition: impl FnMut() -> bool) {
        self.0.until(what, condition).await;
    }

    /// Sends `signal` to the child, which must still be running.
    pub fn signal(&mut self, signal: libc::c_int) {
        assert!(
            !self.0.exited(),
            "sluice exited before it could be signalled\n--- stderr\n{}",
            self.0.stderr_so_far()
        );
        self.0.signal(signal);
    }

    /// Waits for the child to exit (killed past the one time limit).
    pub async fn wait(self) -> Ended {
        let out = self.0.finish().await;
        Ended {
            code: (out.code >= 0).then_some(out.code),
            stderr: out.stderr,
        }
    }
}

impl Ended {
    /// Asserts the exit code, showing stderr when it differs.
    pub fn code(&self, expected: i32) -> &Ended {
        assert_eq!(
            self.code,
            Some(expected),
            "exit status\n--- stderr\n{}",
            self.stderr
        );
        self
    }
}
