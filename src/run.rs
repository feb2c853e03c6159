//! `sluice run`: a preflight checks everything that can fail before a
//! request is sent (configuration, inputs, outputs, resume, Redis) and
//! returns a plan; the plan is then carried out (a dry run, or the batch).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use sluice::Config;
use sluice::filejob::{self, JobError, ResumeFiles, Resumed, SinkOptions};
use sluice::format::OutputFormat;
use sluice::intake::{Checked, Intake};
use sluice::parse::{DEFAULT_MAX_LINE_BYTES, ParseOptions, check_base_url};
use sluice::shard::Shard;
use sluice::sink::Sink;
use sluice::source::Source;

use crate::batch::{self, Feed, Ui};
use crate::cli::RunArgs;
use crate::exit::{Ending, ExitCode, Stop};
use crate::screen::Screen;

/// A failure before anything was sent: printed, then exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Usage(pub anyhow::Error);

/// Runs the command: the preflight, then the plan it returns.
/// `Err(Usage)` means nothing was sent.
pub async fn command(args: RunArgs) -> Result<ExitCode> {
    match preflight(&args).await? {
        Plan::DryRun(dry) => dry_run(*dry, &args).await,
        Plan::Send(send) => send_all(*send, &args).await,
    }
}

/// What the preflight found ready: everything that can fail before a
/// request is sent has been checked.
enum Plan {
    /// `--dry-run`: check every line, send nothing.
    DryRun(Box<DryPlan>),
    /// A run whose outputs are open and whose resume is committed.
    Send(Box<SendPlan>),
}

/// The inputs of a dry run and the checks a run would make of each line.
struct DryPlan {
    source: Source,
    shard: Option<Shard>,
    intake: Intake,
}

/// A run ready to send: its configuration, inputs, outputs, what an
/// earlier run recorded, and the shared limiter under `--redis`.
struct SendPlan {
    config: Config,
    source: Source,
    shard: Option<Shard>,
    resumed: Option<Resumed>,
    sink: Sink,
    shared: Option<sluice::shared::Limiter>,
}

/// Every check that can fail before sending, in the order a user fixes
/// them: options, inputs, outputs, then (unless `--dry-run`) the resume,
/// Redis, and the output files opened. Nothing on disk changes until every
/// check has passed; each failure is a [`Usage`] error (exit 2).
async fn preflight(args: &RunArgs) -> Result<Plan> {
    let config = args.config().map_err(Usage)?;
    let shard = args.shard.map(|s| s.resolve()).transpose().map_err(Usage)?;
    args.check_output_options().map_err(Usage)?;
    let opts = parse_options(args, &config)?;
    let source = Source::open(&args.inputs, opts.clone()).map_err(|e| Usage(e.into()))?;
    for note in crate::outputs::check(
        &outputs(args),
        &args.inputs,
        args.overwrite,
        crate::outputs::Writer::Run,
    )? {
        eprintln!("{note}");
    }
    if args.dry_run {
        if let Some(path) = &args.output {
            eprintln!(
                "sluice: --dry-run: -o {} is left untouched (the records of bad lines go to stdout)",
                path.display()
            );
        }
        let intake = Intake::from_config(&config);
        return Ok(Plan::DryRun(Box::new(DryPlan {
            source,
            shard,
            intake,
        })));
    }
    let resumed = scan_resume(args, &opts, shard).await?;
    let shared = connect_shared(&config).await?;
    // Every check has passed: from here on, files change.
    let resumed = resumed.map(|r| commit_resume(r, args)).transpose()?;
    let sink = filejob::open_sink(&SinkOptions {
        output: args.output.as_deref(),
        errors_output: args.errors_output.as_deref(),
        resume: args.resume,
        overwrite: args.overwrite,
        fsync: args.fsync,
        format: args.output_format.into(),
    })
    .map_err(|e| Usage(job_error(e)))?;
    Ok(Plan::Send(Box::new(SendPlan {
        config,
        source,
        shard,
        resumed,
        sink,
        shared,
    })))
}

