//! The crash-safe file job, shared by the CLI (`sluice run -o FILE
//! --resume`) and the Python package (`sluice.run_file`): everything that is
//! checked before a request is sent (no output clobbered, [`outputs`]; an
//! earlier output read back and matched against the inputs, [`scan_resume`]),
//! the input stream of a resumed run ([`input_stream`]: lines with a record
//! are not sent again, and a changed input stops the run before any of its
//! lines is sent), and the output [`Sink`] ([`open_sink`]).
//!
//! Like the rest of the engine it never prints: what a caller should tell
//! the user comes back as values (notes, repaired bytes) and errors.

pub mod outputs;

use crate::shard::Shard;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::format::OutputFormat;
use crate::parse::ParseOptions;
use crate::request::Input;
use crate::resume::{BLOCK, Fingerprint, Mismatch, Recorded, ResumeError};
use crate::sink::{OpenError, OpenMode, Sink};
use crate::source::{Source, SourceError};
use crate::stats::Tally;

/// A reason not to start: nothing was sent and no file changed (the CLI
/// exits 2). Messages name files and lines, never a front end's option: a
/// front end says which of its options a variant is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A file of earlier records is a device, a FIFO or a directory.
    #[error(
        "the records in {} cannot be read back: it is {kind}; write the results to regular files to be able to resume",
        path.display()
    )]
    NotReadBack {
        /// The output (or errors output) to resume.
        path: PathBuf,
        /// What it is ("a FIFO (named pipe)", ...).
        kind: &'static str,
    },
    /// The earlier output holds another format than this run writes.
    #[error(
        "{} holds records in the {found} format, but this run writes the {wanted} format: resume in the {found} format",
        path.display()
    )]
    FormatMismatch {
        /// The output.
        path: PathBuf,
        /// The format its records are in.
        found: OutputFormat,
        /// The format this run writes.
        wanted: OutputFormat,
    },
    /// Failed records are dropped from the output, so the inputs must be
    /// checked first, which only files allow.
    #[error(
        "rewriting the output without its failed records needs inputs that can be read twice, to be checked first (files, not standard input or a pipe)"
    )]
    RewriteNeedsFiles,
    /// Records written to standard output cannot be read back.
    #[error("records on standard output cannot be resumed: write them to a file")]
    ResumeOnStdout,
    /// The earlier output holds a record of a line this shard does not own.
    #[error(
        "{} holds the record of line {line}, which shard {owner}/{count} owns, but this run is shard {shard}: resume each shard's output with the shard that wrote it",
        path.display(),
        owner = line % shard.count(),
        count = shard.count()
    )]
    OtherShard {
        /// The output.
        path: PathBuf,
        /// The first recorded line this shard does not own.
        line: u64,
        /// This run's shard.
        shard: Shard,
    },
    /// The earlier output cannot be read back, or cut, or rewritten.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// The inputs cannot be opened or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The inputs do not hold the lines the earlier records are for.
    #[error(transparent)]
    Changed(Box<Changed>),
    /// The output cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A path to write is refused ([`outputs::check`]).
    #[error(transparent)]
    Output(#[from] outputs::OutputError),
}

/// The inputs changed since the output being resumed was written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Changed {
    /// An input line differs from its record.
    #[error("input line {line} is {now} but its record is for {was}: {CHANGED_ADVICE}")]
    Differs {
        /// The line number in the whole input.
        line: u64,
        /// What the line is now.
        now: Fingerprint,
        /// What its record is for.
        was: Fingerprint,
    },
    /// A line with a record is no longer a request line.
    #[error(
        "the output has a record for input line {line} ({was}), which is no longer a request line: {CHANGED_ADVICE}"
    )]
    Gone {
        /// The line number in the whole input.
        line: u64,
        /// What its record is for.
        was: Fingerprint,
    },
    /// A block of lines differs, and which line could not be told.
    #[error("{}", .0.message())]
    Block(Mismatch),
}

/// Why the input stream stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Reading the input failed (the run stopped early).
    #[error(transparent)]
    Read(#[from] SourceError),
    /// The input does not match the records being resumed: nothing of it
    /// was sent (a usage error).
    #[error(transparent)]
    Changed(Box<Changed>),
}

impl From<Changed> for JobError {
    fn from(changed: Changed) -> JobError {
        JobError::Changed(Box::new(changed))
    }
}

impl InputError {
    /// The input does not match the records being resumed (rather than a
    /// read failure).
    pub fn changed_input(&self) -> bool {
        matches!(self, InputError::Changed(_))
    }
}

/// An error and its chain of causes on one line (`error: cause: cause`),
/// for front ends that show errors as text.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// An earlier output read back for `--resume`, checked against the inputs.
pub struct Resumed {
    recorded: Recorded,
    /// The inputs are regular files and were checked up front; otherwise
    /// they are checked as they stream.
    checked: bool,
}

