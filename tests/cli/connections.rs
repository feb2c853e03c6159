//! Transport truths against an upstream that behaves like a real server:
//! HTTP/2 stream limits and GOAWAY, the HTTP/1.1 keep-alive race, and an
//! abort before any response on both protocols. A POST is reported
//! `maybe_applied` only when the server may have received it: the upstream
//! counts what it received.

use std::time::Duration;

use sluice_mock::{MockOptions, MockServer};

use crate::support::*;

async fn mock_with(options: MockOptions) -> MockServer {
    MockServer::start_with("127.0.0.1:0".parse().expect("a valid address"), options)
        .await
        .expect("the mock binds 127.0.0.1:0")
}

/// `n` POSTs to `url`, one a line.
fn posts(url: &str, n: usize) -> String {
    let line = format!(r#"{{"method":"POST","url":"{url}","body":{{"k":1}}}}"#);
    lines(&vec![line; n])
}

/// Records reported `maybe_applied`.
fn maybe_applied(records: &[Record]) -> usize {
    records.iter().filter(|r| r.maybe_applied()).count()
}

/// Every POST succeeded, each received exactly once, none `maybe_applied`.
fn all_received_once(records: &[Record], received: u64, n: usize) {
    let failed: Vec<&Record> = records.iter().filter(|r| !r.ok).collect();
    assert!(
        failed.is_empty(),
        "{} of {n} failed ({} maybe_applied; the server received {received}), e.g. {}",
        failed.len(),
        maybe_applied(records),
        failed[0]
    );
    assert_eq!(records.len(), n);
    assert_eq!(received, n as u64, "POSTs the server received");
}

/// nginx's `http2_max_concurrent_streams 10` at `--http2 -c 50`: sluice
/// opens more connections, so HTTP/2 keeps HTTP/1.1's pace (it was five
/// times slower, with requests queued inside one connection: at most 10 of
/// the 50 at the server at once). Counted at the server, not timed (a
/// ratio of wall times failed on a loaded machine, HTTP/2 costing the
/// client more CPU): all 50 reach the server together, over at least the
/// 5 connections that 10 streams each need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_beyond_the_stream_limit_keeps_http1_pace() {
    const N: usize = 500;
    let server = mock_with(MockOptions {
        h2_max_streams: Some(10),
        ..MockOptions::default()
    })
    .await;
    let path = "/delay/0.05";
    let url = format!("{}{path}", server.url());
    let out = Sluice::run(["--http2", "-c", "50", "--retries", "0"])
        .stdin(posts(&url, N))
        .output()
        .await;
    out.code(0);
    all_received_once(&out.results(), path_requests(&server, path), N);
    let stats = server.stats();
    let at_path = &stats.paths[path];
    assert_eq!(
        at_path.peak_in_flight, 50,
        "HTTP/2 requests at the server at once: {at_path:?}"
    );
    assert!(
        stats.connections >= 5,
        "10 streams a connection: {} connections",
        stats.connections
    );
    server.shutdown().await;
}

