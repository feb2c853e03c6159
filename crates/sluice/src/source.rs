//! The input stream: files (or standard input) read lazily, line by line,
//! and parsed into [`Input`] items (the format is in `docs/input.md`).
//!
//! Every input is opened up front, so a missing file fails before anything is
//! sent. Reading then holds at most one line plus a fixed-size buffer: a line
//! longer than the limit is skipped without being stored and becomes an
//! `invalid_request` item. Line numbers run on across files.

use std::io;
use std::path::{Path, PathBuf};

use futures::Stream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use crate::parse::{BOM, LineOrigin, ParseOptions, UrlCache, line_too_long, parse_line_cached};
use crate::request::Input;
use crate::shard::Shard;

/// Bytes read from an input at a time.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// After a line this large, the line buffer is given back to the allocator.
const KEEP_LINE_BUFFER_BYTES: usize = 1024 * 1024;

/// Why the input could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An input file could not be opened (missing, no permission, ...).
    #[error(
        "cannot open input `{}` (check the path and its permissions)",
        show_path(path)
    )]
    Open {
        /// The path as given.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A directory was given where a file was expected.
    #[error("input `{}` is a directory: give the files in it instead", path.display())]
    IsDirectory {
        /// The path as given.
        path: PathBuf,
    },
    /// Standard input (`-`) was given more than once.
    #[error("standard input (`-`) is given more than once: give `-` at most once")]
    StdinTwice,
    /// Reading failed part-way; the stream ends after this error.
    #[error("cannot read input `{}` after its line {file_line}", show_path(path))]
    Read {
        /// The path as given (`-` for standard input).
        path: PathBuf,
        /// The last line of that file read in full.
        file_line: u64,
        /// What the operating system said.
        source: io::Error,
    },
}

fn show_path(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".into()
    } else {
        path.display().to_string()
    }
}

/// The inputs of a run, opened and ready to be read in order.
#[derive(Debug)]
pub struct Source {
    inputs: Vec<Opened>,
    opts: ParseOptions,
}

/// One opened input.
#[derive(Debug)]
struct Opened {
    path: PathBuf,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A file, or a duplicate of the standard input descriptor.
    File(std::fs::File),
    #[cfg(test)]
    Reader(tests::Debuggable),
}

impl Opened {
    fn reader(self) -> BufReader<Box<dyn AsyncRead + Send + Unpin>> {
        let read: Box<dyn AsyncRead + Send + Unpin> = match self.kind {
            Kind::File(file) => Box::new(tokio::fs::File::from_std(file)),
            #[cfg(test)]
            Kind::Reader(reader) => reader.0,
        };
        BufReader::with_capacity(READ_BUFFER_BYTES, read)
    }
}

impl Source {
    /// Opens every input up front, so that a missing or unreadable file (or a
    /// directory) fails before anything is sent.
    ///
    /// `-` is standard input and may be given at most once; empty `paths`
    /// means standard input. Nothing is read until the stream is polled.
    ///
    /// ```
    /// use sluice::source::{Source, SourceError};
    /// let missing = Source::open(&["no/such/file.jsonl".into()], Default::default());
    /// assert!(matches!(missing, Err(SourceError::Open { .. })));
    /// ```
    ///
    /// # Errors
    ///
    /// When an input cannot be opened, or `-` is given twice ([`SourceError`]).
    pub fn open(paths: &[PathBuf], opts: ParseOptions) -> Result<Source, SourceError> {
        let stdin = [PathBuf::from("-")];
        let paths = if paths.is_empty() { &stdin[..] } else { paths };
        let mut seen_stdin = false;
        let inputs = paths
            .iter()
            .map(|path| open_one(path, &mut seen_stdin))
            .collect::<Result<_, _>>()?;
        Ok(Source { inputs, opts })
    }

    /// The stream of parsed items, in input order, read lazily.
    ///
    /// Line numbers run on across files: each file's last line ends at its
    /// end, newline or not; skipped (blank and `#`) lines use numbers too. A
    /// UTF-8 BOM at the start of each file is skipped. A line longer than
    /// `max_line_bytes` yields an [`Input::Invalid`] without being buffered.
    /// A read error yields one `Err(SourceError::Read)` and ends the stream.
    /// Dropping the stream closes the inputs.
    pub fn into_stream(self) -> impl Stream<Item = Result<Input, SourceError>> + Send + 'static {
        let reading = Reading {
            pending: self.inputs.into_iter(),
            current: None,
            line: 0,
            buf: Vec::new(),
            opts: self.opts,
            urls: UrlCache::default(),
            done: false,
        };
        // Boxed: the unfold moves its state into each read and back out,
        // which for a pointer is nothing.
        futures::stream::unfold(Box::new(reading), |mut reading| async move {
            let item = reading.next_item().await?;
            Some((item, reading))
        })
    }
}

