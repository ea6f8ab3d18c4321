//! Range read: 1 host × 1 h at 1 s resolution, all metrics (60), from the embedded store.
//!
//! `cargo bench --bench range` — (a) in-process against the store API, (b) through a release
//! broker process over gRPC (decode included). Prints p50/p99/max over QUERIES reads.

#[path = "support.rs"]
mod support;

use std::time::Instant;

use ringwatch_broker::store::{EmbeddedConfig, EmbeddedStore, RangeQuery, Store};
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{AgentMessage, Batch, RangeRequest, Register, agent_message};
use support::*;
use tokio_stream::wrappers::ReceiverStream;

const METRICS: usize = 60;
const POINTS: i64 = 3600;

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
    };
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
    let (p50, p99, max) = percentiles(lat);
    println!(
        "range [store API] 1 host x 1 h x {METRICS} metrics ({} samples): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        POINTS as usize * METRICS
    );

    // (b) Through a broker process over gRPC.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Proc::start(&[
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    let url = format!("http://{}", broker.addr("grpc"));
    rt.block_on(async {
        let mut ingest = IngestClient::connect(url.clone()).await.expect("connect");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut replies = ingest.stream(ReceiverStream::new(rx)).await.expect("stream").into_inner();
        tx.send(AgentMessage { body: Some(agent_message::Body::Register(Register { host_id: "range-host".into(), ..Default::default() })) }).await.expect("send");
        for (i, chunk) in snaps.chunks(200).enumerate() {
            tx.send(AgentMessage { body: Some(agent_message::Body::Batch(Batch { seq: i as u64, snapshots: chunk.to_vec() })) }).await.expect("send");
            replies.message().await.expect("ack").expect("ack");
        }
        // A client as viz configures it: larger HTTP/2 windows for range reads.
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .expect("url")
            .initial_stream_window_size(Some(1 << 20))
            .initial_connection_window_size(Some(4 << 20))
            .connect()
            .await
            .expect("connect");
        let mut client = QueryClient::new(channel).max_decoding_message_size(64 << 20);
        let mut lat = Vec::with_capacity(queries);
        for _ in 0..queries {
            let t = Instant::now();
            let mut stream = client
                .range(RangeRequest { host_id: "range-host".into(), start_ms: start, end_ms: end, metric_names: vec![], limit: 0 })
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
