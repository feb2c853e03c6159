//! The engine's own HTTP/1.1 client, for origins reached without a proxy:
//! hyper's connection API (`hyper::client::conn::http1`) over a TCP or
//! rustls stream, and the engine's pool (`pool`). It does what
//! reqwest's client did for these requests — resolve with typed DNS errors,
//! connect within the connect timeout, send the run's User-Agent and
//! `Accept: */*`, reuse kept-alive connections, resend a request a reused
//! connection gave back unsent — with none of its per-request work (URL
//! parses, redirect and retry layers, boxing), and never more connections
//! to an origin than requests in flight to it. A connection has no task of
//! its own: the attempt holding it polls its I/O (`pool::Conn::drive`)
//! while it waits for the response and reads the body.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Url;

use super::pool::{Conn, Io, Key, Pool, Shared, Socket};
use super::{Answer, AnswerBody};
use crate::classify::{DnsError, Phase};
use crate::client::{BoxError, ClientError};
use crate::config::{Config, TlsConfig};

/// The direct client of a run; clones share its pool.
#[derive(Clone)]
pub struct Direct(Arc<Inner>);

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

struct Inner {
    pool: Arc<Pool>,
    tls: Tls,
    connect_timeout: Duration,
    user_agent: HeaderValue,
}

/// The rustls configuration, built when the first `https://` origin is
/// met: loading the platform's trusted certificates costs milliseconds of
/// CPU that a plain-HTTP run need not pay. Settings that can be wrong (a
/// CA file, a client certificate) are checked when the client is built.
struct Tls {
    settings: TlsConfig,
    built: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

impl Tls {
    fn connector(&self) -> Result<&tokio_rustls::TlsConnector, BoxError> {
        self.built
            .get_or_init(|| {
                crate::trust::client_config(&self.settings, &[b"http/1.1"])
                    .map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
                    .map_err(|e| match std::error::Error::source(&e) {
                        Some(cause) => format!("{e}: {cause}"),
                        None => e.to_string(),
                    })
            })
            .as_ref()
            .map_err(|e| e.clone().into())
    }
}

/// A failure before a response head arrived, with the phase it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{}", match .phase {
    Phase::Connect => "could not connect",
    _ => "error sending the request",
})]
pub struct Error {
    phase: Phase,
    #[source]
    source: BoxError,
}

impl Error {
    /// Where in the exchange it failed.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn connect(source: impl Into<BoxError>) -> Error {
        Error {
            phase: Phase::Connect,
            source: source.into(),
        }
    }

    fn exchange(source: impl Into<BoxError>) -> Error {
        Error {
            phase: Phase::Exchange,
            source: source.into(),
        }
    }
}

impl Direct {
    /// The direct client for `config`.
    ///
    /// # Errors
    ///
    /// When the User-Agent is not a valid header value, or a CA file or
    /// client certificate given cannot be used ([`ClientError`]).
    pub fn new(config: &Config, connect_timeout: Duration) -> Result<Direct, ClientError> {
        let user_agent =
            HeaderValue::from_str(&config.user_agent).map_err(|e| ClientError::Build(e.into()))?;
        let tls = Tls {
            settings: config.tls.clone(),
            built: OnceLock::new(),
        };
        if !config.tls.ca_pem.is_empty() || config.tls.identity_pem.is_some() {
            let built = crate::trust::client_config(&config.tls, &[b"http/1.1"])?;
            let _ = tls
                .built
                .set(Ok(tokio_rustls::TlsConnector::from(Arc::new(built))));
        }
        Ok(Direct(Arc::new(Inner {
            pool: Pool::new(config.pool_idle_timeout),
            tls,
            connect_timeout,
            user_agent,
        })))
    }

    /// Sends one request and returns its response head; the body is read
    /// from the [`Answer`], and its connection goes back to the pool once
    /// the body has been read to its end.
    ///
    /// # Errors
    ///
    /// When no connection could be made, or the request got no response
    /// head ([`Error`], with its phase for classification).
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<Answer, Error> {
        let key = Key::of(url);
        loop {
            let (mut conn, reused) = match self.idle(key).await {
                Some(conn) => (conn, true),
                // Boxed: a connect's future (TLS) is large, and it would
                // otherwise make every attempt's future as large.
                None => (Box::pin(self.connect(key, url)).await?, false),
            };
            let uri = conn.shared.target(url).map_err(Error::exchange)?;
            let request = request(method, uri, url, headers, body, &conn.shared.head);
            let response = conn.sender.send_request(request);
            match carried(&mut conn, response).await {
                Ok(response) => return Ok(self.answer(response, conn)),
                // hyper gave the request back unwritten: a kept-alive
                // connection was closing. Another connection may carry it.
                Err(e) if e.is_canceled() && reused => {}
                Err(e) => return Err(Error::exchange(e)),
            }
        }
    }

