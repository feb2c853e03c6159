//! Dropping a [`sluice::Run`] cancels everything in flight: the attempts'
//! tasks are aborted with the driver, so their connections close at once
//! instead of waiting for answers nobody will read.

use std::time::Duration;

use futures::StreamExt;
use sluice::{Config, Event, Input, Request};
use sluice_mock::MockServer;

mod support;
use support::until;

#[tokio::test]
async fn dropping_a_run_aborts_the_attempts_in_flight() {
    let mock = MockServer::start("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the mock starts");
    // Answers that would take a minute.
    let url = url::Url::parse(&format!("{}/delay/60", mock.url())).expect("a URL");
    let requests = (1..=3).map(move |line| Input::from(Request::get(line, url.clone())));
    let config = Config::builder()
        .concurrency(std::num::NonZeroUsize::new(3).expect("not zero"))
        .build()
        .expect("a config");
    let mut run = sluice::run(
        config,
        futures::stream::iter(requests),
        std::future::pending(),
    )
    .expect("the run starts");
    // The three attempts reach the server (their Started events come first).
    let mut started = 0;
    while started < 3 {
        match tokio::time::timeout(Duration::from_secs(10), run.next()).await {
            Ok(Some(Event::Started { .. })) => started += 1,
            Ok(Some(_)) => {}
            other => panic!("the run ended or stalled before three starts: {other:?}"),
        }
    }
    assert!(
        until(&mock, |s| s.in_flight == 3).await,
        "three requests in flight at the server: {:?}",
        mock.stats().in_flight
    );
    drop(run);
    assert!(
        until(&mock, |s| s.open_connections == 0).await,
        "the connections closed once the run was dropped: {} open",
        mock.stats().open_connections
    );
    mock.shutdown().await;
}
