//! Help beyond the options: `sluice help TOPIC`, and the examples, exit
//! statuses and endpoint list shown after `--help`. Topics are the Markdown
//! documents of `docs/`, compiled in, so the terminal, an installed binary
//! and the repository say the same thing.

use crate::cli;
use crate::exit::{ExitCode, Stop};

/// A document printed by `sluice help NAME`.
struct Topic {
    name: &'static str,
    about: &'static str,
    markdown: &'static str,
}

const TOPICS: &[Topic] = &[
    Topic {
        name: "input",
        about: "the input format: one request per line, the fields of a JSON request line",
        markdown: include_str!("../docs/input.md"),
    },
    Topic {
        name: "output",
        about: "the fields of a result record, the error kinds, bodies, secrets, the summary",
        markdown: include_str!("../docs/output.md"),
    },
    Topic {
        name: "exit-status",
        about: "what each exit status means",
        markdown: include_str!("../docs/exit-status.md"),
    },
];

const EXIT_STATUS: &str = include_str!("../docs/exit-status.md");

/// Prints the help `sluice help [NAME]` asks for; returns the exit status.
pub fn print(name: Option<&str>) -> ExitCode {
    let is_command = |name: &str| cli::command().find_subcommand(name).is_some();
    match name {
        None => print_clap_help(&[]),
        Some(command) if is_command(command) => print_clap_help(&[command]),
        Some(name) => print_topic(name),
    }
}

/// Prints what `sluice ARGS... --help` prints, exactly.
fn print_clap_help(args: &[&str]) -> ExitCode {
    let argv = std::iter::once("sluice")
        .chain(args.iter().copied())
        .chain(["--help"]);
    if let Err(help) = cli::parse_from(argv) {
        // A closed stdout (`| head`) is not worth a message.
        let _ = help.print();
    }
    ExitCode::Ok
}

fn print_topic(name: &str) -> ExitCode {
    if let Some(topic) = TOPICS.iter().find(|t| t.name == name) {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{}", plain(topic.markdown));
        return ExitCode::Ok;
    }
    let cli = cli::command();
    let commands: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    let topics: Vec<&str> = TOPICS.iter().map(|t| t.name).collect();
    eprintln!(
        "sluice help: `{name}` is neither a command ({}) nor a topic ({}); try `sluice --help`",
        commands.join(", "),
        topics.join(", ")
    );
    ExitCode::stopped(Stop::Usage)
}

/// After `sluice --help`: examples, the topics and the exit statuses.
pub fn main_after_help() -> String {
    format!(
        "\
Examples:
  sluice demo                                    # see it work, against a built-in test server
  sluice run urls.txt -c 50 -o results.jsonl     # one URL per line, 50 at a time
  sluice run requests.jsonl -o out.jsonl --resume
  sluice report out.jsonl --html report.html     # the summary and the HTML report, from records
  sluice merge out-*.jsonl -o out.jsonl --check requests.jsonl   # shards' results into one
  sluice mock --listen 127.0.0.1:8080            # the test upstream, to try things out
  sluice help run                                # every option of run, with its default

{}
Exit status (of run and demo):
{}",
        topics_help(),
        exit_statuses()
    )
}

/// After `sluice run --help`: examples, where the formats are, the exit statuses.
pub fn run_after_help() -> String {
    format!(
        "\
Examples:
  sluice run urls.txt -c 50 -o results.jsonl
  sluice run batch.jsonl --base-url https://api.openai.com \\
      -H 'Authorization: Bearer ${{OPENAI_API_KEY}}' --rate 3000/m --budget 90000/m -o out.jsonl
  sluice run requests.jsonl -o out.jsonl --resume            # continue after a crash or Ctrl-C
  sluice run requests.jsonl --dry-run                        # check every line, send nothing

The input format: `sluice help input`. The record fields: `sluice help output`.

Exit status:
{}",
        exit_statuses()
    )
}

/// After `sluice mock --help`: the endpoints, from the mock's own table.
pub fn mock_after_help() -> String {
    let rows: Vec<Vec<String>> = sluice_mock::endpoints()
        .into_iter()
        .map(|(path, answer)| vec![path, answer])
        .collect();
    // clap reads `{n}` in help text as a line break; the table avoids it.
    format!(
        "Endpoints (any method unless noted; also listed by GET / on the server):\n{}",
        indent(&columns(&rows))
    )
}

