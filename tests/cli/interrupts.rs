//! Nothing is lost across kill -9, SIGINT and SIGTERM: `--resume` ends with
//! exactly one record per request line, re-sending only work that was in
//! flight or not yet written.

use std::time::Duration;

use sluice_mock::MockServer;

use crate::support::*;

const CONCURRENCY: u64 = 20;
const TOTAL: u64 = 1200;

/// Waits (bounded) until the child's connections are gone, so every request
/// it wrote has been read and counted by the server.
async fn settle(server: &MockServer) {
    for _ in 0..2000 {
        if server.stats().open_connections == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the mock still has open connections: {:?}", server.stats());
}

/// 1,200 requests at -c 20, killed with SIGKILL three times (once the output
/// holds 150, 450 and 800 records), resumed each time, then resumed to the
/// end. Each kill may lose what was in flight plus what completed in the
/// last second (results reach the OS within a second): per killed
/// run, re-sent ≤ c + the requests that arrived in its last second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_gives_one_record_per_line() {
    let FileJob {
        server,
        dir: _dir,
        input,
        output,
    } = FileJob::start(|m| {
        (1..=TOTAL)
            .map(|i| match i % 3 {
                0 => format!("{m}/delay/0.05"),
                _ => format!("{m}/fast"),
            })
            .collect()
    })
    .await;
    let c = CONCURRENCY.to_string();

    let (mut sent_before, mut recorded_before, mut bound) = (0u64, 0u64, 0u64);
    for (cycle, k) in [150usize, 450, 800].into_iter().enumerate() {
        let mut extra = vec!["-q", "-c", &c];
        if cycle > 0 {
            extra.push("--resume");
        }
        let mut child = Sluice::to_file(&output, &input, &extra).spawn();
        child
            .until(&format!("{k} records in the output"), || {
                complete_lines(&output) >= k
            })
            .await;
        child.kill_9().await;
        settle(&server).await;

        let stats = server.stats();
        let sent = stats.requests - sent_before;
        let recorded = results_so_far(&output).len() as u64 - recorded_before;
        let lost = sent
            .checked_sub(recorded)
            .expect("every record is of a request sent in this run");
        let this_run = &stats.arrivals[sent_before as usize..];
        let last = this_run.last().expect("this run sent requests").ms;
        let last_second = this_run.iter().filter(|a| a.ms >= last - 1000.0).count() as u64;
        eprintln!(
            "kill {}: at >= {k} lines; this run sent {sent}, recorded {recorded}, lost {lost} \
             (bound c + last second = {CONCURRENCY} + {last_second})",
            cycle + 1
        );
        assert!(
            lost <= CONCURRENCY + last_second,
            "kill {}: {lost} requests lost, more than in flight plus the last second",
            cycle + 1
        );
        bound += CONCURRENCY + last_second;
        sent_before = stats.requests;
        recorded_before += recorded;
    }

    let out = Sluice::to_file(&output, &input, &["-q", "-c", &c, "--resume"])
        .output()
        .await;
    out.code(0);
    let recs = file_results(&output);
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        (1..=TOTAL).collect::<Vec<_>>(),
        "exactly one record per input line"
    );
    assert!(recs.values().all(|r| r.ok));
    let total = server.stats().requests;
    assert_eq!(
        total - sent_before,
        TOTAL - recorded_before,
        "the last resume sends exactly the lines without a record"
    );
    eprintln!(
        "kill -9 x3: the server saw {total} requests for {TOTAL} lines (bound {})",
        TOTAL + bound
    );
    assert!(total <= TOTAL + bound, "{total} requests for {TOTAL} lines");
    server.shutdown().await;
}

/// The first SIGINT/SIGTERM drains: in-flight requests finish and are
/// written, nothing new starts, the exit code names the signal; `--resume`
/// then sends each remaining line exactly once.
async fn interrupt_drains_then_resume_finishes(signal: libc::c_int, name: &str, code: i32) {
    let FileJob {
        server,
        dir: _dir,
        input,
        output,
    } = FileJob::start(|m| vec![format!("{m}/delay/0.5"); 100]).await;
    let mut child = Sluice::to_file(&output, &input, &["-c", "10"]).spawn();
    child
        .until("15 requests at the server", || {
            server.stats().requests >= 15
        })
        .await;
    child.signal(signal);
    let ended = child.finish().await;
    ended.code(code);
    assert!(
        ended.stderr.contains(&format!("interrupted by {name}")),
        "{}",
        ended.stderr
    );
    let recs = file_results(&output);
    let seen = server.stats().requests;
    eprintln!(
        "{name}: the server saw {seen} requests; {} records",
        recs.len()
    );
    assert_eq!(
        recs.len() as u64,
        seen,
        "every request the server saw has a record"
    );
    assert!((15..100).contains(&seen), "{seen}");
    assert!(recs.values().all(|r| r.ok), "in-flight requests finished");

    // Concurrency is not part of what a resume must match.
    let out = Sluice::to_file(&output, &input, &["-q", "-c", "40", "--resume"])
        .output()
        .await;
    out.code(0);
    let recs = file_results(&output);
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        (1..=100).collect::<Vec<u64>>()
    );
    assert_eq!(
        server.stats().requests,
        100,
        "each remaining line was sent once"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_exits_130_and_resume_finishes() {
    interrupt_drains_then_resume_finishes(libc::SIGINT, "SIGINT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_exits_143_and_resume_finishes() {
    interrupt_drains_then_resume_finishes(libc::SIGTERM, "SIGTERM", 143).await;
}
