//! Statistics computed from records alone (as vegeta computes reports from
//! results), so a summary or a report can cover records written by earlier
//! runs too: counts and latency ([`Tally`]), counts over time
//! ([`Timeline`]), and everything a report shows ([`Report`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::record::{ErrorKind, Record};

mod bins;
mod report;
mod sample;
mod timeline;

pub use bins::{Bin, bins};
pub use report::{ErrorMessages, Report, TimeSplit, TopMessages};
pub use sample::Sample;
pub use timeline::{Interval, MAX_INTERVALS, Pause, Timeline, percentile_ms};

/// The facts of one record that statistics need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordFacts {
    /// 2xx final response.
    pub ok: bool,
    /// The final status, if any.
    pub status: Option<u16>,
    /// The error kind, if any.
    pub kind: Option<ErrorKind>,
    /// Attempts started.
    pub attempts: u32,
    /// First start to final outcome.
    pub duration: Duration,
}

impl From<&Record> for RecordFacts {
    fn from(r: &Record) -> RecordFacts {
        RecordFacts {
            ok: r.ok,
            status: r.status,
            kind: r.error_kind(),
            attempts: r.attempts,
            duration: r.duration,
        }
    }
}

/// Which protocol versions carried the responses, per origin: origin →
/// "HTTP/2 TLSv1.3" → responses. Only records with a response of this
/// run count (earlier runs' records do not say).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Protocols(pub BTreeMap<String, BTreeMap<String, u64>>);

impl Protocols {
    /// Counts one record's response, if it had one.
    pub fn note(&mut self, r: &Record) {
        let (Some(t), Some(url)) = (r.transport, r.url.as_deref()) else {
            return;
        };
        let Some(origin) = origin_of(url) else {
            return;
        };
        self.add(&origin, t.http_version, t.tls_version, 1);
    }

    /// Counts `n` responses of `origin` over these versions.
    fn add(&mut self, origin: &str, http: &'static str, tls: Option<&'static str>, n: u64) {
        let versions = versions_label(http, tls);
        // Looked up before allocating.
        let by_version = match self.0.get_mut(origin) {
            Some(found) => found,
            None => self.0.entry(origin.to_owned()).or_default(),
        };
        match by_version.get_mut(versions.as_ref()) {
            Some(count) => *count += n,
            None => {
                by_version.insert(versions.into_owned(), n);
            }
        }
    }
}

/// [`Protocols`] counted a record at a time: a run's records come mostly
/// from one origin over one protocol, so the last origin and versions are
/// remembered with their records not yet counted, and a record like the
/// last costs a comparison of its URL's start, not an origin's parse and
/// two map lookups by text.
#[derive(Debug, Default)]
pub struct ProtocolCounter {
    counted: Protocols,
    last: Option<LastProtocol>,
}

/// The origin and versions of the last record counted, and how many
/// records like it are not yet in the map.
#[derive(Debug)]
struct LastProtocol {
    origin: String,
    http: &'static str,
    tls: Option<&'static str>,
    pending: u64,
}

impl ProtocolCounter {
    /// Counts one record's response, if it had one (as [`Protocols::note`]).
    pub fn note(&mut self, r: &Record) {
        let (Some(t), Some(url)) = (r.transport, r.url.as_deref()) else {
            return;
        };
        if let Some(last) = &mut self.last
            && same_text(last.http, t.http_version)
            && match (last.tls, t.tls_version) {
                (Some(a), Some(b)) => same_text(a, b),
                (a, b) => a.is_none() && b.is_none(),
            }
            && has_origin(url, &last.origin)
        {
            last.pending += 1;
            return;
        }
        let Some(origin) = origin_of(url) else {
            return;
        };
        self.settle();
        self.last = Some(LastProtocol {
            origin: origin.into_owned(),
            http: t.http_version,
            tls: t.tls_version,
            pending: 1,
        });
    }

    /// Every record counted so far.
    pub fn counts(&self) -> Protocols {
        let mut all = self.counted.clone();
        if let Some(last) = &self.last {
            all.add(&last.origin, last.http, last.tls, last.pending);
        }
        all
    }

    /// Moves the last origin's pending records into the map.
    fn settle(&mut self) {
        if let Some(last) = self.last.take() {
            (self.counted).add(&last.origin, last.http, last.tls, last.pending);
        }
    }
}

