//! The dashboard in a real browser with many hosts streaming: how fast it opens and how busy
//! the live page keeps the browser's main thread.
//!
//! `cargo bench --bench ui` (env `BENCH_HOSTS`, default 1000; `BENCH_INTERVAL_SECS`, default 5;
//! `BENCH_WATCH_SECS`, default 10). A release broker and viz (auth off); BENCH_HOSTS hosts get
//! 60 intervals of history (agent-like metric names), then keep reporting every
//! BENCH_INTERVAL_SECS (spread evenly) while headless Chromium (Debian's, driven by
//! `viz/web/tests/load.mjs`) opens the overview: time to the first row and to every row, then,
//! over BENCH_WATCH_SECS of live updates, the main thread's long tasks (> 50 ms).

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{Metric, Snapshot, Unit};
use support::*;

/// A snapshot with what the overview shows plus per-core detail: 24 metrics.
fn agent_like(host: &str, ts: i64, seed: usize) -> Snapshot {
    let wave = ((ts / 1000 + seed as i64) % 60) as f64;
    let mut metrics = vec![
        ("cpu.usage", 10.0 + wave, Unit::Percent),
        ("mem.used_percent", 30.0 + wave / 3.0, Unit::Percent),
        ("load.1", wave / 20.0, Unit::Load),
        ("disk.used_percent", 55.0, Unit::Percent),
        ("net.rx_bytes_per_sec", 1000.0 * wave, Unit::BytesPerSecond),
        ("net.tx_bytes_per_sec", 500.0 * wave, Unit::BytesPerSecond),
    ]
    .into_iter()
    .map(|(n, v, u)| Metric {
        name: n.into(),
        value: v,
        unit: u as i32,
        window: None,
    })
    .collect::<Vec<_>>();
    for c in 0..18 {
        metrics.push(Metric {
            name: format!("cpu.core.{c}.usage"),
            value: wave,
            unit: Unit::Percent as i32,
            window: None,
        });
    }
    Snapshot {
        host_id: host.into(),
        timestamp_ms: ts,
        metrics,
    }
}

/// One host's agent-like stream: history, then one snapshot per interval until `until`.
async fn host(
    channel: tonic::transport::Channel,
    id: usize,
    interval_ms: i64,
    until: Instant,
    ready: Arc<tokio::sync::Barrier>,
) {
    let name = format!("ui-bench-{id:04}");
    let mut client = IngestClient::new(channel);
    let (tx, mut acks) = open_stream(&mut client, &name, interval_ms as u32, 8).await;
    let now = now_ms();
    let history = (0..60)
        .map(|i| agent_like(&name, now - (60 - i) * interval_ms, id))
        .collect();
    tx.send(batch(1, history)).await.expect("history");
    acks.message().await.expect("ack").expect("ack");
    ready.wait().await;
    // Spread the hosts evenly over the interval.
    let offset = Duration::from_millis((id as u64 * 7919) % interval_ms as u64);
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms as u64));
    let mut seq = 1;
    while Instant::now() < until {
        tick.tick().await;
        seq += 1;
        if tx
            .send(batch(seq, vec![agent_like(&name, now_ms(), id)]))
            .await
            .is_err()
        {
            break;
        }
        if acks.message().await.ok().flatten().is_none() {
            break;
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts: usize = env("BENCH_HOSTS", 1000);
    let interval_ms: i64 = env::<i64>("BENCH_INTERVAL_SECS", 5) * 1000;
    let watch: u64 = env("BENCH_WATCH_SECS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    let viz = viz(&url);
    let http = viz.addr("http");
    let rt = runtime();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await; // viz subscribes
        let until = Instant::now() + Duration::from_secs(watch + 120);
        let ready = Arc::new(tokio::sync::Barrier::new(hosts + 1));
        let mut channels = Vec::new();
        for _ in 0..(hosts / 100 + 1) {
            channels.push(
                tonic::transport::Endpoint::from_shared(url.clone())
                    .expect("url")
                    .connect()
                    .await
                    .expect("connect"),
            );
        }
        let tasks: Vec<_> = (0..hosts)
            .map(|i| {
                tokio::spawn(host(
                    channels[i / 100].clone(),
                    i,
                    interval_ms,
                    until,
                    ready.clone(),
                ))
            })
            .collect();
        ready.wait().await;
        let (viz_cpu0, broker_cpu0, t_cpu) = (viz.cpu_secs(), broker.cpu_secs(), Instant::now());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/viz/web/tests/load.mjs");
        let out = tokio::process::Command::new("node")
            .arg(script)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/viz/web"))
            .env("RINGWATCH_URL", format!("http://{http}/"))
            .env("RINGWATCH_HOSTS", hosts.to_string())
            .env("RINGWATCH_WATCH_SECS", watch.to_string())
            .output()
            .await
            .expect("run node (apt-get install -y nodejs chromium)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "load.mjs failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let wall = t_cpu.elapsed().as_secs_f64();
        println!(
            "ui: meanwhile viz used {:.0} % of a core (RSS {} MiB) and the broker {:.0} % (RSS {} MiB)",
            (viz.cpu_secs() - viz_cpu0) / wall * 100.0,
            viz.status_kb("VmRSS") / 1024,
            (broker.cpu_secs() - broker_cpu0) / wall * 100.0,
            broker.status_kb("VmRSS") / 1024,
        );
        println!(
            "ui: {hosts} hosts reporting every {} s (≈{:.0} updates/s to the page): {}",
            interval_ms / 1000,
            hosts as f64 * 1000.0 / interval_ms as f64,
            text.trim()
        );
        for t in tasks {
            t.abort();
        }
    });
}
