//! The fault-injecting test upstream of sluice (`sluice mock`).
//!
//! An HTTP/1.1 server (with HTTP/2 prior knowledge, "h2c", on the same port)
//! for demos, tests and benchmarks. It is fast enough never to be the
//! bottleneck of a client benchmark, and each endpoint reproduces one thing a
//! real API does to its clients: slowness, errors, rate limits, redirects,
//! resets, hangs, slow and truncated bodies. It counts what it sees
//! (connections, requests, in-flight and peak in-flight requests, per path)
//! so that tests can check a client's pooling, concurrency and rate claims.
//!
//! # Endpoints
//!
//! Any method unless noted; JSON bodies with `content-type: application/json`.
//!
//! | path | answer |
//! |---|---|
//! | `/fast` | 200 `{"ok":true}` |
//! | `/echo` | 200: method, path, query, query_string, version, headers and body (or `body_base64`) |
//! | `/delay/{secs}` | 200 `{"delay":secs}` after `secs` seconds (fractions allowed, at most 3600) |
//! | `/status/{code}` | that status (200–599), body `{"status":code}` (none for 204, 205, 304) |
//! | `/bytes/{n}` | 200, `n` bytes of `application/octet-stream`, byte `i` = `(i*7 + 0x80) % 256` (never UTF-8) |
//! | `/ratelimit/{per_second}` | 200, or 429 with `Retry-After` past `per_second` requests a second (token bucket of capacity `per_second`, one per distinct value) |
//! | `/fail/{n}/{key}` | the first `n` requests for `key` fail with 503 or `?status=`, with `Retry-After` from `?retry_after=` and `retry-after-ms` from `?retry_after_ms=`; then 200 `{"ok":true,"attempt":k}` |
//! | `/redirect/{code}?to=URL` | that status (300–399) with `Location: URL` |
//! | `/reset` | reads the request, then resets the TCP connection (RST), no response |
//! | `/hang` | never answers |
//! | `/drip/{bytes}/{secs}` | 200, `bytes` ASCII `x` in up to ten pieces spread evenly over `secs` |
//! | `/truncate` | 200 with `Content-Length: 100`, 50 bytes of body, then the connection closes |
//! | `POST /v1/messages` | 200, a minimal Anthropic `Message` naming the request's `model`, with a `request-id` header; a `model` of `status-NNN` answers NNN with an Anthropic error body, `text-NNN` NNN with a `text/plain` body |
//! | `POST /v1/chat/completions` | 200, a minimal OpenAI `chat.completion`, with an `x-request-id` header; a `model` of `status-NNN` answers NNN with an OpenAI error body, `text-NNN` NNN with a `text/plain` body |
//! | `GET /stats` | [`Stats`] as JSON; `?arrivals=1` adds the arrival times |
//! | `POST /stats/reset` | 200 `{"ok":true}`; clears statistics and `/fail`, `/ratelimit` state |
//!
//! Anything else is 404 `{"error":"not found"}`; a bad path parameter is 400
//! with `{"error":"..."}`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = sluice_mock::MockServer::start("127.0.0.1:0".parse().expect("valid address")).await?;
//! println!("mock listening on {}", server.url());
//! // ... point a client at server.url() + "/fast" ...
//! assert_eq!(server.stats().in_flight, 0);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod body;
mod handler;
mod providers;
mod stats;
mod util;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

pub use stats::{Arrival, MAX_ARRIVALS, PathStats, Stats};

use handler::{ConnCtx, Shared};
use stats::ConnectionGuard;

/// The address `sluice mock` listens on unless told otherwise: loopback only,
/// so a test server is never exposed to the network by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Most concurrent HTTP/2 streams per connection (4096), well above any
/// client concurrency a benchmark uses, so the server never caps it.
const H2_MAX_CONCURRENT_STREAMS: u32 = 4096;

/// How long the accept loop backs off after an accept error (for instance
/// when out of file descriptors), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A running mock server.
///
/// It serves on the tokio runtime that started it (multi-threaded or
/// current-thread) until [`shutdown`](MockServer::shutdown) or until it is
/// dropped; dropping it also stops the server and closes every connection,
/// just without waiting for that to finish.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    /// Closes (yields `None`) once the accept loop and every connection task
    /// have finished: each holds a sender.
    done: mpsc::Receiver<()>,
}

