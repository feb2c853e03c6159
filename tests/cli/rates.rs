//! Rates and budgets are exact: never more than rate × window + burst
//! attempt starts in any window (read from the server's arrival times). That
//! upper bound is the contract and no slowness can break it, so it is checked
//! exactly. That a run reaches its rate (within 1%, with late timers) is
//! checked on a made-up clock in `crates/sluice/src/scheduler/tests.rs`; here
//! only a smoke check of it, loose enough for a loaded 2-core machine.

use serde_json::json;

use crate::support::arrivals::{achieved_rate, arrivals, max_in_window, sent_ms};
use crate::support::*;

/// At 100/s with burst 1: at most 101 starts in any 1 s window, and over the
/// run at least 60/s.
///
/// The lower bound is a smoke check: it catches a gross bug such as a halved
/// rate (every start charged twice, or a period doubled: at most 50/s, which
/// no speed of the machine can raise), and leaves room for a driver whose
/// every wake-up is ~9 ms late (timer lateness up to 3 ms costs no rate).
///
/// `sent` are sluice's own send instants (each record's `started_at`, to the
/// millisecond), shown beside the server's count: should the bound ever be
/// exceeded, they tell whether sluice sent too many or the server, stalled
/// on a loaded machine, stamped arrivals late and bunched them.
fn assert_paced_at_100(what: &str, sorted: &[f64], sent: &[f64]) {
    let most = max_in_window(sorted, 1000.0);
    let achieved = achieved_rate(sorted);
    // Windows of 1001 ms: a send stamped to the millisecond may be up to
    // 1 ms early or late.
    let most_sent = max_in_window(sent, 1001.0);
    eprintln!(
        "{what}: {} arrivals, at most {most} in 1 s, {achieved:.1}/s overall; \
         sluice's sends: at most {most_sent} in 1 s (±1 ms)",
        sorted.len()
    );
    assert!(
        most <= 101,
        "{what}: {most} starts in one second at 100/s, burst 1 \
         (sluice's own sends, to the millisecond: at most {most_sent} in 1 s)"
    );
    assert!(
        achieved >= 60.0,
        "{what}: only {achieved:.1}/s achieved at 100/s"
    );
}

/// `n` × /fast under --rate `rate`; the sorted arrival times, and sluice's
/// send instants.
async fn global_rate_run(rate: u32, n: usize) -> (Vec<f64>, Vec<f64>) {
    let server = mock().await;
    let input = lines(&vec![format!("{}/fast", server.url()); n]);
    let rate_arg = format!("{rate}/s");
    let out = Sluice::run(["-q", "-c", "16", "--rate", rate_arg.as_str()])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    let results = out.results();
    assert_eq!(by_line(&results).len(), n);
    let at = arrivals(&server, |_| true);
    assert_eq!(at.len(), n);
    let sent = sent_ms(&results, &server.url());
    server.shutdown().await;
    (at, sent)
}

