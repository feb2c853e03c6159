//! The `sluice` command: a thin layer over the `sluice` engine crate. It
//! parses options, reads the environment, prints, and maps outcomes to exit
//! statuses in one place.

// Printing must never panic: a closed stderr or stdout (a log shipper that
// died, `| head`) would otherwise abort the run and lose records. These
// shadow the std macros for every module below.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod allocator;
mod batch;
mod chart;
mod cli;
mod demo;
mod exit;
mod help;
mod html;
mod merge;
mod outputs;
mod recompute;
mod resolve;
mod run;
mod screen;
mod settings;
mod signals;
mod worker;

// mimalloc: each request makes many small, short-lived allocations
// (headers, URLs, futures, records); mimalloc serves them faster than
// glibc's malloc (S1: about 15% less CPU a request). See ARCHITECTURE.md,
// "The process", and `allocator` for how it is called.
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

use crate::cli::Command;
use crate::exit::{ExitCode, Stop};

fn main() {
    // Before anything touches the heap's fresh pages.
    allocator::no_huge_pages();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() {
                ExitCode::stopped(Stop::Usage)
            } else {
                ExitCode::Ok
            };
            std::process::exit(code.code());
        }
    };
    // One thread runs the command (see ARCHITECTURE.md, "The process"):
    // the engine, its attempts and hyper's connections hand work to each
    // other several times a request, and across threads every hand-over is
    // a wake-up and context switches. A busy unpaced run's attempts and
    // their connections go to a second thread (`worker`), handed over in
    // batches.
    // Blocking work (reading input files, building TLS lanes) goes to
    // tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            std::process::exit(ExitCode::stopped(Stop::Usage).code());
        }
    };
    // The command runs as a spawned task so a panic in it is caught here.
    let code = runtime.block_on(async {
        match tokio::spawn(dispatch(cli.command)).await {
            Ok(code) => code,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => ExitCode::stopped(Stop::Stopped),
        }
    });
    // Attempts still running after a second interrupt are abandoned here.
    runtime.shutdown_background();
    std::process::exit(code.code());
}

async fn dispatch(command: Command) -> ExitCode {
    let result = match command {
        Command::Run(args) => run::command(*args).await,
        Command::Demo(args) => demo::demo(args).await,
        Command::Mock {
            listen,
            h2_max_streams,
            goaway_after,
            keep_alive,
        } => {
            let options = sluice_mock::MockOptions {
                h2_max_streams,
                goaway_after,
                keep_alive,
            };
            mock(listen, options).await
        }
        Command::Help { topic } => Ok(help::print(topic.as_deref())),
        Command::Report(args) => recompute::report(args),
        Command::Merge(args) => merge::merge(args).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("sluice: error: {e:#}");
        ExitCode::of_error(&e)
    })
}

async fn mock(
    listen: std::net::SocketAddr,
    options: sluice_mock::MockOptions,
) -> anyhow::Result<ExitCode> {
    let server = sluice_mock::MockServer::start_with(listen, options)
        .await
        .map_err(|e| {
            run::Usage(anyhow::anyhow!(
                "cannot listen on {listen}: {e}; choose another address with --listen"
            ))
        })?;
    println!("sluice mock listening on {}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    Ok(ExitCode::Ok)
}
