//! The summary Python sees, as JSON text (the `sluice.Summary` type reads
//! it): the same names as the CLI's `--summary-json`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::event::{Concurrency, Learned};
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
    /// The last word on each origin's learned limits.
    pub learned: LearnedLimits,
    /// Under `adaptive`: the concurrency limit's latest account.
    pub adaptive: Option<Concurrency>,
    /// Under a retry budget, once the run has ended: seconds retries
    /// waited for it, and how many waited.
    pub retry_budget: Option<(Duration, u64)>,
}

/// What was learned about each origin's limits, by origin (the last event).
pub type LearnedLimits = BTreeMap<String, Learned>;

/// Notes a `Learned` event (the newest says most).
pub fn note_learned(learned: &mut LearnedLimits, event: Learned) {
    learned.insert(event.origin.clone(), event);
}

/// `learned` as `--summary-json` writes it (docs/output.md).
fn learned_json(learned: &LearnedLimits) -> Value {
    learned
        .values()
        .map(|l| {
            json!({
                "origin": l.origin,
                "dialect": l.dialect,
                "requests_per_second": l.requests_per_second,
                "burst": l.burst,
                "tokens": l.tokens.iter().map(|t| json!({
                    "dimension": t.dimension,
                    "per_second": t.per_second,
                    "burst": t.burst,
                })).collect::<Vec<_>>(),
                "paced_seconds": l.paced.as_secs_f64(),
                "refused": l.refused,
            })
        })
        .collect()
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
        "learned": learned_json(&f.learned),
        "adaptive": f.adaptive.as_ref().map(|c| json!({
            "limit": c.limit,
            "lowest": c.lowest,
            "highest": c.highest,
            "mean": c.mean,
            "decreases": c.decreases,
        })),
        "retry_budget": f.retry_budget.map(|(waited, held)| json!({
            "waited_seconds": waited.as_secs_f64(),
            "retries_held": held,
        })),
    })
    .to_string()
}
