//! One attempt: a single HTTP exchange (following redirects, which take no
//! new slot, token or attempt), the body read under its size cap, all within
//! the attempt timeout. It knows nothing of limits or retries.

use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::Method;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use futures::TryStreamExt as _;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use url::Url;

use crate::classify::Classified;
use crate::client::Clients;
use crate::config::{BodyMode, Config, Setting};
use crate::json_text::JsonText;
use crate::record::{Body, ErrorKind, Transport};
use crate::redact::Redactor;
use crate::request::Request;
use crate::timers::{Timer, Timers};
use crate::transport::{Answer, AnswerBody, SendError};

const MAX_REDIRECTS: usize = 10;

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// The final status.
    pub status: u16,
    /// The final response's headers (for Retry-After and `--include-headers`).
    pub headers: HeaderMap,
    /// The body as read, for its record (`None` under `--body none`).
    pub body: Option<ReadBody>,
    /// The final URL, when redirects were followed.
    pub final_url: Option<Url>,
    /// Why a redirect was not followed, if one was not.
    pub note: Option<String>,
    /// The HTTP and TLS versions that carried the final response.
    pub transport: Transport,
}

/// An attempt that produced no usable response.
#[derive(Debug)]
pub struct Failed {
    /// The error kind written in the record.
    pub kind: ErrorKind,
    /// False only when the request provably never reached the server.
    pub sent: bool,
    /// What happened, without secrets.
    pub message: String,
    /// The status, when headers arrived before the failure.
    pub status: Option<u16>,
    /// The cause is on this machine (out of file descriptors), not the server.
    pub local: bool,
    /// The response headers, when they arrived (a 429's Retry-After counts
    /// even if its body could not be read).
    pub headers: Option<HeaderMap>,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// A complete response arrived.
    Response(Box<Response>),
    /// It failed. Boxed: an outcome is moved from the attempt's task to
    /// the driver in its end, copied whole at each hand-over, and a
    /// failure (its headers within) is four times a pointer's size and
    /// rare.
    Failed(Box<Failed>),
}

impl Outcome {
    /// The outcome of an attempt that failed.
    pub fn failed(failed: Failed) -> Outcome {
        Outcome::Failed(Box::new(failed))
    }
}

/// Performs one attempt of `req` within its timeout, which starts when the
/// request is handed to a connection that can send it at once; `sent` is
/// set to that moment (it stays `None` if the attempt ended before).
pub(crate) fn perform<'a>(
    client: &'a Clients,
    config: &'a Config,
    timers: &'a Timers,
    req: &'a Request,
    sent: &'a mut Option<tokio::time::Instant>,
) -> impl Future<Output = Outcome> + Send + 'a {
    // Not an `async fn` of its own: that would hold its arguments beside
    // the exchange's for the attempt's whole life.
    exchange(client, config, timers, req, sent)
}

/// The end of an attempt's time, shared by sending and reading the body so a
/// timeout while reading still records the status that arrived.
fn deadline(start: tokio::time::Instant, limit: Duration) -> tokio::time::Instant {
    start
        .checked_add(limit)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400))
}

/// An attempt that ran out of its time `limit` (with the status, when one
/// had arrived).
fn timed_out(limit: Duration, status: Option<u16>) -> Failed {
    Failed {
        kind: ErrorKind::Timeout,
        sent: true,
        message: format!("no complete response within the timeout of {}", show(limit)),
        status,
        local: false,
        headers: None,
    }
}

/// Shows a duration the way users write them.
pub fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The state that changes from one redirect hop to the next.
struct Hop {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

/// The hop being sent, borrowed: the first from the request itself (most
/// requests are sent as they are: no copy of their URL, and nothing of
/// them held in the attempt's future), a later one from its [`Hop`].
#[derive(Clone, Copy)]
struct Sending<'a> {
    method: &'a Method,
    url: &'a Url,
    headers: &'a HeaderMap,
    body: Option<&'a Bytes>,
}

