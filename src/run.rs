//! `sluice run`: checks everything that can fail before a request is sent
//! (configuration, inputs, output), then drives the batch.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use sluice::intake::{Checked, Intake};
use sluice::parse::{DEFAULT_MAX_LINE_BYTES, ParseOptions, check_base_url};
use sluice::sink::{OpenMode, Sink};
use sluice::source::Source;
use sluice::stats::Tally;

use crate::batch::{self, Feed, Ui, exit};
use crate::cli::RunArgs;
use crate::report::Display;

/// A failure before anything was sent: printed, then exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Usage(pub anyhow::Error);

/// Runs the command; `Err(Usage)` means nothing was sent.
pub async fn run(args: RunArgs) -> Result<i32> {
    let config = args.config().map_err(Usage)?;
    let base_url = match &args.base_url {
        Some(text) => Some(check_base_url(text).map_err(|e| Usage(anyhow!("--base-url: {e}")))?),
        None => None,
    };
    let opts = ParseOptions {
        base_url,
        redactor: config.redactor.clone(),
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
    };
    let source = Source::open(&args.inputs, opts).map_err(|e| Usage(e.into()))?;
    if args.dry_run {
        return dry_run(source, config.effective_budget_burst(), args.quiet).await;
    }
    let sink = open_output(&args)?;
    raise_open_file_limit(config.concurrency.get());
    let signals = crate::signals::listen().context("cannot install signal handlers")?;
    let (feed, inputs) = Feed::wrap(source.into_stream());
    let ui = Ui {
        display: Display::new(args.progress, args.quiet, args.verbose),
        quiet: args.quiet,
        summary_json: args.summary_json.clone(),
    };
    let summary = batch::drive(config, feed, inputs, sink, Tally::default(), ui, signals).await?;
    Ok(summary.exit_code)
}

fn open_output(args: &RunArgs) -> Result<Sink> {
    let path = args.output.as_deref().filter(|p| *p != Path::new("-"));
    let Some(path) = path else {
        if args.resume {
            return Err(Usage(anyhow!(
                "--resume needs -o FILE: records on stdout cannot be resumed"
            ))
            .into());
        }
        return Ok(Sink::stdout());
    };
    let mode = if args.overwrite {
        OpenMode::Overwrite
    } else if args.resume {
        OpenMode::Append
    } else {
        OpenMode::Fresh
    };
    Sink::open(path, mode, args.fsync).map_err(|e| Usage(e.into()).into())
}

/// `--dry-run`: every line is checked as a run would check it (duplicates
/// and costs included); bad lines' records go to stdout; nothing is sent.
async fn dry_run(source: Source, budget_burst: Option<u64>, quiet: bool) -> Result<i32> {
    let mut intake = Intake::new(budget_burst);
    let mut stream = Box::pin(source.into_stream());
    let (mut good, mut bad) = (0u64, 0u64);
    let mut out = std::io::stdout().lock();
    while let Some(item) = stream.next().await {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                eprintln!("sluice: {e}");
                return Ok(exit::STOPPED);
            }
        };
        match intake.check(item) {
            Checked::Run(..) | Checked::Skip => good += 1,
            Checked::Reject(record) => {
                bad += 1;
                use std::io::Write;
                if out.write_all(record.to_json_line().as_bytes()).is_err() {
                    return Ok(exit::STOPPED);
                }
            }
        }
    }
    if !quiet {
        eprintln!(
            "sluice: dry run: {} request lines, {good} would be sent, {bad} bad; nothing was sent",
            good + bad
        );
    }
    Ok(if bad > 0 { exit::FAILED } else { exit::OK })
}

/// Raises the soft open-file limit to the hard limit, so that many
/// connections do not fail with EMFILE; warns when even that is too low.
pub fn raise_open_file_limit(concurrency: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    let needed = concurrency as u64 * 2 + 64;
    if (lim.rlim_cur as u64) < needed {
        eprintln!(
            "sluice: warning: the open-file limit is {} but -c {concurrency} may need {needed}; raise it with `ulimit -n {needed}`",
            lim.rlim_cur
        );
    }
}
