//! Resolution: the options of `sluice run` (clap's [`RunArgs`]) with the
//! environment and the files they name (`${VAR}` in `-H`, the proxy
//! variables, `--shard env`, TLS files) → the engine's [`sluice::Config`].
//! This is the only place that reads the environment.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use reqwest::header::HeaderMap;
use sluice::config::DEFAULT_SHARED_TIMEOUT;
use sluice::format::OutputFormat;
use sluice::headers::{self, HeaderError, Setter};
use sluice::shard::Shard;
use sluice::shared::SharedConfig;
use sluice::{
    BodyMode, Config, ConfigBuilder as B, ConfigError, ProxyConfig, Redactor, Setting, TlsConfig,
};

use crate::cli::{BodyArg, LearnLimits, OutputFormatArg, RunArgs, ShardArg};

/// The environment variable that holds a shard's index (set by Kubernetes in an Indexed Job).
const SHARD_INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
/// The environment variable that holds the number of shards.
const SHARD_COUNT_VAR: &str = "SLUICE_SHARDS";

impl ShardArg {
    /// The shard, reading the environment for `env`.
    pub fn resolve(self) -> Result<Shard> {
        match self {
            ShardArg::Fixed(shard) => Ok(shard),
            ShardArg::Env => {
                let var = |name: &str| {
                    std::env::var(name).with_context(|| {
                        format!("--shard env: {name} is not set (or not UTF-8): set {SHARD_INDEX_VAR} (Kubernetes sets it in an Indexed Job) and {SHARD_COUNT_VAR}, or give --shard K/N")
                    })
                };
                let text = format!("{}/{}", var(SHARD_INDEX_VAR)?, var(SHARD_COUNT_VAR)?);
                Shard::parse(&text).with_context(|| {
                    format!("--shard env: {SHARD_INDEX_VAR}/{SHARD_COUNT_VAR} is {text}")
                })
            }
        }
    }
}

impl RunArgs {
    /// The engine configuration these options describe: each option given
    /// set over the engine's defaults ([`Config::default`]), which stand
    /// for every option left out.
    pub fn config(&self) -> Result<Config> {
        let redactor = Redactor::with_extra(&self.redact);
        let b = Config::builder()
            .retry_non_idempotent(self.retry_non_idempotent)
            .learn_limits(self.learn_limits == LearnLimits::Auto)
            .adaptive(self.adaptive)
            .headers(parse_headers(&self.headers, &redactor)?)
            .ordered(self.ordered)
            .body_mode(self.body_mode())
            // The batch formats take the request id from the response headers.
            .include_headers(self.include_headers || self.batch_format())
            .redactor(redactor)
            .tls(self.tls()?)
            .proxy(self.checked_proxy()?)
            .http2(self.http2)
            .compressed(self.compressed)
            .setting_names(option_of);
        let b = self.with_limits(b);
        let b = self.with_retries(b);
        let b = given(b, self.reorder_window.map(at_least_one), B::reorder_window);
        let b = given(b, self.max_body_size, B::max_body_size);
        let b = given(b, self.shared(), B::shared);
        b.build().map_err(config_error)
    }

    /// The limits given: concurrency, rates, budget, timeouts.
    fn with_limits(&self, b: B) -> B {
        let b = given(b, self.concurrency.map(at_least_one), B::concurrency);
        let b = given(
            b,
            self.per_host_concurrency.map(at_least_one),
            B::per_host_concurrency,
        );
        let b = given(b, self.rate, B::rate);
        let b = given(b, self.per_host_rate, B::per_host_rate);
        let b = given(b, self.burst.and_then(NonZeroU32::new), B::burst);
        let b = given(b, self.budget, B::budget);
        let b = given(
            b,
            self.budget_burst.and_then(NonZeroU64::new),
            B::budget_burst,
        );
        let b = given(b, self.limit_headroom, B::limit_headroom);
        let b = given(b, self.timeout, B::timeout);
        let b = given(b, self.connect_timeout, B::connect_timeout);
        given(b, self.pool_idle_timeout, B::pool_idle_timeout)
    }

