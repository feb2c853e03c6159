//! An unpaced run carries its attempts and connections on a second thread
//! (`sluice-worker`) beside the engine's driver, with the same exact
//! concurrency and one record per line; a paced run stays on one thread.

use crate::support::*;

/// The names of the threads of process `pid` (Linux: `/proc/PID/task`).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the child's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// Twelve slow requests at `-c 4` with the given options: returns whether
/// the child had a `sluice-worker` thread while four were in flight, and
/// checks the run kept `-c` exactly and wrote one record per line.
async fn worker_while_in_flight(extra: &[&str]) -> bool {
    let job = FileJob::start(|m| (0..12).map(|_| format!("{m}/delay/0.3")).collect()).await;
    let mut options = vec!["-q", "-c", "4"];
    options.extend_from_slice(extra);
    let mut child = Sluice::to_file(&job.output, &job.input, &options).spawn();
    let server = &job.server;
    child
        .until("four requests in flight", || server.stats().in_flight == 4)
        .await;
    let worker = thread_names(child.pid())
        .iter()
        .any(|n| n == "sluice-worker");
    let out = child.finish().await;
    out.code(0);
    let records = results_so_far(&job.output);
    assert_eq!(records.len(), 12, "one record per line");
    assert!(records.values().all(|r| r.ok), "every request answered");
    assert_eq!(server.stats().requests, 12, "each line sent once");
    assert_eq!(server.stats().peak_in_flight, 4, "exactly -c in flight");
    worker
}

#[tokio::test]
async fn an_unpaced_run_carries_its_attempts_on_a_worker_thread() {
    assert!(worker_while_in_flight(&[]).await, "a sluice-worker thread");
}

#[tokio::test]
async fn a_paced_run_stays_on_one_thread() {
    // 100/s with a burst of 4: the four starts come at once, then the rate
    // holds the rest back while they are in flight.
    let paced = worker_while_in_flight(&["--rate", "100/s", "--burst", "4"]).await;
    assert!(!paced, "no sluice-worker thread in a paced run");
}
