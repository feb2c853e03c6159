//! The facts of one record that statistics and reports need, taken from a
//! [`Record`] in memory or read back from a result line.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::record::{ErrorKind, Record, parse_rfc3339};
use crate::stats::RecordFacts;
use crate::timing::{AttemptTime, Timing, Waits};

/// One record, as statistics see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The counts' view: ok, status, kind, attempts, duration.
    pub facts: RecordFacts,
    /// The error message, if the request failed.
    pub message: Option<String>,
    /// The first attempt's start; `None` when nothing was sent.
    pub started_at: Option<SystemTime>,
    /// The request's origin (`scheme://host:port`), when one of its
    /// attempts paused it (429 or 503): the only use of it, and parsing a
    /// URL per record would cost a busy run.
    pub origin: Option<String>,
    /// Waits and attempts; `None` for records without them (nothing sent,
    /// or written by a sluice before they existed).
    pub timing: Option<Timing>,
}

impl Sample {
    /// The sample of a record.
    pub fn of(r: &Record) -> Sample {
        Sample {
            facts: r.into(),
            message: r.error.as_ref().map(|e| e.message.clone()),
            started_at: r.started_at,
            origin: paused(r.timing.as_deref())
                .then(|| r.url.as_deref().and_then(origin_of))
                .flatten(),
            timing: r.timing.as_deref().cloned(),
        }
    }

    /// Reads a result line (without its newline). The error says what is
    /// wrong with it, for a message that names the file and line.
    ///
    /// # Errors
    ///
    /// When the line is not a sluice record or a batch result line.
    pub fn from_json(line: &str) -> Result<Sample, String> {
        let l: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let time = |field: &str, text: Option<&str>| match text {
            None => Ok(None),
            Some(t) => parse_rfc3339(t)
                .map(Some)
                .ok_or_else(|| format!("{field} `{t}` is not an RFC 3339 time")),
        };
        let started_at = time("started_at", l.started_at.as_deref())?;
        let queued_at = time("queued_at", l.queued_at.as_deref())?;
        let duration = Duration::try_from_secs_f64(l.duration_ms / 1000.0)
            .map_err(|_| format!("duration_ms {} is not a duration", l.duration_ms))?;
        let timing = match (queued_at, l.attempt_log) {
            (Some(queued_at), Some(attempts)) if !attempts.is_empty() => Some(Timing {
                queued_at,
                waits: l.wait_ms.unwrap_or_default(),
                attempts,
            }),
            _ => None,
        };
        Ok(Sample {
            facts: RecordFacts {
                ok: l.ok,
                status: l.status,
                kind: l.error.as_ref().map(|e| e.kind),
                attempts: l.attempts,
                duration,
            },
            message: l.error.map(|e| e.message),
            started_at,
            origin: paused(timing.as_ref())
                .then(|| l.url.as_deref().and_then(origin_of))
                .flatten(),
            timing,
        })
    }

    /// When the outcome was known: the first start plus the duration.
    pub fn ended_at(&self) -> Option<SystemTime> {
        self.started_at.map(|s| s + self.facts.duration)
    }

    /// When the request entered the engine (its first start when unknown).
    pub fn queued_at(&self) -> Option<SystemTime> {
        self.timing
            .as_ref()
            .map(|t| t.queued_at)
            .or(self.started_at)
    }
}

/// A result line's fields that statistics read; anything else is ignored.
#[derive(Deserialize)]
struct Line {
    url: Option<String>,
    ok: bool,
    status: Option<u16>,
    #[serde(default)]
    attempts: u32,
    started_at: Option<String>,
    #[serde(default)]
    duration_ms: f64,
    error: Option<LineError>,
    queued_at: Option<String>,
    wait_ms: Option<Waits>,
    attempt_log: Option<Vec<AttemptTime>>,
}

#[derive(Deserialize)]
struct LineError {
    kind: ErrorKind,
    message: String,
}

/// An attempt that was told to wait by a 429 or 503 pauses its origin.
fn paused(timing: Option<&Timing>) -> bool {
    timing.is_some_and(|t| {
        t.attempts
            .iter()
            .any(|a| matches!(a.status, Some(429 | 503)))
    })
}

fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_record_reads_back_as_the_same_sample() {
        let line = r#"{"id":"a","line":1,"method":"GET","url":"http://h:81/x?key=REDACTED","ok":false,"status":503,"attempts":2,"started_at":"2026-11-25T18:52:31.123Z","duration_ms":1500.5,"queued_at":"2026-11-25T18:52:31.100Z","wait_ms":{"queue":23.0,"rate":0.0,"retry":1000.0},"attempt_log":[{"start_ms":0.0,"duration_ms":250.0,"status":503,"error":"http_status","wait_ms":1000.0},{"start_ms":1250.0,"duration_ms":250.5}],"error":{"kind":"http_status","message":"HTTP 503 Service Unavailable"}}"#;
        let s = Sample::from_json(line).unwrap();
        assert_eq!(s.facts.kind, Some(ErrorKind::HttpStatus));
        assert_eq!(s.origin.as_deref(), Some("http://h:81"));
        assert_eq!(s.message.as_deref(), Some("HTTP 503 Service Unavailable"));
        let t = s.timing.as_ref().unwrap();
        assert_eq!(t.attempts.len(), 2);
        assert_eq!(t.attempts[0].status, Some(503));
        assert_eq!(t.service_ms(), 500.5);
        let started = s.started_at.unwrap();
        assert_eq!(
            started.duration_since(t.queued_at).unwrap(),
            Duration::from_millis(23)
        );
        assert_eq!(
            s.ended_at().unwrap(),
            started + Duration::from_micros(1_500_500)
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(Sample::from_json("{\"ok\":true").is_err());
        let e = Sample::from_json(r#"{"ok":true,"started_at":"yesterday"}"#).unwrap_err();
        assert!(e.contains("started_at `yesterday`"), "{e}");
        // Records of older versions (no timing) still count.
        let old = Sample::from_json(r#"{"ok":true,"status":200,"attempts":1,"started_at":"2026-11-25T18:52:31.123Z","duration_ms":5}"#).unwrap();
        assert!(old.timing.is_none() && old.facts.ok);
    }
}
