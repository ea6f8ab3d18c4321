//! The broker on a real standalone redis-server: ingest rate against the redis-benchmark
//! ceiling, range-read latency, and Redis memory per stored sample.
//!
//! `cargo bench --bench redis` (env `BENCH_SECS`, default 10; `BENCH_STREAMS`, default 4;
//! `BENCH_QUERIES`, default 200). Needs redis-server, redis-benchmark (scripts/test.sh installs).

#[path = "../tests/common/redis_servers.rs"]
#[allow(dead_code)]
mod redis_servers;
#[path = "support.rs"]
mod support;

use std::time::Instant;

use redis_servers::RedisServer;
use ringwatch_proto::RangeRequest;
use support::*;

fn used_memory(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut redis.conn())
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

fn redis_cpu(redis: &RedisServer) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", redis.pid())).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn broker_on(redis: &RedisServer) -> Proc {
    let url = redis.url();
    Proc::start(&[
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--store",
        "redis",
        "--redis-url",
        &url,
    ])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = env("BENCH_SECS", 10);
    let streams: usize = env("BENCH_STREAMS", 4);
    let queries: usize = env("BENCH_QUERIES", 200);

    // 1. The ceiling: what redis-benchmark gets through with the commands a snapshot needs.
    let redis = RedisServer::start();
    let cap = redis_ceiling(redis.port, METRICS);

    // 2. Ingest through a broker into this Redis.
    let broker = broker_on(&redis);
    let url = format!("http://{}", broker.addr("grpc"));
    let mem0 = used_memory(&redis);
    let (bcpu0, rcpu0) = (broker.cpu_secs(), redis_cpu(&redis));
    let (samples, wall) = load(&url, streams, secs);
    let (bcpu, rcpu) = (broker.cpu_secs() - bcpu0, redis_cpu(&redis) - rcpu0);
    let snapshots = samples / METRICS as u64;
    println!(
        "ingest [redis] streams={streams} batch={SNAPS_PER_BATCH}x{METRICS}: {samples} samples ({snapshots} snapshots) in {wall:.1} s = {:.0} samples/s wall; broker CPU {bcpu:.1} s = {:.0} samples/s per broker core; redis-server CPU {rcpu:.1} s ({:.0} % of its one core)",
        samples as f64 / wall,
        samples as f64 / bcpu.max(0.001),
        rcpu / wall * 100.0
    );
    println!(
        "  achieved {:.0} snapshots/s = {:.0} % of that ceiling",
        snapshots as f64 / wall,
        snapshots as f64 / wall / cap * 100.0
    );
    let mem1 = used_memory(&redis);
    println!(
        "memory [redis]: used_memory {mem0} -> {mem1} bytes for {samples} samples = {:.1} bytes/sample ({:.0} bytes/snapshot of {METRICS} metrics)",
        (mem1 - mem0) as f64 / samples.max(1) as f64,
        (mem1 - mem0) as f64 / snapshots.max(1) as f64
    );

    // 3. Range read: 1 host x 1 h at 1 s, 60 metrics.
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.conn())
        .expect("FLUSHALL");
    let rt = runtime();
    let end = now_ms();
    let start = end - 3600 * 1000;
    rt.block_on(async {
        let snaps: Vec<_> = (0..3600).map(|i| snapshot("range-host", start + i * 1000, 60)).collect();
        ingest(&url, "range-host", &snaps).await;
        let mut client = query_client(&url).await;
        // (a) The store API in this process, against the same Redis.
        let store = ringwatch_broker::store::RedisStore::open(ringwatch_broker::Config {
            store: ringwatch_broker::config::StoreKind::Redis,
            redis_urls: vec![redis.url()],
            ..Default::default()
        }
        .redis())
        .expect("store");
        let q = ringwatch_broker::store::RangeQuery { host_id: "range-host".into(), start_ms: start, end_ms: end, metric_names: vec![], limit: usize::MAX, max_cells: usize::MAX, sparse_ok: true };
        let mut lat = Vec::with_capacity(queries);
        for _ in 0..queries {
            let t = Instant::now();
            let chunks = ringwatch_broker::store::Store::range(&store, q.clone()).await.expect("range");
            lat.push(t.elapsed());
            assert_eq!(chunks.iter().map(|c| c.timestamps_ms.len()).sum::<usize>(), 3600);
        }
        let (p50, p99, max) = percentiles(lat);
        println!("range [redis, store API] 1 host x 1 h x 60 metrics: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");

        // (b) Through the broker over gRPC.
        let mut lat = Vec::with_capacity(queries);
        let t0 = Instant::now();
        for _ in 0..queries {
            let t = Instant::now();
            let req = RangeRequest { host_id: "range-host".into(), start_ms: start, end_ms: end, metric_names: vec![], limit: 0, sparse_ok: true };
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
            "range [redis, gRPC] 1 host x 1 h x 60 metrics: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({queries} reads in {:.1} s)",
            t0.elapsed().as_secs_f64()
        );
    });
}