/// How many request lines `paths` hold, counted the way the stream reads
/// them (blank and `#` lines skipped, a UTF-8 BOM ignored, a last line
/// without a newline counted), so a progress display can show a fixed total
/// and a summary an exact remainder.
///
/// Reads at disk speed in fixed-size chunks without holding lines. `None`
/// when an input is not a regular file (standard input, a pipe): those can
/// be read only once. Blocking: call it off the async runtime.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("sluice-count-doc-{}", std::process::id()));
/// std::fs::write(&dir, "# urls\nhttp://a/\n\n  http://b/").unwrap();
/// assert_eq!(sluice::source::count_request_lines(&[dir.clone()]), Some(2));
/// # std::fs::remove_file(&dir).unwrap();
/// ```
pub fn count_request_lines(paths: &[PathBuf]) -> Option<u64> {
    count_shard_lines(paths, None)
}

/// [`count_request_lines`] of the lines one [`Shard`] owns (all of them
/// with `None`).
pub fn count_shard_lines(paths: &[PathBuf], shard: Option<Shard>) -> Option<u64> {
    if paths.is_empty() {
        return None;
    }
    let mut lines = LineCounter {
        shard,
        ..LineCounter::default()
    };
    for path in paths {
        if path == Path::new("-") {
            return None;
        }
        // stat before open: opening a FIFO could block, or take its data.
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        lines = count_in(std::fs::File::open(path).ok()?, lines).ok()?;
    }
    Some(lines.count)
}

/// Counts the request lines of one more reader (see [`count_request_lines`]).
fn count_in(mut reader: impl io::Read, mut lines: LineCounter) -> io::Result<LineCounter> {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                lines.finish();
                return Ok(lines);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines.feed(&buf[..n]);
    }
}

/// Counts request lines from chunks: only the start of each line is looked
/// at (its first byte that is not whitespace or part of a BOM).
#[derive(Default)]
struct LineCounter {
    count: u64,
    /// Lines ended so far, across files: the last line's number.
    line: u64,
    /// Only the lines this shard owns count.
    shard: Option<Shard>,
    /// Bytes of a BOM matched at the start of the current line.
    bom: usize,
    /// The current line's first significant byte, once seen.
    first: Option<u8>,
    /// The current line has any byte.
    started: bool,
}

impl LineCounter {
    fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.first.is_some() {
                // The line's kind is known: skip to its end.
                match memchr::memchr(b'\n', chunk) {
                    Some(i) => {
                        self.end_line();
                        chunk = &chunk[i + 1..];
                    }
                    None => return,
                }
                continue;
            }
            let b = chunk[0];
            chunk = &chunk[1..];
            if b == b'\n' {
                self.end_line();
                continue;
            }
            self.started = true;
            if self.bom < BOM.len() && b == BOM[self.bom] {
                self.bom += 1;
                continue;
            }
            if self.bom > 0 && self.bom < BOM.len() {
                // Part of a BOM, then something else: the line has content.
                self.first = Some(BOM[0]);
            } else if !b.is_ascii_whitespace() {
                self.first = Some(b);
            }
            self.bom = BOM.len();
        }
    }

    fn end_line(&mut self) {
        self.line += 1;
        let partial_bom = self.bom > 0 && self.bom < BOM.len();
        let owned = self.shard.is_none_or(|s| s.owns(self.line));
        if owned && (partial_bom || self.first.is_some_and(|b| b != b'#')) {
            self.count += 1;
        }
        *self = LineCounter {
            count: self.count,
            line: self.line,
            shard: self.shard,
            ..LineCounter::default()
        };
    }

    /// Ends the reader's last line (one without a newline counts too).
    fn finish(&mut self) {
        if self.started {
            self.end_line();
        }
    }
}

