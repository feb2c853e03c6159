//! The engine on tokio's paused clock: paced runs finish at once in wall
//! time and keep their exact schedule in paused time.

use futures::StreamExt;
use sluice::{Config, Event, Input, Request};
use sluice_mock::MockServer;
use tokio::time::Instant;

async fn starts_of(config: Config, n: u64) -> Vec<f64> {
    let mock = MockServer::start("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the mock starts");
    let url = url::Url::parse(&format!("{}/fast", mock.url())).expect("a URL");
    let requests = (1..=n).map(move |line| Input::from(Request::get(line, url.clone())));
    let t0 = Instant::now();
    let run = sluice::run(
        config,
        futures::stream::iter(requests),
        std::future::pending(),
    )
    .expect("the run starts");
    let events: Vec<(Event, f64)> = run.map(|e| (e, t0.elapsed().as_secs_f64())).collect().await;
    let records = events
        .iter()
        .filter(|(e, _)| matches!(e, Event::Record(r) if r.ok))
        .count();
    assert_eq!(records as u64, n);
    mock.shutdown().await;
    events
        .iter()
        .filter(|(e, _)| matches!(e, Event::Started { .. }))
        .map(|(_, at)| *at)
        .collect()
}

/// It hung before: the last millisecond of every wait spun on `yield_now`,
/// and a paused clock never advances while a task is runnable.
#[tokio::test(start_paused = true)]
async fn twenty_requests_at_ten_a_second_finish_on_a_paused_clock() {
    let wall = std::time::Instant::now();
    let config = Config::builder()
        .rate("10/s".parse().expect("a rate"))
        .build()
        .expect("a config");
    let starts = starts_of(config, 20).await;
    // One start every 100.5 ms (0.5% below the rate), exactly.
    for (i, at) in starts.iter().enumerate() {
        let due = i as f64 * 0.1005;
        assert!((at - due).abs() < 0.002, "start {i} at {at} s, due {due} s");
    }
    assert!(wall.elapsed().as_secs_f64() < 5.0);
}

#[tokio::test(start_paused = true)]
async fn per_origin_rates_follow_the_paused_clock() {
    let config = Config::builder()
        .per_host_rate("5/s".parse().expect("a rate"))
        .burst(std::num::NonZeroU32::new(2).expect("2 is not zero"))
        .build()
        .expect("a config");
    let starts = starts_of(config, 12).await;
    // Two at once (the burst), then one every 201 ms.
    assert!(starts[1] < 0.002, "{starts:?}");
    let last = starts[11];
    assert!((last - 10.0 * 0.201).abs() < 0.003, "{starts:?}");
}
