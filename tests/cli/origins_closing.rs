//! A 429/503 pauses its whole origin (and only it); an origin that refuses
//! everything is closed, not hammered.

use crate::support::arrivals::arrivals;
use crate::support::*;

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

/// --halt-after 3: three consecutive 401s close the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_after_closes_an_origin_that_refuses_everything() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&vec![format!("{m}/status/401"); 10]);
    let out = Sluice::run(["-c", "1", "--halt-after", "3"])
        .stdin(input)
        .output()
        .await;
    out.code(3);
    let recs = by_line(&out.results());
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    for r in recs.values() {
        assert_eq!((r.status, r.kind()), (Some(401), "http_status"), "{r}");
        assert_eq!(r.attempts, 1);
    }
    assert_eq!(server.stats().requests, 3);
    assert!(
        out.stderr.contains(&format!("closed {m}")),
        "{}",
        out.stderr
    );
    server.shutdown().await;
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
