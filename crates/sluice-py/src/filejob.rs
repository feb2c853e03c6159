//! `sluice.run_file`: the CLI's crash-safe file job (`sluice run IN -o OUT
//! [--resume]`) from Python. The checks before sending, the resume and the
//! output are the engine's [`sluice::filejob`], as the CLI's are; this
//! module only drives the run and turns Ctrl-C (KeyboardInterrupt) into the
//! CLI's drain: the first stops new starts and lets in-flight requests
//! finish and be written, a second abandons them (a resume sends them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::filejob::{self, InputError, JobError, ResumeFiles, SinkOptions, outputs};
use sluice::sink::Sink;
use sluice::source::Source;
use sluice::stats::Tally;
use sluice::{Config, Event};
use tokio::sync::Notify;

use crate::options::{self, FileOptions};
use crate::summary::{self, JobFacts};

pyo3::create_exception!(
    _sluice,
    UsageError,
    pyo3::exceptions::PyValueError,
    "Nothing was sent: an option, an input or an output is wrong (the CLI's exit status 2)."
);

fn usage(e: JobError) -> PyErr {
    UsageError::new_err(filejob::describe(&e))
}

/// How often the calling thread looks for KeyboardInterrupt while the run
/// goes on without the GIL.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Runs the file job; returns the summary as JSON text. Raises
/// KeyboardInterrupt after draining when interrupted.
#[pyfunction]
#[pyo3(signature = (inputs, options=None))]
pub fn run_file(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<String> {
    let inputs = input_paths(inputs)?;
    let opts = options::parse(options, true)?;
    let f = &opts.file;
    let Some(output) = f.output.clone().filter(|p| p != Path::new("-")) else {
        return Err(UsageError::new_err(
            "run_file writes its records to a file: give output=\"results.jsonl\"",
        ));
    };
    if f.retry_failed && !f.resume {
        return Err(UsageError::new_err("retry_failed needs resume=True"));
    }
    let runtime = crate::bridge::runtime();
    let source = Source::open(&inputs, opts.parse.clone())
        .map_err(|e| UsageError::new_err(sluice::filejob::describe(&e)))?;
    check_outputs(&output, f, &inputs)?;
    let job =
        py.detach(|| runtime.block_on(prepare(&output, f, &inputs, &opts.parse, &opts.config)));
    let (sink, resumed, limiter) = job?;
    let drain = Arc::new(Notify::new());
    // Reading the whole input: without the GIL, as all I/O.
    let total = py.detach(|| sluice::source::count_shard_lines(&inputs, f.shard));
    let (config, summary_json) = (opts.config, f.summary_json.clone());
    let mut task = runtime.spawn(drive(
        Job {
            config,
            source,
            shard: f.shard,
            limiter,
            resumed,
        },
        sink,
        Arc::clone(&drain),
        total,
    ));
    let mut interrupt: Option<PyErr> = None;
    let outcome = loop {
        let step = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut task).await })
        });
        if let Ok(joined) = step {
            break joined.map_err(|e| PyRuntimeError::new_err(format!("the run stopped: {e}")))?;
        }
        if let Err(e) = py.check_signals() {
            if interrupt.is_none() {
                drain.notify_one(); // The first: drain.
                interrupt = Some(e);
            } else {
                task.abort(); // The second: abandon what is in flight.
                let _ = py.detach(|| runtime.block_on(&mut task));
                return Err(e);
            }
        }
    };
    let (ended, json) = outcome;
    if let Some(path) = summary_json {
        outputs::replace(&path, (json.clone() + "\n").as_bytes()).map_err(|e| {
            PyOSError::new_err(format!("cannot write the summary {}: {e}", path.display()))
        })?;
    }
    if let Some(e) = interrupt {
        return Err(e);
    }
    if let Some(e) = ended.error {
        return Err(e);
    }
    Ok(json)
}