/// How input lines are parsed: `--base-url` (checked) and `--input-format`.
fn parse_options(args: &RunArgs, config: &Config) -> Result<ParseOptions> {
    let base_url = match &args.base_url {
        Some(text) => Some(
            check_base_url(text).map_err(|e| Usage(anyhow::Error::new(e).context("--base-url")))?,
        ),
        None => None,
    };
    Ok(ParseOptions {
        base_url,
        redactor: config.redactor.clone(),
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        input_format: args.input_format.into(),
        setting_names: crate::resolve::option_of,
    })
}

/// Under `--resume` into a file, the earlier records read back and matched
/// against the inputs (nothing changed yet).
async fn scan_resume(
    args: &RunArgs,
    opts: &ParseOptions,
    shard: Option<Shard>,
) -> Result<Option<Resumed>> {
    let Some(path) = args.output.as_deref().filter(|p| *p != Path::new("-")) else {
        return Ok(None);
    };
    if !args.resume {
        return Ok(None);
    }
    let files = ResumeFiles {
        output: path,
        errors_output: args.errors_output.as_deref(),
        retry_failed: args.retry_failed,
        format: OutputFormat::from(args.output_format),
        shard,
    };
    let resumed = filejob::scan_resume(&files, &args.inputs, opts)
        .await
        .map_err(|e| Usage(job_error(e)))?;
    Ok(Some(resumed))
}

/// The resume's changes made (a torn last line cut, `--retry-failed`'s
/// rewrite), said on stderr.
fn commit_resume(mut resumed: Resumed, args: &RunArgs) -> Result<Resumed> {
    let repaired = resumed.commit().map_err(|e| Usage(job_error(e)))?;
    if repaired > 0 {
        eprintln!(
            "sluice: --resume: cut {} after the last complete record of {} (a torn last line)",
            crate::outputs::bytes(repaired),
            args.output.as_deref().unwrap_or(Path::new("-")).display()
        );
    }
    Ok(resumed)
}

/// Sends every request of the plan and drives the batch to its end.
async fn send_all(plan: SendPlan, args: &RunArgs) -> Result<ExitCode> {
    let config = plan.config;
    if args.insecure {
        eprintln!(
            "sluice: warning: --insecure: TLS certificates are NOT verified; anyone on the path can read and change this traffic"
        );
    }
    raise_open_file_limit(config.concurrency.get());
    let signals = crate::signals::listen().context("cannot install signal handlers")?;
    let prior = plan.resumed.as_ref().map(|r| r.tally());
    let stream = filejob::input_stream(plan.source, plan.resumed);
    let (feed, inputs) = Feed::wrap(sluice::shard::select(stream, plan.shard));
    count_in_background(&args.inputs, plan.shard, &feed);
    let ui = ui(args, &config, plan.shared);
    let summary = batch::drive(config, feed, inputs, plan.sink, prior, ui, signals).await?;
    Ok(summary.exit_code)
}

/// What the batch shows and writes besides records.
fn ui(args: &RunArgs, config: &Config, shared: Option<sluice::shared::Limiter>) -> Ui {
    let stdin = args.inputs.is_empty() || args.inputs.iter().any(|p| p == Path::new("-"));
    let resumable = args
        .output
        .as_deref()
        .is_some_and(|p| p != Path::new("-") && crate::outputs::is_regular_or_new(p));
    Ui {
        display: Screen::new(args.progress, args.quiet, args.verbose),
        quiet: args.quiet,
        summary_json: args.summary_json.clone(),
        report: (args.report.clone())
            .map(|path| (path, crate::settings::RunInfo::new(args, config))),
        resumable,
        stdin_terminal: stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()),
        shared,
    }
}

/// A file-job error in the words of the options that set what it names.
fn job_error(e: JobError) -> anyhow::Error {
    match e {
        JobError::NotReadBack { path, kind } => anyhow!(
            "--resume reads back the records in {}, but it is {kind}, which cannot be read back: write the results to regular files (-o results.jsonl) to be able to resume",
            path.display()
        ),
        JobError::FormatMismatch {
            path,
            found,
            wanted,
        } => anyhow!(
            "{} holds records in the {found} format, but this run writes --output-format {wanted}: resume with --output-format {found}",
            path.display()
        ),
        JobError::RewriteNeedsFiles => anyhow!(
            "--retry-failed rewrites the output, so its inputs must be files that can be read twice to be checked first (not standard input or a pipe)"
        ),
        JobError::ResumeOnStdout => {
            anyhow!("--resume needs -o FILE: records on stdout cannot be resumed")
        }
        JobError::Output(e) => crate::outputs::output_error(e, crate::outputs::Writer::Run),
        other => other.into(),
    }
}

