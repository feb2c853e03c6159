//! Inline SVG charts for the HTML report: axes with round ticks and
//! gridlines, bars, lines and shaded bands. Every mark carries a `<title>`
//! (shown on hover) and every series its name and number of data points
//! (`data-series`, `data-points`), so tests can check that charts hold data.

use std::fmt::Write as _;

use crate::html::escape;

const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 64.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 42.0;

/// How a series is drawn (and shown in a legend).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Style {
    /// Filled bars.
    Bar,
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
}

/// One axis: a scale from data to [0, 1] and its ticks.
#[derive(Clone, Debug)]
pub struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
    label: String,
}

impl Axis {
    /// Elapsed time from 0 to `span` seconds.
    pub fn time(span: f64) -> Axis {
        let span = span.max(1e-3);
        let step = TIME_STEPS
            .iter()
            .copied()
            .find(|&s| span / s <= 8.0)
            .unwrap_or(86_400.0 * (span / 86_400.0 / 8.0).ceil());
        let ticks = (0..)
            .map(|i| i as f64 * step)
            .take_while(|&t| t <= span + 1e-9)
            .map(|t| (t, time_label(t, step)))
            .collect();
        Axis {
            lo: 0.0,
            hi: span,
            log: false,
            ticks,
            label: "time since start".into(),
        }
    }

    /// From 0 to a round value at or above `max`.
    pub fn linear(max: f64, label: &str) -> Axis {
        let step = nice_step(if max > 0.0 { max } else { 1.0 } / 5.0);
        let top = ((max / step).ceil() * step).max(step);
        Axis::ticked(0.0, top, step, label)
    }

    /// Around the values from `min` to `max`: from 0 when they start near
    /// it, else from a round value below `min`, so a run where everything
    /// takes 1.00–1.06 s shows its variation rather than a flat line.
    pub fn fitted(min: f64, max: f64, label: &str) -> Axis {
        if min.is_nan() || min <= 0.3 * max {
            return Axis::linear(max, label);
        }
        let step = nice_step(((max - min) / 5.0).max(max * 1e-4));
        let lo = (min / step).floor() * step;
        let top = ((max / step).ceil() * step).max(lo + step);
        Axis::ticked(lo, top, step, label)
    }

    /// From `lo` to `hi`, ticks on round values inside.
    pub fn range(lo: f64, hi: f64, label: &str) -> Axis {
        let step = nice_step(((hi - lo) / 6.0).max(1e-9));
        let first = (lo / step).ceil() * step;
        let mut a = Axis::ticked(first, hi, step, label);
        a.lo = lo;
        a
    }

    /// Logarithmic from `lo` to `hi` (both above 0), ticks at 1, 2 and 5 of each decade.
    pub fn log(lo: f64, hi: f64, label: &str) -> Axis {
        let mut ticks = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi {
            for m in [1.0, 2.0, 5.0] {
                let v = m * decade;
                if v >= lo * 0.999 && v <= hi * 1.001 {
                    let text = format!("{v:.3}");
                    let text = text.trim_end_matches('0').trim_end_matches('.');
                    ticks.push((v, text.to_string()));
                }
            }
            decade *= 10.0;
        }
        Axis {
            lo,
            hi,
            log: true,
            ticks,
            label: label.into(),
        }
    }

    fn ticked(from: f64, to: f64, step: f64, label: &str) -> Axis {
        let ticks = (0..)
            .map(|i| from + i as f64 * step)
            .take_while(|&v| v <= to + step * 1e-6)
            .map(|v| (v, number(v, step)))
            .collect();
        Axis {
            lo: from,
            hi: to,
            log: false,
            ticks,
            label: label.into(),
        }
    }

    /// Where `v` falls, 0 at `lo` to 1 at `hi`.
    fn at(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

const TIME_STEPS: [f64; 24] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    900.0, 1800.0, 3600.0, 7200.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0,
];

/// A series drawn as a line.
pub struct Series<'a> {
    /// Its name, in the legend and the data attributes.
    pub name: &'a str,
    /// X values (axis units).
    pub xs: &'a [f64],
    /// Y values; `None` leaves a gap.
    pub values: &'a [Option<f64>],
    /// CSS colour.
    pub color: &'a str,
    /// Solid or dashed.
    pub style: Style,
    /// Against the right axis.
    pub right: bool,
}

/// An SVG chart being drawn.
pub struct Chart {
    id: String,
    x: Axis,
    y: Axis,
    right: Option<Axis>,
    bands: String,
    marks: String,
}

impl Chart {
    /// An empty chart with its axes.
    pub fn new(id: &str, x: Axis, y: Axis) -> Chart {
        Chart {
            id: id.into(),
            x,
            y,
            right: None,
            bands: String::new(),
            marks: String::new(),
        }
    }

    /// Adds an axis on the right for series drawn against it.
    pub fn right_axis(&mut self, axis: Axis) {
        self.right = Some(axis);
    }

