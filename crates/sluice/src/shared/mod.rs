//! One set of limits shared by every process of a job, on Redis (or Valkey).
//!
//! Each process reserves its starts from one Lua script (`reserve.lua`) run
//! atomically on Redis with Redis's own clock, so no process's clock skew
//! matters. The script does the arithmetic of [`crate::gcra`] exactly
//! ([`Gcra::earliest`](crate::gcra::Gcra::earliest), then
//! [`Gcra::charge`](crate::gcra::Gcra::charge)) for the global `--rate`,
//! `--budget` and each origin's `--per-host-rate`, all or nothing across
//! them: a start is reserved with its rate cell, its budget cells and its
//! origin's cell at one instant, or not at all. At high rates a
//! call reserves every start due within a short horizon, so Redis sees well
//! under one round trip per request; the scheduler starts each only at its
//! instant ([`crate::scheduler`] holds them as grants). The same call shares
//! origin pauses (a 429 or 503 seen by one process pauses that origin for
//! all) and closed origins.
//!
//! Keys live under `sluice:{JOB}:` (one hash tag, so a cluster keeps them on
//! one shard). Times on Redis are whole microseconds since the epoch, and a
//! limiter's state is kept in nanoseconds since its first use, scaled as
//! `Gcra` scales them, so numbers stay exact in Lua's doubles for months.

pub mod link;

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};

use crate::gcra::Gcra;
use crate::units::Rate;

pub use link::{Grant, HORIZON, Link, MOST, Reservation, Trouble};

/// The script every process runs; see its header for keys and arguments.
const RESERVE: &str = include_str!("reserve.lua");

/// How long one call to Redis may take before Redis counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the shared limits are, and how long to wait for Redis when it is
/// gone (`--redis`, `--job`, `--redis-timeout`).
#[derive(Clone)]
pub struct SharedConfig {
    /// `redis://`, `rediss://` or `unix://` URL (may hold a password).
    pub url: String,
    /// The job's name: processes with the same name share limits.
    pub job: String,
    /// After Redis has been unreachable this long, the run stops like a
    /// closed origin (resumable).
    pub timeout: Duration,
}

impl fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfig")
            .field("url", &redacted_url(&self.url))
            .field("job", &self.job)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The URL as it may be shown: a password (in the user info, or in
/// redis-rs's `?pass=` for unix sockets) replaced by `REDACTED`.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => crate::redact::Redactor::with_extra(["pass", "password"]).url(&parsed),
        Err(_) => "(not a URL)".into(),
    }
}

/// Why the shared limiter could not be set up; nothing was sent. The
/// message names no front end's option: a front end says which of its
/// options gave the URL ([`SharedError::url`]).
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The URL is not one redis-rs reads.
    #[error("{message} (give redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH)")]
    Url {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// Redis refused the password or user.
    #[error("authentication refused: {message} (check the user and password in the URL)")]
    Auth {
        /// The URL, redacted.
        url: String,
        /// What Redis said.
        message: String,
    },
    /// Redis could not be reached, or would not run the script.
    #[error("{message}")]
    Unusable {
        /// The URL, redacted.
        url: String,
        /// What went wrong, and what to do.
        message: String,
    },
}

impl SharedError {
    /// The Redis URL the error is about, redacted.
    pub fn url(&self) -> &str {
        match self {
            SharedError::Url { url, .. }
            | SharedError::Auth { url, .. }
            | SharedError::Unusable { url, .. } => url,
        }
    }
}

/// One limited dimension, as the script takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dimension {
    /// The key's last part (`rate`, `budget`).
    pub name: &'static str,
    /// Scaled units one cell costs ([`Gcra::shape`]).
    pub period: u128,
    /// Scaled units per nanosecond.
    pub count: u128,
    /// Cells that may bunch up.
    pub burst: u128,
}