/// Requests beyond the server's stream limit used to wait inside the
/// connection on their attempt's clock, and timed out as `maybe_applied`
/// without ever reaching the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_never_wait_for_a_stream_on_their_clock() {
    const N: usize = 300;
    let server = mock_with(MockOptions {
        h2_max_streams: Some(10),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/delay/0.05", server.url());
    let out = Sluice::run(["--http2", "-c", "100", "--timeout", "400ms"])
        .stdin(posts(&url, N))
        .output()
        .await;
    all_received_once(&out.results(), path_requests(&server, "/delay/0.05"), N);
    out.code(0);
    server.shutdown().await;
}

/// nginx's `keepalive_requests`: each connection ends with a GOAWAY after
/// 50 requests, here with a 20-stream limit. Requests the server never
/// processed (waiting for a stream on the connection, or above the
/// GOAWAY's last stream) are sent again, never reported `maybe_applied`
/// (they were: "dispatch task is gone", `reset`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_goaway_loses_no_post() {
    const N: usize = 1000;
    let server = mock_with(MockOptions {
        goaway_after: Some(50),
        h2_max_streams: Some(20),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/fast", server.url());
    let out = Sluice::run(["--http2", "-c", "100", "--backoff-initial", "5ms"])
        .stdin(posts(&url, N))
        .output()
        .await;
    all_received_once(&out.results(), path_requests(&server, "/fast"), N);
    out.code(0);
    // Each connection serves its 50 and the streams already open.
    assert!(
        server.stats().connections >= 5,
        "the server renewed its connections: {:?}",
        server.stats().connections
    );
    server.shutdown().await;
}

/// POSTs paced just past the server's keep-alive: a pooled connection
/// reused as the server closes it loses the request in flight. The pool
/// drops idle connections first (`--pool-idle-timeout`, and by default
/// below common keep-alives), so none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_race_loses_no_post() {
    // keep-alive 300 ms, close landing by 360 ms; a request every 333 ms.
    let server = mock_with(MockOptions {
        keep_alive: Some(Duration::from_millis(300)),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/fast", server.url());
    let out = Sluice::run(["-c", "1", "--rate", "3/s", "--pool-idle-timeout", "200ms"])
        .stdin(posts(&url, 8))
        .output()
        .await;
    all_received_once(&out.results(), path_requests(&server, "/fast"), 8);
    out.code(0);
    server.shutdown().await;
}

/// The same race against the default pool idle timeout (1 s): a server
/// keep-alive of 1.2 s, POSTs every 1.22 s (the default used to be 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_pool_idle_timeout_is_below_short_keep_alives() {
    let server = mock_with(MockOptions {
        keep_alive: Some(Duration::from_millis(1200)),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/fast", server.url());
    let out = Sluice::run(["-c", "1", "--rate", "49/m"])
        .stdin(posts(&url, 4))
        .output()
        .await;
    all_received_once(&out.results(), path_requests(&server, "/fast"), 4);
    out.code(0);
    server.shutdown().await;
}

/// nginx's `return 444`: the server reads the request and aborts it with no
/// response — a closed connection on HTTP/1.1, `RST_STREAM PROTOCOL_ERROR`
/// on HTTP/2. Both are `reset` (retried for a GET), and a POST is
/// `maybe_applied` since the server received it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_any_response_is_reset_on_both_protocols() {
    let server = mock().await;
    let url = format!("{}/abort", server.url());
    for http2 in [false, true] {
        server.reset_stats();
        let mut args = vec!["--retries", "0"];
        if http2 {
            args.push("--http2");
        }
        let out = Sluice::run(args).stdin(posts(&url, 1)).output().await;
        out.code(1);
        let rec = &out.results()[0];
        assert_eq!(kind(rec), "reset", "http2 {http2}: {rec}");
        assert!(rec.maybe_applied(), "http2 {http2}: {rec}");
        assert_eq!(path_requests(&server, "/abort"), 1, "http2 {http2}");

        // A GET is retried: the server sees every attempt.
        server.reset_stats();
        let mut args = vec!["--retries", "2", "--backoff-initial", "5ms"];
        if http2 {
            args.push("--http2");
        }
        let out = Sluice::run(args).stdin(format!("{url}\n")).output().await;
        out.code(1);
        let rec = &out.results()[0];
        assert_eq!((rec.kind(), rec.attempts), ("reset", 3));
        assert_eq!(path_requests(&server, "/abort"), 3, "http2 {http2}");
    }
    server.shutdown().await;
}

/// A pooled connection the server closed while it sat idle (keep-alive
/// 100 ms, the pool keeping connections 10 s; a POST every 500 ms) is seen
/// closed before a request is written to it: each POST goes out on a new
/// connection, is received once, and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_while_idle_carries_no_request() {
    let server = mock_with(MockOptions {
        keep_alive: Some(Duration::from_millis(100)),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/fast", server.url());
    let out = Sluice::run(["-c", "1", "--rate", "2/s", "--pool-idle-timeout", "10s"])
        .stdin(posts(&url, 4))
        .output()
        .await;
    all_received_once(&out.results(), path_requests(&server, "/fast"), 4);
    assert_eq!(server.stats().connections, 4, "{:?}", server.stats());
    out.code(0);
    server.shutdown().await;
}
