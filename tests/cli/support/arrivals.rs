//! The server's arrival times, read as the tests read rates: sorted times,
//! the most arrivals in any window, the rate reached.

use sluice_mock::MockServer;

/// Sorted arrival times (ms since the last reset) of paths that `keep` accepts.
pub fn arrivals(server: &MockServer, keep: impl Fn(&str) -> bool) -> Vec<f64> {
    let mut ms: Vec<f64> = server
        .stats()
        .arrivals
        .into_iter()
        .filter(|a| keep(&a.path))
        .map(|a| a.ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The largest number of arrivals in any window `[t, t + window_ms)`.
pub fn max_in_window(sorted: &[f64], window_ms: f64) -> usize {
    let mut end = 0;
    let mut best = 0;
    for (start, &t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < t + window_ms {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// Arrivals per second from the first to the last arrival.
pub fn achieved_rate(sorted: &[f64]) -> f64 {
    let span = sorted.last().expect("arrivals") - sorted.first().expect("arrivals");
    (sorted.len() - 1) as f64 / (span / 1000.0)
}