    /// An idle connection to `key` that is ready for a request; those that
    /// are not are dropped (closed).
    async fn idle(&self, key: Key<'_>) -> Option<Conn> {
        loop {
            let mut conn = self.0.pool.take(key, Instant::now())?;
            if poll_fn(|cx| Poll::Ready(conn.ready(cx))).await {
                return Some(conn);
            }
        }
    }

    fn answer(&self, response: http::Response<Incoming>, conn: Conn) -> Answer {
        let (parts, incoming) = response.into_parts();
        let keep_alive = parts.version == Version::HTTP_11
            && !parts.headers.get_all(CONNECTION).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
            });
        let tls_version = conn.tls_version;
        Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            tls_version,
            body: AnswerBody::Direct(Body {
                incoming,
                conn: Some(conn),
                back: keep_alive.then(|| Arc::clone(&self.0)),
            }),
        }
    }

    /// A new connection to `key`: resolve, TCP, TLS for `https`, hyper's
    /// handshake, all within the connect timeout.
    async fn connect(&self, key: Key<'_>, url: &Url) -> Result<Conn, Error> {
        let within = self.0.connect_timeout;
        match tokio::time::timeout(within, self.open(key, url)).await {
            Ok(Ok(Opened {
                sender,
                io,
                socket,
                tls_version,
            })) => Ok(Conn {
                sender,
                io: Some(io),
                socket,
                tls_version,
                https: key.https,
                shared: Shared::new(
                    key.authority,
                    self.head(key.authority).map_err(Error::connect)?,
                ),
            }),
            Ok(Err(e)) => Err(Error::connect(e)),
            Err(_) => Err(Error::connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no connection within the connect timeout of {}",
                    crate::attempt::show(within)
                ),
            ))),
        }
    }

    /// The headers the client adds to every request on a connection to
    /// `authority`, unless the request sets them itself.
    fn head(&self, authority: &str) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
        let mut head = HeaderMap::with_capacity(3);
        head.insert(USER_AGENT, self.0.user_agent.clone());
        head.insert(ACCEPT, HeaderValue::from_static("*/*"));
        head.insert(HOST, HeaderValue::from_str(authority)?);
        Ok(head)
    }

    async fn open(&self, key: Key<'_>, url: &Url) -> Result<Opened, BoxError> {
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let tcp = tcp(&resolve(url, port).await?).await?;
        let _ = tcp.set_nodelay(true);
        let socket = socket(&tcp);
        if !key.https {
            return handshake(tcp, socket, None).await;
        }
        let connector = self.0.tls.connector()?;
        let name = match url.host() {
            Some(url::Host::Ipv4(ip)) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
            Some(url::Host::Ipv6(ip)) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
            Some(url::Host::Domain(name)) => ServerName::try_from(name.to_owned())?,
            None => return Err("the URL has no host".into()),
        };
        let stream = connector.connect(name, tcp).await?;
        let version = match stream.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
            Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
            _ => None,
        };
        handshake(stream, socket, version).await
    }
}

/// The request hyper sends to `uri` (`url`'s path and query): `headers`
/// (the run's and the request's own), then those of the connection's
/// `head` that they do not set, then `Authorization` from the URL's user
/// information if they set none. The common request, with no headers of
/// its own, copies the head whole rather than looking each name up.
fn request(
    method: &Method,
    uri: Uri,
    url: &Url,
    headers: &HeaderMap,
    body: Option<&Bytes>,
    head: &HeaderMap,
) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body.cloned().unwrap_or_default()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    let sent = request.headers_mut();
    if headers.is_empty() {
        sent.clone_from(head);
    } else {
        // Room for them all, and the `Content-Length` hyper adds to a
        // body's: a clone of `headers` has room for those alone, and grew
        // twice (a reallocation each) as the head's were added.
        *sent = HeaderMap::with_capacity(headers.len() + head.len() + 1);
        for (name, value) in headers {
            sent.append(name, value.clone());
        }
        for (name, value) in head {
            sent.entry(name).or_insert_with(|| value.clone());
        }
    }
    if let Some(credentials) = basic_auth(url)
        && !sent.contains_key(AUTHORIZATION)
    {
        sent.insert(AUTHORIZATION, credentials);
    }
    request
}

