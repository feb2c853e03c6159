//! The upstream of sluice's benchmark harness (`bench/run.sh`).
//!
//! A minimal HTTP/1.1 hyper server on one thread (a current-thread tokio
//! runtime), so that every client in a benchmark meets the same, cheap server
//! and the server's cost is the same for all of them. It listens on
//! `127.0.0.1` only, on as many ports as asked (one per origin, for the
//! many-origin pacing scenario), prints `{"ports":[...]}` on stdout once it
//! is listening, and records every request's arrival time and port so the
//! harness can check rates at the server rather than trust a client.
//!
//! | path | answer |
//! |---|---|
//! | `/fast` (any query) | 200 `{"ok":true}` |
//! | `/post` | reads the request body, 200 with a 4 KiB JSON body |
//! | `/delay/1` | 200 `{"delay":1}` after one second |
//! | `GET /stats` | connections, requests, first/last arrival, max arrivals in any 1 s window (all ports, and the worst single port), the worst port's achieved rate |
//! | `POST /stats/reset` | clears the counters |
//!
//! Usage: `bench-upstream [PORTS]` (default 1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Arrivals kept at most (16 bytes each): 10^7 is 160 MB, beyond any scenario.
const MAX_ARRIVALS: usize = 10_000_000;
/// The window of the "max arrivals in any window" check.
const WINDOW: Duration = Duration::from_secs(1);
/// The size of the `/post` response body.
const POST_RESPONSE_BYTES: usize = 4096;

/// What the server has seen since the last reset.
struct Stats {
    epoch: Instant,
    connections: AtomicU64,
    /// (nanoseconds since `epoch`, port index) per counted request.
    arrivals: Mutex<Vec<(u64, u16)>>,
}

impl Stats {
    fn record(&self, port: u16) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() < MAX_ARRIVALS {
            arrivals.push((nanos, port));
        }
    }

    fn reset(&self) {
        self.connections.store(0, Ordering::Relaxed);
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The statistics as one JSON object.
    fn to_json(&self) -> String {
        let mut arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        arrivals.sort_unstable();
        let times: Vec<u64> = arrivals.iter().map(|a| a.0).collect();
        let mut by_port: Vec<Vec<u64>> = Vec::new();
        for &(t, port) in &arrivals {
            let i = usize::from(port);
            if by_port.len() <= i {
                by_port.resize_with(i + 1, Vec::new);
            }
            by_port[i].push(t);
        }
        let ports: Vec<&Vec<u64>> = by_port.iter().filter(|p| !p.is_empty()).collect();
        let port_max = ports.iter().map(|p| max_in_window(p)).max().unwrap_or(0);
        let port_rates: Vec<f64> = ports.iter().filter_map(|p| achieved_rate(p)).collect();
        let fmt_rate = |r: Option<f64>| r.map_or("null".to_string(), |r| format!("{r:.3}"));
        format!(
            concat!(
                "{{\"connections\":{},\"requests\":{},\"first_s\":{},\"last_s\":{},",
                "\"max_in_1s\":{},\"achieved_rate\":{},\"ports_seen\":{},",
                "\"port_max_in_1s\":{},\"port_min_rate\":{},\"port_max_rate\":{}}}"
            ),
            self.connections.load(Ordering::Relaxed),
            times.len(),
            times.first().map_or(0.0, |&t| t as f64 / 1e9),
            times.last().map_or(0.0, |&t| t as f64 / 1e9),
            max_in_window(&times),
            fmt_rate(achieved_rate(&times)),
            ports.len(),
            port_max,
            fmt_rate(port_rates.iter().copied().reduce(f64::min)),
            fmt_rate(port_rates.iter().copied().reduce(f64::max)),
        )
    }
}

/// The most arrivals in any window [t, t + 1 s) of sorted times: checking the
/// windows that start at an arrival is enough, no other window holds more.
fn max_in_window(sorted: &[u64]) -> usize {
    let window = u64::try_from(WINDOW.as_nanos()).unwrap_or(u64::MAX);
    let (mut best, mut end) = (0, 0);
    for (start, &t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < t.saturating_add(window) {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// Intervals per second between the first and the last arrival: (n − 1) ÷
/// (last − first), the rate a paced client actually kept.
fn achieved_rate(sorted: &[u64]) -> Option<f64> {
    let (first, last) = (sorted.first()?, sorted.last()?);
    (last > first).then(|| (sorted.len() - 1) as f64 / ((last - first) as f64 / 1e9))
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The 4 KiB JSON body of `/post`: `{"data":"xxx…"}`, exactly 4096 bytes.
fn post_response() -> Bytes {
    let pad = POST_RESPONSE_BYTES - r#"{"data":""}"#.len();
    Bytes::from(format!(r#"{{"data":"{}"}}"#, "x".repeat(pad)))
}

async fn handle(
    req: Request<Incoming>,
    port: u16,
    stats: Arc<Stats>,
    post_body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let response = match (req.method(), path) {
        (&Method::GET, "/stats") => json(StatusCode::OK, Bytes::from(stats.to_json())),
        (&Method::POST, "/stats/reset") => {
            stats.reset();
            json(StatusCode::OK, Bytes::from_static(br#"{"ok":true}"#))
        }
        (_, "/fast") => {
            stats.record(port);
            json(StatusCode::OK, Bytes::from_static(br#"{"ok":true}"#))
        }
        (_, "/post") => {
            stats.record(port);
            // Read the whole request body, as a real API would.
            match req.into_body().collect().await {
                Ok(_) => json(StatusCode::OK, post_body),
                Err(_) => json(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}")),
            }
        }
        (_, "/delay/1") => {
            stats.record(port);
            tokio::time::sleep(Duration::from_secs(1)).await;
            json(StatusCode::OK, Bytes::from_static(br#"{"delay":1}"#))
        }
        _ => json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"not found"}"#),
        ),
    };
    Ok(response)
}

/// Accepts connections on one port forever, serving each on its own task.
async fn serve(listener: TcpListener, port: u16, stats: Arc<Stats>, post_body: Bytes) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (stats, post_body) = (stats.clone(), post_body.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |req| handle(req, port, stats.clone(), post_body.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> std::io::Result<()> {
    let ports: u16 = match std::env::args().nth(1) {
        None => 1,
        Some(arg) => arg.parse().map_err(|_| {
            std::io::Error::other(format!(
                "bench-upstream: PORTS must be 1..65535, got {arg:?}"
            ))
        })?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stats = Arc::new(Stats {
            epoch: Instant::now(),
            connections: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::with_capacity(1 << 20)),
        });
        let post_body = post_response();
        let mut numbers = Vec::new();
        for index in 0..ports.max(1) {
            // The mock's listener: a backlog that 150 connections opened at
            // once do not overflow (tokio's `bind` asks for 128).
            let listener = sluice_mock::listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            numbers.push(listener.local_addr()?.port().to_string());
            tokio::spawn(serve(listener, index, stats.clone(), post_body.clone()));
        }
        println!("{{\"ports\":[{}]}}", numbers.join(","));
        std::future::pending::<std::io::Result<()>>().await
    })
}
