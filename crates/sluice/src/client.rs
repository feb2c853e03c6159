//! The one HTTP client of a run: a single reqwest (rustls) client whose pool
//! all requests share, with every timeout set, redirects left to the engine
//! and a resolver whose failures are recognisable as DNS errors.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Certificate, Client, Identity, NoProxy, Proxy};

use crate::classify::DnsError;
use crate::config::Config;

/// A client could not be built from the configuration (bad CA file, proxy URL...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// Builds the run's client.
///
/// The pool keeps at most as many idle connections per origin as may be in
/// flight to it, so a run at concurrency c ends with about c connections, and
/// drops idle ones after `pool_idle_timeout`, below common server
/// keep-alives, to avoid writing onto a connection the server is closing.
pub fn build(config: &Config) -> Result<Clients, ClientError> {
    if !config.http2 {
        let one = build_one(config, Version::Http1)?;
        return Ok(Clients {
            http: one.clone(),
            https: one,
        });
    }
    Ok(Clients {
        http: build_one(config, Version::PriorKnowledge)?,
        https: build_one(config, Version::Alpn)?,
    })
}

/// The clients of a run: under `--http2`, `http://` URLs use HTTP/2 with
/// prior knowledge and `https://` URLs offer it through ALPN; otherwise both
/// are the same HTTP/1.1 client.
#[derive(Clone, Debug)]
pub struct Clients {
    http: Client,
    https: Client,
}

impl Clients {
    /// The client for a URL's scheme.
    pub fn for_url(&self, url: &url::Url) -> &Client {
        if url.scheme() == "https" {
            &self.https
        } else {
            &self.http
        }
    }
}

enum Version {
    Http1,
    PriorKnowledge,
    Alpn,
}

fn build_one(config: &Config, version: Version) -> Result<Client, ClientError> {
    // Installing fails only when a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let idle_per_host = config
        .per_host_concurrency
        .unwrap_or(config.concurrency)
        .get();
    let mut b = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A connect stall must end as `connect` (nothing sent), not be cut
        // by the attempt timeout as a `timeout` whose request may have
        // been applied.
        .connect_timeout(config.connect_timeout.min(config.timeout.mul_f64(0.95)))
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(idle_per_host)
        .tcp_nodelay(true)
        .referer(false)
        .user_agent(config.user_agent.clone())
        .dns_resolver(Arc::new(SystemResolver))
        .gzip(config.compressed)
        .brotli(config.compressed)
        .zstd(config.compressed)
        .no_proxy();
    b = match version {
        Version::Http1 => b.http1_only(),
        Version::PriorKnowledge => b.http2_prior_knowledge(),
        Version::Alpn => b,
    };
    b = proxies(b, config)?;
    b = tls(b, config, &version)?;
    b.build()
        .map_err(|e| ClientError(format!("could not set up the HTTP client: {e}")))
}

fn proxies(
    mut b: reqwest::ClientBuilder,
    config: &Config,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let p = &config.proxy;
    let no_proxy = p.no_proxy.as_deref().and_then(NoProxy::from_string);
    let bad = |e: reqwest::Error| ClientError(format!("invalid proxy URL: {e}"));
    if let Some(url) = &p.http {
        b = b.proxy(Proxy::http(url).map_err(bad)?.no_proxy(no_proxy.clone()));
    }
    if let Some(url) = &p.https {
        b = b.proxy(Proxy::https(url).map_err(bad)?.no_proxy(no_proxy));
    }
    Ok(b)
}

fn tls(
    mut b: reqwest::ClientBuilder,
    config: &Config,
    version: &Version,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let t = &config.tls;
    if !t.ca_pem.is_empty() && !t.insecure {
        let alpn: &[&[u8]] = match version {
            Version::Http1 => &[b"http/1.1"],
            Version::PriorKnowledge => &[b"h2"],
            Version::Alpn => &[b"h2", b"http/1.1"],
        };
        return Ok(b.tls_backend_preconfigured(crate::trust::client_config(t, alpn)?));
    }
    for pem in &t.ca_pem {
        let certs = Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError(format!("could not read the CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError("the CA file holds no PEM certificate".into()));
        }
        b = b.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = &t.identity_pem {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let id = Identity::from_pem(&pem).map_err(|e| {
            ClientError(format!("could not read the client certificate or key: {e}"))
        })?;
        b = b.identity(id);
    }
    if t.insecure {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    Ok(b)
}

/// The system resolver (getaddrinfo on tokio's blocking pool), with errors
/// typed as [`DnsError`]. Names under `.invalid` (RFC 6761) fail at once
/// without a lookup, which also lets tests produce DNS errors offline.
#[derive(Debug)]
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let fail = |reason: String| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(DnsError {
                    host: host.clone(),
                    reason,
                })
            };
            if host.ends_with(".invalid") || host == "invalid" {
                return Err(fail("no such host (.invalid is never resolvable)".into()));
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| fail(e.to_string()))?
                .collect();
            if addrs.is_empty() {
                return Err(fail("no addresses".into()));
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
