//! Keyword options → the engine's [`Config`] and [`ParseOptions`]. The
//! names are the CLI's long options with underscores, and the checks and
//! messages are the CLI's: a bad value raises `ValueError` saying which
//! option and why; an unknown name raises `TypeError`, as Python does for a
//! misspelt keyword.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderMap;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use sluice::config::MAX_CONCURRENCY;
use sluice::format::OutputFormat;
use sluice::parse::{InputFormat, ParseOptions, check_base_url};
use sluice::units::{MAX_DURATION, Rate, parse_duration, parse_size};
use sluice::{BodyMode, Config, ProxyConfig, Redactor, RetryOn, TlsConfig};

/// Options that only a file job (`run_file`) takes.
#[derive(Debug, Default)]
pub struct FileOptions {
    pub output: Option<PathBuf>,
    pub output_format: OutputFormat,
    pub errors_output: Option<PathBuf>,
    pub overwrite: bool,
    pub resume: bool,
    pub retry_failed: bool,
    pub fsync: bool,
    pub summary_json: Option<PathBuf>,
    /// `shard="K/N"`: this process's lines (the CLI's `--shard`).
    pub shard: Option<sluice::shard::Shard>,
    /// `redis`, `job`, `redis_timeout`: limits shared with every process
    /// of the job (the CLI's `--redis`, `--job`, `--redis-timeout`).
    pub redis: Option<String>,
    pub job: Option<String>,
    pub redis_timeout: Option<Duration>,
}

/// Everything the options describe.
pub struct Options {
    pub config: Config,
    pub parse: ParseOptions,
    pub file: FileOptions,
}

/// Collects the options as given, then builds them in one place.
#[derive(Default)]
struct Raw {
    redact: Vec<String>,
    headers: Vec<(String, String)>,
    cacert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    insecure: bool,
    proxy: Option<String>,
    base_url: Option<String>,
    input_format: InputFormat,
    body: BodyMode,
    include_headers: bool,
}

fn bad(option: &str, value: impl std::fmt::Display, why: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("invalid value '{value}' for {option}: {why}"))
}

/// A count [`int_in`] has checked is at least 1, as the non-zero types the
/// setters take (saturating where the type is narrower).
fn nz_usize(n: u64) -> NonZeroUsize {
    NonZeroUsize::new(usize::try_from(n).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
}

/// As [`nz_usize`].
fn nz_u32(n: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// As [`nz_usize`].
fn nz_u64(n: u64) -> NonZeroU64 {
    NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN)
}

/// The Python type's name, for messages that say what was given.
fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_string())
}

fn is_bool(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<pyo3::types::PyBool>()
}

/// A whole number in `lo..=hi`: an int, or a float with a whole value
/// (`2.0`, `1e6`: what arithmetic gives), as the CLI reads `2` or `2.0`'s
/// digits. A fraction is a bad value (`ValueError`); a bool, a str or
/// anything else a wrong type (`TypeError` saying what was given).
fn int_in(option: &str, v: &Bound<'_, PyAny>, lo: u64, hi: u64) -> PyResult<u64> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "{option} must be an int (a whole number), not {}",
            type_name(v)
        ))
    };
    if is_bool(v) {
        return Err(wrong());
    }
    let n: i128 = match v.extract::<i128>() {
        Ok(n) => n,
        Err(_) if v.is_instance_of::<pyo3::types::PyFloat>() => {
            let x: f64 = v.extract()?;
            if !x.is_finite() || x.fract() != 0.0 || x.abs() > 1e30 {
                return Err(bad(option, x, "not a whole number"));
            }
            x as i128
        }
        Err(_) => return Err(wrong()),
    };
    if n < i128::from(lo) || n > i128::from(hi) {
        let range = if hi == u64::MAX {
            format!("{lo}..")
        } else {
            format!("{lo}..={hi}")
        };
        return Err(bad(option, n, format!("{n} is not in {range}")));
    }
    Ok(n as u64)
}

fn text(option: &str, v: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(path) = v.extract::<PathBuf>()
        && !v.is_instance_of::<pyo3::types::PyString>()
    {
        return Ok(path.to_string_lossy().into_owned());
    }
    v.extract()
        .map_err(|_| PyTypeError::new_err(format!("{option} must be a str, not {}", type_name(v))))
}

