//! The attempts' tasks: each attempt runs as a task of its own, on the
//! driver's runtime or on a [`Worker`]'s, and reports its end to the driver
//! exactly once, whatever becomes of it (see [`Report`]).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use slab::Slab;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::attempt::{self, Outcome};
use crate::client::Clients;
use crate::config::Config;
use crate::ends::EndsOut;
use crate::record::ErrorKind;
use crate::scheduler::{Attempt, Ticket};
use crate::timers::Timers;
use crate::worker::Worker;

/// Where attempts' tasks leave what became of them, with their key in
/// [`Tasks`] ([`crate::ends`]: where a `JoinSet` cost a locked list's entry
/// each and about 1 K instructions an attempt, and a tokio channel about
/// 220 an end). The first end left wakes the driver, so a driver busy
/// elsewhere (or on another thread) is woken once for all the ends that
/// come meanwhile.
pub(crate) type Ends = EndsOut;

pub(crate) use crate::ends::{Ended, Fate};

/// The instants attempts began, as they write them: no wake-up of the
/// driver, which reads them before its next decision (see
/// [`crate::scheduler::Scheduler::began`]).
pub(crate) type Began = Arc<Mutex<Vec<(Ticket, Instant)>>>;

/// What every attempt's task shares.
pub(crate) struct Crew {
    pub(crate) client: Clients,
    pub(crate) config: Arc<Config>,
    /// The attempts' timers, kept from one to the next.
    pub(crate) timers: Timers,
    /// When the scheduler paces starts: where each task writes the instant
    /// it first ran.
    pub(crate) began: Option<Began>,
    /// A test's way to make the task panic outside the exchange's
    /// `catch_unwind`, after it (where the abandon `select!` and the report
    /// are).
    #[cfg(test)]
    pub(crate) panic_after_exchange: bool,
}

/// The attempts in flight as the driver sees them: a key each (a slab of
/// keys: the driver hears an end by its key), and where their tasks run.
/// Dropped with the driver, it cancels every attempt in flight (a dropped
/// [`crate::Run`] closes its connections at once).
pub(crate) struct Tasks {
    keys: Slab<()>,
    ends: Ends,
    place: Place,
}

enum Place {
    /// On the driver's own runtime.
    Here(Spawner),
    /// On a worker thread: the starts of one turn of the driver are handed
    /// over in one send (one wake-up of the worker, not one a start), to a
    /// task there that spawns them ([`spawn_handed`]).
    Worker {
        starts: Vec<Job>,
        to: mpsc::UnboundedSender<Vec<Job>>,
        /// Held so the worker's thread lives as long as the run.
        _worker: Worker,
    },
}

/// An attempt handed to a spawner, with the report of its end.
type Job = (Attempt, Report);

impl Tasks {
    /// Attempts run as tasks of the runtime the driver runs on.
    pub(crate) fn here(crew: Crew, ends: Ends) -> Tasks {
        Tasks {
            keys: Slab::new(),
            ends,
            place: Place::Here(Spawner::new(Arc::new(crew))),
        }
    }

    /// Attempts run as tasks on `worker`'s thread (and with them the
    /// connections they open: polled by the attempt, or reqwest's
    /// connection tasks spawned from it), started in batches.
    pub(crate) fn on(worker: &Worker, crew: Crew, ends: Ends) -> Tasks {
        let (to, handed) = mpsc::unbounded_channel();
        worker
            .handle()
            .spawn(spawn_handed(handed, Spawner::new(Arc::new(crew))));
        Tasks {
            keys: Slab::new(),
            ends,
            place: Place::Worker {
                starts: Vec::new(),
                to,
                _worker: worker.clone(),
            },
        }
    }

    /// True when no attempt is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Starts `attempt` (on a worker: at the next [`Tasks::hand_over`]).
    pub(crate) fn start(&mut self, attempt: Attempt) {
        let key = self.keys.insert(());
        let report = Report::new(key, attempt.ticket, self.ends.clone());
        match &mut self.place {
            Place::Here(spawner) => spawner.spawn(attempt, report),
            Place::Worker { starts, .. } => starts.push((attempt, report)),
        }
    }

    /// Hands the starts decided since the last call to the worker, in one
    /// send. A worker gone (its thread died) drops them, and each reports
    /// an internal failure.
    pub(crate) fn hand_over(&mut self) {
        if let Place::Worker { starts, to, .. } = &mut self.place
            && !starts.is_empty()
        {
            // The next turn likely starts as many: room for them at once.
            let room = Vec::with_capacity(starts.len());
            let _ = to.send(std::mem::replace(starts, room));
        }
    }

    /// The attempt of `key` has ended: its key can be used again.
    pub(crate) fn ended(&mut self, key: usize) {
        self.keys.try_remove(key);
    }
}

/// The worker's side of [`Place::Worker`]: spawns the attempts handed over
/// until the driver goes, then (dropping the spawner) aborts those still
/// running.
async fn spawn_handed(mut handed: mpsc::UnboundedReceiver<Vec<Job>>, mut spawner: Spawner) {
    while let Some(jobs) = handed.recv().await {
        for (attempt, report) in jobs {
            spawner.spawn(attempt, report);
        }
    }
}

