//! Learned limits on a made-up clock: a simulated server enforces a limit
//! (a refilling bucket or a fixed window), answers with its rate-limit
//! headers after a random delay each way, and counts refusals. The
//! scheduler, told nothing but what the headers say, must never be refused
//! when it is the server's only client, and must come close to the ideal.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::attempt::Outcome;
use crate::config::Config;
use crate::event::Event;
use crate::request::{Input, Request};
use crate::scheduler::{Action, Scheduler, simulated};

/// Seconds since the Unix epoch at the simulation's start.
const WALL: u64 = 1_700_000_000;

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// OpenAI headers: a bucket of `size` refilled at `size / window`.
    Bucket,
    /// GitHub headers: `size` per window, windows from the start.
    Fixed,
    /// IETF headers in whole seconds (`t` rounded up), windows of whole
    /// seconds starting this far into the server's seconds (0: on them),
    /// and a `Date` when `dated`.
    Ietf { offset: f64, dated: bool },
}

/// The simulated server.
struct Server {
    kind: Kind,
    size: f64,
    window: f64,
    tokens: f64,
    last: f64,
    /// Fixed: the current window and its count.
    index: u64,
    admitted: u64,
    refused: u64,
    /// The arrival (counted from 1) whose `Date` is an hour in the future.
    bad_date: Option<u64>,
}

impl Server {
    fn new(kind: Kind, size: u64, window: f64) -> Server {
        Server {
            kind,
            size: size as f64,
            window,
            tokens: size as f64,
            last: 0.0,
            index: 0,
            admitted: 0,
            refused: 0,
            bad_date: None,
        }
    }

    /// A request arrives `t` seconds after the start: status and headers.
    fn arrive(&mut self, t: f64) -> (u16, HeaderMap) {
        let rate = self.size / self.window;
        let (ok, remaining, reset);
        let mut headers = HeaderMap::new();
        match self.kind {
            Kind::Bucket => {
                self.tokens = (self.tokens + (t - self.last) * rate).min(self.size);
                self.last = t;
                ok = self.tokens >= 1.0;
                if ok {
                    self.tokens -= 1.0;
                }
                remaining = self.tokens.floor();
                reset = (self.size - self.tokens) / rate;
                headers.insert("x-ratelimit-limit-requests", num(self.size));
                headers.insert("x-ratelimit-remaining-requests", num(remaining));
                let ms = format!("{:.3}ms", reset * 1000.0);
                headers.insert("x-ratelimit-reset-requests", text(&ms));
            }
            Kind::Fixed => {
                let index = (t / self.window).floor() as u64;
                if index != self.index {
                    self.index = index;
                    self.tokens = self.size;
                }
                ok = self.tokens >= 1.0;
                if ok {
                    self.tokens -= 1.0;
                }
                remaining = self.tokens;
                reset = (index + 1) as f64 * self.window;
                headers.insert("x-ratelimit-limit", num(self.size));
                headers.insert("x-ratelimit-remaining", num(remaining));
                // Rounded up to the millisecond: never earlier than it is.
                let epoch = format!("{:.3}", WALL as f64 + (reset * 1000.0).ceil() / 1000.0);
                headers.insert("x-ratelimit-reset", text(&epoch));
            }
            Kind::Ietf { offset, dated } => {
                let index = ((t - offset) / self.window).floor() as u64 + 1;
                if index != self.index {
                    self.index = index;
                    self.tokens = self.size;
                }
                ok = self.tokens >= 1.0;
                if ok {
                    self.tokens -= 1.0;
                }
                let end = index as f64 * self.window + offset;
                let policy = format!("\"w\";q={};w={}", self.size, self.window.ceil());
                let state = format!("\"w\";r={};t={}", self.tokens, (end - t).ceil());
                headers.insert("ratelimit-policy", text(&policy));
                headers.insert("ratelimit", text(&state));
                if dated {
                    let arrival = self.admitted + self.refused + 1;
                    let off = if self.bad_date == Some(arrival) {
                        3600
                    } else {
                        0
                    };
                    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL + t as u64 + off);
                    headers.insert("date", text(&httpdate::fmt_http_date(date)));
                }
            }
        }
        if ok {
            self.admitted += 1;
        } else {
            self.refused += 1;
        }
        (if ok { 200 } else { 429 }, headers)
    }
}

