//! Command-line options: clap's structs and value parsers, nothing else.
//! Options are not the engine's config: `resolve` turns them (with the
//! environment and the files they name) into a [`sluice::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use sluice::config::MAX_CONCURRENCY;
use sluice::format::OutputFormat;
use sluice::parse::InputFormat;
use sluice::ratelimit::Headroom;
use sluice::retry_budget::RetryBudget;
use sluice::shard::Shard;
use sluice::units::{Rate, parse_duration, parse_size, write_duration, write_size};
use sluice::{BodyMode, Config, RetryOn};

use crate::help;

/// The command line as clap sees it, with its help texts: the text after
/// each `--help`, and each default of `sluice run` and `sluice mock` stated
/// in its help from the one place it is written: the engine's
/// [`Config::default`] (the options are `Option`s, resolved over it) and
/// the mock's constants.
pub fn command() -> clap::Command {
    Cli::command()
        .after_help(help::main_after_help())
        .mut_subcommand("run", |run| {
            state_defaults(run.after_help(help::run_after_help()), &run_defaults())
        })
        .mut_subcommand("mock", |mock| {
            state_defaults(mock.after_help(help::mock_after_help()), &mock_defaults())
        })
        .mut_subcommand("help", |topic| topic.after_help(help::topics_help()))
}

/// Parses the process's arguments with [`command`].
///
/// # Errors
///
/// A usage error, or the help or version clap prints ([`clap::Error`]).
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

/// Parses `argv` (its first item is the program) with [`command`].
///
/// # Errors
///
/// As [`parse`].
pub fn parse_from<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // The help texts (the mock's endpoint table, the exit statuses, every
    // stated default) took half of the instructions of a run's start-up,
    // and only help and errors show them: the arguments are parsed without
    // them first, and again with them when clap has something to show, so
    // what it shows is unchanged.
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(_) => command().try_get_matches_from(argv)?,
    };
    Cli::from_arg_matches(&matches)
}

/// The defaults of `sluice run`'s options that the engine decides, written
/// as the options take them.
pub(crate) fn run_defaults() -> Vec<(&'static str, String)> {
    let c = Config::default();
    let budget = c
        .retry_budget
        .map_or_else(|| "off".to_string(), |b| b.to_string());
    vec![
        ("concurrency", c.concurrency.to_string()),
        ("burst", c.burst.to_string()),
        ("limit_headroom", format!("{:?}", c.limit_headroom.get())),
        ("timeout", write_duration(c.timeout)),
        ("connect_timeout", write_duration(c.connect_timeout)),
        ("pool_idle_timeout", write_duration(c.pool_idle_timeout)),
        ("max_body_size", write_size(c.max_body_size)),
        ("retries", c.retries.to_string()),
        ("retry_on", c.retry_on.to_string()),
        ("retry_budget", budget),
        ("backoff_initial", write_duration(c.backoff_initial)),
        ("backoff_max", write_duration(c.backoff_max)),
        ("max_retry_after", write_duration(c.max_retry_after)),
        ("halt_after", c.halt_after.to_string()),
        ("reorder_window", c.reorder_window.to_string()),
        (
            "redis_timeout",
            write_duration(sluice::config::DEFAULT_SHARED_TIMEOUT),
        ),
    ]
}

/// The defaults of `sluice mock`'s options that the mock decides.
fn mock_defaults() -> Vec<(&'static str, String)> {
    vec![(
        "h2_max_streams",
        sluice_mock::H2_MAX_CONCURRENT_STREAMS.to_string(),
    )]
}

