//! Retry policy: what may be retried (`--retry-on`, idempotency), how long to
//! wait (full-jitter backoff, `Retry-After`), all as pure functions so they
//! can be tested exactly.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName};

use crate::record::ErrorKind;
use crate::request::is_idempotent;

/// The whole retry policy: statuses, status ranges and failure kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOn {
    ranges: Vec<(u16, u16)>,
    kinds: Vec<ErrorKind>,
}

impl Default for RetryOn {
    /// `408,429,500,502,503,504,529,timeout,connect,dns,reset`.
    fn default() -> RetryOn {
        RetryOn::parse("408,429,500,502,503,504,529,timeout,connect,dns,reset")
            .expect("the default policy parses")
    }
}

/// The failure kinds a policy may list; the others (`tls`, `protocol`,
/// `body_too_large`, ...) would fail the same way again.
pub const RETRYABLE_KINDS: [ErrorKind; 4] = [
    ErrorKind::Timeout,
    ErrorKind::Connect,
    ErrorKind::Dns,
    ErrorKind::Reset,
];

/// An item of a retry policy that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryOnError {
    /// Neither a status, a range nor a retryable kind.
    #[error(
        "`{item}` is not a status (100-599), a range such as 500-599, or one of {} \
         (tls, protocol and body_too_large are never retried)",
        RETRYABLE_KINDS.map(ErrorKind::as_str).join(", ")
    )]
    Item {
        /// The item as written.
        item: String,
    },
    /// A range whose start is above its end.
    #[error("range `{item}` is backwards")]
    Backwards {
        /// The item as written.
        item: String,
    },
}

impl RetryOn {
    /// Parses a comma-separated list of statuses (`503`), ranges (`500-599`)
    /// and kinds (`timeout`, `connect`, `dns`, `reset`). An empty list means
    /// nothing is retried.
    ///
    /// # Errors
    ///
    /// When an item is neither a status, a range of statuses, nor a known error kind.
    pub fn parse(text: &str) -> Result<RetryOn, RetryOnError> {
        let mut policy = RetryOn {
            ranges: Vec::new(),
            kinds: Vec::new(),
        };
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            policy.add(item)?;
        }
        Ok(policy)
    }

    fn add(&mut self, item: &str) -> Result<(), RetryOnError> {
        let kind = item.parse::<ErrorKind>().ok();
        if let Some(kind) = kind.filter(|k| RETRYABLE_KINDS.contains(k)) {
            self.kinds.push(kind);
            return Ok(());
        }
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let status = |s: &str| match s.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(RetryOnError::Item {
                item: item.to_string(),
            }),
        };
        let (lo, hi) = (status(lo)?, status(hi)?);
        if lo > hi {
            return Err(RetryOnError::Backwards {
                item: item.to_string(),
            });
        }
        self.ranges.push((lo, hi));
        Ok(())
    }

    /// True when the policy lists this status.
    pub fn status(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| lo <= status && status <= hi)
    }

    /// True when the policy lists this failure kind. `tls`, `protocol` and
    /// `body_too_large` never are.
    pub fn kind(&self, kind: ErrorKind) -> bool {
        self.kinds.contains(&kind)
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        parts.extend(self.kinds.iter().map(|k| k.as_str().to_string()));
        f.write_str(&parts.join(","))
    }
}

/// What one attempt ended with, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A complete response with this status.
    Status(u16),
    /// No usable response.
    Error {
        /// What went wrong.
        kind: ErrorKind,
        /// Whether the request may have reached the server.
        sent: bool,
    },
}

/// True when the server has said (or the failure shows) that it did not act
/// on the request, so even a POST may be sent again.
pub fn server_did_not_act(failure: Failure) -> bool {
    match failure {
        Failure::Status(s) => matches!(s, 408 | 429 | 503 | 529),
        Failure::Error { kind, sent } => {
            !sent || matches!(kind, ErrorKind::Connect | ErrorKind::Dns)
        }
    }
}

/// The header that makes a non-idempotent request safe to repeat. A name
/// made once: a `&str` key is parsed as a header name at each lookup,
/// even in an empty map (about 450 instructions a POST).
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Whether the method (and headers) make any retry safe.
pub fn safe_to_repeat(method: &Method, headers: &HeaderMap, retry_non_idempotent: bool) -> bool {
    retry_non_idempotent || is_idempotent(method) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// True when the policy allows another attempt after this failure (not
/// counting the retry limit).
pub fn wants_retry(policy: &RetryOn, failure: Failure, safe: bool) -> bool {
    let listed = match failure {
        Failure::Status(s) => policy.status(s),
        Failure::Error { kind, .. } => policy.kind(kind),
    };
    listed && (safe || server_did_not_act(failure))
}

/// True when a non-idempotent request's failure leaves its effect unknown:
/// written, then a timeout, reset, truncation, or a 5xx other than 503 and 529.
pub fn maybe_applied(method: &Method, failure: Failure) -> bool {
    if is_idempotent(method) {
        return false;
    }
    match failure {
        Failure::Status(s) => (500..=599).contains(&s) && s != 503 && s != 529,
        Failure::Error { kind, sent } => {
            sent && matches!(
                kind,
                ErrorKind::Timeout | ErrorKind::Reset | ErrorKind::Protocol
            )
        }
    }
}

/// The ceiling of the full-jitter backoff before attempt `retry` (1-based):
/// `min(max, initial * 2^(retry-1))`.
pub fn backoff_ceiling(initial: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(31));
    initial.saturating_mul(factor).min(max)
}

