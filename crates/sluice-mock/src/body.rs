//! The response body type: one enum for every endpoint so the hot path never
//! boxes, and large or slow bodies are produced lazily from static buffers.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::stats::InFlightGuard;

/// Size of the slices handed to hyper for generated bodies.
const CHUNK: usize = 128 * 1024;

/// Period of the `/bytes` pattern.
const PERIOD: usize = 256;

/// Byte `i` of every `/bytes/{n}` body: `(i * 7 + 0x80) % 256`. It starts with
/// 0x80 (a lone continuation byte), so no body of one byte or more is UTF-8.
pub(crate) const fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(7).wrapping_add(0x80) % 256) as u8
}

const fn make_pattern() -> [u8; CHUNK + PERIOD] {
    let mut buf = [0u8; CHUNK + PERIOD];
    let mut i = 0;
    while i < buf.len() {
        buf[i] = pattern_byte(i as u64);
        i += 1;
    }
    buf
}

/// The pattern, long enough that any chunk can be a zero-copy slice of it.
static PATTERN: [u8; CHUNK + PERIOD] = make_pattern();

/// ASCII `x` filler for `/drip` and `/truncate`.
static XS: [u8; CHUNK] = [b'x'; CHUNK];

/// How long `/truncate` waits after its partial body before aborting, so the
/// bytes already written are flushed to the socket first.
const TRUNCATE_FLUSH_GRACE: Duration = Duration::from_millis(10);

/// The bytes `/truncate` sends (of a declared 100).
pub(crate) const TRUNCATE_SENT: usize = 50;

/// A response body of the mock server.
#[derive(Debug)]
pub(crate) struct MockBody {
    kind: Kind,
    /// Keeps the request in flight until the body is complete (or dropped).
    guard: Option<InFlightGuard>,
}

#[derive(Debug)]
enum Kind {
    /// A ready body; `None` once sent (or for an empty body).
    Full(Option<Bytes>),
    /// The `/bytes` pattern from `pos` up to `end`.
    Pattern { pos: u64, end: u64 },
    /// `/drip`: `x` bytes released piece by piece on a schedule.
    Drip(Box<Drip>),
    /// `/truncate`: a partial body, then an error that aborts the connection.
    Truncate(TruncateState),
}

#[derive(Debug)]
enum TruncateState {
    Start,
    Flushing(Pin<Box<Sleep>>),
    Done,
}

#[derive(Debug)]
struct Drip {
    /// Bytes not yet sent.
    remaining: u64,
    /// Bytes of the current piece not yet sent.
    piece_left: u64,
    /// Pieces released so far.
    released: u64,
    pieces: u64,
    /// Bytes in the whole body.
    total: u64,
    start: Instant,
    interval: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Drip {
    /// Size of piece `index`: the total split evenly, the remainder going
    /// one byte each to the first pieces.
    fn piece_size(&self, index: u64) -> u64 {
        self.total / self.pieces + u64::from(index < self.total % self.pieces)
    }
}

impl MockBody {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let kind = if bytes.is_empty() {
            Kind::Full(None)
        } else {
            Kind::Full(Some(bytes))
        };
        MockBody { kind, guard: None }
    }

    /// No body at all (204, 304, HEAD-like answers).
    pub(crate) fn empty() -> Self {
        MockBody {
            kind: Kind::Full(None),
            guard: None,
        }
    }

    /// `n` bytes of the `/bytes` pattern.
    pub(crate) fn pattern(n: u64) -> Self {
        MockBody {
            kind: Kind::Pattern { pos: 0, end: n },
            guard: None,
        }
    }

    /// `bytes` ASCII `x` spread over `secs` in up to ten evenly spaced pieces
    /// (one per byte below ten), the first one `secs / pieces` from now.
    pub(crate) fn drip(bytes: u64, secs: f64) -> Self {
        if bytes == 0 {
            return MockBody::empty();
        }
        let pieces = bytes.min(10);
        // Bounded by the caller (0..=3600 s), so the conversion cannot fail.
        let interval = Duration::from_secs_f64(secs / pieces as f64);
        let start = Instant::now();
        MockBody {
            kind: Kind::Drip(Box::new(Drip {
                remaining: bytes,
                piece_left: 0,
                released: 0,
                pieces,
                start,
                interval,
                sleep: Box::pin(tokio::time::sleep_until(start + interval)),
                total: bytes,
            })),
            guard: None,
        }
    }

