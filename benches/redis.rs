//! The broker on a real standalone redis-server: ingest rate against the redis-benchmark
//! ceiling, Redis memory per stored sample (agent-like values, every layout in one run), and
//! range-read latency.
//!
//! `cargo bench --bench redis` (env `BENCH_SECS`, default 10; `BENCH_STREAMS`, default 4;
//! `BENCH_QUERIES`, default 200; `REDIS_LAYOUT`, default `compact`, the layout of the ingest and
//! range parts; `MEMORY_HOSTS`, default 50, and `MEMORY_HOURS`, default 6, the memory part's
//! backfill at 5 s × 60 metrics). Needs redis-server, redis-benchmark (scripts/test.sh installs).

#[path = "../tests/common/redis_servers.rs"]
#[allow(dead_code)]
mod redis_servers;
#[path = "support.rs"]
mod support;

use std::time::Instant;

use redis_servers::RedisServer;
use ringwatch_proto::RangeRequest;
use support::*;

fn redis_cpu(redis: &RedisServer) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", redis.pid())).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn broker_on(redis: &RedisServer, layout: &str) -> Proc {
    // Windows close a second after their last write (the bench's rows are all in the past).
    let extra = ["--redis-layout", layout, "--redis-chunk-grace-secs", "1"];
    redis_broker(&redis.url(), &extra)
}

