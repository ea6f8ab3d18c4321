//! The maths behind the detail queries, apart from HTTP: a metric's points in time buckets
//! with their statistics (`/api/metrics/aggregate`), and its least-squares trend
//! (`/api/analysis/trend`). Pure functions of (timestamp ms, value) points, tested on their
//! own; `api.rs` fetches the points and answers.

use serde::Serialize;
use utoipa::ToSchema;

/// One bucket of an aggregate.
#[derive(Debug, Serialize, PartialEq, ToSchema)]
pub struct Bucket {
    /// Start of the bucket (Unix ms), aligned to the range's start.
    pub start: i64,
    /// Points in the bucket (buckets without points are left out).
    pub count: usize,
    pub sum: f64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    /// Nearest-rank percentiles.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// (timestamp, value) points into buckets of `step_ms` aligned to `start`.
pub fn buckets(points: &[(i64, f64)], start: i64, step_ms: i64) -> Vec<Bucket> {
    let mut groups: std::collections::BTreeMap<i64, Vec<f64>> = std::collections::BTreeMap::new();
    for &(t, v) in points {
        let b = start + (t - start).div_euclid(step_ms) * step_ms;
        groups.entry(b).or_default().push(v);
    }
    groups
        .into_iter()
        .map(|(b, mut vals)| {
            vals.sort_by(f64::total_cmp);
            let sum: f64 = vals.iter().sum();
            Bucket {
                start: b,
                count: vals.len(),
                sum,
                avg: sum / vals.len() as f64,
                min: vals[0],
                max: vals[vals.len() - 1],
                p50: percentile(&vals, 0.50),
                p90: percentile(&vals, 0.90),
                p99: percentile(&vals, 0.99),
            }
        })
        .collect()
}

/// Least-squares slope per hour, and a direction with a 1 %-of-range dead band.
pub fn trend_of(pts: &[(i64, f64)]) -> Option<(f64, &'static str)> {
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let t0 = pts[0].0 as f64;
    let xs: Vec<f64> = pts
        .iter()
        .map(|(t, _)| (*t as f64 - t0) / 3_600_000.0)
        .collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = pts.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, (_, y)) in xs.iter().zip(pts) {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        return None;
    }
    let slope = num / den;
    let span_h = xs[xs.len() - 1].max(1e-9);
    let (lo, hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
            (a.min(*v), b.max(*v))
        });
    let band = ((hi - lo).abs().max(my.abs()) * 0.01).max(f64::EPSILON);
    let direction = if slope * span_h > band {
        "rising"
    } else if slope * span_h < -band {
        "falling"
    } else {
        "flat"
    };
    Some((slope, direction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_the_right_statistics() {
        let pts: Vec<(i64, f64)> = (0..120).map(|i| (i * 1000, i as f64)).collect();
        let b = buckets(&pts, 0, 60_000);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].count, 60);
        assert_eq!((b[0].min, b[0].max), (0.0, 59.0));
        assert_eq!(b[0].avg, 29.5);
        assert_eq!(b[0].sum, (0..60).sum::<i32>() as f64);
        assert_eq!(b[0].p50, 29.0);
        assert_eq!(b[0].p90, 53.0);
        assert_eq!(b[0].p99, 59.0);
        assert_eq!(b[1].start, 60_000);
    }

    #[test]
    fn trends_have_a_sign_and_a_dead_band() {
        let up: Vec<(i64, f64)> = (0..60).map(|i| (i * 60_000, 10.0 + i as f64)).collect();
        let (slope, dir) = trend_of(&up).unwrap();
        assert!((slope - 60.0).abs() < 1e-6, "{slope}");
        assert_eq!(dir, "rising");
        let down: Vec<(i64, f64)> = up.iter().map(|(t, v)| (*t, 100.0 - v)).collect();
        assert_eq!(trend_of(&down).unwrap().1, "falling");
        let flat: Vec<(i64, f64)> = (0..60)
            .map(|i| (i * 1000, 50.0 + if i % 2 == 0 { 0.01 } else { -0.01 }))
            .collect();
        assert_eq!(trend_of(&flat).unwrap().1, "flat");
        assert!(trend_of(&up[..1]).is_none());
    }
}