impl<'a> Sending<'a> {
    fn of(hop: &'a Hop) -> Sending<'a> {
        Sending {
            method: &hop.method,
            url: &hop.url,
            headers: &hop.headers,
            body: hop.body.as_ref(),
        }
    }
}

/// An attempt's timer: one for the whole attempt (sending, each redirect
/// hop, reading the body), taken from the run's kept ones ([`Timers`])
/// when its clock starts. One timer a request rather than one per phase,
/// and the phases' futures hold none of it: an attempt's future is copied
/// whole into its task.
type Clock<'t, 'a> = &'t mut Option<Timer<'a>>;

async fn exchange(
    client: &Clients,
    config: &Config,
    timers: &Timers,
    req: &Request,
    sent: &mut Option<tokio::time::Instant>,
) -> Outcome {
    let limit = req.timeout.unwrap_or(config.timeout);
    // Boxed, and only when the request's own headers are not all it sends
    // (run-wide headers, or the `Content-Type` of a JSON body): the rest of
    // the first hop is borrowed from the request, not copied.
    let merged: Option<Box<HeaderMap>> = merged_headers(config, req).map(Box::new);
    // Boxed, and only once a redirect is followed.
    let mut hop: Option<Box<Hop>> = None;
    let mut followed = 0;
    let mut timer: Option<Timer<'_>> = None;
    loop {
        let sending = match &hop {
            Some(hop) => Sending::of(hop),
            None => Sending {
                method: &req.method,
                url: &req.url,
                headers: merged.as_deref().unwrap_or(&req.headers),
                body: req.body.as_ref(),
            },
        };
        // Held until the response is read: under --http2, the stream.
        let lane = client.checkout(sending.url).await;
        // The sending's own locals end with this block, so the attempt's
        // future overlaps them with the body's.
        let mut resp = {
            let mut send = std::pin::pin!(lane.send(
                sending.method,
                sending.url,
                sending.headers,
                sending.body
            ));
            // The clock starts once the connection the request needs is
            // there (see `connecting`): the request is handed to the client
            // first (`biased`), which starts or joins a connect, then the
            // clock waits for the client's connects to settle (only
            // `--http2` lanes wait: over HTTP/1.1 it starts once the request
            // is handed over). A later hop keeps the first hop's clock.
            // Boxed: an exchange that ends at once is rare.
            let mut early: Option<Box<Result<Answer, SendError>>> = None;
            let first = timer.is_none();
            if first {
                let handed = tokio::time::Instant::now();
                early = if lane.waits_for_connects() {
                    // Boxed: rare, and it holds a timer of its own.
                    let connected = Box::pin(lane.connected());
                    tokio::select! {
                        biased;
                        done = send.as_mut() => Some(Box::new(done)),
                        () = connected => None,
                    }
                } else {
                    first_poll(send.as_mut()).await.map(Box::new)
                };
                // An exchange that ended while its lane was still
                // connecting did not wait for that connection.
                let start = if early.is_some() {
                    handed
                } else {
                    tokio::time::Instant::now()
                };
                *sent = Some(start);
                timer = Some(timers.take(deadline(start, limit)));
            }
            let answer = match early {
                Some(done) => Some(*done),
                None => Within::new(send, &mut timer, first).await,
            };
            match answer {
                Some(Ok(resp)) => resp,
                Some(Err(e)) => return Outcome::failed(from_classified(e.classify())),
                None => return Outcome::failed(timed_out(limit, None)),
            }
        };
        let status = resp.status.as_u16();
        if !(100..=599).contains(&status) {
            return Outcome::failed(Failed {
                kind: ErrorKind::Protocol,
                sent: true,
                message: format!("the server answered with status {status}, outside 100-599"),
                status: None,
                local: false,
                headers: None,
            });
        }
        match next_hop(sending, &resp, followed, &config.redactor) {
            Redirect::Follow(next) => {
                hop = Some(next);
                followed += 1;
            }
            Redirect::Stop(note) => {
                let length = resp.content_length();
                let read = read_body(&mut resp.body, length, &resp.headers, config);
                let read = Within::new(std::pin::pin!(read), &mut timer, false).await;
                drop(lane);
                let final_url = (followed > 0).then(|| sending.url.clone());
                return finish(resp, read, config, final_url, note, limit);
            }
        }
    }
}

/// A future raced against the attempt's timer: `None` when the timer fired
/// first. As tokio's `Timeout`, but with the attempt's one timer; like it,
/// the timer is still polled when the work used up the task's budget, so a
/// body that never stops arriving still times out.
struct Within<'t, 'a, F> {
    work: F,
    timer: Clock<'t, 'a>,
    /// `work` was polled in this same poll of the task (the first hop's
    /// [`first_poll`]): its first poll here is skipped, as polling it
    /// again at once would redo its work for nothing (the direct client's
    /// connection I/O, 1 K instructions a request).
    polled: bool,
}

impl<'t, 'a, F: Future + Unpin> Within<'t, 'a, F> {
    fn new(work: F, timer: Clock<'t, 'a>, polled: bool) -> Self {
        Within {
            work,
            timer,
            polled,
        }
    }
}

impl<F: Future + Unpin> Future for Within<'_, '_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let had_budget = tokio::task::coop::has_budget_remaining();
        if !std::mem::take(&mut self.polled)
            && let Poll::Ready(done) = Pin::new(&mut self.work).poll(cx)
        {
            return Poll::Ready(Some(done));
        }
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        let fired = if had_budget && !tokio::task::coop::has_budget_remaining() {
            let timer = std::future::poll_fn(|cx| timer.poll(cx));
            Pin::new(&mut tokio::task::coop::unconstrained(timer)).poll(cx)
        } else {
            timer.poll(cx)
        };
        fired.map(|()| None)
    }
}

