//! Shared helpers: an in-process mock upstream on port 0, the real `sluice`
//! binary run as a child (with a kill-on-timeout watchdog and a clean proxy
//! environment), and result lines parsed and validated against the schema.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sluice_mock::MockServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub mod child;

/// Longest a child may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The schema of a result line, as the repository publishes it to users.
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/result.schema.json");

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

/// Starts a mock upstream on 127.0.0.1 with a port chosen by the system.
pub async fn mock() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().expect("a valid address"))
        .await
        .expect("the mock binds 127.0.0.1:0")
}

/// A URL on 127.0.0.1 where nothing listens: a port the system handed out
/// and that is closed again.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("bound address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A one-trick upstream: answers every request with `response` (a complete
/// HTTP/1.1 response, which should say `Connection: close`) and closes the
/// connection. For what the mock cannot send (e.g. `Set-Cookie`).
pub async fn fixed_server(response: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// A temporary directory for inputs and outputs.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write a test file");
    path
}

/// Input lines joined with newlines (a trailing newline included).
pub fn lines<S: AsRef<str>>(lines: &[S]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(line.as_ref());
        out.push('\n');
    }
    out
}

/// `sluice` with arguments, standard input and environment.
pub struct Sluice {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    feed: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    env: Vec<(String, Option<String>)>,
    close_stdout: bool,
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
            feed: None,
            env: Vec::new(),
            close_stdout: false,
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

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Sluice {
        self.stdin = input.into();
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

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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
        cmd
    }

    /// Runs the child to its end (killed after [`CHILD_TIMEOUT`]).
    pub async fn output(self) -> Out {
        self.spawn().finish().await
    }

    /// Starts the child; [`Running::finish`] waits for it.
    pub fn spawn(self) -> Running {
        let mut child = self.command().spawn().expect("spawn sluice");
        if self.close_stdout {
            drop(child.stdout.take());
        }
        let mut stdin = child.stdin.take().expect("piped stdin");
        let (input, feed) = (self.stdin, self.feed);
        // The child may exit without reading its input: a broken pipe is fine.
        let writer = std::thread::spawn(move || {
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
        });
        Running {
            stdout: child.stdout.take().map(drain),
            stderr: child.stderr.take().map(drain),
            child,
            args: self.args,
            writer: Some(writer),
        }
    }
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// A child that is still running (or at least not yet reaped: only
/// [`Running::finish`] reaps it, so its pid cannot be reused before).
pub struct Running {
    child: Child,
    args: Vec<OsString>,
    writer: Option<std::thread::JoinHandle<()>>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Drop for Running {
    /// A test that panics before `finish` leaves no child behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// Sends `signal` (e.g. `libc::SIGINT`) to the child.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2); the child is not reaped yet, so the pid is its.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// Waits for the child to exit (killed after [`CHILD_TIMEOUT`]).
    pub async fn finish(self) -> Out {
        self.finish_signalling(None).await
    }

    /// Waits for the child to exit, sending it `signal` again and again
    /// until it does: the way to send "a second interrupt", since signals
    /// that arrive before the first is handled merge into one.
    pub async fn finish_signalling(mut self, signal: Option<libc::c_int>) -> Out {
        let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
        let mut last_signal = tokio::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for sluice") {
                break status;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // Drop kills and reaps it.
                panic!(
                    "sluice {:?} ran longer than {CHILD_TIMEOUT:?} and was killed",
                    self.args
                );
            }
            if let Some(sig) = signal
                && now >= last_signal + Duration::from_millis(100)
            {
                self.signal(sig);
                last_signal = now;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let text = |pipe: Option<std::thread::JoinHandle<Vec<u8>>>| {
            let bytes = pipe
                .map(|t| t.join().expect("pipe reader"))
                .unwrap_or_default();
            String::from_utf8(bytes).expect("output is UTF-8")
        };
        // Killed by a signal: the negated signal number, never an exit status.
        let code = status.code().unwrap_or_else(|| {
            -std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        Out {
            code,
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
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

    /// The result lines on standard output, each validated.
    pub fn records(&self) -> Vec<Value> {
        parse_records(&self.stdout)
    }
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let text = std::fs::read_to_string(SCHEMA).expect("schema/result.schema.json is readable");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema compiles")
    })
}

/// What the result schema finds wrong with `record`.
pub fn schema_errors(record: &Value) -> Vec<String> {
    validator()
        .iter_errors(record)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Validates one record against the result schema, and the rule the schema
/// cannot say: a record with no attempt has no start time and no duration.
pub fn check_record(record: &Value) {
    let errors = schema_errors(record);
    assert!(
        errors.is_empty(),
        "record {record} breaks the schema: {errors:?}"
    );
    if record["attempts"] == 0 {
        assert_eq!(record["started_at"], Value::Null, "attempts 0: {record}");
        assert_eq!(
            record["duration_ms"].as_f64(),
            Some(0.0),
            "attempts 0: {record}"
        );
    } else {
        assert!(record["started_at"].is_string(), "attempted: {record}");
    }
}

/// Every non-empty line of `text` as a validated record.
pub fn parse_records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            check_record(&record);
            record
        })
        .collect()
}

/// Records keyed by `line`, asserting each line has exactly one.
pub fn by_line(records: &[Value]) -> BTreeMap<u64, Value> {
    let mut map = BTreeMap::new();
    for record in records {
        let line = record["line"].as_u64().expect("line is an integer");
        let previous = map.insert(line, record.clone());
        assert!(previous.is_none(), "line {line} has two records");
    }
    map
}

/// The error kind of a record, or "" when it has none.
pub fn kind(record: &Value) -> &str {
    record["error"]["kind"].as_str().unwrap_or("")
}

/// Requests the mock saw for one literal path.
pub fn path_requests(server: &MockServer, path: &str) -> u64 {
    server.stats().paths.get(path).map_or(0, |p| p.requests)
}

/// Looks up a header in a JSON object of headers, ignoring case.
pub fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Polls `ready` until it holds (gives up after [`CHILD_TIMEOUT`]).
pub async fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let wait = async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(CHILD_TIMEOUT, wait).await.is_err() {
        panic!("never happened: {what}");
    }
}

/// Waits until the mock's statistics satisfy `ready` (polled; gives up
/// after [`CHILD_TIMEOUT`]).
pub async fn until(server: &MockServer, what: &str, ready: impl Fn(&sluice_mock::Stats) -> bool) {
    wait_for(what, || ready(&server.stats())).await;
}
