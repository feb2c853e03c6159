//! Headerless discovery on a made-up clock: a simulated server refuses like
//! nginx's `limit_req` (a meter drained at a fixed rate; a request that
//! would overflow it is refused with 429, with or without `Retry-After`,
//! and no rate-limit header), and answers after a random delay each way.
//! The scheduler, told nothing, must come close to the ideal makespan with
//! few refusals (the goal: within 15%, at most 5% refused).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};

use crate::attempt::Outcome;
use crate::event::Event;
use crate::request::Request;
use crate::scheduler::simulated::{Network, delayed};

/// nginx's `limit_req rate=… burst=…` without `nodelay`'s queue: a meter
/// of `burst` draining `rate` a second.
struct Meter {
    burst: f64,
    rate: f64,
    level: f64,
    last: f64,
    retry_after: bool,
    arrivals: Vec<f64>,
    refused: u64,
}

impl Meter {
    fn new(burst: u64, rate: f64, retry_after: bool) -> Meter {
        Meter {
            burst: burst as f64,
            rate,
            level: 0.0,
            last: 0.0,
            retry_after,
            arrivals: Vec::new(),
            refused: 0,
        }
    }

    /// A request arrives `t` seconds after the start: its answer.
    fn arrive(&mut self, t: f64) -> Outcome {
        self.level = (self.level - (t - self.last) * self.rate).max(0.0);
        self.last = t;
        self.arrivals.push(t);
        let mut headers = HeaderMap::new();
        let status = if self.level + 1.0 <= self.burst {
            self.level += 1.0;
            200
        } else {
            self.refused += 1;
            if self.retry_after {
                let next = (self.level + 1.0 - self.burst) / self.rate;
                headers.insert(
                    "retry-after",
                    HeaderValue::from(next.ceil().max(1.0) as u64),
                );
            }
            429
        };
        crate::scheduler::simulated::response(status, headers, None)
    }
}

/// What a run came to.
#[derive(Debug)]
struct Run {
    /// From the first arrival at the server to the last, in seconds.
    makespan: f64,
    refused: u64,
    ok: u64,
    /// When each pause began and how long it was (seconds).
    pauses: Vec<(f64, f64)>,
    /// When each discovered rate was told, and the rate.
    rates: Vec<(f64, f64)>,
}

/// `n` requests at concurrency `c` against `meter`, with delays each way
/// drawn from [0, `delay`] and timers firing up to `late` after they were
/// asked for.
fn simulate(
    meter: &mut Meter,
    n: u64,
    c: usize,
    delay: Duration,
    late: Duration,
    seed: u64,
) -> Run {
    let url = url::Url::parse("http://127.0.0.1:8080/x").expect("a URL");
    let requests = (1..=n).map(|line| Request::get(line, url.clone()));
    let wall = SystemTime::UNIX_EPOCH;
    let net = Network {
        c,
        delay,
        late,
        seed,
        wall,
    };
    let (_, ok, events) = delayed(requests, &net, |t, _| meter.arrive(t));
    let (mut pauses, mut rates) = (Vec::new(), Vec::new());
    for (at, event) in events {
        match event {
            Event::Paused { wait, .. } => pauses.push((at, wait.as_secs_f64())),
            Event::Learned(l) => rates.push((at, l.requests_per_second.unwrap_or(0.0))),
            _ => {}
        }
    }
    let first = meter.arrivals.first().copied().unwrap_or(0.0);
    let last = meter.arrivals.last().copied().unwrap_or(0.0);
    Run {
        makespan: last - first,
        refused: meter.refused,
        ok,
        pauses,
        rates,
    }
}

/// The case, as `tests/cli/discovered.rs` runs it against the
/// mock: nginx's `rate=50r/s burst=10`, 1,000 requests at `-c 15`, ideal
/// (1000 − 10) / 50 = 19.8 s; answers within `delay_ms` each way, timers
/// up to `late_ms` late (a loaded machine: more of both).
fn nginx(retry_after: bool, delay_ms: f64, late_ms: f64, seed: u64) -> Run {
    let mut meter = Meter::new(10, 50.0, retry_after);
    let delay = Duration::from_secs_f64(delay_ms / 1000.0);
    let late = Duration::from_secs_f64(late_ms / 1000.0);
    let run = simulate(&mut meter, 1000, 15, delay, late, seed);
    assert_eq!(run.ok, 1000, "{run:?}");
    run
}

