//! The run's configuration and its builder. Defaults are the documented
//! ones (`sluice run --help` shows them); the CLI
//! maps its options onto this type, so the engine never sees clap.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::redact::{REDACTED, Redactor};
use crate::retry::RetryOn;
use crate::units::Rate;

/// How long an idle pooled connection is kept unless configured (1 s).
///
/// A connection must be dropped before the server's keep-alive timer closes
/// it, or a request written onto it just then is lost in flight (the
/// keep-alive race). The shortest common server keep-alives are gunicorn's
/// 2 s and the 5 s of Apache, Node.js and uvicorn; 1 s stays under all of
/// them with a second's margin for timer slack. The cost, a new connection
/// after each pause longer than 1 s, is one handshake per pause.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How response bodies are stored in records (`--body`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyMode {
    /// JSON embedded as JSON, else UTF-8 text, else base64.
    #[default]
    Auto,
    /// UTF-8 text (base64 when the body is not UTF-8, so nothing is lost).
    Text,
    /// Always base64.
    Base64,
    /// Bodies are read (and capped) but not stored.
    None,
}

/// Which proxy the client uses. The engine never reads the environment: the
/// CLI turns `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` into this.
///
/// Its `Debug` shows the proxy URLs through [`Redactor::raw_url`]: a proxy
/// URL may carry credentials (`http://user:password@proxy:3128`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Proxy for `http://` URLs.
    pub http: Option<String>,
    /// Proxy for `https://` URLs.
    pub https: Option<String>,
    /// Hosts reached directly, comma-separated as in `NO_PROXY`.
    pub no_proxy: Option<String>,
}

/// TLS settings; verification is on unless `insecure`.
///
/// Its `Debug` never shows the client identity (it holds the private key),
/// only whether there is one, and counts the CA certificates.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// Extra trusted CA certificates, PEM.
    pub ca_pem: Vec<Vec<u8>>,
    /// Client certificate chain and private key, PEM.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Skip certificate verification (`-k`).
    pub insecure: bool,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Option<String>| url.as_deref().map(|u| Redactor::default().raw_url(u));
        f.debug_struct("ProxyConfig")
            .field("http", &shown(&self.http))
            .field("https", &shown(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let identity = self.identity_pem.as_ref().map(|_| REDACTED);
        f.debug_struct("TlsConfig")
            .field(
                "ca_pem",
                &format_args!("[{} PEM file(s)]", self.ca_pem.len()),
            )
            .field("identity_pem", &identity)
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// A setting that messages in records and events name. The engine calls it
/// by its field (`max_body_size`); a front end that set it from an option
/// of its own says so with [`ConfigBuilder::setting_names`] (the CLI:
/// `--max-body-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// [`Config::budget_burst`].
    BudgetBurst,
    /// [`Config::halt_after`].
    HaltAfter,
    /// [`Config::max_body_size`].
    MaxBodySize,
    /// [`Config::max_retry_after`].
    MaxRetryAfter,
}

impl Setting {
    /// The name of the [`Config`] field: the engine's own name for it.
    pub fn field(self) -> &'static str {
        match self {
            Setting::BudgetBurst => "budget_burst",
            Setting::HaltAfter => "halt_after",
            Setting::MaxBodySize => "max_body_size",
            Setting::MaxRetryAfter => "max_retry_after",
        }
    }
}

