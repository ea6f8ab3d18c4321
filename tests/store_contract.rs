//! One contract, every store: the embedded store in memory and on disk, and Redis in each
//! layout (`compact`, `seed`, `both`) against a real redis-server, all through `AnyStore` (as
//! the broker holds them). What a store must do (SPEC S4): a host + timestamp is stored once,
//! ranges come back in order, inclusive, filtered and bounded, rollups count every value once,
//! the registry keeps each host's newest labels and last-seen time, `latest` is each host's
//! newest snapshot.

mod common;

use std::collections::BTreeMap;

use common::redis_servers::RedisServer;
use ringwatch_broker::config::Config;
use ringwatch_broker::store::{
    AnyStore, EmbeddedConfig, EmbeddedStore, HostRecord, RangeQuery, RedisLayout, RedisStore, Store,
};
use ringwatch_proto::{Metric, RangeChunk, Snapshot, Unit};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn snap(host: &str, ts: i64, i: i64) -> Snapshot {
    let mut metrics = vec![
        Metric {
            name: "cpu.usage".into(),
            value: 10.0 + i as f64 / 4.0,
            unit: Unit::Percent as i32,
            window: None,
        },
        Metric {
            name: "mem.used_percent".into(),
            value: 50.0 - i as f64 / 8.0,
            unit: Unit::Percent as i32,
            window: None,
        },
    ];
    if i % 2 == 0 {
        metrics.push(Metric {
            name: "net.eth0.rx_bytes_per_sec".into(),
            value: i as f64 * 1000.0,
            unit: Unit::BytesPerSecond as i32,
            window: None,
        });
    }
    Snapshot {
        host_id: host.into(),
        timestamp_ms: ts,
        metrics,
    }
}

fn query(host: &str, start_ms: i64, end_ms: i64) -> RangeQuery {
    RangeQuery {
        host_id: host.into(),
        start_ms,
        end_ms,
        metric_names: vec![],
        limit: usize::MAX,
        max_cells: usize::MAX,
        sparse_ok: false,
        step_ms: 0,
    }
}

fn rows(chunks: &[RangeChunk], host: &str) -> Vec<Snapshot> {
    chunks.iter().flat_map(|c| c.to_snapshots(host)).collect()
}

fn record(host: &str, labels: &[(&str, &str)], seen: i64) -> HostRecord {
    HostRecord {
        host_id: host.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        agent_version: "1.2.3".into(),
        interval_ms: 5000,
        last_seen_ms: seen,
    }
}