/// Ends each named option's help with `[default: VALUE]`, where clap puts
/// the defaults it knows: after a space in `-h`, in a paragraph of its own
/// in `--help`.
fn state_defaults(
    mut command: clap::Command,
    defaults: &[(&'static str, String)],
) -> clap::Command {
    for (id, value) in defaults {
        command = command.mut_arg(*id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let long = arg
                .get_long_help()
                .map_or_else(|| help.clone(), ToString::to_string);
            arg.help(format!("{help} [default: {value}]"))
                .long_help(format!("{long}\n\n[default: {value}]"))
        });
    }
    command
}

/// Execute large batches of HTTP API calls fast, politely, and without losing a result.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
#[command(disable_help_subcommand = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Execute a batch: one request per input line, one JSON result line per request.
    Run(Box<RunArgs>),
    /// Start the fault-injecting test upstream (for demos, tests and benchmarks).
    ///
    /// An HTTP/1.1 server (HTTP/2 with prior knowledge on the same port) whose
    /// endpoints each do one thing a real API does to its clients. It prints
    /// the address it bound and serves until Ctrl-C.
    Mock {
        /// Address to listen on: HOST:PORT, or a port alone (on 127.0.0.1); port 0 picks a free one.
        #[arg(long, default_value = sluice_mock::DEFAULT_LISTEN, value_parser = parse_listen)]
        listen: SocketAddr,
        /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS announced per connection (nginx: 128).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        h2_max_streams: Option<u32>,
        /// End each connection gracefully after N requests: HTTP/2 GOAWAY, HTTP/1.1 close (nginx's keepalive_requests).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        goaway_after: Option<u64>,
        /// Close a connection idle this long (no request in progress); the close lands 60ms after reading stops, so a request sent in between is lost, as on a busy server.
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        keep_alive: Option<Duration>,
    },
    /// Run 200 requests to /delay/1 at concurrency 15 against an in-process test upstream.
    ///
    /// Starts the test upstream on 127.0.0.1 (a free port), sends it 200 GET
    /// requests to /delay/1 at concurrency 15, and shows the progress and the
    /// summary on stderr. Then it prints on stdout the makespan beside its
    /// ideal (14 s: ceil(200/15) waves of one second), the connections the
    /// server saw (15: one per slot, reused) and where the records are.
    Demo(DemoArgs),
    /// Print help: of sluice, of a command, or of a topic.
    Help {
        /// A command (run, report, mock, demo) or a topic (input, output, exit-status).
        #[arg(value_name = "COMMAND|TOPIC")]
        topic: Option<String>,
    },
    /// Recompute the summary and the HTML report from result files alone.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Combine the result files of several shards into one, and check every line has one record.
    ///
    /// Reads result files (of any --output-format) and writes their records
    /// to one file: in the order read, or in input order with --ordered. A
    /// line with more than one record is named. With --check, the run's
    /// inputs are read as the run read them, and every request line must
    /// have exactly one record.
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(MergeArgs),
}

const MERGE_EXAMPLES: &str = "\
Examples:
  sluice merge out-0.jsonl out-1.jsonl out-2.jsonl out-3.jsonl -o out.jsonl
  sluice merge out-*.jsonl -o out.jsonl --ordered --check requests.jsonl

Exit status: 0 merged (and, with --check, every input line has exactly one
record), 1 merged, but a line has no record or several (named on stderr), 2 a
file could not be read or written, holds a line that is not a result line, or
-o already holds data (give --overwrite to replace it).";

/// `sluice merge`: result files in, one result file out.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Result files (JSON Lines written by `sluice run`, e.g. one per shard); `-` is standard input.
    #[arg(value_name = "RESULTS", required = true)]
    pub files: Vec<PathBuf>,

    /// Where the merged records go; `-` is stdout. An existing non-empty file is refused unless --overwrite.
    #[arg(short, long, value_name = "FILE", required = true)]
    pub output: PathBuf,

    /// Write the records in input order (by `line`) [default: in the order read, file by file].
    #[arg(long)]
    pub ordered: bool,

    /// An input file of the run (repeatable, in the order the run read them): every request
    /// line must have exactly one record, with its id; what is missing, doubled or of another
    /// input is named by file, line and id (exit 1).
    #[arg(long, value_name = "INPUT")]
    pub check: Vec<PathBuf>,

    /// Replace an existing non-empty -o file (never a results or input file).
    #[arg(long)]
    pub overwrite: bool,
}

const REPORT_EXAMPLES: &str = "\
Examples:
  sluice report results.jsonl                         # the summary, as the run printed it
  sluice report shard-*.jsonl --html report.html      # one report over several files
  sluice report results.jsonl --json summary.json

Everything comes from the records: a file that several runs wrote (--resume) is
covered whole. Run settings are not in records, so a recomputed report has none.
Exit status: 0 done, 2 a file could not be read or written, holds a line that
is not a record, an output would replace an input, or an output already holds
data (give --overwrite to replace it).";