/// Run-wide headers, overridden by name by the request's own; `None` when
/// that is just the request's own (no map to clone and search).
fn merged_headers(config: &Config, req: &Request) -> Option<HeaderMap> {
    let adds_type = req.json_body && !req.headers.contains_key(CONTENT_TYPE);
    let adds_coding = config.compressed && !req.headers.contains_key(ACCEPT_ENCODING);
    if config.headers.is_empty() && !adds_type && !adds_coding {
        return None;
    }
    let mut headers = config.headers.clone();
    for name in req.headers.keys() {
        headers.remove(name);
    }
    for (name, value) in &req.headers {
        headers.append(name.clone(), value.clone());
    }
    if req.json_body && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if config.compressed && !headers.contains_key(ACCEPT_ENCODING) {
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(ACCEPTED_CODINGS));
    }
    Some(headers)
}

/// Polls `send` once: hands the request to its client, which starts or
/// joins a connect. Its output if that was enough.
async fn first_poll<F: Future + Unpin>(mut send: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut send).poll(cx) {
            Poll::Ready(done) => Some(done),
            Poll::Pending => None,
        })
    })
    .await
}

enum Redirect {
    Follow(Box<Hop>),
    Stop(Option<String>),
}

/// Decides whether a response is a redirect to follow: at most 10 hops,
/// never from https to http, and a 301/302/303 answer to anything but
/// GET/HEAD is recorded rather than followed.
fn next_hop(hop: Sending<'_>, resp: &Answer, followed: usize, redactor: &Redactor) -> Redirect {
    let status = resp.status.as_u16();
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Redirect::Stop(None);
    }
    let Some(target) = resp
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|loc| hop.url.join(loc).ok())
    else {
        return Redirect::Stop(Some("redirect without a usable Location".into()));
    };
    let keeps_method = matches!(status, 307 | 308);
    let is_get = matches!(*hop.method, Method::GET | Method::HEAD);
    let stop = if followed >= MAX_REDIRECTS {
        Some(format!("stopped after {MAX_REDIRECTS} redirects"))
    } else if !matches!(target.scheme(), "http" | "https") {
        Some(format!(
            "redirect to unsupported scheme `{}` not followed",
            target.scheme()
        ))
    } else if hop.url.scheme() == "https" && target.scheme() == "http" {
        Some("redirect from https to http refused".into())
    } else if !keeps_method && !is_get {
        Some(format!(
            "{status} redirect of a {} request not followed",
            hop.method
        ))
    } else {
        None
    };
    if stop.is_some() {
        return Redirect::Stop(stop);
    }
    let mut headers = hop.headers.clone();
    if target.origin() != hop.url.origin() {
        strip_secrets(&mut headers, redactor);
    }
    Redirect::Follow(Box::new(Hop {
        method: hop.method.clone(),
        url: target,
        headers,
        body: if keeps_method {
            hop.body.cloned()
        } else {
            None
        },
    }))
}

