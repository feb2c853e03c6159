//! Routing and the endpoints of the mock server.

use std::collections::HashMap;
use std::future::pending;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::MockOptions;
use crate::body::MockBody;
use crate::stats::{ConnectionGuard, StatsState};
use crate::util::{base64_encode, parse_query, query_param};

/// Longest accepted `/delay` and `/drip` duration, in seconds (one hour).
pub(crate) const MAX_SECS: f64 = 3600.0;

/// Largest request body `/echo` reflects (64 MiB); larger ones get 413.
const ECHO_LIMIT: usize = 64 * 1024 * 1024;

const APPLICATION_JSON: &str = "application/json";
const TEXT_PLAIN: &str = "text/plain";
const TEXT_PLAIN_UTF8: &str = "text/plain; charset=utf-8";
const OCTET_STREAM: &str = "application/octet-stream";
const RETRY_AFTER_MS: &str = "retry-after-ms";

/// State shared by every connection of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stats: Arc<StatsState>,
    /// `/fail` attempts per key.
    fails: Mutex<HashMap<String, u64>>,
    /// `/ratelimit` token buckets per `per_second` value.
    buckets: Mutex<HashMap<u64, Bucket>>,
    /// `/limited` limits per key.
    pub(crate) limited: crate::limited::Limiters,
    /// `/outage` start per key.
    outages: crate::outage::Outages,
    /// `/knee` requests in flight.
    knee: crate::knee::Knee,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; recover if one ever did.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            stats: Arc::new(StatsState::new()),
            fails: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            limited: crate::limited::Limiters::default(),
            outages: crate::outage::Outages::default(),
            knee: crate::knee::Knee::default(),
        }
    }

    /// Clears the statistics and the `/fail` and `/ratelimit` state.
    pub(crate) fn reset(&self) {
        self.stats.reset();
        lock(&self.fails).clear();
        lock(&self.buckets).clear();
        self.limited.reset();
        self.outages.reset();
    }

    /// The statistics, with the `/limited` counts.
    pub(crate) fn stats(&self, arrivals: bool) -> crate::stats::Stats {
        let mut stats = self.stats.snapshot(arrivals);
        stats.limited = self.limited.stats();
        stats
    }

    /// Counts one more attempt for `key`; returns its 1-based number.
    fn fail_attempt(&self, key: &str) -> u64 {
        let mut fails = lock(&self.fails);
        match fails.get_mut(key) {
            Some(count) => {
                *count = count.saturating_add(1);
                *count
            }
            None => {
                fails.insert(key.to_owned(), 1);
                1
            }
        }
    }

    /// Takes a token from the bucket of `per_second` (capacity `per_second`,
    /// refilled at `per_second` tokens a second). On refusal, returns the
    /// whole seconds (at least 1) until a token will be available.
    fn rate_limit(&self, per_second: u64) -> Result<(), u64> {
        let now = Instant::now();
        let rate = per_second as f64;
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(per_second).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil();
            // `wait` is in (0, 1] for any rate >= 1; keep the cast total anyway.
            Err((wait as u64).max(1))
        }
    }
}

/// Per-connection context handed to every request on that connection.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    /// The connection's accounting; it stays open while any request of the
    /// connection (or the connection itself) holds this context.
    pub(crate) account: ConnectionGuard,
    /// Notified by `/reset`: the connection task then aborts the connection.
    pub(crate) reset: Notify,
    /// Notified when the connection has served `goaway_after` requests: the
    /// connection task then shuts it down gracefully (GOAWAY on HTTP/2).
    pub(crate) goaway: Notify,
    /// How many requests this connection has served, to trigger `goaway`.
    pub(crate) served: AtomicU64,
    /// The connection's idle clock for `keep_alive`: requests in progress,
    /// and when the last one was answered.
    pub(crate) idle: IdleClock,
    /// The server's options (GOAWAY threshold).
    pub(crate) options: Arc<MockOptions>,
}

/// When a connection last had work, for the keep-alive timeout.
#[derive(Debug)]
pub(crate) struct IdleClock {
    busy: AtomicUsize,
    since: Mutex<Instant>,
}

impl IdleClock {
    pub(crate) fn new() -> Self {
        IdleClock {
            busy: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        }
    }

    /// When the connection became idle, or `None` while a request is in
    /// progress.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let since = *lock(&self.since);
        (self.busy.load(Ordering::Acquire) == 0).then_some(since)
    }

    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self) {
        *lock(&self.since) = Instant::now();
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The error a handler returns to abort a request without any response:
/// hyper then closes an HTTP/1.1 connection and resets an HTTP/2 stream
/// with this error's reason, as nginx's `return 444` does.
#[derive(Debug)]
pub(crate) struct Abort(h2::Error);

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request aborted by /abort: {}", self.0)
    }
}

