//! `/limited/{algorithm}/{dialect}/{key}`: a server-side rate limit per
//! key that says where the client stands in one of the rate-limit header
//! dialects real APIs use, so a client that paces by them can be checked.
//!
//! Times in the headers are given in the frame of the response's own `Date`
//! header (which the mock writes itself, to the second): an absolute reset
//! is `Date` plus the exact time left, so a client that measures resets
//! against `Date`, as it should, reads the exact time left. Relative resets
//! are exact where the dialect allows fractions (OpenAI's durations) and
//! rounded up to whole seconds where it does not (the IETF forms).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::body::MockBody;
use crate::util::query_param;

/// How a key's limit is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    /// `limit` tokens, refilled continuously at `limit` per `window`.
    Bucket,
    /// A meter that fills by one per request and leaks `limit` per
    /// `window`; a request that would overflow `limit` is refused.
    Leaky,
    /// `limit` requests per window; windows start at multiples of `window`
    /// on the Unix clock.
    Fixed,
}

/// Which headers describe the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
    GitHub,
    Ietf,
    IetfLegacy,
    None,
}

/// Admissions and refusals of one key (`limited` in `/stats`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitedStats {
    /// Requests admitted (answered 200).
    pub admitted: u64,
    /// Requests refused (answered 429).
    pub refused: u64,
}

#[derive(Debug)]
struct Limiter {
    algorithm: Algorithm,
    limit: f64,
    window: f64,
    /// Bucket: tokens; leaky: the meter's level; fixed: requests counted in
    /// the current window.
    level: f64,
    last: Instant,
    /// Fixed: the current window's index on the Unix clock.
    index: u64,
    stats: LimitedStats,
}

/// Where a key stands after one request.
struct Standing {
    admitted: bool,
    limit: u64,
    remaining: u64,
    /// Until the quota is whole again (bucket, leaky) or the window ends.
    reset: Duration,
    /// Until one more request would be admitted.
    next: Duration,
    window: f64,
}

impl Limiter {
    fn new(algorithm: Algorithm, limit: f64, window: f64, now: Instant) -> Limiter {
        let level = match algorithm {
            Algorithm::Bucket => limit,
            Algorithm::Leaky | Algorithm::Fixed => 0.0,
        };
        Limiter {
            algorithm,
            limit,
            window,
            level,
            last: now,
            index: 0,
            stats: LimitedStats::default(),
        }
    }

    fn take(&mut self, now: Instant, wall: f64) -> Standing {
        let rate = self.limit / self.window;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let (admitted, remaining, reset, next);
        match self.algorithm {
            Algorithm::Bucket => {
                self.level = (self.level + elapsed * rate).min(self.limit);
                admitted = self.level >= 1.0;
                if admitted {
                    self.level -= 1.0;
                }
                remaining = self.level.floor();
                reset = (self.limit - self.level) / rate;
                next = ((1.0 - self.level).max(0.0)) / rate;
            }
            Algorithm::Leaky => {
                self.level = (self.level - elapsed * rate).max(0.0);
                admitted = self.level + 1.0 <= self.limit;
                if admitted {
                    self.level += 1.0;
                }
                remaining = (self.limit - self.level).floor();
                reset = self.level / rate;
                next = ((self.level + 1.0 - self.limit).max(0.0)) / rate;
            }
            Algorithm::Fixed => {
                let index = (wall / self.window).floor() as u64;
                if index != self.index {
                    self.index = index;
                    self.level = 0.0;
                }
                admitted = self.level + 1.0 <= self.limit;
                if admitted {
                    self.level += 1.0;
                }
                remaining = self.limit - self.level;
                reset = (index + 1) as f64 * self.window - wall;
                next = if remaining >= 1.0 { 0.0 } else { reset };
            }
        }
        if admitted {
            self.stats.admitted += 1;
        } else {
            self.stats.refused += 1;
        }
        Standing {
            admitted,
            limit: self.limit as u64,
            remaining: remaining.max(0.0) as u64,
            reset: Duration::from_secs_f64(reset.max(0.0)),
            next: Duration::from_secs_f64(next.max(0.0)),
            window: self.window,
        }
    }
}

