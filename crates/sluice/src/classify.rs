//! One classifier for transport failures: it walks the error's source chain
//! once and decides the record's error kind and whether the request may have
//! reached the server. A body-phase timeout can hide under a "decode" or
//! "body" error in reqwest, so no single predicate is trusted.

use std::error::Error as StdError;
use std::io;

use crate::record::ErrorKind;

/// The resolver's own error, so that DNS failures are found by type.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve host `{host}`: {reason}")]
pub struct DnsError {
    /// The host name that failed.
    pub host: String,
    /// What the resolver said.
    pub reason: String,
}

/// A classified transport failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The error kind written in the record.
    pub kind: ErrorKind,
    /// False only when the request provably never reached the server.
    pub sent: bool,
    /// A short explanation without URLs or header values.
    pub message: String,
    /// The cause is on this machine (out of file descriptors), not the server.
    pub local: bool,
}

/// Where in an exchange a failure happened, which decides what some errors
/// mean (an I/O error while connecting means nothing was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Resolving, connecting, the TLS handshake.
    Connect,
    /// Writing the request, waiting for the response head.
    Exchange,
    /// Reading the response body.
    Body,
}

/// Classifies a reqwest error (or anything with the same source chain),
/// the phase read from reqwest's own error.
pub fn classify(err: &(dyn StdError + 'static)) -> Classified {
    let top = err.downcast_ref::<reqwest::Error>();
    let phase = if top.is_some_and(reqwest::Error::is_connect) {
        Phase::Connect
    } else if top.is_some_and(|r| r.is_body() || r.is_decode()) {
        Phase::Body
    } else {
        Phase::Exchange
    };
    classify_in(err, phase)
}

/// Classifies an error of a known phase (the direct client's, whose
/// errors are hyper's, io's and rustls's under its own).
pub fn classify_in(err: &(dyn StdError + 'static), phase: Phase) -> Classified {
    let connect_phase = phase == Phase::Connect;
    let body_phase = phase == Phase::Body;
    let found = chain(err).find_map(|e| classify_one(e, connect_phase));
    let (mut kind, sent) = found.unwrap_or_else(|| fallback(err, phase));
    // An early end of the stream is a truncated body once the response has
    // begun; before it (a TLS peer closing without close_notify), it is the
    // connection going away.
    if kind == ErrorKind::Protocol && !body_phase && is_unexpected_eof(err) {
        kind = ErrorKind::Reset;
    }
    let local = out_of_descriptors(err);
    let mut message = describe(err);
    if local {
        message.push_str(
            ": the process ran out of file descriptors; raise the open-file limit (ulimit -n) or lower -c",
        );
    }
    Classified {
        kind,
        sent: sent && !local,
        message,
        local,
    }
}

/// The error and its sources, outermost first: the one walk over a chain.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// Looks at one link of the chain; `None` means "ask the next link".
fn classify_one(e: &(dyn StdError + 'static), connect_phase: bool) -> Option<(ErrorKind, bool)> {
    if e.is::<DnsError>() {
        return Some((ErrorKind::Dns, false));
    }
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some((tls_kind(tls), false));
    }
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        return h2_kind(h2);
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        // io::Error::source() skips the error it wraps, so look inside
        // (TLS failures arrive as an io::Error around an io::Error around
        // the rustls error).
        if let Some(hit) = io
            .get_ref()
            .and_then(|inner| classify_one(inner, connect_phase))
        {
            return Some(hit);
        }
        return io_kind(io, connect_phase);
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        return hyper_kind(h, connect_phase);
    }
    None
}

/// HTTP/2 errors, judged by who raised them. The server's own refusals
/// say the request was not processed (RFC 9113): `REFUSED_STREAM` (section
/// 8.7), and a graceful GOAWAY (`NO_ERROR`), which h2 reports only on the
/// streams above the GOAWAY's last stream id (section 6.8). Any other reset
/// or GOAWAY from the server is the server aborting the exchange: `reset`,
/// as the same abort is on HTTP/1.1 (a connection closed before the
/// response). Only an error our side detected in the server's frames is
/// `protocol`.
fn h2_kind(e: &h2::Error) -> Option<(ErrorKind, bool)> {
    if e.is_io() {
        return None; // The io error below says more.
    }
    let reason = e.reason();
    if reason == Some(h2::Reason::REFUSED_STREAM) {
        return Some((ErrorKind::Reset, false));
    }
    if e.is_go_away() && e.is_remote() && reason == Some(h2::Reason::NO_ERROR) {
        return Some((ErrorKind::Reset, false));
    }
    if e.is_remote() {
        return Some((ErrorKind::Reset, true));
    }
    let kind = match reason {
        Some(
            h2::Reason::PROTOCOL_ERROR
            | h2::Reason::FRAME_SIZE_ERROR
            | h2::Reason::COMPRESSION_ERROR
            | h2::Reason::FLOW_CONTROL_ERROR,
        ) => ErrorKind::Protocol,
        _ => ErrorKind::Reset,
    };
    Some((kind, true))
}

fn is_unexpected_eof(err: &(dyn StdError + 'static)) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::UnexpectedEof)
    })
}

