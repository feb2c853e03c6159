//! The latency histogram as a report draws it: bins fitted to the data, so
//! a run where everything takes 1.00–1.06 s shows its shape instead of one
//! bar. A narrow range gets equal-width bins; a wide one (more than a factor
//! of 20 between the fastest and the slowest) gets logarithmic bins.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Bins aimed at for a narrow range.
const LINEAR_BINS: f64 = 40.0;

/// Bin edges per decade for a wide range (the R10 series).
const LOG_EDGES: [f64; 10] = [1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.3, 8.0];

/// One bar: requests whose latency is in `[lo_ms, hi_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bin {
    /// Lower bound, milliseconds.
    pub lo_ms: f64,
    /// Upper bound, milliseconds.
    pub hi_ms: f64,
    /// Requests in the bin.
    pub count: u64,
}

/// Bins over a histogram of microseconds whose exact maximum is `max_us`.
pub fn bins(h: &Histogram<u64>, max_us: u64) -> Vec<Bin> {
    if h.is_empty() {
        return Vec::new();
    }
    let lo = h.min().max(1) as f64;
    let hi = (max_us.max(h.min()) as f64).max(lo);
    let edges = if hi / lo <= 20.0 {
        linear_edges(lo, hi)
    } else {
        log_edges(lo, hi)
    };
    let mut out: Vec<Bin> = edges
        .windows(2)
        .map(|w| Bin {
            lo_ms: w[0] / 1000.0,
            hi_ms: w[1] / 1000.0,
            count: 0,
        })
        .collect();
    let last = out.len() - 1;
    for v in h.iter_recorded() {
        let us = (h.median_equivalent(v.value_iterated_to()) as f64).clamp(lo, hi);
        let i = edges.partition_point(|&e| e <= us).saturating_sub(1);
        out[i.min(last)].count += v.count_at_value();
    }
    out
}

/// Equal bins of a round width (1, 2 or 5 times a power of ten µs).
fn linear_edges(lo: f64, hi: f64) -> Vec<f64> {
    let raw = ((hi - lo) / LINEAR_BINS).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    let mut e = (lo / step).floor() * step;
    let mut edges = vec![e];
    while e <= hi {
        e += step;
        edges.push(e);
    }
    edges
}

/// Logarithmic bins on round edges, ten per decade.
fn log_edges(lo: f64, hi: f64) -> Vec<f64> {
    let mut decade = 10f64.powf(lo.log10().floor());
    let mut edges = Vec::new();
    loop {
        for m in LOG_EDGES {
            let e = m * decade;
            if e > hi {
                edges.push(e);
                let first = edges.partition_point(|&x| x <= lo).saturating_sub(1);
                return edges.split_off(first);
            }
            edges.push(e);
        }
        decade *= 10.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: impl IntoIterator<Item = u64>) -> (Histogram<u64>, u64) {
        let mut h = Histogram::new_with_bounds(1, 86_400_000_000, 3).unwrap();
        let mut max = 0;
        for v in values_us {
            h.record(v).unwrap();
            max = max.max(v);
        }
        (h, max)
    }

    #[test]
    fn a_narrow_run_is_resolved() {
        // Everything between 1.00 and 1.06 s.
        let (h, max) = histogram((0..600).map(|i| 1_000_000 + i * 100));
        let b = bins(&h, max);
        assert!(b.len() >= 20, "{b:?}");
        assert!(b.iter().all(|x| x.hi_ms - x.lo_ms <= 2.0), "{b:?}");
        assert!(b[0].lo_ms <= 1000.0 && b.last().unwrap().hi_ms > 1059.9);
        assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 600);
        // Roughly flat: no bin holds more than three times its share.
        let most = b.iter().map(|x| x.count).max().unwrap();
        assert!(most < 3 * 600 / b.len() as u64 + 10, "{b:?}");
    }

    #[test]
    fn a_wide_run_gets_log_bins() {
        let (h, max) = histogram([150, 2_000, 30_000, 4_000_000]);
        let b = bins(&h, max);
        assert_eq!(b[0].lo_ms, 0.125);
        assert!(b.last().unwrap().hi_ms > 4000.0);
        assert!(b.len() <= 50, "{}", b.len());
        assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 4);
    }

    #[test]
    fn one_value_is_one_bin() {
        let (h, max) = histogram([5_000, 5_000]);
        let b = bins(&h, max);
        assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 2);
        assert!(b.len() <= 2, "{b:?}");
    }
}