    fn plot_width(&self) -> f64 {
        WIDTH - LEFT - if self.right.is_some() { 64.0 } else { 20.0 }
    }

    fn px(&self, v: f64) -> f64 {
        LEFT + self.x.at(v) * self.plot_width()
    }

    fn py(&self, v: f64, right: bool) -> f64 {
        let axis = if right {
            self.right.as_ref().unwrap_or(&self.y)
        } else {
            &self.y
        };
        TOP + (1.0 - axis.at(v)) * (HEIGHT - TOP - BOTTOM)
    }

    /// Bars stacked from the bottom, one stack per x.
    pub fn stacked_bars(
        &mut self,
        xs: &[f64],
        width: f64,
        layers: &[(&str, &Vec<Option<f64>>, &str)],
    ) {
        let mut base = vec![0.0; xs.len()];
        for (name, values, color) in layers {
            let mut n = 0;
            let mut g = String::new();
            for (i, &x) in xs.iter().enumerate() {
                let Some(v) = values.get(i).copied().flatten().filter(|&v| v > 0.0) else {
                    continue;
                };
                n += 1;
                let (x0, x1) = (self.px(x - width / 2.0), self.px(x + width / 2.0));
                let (y0, y1) = (self.py(base[i], false), self.py(base[i] + v, false));
                base[i] += v;
                let _ = write!(
                    g,
                    "<rect x=\"{x0:.1}\" y=\"{y1:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {} {}</title></rect>",
                    (x1 - x0 - 0.4).max(0.6),
                    (y0 - y1).max(0.0),
                    escape(&time_label(x - width / 2.0, width.min(1.0))),
                    number(v, v / 100.0),
                    escape(name),
                );
            }
            let _ = write!(
                self.marks,
                "<g class=\"bars\" data-series=\"{}\" data-points=\"{n}\">{g}</g>",
                escape(name)
            );
        }
    }

    /// One bar per x, against the left or the right axis.
    pub fn bars(
        &mut self,
        xs: &[f64],
        width: f64,
        name: &str,
        values: &[Option<f64>],
        color: &str,
        right: bool,
    ) {
        let mut n = 0;
        let mut g = String::new();
        for (&x, v) in xs.iter().zip(values) {
            let Some(v) = v.filter(|&v| v > 0.0) else {
                continue;
            };
            n += 1;
            let (x0, x1) = (self.px(x - width / 2.0), self.px(x + width / 2.0));
            let (y0, y1) = (self.py(0.0, right), self.py(v, right));
            let _ = write!(
                g,
                "<rect x=\"{x0:.1}\" y=\"{y1:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{color}\" fill-opacity=\"0.75\"><title>{}: {} {}</title></rect>",
                (x1 - x0 - 0.4).max(0.6),
                (y0 - y1).max(0.0),
                escape(&time_label(x - width / 2.0, width.min(1.0))),
                number(v, v / 100.0),
                escape(name)
            );
        }
        let _ = write!(
            self.marks,
            "<g class=\"bars\" data-series=\"{}\" data-points=\"{n}\">{g}</g>",
            escape(name)
        );
    }

    /// A histogram bar over `[lo, hi)` on the x axis.
    pub fn bin(&mut self, lo: f64, hi: f64, value: f64, title: &str) {
        if value <= 0.0 {
            return;
        }
        let (x0, x1) = (self.px(lo), self.px(hi));
        let (y0, y1) = (self.py(0.0, false), self.py(value, false));
        let _ = write!(
            self.marks,
            "<rect class=\"bin\" x=\"{x0:.1}\" y=\"{y1:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"#3a7bc8\"><title>{}</title></rect>",
            (x1 - x0 - 1.0).max(0.8),
            (y0 - y1).max(0.0),
            escape(title)
        );
    }

