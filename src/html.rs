//! The HTML report (`run --report FILE.html`, `sluice report --html FILE`):
//! one self-contained file — inline CSS and SVG, no script, and a Content
//! Security Policy that forbids loading anything — drawn from a
//! [`Report`] computed from records alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use sluice::record::rfc3339;
use sluice::stats::{Bin, Interval, Pause, Report, TimeSplit, percentile_ms};

use crate::chart::{Axis, Chart, Series, Style};
use crate::screen::Summary;
use crate::settings::RunInfo;

/// Where the records of a report came from.
pub enum Source<'a> {
    /// The run that is writing the report, with its settings.
    Run(&'a RunInfo),
    /// Result files read back by `sluice report`.
    Files(&'a [PathBuf]),
}

/// Top messages shown per error kind.
const TOP_MESSAGES: usize = 5;

/// Pauses listed in the table (the longest).
const TOP_PAUSES: usize = 20;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:62em;padding:0 1em;color:#222;line-height:1.4}\
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0}\
td,th{padding:.25em .9em .25em 0;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
th{font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.note{color:#666;font-size:.9em}.legend{font-size:.9em;margin:.2em 0 .6em}\
.legend span{margin-right:1.4em;white-space:nowrap}.sw{display:inline-block;width:1.6em;height:.7em;margin-right:.35em;vertical-align:middle}\
svg text{font-size:11px;fill:#555}svg .grid{stroke:#e5e5e5}svg .axis{stroke:#999}\
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}";

/// Writes the report (through a temporary file and a rename; a device in place).
pub fn write(path: &Path, summary: &Summary, report: &Report, source: Source<'_>) -> Result<()> {
    let html = render(summary, report, &source);
    crate::outputs::replace(path, html.as_bytes())
        .with_context(|| format!("cannot write the report {}", path.display()))
}

/// The whole page.
pub fn render(s: &Summary, r: &Report, source: &Source<'_>) -> String {
    let mut h = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n";
    h += "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n<title>sluice report</title>\n";
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head><body>");
    h += "<h1>sluice report</h1>\n";
    h += &heading(r, source);
    h += "<h2>Summary</h2>\n";
    h += &summary_table(s);
    h += &time_split(&r.split);
    h += &charts(r);
    h += &errors(r);
    h += &provenance(r, source);
    h += "</body></html>\n";
    h
}

fn heading(r: &Report, source: &Source<'_>) -> String {
    let started = match source {
        Source::Run(run) => Some(run.started_at),
        Source::Files(_) => r.first(),
    };
    let when = started.map_or("no request was sent".to_string(), |t| {
        format!("started {}", clock(t))
    });
    let what = match source {
        Source::Run(_) => "written by the run".to_string(),
        Source::Files(files) => format!(
            "recomputed from {} result file{}",
            files.len(),
            plural(files.len() as u64)
        ),
    };
    format!(
        "<p class=\"sub\">{} · {what} · sluice {}</p>\n",
        escape(&when),
        env!("CARGO_PKG_VERSION")
    )
}

fn summary_table(s: &Summary) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("requests".into(), s.records.to_string()),
        ("ok".into(), s.ok.to_string()),
        ("failed".into(), s.failed.to_string()),
    ];
    if s.resumed {
        rows.push(("sent this run".into(), s.sent_this_run.to_string()));
    }
    rows.extend([
        (
            "attempts (retries)".into(),
            format!("{} ({})", s.attempts, s.retries),
        ),
        ("wall time".into(), format!("{:.2} s", s.wall_seconds)),
        (
            "requests per second".into(),
            format!("{:.1}", s.requests_per_second),
        ),
    ]);
    if let Some(l) = s.latency {
        rows.push((
            "latency p50 / p90 / p99 / max".into(),
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            ),
        ));
    }
    if !s.by_status.is_empty() {
        let v: Vec<String> = s
            .by_status
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        rows.push(("by status".into(), v.join(", ")));
    }
    if !s.by_error.is_empty() {
        let v: Vec<String> = s
            .by_error
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        rows.push(("by error".into(), v.join(", ")));
    }
    for c in &s.closed_origins {
        rows.push(("closed origin".into(), c.clone()));
    }
    for l in &s.learned {
        rows.push((
            "learned limits".into(),
            format!("{} ({}): {}", l.origin, l.dialect, l.pace()),
        ));
    }
    if let Some(a) = &s.adaptive {
        rows.push(("concurrency limit".into(), a.describe()));
    }
    if s.not_written > 0 {
        rows.push(("without a record".into(), s.not_written.to_string()));
    }
    if let Some(stopped) = &s.stopped {
        rows.push(("stopped".into(), stopped.clone()));
    }
    if s.insecure {
        rows.push((
            "warning".into(),
            "TLS certificates were NOT verified (--insecure)".into(),
        ));
    }
    table(&rows)
}

