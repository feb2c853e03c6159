//! The retry budget: against the mock's `/outage`
//! endpoint (500 to everything for 5 s, then 200), attempts during the
//! outage stay within first attempts × 1.2 + 10/s × 5 s, counted at the
//! server, and every request ends ok after recovery; with `--retry-budget
//! off` the same run sends far more during the outage.

use crate::support::*;

const N: usize = 100;
const OUTAGE: f64 = 5.0;

/// Runs `N` requests to a fresh outage; returns the attempts that arrived
/// during it, all arrivals, and the summary JSON.
async fn run(budget: &str) -> (usize, usize, serde_json::Value, Out) {
    let server = mock().await;
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let summary_arg = summary.to_string_lossy().into_owned();
    let path = format!("/outage/{OUTAGE}/k");
    let url = format!("{}{path}", server.url());
    let out = Sluice::run([
        "-c",
        "50",
        "-q",
        "--retries",
        "100",
        "--backoff-max",
        "1s",
        "--retry-budget",
        budget,
        "--summary-json",
        &summary_arg,
    ])
    .stdin(lines(&vec![url; N]))
    .output()
    .await;
    let arrivals: Vec<f64> = server
        .stats()
        .arrivals
        .iter()
        .filter(|a| a.path == path)
        .map(|a| a.ms / 1000.0)
        .collect();
    let first = arrivals[0];
    let during = arrivals.iter().filter(|&&t| t - first < OUTAGE).count();
    let json = std::fs::read_to_string(&summary).expect("the summary was written");
    let json = serde_json::from_str(&json).expect("the summary is JSON");
    server.shutdown().await;
    (during, arrivals.len(), json, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_during_an_outage_stay_within_the_budget() {
    let (during, all, summary, out) = run("20%+10/s").await;
    out.code(0);
    let records = out.results();
    assert_eq!(records.len(), N);
    assert!(records.iter().all(|r| r.ok), "every request ends ok");
    let bound = N as f64 * 1.2 + 10.0 * OUTAGE;
    eprintln!("budget: {during} attempts during the outage (bound {bound}), {all} in all");
    assert!(
        during as f64 <= bound,
        "{during} attempts during the outage, bound {bound}"
    );
    let account = &summary["retry_budget"];
    assert!(
        account["retries_held"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
    assert!(
        account["waited_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_retries_multiply_the_load() {
    let (during, _, summary, out) = run("off").await;
    out.code(0);
    let bound = N as f64 * 1.2 + 10.0 * OUTAGE;
    eprintln!("off: {during} attempts during the outage (bound {bound})");
    assert!(during as f64 > bound, "{during} attempts during the outage");
    assert!(summary["retry_budget"].is_null(), "{summary}");
}