/// A shared cell's rate is stretched by this ratio before [`Gcra`] paces
/// it (0.5% below), so the job's starts go 1% below the rate: twice the
/// local margin, since a job's starts come from several processes, each
/// woken late by its own amount, and each grant may go a little after
/// its instant (`scheduler::shared::late_allowed`) with the bound still
/// holding at the server.
pub const SHARED_PACING: (u64, u32) = (200, 201);

/// The rate the job's processes reserve on Redis for `rate`: see
/// [`SHARED_PACING`]. [`Gcra::new`] of it is the in-process limiter the
/// script's arithmetic equals.
pub fn paced(rate: Rate) -> Rate {
    Rate {
        count: rate.count.saturating_mul(
            std::num::NonZeroU64::new(SHARED_PACING.0).unwrap_or(std::num::NonZeroU64::MIN),
        ),
        per: rate.per * SHARED_PACING.1,
    }
}

impl Dimension {
    /// The dimension of `rate` with `burst`, shaped as [`Gcra`] shapes it
    /// ([`paced`]).
    pub fn new(name: &'static str, rate: Rate, burst: u64) -> Dimension {
        let now = tokio::time::Instant::now();
        Dimension::of(name, &Gcra::new(paced(rate), burst, now))
    }

    /// A learned rate of `per_second` with `burst`, shaped as the local
    /// learned limiter's ([`Gcra::with_rate`]), [`paced`] as the others.
    pub fn learned(per_second: f64, burst: u64) -> Dimension {
        let now = tokio::time::Instant::now();
        let (count, per) = SHARED_PACING;
        let per_second = per_second * count as f64 / f64::from(per);
        Dimension::of("learned", &Gcra::with_rate(per_second, burst, now))
    }

    fn of(name: &'static str, gcra: &Gcra) -> Dimension {
        let (period, count, burst) = gcra.shape();
        Dimension {
            name,
            period,
            count,
            burst,
        }
    }
}

/// The limited dimensions of a job (none: only pauses and closures are
/// shared, and a start still waits for Redis to answer).
#[derive(Clone, Copy, Debug, Default)]
pub struct Dimensions {
    /// `--rate`, with `--burst`.
    pub rate: Option<Dimension>,
    /// `--budget`, with its burst.
    pub budget: Option<Dimension>,
    /// `--per-host-rate`, with `--burst`: one key per origin.
    pub host: Option<Dimension>,
}

impl Dimensions {
    /// The dimensions `config` limits: `--rate` and `--per-host-rate` with
    /// `--burst`, `--budget` with its burst.
    pub fn of(config: &crate::Config) -> Dimensions {
        let burst = u64::from(config.burst.get());
        Dimensions {
            rate: (config.rate).map(|r| Dimension::new("rate", r, burst)),
            budget: (config.budget)
                .map(|b| Dimension::new("budget", b, config.effective_budget_burst().unwrap_or(1))),
            host: (config.per_host_rate).map(|r| Dimension::new("host", r, burst)),
        }
    }
}

/// The job's limits on Redis: a connection and the script.
pub struct Limiter {
    client: Client,
    con: MultiplexedConnection,
    script: Script,
    job: String,
    url: String,
    /// The global rate (cost 1 a start) and the budget (a request's cells).
    pub rate: Option<Dimension>,
    /// See `rate`.
    pub budget: Option<Dimension>,
    /// The per-origin rate (cost 1 a start), one key per origin.
    pub host: Option<Dimension>,
    /// How long to wait for Redis when it is gone.
    pub timeout: Duration,
}

/// One call: how many starts to reserve, what to publish.
#[derive(Clone, Debug, Default)]
pub struct Call {
    /// Starts wanted (0: only publish, and read pauses and closures).
    pub wanted: u32,
    /// Budget cells each start spends.
    pub budget_cells: u64,
    /// With `--per-host-rate`: the origin the starts are for (its own
    /// dimension is reserved with the others, all or nothing).
    pub origin: Option<String>,
    /// Reserve only starts due within this.
    pub horizon: Duration,
    /// Reserve no start due sooner than this: the time the reply takes to
    /// reach the scheduler, so every grant arrives before its instant.
    pub lead: Duration,
    /// Pause this origin for this long, for every process.
    pub pause: Option<(String, Duration)>,
    /// Close this origin, for every process, saying why.
    pub close: Option<(String, String)>,
    /// Publish what this process learned of an origin's limits: its
    /// shape, and the requests its server's last answer proves are left.
    pub learn: Option<(String, Dimension, i64)>,
    /// Use this time (microseconds since the epoch) instead of Redis's
    /// clock: for tests only.
    pub now_us: Option<u64>,
}

