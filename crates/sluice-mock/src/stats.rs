//! Request and connection counters behind `GET /stats`.
//!
//! The hot path (every counted request) touches a handful of atomics and one
//! short critical section: a `HashMap` lookup for the per-path entry plus a
//! push onto the arrivals ring, both under a single mutex so that a reset is
//! seen atomically.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How many arrivals are remembered: the most recent 200,000 requests.
///
/// Enough for a benchmark's worth of timing analysis while keeping memory
/// bounded (about 5 MB) however long the server runs.
pub const MAX_ARRIVALS: usize = 200_000;

/// A snapshot of the server's counters, as served by `GET /stats`.
///
/// Everything counts from server start or from the last reset
/// (`POST /stats/reset` or [`MockServer::reset_stats`](crate::MockServer::reset_stats)),
/// except `open_connections` and `in_flight`, which describe the present.
/// Requests to `/stats` and `/stats/reset` themselves are never counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// TCP connections accepted since start or reset. Tells a client test how
    /// well its connection pool reuses connections. A connection whose first
    /// request is to `/stats` or `/stats/reset` is left out (so fetching the
    /// statistics does not change them) unless it later carries other requests.
    pub connections: u64,
    /// TCP connections open right now (not affected by a reset), leaving out
    /// connections that have served only `/stats` requests.
    pub open_connections: u64,
    /// Requests received (counted on arrival, before any response).
    pub requests: u64,
    /// Requests whose response has not yet been completely handed to the
    /// connection (including hung, delayed and dripping ones).
    pub in_flight: u64,
    /// The highest `in_flight` seen since start or reset (a reset sets it to
    /// the current `in_flight`). Lets a test check a client's concurrency cap.
    pub peak_in_flight: u64,
    /// The same request counters per literal request path (without the query
    /// string), e.g. `"/fail/2/abc"` or `"/delay/1"`.
    pub paths: BTreeMap<String, PathStats>,
    /// Arrival times of the most recent [`MAX_ARRIVALS`] requests, oldest
    /// first. Served only for `GET /stats?arrivals=1`; always filled by
    /// [`MockServer::stats`](crate::MockServer::stats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arrivals: Vec<Arrival>,
    /// Admissions and refusals of each `/limited` key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limited: BTreeMap<String, crate::limited::LimitedStats>,
}

/// Request counters of one path; see [`Stats`] for their meaning.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathStats {
    /// Requests to this path received since start or reset.
    pub requests: u64,
    /// Requests to this path whose response is not yet complete.
    pub in_flight: u64,
    /// The highest `in_flight` for this path since start or reset.
    pub peak_in_flight: u64,
}

/// When one request arrived: lets a rate-limiting client be checked against
/// its promised rate over any window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// The literal request path, without the query string.
    pub path: String,
    /// Milliseconds since server start or the last reset (monotonic clock).
    pub ms: f64,
}

/// Live counters of one path, shared with the in-flight guards of its requests.
#[derive(Debug)]
struct PathCounters {
    name: Arc<str>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

/// Everything a reset must change atomically.
#[derive(Debug)]
struct Inner {
    epoch: Instant,
    /// Incremented by each reset: tells a connection whether it was counted
    /// in the current `connections` figure.
    generation: u64,
    paths: HashMap<Arc<str>, Arc<PathCounters>>,
    arrivals: VecDeque<(Arc<str>, f64)>,
}

/// The live, shared counters of one server.
#[derive(Debug)]
pub(crate) struct StatsState {
    connections: AtomicU64,
    open_connections: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    inner: Mutex<Inner>,
}

impl StatsState {
    pub(crate) fn new() -> Self {
        StatsState {
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                epoch: Instant::now(),
                generation: 0,
                paths: HashMap::new(),
                arrivals: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something ever did, the
        // counters are still usable, so recover rather than propagate.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an accepted connection; the guard marks it closed when dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        let generation = {
            let inner = self.lock();
            self.connections.fetch_add(1, Ordering::Relaxed);
            inner.generation
        };
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            stats: Arc::clone(self),
            generation,
            state: AtomicU8::new(PROVISIONAL),
        }
    }