    /// A line through the values that are present; gaps where they are not.
    pub fn line(&mut self, s: &Series<'_>) {
        let mut d = String::new();
        let mut dots = String::new();
        let mut n = 0;
        let mut pen_down = false;
        for (&x, v) in s.xs.iter().zip(s.values) {
            let Some(v) = *v else {
                pen_down = false;
                continue;
            };
            n += 1;
            let (px, py) = (self.px(x), self.py(v, s.right));
            let _ = write!(d, "{}{px:.1},{py:.1} ", if pen_down { "L" } else { "M" });
            let _ = write!(
                dots,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2\" fill=\"{}\"><title>{}: {} {}</title></circle>",
                s.color,
                escape(&time_label(x, 0.01)),
                number(v, v / 1000.0),
                escape(s.name)
            );
            pen_down = true;
        }
        let dash = if s.style == Style::Dashed {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let _ = write!(
            self.marks,
            "<g class=\"line\" data-series=\"{}\" data-points=\"{n}\"><path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\" stroke-linejoin=\"round\"{dash}/>{dots}</g>",
            escape(s.name),
            d.trim_end(),
            s.color
        );
    }

    /// A shaded band over `[from, until]` on the x axis, labelled at the top.
    pub fn band(&mut self, from: f64, until: f64, label: &str, title: &str) {
        let (x0, x1) = (self.px(from), self.px(until));
        let w = (x1 - x0).max(1.5);
        let _ = write!(
            self.bands,
            "<g class=\"band\"><rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"#f3c6c0\" fill-opacity=\"0.6\"><title>{}</title></rect>",
            HEIGHT - TOP - BOTTOM,
            escape(title)
        );
        if w > 46.0 {
            let _ = write!(
                self.bands,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#a33\">{}</text>",
                x0 + 3.0,
                TOP + 12.0,
                escape(label)
            );
        }
        self.bands += "</g>";
    }

    /// The finished `<svg>`.
    pub fn finish(self) -> String {
        let bottom = HEIGHT - BOTTOM;
        let right_edge = LEFT + self.plot_width();
        let mut svg = format!(
            "<svg id=\"{}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">",
            escape(&self.id)
        );
        for (v, label) in &self.y.ticks {
            let y = self.py(*v, false);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{right_edge:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        for (v, label) in &self.x.ticks {
            let x = self.px(*v);
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{:.1}\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 4.0,
                bottom + 16.0,
                escape(label)
            );
        }
        if let Some(r) = &self.right {
            for (v, label) in &r.ticks {
                let y = self.py(*v, true);
                let _ = write!(
                    svg,
                    "<line class=\"axis\" x1=\"{right_edge:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    right_edge + 4.0,
                    right_edge + 6.0,
                    y + 4.0,
                    escape(label)
                );
            }
        }
        svg += &self.bands;
        svg += &self.marks;
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{right_edge:.1}\" y1=\"{bottom}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{bottom}\"/>"
        );
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + self.plot_width() / 2.0,
            HEIGHT - 6.0,
            escape(&self.x.label)
        );
        let _ = write!(
            svg,
            "<text transform=\"translate(14,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            TOP + (bottom - TOP) / 2.0,
            escape(&self.y.label)
        );
        if let Some(r) = &self.right {
            let _ = write!(
                svg,
                "<line class=\"axis\" x1=\"{right_edge:.1}\" x2=\"{right_edge:.1}\" y1=\"{TOP}\" y2=\"{bottom}\"/><text transform=\"translate({:.1},{:.1}) rotate(90)\" text-anchor=\"middle\">{}</text>",
                WIDTH - 8.0,
                TOP + (bottom - TOP) / 2.0,
                escape(&r.label)
            );
        }
        svg + "</svg>\n"
    }
}

/// 1, 2, 2.5 or 5 times a power of ten, at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw * 0.999_999)
        .unwrap_or(10.0 * magnitude)
}

/// A tick value with as many decimals as its step needs.
fn number(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let decimals = decimals.min(4);
    let text = format!("{v:.decimals$}");
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        text
    }
}

/// `0.25s`, `12s`, `4:30`, `2:05:00`.
fn time_label(t: f64, step: f64) -> String {
    if step < 1.0 && t < 60.0 {
        let s = format!("{t:.2}");
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else if t < 60.0 {
        format!("{t:.0}s")
    } else if t < 3600.0 {
        let t = t.round() as u64;
        format!("{}:{:02}", t / 60, t % 60)
    } else {
        let t = t.round() as u64;
        format!("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        let a = Axis::linear(87.0, "x");
        let values: Vec<f64> = a.ticks.iter().map(|t| t.0).collect();
        assert_eq!(values, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let t = Axis::time(36_000.0);
        let labels: Vec<&str> = t.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels[..3], ["0s", "2:00:00", "4:00:00"]);
        let f = Axis::fitted(1031.0, 1049.0, "ms");
        assert_eq!((f.lo, f.hi), (1030.0, 1050.0));
        assert_eq!(Axis::fitted(10.0, 1049.0, "ms").lo, 0.0);
        let r = Axis::range(1000.0, 1062.0, "ms");
        assert_eq!(r.ticks[0].1, "1000");
        assert_eq!(r.ticks[1].0, 1020.0);
        let l = Axis::log(0.125, 5000.0, "ms");
        assert_eq!(l.ticks.first().map(|t| t.0), Some(0.2));
        assert!(l.at(5000.0) == 1.0 && l.at(0.125) == 0.0);
    }

    #[test]
    fn lines_leave_gaps_and_count_points() {
        let mut c = Chart::new("c", Axis::time(3.0), Axis::linear(10.0, "y"));
        c.line(&Series {
            name: "s",
            xs: &[0.5, 1.5, 2.5],
            values: &[Some(1.0), None, Some(3.0)],
            color: "#000",
            style: Style::Line,
            right: false,
        });
        let svg = c.finish();
        assert!(svg.contains("data-points=\"2\""), "{svg}");
        assert_eq!(
            svg.matches(" M").count() + svg.matches("\"M").count(),
            2,
            "{svg}"
        );
    }
}
