//! `sluice run`: checks everything that can fail before a request is sent
//! (configuration, inputs, output), then drives the batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use sluice::Input;
use sluice::format::OutputFormat;
use sluice::intake::{Checked, Intake};
use sluice::parse::{DEFAULT_MAX_LINE_BYTES, ParseOptions, check_base_url};
use sluice::resume::{BLOCK, Mismatch, Recorded};
use sluice::shard::Shard;
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
    let shard = args.shard.map(|s| s.resolve()).transpose().map_err(Usage)?;
    args.check_output_options().map_err(Usage)?;
    let base_url = match &args.base_url {
        Some(text) => Some(check_base_url(text).map_err(|e| Usage(anyhow!("--base-url: {e}")))?),
        None => None,
    };
    let opts = ParseOptions {
        base_url,
        redactor: config.redactor.clone(),
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        input_format: args.input_format.into(),
    };
    let source = Source::open(&args.inputs, opts.clone()).map_err(|e| Usage(anyhow!("{e}")))?;
    for note in crate::outputs::check(&outputs(&args), &args.inputs, args.overwrite)? {
        eprintln!("{note}");
    }
    if args.dry_run {
        if let Some(path) = &args.output {
            eprintln!(
                "sluice: --dry-run: -o {} is left untouched (the records of bad lines go to stdout)",
                path.display()
            );
        }
        let intake = Intake::new(config.effective_budget_burst(), config.redactor.clone());
        return dry_run(source, shard, intake, &args).await;
    }
    let recorded = match (&args.output, args.resume) {
        (Some(path), true) if path != Path::new("-") => {
            let mut files = vec![path.as_path()];
            files.extend(args.errors_output.as_deref());
            for file in &files {
                if !crate::outputs::is_regular_or_new(file) {
                    return Err(Usage(anyhow!(
                        "--resume reads back the records in {}, but it is {}, which cannot be read back: write the results to regular files (-o results.jsonl) to be able to resume",
                        file.display(),
                        crate::outputs::kind_of(file)
                    ))
                    .into());
                }
            }
            let recorded = Recorded::scan_all(&files, args.retry_failed, &config.redactor)
                .map_err(|e| Usage(anyhow!("{e}")))?;
            let format = OutputFormat::from(args.output_format);
            if let Some(found) = recorded.format.filter(|f| *f != format) {
                return Err(Usage(anyhow!(
                    "{} holds records in the {found} format, but this run writes --output-format {format}: resume with --output-format {found}",
                    path.display()
                ))
                .into());
            }
            let checked = check_inputs_match(&args.inputs, opts, &recorded).await?;
            if recorded.removed > 0 && !checked {
                return Err(Usage(anyhow!(
                    "--retry-failed rewrites the output, so its inputs must be files that can be read twice to be checked first (not standard input or a pipe)"
                ))
                .into());
            }
            Some((recorded, checked))
        }
        _ => None,
    };
    // Every check has passed before anything changes on disk or is sent.
    let recorded = match recorded {
        Some((mut r, checked)) => {
            r.commit().map_err(|e| Usage(anyhow!("{e}")))?;
            if r.repaired_bytes > 0 {
                eprintln!(
                    "sluice: --resume: cut {} after the last complete record of {} (a torn last line)",
                    crate::outputs::bytes(r.repaired_bytes),
                    args.output.as_deref().unwrap_or(Path::new("-")).display()
                );
            }
            Some((Arc::new(r), checked))
        }
        None => None,
    };
    let shared = connect_shared(&config).await?;
    let sink = open_output(&args)?;
    if args.insecure {
        eprintln!(
            "sluice: warning: --insecure: TLS certificates are NOT verified; anyone on the path can read and change this traffic"
        );
    }
    raise_open_file_limit(config.concurrency.get());
    let signals = crate::signals::listen().context("cannot install signal handlers")?;
    let prior = recorded.as_ref().map(|(r, _)| r.tally.clone());
    let stream = sluice::shard::select(resumed_stream(source, recorded), shard);
    let (feed, inputs) = Feed::wrap(stream);
    count_in_background(&args.inputs, shard, &feed);
    let stdin = args.inputs.is_empty() || args.inputs.iter().any(|p| p == Path::new("-"));
    let resumable = args
        .output
        .as_deref()
        .is_some_and(|p| p != Path::new("-") && crate::outputs::is_regular_or_new(p));
    let ui = Ui {
        display: Display::new(args.progress, args.quiet, args.verbose),
        quiet: args.quiet,
        summary_json: args.summary_json.clone(),
        report: (args.report.clone())
            .map(|path| (path, crate::settings::RunInfo::new(&args, &config))),
        resumable,
        stdin_terminal: stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()),
        shared,
    };
    let summary = batch::drive(config, feed, inputs, sink, prior, ui, signals).await?;
    Ok(summary.exit_code)
}