/// Mean time per request in each state, as a table and a stacked bar.
fn time_split(t: &TimeSplit) -> String {
    if t.records == 0 || t.total_ms() <= 0.0 {
        return String::new();
    }
    let n = t.records as f64;
    let total = t.total_ms();
    let parts = [
        (
            "queue",
            "waiting for a slot or an origin pause",
            t.queue_ms,
            "#9aa9b8",
        ),
        (
            "rate",
            "waiting for a rate or budget token",
            t.rate_ms,
            "#c9a227",
        ),
        ("retry", "waiting to retry", t.retry_ms, "#d9822b"),
        ("service", "attempts in flight", t.service_ms, "#3a7bc8"),
    ];
    let mut h = String::from(
        "<h3>Where the time went</h3>\n<table id=\"time-split\"><tr><th></th><th>mean per request</th><th>share</th></tr>\n",
    );
    for (name, what, ms, color) in parts {
        let _ = writeln!(
            h,
            "<tr><th><span class=\"sw\" style=\"background:{color}\"></span>{name}</th><td class=\"n\">{:.1} ms</td><td class=\"n\">{:.1}%</td><td class=\"note\">{what}</td></tr>",
            ms / n,
            100.0 * ms / total
        );
    }
    h += "</table>\n<svg width=\"600\" height=\"18\" viewBox=\"0 0 600 18\" role=\"img\" aria-label=\"share of time per state\">";
    let mut x = 0.0;
    for (name, _, ms, color) in parts {
        let w = 600.0 * ms / total;
        let _ = write!(
            h,
            "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"18\" fill=\"{color}\"><title>{name}: {:.1}%</title></rect>",
            100.0 * ms / total
        );
        x += w;
    }
    h += "</svg>\n";
    let _ = writeln!(
        h,
        "<p class=\"note\">Over the {} record{} that carry their waits: from entering sluice's queue to the final outcome.</p>",
        t.records,
        plural(t.records)
    );
    h
}

fn charts(r: &Report) -> String {
    let t = &r.timeline;
    let intervals: Vec<&Interval> = t.intervals().collect();
    if intervals.is_empty() {
        return "<h2>Over time</h2>\n<p>No request was sent.</p>\n".into();
    }
    let width_s = t.width().as_secs_f64();
    let start = t.start().unwrap_or(SystemTime::UNIX_EPOCH);
    let x = Axis::time(intervals.len() as f64 * width_s);
    let at = |i: usize| (i as f64 + 0.5) * width_s;
    let mut h = String::from("<h2>Over time</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">From {}, in {} intervals of {}; times on the axes are since then.</p>",
        escape(&clock(start)),
        intervals.len(),
        show_seconds(width_s)
    );
    h += &throughput(&intervals, &x, width_s, at);
    h += &latency(&intervals, &x, at);
    h += &activity(&intervals, t.pauses(), start, &x, width_s, at);
    h += &histogram(&r.tally.latency_bins());
    h += &pause_table(t.pauses(), start);
    h
}

