//! End-to-end tests: a real server on 127.0.0.1:0 and a raw hyper client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use sluice_mock::{MockServer, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Upper bound for any single step, so a broken server fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

async fn start() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("bind loopback")
}

/// One HTTP/1.1 connection.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender, addr }
    }

    /// Sends a request and reads the whole response.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), hyper::Error> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).expect("valid request");
        timeout(STEP, async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok((parts.status, parts.headers, bytes))
        })
        .await
        .expect("request timed out")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        self.send("GET", path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

/// GET on a fresh connection.
async fn get(server: &MockServer, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    Conn::open(server.addr()).await.get(path).await
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).expect("JSON body")
}

async fn http_stats(server: &MockServer, query: &str) -> Stats {
    let (status, headers, body) = get(server, &format!("/stats{query}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).expect("stats JSON")
}

/// Polls the in-process stats until `cond` holds (bounded by [`STEP`]); for
/// events only the server can observe, such as a client's disconnect.
async fn wait_for_stats(server: &MockServer, cond: impl Fn(&Stats) -> bool) -> Stats {
    timeout(STEP, async {
        loop {
            let stats = server.stats();
            if cond(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("stats condition not reached in time")
}

#[tokio::test]
async fn fast_answers_small_json() {
    let server = start().await;
    assert!(server.url().starts_with("http://127.0.0.1:"));
    let (status, headers, body) = get(&server, "/fast").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(&body[..], b"{\"ok\":true}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_root_lists_the_endpoints() {
    let server = start().await;
    let (status, headers, body) = get(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    let text = std::str::from_utf8(&body).expect("UTF-8");
    assert_eq!(text, sluice_mock::endpoint_list());
    for path in [
        "GET /  ",
        "/fast",
        "/echo",
        "/delay/{secs}",
        "/status/{code}",
        "/bytes/{count}",
        "/ratelimit/{per_second}",
        "/fail/{count}/{key}",
        "/redirect/{code}?to=URL",
        "/reset",
        "/hang",
        "/drip/{bytes}/{secs}",
        "/truncate",
        "GET /stats",
        "POST /stats/reset",
    ] {
        assert!(text.contains(path), "{path} missing from GET /:\n{text}");
    }
    let mut conn = Conn::open(server.addr()).await;
    let (status, headers, _) = conn.send("POST", "/", &[], "").await.expect("POST /");
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_reflects_the_request() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    let (status, _, body) = conn
        .send(
            "POST",
            "/echo?a=1&b=x%20y&a=2&flag",
            &[
                ("x-test", "one"),
                ("x-test", "two"),
                ("content-type", "text/plain"),
            ],
            "hello body",
        )
        .await
        .expect("echo");
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"]["a"], "2");
    assert_eq!(v["query"]["b"], "x y");
    assert_eq!(v["query"]["flag"], "");
    assert_eq!(v["query_string"], "a=1&b=x%20y&a=2&flag");
    assert_eq!(v["headers"]["x-test"], "one, two");
    assert_eq!(v["headers"]["content-type"], "text/plain");
    assert_eq!(v["body"], "hello body");
    assert!(v.get("body_base64").is_none());

    let (_, _, body) = conn
        .send("PUT", "/echo", &[], vec![0xff, 0x00, 0x80])
        .await
        .expect("echo binary");
    let v = json(&body);
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["query_string"], "");
    assert_eq!(v["body"], Value::Null);
    assert_eq!(v["body_base64"], "/wCA");
    server.shutdown().await;
}

#[tokio::test]
async fn status_codes() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    let (status, _, body) = conn.get("/status/418").await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert_eq!(json(&body)["status"], 418);
    let (status, _, body) = conn.get("/status/204").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    for bad in ["/status/99", "/status/100", "/status/600", "/status/abc"] {
        let (status, _, body) = conn.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(json(&body)["error"].is_string());
    }
    let (status, _, body) = conn.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"], "not found");
    server.shutdown().await;
}

#[tokio::test]
async fn delay_waits() {
    let server = start().await;
    let started = std::time::Instant::now();
    let (status, _, body) = get(&server, "/delay/0.2").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["delay"], 0.2);
    let (status, _, _) = get(&server, "/delay/-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn bytes_are_exact_and_not_utf8() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    let (status, headers, body) = conn.get("/bytes/1000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], "1000");
    assert_eq!(body.len(), 1000);
    assert!(std::str::from_utf8(&body).is_err());
    for (i, b) in body.iter().enumerate() {
        assert_eq!(usize::from(*b), (i * 7 + 0x80) % 256);
    }
    let (_, headers, body) = conn.get("/bytes/0").await;
    assert_eq!(headers["content-length"], "0");
    assert!(body.is_empty());
    let (_, _, body) = conn.get("/bytes/5000000").await;
    assert_eq!(body.len(), 5_000_000);
    let (status, _, _) = conn.get("/bytes/-3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn fail_then_succeed() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    for attempt in 1..=2 {
        let (status, headers, body) = conn.get("/fail/2/k").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(headers.get("retry-after").is_none());
        assert_eq!(json(&body)["attempt"], attempt);
    }
    let (status, _, body) = conn.get("/fail/2/k").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!({"ok": true, "attempt": 3}));

    let path = "/fail/1/other?status=500&retry_after=3&retry_after_ms=250";
    let (status, headers, _) = conn.get(path).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers["retry-after"], "3");
    assert_eq!(headers["retry-after-ms"], "250");
    let (status, headers, _) = conn.get(path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("retry-after").is_none());

    let (status, headers, _) = conn
        .get("/fail/1/date?retry_after=Wed%2C%2021%20Oct%202015%2007%3A28%3A00%20GMT")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "Wed, 21 Oct 2015 07:28:00 GMT");

    // A reset forgets the keys.
    server.reset_stats();
    let (status, _, _) = conn.get("/fail/2/k").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = conn.get("/fail/x/k").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = conn.get("/fail/1/k?status=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn ratelimit_answers_429_with_retry_after() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    let mut limited = 0;
    for _ in 0..5 {
        let (status, headers, _) = conn.get("/ratelimit/2").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            let secs: u64 = headers["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("integer Retry-After");
            assert!(secs >= 1);
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!(limited >= 1, "no 429 among 5 quick requests");
    let (status, _, _) = conn.get("/ratelimit/0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn redirect_sets_location() {
    let server = start().await;
    let (status, headers, _) = get(
        &server,
        "/redirect/307?to=http%3A%2F%2Fexample.com%2Fa%3Fb%3D1",
    )
    .await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers["location"], "http://example.com/a?b=1");
    let (status, _, _) = get(&server, "/redirect/302").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&server, "/redirect/200?to=/x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn drip_is_slow_but_complete() {
    let server = start().await;
    let started = std::time::Instant::now();
    let (status, headers, body) = get(&server, "/drip/25/0.2").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], "25");
    assert_eq!(&body[..], &[b'x'; 25][..]);
    server.shutdown().await;
}

#[tokio::test]
async fn truncate_gives_incomplete_body() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    let request = Request::get("/truncate")
        .header("host", "mock")
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let response = timeout(STEP, conn.sender.send_request(request))
        .await
        .expect("in time")
        .expect("headers arrive");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "100");
    let result = timeout(STEP, response.into_body().collect())
        .await
        .expect("in time");
    assert!(result.is_err(), "body should be incomplete");

    // Raw view: exactly 50 body bytes, then the connection closes.
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream
        .write_all(b"GET /truncate HTTP/1.1\r\nhost: mock\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("in time")
        .expect("clean close");
    let text = String::from_utf8(raw).expect("ascii");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    assert!(head.to_ascii_lowercase().contains("content-length: 100"));
    assert_eq!(body, "x".repeat(50));
    server.shutdown().await;
}

#[tokio::test]
async fn reset_closes_without_response() {
    let server = start().await;
    let mut conn = Conn::open(server.addr()).await;
    let result = conn.send("POST", "/reset", &[], "some body").await;
    assert!(result.is_err(), "got a response: {result:?}");

    // Raw view: a TCP reset, not a single byte of response.
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream
        .write_all(b"GET /reset HTTP/1.1\r\nhost: mock\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    let result = timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("in time");
    assert!(raw.is_empty(), "got response bytes: {raw:?}");
    let err = result.expect_err("expected a connection reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

    // The server itself is fine.
    let (status, _, _) = get(&server, "/fast").await;
    assert_eq!(status, StatusCode::OK);
    let stats = wait_for_stats(&server, |s| s.in_flight == 0).await;
    assert_eq!(stats.paths["/reset"].requests, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_connections_requests_and_peaks() {
    let server = start().await;
    // Keep-alive: three requests on one connection.
    let mut conn = Conn::open(server.addr()).await;
    for _ in 0..3 {
        assert_eq!(conn.get("/fast").await.0, StatusCode::OK);
    }
    conn.get("/fail/2/abc?status=500").await;
    let stats = http_stats(&server, "").await;
    assert_eq!(
        stats.connections, 1,
        "connections only fetching /stats do not count"
    );
    assert_eq!(stats.open_connections, 1);
    assert_eq!(stats.requests, 4, "/stats itself is not counted");
    assert_eq!(
        http_stats(&server, "").await,
        stats,
        "looking changes nothing"
    );
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.peak_in_flight, 1);
    assert_eq!(stats.paths["/fast"].requests, 3);
    assert_eq!(stats.paths["/fail/2/abc"].requests, 1);
    assert!(!stats.paths.contains_key("/stats"));
    assert!(stats.arrivals.is_empty(), "arrivals only on request");

    // Five concurrent slow requests.
    let addr = server.addr();
    let tasks: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { Conn::open(addr).await.get("/delay/1").await.0 }))
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), StatusCode::OK);
    }
    let stats = http_stats(&server, "?arrivals=1").await;
    assert_eq!(stats.peak_in_flight, 5);
    assert_eq!(stats.paths["/delay/1"].requests, 5);
    assert_eq!(stats.paths["/delay/1"].peak_in_flight, 5);
    assert_eq!(stats.paths["/delay/1"].in_flight, 0);
    assert_eq!(stats.connections, 1 + 5);
    assert_eq!(stats.requests, 9);
    assert_eq!(stats.arrivals.len(), 9);
    assert!(stats.arrivals.windows(2).all(|w| w[0].ms <= w[1].ms));
    assert_eq!(stats.arrivals[0].path, "/fast");

    // Reset over HTTP clears everything, /fail state included.
    let (status, _, _) = conn
        .send("POST", "/stats/reset", &[], Bytes::new())
        .await
        .expect("reset");
    assert_eq!(status, StatusCode::OK);
    let stats = server.stats();
    assert_eq!(stats.connections, 0);
    assert_eq!(stats.requests, 0);
    assert_eq!(stats.peak_in_flight, 0);
    assert!(stats.paths.is_empty());
    assert!(stats.arrivals.is_empty());
    assert!(
        stats.open_connections >= 1,
        "the reset does not close anything"
    );
    assert_eq!(
        conn.get("/fail/2/abc").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        conn.send("GET", "/stats/reset", &[], Bytes::new())
            .await
            .expect("405")
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    server.shutdown().await;
}