/// EMFILE, ENFILE: no socket could be made here, whatever the server is like.
fn out_of_descriptors(err: &(dyn StdError + 'static)) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(io.raw_os_error(), Some(24 | 23))
                // io::Error::source() skips the error it wraps.
                || io.get_ref().is_some_and(|inner| out_of_descriptors(inner))
        })
    })
}

fn tls_kind(e: &rustls::Error) -> ErrorKind {
    match e {
        rustls::Error::InvalidCertificate(_) => ErrorKind::Tls,
        _ => ErrorKind::Connect,
    }
}

fn io_kind(e: &io::Error, connect_phase: bool) -> Option<(ErrorKind, bool)> {
    use io::ErrorKind as K;
    let kind = match e.kind() {
        K::TimedOut if connect_phase => ErrorKind::Connect,
        K::TimedOut => ErrorKind::Timeout,
        _ if connect_phase => ErrorKind::Connect,
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
            ErrorKind::Connect
        }
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
            ErrorKind::Reset
        }
        K::UnexpectedEof => ErrorKind::Protocol,
        // Other io errors carry their cause further down the chain.
        _ if e.get_ref().is_some() => return None,
        _ => ErrorKind::Reset,
    };
    Some((kind, !connect_phase))
}

/// hyper's own account of the exchange. It knows whether a request was
/// handed to a connection and written: a request it gives back unsent
/// (`is_canceled`: the connection closed before the request went out, or
/// was not ready) and a request it never dispatched (`is_user`: for a client
/// with in-memory bodies, hyper's only user errors are refusals before the
/// request is written, such as "dispatch task is gone" when an HTTP/2
/// connection ends under a request still waiting for a stream) were not
/// sent.
fn hyper_kind(e: &hyper::Error, connect_phase: bool) -> Option<(ErrorKind, bool)> {
    if connect_phase {
        return Some((ErrorKind::Connect, false));
    }
    if e.is_canceled() || e.is_user() {
        return Some((ErrorKind::Reset, false));
    }
    if e.is_timeout() {
        return Some((ErrorKind::Timeout, true));
    }
    if e.is_parse() || e.is_parse_status() {
        return Some((ErrorKind::Protocol, true));
    }
    if e.is_incomplete_message() {
        return Some((ErrorKind::Reset, true));
    }
    // Body, h2 and io errors have a more precise cause further down.
    if e.source().is_some() {
        return None;
    }
    Some((ErrorKind::Protocol, true))
}

fn fallback(err: &(dyn StdError + 'static), phase: Phase) -> (ErrorKind, bool) {
    if phase == Phase::Connect {
        return (ErrorKind::Connect, false);
    }
    match err.downcast_ref::<reqwest::Error>() {
        Some(r) if r.is_timeout() => (ErrorKind::Timeout, true),
        _ if phase == Phase::Body => (ErrorKind::Protocol, true),
        _ => (ErrorKind::Reset, true),
    }
}

/// The chain's messages joined, without the URL reqwest puts in its own.
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = match e.downcast_ref::<reqwest::Error>() {
            Some(r) => reqwest_text(r),
            None => e.to_string(),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        return "request failed".into();
    }
    parts.join(": ")
}

