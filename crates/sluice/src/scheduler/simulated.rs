//! What the scheduler's simulations share (tests only): a response as the
//! driver hands it over, and a run on a made-up clock against a simulated
//! server, with a random delay each way and timers fired late, for the
//! learned and discovered limits' tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::{Action, Scheduler, Ticket};
use crate::attempt::{Outcome, Response};
use crate::config::Config;
use crate::event::Event;
use crate::record::{Body, Transport};
use crate::request::{Input, Request};

/// A complete HTTP/1.1 response.
pub(crate) fn response(status: u16, headers: HeaderMap, body: Option<Body>) -> Outcome {
    Outcome::Response(Box::new(Response {
        status,
        headers,
        body: body.map(crate::attempt::ReadBody::from),
        final_url: None,
        note: None,
        transport: Transport {
            http_version: "HTTP/1.1",
            tls_version: None,
        },
    }))
}

/// What happens next in the simulation, by instant (and a tie-breaker).
enum Next {
    /// The attempt reaches the server.
    Arrive(Ticket),
    /// Its response reaches sluice.
    Answer(Ticket, Outcome),
}

/// The network and the machine a simulated run meets.
pub(crate) struct Network {
    /// The concurrency (`-c`).
    pub c: usize,
    /// Each way's delay is drawn from [0, `delay`].
    pub delay: Duration,
    /// Timers fire up to `late` after the instant asked for (a loaded
    /// machine); none are late when it is zero.
    pub late: Duration,
    /// Seeds the scheduler's generator and the draws of delays.
    pub seed: u64,
    /// The scheduler's wall clock at the start.
    pub wall: SystemTime,
}

impl Network {
    /// A network whose timers fire on time.
    pub(crate) fn on_time(c: usize, delay: Duration, seed: u64, wall: SystemTime) -> Network {
        let late = Duration::ZERO;
        Network {
            c,
            delay,
            late,
            seed,
            wall,
        }
    }
}

/// Runs `requests` over `net` against a server that answers each
/// (`answer`: seconds since the start, the request) as it arrives. Returns
/// (makespan to the last record in seconds, records ok, every event with
/// its time in seconds since the start, records included).
pub(crate) fn delayed(
    requests: impl IntoIterator<Item = Request>,
    net: &Network,
    mut answer: impl FnMut(f64, &Request) -> Outcome,
) -> (f64, u64, Vec<(f64, Event)>) {
    let Network {
        c,
        delay,
        late,
        seed,
        wall,
    } = *net;
    let config = Config::builder()
        .concurrency(std::num::NonZeroUsize::new(c).expect("c > 0"))
        .build()
        .expect("a config");
    let t0 = Instant::now();
    let mut s = Scheduler::new(Arc::new(config), t0, wall, seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut inputs = requests.into_iter().peekable();
    let mut sent: HashMap<Ticket, Arc<Request>> = HashMap::new();
    let mut queue: BTreeMap<(Instant, u64), Next> = BTreeMap::new();
    let (mut now, mut tie, mut ok, mut events) = (t0, 0u64, 0u64, Vec::new());
    let (mut last_record, mut ended) = (t0, false);
    for _ in 0..10_000_000 {
        while s.wants_input()
            && let Some(req) = inputs.next()
        {
            s.offer(Input::from(req), now);
        }
        if !ended && inputs.peek().is_none() {
            s.end_input(now);
            ended = true;
        }
        while let Some(action) = s.next_action() {
            match action {
                Action::Start(a) => {
                    tie += 1;
                    sent.insert(a.ticket, a.request);
                    let at = now + delay.mul_f64(rng.f64());
                    queue.insert((at, tie), Next::Arrive(a.ticket));
                }
                Action::Emit(Event::Record(r)) => {
                    ok += u64::from(r.ok);
                    last_record = now;
                    events.push(((now - t0).as_secs_f64(), Event::Record(r)));
                }
                Action::Emit(e) => events.push(((now - t0).as_secs_f64(), e)),
            }
        }
        if s.finished() {
            return ((last_record - t0).as_secs_f64(), ok, events);
        }
        let event = queue.first_key_value().map(|(k, _)| k.0);
        // A draw only when timers are late, so runs without lateness keep
        // their sequence of delays.
        let wake = match late.is_zero() {
            true => s.next_wake(),
            false => s.next_wake().map(|w| w + late.mul_f64(rng.f64())),
        };
        let Some(at) = [event, wake].into_iter().flatten().min() else {
            panic!("the run stalled");
        };
        now = now.max(at);
        match queue.first_key_value().filter(|(k, _)| k.0 <= now) {
            Some(_) => match queue.pop_first().expect("an event").1 {
                Next::Arrive(ticket) => {
                    let req = sent.get(&ticket).expect("a started request");
                    let outcome = answer((now - t0).as_secs_f64(), req);
                    tie += 1;
                    let back = now + delay.mul_f64(rng.f64());
                    queue.insert((back, tie), Next::Answer(ticket, outcome));
                }
                Next::Answer(ticket, outcome) => s.complete(ticket, outcome, now),
            },
            None => s.advance(now),
        }
    }
    panic!("the simulation did not end");
}

/// [`delayed`], keeping of the events only what the headers taught, in
/// order: the learned limits' tests.
pub(crate) fn learned(
    requests: impl IntoIterator<Item = Request>,
    net: &Network,
    answer: impl FnMut(f64, &Request) -> Outcome,
) -> (f64, u64, Vec<Event>) {
    let (makespan, ok, events) = delayed(requests, net, answer);
    let events = events.into_iter().map(|(_, e)| e);
    let learned = events.filter(|e| matches!(e, Event::Learned(_)));
    (makespan, ok, learned.collect())
}
