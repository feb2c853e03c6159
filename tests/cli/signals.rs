//! Interrupts drain: the first SIGINT/SIGTERM stops new starts and lets
//! in-flight requests finish and be written; a second one cancels them.

use crate::support::*;

async fn drains_on(signal: libc::c_int, code: i32) {
    let server = mock().await;
    let m = server.url();
    let mut input = vec![format!("{m}/delay/0.5"); 3];
    input.extend(vec![format!("{m}/fast"); 10]);
    let child = Sluice::run(["-c", "3"]).stdin(lines(&input)).spawn();
    until(&server, "3 requests in flight", |s| s.in_flight == 3).await;
    child.signal(signal);
    let out = child.finish().await;
    out.code(code);
    let recs = by_line(&out.results());
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "in-flight ones finish"
    );
    assert!(recs.values().all(|r| r.ok));
    assert_eq!(server.stats().requests, 3, "nothing new starts");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_and_exits_130() {
    drains_on(libc::SIGINT, 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_143() {
    drains_on(libc::SIGTERM, 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_interrupt_cancels_what_is_in_flight() {
    let server = mock().await;
    let input = lines(&vec![format!("{}/hang", server.url()); 4]);
    let child = Sluice::run(["-c", "2"]).stdin(input).spawn();
    until(&server, "2 requests in flight", |s| s.in_flight == 2).await;
    child.signal(libc::SIGINT);
    let out = child.finish_signalling(Some(libc::SIGINT)).await;
    out.code(130);
    assert_eq!(out.results().len(), 0, "cancelled requests are not written");
    assert_eq!(server.stats().requests, 2);
    // Said, and counted: the server saw those attempts.
    assert!(
        out.stderr
            .contains("cancelled 2 requests in flight without a record"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("attempts 2 "), "{}", out.stderr);
    server.shutdown().await;
}

/// GNU `timeout` sends SIGTERM to the child and then to its process group:
/// the copy that arrives right after the first is the same request, so the
/// run still drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubled_sigterm_as_timeout_sends_it_still_drains() {
    let server = mock().await;
    let m = server.url();
    let mut input = vec![format!("{m}/delay/0.5"); 3];
    input.extend(vec![format!("{m}/fast"); 10]);
    let child = Sluice::run(["-c", "3"]).stdin(lines(&input)).spawn();
    until(&server, "3 requests in flight", |s| s.in_flight == 3).await;
    child.signal(libc::SIGTERM);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    child.signal(libc::SIGTERM);
    let out = child.finish().await;
    out.code(143);
    let recs = by_line(&out.results());
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "in-flight requests finished and were written: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("cancelled"), "{}", out.stderr);
    assert_eq!(server.stats().requests, 3);
    server.shutdown().await;
}

/// SIGINT while standard input stalls (no EOF): the run stops reading,
/// writes what completed, and exits 130 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_input_stalls_exits_130() {
    let server = mock().await;
    let (sluice, feed) = Sluice::run(Vec::<&str>::new()).feed();
    let child = sluice.spawn();
    feed.send(format!("{}/fast\n", server.url()).into_bytes())
        .unwrap();
    until(&server, "line 1 answered", |s| {
        s.requests == 1 && s.in_flight == 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let signalled = std::time::Instant::now();
    child.signal(libc::SIGINT);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(feed);
    let out = child.finish().await;
    out.code(130);
    assert!(signalled.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(by_line(&out.results()).len(), 1);
    assert!(out.stderr.contains("SIGINT"), "{}", out.stderr);
    server.shutdown().await;
}

/// `--dry-run` prints its summary, and SIGINT exits 130, also
/// while its input stalls. (Was: no signal handler; SIGINT killed it, no
/// summary, death by signal rather than exit 130.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_interrupted_while_input_stalls_exits_130_with_a_summary() {
    let (sluice, feed) = Sluice::run(["--dry-run"]).feed();
    let child = sluice.spawn();
    feed.send(b"http://127.0.0.1:9/x\nbad url\n".to_vec())
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    child.signal(libc::SIGINT);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    drop(feed);
    let out = child.finish().await;
    out.code(130);
    assert!(out.stderr.contains("dry run"), "{}", out.stderr);
    assert_eq!(by_line(&out.results()).len(), 1, "the bad line's record");
}