/// `sluice report`: files of result lines, and what to write.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result files (JSON Lines written by `sluice run`); `-` is standard input.
    #[arg(value_name = "RESULTS", required = true)]
    pub files: Vec<PathBuf>,

    /// Write the HTML report to FILE (self-contained: no scripts, nothing loaded).
    #[arg(long, value_name = "FILE", visible_alias = "report")]
    pub html: Option<PathBuf>,

    /// Write the summary as JSON to FILE (as `run --summary-json` does).
    #[arg(long, value_name = "FILE", visible_alias = "summary-json")]
    pub json: Option<PathBuf>,

    /// Replace an existing non-empty --html or --json file (never a results file).
    #[arg(long)]
    pub overwrite: bool,
}

/// Options of `sluice demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the 200 records go (JSON Lines; `-` is stdout, and the makespan lines then go to
    /// stderr). An existing non-empty FILE is refused [default: sluice-demo.jsonl in the
    /// temporary directory, replaced on every run]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The help headings of `sluice run`: every option sits under one of them.
pub mod heading {
    /// Where and how results are written.
    pub const OUTPUT: &str = "Output";
    /// How much, how fast, how long.
    pub const LIMITS: &str = "Limits";
    /// What is retried, and how long to wait.
    pub const RETRIES: &str = "Retries";
    /// What every request carries.
    pub const REQUESTS: &str = "Requests";
    /// Certificates and proxies.
    pub const TLS: &str = "TLS and proxies";
    /// What is shown on stderr.
    pub const DISPLAY: &str = "Display";
    /// Shards of one job on several machines.
    pub const SHARING: &str = "Across machines";
}

/// Whether limits are learned from rate-limit headers (`--learn-limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LearnLimits {
    /// Learn them.
    Auto,
    /// Ignore them.
    Off,
}

impl From<bool> for LearnLimits {
    fn from(learn: bool) -> LearnLimits {
        if learn {
            LearnLimits::Auto
        } else {
            LearnLimits::Off
        }
    }
}

/// `--retry-budget`: a budget, or `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetArg(pub Option<RetryBudget>);

/// `--retry-budget`: `PERCENT%+RATE/s` or `off`.
fn parse_retry_budget(text: &str) -> Result<RetryBudgetArg, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(RetryBudgetArg(None));
    }
    text.parse()
        .map(|b| RetryBudgetArg(Some(b)))
        .map_err(|e: sluice::retry_budget::BudgetError| e.to_string())
}

/// `--limit-headroom`: a share in (0, 1].
fn parse_headroom(text: &str) -> Result<Headroom, String> {
    text.parse()
        .map_err(|e: sluice::ratelimit::HeadroomError| e.to_string())
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// When stderr is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `--output-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormatArg {
    /// sluice's record: every field (attempts, timings, headers).
    Sluice,
    /// OpenAI Batch API output lines: {id, custom_id, response, error}.
    OpenaiBatch,
    /// Anthropic Message Batches result lines: {custom_id, result}.
    AnthropicBatch,
}

impl From<OutputFormat> for OutputFormatArg {
    fn from(format: OutputFormat) -> OutputFormatArg {
        match format {
            OutputFormat::Sluice => OutputFormatArg::Sluice,
            OutputFormat::OpenAiBatch => OutputFormatArg::OpenaiBatch,
            OutputFormat::AnthropicBatch => OutputFormatArg::AnthropicBatch,
        }
    }
}

impl From<OutputFormatArg> for OutputFormat {
    fn from(arg: OutputFormatArg) -> OutputFormat {
        match arg {
            OutputFormatArg::Sluice => OutputFormat::Sluice,
            OutputFormatArg::OpenaiBatch => OutputFormat::OpenAiBatch,
            OutputFormatArg::AnthropicBatch => OutputFormat::AnthropicBatch,
        }
    }
}

/// `--input-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormatArg {
    /// Per line by its keys.
    Auto,
    /// sluice lines (OpenAI batch lines are sluice lines).
    Sluice,
    /// OpenAI Batch API lines: custom_id, method, url required.
    OpenaiBatch,
    /// Anthropic Message Batches lines: {custom_id, params}, POSTed to /v1/messages under --base-url.
    AnthropicBatch,
}

