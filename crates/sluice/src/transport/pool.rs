//! The direct client's idle connections, per origin. A connection is either
//! carrying one request (owned by its attempt) or idle here, so an origin
//! never has more connections than requests in flight to it at once. The
//! connection idle longest is reused first (FIFO), so in a busy run every
//! connection keeps being used: reused newest first, the ones at the bottom
//! sat idle behind the few that the driver's lag keeps free, aged out, and
//! were opened again (1,391 connections for `-c 1000`). One idle for
//! `idle_timeout` is dropped rather than reused, before a server's
//! keep-alive could close it under a request; one idle for [`LOOK_AFTER`]
//! or more has its socket looked at first (`Conn::peer_open`), since a
//! server's keep-alive (nginx's: 75 s, often set to a second or a few) may
//! have closed it meanwhile.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Uri};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;
use url::{Position, Url};

/// Which connections can carry a request: the scheme, and the authority
/// (host and port, the default port left out) as the URL writes it.
/// Borrowed from the request's URL, so a lookup allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key<'a> {
    pub(super) https: bool,
    pub(super) authority: &'a str,
}

impl<'a> Key<'a> {
    /// The key of `url`.
    pub(super) fn of(url: &'a Url) -> Key<'a> {
        Key {
            https: url.scheme() == "https",
            authority: &url[Position::BeforeHost..Position::AfterPort],
        }
    }
}

/// How long a connection sits idle before it is looked at when taken
/// (`Conn::peer_open`, one syscall): about the shortest keep-alive
/// timeout servers set (nginx's `keepalive_timeout 1s`) with room for a
/// start that comes late, and far above a busy run's idle times (micro- to
/// milliseconds), which stay free of it.
const LOOK_AFTER: Duration = Duration::from_millis(250);

/// The descriptor of a connection's TCP socket (under TLS as well), for
/// `Conn::peer_open`; valid while the connection's I/O, which owns the
/// socket, has not been dropped.
#[cfg(unix)]
pub(super) type Socket = std::os::fd::RawFd;
/// No socket to look at on other platforms.
#[cfg(not(unix))]
pub(super) type Socket = ();

/// hyper's connection future (`http1::Connection`, over TCP or TLS): the
/// connection's reads and writes, done each time it is polled.
pub(super) type Io = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One HTTP/1.1 connection: hyper's handle to send on it and its I/O, the
/// TLS version it negotiated, and what every request on it shares.
pub(super) struct Conn {
    pub(super) sender: SendRequest<Full<Bytes>>,
    /// Polled by the attempt that holds the connection, in its own task,
    /// while it waits for the response and reads the body: no task a
    /// connection, so a request is not handed from task to task (a wake-up
    /// and a poll each way) on its way out and back. Not polled while idle
    /// in the pool. `None` once it has ended.
    pub(super) io: Option<Io>,
    /// The socket that `io` reads and writes.
    pub(super) socket: Socket,
    pub(super) tls_version: Option<&'static str>,
    pub(super) https: bool,
    /// Boxed: a connection moves with every request and response it
    /// carries, and every byte of it is copied each time.
    pub(super) shared: Box<Shared>,
}

impl Conn {
    /// Polls the connection's I/O: hyper writes what it can of the request,
    /// and hands what it read to the response or the body. Whether the
    /// connection is still open. Once the I/O has ended (the connection
    /// closed, or failed: its error went to the request on it, if any), it
    /// is dropped, which hands a request queued on it back unwritten
    /// (`is_canceled`).
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(io) = &mut self.io
            && io.as_mut().poll(cx).is_ready()
        {
            self.io = None;
        }
        self.io.is_some()
    }

    /// Whether the connection is open (its I/O has not ended).
    pub(super) fn is_open(&self) -> bool {
        self.io.is_some() && !self.sender.is_closed()
    }

    /// Whether the connection can carry a new request, now: it is open and
    /// hyper is ready for one. When hyper is (the common case) its I/O is
    /// not polled here: a connection the server closed while it sat idle
    /// is seen closed by the first poll of its I/O once the request is
    /// queued, before anything is written (hyper reads before it writes),
    /// and the request is handed back unwritten (`is_canceled`) to go out
    /// on another, if tokio has seen the close by then (else see
    /// `peer_open`, which the pool does after a long idle). Polling it here as well cost 0.8 K instructions a
    /// request. When hyper is not ready, its I/O is polled once: a
    /// connection still writing the last exchange's request body after
    /// that (the server answered before reading it, and may never read
    /// it) is not ready, and is not waited for: a request queued on it
    /// would wait behind that body until its timeout, so it is closed,
    /// as curl and browsers do.
    pub(super) fn ready(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.sender.is_ready() {
            self.drive(cx);
        }
        self.sender.is_ready() && self.is_open()
    }

