//! The one way a test runs the `sluice` binary: [`Sluice`] builds the
//! command (arguments, input, environment, limits), [`Running`] is the child
//! while it runs (signalled, watched, killed on drop), [`Out`] is how it
//! ended. Every child and every wait is bounded by [`LIMIT`], and the
//! child never sees the machine's proxy settings.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::records::{Record, parse_records, parse_results};

/// Longest a child may run, and longest a test waits for anything (a
/// condition, the server's counts): past it the child is killed and the
/// test fails.
pub const LIMIT: Duration = Duration::from_secs(60);

/// How often a condition and a child's exit are polled.
const POLL: Duration = Duration::from_millis(5);

/// Proxy variables that must not reach the child: every test talks to
/// 127.0.0.1 directly.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `sluice` with arguments, standard input, environment and limits.
pub struct Sluice {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    stdin_file: Option<PathBuf>,
    feed: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    env: Vec<(String, Option<String>)>,
    close_stdout: bool,
    close_stderr: bool,
    open_files: Option<u64>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Out {
    /// The exit status, or minus the signal that killed the child.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Sluice {
    /// `sluice ARGS...`; standard input is empty unless set.
    pub fn new<I, S>(args: I) -> Sluice
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Sluice {
            args: args.into_iter().map(Into::into).collect(),
            stdin: Vec::new(),
            stdin_file: None,
            feed: None,
            env: Vec::new(),
            close_stdout: false,
            close_stderr: false,
            open_files: None,
        }
    }

    /// `sluice run ARGS...`.
    pub fn run<I, S>(args: I) -> Sluice
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut all: Vec<OsString> = vec!["run".into()];
        all.extend(args.into_iter().map(Into::into));
        Sluice::new(all)
    }

    /// `sluice run EXTRA... -o OUTPUT INPUT`: a file job, the shape every
    /// resumed run has.
    pub fn to_file(output: &Path, input: &Path, extra: &[&str]) -> Sluice {
        let mut args: Vec<OsString> = extra.iter().map(Into::into).collect();
        args.extend(["-o".into(), output.into(), input.into()]);
        Sluice::run(args)
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Sluice {
        self.stdin = input.into();
        self
    }

    /// Standard input is this file itself (as `< FILE` makes it), not a pipe.
    pub fn stdin_file(mut self, path: impl Into<PathBuf>) -> Sluice {
        self.stdin_file = Some(path.into());
        self
    }

    /// After the fixed input, standard input gets whatever is sent on the
    /// returned channel, and is closed when the sender is dropped.
    pub fn feed(mut self) -> (Sluice, std::sync::mpsc::Sender<Vec<u8>>) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.feed = Some(rx);
        (self, tx)
    }

    pub fn env(mut self, name: &str, value: &str) -> Sluice {
        self.env.push((name.into(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, name: &str) -> Sluice {
        self.env.push((name.into(), None));
        self
    }

    /// The child's standard output is a pipe whose reader is already closed.
    pub fn close_stdout(mut self) -> Sluice {
        self.close_stdout = true;
        self
    }

    /// The child's standard error is a pipe whose reader is already closed.
    pub fn close_stderr(mut self) -> Sluice {
        self.close_stderr = true;
        self
    }

    /// The child runs under `RLIMIT_NOFILE` = `limit` (soft and hard).
    pub fn open_files(mut self, limit: u64) -> Sluice {
        self.open_files = Some(limit);
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_BACKTRACE", "0");
        match &self.stdin_file {
            Some(path) => cmd.stdin(std::fs::File::open(path).expect("open the input file")),
            None => cmd.stdin(Stdio::piped()),
        };
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.env("NO_PROXY", "*").env("no_proxy", "*");
        for (name, value) in &self.env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        if let Some(limit) = self.open_files {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Runs the child to its end (killed past [`LIMIT`]).
    pub async fn output(self) -> Out {
        self.spawn().finish().await
    }

    /// Starts the child; [`Running::finish`] waits for it.
    pub fn spawn(self) -> Running {
        let mut child = self.command().spawn().expect("spawn sluice");
        if self.close_stdout {
            drop(child.stdout.take());
        }
        if self.close_stderr {
            drop(child.stderr.take());
        }
        let writer = child.stdin.take().map(|mut stdin| {
            let (input, feed) = (self.stdin, self.feed);
            // The child may exit without reading its input: a broken pipe is fine.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
                for chunk in feed.into_iter().flatten() {
                    if stdin
                        .write_all(&chunk)
                        .and_then(|()| stdin.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            })
        });
        Running {
            stdout: Pipe::drain(child.stdout.take()),
            stderr: Pipe::drain(child.stderr.take()),
            child,
            status: None,
            args: self.args,
            writer,
            deadline: Instant::now() + LIMIT,
        }
    }
}

/// A pipe read to its end on a thread of its own; what has arrived so far
/// can be read at any time.
struct Pipe {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pipe {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> Pipe {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let reader = pipe.map(|mut pipe| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .expect("pipe buffer")
                        .extend_from_slice(&buf[..n]);
                }
            })
        });
        Pipe { bytes, reader }
    }

    fn so_far(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().expect("pipe buffer")).into_owned()
    }

    /// Everything, once the child has closed its end.
    fn finish(mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("pipe reader");
        }
        let bytes = std::mem::take(&mut *self.bytes.lock().expect("pipe buffer"));
        String::from_utf8(bytes).expect("output is UTF-8")
    }
}