impl Resumed {
    /// Once every check has passed: cuts a torn last line and, under
    /// `--retry-failed`, rewrites the output without its failed records.
    /// Returns the bytes cut.
    ///
    /// # Errors
    /// The torn tail cannot be cut, or the output cannot be rewritten.
    pub fn commit(&mut self) -> Result<u64, JobError> {
        self.recorded.commit()?;
        Ok(self.recorded.repaired_bytes)
    }

    /// The earlier records' counts, for a summary of the whole output.
    pub fn tally(&self) -> Tally {
        self.recorded.tally.clone()
    }
}

/// What `--resume` reads back: the output, and `--errors-output` if given.
pub struct ResumeFiles<'a> {
    /// `-o FILE`.
    pub output: &'a Path,
    /// `--errors-output FILE`.
    pub errors_output: Option<&'a Path>,
    /// `--retry-failed`: failed records do not count, so they are sent again.
    pub retry_failed: bool,
    /// The format this run writes (resuming into another is refused).
    pub format: OutputFormat,
    /// This run's shard: an output holding another shard's records is
    /// refused, since resuming it would add this shard's lines to theirs.
    pub shard: Option<Shard>,
}

/// Reads an earlier output back and checks it against the inputs, before
/// anything is sent or changed on disk ([`Resumed::commit`] changes the
/// file, once the caller's other checks have passed too).
///
/// # Errors
/// An output that cannot be read back, holds another format, or does not
/// match the inputs.
pub async fn scan_resume(
    files: &ResumeFiles<'_>,
    inputs: &[PathBuf],
    opts: &ParseOptions,
) -> Result<Resumed, JobError> {
    let mut paths = vec![files.output];
    paths.extend(files.errors_output);
    for file in &paths {
        if !outputs::is_regular_or_new(file) {
            return Err(JobError::NotReadBack {
                path: file.to_path_buf(),
                kind: outputs::kind_of(file),
            });
        }
    }
    let recorded = Recorded::scan_all(&paths, files.retry_failed, &opts.redactor)?;
    if let Some(shard) = files.shard
        && let Some(line) = recorded.first_line(|line| !shard.owns(line))
    {
        return Err(JobError::OtherShard {
            path: files.output.to_path_buf(),
            line,
            shard,
        });
    }
    if let Some(found) = recorded.format.filter(|f| *f != files.format) {
        return Err(JobError::FormatMismatch {
            path: files.output.to_path_buf(),
            found,
            wanted: files.format,
        });
    }
    let checked = check_inputs_match(inputs, opts.clone(), &recorded).await?;
    if recorded.removed > 0 && !checked {
        return Err(JobError::RewriteNeedsFiles);
    }
    Ok(Resumed { recorded, checked })
}

/// Where a run's records go and how the file is opened.
pub struct SinkOptions<'a> {
    /// `-o FILE`; `None` or `-` is standard output.
    pub output: Option<&'a Path>,
    /// `--errors-output FILE`.
    pub errors_output: Option<&'a Path>,
    /// Append to the output (`--resume`).
    pub resume: bool,
    /// Replace a non-empty output (`--overwrite`).
    pub overwrite: bool,
    /// `--fsync`.
    pub fsync: bool,
    /// `--output-format`.
    pub format: OutputFormat,
}

/// Opens the output (and the errors output) as the options say.
///
/// # Errors
/// An output that cannot be opened as the options say.
pub fn open_sink(o: &SinkOptions<'_>) -> Result<Sink, JobError> {
    let Some(path) = o.output.filter(|p| *p != Path::new("-")) else {
        if o.resume {
            return Err(JobError::ResumeOnStdout);
        }
        return Ok(Sink::stdout().with_format(o.format));
    };
    let mode = if o.resume {
        OpenMode::Append
    } else if o.overwrite {
        OpenMode::Overwrite
    } else {
        OpenMode::Fresh
    };
    let open = |p: &Path| {
        Sink::open(p, mode, o.fsync)
            .map(|s| s.with_format(o.format))
            .map_err(JobError::from)
    };
    let sink = open(path)?;
    Ok(match o.errors_output {
        Some(errors) => sink.with_errors(open(errors)?),
        None => sink,
    })
}

