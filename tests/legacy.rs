//! The seed system's `monitor.MonitorService`, spoken by a client built only from
//! `proto/proto/monitor/monitor.proto`: data sent either way is readable either way, on the
//! embedded store and on Redis; bad values are refused with reasons.

mod common;

use std::time::Duration;

use common::redis_servers::RedisServer;
use common::*;
use ringwatch_proto::monitor::monitor_service_client::MonitorServiceClient;
use ringwatch_proto::monitor::{Metric, MetricsData, MetricsRequest, Tag};

fn data(host: &str, ts_s: i64, cpu: &str) -> MetricsData {
    MetricsData {
        host_id: host.into(),
        timestamp: ts_s,
        metrics: vec![
            Metric {
                name: "cpu_usage".into(),
                value: cpu.into(),
                unit: "%".into(),
            },
            Metric {
                name: "mem_used".into(),
                value: "1048576".into(),
                unit: "bytes".into(),
            },
        ],
        tags: vec![Tag {
            key: "dc".into(),
            value: "east".into(),
        }],
    }
}

async fn send(url: &str, msgs: Vec<MetricsData>) -> Result<String, tonic::Status> {
    let mut c = MonitorServiceClient::connect(url.to_string())
        .await
        .expect("connect");
    c.send_metrics(tokio_stream::iter(msgs)).await.map(|r| {
        let r = r.into_inner();
        assert!(r.success);
        r.message
    })
}

async fn get(
    url: &str,
    host: &str,
    start: i64,
    end: i64,
    names: Vec<String>,
) -> Result<Vec<MetricsData>, tonic::Status> {
    let mut c = MonitorServiceClient::connect(url.to_string())
        .await
        .expect("connect");
    let mut s = c
        .get_metrics(MetricsRequest {
            host_id: host.into(),
            start_time: start,
            end_time: end,
            metric_names: names,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m);
    }
    Ok(out)
}

fn both_ways(url: &str) {
    let now_s = now_ms() / 1000;
    block_on(async {
        // Legacy in, legacy and ringwatch out.
        let msgs: Vec<MetricsData> = (0..10)
            .map(|i| data("legacy-host", now_s - 20 + i, &format!("{}.5", 10 + i)))
            .collect();
        let reply = send(url, msgs).await.expect("send");
        assert!(reply.contains("stored 10"), "{reply}");
        let back = get(url, "legacy-host", now_s - 60, now_s, vec![])
            .await
            .expect("get");
        assert_eq!(back.len(), 10);
        assert_eq!(back[0].timestamp, now_s - 20);
        let cpu = back[3]
            .metrics
            .iter()
            .find(|m| m.name == "cpu_usage")
            .expect("cpu");
        assert_eq!(cpu.value, "13.5");
        assert_eq!(cpu.unit, "percent");
        assert_eq!(
            back[0].tags,
            vec![Tag {
                key: "dc".into(),
                value: "east".into()
            }]
        );
        let only_mem = get(
            url,
            "legacy-host",
            now_s - 60,
            now_s,
            vec!["mem_used".into()],
        )
        .await
        .expect("get");
        assert!(
            only_mem
                .iter()
                .all(|m| m.metrics.len() == 1 && m.metrics[0].value == "1048576")
        );
        let rows = range_all(url, "legacy-host").await;
        assert_eq!(rows.len(), 10);
        assert_eq!(
            rows[9]
                .metrics
                .iter()
                .find(|m| m.name == "cpu_usage")
                .map(|m| m.value),
            Some(19.5)
        );
        // Resending is idempotent.
        let reply = send(url, vec![data("legacy-host", now_s - 20, "10.5")])
            .await
            .expect("resend");
        assert!(reply.contains("1 duplicates"), "{reply}");
    });
    // Ringwatch agent in, legacy out.
    let agent = agent(&[url], &["--host-id", "modern-host"]);
    wait_for("the agent's data", Duration::from_secs(30), || {
        (block_on(range_all(url, "modern-host")).len() >= 2).then_some(())
    });
    let back = block_on(get(url, "modern-host", 0, 0, vec!["cpu.usage".into()])).expect("get");
    assert!(back.len() >= 2);
    let v: f64 = back[0].metrics[0].value.parse().expect("a decimal string");
    assert!((0.0..=100.0).contains(&v));
    assert_eq!(back[0].metrics[0].unit, "percent");
    drop(agent);
}