/// `Authorization: Basic` from a URL's user information (percent-decoded),
/// as curl and reqwest send it; `None` without user information.
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or("")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The addresses of `url`'s host: an IP address as it is, a name through
/// the system resolver (on tokio's blocking pool), with errors typed as
/// [`DnsError`]. Names under `.invalid` (RFC 6761) fail at once without a
/// lookup, which also lets tests produce DNS errors offline.
async fn resolve(url: &Url, port: u16) -> Result<Vec<SocketAddr>, BoxError> {
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => return Ok(vec![SocketAddr::from((ip, port))]),
        Some(url::Host::Ipv6(ip)) => return Ok(vec![SocketAddr::from((ip, port))]),
        Some(url::Host::Domain(name)) => name,
        None => return Err("the URL has no host".into()),
    };
    let fail = |reason: String| DnsError {
        host: host.to_owned(),
        reason,
    };
    if host.ends_with(".invalid") || host == "invalid" {
        return Err(fail("no such host (.invalid is never resolvable)".into()).into());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| fail(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(fail("no addresses".into()).into());
    }
    Ok(addrs)
}

/// A TCP connection to the first of `addrs` that accepts; the last
/// address's error when none does.
async fn tcp(addrs: &[SocketAddr]) -> Result<TcpStream, io::Error> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to connect to");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A connection just made: hyper's handle to send on it, its I/O, its
/// socket, and the TLS version it negotiated.
struct Opened {
    sender: SendRequest<Full<Bytes>>,
    io: Io,
    socket: Socket,
    tls_version: Option<&'static str>,
}

/// The socket's descriptor, for the pool to look at (`pool::Socket`).
#[cfg(unix)]
fn socket(tcp: &TcpStream) -> Socket {
    std::os::fd::AsRawFd::as_raw_fd(tcp)
}

#[cfg(not(unix))]
fn socket(_: &TcpStream) -> Socket {}

/// hyper's HTTP/1.1 handshake over `io`. The connection's I/O is kept, to
/// be polled by the attempts the connection carries.
async fn handshake<T>(
    io: T,
    socket: Socket,
    tls_version: Option<&'static str>,
) -> Result<Opened, BoxError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    Ok(Opened {
        sender,
        io: Box::pin(connection),
        socket,
        tls_version,
    })
}

/// A context whose waker does nothing, for what only a connection's I/O
/// can make ready: the response and the body's chunks are put there by
/// hyper while [`Conn::drive`] polls it, in the attempt's own task, and the
/// I/O's wakers (the socket's) wake that task. Polled with the task's own
/// waker, they would wake the task that is running, which tokio then polls
/// once more for nothing.
fn quiet() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// The response to the request just queued on `conn`: the connection's I/O
/// polled in this task (it writes the request, then reads the answer),
/// then the response. The response is polled outside tokio's budget: once
/// spent, a tokio channel would return pending and wake the no-op waker.
async fn carried<F: Future>(conn: &mut Conn, response: F) -> F::Output {
    let mut response = pin!(tokio::task::coop::unconstrained(response));
    poll_fn(|cx| {
        conn.drive(cx);
        response.as_mut().poll(&mut quiet())
    })
    .await
}

/// A response body from the direct client, as a stream of chunks, read
/// while its connection's I/O is polled. Read to its end, it gives the
/// connection back to the pool (unless the server said `Connection:
/// close`, or hyper is still writing the request's body: see
/// `pool::Conn::ready`); dropped before, or on an error, it closes the
/// connection.
pub struct Body {
    incoming: Incoming,
    /// `None` once the body has ended.
    conn: Option<Conn>,
    /// The client whose pool the connection goes back to; `None` when it
    /// must not be reused.
    back: Option<Arc<Inner>>,
}

impl Body {
    /// The length the server declared.
    pub fn content_length(&self) -> Option<u64> {
        self.incoming.size_hint().exact()
    }

    /// The next frame hyper has read; when none is there yet, the
    /// connection's I/O is polled (it reads what has arrived) and the body
    /// looked at again. A body that came with its head (most small ones)
    /// is read without polling the I/O again.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let incoming = Pin::new(&mut self.incoming);
        if let Poll::Ready(frame) = incoming.poll_frame(&mut quiet()) {
            return Poll::Ready(frame);
        }
        if let Some(conn) = &mut self.conn {
            conn.drive(cx);
        }
        Pin::new(&mut self.incoming).poll_frame(&mut quiet())
    }
}

impl Stream for Body {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match ready!(this.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    // Empty chunks and trailers.
                    _ => {}
                },
                Some(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    if let Some(mut conn) = this.conn.take()
                        && let Some(client) = this.back.take()
                        && conn.ready(cx)
                    {
                        client.pool.put(conn, Instant::now());
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}