/// Spawns attempts on the runtime it runs on and keeps their handles, one
/// per key: a key comes back only once its attempt has ended, so the
/// handle it holds then is done with and is replaced. Dropped, it aborts
/// every task still running.
struct Spawner {
    /// Shared: each task holds a pointer to it (see [`attempt_task`]).
    crew: Arc<Crew>,
    handles: Vec<Option<JoinHandle<()>>>,
}

impl Spawner {
    fn new(crew: Arc<Crew>) -> Spawner {
        Spawner {
            crew,
            handles: Vec::new(),
        }
    }

    fn spawn(&mut self, attempt: Attempt, report: Report) {
        let key = report.key;
        let task = tokio::spawn(attempt_task(Arc::clone(&self.crew), attempt, report));
        if self.handles.len() <= key {
            self.handles.resize_with(key + 1, || None);
        }
        self.handles[key] = Some(task);
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        for task in self.handles.iter().flatten() {
            task.abort();
        }
    }
}

/// An attempt's task: its exchange, given up if its request is abandoned
/// first, and what became of it sent through `report` (which sends an
/// internal failure instead if the task unwinds before).
///
/// The task itself is kept to a few words: what it shares with the others
/// is behind a pointer (`crew`), and what it waits on is boxed. tokio
/// copies a task's future whole when it spawns it, into its cell, and three
/// times more as the task ends (its stage set to finished, then consumed):
/// with the crew inline, that was hundreds of bytes each, about 700
/// instructions a request in `memcpy`.
async fn attempt_task(crew: Arc<Crew>, attempt: Attempt, mut report: Report) {
    if let Some(Ok(mut list)) = crew.began.as_ref().map(|b| b.lock()) {
        list.push((attempt.ticket, Instant::now()));
    }
    // Under `--redis`: checked here, just before the request is handed to
    // its connection, as close to the wire as the engine sees. A task that
    // first ran after its grant's latest instant does not send (sent, it
    // would bunch with starts other processes reserved after it): its
    // request goes back to its queue for a new grant.
    if attempt.send_by.is_some_and(|by| Instant::now() > by) {
        return report.send(Fate::Unsent);
    }
    // Boxed: an attempt's future (hyper's state within) takes kilobytes,
    // which spawning the task and wrapping the future would otherwise
    // copy, each; boxed where it is made, it is copied once and the task
    // moves a pointer. Its panics become an internal failure here; those
    // outside it, the report's.
    let exchange = AssertUnwindSafe(Box::pin(attempt::perform(
        &crew.client,
        &crew.config,
        &crew.timers,
        &attempt.request,
        &mut report.sent,
    )))
    .catch_unwind()
    .map(|done| done.unwrap_or_else(|_| internal_failure()));
    let fate = match &attempt.request.abandon {
        // Boxed too: rare (the Python package's cancellation), and the
        // wait for it would make every task larger.
        Some(abandon) => {
            Box::pin(async move {
                tokio::select! {
                    outcome = exchange => Fate::Done(outcome),
                    () = abandon.abandoned() => Fate::Abandoned,
                }
            })
            .await
        }
        None => Fate::Done(exchange.await),
    };
    #[cfg(test)]
    if crew.panic_after_exchange {
        panic!("this test's attempt task panics after its exchange (expected)");
    }
    report.send(fate);
}

/// How an attempt's end reaches the driver, so that every attempt handed
/// out reports exactly once: [`Report::send`] at its end, or, dropped
/// unsent, an internal failure — when its task panics outside the
/// exchange's own `catch_unwind` (the abandon `select!`), is aborted, or
/// is dropped before it ran (a hand-over to a worker lost). A report sent
/// after the driver has gone is dropped unread. (The outcome is not kept
/// in it: it would make every attempt's task larger, and a task is copied
/// whole when it is spawned and when it ends.)
struct Report {
    key: usize,
    ticket: Ticket,
    ends: Ends,
    /// When the request went out (set by the exchange).
    sent: Option<Instant>,
    /// Set once sent.
    done: bool,
}

impl Report {
    fn new(key: usize, ticket: Ticket, ends: Ends) -> Report {
        Report {
            key,
            ticket,
            ends,
            sent: None,
            done: false,
        }
    }

    /// Sends what became of the attempt.
    fn send(&mut self, fate: Fate) {
        self.done = true;
        let end = (self.ticket, fate, self.sent, Instant::now());
        crate::worker::send_end(&self.ends, self.key, end);
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.done {
            self.send(Fate::Done(internal_failure()));
        }
    }
}

