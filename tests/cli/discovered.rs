//! Limits discovered where no header tells them: the
//! mock's `/limited/leaky/none` endpoint refuses like nginx's
//! `limit_req rate=50r/s burst=10` (a meter of 10 draining 50 a second, no
//! rate-limit headers). Nothing configured but `-c 15`: 1,000 requests
//! finish within 15% of the ideal with at most 5% refused, counted at the
//! server, with and without `Retry-After: 1` on the 429s.
//!
//! The rate is the issue's own measurement (50/s, ideal 20 s): each 429
//! pauses the whole origin for its `Retry-After` (as it always has), so the
//! ideal must be long beside a second for 15% to be reachable at all.
//!
//! The 15% is judged where no other work on the machine can move it: the
//! scheduler's simulation of this very case on a made-up clock
//! (`crates/sluice/src/scheduler/discovered_tests.rs`: within 12% on a quick
//! server, 27% with 15 ms delays each way and timers 8 ms late). Here, on
//! the real binary and the real mock, the counts are exact (every request
//! answered ok, at most 5% refused at the server) and the makespan is a
//! smoke check against a gross loss ([`SLACK`]): with `Retry-After: 1`,
//! two pauses of a second are unavoidable, which left this test under a
//! second of room at 15%, and a loaded machine (load 6 on 2 cores: 22.7 s
//! against the 22.8 s bound) took it.

use crate::support::*;

const N: usize = 1000;
/// The meter's size: nginx's `burst`.
const BURST: u64 = 10;
/// The meter drains `BURST` per this many seconds: 50 a second.
const WINDOW: f64 = 0.2;
/// The makespan's bound over the ideal here: a pace a quarter slow (or a
/// fifth of the run spent in pauses) fails it; a loaded machine's seconds
/// do not (the worst seen at load 11-13 on 2 cores: 1.17 of the ideal).
const SLACK: f64 = 1.3;

async fn case(key: &str, retry_after: bool) {
    let server = mock().await;
    let query = format!(
        "limit={BURST}&window={WINDOW}&retry_after={}",
        u8::from(retry_after)
    );
    let path = format!("/limited/leaky/none/{key}");
    let url = format!("{}{path}?{query}", server.url());
    let out = Sluice::run(["-c", "15", "-q", "--retries", "1"])
        .stdin(lines(&vec![url; N]))
        .output()
        .await;
    out.code(0);
    let records = out.results();
    assert_eq!(records.len(), N);
    assert!(records.iter().all(|r| r.ok));
    let stats = server.stats();
    let arrivals: Vec<f64> = stats
        .arrivals
        .iter()
        .filter(|a| a.path == path)
        .map(|a| a.ms / 1000.0)
        .collect();
    let makespan = arrivals.last().copied().unwrap_or(0.0) - arrivals[0];
    let refused = stats.limited.get(key).map_or(0, |l| l.refused);
    let rate = BURST as f64 / WINDOW;
    let ideal = (N as f64 - BURST as f64) / rate;
    eprintln!("{key}: {makespan:.2} s (ideal {ideal:.2} s), {refused} refused");
    assert!(
        makespan <= ideal * SLACK,
        "{key}: {makespan:.2} s, ideal {ideal:.2} s, {refused} refused"
    );
    assert!(refused <= N as u64 / 20, "{key}: {refused} refused");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headerless_limit_with_retry_after() {
    // The goal is 15% (judged in the scheduler's simulation); two
    // one-second pauses cannot be avoided with `Retry-After: 1` (the first
    // refusal, and the one that ends slow start: 10% of this batch); slow
    // start ends at the rate its climb proves (replayed through a meter like
    // the server's), so no third refusal.
    case("nginx-retry-after", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headerless_limit_without_retry_after() {
    case("nginx-backoff", false).await;
}

/// Refusals no rate avoids: every tenth line asks `/fail` for a 429 (no
/// `Retry-After`, no rate-limit header) at each of its 2 attempts
/// (`--retries 1`), the others go to `/fast`. Before the key-bound rule
/// every such refusal lowered the discovered rate, which sat at its floor
/// of one request a second: the 180 others took 130 s. Now lowering is
/// seen not to pay and the rate climbs back; what is left is the pause
/// each 429 still costs its origin (the backoff): 17 s on a quiet machine.
/// Counted at the server: each refused line exactly twice, each other
/// line once; the makespan is a smoke check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_bound_to_lines_do_not_slow_the_others() {
    const LINES: usize = 200;
    let server = mock().await;
    let m = server.url();
    let input: Vec<String> = (1..=LINES)
        .map(|i| match i % 10 {
            0 => format!("{m}/fail/100/line{i}?status=429"),
            _ => format!("{m}/fast"),
        })
        .collect();
    let out = Sluice::run(["-c", "15", "-q", "--retries", "1"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(1);
    let records = out.results();
    assert_eq!(records.len(), LINES);
    assert_eq!(records.iter().filter(|r| r.ok).count(), LINES - LINES / 10);
    assert_eq!(path_requests(&server, "/fast"), (LINES - LINES / 10) as u64);
    for i in (10..=LINES).step_by(10) {
        assert_eq!(
            path_requests(&server, &format!("/fail/100/line{i}")),
            2,
            "line {i}"
        );
    }
    let fast = crate::support::arrivals::arrivals(&server, |p| p == "/fast");
    let (first, last) = (fast.first().copied(), fast.last().copied());
    let makespan = (last.unwrap_or(0.0) - first.unwrap_or(0.0)) / 1000.0;
    eprintln!("the {} others in {makespan:.2} s", fast.len());
    // At the floor's one a second they took 130 s.
    assert!(makespan < 60.0, "{makespan:.2} s");
    server.shutdown().await;
}
