//! `sluice demo`: the main job on an embedded default — 200 requests to
//! `/delay/1` at concurrency 15 against an in-process test upstream — with
//! the makespan beside its ideal and the connections the server saw.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use sluice::sink::{OpenMode, Sink};
use sluice::{Config, Input, Request};
use sluice_mock::MockServer;

use crate::batch::{self, Feed, Ui};
use crate::cli::{DemoArgs, ProgressMode};
use crate::run::Usage;
use crate::screen::Screen;

const REQUESTS: u64 = 200;
const CONCURRENCY: NonZeroUsize = NonZeroUsize::new(15).expect("15 is not zero");

/// Runs the demo and returns the exit status.
pub async fn demo(args: DemoArgs) -> Result<crate::exit::ExitCode> {
    let (sink, shown) = open_output(args.output.as_deref())?;
    let mock = MockServer::start(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| Usage(anyhow!("cannot start the test upstream on 127.0.0.1: {e}")))?;
    let url = url::Url::parse(&format!("{}/delay/1", mock.url())).context("mock URL")?;
    let requests = (1..=REQUESTS)
        .map(move |line| Ok::<_, batch::FeedError>(Input::from(Request::get(line, url.clone()))));
    let (feed, inputs) = Feed::wrap(futures::stream::iter(requests));
    let config = Config::builder().concurrency(CONCURRENCY).build()?;
    eprintln!(
        "sluice demo: {REQUESTS} requests to {}/delay/1 at concurrency {CONCURRENCY} (test upstream in-process)",
        mock.url()
    );
    let ui = Ui {
        display: Screen::new(ProgressMode::Always, false, false),
        quiet: false,
        summary_json: None,
        report: None,
        resumable: true,
        stdin_terminal: false,
        shared: None,
    };
    let _ = feed.total.set(REQUESTS);
    let signals = crate::signals::listen()?;
    let start = Instant::now();
    let summary = batch::drive(config, feed, inputs, sink, None, ui, signals).await?;
    let makespan = start.elapsed().as_secs_f64();
    let ideal = REQUESTS.div_ceil(CONCURRENCY.get() as u64) as f64;
    let stats = mock.stats();
    let lines = [
        format!(
            "makespan {makespan:.2}s, ideal {ideal:.2}s (ceil({REQUESTS}/{CONCURRENCY}) waves of 1s): {:+.2}%",
            (makespan / ideal - 1.0) * 100.0
        ),
        format!(
            "the server saw {} connections for {} requests (peak {} in flight)",
            stats.connections, stats.requests, stats.peak_in_flight
        ),
    ];
    for line in lines {
        // Records own stdout under `-o -`: the findings go beside the summary.
        match &shown {
            Some(_) => println!("{line}"),
            None => eprintln!("{line}"),
        }
    }
    if let Some(path) = shown {
        println!("results: {}", path.display());
    }
    mock.shutdown().await;
    Ok(summary.exit_code)
}

/// The demo's records: `-o FILE` (refused when it already holds something),
/// `-o -` (stdout), or by default a file in the temporary directory that each
/// demo replaces. Returns the sink and the path to show, if any.
fn open_output(output: Option<&Path>) -> Result<(Sink, Option<PathBuf>)> {
    let Some(path) = output else {
        let path = std::env::temp_dir().join("sluice-demo.jsonl");
        let sink = Sink::open(&path, OpenMode::Overwrite, false).map_err(|e| Usage(e.into()))?;
        return Ok((sink, Some(path)));
    };
    if path == Path::new("-") {
        return Ok((Sink::stdout(), None));
    }
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Err(Usage(anyhow!(
            "{} already exists and is not empty; give the demo another file (-o), or remove it",
            path.display()
        ))
        .into());
    }
    let sink = Sink::open(path, OpenMode::Fresh, false).map_err(|e| Usage(e.into()))?;
    Ok((sink, Some(path.to_path_buf())))
}