    /// The retry options given.
    fn with_retries(&self, b: B) -> B {
        let b = given(b, self.retries, B::retries);
        let b = given(b, self.retry_on.clone(), B::retry_on);
        let b = given(b, self.retry_budget.map(|r| r.0), B::retry_budget);
        let b = given(b, self.backoff_initial, B::backoff_initial);
        let b = given(b, self.backoff_max, B::backoff_max);
        let b = given(b, self.max_retry_after, B::max_retry_after);
        given(b, self.halt_after, B::halt_after)
    }

    /// `--redis` with `--job` (clap requires each with the other).
    fn shared(&self) -> Option<SharedConfig> {
        let (url, job) = (self.redis.clone()?, self.job.clone()?);
        Some(SharedConfig {
            url,
            job,
            timeout: self.redis_timeout.unwrap_or(DEFAULT_SHARED_TIMEOUT),
        })
    }

    /// The results are written in a provider's batch format.
    pub fn batch_format(&self) -> bool {
        self.output_format != OutputFormatArg::Sluice
    }

    /// The combinations of output options that cannot work, checked before
    /// anything is sent.
    pub fn check_output_options(&self) -> Result<()> {
        if self.batch_format() && self.body != BodyArg::Auto {
            bail!(
                "--output-format {} writes response bodies as the provider does (JSON as JSON), so --body must be auto (the default)",
                OutputFormat::from(self.output_format)
            );
        }
        if self.errors_output.is_some()
            && self
                .output
                .as_deref()
                .is_none_or(|p| p == std::path::Path::new("-"))
        {
            bail!("--errors-output splits failures out of -o FILE: give -o FILE too");
        }
        Ok(())
    }

    fn body_mode(&self) -> BodyMode {
        match self.body {
            BodyArg::Auto => BodyMode::Auto,
            BodyArg::Text => BodyMode::Text,
            BodyArg::Base64 => BodyMode::Base64,
            BodyArg::None => BodyMode::None,
        }
    }

    fn tls(&self) -> Result<TlsConfig> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()))
        };
        let mut tls = TlsConfig {
            insecure: self.insecure,
            ..TlsConfig::default()
        };
        if let Some(ca) = &self.cacert {
            tls.ca_pem.push(read(ca, "CA certificate (--cacert)")?);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls.identity_pem = Some((
                read(cert, "client certificate (--cert)")?,
                read(key, "client key (--key)")?,
            ));
        }
        Ok(tls)
    }

    /// `--proxy`, else the environment as curl reads it; a proxy URL that is
    /// not http:// or https:// is an error, not silently ignored.
    fn checked_proxy(&self) -> Result<ProxyConfig> {
        let proxy = self.proxy_config();
        for url in [&proxy.http, &proxy.https].into_iter().flatten() {
            let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                bail!(
                    "proxy `{}` is not an http:// or https:// URL (from --proxy or the *_PROXY variables)",
                    sluice::Redactor::default().raw_url(url)
                );
            }
        }
        Ok(proxy)
    }

    /// `--proxy`, else the environment as curl reads it.
    fn proxy_config(&self) -> ProxyConfig {
        if self.no_proxy {
            return ProxyConfig::default();
        }
        if let Some(p) = &self.proxy {
            return ProxyConfig {
                http: Some(p.clone()),
                https: Some(p.clone()),
                no_proxy: None,
            };
        }
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let no_proxy = env(&["no_proxy", "NO_PROXY"]);
        // curl treats `*` as "no host uses a proxy"; reqwest matches `*`
        // only against names, not IP addresses, so handle it here.
        if no_proxy
            .as_deref()
            .is_some_and(|list| list.split(',').any(|h| h.trim() == "*"))
        {
            return ProxyConfig::default();
        }
        ProxyConfig {
            http: env(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            https: env(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy,
        }
    }
}

/// The option that sets a setting, for the engine's messages.
pub(crate) fn option_of(setting: Setting) -> &'static str {
    match setting {
        Setting::BaseUrl => "--base-url",
        Setting::InputFormat => "--input-format",
        Setting::BudgetBurst => "--budget-burst",
        Setting::HaltAfter => "--halt-after",
        Setting::MaxBodySize => "--max-body-size",
        Setting::MaxRetryAfter => "--max-retry-after",
        _ => setting.field(),
    }
}

