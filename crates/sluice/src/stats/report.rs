//! Everything a report shows, computed from records alone (vegeta's model):
//! the same numbers whether the records arrive from a running batch or are
//! read back from one or several result files.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use crate::record::ErrorKind;
use crate::stats::{Sample, Tally, Timeline};

/// Distinct messages kept per error kind; others are counted together.
const MAX_MESSAGES: usize = 1_000;

/// Separate busy stretches kept before the closest ones merge.
const MAX_STRETCHES: usize = 4_096;

/// Counts, latency, time split, errors and the timeline of a set of records.
#[derive(Debug, Default)]
pub struct Report {
    /// Counts and the latency histogram, as the summary shows them.
    pub tally: Tally,
    /// Counts over time.
    pub timeline: Timeline,
    /// Where the requests' time went.
    pub split: TimeSplit,
    /// Error messages by kind.
    pub errors: ErrorMessages,
    /// Stretches of time with a request in the engine: ns since 1970, start to end.
    busy: BTreeMap<u64, u64>,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
}

impl Report {
    /// Counts one record.
    pub fn add(&mut self, s: &Sample) {
        self.tally.add(s.facts);
        self.timeline.add(s);
        self.split.add(s);
        if let (Some(kind), Some(message)) = (s.facts.kind, &s.message) {
            self.errors.add(kind, message);
        }
        if let (Some(from), Some(to)) = (s.queued_at(), s.ended_at()) {
            self.first = Some(self.first.map_or(from, |f| f.min(from)));
            self.last = Some(self.last.map_or(to, |l| l.max(to)));
            self.busy(nanos(from), nanos(to));
        }
    }

    /// The first request's entry into the engine (its start when unknown).
    pub fn first(&self) -> Option<SystemTime> {
        self.first
    }

    /// The last outcome.
    pub fn last(&self) -> Option<SystemTime> {
        self.last
    }

    /// Time during which at least one request was in the engine (queued,
    /// waiting or in flight): a single run's wall time, and for a file that
    /// several runs (`--resume`) wrote, the sum of theirs without the gaps.
    pub fn busy_time(&self) -> Duration {
        Duration::from_nanos(self.busy.iter().map(|(a, b)| b - a).sum())
    }

    fn busy(&mut self, from: u64, to: u64) {
        let (mut from, mut to) = (from, to.max(from));
        // Absorb every stretch that overlaps or touches [from, to].
        while let Some((&a, &b)) = self.busy.range(..=to).next_back() {
            if b < from {
                break;
            }
            self.busy.remove(&a);
            from = from.min(a);
            to = to.max(b);
        }
        self.busy.insert(from, to);
        if self.busy.len() > MAX_STRETCHES {
            self.close_smallest_gap();
        }
    }

    /// Bounds memory when input trickled in: the two stretches closest to
    /// each other become one.
    fn close_smallest_gap(&mut self) {
        let stretches: Vec<(u64, u64)> = self.busy.iter().map(|(a, b)| (*a, *b)).collect();
        let Some(i) = (1..stretches.len()).min_by_key(|&i| stretches[i].0 - stretches[i - 1].1)
        else {
            return;
        };
        self.busy.remove(&stretches[i].0);
        self.busy.insert(stretches[i - 1].0, stretches[i].1);
    }
}

/// Sums of the waits and service time of records that carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeSplit {
    /// Records counted (those with an attempt log).
    pub records: u64,
    /// Waiting for a slot, earlier requests or an origin pause, ms.
    pub queue_ms: f64,
    /// Waiting for a rate or budget token, ms.
    pub rate_ms: f64,
    /// Waiting between a failed attempt and the next, ms.
    pub retry_ms: f64,
    /// In flight (the attempts themselves), ms.
    pub service_ms: f64,
}

impl TimeSplit {
    fn add(&mut self, s: &Sample) {
        let Some(t) = &s.timing else {
            return;
        };
        self.records += 1;
        self.queue_ms += t.waits.queue;
        self.rate_ms += t.waits.rate;
        self.retry_ms += t.waits.retry;
        self.service_ms += t.service_ms();
    }

    /// Everything counted: the time requests spent in the engine, ms.
    pub fn total_ms(&self) -> f64 {
        self.queue_ms + self.rate_ms + self.retry_ms + self.service_ms
    }
}

/// One kind's most frequent messages with their counts, and how many
/// failures of that kind had another message.
pub type TopMessages<'a> = (ErrorKind, Vec<(&'a str, u64)>, u64);

/// How often each error message occurred, per kind, in bounded memory.
#[derive(Clone, Debug, Default)]
pub struct ErrorMessages {
    kinds: BTreeMap<ErrorKind, Messages>,
}

#[derive(Clone, Debug, Default)]
struct Messages {
    counts: HashMap<String, u64>,
    /// Occurrences of messages beyond the first [`MAX_MESSAGES`] distinct ones.
    others: u64,
}

impl ErrorMessages {
    /// Counts one failure.
    pub fn add(&mut self, kind: ErrorKind, message: &str) {
        let m = self.kinds.entry(kind).or_default();
        if let Some(n) = m.counts.get_mut(message) {
            *n += 1;
        } else if m.counts.len() < MAX_MESSAGES {
            m.counts.insert(message.to_string(), 1);
        } else {
            m.others += 1;
        }
    }

    /// Per kind (in the summary's order): its `n` most frequent messages
    /// with their counts, most frequent first, and how many failures had
    /// another message.
    pub fn top(&self, n: usize) -> Vec<TopMessages<'_>> {
        self.kinds
            .iter()
            .map(|(kind, m)| {
                let mut all: Vec<(&str, u64)> =
                    m.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let rest: u64 = all.iter().skip(n).map(|x| x.1).sum::<u64>() + m.others;
                all.truncate(n);
                (*kind, all, rest)
            })
            .collect()
    }
}

fn nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::RecordFacts;
    use std::time::UNIX_EPOCH;

    fn sample(start_s: u64, ms: u64) -> Sample {
        Sample {
            facts: RecordFacts {
                ok: false,
                status: None,
                kind: Some(ErrorKind::Timeout),
                attempts: 1,
                duration: Duration::from_millis(ms),
            },
            message: Some(format!("timed out after {ms}ms")),
            started_at: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000 + start_s)),
            origin: None,
            timing: None,
        }
    }

    #[test]
    fn busy_time_leaves_out_the_gap_between_two_runs() {
        let mut r = Report::default();
        // One run from 0 to 10 s, another a day later from 86400 to 86405 s.
        for s in (0..10).chain(86_400..86_405) {
            r.add(&sample(s, 1_000));
        }
        assert_eq!(r.busy_time(), Duration::from_secs(15));
        assert_eq!(r.tally.records, 15);
    }

    #[test]
    fn top_messages_per_kind() {
        let mut e = ErrorMessages::default();
        for (m, n) in [("a", 3), ("b", 5), ("c", 1)] {
            for _ in 0..n {
                e.add(ErrorKind::Connect, m);
            }
        }
        e.add(ErrorKind::Dns, "no such host");
        let top = e.top(2);
        assert_eq!(top[0], (ErrorKind::Connect, vec![("b", 5), ("a", 3)], 1));
        assert_eq!(top[1], (ErrorKind::Dns, vec![("no such host", 1)], 0));
    }
}
