//! Politeness per origin: Retry-After pauses the whole origin, an origin that
//! refuses everything is closed (exit 3), rates bound attempt starts.

use std::time::Instant;

use crate::support::*;

/// A 429 with `Retry-After: 1` pauses its whole origin: no request to it
/// starts until a second after the 429 arrived, retries included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_pauses_the_whole_origin() {
    let server = mock().await;
    let m = server.url();
    let mut input = vec![format!("{m}/fail/1/p?status=429&retry_after=1")];
    input.extend(vec![format!("{m}/fast"); 3]);
    let out = Sluice::run(["-c", "1", "--retries", "1"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.records());
    assert_eq!(recs[&1]["attempts"], 2, "{}", recs[&1]);
    assert!(
        recs[&1]["duration_ms"].as_f64().unwrap() >= 1000.0,
        "waits count"
    );
    let stats = server.stats();
    assert_eq!(stats.requests, 5);
    let first = stats.arrivals[0].ms;
    assert_eq!(stats.arrivals[0].path, "/fail/1/p");
    for later in &stats.arrivals[1..] {
        assert!(
            later.ms >= first + 1000.0,
            "{} arrived {} ms after the 429, within its Retry-After",
            later.path,
            later.ms - first
        );
    }
    server.shutdown().await;
}

/// A Retry-After beyond `--max-retry-after` closes the origin: its other
/// requests are neither sent nor written, other origins finish, exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_quota_closes_its_origin() {
    let (a, b) = (mock().await, mock().await);
    let input = lines(&[
        format!("{}/fail/1/q?status=429&retry_after=3600", a.url()),
        format!("{}/fast", a.url()),
        format!("{}/fast", a.url()),
        format!("{}/fast", b.url()),
        format!("{}/fast", b.url()),
    ]);
    let out = Sluice::run(["-c", "1", "--max-retry-after", "10s"])
        .stdin(input)
        .output()
        .await;
    out.code(3);
    let recs = by_line(&out.records());
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 4, 5]);
    assert_eq!(kind(&recs[&1]), "retry_after_too_long", "{}", recs[&1]);
    assert_eq!(recs[&1]["status"], 429);
    assert_eq!(recs[&1]["attempts"], 1);
    assert!(recs[&4]["ok"] == true && recs[&5]["ok"] == true);
    assert_eq!(a.stats().requests, 1);
    assert_eq!(b.stats().requests, 2);
    assert!(
        out.stderr.contains(&a.addr().to_string()),
        "names the origin: {}",
        out.stderr
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// `--halt-after N` closes an origin after N consecutive final failures of
/// kind connect (or 401/403/407, dns, tls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_after_closes_an_origin_that_refuses_everything() {
    let server = mock().await;
    let closed = closed_port_url();
    let mut input = vec![format!("{closed}/x"); 5];
    input.extend(vec![format!("{}/status/401", server.url()); 4]);
    input.push(format!("{}/fast", server.url()));
    let out = Sluice::run(["-c", "1", "--retries", "0", "--halt-after", "2"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(3);
    let recs = by_line(&out.records());
    // The mock's origin closes after two 401s too: /fast is never sent.
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 6, 7]);
    assert!([1, 2].iter().all(|l| kind(&recs[l]) == "connect"));
    assert!([6, 7].iter().all(|l| recs[l]["status"] == 401));
    assert_eq!(path_requests(&server, "/status/401"), 2);
    assert_eq!(path_requests(&server, "/fast"), 0);
    server.shutdown().await;
}

/// `--rate 20/s` with the default burst of 1: 11 starts need at least half
/// a second (a lower bound, so no tolerance is needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_spaces_attempt_starts() {
    let server = mock().await;
    let input = lines(&vec![format!("{}/fast", server.url()); 11]);
    let started = Instant::now();
    let out = Sluice::run(["-c", "11", "--rate", "20/s"])
        .stdin(input)
        .output()
        .await;
    let elapsed = started.elapsed();
    out.code(0);
    assert_eq!(out.records().len(), 11);
    assert!(
        elapsed.as_millis() >= 500,
        "11 starts at 20/s in {elapsed:?}"
    );
    assert_eq!(server.stats().requests, 11);
    server.shutdown().await;
}

/// A 503 pauses its origin even when it will not be retried; the wait may
/// come in milliseconds (`retry-after-ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_or_429_pauses_even_without_a_retry() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/fail/1/a?retry_after=1"),
        format!("{m}/fast?1"),
        format!("{m}/fail/1/b?status=429&retry_after_ms=400"),
        format!("{m}/fast?2"),
    ]);
    let out = Sluice::run(["-c", "1", "--retries", "0"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.records());
    assert_eq!(
        (recs[&1]["status"].clone(), recs[&1]["attempts"].clone()),
        (503.into(), 1.into())
    );
    assert_eq!(
        (recs[&3]["status"].clone(), recs[&3]["attempts"].clone()),
        (429.into(), 1.into())
    );
    let arrivals: Vec<f64> = server.stats().arrivals.iter().map(|a| a.ms).collect();
    assert_eq!(arrivals.len(), 4);
    assert!(
        arrivals[1] - arrivals[0] >= 1000.0,
        "Retry-After: 1 ignored: {arrivals:?}"
    );
    assert!(
        arrivals[3] - arrivals[2] >= 400.0,
        "retry-after-ms: 400 ignored: {arrivals:?}"
    );
    server.shutdown().await;
}

/// A request waiting on its origin's pause holds no global slot: with
/// `-c 1`, another origin goes on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_origin_does_not_hold_up_another() {
    let (a, b) = (mock().await, mock().await);
    let input = lines(&[
        format!("{}/fail/1/z?status=429&retry_after=1", a.url()),
        format!("{}/fast", a.url()),
        format!("{}/fast", b.url()),
    ]);
    a.reset_stats();
    b.reset_stats();
    let out = Sluice::run(["-c", "1", "--retries", "1"])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.requests, sb.requests), (3, 1));
    let paused_at = sa.arrivals[0].ms;
    assert!(
        sb.arrivals[0].ms < paused_at + 1000.0,
        "B waited for A's pause: B at {} ms, A's 429 at {paused_at} ms",
        sb.arrivals[0].ms
    );
    a.shutdown().await;
    b.shutdown().await;
}