/// Learned limits live this long after their last publication (each
/// response that speaks rate-limit headers publishes them again), so a
/// job's next run does not inherit a limit its server no longer has.
pub const LEARNED_TTL: Duration = Duration::from_secs(600);

/// What Redis answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// Redis's clock, microseconds since the epoch.
    pub now_us: u64,
    /// Each start reserved: when it may go, after Redis's now.
    pub starts: Vec<Duration>,
    /// The first start not reserved is due this long after now (beyond
    /// the horizon).
    pub missed: Option<Duration>,
    /// Origins paused for everyone, and for how much longer.
    pub pauses: Vec<(String, Duration)>,
    /// Origins closed for everyone, and why.
    pub closed: Vec<(String, String)>,
}

impl Limiter {
    /// Connects, authenticates and loads the script, so a wrong URL, a
    /// refused password or a Redis that runs no scripts fails before
    /// anything is sent.
    ///
    /// # Errors
    /// A wrong URL, an unreachable Redis, a refused password, or a Redis
    /// that cannot run the script.
    pub async fn connect(config: &SharedConfig, dims: Dimensions) -> Result<Limiter, SharedError> {
        let url = redacted_url(&config.url);
        let client = Client::open(config.url.as_str()).map_err(|e| SharedError::Url {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let con = connect(&client).await.map_err(|e| start_error(&url, e))?;
        let script = Script::new(RESERVE);
        let mut limiter = Limiter {
            client,
            con,
            script,
            job: config.job.clone(),
            url,
            rate: dims.rate,
            budget: dims.budget,
            host: dims.host,
            timeout: config.timeout,
        };
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(RESERVE);
        let loaded: Result<String, RedisError> = load.query_async(&mut limiter.con).await;
        loaded.map_err(|e| {
            // A server that wants a password accepts the connection and
            // refuses the first command: that is this one.
            if is_auth(&e) {
                return start_error(&limiter.url, e);
            }
            SharedError::Unusable {
                url: limiter.url.clone(),
                message: format!("cannot load sluice's Lua script: {e} (sluice needs EVAL/SCRIPT: Redis 5 or later, or Valkey, with scripting allowed for this user)"),
            }
        })?;
        limiter
            .call(&Call::default())
            .await
            .map_err(|e| SharedError::Unusable {
                url: limiter.url.clone(),
                message: format!("sluice's script failed: {e}"),
            })?;
        Ok(limiter)
    }

    /// The limiter `config` shares its limits through (`None` when it
    /// shares none), connected as [`Limiter::connect`] connects: every
    /// front end connects it before anything is sent.
    ///
    /// # Errors
    /// As [`Limiter::connect`].
    pub async fn for_config(config: &crate::Config) -> Result<Option<Limiter>, SharedError> {
        match &config.shared {
            Some(shared) => Limiter::connect(shared, Dimensions::of(config))
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Reconnects after a failure (the script is loaded again on demand:
    /// redis-rs falls back from EVALSHA to EVAL).
    ///
    /// # Errors
    /// Redis is still unreachable.
    pub async fn reconnect(&mut self) -> Result<(), RedisError> {
        self.con = connect(&self.client).await?;
        Ok(())
    }

    /// Runs the script once.
    ///
    /// # Errors
    /// The connection failed or the script returned an error.
    pub async fn call(&mut self, call: &Call) -> Result<Reply, RedisError> {
        let mut invocation = self.script.prepare_invoke();
        let key = |what: &str| format!("sluice:{{{}}}:{what}", self.job);
        invocation.key(key("pauses")).key(key("closed"));
        // The learned limits published, and those of the starts' origin.
        let learned = |origin: Option<&String>| {
            key(&format!("learned:{}", origin.map_or("", |o| o.as_str())))
        };
        invocation.key(learned(call.learn.as_ref().map(|l| &l.0)));
        invocation.key(learned(call.origin.as_ref()));
        let host = self.host.filter(|_| call.origin.is_some());
        let dims: Vec<(Dimension, u64)> =
            [(self.rate, 1), (self.budget, call.budget_cells), (host, 1)]
                .into_iter()
                .filter_map(|(d, cost)| d.map(|d| (d, cost)))
                .collect();
        for (dim, _) in &dims {
            match (dim.name, &call.origin) {
                ("host", Some(origin)) => invocation.key(key(&format!("host:{origin}"))),
                (name, _) => invocation.key(key(name)),
            };
        }
        let (pause_origin, pause_us) = match &call.pause {
            Some((origin, wait)) => (origin.as_str(), wait.as_micros() as u64),
            None => ("", 0),
        };
        let (close_origin, close_reason) = match &call.close {
            Some((origin, reason)) => (origin.as_str(), reason.as_str()),
            None => ("", ""),
        };
        invocation
            .arg(call.now_us.map_or(String::new(), |n| n.to_string()))
            .arg(call.horizon.as_nanos() as u64)
            .arg(call.wanted)
            .arg(pause_origin)
            .arg(pause_us)
            .arg(close_origin)
            .arg(close_reason);
        match &call.learn {
            Some((_, dim, left)) => invocation
                .arg(dim.period.to_string())
                .arg(dim.count.to_string())
                .arg(dim.burst.to_string())
                .arg(left)
                .arg(LEARNED_TTL.as_secs()),
            None => invocation.arg("").arg("").arg("").arg("").arg(""),
        };
        invocation.arg(call.lead.as_nanos() as u64);
        for (dim, cost) in &dims {
            invocation
                .arg(dim.period.to_string())
                .arg(dim.count.to_string())
                .arg(dim.burst.to_string())
                .arg(cost);
        }
        let raw: (u64, Vec<u64>, i64, Vec<String>, Vec<String>) =
            invocation.invoke_async(&mut self.con).await?;
        let (now_us, starts, missed, pauses, closed) = raw;
        Ok(Reply {
            now_us,
            starts: starts.into_iter().map(Duration::from_nanos).collect(),
            missed: u64::try_from(missed).ok().map(Duration::from_nanos),
            pauses: pairs(pauses)
                .filter_map(|(o, us)| Some((o, Duration::from_micros(us.parse().ok()?))))
                .collect(),
            closed: pairs(closed).collect(),
        })
    }
}

/// `[a, b, c, d]` as `(a, b), (c, d)`.
fn pairs(flat: Vec<String>) -> impl Iterator<Item = (String, String)> {
    let mut items = flat.into_iter();
    std::iter::from_fn(move || Some((items.next()?, items.next()?)))
}

async fn connect(client: &Client) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CALL_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Whether Redis refused for want of (the right) credentials.
fn is_auth(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|code| code == "NOAUTH" || code == "WRONGPASS")
        || e.to_string().contains("NOAUTH")
        || e.to_string().contains("WRONGPASS")
}

fn start_error(url: &str, e: RedisError) -> SharedError {
    let message = e.to_string();
    if is_auth(&e) {
        return SharedError::Auth {
            url: url.to_string(),
            message,
        };
    }
    SharedError::Unusable {
        url: url.to_string(),
        message: format!("cannot connect: {message} (is Redis running there, and reachable?)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let config = SharedConfig {
            url: "redis://user:hunter2@127.0.0.1:6379/0".into(),
            job: "j".into(),
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        let socket = redacted_url("unix:///run/redis.sock?pass=hunter2&db=1");
        assert!(
            !socket.contains("hunter2") && socket.contains("db=1"),
            "{socket}"
        );
    }
}
