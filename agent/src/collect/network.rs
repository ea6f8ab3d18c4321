//! Network interfaces: rx/tx bytes and errors per second from the delta between two
//! collections, per interface (detail) and summed over non-loopback interfaces.

use std::time::Duration;

use ringwatch_proto::Unit;
use sysinfo::Networks;

use super::{Samples, sanitize};

/// Whether `name` is a loopback interface (`lo`, `lo0`, ...).
pub fn is_loopback(name: &str) -> bool {
    name.strip_prefix("lo")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// Refreshes the interfaces and emits `net.*` rates over `elapsed` since the last refresh.
pub fn collect(networks: &mut Networks, elapsed: Duration, out: &mut Samples) {
    networks.refresh(true);
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return;
    }
    let mut names: Vec<_> = networks.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    let (mut rx, mut tx, mut rx_err, mut tx_err) = (0u64, 0u64, 0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    for (name, data) in names {
        let raw = name.to_string_lossy();
        let iface = sanitize(&raw);
        if !seen.insert(iface.clone()) {
            continue;
        }
        let (r, t) = (data.received(), data.transmitted());
        let (re, te) = (data.errors_on_received(), data.errors_on_transmitted());
        if !is_loopback(&raw) {
            rx = rx.saturating_add(r);
            tx = tx.saturating_add(t);
            rx_err = rx_err.saturating_add(re);
            tx_err = tx_err.saturating_add(te);
        }
        let rate = |v: u64| v as f64 / secs;
        out.detail(
            format!("net.{iface}.rx_bytes_per_sec"),
            rate(r),
            Unit::BytesPerSecond,
        );
        out.detail(
            format!("net.{iface}.tx_bytes_per_sec"),
            rate(t),
            Unit::BytesPerSecond,
        );
        out.detail(
            format!("net.{iface}.rx_errors_per_sec"),
            rate(re),
            Unit::PerSecond,
        );
        out.detail(
            format!("net.{iface}.tx_errors_per_sec"),
            rate(te),
            Unit::PerSecond,
        );
    }
    out.total(
        "net.rx_bytes_per_sec",
        rx as f64 / secs,
        Unit::BytesPerSecond,
    );
    out.total(
        "net.tx_bytes_per_sec",
        tx as f64 / secs,
        Unit::BytesPerSecond,
    );
    out.total(
        "net.rx_errors_per_sec",
        rx_err as f64 / secs,
        Unit::PerSecond,
    );
    out.total(
        "net.tx_errors_per_sec",
        tx_err as f64 / secs,
        Unit::PerSecond,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        assert!(is_loopback("lo"));
        assert!(is_loopback("lo0"));
        assert!(!is_loopback("eth0"));
        assert!(!is_loopback("lowpan0"));
    }

    #[test]
    fn rates_are_non_negative_after_two_collections() {
        let mut nets = Networks::new().expect("networks");
        let mut s = Samples::default();
        collect(&mut nets, Duration::from_millis(100), &mut s);
        std::thread::sleep(Duration::from_millis(100));
        let mut s = Samples::default();
        collect(&mut nets, Duration::from_millis(100), &mut s);
        assert!(!s.details.is_empty(), "at least one interface");
        for name in [
            "net.rx_bytes_per_sec",
            "net.tx_bytes_per_sec",
            "net.rx_errors_per_sec",
            "net.tx_errors_per_sec",
        ] {
            assert!(s.get(name).expect(name) >= 0.0);
        }
        for m in &s.details {
            assert!(m.value >= 0.0, "{m:?}");
        }
        assert_eq!(s.details.len() % 4, 0);
    }

    #[test]
    fn zero_elapsed_emits_nothing() {
        let mut nets = Networks::new().expect("networks");
        let mut s = Samples::default();
        collect(&mut nets, Duration::ZERO, &mut s);
        assert!(s.is_empty());
    }
}
