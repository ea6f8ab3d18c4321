//! End to end with real processes on loopback: this machine's metrics flow from a real agent to
//! a real broker, are stored, and read back in order; a broker killed with SIGKILL and restarted
//! loses and duplicates nothing the agent had; a full agent buffer sheds detail before totals and
//! counts every drop. (Faults under load, with loadgen and verify: `faults_broker.rs`,
//! `faults_redis.rs`.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{HostState, HostsRequest, LatestRequest};

fn value(s: &ringwatch_proto::Snapshot, name: &str) -> Option<f64> {
    s.metrics.iter().find(|m| m.name == name).map(|m| m.value)
}

#[test]
fn this_hosts_metrics_arrive_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    let agent = agent(
        &[&url],
        &[
            "--host-id",
            "e2e-host",
            "--label",
            "env=test",
            "--zone",
            "z1",
        ],
    );
    assert_eq!(agent.ready["host_id"], "e2e-host");
    let snaps = block_on(async {
        wait_for_async("4 snapshots stored", Duration::from_secs(30), || async {
            let s = range_all(&url, "e2e-host").await;
            (s.len() >= 4).then_some(s)
        })
        .await
    });
    let ts: Vec<i64> = snaps.iter().map(|s| s.timestamp_ms).collect();
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {ts:?}"
    );
    for s in &snaps {
        assert_eq!(s.host_id, "e2e-host");
        let cpu = value(s, "cpu.usage").expect("cpu.usage");
        assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
        let (used, total) = (
            value(s, "mem.used").expect("mem.used"),
            value(s, "mem.total").expect("mem.total"),
        );
        assert!(total > 0.0 && used <= total);
        assert!(value(s, "system.processes").expect("processes") >= 1.0);
        assert!(
            s.metrics.iter().any(|m| m.name.starts_with("cpu.core.")),
            "per-core detail present"
        );
        assert!(s.metrics.iter().all(|m| m.value.is_finite()));
    }
    let last = snaps.last().unwrap();

    block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let latest = q
            .latest(LatestRequest {
                metric_names: vec!["cpu.*".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .snapshots;
        assert_eq!(latest.len(), 1);
        assert!(latest[0].timestamp_ms >= last.timestamp_ms);
        assert!(latest[0].metrics.iter().all(|m| m.name.starts_with("cpu.")));
        // Sliding-window statistics travel with the raw values.
        let cpu = latest[0]
            .metrics
            .iter()
            .find(|m| m.name == "cpu.usage")
            .expect("cpu.usage");
        let w = cpu.window.expect("window stats on cpu.usage");
        assert!(
            w.min <= cpu.value && cpu.value <= w.max && w.min <= w.avg && w.avg <= w.max,
            "{w:?} vs {}",
            cpu.value
        );
        assert!(w.samples >= 1);
        let hosts = q.hosts(HostsRequest {}).await.unwrap().into_inner().hosts;
        assert_eq!(hosts.len(), 1);
        let h = &hosts[0];
        assert_eq!(h.state, HostState::Live as i32);
        assert_eq!(h.labels.get("env").map(String::as_str), Some("test"));
        assert_eq!(h.labels.get("zone").map(String::as_str), Some("z1"));
        assert_eq!(h.interval_ms, 1000);
        assert!(!h.agent_version.is_empty());
    });

    let (status, body) = http_get(&broker.addr("admin"), "/ready");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&broker.addr("admin"), "/api/cluster");
    assert_eq!(status, 200);
    let cluster: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cluster["leader"], "test-broker");
    // Latency histograms: every acknowledged batch was timed (its write and its ack), and the
    // queries above by rpc.
    let bm = scrape(&broker.addr("admin"));
    let acked = metric(&bm, "ringwatch_broker_batches_acked_total");
    assert!(acked >= 1.0, "{bm}");
    // (The agent goes on sending: a batch acknowledged while the page was read may be timed
    // a moment later.)
    let timed = (acked - 2.0).max(1.0);
    assert!(metric(&bm, "ringwatch_broker_ack_seconds_count") >= timed);
    assert!(metric(&bm, "ringwatch_broker_write_seconds_count") >= timed);
    assert!(metric(&bm, "ringwatch_broker_query_seconds_count{rpc=\"hosts\"}") >= 1.0);
    assert!(metric(&bm, "ringwatch_broker_query_seconds_count{rpc=\"range\"}") >= 1.0);
    let m = scrape(&agent.addr("metrics"));
    assert!(
        metric(&m, "ringwatch_agent_batches_acked_total") >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "ringwatch_agent_connected"), 1.0);
}

