//! CPU: total usage %, per-core usage %, core count.

use ringwatch_proto::Unit;
use sysinfo::{CpuRefreshKind, System};

use super::Samples;

fn refresh(system: &mut System) {
    system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
}

/// Takes the first CPU reading; usage is a delta against it.
pub(crate) fn prime(system: &mut System) {
    refresh(system);
}

/// Emits `cpu.usage`, `cpu.cores` and `cpu.core.<i>.usage` (detail).
pub fn collect(system: &mut System, out: &mut Samples) {
    refresh(system);
    let cpus = system.cpus();
    if cpus.is_empty() {
        return;
    }
    out.total(
        "cpu.usage",
        f64::from(system.global_cpu_usage()).clamp(0.0, 100.0),
        Unit::Percent,
    );
    out.total("cpu.cores", cpus.len() as f64, Unit::Count);
    for (i, cpu) in cpus.iter().enumerate() {
        out.detail(
            format!("cpu.core.{i}.usage"),
            f64::from(cpu.usage()).clamp(0.0, 100.0),
            Unit::Percent,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_in_range_and_per_core() {
        let mut sys = System::new().expect("system");
        prime(&mut sys);
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let mut s = Samples::default();
        collect(&mut sys, &mut s);
        let usage = s.get("cpu.usage").expect("cpu.usage");
        assert!((0.0..=100.0).contains(&usage), "{usage}");
        let cores = s.get("cpu.cores").expect("cpu.cores");
        assert!(cores >= 1.0);
        assert_eq!(s.details.len(), cores as usize);
        for m in &s.details {
            assert!((0.0..=100.0).contains(&m.value), "{m:?}");
        }
        assert!(s.get("cpu.core.0.usage").is_some());
    }
}
