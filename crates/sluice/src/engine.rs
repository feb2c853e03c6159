//! The run: one driver task carries out what the [`crate::scheduler`]
//! decides (it owns every limit and starts an attempt only when all of them
//! agree, oldest request first), with one timer for its next wake-up.
//! Attempts run as their own tasks; a request waiting to retry holds no slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::alarm::Alarm;
use crate::client::{self, ClientError};
use crate::config::Config;
use crate::ends::{self, EndsIn};
use crate::event::Event;
use crate::request::Input;
use crate::scheduler::{Action, Scheduler};
use crate::shared::{Limiter, Link, link};
use crate::tasks::{Began, Crew, Ended, Fate, Tasks};
use crate::worker::Worker;

/// A running batch: a stream of [`Event`]s that ends when every request has
/// its record (or the run drained). Dropping it cancels everything in flight.
pub struct Run {
    /// The driver hands events over in batches (all of one step's at once),
    /// one channel send for several events; the stream gives them one by one.
    events: mpsc::Receiver<Vec<Event>>,
    /// The rest of the batch received last.
    batch: std::vec::IntoIter<Event>,
    task: JoinHandle<()>,
}

impl Stream for Run {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.batch.next() {
                return Poll::Ready(Some(event));
            }
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.batch = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Run {
    /// The next event already received, without waiting: for a consumer
    /// that takes a batch in one go rather than one poll per event.
    pub fn next_ready(&mut self) -> Option<Event> {
        self.batch.next()
    }

    /// After the stream has ended: `Err` when the engine stopped because of
    /// a bug (a panic) rather than because the work was done, so a caller
    /// never mistakes a crash for a finished run.
    ///
    /// # Errors
    ///
    /// When the engine task panicked (a bug) or was cancelled ([`RunError`]).
    pub async fn join(&mut self) -> Result<(), RunError> {
        match (&mut self.task).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_panic() => Err(RunError::Panicked),
            Err(_) => Err(RunError::Cancelled),
        }
    }
}

/// Why a run's engine stopped before its work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The engine panicked: a bug. Requests without a record were not
    /// written, so a resumed run sends them.
    #[error("the engine stopped on an internal error (a bug: please report it)")]
    Panicked,
    /// The engine's task was cancelled (its runtime is shutting down).
    #[error("the engine was cancelled")]
    Cancelled,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a run on the current tokio runtime, which must have IO and time
/// enabled (as `#[tokio::main]` and `#[tokio::test]` build it: requests
/// need sockets, waits need the timer).
///
/// `inputs` is read with bounded read-ahead; `shutdown` resolving starts a
/// drain: no new starts, waiting requests are dropped unwritten, in-flight
/// ones finish and get their records. Fails only when the HTTP client cannot
/// be built from `config` (for example an unreadable CA certificate).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// let mock = sluice_mock::MockServer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
/// let url = url::Url::parse(&format!("{}/fast", mock.url())).unwrap();
/// let requests = (1..=3).map(move |line| sluice::Input::from(sluice::Request::get(line, url.clone())));
/// let config = sluice::Config::builder().concurrency(std::num::NonZeroUsize::new(2).unwrap()).build().unwrap();
/// let run = sluice::run(config, futures::stream::iter(requests), std::future::pending()).unwrap();
/// let records: Vec<sluice::Record> = run
///     .filter_map(|e| async move { if let sluice::Event::Record(r) = e { Some(*r) } else { None } })
///     .collect()
///     .await;
/// assert_eq!(records.len(), 3);
/// assert!(records.iter().all(|r| r.ok && r.attempts == 1));
/// # }
/// ```
///
/// Every wait of the engine (rates, backoff, pauses) follows tokio's clock
/// (on the real clock under Linux the driver's timer is a `timerfd`, for
/// precision; under a paused clock it is tokio's own), so a run follows
/// tokio's paused clock: code built on `run` can be tested without waiting. Twenty requests at `10/s` take two seconds of paused
/// time and next to none of the wall clock:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use futures::StreamExt;
/// let mock = sluice_mock::MockServer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
/// let url = url::Url::parse(&format!("{}/fast", mock.url())).unwrap();
/// let requests = (1..=20).map(move |line| sluice::Input::from(sluice::Request::get(line, url.clone())));
/// let config = sluice::Config::builder().rate("10/s".parse().unwrap()).build().unwrap();
/// let (t0, wall) = (tokio::time::Instant::now(), std::time::Instant::now());
/// let run = sluice::run(config, futures::stream::iter(requests), std::future::pending()).unwrap();
/// let records = run.filter(|e| std::future::ready(matches!(e, sluice::Event::Record(_)))).count().await;
/// assert_eq!(records, 20);
/// let paused = t0.elapsed().as_secs_f64();
/// assert!((1.9..2.2).contains(&paused), "{paused} s");
/// assert!(wall.elapsed().as_secs_f64() < 1.0);
/// # }
/// ```
///
/// # Errors
///
/// When the HTTP client cannot be built from `config` ([`ClientError`]).
pub fn run<S, F>(config: Config, inputs: S, shutdown: F) -> Result<Run, ClientError>
where
    S: Stream<Item = Input> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    run_shared(config, None, inputs, shutdown)
}

