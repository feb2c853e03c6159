//! JSON text checked once: [`JsonText`], a response body stored as JSON,
//! and `check`, the check that makes one.
//!
//! The check accepts exactly what serde_json's `RawValue` accepts (one
//! value, whitespace around it, any nesting depth, any `\uXXXX` escape
//! including a lone surrogate, duplicate keys), held equal to it by a
//! property test, but skips the bodies of strings 64 bytes a step: a
//! 4 KiB answer is mostly string, and serde_json's scan of 8 bytes a step
//! was a quarter of what a request with a JSON answer cost.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Valid, compact JSON text (no whitespace outside strings), checked once
/// where it is made and embedded as it is wherever it is written.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    /// `text` as JSON text when it is valid JSON, without its insignificant
    /// whitespace (every other byte, and so every digit, kept).
    pub fn parse(text: &str) -> Option<JsonText> {
        Some(JsonText::compacted(text, check(text)?))
    }

    /// `bytes` as JSON text when they are UTF-8 and valid JSON, as
    /// [`JsonText::parse`] of their text decides, in one pass: the scan
    /// also finds whether every byte is ASCII (a 4 KiB answer almost always
    /// is), so UTF-8 is checked on its own only for text that is not.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<JsonText> {
        let (spacing, ascii) = check_bytes(bytes)?;
        let text = if ascii {
            debug_assert!(bytes.is_ascii());
            // SAFETY: `check_bytes` found every byte ASCII (`Scan::ascii`:
            // the grammar outside strings takes ASCII bytes only, and a
            // string's bytes went through `plain_run_end::<true>`, which
            // stops at any byte above 0x7f), and ASCII is UTF-8.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            crate::utf8::text(bytes).ok()?
        };
        Some(JsonText::compacted(text, spacing))
    }

    /// `text`, valid JSON with `spacing`, without its whitespace.
    fn compacted(text: &str, spacing: Spacing) -> JsonText {
        JsonText(match spacing {
            Spacing::Compact => text.into(),
            Spacing::Spaced => without_space(text).into_boxed_str(),
        })
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonText").field(&self.get()).finish()
    }
}

impl Serialize for JsonText {
    /// Written as the JSON value it is, not as a string. serde offers no
    /// way to hand raw text to a serializer but serde_json's `RawValue`,
    /// which checks the text again: only formats written through serde
    /// (the batch APIs' result lines) pay for it; sluice's own record line
    /// copies the text.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Valid JSON text without its whitespace outside strings: the bytes
/// between are copied a run at a time, strings skipped a block at a time
/// (a filter of each byte through a string-tracking state cost six
/// instructions a byte on pretty-printed answers).
fn without_space(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        while bytes
            .get(at)
            .is_some_and(|b| !matches!(b, b' ' | b'\n' | b'\t' | b'\r' | b'"'))
        {
            at += 1;
        }
        if bytes.get(at) == Some(&b'"') {
            at = string_end(bytes, at + 1);
        }
        // Every cut is next to an ASCII byte, so at a character's edge.
        out.push_str(text.get(start..at).unwrap_or_default());
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(at) {
            at += 1;
        }
    }
    out
}

/// The index just past the closing quote of the valid string whose body
/// starts at `at`.
fn string_end(bytes: &[u8], mut at: usize) -> usize {
    loop {
        at = plain_run_end::<false>(bytes, at);
        match bytes.get(at) {
            Some(b'"') | None => return (at + 1).min(bytes.len()),
            // A backslash and the byte it escapes (the rest of a `\u`
            // escape is hex, skipped as plain bytes).
            Some(b'\\') => at += 2,
            Some(_) => at += 1,
        }
    }
}

/// Whether valid JSON text holds whitespace outside its strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spacing {
    /// None: the text is compact as it is.
    Compact,
    /// Some, to be removed for a compact copy.
    Spaced,
}

/// Whether `text` is one JSON value with only whitespace around it, as
/// serde_json's `RawValue` decides (its UTF-8 check is `str`'s), and when
/// it is, whether compacting it would remove anything (found on the way,
/// so the text is read once).
pub(crate) fn check(text: &str) -> Option<Spacing> {
    check_bytes(text.as_bytes()).map(|(spacing, _)| spacing)
}

/// [`check`] on bytes not yet known to be UTF-8: the grammar alone (a
/// string's bytes above 0x7f are taken as they come), and whether every
/// byte is ASCII. Bytes it accepts are valid JSON when they are UTF-8,
/// which is certain when they are ASCII, and checked by the caller when
/// they are not.
pub(crate) fn check_bytes(bytes: &[u8]) -> Option<(Spacing, bool)> {
    let mut scan = Scan::new(bytes);
    scan.value()?;
    scan.whitespace();
    let spacing = if scan.spaced {
        Spacing::Spaced
    } else {
        Spacing::Compact
    };
    (scan.at == scan.bytes.len()).then_some((spacing, scan.ascii))
}

