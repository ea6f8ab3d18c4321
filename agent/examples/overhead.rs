//! Runs the agent for a while (no broker needed) and prints its CPU time and peak RSS.
//!
//! `cargo run -p ringwatch-agent --example overhead -- [seconds] [interval_secs]`

use std::time::{Duration, Instant};

use ringwatch_agent::{Agent, Config};
use tokio_util::sync::CancellationToken;

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.trim_start_matches(field).trim().to_string())
        .unwrap_or_default()
}

/// User + system CPU seconds of this process (Linux, assumes 100 ticks/s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let interval: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()?;
    rt.block_on(async {
        let config = Config {
            interval_secs: interval,
            metrics_listen: "127.0.0.1:0".parse()?,
            brokers: vec!["http://127.0.0.1:1".into()],
            ..Config::default()
        };
        let agent = Agent::bind(config).await?;
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(agent.run(shutdown.clone()));
        let (start, cpu0) = (Instant::now(), cpu_secs());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_secs() - cpu0);
        println!(
            "{secs} s at {interval} s interval: cpu {cpu:.2} s = {:.3} % of a core, VmRSS {}, VmHWM {}",
            cpu / wall * 100.0,
            proc_status("VmRSS:"),
            proc_status("VmHWM:"),
        );
        shutdown.cancel();
        run.await??;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
