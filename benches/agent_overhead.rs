//! Agent overhead at the default 5 s interval: RSS and CPU share of one core.
//!
//! `cargo bench --bench agent_overhead` (BENCH_SECS, default 120) — starts a release broker and
//! a release agent sending to it, lets the agent run, then reads the agent's VmRSS, VmHWM and
//! CPU time from /proc.

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    let agent = Proc::start(&[
        "agent",
        "--broker",
        &url,
        "--interval-secs",
        "5",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    // Skip start-up (first collection, connection) before measuring.
    std::thread::sleep(Duration::from_secs(6));
    let cpu0 = agent.cpu_secs();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = agent.cpu_secs() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "agent at 5 s interval over {wall:.0} s: CPU {cpu:.2} s = {:.3} % of one core; VmRSS {} kB, VmHWM (peak) {} kB",
        cpu / wall * 100.0,
        agent.status_kb("VmRSS:"),
        agent.status_kb("VmHWM:")
    );
}
