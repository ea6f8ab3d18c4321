//! System: uptime and process count.

use ringwatch_proto::Unit;
use sysinfo::System;

use super::Samples;

/// Emits `system.uptime` and `system.processes`.
pub fn collect(system: &mut System, out: &mut Samples) {
    match System::uptime() {
        Ok(up) => out.total("system.uptime", up as f64, Unit::Seconds),
        Err(e) => tracing::debug!(error = %e, "no uptime"),
    }
    if let Some(n) = process_count(system) {
        out.total("system.processes", n as f64, Unit::Count);
    }
}

/// Counts processes. On Linux this only lists the numeric entries of /proc (no per-process
/// reads), which is far cheaper than a sysinfo process refresh.
#[cfg(target_os = "linux")]
fn process_count(_system: &mut System) -> Option<usize> {
    match std::fs::read_dir("/proc") {
        Ok(dir) => Some(
            dir.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.as_encoded_bytes();
                    !name.is_empty() && name.iter().all(u8::is_ascii_digit)
                })
                .count(),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list /proc");
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn process_count(system: &mut System) -> Option<usize> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
    Some(system.processes().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_and_processes_positive() {
        let mut sys = System::new().expect("system");
        let mut s = Samples::default();
        collect(&mut sys, &mut s);
        assert!(s.get("system.uptime").expect("uptime") > 0.0);
        assert!(s.get("system.processes").expect("processes") > 0.0);
    }
}
