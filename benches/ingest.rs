//! Broker ingest through the real gRPC path into the embedded store.
//!
//! `cargo bench --bench ingest` — starts a release broker process, opens STREAMS ingest streams
//! from this process (each a host sending batches of 100 snapshots × 50 metrics with up to 8
//! batches in flight) for SECS seconds, and reports acknowledged samples per second of wall
//! time and per second of the broker process's CPU time (= per core). Runs twice: with the
//! write-ahead log on disk, and `--ephemeral` (memory only). `BENCH_BROKER_BIN=<an older
//! ringwatch>` runs both builds alternately and prints the ratio.

#[path = "support.rs"]
mod support;

use support::*;

fn run(label: &str, bin: &str, extra: &[&str], streams: usize, secs: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--memory-limit-samples", "400000000"];
    args.extend_from_slice(extra);
    let broker = broker_bin(bin, dir.path(), &args);
    let url = format!("http://{}", broker.addr("grpc"));
    let cpu0 = broker.cpu_secs();
    let (total, wall) = load(&url, streams, secs);
    let cpu = broker.cpu_secs() - cpu0;
    println!(
        "ingest [{label}] streams={streams} batch={SNAPS_PER_BATCH}x{METRICS}: {total} samples in {wall:.1} s = {:.0} samples/s wall; broker CPU {cpu:.1} s = {:.0} samples/s per broker core",
        total as f64 / wall,
        total as f64 / cpu.max(0.001)
    );
    total as f64 / cpu.max(0.001)
}

fn main() {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let streams = std::env::var("BENCH_STREAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // BENCH_BROKER_BIN=<an older ringwatch>: both builds alternately, BENCH_ROUNDS times (3),
    // with this build's samples per broker core as a ratio to the older's.
    let older = std::env::var("BENCH_BROKER_BIN").ok();
    let rounds: usize = env("BENCH_ROUNDS", if older.is_some() { 3 } else { 1 });
    for (label, extra) in [
        ("log on disk", &[][..]),
        ("ephemeral", &["--ephemeral"][..]),
    ] {
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let now = run(label, BIN, extra, streams, secs);
            if let Some(old) = &older {
                let before = run(&format!("{label}, older build"), old, extra, streams, secs);
                ratios.push(now / before);
            }
        }
        if !ratios.is_empty() {
            ratios.sort_by(f64::total_cmp);
            println!(
                "ingest [{label}] samples per broker core, this build vs the older: median {:+.1} % (rounds: {})",
                (ratios[ratios.len() / 2] - 1.0) * 100.0,
                ratios
                    .iter()
                    .map(|r| format!("{:+.1} %", (r - 1.0) * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}
