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
//! The table is [`ENDPOINTS_MD`], also served as plain text at `GET /` and
//! shown by `sluice mock --help` ([`endpoint_list`]).
//!
#![doc = include_str!("endpoints.md")]
//!
//! Anything else is 404 `{"error":"not found"}`; a bad path parameter is 400
//! with `{"error":"..."}`.
//!
//! # Transport options
//!
//! [`MockOptions`] (`sluice mock --h2-max-streams N --goaway-after N
//! --keep-alive DUR`) makes the connections behave like a real server's:
//!
//! - `h2_max_streams`: the `SETTINGS_MAX_CONCURRENT_STREAMS` announced on
//!   HTTP/2 connections (nginx: 128; default here 4096, never a limit);
//! - `goaway_after`: after serving that many requests a connection ends
//!   gracefully (HTTP/2 GOAWAY; HTTP/1.1 closes after the response), as
//!   nginx's `keepalive_requests`;
//! - `keep_alive`: a connection idle that long (no request in progress) is
//!   closed. The server stops reading at that moment and the close lands
//!   [`KEEP_ALIVE_CLOSE_LAG`] later, as on a busy server: a request sent
//!   into that window is never read, which is the keep-alive race a client
//!   meets when it reuses a connection the server is closing.
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

mod body;
mod endpoints;
mod handler;
mod knee;
mod limited;
mod outage;
mod providers;
#[cfg(unix)]
pub mod redis;
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
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

pub use endpoints::{ENDPOINTS_MD, endpoint_list, endpoints};
pub use limited::LimitedStats;
pub use stats::{Arrival, MAX_ARRIVALS, PathStats, Stats};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use handler::{ConnCtx, IdleClock, Shared};
use stats::ConnectionGuard;

/// The address `sluice mock` listens on unless told otherwise: loopback only,
/// so a test server is never exposed to the network by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Most concurrent HTTP/2 streams per connection (4096), well above any
/// client concurrency a benchmark uses, so the server never caps it.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 4096;

/// How long after deciding to close an idle connection (`keep_alive`) the
/// close reaches the socket; requests arriving in between are not read.
pub const KEEP_ALIVE_CLOSE_LAG: Duration = Duration::from_millis(60);

/// How the server's connections behave (see "Transport options" above).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MockOptions {
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (default 4096).
    pub h2_max_streams: Option<u32>,
    /// End each connection gracefully after this many requests.
    pub goaway_after: Option<u64>,
    /// Close connections idle this long (no request in progress).
    pub keep_alive: Option<Duration>,
}