/// One input path, or a list of them (read as one stream, as the CLI reads
/// several files).
fn input_paths(inputs: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if let Ok(p) = inputs.extract::<PathBuf>() {
        return Ok(vec![p]);
    }
    inputs
        .extract::<Vec<PathBuf>>()
        .map_err(|_| PyTypeError::new_err("run_file takes an input path, or a list of paths"))
}

/// The outputs checked as the CLI checks them, named by this function's
/// keywords, with the keyword that lets the job go on.
fn check_outputs(output: &Path, f: &FileOptions, inputs: &[PathBuf]) -> PyResult<()> {
    let mut outs = vec![outputs::Output {
        option: "output",
        path: output,
        appends: f.resume,
    }];
    if let Some(path) = f.errors_output.as_deref() {
        outs.push(outputs::Output {
            option: "errors_output",
            path,
            appends: f.resume,
        });
    }
    if let Some(path) = f.summary_json.as_deref() {
        outs.push(outputs::Output {
            option: "summary_json",
            path,
            appends: false,
        });
    }
    // The notes say what `overwrite` replaces: the caller asked for that.
    match outputs::check(&outs, inputs, f.overwrite) {
        Ok(_) => Ok(()),
        Err(outputs::OutputError::Exists { option, path, .. }) => {
            let advice = if option == "summary_json" {
                "choose another path, or pass overwrite=True to replace it"
            } else {
                "pass resume=True to continue it, or overwrite=True to replace it"
            };
            Err(UsageError::new_err(format!(
                "{option} {} already exists and is not empty; nothing was sent: {advice}",
                path.display()
            )))
        }
        Err(e) => Err(usage(e.into())),
    }
}

/// A job's input, limits and what an earlier run recorded.
struct Job {
    config: Config,
    source: Source,
    shard: Option<sluice::shard::Shard>,
    limiter: Option<sluice::shared::Limiter>,
    resumed: Option<filejob::Resumed>,
}

/// The checks and the resume, the shared limiter connected (`redis`), then
/// the output opened: as the CLI, nothing on disk changes before every
/// check has passed.
async fn prepare(
    output: &Path,
    f: &FileOptions,
    inputs: &[PathBuf],
    parse: &sluice::parse::ParseOptions,
    config: &Config,
) -> PyResult<(
    Sink,
    Option<filejob::Resumed>,
    Option<sluice::shared::Limiter>,
)> {
    let mut resumed = if f.resume {
        let files = ResumeFiles {
            output,
            errors_output: f.errors_output.as_deref(),
            retry_failed: f.retry_failed,
            format: f.output_format,
            shard: f.shard,
        };
        Some(
            filejob::scan_resume(&files, inputs, parse)
                .await
                .map_err(usage)?,
        )
    } else {
        None
    };
    let limiter = sluice::shared::Limiter::for_config(config)
        .await
        .map_err(|e| UsageError::new_err(format!("redis {}: {e}", e.url())))?;
    if let Some(r) = resumed.as_mut() {
        r.commit().map_err(usage)?;
    }
    let sink = filejob::open_sink(&SinkOptions {
        output: Some(output),
        errors_output: f.errors_output.as_deref(),
        resume: f.resume,
        overwrite: f.overwrite,
        fsync: f.fsync,
        format: f.output_format,
    })
    .map_err(usage)?;
    Ok((sink, resumed, limiter))
}

/// What the run ended with: an error to raise after the summary is
/// written (a failed write, a changed input).
struct Ended {
    error: Option<PyErr>,
}

