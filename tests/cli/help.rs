//! What `--help` and `sluice help` show: `run`'s options grouped under
//! headings with every default stated, the topics, the exit statuses, the
//! mock's endpoints, and what the demo writes where (and `demo -o`).

use std::collections::BTreeMap;
use std::ffi::OsStr;

use crate::support::*;

/// The headings of `sluice run --help`, in the order they appear.
const HEADINGS: &[&str] = &[
    "Output",
    "Limits",
    "Retries",
    "Requests",
    "Display",
    "TLS and proxies",
    "Across machines",
];

/// Options that take a value but have no default (an empty list, or a file
/// that is only written when asked for).
const NO_DEFAULT: &[&str] = &[
    "--header",
    "--redact",
    "--summary-json",
    "--report",
    "--cert",
    "--key",
];

/// One option of a help text: its heading and its whole description.
#[derive(Debug)]
struct Option_ {
    heading: String,
    takes_value: bool,
    text: String,
}

/// The options of a clap help text (`-h` or `--help`) by long name, each
/// with the heading it sits under; the text after the options is not read.
fn options(help: &str) -> BTreeMap<String, Option_> {
    let mut found = BTreeMap::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_string();
            if heading == "Examples" {
                break;
            }
            current = None;
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (indent == 2 || indent == 6) && trimmed.starts_with('-') {
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            let at = words
                .iter()
                .position(|w| w.starts_with("--"))
                .expect("an option line names a long option");
            let long = words[at].to_string();
            let takes_value = words.get(at + 1).is_some_and(|w| w.starts_with('<'));
            found.insert(
                long.clone(),
                Option_ {
                    heading: heading.clone(),
                    takes_value,
                    text: format!("{} ", words[at + 1..].join(" ")),
                },
            );
            current = Some(long);
        } else if let Some(option) = current.as_ref().and_then(|o| found.get_mut(o)) {
            option.text.push_str(trimmed);
            option.text.push(' ');
        }
    }
    found
}

