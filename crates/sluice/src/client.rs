//! The HTTP clients of a run, and the one place that chooses which carries
//! a request. Over HTTP/1.1, an origin reached without a proxy gets the
//! engine's own client ([`crate::transport::direct`]: its own pool, at most
//! one connection per request in flight to the origin). reqwest (rustls)
//! carries the rest: the schemes that go through a proxy, and under
//! `--http2` every request, over "lanes" (one connection per origin each)
//! that carry what one connection's stream limit cannot. Every client sets
//! every timeout, leaves redirects to the engine and types DNS failures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Certificate, Client, Identity, NoProxy, Proxy};

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::classify::DnsError;
use crate::config::Config;
use crate::connecting::Connecting;
use crate::transport::direct::Direct;
use crate::transport::{Answer, SendError};

/// The error of a TLS or HTTP library, kept as the source of a [`ClientError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A client could not be built from the configuration: which part failed,
/// with the library's error as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A proxy URL was refused.
    #[error("invalid proxy URL")]
    Proxy(#[source] BoxError),
    /// A CA file could not be read as PEM.
    #[error("could not read the CA certificate")]
    CaCertificate(#[source] BoxError),
    /// A CA file held no certificate.
    #[error("the CA file holds no PEM certificate")]
    NoCaCertificate,
    /// The client certificate or key (`part`) could not be read.
    #[error("could not read the client {part}")]
    Identity {
        /// `certificate`, `key`, or `certificate or key`.
        part: &'static str,
        /// The parser's error.
        #[source]
        source: BoxError,
    },
    /// The client certificate was refused with its key.
    #[error("could not use the client certificate")]
    UseIdentity(#[source] BoxError),
    /// The platform's trusted certificates could not be loaded.
    #[error("could not load the trusted certificates")]
    TrustStore(#[source] BoxError),
    /// The TLS library refused its configuration.
    #[error("TLS setup failed")]
    Tls(#[source] BoxError),
    /// The HTTP client refused its configuration.
    #[error("could not set up the HTTP client")]
    Build(#[source] BoxError),
}

/// Builds the run's clients.
///
/// Pools keep at most as many connections per origin as may be in flight
/// to it, so a run at concurrency c ends with about c connections, and
/// drop idle ones after `pool_idle_timeout`, below common server
/// keep-alives, to avoid writing onto a connection the server is closing.
///
/// # Errors
///
/// When a proxy URL, a CA certificate or the client identity in `config` cannot be used, or the TLS setup fails ([`ClientError`]).
pub fn build(config: &Config) -> Result<Clients, ClientError> {
    let connect_timeout = connect_timeout(config);
    if !config.http2 {
        let proxied = Proxied {
            http: config.proxy.http.is_some(),
            https: config.proxy.https.is_some(),
        };
        let proxy = if proxied.http || proxied.https {
            let one = Sender::build(config, Version::Http1, None)?;
            let lane = Lane {
                http: one.clone(),
                https: one,
            };
            Some((proxied, lane))
        } else {
            None
        };
        return Ok(Clients {
            kind: Kind::Http1 {
                direct: Direct::new(config, connect_timeout)?,
                proxy,
            },
            connect_timeout,
        });
    }
    let tls = HttpTwoTls::new(config)?.map(Arc::new);
    Ok(Clients {
        kind: Kind::Http2 {
            first: Lane::http2(config, tls.as_deref())?,
            lanes: Arc::new(Lanes {
                config: config.clone(),
                tls,
                extra: Mutex::new(Vec::new()),
                origins: Mutex::new(HashMap::new()),
            }),
        },
        connect_timeout,
    })
}

/// The clients of a run.
#[derive(Clone, Debug)]
pub struct Clients {
    kind: Kind,
    /// How long a connect may take ([`connect_timeout`]).
    connect_timeout: std::time::Duration,
}

#[derive(Clone, Debug)]
enum Kind {
    /// HTTP/1.1: the direct client, and a reqwest client for the schemes
    /// that go through a proxy, if any.
    Http1 {
        direct: Direct,
        proxy: Option<(Proxied, Lane)>,
    },
    /// `--http2`: reqwest lanes, where `http://` URLs use HTTP/2 with prior
    /// knowledge and `https://` URLs offer it through ALPN; the first lane,
    /// then the lanes beyond it and each origin's stream limit and streams
    /// in use per lane.
    Http2 { first: Lane, lanes: Arc<Lanes> },
}

/// The schemes whose requests go through a proxy.
#[derive(Clone, Copy, Debug)]
struct Proxied {
    http: bool,
    https: bool,
}

impl Proxied {
    /// Whether `url`'s scheme has a proxy (reqwest then decides, by the
    /// no-proxy list, whether this host uses it).
    fn covers(&self, url: &url::Url) -> bool {
        if url.scheme() == "https" {
            self.https
        } else {
            self.http
        }
    }
}

/// One client per scheme; under `--http2`, each holds one connection per
/// origin.
#[derive(Clone, Debug)]
struct Lane {
    http: Sender,
    https: Sender,
}

/// A client and the connections it is making.
#[derive(Clone, Debug)]
struct Sender {
    client: Client,
    connecting: Connecting,
}

impl Sender {
    fn build(
        config: &Config,
        version: Version,
        preconfigured: Option<rustls::ClientConfig>,
    ) -> Result<Sender, ClientError> {
        let connecting = Connecting::new();
        let client = build_one(config, version, preconfigured, &connecting)?;
        Ok(Sender { client, connecting })
    }
}

impl Lane {
    fn http2(config: &Config, tls: Option<&HttpTwoTls>) -> Result<Lane, ClientError> {
        Ok(Lane {
            http: Sender::build(
                config,
                Version::PriorKnowledge,
                tls.map(|t| t.prior.clone()),
            )?,
            https: Sender::build(config, Version::Alpn, tls.map(|t| t.alpn.clone()))?,
        })
    }

    fn for_url(&self, url: &url::Url) -> &Sender {
        if url.scheme() == "https" {
            &self.https
        } else {
            &self.http
        }
    }
}

/// The TLS configurations every `--http2` lane shares, built once: building
/// one loads the trusted certificates, which would make each new lane slow.
/// `None` under `--insecure`, which reqwest sets up itself.
#[derive(Debug)]
struct HttpTwoTls {
    /// ALPN `h2` only, for prior knowledge.
    prior: rustls::ClientConfig,
    /// ALPN `h2` then `http/1.1`.
    alpn: rustls::ClientConfig,
}

impl HttpTwoTls {
    fn new(config: &Config) -> Result<Option<HttpTwoTls>, ClientError> {
        if config.tls.insecure {
            return Ok(None);
        }
        Ok(Some(HttpTwoTls {
            prior: crate::trust::client_config(&config.tls, &[b"h2"])?,
            alpn: crate::trust::client_config(&config.tls, &[b"h2", b"http/1.1"])?,
        }))
    }
}

/// A client to send one request with, holding its HTTP/2 stream (if any)
/// until dropped, so keep it until the response body has been read.
#[derive(Debug)]
pub struct Checkout {
    route: Route,
    connect_timeout: std::time::Duration,
    _stream: Option<StreamGuard>,
}

/// Which client carries a request.
#[derive(Debug)]
enum Route {
    Direct(Direct),
    Reqwest(Sender),
}

impl Checkout {
    /// Sends the request and returns the response head; its body is read
    /// from the [`Answer`].
    ///
    /// # Errors
    ///
    /// When no response head arrived ([`SendError`], which classifies
    /// itself).
    pub async fn send(
        &self,
        method: &Method,
        url: &url::Url,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<Answer, SendError> {
        match &self.route {
            Route::Direct(direct) => direct
                .send(method, url, headers, body)
                .await
                .map_err(SendError::Direct),
            Route::Reqwest(sender) => {
                let mut builder = sender
                    .client
                    .request(method.clone(), url.clone())
                    .headers(headers.clone());
                if let Some(body) = body {
                    builder = builder.body(body.clone());
                }
                // Boxed: reqwest's future is large, and an attempt's future
                // (copied whole into its task) holds this one.
                Box::pin(builder.send())
                    .await
                    .map(Answer::from_reqwest)
                    .map_err(SendError::Reqwest)
            }
        }
    }

    /// Whether [`connected`](Checkout::connected) may wait: only an
    /// `--http2` lane's stream does.
    pub fn waits_for_connects(&self) -> bool {
        matches!((&self._stream, &self.route), (Some(_), Route::Reqwest(_)))
    }

    /// Under `--http2`, resolves when the lane is making no connection (at
    /// once when it makes none). Called right after a request has been
    /// handed to the lane, it waits for the one connection the request
    /// needs, at most the connect timeout: the moment its attempt's clock
    /// should start. Over HTTP/1.1 it resolves at once: each request makes
    /// its own connection (bounded by the connect timeout, below the
    /// attempt's), and the shared client's other connects say nothing about
    /// when this request was written.
    pub async fn connected(&self) {
        if let (Some(_), Route::Reqwest(sender)) = (&self._stream, &self.route) {
            sender.connecting.settled(self.connect_timeout).await;
        }
    }
}

impl Clients {
    /// The client for a request to `url`.
    ///
    /// Over HTTP/1.1 the pool opens a connection per request in flight. An
    /// HTTP/2 connection carries at most the server's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` at once and queues the rest inside
    /// itself, where they would wait on their attempt's clock and could not
    /// be told apart from requests on the wire; so each request takes a
    /// stream on the first lane (connection) with one free, and a new lane
    /// opens when all are full. `-c` thus means requests on the wire.
    pub async fn checkout(&self, url: &url::Url) -> Checkout {
        let reqwest = |lane: &Lane| Route::Reqwest(lane.for_url(url).clone());
        let (first, lanes) = match &self.kind {
            Kind::Http1 { direct, proxy } => {
                let route = match proxy {
                    Some((proxied, lane)) if proxied.covers(url) => reqwest(lane),
                    _ => Route::Direct(direct.clone()),
                };
                return Checkout {
                    route,
                    connect_timeout: self.connect_timeout,
                    _stream: None,
                };
            }
            Kind::Http2 { first, lanes } => (first, lanes),
        };
        let origin = lanes.origin(url);
        let limit = match origin.limit.get() {
            Some(&limit) => limit,
            // Boxed: the probe's connection and handshake take kilobytes,
            // needed once per origin; inline, every attempt's future
            // (copied when made and moved) would carry them.
            None => {
                *Box::pin(origin.limit.get_or_init(|| async {
                    let limit = probe_streams(url, &lanes.config).await;
                    lanes.prepare(limit).await;
                    limit
                }))
                .await
            }
        };
        let index = {
            let mut busy = origin.busy.lock().unwrap_or_else(PoisonError::into_inner);
            let index = match busy.iter().position(|&n| n < limit) {
                Some(i) => i,
                None => {
                    busy.push(0);
                    busy.len() - 1
                }
            };
            busy[index] += 1;
            index
        };
        let guard = StreamGuard {
            origin: Arc::clone(&origin),
            lane: index,
        };
        let route = if index == 0 {
            reqwest(first)
        } else {
            lanes
                .lane(index - 1)
                .map_or_else(|| reqwest(first), |l| reqwest(&l))
        };
        Checkout {
            route,
            connect_timeout: self.connect_timeout,
            _stream: Some(guard),
        }
    }
}

/// Lanes beyond the first, and per-origin stream accounting.
#[derive(Debug)]
struct Lanes {
    config: Config,
    tls: Option<Arc<HttpTwoTls>>,
    extra: Mutex<Vec<Lane>>,
    origins: Mutex<HashMap<String, Arc<OriginStreams>>>,
}

impl Lanes {
    fn origin(&self, url: &url::Url) -> Arc<OriginStreams> {
        let key = url.origin().ascii_serialization();
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(origins.entry(key).or_default())
    }

    /// Builds, in parallel and off the runtime's threads (building a client
    /// loads the trusted certificates), the lanes that an origin allowing
    /// `limit` streams needs at full concurrency, so that requests do not
    /// wait for them one by one.
    async fn prepare(&self, limit: usize) {
        let want = self
            .config
            .per_host_concurrency
            .map_or(self.config.concurrency, |p| p.min(self.config.concurrency))
            .get();
        let needed = want.div_ceil(limit).saturating_sub(1);
        let have = self
            .extra
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let builds: Vec<_> = (have..needed)
            .map(|_| {
                let (config, tls) = (self.config.clone(), self.tls.clone());
                tokio::task::spawn_blocking(move || Lane::http2(&config, tls.as_deref()))
            })
            .collect();
        for built in futures::future::join_all(builds).await {
            if let Ok(Ok(lane)) = built {
                self.extra
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(lane);
            }
        }
    }

    /// Extra lane `i`, built on first use if [`prepare`](Lanes::prepare)
    /// did not. `None` only if building failed,
    /// which the first lane's success makes unexpected; the caller then
    /// shares the first lane.
    fn lane(&self, i: usize) -> Option<Lane> {
        let mut extra = self.extra.lock().unwrap_or_else(PoisonError::into_inner);
        while extra.len() <= i {
            extra.push(Lane::http2(&self.config, self.tls.as_deref()).ok()?);
        }
        extra.get(i).cloned()
    }
}

/// One origin's stream limit (learned once) and streams in use per lane.
#[derive(Debug, Default)]
struct OriginStreams {
    limit: tokio::sync::OnceCell<usize>,
    busy: Mutex<Vec<usize>>,
}

/// A stream in use on one lane, given back on drop.
#[derive(Debug)]
struct StreamGuard {
    origin: Arc<OriginStreams>,
    lane: usize,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut busy = self
            .origin
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = busy.get_mut(self.lane) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The stream limit assumed when the server's cannot be learned (through a
/// proxy, or when the probe fails): the smallest value
/// RFC 9113 (section 6.5.2) advises servers to allow.
const ASSUMED_STREAMS: usize = 100;

/// Longest wait for an origin's stream limit.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Learns an origin's `SETTINGS_MAX_CONCURRENT_STREAMS` on a connection of
/// its own: the server's SETTINGS frame comes first, before its answer to
/// our PING. No request is sent. Bounded by the connect timeout and
/// [`PROBE_TIMEOUT`]: a server that does not answer a PING at once gets
/// the assumed limit rather than holding up the run.
async fn probe_streams(url: &url::Url, config: &Config) -> usize {
    let within = config
        .connect_timeout
        .min(config.timeout)
        .min(PROBE_TIMEOUT);
    match tokio::time::timeout(within, probe(url, config)).await {
        Ok(Some(n)) => n.max(1),
        _ => ASSUMED_STREAMS,
    }
}

async fn probe(url: &url::Url, config: &Config) -> Option<usize> {
    let https = url.scheme() == "https";
    let proxied = if https {
        config.proxy.https.is_some()
    } else {
        config.proxy.http.is_some()
    };
    if proxied {
        return None;
    }
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    if host.ends_with(".invalid") {
        return None;
    }
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .ok()?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return settings_limit(tcp).await;
    }
    let tls = crate::trust::client_config(&config.tls, &[b"h2"]).ok()?;
    let name =
        rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string()).ok()?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .ok()?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return None;
    }
    settings_limit(stream).await
}

/// The peer's stream limit once its SETTINGS have been read (a PING's
/// answer follows them).
async fn settings_limit<T>(io: T) -> Option<usize>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (_send, mut conn) = h2::client::handshake(io).await.ok()?;
    let mut ping = conn.ping_pong()?;
    let answered = tokio::select! {
        _ = &mut conn => false,
        pong = ping.ping(h2::Ping::opaque()) => pong.is_ok(),
    };
    answered.then(|| conn.max_concurrent_send_streams())
}

enum Version {
    Http1,
    PriorKnowledge,
    Alpn,
}

/// How long a connect (TCP and TLS) may take: a connect stall must end as
/// `connect` (nothing sent), not be cut by the attempt timeout as a
/// `timeout` whose request may have been applied.
fn connect_timeout(config: &Config) -> std::time::Duration {
    config.connect_timeout.min(config.timeout.mul_f64(0.95))
}

/// One client, counting its connects in `connecting`; `preconfigured` is a
/// TLS setup to use instead of building one from the configuration.
fn build_one(
    config: &Config,
    version: Version,
    preconfigured: Option<rustls::ClientConfig>,
    connecting: &Connecting,
) -> Result<Client, ClientError> {
    // Installing fails only when a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let idle_per_host = config
        .per_host_concurrency
        .unwrap_or(config.concurrency)
        .get();
    let mut b = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout(config))
        .connector_layer(connecting.layer())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(idle_per_host)
        .tcp_nodelay(true)
        // For the TLS version in records.
        .tls_info(true)
        .referer(false)
        .user_agent(config.user_agent.clone())
        .dns_resolver(Arc::new(SystemResolver))
        // `--compressed` is decoded by `attempt` (reqwest is built without
        // decoders), which keeps the response's content-encoding.
        .no_proxy();
    b = match version {
        Version::Http1 => b.http1_only(),
        Version::PriorKnowledge => b.http2_prior_knowledge(),
        Version::Alpn => b,
    };
    b = proxies(b, config)?;
    b = match preconfigured {
        Some(tls) => b.tls_backend_preconfigured(tls),
        None => tls(b, config, &version)?,
    };
    b.build().map_err(|e| ClientError::Build(e.into()))
}

fn proxies(
    mut b: reqwest::ClientBuilder,
    config: &Config,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let p = &config.proxy;
    let no_proxy = p.no_proxy.as_deref().and_then(NoProxy::from_string);
    let bad = |e: reqwest::Error| ClientError::Proxy(e.into());
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
        let certs =
            Certificate::from_pem_bundle(pem).map_err(|e| ClientError::CaCertificate(e.into()))?;
        if certs.is_empty() {
            return Err(ClientError::NoCaCertificate);
        }
        b = b.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = &t.identity_pem {
        let mut pem = cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let id = Identity::from_pem(&pem).map_err(|e| ClientError::Identity {
            part: "certificate or key",
            source: e.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_probe_reads_the_servers_stream_limit() {
        let options = sluice_mock::MockOptions {
            h2_max_streams: Some(10),
            ..sluice_mock::MockOptions::default()
        };
        let server = sluice_mock::MockServer::start_with("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let url = url::Url::parse(&server.url()).unwrap();
        let config = Config::default();
        assert_eq!(probe_streams(&url, &config).await, 10);
        assert_eq!(server.stats().requests, 0, "the probe sends no request");
        server.shutdown().await;
    }
}
