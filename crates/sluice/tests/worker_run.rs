//! A run with a [`sluice::worker::Worker`] and enough slots to split: its
//! attempts run on the worker's thread, with the same records and exact
//! concurrency as on one thread, and dropping the run still cancels
//! everything in flight.

use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt;
use sluice::engine::SPLIT_CONCURRENCY;
use sluice::worker::Worker;
use sluice::{Config, Event, Input, Request};
use sluice_mock::MockServer;

mod support;
use support::until;

async fn mock() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the mock starts")
}

fn gets(mock: &MockServer, path: &str, n: u64) -> impl Iterator<Item = Input> + use<> {
    let url = url::Url::parse(&format!("{}{path}", mock.url())).expect("a URL");
    (1..=n).map(move |line| Input::from(Request::get(line, url.clone())))
}

fn concurrency(c: usize) -> Config {
    Config::builder()
        .concurrency(NonZeroUsize::new(c).expect("not zero"))
        .build()
        .expect("a config")
}

/// A run of `n` GETs of `path` at exactly [`SPLIT_CONCURRENCY`] slots, its
/// attempts on `worker`.
fn gets_on(worker: &Worker, mock: &MockServer, path: &str, n: u64) -> sluice::engine::Run {
    let inputs = futures::stream::iter(gets(mock, path, n));
    let config = concurrency(SPLIT_CONCURRENCY);
    sluice::engine::run_with_worker(config, None, inputs, std::future::pending(), worker)
        .expect("the run starts")
}

#[tokio::test]
async fn a_run_on_a_worker_gives_one_record_per_request_at_exactly_c() {
    let mock = mock().await;
    let worker = Worker::start().expect("the worker starts");
    let c = SPLIT_CONCURRENCY;
    let n = 3 * c as u64;
    let run = gets_on(&worker, &mock, "/delay/0.05", n);
    // The caller may let its handle go: the run keeps the worker.
    drop(worker);
    let mut lines: Vec<u64> = tokio::time::timeout(Duration::from_secs(30), async {
        run.filter_map(|e| async move {
            match e {
                Event::Record(r) if r.ok => Some(r.line),
                _ => None,
            }
        })
        .collect()
        .await
    })
    .await
    .expect("the run ends");
    lines.sort_unstable();
    assert_eq!(lines, (1..=n).collect::<Vec<_>>());
    let stats = mock.stats();
    assert_eq!(stats.requests, n);
    assert_eq!(stats.peak_in_flight, c as u64);
    mock.shutdown().await;
}

#[tokio::test]
async fn dropping_a_run_on_a_worker_aborts_the_attempts_in_flight() {
    let mock = mock().await;
    let worker = Worker::start().expect("the worker starts");
    // Answers that would take a minute.
    let c = SPLIT_CONCURRENCY;
    let mut run = gets_on(&worker, &mock, "/delay/60", c as u64);
    let mut started = 0;
    while started < c {
        match tokio::time::timeout(Duration::from_secs(10), run.next()).await {
            Ok(Some(Event::Started { .. })) => started += 1,
            Ok(Some(_)) => {}
            other => panic!("the run ended or stalled before {c} starts: {other:?}"),
        }
    }
    assert!(
        until(&mock, |s| s.in_flight == c as u64).await,
        "every request in flight at the server"
    );
    // The worker lives on (the caller holds it): only the run's attempts go.
    drop(run);
    assert!(
        until(&mock, |s| s.open_connections == 0).await,
        "the connections closed once the run was dropped: {} open",
        mock.stats().open_connections
    );
    drop(worker);
    mock.shutdown().await;
}