impl From<InputFormat> for InputFormatArg {
    fn from(format: InputFormat) -> InputFormatArg {
        match format {
            InputFormat::Auto => InputFormatArg::Auto,
            InputFormat::Sluice => InputFormatArg::Sluice,
            InputFormat::OpenAiBatch => InputFormatArg::OpenaiBatch,
            InputFormat::AnthropicBatch => InputFormatArg::AnthropicBatch,
        }
    }
}

impl From<InputFormatArg> for InputFormat {
    fn from(arg: InputFormatArg) -> InputFormat {
        match arg {
            InputFormatArg::Auto => InputFormat::Auto,
            InputFormatArg::Sluice => InputFormat::Sluice,
            InputFormatArg::OpenaiBatch => InputFormat::OpenAiBatch,
            InputFormatArg::AnthropicBatch => InputFormat::AnthropicBatch,
        }
    }
}

/// How response bodies are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BodyArg {
    /// JSON as JSON, else UTF-8 text, else base64.
    Auto,
    /// UTF-8 text (base64 when not UTF-8).
    Text,
    /// Always base64.
    Base64,
    /// Not stored.
    None,
}

impl From<BodyMode> for BodyArg {
    fn from(mode: BodyMode) -> BodyArg {
        match mode {
            BodyMode::Auto => BodyArg::Auto,
            BodyMode::Text => BodyArg::Text,
            BodyMode::Base64 => BodyArg::Base64,
            BodyMode::None => BodyArg::None,
        }
    }
}

