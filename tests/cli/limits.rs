//! Concurrency is exact, connections are pooled, `--ordered` keeps input order.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_in_flight_is_exactly_the_concurrency() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&vec![format!("{m}/delay/0.5"); 30]);
    let out = Sluice::run(["-c", "7"]).stdin(input).output().await;
    out.code(0);
    assert_eq!(by_line(&out.results()).len(), 30);
    let stats = server.stats();
    assert_eq!(stats.requests, 30);
    assert_eq!(stats.peak_in_flight, 7, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_pooled_and_reused() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&vec![format!("{m}/fast"); 2000]);
    let out = Sluice::run(["-c", "20", "-q"]).stdin(input).output().await;
    out.code(0);
    assert_eq!(by_line(&out.results()).len(), 2000);
    let stats = server.stats();
    assert_eq!(stats.requests, 2000);
    assert!(stats.peak_in_flight <= 20, "{stats:?}");
    eprintln!("2000 requests at -c 20: {} connections", stats.connections);
    assert!(
        (1..=30).contains(&stats.connections),
        "about c connections, not N: {}",
        stats.connections
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_concurrency_caps_each_origin() {
    let (a, b) = (mock().await, mock().await);
    let mut input = Vec::new();
    for _ in 0..10 {
        input.push(format!("{}/delay/0.3", a.url()));
        input.push(format!("{}/delay/0.3", b.url()));
    }
    let out = Sluice::run(["-c", "10", "--per-host-concurrency", "3"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    assert_eq!(by_line(&out.results()).len(), 20);
    for server in [&a, &b] {
        let stats = server.stats();
        assert_eq!(stats.requests, 10);
        assert_eq!(stats.peak_in_flight, 3, "{stats:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A request held back by its origin's limit holds no global slot: with
/// `-c 4 --per-host-concurrency 3`, a busy origin A leaves one slot that
/// origin B gets at once, not after A's queue has drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_origin_does_not_block_another() {
    let (a, b) = (mock().await, mock().await);
    let mut input = vec![format!("{}/delay/0.3", a.url()); 9];
    input.extend(vec![format!("{}/delay/0.3", b.url()); 3]);
    // One clock for both servers' arrival times.
    a.reset_stats();
    b.reset_stats();
    let out = Sluice::run(["-c", "4", "--per-host-concurrency", "3"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.requests, sb.requests), (9, 3));
    assert_eq!(sa.peak_in_flight, 3, "{sa:?}");
    // A's fourth request can only start after one of its first three ended
    // (300 ms later); B's first must not wait for that.
    let a_fourth = sa.arrivals[3].ms;
    let b_first = sb.arrivals[0].ms;
    assert!(
        b_first < a_fourth,
        "B's first request ({b_first} ms) waited for A's queue (A's 4th at {a_fourth} ms)"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_output_follows_input_order() {
    let server = mock().await;
    let m = server.url();
    let mut input = vec![format!("{m}/delay/0.4")];
    input.extend(vec![format!("{m}/fast"); 9]);
    // Records of bad lines take their place in the order too.
    input[4] = "{bad json".to_string();
    input[6] = format!(r#"{{"id":1,"url":"{m}/fast"}}"#);
    let input = lines(&input);

    // Without --ordered, completion order: the slow first line comes last.
    let out = Sluice::run(["-c", "10"])
        .stdin(input.clone())
        .output()
        .await;
    out.code(1);
    let order: Vec<u64> = out.results().iter().map(|r| r.line).collect();
    assert_eq!(order.len(), 10);
    assert_eq!(order.last(), Some(&1), "completion order: {order:?}");

    let out = Sluice::run(["-c", "10", "--ordered"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = out.results();
    let order: Vec<u64> = recs.iter().map(|r| r.line).collect();
    assert_eq!(order, (1..=10).collect::<Vec<_>>());
    assert_eq!(kind(&recs[4]), "invalid_request");
    assert_eq!(kind(&recs[6]), "duplicate_id");
    assert_eq!(server.stats().requests, 16);
    server.shutdown().await;
}

/// `--reorder-window 2`: while line 1 has no record, nothing beyond line 3
/// starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_window_bounds_how_far_requests_run_ahead() {
    let server = mock().await;
    let m = server.url();
    let mut input = vec![format!("{m}/delay/0.4")];
    input.extend(vec![format!("{m}/fast"); 10]);
    let out = Sluice::run(["-c", "10", "--ordered", "--reorder-window", "2"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let order: Vec<u64> = out.results().iter().map(|r| r.line).collect();
    assert_eq!(order, (1..=11).collect::<Vec<_>>());
    let stats = server.stats();
    assert_eq!(stats.requests, 11);
    let slow = stats
        .arrivals
        .iter()
        .find(|a| a.path == "/delay/0.4")
        .unwrap()
        .ms;
    // Line 1's response cannot be complete before the server's 400 ms sleep.
    let early = stats
        .arrivals
        .iter()
        .filter(|a| a.path == "/fast" && a.ms < slow + 400.0)
        .count();
    assert!(
        early <= 2,
        "{early} requests ran ahead of line 1 (window 2)"
    );
    server.shutdown().await;
}

/// A request waiting to retry holds no concurrency slot: while line 1 waits
/// out its one-second Retry-After, the other slot of `-c 2` keeps working
/// next to line 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_to_retry_holds_no_slot() {
    let server = mock().await;
    let m = server.url();
    let mut input = vec![format!("{m}/fail/1/w?status=500&retry_after=1")];
    input.extend(vec![format!("{m}/delay/0.2"); 4]);
    let out = Sluice::run(["-c", "2", "--retries", "1"])
        .stdin(lines(&input))
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(recs[&1].attempts, 2);
    let stats = server.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.peak_in_flight, 2, "{stats:?}");
    assert_eq!(stats.paths["/delay/0.2"].peak_in_flight, 2, "{stats:?}");
    server.shutdown().await;
}
