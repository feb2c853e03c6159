//! A `sluice` child that the test controls while it runs: it can be signalled
//! (SIGINT, SIGTERM, SIGKILL) once an observable condition holds, and it is
//! always killed if it outlives its deadline. Plus helpers on the server's
//! arrival times and on result files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_mock::MockServer;
use tokio::time::Instant;

use crate::support::{by_line, parse_records};

/// Longest a controlled child may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a test waits for a condition (lines written, requests seen).
const CONDITION_TIMEOUT: Duration = Duration::from_secs(20);

/// How often conditions and the child's exit are polled.
const POLL: Duration = Duration::from_millis(5);

const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A running `sluice run ...` whose stdout and stderr go to files in `dir`.
pub struct Running {
    child: std::process::Child,
    args: Vec<OsString>,
    stderr: PathBuf,
    deadline: Instant,
}

/// How a controlled child ended: its exit code (None when a signal killed
/// it) and its standard error.
#[derive(Debug)]
pub struct Ended {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Running {
    /// Spawns `sluice run ARGS...` with standard input closed.
    pub fn spawn<I, S>(dir: &Path, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let mut all: Vec<OsString> = vec!["run".into()];
        all.extend(args.into_iter().map(Into::into));
        let stderr = dir.join(format!("stderr.{n}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(&all)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("stdout.{n}"))).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.env("NO_PROXY", "*").env("no_proxy", "*");
        let child = cmd.spawn().expect("spawn sluice");
        Running {
            child,
            args: all,
            stderr,
            deadline: Instant::now() + CHILD_TIMEOUT,
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// True once the child has exited (it is then reaped).
    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// Polls `condition` until it holds; panics if the child exits first or
    /// if it does not hold within [`CONDITION_TIMEOUT`].
    pub async fn until(&mut self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        while !condition() {
            if self.exited() {
                panic!(
                    "sluice {:?} exited before {what}\n--- stderr\n{}",
                    self.args,
                    self.stderr_text()
                );
            }
            if Instant::now() > deadline {
                self.kill_now();
                panic!("waited {CONDITION_TIMEOUT:?} for {what}; sluice was killed");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `signal` to the child, which must still be running.
    pub fn signal(&mut self, signal: libc::c_int) {
        assert!(
            !self.exited(),
            "sluice exited before it could be signalled\n--- stderr\n{}",
            self.stderr_text()
        );
        // SAFETY: `try_wait` just saw the child running and only this
        // `Child` can reap it, so the pid still names our child.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the child to exit; kills it (and fails) past its deadline.
    pub async fn wait(mut self) -> Ended {
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Ended {
                    code: status.code(),
                    stderr: self.stderr_text(),
                };
            }
            if Instant::now() > self.deadline {
                self.kill_now();
                panic!(
                    "sluice {:?} ran longer than {CHILD_TIMEOUT:?} and was killed\n--- stderr\n{}",
                    self.args,
                    self.stderr_text()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave its child behind.
        if !self.exited() {
            self.kill_now();
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

/// Sorted arrival times (ms since the last reset) of paths that `keep` accepts.
pub fn arrivals(server: &MockServer, keep: impl Fn(&str) -> bool) -> Vec<f64> {
    let mut ms: Vec<f64> = server
        .stats()
        .arrivals
        .into_iter()
        .filter(|a| keep(&a.path))
        .map(|a| a.ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The largest number of arrivals in any window `[t, t + window_ms)`.
pub fn max_in_window(sorted: &[f64], window_ms: f64) -> usize {
    let mut end = 0;
    let mut best = 0;
    for (start, &t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < t + window_ms {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// Arrivals per second from the first to the last arrival.
pub fn achieved_rate(sorted: &[f64]) -> f64 {
    let span = sorted.last().expect("arrivals") - sorted.first().expect("arrivals");
    (sorted.len() - 1) as f64 / (span / 1000.0)
}

/// Complete lines (ending in a newline) in `path`: what a reader can trust.
pub fn complete_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// The records of a results file, each validated, keyed by line (at most one
/// record per line).
pub fn file_records(path: &Path) -> std::collections::BTreeMap<u64, Value> {
    let text = std::fs::read_to_string(path).expect("read the results file");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the results file ends with a torn line: {:?}",
        text.lines().last()
    );
    by_line(&parse_records(&text))
}

/// One JSON request line.
pub fn json_line(value: Value) -> String {
    value.to_string()
}
