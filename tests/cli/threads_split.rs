//! A busy unpaced run (`-c` 100 or more) carries its attempts and
//! connections on a second thread (`sluice-worker`) beside the engine's
//! driver, with the same exact concurrency and one record per line; a
//! paced run, or one with fewer slots, stays on one thread.

use crate::support::*;

/// The names of the threads of process `pid` (Linux: `/proc/PID/task`).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the child's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// Slow requests, as many as two rounds of `-c c`, with the given options:
/// returns whether the child had a `sluice-worker` thread while `c` were
/// in flight, and checks the run kept `-c` exactly and wrote one record per
/// line.
async fn worker_while_in_flight(c: u64, extra: &[&str]) -> bool {
    let n = 2 * c;
    let job = FileJob::start(|m| (0..n).map(|_| format!("{m}/delay/0.3")).collect()).await;
    let c_arg = c.to_string();
    let mut options = vec!["-q", "-c", &c_arg];
    options.extend_from_slice(extra);
    let mut child = Sluice::to_file(&job.output, &job.input, &options).spawn();
    let server = &job.server;
    child
        .until("-c requests in flight", || server.stats().in_flight == c)
        .await;
    let worker = thread_names(child.pid())
        .iter()
        .any(|n| n == "sluice-worker");
    let out = child.finish().await;
    out.code(0);
    let records = results_so_far(&job.output);
    assert_eq!(records.len() as u64, n, "one record per line");
    assert!(records.values().all(|r| r.ok), "every request answered");
    assert_eq!(server.stats().requests, n, "each line sent once");
    assert_eq!(server.stats().peak_in_flight, c, "exactly -c in flight");
    worker
}

/// The least `-c` an unpaced run splits at (the engine's
/// `SPLIT_CONCURRENCY`).
const SPLIT: u64 = 100;

#[tokio::test]
async fn a_busy_unpaced_run_carries_its_attempts_on_a_worker_thread() {
    assert!(
        worker_while_in_flight(SPLIT, &[]).await,
        "a sluice-worker thread"
    );
}

#[tokio::test]
async fn a_run_with_few_slots_stays_on_one_thread() {
    let few = worker_while_in_flight(SPLIT - 1, &[]).await;
    assert!(!few, "no sluice-worker thread below -c {SPLIT}");
}

#[tokio::test]
async fn a_paced_run_stays_on_one_thread() {
    // A burst of -c: the starts come at once, then the rate holds the rest
    // back while they are in flight.
    let burst = SPLIT.to_string();
    let paced = worker_while_in_flight(SPLIT, &["--rate", "200/s", "--burst", &burst]).await;
    assert!(!paced, "no sluice-worker thread in a paced run");
}

/// On two threads, the first SIGINT drains (the attempts in flight on the
/// worker finish and are written, nothing new starts) and a second cancels
/// what is in flight there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupts_drain_then_cancel_a_split_run() {
    let server = mock().await;
    let m = server.url();
    let c = SPLIT;
    let mut input = vec![format!("{m}/delay/0.5"); c as usize];
    input.extend(vec![format!("{m}/fast"); 50]);
    let child = Sluice::run(["-c", &c.to_string()])
        .stdin(lines(&input))
        .spawn();
    until(&server, "-c requests in flight", |s| s.in_flight == c).await;
    child.signal(libc::SIGINT);
    let out = child.finish().await;
    out.code(130);
    let recs = by_line(&out.results());
    assert_eq!(recs.len() as u64, c, "the ones in flight finish");
    assert!(recs.values().all(|r| r.ok));
    assert_eq!(server.stats().requests, c, "nothing new starts");

    server.reset_stats();
    let input = lines(&vec![format!("{m}/hang"); c as usize + 10]);
    let child = Sluice::run(["-c", &c.to_string()]).stdin(input).spawn();
    until(&server, "-c requests in flight", |s| s.in_flight == c).await;
    child.signal(libc::SIGINT);
    let out = child.finish_signalling(Some(libc::SIGINT)).await;
    out.code(130);
    assert_eq!(out.results().len(), 0, "cancelled requests are not written");
    assert!(
        out.stderr.contains(&format!(
            "cancelled {c} requests in flight without a record"
        )),
        "{}",
        out.stderr
    );
    server.shutdown().await;
}