/// Runs the engine to the end, writing every record; returns the facts
/// and the summary JSON.
async fn drive(
    job: Job,
    mut sink: Sink,
    drain: Arc<Notify>,
    total: Option<u64>,
) -> (Ended, String) {
    let Job {
        config,
        source,
        shard,
        limiter,
        resumed,
    } = job;
    let started = Instant::now();
    let mut all = resumed.as_ref().map(|r| r.tally()).unwrap_or_default();
    let mut this_run = Tally::default();
    let mut facts = JobFacts {
        resumed: resumed.is_some(),
        ..JobFacts::default()
    };
    let read_error: Arc<std::sync::Mutex<Option<InputError>>> = Arc::default();
    let inputs = until_error(
        sluice::shard::select(filejob::input_stream(source, resumed), shard).boxed(),
        Arc::clone(&read_error),
    );
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    let shutdown = async move {
        drain.notified().await;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let mut error = None;
    let mut run = match sluice::engine::run_shared(config, limiter, inputs, shutdown) {
        Ok(run) => run,
        Err(e) => {
            let err = Some(UsageError::new_err(sluice::filejob::describe(&e)));
            return (Ended { error: err }, String::new());
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            event = run.next() => match event {
                Some(Event::Record(record)) => {
                    let o = sluice::stats::RecordFacts::from(&*record);
                    if let Err(e) = sink.write(&record) {
                        error = Some(write_failed(&sink, e));
                        break;
                    }
                    all.add(o);
                    this_run.add(o);
                }
                Some(Event::Dropped { attempts, .. }) => {
                    all.add_unrecorded_attempts(attempts);
                    this_run.add_unrecorded_attempts(attempts);
                }
                Some(Event::OriginClosed { origin, reason }) => {
                    facts.closed_origins.push(format!("{origin}: {reason}"));
                }
                Some(Event::Learned(l)) => summary::note_learned(&mut facts.learned, *l),
                Some(Event::Concurrency(c)) => facts.adaptive = Some(c),
                Some(Event::RetryBudget { waited, held }) => {
                    facts.retry_budget = Some((waited, held))
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => {
                if let Err(e) = sink.flush() {
                    error = Some(write_failed(&sink, e));
                    break;
                }
            }
        }
    }
    if error.is_none()
        && let Err(e) = run.join().await
    {
        error = Some(PyRuntimeError::new_err(e.to_string()));
    }
    drop(run);
    if let Err(e) = sink.finish() {
        error.get_or_insert_with(|| write_failed(&sink, e));
    }
    if let Some(total) = total {
        facts.not_written = total.saturating_sub(all.records);
        facts.not_written_exact = true;
    }
    let read_error = read_error.lock().ok().and_then(|mut e| e.take());
    facts.interrupted = interrupted.load(std::sync::atomic::Ordering::Relaxed);
    match read_error {
        Some(e) if e.changed_input() => {
            error = error.or(Some(UsageError::new_err(filejob::describe(&e))))
        }
        Some(e) => {
            let message = filejob::describe(&e);
            facts.stopped = Some(format!("reading the input failed: {message}"))
        }
        None if facts.interrupted => {
            facts.stopped = Some("interrupted by KeyboardInterrupt".into())
        }
        None if !facts.closed_origins.is_empty() => {
            facts.stopped = Some("origins were closed; run again with resume=True later".into())
        }
        None => {}
    }
    let json = summary::json(&all, &this_run, started.elapsed(), Some(&facts));
    (Ended { error }, json)
}

fn write_failed(sink: &Sink, e: std::io::Error) -> PyErr {
    PyOSError::new_err(format!(
        "writing results to {} failed: {e}; records written so far are intact: fix the output and run again with resume=True",
        sink.name()
    ))
}

/// Ends the input at its first error, which is kept for the summary.
fn until_error(
    stream: futures::stream::BoxStream<'static, Result<sluice::Input, InputError>>,
    slot: Arc<std::sync::Mutex<Option<InputError>>>,
) -> impl futures::Stream<Item = sluice::Input> + Send + 'static {
    futures::stream::unfold(Some(stream), move |inner| {
        let slot = Arc::clone(&slot);
        async move {
            let mut inner = inner?;
            match inner.next().await {
                Some(Ok(input)) => Some((input, Some(inner))),
                Some(Err(e)) => {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(e);
                    }
                    None
                }
                None => None,
            }
        }
    })
}
