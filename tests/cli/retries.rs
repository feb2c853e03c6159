//! Retries are polite: what is retried, how often, and after how long.

use serde_json::json;

use crate::support::arrivals::arrivals;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_retried_until_it_succeeds_and_exhausted_retries_keep_the_last_status() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/fail/2/k"),
        format!("{m}/fail/10/k2"),
        format!("{m}/status/404"),
    ]);
    let out = Sluice::run(["--retries", "2", "-q", "--backoff-initial", "10ms"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 3);

    let (ok, exhausted, not_found) = (&recs[&1], &recs[&2], &recs[&3]);
    assert!(ok.ok, "{ok}");
    assert_eq!((ok.status, ok.attempts), (Some(200), 3));
    assert_eq!(path_requests(&server, "/fail/2/k"), 3);

    assert!(!exhausted.ok, "{exhausted}");
    assert_eq!(exhausted.status, Some(503));
    assert_eq!(exhausted.attempts, 3, "--retries 2: three attempts");
    assert_eq!(kind(exhausted), "http_status");
    assert_eq!(path_requests(&server, "/fail/10/k2"), 3);

    assert_eq!(not_found.status, Some(404));
    assert_eq!(not_found.attempts, 1, "404 is not in --retry-on");
    assert_eq!(kind(not_found), "http_status");
    assert_eq!(path_requests(&server, "/status/404"), 1);
    assert_eq!(server.stats().requests, 7);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_only_where_the_server_did_not_act_or_it_is_made_safe() {
    let server = mock().await;
    let m = server.url();
    let post = |path: &str| {
        json_line(json!({"method": "POST", "url": format!("{m}{path}"), "body": {"n": 1}}))
    };
    let input = lines(&[
        post("/fail/1/p"),
        post("/fail/1/p429?status=429"),
        post("/fail/1/q?status=500"),
        json_line(json!({
            "method": "POST",
            "url": format!("{m}/fail/1/r?status=500"),
            "headers": {"Idempotency-Key": "k-r"},
            "body": {"n": 1}
        })),
    ]);
    let out = Sluice::run(["-q", "--backoff-initial", "10ms"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 4);

    for (line, path) in [(1, "/fail/1/p"), (2, "/fail/1/p429")] {
        let r = &recs[&line];
        assert_eq!((r.ok, r.attempts), (true, 2), "{r}");
        assert_eq!(path_requests(&server, path), 2, "{path}");
    }

    let q = &recs[&3];
    assert!(!q.ok, "{q}");
    assert_eq!(q.status, Some(500));
    assert_eq!(q.attempts, 1, "a POST is not retried on 500: {q}");
    assert_eq!(kind(q), "http_status");
    assert!(q.maybe_applied(), "{q}");
    assert_eq!(path_requests(&server, "/fail/1/q"), 1);

    let r = &recs[&4];
    assert_eq!((r.ok, r.attempts), (true, 2), "Idempotency-Key: {r}");
    assert_eq!(path_requests(&server, "/fail/1/r"), 2);

    // The same 500 with --retry-non-idempotent.
    let input = lines(&[post("/fail/1/s?status=500")]);
    let out = Sluice::run(["-q", "--retry-non-idempotent", "--backoff-initial", "10ms"])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(recs[&1].attempts, 2, "{}", recs[&1]);
    assert_eq!(path_requests(&server, "/fail/1/s"), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let server = mock().await;
    let m = server.url();
    let out = Sluice::run(["-q", "--backoff-initial", "10ms"])
        .stdin(lines(&[format!("{m}/fail/1/ra?retry_after=2")]))
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(recs[&1].attempts, 2);
    let at = arrivals(&server, |p| p == "/fail/1/ra");
    assert_eq!(at.len(), 2);
    assert!(
        at[1] - at[0] >= 2000.0,
        "Retry-After: 2 was not honoured: attempts {:.0} ms apart",
        at[1] - at[0]
    );
    server.shutdown().await;
}

/// -c 2: while line 1 waits 3 s to retry (its origin A paused by a 503 with
/// Retry-After: 3), both slots serve the other origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_to_retry_holds_no_slot() {
    let (a, b) = (mock().await, mock().await);
    let mut input = vec![format!("{}/fail/1/slow?retry_after=3", a.url())];
    input.extend((0..10).map(|_| format!("{}/delay/0.3", b.url())));
    a.reset_stats();
    b.reset_stats();
    let out = Sluice::run(["-q", "-c", "2", "--backoff-initial", "10ms"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 11);
    assert_eq!(recs[&1].attempts, 2);

    let retry = arrivals(&a, |_| true);
    let delays = arrivals(&b, |_| true);
    assert_eq!((retry.len(), delays.len()), (2, 10));
    assert!(retry[1] - retry[0] >= 3000.0, "Retry-After: 3 honoured");
    // Both servers were reset together: their clocks agree to microseconds.
    let last_done = delays[9] + 300.0;
    assert!(
        last_done <= retry[1],
        "all ten /delay/0.3 should finish before the retry (last done {last_done:.0} ms, retry at {:.0} ms)",
        retry[1]
    );
    let sb = b.stats();
    assert_eq!(
        sb.peak_in_flight, 2,
        "both slots served B while A's retry waited: {sb:?}"
    );
    assert_eq!(a.stats().peak_in_flight, 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// Retry-After values that are not delay-seconds or an HTTP date are
/// ignored (computed backoff), a date in the past means "now", and a wait
/// beyond `--max-retry-after` — in seconds too large for any integer, or a
/// date in the year 9999 — closes the origin without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_edge_values() {
    fn first_503(value: &'static str) -> impl Fn(&Req) -> Act + Send + Sync {
        let served = std::sync::Mutex::new(std::collections::HashSet::new());
        move |req| {
            if served.lock().unwrap().insert(req.path.clone()) {
                let header = format!("Retry-After: {value}");
                Act::Keep(response("503 Service Unavailable", &[&header], b""))
            } else {
                Act::Keep(ok("fine"))
            }
        }
    }
    let values = [
        "-5",
        "1.5",
        "soon",
        "0x10",
        "1, 2",
        "",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ];
    let mut servers = Vec::new();
    for v in values {
        servers.push(RawServer::start(first_503(v)).await);
    }
    let input = lines(
        &servers
            .iter()
            .map(|s| format!("{}/x", s.url))
            .collect::<Vec<_>>(),
    );
    let out = Sluice::run(["--backoff-initial", "10ms", "-c", "16"])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    for (line, rec) in by_line(&out.results()) {
        let value = values[line as usize - 1];
        assert_eq!(rec.attempts, 2, "Retry-After {value:?}: {rec}");
        let ms = rec.duration_ms;
        assert!(ms < 2500.0, "Retry-After {value:?} was not ignored: {rec}");
    }

    let huge = RawServer::start(first_503("99999999999999999999999")).await;
    let far = RawServer::start(first_503("Fri, 31 Dec 9999 23:59:59 GMT")).await;
    let input = lines(&[format!("{}/x", huge.url), format!("{}/x", far.url)]);
    let out = Sluice::run(Vec::<&str>::new()).stdin(input).output().await;
    out.code(3);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    for rec in out.results() {
        assert_eq!(rec.kind(), "retry_after_too_long", "{rec}");
        assert_eq!(rec.attempts, 1);
    }
}

/// Absurd durations never panic, and nothing ends in exit 0 with requests
/// unwritten (exit 0 means every request has an ok record). (Was:
/// `Instant + Duration` overflowed when a retry was scheduled; the panic
/// killed the engine and the run exited 0 with no record at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_neither_panic_nor_exit_0() {
    let raw =
        RawServer::start(|_| Act::Keep(response("500 Internal Server Error", &[], b""))).await;
    let input = lines(
        &(0..20)
            .map(|i| format!("{}/x{i}", raw.url))
            .collect::<Vec<_>>(),
    );
    let child = Sluice::run([
        "--retries",
        "1",
        "--backoff-initial",
        "5000000000000000h",
        "--backoff-max",
        "5000000000000000h",
    ])
    .stdin(input)
    .spawn();
    // The run either refuses the durations (exit 2) or waits to retry
    // until the interrupt drains it (exit 130).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    child.signal(libc::SIGINT);
    let out = child.finish().await;
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        [2, 130].contains(&out.code),
        "exit {}: {}",
        out.code,
        out.stderr
    );
}