const IDEAL: f64 = 19.8;

/// Each run's makespan over the ideal, checking it ended ok with at most
/// 5% refused.
fn ratios(retry_after: bool, delay_ms: f64, late_ms: f64) -> Vec<f64> {
    (1..=3)
        .map(|seed| {
            let run = nginx(retry_after, delay_ms, late_ms, seed);
            assert!(run.refused <= 50, "{run:?}");
            eprintln!(
                "Retry-After {retry_after}, delays {delay_ms} ms, seed {seed}: {:.2} s ({:.1}% over), {} refused, {} pauses, rates {:?}",
                run.makespan,
                (run.makespan / IDEAL - 1.0) * 100.0,
                run.refused,
                run.pauses.len(),
                run.rates
            );
            run.makespan / IDEAL
        })
        .collect()
}

/// Two pauses of a second cannot be avoided (the first refusal, and the
/// one that ends slow start: 10% of this batch). Before the climb was
/// replayed the rest cost 2-4% on a quick server (12-14% over); now under
/// 1%. On a slow, jittery one (15 ms each way, timers 8 ms late) the replay
/// is capped by what the server accepted over the climb (a guard against
/// send and arrival times that differ), which lands low: 21-25% over
/// (before: 30-34%, slow start ended at 40/s).
#[test]
fn headerless_with_retry_after_comes_within_15_percent_of_the_ideal() {
    for (delay, late, most) in [(1.5, 1.0, 1.12), (15.0, 8.0, 1.27)] {
        let r = ratios(true, delay, late);
        assert!(r.iter().all(|&r| r <= most), "delay {delay} ms: {r:?}");
    }
}

#[test]
fn headerless_without_retry_after_comes_close_to_the_ideal() {
    for (delay, late, most) in [(1.5, 1.0, 1.06), (15.0, 8.0, 1.25)] {
        let r = ratios(false, delay, late);
        assert!(r.iter().all(|&r| r <= most), "delay {delay} ms: {r:?}");
    }
}

/// A server that refuses some lines whatever the pace (a key without
/// quota, a backend shard down): every `every`-th line is answered
/// `status` (no `Retry-After`, no rate-limit header) at every attempt;
/// the others go through `meter`, when there is one, else succeed.
struct KeyBound {
    every: u64,
    status: u16,
    meter: Option<Meter>,
    arrivals: Vec<f64>,
    refused: u64,
}

impl KeyBound {
    fn new(every: u64, status: u16, meter: Option<Meter>) -> KeyBound {
        KeyBound {
            every,
            status,
            meter,
            arrivals: Vec::new(),
            refused: 0,
        }
    }

    fn arrive(&mut self, t: f64, line: u64) -> Outcome {
        self.arrivals.push(t);
        if let Some(refusal) = self
            .meter
            .as_mut()
            .map(|m| m.arrive(t))
            .filter(|o| matches!(o, Outcome::Response(r) if r.status != 200))
        {
            self.refused += 1;
            return refusal;
        }
        let status = if line.is_multiple_of(self.every) {
            self.status
        } else {
            200
        };
        self.refused += u64::from(status != 200);
        crate::scheduler::simulated::response(status, HeaderMap::new(), None)
    }
}

/// What a run against a [`KeyBound`] server came to.
#[derive(Debug)]
struct KeyRun {
    /// When the last line the server does not refuse by key was recorded
    /// (seconds since the start).
    others_done: f64,
    /// Records of each line (index 0 unused).
    records: Vec<u32>,
    ok: u64,
    refused: u64,
    pauses: usize,
    /// When each discovered rate was told, and the rate.
    rates: Vec<(f64, f64)>,
}

impl KeyRun {
    /// Every line got exactly one record.
    fn one_record_each(&self) -> bool {
        self.records.iter().skip(1).all(|&n| n == 1)
    }
}

