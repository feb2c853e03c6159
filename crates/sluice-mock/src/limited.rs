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
//!
//! With `tokens=T` (OpenAI and Anthropic dialects), the key also keeps a
//! bucket of `T` tokens refilled at `T` per window, and a request must find
//! room in both (all or nothing). A request reserves its cost at admission
//! (see [`Cost`]: the rule is the one the tests compute) and is settled at
//! once at what its answer's `usage` says it used, as servers settle a
//! request at the end (Anthropic adjusts output tokens then).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// With `tokens=`: the tokens the admitted requests used, as settled.
    #[serde(default)]
    pub tokens: u64,
}

/// What a request costs a key with `tokens=`, from its JSON body: its
/// prompt is `ceil(c / 4)` tokens, `c` the characters of the text in
/// `messages` (string contents, and the `text` of content parts),
/// `prompt`, `input` and `system`; it reserves that plus `max_tokens` (or
/// `max_completion_tokens`, `max_output_tokens`; fractions rounded up; 0
/// when none) × `n` at admission, and its completion is the reserved
/// completion, or `?completion=K` per request when that is less.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cost {
    prompt: u64,
    /// What it reserves at admission.
    reserve: u64,
    /// Completion tokens used.
    completion: u64,
}

impl Cost {
    pub(crate) fn of(body: &[u8], completion: Option<u64>) -> Cost {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let chars: u64 = ["messages", "prompt", "input", "system"]
            .iter()
            .filter_map(|k| v.get(*k))
            .map(text_chars)
            .sum();
        let prompt = chars.div_ceil(4);
        let max = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .iter()
            .filter_map(|k| v.get(*k).and_then(Value::as_f64))
            .filter(|m| m.is_finite() && *m >= 0.0)
            .map(|m| m.ceil() as u64)
            .max()
            .unwrap_or(0);
        let n = v.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
        let asked = max.saturating_mul(n);
        Cost {
            prompt,
            reserve: prompt.saturating_add(asked),
            completion: completion.map_or(asked, |k| k.saturating_mul(n).min(asked)),
        }
    }

    fn used(&self) -> u64 {
        self.prompt + self.completion
    }
}

/// The characters of the text in a prompt field.
fn text_chars(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(items) => items.iter().map(text_chars).sum(),
        Value::Object(o) => ["content", "text"]
            .iter()
            .filter_map(|k| o.get(*k))
            .map(text_chars)
            .sum(),
        _ => 0,
    }
}

/// A key's token bucket (`tokens=`).
#[derive(Debug)]
struct TokenBucket {
    size: f64,
    level: f64,
}

/// Where a key's tokens stand after one request.
struct TokenStanding {
    limit: u64,
    remaining: u64,
    reset: Duration,
    /// The request's cost, when it was admitted.
    used: Option<Cost>,
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
    tokens: Option<TokenBucket>,
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
    tokens: Option<TokenStanding>,
}