#[tokio::test]
async fn hang_counts_in_flight_until_client_leaves() {
    let server = start().await;
    let addr = server.addr();
    let clients: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { Conn::open(addr).await.get("/hang").await }))
        .collect();
    let stats = wait_for_stats(&server, |s| s.in_flight == 3).await;
    assert_eq!(stats.paths["/hang"].in_flight, 3);
    assert_eq!(stats.open_connections, 3);
    for client in &clients {
        client.abort();
    }
    let stats = wait_for_stats(&server, |s| s.in_flight == 0 && s.open_connections == 0).await;
    assert_eq!(stats.peak_in_flight, 3);
    assert_eq!(stats.paths["/hang"].in_flight, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_hanging_connections() {
    let server = start().await;
    let addr = server.addr();
    let client = tokio::spawn(async move {
        let mut conn = Conn::open(addr).await;
        conn.send("GET", "/hang", &[], Bytes::new()).await
    });
    wait_for_stats(&server, |s| s.in_flight == 1).await;
    timeout(STEP, server.shutdown())
        .await
        .expect("shutdown in time");
    let result = timeout(STEP, client).await.expect("in time").expect("task");
    assert!(result.is_err(), "hung request must fail on shutdown");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let server = start().await;
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri = format!("{}/echo?x=1", server.url());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let request = Request::post(uri.as_str())
            .body(Full::new(Bytes::from_static(b"h2 body")))
            .expect("valid request");
        let response = sender.send_request(request);
        tasks.push(tokio::spawn(async move {
            let response = timeout(STEP, response)
                .await
                .expect("in time")
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
        }));
    }
    for task in tasks {
        let v = json(&task.await.expect("task"));
        assert_eq!(v["version"], "HTTP/2.0");
        assert_eq!(v["body"], "h2 body");
        assert_eq!(v["query"]["x"], "1");
    }
    let stats = server.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.paths["/echo"].requests, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_input_does_not_hurt() {
    let server = start().await;
    for garbage in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET /fast HTTP/9.9\r\n\r\n",
        b"GET /%ff%fe?%zz=%%&=&&to=\xff HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab",
    ] {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream.write_all(garbage).await.expect("write");
        stream.shutdown().await.expect("half close");
        let mut raw = Vec::new();
        let _ = timeout(STEP, stream.read_to_end(&mut raw))
            .await
            .expect("in time");
    }
    let (status, _, _) = get(&server, "/fast").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&server, "/redirect/301?to=%0d%0aX:%20y").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = start().await;
    let addr = server.addr();
    let mut conn = Conn::open(addr).await;
    assert_eq!(conn.get("/fast").await.0, StatusCode::OK);
    drop(server);
    let result = conn.send("GET", "/fast", &[], Bytes::new()).await;
    assert!(result.is_err(), "connection should be closed");
}