/// Equal texts, most often the same constant (compared by address first).
fn same_text(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// True when `url`, a record's URL, is at `origin` (a serialised origin):
/// its text starts with the origin's and its authority ends there. An
/// origin's text has no user information, so a URL with some never
/// matches (it is then parsed).
fn has_origin(url: &str, origin: &str) -> bool {
    url.strip_prefix(origin)
        .is_some_and(|rest| matches!(rest.bytes().next(), None | Some(b'/' | b'?' | b'#')))
}

/// "HTTP/1.1 TLSv1.3": the versions that carried a response, as the
/// summary names them. The common pairs are constants: this runs once per
/// record, and formatting allocated for every `https://` one.
fn versions_label(http: &'static str, tls: Option<&'static str>) -> Cow<'static, str> {
    let Some(tls) = tls else {
        return Cow::Borrowed(http);
    };
    Cow::Borrowed(match (http, tls) {
        ("HTTP/1.1", "TLSv1.3") => "HTTP/1.1 TLSv1.3",
        ("HTTP/1.1", "TLSv1.2") => "HTTP/1.1 TLSv1.2",
        ("HTTP/2", "TLSv1.3") => "HTTP/2 TLSv1.3",
        ("HTTP/2", "TLSv1.2") => "HTTP/2 TLSv1.2",
        _ => return Cow::Owned(format!("{http} {tls}")),
    })
}

/// The origin of a record's URL as `Url::origin` serialises it. A record's
/// URL was written by `url` (scheme and host lower case, no default port),
/// so without user info its origin is the text before the path.
fn origin_of(url: &str) -> Option<Cow<'_, str>> {
    // One pass over the authority's bytes (the separators are ASCII): this
    // runs once per record.
    let bytes = url.as_bytes();
    let authority_at = if url.starts_with("http://") {
        7
    } else if url.starts_with("https://") {
        8
    } else {
        bytes.windows(3).position(|w| w == b"://")? + 3
    };
    let mut end = url.len();
    let mut userinfo = false;
    for (i, &b) in bytes[authority_at..].iter().enumerate() {
        match b {
            b'/' | b'?' | b'#' => {
                end = authority_at + i;
                break;
            }
            b'@' => userinfo = true,
            _ => {}
        }
    }
    if userinfo {
        let parsed = url::Url::parse(url).ok()?;
        return Some(Cow::Owned(parsed.origin().ascii_serialization()));
    }
    Some(Cow::Borrowed(&url[..end]))
}

/// Counts by outcome, status and error kind, and a latency histogram.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Records counted.
    pub records: u64,
    /// Of which ok.
    pub ok: u64,
    /// Count by final status.
    pub by_status: BTreeMap<u16, u64>,
    /// Count by error kind.
    pub by_kind: BTreeMap<ErrorKind, u64>,
    /// Attempts started, over all records.
    pub attempts: u64,
    /// Attempts beyond each record's first.
    pub retries: u64,
    latency_us: Histogram<u64>,
    max_ms: f64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            records: 0,
            ok: 0,
            by_status: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            attempts: 0,
            retries: 0,
            latency_us: Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3)
                .expect("bounds from 1µs to a day at 3 digits are valid"),
            max_ms: 0.0,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Tally {
    /// Counts one record.
    pub fn add(&mut self, o: RecordFacts) {
        self.records += 1;
        self.ok += u64::from(o.ok);
        if let Some(s) = o.status {
            *self.by_status.entry(s).or_default() += 1;
        }
        if let Some(k) = o.kind {
            *self.by_kind.entry(k).or_default() += 1;
        }
        self.attempts += u64::from(o.attempts);
        self.retries += u64::from(o.attempts.saturating_sub(1));
        if o.attempts > 0 {
            // Converted from a `u64`, not the `u128` of `duration_ms` (a
            // library call each): the same float below 2^64 microseconds.
            let (us, ms) = match u64::try_from(o.duration.as_micros()) {
                Ok(us) => (us, us as f64 / 1000.0),
                Err(_) => (u64::MAX, crate::record::duration_ms(o.duration)),
            };
            self.max_ms = self.max_ms.max(ms);
            self.latency_us.saturating_record(us.max(1));
        }
    }

    /// Counts attempts of a request that got no record (dropped by a
    /// drain or a closed origin): the server saw them all the same.
    pub fn add_unrecorded_attempts(&mut self, attempts: u32) {
        self.attempts += u64::from(attempts);
        self.retries += u64::from(attempts.saturating_sub(1));
    }

    /// Records that failed.
    pub fn failed(&self) -> u64 {
        self.records - self.ok
    }

    /// Percentiles over records with at least one attempt; `None` when there are none.
    pub fn latency(&self) -> Option<Latency> {
        if self.latency_us.is_empty() {
            return None;
        }
        // Percentiles are the middle of their bucket (within 0.05% at 3
        // significant digits); the maximum is exact.
        let h = &self.latency_us;
        let at =
            |q: f64| (h.median_equivalent(h.value_at_quantile(q)) as f64 / 1000.0).min(self.max_ms);
        Some(Latency {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: self.max_ms,
        })
    }
}