/// The limiters of one server, by key.
#[derive(Debug, Default)]
pub(crate) struct Limiters(Mutex<HashMap<String, Limiter>>);

impl Limiters {
    pub(crate) fn reset(&self) {
        self.lock().clear();
    }

    /// Admissions and refusals per key.
    pub(crate) fn stats(&self) -> BTreeMap<String, LimitedStats> {
        self.lock()
            .iter()
            .map(|(k, l)| (k.clone(), l.stats.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Limiter>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Answers `/limited/{algorithm}/{dialect}/{key}?limit=N&window=SECS`
/// (`retry_after=0` leaves `Retry-After` off the 429s).
pub(crate) fn answer(limiters: &Limiters, rest: &str, query: Option<&str>) -> Response<MockBody> {
    match parse(rest, query) {
        Ok((algorithm, dialect, key, limit, window, retry_after)) => {
            let now = Instant::now();
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let standing = limiters
                .lock()
                .entry(key.to_string())
                .or_insert_with(|| Limiter::new(algorithm, limit, window, now))
                .take(now, wall);
            respond(&standing, dialect, retry_after, wall)
        }
        Err(message) => {
            crate::handler::json_answer(StatusCode::BAD_REQUEST, &json!({ "error": message }))
        }
    }
}

type Parsed<'a> = (Algorithm, Dialect, &'a str, f64, f64, bool);

fn parse<'a>(rest: &'a str, query: Option<&str>) -> Result<Parsed<'a>, String> {
    let usage = "use /limited/{bucket|leaky|fixed}/{openai|anthropic|github|ietf|ietf-legacy|none}/{key}?limit=N&window=SECS";
    let mut parts = rest.splitn(3, '/');
    let (Some(algorithm), Some(dialect), Some(key)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(usage.into());
    };
    let algorithm = match algorithm {
        "bucket" => Algorithm::Bucket,
        "leaky" => Algorithm::Leaky,
        "fixed" => Algorithm::Fixed,
        _ => return Err(usage.into()),
    };
    let dialect = match dialect {
        "openai" => Dialect::OpenAi,
        "anthropic" => Dialect::Anthropic,
        "github" => Dialect::GitHub,
        "ietf" => Dialect::Ietf,
        "ietf-legacy" => Dialect::IetfLegacy,
        "none" => Dialect::None,
        _ => return Err(usage.into()),
    };
    let number = |name: &str, default: f64, max: f64| -> Result<f64, String> {
        match query_param(query, name) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0 && *n <= max)
                .ok_or_else(|| format!("{name} must be a number above 0 and at most {max}")),
        }
    };
    let limit = number("limit", 60.0, 1e9)?.floor().max(1.0);
    let window = number("window", 60.0, 86_400.0)?;
    let retry_after = query_param(query, "retry_after").as_deref() != Some("0");
    Ok((algorithm, dialect, key, limit, window, retry_after))
}