impl Limiter {
    fn new(
        algorithm: Algorithm,
        limit: f64,
        window: f64,
        tokens: Option<f64>,
        now: Instant,
    ) -> Limiter {
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
            tokens: tokens.map(|size| TokenBucket { size, level: size }),
            stats: LimitedStats::default(),
        }
    }

    /// A request arrives (costing `cost` where the key counts tokens):
    /// admitted when both the request limit and the tokens have room.
    fn take(&mut self, now: Instant, wall: f64, cost: Option<Cost>) -> Standing {
        let rate = self.limit / self.window;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.refill(elapsed * rate, wall);
        let token_rate = self.tokens.as_ref().map_or(1.0, |t| t.size / self.window);
        if let Some(t) = &mut self.tokens {
            t.level = (t.level + elapsed * token_rate).min(t.size);
        }
        let reserve = cost.map_or(0.0, |c| c.reserve as f64);
        let tokens_room = self.tokens.as_ref().is_none_or(|t| t.level >= reserve);
        let admitted = self.room() && tokens_room;
        let mut used = None;
        if admitted {
            self.charge();
            self.stats.admitted += 1;
            if let (Some(t), Some(c)) = (&mut self.tokens, cost) {
                t.level -= c.used() as f64;
                self.stats.tokens += c.used();
                used = Some(c);
            }
        } else {
            self.stats.refused += 1;
        }
        let mut standing = self.standing(admitted, rate, wall);
        if let Some(t) = &self.tokens {
            if !tokens_room {
                let wait = (reserve - t.level).max(0.0) / token_rate;
                standing.next = standing.next.max(Duration::from_secs_f64(wait));
            }
            standing.tokens = Some(TokenStanding {
                limit: t.size as u64,
                remaining: t.level.max(0.0).floor() as u64,
                reset: Duration::from_secs_f64(((t.size - t.level) / token_rate).max(0.0)),
                used,
            });
        }
        standing
    }

    /// Time passed: `refilled` requests' worth came back (bucket, leaky),
    /// or a new window opened (fixed).
    fn refill(&mut self, refilled: f64, wall: f64) {
        match self.algorithm {
            Algorithm::Bucket => self.level = (self.level + refilled).min(self.limit),
            Algorithm::Leaky => self.level = (self.level - refilled).max(0.0),
            Algorithm::Fixed => {
                let index = (wall / self.window).floor() as u64;
                if index != self.index {
                    self.index = index;
                    self.level = 0.0;
                }
            }
        }
    }

    /// Whether one more request fits.
    fn room(&self) -> bool {
        match self.algorithm {
            Algorithm::Bucket => self.level >= 1.0,
            Algorithm::Leaky | Algorithm::Fixed => self.level + 1.0 <= self.limit,
        }
    }

    fn charge(&mut self) {
        match self.algorithm {
            Algorithm::Bucket => self.level -= 1.0,
            Algorithm::Leaky | Algorithm::Fixed => self.level += 1.0,
        }
    }

    /// Where the request limit stands.
    fn standing(&self, admitted: bool, rate: f64, wall: f64) -> Standing {
        let (remaining, reset, next) = match self.algorithm {
            Algorithm::Bucket => (
                self.level.floor(),
                (self.limit - self.level) / rate,
                (1.0 - self.level).max(0.0) / rate,
            ),
            Algorithm::Leaky => (
                (self.limit - self.level).floor(),
                self.level / rate,
                (self.level + 1.0 - self.limit).max(0.0) / rate,
            ),
            Algorithm::Fixed => {
                let remaining = self.limit - self.level;
                let reset = (self.index + 1) as f64 * self.window - wall;
                (remaining, reset, if remaining >= 1.0 { 0.0 } else { reset })
            }
        };
        Standing {
            admitted,
            limit: self.limit as u64,
            remaining: remaining.max(0.0) as u64,
            reset: Duration::from_secs_f64(reset.max(0.0)),
            next: Duration::from_secs_f64(next.max(0.0)),
            window: self.window,
            tokens: None,
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
/// (`retry_after=0` leaves `Retry-After` off the 429s; `tokens=T` and
/// `completion=K` count tokens, from the request's `body`).
pub(crate) fn answer(
    limiters: &Limiters,
    rest: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response<MockBody> {
    match parse(rest, query) {
        Ok(p) => {
            let now = Instant::now();
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let cost = p.tokens.map(|_| Cost::of(body, p.completion));
            let standing = limiters
                .lock()
                .entry(p.key.to_string())
                .or_insert_with(|| Limiter::new(p.algorithm, p.limit, p.window, p.tokens, now))
                .take(now, wall, cost);
            respond(&standing, p.dialect, p.retry_after, wall)
        }
        Err(message) => {
            crate::handler::json_answer(StatusCode::BAD_REQUEST, &json!({ "error": message }))
        }
    }
}

/// A `/limited` request's path and query.
struct Parsed<'a> {
    algorithm: Algorithm,
    dialect: Dialect,
    key: &'a str,
    limit: f64,
    window: f64,
    retry_after: bool,
    tokens: Option<f64>,
    completion: Option<u64>,
}

fn parse<'a>(rest: &'a str, query: Option<&str>) -> Result<Parsed<'a>, String> {
    let usage = "use /limited/{bucket|leaky|fixed}/{openai|anthropic|github|ietf|ietf-legacy|none}/{key}?limit=N&window=SECS[&tokens=T&completion=K]";
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
    let tokens = match query_param(query, "tokens") {
        None => None,
        Some(_) if !matches!(dialect, Dialect::OpenAi | Dialect::Anthropic) => {
            return Err("tokens= needs the openai or anthropic dialect".into());
        }
        Some(_) => Some(number("tokens", 1.0, 1e12)?.floor().max(1.0)),
    };
    let completion = match query_param(query, "completion") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| "completion must be a whole number of tokens".to_string())?,
        ),
    };
    Ok(Parsed {
        algorithm,
        dialect,
        key,
        limit,
        window,
        retry_after,
        tokens,
        completion,
    })
}

