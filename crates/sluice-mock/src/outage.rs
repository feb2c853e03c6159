//! `/outage/{secs}/{key}`: a server that is down for `secs` seconds from
//! the key's first request, answering every request 500, then recovers
//! (the retry budget's test: retries must not multiply the load on it).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::body::MockBody;

/// When each key's outage began.
#[derive(Debug, Default)]
pub(crate) struct Outages(Mutex<HashMap<String, Instant>>);

impl Outages {
    pub(crate) fn reset(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Answers one request to `/outage/{rest}`.
    pub(crate) fn answer(&self, rest: &str) -> Response<MockBody> {
        let parsed = rest.split_once('/').and_then(|(secs, key)| {
            let secs = secs
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)?;
            (!key.is_empty()).then_some((secs, key))
        });
        let Some((secs, key)) = parsed else {
            return crate::handler::json_answer(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "use /outage/{secs}/{key}, secs from 0 to 3600" }),
            );
        };
        let now = Instant::now();
        let began = *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_insert(now);
        if now.duration_since(began) < Duration::from_secs_f64(secs) {
            crate::handler::json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": "outage" }),
            )
        } else {
            crate::handler::json_answer(StatusCode::OK, &json!({ "ok": true }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_for_its_seconds_from_the_first_request_then_up() {
        let outages = Outages::default();
        assert_eq!(
            outages.answer("0.2/a").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            outages.answer("0.2/a").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Another key's outage starts with its own first request.
        assert_eq!(outages.answer("0/b").status(), StatusCode::OK);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(outages.answer("0.2/a").status(), StatusCode::OK);
        outages.reset();
        assert_eq!(
            outages.answer("0.2/a").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        for bad in ["x/a", "1", "-1/a", "5/", "4000/a"] {
            assert_eq!(
                outages.answer(bad).status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