async fn help_of(args: &[&str]) -> String {
    let out = Sluice::new(args).output().await;
    assert_eq!(out.code, 0, "{args:?}: {out:?}");
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_help_puts_every_option_under_a_heading() {
    for flag in ["--help", "-h"] {
        let help = help_of(&["run", flag]).await;
        let shown: Vec<&str> = help
            .lines()
            .filter(|l| HEADINGS.contains(&l.trim_end_matches(':')))
            .map(|l| l.trim_end_matches(':'))
            .collect();
        assert_eq!(shown, HEADINGS, "{flag}:\n{help}");
        let options = options(&help);
        assert!(options.len() > 40, "{flag}: too few options: {options:?}");
        for (name, option) in &options {
            if name == "--help" {
                continue;
            }
            assert!(
                HEADINGS.contains(&option.heading.as_str()),
                "{flag}: {name} sits under `{}`, not one of {HEADINGS:?}",
                option.heading
            );
        }
        let expected = [
            ("--output", "Output"),
            ("--resume", "Output"),
            ("--concurrency", "Limits"),
            ("--rate", "Limits"),
            ("--budget", "Limits"),
            ("--timeout", "Limits"),
            ("--retries", "Retries"),
            ("--retry-on", "Retries"),
            ("--header", "Requests"),
            ("--base-url", "Requests"),
            ("--progress", "Display"),
            ("--quiet", "Display"),
            ("--cacert", "TLS and proxies"),
            ("--proxy", "TLS and proxies"),
        ];
        for (name, heading) in expected {
            assert_eq!(options[name].heading, heading, "{flag}: {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_help_states_every_default() {
    for flag in ["--help", "-h"] {
        let help = help_of(&["run", flag]).await;
        let options = options(&help);
        for name in [
            "--per-host-concurrency",
            "--rate",
            "--per-host-rate",
            "--budget",
        ] {
            assert!(
                options[name].text.contains("[default: unlimited]"),
                "{flag}: {name}: {:?}",
                options[name].text
            );
        }
        for (name, option) in &options {
            if option.takes_value && !NO_DEFAULT.contains(&name.as_str()) {
                assert!(
                    option.text.contains("[default: "),
                    "{flag}: {name} does not state its default: {:?}",
                    option.text
                );
            }
        }
        assert!(
            options["--concurrency"].text.contains("[default: 16]"),
            "{flag}"
        );
        assert!(
            options["--output"].text.contains("[default: stdout]"),
            "{flag}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_help_has_examples_topics_and_exit_statuses() {
    let help = help_of(&["--help"]).await;
    assert!(help.contains("Examples:\n  sluice demo"), "{help}");
    assert!(
        help.contains("sluice run urls.txt -c 50 -o results.jsonl"),
        "{help}"
    );
    for topic in ["input", "output", "exit-status"] {
        assert!(help.contains(&format!("\n  {topic} ")), "{topic}: {help}");
    }
    let statuses = help
        .split("Exit status")
        .nth(1)
        .expect("an exit status section");
    for code in ["0", "1", "2", "3", "130", "143"] {
        let listed = statuses
            .lines()
            .any(|l| l.starts_with(&format!("  {code} ")));
        assert!(listed, "exit status {code} is missing:\n{statuses}");
    }
    assert_eq!(
        help_of(&["help"]).await,
        help,
        "`sluice help` is `sluice --help`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_names_a_command_or_a_topic() {
    for command in ["run", "mock", "demo"] {
        assert_eq!(
            help_of(&["help", command]).await,
            help_of(&[command, "--help"]).await,
            "sluice help {command}"
        );
    }
    let usage = help_of(&["help", "run"]).await;
    assert!(
        usage.contains("Usage: sluice run [OPTIONS] [INPUT]..."),
        "{usage}"
    );

    let input = help_of(&["help", "input"]).await;
    for field in schema_properties("request") {
        assert!(input.contains(&format!("`{field}`")), "input: {field}");
    }
    let output = help_of(&["help", "output"]).await;
    for field in schema_properties("result") {
        assert!(output.contains(&format!("`{field}`")), "output: {field}");
    }
    // Rendered for a terminal: no Markdown table rules or headings.
    assert!(
        !output.contains("|---") && !output.contains("\n#"),
        "{output}"
    );
    let statuses = help_of(&["help", "exit-status"]).await;
    for code in ["0", "1", "2", "3", "130", "143"] {
        assert!(
            statuses.contains(&format!("\n{code} ")),
            "{code}: {statuses}"
        );
    }

    let unknown = Sluice::new(["help", "inptu"]).output().await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains("`inptu`") && unknown.stderr.contains("input, output, exit-status"),
        "{}",
        unknown.stderr
    );
}

/// The top-level property names of `schema/NAME.schema.json`.
fn schema_properties(name: &str) -> Vec<String> {
    let path = format!("{}/schema/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the schema is readable");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    let properties = schema["properties"].as_object().expect("properties");
    assert!(properties.len() >= 9, "{path}");
    properties.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_help_and_the_mock_list_the_same_endpoints() {
    let help = help_of(&["mock", "--help"]).await;
    let endpoints = sluice_mock::endpoints();
    assert!(endpoints.len() >= 15, "{endpoints:?}");
    for (path, _) in &endpoints {
        assert!(
            help.contains(&format!("\n  {path} ")),
            "{path} missing from mock --help:\n{help}"
        );
    }
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_help_says_what_it_writes_where() {
    let help = help_of(&["demo", "--help"]).await;
    for words in [
        "200 GET requests to /delay/1 at concurrency 15",
        "summary on stderr",
        "on stdout the makespan",
        "-o, --output <FILE>",
        "sluice-demo.jsonl in the temporary directory",
    ] {
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(words), "{words}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_writes_its_records_where_o_says() {
    let dir = tempdir();
    let file = dir.path().join("demo.jsonl");
    let to_file = Sluice::new([OsStr::new("demo"), OsStr::new("-o"), file.as_os_str()]).output();
    let to_stdout = Sluice::new(["demo", "-o", "-"]).output();
    let (to_file, to_stdout) = tokio::join!(to_file, to_stdout);

    assert_eq!(to_file.code, 0, "{to_file:?}");
    let text = std::fs::read_to_string(&file).expect("the demo's records");
    let records = parse_results(&text);
    assert_eq!(records.len(), 200);
    assert!(records.iter().all(|r| r.ok), "{text}");
    assert!(to_file.stdout.contains("makespan "), "{to_file:?}");
    assert!(
        to_file
            .stdout
            .contains(&format!("results: {}", file.display())),
        "{to_file:?}"
    );

    assert_eq!(to_stdout.code, 0, "{to_stdout:?}");
    assert_eq!(to_stdout.results().len(), 200, "only records on stdout");
    assert!(to_stdout.stderr.contains("makespan "), "{to_stdout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_refuses_a_file_that_holds_something() {
    let dir = tempdir();
    let file = write_file(dir.path(), "results.jsonl", "{\"id\":1}\n");
    let out = Sluice::new([OsStr::new("demo"), OsStr::new("-o"), file.as_os_str()])
        .output()
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("already exists and is not empty"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("makespan"),
        "nothing ran: {}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"id\":1}\n");
}