/// [`run`], with the global rate and budget, origin pauses and closures
/// shared on Redis with the other processes of a job ([`crate::shared`]):
/// connect the `limiter` first, so a wrong URL fails before anything starts.
///
/// # Errors
/// As [`run`]: a configuration the HTTP client cannot be built from.
pub fn run_shared<S, F>(
    config: Config,
    limiter: Option<Limiter>,
    inputs: S,
    shutdown: F,
) -> Result<Run, ClientError>
where
    S: Stream<Item = Input> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    start(config, limiter, inputs, shutdown, Placement::Here)
}

/// [`run_shared`], with the attempts (and their connections) on `worker`'s
/// thread when [`splits`] says so, the driver staying on the current
/// runtime: two cores carry a busy unpaced run. Otherwise the run stays on the
/// current runtime whole.
///
/// # Errors
/// As [`run`]: a configuration the HTTP client cannot be built from.
pub fn run_with_worker<S, F>(
    config: Config,
    limiter: Option<Limiter>,
    inputs: S,
    shutdown: F,
    worker: &Worker,
) -> Result<Run, ClientError>
where
    S: Stream<Item = Input> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    start(
        config,
        limiter,
        inputs,
        shutdown,
        Placement::Attempts(worker),
    )
}

/// True when [`run_with_worker`] puts a run's attempts on the worker: the
/// run is not paced (no rate, budget or per-origin rate, nothing shared on
/// Redis) and has at least [`SPLIT_CONCURRENCY`] slots. Every start and end
/// then crosses threads, and only a run with many attempts in flight
/// hands them over in batches large enough to pay for it; a paced run's
/// starts come one or a few at a time, each a wake-up of the worker and
/// another of the driver at its end, more CPU than the work itself (see
/// ARCHITECTURE.md, "The process"). Such runs stay on one thread.
pub fn splits(config: &Config) -> bool {
    config.concurrency.get() >= SPLIT_CONCURRENCY
        && config.rate.is_none()
        && config.budget.is_none()
        && config.per_host_rate.is_none()
        && config.shared.is_none()
}

/// The least `concurrency` a run splits at. Measured on a quiet 2-core
/// machine against a one-thread upstream (BENCHMARKS.md, "A second thread
/// for unpaced runs"): two threads took 6–15% less time at 200 slots (two
/// quiet windows), 6% at 100, as long at 50 and 18% longer at 15.
pub const SPLIT_CONCURRENCY: usize = 100;

/// Where a run's attempts run.
enum Placement<'w> {
    /// On the driver's runtime.
    Here,
    /// On a worker's thread.
    Attempts(&'w Worker),
}

fn start<S, F>(
    config: Config,
    limiter: Option<Limiter>,
    inputs: S,
    shutdown: F,
    placement: Placement<'_>,
) -> Result<Run, ClientError>
where
    S: Stream<Item = Input> + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let placement = match placement {
        Placement::Attempts(_) if !splits(&config) => Placement::Here,
        other => other,
    };
    let client = client::build(&config)?;
    let (tx, rx) = mpsc::channel(EVENT_BATCHES);
    let (ended, ends) = ends::list();
    let config = Arc::new(config);
    let seed = fastrand::u64(..);
    let scheduler = Scheduler::new(Arc::clone(&config), Instant::now(), SystemTime::now(), seed);
    let scheduler_paces = scheduler.paces();
    let began: Option<Began> = scheduler_paces.then(Default::default);
    let crew = Crew {
        client,
        config,
        timers: Default::default(),
        began: began.clone(),
        #[cfg(test)]
        panic_after_exchange: false,
    };
    let tasks = match placement {
        Placement::Attempts(worker) => Tasks::on(worker, crew, ended),
        Placement::Here => Tasks::here(crew, ended),
    };
    let driver = Driver {
        scheduler,
        events: tx,
        outbox: Vec::new(),
        tasks,
        ends,
        shared: limiter.map(Link::start),
        began,
    };
    let task = tokio::spawn(driver.carry_out(Box::pin(inputs), Box::pin(shutdown)));
    Ok(Run {
        events: rx,
        batch: Vec::new().into_iter(),
        task,
    })
}

/// Batches of events the consumer may lag behind by before the driver
/// waits for it (a batch is one step's events: a few, rarely hundreds).
const EVENT_BATCHES: usize = 128;

