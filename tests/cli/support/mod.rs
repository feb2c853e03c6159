//! What every test shares: the test upstream (`sluice_mock`) on port 0, the
//! one runner of the real `sluice` binary ([`run`]: killed on drop and past
//! [`LIMIT`], both streams shown on failure), result lines validated against
//! the schema and typed ([`records`]), the one raw HTTP server for what the
//! mock will not do ([`raw`]) and the server's arrival times ([`arrivals`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_mock::MockServer;

pub mod arrivals;
pub mod raw;
pub mod records;
pub mod run;

pub use raw::{Act, RawServer, Req, ok, response};
pub use records::{
    Record, by_line, check_record, complete_lines, file_results, header, kind, parse_records,
    parse_results, results_so_far, schema_errors,
};
pub use run::{LIMIT, Out, Running, Sluice};

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
/// HTTP/1.1 response) and closes the connection. Kept for its callers; it is
/// [`raw::RawServer`] with one [`raw::Act::Last`].
pub async fn fixed_server(response: &'static [u8]) -> String {
    raw::RawServer::start(move |_| raw::Act::Last(response.to_vec()))
        .await
        .url
}

/// A file job's pieces: the mock, a temporary directory, `in.txt` in it
/// holding one request line each, and the output path `out.jsonl`.
pub struct FileJob {
    pub server: MockServer,
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub output: PathBuf,
}

impl FileJob {
    /// Starts the mock and writes `in.txt` from its URL (`lines(url)`).
    pub async fn start(lines_at: impl FnOnce(&str) -> Vec<String>) -> FileJob {
        let server = mock().await;
        let dir = tempdir();
        let input = write_file(dir.path(), "in.txt", lines(&lines_at(&server.url())));
        let output = dir.path().join("out.jsonl");
        FileJob {
            server,
            dir,
            input,
            output,
        }
    }
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

/// One JSON request line.
pub fn json_line(value: serde_json::Value) -> String {
    value.to_string()
}

/// Requests the mock saw for one literal path.
pub fn path_requests(server: &MockServer, path: &str) -> u64 {
    server.stats().paths.get(path).map_or(0, |p| p.requests)
}

/// Polls `ready` until it holds (gives up after [`LIMIT`]).
pub async fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let wait = async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(LIMIT, wait).await.is_err() {
        panic!("never happened: {what}");
    }
}

/// Waits until the mock's statistics satisfy `ready` (polled; gives up
/// after [`LIMIT`]).
pub async fn until(server: &MockServer, what: &str, ready: impl Fn(&sluice_mock::Stats) -> bool) {
    wait_for(what, || ready(&server.stats())).await;
}
