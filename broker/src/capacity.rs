//! Capacity in plain numbers: what the store costs per host per day at the current rate, for
//! `/api/cluster` and the broker's log (at start, after its first minute, then hourly).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::StoreStats;

/// How far back the ingest rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(300);

/// Samples stored over time, to tell the current rate.
#[derive(Default)]
pub struct Rate {
    points: Mutex<VecDeque<(Instant, u64)>>,
}

impl Rate {
    /// Records the running total of samples stored (called every few seconds).
    pub fn record(&self, total: u64) {
        self.record_at(Instant::now(), total);
    }

    fn record_at(&self, at: Instant, total: u64) {
        if let Ok(mut p) = self.points.lock() {
            p.push_back((at, total));
            while p
                .front()
                .is_some_and(|(t, _)| at.duration_since(*t) > RATE_WINDOW)
                && p.len() > 2
            {
                p.pop_front();
            }
        }
    }

    /// Samples a second over the window, once two points are at least 10 s apart.
    pub fn per_sec(&self) -> Option<f64> {
        let p = self.points.lock().ok()?;
        let (t0, n0) = *p.front()?;
        let (t1, n1) = *p.back()?;
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs >= 10.0).then(|| n1.saturating_sub(n0) as f64 / secs)
    }
}

/// The figures, as `/api/cluster` shows them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capacity {
    pub hosts: u64,
    /// Samples stored a second, over the last minutes (none before 10 s of measuring).
    pub samples_per_sec: Option<f64>,
    /// Bytes on disk a sample in blocks (none before the first block).
    pub disk_bytes_per_sample: Option<f64>,
    /// Bytes on disk a host adds a day at the current rate.
    pub disk_bytes_per_host_per_day: Option<f64>,
    /// Bytes on disk for the whole retention at the current rate.
    pub disk_bytes_for_retention: Option<f64>,
    /// Resident memory of the broker, and its share per host. Memory does not grow with the
    /// retention: it is the head (bounded by its budget) and the caches.
    pub memory_bytes: u64,
    pub memory_bytes_per_host: Option<f64>,
    /// Bytes on disk now: the log and the blocks.
    pub disk_bytes: u64,
}

/// Works the figures out from the store's and the rate's.
pub fn capacity(
    stats: &StoreStats,
    per_sec: Option<f64>,
    memory_bytes: u64,
    retention: Duration,
) -> Capacity {
    let per_sample =
        (stats.block_samples > 0).then(|| stats.block_bytes as f64 / stats.block_samples as f64);
    let hosts = stats.hosts.max(1) as f64;
    let per_host_day = per_sample
        .zip(per_sec)
        .map(|(b, r)| b * r * 86_400.0 / hosts);
    Capacity {
        hosts: stats.hosts,
        samples_per_sec: per_sec.map(|r| (r * 10.0).round() / 10.0),
        disk_bytes_per_sample: per_sample.map(|b| (b * 100.0).round() / 100.0),
        disk_bytes_per_host_per_day: per_host_day.map(f64::round),
        disk_bytes_for_retention: per_host_day
            .map(|d| (d * hosts * retention.as_secs_f64() / 86_400.0).round()),
        memory_bytes,
        memory_bytes_per_host: (stats.hosts > 0).then(|| (memory_bytes as f64 / hosts).round()),
        disk_bytes: stats.disk_bytes,
    }
}

/// The process's resident memory (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Logs the figures in one line.
pub fn log(c: &Capacity, when: &str) {
    let mib = |b: f64| (b / 1048576.0 * 10.0).round() / 10.0;
    tracing::info!(
        when,
        hosts = c.hosts,
        samples_per_sec = c.samples_per_sec,
        disk_bytes_per_sample = c.disk_bytes_per_sample,
        disk_mib_per_host_per_day = c.disk_bytes_per_host_per_day.map(mib),
        disk_mib_for_retention = c.disk_bytes_for_retention.map(mib),
        memory_mib = mib(c.memory_bytes as f64),
        memory_mib_per_host = c.memory_bytes_per_host.map(mib),
        disk_mib = mib(c.disk_bytes as f64),
        "capacity"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_the_window_and_the_figures_follow() {
        let r = Rate::default();
        let t0 = Instant::now();
        r.record_at(t0, 1_000);
        assert_eq!(r.per_sec(), None, "one point");
        r.record_at(t0 + Duration::from_secs(5), 2_000);
        assert_eq!(r.per_sec(), None, "under 10 s");
        r.record_at(t0 + Duration::from_secs(20), 5_000);
        assert_eq!(r.per_sec(), Some(200.0));
        let stats = StoreStats {
            hosts: 10,
            block_bytes: 1_000,
            block_samples: 500,
            disk_bytes: 4_000,
            ..StoreStats::default()
        };
        let c = capacity(
            &stats,
            r.per_sec(),
            100 << 20,
            Duration::from_secs(7 * 86_400),
        );
        assert_eq!(c.disk_bytes_per_sample, Some(2.0));
        // 2 bytes × 200 samples/s × 86,400 s ÷ 10 hosts.
        assert_eq!(c.disk_bytes_per_host_per_day, Some(3_456_000.0));
        assert_eq!(c.disk_bytes_for_retention, Some(3_456_000.0 * 10.0 * 7.0));
        assert_eq!(
            c.memory_bytes_per_host,
            Some(((100 << 20) as f64 / 10.0).round())
        );
        let none = capacity(&StoreStats::default(), None, 0, Duration::from_secs(1));
        assert_eq!(none.disk_bytes_per_sample, None);
        assert_eq!(none.disk_bytes_per_host_per_day, None);
    }
}