fn key_bound_run(server: &mut KeyBound, n: u64, c: usize, delay_ms: f64, seed: u64) -> KeyRun {
    let url = url::Url::parse("http://127.0.0.1:8080/x").expect("a URL");
    let requests = (1..=n).map(|line| Request::get(line, url.clone()));
    let delay = Duration::from_secs_f64(delay_ms / 1000.0);
    let net = Network {
        c,
        delay,
        late: Duration::from_millis(1),
        seed,
        wall: SystemTime::UNIX_EPOCH,
    };
    let every = server.every;
    let (_, ok, events) = delayed(requests, &net, |t, req| server.arrive(t, req.line));
    let mut run = KeyRun {
        others_done: 0.0,
        records: vec![0; n as usize + 1],
        ok,
        refused: server.refused,
        pauses: 0,
        rates: Vec::new(),
    };
    for (at, event) in events {
        match event {
            Event::Record(r) => {
                if let Some(count) = run.records.get_mut(r.line as usize) {
                    *count += 1;
                }
                if r.line % every != 0 {
                    run.others_done = run.others_done.max(at);
                }
            }
            Event::Paused { .. } => run.pauses += 1,
            Event::Learned(l) => run.rates.push((at, l.requests_per_second.unwrap_or(0.0))),
            _ => {}
        }
    }
    run
}

/// Every tenth line refused whatever the pace (429 or 503 without
/// `Retry-After` at each of its 4 attempts), the server otherwise taking
/// all 15 slots' worth (50 ms round trips: about 300 a second). Before
/// the key-bound rule each refusal lowered the rate and paused the origin:
/// the rate sat at its floor and the others took 2,525 s, against 6.7 s
/// with no refusals. Now, after 8 lowerings the rule sees lowering does
/// not pay and the rate climbs back (1,773/s told last): 556 s. What is
/// left is the pauses (573): every 429 or 503 still pauses its origin for
/// the backoff, as the contract says, whatever the rate.
#[test]
fn refusals_bound_to_lines_do_not_drive_the_rate_to_its_floor() {
    for status in [429, 503] {
        let mut clean = KeyBound::new(u64::MAX, status, None);
        let base = key_bound_run(&mut clean, 2000, 15, 50.0, 1);
        let mut server = KeyBound::new(10, status, None);
        let run = key_bound_run(&mut server, 2000, 15, 50.0, 1);
        eprintln!(
            "{status}: {:.2} s against {:.2} s with no refusals, {} pauses, rates {:?}",
            run.others_done, base.others_done, run.pauses, run.rates
        );
        assert!(run.one_record_each() && base.one_record_each(), "{run:?}");
        assert_eq!((run.ok, run.refused), (1800, 800), "{run:?}");
        // A quarter of the time at the floor, and every refusal a pause.
        assert!(run.others_done <= 2525.0 / 4.0, "{run:?}");
        assert!(run.pauses >= 500, "every refusal pauses: {run:?}");
        // The rate told last is far above what the server needs paced.
        let last = run.rates.last().map_or(0.0, |r| r.1);
        assert!(last >= 300.0, "{run:?}");
    }
}

/// A real limiter (nginx's 50/s, burst 10) in front of a server that
/// refuses every tenth line whatever the pace (the limiter counts those
/// too). Before the key-bound rule the rate sat at its floor: 1,254 s for
/// the 900 other lines (1,255 s with `Retry-After: 1` on the limiter's
/// refusals). Now 380 s and 369 s, the limiter refusing 14 and 15: the
/// key-bound refusals' own pauses (about 400) keep the pace below the
/// limiter's, so the limiter is seldom met, and it is never hammered.
#[test]
fn a_real_limiter_behind_key_bound_refusals_is_still_found() {
    for (retry_after, seed) in [(false, 1), (true, 2)] {
        let meter = Meter::new(10, 50.0, retry_after);
        let mut server = KeyBound::new(10, 429, Some(meter));
        let run = key_bound_run(&mut server, 1000, 15, 1.5, seed);
        let limited = server.meter.as_ref().map_or(0, |m| m.refused);
        eprintln!(
            "Retry-After {retry_after}: {:.2} s, {limited} refused by the limiter, {} pauses, rates {:?}",
            run.others_done, run.pauses, run.rates
        );
        assert!(run.one_record_each(), "{run:?}");
        assert_eq!(run.ok, 900, "{run:?}");
        assert!(run.others_done <= 1254.0 / 2.5, "{run:?}");
        assert!(limited <= 30, "{limited} refused by the limiter");
    }
}