fn internal_failure() -> Outcome {
    Outcome::failed(attempt::Failed {
        kind: ErrorKind::Protocol,
        sent: true,
        message: "internal error while handling the response (please report this)".into(),
        status: None,
        local: false,
        headers: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::request::{Input, Request};
    use crate::scheduler::{Action, Scheduler};

    /// The scheduler's first start of one GET of `url`.
    fn first_attempt(config: &Arc<Config>, url: &str) -> Attempt {
        let now = Instant::now();
        let mut scheduler = Scheduler::new(Arc::clone(config), now, SystemTime::now(), 1);
        let url = url::Url::parse(url).expect("a URL");
        scheduler.offer(Input::from(Request::get(1, url)), now);
        loop {
            match scheduler.next_action() {
                Some(Action::Start(attempt)) => return attempt,
                Some(Action::Emit(_)) => {}
                None => panic!("the scheduler starts the request it was offered"),
            }
        }
    }

    /// A panic in an attempt's task outside the exchange's `catch_unwind`
    /// (after the exchange, where the abandon `select!` and the report are)
    /// still reports the attempt's end, as an internal failure: without it,
    /// the driver would wait for it forever.
    #[tokio::test]
    async fn a_task_that_panics_outside_its_exchange_still_reports_its_end() {
        // Nothing listens on the port: the exchange fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = Arc::new(Config::default());
        let attempt = first_attempt(&config, &format!("http://127.0.0.1:{port}/"));
        let ticket = attempt.ticket;
        let crew = Crew {
            client: crate::client::build(&config).expect("a client"),
            config,
            timers: Timers::default(),
            began: None,
            panic_after_exchange: true,
        };
        let (ends, mut ended) = crate::ends::list();
        let task = tokio::spawn(attempt_task(
            Arc::new(crew),
            attempt,
            Report::new(7, ticket, ends),
        ));
        assert!(task.await.expect_err("the task panicked").is_panic());
        let (key, (got, outcome, _, _)) =
            tokio::time::timeout(Duration::from_secs(10), ended.next())
                .await
                .expect("the end comes at once");
        assert_eq!((key, got), (7, ticket));
        match outcome {
            Fate::Done(Outcome::Failed(failed)) => {
                assert_eq!(failed.kind, ErrorKind::Protocol);
                assert!(
                    failed.message.contains("internal error"),
                    "{}",
                    failed.message
                );
            }
            other => panic!("an internal failure, not {other:?}"),
        }
    }

    /// An attempt whose task first runs after its grant's latest instant
    /// does not send: it reports `Unsent`, and the server never sees a
    /// connection.
    #[tokio::test]
    async fn an_attempt_past_its_send_by_is_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("its address").port();
        let config = Arc::new(Config::default());
        let mut attempt = first_attempt(&config, &format!("http://127.0.0.1:{port}/"));
        let ticket = attempt.ticket;
        attempt.send_by = Instant::now().checked_sub(Duration::from_millis(1));
        assert!(attempt.send_by.is_some());
        let crew = Crew {
            client: crate::client::build(&config).expect("a client"),
            config,
            timers: Timers::default(),
            began: None,
            panic_after_exchange: false,
        };
        let (ends, mut ended) = crate::ends::list();
        let task = attempt_task(Arc::new(crew), attempt, Report::new(5, ticket, ends));
        // Sent, it would wait for an answer that never comes.
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("it ends at once");
        let (key, (got, fate, sent, _)) = ended.next_ready().expect("it reported");
        assert_eq!((key, got), (5, ticket));
        assert!(matches!(fate, Fate::Unsent), "{fate:?}");
        assert!(sent.is_none());
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "no connection reached the server: {accepted:?}"
        );
    }

    /// An end reported on a worker that stays busy (its run queue never
    /// empties, so the thread never parks: here a task that keeps yielding,
    /// in a run a few large downloads) reaches the driver at the worker's
    /// next turn, not once the worker falls idle or 64 ends are held.
    #[tokio::test]
    async fn an_end_on_a_busy_worker_reaches_the_driver_at_once() {
        let config = Arc::new(Config::default());
        let ticket = first_attempt(&config, "http://127.0.0.1:9/").ticket;
        let worker = Worker::start().expect("the worker starts");
        let busy_until = std::time::Instant::now() + Duration::from_secs(5);
        worker.handle().spawn(async move {
            while std::time::Instant::now() < busy_until {
                tokio::task::yield_now().await;
            }
        });
        let (ends, mut ended) = crate::ends::list();
        worker.handle().spawn(async move {
            crate::worker::send_end(&ends, 4, (ticket, Fate::Abandoned, None, Instant::now()));
            // The sender stays: a closed channel would end `recv` at once.
            std::future::pending::<()>().await;
        });
        let (key, _) = tokio::time::timeout(Duration::from_secs(1), ended.next())
            .await
            .expect("the end came while the worker was busy");
        assert_eq!(key, 4);
    }

    /// An attempt handed over but never run (its worker gone with the
    /// hand-over) reports an internal failure when it is dropped.
    #[test]
    fn a_job_dropped_before_it_ran_reports_its_end() {
        let config = Arc::new(Config::default());
        let attempt = first_attempt(&config, "http://127.0.0.1:9/");
        let ticket = attempt.ticket;
        let (ends, mut ended) = crate::ends::list();
        let job: Job = (attempt, Report::new(3, ticket, ends));
        drop(job);
        let (key, (_, outcome, sent, _)) = ended.next_ready().expect("the dropped job reported");
        assert_eq!(key, 3);
        assert!(sent.is_none());
        assert!(matches!(outcome, Fate::Done(Outcome::Failed(_))));
    }
}