/// The topics `sluice help` knows, one a line.
pub fn topics_help() -> String {
    let mut text = String::from("Help topics (sluice help TOPIC):\n");
    for topic in TOPICS {
        text.push_str(&format!("  {:<12} {}\n", topic.name, topic.about));
    }
    text
}

/// The exit-status table of `docs/exit-status.md`, as indented plain text.
fn exit_statuses() -> String {
    let rows: Vec<Vec<String>> = EXIT_STATUS.lines().filter_map(table_row).collect();
    // Without the header row: the heading above says what the columns are.
    indent(&columns(rows.get(1..).unwrap_or_default()))
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// Lines of plain text are wrapped to this width (clap wraps its own text
/// at the terminal's width, at most 100 columns when it cannot tell).
const WIDTH: usize = 78;

/// Markdown as terminal text: headings without `#`, code blocks indented,
/// tables as aligned columns, links as their text.
fn plain(markdown: &str) -> String {
    let mut out = String::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.starts_with('|') && !in_code {
            table.extend(table_row(line));
            continue;
        }
        out.push_str(&columns(&std::mem::take(&mut table)));
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            out.push_str(&format!("    {line}\n"));
        } else {
            out.push_str(&unlink(heading_text(line).unwrap_or(line)));
            out.push('\n');
        }
    }
    out.push_str(&columns(&table));
    out
}

/// The text of a Markdown heading (`## Title`), or `None` for other lines.
fn heading_text(line: &str) -> Option<&str> {
    let text = line.trim_start_matches('#');
    (text.len() < line.len() && text.starts_with(' ')).then(|| text.trim_start())
}

/// The cells of a table row; `None` for the separator row and other lines.
fn table_row(line: &str) -> Option<Vec<String>> {
    if !line.starts_with('|') {
        return None;
    }
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let cells: Vec<String> = inner.split('|').map(|c| unlink(c.trim())).collect();
    let separator = cells
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'));
    (!separator).then_some(cells)
}

/// Rows as columns padded to the widest cell; the last column is wrapped to
/// [`WIDTH`], its continuation lines aligned under it.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let Some((last, first)) = row.split_last() else {
            continue;
        };
        let mut prefix = String::new();
        for (cell, width) in first.iter().zip(&widths) {
            prefix.push_str(&format!("{cell:<width$}  "));
        }
        let hang = prefix.chars().count();
        for (i, line) in wrap(last, WIDTH.saturating_sub(hang).max(30))
            .iter()
            .enumerate()
        {
            let lead = if i == 0 {
                prefix.clone()
            } else {
                " ".repeat(hang)
            };
            out.push_str(&format!("{lead}{line}\n"));
        }
    }
    out
}

/// Words of `text` in lines of at most `width` characters (a longer word
/// gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("lines starts with one line");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// `[text](target)` becomes `text`.
fn unlink(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let target = after
            .find("](")
            .and_then(|close| Some((close, after[close + 2..].find(')')?)));
        let Some((close, end)) = target else { break };
        out.push_str(&rest[..open]);
        out.push_str(&after[..close]);
        rest = &after[close + 2 + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_terminal_text() {
        let md = "# Title\n\nSee [the schema](schema/x.json) and `code`.\n- a list item\n  goes on\n\n\
                  | a | meaning |\n|---|---|\n| `0` | ok |\n| 130 | interrupted |\n\n\
                  ```\n{\"url\": \"x\"}\n```\n";
        assert_eq!(
            plain(md),
            "Title\n\nSee the schema and `code`.\n- a list item\n  goes on\n\n\
             a    meaning\n`0`  ok\n130  interrupted\n\n    {\"url\": \"x\"}\n"
        );
    }

    #[test]
    fn table_cells_wrap_under_their_column() {
        let long = "word ".repeat(30);
        let text = columns(&[vec!["130".into(), long.trim().into()]]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1, "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{text}");
        assert!(lines[0].starts_with("130  word"), "{text}");
        assert!(
            lines[1..].iter().all(|l| l.starts_with("     word")),
            "{text}"
        );
    }

    #[test]
    fn brackets_without_a_link_stay() {
        assert_eq!(unlink("a [b] c (d)"), "a [b] c (d)");
        assert_eq!(unlink("[x](y) and [z](w)."), "x and z.");
    }

    #[test]
    fn the_exit_statuses_are_every_exit_code() {
        let text = exit_statuses();
        for code in ExitCode::ALL.map(ExitCode::code) {
            let listed = text
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{code} ")));
            assert!(listed, "exit status {code} is missing:\n{text}");
        }
    }
}