fn path(option: &str, v: &Bound<'_, PyAny>) -> PyResult<Option<PathBuf>> {
    if v.is_none() {
        return Ok(None);
    }
    v.extract::<PathBuf>()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{option} must be a path (str or os.PathLike)")))
}

fn flag(option: &str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    v.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{option} must be a bool (True or False), not {}",
            type_name(v)
        ))
    })
}

/// A duration: text with its unit (`"30s"`, `"500ms"`, as on the command
/// line), a number of seconds (as `asyncio` and `httpx` take them), or a
/// `datetime.timedelta`; within the CLI's longest (100 days).
fn duration(option: &str, v: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if let Ok(s) = v.extract::<String>() {
        return parse_duration(&s).map_err(|e| bad(option, &s, e));
    }
    let wrong = || {
        PyTypeError::new_err(format!(
            "{option} must be a duration: seconds (a number), text with its unit (\"30s\") or a datetime.timedelta, not {}",
            type_name(v)
        ))
    };
    if is_bool(v) {
        return Err(wrong());
    }
    let secs: f64 = match v.extract() {
        Ok(secs) => secs,
        Err(_) if v.hasattr("total_seconds").unwrap_or(false) => v
            .call_method0("total_seconds")
            .and_then(|s| s.extract())
            .map_err(|_| wrong())?,
        Err(_) => return Err(wrong()),
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|_| {
        bad(
            option,
            secs,
            "not a duration: give a number of seconds, 0 or more",
        )
    })?;
    if d > MAX_DURATION {
        return Err(bad(
            option,
            secs,
            format!("{secs} seconds is longer than the longest duration sluice accepts (100 days)"),
        ));
    }
    Ok(d)
}

/// A rate: the CLI's text (`"50/s"`, `"3000/m"`). A bare number is refused
/// with the CLI's message, as `--rate 10` is: a count needs its period.
fn rate(option: &str, v: &Bound<'_, PyAny>) -> PyResult<Rate> {
    let s = if !is_bool(v)
        && (v.is_instance_of::<pyo3::types::PyInt>() || v.is_instance_of::<pyo3::types::PyFloat>())
    {
        v.str()?.to_string()
    } else {
        v.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{option} must be a rate as text, such as \"50/s\" or \"3000/m\", not {}",
                type_name(v)
            ))
        })?
    };
    Rate::parse(&s).map_err(|e| bad(option, &s, e))
}

fn size(option: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(s) = v.extract::<String>() {
        return parse_size(&s).map_err(|e| bad(option, &s, e));
    }
    int_in(option, v, 0, u64::MAX)
}

/// `retry_on`: the CLI's list as text, or a list of statuses, ranges and kinds.
fn retry_on(v: &Bound<'_, PyAny>) -> PyResult<RetryOn> {
    let s = match v.extract::<String>() {
        Ok(s) => s,
        Err(_) if v.is_instance_of::<pyo3::types::PyInt>() && !is_bool(v) => v.str()?.to_string(),
        Err(_) => {
            let items: Vec<Bound<'_, PyAny>> = v.extract().map_err(|_| {
                PyTypeError::new_err("retry_on must be a str or a list of statuses and kinds")
            })?;
            let parts: PyResult<Vec<String>> =
                items.iter().map(|i| Ok(i.str()?.to_string())).collect();
            parts?.join(",")
        }
    };
    RetryOn::parse(&s).map_err(|e| bad("retry_on", &s, e))
}

/// `headers`: a mapping (a dict, or any object with `items()`, such as
/// `httpx.Headers`) or a list of `(name, value)` pairs (repeated names
/// allowed, as with `-H`).
fn headers(v: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    if v.is_none() {
        return Ok(Vec::new());
    }
    let wrong = || {
        PyTypeError::new_err(format!(
            "headers must be a dict or a list of (name, value) pairs, not {}",
            type_name(v)
        ))
    };
    if v.is_instance_of::<pyo3::types::PyString>() || v.is_instance_of::<pyo3::types::PyBytes>() {
        return Err(wrong());
    }
    let pairs: Vec<Bound<'_, PyAny>> = if let Ok(d) = v.cast::<PyDict>() {
        d.items().iter().collect()
    } else if v.hasattr("items")? {
        v.call_method0("items")?
            .try_iter()?
            .collect::<PyResult<_>>()?
    } else if let Ok(l) = v.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = v.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(wrong());
    };
    pairs.iter().map(header_pair).collect()
}