impl Tally {
    /// The latency histogram as a report draws it (see [`bins`]).
    pub fn latency_bins(&self) -> Vec<Bin> {
        let max_us = (self.max_ms * 1000.0).round() as u64;
        bins::bins(&self.latency_us, max_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let mut t = Tally::default();
        for i in 1..=100u64 {
            t.add(RecordFacts {
                ok: i % 10 != 0,
                status: Some(if i % 10 == 0 { 500 } else { 200 }),
                kind: (i % 10 == 0).then_some(ErrorKind::HttpStatus),
                attempts: if i % 10 == 0 { 4 } else { 1 },
                duration: Duration::from_millis(i),
            });
        }
        t.add(RecordFacts {
            ok: false,
            status: None,
            kind: Some(ErrorKind::InvalidRequest),
            attempts: 0,
            duration: Duration::ZERO,
        });
        assert_eq!((t.records, t.ok, t.failed()), (101, 90, 11));
        assert_eq!(t.by_status[&500], 10);
        assert_eq!(t.by_kind[&ErrorKind::InvalidRequest], 1);
        assert_eq!((t.attempts, t.retries), (130, 30));
        let l = t.latency().unwrap();
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert_eq!(l.max_ms, 100.0, "{l:?}");
    }

    /// The fast origin of a written URL is the one `url` gives.
    #[test]
    fn origin_of_a_record_url_is_urls_origin() {
        for written in [
            "http://127.0.0.1:8080/fast?x=1",
            "https://api.example.com/v1/messages",
            "https://example.com:8443",
            "http://[::1]:3000/a#b",
            "http://user:REDACTED@example.com:81/x",
            "https://xn--bcher-kva.example/p?q",
            "http://user@example.com/",
            "https://example.com/a@b",
            "ws://example.com:9/x",
        ] {
            let url = url::Url::parse(written).unwrap().to_string();
            let want = url::Url::parse(&url)
                .unwrap()
                .origin()
                .ascii_serialization();
            assert_eq!(origin_of(&url).as_deref(), Some(want.as_str()), "{url}");
        }
    }

    /// Counting a record at a time, remembering the last origin, counts
    /// as `Protocols::note` does, whatever the order of origins and
    /// versions (user information, ports, paths and queries included).
    #[test]
    fn the_counter_counts_as_protocols_do() {
        let urls = [
            "http://127.0.0.1:8080/fast?x=1",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:80800/fast",
            "http://127.0.0.1:8080@evil.example/x",
            "http://user:REDACTED@127.0.0.1:8080/x",
            "https://example.com/a@b",
            "https://example.com#f",
            "https://example.com?q",
            "https://example.community/",
        ];
        let versions = [
            ("HTTP/1.1", None),
            ("HTTP/1.1", Some("TLSv1.3")),
            ("HTTP/2", Some("TLSv1.3")),
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        let (mut counter, mut protocols) = (ProtocolCounter::default(), Protocols::default());
        for i in 0..2_000 {
            let mut r = Record::unsent(
                crate::record::Id::line(1),
                1,
                None,
                None,
                ErrorKind::Connect,
                String::new(),
            );
            // Runs of the same origin, as a run's records mostly come.
            let url = urls[rng.usize(..urls.len()).min(i % 7)];
            r.url = (i % 13 != 0).then(|| url.to_string());
            let (http, tls) = versions[rng.usize(..versions.len()) * usize::from(i % 5 == 0)];
            r.transport = (i % 11 != 0).then_some(crate::record::Transport {
                http_version: http,
                tls_version: tls,
            });
            counter.note(&r);
            protocols.note(&r);
            if i % 500 == 0 {
                assert_eq!(counter.counts(), protocols, "after {i}");
            }
        }
        assert_eq!(counter.counts(), protocols);
        assert!(protocols.0.len() > 3, "{protocols:?}");
    }

    /// The constant labels are the formatted ones.
    #[test]
    fn versions_label_is_http_then_tls() {
        for http in ["HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"] {
            assert_eq!(versions_label(http, None), http);
            for tls in ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"] {
                assert_eq!(versions_label(http, Some(tls)), format!("{http} {tls}"));
            }
        }
    }
}