impl MockServer {
    /// Binds `addr` and starts serving on the current tokio runtime.
    ///
    /// Use port 0 (`"127.0.0.1:0"`) to let the system pick a free port, then
    /// [`addr`](MockServer::addr) or [`url`](MockServer::url) to find it.
    ///
    /// # Errors
    ///
    /// Binding failed (address in use, no permission, ...).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(addr: SocketAddr) -> io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (done_tx, done) = mpsc::channel(1);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            shutdown_rx,
            done_tx,
        ));
        Ok(MockServer {
            addr,
            shared,
            shutdown,
            accept_task,
            done,
        })
    }

    /// The address actually bound (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the server, e.g. `http://127.0.0.1:8080`, without a
    /// trailing slash, ready for `format!("{}/fast", server.url())`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the statistics: the data of `GET /stats`, always with
    /// the arrival times.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot(true)
    }

    /// Clears the statistics and the `/fail` and `/ratelimit` state, like
    /// `POST /stats/reset`.
    pub fn reset_stats(&self) {
        self.shared.reset();
    }

    /// Stops accepting, closes every connection (in-flight requests included)
    /// and waits until all of that is done.
    pub async fn shutdown(self) {
        let MockServer {
            shutdown,
            accept_task,
            mut done,
            ..
        } = self;
        shutdown.send_replace(true);
        // The accept loop never panics; a join error could only mean the
        // runtime is shutting down, which finishes the job anyway.
        let _ = accept_task.await;
        while done.recv().await.is_some() {}
    }

    /// Serves until `signal` completes (e.g. Ctrl-C), then shuts down as
    /// [`shutdown`](MockServer::shutdown) does. This is what `sluice mock`
    /// runs after printing [`url`](MockServer::url).
    pub async fn serve_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Binds `addr` and serves forever on the current tokio runtime.
///
/// A convenience for programs that need nothing else; to learn the bound
/// port or stop the server, use [`MockServer`] instead.
///
/// # Errors
///
/// Only when binding fails: once serving, it never returns.
pub async fn serve_forever(addr: SocketAddr) -> io::Result<()> {
    let _server = MockServer::start(addr).await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// The HTTP/1.1 + h2c connection builder shared by all connections.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Not `pipeline_flush`: it disables hyper's write backpressure, so a slow
    // reader of `/bytes/{n}` would make the server buffer the whole body.
    builder.http1().keep_alive(true);
    builder
        .http2()
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let builder = Arc::new(connection_builder());
    loop {
        // A dropped `MockServer` (the sender gone) stops the server too.
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let open = shared.stats.connection_opened();
                tokio::spawn(serve_connection(
                    stream,
                    open,
                    Arc::clone(&builder),
                    Arc::clone(&shared),
                    shutdown.clone(),
                    done.clone(),
                ));
            }
            Err(_) => {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    account: ConnectionGuard,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    // Small responses must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    #[cfg(unix)]
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let ctx = Arc::new(ConnCtx {
        shared,
        account,
        reset: Notify::new(),
    });
    let service_ctx = Arc::clone(&ctx);
    let service = service_fn(move |req| handler::handle(Arc::clone(&service_ctx), req));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        // Shutdown first: once it is requested, no further request is served.
        biased;
        _ = shutdown.wait_for(|stop| *stop) => {}
        () = ctx.reset.notified() => {
            // /reset: the connection (and so the socket) is still alive here;
            // closing it below will now send an RST instead of a FIN.
            #[cfg(unix)]
            set_zero_linger(fd);
        }
        // Errors here are the client's doing (bad request, disconnect) or
        // our deliberate /truncate; either way the connection is over.
        _ = connection.as_mut() => {}
    }
    // Dropping the connection closes the socket.
}

/// Sets `SO_LINGER` to zero so that closing the socket sends an RST.
#[cfg(unix)]
fn set_zero_linger(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` belongs to the `TcpStream` owned by the connection future,
    // which the caller keeps alive across this call, so it is an open socket;
    // the option value is a properly sized, initialised `linger`.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    // On failure the close is an ordinary FIN: still no response is sent.
    let _ = result;
}