/// A child that is still running, or not yet waited for: only
/// [`Running::until`] and [`Running::finish`] reap it, so until then its
/// pid cannot be reused and a signal always reaches it.
pub struct Running {
    child: Child,
    /// Set once the child is reaped.
    status: Option<ExitStatus>,
    args: Vec<OsString>,
    writer: Option<std::thread::JoinHandle<()>>,
    stdout: Pipe,
    stderr: Pipe,
    deadline: Instant,
}

impl Drop for Running {
    /// A test that fails before `finish` leaves no child behind.
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// Sends `signal` (e.g. `libc::SIGINT`) to the child.
    pub fn signal(&self, signal: libc::c_int) {
        assert!(
            self.status.is_none(),
            "sluice {:?} exited before it could be signalled\n--- stderr\n{}",
            self.args,
            self.stderr.so_far()
        );
        // SAFETY: plain kill(2); the child is not reaped yet, so the pid is its.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// The child's process id (valid until it is reaped: [`Running::until`]
    /// and [`Running::finish`] reap it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once the child has exited (it is then reaped).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("wait for sluice");
        }
        self.status.is_some()
    }

    /// Polls `condition` until it holds; fails if the child exits first or
    /// if it does not hold within [`LIMIT`].
    pub async fn until(&mut self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !condition() {
            assert!(
                !self.exited(),
                "sluice {:?} exited before {what}\n--- stderr\n{}",
                self.args,
                self.stderr.so_far()
            );
            assert!(
                Instant::now() < deadline,
                "waited {LIMIT:?} for {what}\n--- stderr\n{}",
                self.stderr.so_far()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A crash: kills the child with SIGKILL (no handler runs, nothing is
    /// flushed) and waits for it, which must have died of it.
    pub async fn kill_9(self) -> Out {
        self.signal(libc::SIGKILL);
        let ended = self.finish().await;
        assert_eq!(
            ended.code,
            -libc::SIGKILL,
            "killed by SIGKILL: {}",
            ended.stderr
        );
        ended
    }

    /// Waits for the child to exit (killed past [`LIMIT`]).
    pub async fn finish(self) -> Out {
        self.finish_signalling(None).await
    }

    /// Waits for the child to exit, sending it `signal` again and again
    /// until it does: the way to send "a second interrupt", since signals
    /// that arrive before the first is handled merge into one.
    pub async fn finish_signalling(mut self, signal: Option<libc::c_int>) -> Out {
        let mut last_signal = Instant::now();
        while !self.exited() {
            let now = Instant::now();
            // Drop kills and reaps it.
            assert!(
                now < self.deadline,
                "sluice {:?} ran longer than {LIMIT:?} and was killed\n--- stderr\n{}",
                self.args,
                self.stderr.so_far()
            );
            if let Some(sig) = signal
                && now >= last_signal + Duration::from_millis(100)
            {
                self.signal(sig);
                last_signal = now;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let status = self.status.expect("reaped");
        // Killed by a signal: the negated signal number, never an exit status.
        let code = status.code().unwrap_or_else(|| {
            -std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        let pipes = |p: &mut Pipe| std::mem::replace(p, Pipe::drain(None::<std::fs::File>));
        Out {
            code,
            stdout: pipes(&mut self.stdout).finish(),
            stderr: pipes(&mut self.stderr).finish(),
        }
    }
}

impl Out {
    /// Asserts the exit status, showing both streams when it differs.
    pub fn code(&self, expected: i32) -> &Out {
        assert_eq!(
            self.code, expected,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The result lines on standard output, each validated, as JSON values.
    /// Kept for the tests that index them; new tests use [`Out::results`].
    pub fn records(&self) -> Vec<serde_json::Value> {
        parse_records(&self.stdout)
    }

    /// Every line on standard output as JSON, without the schema check, so
    /// that a test can say what is wrong with a record instead of panicking.
    pub fn unchecked_records(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The result lines on standard output, each validated and typed.
    pub fn results(&self) -> Vec<Record> {
        parse_results(&self.stdout)
    }
}