/// Drops every sensitive header before a request leaves its origin.
fn strip_secrets(headers: &mut HeaderMap, redactor: &Redactor) {
    let secret: Vec<_> = headers
        .keys()
        .filter(|k| redactor.is_secret_header(k.as_str()))
        .cloned()
        .collect();
    for name in secret {
        headers.remove(name);
    }
}

/// The outcome of an exchange whose body was read (`Some`) or whose time
/// ran out first (`None`): a plain function, run after the last await, so
/// the attempt's future holds none of it.
fn finish(
    resp: Answer,
    read: Option<Result<Bytes, Failed>>,
    config: &Config,
    final_url: Option<Url>,
    note: Option<String>,
    limit: Duration,
) -> Outcome {
    let status = resp.status.as_u16();
    let transport = transport_of(&resp);
    let headers = resp.headers;
    let bytes = match read {
        Some(Ok(bytes)) => bytes,
        Some(Err(mut failed)) => {
            failed.status = Some(status);
            failed.headers = Some(headers);
            return Outcome::failed(failed);
        }
        None => {
            let mut failed = timed_out(limit, Some(status));
            failed.headers = Some(headers);
            return Outcome::failed(failed);
        }
    };
    let body = ReadBody::new(bytes, config.body_mode, &headers);
    Outcome::Response(Box::new(Response {
        status,
        headers,
        body,
        final_url,
        note,
        transport,
    }))
}

/// The protocol versions of a response, as their RFCs name them.
fn transport_of(resp: &Answer) -> Transport {
    let http_version = match resp.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    };
    Transport {
        http_version,
        tls_version: resp.tls_version,
    }
}

/// The codings `--compressed` asks for, as `Accept-Encoding`.
const ACCEPTED_CODINGS: &str = "gzip, br, zstd";

/// A content coding sluice decodes under `--compressed`.
#[derive(Clone, Copy, Debug)]
enum Coding {
    Gzip,
    Brotli,
    Zstd,
}

/// The coding to undo: only under `--compressed` (sluice asked for it),
/// and only a single coding it knows; anything else is stored as received.
fn coding(headers: &HeaderMap, config: &Config) -> Option<Coding> {
    if !config.compressed {
        return None;
    }
    let value = headers.get(CONTENT_ENCODING)?.to_str().ok()?.trim();
    match value.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Some(Coding::Gzip),
        "br" => Some(Coding::Brotli),
        "zstd" => Some(Coding::Zstd),
        _ => None,
    }
}

/// Reads the whole body, stopping at `max_body_size` decoded bytes without
/// reading the rest (the connection is dropped, not drained). Under
/// `--compressed` the body is decoded here rather than by the client, so
/// the record keeps the response's `content-encoding`; the decoder yields
/// only what is read, so a compression bomb stops at the limit too.
async fn read_body(
    stream: &mut AnswerBody,
    length: Option<u64>,
    headers: &HeaderMap,
    config: &Config,
) -> Result<Bytes, Failed> {
    let max = config.max_body_size;
    let too_large = || Failed {
        kind: ErrorKind::BodyTooLarge,
        sent: true,
        message: format!(
            "response body is larger than {} ({max} bytes)",
            config.name(Setting::MaxBodySize)
        ),
        status: None,
        local: false,
        headers: None,
    };
    let coding = coding(headers, config);
    // A declared length counts only for a body stored as it comes (looked
    // up only then: this runs on every response).
    if length.is_some_and(|n| n > max) && !headers.contains_key(CONTENT_ENCODING) {
        return Err(too_large());
    }
    let Some(coding) = coding else {
        return join_chunks(stream, max, too_large).await;
    };
    let raw = tokio_util::io::StreamReader::new(stream);
    let mut reader: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Gzip => Box::pin(GzipDecoder::new(raw)),
        Coding::Brotli => Box::pin(BrotliDecoder::new(raw)),
        Coding::Zstd => Box::pin(ZstdDecoder::new(raw)),
    };
    // `read_buf` fills spare capacity without zeroing it first.
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(16 * 1024);
        match reader.read_buf(&mut buf).await {
            Ok(0) => return Ok(buf.freeze()),
            Ok(_) if buf.len() as u64 > max => return Err(too_large()),
            Ok(_) => {}
            Err(e) => return Err(body_failure(e, Some(coding))),
        }
    }
}

