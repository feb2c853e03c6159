//! The attempt's one timer: it covers sending and reading
//! the body, and fires while a body keeps arriving.

use crate::support::*;

/// A body that keeps arriving, below the size limit, is cut off at the
/// attempt's timeout: `timeout` with the status that arrived, one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_arriving_times_out() {
    let raw =
        RawServer::start(|_req| Act::endless_chunks(0x1000, std::time::Duration::from_millis(1)))
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
