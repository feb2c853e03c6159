//! `sluice demo`: the main job on an embedded default — 200 requests to
//! `/delay/1` at concurrency 15 against an in-process test upstream — with
//! the makespan beside its ideal and the connections the server saw.

use std::time::Instant;

use anyhow::{Context, Result};
use sluice::sink::{OpenMode, Sink};
use sluice::{Config, Input, Request};
use sluice_mock::MockServer;

use crate::batch::{self, Feed, Ui};
use crate::cli::ProgressMode;
use crate::report::Display;

const REQUESTS: u64 = 200;
const CONCURRENCY: usize = 15;

/// Runs the demo and returns the exit status.
pub async fn demo() -> Result<i32> {
    let mock = MockServer::start(([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the test upstream on 127.0.0.1")?;
    let url = url::Url::parse(&format!("{}/delay/1", mock.url())).context("mock URL")?;
    let requests = (1..=REQUESTS).map(move |line| {
        Ok::<_, batch::FeedError>(Input::Request(Request::get(line, url.clone())))
    });
    let (feed, inputs) = Feed::wrap(futures::stream::iter(requests));
    let out = std::env::temp_dir().join("sluice-demo.jsonl");
    let sink = Sink::open(&out, OpenMode::Overwrite, false)?;
    let config = Config::builder().concurrency(CONCURRENCY).build()?;
    eprintln!(
        "sluice demo: {REQUESTS} requests to {}/delay/1 at concurrency {CONCURRENCY} (test upstream in-process)",
        mock.url()
    );
    let ui = Ui {
        display: Display::new(ProgressMode::Always, false, false),
        quiet: false,
        summary_json: None,
        report: None,
        resumable: true,
        stdin_terminal: false,
    };
    let _ = feed.total.set(REQUESTS);
    let signals = crate::signals::listen()?;
    let start = Instant::now();
    let summary = batch::drive(config, feed, inputs, sink, None, ui, signals).await?;
    let makespan = start.elapsed().as_secs_f64();
    let ideal = REQUESTS.div_ceil(CONCURRENCY as u64) as f64;
    let stats = mock.stats();
    println!(
        "makespan {makespan:.2}s, ideal {ideal:.2}s (ceil({REQUESTS}/{CONCURRENCY}) waves of 1s): {:+.2}%",
        (makespan / ideal - 1.0) * 100.0
    );
    println!(
        "the server saw {} connections for {} requests (peak {} in flight)",
        stats.connections, stats.requests, stats.peak_in_flight
    );
    println!("results: {}", out.display());
    mock.shutdown().await;
    Ok(summary.exit_code)
}