/// The chunks of a body that needs no decoding, joined. A body that came
/// in one chunk (most small responses) is kept as it arrived, not copied.
async fn join_chunks(
    stream: &mut (impl futures::Stream<Item = io::Result<Bytes>> + Unpin),
    max: u64,
    too_large: impl Fn() -> Failed,
) -> Result<Bytes, Failed> {
    let mut first = Bytes::new();
    let mut joined = BytesMut::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| body_failure(e, None))? {
        if (first.len() + joined.len() + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        if first.is_empty() && joined.is_empty() {
            first = chunk;
        } else {
            joined.extend_from_slice(&std::mem::take(&mut first));
            joined.extend_from_slice(&chunk);
        }
    }
    Ok(if joined.is_empty() {
        first
    } else {
        joined.freeze()
    })
}

/// A failure while reading the body: the transport's own error, or a body
/// that does not decode (`protocol`).
fn body_failure(e: io::Error, coding: Option<Coding>) -> Failed {
    if let Some(c) = SendError::classify_body(&e) {
        return from_classified(c);
    }
    let what = match coding {
        Some(c) => format!("could not decode the {c:?} response body: {e}"),
        None => format!("error reading the response body: {e}"),
    };
    Failed {
        kind: ErrorKind::Protocol,
        sent: true,
        message: what,
        status: None,
        local: false,
        headers: None,
    }
}

/// A transport failure as the attempt's failure.
fn from_classified(c: Classified) -> Failed {
    Failed {
        kind: c.kind,
        sent: c.sent,
        message: c.message,
        status: None,
        local: c.local,
        headers: None,
    }
}

/// A response body as read, converted to its stored form ([`Body`]) only
/// where its record is made. In a run split over two threads the attempt
/// runs on the worker, the busier thread, and the record is made on the
/// driver's: checking a 4 KiB answer's UTF-8 and JSON and copying it there
/// takes that work off the worker (the bytes cross either way, in a
/// pointer).
#[derive(Debug)]
pub struct ReadBody(Kept);

#[derive(Debug)]
enum Kept {
    /// Bytes to store under `mode`; `json` when the response declared JSON.
    Bytes {
        bytes: Bytes,
        mode: BodyMode,
        json: bool,
    },
    /// Already stored.
    Stored(Body),
}

impl ReadBody {
    /// The body of a response with `headers`, to be stored under `mode`;
    /// `None` under `--body none` (nothing kept).
    pub fn new(bytes: Bytes, mode: BodyMode, headers: &HeaderMap) -> Option<ReadBody> {
        if mode == BodyMode::None {
            return None;
        }
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(declares_json);
        Some(ReadBody(Kept::Bytes { bytes, mode, json }))
    }

    /// The body in its stored form, as [`store`] makes it.
    pub fn store(self) -> Option<Body> {
        match self.0 {
            Kept::Bytes { bytes, mode, json } => store_as(bytes, mode, json),
            Kept::Stored(body) => Some(body),
        }
    }

    /// The body's text when it would be stored as JSON or text (for the
    /// `usage` of token-limited origins); `None` for a body stored as
    /// base64.
    pub fn text(&self) -> Option<&str> {
        match &self.0 {
            Kept::Bytes { mode, .. } if *mode == BodyMode::Base64 => None,
            Kept::Bytes { bytes, .. } => crate::utf8::text(bytes).ok(),
            Kept::Stored(Body::Json(raw)) => Some(raw.get()),
            Kept::Stored(Body::Text(text)) => Some(text),
            Kept::Stored(Body::Base64(_)) => None,
        }
    }
}

impl From<Body> for ReadBody {
    /// A body already in its stored form.
    fn from(body: Body) -> ReadBody {
        ReadBody(Kept::Stored(body))
    }
}

