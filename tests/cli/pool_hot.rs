//! The direct client's pool keeps every connection it opened in use while a
//! run is busy, so the server sees no more connections than `-c`.

use crate::support::{Sluice, by_line, lines, mock};

/// 2,000 GETs at `-c 50`, paced so that the requests in flight rise and
/// fall (delays of 0 to 49 ms), with connections closed after 100 ms idle:
/// the server sees at most 50 connections. Reusing the newest idle
/// connection first left the older ones idle behind it until they aged out
/// and were opened again: 68 to 105 connections in this run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_run_opens_no_more_connections_than_slots() {
    let server = mock().await;
    let urls: Vec<String> = (0..2000)
        .map(|i| format!("{}/delay/0.{:03}", server.url(), (i * 37) % 50))
        .collect();
    let args = [
        "-c",
        "50",
        "-q",
        "--rate",
        "1000/s",
        "--pool-idle-timeout",
        "100ms",
    ];
    let out = Sluice::run(args).stdin(lines(&urls)).output().await;
    out.code(0);
    assert_eq!(by_line(&out.records()).len(), 2000);
    let stats = server.stats();
    assert_eq!(stats.requests, 2000);
    assert!(
        (1..=50).contains(&stats.connections),
        "at most one connection per slot: {} connections, {} in flight at most",
        stats.connections,
        stats.peak_in_flight
    );
    server.shutdown().await;
}
