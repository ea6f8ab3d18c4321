//! A hostile client next to a real fleet (`ringwatch loadgen`): what it sends past the bounds is
//! refused by name and counted, and it costs no other host anything (verify stays clean).

mod common;

use std::time::Duration;

use common::loadgen::{Loadgen, assert_nothing_lost};
use common::*;
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{
    AgentMessage, Batch, Metric, Register, Snapshot, agent_message, broker_message,
};

#[test]
fn a_host_flooding_new_metric_names_is_refused_past_its_bound_and_costs_no_one_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &["--max-metric-names-per-host", "2048"]);
    let url = broker.grpc_url();
    let admin = broker.addr("admin");
    let lg = Loadgen::start(
        &[&url],
        &["--hosts", "20", "--interval", "200ms", "--duration", "8s"],
    );
    lg.wait_acked(100, Duration::from_secs(60));

    // 80 snapshots of 1,500 names never seen before, a minute in the future (as the probe
    // did): the first fits the bound of 2,048 names, every later one would pass it.
    let (stored, refused, reasons) = block_on(async {
        let mut ingest = IngestClient::connect(url.clone()).await.expect("connect");
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let mut replies = ingest
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        let send = |body| AgentMessage { body: Some(body) };
        tx.send(send(agent_message::Body::Register(Register {
            host_id: "hostile".into(),
            agent_version: "probe".into(),
            interval_ms: 1000,
            ..Default::default()
        })))
        .await
        .expect("register");
        let base = now_ms() + 60_000;
        let (mut stored, mut refused, mut reasons) = (0, 0, Vec::new());
        for i in 0..80u64 {
            let snapshot = Snapshot {
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
            };
            tx.send(send(agent_message::Body::Batch(Batch {
                seq: i + 1,
                snapshots: vec![snapshot],
            })))
            .await
            .expect("send");
            let reply = tokio::time::timeout(Duration::from_secs(30), replies.message())
                .await
                .expect("a reply in time")
                .expect("the stream stays open")
                .expect("a reply");
            match reply.body {
                Some(broker_message::Body::Ack(a)) => {
                    stored += a.stored;
                    refused += a.rejected_timestamps_ms.len();
                    if !a.reject_reason.is_empty() {
                        reasons.push(a.reject_reason);
                    }
                }
                other => panic!("batch {i}: {other:?}"),
            }
        }
        (stored, refused, reasons)
    });
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