/// Polls an async probe.
async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The real agent (not loadgen) through a broker's `kill -9` and restart: its own resend path.
/// Real metrics cannot be recomputed, so this counts by the agent's own summary: every snapshot
/// it collected is stored once.
#[test]
fn a_killed_broker_loses_and_duplicates_nothing_the_agent_had() {
    let dir = tempfile::tempdir().unwrap();
    let mut b1 = broker(dir.path(), &[]);
    let grpc = b1.addr("grpc");
    let admin = b1.addr("admin");
    let url = b1.grpc_url();
    let mut agent = agent(&[&url], &["--host-id", "crash-host"]);
    let metrics_addr = agent.addr("metrics");
    wait_for("3 batches acknowledged", Duration::from_secs(30), || {
        (metric(
            &scrape(&metrics_addr),
            "ringwatch_agent_snapshots_acked_total",
        ) >= 3.0)
            .then_some(())
    });
    b1.kill9();
    // The agent buffers while no broker answers.
    wait_for("the agent to notice", Duration::from_secs(20), || {
        let m = scrape(&metrics_addr);
        (metric(&m, "ringwatch_agent_connected") == 0.0
            && metric(&m, "ringwatch_agent_buffer_snapshots") >= 2.0)
            .then_some(())
    });
    let b2 = broker_on(&grpc, &admin, dir.path(), &[]);
    wait_for(
        "the buffer to drain into the restarted broker",
        Duration::from_secs(40),
        || {
            let m = scrape(&metrics_addr);
            (metric(&m, "ringwatch_agent_connected") == 1.0
                && metric(&m, "ringwatch_agent_buffer_snapshots") == 0.0)
                .then_some(())
        },
    );
    assert!(agent.terminate(), "agent exits cleanly on SIGTERM");
    let summary = agent
        .event("stopped", Duration::from_secs(5))
        .expect("agent prints a stopped summary");
    let collected = summary["snapshots_collected"].as_u64().expect("collected");
    assert_eq!(summary["snapshots_dropped"].as_u64(), Some(0), "{summary}");
    assert_eq!(summary["snapshots_buffered"].as_u64(), Some(0), "{summary}");

    let stored = block_on(range_all(&b2.grpc_url(), "crash-host"));
    let ts: Vec<i64> = stored.iter().map(|s| s.timestamp_ms).collect();
    let distinct: HashSet<i64> = ts.iter().copied().collect();
    assert_eq!(distinct.len(), ts.len(), "no duplicates");
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(
        stored.len() as u64,
        collected,
        "every snapshot the agent collected is stored exactly once"
    );
}

#[test]
fn a_full_agent_buffer_sheds_detail_before_totals_and_counts_drops() {
    // Reserve a port with nothing listening: the broker comes later.
    let dir = tempfile::tempdir().unwrap();
    let grpc = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let url = format!("http://{grpc}");
    let agent = agent(
        &[&url],
        &["--host-id", "full-host", "--buffer-capacity", "3"],
    );
    let metrics_addr = agent.addr("metrics");
    let detail = "ringwatch_agent_dropped_samples_total{priority=\"detail\"";
    let total = "ringwatch_agent_dropped_samples_total{priority=\"total\"";
    // Detail goes first...
    let first = wait_for("detail drops", Duration::from_secs(40), || {
        let m = scrape(&metrics_addr);
        (metric(&m, detail) > 0.0).then_some(m)
    });
    assert_eq!(
        metric(&first, total),
        0.0,
        "no totals dropped while detail remained\n{first}"
    );
    // ...and totals only once no detail is left.
    let later = wait_for("totals drops", Duration::from_secs(60), || {
        let m = scrape(&metrics_addr);
        (metric(&m, total) > 0.0).then_some(m)
    });
    assert!(
        metric(&later, "ringwatch_agent_dropped_snapshots_total") >= 1.0,
        "{later}"
    );
    assert!(metric(&later, detail) >= metric(&first, detail));

    // When a broker appears, what survived is delivered: the buffered snapshots with totals
    // only, then the ones collected after the reconnect with their detail again.
    let b = broker_on(&grpc, "127.0.0.1:0", dir.path(), &[]);
    let has_detail =
        |s: &ringwatch_proto::Snapshot| s.metrics.iter().any(|m| m.name.starts_with("cpu.core."));
    let stored = block_on(async {
        wait_for_async(
            "delivery and fresh snapshots",
            Duration::from_secs(40),
            || async {
                let s = range_all(&b.grpc_url(), "full-host").await;
                (s.len() >= 3 && s.last().is_some_and(has_detail)).then_some(s)
            },
        )
        .await
    });
    assert!(
        stored.iter().all(|s| value(s, "cpu.usage").is_some()),
        "totals kept in every snapshot"
    );
    assert!(
        !has_detail(&stored[0]),
        "the oldest buffered snapshot lost its detail"
    );
    let first_detail = stored.iter().position(has_detail).unwrap();
    assert!(
        stored[first_detail..].iter().all(has_detail),
        "detail returns for good once delivered"
    );
    assert!(stored[..first_detail].iter().all(|s| !has_detail(s)));
}

