//! Broker ingest through the real gRPC path into the embedded store.
//!
//! `cargo bench --bench ingest` — starts a release broker process, opens STREAMS ingest streams
//! from this process (each a host sending batches of 100 snapshots × 50 metrics with up to 8
//! batches in flight) for SECS seconds, and reports acknowledged samples per second of wall
//! time and per second of the broker process's CPU time (= per core). Runs twice: with the
//! write-ahead log on disk, and `--ephemeral` (memory only).

#[path = "support.rs"]
mod support;

use support::*;

fn run(label: &str, extra: &[&str], streams: usize, secs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--memory-limit-samples", "400000000"];
    args.extend_from_slice(extra);
    let broker = broker(dir.path(), &args);
    let url = format!("http://{}", broker.addr("grpc"));
    let cpu0 = broker.cpu_secs();
    let (total, wall) = load(&url, streams, secs);
    let cpu = broker.cpu_secs() - cpu0;
    println!(
        "ingest [{label}] streams={streams} batch={SNAPS_PER_BATCH}x{METRICS}: {total} samples in {wall:.1} s = {:.0} samples/s wall; broker CPU {cpu:.1} s = {:.0} samples/s per broker core",
        total as f64 / wall,
        total as f64 / cpu.max(0.001)
    );
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
    run("log on disk", &[], streams, secs);
    run("ephemeral", &["--ephemeral"], streams, secs);
}
