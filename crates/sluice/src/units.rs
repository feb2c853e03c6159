//! Parsing of the value types that appear on the command line and in request
//! lines: durations (`30s`), rates (`50/s`) and sizes (`16MiB`). Each is parsed
//! in exactly one place so the CLI, the input parser and the library agree.

use std::fmt;
use std::num::NonZeroU64;
use std::time::Duration;

/// An error in a written value (`text`, as written); the message says what
/// was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// A duration without its unit.
    #[error("`{text}` has no unit: write {number}s for seconds or {number}ms for milliseconds")]
    NoUnit {
        /// The value as written.
        text: String,
        /// Its number.
        number: String,
    },
    /// Not a duration.
    #[error("`{text}` is not a duration: write a number with a unit, such as 500ms, 30s, 5m or 1h")]
    Duration {
        /// The value as written.
        text: String,
    },
    /// A duration longer than [`MAX_DURATION`].
    #[error("`{text}` is longer than the longest duration sluice accepts (100 days)")]
    TooLong {
        /// The value as written.
        text: String,
    },
    /// Not a rate.
    #[error(
        "`{text}` is not a rate: write a positive whole count per unit, such as 50/s, 3000/m or 100000/h"
    )]
    Rate {
        /// The value as written.
        text: String,
    },
    /// Not a size.
    #[error(
        "`{text}` is not a size: write bytes or a number with a unit, such as 64KiB, 16MiB or 1GiB"
    )]
    Size {
        /// The value as written.
        text: String,
    },
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h` or `1.5s`.
///
/// The unit is required, on the command line and in request lines alike: a
/// bare number (`30`) is refused, since one reader takes it for seconds and
/// another for milliseconds. Negative, NaN and absurdly large values are
/// refused rather than wrapped.
///
/// # Errors
///
/// When `text` is not a number with a unit, is negative, or is longer than 100 days ([`UnitError`]).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text);
    let seconds_per_unit = match unit.trim() {
        "s" | "sec" | "secs" => 1.0,
        "" if !number.is_empty() => {
            return Err(UnitError::NoUnit {
                text: text.to_string(),
                number: number.to_string(),
            });
        }
        "ms" => 0.001,
        "us" | "µs" => 0.000_001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => return Err(duration_error(text)),
    };
    let value: f64 = number.parse().map_err(|_| duration_error(text))?;
    let d =
        Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| duration_error(text))?;
    if d > MAX_DURATION {
        return Err(UnitError::TooLong {
            text: text.to_string(),
        });
    }
    Ok(d)
}

/// Longer durations are surely typos, and would overflow clock arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 86_400);

/// `"16MiB"` → `("16", "MiB")`: the leading number and the rest.
fn split_number(text: &str) -> (&str, &str) {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    t.split_at(split)
}

fn duration_error(text: &str) -> UnitError {
    UnitError::Duration {
        text: text.to_string(),
    }
}

/// A count of events per period: `50/s`, `3000/m`, `100000/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many events the period allows.
    pub count: NonZeroU64,
    /// The length of the period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h` (also `N/sec`, `N/min`, `N/hour`, `N/d`).
    ///
    /// # Errors
    ///
    /// When `text` is not a positive whole count, a slash and a unit ([`UnitError`]).
    pub fn parse(text: &str) -> Result<Rate, UnitError> {
        let err = || UnitError::Rate {
            text: text.to_string(),
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(err)?;
        let count: u64 = count.trim().parse().map_err(|_| err())?;
        let count = NonZeroU64::new(count).ok_or_else(err)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(err()),
        };
        Ok(Rate { count, per })
    }

    /// Events per second, for display and for comparisons.
    pub fn per_second(&self) -> f64 {
        self.count.get() as f64 / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{}", self.count, unit)
    }
}

/// Writes a duration as a user would, in the largest unit that holds it
/// whole (`5m`, `10s`, `500ms`); [`parse_duration`] reads it back exactly.
/// Help text states the engine's defaults this way.
pub fn write_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let units = [(3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
    match units
        .iter()
        .find(|(per, _)| ms > 0 && ms.is_multiple_of(*per))
    {
        Some((per, unit)) if d.subsec_nanos().is_multiple_of(1_000_000) => {
            format!("{}{unit}", ms / per)
        }
        _ => format!("{}us", d.as_micros()),
    }
}

/// Writes a byte size in the largest binary unit that holds it whole
/// (`16MiB`, `64KiB`, `1000`); [`parse_size`] reads it back exactly.
pub fn write_size(bytes: u64) -> String {
    let units = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match units
        .iter()
        .find(|(per, _)| bytes > 0 && bytes.is_multiple_of(*per))
    {
        Some((per, unit)) => format!("{}{unit}", bytes / per),
        None => bytes.to_string(),
    }
}

/// Parses a byte size: `1024`, `64KiB`, `16MiB`, `1GiB`, `10MB`, `500kb`.
///
/// # Errors
///
/// When `text` is not a non-negative number with an optional unit ([`UnitError`]).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text);
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(size_error(text)),
    };
    let value: f64 = number.parse().map_err(|_| size_error(text))?;
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(size_error(text));
    }
    Ok(bytes as u64)
}

fn size_error(text: &str) -> UnitError {
    UnitError::Size {
        text: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_values_read_back_exactly() {
        for (d, text) in [
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(250), "250us"),
            (Duration::ZERO, "0us"),
        ] {
            assert_eq!(write_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
        for (n, text) in [
            (16 << 20, "16MiB"),
            (64 << 10, "64KiB"),
            (1 << 30, "1GiB"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(write_size(n), text);
            assert_eq!(parse_size(text), Ok(n));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("2").unwrap_err().to_string().contains("2s"));
        for bad in [
            "",
            "abc",
            "-5s",
            "5x",
            "1e400s",
            "s",
            ".",
            "5000000000000000h",
            "101d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        let r = Rate::parse("50/s").unwrap();
        assert_eq!((r.count.get(), r.per), (50, Duration::from_secs(1)));
        assert_eq!(Rate::parse("3000/m").unwrap().per_second(), 50.0);
        assert_eq!(Rate::parse("100000/h").unwrap().to_string(), "100000/h");
        for bad in ["0/s", "50", "50/y", "-1/s", "1.5/s", "/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("64kib"), Ok(65536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1").is_err());
    }
}
