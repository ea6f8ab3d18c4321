//! The Redis store against real servers from Debian's packages: the key layout checked with a
//! plain Redis client, a 3-master cluster, TLS. (Faults under load: `faults_redis.rs`.)

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::loadgen;
use common::redis_servers::{Cluster, RedisServer};
use common::*;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{HostsRequest, LatestRequest};

const RETENTION_SECS: i64 = 7 * 24 * 3600;

/// Stops the agent (it hands over what it buffered) and checks that the broker holds exactly
/// the snapshots it collected, each once.
fn stop_agent_and_check_nothing_lost(mut agent: Proc, broker_url: &str, host: &str) -> usize {
    assert!(agent.terminate(), "agent exits cleanly");
    let summary = agent
        .event("stopped", Duration::from_secs(5))
        .expect("agent summary");
    assert_eq!(summary["snapshots_dropped"].as_u64(), Some(0), "{summary}");
    assert_eq!(summary["snapshots_buffered"].as_u64(), Some(0), "{summary}");
    let collected = summary["snapshots_collected"].as_u64().expect("collected") as usize;
    let stored = block_on(range_all(broker_url, host));
    let ts: Vec<i64> = stored.iter().map(|s| s.timestamp_ms).collect();
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    assert_eq!(
        stored.len(),
        collected,
        "every collected snapshot stored exactly once"
    );
    collected
}

#[test]
fn seed_layout_keys_types_fields_ttls_and_scores_follow_the_layout() {
    seed_keys_follow_the_layout("seed");
}

#[test]
fn both_layouts_write_the_seed_keys_as_before() {
    let redis = seed_keys_follow_the_layout("both");
    // …and the compact ones beside them.
    let mut c = redis.conn();
    for key in ["monitor:latest:{layout-host}", "monitor:open:{layout-host}"] {
        let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut c).unwrap();
        assert_eq!(exists, 1, "{key}");
    }
}