/// One `(name, value)` pair (a tuple or a list of two), both text.
fn header_pair(p: &Bound<'_, PyAny>) -> PyResult<(String, String)> {
    let items: Vec<Bound<'_, PyAny>> = match p.extract() {
        Ok(items) if !p.is_instance_of::<pyo3::types::PyString>() => items,
        _ => {
            return Err(PyTypeError::new_err(format!(
                "headers: each header is a (name, value) pair, not {}",
                type_name(p)
            )));
        }
    };
    let [name, value] = items.as_slice() else {
        return Err(PyTypeError::new_err(format!(
            "headers: each header is a (name, value) pair, not {} items",
            items.len()
        )));
    };
    let name: String = name.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "headers: a header name must be a str, not {}",
            type_name(name)
        ))
    })?;
    let value: String = value.extract().map_err(|_| {
        // The value may be a secret: its type is named, never the value.
        PyTypeError::new_err(format!(
            "headers: the value of {name} must be a str, not {}",
            type_name(value)
        ))
    })?;
    Ok((name, value))
}

fn header_map(pairs: &[(String, String)], redactor: &Redactor) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = name.trim();
        // The engine's rules, as for the CLI's -H; a value may be a secret,
        // and its messages never echo it.
        let bad = |e: sluice::headers::HeaderError| PyValueError::new_err(format!("headers: {e}"));
        let header = sluice::headers::name(name, sluice::headers::Setter::Option).map_err(bad)?;
        let mut value = sluice::headers::value(name, value.trim()).map_err(bad)?;
        if redactor.is_secret_header(name) {
            value.set_sensitive(true);
        }
        map.append(header, value);
    }
    Ok(map)
}

/// `learn_limits`: `"auto"` or `"off"`, as on the command line (or a bool).
fn learn_limits(option: &str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return flag(option, v);
    }
    choice(option, v, &[("auto", true), ("off", false)])
}

/// `retry_budget`: `"PERCENT%+RATE/s"` or `"off"`, as on the command line.
fn retry_budget(
    option: &str,
    v: &Bound<'_, PyAny>,
) -> PyResult<Option<sluice::retry_budget::RetryBudget>> {
    let s = text(option, v)?;
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e: sluice::retry_budget::BudgetError| bad(option, &s, e))
}

/// `limit_headroom`: a share in (0, 1] (a number, or the CLI's text), with
/// the CLI's message.
fn headroom(option: &str, v: &Bound<'_, PyAny>) -> PyResult<sluice::ratelimit::Headroom> {
    let text = match v.extract::<f64>() {
        Ok(share) if !is_bool(v) => share.to_string(),
        _ => v.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{option} must be a number in (0, 1], not {}",
                type_name(v)
            ))
        })?,
    };
    text.parse()
        .map_err(|e: sluice::ratelimit::HeadroomError| bad(option, &text, e))
}

fn choice<T: Copy>(option: &str, v: &Bound<'_, PyAny>, table: &[(&str, T)]) -> PyResult<T> {
    let s = text(option, v)?;
    table
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            bad(option, &s, format!("use one of {}", names.join(", ")))
        })
}

