//! Host metric collectors, one module per concern (like vector's `host_metrics`).
//!
//! A [`Collector`] owns the sysinfo structures and refreshes only what it reports.

pub mod cpu;
pub mod disk;
pub mod load;
pub mod memory;
pub mod network;
pub mod system;

use std::time::Instant;

use ringwatch_proto::{Metric, Unit};
use sysinfo::{Disks, Networks, System};

use crate::error::AgentError;

/// The priority of a metric when the buffer must drop something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Host-wide totals; dropped last.
    Total,
    /// Per-core, per-disk and per-interface detail; dropped first.
    Detail,
}

impl Priority {
    /// The label value used on /metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Total => "total",
            Priority::Detail => "detail",
        }
    }
}

/// Metrics of one collection, split by priority.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    /// Wall-clock time of the collection, Unix epoch milliseconds.
    pub timestamp_ms: i64,
    /// Host-wide totals.
    pub totals: Vec<Metric>,
    /// Per-core, per-disk, per-interface detail.
    pub details: Vec<Metric>,
}

impl Samples {
    /// Adds a total metric; non-finite values are skipped.
    pub fn total(&mut self, name: impl Into<String>, value: f64, unit: Unit) {
        push(&mut self.totals, name.into(), value, unit);
    }

    /// Adds a detail metric; non-finite values are skipped.
    pub fn detail(&mut self, name: impl Into<String>, value: f64, unit: Unit) {
        push(&mut self.details, name.into(), value, unit);
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.totals.len() + self.details.len()
    }

    /// Whether no metric was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a metric up by name (tests and diagnostics).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.totals
            .iter()
            .chain(&self.details)
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

fn push(v: &mut Vec<Metric>, name: String, value: f64, unit: Unit) {
    if !value.is_finite() {
        tracing::debug!(metric = %name, value, "skipping a non-finite value");
        return;
    }
    v.push(Metric {
        name,
        value,
        unit: unit as i32,
        window: None,
    });
}

/// `part / whole × 100`, or `None` when `whole` is zero.
pub(crate) fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole * 100.0)
}

/// Sanitizes a mount point or interface name for use inside a metric name:
/// "/" → "root", "/var/lib" → "var_lib"; only `[A-Za-z0-9_-]` survive, others become `_`.
pub fn sanitize(raw: &str) -> String {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return "root".to_string();
    }
    trimmed
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Wall clock in Unix epoch milliseconds.
pub use ringwatch_core::now_ms;

/// Owns the sysinfo state and produces one [`Samples`] per call to [`Collector::collect`].
pub struct Collector {
    system: System,
    disks: Disks,
    networks: Networks,
    last_network_refresh: Instant,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl Collector {
    /// Initialises the collectors and takes the baselines that CPU usage and network rates
    /// are computed against.
    pub fn new() -> Result<Self, AgentError> {
        let err = |what: &str, e: sysinfo::Error| AgentError::Collector(format!("{what}: {e}"));
        let mut system = System::new().map_err(|e| err("system", e))?;
        cpu::prime(&mut system);
        let disks = Disks::new().map_err(|e| err("disks", e))?;
        let mut networks = Networks::new().map_err(|e| err("networks", e))?;
        networks.refresh(true);
        Ok(Collector {
            system,
            disks,
            networks,
            last_network_refresh: Instant::now(),
        })
    }

    /// Collects every metric once.
    pub fn collect(&mut self) -> Samples {
        let mut out = Samples {
            timestamp_ms: now_ms(),
            ..Samples::default()
        };
        cpu::collect(&mut self.system, &mut out);
        load::collect(&mut out);
        memory::collect(&mut self.system, &mut out);
        disk::collect(&mut self.disks, &mut out);
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_network_refresh);
        self.last_network_refresh = now;
        network::collect(&mut self.networks, elapsed, &mut out);
        system::collect(&mut self.system, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize("/"), "root");
        assert_eq!(sanitize("/var/lib"), "var_lib");
        assert_eq!(sanitize("/mnt/my disk.1"), "mnt_my_disk_1");
        assert_eq!(sanitize("eth0"), "eth0");
        assert_eq!(sanitize("veth@if3"), "veth_if3");
        assert_eq!(sanitize("br-x_y"), "br-x_y");
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut s = Samples::default();
        s.total("a", f64::NAN, Unit::Count);
        s.detail("b", f64::INFINITY, Unit::Count);
        s.total("c", 1.0, Unit::Count);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("c"), Some(1.0));
    }

    #[test]
    fn full_collection_is_sane() {
        let mut c = Collector::new().expect("collector");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let first = c.collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let s = c.collect();
        assert!(first.timestamp_ms > 0 && s.timestamp_ms >= first.timestamp_ms);
        let names: std::collections::HashSet<&str> = s
            .totals
            .iter()
            .chain(&s.details)
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names.len(), s.len(), "metric names are unique");
        for m in s.totals.iter().chain(&s.details) {
            assert!(m.value.is_finite(), "{m:?}");
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{}",
                m.name
            );
        }
        for name in [
            "cpu.usage",
            "cpu.cores",
            "mem.total",
            "system.uptime",
            "system.processes",
            "disk.total",
            "net.rx_bytes_per_sec",
        ] {
            assert!(s.get(name).is_some(), "{name} missing");
        }
        // Details are never among the totals and vice versa.
        assert!(s.details.iter().all(|m| m.name.starts_with("cpu.core.")
            || m.name.starts_with("disk.")
            || m.name.starts_with("net.")));
    }
}