/// `n` × /fast to each of two origins under --per-host-rate `rate`; the
/// sorted arrival times at each (the mocks reset together share a clock),
/// and sluice's send instants to each.
async fn per_host_rate_run(rate: u32, n: usize) -> [(Vec<f64>, Vec<f64>); 2] {
    let (a, b) = (mock().await, mock().await);
    let mut input = Vec::new();
    for _ in 0..n {
        input.push(format!("{}/fast", a.url()));
        input.push(format!("{}/fast", b.url()));
    }
    a.reset_stats();
    b.reset_stats();
    let rate_arg = format!("{rate}/s");
    let out = Sluice::run(["-q", "-c", "16", "--per-host-rate", rate_arg.as_str()])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let results = out.results();
    assert_eq!(by_line(&results).len(), 2 * n);
    let (at_a, at_b) = (arrivals(&a, |_| true), arrivals(&b, |_| true));
    assert_eq!((at_a.len(), at_b.len()), (n, n));
    let (sent_a, sent_b) = (sent_ms(&results, &a.url()), sent_ms(&results, &b.url()));
    a.shutdown().await;
    b.shutdown().await;
    [(at_a, sent_a), (at_b, sent_b)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_is_never_exceeded_and_paced() {
    let (at, sent) = global_rate_run(100, 200).await;
    assert_paced_at_100("--rate 100/s", &at, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_rate_limits_each_origin_separately() {
    let [(at_a, sent_a), (at_b, sent_b)] = per_host_rate_run(100, 200).await;
    assert_paced_at_100("origin A at --per-host-rate 100/s", &at_a, &sent_a);
    assert_paced_at_100("origin B at --per-host-rate 100/s", &at_b, &sent_b);
    // The limit is per origin: together they exceed what one origin may.
    let mut both = [at_a, at_b].concat();
    both.sort_by(f64::total_cmp);
    let most = max_in_window(&both, 1000.0);
    assert!(
        most > 101,
        "two origins together: at most {most} starts in 1 s"
    );
}

/// --budget 6000/m (100 units a second) with --budget-burst 600 and requests
/// of cost 100: six start at once, then one a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_spends_each_request_cost() {
    let server = mock().await;
    let url = format!("{}/fast", server.url());
    let input: Vec<String> = (0..8)
        .map(|_| json_line(json!({"url": url, "cost": 100})))
        .collect();
    let out = Sluice::run([
        "-q",
        "-c",
        "10",
        "--budget",
        "6000/m",
        "--budget-burst",
        "600",
    ])
    .stdin(lines(&input))
    .output()
    .await;
    out.code(0);
    assert_eq!(by_line(&out.results()).len(), 8);
    let at = arrivals(&server, |_| true);
    assert_eq!(at.len(), 8);
    let t0 = at[0];
    // Six fit the burst: without it, the sixth would come 5 s after the first.
    assert!(at[5] - t0 < 1000.0, "the first six start together: {at:?}");
    // Small tolerance: arrival times carry the loopback latency of each start.
    assert!(at[6] - t0 >= 1000.0 - 50.0, "7th too early: {at:?}");
    assert!(at[7] - t0 >= 2000.0 - 50.0, "8th too early: {at:?}");
    server.shutdown().await;
}

/// A cost above the budget's burst could never be sent: `invalid_request`
/// at once (the burst defaults to one unit of the rate as written: 600).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_above_the_budget_burst_is_an_invalid_request() {
    let server = mock().await;
    let url = format!("{}/fast", server.url());
    let input = lines(&[
        json_line(json!({"url": url, "cost": 700})),
        json_line(json!({"url": url, "cost": 600})),
    ]);
    let out = Sluice::run(["-q", "--budget", "600/m"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 2);
    let bad = &recs[&1];
    assert_eq!(kind(bad), "invalid_request", "{bad}");
    assert_eq!(bad.attempts, 0);
    assert!(bad.message().contains("700"), "{bad}");
    assert!(recs[&2].ok, "a cost equal to the burst is fine");
    assert_eq!(server.stats().requests, 1);
    server.shutdown().await;
}

/// First come, first served on the budget: a cheap request behind an
/// expensive one that waits for budget does not overtake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_request_does_not_overtake_an_expensive_one() {
    let server = mock().await;
    let url = |path: &str| format!("{}{path}", server.url());
    // Budget 100 a second, burst 100: the first spends it all, the second
    // (cost 100) waits about a second, and the third (cost 1) must wait
    // behind it although it would fit sooner.
    let input = lines(&[
        json_line(json!({"url": url("/fast"), "cost": 100})),
        json_line(json!({"url": url("/echo"), "cost": 100})),
        json_line(json!({"url": url("/status/200"), "cost": 1})),
    ]);
    let out = Sluice::run([
        "-q",
        "-c",
        "10",
        "--budget",
        "6000/m",
        "--budget-burst",
        "100",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(0);
    let expensive = arrivals(&server, |p| p == "/echo");
    let cheap = arrivals(&server, |p| p == "/status/200");
    let first = arrivals(&server, |p| p == "/fast");
    assert_eq!((first.len(), expensive.len(), cheap.len()), (1, 1, 1));
    assert!(
        expensive[0] - first[0] >= 950.0,
        "the second waited for budget: {expensive:?}"
    );
    assert!(
        cheap[0] >= expensive[0],
        "the cheap request overtook: {cheap:?} < {expensive:?}"
    );
    server.shutdown().await;
}

/// `--rate 20/s` with the default burst of 1: 11 starts need at least half
/// a second (a lower bound, so no tolerance is needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_spaces_attempt_starts() {
    let server = mock().await;
    let input = lines(&vec![format!("{}/fast", server.url()); 11]);
    let started = std::time::Instant::now();
    let out = Sluice::run(["-c", "11", "--rate", "20/s"])
        .stdin(input)
        .output()
        .await;
    let elapsed = started.elapsed();
    out.code(0);
    assert_eq!(out.results().len(), 11);
    assert!(
        elapsed.as_millis() >= 500,
        "11 starts at 20/s in {elapsed:?}"
    );
    assert_eq!(server.stats().requests, 11);
    server.shutdown().await;
}
