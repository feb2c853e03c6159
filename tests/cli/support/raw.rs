//! The one raw HTTP/1.1 server of the tests, for what the mock will not do:
//! answers broken the way broken servers and middleboxes break them
//! (malformed heads, endless bodies, connections dropped or held silent),
//! over plain TCP or TLS, on 127.0.0.1. It counts what it saw.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// One request as the server read it.
pub struct Req {
    /// The request target, query included.
    pub path: String,
    /// 1 for the first request on its connection, 2 for the next...
    pub nth: usize,
}

/// What the server does with a request.
pub enum Act {
    /// Writes the bytes and waits for the next request on the connection.
    Keep(Vec<u8>),
    /// Waits, then writes the bytes and waits for the next request.
    After(Duration, Vec<u8>),
    /// Writes the bytes and closes the connection.
    Last(Vec<u8>),
    /// Writes the bytes before reading the request's body, then holds the
    /// connection open without reading from it again (a server that
    /// refuses a large upload at once and keeps the connection).
    Early(Vec<u8>),
    /// Closes the connection without writing a byte (over TLS, without
    /// close_notify, as a crashing server does).
    Close,
    /// Writes `head`, then `piece` again and again, `every` apart, until
    /// `limit` bytes are out or the client goes away; then closes.
    Stream {
        head: Vec<u8>,
        piece: Vec<u8>,
        every: Duration,
        limit: u64,
    },
}

impl Act {
    /// A `200 OK` whose chunked body never ends: chunks of `size` bytes,
    /// `every` apart, until 1 GiB is out or the client goes away.
    pub fn endless_chunks(size: usize, every: Duration) -> Act {
        let mut piece = format!("{size:x}\r\n").into_bytes();
        piece.extend(std::iter::repeat_n(b'a', size));
        piece.extend_from_slice(b"\r\n");
        Act::Stream {
            head: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            piece,
            every,
            limit: 1 << 30,
        }
    }
}

/// What the server does with a connection before reading from it.
#[derive(Clone, Copy)]
enum Accept {
    /// Reads requests and answers each as the handler says.
    Serve,
    /// Closes each connection as soon as it is accepted.
    Close,
    /// Holds each connection, reading and never answering, until the
    /// client goes.
    Silent,
}

type Handler = Arc<dyn Fn(&Req) -> Act + Send + Sync>;

/// A raw server on 127.0.0.1; its tasks end with the test's runtime.
pub struct RawServer {
    /// `http://127.0.0.1:PORT` (or `https://` over TLS).
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    accepts: Arc<AtomicUsize>,
    /// `METHOD /path` of every request read, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Bytes written by [`Act::Stream`] answers.
    streamed: Arc<AtomicU64>,
}

impl RawServer {
    /// Answers each request as `handler` says.
    pub async fn start(handler: impl Fn(&Req) -> Act + Send + Sync + 'static) -> RawServer {
        RawServer::listen(None, Accept::Serve, Arc::new(handler)).await
    }

    /// Over TLS (see [`acceptor`]), answers each request as `handler` says.
    pub async fn start_tls(
        tls: TlsAcceptor,
        handler: impl Fn(&Req) -> Act + Send + Sync + 'static,
    ) -> RawServer {
        RawServer::listen(Some(tls), Accept::Serve, Arc::new(handler)).await
    }

    /// Accepts each connection and closes it at once.
    pub async fn closing() -> RawServer {
        RawServer::listen(None, Accept::Close, Arc::new(|_: &Req| Act::Close)).await
    }

    /// Accepts each connection and never answers (a TLS handshake that
    /// never completes, a server that hangs).
    pub async fn silent() -> RawServer {
        RawServer::listen(None, Accept::Silent, Arc::new(|_: &Req| Act::Close)).await
    }

