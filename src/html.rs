//! `--report FILE.html`: a self-contained HTML report (no scripts, no
//! external files) with the summary, completions over time and the latency
//! distribution drawn as inline SVG.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use sluice::stats::Timeline;

use crate::report::Summary;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;

/// Writes the report (through a temporary file and a rename).
pub fn write(
    path: &Path,
    summary: &Summary,
    timeline: &Timeline,
    latency: &[(f64, u64)],
) -> Result<()> {
    let html = render(summary, timeline, latency);
    crate::outputs::replace(path, html.as_bytes())
        .with_context(|| format!("cannot write the report {}", path.display()))
}

fn render(s: &Summary, timeline: &Timeline, latency: &[(f64, u64)]) -> String {
    let mut h = String::new();
    h += "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>sluice report</title>\n";
    h += "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}\
          table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}\
          h2{margin-top:1.5em}.ok{fill:#3a7}.failed{fill:#c44}.bar{fill:#47a}text{font-size:11px;fill:#555}</style>\n";
    h += "</head><body>\n<h1>sluice report</h1>\n";
    h += &summary_table(s);
    h += "<h2>Completions per second</h2>\n";
    h += &timeline_svg(timeline);
    h += "<h2>Latency (first attempt to final outcome)</h2>\n";
    h += &latency_svg(latency);
    h += "</body></html>\n";
    h
}

fn summary_table(s: &Summary) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("requests".into(), s.records.to_string()),
        ("ok".into(), s.ok.to_string()),
        ("failed".into(), s.failed.to_string()),
        ("sent this run".into(), s.sent_this_run.to_string()),
        (
            "attempts (retries)".into(),
            format!("{} ({})", s.attempts, s.retries),
        ),
        ("wall time".into(), format!("{:.2} s", s.wall_seconds)),
        (
            "requests per second".into(),
            format!("{:.1}", s.requests_per_second),
        ),
        ("exit status".into(), s.exit_code.to_string()),
    ];
    if let Some(l) = s.latency {
        rows.push((
            "latency p50 / p90 / p99 / max".into(),
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            ),
        ));
    }
    for (status, n) in &s.by_status {
        rows.push((format!("status {status}"), n.to_string()));
    }
    for (kind, n) in &s.by_error {
        rows.push((format!("error {kind}"), n.to_string()));
    }
    for c in &s.closed_origins {
        rows.push(("closed origin".into(), c.clone()));
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
    let mut t = String::from("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(t, "<tr><th>{}</th><td>{}</td></tr>", escape(&k), escape(&v));
    }
    t + "</table>\n"
}

fn timeline_svg(timeline: &Timeline) -> String {
    let n = timeline.per_second.len().max(1);
    let peak = timeline
        .per_second
        .iter()
        .map(|(a, b)| a + b)
        .max()
        .unwrap_or(0)
        .max(1);
    let w = WIDTH / n as f64;
    let mut svg = svg_open();
    for (i, &(ok, failed)) in timeline.per_second.iter().enumerate() {
        let x = i as f64 * w;
        let h_ok = HEIGHT * ok as f64 / peak as f64;
        let h_failed = HEIGHT * failed as f64 / peak as f64;
        let _ = write!(
            svg,
            "<rect class=\"ok\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h_ok:.1}\"><title>second {i}: {ok} ok</title></rect>",
            HEIGHT - h_ok,
            (w - 0.5).max(0.5)
        );
        let _ = write!(
            svg,
            "<rect class=\"failed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h_failed:.1}\"><title>second {i}: {failed} failed</title></rect>",
            HEIGHT - h_ok - h_failed,
            (w - 0.5).max(0.5)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"-4\">{peak}/s</text><text x=\"0\" y=\"{y}\">0 s</text><text x=\"{WIDTH}\" y=\"{y}\" text-anchor=\"end\">{n} s</text>",
        y = HEIGHT + 14.0
    );
    svg + SVG_CLOSE
}

fn latency_svg(buckets: &[(f64, u64)]) -> String {
    if buckets.is_empty() {
        return "<p>No request was sent.</p>\n".into();
    }
    let peak = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    let w = WIDTH / buckets.len() as f64;
    let mut svg = svg_open();
    for (i, &(upper, count)) in buckets.iter().enumerate() {
        let h = HEIGHT * count as f64 / peak as f64;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>≤ {upper:.1} ms: {count}</title></rect>",
            i as f64 * w,
            HEIGHT - h,
            (w - 1.0).max(0.5)
        );
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            i as f64 * w + w / 2.0,
            HEIGHT + 14.0,
            short_ms(upper)
        );
    }
    let _ = write!(svg, "<text x=\"0\" y=\"-4\">{peak} requests</text>");
    svg + SVG_CLOSE
        + "<p>Each bar: requests whose duration is at most its label, in milliseconds (logarithmic buckets).</p>\n"
}

/// `0.25`, `3.2`, `819`: enough digits to tell buckets apart.
fn short_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2}")
    } else if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// Closes what [`svg_open`] opened.
const SVG_CLOSE: &str = "</g></svg>\n";

/// An SVG with room above the chart for its scale and below for its axis.
fn svg_open() -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\"><g transform=\"translate(0,16)\">",
        h = HEIGHT + 36.0
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::stats::Tally;
    use std::time::Duration;

    #[test]
    fn report_is_self_contained_and_escaped() {
        let mut s = Summary::new(&Tally::default(), &Tally::default(), Duration::from_secs(2));
        s.closed_origins.push("http://h: <b>quota</b>".into());
        let mut t = Timeline::default();
        t.add(Duration::from_millis(100), true);
        t.add(Duration::from_millis(1500), false);
        let html = render(&s, &t, &[(1.0, 3), (2.0, 1)]);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<svg") && !html.contains("<script") && !html.contains("src="));
        assert!(html.contains("&lt;b&gt;quota") && !html.contains("<b>quota"));
        assert!(html.contains("second 1: 1 failed"));
    }
}