/// Waits until no window of `hosts` that is over is still open (compact layout).
fn windows_closed(redis: &RedisServer, hosts: &[String]) {
    let t0 = Instant::now();
    loop {
        let current = now_ms().div_euclid(600_000) * 600_000;
        let open = hosts.iter().any(|h| {
            let starts: Vec<i64> = redis::cmd("ZRANGE")
                .arg(format!("monitor:open:{{{h}}}"))
                .arg(0)
                .arg(-1)
                .query(&mut redis.conn())
                .unwrap_or_default();
            starts.iter().any(|&s| s < current - 600_000)
        });
        if !open {
            return;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(300),
            "windows still open after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Redis memory per sample of `layout` for `hosts` × `hours` at 5 s × 60 agent-like metrics
/// (`ringwatch loadgen --backfill`), once the windows that are over are closed.
fn memory(layout: &str, hosts: usize, hours: u64) -> f64 {
    let redis = RedisServer::start();
    let broker = broker_on(&redis, layout);
    let url = format!("http://{}", broker.addr("grpc"));
    let mem0 = redis.used_memory();
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = backfill(
        &url,
        hosts,
        "5s",
        &format!("{hours}h"),
        60,
        &dir.path().join("ledger"),
        &[],
    );
    let samples = summary["samples_acked"].as_u64().expect("samples") as i64;
    let ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg("monitor:hosts")
        .query(&mut redis.conn())
        .expect("hosts");
    if layout != "seed" {
        windows_closed(&redis, &ids);
    }
    let mem1 = redis.used_memory();
    let per = (mem1 - mem0) as f64 / samples.max(1) as f64;
    println!(
        "memory [redis, {layout}] {hosts} hosts x {hours} h at 5 s x 60 agent-like metrics: used_memory {mem0} -> {mem1} bytes for {samples} samples = {per:.2} bytes/sample"
    );
    per
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = env("BENCH_SECS", 10);
    let streams: usize = env("BENCH_STREAMS", 4);
    let queries: usize = env("BENCH_QUERIES", 200);
    let layout: String = env("REDIS_LAYOUT", "compact".to_string());
    let mem_hosts: usize = env("MEMORY_HOSTS", 50);
    let mem_hours: u64 = env("MEMORY_HOURS", 6);

    // 0. Memory per sample, every layout on the same data.
    let seed = memory("seed", mem_hosts, mem_hours);
    let compact = memory("compact", mem_hosts, mem_hours);
    println!(
        "memory [redis]: compact takes {:.1} % of the seed layout's bytes a sample",
        compact / seed * 100.0
    );

    // 1. The ceiling: what redis-benchmark gets through with the commands a snapshot needs.
    let redis = RedisServer::start();
    let cap = redis_ceiling(redis.port, METRICS);

    // 2. Ingest through a broker into this Redis.
    let broker = broker_on(&redis, &layout);
    let url = format!("http://{}", broker.addr("grpc"));
    let mem0 = redis.used_memory();
    let (bcpu0, rcpu0) = (broker.cpu_secs(), redis_cpu(&redis));
    let (samples, wall) = load(&url, streams, secs);
    let (bcpu, rcpu) = (broker.cpu_secs() - bcpu0, redis_cpu(&redis) - rcpu0);
    let snapshots = samples / METRICS as u64;
    println!(
        "ingest [redis, {layout}] streams={streams} batch={SNAPS_PER_BATCH}x{METRICS}: {samples} samples ({snapshots} snapshots) in {wall:.1} s = {:.0} samples/s wall; broker CPU {bcpu:.1} s = {:.0} samples/s per broker core; redis-server CPU {rcpu:.1} s ({:.0} % of its one core)",
        samples as f64 / wall,
        samples as f64 / bcpu.max(0.001),
        rcpu / wall * 100.0
    );
    println!(
        "  achieved {:.0} snapshots/s = {:.0} % of that ceiling",
        snapshots as f64 / wall,
        snapshots as f64 / wall / cap * 100.0
    );
    let mem1 = redis.used_memory();
    println!(
        "memory [redis, {layout}, bulk bench values]: used_memory {mem0} -> {mem1} bytes for {samples} samples = {:.1} bytes/sample ({:.0} bytes/snapshot of {METRICS} metrics)",
        (mem1 - mem0) as f64 / samples.max(1) as f64,
        (mem1 - mem0) as f64 / snapshots.max(1) as f64
    );

    // 3. Range read: 1 host x 1 h at 1 s, 60 metrics; the hour before last, so every compact
    // window of it is closed (read from chunks).
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.conn())
        .expect("FLUSHALL");
    let rt = runtime();
    let end = now_ms() - 3600 * 1000;
    let start = end - 3600 * 1000;
    rt.block_on(async {
        let snaps: Vec<_> = (0..3600).map(|i| snapshot("range-host", start + i * 1000, 60)).collect();
        ingest(&url, "range-host", &snaps).await;
        if layout != "seed" {
            windows_closed(&redis, &["range-host".to_string()]);
        }
        let mut client = query_client(&url).await;
        // (a) The store API in this process, against the same Redis.
        let mut cfg = ringwatch_broker::Config::default();
        cfg.storage.kind = ringwatch_broker::config::StoreKind::Redis;
        cfg.storage.redis.urls = vec![redis.url()];
        cfg.storage.redis.layout = clap::ValueEnum::from_str(&layout, true).expect("REDIS_LAYOUT: compact, seed or both");
        let store = ringwatch_broker::store::RedisStore::open(cfg.redis()).expect("store");
        let q = ringwatch_broker::store::RangeQuery { host_id: "range-host".into(), start_ms: start, end_ms: end, metric_names: vec![], limit: usize::MAX, max_cells: usize::MAX, sparse_ok: true, step_ms: 0 };
        let mut lat = Vec::with_capacity(queries);
        for _ in 0..queries {
            let t = Instant::now();
            let chunks = ringwatch_broker::store::Store::range(&store, q.clone()).await.expect("range");
            lat.push(t.elapsed());
            assert_eq!(chunks.iter().map(|c| c.timestamps_ms.len()).sum::<usize>(), 3600);
        }
        let (p50, p99, max) = percentiles(lat);
        println!("range [redis, {layout}, store API] 1 host x 1 h x 60 metrics: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");

        // (b) Through the broker over gRPC.
        let mut lat = Vec::with_capacity(queries);
        let t0 = Instant::now();
        for _ in 0..queries {
            let t = Instant::now();
            let req = RangeRequest { host_id: "range-host".into(), start_ms: start, end_ms: end, metric_names: vec![], limit: 0, sparse_ok: true, step_ms: 0 };
            let mut stream = client.range(req).await.expect("range").into_inner();
            let mut n = 0;
            while let Some(c) = stream.message().await.expect("chunk") {
                n += c.timestamps_ms.len();
            }
            lat.push(t.elapsed());
            assert_eq!(n, 3600);
        }
        let (p50, p99, max) = percentiles(lat);
        println!(
            "range [redis, {layout}, gRPC] 1 host x 1 h x 60 metrics: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({queries} reads in {:.1} s)",
            t0.elapsed().as_secs_f64()
        );
    });
}
