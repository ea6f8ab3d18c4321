//! A hostile client next to a real fleet (`ringwatch loadgen`): what it sends past the bounds is
//! refused by name and counted, and it costs no other host anything (verify stays clean).

mod common;

use std::time::Duration;

use common::loadgen::{Loadgen, assert_nothing_lost};
use common::*;
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{
    Ack, AgentMessage, Batch, Metric, Register, Snapshot, agent_message, broker_message,
};

#[test]
fn a_host_flooding_new_metric_names_is_refused_past_its_bound_and_costs_no_one_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(
        dir.path(),
        &[
            "--max-metric-names-per-host",
            "2048",
            "--max-metrics-per-snapshot",
            "2048",
        ],
    );
    let url = broker.grpc_url();
    let admin = broker.addr("admin");
    let lg = Loadgen::start(
        &[&url],
        &["--hosts", "20", "--interval", "200ms", "--duration", "8s"],
    );
    lg.wait_acked(100, Duration::from_secs(60));

    // 80 snapshots of 1,500 names never seen before, a minute in the future (as the probe
    // did): the first fits the bound of 2,048 names, every later one would pass it.
    let base = now_ms() + 60_000;
    let flood: Vec<Vec<Snapshot>> = (0..80u64)
        .map(|i| {
            vec![Snapshot {
                host_id: "hostile".into(),
                timestamp_ms: base + i as i64 * 1000,
                metrics: (0..1500)
                    .map(|j| Metric {
                        name: format!("made.up.{i}.{j}"),
                        value: 1.0,
                        unit: 0,
                        window: None,
                    })
                    .collect(),
            }]
        })
        .collect();
    let acks = block_on(send_batches(&url, "hostile", flood));
    let stored: u32 = acks.iter().map(|a| a.stored).sum();
    let refused: usize = acks.iter().map(|a| a.rejected_timestamps_ms.len()).sum();
    let reasons: Vec<&String> = acks
        .iter()
        .map(|a| &a.reject_reason)
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!((stored, refused), (1, 79));
    assert!(
        reasons[0].contains("hostile") && reasons[0].contains("limit is 2048"),
        "{}",
        reasons[0]
    );

    // The fleet lost nothing, and the broker evicted nothing to make room.
    let summary = lg.finish(Duration::from_secs(60));
    assert_nothing_lost(&lg, &summary, &[&url], 400);
    let m = scrape(&admin);
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_rejected_snapshots_total{reason=\"too_many_metric_names\""
        ),
        79.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_store_evicted_snapshots_total{reason=\"memory_limit\""
        ),
        0.0,
        "{m}"
    );
    // What the hostile host holds is its one snapshot: 1,500 values, not 80 × 1,500 columns.
    let held = block_on(range_all(&url, "hostile"));
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].metrics.len(), 1500);
    assert!(
        metric(&m, "ringwatch_broker_store_samples") < 200_000.0,
        "{m}"
    );
}

/// Registers `host` on one ingest stream and sends `batches`, each answered before the next;
/// returns the Acks (anything else fails the test).
async fn send_batches(url: &str, host: &str, batches: Vec<Vec<Snapshot>>) -> Vec<Ack> {
    let mut client = IngestClient::connect(url.to_string())
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut replies = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let send = |body| AgentMessage { body: Some(body) };
    tx.send(send(agent_message::Body::Register(Register {
        host_id: host.into(),
        agent_version: "test".into(),
        interval_ms: 1000,
        ..Default::default()
    })))
    .await
    .expect("register");
    let mut acks = Vec::new();
    for (i, snapshots) in batches.into_iter().enumerate() {
        tx.send(send(agent_message::Body::Batch(Batch {
            seq: i as u64 + 1,
            snapshots,
        })))
        .await
        .expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.message())
            .await
            .expect("a reply in time")
            .expect("the stream stays open")
            .map(|r| r.body);
        match reply {
            Some(Some(broker_message::Body::Ack(a))) => acks.push(a),
            other => panic!("batch {i}: {other:?}"),
        }
    }
    acks
}

/// Sends `snapshots` for `host`, 100 a batch; returns those stored.
async fn ingest(url: &str, host: &str, snapshots: Vec<Snapshot>) -> u32 {
    let batches = snapshots.chunks(100).map(<[Snapshot]>::to_vec).collect();
    send_batches(url, host, batches)
        .await
        .iter()
        .map(|a| a.stored)
        .sum()
}

