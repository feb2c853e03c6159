//! Embedding the engine: 100 requests through exact limits, records as they
//! complete. Run with `cargo run -p sluice --example embed`.

use futures::StreamExt;
use sluice::{Config, Event, Input, Request};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A local test upstream, so the example needs no network.
    let mock = sluice_mock::MockServer::start("127.0.0.1:0".parse()?).await?;
    let url = url::Url::parse(&format!("{}/delay/0.1", mock.url()))?;

    let requests = (1..=100).map(move |line| Input::from(Request::get(line, url.clone())));
    let config = Config::builder()
        .concurrency(std::num::NonZeroUsize::new(20).expect("20 is not zero"))
        .rate("500/s".parse()?)
        .build()?;
    let mut run = sluice::run(
        config,
        futures::stream::iter(requests),
        std::future::pending(),
    )?;

    let (mut ok, mut failed) = (0, 0);
    while let Some(event) = run.next().await {
        if let Event::Record(record) = event {
            if record.ok { ok += 1 } else { failed += 1 }
        }
    }
    let stats = mock.stats();
    println!(
        "{ok} ok, {failed} failed; the server saw {} connections, peak {} in flight",
        stats.connections, stats.peak_in_flight
    );
    Ok(())
}
