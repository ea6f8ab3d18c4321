//! Broker ingest through the real gRPC path into the embedded store.
//!
//! `cargo bench --bench ingest` — starts a release broker process, opens STREAMS ingest streams
//! from this process (each a host sending batches of 100 snapshots × 50 metrics with up to 8
//! batches in flight) for SECS seconds, and reports acknowledged samples per second of wall
//! time and per second of the broker process's CPU time (= per core). Runs twice: with the
//! write-ahead log on disk, and `--ephemeral` (memory only).

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{AgentMessage, Batch, Register, agent_message, broker_message};
use support::*;
use tokio_stream::wrappers::ReceiverStream;

const SNAPS_PER_BATCH: usize = 100;
const METRICS: usize = 50;
const IN_FLIGHT: usize = 8;

async fn stream(url: String, host: String, until: Instant) -> u64 {
    let mut client = IngestClient::connect(url)
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT * 2);
    let mut replies = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let register = Register {
        host_id: host.clone(),
        agent_version: "bench".into(),
        interval_ms: 1000,
        ..Default::default()
    };
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Register(register)),
    })
    .await
    .expect("send");
    // Timestamps march forward from 5 hours ago, 10 ms apart: always new, always accepted.
    let mut ts = now_ms() - 5 * 3600 * 1000;
    let mut seq = 0u64;
    let mut in_flight = 0usize;
    let mut acked_samples = 0u64;
    let batch = |seq: u64, ts: &mut i64| {
        let snapshots = (0..SNAPS_PER_BATCH)
            .map(|_| {
                *ts += 10;
                snapshot(&host, *ts, METRICS)
            })
            .collect();
        AgentMessage {
            body: Some(agent_message::Body::Batch(Batch { seq, snapshots })),
        }
    };
    loop {
        while in_flight < IN_FLIGHT && Instant::now() < until {
            seq += 1;
            tx.send(batch(seq, &mut ts)).await.expect("send");
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        match replies.message().await.expect("reply") {
            Some(m) => match m.body {
                Some(broker_message::Body::Ack(a)) => {
                    in_flight -= 1;
                    acked_samples += a.stored as u64 * METRICS as u64;
                }
                other => panic!("unexpected reply {other:?}"),
            },
            None => break,
        }
    }
    acked_samples
}

fn run(label: &str, extra: &[&str], streams: usize, secs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--memory-limit-samples",
        "400000000",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let broker = Proc::start(&args);
    let url = format!("http://{}", broker.addr("grpc"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cpu0 = broker.cpu_secs();
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let total: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..streams)
            .map(|i| tokio::spawn(stream(url.clone(), format!("bench-host-{i}"), until)))
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.expect("task");
        }
        sum
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = broker.cpu_secs() - cpu0;
    println!(
        "ingest [{label}] streams={streams} batch={SNAPS_PER_BATCH}x{METRICS}: {total} samples in {wall:.1} s = {:.0} samples/s wall; broker CPU {cpu:.1} s = {:.0} samples/s per broker core",
        total as f64 / wall,
        total as f64 / cpu.max(0.001)
    );
}

fn main() {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let streams = std::env::var("BENCH_STREAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    run("log on disk", &[], streams, secs);
    run("ephemeral", &["--ephemeral"], streams, secs);
}