impl std::error::Error for Abort {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The service function: counts the request, routes it, and ties the
/// in-flight accounting to the response body.
pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Abort> {
    ctx.idle.begin();
    let result = handle_counted(&ctx, req).await;
    ctx.idle.end();
    let served = ctx.served.fetch_add(1, Ordering::AcqRel) + 1;
    if ctx.options.goaway_after == Some(served) {
        ctx.goaway.notify_one();
    }
    result
}

async fn handle_counted(
    ctx: &Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Abort> {
    let path = req.uri().path();
    let stats_request = path == "/stats" || path == "/stats/reset";
    ctx.account.on_request(stats_request);
    match path {
        "/stats" => return Ok(stats_endpoint(&ctx.shared, &req)),
        "/stats/reset" => {
            let (parts, body) = req.into_parts();
            // The body is irrelevant; read it so the connection stays reusable.
            let _ = read_body(body, None).await;
            return Ok(stats_reset_endpoint(&ctx.shared, &parts.method));
        }
        _ => {}
    }
    let guard = ctx.shared.stats.request_arrived(req.uri().path());
    if path == "/abort" {
        // Counted as received, then no response at all.
        let _ = read_body(req.into_body(), None).await;
        drop(guard);
        return Err(Abort(h2::Error::from(h2::Reason::PROTOCOL_ERROR)));
    }
    let mut response = route(ctx, req).await;
    response.body_mut().set_guard(guard);
    Ok(response)
}

async fn route(ctx: &ConnCtx, req: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (first, rest) = match trimmed.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (trimmed, None),
    };

    // Every endpoint reads the whole request first: only /echo keeps it, the
    // rest discard it so that keep-alive connections stay reusable.
    let is_echo = (first == "echo" && rest.is_none())
        || (first == "v1" && matches!(rest, Some("messages" | "chat/completions")))
        || first == "limited";
    let body = match read_body(body, is_echo.then_some(ECHO_LIMIT)).await {
        Ok(body) => body,
        Err(reject) => return reject.into_response(),
    };
    let query = parts.uri.query();

    match (first, rest) {
        ("", None) => index(&parts.method),
        ("fast", None) => fast(),
        ("echo", None) => echo(&parts, &body),
        ("delay", Some(secs)) => delay(secs).await,
        ("status", Some(code)) => status(code),
        ("bytes", Some(n)) => bytes(n),
        ("ratelimit", Some(per_second)) => ratelimit(&ctx.shared, per_second),
        ("fail", Some(rest)) => fail(&ctx.shared, rest, query),
        ("limited", Some(rest)) => crate::limited::answer(&ctx.shared.limited, rest, query, &body),
        ("outage", Some(rest)) => ctx.shared.outages.answer(rest),
        ("knee", Some(rest)) => ctx.shared.knee.answer(rest).await,
        ("redirect", Some(code)) => redirect(code, query),
        ("reset", None) => {
            ctx.reset.notify_one();
            // The connection task aborts the connection, dropping this future.
            pending().await
        }
        ("hang", None) => pending().await,
        ("drip", Some(rest)) => drip(rest),
        ("truncate", None) => truncate(),
        ("v1", Some("messages")) if parts.method == Method::POST => {
            crate::providers::messages(&body)
        }
        ("v1", Some("chat/completions")) if parts.method == Method::POST => {
            crate::providers::chat_completions(&body)
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Reads a request body: kept up to `keep` bytes (413 beyond), or discarded
/// when `keep` is `None`. A broken body gives a 400.
async fn read_body(mut body: Incoming, keep: Option<usize>) -> Result<Bytes, Reject> {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
        if let (Some(limit), Ok(data)) = (keep, frame.into_data()) {
            if kept.len() + data.len() > limit {
                return Err(Reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {limit} bytes"),
                ));
            }
            kept.extend_from_slice(&data);
        }
    }
    Ok(kept.freeze())
}

/// A refused request: the status and message of its JSON error answer.
#[derive(Debug)]
struct Reject(StatusCode, String);

impl Reject {
    fn into_response(self) -> Response<MockBody> {
        error(self.0, &self.1)
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<MockBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, APPLICATION_JSON, MockBody::full(bytes)),
        // Serializing a `Value` cannot fail; answer sensibly if it ever did.
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// A JSON answer, for the provider-shaped endpoints.
pub(crate) fn json_answer(status: StatusCode, value: &Value) -> Response<MockBody> {
    json_response(status, value)
}

fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(status, &json!({ "error": message }))
}

fn empty(status: StatusCode) -> Response<MockBody> {
    let mut response = Response::new(MockBody::empty());
    *response.status_mut() = status;
    response
}

/// Statuses whose responses carry no body.
fn is_bodyless(status: StatusCode) -> bool {
    matches!(status.as_u16(), 204 | 205 | 304) || status.is_informational()
}

/// JSON `value` under `status`, or no body where the status forbids one.
fn json_or_empty(status: StatusCode, value: &Value) -> Response<MockBody> {
    if is_bodyless(status) {
        empty(status)
    } else {
        json_response(status, value)
    }
}

fn fast() -> Response<MockBody> {
    with_type(
        StatusCode::OK,
        APPLICATION_JSON,
        MockBody::full(Bytes::from_static(b"{\"ok\":true}")),
    )
}

fn echo(parts: &Parts, body: &Bytes) -> Response<MockBody> {
    let mut query = Map::new();
    for (name, value) in parse_query(parts.uri.query().unwrap_or("")) {
        query.insert(name, Value::String(value));
    }
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let joined = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    let mut out = Map::new();
    out.insert("method".into(), parts.method.as_str().into());
    out.insert("path".into(), parts.uri.path().into());
    out.insert("query".into(), Value::Object(query));
    out.insert(
        "query_string".into(),
        parts.uri.query().unwrap_or("").into(),
    );
    out.insert("version".into(), format!("{:?}", parts.version).into());
    out.insert("headers".into(), Value::Object(headers));
    match std::str::from_utf8(body) {
        Ok(text) => {
            out.insert("body".into(), text.into());
        }
        Err(_) => {
            out.insert("body".into(), Value::Null);
            out.insert("body_base64".into(), base64_encode(body).into());
        }
    }
    json_response(StatusCode::OK, &Value::Object(out))
}

/// Parses a duration in seconds: finite, not negative; capped at [`MAX_SECS`].
fn parse_secs(text: &str) -> Option<f64> {
    let secs: f64 = text.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs.min(MAX_SECS))
}

async fn delay(secs: &str) -> Response<MockBody> {
    let Some(secs) = parse_secs(secs) else {
        return error(
            StatusCode::BAD_REQUEST,
            "delay must be a number of seconds from 0 to 3600",
        );
    };
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    json_response(StatusCode::OK, &json!({ "delay": secs }))
}

/// A status in 200..=599 (1xx cannot be sent as a final response).
fn parse_status(text: &str) -> Option<StatusCode> {
    let code: u16 = text.parse().ok()?;
    if (200..=599).contains(&code) {
        StatusCode::from_u16(code).ok()
    } else {
        None
    }
}

fn status(code: &str) -> Response<MockBody> {
    match parse_status(code) {
        Some(status) => json_or_empty(status, &json!({ "status": status.as_u16() })),
        None => error(
            StatusCode::BAD_REQUEST,
            "status must be an integer from 200 to 599",
        ),
    }
}

fn bytes(n: &str) -> Response<MockBody> {
    match n.parse::<u64>() {
        Ok(n) => with_type(StatusCode::OK, OCTET_STREAM, MockBody::pattern(n)),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "byte count must be a non-negative integer",
        ),
    }
}

