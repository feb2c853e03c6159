//! The value forms rate-limit headers use (counts, Go durations, numbers
//! that are either delays or epochs, RFC 3339 times), read into numbers with
//! every cap in one place, and the [`Reader`] that collects warnings.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use super::{Problem, Warning};

/// Counts (limits, remaining) above this are capped: 10^12 is far above any
/// real quota (the largest token-per-minute tiers are around 10^8) and keeps
/// every later product finite and exact in an `f64`.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// Resets further away than this (7 days) are capped: the longest windows
/// real APIs use are daily and weekly.
pub const MAX_RESET: Duration = Duration::from_secs(7 * 24 * 3600);

/// A bare number at or above this (10^9, i.e. September 2001 as a Unix time,
/// or 31.7 years as a delay) is a Unix time in seconds, below it a delay in
/// seconds. Servers send both under the same header names (Azure sends delay
/// seconds where OpenAI sends a Go duration; GitHub sends epoch seconds), and
/// no real delay is 31 years long while no real reset lies before 2001.
pub const EPOCH_THRESHOLD: f64 = 1e9;

/// A bare number at or above this (10^12: year 33658 in seconds, September
/// 2001 in milliseconds) is a Unix time in milliseconds.
pub const EPOCH_MILLIS_THRESHOLD: f64 = 1e12;

/// Longest header value read; longer ones are malformed (no real rate-limit
/// value is this long, and it bounds the work on hostile input).
const MAX_VALUE_LEN: usize = 1024;

/// Reads header values by name and keeps the warnings.
pub(super) struct Reader<'a> {
    headers: &'a HeaderMap,
    /// The server's "now": its `Date`, else the local `now`.
    pub(super) server_now: SystemTime,
    /// The response had a valid `Date`.
    dated: bool,
    pub(super) warnings: Vec<super::Warning>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(headers: &'a HeaderMap, now: SystemTime) -> Reader<'a> {
        let mut reader = Reader {
            headers,
            server_now: now,
            dated: false,
            warnings: Vec::new(),
        };
        if let Some(date) = reader.text("date") {
            match httpdate::parse_http_date(date) {
                Ok(when) => {
                    reader.server_now = when;
                    reader.dated = true;
                }
                Err(_) => reader.warn("date", date.to_owned(), Problem::Malformed),
            }
        }
        reader
    }

    /// Microseconds from the response's valid `Date` to the local `now`
    /// (negative when the server's clock is ahead).
    pub(super) fn date_lag(&self, now: SystemTime) -> Option<i64> {
        if !self.dated {
            return None;
        }
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Some(match now.duration_since(self.server_now) {
            Ok(d) => micros(d),
            Err(e) => -micros(e.duration()),
        })
    }

    /// The header's (first) value, trimmed. `None` when absent; a warning
    /// when not text or too long.
    pub(super) fn text(&mut self, name: &str) -> Option<&'a str> {
        let value = self.headers.get(name)?;
        match value.to_str() {
            Ok(text) if text.len() <= MAX_VALUE_LEN => Some(text.trim()),
            _ => {
                let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
                self.warn(name, shown, Problem::Malformed);
                None
            }
        }
    }

    /// All the field lines of `name` joined with ", ", as HTTP combines
    /// the lines of a list field. `None` when absent or any line is bad.
    pub(super) fn joined(&mut self, name: &str) -> Option<String> {
        let mut parts = Vec::new();
        for value in self.headers.get_all(name) {
            match value.to_str() {
                Ok(text) if text.len() <= MAX_VALUE_LEN => parts.push(text.trim()),
                _ => {
                    let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    self.warn(name, shown, Problem::Malformed);
                    return None;
                }
            }
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    pub(super) fn warn(&mut self, header: &str, value: String, problem: Problem) {
        let value: String = value.chars().take(80).collect();
        self.warnings.push(Warning {
            header: header.to_owned(),
            value,
            problem,
        });
    }

    /// A count (`limit`, `remaining`, `used`): a non-negative integer; `-1`
    /// means unknown; above [`MAX_COUNT`] is capped.
    pub(super) fn count(&mut self, name: &str) -> Option<u64> {
        let text = self.text(name)?;
        match parse_count(text) {
            Ok(n) => n.map(|n| self.capped_count(name, text, n)),
            Err(()) => {
                self.warn(name, text.to_owned(), Problem::Malformed);
                None
            }
        }
    }

    /// `n` capped at [`MAX_COUNT`] (with a warning naming `name` and `text`).
    pub(super) fn capped_count(&mut self, name: &str, text: &str, n: u64) -> u64 {
        if n > MAX_COUNT {
            self.warn(name, text.to_owned(), Problem::Capped);
            return MAX_COUNT;
        }
        n
    }

    /// A reset read by `parse` (which returns seconds from the server's
    /// now), capped at [`MAX_RESET`]; past resets are zero.
    pub(super) fn reset(
        &mut self,
        name: &str,
        parse: impl Fn(&str, SystemTime) -> Result<Option<f64>, ()>,
    ) -> Option<Duration> {
        let text = self.text(name)?;
        match parse(text, self.server_now) {
            Ok(Some(secs)) => Some(self.capped_reset(name, text, secs)),
            Ok(None) => None,
            Err(()) => {
                self.warn(name, text.to_owned(), Problem::Malformed);
                None
            }
        }
    }

    /// `secs` as a reset, capped at [`MAX_RESET`] (with a warning naming
    /// `name` and `text`); negative is zero.
    pub(super) fn capped_reset(&mut self, name: &str, text: &str, secs: f64) -> Duration {
        if secs > MAX_RESET.as_secs_f64() {
            self.warn(name, text.to_owned(), Problem::Capped);
            return MAX_RESET;
        }
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO)
    }
}