    /// `/truncate`: [`TRUNCATE_SENT`] bytes, then an abort.
    pub(crate) fn truncate() -> Self {
        MockBody {
            kind: Kind::Truncate(TruncateState::Start),
            guard: None,
        }
    }

    /// Ties the request's in-flight accounting to this body's lifetime.
    pub(crate) fn set_guard(&mut self, guard: InFlightGuard) {
        self.guard = Some(guard);
    }

    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Pattern { pos, end } => {
                if *pos >= *end {
                    return Poll::Ready(None);
                }
                let len = usize::try_from(*end - *pos).map_or(CHUNK, |left| left.min(CHUNK));
                let offset = (*pos % PERIOD as u64) as usize;
                *pos += len as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                    &PATTERN[offset..offset + len],
                )))))
            }
            Kind::Drip(drip) => loop {
                if drip.piece_left > 0 {
                    let len = usize::try_from(drip.piece_left).map_or(CHUNK, |l| l.min(CHUNK));
                    drip.piece_left -= len as u64;
                    drip.remaining -= len as u64;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&XS[..len])))));
                }
                if drip.released >= drip.pieces || drip.remaining == 0 {
                    return Poll::Ready(None);
                }
                if drip.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                drip.piece_left = drip.piece_size(drip.released);
                drip.released += 1;
                // Deadlines count from the start, so pieces never drift.
                let next = drip.start
                    + drip
                        .interval
                        .saturating_mul(u32::try_from(drip.released + 1).unwrap_or(u32::MAX));
                drip.sleep.as_mut().reset(next);
            },
            Kind::Truncate(state) => match state {
                TruncateState::Start => {
                    *state =
                        TruncateState::Flushing(Box::pin(tokio::time::sleep(TRUNCATE_FLUSH_GRACE)));
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                        &XS[..TRUNCATE_SENT],
                    )))))
                }
                TruncateState::Flushing(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *state = TruncateState::Done;
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "deliberately truncated body",
                    ))))
                }
                TruncateState::Done => Poll::Ready(None),
            },
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let result = this.poll_kind(cx);
        let finished = match &result {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.is_end_stream(),
            Poll::Pending => false,
        };
        if finished {
            // The response is complete: release the request's in-flight slot
            // now rather than whenever hyper drops the body.
            this.guard = None;
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Pattern { pos, end } => pos >= end,
            Kind::Drip(drip) => drip.remaining == 0,
            Kind::Truncate(state) => matches!(state, TruncateState::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Pattern { pos, end } => SizeHint::with_exact(end.saturating_sub(*pos)),
            Kind::Drip(drip) => SizeHint::with_exact(drip.remaining),
            // The declared Content-Length (100) is a lie; let the header speak.
            Kind::Truncate(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn pattern_is_not_utf8_and_periodic() {
        assert_eq!(PATTERN[0], 0x80);
        assert!(std::str::from_utf8(&PATTERN[..1]).is_err());
        for i in 0..PATTERN.len() {
            assert_eq!(PATTERN[i], pattern_byte(i as u64));
            if i >= PERIOD {
                assert_eq!(PATTERN[i], PATTERN[i - PERIOD]);
            }
        }
    }

    #[tokio::test]
    async fn pattern_body_streams_exact_bytes() {
        let n = 3 * CHUNK as u64 + 77;
        let body = MockBody::pattern(n);
        assert_eq!(body.size_hint().exact(), Some(n));
        let bytes = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(bytes.len() as u64, n);
        assert!(
            bytes
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern_byte(i as u64))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drip_spreads_pieces() {
        let start = Instant::now();
        let body = MockBody::drip(25, 1.0);
        let bytes = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(&bytes[..], &[b'x'; 25][..]);
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn drip_small_is_one_byte_per_piece() {
        let mut body = MockBody::drip(3, 0.3);
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            assert_eq!(
                frame.expect("infallible").into_data().expect("data").len(),
                1
            );
            frames += 1;
        }
        assert_eq!(frames, 3);
    }
}