/// Reads every option; `file` says whether the file job's own options are
/// allowed.
pub fn parse(options: Option<&Bound<'_, PyDict>>, file: bool) -> PyResult<Options> {
    let mut b = Config::builder();
    let mut raw = Raw::default();
    let mut f = FileOptions::default();
    for (k, v) in options.into_iter().flat_map(|d| d.iter()) {
        let name: String = k.extract()?;
        let o = name.as_str();
        if v.is_none() && !matches!(o, "headers") {
            continue; // None means the default, as in Python signatures.
        }
        b = match o {
            "concurrency" => b.concurrency(nz_usize(int_in(o, &v, 1, MAX_CONCURRENCY)?)),
            "per_host_concurrency" => {
                b.per_host_concurrency(nz_usize(int_in(o, &v, 1, MAX_CONCURRENCY)?))
            }
            "rate" => b.rate(rate(o, &v)?),
            "per_host_rate" => b.per_host_rate(rate(o, &v)?),
            "budget" => b.budget(rate(o, &v)?),
            "burst" => b.burst(nz_u32(int_in(o, &v, 1, u64::from(u32::MAX))?)),
            "budget_burst" => b.budget_burst(nz_u64(int_in(o, &v, 1, u64::MAX)?)),
            "timeout" => b.timeout(duration(o, &v)?),
            "connect_timeout" => b.connect_timeout(duration(o, &v)?),
            "pool_idle_timeout" => b.pool_idle_timeout(duration(o, &v)?),
            "backoff_initial" => b.backoff_initial(duration(o, &v)?),
            "backoff_max" => b.backoff_max(duration(o, &v)?),
            "max_retry_after" => b.max_retry_after(duration(o, &v)?),
            "retries" => b.retries(int_in(o, &v, 0, u64::from(u32::MAX))? as u32),
            "halt_after" => b.halt_after(int_in(o, &v, 0, u64::from(u32::MAX))? as u32),
            "retry_on" => b.retry_on(retry_on(&v)?),
            "retry_non_idempotent" => b.retry_non_idempotent(flag(o, &v)?),
            "ordered" => b.ordered(flag(o, &v)?),
            "reorder_window" => b.reorder_window(nz_usize(int_in(o, &v, 1, u64::MAX)?)),
            "max_body_size" => b.max_body_size(size(o, &v)?),
            "http2" => b.http2(flag(o, &v)?),
            "compressed" => b.compressed(flag(o, &v)?),
            "adaptive" => b.adaptive(flag(o, &v)?),
            "learn_limits" => b.learn_limits(learn_limits(o, &v)?),
            "limit_headroom" => b.limit_headroom(headroom(o, &v)?),
            "retry_budget" => b.retry_budget(retry_budget(o, &v)?),
            _ => {
                read_other(o, &v, &mut raw, file.then_some(&mut f))?;
                b
            }
        };
    }
    if let Some(shared) = shared(&f)? {
        b = b.shared(shared);
    }
    let redactor = Redactor::with_extra(&raw.redact);
    let batch_format = f.output_format != OutputFormat::Sluice;
    if batch_format && raw.body != BodyMode::Auto {
        return Err(PyValueError::new_err(format!(
            "output_format={} writes response bodies as the provider does (JSON as JSON), so body must be auto (the default)",
            f.output_format
        )));
    }
    let config = b
        .headers(header_map(&raw.headers, &redactor)?)
        .body_mode(raw.body)
        .include_headers(raw.include_headers || batch_format)
        .tls(tls(&raw)?)
        .proxy(proxy(raw.proxy.as_deref())?)
        .redactor(redactor.clone())
        .build()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let base_url = match &raw.base_url {
        Some(t) => Some(check_base_url(t).map_err(|e| bad("base_url", t, e))?),
        None => None,
    };
    let parse = ParseOptions {
        base_url,
        redactor,
        input_format: raw.input_format,
        // Messages name `base_url` and `input_format`: Python's keywords.
        ..ParseOptions::default()
    };
    Ok(Options {
        config,
        parse,
        file: f,
    })
}

fn read_other(
    o: &str,
    v: &Bound<'_, PyAny>,
    raw: &mut Raw,
    file: Option<&mut FileOptions>,
) -> PyResult<()> {
    match o {
        "headers" => raw.headers = headers(v)?,
        "redact" => {
            raw.redact = if let Ok(s) = v.extract::<String>() {
                vec![s]
            } else {
                v.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "redact must be a list of header or query parameter names, not {}",
                        type_name(v)
                    ))
                })?
            }
        }
        "base_url" => raw.base_url = Some(text(o, v)?),
        "cacert" => raw.cacert = path(o, v)?,
        "cert" => raw.cert = path(o, v)?,
        "key" => raw.key = path(o, v)?,
        "insecure" => raw.insecure = flag(o, v)?,
        "proxy" => raw.proxy = Some(text(o, v)?),
        "include_headers" => raw.include_headers = flag(o, v)?,
        "input_format" => {
            let s = text(o, v)?;
            raw.input_format = s
                .parse()
                .map_err(|e: sluice::parse::UnknownFormat| bad(o, &s, e.to_string()))?;
        }
        "body" => {
            raw.body = choice(
                o,
                v,
                &[
                    ("auto", BodyMode::Auto),
                    ("text", BodyMode::Text),
                    ("base64", BodyMode::Base64),
                    ("none", BodyMode::None),
                ],
            )?
        }
        _ => match file {
            Some(f) => read_file_option(o, v, f)?,
            None => return Err(unknown(o)),
        },
    }
    Ok(())
}

