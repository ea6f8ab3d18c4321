//! The ring at internet scale: RING_BROKERS (1,000) brokers × RING_VNODES (50) points and
//! RING_HOSTS (1,000,000) hosts. Reports the time to build the ring at a new epoch, its
//! memory, the lookup cost (owner, and the 3 owners a replication factor of 3 would ask),
//! the balance (max/mean hosts a broker, and the p99), and the hosts moved when one broker
//! joins and when one leaves (against the 1/N a perfect ring moves).
//!
//! `cargo bench --bench ring`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use ringwatch_core::Ring;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("RING_BROKERS", 1000);
    let vnodes = env("RING_VNODES", 50) as u32;
    let hosts: Vec<String> = (0..env("RING_HOSTS", 1_000_000))
        .map(|i| {
            format!(
                "ip-10-{}-{}-{}.ec2.internal",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    let ids: Vec<String> = (0..n).map(|i| format!("ringwatch-broker-{i}")).collect();

    let mut builds = Vec::new();
    let mut ring = Ring::new(1, ids.clone(), vnodes);
    for epoch in 2..12 {
        let t = Instant::now();
        ring = black_box(Ring::new(epoch, ids.clone(), vnodes));
        builds.push(t.elapsed().as_secs_f64() * 1e3);
    }
    builds.sort_by(f64::total_cmp);
    println!(
        "ring of {n} brokers × {vnodes} vnodes: built in {:.1} ms (median of 10), {:.0} KiB",
        builds[5],
        ring.heap_bytes() as f64 / 1024.0
    );

    for r in [1usize, 3] {
        let t = Instant::now();
        let mut sum = 0usize;
        for h in &hosts {
            sum += black_box(ring.owners(h, r)).len();
        }
        let ns = t.elapsed().as_nanos() as f64 / hosts.len() as f64;
        assert_eq!(sum, hosts.len() * r);
        println!("lookup of {r} owner(s): {ns:.0} ns/op");
    }

    let owners: Vec<&str> = hosts
        .iter()
        .map(|h| ring.owner(h).expect("owner"))
        .collect();
    let mut load: HashMap<&str, usize> = HashMap::new();
    for o in &owners {
        *load.entry(o).or_default() += 1;
    }
    let mut loads: Vec<usize> = ring
        .members()
        .map(|m| load.get(m).copied().unwrap_or(0))
        .collect();
    loads.sort_unstable();
    let mean = hosts.len() as f64 / n as f64;
    println!(
        "balance over {} hosts: mean {mean:.0} a broker, max {} ({:.3} × mean), p99 {} ({:.3}), min {} ({:.3})",
        hosts.len(),
        loads[n - 1],
        loads[n - 1] as f64 / mean,
        loads[n * 99 / 100],
        loads[n * 99 / 100] as f64 / mean,
        loads[0],
        loads[0] as f64 / mean
    );

    let moved = |other: &Ring| {
        hosts
            .iter()
            .zip(&owners)
            .filter(|(h, o)| other.owner(h) != Some(**o))
            .count()
    };
    let mut grown_ids = ids.clone();
    grown_ids.push(format!("ringwatch-broker-{n}"));
    let grown = Ring::new(100, grown_ids, vnodes);
    let joined = moved(&grown);
    let shrunk = Ring::new(101, ids.iter().skip(1).cloned(), vnodes);
    let left = moved(&shrunk);
    println!(
        "one broker joins: {joined} hosts move ({:.3} % against 1/(N+1) = {:.3} %); one leaves: {left} move ({:.3} % against its own {:.3} %)",
        100.0 * joined as f64 / hosts.len() as f64,
        100.0 / (n + 1) as f64,
        100.0 * left as f64 / hosts.len() as f64,
        100.0 * load.get(ids[0].as_str()).copied().unwrap_or(0) as f64 / hosts.len() as f64
    );
}
