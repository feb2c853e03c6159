//! `--adaptive` concurrency against the mock's capacity knee
//! (`/knee/{capacity}/{base_ms}`: latency `base × max(1, n / capacity)`,
//! 503 beyond `2 × capacity`): at `-c 200` the limit settles near the knee
//! with most of the best fixed `-c`'s throughput, counted at the server
//! (within ±30% and 90%: judged on a made-up clock, see below); without
//! `--adaptive`, `-c` is exact.

use crate::support::*;

/// The knee: chosen so that a loaded 2-core machine's lag in handling
/// each answer (up to ~15 ms) stays small beside the round trip.
const CAPACITY: usize = 20;
const BASE_MS: u64 = 100;
/// About 2.5 s at the knee's best throughput (`CAPACITY / BASE_MS`).
const N: usize = 500;

/// What one run did: the summary JSON, the arrivals' span, the server's
/// peak in flight and arrivals at the knee.
struct Run {
    summary: serde_json::Value,
    stderr: String,
    span: f64,
    peak: u64,
    arrivals: usize,
}

async fn run(args: &[&str]) -> Run {
    let server = mock().await;
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let summary_arg = summary.to_string_lossy().into_owned();
    let path = format!("/knee/{CAPACITY}/{BASE_MS}");
    let url = format!("{}{path}", server.url());
    let mut all = vec!["--progress", "never", "--summary-json", &summary_arg];
    all.extend(args);
    let out = Sluice::run(all).stdin(lines(&vec![url; N])).output().await;
    out.code(0);
    let records = out.results();
    assert_eq!(records.len(), N);
    assert!(records.iter().all(|r| r.ok));
    let stats = server.stats();
    let arrivals: Vec<f64> = (stats.arrivals.iter())
        .filter(|a| a.path == path)
        .map(|a| a.ms / 1000.0)
        .collect();
    let peak = stats.paths[&path].peak_in_flight;
    let json = std::fs::read_to_string(&summary).expect("the summary was written");
    server.shutdown().await;
    Run {
        summary: serde_json::from_str(&json).expect("the summary is JSON"),
        stderr: out.stderr.clone(),
        span: arrivals.last().copied().unwrap_or(0.0) - arrivals[0],
        peak,
        arrivals: arrivals.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_settles_near_the_knee_at_full_throughput() {
    // The best fixed -c: any -c from the capacity to twice it serves
    // CAPACITY per round trip (below it less, above it refusals); on a
    // loaded machine a little above the capacity, since the server sees
    // fewer in flight than sluice while answers wait to be handled.
    let mut best = f64::MAX;
    for c in [CAPACITY, CAPACITY * 3 / 2] {
        best = best.min(run(&["-c", &c.to_string()]).await.span);
    }
    let adaptive = run(&["-c", "200", "--adaptive"]).await;
    let account = &adaptive.summary["adaptive"];
    let limit = account["limit"].as_f64().expect("the limit");
    let mean = account["mean"].as_f64().expect("the mean");
    let share = best / adaptive.span;
    eprintln!(
        "best fixed {best:.2} s; adaptive {:.2} s ({share:.3}), {account}, peak {}, {} arrivals",
        adaptive.span, adaptive.peak, adaptive.arrivals
    );
    // The figures (within 30% of the knee, 90% of the best
    // throughput, few refusals) are judged on a made-up clock, where no
    // other work on the machine moves them: `scheduler/adaptive.rs`,
    // `at_a_capacity_knee_the_limit_settles_near_it_at_full_throughput`,
    // against knees of this shape (capacity 20 among them). Here, on the
    // real binary, they usually hold (limit 22-23, share 0.94-1.06, no
    // refusal), but the latency signal includes sluice's own lag in
    // handling answers: at load 13 on 2 cores, 3 runs in 5 missed one
    // (limit 29 or 32, share 0.78, 39 refused). So a smoke check against a
    // gross fault: the limit between a halving of the knee and the refusal
    // point, most of the throughput, refusals a small part of the run.
    let knee = CAPACITY as f64;
    assert!((knee * 0.5..=knee * 2.0).contains(&limit), "{account}");
    assert!(share >= 0.7, "{share:.3} of the best fixed -c's throughput");
    // The latency signal stops it before the refusals (503 beyond twice
    // the capacity): a few, each retried.
    let refused = adaptive.arrivals - N;
    assert!(
        refused <= N / 10,
        "{refused} refused, peak {}",
        adaptive.peak
    );
    assert!(mean > 1.0 && account["lowest"].as_u64() <= Some(CAPACITY as u64));
    // The summary says so, in text too.
    assert!(
        adaptive.stderr.contains("limit    concurrency "),
        "{}",
        adaptive.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_adaptive_the_concurrency_is_exact() {
    let fixed = run(&["-c", "30"]).await;
    assert_eq!(fixed.peak, 30);
    assert_eq!(fixed.arrivals, N);
    assert!(fixed.summary["adaptive"].is_null());
    assert!(!fixed.stderr.contains("limit    concurrency"));
}