/// The options of `sluice run`. An option whose default the engine decides
/// is an `Option`: unset, the engine's [`Config::default`] holds (see
/// `resolve`), and [`command`] states that default in the help.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input files of JSON request lines or URLs (`sluice help input`); `-` is standard input
    /// [default: -]
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Results file (JSON Lines); `-` is stdout. An existing non-empty file is refused
    /// unless --resume or --overwrite is given [default: stdout]
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// How results are written: sluice's record, or the result lines of a provider's batch API.
    #[arg(
        long,
        value_enum,
        default_value_t = OutputFormatArg::from(OutputFormat::default()),
        value_name = "FORMAT",
        help_heading = heading::OUTPUT
    )]
    pub output_format: OutputFormatArg,

    /// Write failures to FILE instead of -o, as a batch API splits output and error files [default: in -o with the rest].
    #[arg(long, value_name = "FILE", help_heading = heading::OUTPUT)]
    pub errors_output: Option<PathBuf>,

    /// Replace existing non-empty output files (-o, --errors-output, --report, --summary-json); under --resume, -o is still appended to.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long)]
    pub overwrite: bool,

    /// Requests in flight at once, across all origins.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_CONCURRENCY))]
    pub concurrency: Option<u64>,

    /// Requests in flight at once per origin (scheme, host, port) [default: unlimited]
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_CONCURRENCY))]
    pub per_host_concurrency: Option<u64>,

    /// Attempt starts per unit across all origins: 50/s, 3000/m, 100000/h [default: unlimited]
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "RATE", value_parser = Rate::parse)]
    pub rate: Option<Rate>,

    /// Attempt starts per unit per origin [default: unlimited]
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "RATE", value_parser = Rate::parse)]
    pub per_host_rate: Option<Rate>,

    /// How many starts may bunch up under --rate and --per-host-rate.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,

    /// Weighted budget, e.g. tokens per minute (90000/m): each attempt spends its request's `cost`
    /// [default: unlimited]
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "RATE", value_parser = Rate::parse)]
    pub budget: Option<Rate>,

    /// How much budget may be spent at once [default: one unit of --budget as written:
    /// 90000/m gives 90000]
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub budget_burst: Option<u64>,

    /// Pace each origin by the rate-limit headers of its responses (OpenAI, Anthropic, GitHub,
    /// IETF RateLimit): `auto` learns them, `off` ignores them. --rate, --per-host-rate and
    /// --budget stay ceilings.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_enum, default_value_t = LearnLimits::from(Config::default().learn_limits), value_name = "MODE")]
    pub learn_limits: LearnLimits,

    /// The share of a learned limit to use, above 0 and at most 1: lower it when other clients
    /// share the key.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "SHARE", value_parser = parse_headroom)]
    pub limit_headroom: Option<Headroom>,

    /// Find the concurrency limit within [1, -c] from the servers' answers: halved on overload
    /// (503, 529, timeouts, resets), lowered on 429s and when latency grows, raised by one per
    /// round trip of successes [default: off: -c is exact].
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long)]
    pub adaptive: bool,

    /// One attempt, from send to whole body (30s, 500ms, 5m: every duration needs its unit, here and in an input line's `timeout`).
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// DNS + TCP + TLS.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// Close pooled connections idle this long; keep it below the server's keep-alive.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub pool_idle_timeout: Option<Duration>,

    /// Retries after the first attempt.
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// The whole retry policy: statuses, ranges (500-599) and kinds timeout, connect, dns, reset.
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "LIST", value_parser = RetryOn::parse)]
    pub retry_on: Option<RetryOn>,

    /// Retry non-idempotent methods (POST, PATCH, ...) on everything in --retry-on.
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long)]
    pub retry_non_idempotent: bool,

    /// What retries may spend, so they never multiply the load on a failing server: PERCENT of
    /// recent first attempts plus RATE a second (Finagle's defaults), or `off`. A retry that
    /// finds it empty waits for it, holding no slot; waits asked for by Retry-After do not spend.
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "PERCENT%+RATE/s", value_parser = parse_retry_budget)]
    pub retry_budget: Option<RetryBudgetArg>,

    /// First backoff ceiling (exponential backoff with full jitter).
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub backoff_initial: Option<Duration>,

    /// Largest backoff ceiling.
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub backoff_max: Option<Duration>,

    /// Longest server-requested wait honoured; a 429/503 asking for more closes its origin.
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub max_retry_after: Option<Duration>,

    /// Close an origin after N consecutive final failures with 401/403/407 or dns/tls/connect (0: never).
    #[arg(help_heading = heading::RETRIES)]
    #[arg(long, value_name = "N")]
    pub halt_after: Option<u32>,

    /// Header added to every request ('Name: value'); ${VAR} in the value reads the environment.
    #[arg(help_heading = heading::REQUESTS)]
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Base for requests whose `url` is relative (joined as httpx joins) [default: none: a
    /// relative URL is an invalid line]
    #[arg(help_heading = heading::REQUESTS)]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// JSON line shapes read: auto decides per line by its keys (`params` without `url`: Anthropic).
    #[arg(
        long,
        value_enum,
        default_value_t = InputFormatArg::from(InputFormat::default()),
        value_name = "FORMAT",
        help_heading = heading::REQUESTS
    )]
    pub input_format: InputFormatArg,

    /// Write results in input order [default: completion order]
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long)]
    pub ordered: bool,

    /// Under --ordered, no request starts more than N lines beyond the oldest request without a record.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub reorder_window: Option<u64>,

    /// Skip input lines already recorded in --output, then append.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long)]
    pub resume: bool,

    /// With --resume: also re-send lines whose record is a failure (their old records are replaced).
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long, requires = "resume")]
    pub retry_failed: bool,

    /// fsync the output at least once a second (survives power loss; costs a disk sync per second).
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long)]
    pub fsync: bool,

    /// How response bodies are stored.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long, value_enum, default_value_t = BodyArg::from(BodyMode::default()), value_name = "MODE")]
    pub body: BodyArg,

    /// Larger bodies (decoded bytes) end the request with body_too_large.
    #[arg(help_heading = heading::LIMITS)]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_body_size: Option<u64>,

    /// Record response headers.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long)]
    pub include_headers: bool,

    /// One more header or query parameter to treat as secret (repeatable), besides the built-in
    /// list (`sluice help output`)
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long, value_name = "NAME")]
    pub redact: Vec<String>,

    /// Check every input line as a run would; send nothing.
    #[arg(help_heading = heading::REQUESTS)]
    #[arg(long)]
    pub dry_run: bool,

    /// Progress on stderr.
    #[arg(help_heading = heading::DISPLAY)]
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: ProgressMode,

    /// Silence progress and summary (errors still print).
    #[arg(help_heading = heading::DISPLAY)]
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log each request's life on stderr (waiting, active, success, error, retry).
    #[arg(help_heading = heading::DISPLAY)]
    #[arg(short, long)]
    pub verbose: bool,

    /// Write a machine-readable summary (JSON) to FILE.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Write a self-contained HTML report with plots to FILE.
    #[arg(help_heading = heading::OUTPUT)]
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,

    /// Extra trusted CA certificate (PEM) [default: the system's roots only]
    #[arg(help_heading = heading::TLS)]
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM).
    #[arg(help_heading = heading::TLS)]
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Client private key (PEM).
    #[arg(help_heading = heading::TLS)]
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Do not verify TLS certificates (warned on stderr and in the summary).
    #[arg(help_heading = heading::TLS)]
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Proxy for every request [default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY, as curl
    /// reads them]
    #[arg(help_heading = heading::TLS)]
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    pub proxy: Option<String>,

    /// Ignore proxy settings from the environment.
    #[arg(help_heading = heading::TLS)]
    #[arg(long)]
    pub no_proxy: bool,

    /// Offer HTTP/2 (ALPN, or prior knowledge for http://).
    #[arg(help_heading = heading::REQUESTS)]
    #[arg(long)]
    pub http2: bool,

    /// Ask for gzip, br and zstd and decode (the size limit applies to decoded bytes).
    #[arg(help_heading = heading::REQUESTS)]
    #[arg(long)]
    pub compressed: bool,

    /// Take only this shard's lines: K/N takes the lines whose number (as in `line`, from 1)
    /// modulo N is K (K counts from 0); `env` reads K from JOB_COMPLETION_INDEX and N from
    /// SLUICE_SHARDS, as in a Kubernetes Indexed Job [default: every line]
    #[arg(help_heading = heading::SHARING)]
    #[arg(long, value_name = "K/N|env", value_parser = parse_shard)]
    pub shard: Option<ShardArg>,

    /// Share --rate, --budget, origin pauses and closed origins with every process of --job
    /// through Redis or Valkey: redis://[USER:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS),
    /// unix:///PATH [default: none: this process's limits are its own]
    #[arg(help_heading = heading::SHARING)]
    #[arg(long, value_name = "URL", requires = "job")]
    pub redis: Option<String>,

    /// The job's name under --redis: processes with the same name share one set of limits
    /// [default: none; needed with --redis]
    #[arg(help_heading = heading::SHARING)]
    #[arg(long, value_name = "NAME", requires = "redis")]
    pub job: Option<String>,

    /// Under --redis: how long Redis may be unreachable (no new request starts meanwhile)
    /// before the run stops as for a closed origin (exit 3; --resume continues).
    #[arg(help_heading = heading::SHARING)]
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub redis_timeout: Option<Duration>,
}