/// Before a resumed run sends anything, every recorded line must still be a
/// request line with the same id in the inputs. Only regular files can be
/// read twice; pipes and standard input are checked as they stream
/// (returns false then).
async fn check_inputs_match(
    inputs: &[PathBuf],
    opts: ParseOptions,
    recorded: &Recorded,
) -> Result<bool, JobError> {
    let regular = |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    if inputs.is_empty() || !inputs.iter().all(regular) {
        return Ok(false);
    }
    let mut check = recorded.check();
    let mut stream = Box::pin(Source::open(inputs, opts.clone())?.into_stream());
    while let Some(item) = stream.next().await {
        let item = item?;
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
) -> JobError {
    let mut ids = match recorded.block_ids(mismatch.block) {
        Ok(ids) => ids,
        Err(e) => return e.into(),
    };
    if let Ok(source) = Source::open(inputs, opts) {
        let mut stream = Box::pin(source.into_stream());
        while let Some(Ok(item)) = stream.next().await {
            if let Some(changed) = differs(recorded, &mut ids, &item) {
                return changed.into();
            }
        }
    }
    unmatched(&ids, mismatch).into()
}

const CHANGED_ADVICE: &str = "the input changed since the output was written; resume with the same inputs, or start a new output";

/// Compares an input line with its record (taken out of `ids`, the records
/// of a block that did not match): the change, when they differ.
fn differs(
    recorded: &Recorded,
    ids: &mut BTreeMap<u64, Fingerprint>,
    item: &Input,
) -> Option<Changed> {
    let line = item.line();
    let was = ids.remove(&line)?;
    let now = recorded.fingerprint(item);
    (now != was).then_some(Changed::Differs { line, now, was })
}

/// Once every input line of a mismatched block matched its record: the
/// first record left has no request line any more (else the whole block).
fn unmatched(ids: &BTreeMap<u64, Fingerprint>, mismatch: Mismatch) -> Changed {
    match ids.first_key_value() {
        Some((&line, was)) => Changed::Gone {
            line,
            was: was.clone(),
        },
        None => Changed::Block(mismatch),
    }
}

/// A block of a streamed input that did not match: the lines of that
/// block are still held back, so the first one that differs can be named as
/// for input files (its records are read again from the output).
fn streamed_mismatch(recorded: &Recorded, mismatch: Mismatch, held: &[Input]) -> Changed {
    let Ok(mut ids) = recorded.block_ids(mismatch.block) else {
        return Changed::Block(mismatch);
    };
    for item in held.iter().filter(|i| i.line() / BLOCK == mismatch.block) {
        if let Some(changed) = differs(recorded, &mut ids, item) {
            return changed;
        }
    }
    unmatched(&ids, mismatch)
}

/// The input of a run: under `--resume`, lines with a record become
/// [`Input::Recorded`]. Inputs not checked up front (standard input, pipes)
/// are checked as they stream: the lines of a block that holds records are
/// held back until the block is known to match, so a changed input stops the
/// run (with [`InputError::Changed`]) before any of its lines
/// is sent.
pub fn input_stream(
    source: Source,
    resumed: Option<Resumed>,
) -> BoxStream<'static, Result<Input, InputError>> {
    let items = source.into_stream();
    match resumed {
        None => items.map(|i| i.map_err(InputError::Read)).boxed(),
        Some(Resumed {
            recorded,
            checked: true,
        }) => items.map(move |i| Ok(recorded.filter(i?))).boxed(),
        Some(Resumed {
            recorded,
            checked: false,
        }) => held_back(items.boxed(), Arc::new(recorded)),
    }
}

/// State of [`held_back`].
struct Held {
    inner: BoxStream<'static, Result<Input, SourceError>>,
    recorded: Arc<Recorded>,
    position: (u64, u64),
    held: Vec<Input>,
    out: VecDeque<Result<Input, InputError>>,
    ended: bool,
}

impl Held {
    fn changed(&mut self, m: Mismatch) {
        let changed = streamed_mismatch(&self.recorded, m, &self.held);
        self.held.clear();
        self.out
            .push_back(Err(InputError::Changed(Box::new(changed))));
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
    inner: BoxStream<'static, Result<Input, SourceError>>,
    recorded: Arc<Recorded>,
) -> BoxStream<'static, Result<Input, InputError>> {
    let state = Held {
        inner,
        recorded,
        position: (0, 0),
        held: Vec::new(),
        out: VecDeque::new(),
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
                    st.out.push_back(Err(InputError::Read(e)));
                    st.ended = true;
                }
                None => st.end(),
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine names files and lines; which option is meant is the
    /// front end's to say (the CLI's `--resume`, Python's `resume=True`).
    #[test]
    fn messages_name_no_option() {
        let path = PathBuf::from("out.jsonl");
        let errors = [
            JobError::NotReadBack {
                path: path.clone(),
                kind: "a FIFO (named pipe)",
            },
            JobError::FormatMismatch {
                path: path.clone(),
                found: OutputFormat::OpenAiBatch,
                wanted: OutputFormat::Sluice,
            },
            JobError::RewriteNeedsFiles,
            JobError::ResumeOnStdout,
            Changed::Block(Mismatch { block: 0 }).into(),
            JobError::Output(outputs::OutputError::Exists {
                option: "output",
                path,
                len: 10,
            }),
        ];
        for e in errors {
            let message = e.to_string();
            assert!(!message.contains("--"), "{message}");
        }
    }
}