/// The seed layout's keys, as `layout` writes them; returns the server for more checks.
fn seed_keys_follow_the_layout(layout: &str) -> RedisServer {
    let redis = RedisServer::start();
    let broker = redis_broker(&[redis.url()], &["--redis-layout", layout]);
    let url = broker.grpc_url();
    let agent = agent(&[&url], &["--host-id", "layout-host", "--zone", "z1"]);
    let rows = wait_for("3 snapshots in Redis", Duration::from_secs(30), || {
        let r = block_on(range_all(&url, "layout-host"));
        (r.len() >= 3).then_some(r)
    });
    let mut c = redis.conn();
    let index = "monitor:index:metrics:{layout-host}";
    let ty: String = redis::cmd("TYPE").arg(index).query(&mut c).unwrap();
    assert_eq!(ty, "zset");
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(index)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert!(members.len() >= rows.len());
    for (member, score) in &members {
        let ts: i64 = member
            .strip_prefix("monitor:metrics:{layout-host}:")
            .expect("data key layout")
            .parse()
            .unwrap();
        assert_eq!(*score as i64, ts, "score = timestamp");
    }
    // The range read through the broker is exactly what the index holds.
    let index_ts: Vec<i64> = members
        .iter()
        .map(|(_, s)| *s as i64)
        .take(rows.len())
        .collect();
    assert_eq!(
        index_ts,
        rows.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>()
    );

    let (data_key, score) = &members[0];
    let ty: String = redis::cmd("TYPE").arg(data_key).query(&mut c).unwrap();
    assert_eq!(ty, "hash");
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(data_key).query(&mut c).unwrap();
    assert_eq!(fields["host_id"], "layout-host");
    assert_eq!(fields["timestamp"], (*score as i64).to_string());
    assert_eq!(fields["tag:zone"], "z1");
    let cpu: serde_json::Value = serde_json::from_str(&fields["metric:cpu.usage"]).unwrap();
    assert!(
        cpu["value"]
            .as_f64()
            .is_some_and(|v| (0.0..=100.0).contains(&v)),
        "{cpu}"
    );
    assert_eq!(cpu["unit"], "percent");
    let mem: serde_json::Value = serde_json::from_str(&fields["metric:mem.total"]).unwrap();
    assert_eq!(mem["unit"], "bytes");
    let packed_key = format!("monitor:packed:{{layout-host}}:{}", *score as i64);
    for key in [
        data_key.as_str(),
        index,
        "monitor:hosts:{layout-host}",
        &packed_key,
        "monitor:schema:{layout-host}",
    ] {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut c).unwrap();
        // The name lists outlive the compact layout's newest window (`both`) by two widths.
        let most = RETENTION_SECS + if key.contains(":schema:") { 1200 } else { 0 };
        assert!(
            ttl > RETENTION_SECS - 120 && ttl <= most,
            "TTL of {key} is the retention: {ttl}"
        );
    }

    // An empty window of a known host is an empty answer; an unknown host is NotFound. Told
    // apart by one EXISTS on the host's record, not by reading every host.
    let window = |host: &str| {
        let host = host.to_string();
        let url = url.clone();
        block_on(async move {
            let mut q = QueryClient::connect(url).await.expect("connect query");
            match q
                .range(ringwatch_proto::RangeRequest {
                    host_id: host,
                    start_ms: 0,
                    end_ms: 1,
                    metric_names: vec![],
                    limit: 0,
                    sparse_ok: true,
                    step_ms: 0,
                })
                .await
            {
                Ok(r) => {
                    let mut s = r.into_inner();
                    let mut n = 0;
                    while let Some(c) = s.message().await.expect("range stream") {
                        n += c.timestamps_ms.len();
                    }
                    Ok(n)
                }
                Err(s) => Err(s.code()),
            }
        })
    };
    assert_eq!(window("layout-host"), Ok(0));
    assert_eq!(window("nobody"), Err(tonic::Code::NotFound));

    // The range read (from the `packed` field) gives exactly the values of the metric: fields.
    let first = &rows[0];
    assert_eq!(first.timestamp_ms, *score as i64);
    let metric_fields = fields.keys().filter(|f| f.starts_with("metric:")).count();
    assert_eq!(first.metrics.len(), metric_fields);
    for m in &first.metrics {
        // The number as written, parsed exactly (serde_json's default parse can be 1 ulp off).
        let raw = &fields[&format!("metric:{}", m.name)];
        let number = raw
            .strip_prefix("{\"value\":")
            .and_then(|r| r.split(',').next())
            .unwrap();
        assert_eq!(
            number.parse::<f64>().ok(),
            Some(m.value),
            "{}: {raw}",
            m.name
        );
    }
    // A snapshot written straight into Redis in the seed's layout (no `packed` field) is read
    // too, in order with the rest.
    let seed_ts = rows[0].timestamp_ms - 500;
    let seed_key = format!("monitor:metrics:{{layout-host}}:{seed_ts}");
    let _: () = redis::cmd("HSET")
        .arg(&seed_key)
        .arg("host_id")
        .arg("layout-host")
        .arg("timestamp")
        .arg(seed_ts)
        .arg("metric:cpu.usage")
        .arg(r#"{"value":42.0,"unit":"percent"}"#)
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg(index)
        .arg(seed_ts)
        .arg(&seed_key)
        .query(&mut c)
        .unwrap();
    let again = block_on(range_all(&url, "layout-host"));
    assert_eq!(again[0].timestamp_ms, seed_ts);
    assert_eq!(again[0].metrics.len(), 1);
    assert_eq!(again[0].metrics[0].value, 42.0);
    assert_eq!(again[1].timestamp_ms, rows[0].timestamp_ms);
    assert_eq!(again[1].metrics.len(), first.metrics.len());

    let host: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("monitor:hosts:{layout-host}")
        .query(&mut c)
        .unwrap();
    let last_seen: i64 = host["last_seen"].parse().unwrap();
    assert!((now_ms() - last_seen).abs() < 60_000);
    let labels: serde_json::Value = serde_json::from_str(&host["labels"]).unwrap();
    assert_eq!(labels["zone"], "z1");
    assert!(!host["agent_version"].is_empty());
    let registry: Vec<String> = redis::cmd("SMEMBERS")
        .arg("monitor:hosts")
        .query(&mut c)
        .unwrap();
    assert_eq!(registry, vec!["layout-host".to_string()]);
    let window: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("monitor:aggregation:window:{layout-host}")
        .query(&mut c)
        .unwrap();
    let w: serde_json::Value = serde_json::from_str(&window["metric:cpu.usage"]).unwrap();
    assert!(w["min"].as_f64().unwrap() <= w["max"].as_f64().unwrap());

    // An index member older than the retention is trimmed by the next write.
    let stale = now_ms() - RETENTION_SECS * 1000 - 60_000;
    let _: i64 = redis::cmd("ZADD")
        .arg(index)
        .arg(stale)
        .arg("monitor:metrics:{layout-host}:stale")
        .query(&mut c)
        .unwrap();
    wait_for(
        "the expired index member to be trimmed",
        Duration::from_secs(20),
        || {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(index)
                .arg("monitor:metrics:{layout-host}:stale")
                .query(&mut c)
                .unwrap();
            score.is_none().then_some(())
        },
    );

    // Latest and hosts come from Redis too, with the window statistics.
    block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let latest = q
            .latest(LatestRequest {
                metric_names: vec!["cpu.usage".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .snapshots;
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].metrics.len(), 1);
        assert!(latest[0].metrics[0].window.is_some());
        let hosts = q.hosts(HostsRequest {}).await.unwrap().into_inner().hosts;
        assert_eq!(hosts[0].labels.get("zone").map(String::as_str), Some("z1"));
    });
    let (status, _) = http_get(&broker.addr("admin"), "/ready");
    assert_eq!(status, 200);
    drop(agent);
    redis
}