fn throughput(
    intervals: &[&Interval],
    x: &Axis,
    width_s: f64,
    at: impl Fn(usize) -> f64,
) -> String {
    let ok: Vec<Option<f64>> = intervals
        .iter()
        .map(|i| Some(i.done_ok as f64 / width_s))
        .collect();
    let failed: Vec<Option<f64>> = intervals
        .iter()
        .map(|i| Some(i.done_failed as f64 / width_s))
        .collect();
    let peak = intervals
        .iter()
        .map(|i| (i.done_ok + i.done_failed) as f64 / width_s)
        .fold(0.0, f64::max);
    let mut c = Chart::new(
        "throughput",
        x.clone(),
        Axis::linear(peak, "completed per second"),
    );
    let xs: Vec<f64> = (0..intervals.len()).map(at).collect();
    c.stacked_bars(
        &xs,
        width_s,
        &[("ok", &ok, "#2e8b57"), ("failed", &failed, "#c0392b")],
    );
    format!(
        "<h3>Completions</h3>\n{}{}",
        legend(&[
            ("ok", "#2e8b57", Style::Bar),
            ("failed", "#c0392b", Style::Bar)
        ]),
        c.finish()
    )
}

fn latency(intervals: &[&Interval], x: &Axis, at: impl Fn(usize) -> f64) -> String {
    let series = |ok: bool, q: f64| -> Vec<Option<f64>> {
        intervals
            .iter()
            .map(|i| {
                let h = if ok { &i.ok } else { &i.failed };
                h.as_ref()
                    .filter(|h| !h.is_empty())
                    .map(|h| percentile_ms(h, q))
            })
            .collect()
    };
    let lines = [
        ("ok p50", series(true, 0.5), "#1f6fb4", Style::Line),
        ("ok p99", series(true, 0.99), "#1f6fb4", Style::Dashed),
        ("failed p50", series(false, 0.5), "#c0392b", Style::Line),
        ("failed p99", series(false, 0.99), "#c0392b", Style::Dashed),
    ];
    let values = || lines.iter().flat_map(|l| l.1.iter().flatten().copied());
    let peak = values().fold(0.0f64, f64::max);
    let least = values().fold(f64::INFINITY, f64::min);
    let y = Axis::fitted(least.min(peak), peak, "milliseconds");
    let mut c = Chart::new("latency", x.clone(), y);
    let xs: Vec<f64> = (0..intervals.len()).map(at).collect();
    for (name, values, color, style) in &lines {
        c.line(&Series {
            name,
            xs: &xs,
            values,
            color,
            style: *style,
            right: false,
        });
    }
    let keys: Vec<(&str, &str, Style)> = lines.iter().map(|l| (l.0, l.2, l.3)).collect();
    format!(
        "<h3>Latency</h3>\n{}{}<p class=\"note\">Percentiles of the requests that started in each interval (first attempt to final outcome).</p>\n",
        legend(&keys),
        c.finish()
    )
}

fn activity<'a>(
    intervals: &[&Interval],
    pauses: impl Iterator<Item = &'a Pause>,
    start: SystemTime,
    x: &Axis,
    width_s: f64,
    at: impl Fn(usize) -> f64,
) -> String {
    let width_ns = width_s * 1e9;
    let in_flight: Vec<Option<f64>> = intervals
        .iter()
        .map(|i| Some(i.busy_ns as f64 / width_ns))
        .collect();
    let retries: Vec<Option<f64>> = intervals
        .iter()
        .map(|i| Some(i.retries as f64 / width_s))
        .collect();
    let peak = |v: &[Option<f64>]| v.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    let mut c = Chart::new(
        "activity",
        x.clone(),
        Axis::linear(peak(&in_flight), "in flight"),
    );
    c.right_axis(Axis::linear(peak(&retries), "retries per second"));
    for p in pauses {
        let from = secs_since(start, p.from);
        let until = secs_since(start, p.until);
        let statuses: Vec<String> = p.statuses.iter().map(u16::to_string).collect();
        let reason = format!(
            "{} paused by HTTP {} for {} ({} attempt{} told to wait)",
            p.origin,
            statuses.join("/"),
            show_seconds(until - from),
            p.count,
            plural(p.count)
        );
        c.band(
            from,
            until,
            &format!("HTTP {}", statuses.join("/")),
            &reason,
        );
    }
    let xs: Vec<f64> = (0..intervals.len()).map(at).collect();
    c.bars(&xs, width_s, "retries", &retries, "#d9822b", true);
    c.line(&Series {
        name: "in flight",
        xs: &xs,
        values: &in_flight,
        color: "#3a7bc8",
        style: Style::Line,
        right: false,
    });
    format!(
        "<h3>In flight, retries and origin pauses</h3>\n{}{}<p class=\"note\">In flight: the mean number of attempts running during each interval (left axis). Retries: attempts after a request's first, per second (right axis). A shaded band is a time an origin was paused because a server answered 429 or 503; hover it for the reason.</p>\n",
        legend(&[
            ("in flight", "#3a7bc8", Style::Line),
            ("retries per second", "#d9822b", Style::Bar),
            ("origin paused", "#f3c6c0", Style::Bar),
        ]),
        c.finish()
    )
}

