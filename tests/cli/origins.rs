//! Politeness per origin: a 429/503 (Retry-After) pauses its whole origin
//! and only it; an origin that refuses everything, or whose quota is spent,
//! is closed (exit 3), not hammered, and its waiting retries are dropped.

use crate::support::arrivals::arrivals;
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
    let recs = by_line(&out.results());
    assert_eq!(recs[&1].attempts, 2, "{}", recs[&1]);
    assert!(recs[&1].duration_ms >= 1000.0, "waits count");
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
    let recs = by_line(&out.results());
    // The mock's origin closes after two 401s too: /fast is never sent.
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 6, 7]);
    assert!([1, 2].iter().all(|l| recs[l].kind() == "connect"));
    assert!([6, 7].iter().all(|l| recs[l].status == Some(401)));
    assert_eq!(path_requests(&server, "/status/401"), 2);
    assert_eq!(path_requests(&server, "/fast"), 0);
    assert!(
        out.stderr.contains(&format!("closed {}", server.url())),
        "stderr names the closed origin:\n{}",
        out.stderr
    );
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
    let recs = by_line(&out.results());
    assert_eq!((recs[&1].status, recs[&1].attempts), (Some(503), 1));
    assert_eq!((recs[&3].status, recs[&3].attempts), (Some(429), 1));
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

/// Running out of file descriptors is a local problem: the records say
/// which limit to raise, and it does not count towards `--halt-after`.
/// (Was: plain `connect` failures that closed a healthy origin, exit 3.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_not_blamed_on_the_origin() {
    let raw =
        RawServer::start(|_| Act::After(std::time::Duration::from_millis(300), ok("fine"))).await;
    let input = lines(
        &(0..60)
            .map(|i| format!("{}/x{i}", raw.url))
            .collect::<Vec<_>>(),
    );
    let out = Sluice::run(["-c", "60", "--retries", "0"])
        .open_files(32)
        .stdin(input)
        .output()
        .await;
    // Nothing was sent for them (kind connect), the message says what to
    // raise, and the healthy origin is not closed by --halt-after.
    for r in out
        .unchecked_records()
        .iter()
        .filter(|r| kind(r) == "connect")
    {
        let message = r["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("ulimit -n"), "{r}");
    }
    assert_ne!(out.code, 3, "a healthy origin was closed:\n{}", out.stderr);
}

/// Origin A answers its first request 429 with Retry-After: 2. Its other
/// requests wait out the pause without holding a slot, so origin B's
/// requests (some after A's in the input) are all served during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_its_origin_and_only_it() {
    let (a, b) = (mock().await, mock().await);
    let (ma, mb) = (a.url(), b.url());
    let mut input = vec![format!("{ma}/fail/1/x?status=429&retry_after=2")];
    input.extend((0..3).map(|_| format!("{mb}/delay/0.2")));
    // More paused A requests than -c: were they to hold slots, B would stall.
    input.extend((0..6).map(|_| format!("{ma}/fast")));
    input.extend((0..9).map(|_| format!("{mb}/delay/0.2")));
    a.reset_stats();
    b.reset_stats();
    let out = Sluice::run(["-q", "-c", "4"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 19);
    assert_eq!(recs[&1].attempts, 2, "{}", recs[&1]);

    let first = a.stats().arrivals[0].clone();
    assert_eq!(first.path, "/fail/1/x", "the 429 came first at A");
    let at_a = arrivals(&a, |_| true);
    assert_eq!(at_a.len(), 8, "the 429, its retry and six /fast");
    let pause_end = first.ms + 2000.0;
    for &t in &at_a[1..] {
        assert!(
            t >= pause_end,
            "a request reached A {:.0} ms after its 429 asked for 2 s",
            t - first.ms
        );
    }
    // The two mocks were reset together, so their clocks agree.
    let at_b = arrivals(&b, |_| true);
    assert_eq!(at_b.len(), 12);
    assert!(at_b[0] < pause_end, "B was served during A's pause");
    assert!(
        at_b[11] < at_a[1],
        "every B request arrived before A resumed (last B at {:.0} ms, A resumed at {:.0} ms)",
        at_b[11],
        at_a[1]
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A Retry-After beyond --max-retry-after (a spent quota) closes the origin:
/// one `retry_after_too_long` record, nothing else sent to or written for
/// it, the other origin finishes, exit 3 naming the closed origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_beyond_the_maximum_closes_the_origin() {
    let (a, b) = (mock().await, mock().await);
    let (ma, mb) = (a.url(), b.url());
    let mut input = vec![format!("{ma}/fail/5/z?status=429&retry_after=3600")];
    for _ in 0..2 {
        input.extend([format!("{ma}/fast"), format!("{ma}/fast")]);
        input.extend([format!("{mb}/fast"), format!("{mb}/fast")]);
    }
    // Per-host 1: A's other requests are still queued when the 429 arrives.
    let out = Sluice::run([
        "-c",
        "4",
        "--per-host-concurrency",
        "1",
        "--max-retry-after",
        "5s",
    ])
    .stdin(lines(&input))
    .output()
    .await;
    out.code(3);
    let recs = by_line(&out.results());
    let lines: Vec<u64> = recs.keys().copied().collect();
    assert_eq!(lines, [1, 4, 5, 8, 9], "A's queued requests get no record");
    let closed = &recs[&1];
    assert_eq!(kind(closed), "retry_after_too_long", "{closed}");
    assert_eq!(closed.attempts, 1);
    assert_eq!(closed.status, Some(429));
    for line in [4, 5, 8, 9] {
        assert!(recs[&line].ok, "{}", recs[&line]);
    }
    assert_eq!(a.stats().requests, 1, "nothing more was sent to A");
    assert_eq!(b.stats().requests, 4);
    assert!(
        out.stderr.contains(&format!("closed {ma}")),
        "stderr names the closed origin {ma}:\n{}",
        out.stderr
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A paused origin does not hold other origins up through the read-ahead:
/// more requests to the paused origin than the read-ahead holds are queued
/// before a request to another origin, which is still served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_origin_does_not_stall_the_reading_of_others() {
    let (a, b) = (mock().await, mock().await);
    let (ma, mb) = (a.url(), b.url());
    let mut input = vec![format!("{ma}/fail/1/p?status=429&retry_after=3")];
    input.extend((0..1500).map(|_| format!("{ma}/fast")));
    input.push(format!("{mb}/fast"));
    a.reset_stats();
    b.reset_stats();
    let out = Sluice::run(["-q", "-c", "1"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let paused_at = a.stats().arrivals[0].ms;
    let other = arrivals(&b, |_| true);
    assert_eq!(other.len(), 1);
    assert!(
        other[0] < paused_at + 2000.0,
        "the other origin waited for the pause: {:.0} ms after the 429",
        other[0] - paused_at
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Closing an origin drops its requests waiting to retry at once: the run
/// does not wait out their (long) backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_origin_drops_its_waiting_retries_at_once() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/fail/5/w?status=500&retry_after=30"),
        format!("{m}/status/401"),
        format!("{m}/status/401"),
    ]);
    let started = std::time::Instant::now();
    let out = Sluice::run(["-q", "-c", "1", "--halt-after", "2"])
        .stdin(input)
        .output()
        .await;
    out.code(3);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the run waited for a retry of a closed origin"
    );
    let recs = by_line(&out.results());
    assert!(
        !recs.contains_key(&1),
        "the waiting retry got no record: {recs:?}"
    );
    server.shutdown().await;
}