/// A configuration error in the words of the options that set the fields
/// it names (the engine knows fields, not options).
fn config_error(e: ConfigError) -> anyhow::Error {
    match e {
        ConfigError::BackoffInitialAboveMax { initial, max } => anyhow::anyhow!(
            "--backoff-initial ({initial:?}) is longer than --backoff-max ({max:?})"
        ),
        ConfigError::ZeroTimeout => anyhow::anyhow!("--timeout must be longer than zero"),
        ConfigError::ZeroConnectTimeout => {
            anyhow::anyhow!("--connect-timeout must be longer than zero")
        }
        ConfigError::BudgetBurstWithoutBudget => anyhow::anyhow!("--budget-burst needs --budget"),
        other => other.into(),
    }
}

/// The builder with `value` set by `set`, or as it was when the option was
/// not given.
fn given<T>(b: B, value: Option<T>, set: fn(B, T) -> B) -> B {
    match value {
        Some(v) => set(b, v),
        None => b,
    }
}

/// A count option as the engine's type; clap's `range(1..)` has already
/// refused 0, so the `MIN` fallbacks never apply.
fn at_least_one(n: u64) -> NonZeroUsize {
    NonZeroUsize::new(usize::try_from(n).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
}

/// Parses `-H 'Name: value'` options, expanding `${VAR}` from the environment.
pub fn parse_headers(specs: &[String], redactor: &Redactor) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for spec in specs {
        let Some((name, value)) = spec.split_once(':') else {
            // The text may hold a secret (`Authorization Bearer ...`): do not echo it.
            bail!("-H: a header has no `:`; write headers as 'Name: value'");
        };
        let name = name.trim();
        let value = expand_env(value.trim(), name)?;
        if name.is_empty() {
            bail!("-H: a header has no name before its `:`; write headers as 'Name: value'");
        }
        let header = headers::name(name, Setter::Option).map_err(header_error)?;
        let mut value = headers::value(name, &value).map_err(header_error)?;
        if redactor.is_secret_header(name) {
            value.set_sensitive(true);
        }
        headers.append(header, value);
    }
    Ok(headers)
}

/// A `-H` that cannot be sent, in the words of the command line.
fn header_error(e: HeaderError) -> anyhow::Error {
    match e {
        HeaderError::Forbidden { name, .. } => {
            anyhow::anyhow!("-H {name}: sluice sets this header itself; remove it")
        }
        e => anyhow::Error::new(e).context("-H"),
    }
}

/// Replaces `${VAR}` with the variable's value; an unset variable is an error.
fn expand_env(value: &str, header: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("-H {header}: `${{` without a closing `}}`");
        };
        let var = &after[..end];
        let val = std::env::var(var).map_err(|_| {
            anyhow::anyhow!("-H {header}: environment variable `{var}` is not set; export it or remove ${{{var}}}")
        })?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(args: &[&str]) -> String {
        let argv = ["sluice", "run", "--no-proxy"].iter().chain(args);
        let cli = crate::cli::parse_from(argv).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not a run")
        };
        format!("{:?}", run.config().unwrap())
    }

    /// Every default the help states is the engine's: given explicitly, it
    /// makes the same configuration as the option left out.
    #[test]
    fn stated_defaults_are_the_engines() {
        let unset = config_of(&[]);
        for (id, value) in crate::cli::run_defaults() {
            if id == "redis_timeout" {
                continue; // needs --redis; the value is DEFAULT_SHARED_TIMEOUT as written
            }
            let option = format!("--{}", id.replace('_', "-"));
            assert_eq!(config_of(&[&option, &value]), unset, "{option} {value}");
        }
        let cli = crate::cli::parse_from(["sluice", "run"]).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(run.redis_timeout, None);
    }

    #[test]
    fn headers_expand_and_refuse_bad_input() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("SLUICE_TEST_TOKEN", "abc") };
        let r = Redactor::default();
        let h = parse_headers(&["Authorization: Bearer ${SLUICE_TEST_TOKEN}".into()], &r).unwrap();
        assert_eq!(h["authorization"], "Bearer abc");
        assert!(h["authorization"].is_sensitive());
        assert!(parse_headers(&["X: ${SLUICE_TEST_UNSET_VAR}".into()], &r).is_err());
        assert!(parse_headers(&["NoColon".into()], &r).is_err());
        assert!(parse_headers(&["Bad Name: x".into()], &r).is_err());
        assert!(parse_headers(&["X: a\r\nY: b".into()], &r).is_err());
    }
}
