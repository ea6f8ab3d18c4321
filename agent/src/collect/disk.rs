//! Disks: per mount total/used bytes and used % (detail), plus totals over distinct devices.

use std::collections::HashSet;

use ringwatch_proto::Unit;
use sysinfo::{DiskRefreshKind, Disks};

use super::{Samples, percent, sanitize};

/// Refreshes the mount list and space figures, then emits `disk.*`.
pub fn collect(disks: &mut Disks, out: &mut Samples) {
    disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
    let mut seen_mounts = HashSet::new();
    let mut seen_devices = HashSet::new();
    let (mut sum_total, mut sum_used) = (0u64, 0u64);
    for disk in disks.iter() {
        let total = disk.total_space();
        if total == 0 {
            continue;
        }
        let used = total.saturating_sub(disk.available_space());
        let mount = sanitize(&disk.mount_point().to_string_lossy());
        if !seen_mounts.insert(mount.clone()) {
            continue;
        }
        // Bind mounts and repeated mounts of one device count once in the totals.
        if seen_devices.insert(disk.name().to_os_string()) {
            sum_total = sum_total.saturating_add(total);
            sum_used = sum_used.saturating_add(used);
        }
        out.detail(format!("disk.{mount}.total"), total as f64, Unit::Bytes);
        out.detail(format!("disk.{mount}.used"), used as f64, Unit::Bytes);
        if let Some(p) = percent(used as f64, total as f64) {
            out.detail(format!("disk.{mount}.used_percent"), p, Unit::Percent);
        }
    }
    if seen_devices.is_empty() {
        return;
    }
    out.total("disk.total", sum_total as f64, Unit::Bytes);
    out.total("disk.used", sum_used as f64, Unit::Bytes);
    if let Some(p) = percent(sum_used as f64, sum_total as f64) {
        out.total("disk.used_percent", p, Unit::Percent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_disk() {
        let mut disks = Disks::new().expect("disks");
        let mut s = Samples::default();
        collect(&mut disks, &mut s);
        let total = s.get("disk.total").expect("disk.total");
        let used = s.get("disk.used").expect("disk.used");
        assert!(total > 0.0 && used <= total);
        assert!(
            s.details.iter().any(|m| m.name.ends_with(".used_percent")),
            "{:?}",
            s.details
        );
        for m in &s.details {
            assert!(m.value >= 0.0, "{m:?}");
            if m.name.ends_with("used_percent") {
                assert!(m.value <= 100.0, "{m:?}");
            }
        }
    }
}