#[test]
fn a_broker_stops_cleanly_on_sigterm_with_agents_connected_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut b1 = broker(dir.path(), &[]);
    let (grpc, admin) = (b1.addr("grpc"), b1.addr("admin"));
    let agent = agent(&[&b1.grpc_url()], &["--host-id", "term-host"]);
    let metrics_addr = agent.addr("metrics");
    wait_for("2 snapshots acknowledged", Duration::from_secs(30), || {
        (metric(
            &scrape(&metrics_addr),
            "ringwatch_agent_snapshots_acked_total",
        ) >= 2.0)
            .then_some(())
    });
    let started = std::time::Instant::now();
    assert!(
        b1.terminate(),
        "the broker exits 0 on SIGTERM while an agent streams to it"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown does not wait on open streams"
    );
    let acked_before = metric(
        &scrape(&metrics_addr),
        "ringwatch_agent_snapshots_acked_total",
    ) as usize;

    let b2 = broker_on(&grpc, &admin, dir.path(), &[]);
    let stored = block_on(range_all(&b2.grpc_url(), "term-host"));
    assert!(
        stored.len() >= acked_before,
        "all {acked_before} acknowledged snapshots survive the restart: {}",
        stored.len()
    );
    // The agent comes back by itself.
    wait_for("the agent to reconnect", Duration::from_secs(30), || {
        (metric(&scrape(&metrics_addr), "ringwatch_agent_connected") == 1.0).then_some(())
    });
}

#[test]
fn subscribers_receive_each_stored_snapshot_live() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let req = ringwatch_proto::SubscribeRequest {
            host_ids: vec!["live-host".into()],
            metric_names: vec!["cpu.*".into()],
        };
        let mut updates = q.subscribe(req).await.unwrap().into_inner();
        let bad = q
            .subscribe(ringwatch_proto::SubscribeRequest {
                host_ids: vec!["bad host".into()],
                metric_names: vec![],
            })
            .await;
        assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
        let _agent = agent(&[&url], &["--host-id", "live-host"]);
        let mut seen = Vec::new();
        while seen.len() < 3 {
            // The agent collects every second: each update arrives within two intervals.
            let u = tokio::time::timeout(Duration::from_secs(5), updates.message())
                .await
                .expect("an update within 5 s")
                .expect("stream ok")
                .expect("stream open");
            assert_eq!(u.lagged, 0);
            for s in u.snapshots {
                assert_eq!(s.host_id, "live-host");
                assert!(s.metrics.iter().all(|m| m.name.starts_with("cpu.")));
                seen.push(s.timestamp_ms);
            }
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        let stored: Vec<i64> = range_all(&url, "live-host")
            .await
            .iter()
            .map(|s| s.timestamp_ms)
            .collect();
        assert!(
            seen.iter().all(|t| stored.contains(t)),
            "what is pushed is what is stored"
        );
    });
}

/// The harness starts many brokers, each with its own identity and data directory (what the
/// cluster tests stand on): each names itself in `/api/cluster` and keeps its own log.
#[test]
fn brokers_started_together_each_have_their_own_identity_and_data() {
    let base = tempfile::tempdir().unwrap();
    let brokers = brokers(3, base.path(), &[]);
    for (i, b) in brokers.iter().enumerate() {
        let (status, body) = http_get(&b.addr("admin"), "/api/cluster");
        assert_eq!(status, 200, "{body}");
        let cluster: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(cluster["leader"], format!("broker-{i}"), "{cluster}");
        // One active member, itself, in a ring at epoch 1.
        assert_eq!(cluster["ring_epoch"], 1, "{cluster}");
        assert_eq!(cluster["members"][0]["id"], format!("broker-{i}"));
        assert_eq!(cluster["members"][0]["state"], "active");
        assert_eq!(cluster["members"][0]["admin_addr"], b.addr("admin"));
        assert!(base.path().join(format!("broker-{i}")).is_dir());
    }
}
