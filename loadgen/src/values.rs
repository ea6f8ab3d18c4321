//! What a simulated host reports: agent-like metric names and units, and values that are a
//! pure function of (host, timestamp, metric), so `verify` can recompute every value it reads
//! back and compare it bit for bit.
//!
//! Values are built from integers only (a hash, a triangle wave, a noise term) and turned into
//! doubles by exact operations, so they are the same on every platform and every libm. They
//! move smoothly with time, as real host metrics do, which keeps them honest input for the
//! store's compression.

use ringwatch_proto::{Metric, Unit, WindowStats};

/// The version of the value function; a ledger written with another version cannot be
/// verified by this code.
pub const VALUES_VERSION: u32 = 1;

/// The agent's totals, in the order the agent reports them; detail metrics follow.
const TOTALS: &[(&str, Unit)] = &[
    ("cpu.usage", Unit::Percent),
    ("cpu.cores", Unit::Count),
    ("load.1", Unit::Load),
    ("load.5", Unit::Load),
    ("load.15", Unit::Load),
    ("mem.total", Unit::Bytes),
    ("mem.used", Unit::Bytes),
    ("mem.available", Unit::Bytes),
    ("mem.used_percent", Unit::Percent),
    ("swap.total", Unit::Bytes),
    ("swap.used", Unit::Bytes),
    ("swap.used_percent", Unit::Percent),
    ("disk.total", Unit::Bytes),
    ("disk.used", Unit::Bytes),
    ("disk.used_percent", Unit::Percent),
    ("net.rx_bytes_per_sec", Unit::BytesPerSecond),
    ("net.tx_bytes_per_sec", Unit::BytesPerSecond),
    ("net.rx_errors_per_sec", Unit::PerSecond),
    ("net.tx_errors_per_sec", Unit::PerSecond),
    ("system.uptime", Unit::Seconds),
    ("system.processes", Unit::Count),
];

/// The most metrics a simulated snapshot may carry (the broker's default per-snapshot limit).
pub const MAX_METRICS: usize = 4096;

/// One metric of the simulated host: its name and unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    pub name: String,
    pub unit: Unit,
}

/// The first `n` metric names: the agent's totals, then per-core usage (`cpu.core.<i>.usage`).
pub fn metric_defs(n: usize) -> Vec<MetricDef> {
    (0..n)
        .map(|i| match TOTALS.get(i) {
            Some((name, unit)) => MetricDef {
                name: (*name).to_string(),
                unit: *unit,
            },
            None => MetricDef {
                name: format!("cpu.core.{}.usage", i - TOTALS.len()),
                unit: Unit::Percent,
            },
        })
        .collect()
}

/// splitmix64: a well-mixed 64-bit hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A triangle wave in `0..=amplitude` with the given period.
fn triangle(t: u64, period: u64, amplitude: u64) -> u64 {
    let p = t % period;
    let half = period / 2;
    let rising = if p < half { p } else { period - p };
    rising * amplitude / half.max(1)
}

/// The value host `host` reports for metric `metric` (index into `metric_defs`) at `ts_ms`.
pub fn value(host: u32, ts_ms: i64, metric: usize, unit: Unit) -> f64 {
    let seed = mix((u64::from(host) << 32) ^ metric as u64);
    let t = (ts_ms.max(0) as u64) / 1000;
    let noise = mix(seed ^ ts_ms as u64);
    // Each series has its own phase and slow period (5 to 60 minutes).
    let period = 300 + seed % 3300;
    let wave = |amplitude: u64| triangle(t + seed % period, period, amplitude);
    match unit {
        // Hundredths of a percent: a base, a wave, a little noise, capped at 100 %.
        Unit::Percent => {
            let hundredths = (seed % 4000 + wave(3000) + noise % 300).min(10_000);
            hundredths as f64 / 100.0
        }
        // Whole bytes around a per-series size (1 to 64 GiB), moving by a few per cent.
        Unit::Bytes => {
            let size = (1 + seed % 64) << 30;
            (size / 2 + wave(size / 8) + noise % 4096) as f64
        }
        Unit::BytesPerSecond => (wave(50_000_000) + noise % 100_000) as f64 / 8.0,
        Unit::PerSecond => (noise % 4) as f64 / 4.0,
        Unit::Load => (seed % 200 + wave(300) + noise % 10) as f64 / 100.0,
        Unit::Seconds => (t.saturating_sub(seed % 1_000_000)) as f64,
        Unit::Count => (8 + seed % 56 + wave(40)) as f64,
        _ => (noise % 1_000_000) as f64,
    }
}

/// The metrics of host `host` at `ts_ms`, with window statistics like the agent's when
/// `window` (derived from the value, not checked by `verify`: ranges carry raw values only).
pub fn snapshot_metrics(host: u32, ts_ms: i64, defs: &[MetricDef], window: bool) -> Vec<Metric> {
    defs.iter()
        .enumerate()
        .map(|(i, d)| {
            let v = value(host, ts_ms, i, d.unit);
            Metric {
                name: d.name.clone(),
                value: v,
                unit: d.unit as i32,
                window: window.then_some(WindowStats {
                    min: v * 0.75,
                    max: v * 1.25,
                    avg: v,
                    samples: 12,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_start_with_the_agents_totals_then_cores() {
        let d = metric_defs(60);
        assert_eq!(d.len(), 60);
        assert_eq!(d[0].name, "cpu.usage");
        assert_eq!(d[21].name, "cpu.core.0.usage");
        assert_eq!(d[59].name, "cpu.core.38.usage");
        let mut names: Vec<&str> = d.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 60, "names are distinct");
        for m in &d {
            assert!(ringwatch_proto::rules::metric_name_problem(&m.name).is_none());
        }
    }

    #[test]
    fn values_are_a_pure_function_finite_and_in_range() {
        let defs = metric_defs(60);
        for host in [0, 1, 77, u32::MAX] {
            for ts in [0, 1_700_000_000_000, 1_700_000_005_000] {
                for (i, d) in defs.iter().enumerate() {
                    let v = value(host, ts, i, d.unit);
                    assert!(v.is_finite() && v >= 0.0, "{host} {ts} {}: {v}", d.name);
                    assert_eq!(v.to_bits(), value(host, ts, i, d.unit).to_bits());
                    if d.unit == Unit::Percent {
                        assert!(v <= 100.0, "{v}");
                    }
                }
            }
        }
        // Different hosts, times and metrics differ.
        let a = value(1, 1_700_000_000_000, 0, Unit::Percent);
        assert_ne!(a, value(2, 1_700_000_000_000, 0, Unit::Percent));
        assert_ne!(
            snapshot_metrics(1, 1_700_000_000_000, &defs, false),
            snapshot_metrics(1, 1_700_000_060_000, &defs, false)
        );
    }

    #[test]
    fn values_move_smoothly() {
        // Consecutive 5 s samples of a percentage differ by a few points at most.
        let prev = (0..100).map(|k| value(3, 1_700_000_000_000 + k * 5000, 0, Unit::Percent));
        let v: Vec<f64> = prev.collect();
        assert!(v.windows(2).all(|w| (w[0] - w[1]).abs() < 10.0), "{v:?}");
    }

    #[test]
    fn windows_only_when_asked() {
        let defs = metric_defs(3);
        assert!(
            snapshot_metrics(1, 5, &defs, false)
                .iter()
                .all(|m| m.window.is_none())
        );
        assert!(
            snapshot_metrics(1, 5, &defs, true)
                .iter()
                .all(|m| m.window.is_some())
        );
    }
}
