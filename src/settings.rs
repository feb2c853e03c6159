//! What the HTML report of a run says about the run itself: when it
//! started, its inputs and outputs, and every setting in effect — secrets
//! redacted (`redact.rs` decides what is secret).

use std::time::SystemTime;

use sluice::Config;
use sluice::attempt::show;

use crate::cli::RunArgs;

/// The run's own facts, which records do not carry.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// When the run started.
    pub started_at: SystemTime,
    /// The input files (or standard input).
    pub inputs: Vec<String>,
    /// Each output: what it is, and where.
    pub outputs: Vec<(String, String)>,
    /// Each setting in effect and its value.
    pub settings: Vec<(String, String)>,
    /// The results file, when it is a file that can be read back.
    pub results_file: Option<std::path::PathBuf>,
}

impl RunInfo {
    /// The facts of a run started now with `args`, configured as `config`.
    pub fn new(args: &RunArgs, config: &Config) -> RunInfo {
        let shown = |p: &std::path::Path| {
            if p == std::path::Path::new("-") {
                "standard output".to_string()
            } else {
                p.display().to_string()
            }
        };
        let mut inputs: Vec<String> = args
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if inputs.is_empty() || inputs == ["-"] {
            inputs = vec!["standard input".into()];
        }
        let mut outputs = vec![(
            "results".to_string(),
            args.output
                .as_deref()
                .map_or("standard output".into(), shown),
        )];
        if let Some(p) = &args.summary_json {
            outputs.push(("summary".into(), shown(p)));
        }
        if let Some(p) = &args.report {
            outputs.push(("report".into(), shown(p)));
        }
        let mut settings = engine_settings(config);
        let redactor = &config.redactor;
        if let Some(base) = &args.base_url {
            settings.push(("--base-url".into(), redactor.raw_url(base)));
        }
        if let Some(shard) = args.shard.and_then(|s| s.resolve().ok()) {
            settings.push(("--shard".into(), shard.to_string()));
        }
        if let Some(shared) = &config.shared {
            let url = sluice::shared::redacted_url(&shared.url);
            settings.push(("--redis".into(), url));
            settings.push(("--job".into(), shared.job.clone()));
        }
        for (flag, on) in [
            ("--resume", args.resume),
            ("--retry-failed", args.retry_failed),
            ("--overwrite", args.overwrite),
            ("--fsync", args.fsync),
        ] {
            if on {
                settings.push((flag.into(), "yes".into()));
            }
        }
        for (flag, path) in [("--cacert", &args.cacert), ("--cert", &args.cert)] {
            if let Some(p) = path {
                settings.push((flag.into(), p.display().to_string()));
            }
        }
        if !args.redact.is_empty() {
            settings.push(("--redact".into(), args.redact.join(", ")));
        }
        RunInfo {
            results_file: args
                .output
                .clone()
                .filter(|p| p != std::path::Path::new("-")),
            started_at: SystemTime::now(),
            inputs,
            outputs,
            settings,
        }
    }
}

/// The engine's settings, by option name, defaults included.
fn engine_settings(c: &Config) -> Vec<(String, String)> {
    let unlimited = |v: Option<String>| v.unwrap_or_else(|| "unlimited".into());
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut s: Vec<(&str, String)> = vec![
        ("--concurrency", c.concurrency.to_string()),
        (
            "--per-host-concurrency",
            unlimited(c.per_host_concurrency.map(|n| n.to_string())),
        ),
        ("--rate", unlimited(c.rate.map(|r| r.to_string()))),
        (
            "--per-host-rate",
            unlimited(c.per_host_rate.map(|r| r.to_string())),
        ),
        ("--adaptive", yes(c.adaptive)),
        ("--burst", c.burst.to_string()),
        ("--budget", unlimited(c.budget.map(|r| r.to_string()))),
    ];
    if c.budget.is_some() {
        let burst = c
            .effective_budget_burst()
            .map_or("-".into(), |b| b.to_string());
        s.push(("--budget-burst", burst));
    }
    s.extend([
        ("--timeout", show(c.timeout)),
        ("--connect-timeout", show(c.connect_timeout)),
        ("--retries", c.retries.to_string()),
        ("--retry-on", c.retry_on.to_string()),
        ("--retry-non-idempotent", yes(c.retry_non_idempotent)),
        ("--backoff-initial", show(c.backoff_initial)),
        ("--backoff-max", show(c.backoff_max)),
        ("--max-retry-after", show(c.max_retry_after)),
        ("--halt-after", c.halt_after.to_string()),
        ("--ordered", yes(c.ordered)),
        ("--body", format!("{:?}", c.body_mode).to_ascii_lowercase()),
        ("--max-body-size", format!("{} bytes", c.max_body_size)),
        ("--include-headers", yes(c.include_headers)),
        ("--http2", yes(c.http2)),
        ("--compressed", yes(c.compressed)),
        ("--insecure", yes(c.tls.insecure)),
    ]);
    if c.ordered {
        s.push(("--reorder-window", c.reorder_window.to_string()));
    }
    let proxies = [&c.proxy.http, &c.proxy.https];
    let mut shown: Vec<String> = proxies
        .into_iter()
        .flatten()
        .map(|p| c.redactor.raw_url(p))
        .collect();
    shown.dedup();
    s.push((
        "proxy",
        if shown.is_empty() {
            "none".into()
        } else {
            shown.join(", ")
        },
    ));
    let mut out: Vec<(String, String)> = s.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (name, value) in &c.headers {
        let value = value.to_str().unwrap_or("(not text)");
        out.push((
            "-H".into(),
            format!(
                "{}: {}",
                name,
                c.redactor.header_value(name.as_str(), value)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn secrets_never_reach_the_settings() {
        let cli = crate::cli::Cli::try_parse_from([
            "sluice",
            "run",
            "in.txt",
            "-o",
            "out.jsonl",
            "-H",
            "Authorization: Bearer SECRET1",
            "-H",
            "X-Trace: visible",
            "--proxy",
            "http://user:SECRET2@proxy:3128",
            "--base-url",
            "https://api.example/v1?key=SECRET3",
            "--rate",
            "50/s",
        ])
        .unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            panic!("a run");
        };
        let info = RunInfo::new(&args, &args.config().unwrap());
        let all = format!("{info:?}");
        for secret in ["SECRET1", "SECRET2", "SECRET3"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
        assert!(
            all.contains("x-trace: visible") && all.contains("50/s"),
            "{all}"
        );
        assert!(all.contains("\"--per-host-rate\", \"unlimited\""), "{all}");
        assert_eq!(info.outputs[0], ("results".into(), "out.jsonl".into()));
    }
}
