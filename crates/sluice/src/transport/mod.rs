//! How one HTTP request goes out and its answer comes back, whichever client
//! carries it: the engine's own HTTP/1.1 client ([`direct`]: hyper's
//! connection API and a per-origin pool of its own) for origins reached
//! without a proxy, or reqwest (`--http2` lanes, proxies, URLs with user
//! information). [`crate::client`] chooses; [`crate::attempt`] sees only an
//! [`Answer`] or a [`SendError`].

pub mod direct;
mod pool;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, StatusCode, Version};

use crate::classify::{Classified, Phase, classify, classify_in};

/// The head of a response, and its body still to read.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The HTTP version that carried it.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// `TLSv1.3`, `TLSv1.2`, ...; `None` over plain HTTP.
    pub tls_version: Option<&'static str>,
    /// The body, read as a stream of chunks.
    pub body: AnswerBody,
}

impl Answer {
    /// A reqwest response, its head taken apart.
    pub(crate) fn from_reqwest(mut resp: reqwest::Response) -> Answer {
        let tls_version = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::version)
            .and_then(|v| match v {
                reqwest::tls::Version::TLS_1_0 => Some("TLSv1.0"),
                reqwest::tls::Version::TLS_1_1 => Some("TLSv1.1"),
                reqwest::tls::Version::TLS_1_2 => Some("TLSv1.2"),
                reqwest::tls::Version::TLS_1_3 => Some("TLSv1.3"),
                _ => None,
            });
        Answer {
            status: resp.status(),
            version: resp.version(),
            headers: std::mem::take(resp.headers_mut()),
            tls_version,
            body: AnswerBody::Reqwest(Box::pin(resp.bytes_stream())),
        }
    }

    /// The body's length, when the server declared it.
    pub fn content_length(&self) -> Option<u64> {
        match &self.body {
            AnswerBody::Reqwest(_) => self
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            AnswerBody::Direct(body) => body.content_length(),
        }
    }
}

type ReqwestStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A response body as chunks of bytes; its errors are `io::Error`s around
/// the client's own error (a [`BodyError`] for the direct client), which
/// [`SendError::classify_body`] reads back.
pub enum AnswerBody {
    /// reqwest's body stream.
    Reqwest(ReqwestStream),
    /// The direct client's body, which gives its connection back to the
    /// pool once read to the end.
    Direct(direct::Body),
}

impl std::fmt::Debug for AnswerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerBody::Reqwest(_) => f.write_str("AnswerBody::Reqwest"),
            AnswerBody::Direct(_) => f.write_str("AnswerBody::Direct"),
        }
    }
}

impl Stream for AnswerBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        match self.get_mut() {
            AnswerBody::Reqwest(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|o| o.map(|r| r.map_err(io::Error::other))),
            AnswerBody::Direct(body) => Pin::new(body)
                .poll_next(cx)
                .map(|o| o.map(|r| r.map_err(|e| io::Error::other(BodyError(e))))),
        }
    }
}

/// An error of the direct client while reading a body: hyper's error,
/// marked so that classification knows the response had begun.
#[derive(Debug, thiserror::Error)]
#[error("error reading the response body")]
pub struct BodyError(#[source] pub hyper::Error);

/// A request that got no response head.
#[derive(Debug)]
pub enum SendError {
    /// From reqwest.
    Reqwest(reqwest::Error),
    /// From the direct client.
    Direct(direct::Error),
}

impl SendError {
    /// The record's error kind, whether it was sent, and what happened.
    pub fn classify(&self) -> Classified {
        match self {
            SendError::Reqwest(e) => classify(e),
            SendError::Direct(e) => classify_in(e, e.phase()),
        }
    }

    /// Classifies a body read's `io::Error` from [`AnswerBody`]; `None` when
    /// it is not a transport error (a decoder's own).
    pub fn classify_body(e: &io::Error) -> Option<Classified> {
        let inner = e.get_ref()?;
        if let Some(r) = inner.downcast_ref::<reqwest::Error>() {
            return Some(classify(r));
        }
        inner
            .downcast_ref::<BodyError>()
            .map(|b| classify_in(b, Phase::Body))
    }
}