    /// Counts an arriving request; the guard keeps it in flight until dropped.
    pub(crate) fn request_arrived(self: &Arc<Self>, path: &str) -> InFlightGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let current = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(current, Ordering::Relaxed);

        let entry = {
            let mut inner = self.lock();
            // Read the clock under the lock so that arrivals are in order.
            let now = Instant::now();
            let ms = now.saturating_duration_since(inner.epoch).as_secs_f64() * 1000.0;
            let entry = match inner.paths.get(path) {
                Some(entry) => Arc::clone(entry),
                None => {
                    let name: Arc<str> = Arc::from(path);
                    let entry = Arc::new(PathCounters {
                        name: Arc::clone(&name),
                        requests: AtomicU64::new(0),
                        in_flight: AtomicU64::new(0),
                        peak_in_flight: AtomicU64::new(0),
                    });
                    inner.paths.insert(name, Arc::clone(&entry));
                    entry
                }
            };
            entry.requests.fetch_add(1, Ordering::Relaxed);
            let current = entry.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            entry.peak_in_flight.fetch_max(current, Ordering::Relaxed);
            if inner.arrivals.len() >= MAX_ARRIVALS {
                inner.arrivals.pop_front();
            }
            inner.arrivals.push_back((Arc::clone(&entry.name), ms));
            entry
        };
        InFlightGuard {
            stats: Arc::clone(self),
            path: entry,
        }
    }

    /// Clears counters, peaks (to the current in-flight count) and arrivals.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.epoch = Instant::now();
        inner.generation += 1;
        inner.arrivals = VecDeque::new();
        inner.paths.retain(|_, entry| {
            let in_flight = entry.in_flight.load(Ordering::Relaxed);
            entry.requests.store(0, Ordering::Relaxed);
            entry.peak_in_flight.store(in_flight, Ordering::Relaxed);
            in_flight > 0
        });
        self.connections.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.peak_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// A consistent-enough snapshot; `with_arrivals` copies the arrivals too.
    pub(crate) fn snapshot(&self, with_arrivals: bool) -> Stats {
        let inner = self.lock();
        let paths = inner
            .paths
            .iter()
            .map(|(name, entry)| {
                (
                    name.to_string(),
                    PathStats {
                        requests: entry.requests.load(Ordering::Relaxed),
                        in_flight: entry.in_flight.load(Ordering::Relaxed),
                        peak_in_flight: entry.peak_in_flight.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        let arrivals = if with_arrivals {
            inner
                .arrivals
                .iter()
                .map(|(path, ms)| Arrival {
                    path: path.to_string(),
                    ms: *ms,
                })
                .collect()
        } else {
            Vec::new()
        };
        Stats {
            connections: self.connections.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            paths,
            arrivals,
            limited: BTreeMap::new(),
        }
    }
}

/// Counted since accepted; no request yet.
const PROVISIONAL: u8 = 0;
/// Has carried a counted request.
const COUNTED: u8 = 1;
/// Has carried only `/stats` requests so far: left out of the counts.
const HIDDEN: u8 = 2;

/// The accounting of one connection: counted when accepted, left out again
/// if its first request is to `/stats` (fetching statistics must not change
/// them), and counted as open until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    stats: Arc<StatsState>,
    /// The reset generation the connection was accepted in.
    generation: u64,
    /// `PROVISIONAL`, `COUNTED` or `HIDDEN`.
    state: AtomicU8,
}

impl ConnectionGuard {
    /// Notes a request on this connection; `stats_request` is true for
    /// `/stats` and `/stats/reset`, which do not count.
    pub(crate) fn on_request(&self, stats_request: bool) {
        // Hot path: a connection that already counts stays counted.
        match (self.state.load(Ordering::Acquire), stats_request) {
            (COUNTED, _) | (HIDDEN, true) => return,
            _ => {}
        }
        // Rare transitions, serialised with resets by the stats lock.
        let inner = self.stats.lock();
        let same_generation = inner.generation == self.generation;
        match (self.state.load(Ordering::Acquire), stats_request) {
            (PROVISIONAL, true) => {
                if same_generation {
                    self.stats.connections.fetch_sub(1, Ordering::Relaxed);
                }
                self.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
                self.state.store(HIDDEN, Ordering::Release);
            }
            (PROVISIONAL, false) => self.state.store(COUNTED, Ordering::Release),
            (HIDDEN, false) => {
                // Accepted since the last reset: it is one of the connections
                // seen after all.
                if same_generation {
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                }
                self.stats.open_connections.fetch_add(1, Ordering::Relaxed);
                self.state.store(COUNTED, Ordering::Release);
            }
            _ => {}
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) != HIDDEN {
            self.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Keeps a request counted as in flight until dropped: by the response body
/// once it is complete, or with the handler future when the client goes away
/// or the server shuts down.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    stats: Arc<StatsState>,
    path: Arc<PathCounters>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.path.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let state = Arc::new(StatsState::new());
        let conn = state.connection_opened();
        let a = state.request_arrived("/a");
        let b = state.request_arrived("/a");
        let c = state.request_arrived("/b");
        let s = state.snapshot(true);
        assert_eq!(s.connections, 1);
        assert_eq!(s.open_connections, 1);
        assert_eq!(s.requests, 3);
        assert_eq!(s.in_flight, 3);
        assert_eq!(s.peak_in_flight, 3);
        assert_eq!(s.paths["/a"].requests, 2);
        assert_eq!(s.paths["/a"].peak_in_flight, 2);
        assert_eq!(s.arrivals.len(), 3);
        drop((a, c));
        state.reset();
        let s = state.snapshot(true);
        assert_eq!(s.connections, 0);
        assert_eq!(s.open_connections, 1);
        assert_eq!(s.requests, 0);
        assert_eq!(s.in_flight, 1);
        assert_eq!(s.peak_in_flight, 1);
        assert!(s.arrivals.is_empty());
        assert_eq!(s.paths.len(), 1);
        assert_eq!(s.paths["/a"].requests, 0);
        assert_eq!(s.paths["/a"].in_flight, 1);
        drop((b, conn));
        let s = state.snapshot(false);
        assert_eq!(s.open_connections, 0);
        assert_eq!(s.in_flight, 0);
    }

    #[test]
    fn stats_only_connections_are_left_out() {
        let state = Arc::new(StatsState::new());
        let real = state.connection_opened();
        real.on_request(false);
        real.on_request(true);
        let stats_only = state.connection_opened();
        stats_only.on_request(true);
        stats_only.on_request(true);
        let s = state.snapshot(false);
        assert_eq!((s.connections, s.open_connections), (1, 1));
        // A stats connection that goes on to carry a real request counts.
        stats_only.on_request(false);
        let s = state.snapshot(false);
        assert_eq!((s.connections, s.open_connections), (2, 2));
        drop(stats_only);
        // Reset through a fresh connection, which then makes requests: it was
        // accepted before the reset, so only `open_connections` sees it.
        let resetter = state.connection_opened();
        resetter.on_request(true);
        state.reset();
        resetter.on_request(false);
        let s = state.snapshot(false);
        assert_eq!((s.connections, s.open_connections), (0, 2));
        // Uncounting a connection accepted before a reset does not underflow.
        let old = state.connection_opened();
        state.reset();
        old.on_request(true);
        let s = state.snapshot(false);
        assert_eq!((s.connections, s.open_connections), (0, 2));
        drop((real, resetter, old));
        assert_eq!(state.snapshot(false).open_connections, 0);
    }

    #[test]
    fn arrivals_are_bounded() {
        let state = Arc::new(StatsState::new());
        for _ in 0..MAX_ARRIVALS + 5 {
            drop(state.request_arrived("/x"));
        }
        let s = state.snapshot(true);
        assert_eq!(s.arrivals.len(), MAX_ARRIVALS);
        assert_eq!(s.requests, (MAX_ARRIVALS + 5) as u64);
        assert!(s.arrivals.windows(2).all(|w| w[0].ms <= w[1].ms));
    }

    #[test]
    fn json_omits_empty_arrivals() {
        let state = Arc::new(StatsState::new());
        drop(state.request_arrived("/x"));
        let json = serde_json::to_value(state.snapshot(false)).expect("serializable");
        assert!(json.get("arrivals").is_none());
        let json = serde_json::to_value(state.snapshot(true)).expect("serializable");
        assert_eq!(json["arrivals"][0]["path"], "/x");
    }
}