/// The contract, on one store.
async fn contract(store: &AnyStore, what: &str) {
    store
        .check()
        .await
        .unwrap_or_else(|e| panic!("{what}: check: {e}"));
    let t0 = now_ms() - 3_600_000;
    let ts = |i: i64| t0 + i * 5000;
    // Writes: new, then a resend counted as duplicates.
    let batch: Vec<Snapshot> = (0..20).map(|i| snap("a", ts(i), i)).collect();
    let out = store.write(&batch).await.unwrap();
    assert_eq!((out.stored, out.duplicates), (20, 0), "{what}");
    assert_eq!(out.samples, 20 * 2 + 10, "{what}");
    let again = vec![snap("a", ts(3), 3), snap("a", ts(20), 20)];
    let out = store.write(&again).await.unwrap();
    assert_eq!((out.stored, out.duplicates), (1, 1), "{what}");
    assert_eq!(out.new, vec![false, true], "{what}");
    store.write(&[snap("b", ts(5), 5)]).await.unwrap();

    // The registry: the newest labels, one lookup, heartbeats.
    store
        .register(record("a", &[("zone", "x")], t0))
        .await
        .unwrap();
    store
        .register(record("a", &[("zone", "y"), ("rack", "7")], t0 + 1))
        .await
        .unwrap();
    store.register(record("b", &[], t0)).await.unwrap();
    let a = store.host("a").await.unwrap().expect("a registered");
    let want: BTreeMap<String, String> = [("rack", "7"), ("zone", "y")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(a.labels, want, "{what}");
    assert_eq!(
        (a.agent_version.as_str(), a.interval_ms),
        ("1.2.3", 5000),
        "{what}"
    );
    assert!(store.host("nobody").await.unwrap().is_none(), "{what}");
    let seen = now_ms();
    store.touch("a", seen).await.unwrap();
    let a = store.host("a").await.unwrap().unwrap();
    assert!(
        a.last_seen_ms >= seen,
        "{what}: {} < {seen}",
        a.last_seen_ms
    );
    let ids: Vec<String> = store
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.host_id)
        .collect();
    assert!(
        ids.contains(&"a".into()) && ids.contains(&"b".into()),
        "{what}: {ids:?}"
    );

    // Ranges: in order, inclusive, each row once, exact.
    let all = rows(
        &store.range(query("a", t0 - 1, now_ms())).await.unwrap(),
        "a",
    );
    assert_eq!(all.len(), 21, "{what}");
    assert!(
        all.windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms),
        "{what}"
    );
    for (i, s) in all.iter().enumerate() {
        let want = snap("a", ts(i as i64), i as i64);
        let mut got: Vec<(String, u64)> = s
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value.to_bits()))
            .collect();
        let mut exp: Vec<(String, u64)> = want
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value.to_bits()))
            .collect();
        got.sort();
        exp.sort();
        assert_eq!(
            (s.timestamp_ms, got),
            (want.timestamp_ms, exp),
            "{what}: row {i}"
        );
    }
    let inner = rows(&store.range(query("a", ts(2), ts(4))).await.unwrap(), "a");
    assert_eq!(
        inner.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
        vec![ts(2), ts(3), ts(4)],
        "{what}: inclusive"
    );
    let mut q = query("a", t0, now_ms());
    q.metric_names = vec!["net.*".into()];
    let net = rows(&store.range(q).await.unwrap(), "a");
    let with: Vec<&Snapshot> = net.iter().filter(|s| !s.metrics.is_empty()).collect();
    assert_eq!(
        with.len(),
        11,
        "{what}: every other row has net.*, and the 21st"
    );
    assert!(with.iter().all(|s| s.metrics.len() == 1), "{what}");
    let mut q = query("a", t0, now_ms());
    q.limit = 4;
    assert_eq!(
        rows(&store.range(q).await.unwrap(), "a").len(),
        4,
        "{what}: limit"
    );
    assert!(
        rows(
            &store.range(query("a", t0 - 60_000, t0 - 1)).await.unwrap(),
            "a"
        )
        .is_empty(),
        "{what}: an empty window"
    );
    assert!(
        rows(
            &store.range(query("nobody", t0, now_ms())).await.unwrap(),
            "nobody"
        )
        .is_empty(),
        "{what}"
    );

    // Rollups: every value counted once, min and max exact.
    let mut q = query("a", t0, now_ms());
    q.step_ms = 600_000;
    let chunks = store.range(q).await.unwrap();
    let mut count = 0;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in &chunks {
        for col in c.columns.iter().filter(|c| c.name == "cpu.usage") {
            count += col.count.iter().sum::<u32>();
            lo = col
                .min
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .fold(lo, f64::min);
            hi = col
                .max
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .fold(hi, f64::max);
        }
    }
    assert_eq!((count, lo, hi), (21, 10.0, 15.0), "{what}: rollups");

    // Latest: each host's newest, filtered.
    let latest = store.latest(&["cpu.*".into()]).await.unwrap();
    let a = latest.iter().find(|s| s.host_id == "a").expect("a");
    assert_eq!(a.timestamp_ms, ts(20), "{what}");
    assert_eq!(a.metrics.len(), 1, "{what}");
    let b = latest.iter().find(|s| s.host_id == "b").expect("b");
    assert_eq!(b.timestamp_ms, ts(5), "{what}");
    store.flush().await.unwrap();
}

fn redis(layout: RedisLayout, url: &str) -> AnyStore {
    let mut c = Config::default();
    c.storage.redis.urls = vec![url.to_string()];
    c.storage.redis.layout = layout;
    c.storage.redis.key_prefix = format!("contract-{layout:?}:");
    RedisStore::open(c.redis()).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let disk = EmbeddedStore::open(EmbeddedConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..EmbeddedConfig::default()
    })
    .unwrap();
    contract(&disk.into(), "embedded on disk").await;
    let memory = EmbeddedStore::open(EmbeddedConfig::default()).unwrap();
    contract(&memory.into(), "embedded in memory").await;
    let server = RedisServer::start();
    for layout in [RedisLayout::Compact, RedisLayout::Seed, RedisLayout::Both] {
        contract(&redis(layout, &server.url()), &format!("redis {layout:?}")).await;
    }
}