/// `Ok(None)` for `-1` (unknown), `Ok(Some(n))` for a non-negative integer
/// (saturating, so absurdly long digit strings are caught by the cap),
/// `Err` for anything else.
pub(super) fn parse_count(text: &str) -> Result<Option<u64>, ()> {
    if text == "-1" {
        return Ok(None);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let n = text.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    Ok(Some(n))
}

/// Seconds until a reset written as a Go duration (`1s`, `6m0s`, `12ms`,
/// `2m59.56s`, `1h2m3s`) or as a bare number (see [`number_reset`]).
pub(super) fn duration_or_number(text: &str, server_now: SystemTime) -> Result<Option<f64>, ()> {
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return number_reset(text, server_now);
    }
    go_duration(text).map(Some)
}

/// Seconds until a reset written as a bare number: `-1` is unknown; below
/// [`EPOCH_THRESHOLD`] a delay in seconds; below [`EPOCH_MILLIS_THRESHOLD`]
/// a Unix time in seconds; above, in milliseconds. Epochs are measured
/// against the server's now, so a past epoch is zero.
pub(super) fn number_reset(text: &str, server_now: SystemTime) -> Result<Option<f64>, ()> {
    if text == "-1" {
        return Ok(None);
    }
    let valid = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|&b| b == b'.').count() <= 1
        && text.bytes().next().is_some_and(|b| b.is_ascii_digit());
    let n: f64 = if valid {
        text.parse().map_err(|_| ())?
    } else {
        return Err(());
    };
    if !n.is_finite() {
        return Err(());
    }
    let epoch = if n >= EPOCH_MILLIS_THRESHOLD {
        n / 1000.0
    } else if n >= EPOCH_THRESHOLD {
        n
    } else {
        return Ok(Some(n));
    };
    Ok(Some(epoch - unix_seconds(server_now)))
}

/// Seconds until an RFC 3339 time (`2025-02-11T10:00:15Z`), from the
/// server's now.
pub(super) fn rfc3339(text: &str, server_now: SystemTime) -> Result<Option<f64>, ()> {
    let when = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ())?;
    let nanos = when.unix_timestamp_nanos() as f64;
    Ok(Some(nanos / 1e9 - unix_seconds(server_now)))
}

/// Seconds in a Go duration: one or more `<decimal><unit>` with units `h`,
/// `m`, `s`, `ms`, `us`/`µs`/`μs`, `ns`; `0` alone is zero. No sign: a
/// negative reset is malformed.
pub(super) fn go_duration(text: &str) -> Result<f64, ()> {
    if text == "0" {
        return Ok(0.0);
    }
    let mut rest = text;
    let mut total = 0.0f64;
    if rest.is_empty() {
        return Err(());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(())?;
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(());
        }
        let value: f64 = number.parse().map_err(|_| ())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(()),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total.is_finite() {
        Ok(total)
    } else {
        Err(())
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1s", Some(1.0)),
            ("6m0s", Some(360.0)),
            ("12ms", Some(0.012)),
            ("2m59.56s", Some(179.56)),
            ("1h2m3s", Some(3723.0)),
            ("0s", Some(0.0)),
            ("0", Some(0.0)),
            ("1.5h", Some(5400.0)),
            ("250us", Some(0.00025)),
            ("250µs", Some(0.00025)),
            ("7ns", Some(7e-9)),
            ("", None),
            ("s", None),
            ("1", None),
            ("1x", None),
            ("-1s", None),
            ("1..2s", None),
            (".s", None),
            ("1s2", None),
            ("1 s", None),
        ];
        for (text, want) in cases {
            let got = go_duration(text).ok();
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{text}: {g} != {w}"),
                (g, w) => assert_eq!(g, *w, "{text}"),
            }
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("600"), Ok(Some(600)));
        assert_eq!(parse_count("0"), Ok(Some(0)));
        assert_eq!(parse_count("-1"), Ok(None));
        assert_eq!(parse_count("99999999999999999999999"), Ok(Some(u64::MAX)));
        for bad in ["", "-2", "1.5", "1e3", "ten", " 1", "+1"] {
            assert_eq!(parse_count(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn the_magnitude_rule() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cases: &[(&str, Result<Option<f64>, ()>)] = &[
            ("20", Ok(Some(20.0))),
            ("0.5", Ok(Some(0.5))),
            // Just below the threshold: still a delay (31.7 years; capped later).
            ("999999999", Ok(Some(999_999_999.0))),
            // Epoch seconds, 30 s after the server's now.
            ("1700000030", Ok(Some(30.0))),
            // Epoch seconds in the past: negative, read as zero by the caller.
            ("1000000000", Ok(Some(-700_000_000.0))),
            // Epoch milliseconds.
            ("1700000001500", Ok(Some(1.5))),
            ("-1", Ok(None)),
            ("-5", Err(())),
            ("1.2.3", Err(())),
            (".5", Err(())),
            ("", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(&number_reset(text, now), want, "{text}");
        }
    }

    #[test]
    fn rfc3339_against_the_server_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_739_268_000); // 2025-02-11T10:00:00Z
        assert_eq!(rfc3339("2025-02-11T10:00:15Z", now), Ok(Some(15.0)));
        assert_eq!(rfc3339("2025-02-11T11:00:15+01:00", now), Ok(Some(15.0)));
        assert_eq!(rfc3339("2025-02-11T09:59:00Z", now), Ok(Some(-60.0)));
        assert_eq!(rfc3339("2025-02-11 10:00:15", now), Err(()));
        assert_eq!(rfc3339("15", now), Err(()));
    }
}