    async fn listen(tls: Option<TlsAcceptor>, accept: Accept, handler: Handler) -> RawServer {
        // The mock's backlog: a burst of connections is never dropped.
        let listener =
            sluice_mock::listen("127.0.0.1:0".parse().expect("an address")).expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = RawServer {
            url: format!("{scheme}://{addr}"),
            addr,
            accepts: Arc::default(),
            seen: Arc::default(),
            streamed: Arc::default(),
        };
        let (accepts, seen, streamed) = (
            Arc::clone(&server.accepts),
            Arc::clone(&server.seen),
            Arc::clone(&server.streamed),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepts.fetch_add(1, Ordering::SeqCst);
                let conn = Conn {
                    handler: Arc::clone(&handler),
                    seen: Arc::clone(&seen),
                    streamed: Arc::clone(&streamed),
                };
                match (accept, tls.clone()) {
                    (Accept::Close, _) => drop(tcp),
                    (Accept::Silent, _) => {
                        tokio::spawn(hold(tcp));
                    }
                    (Accept::Serve, None) => {
                        tokio::spawn(conn.serve(tcp));
                    }
                    (Accept::Serve, Some(tls)) => {
                        tokio::spawn(async move {
                            if let Ok(stream) = tls.accept(tcp).await {
                                conn.serve(stream).await;
                            }
                        });
                    }
                }
            }
        });
        server
    }

    /// Requests read for `path` (the request target, query included).
    pub fn requests(&self, path: &str) -> usize {
        let seen = self.seen.lock().expect("seen");
        seen.iter()
            .filter(|s| s.split_once(' ').is_some_and(|(_, p)| p == path))
            .count()
    }

    /// Requests read in all.
    pub fn total(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }

    /// Connections accepted.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Bytes written by [`Act::Stream`] answers.
    pub fn streamed(&self) -> u64 {
        self.streamed.load(Ordering::SeqCst)
    }
}

/// Reads until the client goes, never answering.
async fn hold(mut stream: tokio::net::TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// One connection's share of the server.
struct Conn {
    handler: Handler,
    seen: Arc<Mutex<Vec<String>>>,
    streamed: Arc<AtomicU64>,
}

impl Conn {
    /// Reads each request head (and a `Content-Length` body) and acts as the
    /// handler says, until the connection ends.
    async fn serve(self, mut stream: impl AsyncRead + AsyncWrite + Unpin) {
        let mut buf: Vec<u8> = Vec::new();
        let mut nth = 0;
        while let Some(head) = read_head(&mut stream, &mut buf).await {
            nth += 1;
            let act = (self.handler)(&Req {
                path: head.path.clone(),
                nth,
            });
            if let Act::Early(bytes) = act {
                self.seen.lock().expect("seen").push(head.line);
                if stream.write_all(&bytes).await.is_ok() {
                    std::future::pending::<()>().await;
                }
                return;
            }
            if !read_body(&mut stream, &mut buf, head.length).await {
                return;
            }
            self.seen.lock().expect("seen").push(head.line);
            if !self.act(&mut stream, act).await {
                return;
            }
        }
    }

    /// Carries out `act`; false when the connection is over.
    async fn act(&self, stream: &mut (impl AsyncWrite + Unpin), act: Act) -> bool {
        match act {
            Act::Keep(bytes) => stream.write_all(&bytes).await.is_ok(),
            Act::After(wait, bytes) => {
                tokio::time::sleep(wait).await;
                stream.write_all(&bytes).await.is_ok()
            }
            Act::Last(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                false
            }
            Act::Close | Act::Early(_) => false,
            Act::Stream {
                head,
                piece,
                every,
                limit,
            } => {
                if stream.write_all(&head).await.is_err() {
                    return false;
                }
                let mut sent = 0u64;
                while sent < limit {
                    if !every.is_zero() {
                        tokio::time::sleep(every).await;
                    }
                    if stream.write_all(&piece).await.is_err() {
                        return false;
                    }
                    sent += piece.len() as u64;
                    self.streamed
                        .fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
                let _ = stream.shutdown().await;
                false
            }
        }
    }
}

/// A request head as the server read it.
struct Head {
    /// `METHOD /path`, as [`RawServer`] records it.
    line: String,
    path: String,
    /// The `Content-Length` of its body (0 without one).
    length: usize,
}

/// Reads one request head from `stream` (through `buf`, which keeps what
/// follows it); `None` when the client goes or sends more than 1 MiB of
/// head.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Head> {
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("");
    let path = words.next().unwrap_or("").to_string();
    Some(Head {
        line: format!("{method} {path}"),
        path,
        length,
    })
}

/// Reads and discards a body of `length` bytes (through `buf`); false when
/// the client goes first.
async fn read_body(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    length: usize,
) -> bool {
    let mut chunk = vec![0u8; 64 * 1024];
    while buf.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf.drain(..length);
    true
}

/// A complete HTTP/1.1 response with a `Content-Length`.
pub fn response(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `200 OK` with a text body.
pub fn ok(body: &str) -> Vec<u8> {
    response("200 OK", &["Content-Type: text/plain"], body.as_bytes())
}

/// A TLS acceptor presenting `cert` (signed for `key`).
pub fn acceptor(cert: CertificateDer<'static>, key: &KeyPair) -> TlsAcceptor {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

/// A TLS acceptor with a fresh self-signed certificate for 127.0.0.1
/// (clients need `-k`).
pub fn self_signed() -> TlsAcceptor {
    let key = KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    acceptor(cert.der().clone(), &key)
}
