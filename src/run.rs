//! `sluice run`: checks everything that can fail before a request is sent
//! (configuration, inputs, output), then drives the batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use sluice::intake::{Checked, Intake};
use sluice::parse::{DEFAULT_MAX_LINE_BYTES, ParseOptions, check_base_url};
use sluice::resume::Recorded;
use sluice::sink::{OpenMode, Sink};
use sluice::source::Source;

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
    let source = Source::open(&args.inputs, opts.clone()).map_err(|e| Usage(anyhow!("{e}")))?;
    if args.dry_run {
        return dry_run(source, config.effective_budget_burst(), args.quiet).await;
    }
    let recorded = match (&args.output, args.resume) {
        (Some(path), true) if path != Path::new("-") => {
            let recorded =
                Recorded::scan(path, args.retry_failed).map_err(|e| Usage(anyhow!("{e}")))?;
            check_inputs_match(&args.inputs, opts, &recorded).await?;
            Some(Arc::new(recorded))
        }
        _ => None,
    };
    let sink = open_output(&args)?;
    if args.insecure {
        eprintln!(
            "sluice: warning: --insecure: TLS certificates are NOT verified; anyone on the path can read and change this traffic"
        );
    }
    raise_open_file_limit(config.concurrency.get());
    let signals = crate::signals::listen().context("cannot install signal handlers")?;
    let prior = recorded
        .as_ref()
        .map(|r| r.tally.clone())
        .unwrap_or_default();
    let stream = source.into_stream().map(move |item| {
        let item = item.map_err(|e| e.to_string())?;
        match &recorded {
            Some(r) => r.filter(item).map_err(|e| e.to_string()),
            None => Ok(item),
        }
    });
    let (feed, inputs) = Feed::wrap(stream);
    let ui = Ui {
        display: Display::new(args.progress, args.quiet, args.verbose),
        quiet: args.quiet,
        summary_json: args.summary_json.clone(),
        report: args.report.clone(),
    };
    let summary = batch::drive(config, feed, inputs, sink, prior, ui, signals).await?;
    Ok(summary.exit_code)
}

/// Before a resumed run sends anything, every recorded line must still
/// have the same id in the inputs (when they are files that can be read
/// twice; standard input is checked as it streams).
async fn check_inputs_match(
    inputs: &[PathBuf],
    opts: ParseOptions,
    recorded: &Recorded,
) -> Result<()> {
    if inputs.is_empty() || inputs.iter().any(|p| p == Path::new("-")) {
        return Ok(());
    }
    let source = Source::open(inputs, opts).map_err(|e| Usage(anyhow!("{e}")))?;
    let mut stream = Box::pin(source.into_stream());
    let mut last = 0;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| Usage(anyhow!("{e}")))?;
        last = item.line();
        recorded.filter(item).map_err(|e| Usage(anyhow!("{e}")))?;
    }
    if recorded.last_line() > last {
        return Err(Usage(anyhow!(
            "the output has a record for line {} but the inputs have only {last} lines: the input changed; resume with the same inputs, or start a new output",
            recorded.last_line()
        ))
        .into());
    }
    Ok(())
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
    Sink::open(path, mode, args.fsync).map_err(|e| Usage(anyhow!("{e}")).into())
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
    if lim.rlim_cur < needed {
        eprintln!(
            "sluice: warning: the open-file limit is {} but -c {concurrency} may need {needed}; raise it with `ulimit -n {needed}`",
            lim.rlim_cur
        );
    }
}
