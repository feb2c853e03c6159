//! The direct HTTP/1.1 client: never more connections to an origin than
//! requests in flight to it, and the request head reqwest used to send
//! (Host, User-Agent, Accept, credentials from the URL).

use crate::support::raw::{Act, RawServer, ok, response};
use crate::support::{Sluice, by_line, json_line, lines, mock};

/// 3,000 quick GETs at `-c 50`: the server sees at most 50 connections
/// (the reqwest pool opened a new one whenever no idle one was ready at
/// checkout: 342 for 200 slots in the benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_never_outnumber_the_slots() {
    let server = mock().await;
    let input = lines(&vec![format!("{}/fast", server.url()); 3000]);
    let out = Sluice::run(["-c", "50", "-q"]).stdin(input).output().await;
    out.code(0);
    assert_eq!(by_line(&out.results()).len(), 3000);
    let stats = server.stats();
    assert_eq!(stats.requests, 3000);
    assert!(
        (1..=50).contains(&stats.connections),
        "at most one connection per slot: {stats:?}"
    );
    server.shutdown().await;
}

/// The head of a request: Host with the port, the run's User-Agent,
/// `Accept: */*`, and Basic credentials from the URL's user information
/// (percent-decoded), unless a header sets Authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_head_has_host_agent_accept_and_url_credentials() {
    let server = mock().await;
    let host = server.addr().to_string();
    let input = lines(&[
        format!("http://us%65r:p%40ss@{host}/echo?x=1#frag"),
        format!(
            r#"{{"url":"http://user:pass@{host}/echo","headers":{{"Authorization":"Bearer mine"}}}}"#
        ),
    ]);
    let out = Sluice::run(["-q", "-c", "1"]).stdin(input).output().await;
    out.code(0);
    let records = by_line(&out.results());
    let echoed = |line: u64| records[&line].body_json()["headers"].clone();
    let first = echoed(1);
    assert_eq!(first["host"], host, "{first}");
    assert_eq!(first["accept"], "*/*", "{first}");
    let agent = first["user-agent"].as_str().unwrap_or_default();
    assert!(agent.starts_with("sluice/"), "{first}");
    // base64("user:p@ss")
    assert_eq!(first["authorization"], "Basic dXNlcjpwQHNz", "{first}");
    assert_eq!(
        records[&1].body_json()["query_string"],
        "x=1",
        "{}",
        records[&1]
    );
    assert_eq!(echoed(2)["authorization"], "Bearer mine");
    server.shutdown().await;
}

/// A server that refuses an 8 MiB POST before reading its body (a 413 at
/// once) and keeps the connection open: the requests after it, at `-c 1`,
/// are each answered on another connection, none timed out (was: the
/// connection went back to the pool with hyper still writing that body,
/// which the server never reads, and the next request on it waited behind
/// it until its timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_writing_a_refused_body_is_not_reused() {
    let raw = RawServer::start(|req| match req.path.as_str() {
        "/upload" => Act::Early(response("413 Payload Too Large", &[], b"")),
        _ => Act::Keep(ok("fine")),
    })
    .await;
    let mut input = vec![json_line(serde_json::json!({
        "url": format!("{}/upload", raw.url),
        "method": "POST",
        "body_text": "a".repeat(8 << 20),
    }))];
    input.extend((0..3).map(|_| format!("{}/after", raw.url)));
    let started = std::time::Instant::now();
    let out = Sluice::run(["-q", "-c", "1", "--timeout", "3s", "--retries", "0"])
        .stdin(lines(&input))
        .output()
        .await;
    let records = by_line(&out.results());
    assert_eq!(records[&1].status, Some(413), "{}", records[&1]);
    for line in 2..=4 {
        let record = &records[&line];
        assert_eq!(record.status, Some(200), "{record}");
        assert_eq!(record.attempts, 1, "{record}");
    }
    assert_eq!(raw.requests("/upload"), 1);
    assert_eq!(raw.requests("/after"), 3);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A server that answers a 1 MiB POST (413) before reading its body, then
/// reads the body and keeps the connection: the connection goes back to
/// the pool with the body still being written, and the next request on it
/// waits for that write (hyper is not ready for it until then) with the
/// connection's I/O polled by the request that took it (it has no task of
/// its own). Every POST is answered, received once, and none hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answered_before_its_body_was_read_leaves_a_reusable_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (heads, accepts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, a) = (Arc::clone(&heads), Arc::clone(&accepts));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut length = 0u64;
                    let mut line = String::new();
                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\n\r\nno";
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let mut rest = (&mut read).take(length);
                    if tokio::io::copy(&mut rest, &mut tokio::io::sink())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let body = "a".repeat(1 << 20);
    let post = format!(r#"{{"method":"POST","url":"http://{addr}/p","body":"{body}"}}"#);
    let out = Sluice::run(["-c", "1", "-q", "--timeout", "10s"])
        .stdin(lines(&vec![post; 4]))
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 4, "{}", out.stdout);
    for rec in recs.values() {
        assert_eq!((rec.status, rec.attempts), (Some(413), 1), "{rec}");
    }
    assert_eq!(heads.load(Ordering::SeqCst), 4, "each POST received once");
    // One connection when each body was written by the time its answer
    // was read (loopback takes 1 MiB at once: every run seen); one still
    // writing would be closed rather than reused (the test above), never
    // waited on.
    let accepts = accepts.load(Ordering::SeqCst);
    assert!((1..=4).contains(&accepts), "{accepts} connections");
}
