//! Range read: 1 host × 1 h at 1 s resolution, all metrics (60), from the embedded store.
//!
//! `cargo bench --bench range` — (a) in-process against the store API, (b) through a release
//! broker process over gRPC (decode included). Prints p50/p99/max over QUERIES reads.

#[path = "support.rs"]
mod support;

use std::time::Instant;

use ringwatch_broker::store::{EmbeddedConfig, EmbeddedStore, RangeQuery, Store};
use ringwatch_proto::RangeRequest;
use support::*;

const METRICS: usize = 60;
const POINTS: i64 = 3600;

/// `queries` reads of `q` through the store API, each checked whole: (p50, p99, max) in ms.
fn time_reads(
    rt: &tokio::runtime::Runtime,
    store: &EmbeddedStore,
    q: &RangeQuery,
    queries: usize,
) -> (f64, f64, f64) {
    let mut lat = Vec::with_capacity(queries);
    for _ in 0..queries {
        let t = Instant::now();
        let got = rt.block_on(store.range(q.clone())).expect("range");
        lat.push(t.elapsed());
        assert_eq!(
            got.iter().map(|c| c.timestamps_ms.len()).sum::<usize>(),
            POINTS as usize
        );
    }
    percentiles(lat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let queries: usize = std::env::var("BENCH_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let end = now_ms();
    let start = end - POINTS * 1000;
    let snaps: Vec<_> = (0..POINTS)
        .map(|i| snapshot("range-host", start + i * 1000, METRICS))
        .collect();

    // (a) The store API, in process.
    let store = EmbeddedStore::open(EmbeddedConfig::default()).expect("store");
    rt.block_on(store.write(&snaps)).expect("write");
    let q = RangeQuery {
        host_id: "range-host".into(),
        start_ms: start,
        end_ms: end,
        metric_names: vec![],
        limit: usize::MAX,
        max_cells: usize::MAX,
        sparse_ok: true,
        step_ms: 0,
    };
    let (p50, p99, max) = time_reads(&rt, &store, &q, queries);
    println!(
        "range [store API] 1 host x 1 h x {METRICS} metrics ({} samples): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        POINTS as usize * METRICS
    );

    // (c) The store API, every row in blocks on disk: cold (no block cache: each read takes
    // its sections from the file, which the OS has cached) and warm (sections cached). Values
    // from loadgen's agent-like generator: compressed columns decode at the speed real data
    // does (the constant values above would flatter it).
    let defs = ringwatch_loadgen::values::metric_defs(METRICS);
    let real: Vec<_> = snaps
        .iter()
        .map(|s| ringwatch_proto::Snapshot {
            host_id: s.host_id.clone(),
            timestamp_ms: s.timestamp_ms,
            metrics: ringwatch_loadgen::values::snapshot_metrics(7, s.timestamp_ms, &defs, false),
        })
        .collect();
    for (what, cache) in [("cold", 0u64), ("warm", 64 << 20)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(EmbeddedConfig {
            data_dir: Some(dir.path().to_path_buf()),
            block_cache_bytes: cache,
            disk_reserve_bytes: 0,
            ..EmbeddedConfig::default()
        })
        .expect("store");
        rt.block_on(store.write(&real)).expect("write");
        store.cut(end + 1).expect("cut");
        assert_eq!(store.stats().samples, 0, "all in blocks");
        let (p50, p99, max) = time_reads(&rt, &store, &q, queries);
        println!(
            "range [store API, from blocks, {what}] same shape, agent-like values: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; block {} bytes ({:.2} bytes a sample)",
            store.stats().block_bytes,
            store.stats().block_bytes as f64 / (POINTS as usize * METRICS) as f64
        );
    }

    // (b) Through a broker process over gRPC.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    rt.block_on(async {
        ingest(&url, "range-host", &snaps).await;
        let mut client = query_client(&url).await;
        let mut lat = Vec::with_capacity(queries);
        for _ in 0..queries {
            let t = Instant::now();
            let mut stream = client
                .range(RangeRequest { host_id: "range-host".into(), start_ms: start, end_ms: end, metric_names: vec![], limit: 0, sparse_ok: true, step_ms: 0 })
                .await
                .expect("range")
                .into_inner();
            let mut n = 0;
            while let Some(c) = stream.message().await.expect("chunk") {
                n += c.timestamps_ms.len();
            }
            lat.push(t.elapsed());
            assert_eq!(n, POINTS as usize);
        }
        let (p50, p99, max) = percentiles(lat);
        println!("range [gRPC, client decode included] same data: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
    });
}