/// Under `--redis`, connects the shared limiter before anything is sent: a
/// wrong URL, a refused password or a Redis without scripting is exit 2.
async fn connect_shared(config: &Config) -> Result<Option<sluice::shared::Limiter>> {
    sluice::shared::Limiter::for_config(config)
        .await
        .map_err(|e| Usage(anyhow!("--redis {}: {e}", e.url())).into())
}

/// Counts the request lines of input files while the run starts, so the
/// progress shows a fixed total and the summary an exact remainder (pipes and
/// standard input cannot be counted ahead: they are read once).
fn count_in_background(inputs: &[PathBuf], shard: Option<Shard>, feed: &Feed) {
    let (inputs, total) = (inputs.to_vec(), Arc::clone(&feed.total));
    tokio::task::spawn_blocking(move || {
        if let Some(n) = sluice::source::count_shard_lines(&inputs, shard) {
            let _ = total.set(n);
        }
    });
}

/// Every path the run writes, with the option that names it. A dry run
/// writes only its summary.
fn outputs(args: &RunArgs) -> Vec<crate::outputs::Output<'_>> {
    let mut outs = Vec::new();
    let stdout = Path::new("-");
    if let Some(path) = args
        .output
        .as_deref()
        .filter(|p| *p != stdout && !args.dry_run)
    {
        outs.push(crate::outputs::Output {
            option: "-o",
            path,
            appends: args.resume,
        });
    }
    if let Some(path) = args.errors_output.as_deref().filter(|_| !args.dry_run) {
        outs.push(crate::outputs::Output {
            option: "--errors-output",
            path,
            appends: args.resume,
        });
    }
    if let Some(path) = args.report.as_deref().filter(|_| !args.dry_run) {
        outs.push(crate::outputs::Output {
            option: "--report",
            path,
            appends: false,
        });
    }
    if let Some(path) = args.summary_json.as_deref() {
        outs.push(crate::outputs::Output {
            option: "--summary-json",
            path,
            appends: false,
        });
    }
    outs
}

/// `--dry-run`: every line is checked as a run would check it (duplicates
/// and costs included); bad lines' records go to stdout; nothing is sent.
async fn dry_run(plan: DryPlan, args: &RunArgs) -> Result<ExitCode> {
    let DryPlan {
        source,
        shard,
        mut intake,
    } = plan;
    let mut stream = Box::pin(sluice::shard::select(source.into_stream(), shard));
    let mut report = DryRun::default();
    let mut signals = crate::signals::listen().context("cannot install signal handlers")?;
    let mut interrupted = None;
    // A handle, not a lock: the lock may not be held across an await in a
    // task that can move between worker threads.
    let mut out = std::io::stdout();
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
                eprintln!("sluice: {:#}", anyhow::Error::from(e));
                return Ok(ExitCode::stopped(Stop::Stopped));
            }
        };
        match intake.check(item) {
            Checked::Run(..) => report.would_send += 1,
            // Another shard's line.
            Checked::Skip => {}
            Checked::Reject(record) => {
                report.bad += 1;
                if let Some(kind) = record.error_kind() {
                    *report
                        .by_error
                        .entry(kind.as_str().to_string())
                        .or_default() += 1;
                }
                use std::io::Write;
                if out
                    .write_all(
                        OutputFormat::from(args.output_format)
                            .render(&record)
                            .as_bytes(),
                    )
                    .is_err()
                {
                    return Ok(ExitCode::stopped(Stop::Stopped));
                }
            }
        }
    }
    report.dry_run = true;
    report.request_lines = report.would_send + report.bad;
    report.exit_code = ExitCode::decide(Ending {
        signal: interrupted,
        stop: None,
        failed: report.bad > 0,
    });
    if !args.quiet {
        eprintln!("{}", report.text());
    }
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&report).expect("the summary serialises");
        crate::outputs::replace(path, (json + "\n").as_bytes())
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
    exit_code: ExitCode,
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