fn num(n: f64) -> HeaderValue {
    HeaderValue::from(n as u64)
}

fn text(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("a header value")
}

fn response(status: u16, headers: HeaderMap) -> Outcome {
    simulated::response(status, headers, None)
}

/// Runs `n` requests against `server` at concurrency `c`, with delays each
/// way drawn from [0, `delay`]. Returns (makespan in seconds, records ok,
/// the learned events).
fn simulate(
    server: &mut Server,
    n: u64,
    c: usize,
    delay: Duration,
    seed: u64,
) -> (f64, u64, Vec<Event>) {
    let url = url::Url::parse("http://127.0.0.1:8080/x").expect("a URL");
    let requests = (1..=n).map(|line| Request::get(line, url.clone()));
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL);
    let net = simulated::Network::on_time(c, delay, seed, wall);
    simulated::learned(requests, &net, |t, _| {
        let (status, headers) = server.arrive(t);
        response(status, headers)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Told only what the headers say, sluice is never refused by a bucket
    /// or a window it alone spends, whatever the sizes, rates, concurrency
    /// and delays (the first `-c` requests, sent before any answer, fit).
    #[test]
    fn the_learned_limiter_never_admits_more_than_the_server_allows(
        fixed in any::<bool>(),
        size in 20u64..300,
        window in 0.2f64..3.0,
        c in 1usize..60,
        delay_ms in 0u64..30,
        n in 50u64..400,
        seed in any::<u64>(),
    ) {
        let c = c.min(size as usize);
        let kind = if fixed { Kind::Fixed } else { Kind::Bucket };
        let mut server = Server::new(kind, size, window);
        let (_, ok, _) = simulate(&mut server, n, c, Duration::from_millis(delay_ms), seed);
        prop_assert_eq!(server.refused, 0, "{:?}: {} admitted", kind, server.admitted);
        prop_assert_eq!(ok, n);
    }
}

/// Close to the ideal: a bucket of 100 refilled at 200/s serves 1,000
/// requests in (1000 − 100) / 200 = 4.5 s at best.
#[test]
fn a_bucket_is_used_to_within_a_few_percent() {
    let mut server = Server::new(Kind::Bucket, 100, 0.5);
    let (makespan, ok, events) = simulate(&mut server, 1000, 50, Duration::from_millis(2), 7);
    assert_eq!((ok, server.refused), (1000, 0));
    assert!((4.5..4.5 * 1.03).contains(&makespan), "{makespan} s");
    let Some(Event::Learned(last)) = events.last() else {
        panic!("no learned event: {events:?}");
    };
    assert!(last.last && last.dialect == "openai", "{last:?}");
    let rate = last.requests_per_second.expect("a rate");
    assert!((rate - 200.0).abs() < 2.0, "{rate}");
    assert_eq!(last.burst, 100);
}

/// A fixed window of 100 per 0.5 s serves 1,000 requests in ten windows:
/// the last one starts 4.5 s after the first.
#[test]
fn a_fixed_window_is_used_whole() {
    let mut server = Server::new(Kind::Fixed, 100, 0.5);
    let (makespan, ok, _) = simulate(&mut server, 1000, 50, Duration::from_millis(2), 7);
    assert_eq!((ok, server.refused), (1000, 0));
    assert!((4.5..4.5 * 1.03).contains(&makespan), "{makespan} s");
}

/// With learning off, the same bucket refuses: the headers are what helps.
#[test]
fn without_learning_the_bucket_refuses() {
    let mut server = Server::new(Kind::Bucket, 100, 0.5);
    let events = simulate_off(&mut server, 300, 50);
    assert!(events.is_empty(), "{events:?}");
    assert!(server.refused > 0);
}

/// `simulate` with `learn_limits(false)`, no delays.
fn simulate_off(server: &mut Server, n: u64, c: usize) -> Vec<Event> {
    let config = Config::builder()
        .concurrency(std::num::NonZeroUsize::new(c).expect("c > 0"))
        .learn_limits(false)
        .retries(0)
        .build()
        .expect("a config");
    let t0 = Instant::now();
    let mut s = Scheduler::new(Arc::new(config), t0, SystemTime::UNIX_EPOCH, 1);
    let url = url::Url::parse("http://127.0.0.1:8080/x").expect("a URL");
    let (mut events, mut now) = (Vec::new(), t0);
    for line in 1..=n {
        s.offer(Input::from(Request::get(line, url.clone())), now);
        while let Some(action) = s.next_action() {
            match action {
                Action::Start(a) => {
                    let (status, headers) = server.arrive((now - t0).as_secs_f64());
                    s.complete(a.ticket, response(status, headers), now);
                }
                Action::Emit(e @ Event::Learned(_)) => events.push(e),
                Action::Emit(_) => {}
            }
        }
        now += Duration::from_millis(1);
    }
    events
}

/// A bad header value is told of once per header, however often it comes
/// and whatever it says.
#[test]
fn a_malformed_header_is_told_of_once() {
    use super::{Dispatch, Learned};
    use crate::ratelimit::Headroom;
    let (mut learned, now) = (Learned::default(), Instant::now());
    let mut told = Vec::new();
    for (number, bad) in [(1, "soon"), (2, "later"), (3, "soon")] {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", num(100.0));
        headers.insert("x-ratelimit-remaining-requests", num(50.0));
        headers.insert("x-ratelimit-reset-requests", text(bad));
        let snapshot = crate::ratelimit::observe(&headers, SystemTime::UNIX_EPOCH)
            .expect("an OpenAI snapshot");
        let dispatch = Dispatch {
            number,
            in_flight: 0,
            tokens: Default::default(),
        };
        let learning = learned.observe("o", &snapshot, dispatch, 0, Headroom::FULL, now);
        told.extend(learning.report.map(|r| r.warnings).unwrap_or_default());
    }
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("x-ratelimit-reset-requests"), "{told:?}");
}