fn read_file_option(o: &str, v: &Bound<'_, PyAny>, f: &mut FileOptions) -> PyResult<()> {
    match o {
        "output" => f.output = path(o, v)?,
        "errors_output" => f.errors_output = path(o, v)?,
        "summary_json" => f.summary_json = path(o, v)?,
        "overwrite" => f.overwrite = flag(o, v)?,
        "resume" => f.resume = flag(o, v)?,
        "retry_failed" => f.retry_failed = flag(o, v)?,
        "fsync" => f.fsync = flag(o, v)?,
        "shard" => f.shard = Some(shard(o, v)?),
        "redis" => f.redis = Some(text(o, v)?),
        "job" => f.job = Some(text(o, v)?),
        "redis_timeout" => f.redis_timeout = Some(duration(o, v)?),
        "output_format" => {
            f.output_format = choice(
                o,
                v,
                &[
                    ("sluice", OutputFormat::Sluice),
                    ("openai-batch", OutputFormat::OpenAiBatch),
                    ("anthropic-batch", OutputFormat::AnthropicBatch),
                ],
            )?
        }
        _ => return Err(unknown(o)),
    }
    Ok(())
}

/// `shard`: `"K/N"`, as the CLI's `--shard` (the CLI's `env` reads the
/// environment, which a library leaves to its caller).
fn shard(option: &str, v: &Bound<'_, PyAny>) -> PyResult<sluice::shard::Shard> {
    let s = text(option, v)?;
    if s.trim() == "env" {
        return Err(bad(
            option,
            &s,
            "a library does not read the environment: pass shard=f\"{os.environ['JOB_COMPLETION_INDEX']}/{os.environ['SLUICE_SHARDS']}\"",
        ));
    }
    sluice::shard::Shard::parse(&s).map_err(|e| bad(option, &s, e))
}

/// `redis` with `job` (each needs the other, as on the command line);
/// `redis_timeout` only matters with them.
fn shared(f: &FileOptions) -> PyResult<Option<sluice::shared::SharedConfig>> {
    match (&f.redis, &f.job) {
        (Some(url), Some(job)) => Ok(Some(sluice::shared::SharedConfig {
            url: url.clone(),
            job: job.clone(),
            timeout: f
                .redis_timeout
                .unwrap_or(sluice::config::DEFAULT_SHARED_TIMEOUT),
        })),
        (Some(_), None) => Err(PyValueError::new_err(
            "redis needs job: the job's name (every process with the same job shares one set of limits)",
        )),
        (None, Some(_)) => Err(PyValueError::new_err(
            "job needs redis: the Redis or Valkey URL the job's limits are shared through",
        )),
        (None, None) => Ok(None),
    }
}

fn unknown(o: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "unexpected option '{o}' (the options are the CLI's long options with underscores: `sluice run --help`)"
    ))
}

fn tls(raw: &Raw) -> PyResult<TlsConfig> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| {
            PyValueError::new_err(format!("cannot read the {what} {}: {e}", p.display()))
        })
    };
    let mut tls = TlsConfig {
        insecure: raw.insecure,
        ..TlsConfig::default()
    };
    if let Some(ca) = &raw.cacert {
        tls.ca_pem.push(read(ca, "CA certificate (cacert)")?);
    }
    match (&raw.cert, &raw.key) {
        (Some(cert), Some(key)) => {
            tls.identity_pem = Some((
                read(cert, "client certificate (cert)")?,
                read(key, "client key (key)")?,
            ))
        }
        (None, None) => {}
        _ => {
            return Err(PyValueError::new_err(
                "cert and key go together: give both, or neither",
            ));
        }
    }
    Ok(tls)
}

/// `proxy`: one proxy for every request. Unlike the CLI, the environment's
/// proxy variables are not read: a library takes its settings from its
/// caller.
fn proxy(p: Option<&str>) -> PyResult<ProxyConfig> {
    let Some(p) = p else {
        return Ok(ProxyConfig::default());
    };
    let ok = url::Url::parse(p).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !ok {
        return Err(PyValueError::new_err(format!(
            "proxy `{}` is not an http:// or https:// URL",
            Redactor::default().raw_url(p)
        )));
    }
    Ok(ProxyConfig {
        http: Some(p.to_string()),
        https: Some(p.to_string()),
        no_proxy: None,
    })
}
