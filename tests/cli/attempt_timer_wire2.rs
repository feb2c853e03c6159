//! The attempt's one timer (branch wire2): it covers sending and reading
//! the body, and fires while a body keeps arriving.

use crate::support::*;

/// A body that keeps arriving, below the size limit, is cut off at the
/// attempt's timeout: `timeout` with the status that arrived, one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_arriving_times_out() {
    let raw = RawServer::start(|_req| {
        let mut piece = b"1000\r\n".to_vec();
        piece.extend(std::iter::repeat_n(b'a', 0x1000));
        piece.extend_from_slice(b"\r\n");
        Act::Stream {
            head: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            piece,
            every: std::time::Duration::from_millis(1),
            limit: 1 << 30,
        }
    })
    .await;
    let input = lines(&[format!("{}/long", raw.url)]);
    let started = std::time::Instant::now();
    let out = Sluice::run([
        "--timeout",
        "1s",
        "--max-body-size",
        "1GiB",
        "--retries",
        "0",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(8), "{elapsed:?}");
    let recs = by_line(&out.results());
    assert_eq!(recs[&1].kind(), "timeout", "{}", recs[&1]);
    assert_eq!(recs[&1].status, Some(200), "{}", recs[&1]);
    assert_eq!(recs[&1].attempts, 1);
    assert!(raw.streamed() > 0);
}
