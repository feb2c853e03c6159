//! The direct client's idle connections, per origin. A connection is either
//! carrying one request (owned by its attempt) or idle here, so an origin
//! never has more connections than requests in flight to it at once. The
//! newest idle connection is reused first (LIFO: the oldest ones age out
//! and close), and one idle for `idle_timeout` is dropped rather than
//! reused, before a server's keep-alive could close it under a request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;
use url::Url;

/// Which connections can carry a request: scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) https: bool,
    pub(super) host: String,
    pub(super) port: u16,
}

impl Key {
    /// The key of `url`; `None` for a URL without a host or port.
    pub(super) fn of(url: &Url) -> Option<Key> {
        Some(Key {
            https: url.scheme() == "https",
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }
}

/// One HTTP/1.1 connection: hyper's handle to send on it (its I/O runs in a
/// task of its own) and the TLS version it negotiated.
pub(super) struct Conn {
    pub(super) sender: SendRequest<Full<Bytes>>,
    pub(super) tls_version: Option<&'static str>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Idle connections by origin.
pub(super) struct Pool {
    idle_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    origins: HashMap<Key, VecDeque<Idle>>,
    /// A task is closing the connections that stay idle too long.
    reaping: bool,
}

impl Pool {
    pub(super) fn new(idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle_timeout,
            state: Mutex::new(State::default()),
        })
    }

    /// The newest idle connection to `key` that has not been idle too
    /// long; older ones that have are dropped (closed).
    pub(super) fn take(&self, key: &Key, now: Instant) -> Option<Conn> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = state.origins.get_mut(key)?;
        let newest = idle.pop_back()?;
        if now.saturating_duration_since(newest.since) >= self.idle_timeout {
            // The others went idle earlier still.
            idle.clear();
            return None;
        }
        Some(newest.conn)
    }

    /// Keeps `conn` for the next request to `key`, and drops those that
    /// have been idle too long.
    pub(super) fn put(self: &Arc<Pool>, key: Key, conn: Conn, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = state.origins.entry(key).or_default();
        self.expire(idle, now);
        idle.push_back(Idle { conn, since: now });
        if !state.reaping {
            state.reaping = true;
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Drops the connections of one origin idle too long (the oldest first).
    fn expire(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while idle
            .front()
            .is_some_and(|i| now.saturating_duration_since(i.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
    }

    /// Drops every connection idle too long; when the next one will have
    /// been, or `None` once none is left.
    fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.origins.retain(|_, idle| {
            self.expire(idle, now);
            !idle.is_empty()
        });
        let next = (state.origins.values())
            .filter_map(|idle| idle.front())
            .map(|oldest| oldest.since + self.idle_timeout)
            .min();
        state.reaping = next.is_some();
        next
    }
}

/// Closes idle connections once they have been idle for the timeout, so a
/// run leaves none open to an origin it has finished with; ends when none
/// is idle (the next one given back starts it again) or the pool is gone.
async fn reap(pool: Weak<Pool>) {
    let Some(mut at) = pool.upgrade().map(|p| Instant::now() + p.idle_timeout) else {
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