/// Under `--redis`, connects the shared limiter before anything is sent: a
/// wrong URL, a refused password or a Redis without scripting is exit 2.
async fn connect_shared(config: &sluice::Config) -> Result<Option<sluice::shared::Limiter>> {
    use sluice::shared::{Dimension, Dimensions, Limiter};
    let Some(shared) = &config.shared else {
        return Ok(None);
    };
    let burst = u64::from(config.burst.get());
    let dims = Dimensions {
        rate: (config.rate).map(|r| Dimension::new("rate", r, burst)),
        budget: (config.budget)
            .map(|b| Dimension::new("budget", b, config.effective_budget_burst().unwrap_or(1))),
        host: (config.per_host_rate).map(|r| Dimension::new("host", r, burst)),
    };
    let limiter = Limiter::connect(shared, dims)
        .await
        .map_err(|e| Usage(anyhow!("{e}")))?;
    Ok(Some(limiter))
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

/// Before a resumed run sends anything, every recorded line must still be a
/// request line with the same id in the inputs. Only regular files can be
/// read twice; pipes and standard input are checked as they stream
/// (returns false then).
async fn check_inputs_match(
    inputs: &[PathBuf],
    opts: ParseOptions,
    recorded: &Recorded,
) -> Result<bool> {
    let regular = |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    if inputs.is_empty() || !inputs.iter().all(regular) {
        return Ok(false);
    }
    let mut check = recorded.check();
    let mut stream = Box::pin(
        Source::open(inputs, opts.clone())
            .map_err(|e| Usage(anyhow!("{e}")))?
            .into_stream(),
    );
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| Usage(anyhow!("{e}")))?;
        if let Err(m) = check.feed(&item) {
            return Err(changed_input(recorded, m, inputs, opts).await);
        }
    }
    if let Err(m) = check.finish() {
        return Err(changed_input(recorded, m, inputs, opts).await);
    }
    Ok(true)
}

/// The error for a changed input, naming the first line that differs.
async fn changed_input(
    recorded: &Recorded,
    mismatch: Mismatch,
    inputs: &[PathBuf],
    opts: ParseOptions,
) -> anyhow::Error {
    let mut ids = match recorded.block_ids(mismatch.block) {
        Ok(ids) => ids,
        Err(e) => return Usage(anyhow!("{e}")).into(),
    };
    if let Ok(source) = Source::open(inputs, opts) {
        let mut stream = Box::pin(source.into_stream());
        while let Some(Ok(item)) = stream.next().await {
            if let Some(message) = differs(recorded, &mut ids, &item) {
                return Usage(anyhow!("{message}")).into();
            }
        }
    }
    Usage(anyhow!("{}", unmatched(&ids, mismatch))).into()
}

const CHANGED_ADVICE: &str = "the input changed since the output was written; resume with the same inputs, or start a new output";

/// Compares an input line with its record (taken out of `ids`, the records
/// of a block that did not match): the message naming it when they differ.
fn differs(
    recorded: &Recorded,
    ids: &mut std::collections::BTreeMap<u64, sluice::resume::Fingerprint>,
    item: &Input,
) -> Option<String> {
    let line = item.line();
    let was = ids.remove(&line)?;
    let now = recorded.fingerprint(item);
    (now != was).then(|| {
        format!("input line {line} is {now} but its record is for {was}: {CHANGED_ADVICE}")
    })
}

/// Once every input line of a mismatched block matched its record: the
/// first record left has no request line any more (else the block's message).
fn unmatched(
    ids: &std::collections::BTreeMap<u64, sluice::resume::Fingerprint>,
    mismatch: Mismatch,
) -> String {
    match ids.first_key_value() {
        Some((line, was)) => format!(
            "the output has a record for input line {line} ({was}), which is no longer a request line: {CHANGED_ADVICE}"
        ),
        None => mismatch.message(),
    }
}

/// The message for a block of a streamed input that did not match: the
/// lines of that block are still held back, so the first one that differs
/// can be named as for input files (its records are read again from the
/// output).
fn streamed_mismatch(recorded: &Recorded, mismatch: Mismatch, held: &[Input]) -> String {
    let Ok(mut ids) = recorded.block_ids(mismatch.block) else {
        return mismatch.message();
    };
    for item in held.iter().filter(|i| i.line() / BLOCK == mismatch.block) {
        if let Some(message) = differs(recorded, &mut ids, item) {
            return message;
        }
    }
    unmatched(&ids, mismatch)
}