#[test]
fn legacy_and_ringwatch_data_are_readable_either_way_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    both_ways(&broker.grpc_url());
}

#[test]
fn legacy_and_ringwatch_data_are_readable_either_way_on_redis_in_every_layout() {
    for layout in ["compact", "seed", "both"] {
        let redis = RedisServer::start();
        let broker = redis_broker(&[redis.url()], &["--redis-layout", layout]);
        both_ways(&broker.grpc_url());
    }
}

/// Compact layout: rows that arrive after their window was closed are merged into its chunk
/// (compare-and-set), rows resent into it are duplicates, and the reads see each row once.
#[test]
fn late_rows_into_a_closed_window_are_merged_once_on_redis_compact() {
    let redis = RedisServer::start();
    let broker = redis_broker(&[redis.url()], &["--redis-chunk-grace-secs", "1"]);
    let url = broker.grpc_url();
    // A window an hour ago, whole: 10 rows at even seconds.
    let window_s = (now_ms() / 1000 - 3600) / 600 * 600;
    let even: Vec<MetricsData> = (0..10)
        .map(|i| data("late-host", window_s + 2 * i, &format!("{i}")))
        .collect();
    let chunk = format!("monitor:chunk:{{late-host}}:{}", window_s * 1000);
    block_on(async {
        let reply = send(&url, even.clone()).await.expect("send");
        assert!(reply.contains("stored 10"), "{reply}");
    });
    wait_for("the window closed", Duration::from_secs(30), || {
        let n: i64 = redis::cmd("EXISTS")
            .arg(&chunk)
            .query(&mut redis.conn())
            .unwrap();
        (n == 1).then_some(())
    });
    // Late: 5 odd seconds (new) and 3 even ones again (duplicates).
    let late: Vec<MetricsData> = (0..5)
        .map(|i| data("late-host", window_s + 2 * i + 1, "99"))
        .chain(even[..3].iter().cloned())
        .collect();
    block_on(async {
        let reply = send(&url, late).await.expect("send late");
        assert!(
            reply.contains("stored 5") && reply.contains("3 duplicates"),
            "{reply}"
        );
        let back = get(&url, "late-host", window_s - 1, window_s + 600, vec![])
            .await
            .expect("get");
        let ts: Vec<i64> = back.iter().map(|m| m.timestamp).collect();
        let want: Vec<i64> = (0..10)
            .map(|i| window_s + 2 * i)
            .chain((0..5).map(|i| window_s + 2 * i + 1))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(ts, want, "each row once, in order");
        let cpu = |t: i64| {
            back.iter()
                .find(|m| m.timestamp == t)
                .and_then(|m| m.metrics.iter().find(|x| x.name == "cpu_usage"))
                .map(|x| x.value.clone())
        };
        assert_eq!(cpu(window_s + 3).as_deref(), Some("99"));
        assert_eq!(cpu(window_s + 4).as_deref(), Some("2"));
    });
    // Still one chunk, no open rows for that window.
    let rows: i64 = redis::cmd("EXISTS")
        .arg(format!("monitor:rows:{{late-host}}:{}", window_s * 1000))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(rows, 0);
    let m = scrape(&broker.addr("admin"));
    assert_eq!(
        metric(&m, "ringwatch_broker_store_chunk_merges_total"),
        1.0,
        "{m}"
    );
}

#[test]
fn bad_legacy_input_is_refused_with_a_reason_after_storing_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let now_s = now_ms() / 1000;
    block_on(async {
        let msgs = vec![
            data("h1", now_s - 3, "1"),
            data("h1", now_s - 2, "2"),
            data("h1", now_s - 1, "two and a half"),
            data("h1", now_s, "3"),
        ];
        let err = send(&url, msgs).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("cpu_usage") && err.message().contains("not a number"),
            "{err:?}"
        );
        assert!(
            err.message().contains("2 snapshots before it were stored"),
            "{err:?}"
        );
        assert_eq!(range_all(&url, "h1").await.len(), 2);

        for (msg, words) in [
            (data("h1", now_s, "NaN"), "NaN or infinite"),
            (
                data("h1", now_s + 86_400, "1"),
                "outside the accepted window",
            ),
            (data("", now_s, "1"), "host_id is empty"),
            (
                MetricsData {
                    tags: vec![Tag {
                        key: "bad key".into(),
                        value: "v".into(),
                    }],
                    ..data("h1", now_s, "1")
                },
                "label key",
            ),
        ] {
            let err = send(&url, vec![msg]).await.expect_err("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains(words), "{err:?} should say {words}");
        }
        let err = get(&url, "nobody", 0, 0, vec![])
            .await
            .expect_err("unknown host");
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = get(&url, "h1", now_s, now_s - 10, vec![])
            .await
            .expect_err("backwards range");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    });
    let m = scrape(&broker.addr("admin"));
    assert!(
        metric(
            &m,
            "ringwatch_broker_rejected_batches_total{reason=\"not_a_number\""
        ) >= 1.0,
        "{m}"
    );
}

