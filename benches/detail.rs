//! The host-detail query through viz on Redis: 1 host × 1 h at 1 s, over HTTP from a second
//! process, as the dashboard's host page asks for it (its 9 chart series) and for every metric.
//!
//! `cargo bench --bench detail` (env `BENCH_QUERIES`, default 300) — a real redis-server on a
//! free port, a release broker with the Redis store, and viz. One host's last hour (3600
//! snapshots of 60 metrics named like the agent's) is written through the broker's ingest
//! stream; then this process sends BENCH_QUERIES sequential GETs of `/api/metrics` on one
//! keep-alive connection per variant and reports p50/p99/max and the body size.

#[path = "../tests/common/redis_servers.rs"]
#[allow(dead_code)]
mod redis_servers;
#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use redis_servers::RedisServer;
use ringwatch_proto::{Metric, Snapshot, Unit};
use support::*;
use tokio::io::BufReader;

const HOST: &str = "detail-host";
/// What the host page charts (viz/web/src/views/host-charts.js).
const PAGE: &[&str] = &[
    "cpu.usage",
    "mem.used_percent",
    "swap.used_percent",
    "disk.used_percent",
    "net.rx_bytes_per_sec",
    "net.tx_bytes_per_sec",
    "load.1",
    "load.5",
    "load.15",
];

/// A snapshot with the page's series and per-core/per-disk detail: 60 metrics.
fn agent_like(ts: i64) -> Snapshot {
    let mut metrics: Vec<Metric> = PAGE
        .iter()
        .enumerate()
        .map(|(i, n)| Metric {
            name: n.to_string(),
            value: (ts / 1000 % 100) as f64 + i as f64,
            unit: Unit::Percent as i32,
            window: None,
        })
        .collect();
    for i in 0..(60 - PAGE.len()) {
        metrics.push(Metric {
            name: format!("cpu.core.{i}.usage"),
            value: (ts / 1000 % 97) as f64,
            unit: Unit::Percent as i32,
            window: None,
        });
    }
    Snapshot {
        host_id: HOST.into(),
        timestamp_ms: ts,
        metrics,
    }
}

/// Sequential GETs of `path` on one keep-alive connection: latencies and the last body size.
async fn run(addr: &str, path: &str, n: usize) -> (Vec<Duration>, usize) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut conn = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut lat = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let (status, length) = keepalive_get(&mut conn, &request).await;
        assert!(status.contains(" 200 "), "{path}: {status}");
        lat.push(t.elapsed());
        size = length;
    }
    (lat, size)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let queries: usize = env("BENCH_QUERIES", 300);
    let redis = RedisServer::start();
    let broker = redis_broker(&redis.url(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    let viz = viz(&url);
    let http = viz.addr("http");
    let rt = runtime();
    rt.block_on(async {
        let end = now_ms() / 1000 * 1000;
        let start = end - 3_600_000;
        let snaps: Vec<Snapshot> = (0..3600).map(|i| agent_like(start + 1000 + i * 1000)).collect();
        ingest(&url, HOST, &snaps).await;
        let t = |ms: i64| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
        };
        let (from, to) = (t(start), t(end + 1000));
        let page = format!("/api/metrics?host_id={HOST}&start_time={from}&end_time={to}&metrics={}", PAGE.join(","));
        let all = format!("/api/metrics?host_id={HOST}&start_time={from}&end_time={to}");
        // The broker's part: the same read over gRPC, straight from this process.
        let mut q = query_client(&url).await;
        for (what, names) in [("9 series", PAGE.iter().map(|s| s.to_string()).collect::<Vec<_>>()), ("all 60", vec![])] {
            let mut lat = Vec::new();
            for i in 0..queries + 5 {
                let t = Instant::now();
                let req = ringwatch_proto::RangeRequest { host_id: HOST.into(), start_ms: start, end_ms: end + 1000, metric_names: names.clone(), limit: 100_000, sparse_ok: true, step_ms: 0 };
                let mut stream = q.range(req).await.expect("range").into_inner();
                let mut rows = 0;
                while let Some(c) = stream.message().await.expect("chunk") {
                    rows += c.timestamps_ms.len();
                }
                assert_eq!(rows, 3600);
                if i >= 5 {
                    lat.push(t.elapsed());
                }
            }
            let (p50, p99, max) = percentiles(lat);
            println!("  broker gRPC range on Redis, {what}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
        }
        for (what, path) in [("the host page's 9 series", page), ("all 60 metrics", all)] {
            run(&http, &path, 5).await; // warm the connections
            let (lat, size) = run(&http, &path, queries).await;
            let (p50, p99, max) = percentiles(lat);
            println!(
                "detail through viz on Redis, 1 host × 1 h at 1 s, {what}: {queries} queries, body {:.0} KiB: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
                size as f64 / 1024.0
            );
        }
    });
}