/// One Range answer: (chunks, bytes on the wire).
async fn range_once(
    url: &str,
    host: &str,
    start: i64,
) -> (Vec<ringwatch_proto::RangeChunk>, usize) {
    use prost::Message;
    let mut q = ringwatch_proto::query_client::QueryClient::connect(url.to_string())
        .await
        .expect("connect");
    let mut stream = q
        .range(ringwatch_proto::RangeRequest {
            host_id: host.into(),
            start_ms: start,
            end_ms: now_ms(),
            metric_names: vec![],
            limit: 0,
            sparse_ok: true,
            step_ms: 0,
        })
        .await
        .expect("range")
        .into_inner();
    let (mut chunks, mut bytes) = (Vec::new(), 0);
    while let Some(c) = stream.message().await.expect("chunk") {
        bytes += c.encoded_len();
        chunks.push(c);
    }
    (chunks, bytes)
}

#[test]
fn range_answers_grow_with_the_values_held_and_stop_at_the_limit_saying_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(
        dir.path(),
        &[
            "--max-metric-names-per-host",
            "100000",
            "--query-max-cells",
            "100000",
        ],
    );
    let url = broker.grpc_url();
    let start = now_ms() - 3_600_000;
    let metric = |name: String, value: f64| Metric {
        name,
        value,
        unit: 0,
        window: None,
    };
    // A sparse host: every row has cpu and one name of its own (4,001 names, 8,000 values).
    let sparse: Vec<Snapshot> = (0..4000)
        .map(|i| Snapshot {
            host_id: "sparse".into(),
            timestamp_ms: start + i * 500,
            metrics: vec![
                metric("cpu".into(), i as f64),
                metric(format!("only.{i}"), i as f64 + 0.5),
            ],
        })
        .collect();
    // A dense host: 2,000 rows × 60 metrics = 120,000 values, more than one answer carries.
    let dense: Vec<Snapshot> = (0..2000)
        .map(|i| Snapshot {
            host_id: "dense".into(),
            timestamp_ms: start + i * 500,
            metrics: (0..60)
                .map(|j| metric(format!("m.{j}"), (i * 60 + j) as f64))
                .collect(),
        })
        .collect();
    block_on(async {
        assert_eq!(ingest(&url, "sparse", sparse.clone()).await, 4000);
        assert_eq!(ingest(&url, "dense", dense.clone()).await, 2000);

        // Padded to rows × columns this would be 4,000 × 4,001 × 8 bytes = 128 MB.
        let (chunks, bytes) = range_once(&url, "sparse", start).await;
        assert!(bytes < 400_000, "{bytes} bytes for 8,000 values");
        assert!(!chunks.iter().any(|c| c.truncated));
        let rows: Vec<Snapshot> = chunks
            .iter()
            .flat_map(|c| c.to_snapshots("sparse"))
            .collect();
        assert_eq!(rows, sparse, "read back exactly, sparse columns and all");

        // The dense host's answer stops at the limit, says so, and the rest follows from there.
        let (first, _) = range_once(&url, "dense", start).await;
        assert!(
            first.last().is_some_and(|c| c.truncated),
            "the cut is reported"
        );
        let cells: usize = first
            .iter()
            .map(|c| c.cells() + c.timestamps_ms.len())
            .sum();
        assert!(cells <= 100_000, "{cells} values in one answer");
        let mut got: Vec<Snapshot> = first.iter().flat_map(|c| c.to_snapshots("dense")).collect();
        assert!(got.len() < 2000);
        let after = got.last().expect("rows").timestamp_ms + 1;
        let (rest, _) = range_once(&url, "dense", after).await;
        assert!(!rest.iter().any(|c| c.truncated));
        got.extend(rest.iter().flat_map(|c| c.to_snapshots("dense")));
        assert_eq!(got, dense);
    });

    // Through viz: its JSON pads every series to every timestamp, so it holds an answer to
    // --max-cells values (timestamps × series) and says when it cut one. Three at once, as
    // in the probe (which saw 80 MB an answer and viz grow from 0.5 to 1.3 GB).
    let viz = viz(&[&url], &["--no-auth", "--max-cells", "1000000"]);
    let http = viz.addr("http");
    let path = format!(
        "/api/metrics?host_id=sparse&start_time={}",
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(start as u64 - 1000)
        )
    );
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..3).map(|_| s.spawn(|| http_get(&http, &path))).collect();
        asks.into_iter()
            .map(|a| a.join().expect("request"))
            .collect()
    });
    for (status, body) in &answers {
        assert_eq!(*status, 200);
        assert!(body.len() < 12_000_000, "{} bytes", body.len());
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["truncated"], true);
        let series = v["series"].as_array().expect("series").len();
        let rows = v["timestamps"].as_array().expect("timestamps").len();
        assert!(series * rows <= 1_000_000 && rows > 0, "{series} × {rows}");
    }
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", viz.pid()))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    assert!(
        rss_kb < 400_000,
        "viz peaked at {rss_kb} kB over three answers"
    );
}