/// Calls `member` with the key (its text between the quotes), the value
/// (its JSON text) and whether the value holds whitespace to remove, of
/// each member of `text`'s object, in order, and says how deep the
/// object's brackets nest. `None` when
/// `text` is not one valid JSON object (whitespace around it allowed), when
/// a key holds an escape (its text is not the key), or when `member` says
/// `None`.
pub(crate) fn members<'a>(
    text: &'a str,
    mut member: impl FnMut(&'a str, &'a str, Spacing) -> Option<()>,
) -> Option<Depth> {
    let mut scan = Scan::new(text.as_bytes());
    scan.whitespace();
    if scan.next()? != b'{' {
        return None;
    }
    scan.whitespace();
    if !scan.eat(b'}') {
        loop {
            if scan.next()? != b'"' {
                return None;
            }
            let start = scan.at;
            scan.string()?;
            // Quotes are ASCII: every cut here is at a character's edge.
            let key = text.get(start..scan.at - 1)?;
            if key.contains('\\') {
                return None;
            }
            scan.whitespace();
            if scan.next()? != b':' {
                return None;
            }
            scan.whitespace();
            let start = scan.at;
            // Whitespace met from here on is the value's own.
            scan.spaced = false;
            scan.value()?;
            let spacing = if scan.spaced {
                Spacing::Spaced
            } else {
                Spacing::Compact
            };
            member(key, text.get(start..scan.at)?, spacing)?;
            scan.whitespace();
            match scan.next()? {
                b',' => scan.whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    scan.whitespace();
    (scan.at == scan.bytes.len()).then_some(Depth(1 + scan.deepest))
}

/// How deep brackets nest in valid JSON text, outside strings (the
/// outermost bracket is 1): as `parse::raw::nesting_exceeds` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Depth(pub(crate) usize);

/// A cursor over JSON text. Each method returns `None` at the first byte
/// that cannot continue the grammar.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Whether whitespace was met outside strings.
    spaced: bool,
    /// The most arrays and objects [`Scan::value`] found open at once.
    deepest: usize,
    /// Whether every byte read so far is ASCII: the grammar takes nothing
    /// else outside strings, so only strings clear it, at their first byte
    /// above 0x7f. Until then their runs are found by the scan that also
    /// stops at such bytes (no dearer than the one that does not); after,
    /// by the one that does not, so text mostly not ASCII is not stopped
    /// at every character.
    ascii: bool,
}

impl<'a> Scan<'a> {
    fn new(bytes: &'a [u8]) -> Scan<'a> {
        Scan {
            bytes,
            at: 0,
            spaced: false,
            deepest: 0,
            ascii: true,
        }
    }
}

impl Scan<'_> {
    /// The next byte, consumed.
    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// Consumes `b` when it is next.
    fn eat(&mut self, b: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&b);
        self.at += usize::from(found);
        found
    }

    fn whitespace(&mut self) {
        let start = self.at;
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
        self.spaced |= self.at > start;
    }

    /// One value and everything nested in it. Iterative, with the open
    /// containers kept as bits, so no depth overflows the stack (serde_json
    /// sets no depth limit on a value it only checks, either).
    fn value(&mut self) -> Option<()> {
        let mut open = Nesting::default();
        loop {
            self.whitespace();
            match self.next()? {
                b'"' => self.string()?,
                b'{' => {
                    self.deepest = self.deepest.max(open.depth + 1);
                    self.whitespace();
                    if !self.eat(b'}') {
                        open.push(true);
                        self.key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.deepest = self.deepest.max(open.depth + 1);
                    self.whitespace();
                    if !self.eat(b']') {
                        open.push(false);
                        continue;
                    }
                }
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' => {
                    let first = self.next()?;
                    self.number(first)?;
                }
                first @ b'0'..=b'9' => self.number(first)?,
                _ => return None,
            }
            // A value ended: close what it ends, or go on after a comma.
            loop {
                let Some(in_object) = open.top() else {
                    return Some(());
                };
                self.whitespace();
                match self.next()? {
                    b',' if in_object => {
                        self.whitespace();
                        self.key()?;
                        break;
                    }
                    b',' => break,
                    b'}' if in_object => open.pop(),
                    b']' if !in_object => open.pop(),
                    _ => return None,
                }
            }
        }
    }

    /// An object's key and its colon, the opening quote next.
    fn key(&mut self) -> Option<()> {
        if self.next()? != b'"' {
            return None;
        }
        self.string()?;
        self.whitespace();
        (self.next()? == b':').then_some(())
    }

    /// The rest of a string after its opening quote.
    fn string(&mut self) -> Option<()> {
        loop {
            self.at = if self.ascii {
                plain_run_end::<true>(self.bytes, self.at)
            } else {
                plain_run_end::<false>(self.bytes, self.at)
            };
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.bytes.get(self.at..self.at + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                // Not ASCII: a string may hold it (its UTF-8 is not this
                // scan's to check).
                0x80.. => self.ascii = false,
                // A control character.
                _ => return None,
            }
        }
    }

    /// The rest of `true`, `false` or `null`.
    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let found = self.bytes.get(self.at..self.at + rest.len())? == rest;
        self.at += rest.len();
        found.then_some(())
    }

    /// The rest of a number whose first digit (after any minus) was `first`:
    /// no leading zero, then an optional fraction and exponent, each with
    /// at least one digit.
    fn number(&mut self, first: u8) -> Option<()> {
        match first {
            b'0' => {
                if self.peek_digit() {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            self.some_digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn peek_digit(&self) -> bool {
        self.bytes.get(self.at).is_some_and(u8::is_ascii_digit)
    }

    fn digits(&mut self) {
        while self.peek_digit() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// The open arrays and objects, innermost last, one bit each (set for an
/// object): the first 64 in a word, deeper ones in a vector.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    deep: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        let bit = u64::from(object) << (self.depth % 64);
        match self.depth / 64 {
            0 => self.low = (self.low & !(1 << self.depth)) | bit,
            word => {
                if self.deep.len() < word {
                    self.deep.push(0);
                }
                let w = &mut self.deep[word - 1];
                *w = (*w & !(1 << (self.depth % 64))) | bit;
            }
        }
        self.depth += 1;
    }

    /// Whether the innermost open container is an object; `None` when none is open.
    fn top(&self) -> Option<bool> {
        let at = self.depth.checked_sub(1)?;
        let word = match at / 64 {
            0 => self.low,
            word => self.deep[word - 1],
        };
        Some(word >> (at % 64) & 1 == 1)
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }
}

/// Whether a string cannot hold `b` as it is: a quote, a backslash or a
/// control character.
fn special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether a run of a string's plain bytes ends at `b`: at a [`special`]
/// byte, and with `HIGH` at any byte above 0x7f too (the scan that also
/// tells whether text is ASCII).
fn stops<const HIGH: bool>(b: u8) -> bool {
    special(b) || (HIGH && b >= 0x80)
}

/// The index of the first byte from `at` that [`stops`] a run (or the
/// end), with AVX2 where the CPU has it (x86_64 CPUs since 2013; std
/// caches the check), which halves the instructions a byte of SSE2's four
/// vectors a step: a 4 KiB JSON answer is mostly string.
fn plain_run_end<const HIGH: bool>(bytes: &[u8], at: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::plain_run_end::<HIGH>(bytes, at) };
    }
    plain_run_end_by::<HIGH>(bytes, at, stops_in::<HIGH>)
}

/// [`plain_run_end`] with `marks` marking a step's bytes that stop a run.
/// Sixty-four bytes a step, the last step overlapping the one before it;
/// byte by byte only in text shorter than a step.
#[inline(always)]
fn plain_run_end_by<const HIGH: bool>(
    bytes: &[u8],
    mut at: usize,
    marks: impl Fn(&[u8; STEP]) -> u64,
) -> usize {
    // The loop's test is one comparison with the last step's start (a
    // slice's `first_chunk` from `at` took three more instructions a step).
    let last_step = bytes.len().saturating_sub(STEP);
    while at <= last_step {
        let Some(block) = bytes.get(at..).and_then(<[u8]>::first_chunk::<STEP>) else {
            break;
        };
        let hits = marks(block);
        if hits != 0 {
            return at + hits.trailing_zeros() as usize;
        }
        at += STEP;
    }
    // Fewer than a step's bytes are left: the last step's bytes again,
    // those before `at` masked off.
    if let Some(last) = bytes.last_chunk::<STEP>()
        && at < bytes.len()
    {
        let skip = at + STEP - bytes.len();
        let hits = marks(last) >> skip;
        return at + (hits.trailing_zeros() as usize).min(bytes.len() - at);
    }
    while bytes.get(at).is_some_and(|&b| !stops::<HIGH>(b)) {
        at += 1;
    }
    at.min(bytes.len())
}

/// Bytes a step of [`plain_run_end`]: four vectors, tested together.
const STEP: usize = 64;

// How a vector finds the bytes that stop a run, in the fewest operations:
// `b ^ 2` keeps every byte apart and turns the quote (0x22) into 0x20 and
// the control characters into control characters, so `b ^ 2 <= 0x20`
// (unsigned) holds for exactly the quote and the control characters, and
// `b ^ 2 < 0x21` as signed bytes for those and every byte above 0x7f (the
// negative ones); the backslash is the one byte tested on its own.

/// One bit per byte of `block` (bit `i` for byte `i`), set for the bytes
/// that [`stops`] a run.
#[cfg(target_arch = "x86_64")]
fn stops_in<const HIGH: bool>(block: &[u8; STEP]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_xor_si128,
    };
    // SAFETY: SSE2 is part of every x86_64 target (the baseline), so these
    // instructions exist wherever this compiles; each load reads 16 of the
    // 64 bytes `block` borrows (at 0, 16, 32, 48), and `loadu` needs no
    // alignment.
    unsafe {
        let marks = |at: usize| {
            let v: __m128i = _mm_loadu_si128(block.as_ptr().add(at).cast());
            let flipped = _mm_xor_si128(v, _mm_set1_epi8(2));
            let low = if HIGH {
                _mm_cmplt_epi8(flipped, _mm_set1_epi8(0x21))
            } else {
                _mm_cmpeq_epi8(_mm_min_epu8(flipped, _mm_set1_epi8(0x20)), flipped)
            };
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_or_si128(low, backslash)
        };
        let quarters = [marks(0), marks(16), marks(32), marks(48)];
        // Most steps find nothing: one test of all four, the bits only then.
        let any = _mm_or_si128(
            _mm_or_si128(quarters[0], quarters[1]),
            _mm_or_si128(quarters[2], quarters[3]),
        );
        if _mm_movemask_epi8(any) == 0 {
            return 0;
        }
        quarters.iter().enumerate().fold(0, |bits, (i, &q)| {
            bits | (u64::from(_mm_movemask_epi8(q) as u16) << (16 * i))
        })
    }
}

/// [`plain_run_end`] and [`stops_in`] with AVX2: two vectors of 32 bytes a
/// step rather than four of 16.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_min_epu8,
        _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8, _mm256_xor_si256,
    };

    use super::STEP;

    /// [`super::plain_run_end`] on a CPU with AVX2.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn plain_run_end<const HIGH: bool>(bytes: &[u8], at: usize) -> usize {
        super::plain_run_end_by::<HIGH>(bytes, at, |block| stops_in::<HIGH>(block))
    }

    /// [`super::stops_in`] on a CPU with AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn stops_in<const HIGH: bool>(block: &[u8; STEP]) -> u64 {
        let marks = |at: usize| {
            // SAFETY: the load reads 32 of the 64 bytes `block` borrows (at
            // 0 or 32), and `loadu` needs no alignment.
            let v: __m256i = unsafe { _mm256_loadu_si256(block.as_ptr().add(at).cast()) };
            let flipped = _mm256_xor_si256(v, _mm256_set1_epi8(2));
            let low = if HIGH {
                _mm256_cmpgt_epi8(_mm256_set1_epi8(0x21), flipped)
            } else {
                _mm256_cmpeq_epi8(_mm256_min_epu8(flipped, _mm256_set1_epi8(0x20)), flipped)
            };
            let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
            _mm256_or_si256(low, backslash)
        };
        let (low, high) = (marks(0), marks(32));
        // Most steps find nothing: one test of both, the bits only then.
        if _mm256_movemask_epi8(_mm256_or_si256(low, high)) == 0 {
            return 0;
        }
        u64::from(_mm256_movemask_epi8(low) as u32)
            | (u64::from(_mm256_movemask_epi8(high) as u32) << 32)
    }
}

/// [`stops_in`] without vector instructions: eight bytes a word, each
/// test setting a byte's top bit (Mycroft's zero-byte trick).
#[cfg(any(not(target_arch = "x86_64"), test))]
fn stops_by_words<const HIGH: bool>(block: &[u8; STEP]) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const TOPS: u64 = ONES << 7;
    let mut bits = 0u64;
    for (n, word) in block.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
        let quote = zero_in(w ^ (ONES * u64::from(b'"')));
        let backslash = zero_in(w ^ (ONES * u64::from(b'\\')));
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let high = if HIGH { w } else { 0 };
        // The trick can also mark a byte just above a marked one (a borrow
        // carried through it): so each byte is tested again on its own
        // below, and the bits tell only where to look.
        let marked = (quote | backslash | control | high) & TOPS;
        if marked != 0 {
            for (i, &b) in word.iter().enumerate() {
                bits |= u64::from(stops::<HIGH>(b)) << (n * 8 + i);
            }
        }
    }
    bits
}

#[cfg(not(target_arch = "x86_64"))]
use stops_by_words as stops_in;

#[cfg(test)]
#[path = "json_text_tests.rs"]
pub(crate) mod tests;