#[test]
fn a_three_master_cluster_takes_ingest_and_range_reads_across_slots() {
    let cluster = Cluster::start();
    let broker = redis_broker(&cluster.urls(), &["--redis-mode", "cluster"]);
    let url = broker.grpc_url();
    let hosts = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let agents: Vec<Proc> = hosts
        .iter()
        .map(|h| agent(&[&url], &["--host-id", h]))
        .collect();
    for h in hosts {
        wait_for("every host stored", Duration::from_secs(40), || {
            (block_on(range_all(&url, h)).len() >= 2).then_some(())
        });
    }
    // The hosts' keys live on more than one master: the store really spans slots.
    let mut owners = HashSet::new();
    for h in hosts {
        let key = format!("monitor:latest:{{{h}}}");
        let owner = cluster.nodes.iter().position(|n| {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query(&mut n.conn())
                .unwrap_or(0);
            exists == 1
        });
        owners.insert(owner.expect("some node holds the index"));
    }
    assert!(owners.len() >= 2, "keys on several masters: {owners:?}");
    block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let latest = q
            .latest(LatestRequest::default())
            .await
            .unwrap()
            .into_inner()
            .snapshots;
        assert_eq!(latest.len(), hosts.len());
        let listed = q.hosts(HostsRequest {}).await.unwrap().into_inner().hosts;
        assert_eq!(listed.len(), hosts.len());
    });
    for a in agents {
        let h = a.ready["host_id"].as_str().unwrap().to_string();
        stop_agent_and_check_nothing_lost(a, &url, &h);
    }
}

#[test]
fn in_a_cluster_wait_runs_on_the_master_that_took_the_write() {
    // Three masters, a replica behind the first only. With --redis-min-replicas 1 the hosts
    // whose slots the first master serves are acknowledged, the others never are: WAIT reaches
    // the master that took each batch, not any master.
    let mut cluster = Cluster::start();
    cluster.add_replica(0);
    let broker = redis_broker(
        &cluster.urls(),
        &[
            "--redis-mode",
            "cluster",
            "--redis-min-replicas",
            "1",
            "--redis-timeout-ms",
            "500",
            "--redis-write-retry-secs",
            "1",
        ],
    );
    let url = broker.grpc_url();
    let lg = loadgen::Loadgen::start(
        &[&url],
        &[
            "--hosts",
            "12",
            "--interval",
            "500ms",
            "--duration",
            "5s",
            "--drain-timeout",
            "3s",
        ],
    );
    let summary = lg.finish(Duration::from_secs(60));
    let ledger = ringwatch_loadgen::ledger::LedgerReader::open(&lg.ledger).expect("ledger");
    let (mut replicated, mut lonely) = (0, 0);
    for h in 0..12 {
        let host = ledger.header().host_id(h);
        // The first master answers for its own slots and sends the others away (MOVED).
        let on_first = redis::cmd("EXISTS")
            .arg(format!("monitor:index:metrics:{{{host}}}"))
            .query::<i64>(&mut cluster.nodes[0].conn())
            .is_ok();
        let acked = ledger.acked_count(h);
        if on_first {
            replicated += 1;
            assert!(
                acked >= 5,
                "{host} is on the replicated master: {acked} acked"
            );
        } else {
            lonely += 1;
            assert_eq!(acked, 0, "{host} is on a master without a replica");
        }
    }
    assert!(replicated >= 1 && lonely >= 1, "{replicated} {lonely}");
    assert!(
        summary["unacked_at_exit"].as_u64().unwrap() > 0,
        "{summary}"
    );
}