/// A full-jitter backoff: uniform in `[0, ceiling]`, drawn from `rng` (the
/// caller's seeded generator, so a run can be replayed exactly).
pub fn backoff(initial: Duration, max: Duration, retry: u32, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = backoff_ceiling(initial, max, retry);
    ceiling.mul_f64(rng.f64())
}

/// The wait a response asks for: `retry-after-ms`, else `Retry-After` as
/// delay-seconds or an HTTP date (measured against the response's `Date`
/// when it has one, so clock skew does not matter). Malformed values are
/// ignored, as RFC 9110 asks; a date in the past means no wait.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(parse_millis) {
        return Some(ms);
    }
    let value = header_str(headers, "retry-after")?;
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        let secs: u64 = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs.min(u64::MAX / 4)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let server_now = header_str(headers, "date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or(now);
    Some(when.duration_since(server_now).unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn parse_millis(text: &str) -> Option<Duration> {
    let ms: f64 = text.parse().ok()?;
    if !ms.is_finite() || ms < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64((ms / 1000.0).min(1e12)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn policy_parses_statuses_ranges_and_kinds() {
        let p = RetryOn::parse("429,500-504,timeout").unwrap();
        assert!(p.status(429) && p.status(502) && !p.status(505) && !p.status(404));
        assert!(p.kind(ErrorKind::Timeout) && !p.kind(ErrorKind::Reset));
        assert!(RetryOn::parse("tls").is_err());
        assert!(RetryOn::parse("600").is_err());
        assert!(RetryOn::parse("504-500").is_err());
        let d = RetryOn::default();
        assert_eq!(
            d.to_string(),
            "408,429,500,502,503,504,529,timeout,connect,dns,reset"
        );
        assert!(!RetryOn::parse("").unwrap().status(503));
    }

    #[test]
    fn idempotency_table() {
        let p = RetryOn::default();
        let post_unsafe = false;
        // The server said it did not act: a POST may be retried.
        for s in [408, 429, 503, 529] {
            assert!(wants_retry(&p, Failure::Status(s), post_unsafe), "{s}");
        }
        // It may have acted: not without a key.
        assert!(!wants_retry(&p, Failure::Status(500), post_unsafe));
        let reset = Failure::Error {
            kind: ErrorKind::Reset,
            sent: true,
        };
        assert!(!wants_retry(&p, reset, post_unsafe));
        assert!(wants_retry(&p, reset, true));
        let refused = Failure::Error {
            kind: ErrorKind::Connect,
            sent: false,
        };
        assert!(wants_retry(&p, refused, post_unsafe));
        // Never on what the policy does not list, nor on tls/protocol.
        assert!(!wants_retry(&p, Failure::Status(404), true));
        let tls = Failure::Error {
            kind: ErrorKind::Tls,
            sent: false,
        };
        assert!(!wants_retry(&p, tls, true));
    }

    #[test]
    fn maybe_applied_cases() {
        assert!(maybe_applied(&Method::POST, Failure::Status(500)));
        assert!(!maybe_applied(&Method::POST, Failure::Status(503)));
        assert!(!maybe_applied(&Method::POST, Failure::Status(529)));
        assert!(!maybe_applied(&Method::GET, Failure::Status(500)));
        let t = Failure::Error {
            kind: ErrorKind::Timeout,
            sent: true,
        };
        assert!(maybe_applied(&Method::PATCH, t));
        let c = Failure::Error {
            kind: ErrorKind::Connect,
            sent: false,
        };
        assert!(!maybe_applied(&Method::POST, c));
    }

    #[test]
    fn backoff_is_capped_exponential() {
        let (i, m) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff_ceiling(i, m, 1), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(i, m, 2), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(i, m, 4), Duration::from_secs(4));
        assert_eq!(backoff_ceiling(i, m, 10), m);
        assert_eq!(backoff_ceiling(i, m, u32::MAX), m);
        let mut rng = fastrand::Rng::with_seed(1);
        for retry in 1..20 {
            assert!(backoff(i, m, retry, &mut rng) <= backoff_ceiling(i, m, retry));
        }
        // The same seed, the same waits.
        let waits = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (1..6)
                .map(|r| backoff(i, m, r, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(9), waits(9));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "1"), ("retry-after-ms", "250")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let date = headers(&[
            ("retry-after", "Sun, 06 Nov 1994 08:49:40 GMT"),
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(3)));
        let rfc850 = headers(&[
            ("retry-after", "Sunday, 06-Nov-94 08:49:40 GMT"),
            ("date", "Sun, 06 Nov 1994 08:49:38 GMT"),
        ]);
        assert_eq!(retry_after(&rfc850, now), Some(Duration::from_secs(2)));
        let past = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        for bad in ["-5", "1.5", "soon", ""] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", bad)]), now),
                None,
                "{bad}"
            );
        }
        let huge = retry_after(&headers(&[("retry-after", "99999999999999999999999")]), now);
        assert!(huge.unwrap() > Duration::from_secs(86_400 * 365));
    }
}