fn respond(s: &Standing, dialect: Dialect, retry_after: bool, wall: f64) -> Response<MockBody> {
    let (status, body) = if s.admitted {
        (StatusCode::OK, json!({ "ok": true }))
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "error": "rate limited", "limit": s.limit }),
        )
    };
    let mut response = crate::handler::json_answer(status, &body);
    let date = wall.floor();
    // Rounded up to the millisecond: a reset is never earlier than it is.
    let reset = (s.reset.as_secs_f64() * 1000.0).ceil() / 1000.0;
    let ceil = reset.ceil() as u64;
    let (limit, remaining) = (s.limit.to_string(), s.remaining.to_string());
    let headers: Vec<(&str, String)> = match dialect {
        Dialect::OpenAi => vec![
            ("x-ratelimit-limit-requests", limit),
            ("x-ratelimit-remaining-requests", remaining),
            ("x-ratelimit-reset-requests", go_duration(reset)),
        ],
        Dialect::Anthropic => vec![
            ("anthropic-ratelimit-requests-limit", limit),
            ("anthropic-ratelimit-requests-remaining", remaining),
            ("anthropic-ratelimit-requests-reset", rfc3339(date + reset)),
        ],
        Dialect::GitHub => vec![
            ("x-ratelimit-limit", limit),
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-used", (s.limit - s.remaining).to_string()),
            ("x-ratelimit-reset", format!("{:.3}", date + reset)),
            ("x-ratelimit-resource", "core".into()),
        ],
        Dialect::Ietf => vec![
            (
                "ratelimit-policy",
                format!("\"default\";q={limit};w={}", s.window.ceil() as u64),
            ),
            ("ratelimit", format!("\"default\";r={remaining};t={ceil}")),
        ],
        Dialect::IetfLegacy => vec![
            ("ratelimit-limit", limit),
            ("ratelimit-remaining", remaining),
            ("ratelimit-reset", ceil.to_string()),
        ],
        Dialect::None => Vec::new(),
    };
    let map = response.headers_mut();
    map.insert(header::DATE, value(http_date(date)));
    for (name, v) in headers {
        map.insert(HeaderName::from_static(name), value(v));
    }
    if !s.admitted && retry_after {
        let secs = s.next.as_secs_f64().ceil().max(1.0) as u64;
        map.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn value(text: String) -> HeaderValue {
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

/// A Go duration as OpenAI writes it: `850.5ms`, `1.25s`, `6m0s`.
fn go_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{}ms", trim(secs * 1000.0))
    } else if secs < 60.0 {
        format!("{}s", trim(secs))
    } else {
        let minutes = (secs / 60.0).floor();
        format!("{}m{}s", minutes as u64, trim(secs - minutes * 60.0))
    }
}

/// Three decimals at most (the caller rounds), trailing zeros dropped.
fn trim(n: f64) -> String {
    let text = format!("{n:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// (year, month, day, hour, minute, second, weekday 0 = Sunday) of a Unix time.
fn civil(unix: f64) -> (i64, u32, u32, u32, u32, f64, u32) {
    let secs = unix.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7) as u32;
    let second = (rem % 60) as f64 + (unix - unix.floor());
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        second,
        weekday,
    )
}

/// `2025-02-11T10:00:15.250Z`.
fn rfc3339(unix: f64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:06.3}Z")
}

/// `Tue, 11 Feb 2025 10:00:15 GMT`.
fn http_date(unix: f64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(unix);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{:02} GMT",
        DAYS[wd as usize],
        MONTHS[(mo - 1) as usize],
        s.floor() as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        // 2025-02-11T10:00:15Z is 1739268015.
        assert_eq!(rfc3339(1_739_268_015.25), "2025-02-11T10:00:15.250Z");
        assert_eq!(http_date(1_739_268_015.0), "Tue, 11 Feb 2025 10:00:15 GMT");
        assert_eq!(go_duration(0.0125), "12.5ms");
        assert_eq!(go_duration(1.25), "1.25s");
        assert_eq!(go_duration(360.0), "6m0s");
    }

    #[test]
    fn a_bucket_refills_and_a_window_does_not() {
        let t0 = Instant::now();
        let mut bucket = Limiter::new(Algorithm::Bucket, 10.0, 1.0, t0);
        let admitted = (0..12).filter(|_| bucket.take(t0, 0.0).admitted).count();
        assert_eq!(admitted, 10);
        let later = t0 + Duration::from_millis(250);
        let s = bucket.take(later, 0.25);
        assert!(s.admitted && s.remaining == 1, "2.5 refilled, one taken");
        let mut fixed = Limiter::new(Algorithm::Fixed, 3.0, 1.0, t0);
        let admitted = (0..5).filter(|_| fixed.take(t0, 100.2).admitted).count();
        assert_eq!(admitted, 3);
        assert!(!fixed.take(t0, 100.9).admitted);
        assert!(fixed.take(t0, 101.0).admitted);
        let mut leaky = Limiter::new(Algorithm::Leaky, 2.0, 1.0, t0);
        let admitted = (0..4).filter(|_| leaky.take(t0, 0.0).admitted).count();
        assert_eq!(admitted, 2);
        assert!(leaky.take(t0 + Duration::from_millis(500), 0.5).admitted);
        assert_eq!(
            leaky.stats,
            LimitedStats {
                admitted: 3,
                refused: 2
            }
        );
    }
}
