//! Push latency, broker ingest → WebSocket client, with 1000 clients connected to viz.
//!
//! `cargo bench --bench push` (env `BENCH_CLIENTS`, default 1000; `BENCH_SECS`, default 20;
//! `BENCH_RATE`, snapshots per second, default 5) — a release broker (embedded store, log on
//! disk) and viz. This process opens BENCH_CLIENTS WebSocket connections to viz, each
//! subscribed to one host, then sends that host's snapshots (60 metrics) through the broker's
//! ingest stream at BENCH_RATE. Each snapshot carries its send time (µs) as a metric; every
//! client takes (receive time − send time) for every update it gets. Reports p50/p99/max over
//! all clients and updates, and how many updates clients missed or had down-sampled.

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{Metric, Unit};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const HOST: &str = "push-bench";

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_micros() as f64)
}

/// (latencies in µs, updates received, updates reported skipped).
async fn client(
    http: String,
    ready: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<f64>, u64, u64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("connect /ws");
    let sub = format!(r#"{{"type":"subscribe","hosts":["{HOST}"]}}"#);
    ws.send(Message::Text(sub.into())).await.expect("subscribe");
    let mut lat = Vec::new();
    let (mut got, mut skipped, mut snapshots) = (0u64, 0u64, 0);
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => break,
            m = ws.next() => m,
        };
        let Some(Ok(m)) = m else { break };
        let Message::Text(t) = m else { continue };
        let at = now_us();
        let text = t.as_str();
        // Updates are most of the traffic: read the send stamp without parsing the whole
        // message, so this process's own parsing does not queue up the other clients.
        if text.starts_with(r#"{"type":"update""#) || text.contains(r#""type":"update""#) {
            got += 1;
            if let Some(sent) = sent_stamp(text) {
                lat.push(at - sent);
            }
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(text).expect("JSON");
        match v["type"].as_str() {
            Some("snapshot") => {
                snapshots += 1;
                // The second snapshot answers the subscribe: from here on, updates count.
                if snapshots == 2 {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some("update") => {
                got += 1;
                if let Some(sent) = v["metrics"]["bench.sent_us"]["value"].as_f64() {
                    lat.push(at - sent);
                }
            }
            Some("downsampled") => skipped += v["skipped"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    (lat, got, skipped)
}

/// The value of `bench.sent_us` in an update's JSON text.
fn sent_stamp(text: &str) -> Option<f64> {
    let at = text.find(r#""bench.sent_us":{"#)?;
    let rest = &text[at..];
    let v = rest.find(r#""value":"#)? + 8;
    let end = rest[v..].find([',', '}'])? + v;
    rest[v..end].parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients: usize = env("BENCH_CLIENTS", 1000);
    let secs: u64 = env("BENCH_SECS", 20);
    let rate: u64 = env("BENCH_RATE", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    let viz = viz(&url);
    let http = viz.addr("http");
    let rt = runtime();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await; // viz subscribes to the broker
        let ready = Arc::new(AtomicUsize::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(client(http.clone(), ready.clone(), stop.clone())))
            .collect();
        let t = Instant::now();
        while ready.load(Ordering::Relaxed) < clients {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "only {} of {clients} clients subscribed",
                ready.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let connect_s = t.elapsed().as_secs_f64();
        let viz_cpu0 = viz.cpu_secs();

        // The paced sender: one snapshot per batch, stamped with its send time.
        let mut ingest = IngestClient::connect(url.clone()).await.expect("connect");
        let (tx, mut acks) = open_stream(&mut ingest, HOST, (1000 / rate) as u32, 16).await;
        let acked = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok(Some(_)) = acks.message().await {
                n += 1;
            }
            n
        });
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let sends = secs * rate;
        for seq in 1..=sends {
            tick.tick().await;
            let mut s = snapshot(HOST, now_ms(), 59);
            s.metrics.push(Metric {
                name: "bench.sent_us".into(),
                value: now_us(),
                unit: Unit::Unspecified as i32,
                window: None,
            });
            tx.send(batch(seq, vec![s])).await.expect("send");
        }
        drop(tx);
        let acked = acked.await.expect("acks");
        tokio::time::sleep(Duration::from_secs(2)).await; // the last updates arrive
        let viz_cpu = viz.cpu_secs() - viz_cpu0;
        stop.cancel();
        let mut lat = Vec::new();
        let (mut got, mut skipped) = (0u64, 0u64);
        for t in tasks {
            let (l, g, s) = t.await.expect("client task");
            lat.extend(l);
            got += g;
            skipped += s;
        }
        report(
            clients, sends, acked, connect_s, viz_cpu, secs, lat, got, skipped,
        );
    });
}

#[allow(clippy::too_many_arguments)]
fn report(
    clients: usize,
    sends: u64,
    acked: u64,
    connect_s: f64,
    viz_cpu: f64,
    secs: u64,
    mut lat: Vec<f64>,
    got: u64,
    skipped: u64,
) {
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize] / 1000.0;
    let expected = sends * clients as u64;
    println!(
        "push: {clients} WebSocket clients (connected in {connect_s:.1} s), {sends} snapshots sent ({acked} acked), {got} of {expected} updates received, {skipped} down-sampled"
    );
    println!(
        "push latency broker ingest → WebSocket client: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; viz CPU {:.0} % of a core",
        at(0.5),
        at(0.99),
        at(1.0),
        viz_cpu / secs as f64 * 100.0
    );
}