/// Converts a body to its stored form under `mode`: under `auto`, JSON as
/// JSON, else UTF-8 text, else base64; nothing is ever lost.
pub fn store(bytes: Bytes, mode: BodyMode, content_type: Option<&str>) -> Option<Body> {
    store_as(bytes, mode, content_type.is_some_and(declares_json))
}

/// [`store`], with whether the response declared JSON already decided.
fn store_as(bytes: Bytes, mode: BodyMode, declared_json: bool) -> Option<Body> {
    let b64 = |b: &[u8]| Body::Base64(base64::engine::general_purpose::STANDARD.encode(b));
    match mode {
        BodyMode::None => None,
        BodyMode::Base64 => Some(b64(&bytes)),
        BodyMode::Text => Some(match crate::utf8::text(&bytes) {
            Ok(text) => Body::Text(text.to_owned()),
            Err(_) => b64(&bytes),
        }),
        BodyMode::Auto => Some(match json_body(&bytes, declared_json) {
            Some(json) => json,
            None => match crate::utf8::text(&bytes) {
                Ok(text) => Body::Text(text.to_owned()),
                Err(_) => b64(&bytes),
            },
        }),
    }
}

/// The body as embedded JSON, when it is UTF-8 and JSON: declared so, or
/// an object or array. Whitespace is removed so the record stays one line;
/// numbers keep their digits because the text is never re-encoded. Checked
/// as bytes: the JSON check finds whether they are ASCII on the way, and
/// UTF-8 needs a pass of its own only when they are not.
fn json_body(bytes: &[u8], declared: bool) -> Option<Body> {
    // JSON's own whitespace: text with other whitespace before its bracket
    // (where `str::trim_start` would go on) is not JSON either way.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\t' | b'\r'));
    if !declared && !matches!(first, Some(b'{' | b'[')) {
        return None;
    }
    // The text as received is checked, not its compact copy: compacting
    // can turn non-JSON such as `[1 2 3]` into JSON (`[123]`).
    JsonText::from_bytes(bytes).map(Body::Json)
}

/// Whether a content type names JSON (`application/json`, `...+json`), in
/// any case. A scan of its bytes: lower-casing a copy and searching it
/// cost more than the rest of storing a small body.
fn declares_json(content_type: &str) -> bool {
    (content_type.as_bytes().windows(4)).any(|w| w.eq_ignore_ascii_case(b"json"))
}