fn open_one(path: &Path, seen_stdin: &mut bool) -> Result<Opened, SourceError> {
    if path == Path::new("-") {
        if std::mem::replace(seen_stdin, true) {
            return Err(SourceError::StdinTwice);
        }
        let stdin = dup_stdin().map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(Opened {
            path: path.to_path_buf(),
            kind: Kind::File(stdin),
        });
    }
    let open_error = |source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open_error)?;
    if file.metadata().map_err(open_error)?.is_dir() {
        return Err(SourceError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(Opened {
        path: path.to_path_buf(),
        kind: Kind::File(file),
    })
}

/// Standard input as a file, read through tokio's blocking pool like any
/// other input. Duplicating the descriptor fails early when stdin is closed.
#[cfg(unix)]
fn dup_stdin() -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        io::stdin().as_fd().try_clone_to_owned()?,
    ))
}

/// Standard input as a file, read through tokio's blocking pool like any
/// other input.
#[cfg(windows)]
fn dup_stdin() -> io::Result<std::fs::File> {
    use std::os::windows::io::AsHandle;
    Ok(std::fs::File::from(
        io::stdin().as_handle().try_clone_to_owned()?,
    ))
}

/// The file being read.
struct Current {
    path: PathBuf,
    /// The path as shown in messages.
    name: String,
    reader: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    /// Lines of this file read so far.
    file_line: u64,
}

/// The state of the stream between items.
struct Reading {
    pending: std::vec::IntoIter<Opened>,
    current: Option<Current>,
    /// Lines read so far across all files.
    line: u64,
    /// The line being read; at most `max_line_bytes` long.
    buf: Vec<u8>,
    opts: ParseOptions,
    /// The last origin's URL, so lines to it parse only their paths.
    urls: UrlCache,
    /// Set after a read error: the stream ends.
    done: bool,
}

impl Reading {
    /// The next item, or `None` at the end of the last input (or after an
    /// error).
    async fn next_item(&mut self) -> Option<Result<Input, SourceError>> {
        while !self.done {
            if self.current.is_none() && !self.open_next() {
                self.done = true;
                break;
            }
            let current = self.current.as_mut().expect("an input was opened above");
            let max = self.opts.max_line_bytes;
            match read_line(&mut current.reader, &mut self.buf, max).await {
                Ok(Read::Eof) => self.current = None,
                Ok(read) => {
                    if let Some(input) = self.take_line(read) {
                        return Some(Ok(input));
                    }
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(self.read_error(source)));
                }
            }
        }
        None
    }

    /// Starts reading the next input; false when there is none.
    fn open_next(&mut self) -> bool {
        let Some(opened) = self.pending.next() else {
            return false;
        };
        self.current = Some(Current {
            name: opened.path.to_string_lossy().into_owned(),
            path: opened.path.clone(),
            reader: opened.reader(),
            file_line: 0,
        });
        true
    }

    /// Numbers the line just read and parses it; `None` for skipped lines.
    fn take_line(&mut self, read: Read) -> Option<Input> {
        let current = self
            .current
            .as_mut()
            .expect("a line was read from the current input");
        self.line += 1;
        current.file_line += 1;
        let origin = LineOrigin {
            file: &current.name,
            file_line: current.file_line,
        };
        let input = match read {
            Read::Line => {
                if current.file_line == 1 && self.buf.starts_with(BOM) {
                    self.buf.drain(..BOM.len());
                }
                parse_line_cached(&self.buf, self.line, &origin, &self.opts, &self.urls)
            }
            Read::TooLong { len } => Some(Input::from(line_too_long(
                self.line,
                &origin,
                self.opts.max_line_bytes,
                len,
            ))),
            Read::LongComment | Read::Eof => None,
        };
        if self.buf.capacity() > KEEP_LINE_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        input
    }

    fn read_error(&self, source: io::Error) -> SourceError {
        let (path, file_line) = self
            .current
            .as_ref()
            .map_or((PathBuf::new(), 0), |c| (c.path.clone(), c.file_line));
        SourceError::Read {
            path,
            file_line,
            source,
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq)]
enum Read {
    /// The end of the input; no more lines.
    Eof,
    /// A line, now in the buffer (without its `\n`).
    Line,
    /// A line longer than the limit, skipped; `len` is its length in bytes.
    TooLong { len: u64 },
    /// A line longer than the limit that starts with `#`: skipped silently.
    LongComment,
}

