//! Memory and swap: totals, used, available and used %.

use ringwatch_proto::Unit;
use sysinfo::{MemoryRefreshKind, System};

use super::{Samples, percent};

/// Emits `mem.*` and `swap.*`.
pub fn collect(system: &mut System, out: &mut Samples) {
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
    let total = system.total_memory() as f64;
    let used = system.used_memory().min(system.total_memory()) as f64;
    out.total("mem.total", total, Unit::Bytes);
    out.total("mem.used", used, Unit::Bytes);
    out.total(
        "mem.available",
        system.available_memory() as f64,
        Unit::Bytes,
    );
    if let Some(p) = percent(used, total) {
        out.total("mem.used_percent", p, Unit::Percent);
    }
    let swap_total = system.total_swap() as f64;
    let swap_used = system.used_swap().min(system.total_swap()) as f64;
    out.total("swap.total", swap_total, Unit::Bytes);
    out.total("swap.used", swap_used, Unit::Bytes);
    // No swap configured: report 0 % rather than nothing, so the series stays continuous.
    out.total(
        "swap.used_percent",
        percent(swap_used, swap_total).unwrap_or(0.0),
        Unit::Percent,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_consistent() {
        let mut sys = System::new().expect("system");
        let mut s = Samples::default();
        collect(&mut sys, &mut s);
        let total = s.get("mem.total").expect("total");
        let used = s.get("mem.used").expect("used");
        let avail = s.get("mem.available").expect("available");
        assert!(total > 0.0);
        assert!(used <= total && used >= 0.0);
        assert!(avail <= total);
        let p = s.get("mem.used_percent").expect("percent");
        assert!((0.0..=100.0).contains(&p));
        assert!(s.get("swap.used").expect("swap") <= s.get("swap.total").expect("swap total"));
        assert!((0.0..=100.0).contains(&s.get("swap.used_percent").expect("swap %")));
    }
}