/// Response headers as recorded: lower-case names, repeated values joined,
/// secrets redacted.
pub fn recorded_headers(headers: &HeaderMap, redactor: &Redactor) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let shown = redactor.header_value(name.as_str(), &joined).to_string();
        out.push((name.as_str().to_string(), shown));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_digits_and_loses_whitespace() {
        let body = store(
            Bytes::from_static(b"{\n  \"a\": 1.000,\n  \"b\": \"x y\\\" z\",\n  \"n\": 12345678901234567890123\n}\n"),
            BodyMode::Auto,
            Some("application/json"),
        );
        match body {
            Some(Body::Json(raw)) => {
                assert_eq!(
                    raw.get(),
                    r#"{"a":1.000,"b":"x y\" z","n":12345678901234567890123}"#
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// A body stored where its record is made is the body `store` makes
    /// in the attempt, in every mode; its text is what a token-limited
    /// origin reads `usage` from.
    #[test]
    fn a_read_body_stores_as_store_does() {
        let bodies: [&[u8]; 5] = [b"{ \"a\": 1 }", b"[1 2]", b"hello", b"", &[0xff, 0x00]];
        let types = [None, Some("application/json"), Some("text/plain")];
        let modes = [
            BodyMode::Auto,
            BodyMode::Text,
            BodyMode::Base64,
            BodyMode::None,
        ];
        for (bytes, content_type, mode) in every_case(&bodies, &types, &modes) {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            let bytes = Bytes::copy_from_slice(bytes);
            let read = ReadBody::new(bytes.clone(), mode, &headers);
            let text = read.as_ref().and_then(ReadBody::text).map(str::to_owned);
            let stored = read.and_then(ReadBody::store);
            let wanted = match mode {
                BodyMode::Base64 | BodyMode::None => None,
                _ => std::str::from_utf8(&bytes).ok().map(str::to_owned),
            };
            assert_eq!(
                stored,
                store(bytes, mode, content_type),
                "{content_type:?} {mode:?}"
            );
            assert_eq!(text, wanted, "{content_type:?} {mode:?}");
        }
        let stored = ReadBody::from(Body::Text("x".into()));
        assert_eq!(stored.text(), Some("x"));
        assert_eq!(stored.store(), Some(Body::Text("x".into())));
    }

    /// `store` under `auto` as it was before the JSON check learned to
    /// tell ASCII: UTF-8 first, then JSON when declared or when the text
    /// trimmed of any whitespace opens an object or array.
    fn store_text_first(bytes: &[u8], declared: bool) -> Body {
        let b64 = |b: &[u8]| Body::Base64(base64::engine::general_purpose::STANDARD.encode(b));
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                let opens = text.trim_start().starts_with(['{', '[']);
                let json = (declared || opens).then(|| JsonText::parse(text)).flatten();
                json.map_or_else(|| Body::Text(text.to_owned()), Body::Json)
            }
            Err(_) => b64(bytes),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Random JSON text, damaged or not, after whitespace JSON has or
        /// lacks, is stored as the text-first way stored it.
        #[test]
        fn auto_stores_bytes_as_the_text_first_way_did(
            lead in proptest::sample::select(vec!["", " ", "\t\r\n", "\u{a0}", "\u{b}", "\u{2028} ", "x"]),
            text in crate::json_text::tests::json_text(),
            damages in proptest::collection::vec(crate::json_text::tests::damage(), 0..2),
            content_type in proptest::sample::select(vec![None, Some("application/json"), Some("text/plain")]),
        ) {
            let mut bytes = format!("{lead}{text}").into_bytes();
            for d in &damages {
                bytes = crate::json_text::tests::apply(&String::from_utf8_lossy(&bytes), d);
            }
            let declared = content_type.is_some_and(declares_json);
            proptest::prop_assert_eq!(
                store(Bytes::from(bytes.clone()), BodyMode::Auto, content_type),
                Some(store_text_first(&bytes, declared)),
                "{:?}", String::from_utf8_lossy(&bytes)
            );
        }
    }

    fn every_case<'a>(
        bodies: &'a [&'a [u8]],
        types: &'a [Option<&'static str>],
        modes: &'a [BodyMode],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'static str>, BodyMode)> + 'a {
        bodies.iter().flat_map(move |&b| {
            types
                .iter()
                .flat_map(move |&t| modes.iter().map(move |&m| (b, t, m)))
        })
    }

    #[test]
    fn json_is_declared_in_any_case() {
        for ct in [
            "application/json",
            "application/problem+JSON",
            "text/Json; x=1",
        ] {
            assert!(declares_json(ct), "{ct}");
        }
        for ct in ["text/plain", "application/jso", "", "js on"] {
            assert!(!declares_json(ct), "{ct}");
        }
    }

    #[test]
    fn auto_picks_text_and_base64() {
        assert_eq!(
            store(
                Bytes::from_static(b"hello"),
                BodyMode::Auto,
                Some("text/plain")
            ),
            Some(Body::Text("hello".into()))
        );
        assert_eq!(
            store(
                Bytes::from_static(b"42"),
                BodyMode::Auto,
                Some("text/plain")
            ),
            Some(Body::Text("42".into()))
        );
        assert_eq!(
            store(Bytes::from_static(&[0xff, 0x00]), BodyMode::Auto, None),
            Some(Body::Base64("/wA=".into()))
        );
        assert_eq!(
            store(
                Bytes::from_static(b"{broken"),
                BodyMode::Auto,
                Some("application/json")
            ),
            Some(Body::Text("{broken".into()))
        );
        assert_eq!(store(Bytes::from_static(b"x"), BodyMode::None, None), None);
        assert_eq!(
            store(Bytes::from_static(b"{}"), BodyMode::Text, None),
            Some(Body::Text("{}".into()))
        );
        assert_eq!(
            store(Bytes::from_static(b"hi"), BodyMode::Base64, None),
            Some(Body::Base64("aGk=".into()))
        );
    }
}