fn histogram(bins: &[Bin]) -> String {
    if bins.is_empty() {
        return String::new();
    }
    let lo = bins[0].lo_ms;
    let hi = bins[bins.len() - 1].hi_ms;
    let log = hi / lo.max(1e-9) > 20.0 + 1e-9 && bins.len() > 1 && {
        let w0 = bins[0].hi_ms - bins[0].lo_ms;
        let w1 = bins[bins.len() - 1].hi_ms - bins[bins.len() - 1].lo_ms;
        w1 > 1.5 * w0
    };
    let peak = bins.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let x = if log {
        Axis::log(lo, hi, "milliseconds (logarithmic)")
    } else {
        Axis::range(lo, hi, "milliseconds")
    };
    let mut c = Chart::new("histogram", x, Axis::linear(peak, "requests"));
    for b in bins {
        c.bin(
            b.lo_ms,
            b.hi_ms,
            b.count as f64,
            &format!(
                "{} – {} ms: {} request{}",
                short_ms(b.lo_ms),
                short_ms(b.hi_ms),
                b.count,
                plural(b.count)
            ),
        );
    }
    format!(
        "<h3>Latency distribution</h3>\n{}{}<p class=\"note\">Requests by duration (first attempt to final outcome), {} bins; hover a bar for its range and count.</p>\n",
        legend(&[("requests", "#3a7bc8", Style::Bar)]),
        c.finish(),
        if log { "logarithmic" } else { "equal-width" }
    )
}

fn pause_table<'a>(pauses: impl Iterator<Item = &'a Pause>, start: SystemTime) -> String {
    let mut all: Vec<&Pause> = pauses.collect();
    if all.is_empty() {
        return String::new();
    }
    all.sort_by(|a, b| {
        let len = |p: &Pause| p.until.duration_since(p.from).unwrap_or_default();
        len(b).cmp(&len(a))
    });
    let mut h = String::from(
        "<h3>Origin pauses</h3>\n<table id=\"pauses\"><tr><th>origin</th><th>from</th><th>for</th><th>asked by</th><th>attempts told to wait</th></tr>\n",
    );
    for p in all.iter().take(TOP_PAUSES) {
        let statuses: Vec<String> = p.statuses.iter().map(|s| format!("HTTP {s}")).collect();
        let from = secs_since(start, p.from);
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&p.origin),
            show_seconds(from),
            show_seconds(secs_since(start, p.until) - from),
            statuses.join(", "),
            p.count
        );
    }
    h += "</table>\n";
    if all.len() > TOP_PAUSES {
        let _ = writeln!(
            h,
            "<p class=\"note\">The {TOP_PAUSES} longest of {} pauses.</p>",
            all.len()
        );
    }
    h
}

fn errors(r: &Report) -> String {
    let top = r.errors.top(TOP_MESSAGES);
    if top.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<h2>Errors</h2>\n<table id=\"errors\"><tr><th>kind</th><th>message</th><th>requests</th></tr>\n",
    );
    for (kind, messages, rest) in top {
        for (i, (message, n)) in messages.iter().enumerate() {
            let k = if i == 0 { kind.as_str() } else { "" };
            let _ = writeln!(
                h,
                "<tr><th>{k}</th><td>{}</td><td class=\"n\">{n}</td></tr>",
                escape(message)
            );
        }
        if rest > 0 {
            let _ = writeln!(
                h,
                "<tr><th></th><td class=\"note\">other messages</td><td class=\"n\">{rest}</td></tr>"
            );
        }
    }
    h + "</table>\n<p class=\"note\">The most frequent messages of each kind of failure (final outcomes only).</p>\n"
}

