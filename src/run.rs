//! `sluice run`: checks everything that can fail before a request is sent
//! (configuration, inputs, output), then drives the batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use sluice::Input;
use sluice::intake::{Checked, Intake};
use sluice::parse::{DEFAULT_MAX_LINE_BYTES, ParseOptions, check_base_url};
use sluice::resume::Recorded;
use sluice::sink::{OpenMode, Sink};
use sluice::source::Source;

use crate::batch::{self, Feed, FeedError, Ui, exit};
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
        let intake = Intake::new(config.effective_budget_burst(), config.redactor.clone());
        return dry_run(source, intake, &args).await;
    }
    let recorded = match (&args.output, args.resume) {
        (Some(path), true) if path != Path::new("-") => {
            let recorded =
                Recorded::scan(path, args.retry_failed).map_err(|e| Usage(anyhow!("{e}")))?;
            check_inputs_match(&args.inputs, opts, &recorded).await?;
            recorded.commit().map_err(|e| Usage(anyhow!("{e}")))?;
            Some(Arc::new(recorded))
        }
        _ => None,
    };
    let sink = open_output(&args)?;
    for path in [&args.summary_json, &args.report].into_iter().flatten() {
        check_writable(path)?;
    }
    if args.insecure {
        eprintln!(
            "sluice: warning: --insecure: TLS certificates are NOT verified; anyone on the path can read and change this traffic"
        );
    }
    raise_open_file_limit(config.concurrency.get());
    let signals = crate::signals::listen().context("cannot install signal handlers")?;
    let prior = recorded.as_ref().map(|r| r.tally.clone());
    let stream = source.into_stream().map(move |item| {
        let item = item.map_err(FeedError::read)?;
        match &recorded {
            Some(r) => r.filter(item).map_err(|e| FeedError {
                message: e.to_string(),
                changed_input: true,
            }),
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

/// Before a resumed run sends anything, every recorded line must still be a
/// request line with the same id in the inputs. Only regular files can be
/// read twice; pipes and standard input are checked as they stream.
async fn check_inputs_match(
    inputs: &[PathBuf],
    opts: ParseOptions,
    recorded: &Recorded,
) -> Result<()> {
    let regular = |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    if inputs.is_empty() || !inputs.iter().all(regular) {
        return Ok(());
    }
    let source = Source::open(inputs, opts).map_err(|e| Usage(anyhow!("{e}")))?;
    let mut stream = Box::pin(source.into_stream());
    let mut matched = 0;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| Usage(anyhow!("{e}")))?;
        if let Input::Recorded { .. } = recorded.filter(item).map_err(|e| Usage(anyhow!("{e}")))? {
            matched += 1;
        }
    }
    if matched < recorded.kept {
        return Err(Usage(anyhow!(
            "the output has {} records but only {matched} of their lines are still request lines in the inputs: the input changed; resume with the same inputs, or start a new output",
            recorded.kept
        ))
        .into());
    }
    Ok(())
}

/// An extra output (`--summary-json`, `--report`) must be writable before
/// anything is sent; it is written at the end.
fn check_writable(path: &Path) -> Result<()> {
    let probe = path.with_extension("sluice-probe");
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| Usage(anyhow!("cannot write {}: {e}", path.display())).into())
}

fn open_output(args: &RunArgs) -> Result<Sink> {
    let path = args.output.as_deref().filter(|p| *p != Path::new("-"));
    if let Some(out) = path.and_then(|p| std::fs::canonicalize(p).ok()) {
        let same = |input: &PathBuf| std::fs::canonicalize(input).is_ok_and(|i| i == out);
        if args.inputs.iter().any(same) {
            return Err(Usage(anyhow!(
                "the output {} is also an input: write the results to another file",
                out.display()
            ))
            .into());
        }
    }
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
async fn dry_run(source: Source, mut intake: Intake, args: &RunArgs) -> Result<i32> {
    let mut stream = Box::pin(source.into_stream());
    let mut report = DryRun::default();
    let mut signals = crate::signals::listen().context("cannot install signal handlers")?;
    let mut interrupted = None;
    let mut out = std::io::stdout().lock();
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            Some(signal) = signals.recv() => {
                interrupted = Some(signal);
                None
            }
        };
        let Some(item) = item else {
            break;
        };
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                eprintln!("sluice: {e}");
                return Ok(exit::STOPPED);
            }
        };
        match intake.check(item) {
            Checked::Run(..) | Checked::Skip => report.would_send += 1,
            Checked::Reject(record) => {
                report.bad += 1;
                if let Some(kind) = record.error_kind() {
                    *report
                        .by_error
                        .entry(kind.as_str().to_string())
                        .or_default() += 1;
                }
                use std::io::Write;
                if out.write_all(record.to_json_line().as_bytes()).is_err() {
                    return Ok(exit::STOPPED);
                }
            }
        }
    }
    report.dry_run = true;
    report.request_lines = report.would_send + report.bad;
    report.exit_code = match interrupted {
        Some(signal) => signal.exit_code(),
        None if report.bad > 0 => exit::FAILED,
        None => exit::OK,
    };
    if !args.quiet {
        eprintln!("{}", report.text());
    }
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&report).expect("the summary serialises");
        std::fs::write(path, json + "\n")
            .map_err(|e| anyhow!("cannot write the summary {}: {e}", path.display()))?;
    }
    Ok(report.exit_code)
}

/// The summary of a dry run.
#[derive(Debug, Default, serde::Serialize)]
struct DryRun {
    dry_run: bool,
    request_lines: u64,
    would_send: u64,
    bad: u64,
    by_error: std::collections::BTreeMap<String, u64>,
    exit_code: i32,
}

impl DryRun {
    fn text(&self) -> String {
        let kinds: Vec<String> = self
            .by_error
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let detail = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        };
        format!(
            "sluice: dry run: {} request lines: {} would be sent, {} bad{detail}; nothing was sent",
            self.request_lines, self.would_send, self.bad
        )
    }
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