/// Everything a run needs to know. Build one with [`Config::builder`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Requests in flight at once across all origins. Default 16.
    pub concurrency: NonZeroUsize,
    /// Requests in flight at once per origin. Default unlimited.
    pub per_host_concurrency: Option<NonZeroUsize>,
    /// Attempt starts per period across all origins. Default unlimited.
    pub rate: Option<Rate>,
    /// Attempt starts per period per origin. Default unlimited.
    pub per_host_rate: Option<Rate>,
    /// Starts that may bunch up under the rates. Default 1.
    pub burst: NonZeroU32,
    /// Weighted budget spent by each attempt's cost. Default unlimited.
    pub budget: Option<Rate>,
    /// Budget that may be spent at once. Default: the budget's count.
    pub budget_burst: Option<NonZeroU64>,
    /// One attempt, from send to whole body. Default 5 minutes.
    pub timeout: Duration,
    /// DNS + TCP + TLS. Default 10 seconds.
    pub connect_timeout: Duration,
    /// Retries after the first attempt. Default 3.
    pub retries: u32,
    /// The whole retry policy. Default as [`RetryOn::default`].
    pub retry_on: RetryOn,
    /// Retry non-idempotent methods on everything in `retry_on`. Default off.
    pub retry_non_idempotent: bool,
    /// First backoff ceiling. Default 500 ms.
    pub backoff_initial: Duration,
    /// Largest backoff ceiling. Default 30 s.
    pub backoff_max: Duration,
    /// Longest server-requested wait honoured. Default 5 minutes.
    pub max_retry_after: Duration,
    /// Close an origin after this many consecutive hard failures; 0 never. Default 20.
    pub halt_after: u32,
    /// Headers added to every request (request lines override by name).
    pub headers: HeaderMap,
    /// Emit records in input order. Default off (completion order).
    pub ordered: bool,
    /// Under `ordered`, how far past the oldest unrecorded line a request may start. Default 1024.
    pub reorder_window: NonZeroUsize,
    /// How bodies are stored. Default auto.
    pub body_mode: BodyMode,
    /// Largest decoded body. Default 16 MiB.
    pub max_body_size: u64,
    /// Record response headers. Default off.
    pub include_headers: bool,
    /// Which names are secret.
    pub redactor: Redactor,
    /// TLS trust and identity.
    pub tls: TlsConfig,
    /// Proxies; default none.
    pub proxy: ProxyConfig,
    /// Offer HTTP/2. Default HTTP/1.1 only.
    pub http2: bool,
    /// Ask for gzip, br, zstd and decode. Default off.
    pub compressed: bool,
    /// Requests read ahead of the dispatcher. Default 1024 plus the concurrency.
    pub read_ahead: usize,
    /// How long an idle pooled connection is kept. Default
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`].
    pub pool_idle_timeout: Duration,
    /// The User-Agent header. Default `sluice/VERSION`.
    pub user_agent: String,
    /// How messages name a [`Setting`]. Default [`Setting::field`].
    pub setting_names: fn(Setting) -> &'static str,
    /// Limits shared with the other processes of a job on Redis
    /// ([`crate::shared`]). Default none: this process's limits are its own.
    pub shared: Option<crate::shared::SharedConfig>,
    /// Pace each origin by the rate-limit headers of its responses
    /// (`--learn-limits auto`). Default on.
    pub learn_limits: bool,
    /// The share of a learned limit aimed at (`--limit-headroom`). Default 1.0.
    pub limit_headroom: crate::ratelimit::Headroom,
    /// What retries may spend (`--retry-budget`); `None` is `off`. Default
    /// [`RetryBudget::DEFAULT`](crate::retry_budget::RetryBudget::DEFAULT).
    pub retry_budget: Option<crate::retry_budget::RetryBudget>,
    /// Find the concurrency limit within [1, `concurrency`] from the
    /// servers' answers (`--adaptive`). Default off: `concurrency` is exact.
    pub adaptive: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            concurrency: NonZeroUsize::new(16).expect("16 is not zero"),
            per_host_concurrency: None,
            rate: None,
            per_host_rate: None,
            burst: NonZeroU32::MIN,
            budget: None,
            budget_burst: None,
            timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            retries: 3,
            retry_on: RetryOn::default(),
            retry_non_idempotent: false,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            halt_after: 20,
            headers: HeaderMap::new(),
            ordered: false,
            reorder_window: NonZeroUsize::new(1024).expect("1024 is not zero"),
            body_mode: BodyMode::Auto,
            max_body_size: 16 * 1024 * 1024,
            include_headers: false,
            redactor: Redactor::default(),
            tls: TlsConfig::default(),
            proxy: ProxyConfig::default(),
            http2: false,
            compressed: false,
            read_ahead: 1024,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            user_agent: concat!("sluice/", env!("CARGO_PKG_VERSION")).to_string(),
            setting_names: Setting::field,
            shared: None,
            learn_limits: true,
            limit_headroom: crate::ratelimit::Headroom::FULL,
            retry_budget: Some(crate::retry_budget::RetryBudget::DEFAULT),
            adaptive: false,
        }
    }
}

impl Config {
    /// Starts from the defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = sluice::Config::builder()
    ///     .concurrency(std::num::NonZeroUsize::new(50).unwrap())
    ///     .rate("100/s".parse().unwrap())
    ///     .timeout(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.concurrency.get(), 50);
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// What messages call `setting`.
    pub fn name(&self, setting: Setting) -> &'static str {
        (self.setting_names)(setting)
    }

    /// The budget burst in effect: the given one, else one unit of the rate.
    pub fn effective_budget_burst(&self) -> Option<u64> {
        self.budget
            .map(|b| self.budget_burst.unwrap_or(b.count).get())
    }
}

/// A configuration error: a value that makes no sense together with another.
/// Messages name the [`Config`] fields; a front end that set them from
/// options of its own names those instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `backoff_initial` is longer than `backoff_max`.
    #[error("backoff_initial ({initial:?}) is longer than backoff_max ({max:?})")]
    BackoffInitialAboveMax {
        /// The first backoff ceiling.
        initial: Duration,
        /// The largest backoff ceiling.
        max: Duration,
    },
    /// `timeout` is zero.
    #[error("timeout must be longer than zero")]
    ZeroTimeout,
    /// `connect_timeout` is zero.
    #[error("connect_timeout must be longer than zero")]
    ZeroConnectTimeout,
    /// `budget_burst` is set without a `budget`.
    #[error("budget_burst needs a budget")]
    BudgetBurstWithoutBudget,
}

/// Builds a [`Config`]; every setter is named after the field it sets.
#[derive(Clone, Debug)]
pub struct ConfigBuilder(Config);

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident : $ty:ty => |$c:ident, $v:ident| $body:expr;)*) => {
        impl ConfigBuilder {
            $($(#[$doc])* pub fn $name(mut self, $v: $ty) -> ConfigBuilder { let $c = &mut self.0; $body; self })*
        }
    };
}

setters! {
    /// Requests in flight at once.
    concurrency: NonZeroUsize => |c, v| c.concurrency = v;
    /// Requests in flight at once per origin (unset: unlimited).
    per_host_concurrency: NonZeroUsize => |c, v| c.per_host_concurrency = Some(v);
    /// Attempt starts per period across origins.
    rate: Rate => |c, v| c.rate = Some(v);
    /// Attempt starts per period per origin.
    per_host_rate: Rate => |c, v| c.per_host_rate = Some(v);
    /// Starts that may bunch up.
    burst: NonZeroU32 => |c, v| c.burst = v;
    /// Weighted budget.
    budget: Rate => |c, v| c.budget = Some(v);
    /// Budget that may be spent at once.
    budget_burst: NonZeroU64 => |c, v| c.budget_burst = Some(v);
    /// Attempt timeout.
    timeout: std::time::Duration => |c, v| c.timeout = v;
    /// Connect timeout.
    connect_timeout: std::time::Duration => |c, v| c.connect_timeout = v;
    /// Retries after the first attempt.
    retries: u32 => |c, v| c.retries = v;
    /// The retry policy.
    retry_on: RetryOn => |c, v| c.retry_on = v;
    /// Retry non-idempotent methods too.
    retry_non_idempotent: bool => |c, v| c.retry_non_idempotent = v;
    /// First backoff ceiling.
    backoff_initial: std::time::Duration => |c, v| c.backoff_initial = v;
    /// Largest backoff ceiling.
    backoff_max: std::time::Duration => |c, v| c.backoff_max = v;
    /// Longest Retry-After honoured.
    max_retry_after: std::time::Duration => |c, v| c.max_retry_after = v;
    /// Consecutive hard failures that close an origin; 0 disables.
    halt_after: u32 => |c, v| c.halt_after = v;
    /// Headers for every request.
    headers: HeaderMap => |c, v| c.headers = v;
    /// Records in input order.
    ordered: bool => |c, v| c.ordered = v;
    /// Reorder window.
    reorder_window: NonZeroUsize => |c, v| c.reorder_window = v;
    /// Body storage.
    body_mode: BodyMode => |c, v| c.body_mode = v;
    /// Largest decoded body.
    max_body_size: u64 => |c, v| c.max_body_size = v;
    /// Record response headers.
    include_headers: bool => |c, v| c.include_headers = v;
    /// Secret names.
    redactor: Redactor => |c, v| c.redactor = v;
    /// TLS settings.
    tls: TlsConfig => |c, v| c.tls = v;
    /// Proxy settings.
    proxy: ProxyConfig => |c, v| c.proxy = v;
    /// Offer HTTP/2.
    http2: bool => |c, v| c.http2 = v;
    /// Ask for compressed responses.
    compressed: bool => |c, v| c.compressed = v;
    /// Requests read ahead.
    read_ahead: usize => |c, v| c.read_ahead = v;
    /// Idle connection lifetime.
    pool_idle_timeout: std::time::Duration => |c, v| c.pool_idle_timeout = v;
    /// User-Agent header.
    user_agent: String => |c, v| c.user_agent = v;
    /// How messages name settings (a front end's option names).
    setting_names: fn(Setting) -> &'static str => |c, v| c.setting_names = v;
    /// Limits shared on Redis.
    shared: crate::shared::SharedConfig => |c, v| c.shared = Some(v);
    /// Pace origins by their rate-limit headers.
    learn_limits: bool => |c, v| c.learn_limits = v;
    /// The share of a learned limit aimed at.
    limit_headroom: crate::ratelimit::Headroom => |c, v| c.limit_headroom = v;
    /// The retry budget; `None` is off.
    retry_budget: Option<crate::retry_budget::RetryBudget> => |c, v| c.retry_budget = v;
    /// Adaptive concurrency within [1, `concurrency`].
    adaptive: bool => |c, v| c.adaptive = v;
}

impl ConfigBuilder {
    /// Checks the combination and returns the configuration.
    ///
    /// # Errors
    ///
    /// When the settings contradict each other: a backoff start above its maximum, a zero timeout, or a budget burst without a budget ([`ConfigError`]).
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.0;
        if c.backoff_initial > c.backoff_max {
            return Err(ConfigError::BackoffInitialAboveMax {
                initial: c.backoff_initial,
                max: c.backoff_max,
            });
        }
        if c.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if c.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroConnectTimeout);
        }
        if c.budget_burst.is_some() && c.budget.is_none() {
            return Err(ConfigError::BudgetBurstWithoutBudget);
        }
        Ok(c)
    }
}

impl std::str::FromStr for Rate {
    type Err = crate::units::UnitError;
    fn from_str(s: &str) -> Result<Rate, Self::Err> {
        Rate::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_private_key_or_proxy_credentials() {
        let config = Config::builder()
            .tls(TlsConfig {
                ca_pem: vec![b"-----BEGIN CERTIFICATE-----".to_vec()],
                identity_pem: Some((
                    b"-----BEGIN CERTIFICATE-----".to_vec(),
                    b"-----BEGIN PRIVATE KEY-----\nSECRETKEY".to_vec(),
                )),
                insecure: false,
            })
            .proxy(ProxyConfig {
                http: Some("http://alice:hunter2@proxy.example:3128".into()),
                https: Some("http://proxy.example:3128/?token=SECRETTOKEN".into()),
                no_proxy: Some("localhost".into()),
            })
            .build()
            .unwrap();
        let shown = format!("{config:?}");
        for secret in [
            "SECRETKEY",
            "PRIVATE KEY",
            "alice",
            "hunter2",
            "SECRETTOKEN",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in [
            "proxy.example:3128",
            "localhost",
            "[1 PEM file(s)]",
            REDACTED,
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }
}
