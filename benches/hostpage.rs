//! The host page over 7 days: its 9 series (the web UI's request) at 10-minute steps, through
//! viz, from 7 days of one host at 5 s × 60 agent-like metrics — the embedded store and Redis
//! (compact layout), each in the same run.
//!
//! `cargo bench --bench hostpage` — env `HOSTPAGE_HOSTS` (5 backfilled hosts, the page reads
//! the first), `HOSTPAGE_DAYS` (7), `HOSTPAGE_QUERIES` (200), `HOSTPAGE_STORES`
//! (`embedded,redis`; `before` is the embedded store of another build, the `ringwatch` binary
//! at `HOSTPAGE_BROKER_BIN`, to compare in one run). A release broker takes `ringwatch loadgen
//! --backfill`; once the rows are in blocks (embedded: and the finished days' blocks merged,
//! which stores their rollups) or closed chunks (Redis), a release viz serves
//! `/api/metrics?…&step=600s` over a keep-alive connection, body read to the end: p50, p99.

#[path = "../tests/common/redis_servers.rs"]
#[allow(dead_code)]
mod redis_servers;
#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

const SERIES: &str = "cpu.usage,mem.used_percent,swap.used_percent,disk.used_percent,net.rx_bytes_per_sec,net.tx_bytes_per_sec,load.1,load.5,load.15";

/// The page's request `queries` times through a viz fed by `grpc`: (p50, p99, max, bytes).
fn page_reads(grpc: &str, days: i64, queries: usize) -> (f64, f64, f64, usize) {
    let viz = viz(grpc);
    let http = viz.addr("http");
    let rt = runtime();
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&http).await.expect("connect");
        let mut conn = tokio::io::BufReader::new(stream);
        let mut lat = Vec::with_capacity(queries);
        let mut bytes = 0;
        for i in 0..queries + 5 {
            let end = now_ms();
            let start = end - days * 86_400_000;
            let q = format!(
                "GET /api/metrics?host_id=loadgen-0&metrics={SERIES}&start_time={}&end_time={}&step=600s HTTP/1.1\r\nHost: bench\r\n\r\n",
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(start as u64)),
                humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(end as u64)),
            );
            let t = Instant::now();
            let (status, n) = keepalive_get(&mut conn, &q).await;
            assert!(status.contains("200"), "{status}");
            // The first few warm the connection and the caches.
            if i >= 5 {
                lat.push(t.elapsed());
                bytes = n;
            }
        }
        let (p50, p99, max) = percentiles(lat);
        (p50, p99, max, bytes)
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts: usize = env("HOSTPAGE_HOSTS", 5);
    let days: u64 = env("HOSTPAGE_DAYS", 7);
    let queries: usize = env("HOSTPAGE_QUERIES", 200);
    let stores: String = env("HOSTPAGE_STORES", "embedded,redis".to_string());
    for store in stores.split(',') {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis = (store == "redis").then(redis_servers::RedisServer::start);
        let data = dir.path().join("data");
        let broker = match &redis {
            None if store == "before" => {
                let bin: String = env("HOSTPAGE_BROKER_BIN", String::new());
                assert!(
                    !bin.is_empty(),
                    "HOSTPAGE_BROKER_BIN: the other build's ringwatch"
                );
                broker_bin(&bin, &data, &["--block-window-mins", "1"])
            }
            None => broker(&data, &["--block-window-mins", "1"]),
            Some(r) => redis_broker(&r.url(), &["--redis-chunk-grace-secs", "1"]),
        };
        let grpc = format!("http://{}", broker.addr("grpc"));
        let admin = broker.addr("admin");
        println!("hostpage [{store}]:");
        let mem0 = redis.as_ref().map(|r| r.used_memory());
        let t = Instant::now();
        let summary = backfill(
            &grpc,
            hosts,
            "5s",
            &format!("{days}d"),
            60,
            &dir.path().join("ledger"),
            &[],
        );
        let samples = summary["samples_acked"].as_u64().expect("samples");
        println!(
            "  backfilled {hosts} hosts x {days} d at 5 s x 60 metrics: {samples} samples in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        // Settled: the rows in blocks, or the windows closed.
        let t = Instant::now();
        let metric = if redis.is_some() {
            "ringwatch_broker_store_chunks_closed_total"
        } else {
            "ringwatch_broker_store_blocks_written_total"
        };
        let mut last = -1.0;
        loop {
            std::thread::sleep(Duration::from_secs(3));
            let now =
                scrape(&admin, metric) + scrape(&admin, "ringwatch_broker_store_rollup_days_total");
            let head = scrape(&admin, "ringwatch_broker_store_samples");
            if now == last && (redis.is_some() || head < 60.0 * 12.0 * 60.0 * hosts as f64) {
                break;
            }
            last = now;
            assert!(t.elapsed() < Duration::from_secs(900), "never settled");
        }
        if redis.is_none() {
            // Compaction runs once a minute: settled when two runs merged nothing.
            let merged = "ringwatch_broker_store_blocks_compacted_total";
            let mut last = scrape(&admin, merged);
            loop {
                std::thread::sleep(Duration::from_secs(125));
                let now = scrape(&admin, merged);
                if now == last {
                    break;
                }
                last = now;
            }
            println!(
                "  {} blocks after {last} were merged, settled in {:.0} s",
                scrape(&admin, "ringwatch_broker_store_blocks"),
                t.elapsed().as_secs_f64()
            );
        }
        if let (Some(r), Some(m0)) = (&redis, mem0) {
            let m1 = r.used_memory();
            println!(
                "  redis used_memory {m0} -> {m1} bytes = {:.2} bytes/sample (raw chunks, day rollups, the open windows)",
                (m1 - m0) as f64 / samples as f64
            );
        }
        let stored = "ringwatch_broker_store_block_rollup_sections_total{source=\"stored\"}";
        let rows = "ringwatch_broker_store_block_rollup_sections_total{source=\"rows\"}";
        let before = (scrape(&admin, stored), scrape(&admin, rows));
        let (p50, p99, max, bytes) = page_reads(&grpc, days as i64, queries);
        if redis.is_none() {
            println!(
                "  block sections read a page: {:.1} from stored rollups, {:.1} from rows",
                (scrape(&admin, stored) - before.0) / (queries + 5) as f64,
                (scrape(&admin, rows) - before.1) / (queries + 5) as f64
            );
        }
        println!(
            "hostpage [{store}] 9 series x {days} d at 10-minute steps through viz: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({queries} reads, {} KiB each)",
            bytes / 1024
        );
        drop(broker);
    }
}