/// Reads one line into `buf` (cleared first), without its `\n`.
///
/// A line longer than `max` bytes is read to its end but not stored, so
/// memory does not grow with the line.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Read> {
    buf.clear();
    let mut len: u64 = 0;
    let mut seen = false;
    // Once over the limit: whether the line is a `#` comment.
    let mut skipping: Option<bool> = None;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if seen {
                ended(skipping, len)
            } else {
                Read::Eof
            });
        }
        seen = true;
        let newline = memchr::memchr(b'\n', chunk);
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        len += part.len() as u64;
        if skipping.is_none() {
            if buf.len() + part.len() > max {
                skipping = Some(starts_with_comment(buf, part));
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(ended(skipping, len));
        }
    }
}

/// The outcome of a line that has ended, `len` bytes long.
fn ended(skipping: Option<bool>, len: u64) -> Read {
    match skipping {
        None => Read::Line,
        Some(true) => Read::LongComment,
        Some(false) => Read::TooLong { len },
    }
}

/// True when the line that begins with `head` then `tail` is a `#` comment.
fn starts_with_comment(head: &[u8], tail: &[u8]) -> bool {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    head.iter()
        .chain(tail)
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'#')
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::{Context, Poll};

    use futures::StreamExt;
    use tokio::io::ReadBuf;

    use super::*;
    use crate::record::Id;

    /// A test reader inside a [`Kind`], which must be `Debug`.
    pub(super) struct Debuggable(pub(super) Box<dyn AsyncRead + Send + Unpin>);

    impl fmt::Debug for Debuggable {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Debuggable")
        }
    }

    /// Gives `data`, `chunk` bytes at a time, then fails.
    struct FailingReader {
        data: Vec<u8>,
        chunk: usize,
    }

    impl AsyncRead for FailingReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.data.is_empty() {
                return Poll::Ready(Err(io::Error::other("disk on fire")));
            }
            let n = self.chunk.min(self.data.len()).min(buf.remaining());
            buf.put_slice(&self.data[..n]);
            self.data.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "sluice-source-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&dir).expect("temp dir can be created");
            TempDir(dir)
        }

        fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("temp file can be written");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opts(max_line_bytes: usize) -> ParseOptions {
        ParseOptions {
            max_line_bytes,
            ..ParseOptions::default()
        }
    }

    async fn collect(source: Source) -> Vec<Result<Input, SourceError>> {
        source.into_stream().collect().await
    }

    /// `(line, url or message)` of each item.
    fn summary(items: &[Result<Input, SourceError>]) -> Vec<(u64, String)> {
        items
            .iter()
            .map(|item| match item {
                Ok(Input::Request(r)) => (r.line, r.url.to_string()),
                Ok(Input::Invalid(i)) => (i.line, i.message.clone()),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => match std::error::Error::source(e) {
                    Some(cause) => (0, format!("{e}: {cause}")),
                    None => (0, e.to_string()),
                },
            })
            .collect()
    }

    #[tokio::test]
    async fn line_numbers_run_on_across_files() {
        let dir = TempDir::new();
        let a = dir.file(
            "a.txt",
            b"\xEF\xBB\xBFhttp://h/1\r\n\r\n# comment\r\n  http://h/4  \r\n",
        );
        let b = dir.file(
            "b.jsonl",
            b"{\"url\": \"http://h/5\"}\n\n{\"id\": \"x\", \"url\": \"http://h/7\"}",
        );
        let empty = dir.file("empty.txt", b"");
        let c = dir.file("c.txt", b"\xEF\xBB\xBFhttp://h/8\nftp://h/9\n");
        let source = Source::open(&[a, empty, b, c.clone()], opts(1024)).expect("opens");
        let items = collect(source).await;
        let c_name = c.display().to_string();
        assert_eq!(
            summary(&items),
            [
                (1, "http://h/1".to_string()),
                (4, "http://h/4".into()),
                (5, "http://h/5".into()),
                (7, "http://h/7".into()),
                (8, "http://h/8".into()),
                (
                    9,
                    format!(
                        "{c_name}:2: unsupported scheme `ftp`: only http and https (write the URL with http:// or https://)"
                    )
                ),
            ]
        );
        match &items[3] {
            Ok(Input::Request(r)) => assert_eq!(r.id, Id::text("x")),
            other => panic!("{other:?}"),
        }
        match &items[1] {
            Ok(Input::Request(r)) => assert_eq!(r.id, Id::line(4)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn long_lines_are_skipped_without_buffering() {
        let dir = TempDir::new();
        let long = format!("http://h/{}", "a".repeat(5000));
        let comment = format!("# {}", "c".repeat(5000));
        let text = format!("{long}\nhttp://h/ok\n{comment}\n{long}");
        let path = dir.file("long.txt", text.as_bytes());
        let items =
            collect(Source::open(std::slice::from_ref(&path), opts(64)).expect("opens")).await;
        let name = path.display().to_string();
        assert_eq!(
            summary(&items),
            [
                (
                    1,
                    format!(
                        "{name}:1: line is longer than the 64 bytes limit (5009 bytes); it was skipped"
                    )
                ),
                (2, "http://h/ok".to_string()),
                (
                    4,
                    format!(
                        "{name}:4: line is longer than the 64 bytes limit (5009 bytes); it was skipped"
                    )
                ),
            ]
        );
        match &items[0] {
            Ok(Input::Invalid(i)) => assert_eq!((i.id.as_ref(), i.url.as_ref()), (None, None)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn read_line_memory_does_not_grow_with_the_line() {
        let mut data = vec![b'x'; 10 * 1024 * 1024];
        data.extend_from_slice(b"\nshort\n");
        let mut reader = BufReader::with_capacity(4096, &data[..]);
        let mut buf = Vec::new();
        let first = read_line(&mut reader, &mut buf, 1024).await.expect("reads");
        assert_eq!(
            first,
            Read::TooLong {
                len: 10 * 1024 * 1024
            }
        );
        assert!(buf.capacity() <= 4096, "buffer grew to {}", buf.capacity());
        assert_eq!(
            read_line(&mut reader, &mut buf, 1024).await.expect("reads"),
            Read::Line
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line(&mut reader, &mut buf, 1024).await.expect("reads"),
            Read::Eof
        );
    }

    #[tokio::test]
    async fn read_line_edges() {
        let mut buf = Vec::new();
        let mut reader = BufReader::with_capacity(3, &b"ab\n\ncdefg"[..]);
        let mut lines = Vec::new();
        loop {
            match read_line(&mut reader, &mut buf, 5).await.expect("reads") {
                Read::Eof => break,
                read => lines.push((read, String::from_utf8_lossy(&buf).into_owned())),
            }
        }
        assert_eq!(
            lines,
            [
                (Read::Line, "ab".to_string()),
                (Read::Line, String::new()),
                (Read::Line, "cdefg".into()),
            ]
        );
        let mut reader = BufReader::with_capacity(2, &b"  #-long-comment\nabcdefgh"[..]);
        assert_eq!(
            read_line(&mut reader, &mut buf, 5).await.expect("reads"),
            Read::LongComment
        );
        assert_eq!(
            read_line(&mut reader, &mut buf, 5).await.expect("reads"),
            Read::TooLong { len: 8 }
        );
        assert_eq!(
            read_line(&mut reader, &mut buf, 5).await.expect("reads"),
            Read::Eof
        );
    }

    #[tokio::test]
    async fn invalid_utf8_lines_are_reported_and_later_lines_run() {
        let dir = TempDir::new();
        let path = dir.file(
            "bad.txt",
            b"http://h/\xff\n{\"url\": \"\xc3\x28\"}\nhttp://h/3\n",
        );
        let items = collect(Source::open(&[path], opts(1024)).expect("opens")).await;
        let got = summary(&items);
        assert_eq!(got.len(), 3);
        assert!(
            got[0].1.ends_with(
                ":1: line is not valid UTF-8 (bad byte at offset 9): save the input as UTF-8"
            ),
            "{}",
            got[0].1
        );
        assert!(
            got[1].1.contains(":2: line is not valid UTF-8"),
            "{}",
            got[1].1
        );
        assert_eq!(got[2], (3, "http://h/3".to_string()));
    }

    #[tokio::test]
    async fn a_read_error_is_reported_once_and_ends_the_stream() {
        let reader = FailingReader {
            data: b"http://h/1\nhttp://h/2\nhttp://h/".to_vec(),
            chunk: 4,
        };
        let dir = TempDir::new();
        let after = dir.file("after.txt", b"http://h/never\n");
        let mut source = Source::open(&[after], opts(1024)).expect("opens");
        source.inputs.insert(
            0,
            Opened {
                path: PathBuf::from("-"),
                kind: Kind::Reader(Debuggable(Box::new(reader))),
            },
        );
        let items = collect(source).await;
        assert_eq!(
            summary(&items),
            [
                (1, "http://h/1".to_string()),
                (2, "http://h/2".into()),
                (
                    0,
                    "cannot read input `stdin` after its line 2: disk on fire".into()
                ),
            ]
        );
    }

    #[test]
    fn open_errors() {
        let dir = TempDir::new();
        let missing = dir.0.join("missing.jsonl");
        let err =
            Source::open(std::slice::from_ref(&missing), opts(1024)).expect_err("missing file");
        assert!(matches!(&err, SourceError::Open { path, .. } if *path == missing));
        assert_eq!(
            err.to_string(),
            format!(
                "cannot open input `{}` (check the path and its permissions)",
                missing.display()
            )
        );
        let cause = std::error::Error::source(&err).and_then(|c| c.downcast_ref::<io::Error>());
        assert_eq!(cause.map(io::Error::kind), Some(io::ErrorKind::NotFound));

        let err = Source::open(std::slice::from_ref(&dir.0), opts(1024)).expect_err("directory");
        assert_eq!(
            err.to_string(),
            format!(
                "input `{}` is a directory: give the files in it instead",
                dir.0.display()
            )
        );

        // The good file before the bad one does not matter: nothing is read.
        let good = dir.file("good.txt", b"http://h/\n");
        assert!(Source::open(&[good.clone(), missing], opts(1024)).is_err());

        let dash = PathBuf::from("-");
        let err = Source::open(&[dash.clone(), good, dash], opts(1024)).expect_err("stdin twice");
        assert!(matches!(err, SourceError::StdinTwice));
    }

    #[test]
    fn stdin_is_the_default_input() {
        let source = Source::open(&[], opts(1024)).expect("stdin opens");
        assert_eq!(source.inputs.len(), 1);
        assert_eq!(source.inputs[0].path, PathBuf::from("-"));
    }

    #[tokio::test]
    async fn the_stream_is_lazy_and_can_be_dropped() {
        let dir = TempDir::new();
        let text: String = (1..=1000).map(|i| format!("http://h/{i}\n")).collect();
        let path = dir.file("many.txt", text.as_bytes());
        let mut stream = Box::pin(
            Source::open(&[path], opts(1024))
                .expect("opens")
                .into_stream(),
        );
        let first = stream.next().await.expect("an item").expect("no error");
        assert_eq!(first.line(), 1);
        drop(stream);
    }

    #[test]
    fn request_lines_are_counted_as_the_stream_reads_them() {
        let cases: &[(&[u8], u64)] = &[
            (b"", 0),
            (b"\n\n", 0),
            (b"a\nb\nc\n", 3),
            (b"a\nb\nc", 3),
            (b"  # comment\n\t\r\n  a \r\n", 1),
            (b"\xEF\xBB\xBF# comment\nx\n", 1),
            (b"\xEF\xBB\xBF\n", 0),
            (b"\xEF\xBBx\n", 1),
            (b"{\"url\": \"http://h/\"}\n#x\n   \n{bad\n", 2),
        ];
        for &(text, want) in cases {
            assert_eq!(
                count_in(text, LineCounter::default()).unwrap().count,
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
            // Any chunking gives the same count.
            let mut counter = LineCounter::default();
            for byte in text.chunks(1) {
                counter.feed(byte);
            }
            counter.finish();
            assert_eq!(counter.count, want);
        }
    }

    #[test]
    fn a_shard_counts_only_its_own_request_lines() {
        // Lines 1..=6: request, comment, request, blank, request, request.
        let dir = TempDir::new();
        let path = dir.file("in.txt", b"a\n#c\nb\n\nc\nd");
        let count =
            |k| count_shard_lines(std::slice::from_ref(&path), Some(Shard::new(k, 2).unwrap()));
        // Shard 0 owns lines 2, 4, 6 (one request: line 6); shard 1 owns 1, 3, 5.
        assert_eq!((count(0), count(1)), (Some(1), Some(3)));
        // Line numbers run on across files: the second copy starts at line 7.
        let both = [path.clone(), path.clone()];
        let shard = Some(Shard::new(0, 2).unwrap());
        assert_eq!(count_shard_lines(&both, shard), Some(2));
    }

    #[tokio::test]
    async fn the_count_matches_the_items_streamed() {
        let dir = TempDir::new();
        let text = b"\xEF\xBB\xBF# head\nhttp://a/\n\n{bad json\n  # c\nhttp://b/";
        let path = dir.file("in.txt", text);
        let items = collect(Source::open(std::slice::from_ref(&path), opts(1024)).unwrap()).await;
        assert_eq!(
            count_request_lines(&[path.clone(), path]),
            Some(2 * items.len() as u64)
        );
        assert_eq!(count_request_lines(&["-".into()]), None);
    }
}