fn reqwest_text(r: &reqwest::Error) -> String {
    if r.is_connect() {
        "could not connect".into()
    } else if r.is_timeout() {
        "timed out".into()
    } else if r.is_body() || r.is_decode() {
        "error reading the response body".into()
    } else if r.is_request() {
        "error sending the request".into()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Box<dyn StdError + Send + Sync>);

    fn io(kind: io::ErrorKind) -> Outer {
        Outer(Box::new(io::Error::new(kind, "x")))
    }

    #[test]
    fn table() {
        let cases: Vec<(Outer, ErrorKind, bool)> = vec![
            (
                io(io::ErrorKind::ConnectionRefused),
                ErrorKind::Connect,
                true,
            ),
            (io(io::ErrorKind::ConnectionReset), ErrorKind::Reset, true),
            (io(io::ErrorKind::BrokenPipe), ErrorKind::Reset, true),
            (io(io::ErrorKind::TimedOut), ErrorKind::Timeout, true),
            // Outside a body read (no reqwest body error above it), an early EOF is
            // the connection going away.
            (io(io::ErrorKind::UnexpectedEof), ErrorKind::Reset, true),
            (
                Outer(Box::new(DnsError {
                    host: "nx.invalid".into(),
                    reason: "no such host".into(),
                })),
                ErrorKind::Dns,
                false,
            ),
            (
                Outer(Box::new(io::Error::other(
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ))),
                ErrorKind::Tls,
                false,
            ),
            (
                Outer(Box::new(io::Error::other(io::Error::new(
                    io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
                )))),
                ErrorKind::Tls,
                false,
            ),
            (
                Outer(Box::new(rustls::Error::HandshakeNotComplete)),
                ErrorKind::Connect,
                false,
            ),
            (
                Outer(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM))),
                ErrorKind::Reset,
                false,
            ),
            (
                Outer(Box::new(h2::Error::from(h2::Reason::PROTOCOL_ERROR))),
                ErrorKind::Protocol,
                true,
            ),
            (
                Outer(Box::new(io::Error::from_raw_os_error(24))),
                ErrorKind::Reset,
                false,
            ),
        ];
        for (err, kind, sent) in cases {
            let c = classify(&err);
            assert_eq!((c.kind, c.sent), (kind, sent), "{:?}", err);
        }
    }

    #[test]
    fn dns_message_names_the_host() {
        let c = classify(&Outer(Box::new(DnsError {
            host: "nx.invalid".into(),
            reason: "no such host".into(),
        })));
        assert!(c.message.contains("nx.invalid"), "{}", c.message);
    }

    /// What the server does to the first request of each connection.
    #[derive(Clone, Copy, Debug)]
    enum H2Act {
        /// RST_STREAM with this error code.
        Reset(u32),
        /// GOAWAY with this last stream id and error code, then close.
        GoAway(u32, u32),
    }

    /// A raw HTTP/2 server on 127.0.0.1 that answers each request's HEADERS
    /// with `act`: the frames nginx and others send, byte for byte.
    async fn raw_h2(act: H2Act) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let frame = |ty: u8, flags: u8, stream: u32, payload: &[u8]| {
                        let len = payload.len() as u32;
                        let mut f = len.to_be_bytes()[1..].to_vec();
                        f.extend([ty, flags]);
                        f.extend(stream.to_be_bytes());
                        f.extend(payload);
                        f
                    };
                    let _ = s.write_all(&frame(4, 0, 0, &[])).await;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut pos = 24; // the client preface
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while buf.len() >= pos + 9 {
                            let len = u32::from_be_bytes([0, buf[pos], buf[pos + 1], buf[pos + 2]])
                                as usize;
                            if buf.len() < pos + 9 + len {
                                break;
                            }
                            let (ty, flags) = (buf[pos + 3], buf[pos + 4]);
                            let id = u32::from_be_bytes(buf[pos + 5..pos + 9].try_into().unwrap())
                                & 0x7fff_ffff;
                            pos += 9 + len;
                            let reply = match (ty, act) {
                                (4, _) if flags & 1 == 0 => frame(4, 1, 0, &[]),
                                (6, _) if flags & 1 == 0 => frame(6, 1, 0, &buf[pos - len..pos]),
                                (1, H2Act::Reset(code)) => frame(3, 0, id, &code.to_be_bytes()),
                                (1, H2Act::GoAway(last, code)) => {
                                    let mut p = last.to_be_bytes().to_vec();
                                    p.extend(code.to_be_bytes());
                                    let _ = s.write_all(&frame(7, 0, 0, &p)).await;
                                    // Close only our side and read until the
                                    // client closes: dropping a socket with
                                    // unread bytes sends an RST, which a slow
                                    // client may see before the GOAWAY.
                                    let _ = s.shutdown().await;
                                    let drain = async {
                                        while s.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
                                    };
                                    let _ = tokio::time::timeout(
                                        std::time::Duration::from_secs(5),
                                        drain,
                                    )
                                    .await;
                                    return;
                                }
                                _ => continue,
                            };
                            let _ = s.write_all(&reply).await;
                        }
                    }
                });
            }
        });
        url
    }

    async fn fail(config: &crate::config::Config, url: &str) -> Classified {
        let clients = crate::client::build(config).unwrap();
        let url = url::Url::parse(url).unwrap();
        let lane = clients.checkout(&url).await;
        let body = bytes::Bytes::from_static(b"x");
        let err = lane
            .send(
                &http::Method::POST,
                &url,
                &http::HeaderMap::new(),
                Some(&body),
            )
            .await
            .expect_err("the exchange fails");
        err.classify()
    }

    /// The errors hyper and h2 really produce, end to end through reqwest:
    /// the kind, and "was it sent" from hyper's and h2's own account.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hyper_and_h2_errors() {
        let mock = sluice_mock::MockServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let h1 = crate::config::Config::default();
        let h2 = crate::config::Config {
            http2: true,
            ..crate::config::Config::default()
        };
        let base = mock.url();
        let cases: Vec<(&str, &crate::config::Config, String, ErrorKind, bool)> = vec![
            // hyper: connection closed before the response (IncompleteMessage).
            (
                "h1 abort",
                &h1,
                format!("{base}/abort"),
                ErrorKind::Reset,
                true,
            ),
            // h2: RST_STREAM PROTOCOL_ERROR from the server before any response.
            (
                "h2 abort",
                &h2,
                format!("{base}/abort"),
                ErrorKind::Reset,
                true,
            ),
            (
                "h1 rst",
                &h1,
                format!("{base}/reset"),
                ErrorKind::Reset,
                true,
            ),
            (
                "refused stream",
                &h2,
                raw_h2(H2Act::Reset(0x7)).await,
                ErrorKind::Reset,
                false,
            ),
            (
                "internal error",
                &h2,
                raw_h2(H2Act::Reset(0x2)).await,
                ErrorKind::Reset,
                true,
            ),
            (
                "graceful goaway above the stream",
                &h2,
                raw_h2(H2Act::GoAway(0, 0)).await,
                ErrorKind::Reset,
                false,
            ),
            (
                "goaway with an error",
                &h2,
                raw_h2(H2Act::GoAway(1, 0x2)).await,
                ErrorKind::Reset,
                true,
            ),
        ];
        for (name, config, url, kind, sent) in cases {
            let c = fail(config, &url).await;
            assert_eq!((c.kind, c.sent), (kind, sent), "{name}: {}", c.message);
        }
        mock.shutdown().await;
    }

    /// hyper gives back a request it never wrote (`is_canceled`): here the
    /// connection is gone before the request is handed to it.
    #[tokio::test]
    async fn hyper_canceled_is_not_sent() {
        let (client, server) = tokio::io::duplex(1024);
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, String>(
            hyper_util::rt::TokioIo::new(client),
        )
        .await
        .unwrap();
        drop(server);
        let _ = conn.await;
        let err = send
            .send_request(http::Request::new(String::from("x")))
            .await
            .expect_err("no connection");
        assert!(err.is_canceled(), "{err}");
        let c = classify(&Outer(Box::new(err)));
        assert_eq!((c.kind, c.sent), (ErrorKind::Reset, false), "{}", c.message);
    }
}
