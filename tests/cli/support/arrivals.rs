//! The server's arrival times, read as the tests read rates: sorted times,
//! the most arrivals in any window, the rate reached; and sluice's own send
//! instants beside them, to tell an over-rate client from a server that
//! stamped arrivals late.

use sluice_mock::MockServer;

use super::records::Record;

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

/// Sorted send instants of the records whose URL starts with `url`, in ms
/// (comparable within a run), from their `started_at`
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`); a run crossing midnight only shifts the
/// instants after it by more than a day, which no 1 s window sees twice.
pub fn sent_ms(records: &[Record], url: &str) -> Vec<f64> {
    let mut ms: Vec<f64> = records
        .iter()
        .filter(|r| r.json["url"].as_str().is_some_and(|u| u.starts_with(url)))
        .map(|r| {
            let at = r.json["started_at"].as_str().expect("a started_at");
            let (day, time) = at.split_once('T').expect("an RFC 3339 instant");
            let day: f64 = day.replace('-', "").parse().expect("a date");
            let field = |range: std::ops::Range<usize>| -> f64 {
                time[range].parse().expect("a time field")
            };
            day * 86_400_000.0
                + field(0..2) * 3_600_000.0
                + field(3..5) * 60_000.0
                + field(6..8) * 1000.0
                + field(9..12)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}