/// The input of a resumed run: lines with a record become
/// [`Input::Recorded`]. Inputs not checked up front (standard input, pipes)
/// are checked as they stream: the lines of a block that holds records are
/// held back until the block is known to match, so a changed input stops the
/// run (exit 2) before any of its lines is sent.
fn resumed_stream(
    source: Source,
    recorded: Option<(Arc<Recorded>, bool)>,
) -> futures::stream::BoxStream<'static, Result<Input, FeedError>> {
    let items = source.into_stream();
    match recorded {
        None => items.map(|i| i.map_err(FeedError::read)).boxed(),
        Some((r, true)) => items
            .map(move |i| Ok(r.filter(i.map_err(FeedError::read)?)))
            .boxed(),
        Some((r, false)) => held_back(items.boxed(), r),
    }
}

/// State of [`held_back`].
struct Held {
    inner: futures::stream::BoxStream<'static, Result<Input, sluice::source::SourceError>>,
    recorded: Arc<Recorded>,
    position: (u64, u64),
    held: Vec<Input>,
    out: std::collections::VecDeque<Result<Input, FeedError>>,
    ended: bool,
}

impl Held {
    fn changed(&mut self, m: Mismatch) {
        let message = streamed_mismatch(&self.recorded, m, &self.held);
        self.held.clear();
        self.out.push_back(Err(FeedError {
            message,
            changed_input: true,
        }));
        self.ended = true;
    }

    fn release(&mut self) {
        for item in self.held.drain(..) {
            self.out.push_back(Ok(self.recorded.filter(item)));
        }
    }

    fn take(&mut self, item: Input) {
        let before = self.position.0;
        let mut check = self.recorded.check_from(before, self.position.1);
        if let Err(m) = check.feed(&item) {
            return self.changed(m);
        }
        self.position = check.position();
        if self.position.0 != before {
            self.release();
        }
        if self.recorded.block_has_records(self.position.0) {
            self.held.push(item);
        } else {
            self.out.push_back(Ok(self.recorded.filter(item)));
        }
    }

    fn end(&mut self) {
        self.ended = true;
        let (block, sum) = self.position;
        match self.recorded.check_from(block, sum).finish() {
            Ok(()) => self.release(),
            Err(m) => self.changed(m),
        }
    }
}

fn held_back(
    inner: futures::stream::BoxStream<'static, Result<Input, sluice::source::SourceError>>,
    recorded: Arc<Recorded>,
) -> futures::stream::BoxStream<'static, Result<Input, FeedError>> {
    let state = Held {
        inner,
        recorded,
        position: (0, 0),
        held: Vec::new(),
        out: std::collections::VecDeque::new(),
        ended: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(next) = st.out.pop_front() {
                return Some((next, st));
            }
            if st.ended {
                return None;
            }
            match st.inner.next().await {
                Some(Ok(item)) => st.take(item),
                Some(Err(e)) => {
                    st.held.clear();
                    st.out.push_back(Err(FeedError::read(e)));
                    st.ended = true;
                }
                None => st.end(),
            }
        }
    })
    .boxed()
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

fn open_output(args: &RunArgs) -> Result<Sink> {
    let path = args.output.as_deref().filter(|p| *p != Path::new("-"));
    let Some(path) = path else {
        if args.resume {
            return Err(Usage(anyhow!(
                "--resume needs -o FILE: records on stdout cannot be resumed"
            ))
            .into());
        }
        return Ok(Sink::stdout().with_format(args.output_format.into()));
    };
    let mode = if args.resume {
        OpenMode::Append
    } else if args.overwrite {
        OpenMode::Overwrite
    } else {
        OpenMode::Fresh
    };
    let format = OutputFormat::from(args.output_format);
    let sink = Sink::open(path, mode, args.fsync)
        .map_err(|e| Usage(anyhow!("{e}")))?
        .with_format(format);
    Ok(match &args.errors_output {
        Some(errors) => sink.with_errors(
            Sink::open(errors, mode, args.fsync)
                .map_err(|e| Usage(anyhow!("{e}")))?
                .with_format(format),
        ),
        None => sink,
    })
}

/// `--dry-run`: every line is checked as a run would check it (duplicates
/// and costs included); bad lines' records go to stdout; nothing is sent.
async fn dry_run(
    source: Source,
    shard: Option<Shard>,
    mut intake: Intake,
    args: &RunArgs,
) -> Result<i32> {
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
                eprintln!("sluice: {e}");
                return Ok(exit::STOPPED);
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
