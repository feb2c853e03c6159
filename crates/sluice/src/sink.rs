//! Crash-safe output: records are appended as whole lines to a bounded
//! buffer that is written out when full and on a short timer, so a `kill -9`
//! loses at most the last moment and can tear at most the last line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::format::OutputFormat;
use crate::record::Record;

/// Buffered bytes that trigger a write without waiting for the timer.
const BUFFER_LIMIT: usize = 64 * 1024;

/// Where records go.
enum Target {
    File(File),
    Stdout(io::Stdout),
}

/// Writes records as JSON lines.
pub struct Sink {
    target: Target,
    path: Option<PathBuf>,
    buf: Vec<u8>,
    buffered_lines: u64,
    written_lines: u64,
    fsync: bool,
    last_sync: Instant,
    dirty_since_sync: bool,
    format: OutputFormat,
    /// Where failures go instead (`--errors-output`), written in step with
    /// this sink.
    errors: Option<Box<Sink>>,
}

/// How to open the output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Refuse a non-empty regular file.
    Fresh,
    /// Truncate whatever is there.
    Overwrite,
    /// Append after existing records.
    Append,
}

/// The output could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Under [`OpenMode::Fresh`], `path` is a non-empty regular file.
    #[error("{} already holds results", path.display())]
    HoldsResults {
        /// The output.
        path: PathBuf,
    },
    /// The operating system refused to open `path` for writing.
    #[error("cannot write the output {}", path.display())]
    Open {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Sink {
    /// Opens `path` for records, before anything is sent, so a bad path
    /// fails fast.
    ///
    /// # Errors
    ///
    /// When `path` cannot be opened for writing, or already holds results and `mode` is [`OpenMode::Fresh`] ([`OpenError`]).
    pub fn open(path: &Path, mode: OpenMode, fsync: bool) -> Result<Sink, OpenError> {
        if mode == OpenMode::Fresh && is_non_empty_file(path) {
            return Err(OpenError::HoldsResults {
                path: path.to_path_buf(),
            });
        }
        let mut options = OpenOptions::new();
        options.create(true);
        match mode {
            OpenMode::Append => options.append(true),
            // Fresh may still be an empty file, a FIFO or /dev/null: never truncate those oddly.
            OpenMode::Fresh => options.write(true),
            OpenMode::Overwrite => options.write(true).truncate(true),
        };
        let file = options.open(path).map_err(|source| OpenError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Sink::with_target(
            Target::File(file),
            Some(path.to_path_buf()),
            fsync,
        ))
    }

    /// Records to standard output.
    pub fn stdout() -> Sink {
        Sink::with_target(Target::Stdout(io::stdout()), None, false)
    }

    fn with_target(target: Target, path: Option<PathBuf>, fsync: bool) -> Sink {
        Sink {
            target,
            path,
            buf: Vec::with_capacity(BUFFER_LIMIT),
            buffered_lines: 0,
            written_lines: 0,
            fsync,
            last_sync: Instant::now(),
            dirty_since_sync: false,
            format: OutputFormat::Sluice,
            errors: None,
        }
    }

    /// Writes records in `format` (default: sluice's own record).
    pub fn with_format(mut self, format: OutputFormat) -> Sink {
        self.format = format;
        self
    }

    /// Sends the lines that are failures in this sink's format to `errors`
    /// instead (as the OpenAI Batch API splits output and error files).
    /// Both are flushed together.
    pub fn with_errors(mut self, errors: Sink) -> Sink {
        self.errors = Some(Box::new(errors));
        self
    }

    /// The output's name for messages.
    pub fn name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "stdout".to_string(), |p| p.display().to_string())
    }

    /// Queues one record; writes the buffer out when it is full.
    ///
    /// # Errors
    ///
    /// When writing out a full buffer fails.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        let failure = self.format.is_failure(record);
        let format = self.format;
        let target = match &mut self.errors {
            Some(errors) if failure => errors.as_mut(),
            _ => &mut *self,
        };
        // Written straight into the buffer: no line of its own per record.
        format.write_line(record, &mut target.buf);
        target.buffered_lines += 1;
        let full = target.buf.len() >= BUFFER_LIMIT;
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands buffered lines to the operating system (call at least once a
    /// second); under `--fsync`, also syncs to disk at most once a second.
    ///
    /// # Errors
    ///
    /// When writing or syncing fails.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(errors) = &mut self.errors {
            errors.flush()?;
        }
        if !self.buf.is_empty() {
            let (written, result) = match &mut self.target {
                Target::File(f) => write_counted(f, &self.buf),
                Target::Stdout(s) => {
                    let mut lock = s.lock();
                    let (n, r) = write_counted(&mut lock, &self.buf);
                    (n, r.and_then(|_| lock.flush()))
                }
            };
            // Whole lines that made it count even when a later write failed
            // (counted only then: records are a few KiB each).
            self.written_lines += if written == self.buf.len() {
                self.buffered_lines
            } else {
                self.buf[..written].iter().filter(|&&b| b == b'\n').count() as u64
            };
            self.buf.clear();
            self.buffered_lines = 0;
            result?;
            self.dirty_since_sync = true;
        }
        if self.fsync && self.dirty_since_sync && self.last_sync.elapsed() >= Duration::from_secs(1)
        {
            self.sync()?;
        }
        Ok(())
    }

    /// Records handed to the operating system so far (a failed write's
    /// records are not counted: they may be lost).
    pub fn lines_written(&self) -> u64 {
        self.written_lines + self.errors.as_ref().map_or(0, |e| e.lines_written())
    }

    /// Writes everything and, under `--fsync`, syncs it; for the end of a run.
    ///
    /// # Errors
    ///
    /// When writing or syncing fails.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(errors) = &mut self.errors {
            errors.finish()?;
        }
        self.flush()?;
        if self.fsync && self.dirty_since_sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Target::File(f) = &self.target {
            f.sync_data()?;
        }
        self.last_sync = Instant::now();
        self.dirty_since_sync = false;
        Ok(())
    }
}

/// `write_all` that also says how many bytes were written before a failure.
fn write_counted(out: &mut impl Write, buf: &[u8]) -> (usize, io::Result<()>) {
    let mut done = 0;
    while done < buf.len() {
        match out.write(&buf[done..]) {
            Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

/// True for a regular file with content (FIFOs and devices are never "results").
pub fn is_non_empty_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}