/// Whole-second IETF windows of 200 a second: a `Date` places the server's
/// seconds, so each window opens when it does (never early: no refusal);
/// without one, each window is learned from its first answer, a round trip
/// later every window.
#[test]
fn whole_second_windows_open_on_the_servers_seconds() {
    let run = |dated: bool| {
        let mut server = Server::new(Kind::Ietf { offset: 0.0, dated }, 200, 1.0);
        let delay = Duration::from_millis(40);
        let (makespan, ok, _) = simulate(&mut server, 2000, 50, delay, 3);
        assert_eq!((ok, server.refused), (2000, 0), "dated {dated}");
        makespan
    };
    let (dated, undated) = (run(true), run(false));
    // Nine windows' wait, then the last 200 at -c 50 (four round trips of
    // at most 80 ms) and the first answer's phase.
    assert!(dated < 9.0 + 0.4, "{dated} s");
    // Each window a round trip later: the quickest of a wave's answers
    // (about 5 ms here), nine times.
    assert!(undated > dated + 0.03, "{undated} s, dated {dated} s");
}

/// Windows that do not start on the server's seconds: the `Date` misplaces
/// their ends once (at most one wave refused), then sluice reads the
/// resets as they are, and every request ends ok.
#[test]
fn windows_off_the_servers_seconds_cost_one_wave_at_most() {
    let mut server = Server::new(
        Kind::Ietf {
            offset: 0.5,
            dated: true,
        },
        200,
        1.0,
    );
    let (_, ok, _) = simulate(&mut server, 2000, 50, Duration::from_millis(5), 3);
    assert_eq!(ok, 2000);
    assert!(server.refused <= 50, "{} refused", server.refused);
}

/// One response whose `Date` is an hour in the future (a stale cache, a
/// node with a wrong clock) must not place the server's seconds: read as
/// the least lag, it moved every later window's end to "now", and the
/// windows opened early and were refused.
#[test]
fn one_far_off_date_moves_no_window_end() {
    for bad in [1, 2, 300] {
        let mut server = Server::new(
            Kind::Ietf {
                offset: 0.0,
                dated: true,
            },
            200,
            1.0,
        );
        server.bad_date = Some(bad);
        let (makespan, ok, _) = simulate(&mut server, 2000, 50, Duration::from_millis(40), 3);
        assert_eq!((ok, server.refused), (2000, 0), "bad Date on arrival {bad}");
        assert!(
            makespan < 9.0 + 0.4,
            "bad Date on arrival {bad}: {makespan} s"
        );
    }
}