fn ratelimit(shared: &Shared, per_second: &str) -> Response<MockBody> {
    let per_second = match per_second.parse::<u64>() {
        Ok(n) if (1..=1_000_000_000).contains(&n) => n,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "per_second must be an integer from 1 to 1000000000",
            );
        }
    };
    match shared.rate_limit(per_second) {
        Ok(()) => fast(),
        Err(retry_after) => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({ "error": "rate limited", "limit_per_second": per_second }),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
    }
}

/// A query parameter turned into a header value, verbatim after URL-decoding.
fn header_param(query: Option<&str>, name: &str) -> Result<Option<HeaderValue>, Reject> {
    match query_param(query, name) {
        None => Ok(None),
        Some(value) => HeaderValue::from_str(&value).map(Some).map_err(|_| {
            Reject(
                StatusCode::BAD_REQUEST,
                format!("{name} is not a valid header value"),
            )
        }),
    }
}

fn fail(shared: &Shared, rest: &str, query: Option<&str>) -> Response<MockBody> {
    let Some((n, key)) = rest.split_once('/') else {
        return error(StatusCode::BAD_REQUEST, "expected /fail/{n}/{key}");
    };
    let Ok(n) = n.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "failure count must be a non-negative integer",
        );
    };
    if key.is_empty() {
        return error(StatusCode::BAD_REQUEST, "key must not be empty");
    }
    let status = match query_param(query, "status") {
        None => StatusCode::SERVICE_UNAVAILABLE,
        Some(code) => match parse_status(&code) {
            Some(status) => status,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "status must be an integer from 200 to 599",
                );
            }
        },
    };
    let retry_after = match header_param(query, "retry_after") {
        Ok(value) => value,
        Err(reject) => return reject.into_response(),
    };
    let retry_after_ms = match header_param(query, "retry_after_ms") {
        Ok(value) => value,
        Err(reject) => return reject.into_response(),
    };

    let attempt = shared.fail_attempt(key);
    if attempt > n {
        return json_response(StatusCode::OK, &json!({ "ok": true, "attempt": attempt }));
    }
    let mut response = json_or_empty(
        status,
        &json!({ "error": "injected failure", "status": status.as_u16(), "attempt": attempt }),
    );
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    if let Some(value) = retry_after_ms {
        response
            .headers_mut()
            .insert(HeaderName::from_static(RETRY_AFTER_MS), value);
    }
    response
}

