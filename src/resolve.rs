//! Resolution: the options of `sluice run` (clap's [`RunArgs`]) with the
//! environment and the files they name (`${VAR}` in `-H`, the proxy
//! variables, `--shard env`, TLS files) → the engine's [`sluice::Config`].
//! This is the only place that reads the environment.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use reqwest::header::HeaderMap;
use sluice::format::OutputFormat;
use sluice::headers::{self, HeaderError, Setter};
use sluice::shard::Shard;
use sluice::{BodyMode, Config, ConfigError, ProxyConfig, Redactor, Setting, TlsConfig};

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
    /// The engine configuration these options describe.
    pub fn config(&self) -> Result<Config> {
        let redactor = Redactor::with_extra(&self.redact);
        let mut b = Config::builder()
            .concurrency(at_least_one(self.concurrency))
            .burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN))
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .retries(self.retries)
            .retry_on(self.retry_on.clone())
            .retry_non_idempotent(self.retry_non_idempotent)
            .backoff_initial(self.backoff_initial)
            .backoff_max(self.backoff_max)
            .max_retry_after(self.max_retry_after)
            .halt_after(self.halt_after)
            .learn_limits(self.learn_limits == LearnLimits::Auto)
            .limit_headroom(self.limit_headroom)
            .retry_budget(self.retry_budget.0)
            .adaptive(self.adaptive)
            .headers(parse_headers(&self.headers, &redactor)?)
            .ordered(self.ordered)
            .reorder_window(at_least_one(self.reorder_window))
            .body_mode(self.body_mode())
            .max_body_size(self.max_body_size)
            // The batch formats take the request id from the response headers.
            .include_headers(self.include_headers || self.batch_format())
            .redactor(redactor)
            .tls(self.tls()?)
            .proxy(self.checked_proxy()?)
            .http2(self.http2)
            .compressed(self.compressed)
            .setting_names(option_of);
        if let Some(n) = self.per_host_concurrency {
            b = b.per_host_concurrency(at_least_one(n));
        }
        if let Some(d) = self.pool_idle_timeout {
            b = b.pool_idle_timeout(d);
        }
        if let Some(r) = self.rate {
            b = b.rate(r);
        }
        if let Some(r) = self.per_host_rate {
            b = b.per_host_rate(r);
        }
        if let Some(r) = self.budget {
            b = b.budget(r);
        }
        if let Some(n) = self.budget_burst {
            b = b.budget_burst(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN));
        }
        if let (Some(url), Some(job)) = (&self.redis, &self.job) {
            b = b.shared(sluice::shared::SharedConfig {
                url: url.clone(),
                job: job.clone(),
                timeout: self.redis_timeout,
            });
        }
        b.build().map_err(config_error)
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
fn option_of(setting: Setting) -> &'static str {
    match setting {
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