    /// Whether the server has not closed the connection while it sat idle,
    /// as its socket shows now: one `recv(MSG_PEEK | MSG_DONTWAIT)`.
    /// Nothing to read (`EAGAIN`) is open; the end of the stream (the
    /// server's FIN), an error (a reset) or bytes the server sent unasked
    /// (a `408`, a TLS alert) are not. hyper's first read would not see
    /// it in time: tokio tries a read only once its reactor has seen the
    /// socket readable, so a close that came after the reactor last
    /// looked (a paced start woken just after a server's keep-alive
    /// timeout closed it) is seen only after the request was written into
    /// it, a failure that may have been applied. A close still on the
    /// wire is missed all the same: the race is narrowed, not closed.
    #[cfg(unix)]
    fn peer_open(&self) -> bool {
        if self.io.is_none() {
            // The socket is closed, and its number may be another's now.
            return false;
        }
        let mut byte = 0u8;
        // SAFETY: `socket` is the descriptor of the TCP stream owned by
        // `io`, open while `io` is (checked above), and at most one byte
        // is written, into `byte`; MSG_PEEK leaves it in the socket.
        let read = unsafe {
            libc::recv(
                self.socket,
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        read < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }

    /// No socket to look at: open, as far as the pool can tell.
    #[cfg(not(unix))]
    fn peer_open(&self) -> bool {
        true
    }
}

/// What every request on a connection shares, made once per connection:
/// its origin, the headers the client adds (`User-Agent`, `Accept` and
/// `Host`), and the request target it last sent.
pub(super) struct Shared {
    pub(super) authority: Box<str>,
    pub(super) head: HeaderMap,
    target: Option<Uri>,
}

impl Shared {
    pub(super) fn new(authority: &str, head: HeaderMap) -> Box<Shared> {
        Box::new(Shared {
            authority: authority.into(),
            head,
            target: None,
        })
    }
}

impl Shared {
    /// The request target of `url` (its path and query) as hyper takes
    /// it. Kept from one request to the next: a run often sends one URL
    /// again and again (every line POSTs to one endpoint), and a kept
    /// target is shared, not parsed and copied again.
    pub(super) fn target(&mut self, url: &Url) -> Result<Uri, http::uri::InvalidUri> {
        let text = &url[Position::BeforePath..Position::AfterQuery];
        if let Some(uri) = &self.target
            && uri.path_and_query().map(PathAndQuery::as_str) == Some(text)
        {
            return Ok(uri.clone());
        }
        let uri = Uri::try_from(text)?;
        self.target = Some(uri.clone());
        Ok(uri)
    }
}

/// An idle connection, when it will have been idle long enough to be
/// looked at when taken, and when too long (a comparison of instants
/// each, no duration computed).
struct Idle {
    conn: Conn,
    look: Instant,
    expires: Instant,
}

/// Idle connections by origin.
pub(super) struct Pool {
    idle_timeout: Duration,
    state: Mutex<State>,
}

/// Idle connections by authority. foldhash rather than std's SipHash:
/// the pool is looked up twice a request (take and put). Its seed is random
/// per process too, and the authorities are the run's own inputs.
type ByAuthority = foldhash::HashMap<Box<str>, VecDeque<Idle>>;

#[derive(Default)]
struct State {
    /// By authority: `http://` origins, then `https://` ones.
    http: ByAuthority,
    https: ByAuthority,
    /// A task is closing the connections that stay idle too long.
    reaping: bool,
}

impl State {
    fn origins(&mut self, https: bool) -> &mut ByAuthority {
        if https {
            &mut self.https
        } else {
            &mut self.http
        }
    }
}

impl Pool {
    pub(super) fn new(idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle_timeout,
            state: Mutex::new(State::default()),
        })
    }

    /// The connection to `key` idle longest that has not been idle too
    /// long, nor closed by the server (looked at after [`LOOK_AFTER`]);
    /// the others are dropped (closed).
    pub(super) fn take(&self, key: Key<'_>, now: Instant) -> Option<Conn> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = state.origins(key.https).get_mut(key.authority)?;
        self.expire(idle, now);
        while let Some(i) = idle.pop_front() {
            if now < i.look || i.conn.peer_open() {
                return Some(i.conn);
            }
        }
        None
    }

    /// Keeps `conn` for a later request to its origin, and drops those
    /// that have been idle too long.
    pub(super) fn put(self: &Arc<Pool>, conn: Conn, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let origins = state.origins(conn.https);
        let idle = match origins.get_mut(&conn.shared.authority) {
            Some(idle) => idle,
            None => origins.entry(conn.shared.authority.clone()).or_default(),
        };
        self.expire(idle, now);
        // An idle timeout too large to add never expires.
        let expires = now
            .checked_add(self.idle_timeout)
            .unwrap_or_else(far_future);
        let look = now.checked_add(LOOK_AFTER).unwrap_or(expires);
        idle.push_back(Idle {
            conn,
            look,
            expires,
        });
        if !state.reaping {
            state.reaping = true;
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Drops the connections of one origin idle too long (the oldest first).
    fn expire(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while idle.front().is_some_and(|i| now >= i.expires) {
            idle.pop_front();
        }
    }

    /// Drops every connection idle too long; when the next one will have
    /// been, or `None` once none is left.
    fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        let mut next: Option<Instant> = None;
        for origins in [&mut state.http, &mut state.https] {
            origins.retain(|_, idle| {
                self.expire(idle, now);
                !idle.is_empty()
            });
            let oldest = (origins.values())
                .filter_map(|idle| idle.front())
                .map(|oldest| oldest.expires)
                .min();
            next = match (next, oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        state.reaping = next.is_some();
        next
    }
}

/// An instant no run reaches (a century from now).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// Closes idle connections once they have been idle for the timeout, so a
/// run leaves none open to an origin it has finished with; ends when none
/// is idle (the next one given back starts it again) or the pool is gone.
async fn reap(pool: Weak<Pool>) {
    let Some(mut at) = pool
        .upgrade()
        .map(|p| (Instant::now().checked_add(p.idle_timeout)).unwrap_or_else(far_future))
    else {
        return;
    };
    loop {
        tokio::time::sleep_until(at).await;
        match pool.upgrade().and_then(|pool| pool.sweep(Instant::now())) {
            Some(next) => at = next,
            None => return,
        }
    }
}