/// The listen backlog asked of the kernel (capped by `net.core.somaxconn`,
/// 4096 on current Linux). tokio's and std's `bind` ask for 128: a client
/// that opens more connections at once than that (`-c 150`) overflows the
/// queue before the accept loop drains it, and each dropped SYN is retried
/// by the client's kernel one second later (a 1 s stall in the records).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener on `addr` with [`LISTEN_BACKLOG`] (and
/// `SO_REUSEADDR`, as `TcpListener::bind` sets it). Every test upstream
/// listens through it, so none stalls a client that connects many at once.
///
/// # Errors
///
/// Creating, binding or listening on the socket failed (address in use, no
/// permission, ...).
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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
        MockServer::start_with(addr, MockOptions::default()).await
    }

    /// Like [`start`](MockServer::start), with connections that behave as
    /// `options` says (stream limit, GOAWAY, keep-alive timeout).
    ///
    /// # Errors
    ///
    /// Binding failed (address in use, no permission, ...).
    pub async fn start_with(addr: SocketAddr, options: MockOptions) -> io::Result<MockServer> {
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (done_tx, done) = mpsc::channel(1);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Arc::new(options),
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
        self.shared.stats(true)
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
fn connection_builder(options: &MockOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Not `pipeline_flush`: it disables hyper's write backpressure, so a slow
    // reader of `/bytes/{n}` would make the server buffer the whole body.
    builder.http1().keep_alive(true);
    builder
        .http2()
        .max_concurrent_streams(options.h2_max_streams.unwrap_or(H2_MAX_CONCURRENT_STREAMS));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    options: Arc<MockOptions>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let builder = Arc::new(connection_builder(&options));
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
                    Arc::clone(&options),
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
    options: Arc<MockOptions>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    // Small responses must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    #[cfg(unix)]
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let keep_alive = options.keep_alive;
    let ctx = Arc::new(ConnCtx {
        shared,
        account,
        reset: Notify::new(),
        goaway: Notify::new(),
        served: AtomicU64::new(0),
        idle: IdleClock::new(),
        options,
    });
    let service_ctx = Arc::clone(&ctx);
    let service = service_fn(move |req| handler::handle(Arc::clone(&service_ctx), req));
    let linger = Arc::new(AtomicBool::new(false));
    let io = LingeringClose {
        stream: Some(stream),
        linger: Arc::clone(&linger),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let (mut ending, mut closing) = (false, false);
    loop {
        tokio::select! {
            // Shutdown first: once it is requested, no further request is served.
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            () = ctx.reset.notified() => {
                // /reset: the connection (and so the socket) is still alive here;
                // closing it below will now send an RST instead of a FIN.
                #[cfg(unix)]
                set_zero_linger(fd);
                break;
            }
            () = ctx.goaway.notified(), if !ending => {
                // HTTP/2: GOAWAY, then the open streams finish; HTTP/1.1:
                // the connection closes after the response in progress.
                connection.as_mut().graceful_shutdown();
                linger.store(true, Ordering::Relaxed);
                ending = true;
            }
            () = idle_expired(&ctx, keep_alive), if !ending => {
                closing = true;
                break;
            }
            // Errors here are the client's doing (bad request, disconnect) or
            // our deliberate /truncate or /abort; either way the connection is over.
            _ = connection.as_mut() => break,
        }
    }
    if closing {
        // Keep-alive expired: reading stopped above; the close lands a
        // little later, and whatever arrives meanwhile is never read.
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {}
            () = tokio::time::sleep(KEEP_ALIVE_CLOSE_LAG) => {}
        }
    }
    // Dropping the connection closes the socket.
}

/// How long a gracefully ended connection keeps reading after its last
/// write, so that the client reads everything sent to it.
const LINGER: Duration = Duration::from_secs(2);

/// The connection's socket; after a graceful end (GOAWAY) it closes the way
/// nginx's lingering close does: shut down writing, then read and discard
/// what the client still sends. Closing with unread data would send an RST,
/// and the client's kernel would then discard responses and the final
/// GOAWAY not yet read — a server fault, not the behaviour modelled.
#[derive(Debug)]
struct LingeringClose {
    stream: Option<TcpStream>,
    linger: Arc<AtomicBool>,
}

impl LingeringClose {
    fn stream(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect("present until dropped")
    }
}

impl tokio::io::AsyncRead for LingeringClose {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(self.stream()).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LingeringClose {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(self.stream()).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(self.stream()).poll_shutdown(cx)
    }
}

impl Drop for LingeringClose {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        if !self.linger.load(Ordering::Relaxed) {
            return;
        }
        // Outside a runtime (shutting down) the socket just closes.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = stream.shutdown().await;
                let mut buf = [0u8; 4096];
                let drain =
                    async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
                let _ = tokio::time::timeout(LINGER, drain).await;
            });
        }
    }
}

/// Completes once the connection has been idle (no request in progress)
/// for `keep_alive`; never without one.
async fn idle_expired(ctx: &ConnCtx, keep_alive: Option<Duration>) {
    let Some(keep_alive) = keep_alive else {
        return std::future::pending().await;
    };
    loop {
        match ctx.idle.idle_since() {
            Some(since) if since.elapsed() >= keep_alive => return,
            Some(since) => tokio::time::sleep_until((since + keep_alive).into()).await,
            // A request is in progress: look again a little later.
            None => tokio::time::sleep(keep_alive.min(Duration::from_millis(10))).await,
        }
    }
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