/// What `--shard` says.
#[derive(Clone, Copy, Debug)]
pub enum ShardArg {
    /// Given on the command line.
    Fixed(Shard),
    /// Read from `JOB_COMPLETION_INDEX` and `SLUICE_SHARDS`.
    Env,
}

fn parse_shard(text: &str) -> Result<ShardArg, String> {
    if text == "env" {
        return Ok(ShardArg::Env);
    }
    Shard::parse(text)
        .map(ShardArg::Fixed)
        .map_err(|e| e.to_string())
}

/// `--listen`: `HOST:PORT` (names resolved, first address) or a bare port on 127.0.0.1.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!("`{text}` is not an address: write HOST:PORT (127.0.0.1:8080) or a port")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments parse without the help texts, and help still shows them:
    /// `--help` is answered by the second parse, which has them.
    #[test]
    fn help_texts_are_made_only_to_be_shown() {
        let cli = parse_from(["sluice", "run", "-c", "5", "in.txt"]).expect("parses");
        assert!(matches!(cli.command, Command::Run(_)));
        let shown = |argv: &[&str]| {
            let error = parse_from(argv).expect_err("help is shown as clap's error");
            error.render().to_string()
        };
        let mock = shown(&["sluice", "mock", "--help"]);
        assert!(mock.contains("Endpoints"), "{mock}");
        let run = shown(&["sluice", "run", "--help"]);
        assert!(
            run.contains("Exit status") && run.contains("[default: "),
            "{run}"
        );
    }
}
