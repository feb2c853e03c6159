//! `/knee/{capacity}/{base_ms}`: a server with a capacity knee (adaptive
//! concurrency's test). Each request takes `base_ms × max(1, in flight /
//! capacity)` (in flight counted across the endpoint, this one included),
//! and beyond `2 × capacity` in flight it answers 503 at once: past the
//! knee more concurrency only adds latency, then refusals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::body::MockBody;

/// Requests in flight at the knee endpoint.
#[derive(Debug, Default)]
pub(crate) struct Knee(AtomicUsize);

/// Decrements the in-flight count however the request ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Knee {
    /// Answers one request to `/knee/{rest}`.
    pub(crate) async fn answer(&self, rest: &str) -> Response<MockBody> {
        let parsed = rest.split_once('/').and_then(|(c, ms)| {
            let capacity = c
                .parse::<usize>()
                .ok()
                .filter(|c| (1..=100_000).contains(c))?;
            let base = ms
                .parse::<f64>()
                .ok()
                .filter(|b| b.is_finite() && (0.0..=60_000.0).contains(b))?;
            Some((capacity, base))
        });
        let Some((capacity, base_ms)) = parsed else {
            return crate::handler::json_answer(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "use /knee/{capacity}/{base_ms}, capacity 1 to 100000" }),
            );
        };
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(&self.0);
        if n > 2 * capacity {
            return crate::handler::json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "overloaded", "in_flight": n }),
            );
        }
        let factor = (n as f64 / capacity as f64).max(1.0);
        tokio::time::sleep(Duration::from_secs_f64(base_ms * factor / 1000.0)).await;
        crate::handler::json_answer(StatusCode::OK, &json!({ "ok": true, "in_flight": n }))
    }
}