/// Compact layout: a day that is over gets its rollup once its windows are closed; a range
/// with a step reads it and agrees with the raw rows. A late row into that day is merged
/// into its chunk, the day's rollup is made again, and the rollups still agree, the late row
/// included.
#[test]
fn day_rollups_follow_late_rows_on_redis_compact() {
    let redis = RedisServer::start();
    let mut broker = redis_broker(&[redis.url()], &["--redis-chunk-grace-secs", "1"]);
    let url = broker.grpc_url();
    let now_s = now_ms() / 1000;
    let today = now_s / 86_400 * 86_400;
    let yesterday = today - 86_400;
    // Every minute from the start of yesterday to now, at :00.
    let rows: Vec<MetricsData> = (yesterday / 60..now_s / 60)
        .map(|m| data("day-host", m * 60, &format!("{}.25", m % 97)))
        .collect();
    block_on(async {
        for part in rows.chunks(500) {
            send(&url, part.to_vec()).await.expect("send");
        }
    });
    let key = format!("monitor:rollup:{{day-host}}:{}", yesterday * 1000);
    let made = |b: &Proc| {
        metric(
            &scrape(&b.addr("admin")),
            "ringwatch_broker_store_rollup_days_total",
        )
    };
    wait_for("yesterday's rollup", Duration::from_secs(60), || {
        let n: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut redis.conn())
            .unwrap();
        (n == 1).then_some(())
    });
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(
        at,
        (yesterday + 86_400) * 1000 + 7 * 86_400_000,
        "expires with its day"
    );
    let range = (yesterday * 1000, now_ms());
    for step in [60_000, 3_600_000] {
        let n = block_on(check_rollups(&url, "day-host", range.0, range.1, step));
        assert!(n > 0);
    }
    let before = made(&broker);
    // A late row at :30 of a minute yesterday: a new row in a closed window.
    block_on(async {
        let reply = send(&url, vec![data("day-host", yesterday + 3600 + 30, "1000")])
            .await
            .expect("send late");
        assert!(reply.contains("stored 1"), "{reply}");
    });
    wait_for(
        "the day's rollup made again",
        Duration::from_secs(30),
        || (made(&broker) > before).then_some(()),
    );
    for step in [60_000, 86_400_000] {
        block_on(check_rollups(&url, "day-host", range.0, range.1, step));
    }
    // A broker started after the day was rolled up finds a day without its rollup (here:
    // deleted) and makes it from the chunks.
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query(&mut redis.conn())
        .unwrap();
    broker.restart();
    wait_for(
        "the day's rollup made after a restart",
        Duration::from_secs(60),
        || {
            let n: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query(&mut redis.conn())
                .unwrap();
            (n == 1).then_some(())
        },
    );
    // (It listens on new ports.)
    let url = broker.grpc_url();
    block_on(check_rollups(&url, "day-host", range.0, range.1, 3_600_000));
    // The late row's minute: two rows, the highest value the late one.
    block_on(async {
        let mut q = ringwatch_proto::query_client::QueryClient::connect(url.clone())
            .await
            .unwrap();
        let mut s = q
            .range(ringwatch_proto::RangeRequest {
                host_id: "day-host".into(),
                start_ms: (yesterday + 3600) * 1000,
                end_ms: (yesterday + 3600) * 1000,
                metric_names: vec!["cpu_usage".into()],
                limit: 0,
                sparse_ok: false,
                step_ms: 60_000,
            })
            .await
            .unwrap()
            .into_inner();
        let chunk = s.message().await.unwrap().expect("a bucket");
        assert_eq!(chunk.columns[0].count, vec![2]);
        assert_eq!(chunk.columns[0].max, vec![1000.0]);
    });
}