async fn start_with(options: sluice_mock::MockOptions) -> MockServer {
    MockServer::start_with("127.0.0.1:0".parse().expect("valid address"), options)
        .await
        .expect("bind loopback")
}

/// Sends one raw HTTP/1.1 request on `stream` and reads until the response
/// (a `Content-Length` body) is complete or the connection ends.
async fn raw_exchange(stream: &mut TcpStream, path: &str) -> Vec<u8> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).ends_with("}") {
        match timeout(STEP, stream.read(&mut buf))
            .await
            .expect("answer in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen
}

/// `keep_alive`: an idle connection is closed; before that it is reused.
#[tokio::test]
async fn keep_alive_closes_idle_connections() {
    let server = start_with(sluice_mock::MockOptions {
        keep_alive: Some(Duration::from_millis(100)),
        ..Default::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    assert!(
        raw_exchange(&mut stream, "/fast")
            .await
            .starts_with(b"HTTP/1.1 200")
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        raw_exchange(&mut stream, "/fast")
            .await
            .starts_with(b"HTTP/1.1 200")
    );
    let mut buf = [0u8; 16];
    let closed = timeout(STEP, stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    assert_eq!(server.stats().requests, 2);
    server.shutdown().await;
}

/// `goaway_after`: an HTTP/1.1 connection closes after that many requests.
#[tokio::test]
async fn goaway_after_ends_connections() {
    let server = start_with(sluice_mock::MockOptions {
        goaway_after: Some(2),
        ..Default::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    for _ in 0..2 {
        assert!(
            raw_exchange(&mut stream, "/fast")
                .await
                .starts_with(b"HTTP/1.1 200")
        );
    }
    assert_eq!(
        raw_exchange(&mut stream, "/fast").await,
        b"",
        "a third answer"
    );
    assert_eq!(server.stats().requests, 2);
    server.shutdown().await;
}

/// `/abort` counts the request and answers nothing.
#[tokio::test]
async fn abort_answers_nothing() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    assert_eq!(raw_exchange(&mut stream, "/abort").await, b"");
    assert_eq!(server.stats().requests, 1);
    server.shutdown().await;
}

/// `/knee`: latency grows past the capacity, and beyond twice the
/// capacity in flight the endpoint answers 503 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knee_slows_past_its_capacity_and_refuses_beyond_twice() {
    let server = start().await;
    let started = std::time::Instant::now();
    let (status, _, _) = get(&server, "/knee/2/100").await;
    assert_eq!(status, StatusCode::OK);
    let alone = started.elapsed();
    assert!(
        alone >= Duration::from_millis(100) && alone < Duration::from_millis(180),
        "{alone:?}"
    );
    // Five at once on capacity 2: four answered (the fourth after about
    // 2 × 100 ms), at least one refused at once.
    let started = std::time::Instant::now();
    let path = "/knee/2/100";
    let (a, b, c, d, e) = tokio::join!(
        get(&server, path),
        get(&server, path),
        get(&server, path),
        get(&server, path),
        get(&server, path)
    );
    let answers = [a, b, c, d, e];
    let ok = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok + refused, 5);
    assert!(refused >= 1 && ok >= 1, "{ok} ok, {refused} refused");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    let (status, _, _) = get(&server, "/knee/0/100").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}