fn redirect(code: &str, query: Option<&str>) -> Response<MockBody> {
    let status = match code.parse::<u16>() {
        Ok(code) if (300..=399).contains(&code) => StatusCode::from_u16(code).ok(),
        _ => None,
    };
    let Some(status) = status else {
        return error(
            StatusCode::BAD_REQUEST,
            "redirect status must be an integer from 300 to 399",
        );
    };
    let Some(to) = query_param(query, "to") else {
        return error(StatusCode::BAD_REQUEST, "missing ?to=URL");
    };
    let Ok(location) = HeaderValue::from_str(&to) else {
        return error(StatusCode::BAD_REQUEST, "to is not a valid header value");
    };
    let mut response = json_or_empty(status, &json!({ "redirect": to }));
    response.headers_mut().insert(header::LOCATION, location);
    response
}

fn drip(rest: &str) -> Response<MockBody> {
    let parsed = rest
        .split_once('/')
        .and_then(|(bytes, secs)| Some((bytes.parse::<u64>().ok()?, parse_secs(secs)?)));
    match parsed {
        Some((bytes, secs)) => with_type(StatusCode::OK, TEXT_PLAIN, MockBody::drip(bytes, secs)),
        None => error(
            StatusCode::BAD_REQUEST,
            "expected /drip/{bytes}/{secs}: an integer and seconds from 0 to 3600",
        ),
    }
}

fn truncate() -> Response<MockBody> {
    let mut response = with_type(StatusCode::OK, TEXT_PLAIN, MockBody::truncate());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
    response
}

/// `GET /`: the endpoint table as plain text, so `curl` on the bare address
/// says what the server can do.
fn index(method: &Method) -> Response<MockBody> {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    let list = crate::endpoints::endpoint_list();
    with_type(StatusCode::OK, TEXT_PLAIN_UTF8, MockBody::full(list))
}

fn stats_endpoint(shared: &Shared, req: &Request<Incoming>) -> Response<MockBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    let arrivals = matches!(
        query_param(req.uri().query(), "arrivals").as_deref(),
        Some("1" | "true" | "yes")
    );
    match serde_json::to_vec(&shared.stats(arrivals)) {
        Ok(bytes) => with_type(StatusCode::OK, APPLICATION_JSON, MockBody::full(bytes)),
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn stats_reset_endpoint(shared: &Shared, method: &Method) -> Response<MockBody> {
    if method != Method::POST {
        return method_not_allowed("POST");
    }
    shared.reset();
    json_response(StatusCode::OK, &json!({ "ok": true }))
}

fn method_not_allowed(allow: &'static str) -> Response<MockBody> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds() {
        assert_eq!(parse_secs("0.25"), Some(0.25));
        assert_eq!(parse_secs("0"), Some(0.0));
        assert_eq!(parse_secs("99999"), Some(MAX_SECS));
        assert_eq!(parse_secs("-1"), None);
        assert_eq!(parse_secs("NaN"), None);
        assert_eq!(parse_secs("inf"), None);
        assert_eq!(parse_secs("abc"), None);
    }

    #[test]
    fn parses_statuses() {
        assert_eq!(parse_status("418"), Some(StatusCode::IM_A_TEAPOT));
        assert_eq!(parse_status("199"), None);
        assert_eq!(parse_status("600"), None);
        assert_eq!(parse_status("x"), None);
    }

    #[test]
    fn rate_limit_bucket() {
        let shared = Shared::new();
        assert!(shared.rate_limit(2).is_ok());
        assert!(shared.rate_limit(2).is_ok());
        assert_eq!(shared.rate_limit(2), Err(1));
        // Another rate is another bucket.
        assert!(shared.rate_limit(3).is_ok());
        shared.reset();
        assert!(shared.rate_limit(2).is_ok());
    }

    #[test]
    fn fail_attempts_per_key() {
        let shared = Shared::new();
        assert_eq!(shared.fail_attempt("a"), 1);
        assert_eq!(shared.fail_attempt("a"), 2);
        assert_eq!(shared.fail_attempt("b"), 1);
        shared.reset();
        assert_eq!(shared.fail_attempt("a"), 1);
    }
}
