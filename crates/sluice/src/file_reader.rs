//! An input file read on tokio's blocking pool straight into the buffer
//! its lines are taken from ([`FileReader`]).
//!
//! tokio's own `File` reads into a buffer of its own and then copies what
//! it read into its reader's: a second pass over every input byte (256 KiB
//! a read, about a thousand instructions a 1 KiB request line by callgrind,
//! which counts the copy's `rep movsb` a byte at a time), and a second
//! buffer. Here the one buffer goes to the blocking thread and comes back
//! filled.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

/// A file (or a pipe, such as standard input) read a buffer at a time.
pub(crate) struct FileReader {
    state: State,
    /// The bytes of the last read not yet consumed: `buf[pos..filled]`.
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
}

enum State {
    /// No read under way: the file is here (`None` only after a read's
    /// task was lost, which leaves nothing to read).
    Idle(Option<std::fs::File>),
    /// A read under way on the blocking pool, which has the file and the
    /// buffer until it is done.
    Reading(JoinHandle<Done>),
}

/// What a read gives back: the file, the buffer, and how many bytes of it
/// were read.
type Done = (std::fs::File, Box<[u8]>, io::Result<usize>);

impl FileReader {
    /// Reads `file` `capacity` bytes at a time (the buffer is allocated,
    /// zeroed, once).
    pub(crate) fn new(file: std::fs::File, capacity: usize) -> FileReader {
        FileReader {
            state: State::Idle(Some(file)),
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            pos: 0,
            filled: 0,
        }
    }
}

impl AsyncBufRead for FileReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let me = self.get_mut();
        if me.pos < me.filled {
            return Poll::Ready(Ok(&me.buf[me.pos..me.filled]));
        }
        loop {
            match &mut me.state {
                State::Idle(file) => {
                    let Some(mut file) = file.take() else {
                        return Poll::Ready(Ok(&[]));
                    };
                    let mut buf = std::mem::take(&mut me.buf);
                    me.state = State::Reading(tokio::task::spawn_blocking(move || {
                        let read = file.read(&mut buf);
                        (file, buf, read)
                    }));
                }
                State::Reading(task) => {
                    let done = ready!(Pin::new(task).poll(cx));
                    let (file, buf, read) = match done {
                        Ok(done) => done,
                        Err(lost) => {
                            me.state = State::Idle(None);
                            return Poll::Ready(Err(io::Error::other(lost)));
                        }
                    };
                    me.state = State::Idle(Some(file));
                    me.buf = buf;
                    me.pos = 0;
                    // What was read is handed over now, even when it is
                    // nothing: the end of the input, told once (the next
                    // call reads again).
                    me.filled = read?;
                    return Poll::Ready(Ok(&me.buf[..me.filled]));
                }
            }
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let me = self.get_mut();
        me.pos = (me.pos + amount).min(me.filled);
    }
}

impl AsyncRead for FileReader {
    /// What [`AsyncBufRead`] gives, copied (tokio asks every buffered
    /// reader to be one; lines are taken through the buffer, with no copy).
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};

    use super::*;

    fn file_with(name: &str, contents: &[u8]) -> (std::path::PathBuf, std::fs::File) {
        let path = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        std::fs::write(&path, contents).expect("temp file can be written");
        let file = std::fs::File::open(&path).expect("temp file can be opened");
        (path, file)
    }

    #[tokio::test]
    async fn gives_every_byte_once_across_reads_then_the_end() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (path, file) = file_with("file-reader-bytes", &data);
        // A buffer smaller than the file, not dividing it: several reads,
        // the last one short.
        let mut reader = FileReader::new(file, 1_000 - 7);
        let mut seen = Vec::new();
        loop {
            let chunk = reader.fill_buf().await.expect("reads");
            if chunk.is_empty() {
                break;
            }
            // Consumed in two parts, so a read is not started before the
            // buffer is used up.
            let half = chunk.len() / 2;
            seen.extend_from_slice(&chunk[..half]);
            reader.consume(half);
            let rest = reader.fill_buf().await.expect("reads").to_vec();
            seen.extend_from_slice(&rest);
            reader.consume(rest.len());
        }
        assert_eq!(seen, data);
        assert_eq!(reader.fill_buf().await.expect("reads"), b"");
        let mut again = Vec::new();
        let mut reader = FileReader::new(std::fs::File::open(&path).expect("opens"), 64);
        reader.read_to_end(&mut again).await.expect("reads");
        assert_eq!(again, data);
        std::fs::remove_file(path).ok();
    }

    #[tokio::test]
    async fn a_failed_read_is_an_error() {
        // Reading a directory fails (EISDIR) where opening it did not.
        let dir = std::fs::File::open(std::env::temp_dir()).expect("the temp dir opens");
        let mut reader = FileReader::new(dir, 64);
        let error = reader
            .fill_buf()
            .await
            .expect_err("a directory is not read");
        assert_eq!(error.raw_os_error(), Some(libc::EISDIR));
    }
}
