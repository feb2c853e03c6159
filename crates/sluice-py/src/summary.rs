//! The summary Python sees, as JSON text (the `sluice.Summary` type reads
//! it): the same names as the CLI's `--summary-json`.

use std::time::Duration;

use serde_json::json;
use sluice::stats::Tally;

/// Extra facts a file job knows.
#[derive(Default)]
pub struct JobFacts {
    pub resumed: bool,
    pub not_written: u64,
    pub not_written_exact: bool,
    pub closed_origins: Vec<String>,
    pub stopped: Option<String>,
    pub interrupted: bool,
}

/// `all` counts every record of the output (earlier runs' too, after a
/// resume); `this_run` what this run wrote.
pub fn json(all: &Tally, this_run: &Tally, wall: Duration, facts: Option<&JobFacts>) -> String {
    let by_error: std::collections::BTreeMap<&str, u64> =
        all.by_kind.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    let wall_s = wall.as_secs_f64();
    let rate = if wall_s > 0.0 {
        this_run.records as f64 / wall_s
    } else {
        0.0
    };
    let empty = JobFacts::default();
    let f = facts.unwrap_or(&empty);
    json!({
        "records": all.records,
        "ok": all.ok,
        "failed": all.failed(),
        "sent_this_run": this_run.records,
        "resumed": f.resumed,
        "by_status": all.by_status,
        "by_error": by_error,
        "attempts": all.attempts,
        "retries": all.retries,
        "wall_seconds": wall_s,
        "requests_per_second": rate,
        "latency": all.latency(),
        "closed_origins": f.closed_origins,
        "not_written": f.not_written,
        "not_written_exact": f.not_written_exact,
        "stopped": f.stopped,
        "interrupted": f.interrupted,
    })
    .to_string()
}