fn provenance(r: &Report, source: &Source<'_>) -> String {
    let mut h = String::from("<h2>Run</h2>\n");
    match source {
        Source::Run(run) => {
            let mut rows = vec![
                ("started".to_string(), clock(run.started_at)),
                ("sluice".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("inputs".to_string(), run.inputs.join(", ")),
            ];
            rows.extend(run.outputs.iter().cloned());
            h += &table(&rows);
            h += "<h3>Settings</h3>\n";
            h += &table(&run.settings);
            h += "<p class=\"note\">Secrets (and every <code>--redact</code> name) appear as REDACTED.</p>\n";
        }
        Source::Files(files) => {
            let shown: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            let mut rows = vec![
                ("result files".to_string(), shown.join(", ")),
                (
                    "recomputed by".to_string(),
                    format!("sluice {}", env!("CARGO_PKG_VERSION")),
                ),
            ];
            if let (Some(a), Some(b)) = (r.first(), r.last()) {
                rows.push(("first request queued".into(), clock(a)));
                rows.push(("last outcome".into(), clock(b)));
            }
            h += &table(&rows);
            h += "<p class=\"note\">Recomputed from result records alone: the run's settings are not in the records, so they are not shown.</p>\n";
        }
    }
    h
}

fn table(rows: &[(String, String)]) -> String {
    let mut t = String::from("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(t, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    t + "</table>\n"
}

fn legend(keys: &[(&str, &str, Style)]) -> String {
    let mut h = String::from("<div class=\"legend\">");
    for (name, color, style) in keys {
        let swatch = match style {
            Style::Bar => format!("<span class=\"sw\" style=\"background:{color}\"></span>"),
            Style::Line => format!(
                "<span class=\"sw\" style=\"height:0;border-top:2px solid {color}\"></span>"
            ),
            Style::Dashed => format!(
                "<span class=\"sw\" style=\"height:0;border-top:2px dashed {color}\"></span>"
            ),
        };
        let _ = write!(h, "<span>{swatch}{}</span>", escape(name));
    }
    h + "</div>\n"
}

/// `2026-11-25 18:52:31 UTC`.
fn clock(t: SystemTime) -> String {
    let s = rfc3339(t);
    format!("{} {} UTC", &s[..10], &s[11..19])
}

fn secs_since(start: SystemTime, t: SystemTime) -> f64 {
    match t.duration_since(start) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// `0.25 s`, `12 s`, `4 min 30 s`, `2 h 5 min`.
pub fn show_seconds(s: f64) -> String {
    if s < 10.0 {
        let t = format!("{s:.3}");
        let t = t.trim_end_matches('0').trim_end_matches('.');
        format!("{t} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        let m = (s / 60.0).floor();
        format!("{m:.0} min {:.0} s", s - 60.0 * m)
    } else {
        let h = (s / 3600.0).floor();
        format!("{h:.0} h {:.0} min", (s - 3600.0 * h) / 60.0)
    }
}

/// `0.25`, `3.2`, `819`: enough digits to tell bins apart.
fn short_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Text made safe for HTML content and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::record::ErrorKind;
    use sluice::stats::{RecordFacts, Sample};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn text_from_records_is_escaped_and_nothing_is_loaded() {
        let mut r = Report::default();
        r.add(&Sample {
            facts: RecordFacts {
                ok: false,
                status: Some(502),
                kind: Some(ErrorKind::HttpStatus),
                attempts: 1,
                duration: Duration::from_millis(5),
            },
            message: Some("<script>alert(1)</script> & \"quotes\"".into()),
            started_at: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            origin: None,
            timing: None,
        });
        let s = crate::recompute::summary(&r);
        let files = [PathBuf::from("<b>res</b>.jsonl")];
        let html = render(&s, &r, &Source::Files(&files));
        assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
        assert!(html.contains("&lt;b&gt;res&lt;/b&gt;.jsonl"));
        assert!(!html.contains("src=") && !html.contains("href="));
    }
}