fn respond(s: &Standing, dialect: Dialect, retry_after: bool, wall: f64) -> Response<MockBody> {
    let used = s.tokens.as_ref().and_then(|t| t.used);
    let (status, body) = if s.admitted {
        (StatusCode::OK, answer_body(used, dialect))
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
    let tokens = s
        .tokens
        .as_ref()
        .map_or_else(Vec::new, |t| token_headers(t, dialect, date));
    let map = response.headers_mut();
    map.insert(header::DATE, value(http_date(date)));
    for (name, v) in headers.into_iter().chain(tokens) {
        map.insert(HeaderName::from_static(name), value(v));
    }
    if !s.admitted && retry_after {
        let secs = s.next.as_secs_f64().ceil().max(1.0) as u64;
        map.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// An admitted request's body: with its `usage` where the key counts tokens,
/// in the dialect's names.
fn answer_body(used: Option<Cost>, dialect: Dialect) -> Value {
    match (used, dialect) {
        (Some(c), Dialect::Anthropic) => json!({
            "ok": true,
            "usage": { "input_tokens": c.prompt, "output_tokens": c.completion },
        }),
        (Some(c), _) => json!({
            "ok": true,
            "usage": {
                "prompt_tokens": c.prompt,
                "completion_tokens": c.completion,
                "total_tokens": c.used(),
            },
        }),
        (None, _) => json!({ "ok": true }),
    }
}

/// The token limit's headers in `dialect` (OpenAI's or Anthropic's).
fn token_headers(t: &TokenStanding, dialect: Dialect, date: f64) -> Vec<(&'static str, String)> {
    let reset = (t.reset.as_secs_f64() * 1000.0).ceil() / 1000.0;
    let (limit, remaining) = (t.limit.to_string(), t.remaining.to_string());
    match dialect {
        Dialect::OpenAi => vec![
            ("x-ratelimit-limit-tokens", limit),
            ("x-ratelimit-remaining-tokens", remaining),
            ("x-ratelimit-reset-tokens", go_duration(reset)),
        ],
        Dialect::Anthropic => vec![
            ("anthropic-ratelimit-tokens-limit", limit),
            ("anthropic-ratelimit-tokens-remaining", remaining),
            ("anthropic-ratelimit-tokens-reset", rfc3339(date + reset)),
        ],
        _ => Vec::new(),
    }
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
        let mut bucket = Limiter::new(Algorithm::Bucket, 10.0, 1.0, None, t0);
        let admitted = (0..12)
            .filter(|_| bucket.take(t0, 0.0, None).admitted)
            .count();
        assert_eq!(admitted, 10);
        let later = t0 + Duration::from_millis(250);
        let s = bucket.take(later, 0.25, None);
        assert!(s.admitted && s.remaining == 1, "2.5 refilled, one taken");
        let mut fixed = Limiter::new(Algorithm::Fixed, 3.0, 1.0, None, t0);
        let admitted = (0..5)
            .filter(|_| fixed.take(t0, 100.2, None).admitted)
            .count();
        assert_eq!(admitted, 3);
        assert!(!fixed.take(t0, 100.9, None).admitted);
        assert!(fixed.take(t0, 101.0, None).admitted);
        let mut leaky = Limiter::new(Algorithm::Leaky, 2.0, 1.0, None, t0);
        let admitted = (0..4)
            .filter(|_| leaky.take(t0, 0.0, None).admitted)
            .count();
        assert_eq!(admitted, 2);
        assert!(
            leaky
                .take(t0 + Duration::from_millis(500), 0.5, None)
                .admitted
        );
        assert_eq!(
            leaky.stats,
            LimitedStats {
                admitted: 3,
                refused: 2,
                tokens: 0,
            }
        );
    }

    #[test]
    fn costs_follow_the_documented_rule() {
        let chat = br#"{"model":"m","system":"12345","messages":[{"role":"user","content":"123"},
            {"role":"user","content":[{"type":"text","text":"1234"}]}],"max_tokens":10,"n":2}"#;
        // 5 + 3 + 4 = 12 characters: 3 prompt tokens, plus 10 × 2.
        let c = Cost::of(chat, None);
        assert_eq!(
            (c.prompt, c.reserve, c.completion, c.used()),
            (3, 23, 20, 23)
        );
        // Completion below the maximum (per choice).
        let c = Cost::of(chat, Some(4));
        assert_eq!((c.reserve, c.completion, c.used()), (23, 8, 11));
        let c = Cost::of(
            br#"{"prompt":"12345","max_completion_tokens":2.5}"#,
            Some(9),
        );
        assert_eq!((c.prompt, c.reserve, c.completion), (2, 5, 3));
        assert_eq!(Cost::of(b"not json", None).reserve, 0);
    }

    #[test]
    fn tokens_admit_all_or_nothing_and_settle_at_usage() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(Algorithm::Bucket, 100.0, 1.0, Some(50.0), t0);
        let body = br#"{"prompt":"1234","max_tokens":19}"#;
        // Reserves 20, uses 1 + 4 = 5.
        let cost = Some(Cost::of(body, Some(4)));
        let s = limiter.take(t0, 0.0, cost);
        let t = s.tokens.as_ref().expect("tokens");
        assert!(s.admitted && t.remaining == 45 && t.used.is_some());
        for _ in 0..5 {
            assert!(limiter.take(t0, 0.0, cost).admitted);
        }
        // 20 left: 20 reserved fits, then 15 does not.
        assert!(limiter.take(t0, 0.0, cost).admitted);
        let s = limiter.take(t0, 0.0, cost);
        assert!(!s.admitted && s.next > Duration::ZERO);
        // The refusal charged nothing: not the request limit either.
        assert_eq!(s.remaining, 93);
        assert_eq!(
            limiter.stats,
            LimitedStats {
                admitted: 7,
                refused: 1,
                tokens: 35,
            }
        );
    }
}