#[test]
fn up_with_redis_runs_the_local_stack_on_redis() {
    let redis = RedisServer::start();
    // Plaintext gRPC, so the plain test client reads it (`up`'s TLS is tested in cli.rs).
    // The brokers keep their Raft logs in a data directory of the test's own.
    let data = tempfile::tempdir().expect("tempdir");
    let data = data.path().join("data");
    let mut up = Up::start(&[
        "--redis",
        &redis.url(),
        "--insecure-grpc",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(up.banner.contains("gRPC security   OFF"), "{}", up.banner);
    assert!(
        up.banner
            .contains("store           redis redis://127.0.0.1"),
        "{}",
        up.banner
    );
    let url = up.grpc.clone();
    let host = wait_for("a host in Redis", Duration::from_secs(30), || {
        let hosts: Vec<String> = redis::cmd("SMEMBERS")
            .arg("monitor:hosts")
            .query(&mut redis.conn())
            .ok()?;
        hosts.into_iter().next()
    });
    wait_for(
        "data read back through the broker",
        Duration::from_secs(30),
        || (!block_on(range_all(&url, &host)).is_empty()).then_some(()),
    );
    let (ok, _) = up.stop();
    assert!(ok);
}

#[test]
fn every_broker_on_one_redis_counts_every_host() {
    let redis = RedisServer::start();
    let a = redis_broker(&[redis.url()], &[]);
    let b = redis_broker(&[redis.url()], &[]);
    let (url_a, url_b) = (a.grpc_url(), b.grpc_url());
    let _x = agent(&[&url_a], &["--host-id", "host-x"]);
    let _y = agent(&[&url_b], &["--host-id", "host-y"]);
    for (url, host) in [(&url_a, "host-x"), (&url_b, "host-y")] {
        wait_for("the host stored", Duration::from_secs(30), || {
            (!block_on(range_all(url, host)).is_empty()).then_some(())
        });
    }
    // Each broker registered one host, and each reports both: the registry is shared.
    for (broker, url) in [(&a, &url_a), (&b, &url_b)] {
        block_on(async {
            let mut q = QueryClient::connect(url.clone()).await.unwrap();
            let listed = q.hosts(HostsRequest {}).await.unwrap().into_inner().hosts;
            assert_eq!(listed.len(), 2);
        });
        let m = scrape(&broker.addr("admin"));
        assert_eq!(metric(&m, "ringwatch_broker_store_hosts"), 2.0, "{m}");
    }
}

#[test]
fn a_tls_redis_with_a_private_ca_is_trusted_only_with_that_ca() {
    let (redis, tls_port, certs) = RedisServer::start_tls();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = certs.path().join("ca.pem");
    // Without the CA, the broker will not trust the server: never ready, nothing stored.
    let untrusting = redis_broker(std::slice::from_ref(&url), &[]);
    let admin = untrusting.addr("admin");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        http_get(&admin, "/ready").0,
        503,
        "ready without trusting the server"
    );
    // With it: stored over TLS, readable back, and the keys are really in that Redis.
    let broker = redis_broker(&[url], &["--redis-ca-file", ca.to_str().unwrap()]);
    let grpc = broker.grpc_url();
    let _agent = agent(&[&grpc], &["--host-id", "tls-host"]);
    wait_for("snapshots stored over TLS", Duration::from_secs(30), || {
        (block_on(range_all(&grpc, "tls-host")).len() >= 2).then_some(())
    });
    assert_eq!(http_get(&broker.addr("admin"), "/ready").0, 200);
    let n: i64 = redis::cmd("ZCARD")
        .arg("monitor:open:{tls-host}")
        .query(&mut redis.conn())
        .unwrap();
    assert!(n >= 1, "{n} open windows");
}

/// A refused password is not retried: the read fails at once with Redis's reason (no retry
/// counted), and the broker is not ready.
#[test]
fn a_refused_redis_password_is_a_clear_error_not_a_retry() {
    let redis = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right")
        .query(&mut redis.conn())
        .unwrap();
    let url = redis.url().replace("redis://", "redis://:wrong@");
    let broker = redis_broker(&[url], &[]);
    let grpc = broker.grpc_url();
    let status = block_on(async {
        let mut c = QueryClient::connect(grpc.clone()).await.expect("connect");
        c.hosts(HostsRequest {}).await.expect_err("refused")
    });
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let m = status.message();
    assert!(
        m.contains("WRONGPASS")
            || m.contains("AuthenticationFailed")
            || m.contains("invalid username-password"),
        "{m}"
    );
    assert!(!m.contains("store unavailable: store unavailable"), "{m}");
    let admin = broker.addr("admin");
    assert_eq!(
        metric(
            &scrape(&admin),
            "ringwatch_broker_store_write_retries_total"
        ),
        0.0
    );
    assert_eq!(http_get(&admin, "/ready").0, 503);
}

/// The compact layout (the default): 20 hosts × 6 simulated hours at 5 s, 60 agent-like
/// metrics, backfilled. The windows that are over are closed into chunks; every sample reads
/// back exact (verify); the keys have the layout's types, contents and expiry times; Redis
/// holds at most 4 bytes a sample. Then a second generator over the same 6 hours: its rows land
/// in closed windows (merged into their chunks, or duplicates where they fall on the first
/// run's grid), and both runs still read back exact, each row once.
#[test]
fn compact_layout_keys_expiry_memory_and_exact_read_back() {
    const WINDOW: i64 = 600_000;
    let retention_ms = RETENTION_SECS * 1000;
    let redis = RedisServer::start();
    let broker = redis_broker(&[redis.url()], &["--redis-chunk-grace-secs", "1"]);
    let url = broker.grpc_url();
    let mut c = redis.conn();
    let before = redis.used_memory();
    let args = [
        "--hosts",
        "20",
        "--interval",
        "5s",
        "--backfill",
        "6h",
        "--metrics",
        "60",
    ];
    let lg = loadgen::Loadgen::start(&[&url], &args);
    let summary = lg.finish(Duration::from_secs(300));
    let hosts: Vec<String> = redis::cmd("SMEMBERS")
        .arg("monitor:hosts")
        .query(&mut c)
        .unwrap();
    assert_eq!(hosts.len(), 20);
    // Every window that is over is closed once unwritten for the grace period.
    wait_for(
        "the windows that are over closed",
        Duration::from_secs(90),
        || {
            let current = now_ms().div_euclid(WINDOW) * WINDOW;
            hosts
                .iter()
                .all(|h| {
                    let open: Vec<i64> = redis::cmd("ZRANGE")
                        .arg(format!("monitor:open:{{{h}}}"))
                        .arg(0)
                        .arg(-1)
                        .query(&mut c)
                        .unwrap();
                    open.iter().all(|&s| s >= current - WINDOW)
                })
                .then_some(())
        },
    );
    let report = loadgen::assert_nothing_lost(&lg, &summary, &[&url], 20 * 4000);
    let samples = loadgen::n(&report, "acknowledged") as i64 * 60;
    // What the retention costs: everything but the windows still open (raw rows, up to ten
    // minutes a host, however long the retention), whose share depends on the clock.
    let (mut open_bytes, mut open_samples) = (0i64, 0i64);
    for h in &hosts {
        let starts: Vec<i64> = redis::cmd("ZRANGE")
            .arg(format!("monitor:open:{{{h}}}"))
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .unwrap();
        for s in starts {
            let key = format!("monitor:rows:{{{h}}}:{s}");
            let bytes: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .query(&mut c)
                .unwrap();
            let rows: i64 = redis::cmd("HLEN").arg(&key).query(&mut c).unwrap();
            open_bytes += bytes.unwrap_or(0);
            open_samples += rows * 60;
        }
    }
    let total = redis.used_memory() - before;
    let per_sample = (total - open_bytes) as f64 / (samples - open_samples) as f64;
    eprintln!(
        "redis compact layout: {per_sample:.2} bytes a sample in closed windows ({} samples), {:.2} with the open ones",
        samples - open_samples,
        total as f64 / samples as f64
    );
    assert!(per_sample <= 4.0, "{per_sample:.2} bytes a sample");

    // Nothing of the seed layout, and the compact keys as documented.
    for pattern in ["monitor:metrics:*", "monitor:packed:*", "monitor:index:*"] {
        let found: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut c).unwrap();
        assert!(found.is_empty(), "{pattern}: {found:?}");
    }
    let h = &hosts[0];
    let starts: Vec<(i64, f64)> = redis::cmd("ZRANGE")
        .arg(format!("monitor:chunks:{{{h}}}"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert!(
        starts.len() >= 35,
        "6 h of 10-minute chunks: {}",
        starts.len()
    );
    for (start, score) in &starts {
        assert_eq!(*start, *score as i64);
        assert_eq!(start % WINDOW, 0);
        let key = format!("monitor:chunk:{{{h}}}:{start}");
        let ty: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
        assert_eq!(ty, "string", "{key}");
        let head: Vec<u8> = redis::cmd("GETRANGE")
            .arg(&key)
            .arg(0)
            .arg(3)
            .query(&mut c)
            .unwrap();
        assert_eq!(head, b"RWC1");
        let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(&mut c).unwrap();
        assert_eq!(
            at,
            start + WINDOW + retention_ms,
            "{key} expires with its window"
        );
        // No open rows beside a chunk.
        let rows: i64 = redis::cmd("EXISTS")
            .arg(format!("monitor:rows:{{{h}}}:{start}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(rows, 0);
    }
    let latest: Vec<u8> = redis::cmd("GET")
        .arg(format!("monitor:latest:{{{h}}}"))
        .query(&mut c)
        .unwrap();
    let colon = latest.iter().position(|&b| b == b':').expect("ts:snapshot");
    let ts: i64 = std::str::from_utf8(&latest[..colon])
        .unwrap()
        .parse()
        .unwrap();
    assert!(now_ms() - ts < 60_000, "latest is the newest snapshot");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("monitor:latest:{{{h}}}"))
        .query(&mut c)
        .unwrap();
    assert!(ttl > RETENTION_SECS - 120 && ttl <= RETENTION_SECS, "{ttl}");
    for (key, ty) in [
        (format!("monitor:open:{{{h}}}"), "zset"),
        (format!("monitor:schema:{{{h}}}"), "hash"),
        (format!("monitor:hosts:{{{h}}}"), "hash"),
    ] {
        let t: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
        // The newest row's window may have ended while the test ran (the clock crossed a
        // 10-minute boundary): then, its grace over, it is closed and nothing is open.
        let newest_window_over = now_ms() >= ts.div_euclid(WINDOW) * WINDOW + WINDOW;
        if ty == "zset" && t == "none" && newest_window_over {
            continue;
        }
        assert_eq!(t, ty, "{key}");
        let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut c).unwrap();
        assert!(ttl > RETENTION_SECS - 120, "TTL of {key}: {ttl}");
    }
    // The open window: a hash of timestamp → row, expiring with its window.
    let open: Vec<i64> = redis::cmd("ZRANGE")
        .arg(format!("monitor:open:{{{h}}}"))
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    for start in open {
        let key = format!("monitor:rows:{{{h}}}:{start}");
        let fields: HashMap<String, Vec<u8>> =
            redis::cmd("HGETALL").arg(&key).query(&mut c).unwrap();
        for (ts, row) in &fields {
            let ts: i64 = ts.parse().unwrap();
            assert_eq!(ts.div_euclid(WINDOW) * WINDOW, start);
            assert_eq!(row.len(), 4 + 8 * 60, "name-list id and 60 values");
        }
        let at: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(&mut c).unwrap();
        assert_eq!(at, start + WINDOW + retention_ms);
    }
    // Latest and hosts through the broker, with the window statistics.
    block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let latest = q
            .latest(LatestRequest {
                metric_names: vec!["cpu.usage".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .snapshots;
        assert_eq!(latest.len(), 20);
        assert!(latest.iter().all(|s| s.metrics.len() == 1));
    });

    // Rollups: from the closed windows' chunks and the open window's rows, in buckets of one
    // minute and of ten, as the raw rows say.
    for step in [60_000, 600_000] {
        let n = block_on(check_rollups(
            &url,
            h,
            now_ms() - 7 * 3_600_000,
            now_ms(),
            step,
        ));
        assert!(
            n >= 60 * 6 * 3_600_000 / step as usize,
            "{n} buckets of {step} ms"
        );
    }

    // The same 6 hours again, into closed windows.
    let again = loadgen::Loadgen::start(&[&url], &args);
    let summary = again.finish(Duration::from_secs(300));
    loadgen::assert_nothing_lost(&again, &summary, &[&url], 20 * 4000);
    let (ok, report) = loadgen::verify(&lg.ledger, &[&url]);
    assert!(ok, "the first run still reads back exact: {report:#}");
    let m = scrape(&broker.addr("admin"));
    assert!(
        metric(&m, "ringwatch_broker_store_chunks_closed_total") >= 20.0 * 35.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "ringwatch_broker_store_corrupt_total{kind=\"chunk\"}"),
        0.0
    );
}
