//! Summary statistics over samples.
//!
//! Percentiles use linear interpolation between the two closest ranks (the definition numpy and
//! most plotting tools use by default): for sorted samples `x[0..n]`, percentile `p` is
//! `x[k] + (x[k+1]-x[k]) * f` where `k + f = p/100 * (n-1)`.
//! `spread` is the p90 − p10 range: it says how wide the bulk of the distribution is while
//! ignoring the single worst outlier a noisy shared machine always produces.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
    /// p90 − p10.
    pub spread: f64,
}

/// Percentile `p` (0..=100) of already sorted samples. Panics on an empty slice.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let p = p.clamp(0.0, 100.0);
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Summary of `samples`; `None` when there are none (or only NaNs).
pub fn summarize(samples: &[f64]) -> Option<Stats> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p10 = percentile_sorted(&v, 10.0);
    let p90 = percentile_sorted(&v, 90.0);
    Some(Stats {
        n: v.len(),
        min: v[0],
        p10,
        median: percentile_sorted(&v, 50.0),
        p90,
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
        spread: p90 - p10,
    })
}

/// `a / b`, or `None` when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        assert_eq!(summarize(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(summarize(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
    }

    #[test]
    fn known_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = summarize(&v).unwrap();
        assert_eq!(s.n, 10);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert!((s.median - 5.5).abs() < 1e-12);
        assert!((s.p90 - 9.1).abs() < 1e-12);
        assert!((s.p10 - 1.9).abs() < 1e-12);
        assert!((s.spread - 7.2).abs() < 1e-12);
        assert!((s.mean - 5.5).abs() < 1e-12);
    }

    #[test]
    fn order_does_not_matter_and_nans_are_dropped() {
        let a = summarize(&[10.0, 2.0, f64::NAN, 7.0, 1.0, 5.0]).unwrap();
        let b = summarize(&[1.0, 2.0, 5.0, 7.0, 10.0]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.median, 5.0);
    }

    #[test]
    fn single_sample_and_empty() {
        let s = summarize(&[42.0]).unwrap();
        assert_eq!((s.median, s.p90, s.spread), (42.0, 42.0, 0.0));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(5.0), Some(10.0)), Some(0.5));
        assert_eq!(ratio(Some(5.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }
}