/// The driver: carries out the scheduler's actions and feeds it what
/// happens (inputs, outcomes, time, shutdown). It decides nothing itself.
struct Driver {
    scheduler: Scheduler,
    events: mpsc::Sender<Vec<Event>>,
    /// Events decided, handed to the consumer as one batch.
    outbox: Vec<Event>,
    /// Attempts running (dropped with the driver, they are cancelled).
    tasks: Tasks,
    /// Each attempt's task sends what became of it here, with its key in
    /// `tasks` (see [`crate::tasks::Ends`]).
    ends: EndsIn,
    /// Under `--redis`, the link to the shared limiter.
    shared: Option<Link>,
    /// When the scheduler paces starts: each attempt's ticket and the
    /// instant its task first ran, read before the next step.
    began: Option<Began>,
}

/// At most this many finished attempts, or input lines already read, are
/// taken in one turn of the driver's loop: their decisions are carried out
/// and their events handed on together (one wake-up of the consumer, one
/// batch), where a turn each cost a `select!` over every source and a
/// hand-over each; the bound keeps the starts they decide from waiting
/// long for the turn's end.
const TURN: usize = 64;

impl Driver {
    async fn carry_out(
        mut self,
        mut inputs: Pin<Box<dyn Stream<Item = Input> + Send>>,
        mut shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) {
        // One timer, moved only when the wake-up it waits for changes.
        let mut alarm = Alarm::new();
        loop {
            if self.act().await.is_err() {
                return; // Nobody is listening any more.
            }
            if self.scheduler.finished() {
                break;
            }
            alarm.set(self.scheduler.next_wake());
            if let Some(link) = &mut self.shared {
                link::demand(link, &mut self.scheduler);
            }
            let wants_input = self.scheduler.wants_input();
            tokio::select! {
                biased;
                _ = &mut shutdown, if !self.scheduler.is_draining() => {
                    self.scheduler.drain(Instant::now());
                }
                done = self.ends.next(), if !self.tasks.is_empty() => {
                    self.ended(done);
                    // Those that finished meanwhile, in the same turn.
                    for _ in 1..TURN {
                        let Some(done) = self.ends.next_ready() else { break };
                        self.ended(done);
                    }
                }
                () = alarm.fired(), if alarm.is_armed() => {
                    let now = Instant::now();
                    self.absorb_began(now);
                    self.scheduler.advance(now);
                }
                Some(said) = link::next(&mut self.shared) => {
                    link::heard(said, &mut self.scheduler, Instant::now());
                }
                item = inputs.next(), if wants_input => {
                    let now = Instant::now();
                    self.absorb_began(now);
                    self.take(item, now);
                    // Lines already read, in the same turn (read at `now`).
                    for _ in 1..TURN {
                        if !self.scheduler.wants_input() {
                            break;
                        }
                        let Some(item) = inputs.next().now_or_never() else { break };
                        self.take(item, now);
                    }
                }
            }
        }
        let _ = self.act().await;
    }

    /// An attempt's task has ended: the scheduler hears when it was sent
    /// and how it ended.
    fn ended(&mut self, (key, (ticket, fate, sent, at)): (usize, Ended)) {
        self.tasks.ended(key);
        self.absorb_began(at);
        if let Some(sent) = sent {
            self.scheduler.sent(ticket, sent);
        }
        match fate {
            Fate::Done(outcome) => self.scheduler.complete(ticket, outcome, at),
            Fate::Abandoned => self.scheduler.abandoned(ticket, at),
            Fate::Unsent => self.scheduler.unsent(ticket, at),
        }
    }

    /// An input item read at `now`, or the input's end.
    fn take(&mut self, item: Option<Input>, now: Instant) {
        match item {
            Some(item) => self.scheduler.offer(item, now),
            None => self.scheduler.end_input(now),
        }
    }

    /// Starts the attempts and hands on the events the scheduler decided.
    /// Every attempt starts before the first event is sent, so a slow
    /// consumer never delays a start.
    async fn act(&mut self) -> Result<(), ()> {
        while let Some(action) = self.scheduler.next_action() {
            match action {
                Action::Start(attempt) => self.tasks.start(attempt),
                Action::Emit(event) => {
                    if let Some(link) = &self.shared {
                        link::publish(link, &event);
                    }
                    self.outbox.push(event)
                }
            }
        }
        self.tasks.hand_over();
        if !self.outbox.is_empty() {
            // The next batch is likely as long: room for it at once, not a
            // growth step at a time.
            let room = Vec::with_capacity(self.outbox.len());
            let batch = std::mem::replace(&mut self.outbox, room);
            self.events.send(batch).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Tells the scheduler when the attempts started since its last step
    /// began, before it decides again.
    fn absorb_began(&mut self, now: Instant) {
        let Some(Ok(mut list)) = self.began.as_ref().map(|b| b.lock()) else {
            return;
        };
        for (ticket, at) in list.drain(..) {
            self.scheduler.began(ticket, at, now);
        }
    }
}
