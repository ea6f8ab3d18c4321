//! The cost of a hostile client to everyone else (issue 9, Bug A): the latency of an unrelated
//! call (`Hosts`, and a fleet host's 5-minute `Range`) while a fleet streams, first quiet, then
//! while clients flood the broker with wide snapshots of made-up metric names.
//!
//! `cargo bench --bench hostile` — env `HOSTILE_SECS` (20 per phase), `HOSTILE_FLEET` (1000
//! hosts at 1 s, loadgen), `HOSTILE_CLIENTS` (50 flooding clients, each its own host id,
//! sending snapshots of 2,000 new names back to back), `HOSTILE_BROKER_BIN` (the broker's
//! binary: an older build, for a before-and-after on the same machine; default this build).
//!
//! The probe behind the issue measured an unrelated `Hosts` call stalled for 8.2 s by one
//! client's 80 snapshots of 4,096 new names (a linear search through every column under the
//! store's one lock, and eviction of every host's history).

#[path = "support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{HostsRequest, Metric, RangeRequest, Snapshot, broker_message};
use support::*;

/// Calls `Hosts` and a 5-minute `Range` of one fleet host every 50 ms until `stop`; returns
/// (hosts latencies, range latencies).
async fn probe(url: String, host: String, stop: Arc<AtomicBool>) -> (Vec<Duration>, Vec<Duration>) {
    let mut q = QueryClient::connect(url).await.expect("connect");
    let (mut hosts, mut ranges) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let n = q
            .hosts(HostsRequest {})
            .await
            .expect("hosts")
            .into_inner()
            .hosts
            .len();
        hosts.push(t.elapsed());
        assert!(n > 0);
        let t = Instant::now();
        let mut s = q
            .range(RangeRequest {
                host_id: host.clone(),
                start_ms: now_ms() - 300_000,
                end_ms: now_ms(),
                metric_names: vec![],
                limit: 0,
                sparse_ok: true,
                step_ms: 0,
            })
            .await
            .expect("range")
            .into_inner();
        while s.message().await.expect("chunk").is_some() {}
        ranges.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (hosts, ranges)
}

/// One flooding client: snapshots of 2,000 names never sent before, back to back.
async fn flood(
    url: String,
    id: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let mut client = IngestClient::connect(url).await.expect("connect");
    let host = format!("hostile-{id}");
    let (tx, mut replies) = open_stream(&mut client, &host, 1000, 4).await;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let snap = Snapshot {
            host_id: host.clone(),
            timestamp_ms: now_ms() + 30_000 + seq as i64,
            metrics: (0..2000)
                .map(|j| Metric {
                    name: format!("made.up.{seq}.{j}"),
                    value: 1.0,
                    unit: 0,
                    window: None,
                })
                .collect(),
        };
        if tx.send(batch(seq, vec![snap])).await.is_err() {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        match replies.message().await {
            Ok(Some(m)) => {
                if let Some(broker_message::Body::Ack(a)) = m.body {
                    refused.fetch_add(a.rejected_timestamps_ms.len() as u64, Ordering::Relaxed);
                }
            }
            _ => break,
        }
    }
}

fn show(what: &str, v: Vec<Duration>) {
    let n = v.len();
    let (p50, p99, max) = percentiles(v);
    println!("  {what}: {n} calls, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
}

fn main() {
    let secs: u64 = env("HOSTILE_SECS", 20);
    let fleet: u32 = env("HOSTILE_FLEET", 1000);
    let clients: usize = env("HOSTILE_CLIENTS", 50);
    let dir = tempfile::tempdir().expect("tempdir");
    let bin: String = env("HOSTILE_BROKER_BIN", BIN.to_string());
    println!("hostile: broker {bin}");
    let broker = broker_bin(&bin, dir.path(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    let ledger = dir.path().join("ledger");
    let mut lg = Command::new(BIN)
        .args([
            "loadgen",
            "--json",
            "--broker",
            &url,
            "--hosts",
            &fleet.to_string(),
        ])
        .args([
            "--interval",
            "1s",
            "--duration",
            &format!("{}s", 2 * secs + 20),
        ])
        .arg("--ledger")
        .arg(&ledger)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadgen");
    std::thread::sleep(Duration::from_secs(10));
    let rt = runtime();
    println!(
        "hostile: {fleet} hosts at 1 s streaming; unrelated calls every 50 ms, {secs} s a phase"
    );

    let stop = Arc::new(AtomicBool::new(false));
    // loadgen's ids: the prefix and the number, zero-padded to the width of the largest.
    let width = (fleet.saturating_sub(1).max(1).ilog10() + 1) as usize;
    let host = format!("loadgen-{:0width$}", 7.min(fleet - 1));
    let quiet = rt.spawn(probe(url.clone(), host.clone(), stop.clone()));
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (hosts, ranges) = rt.block_on(quiet).expect("probe");
    println!("quiet:");
    show("Hosts", hosts);
    show("Range 5 min of a fleet host", ranges);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let cpu0 = broker.cpu_secs();
    let floods: Vec<_> = (0..clients)
        .map(|i| {
            rt.spawn(flood(
                url.clone(),
                i,
                stop.clone(),
                sent.clone(),
                refused.clone(),
            ))
        })
        .collect();
    let probed = rt.spawn(probe(url.clone(), host.clone(), stop.clone()));
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (hosts, ranges) = rt.block_on(probed).expect("probe");
    for f in floods {
        let _ = rt.block_on(f);
    }
    let cpu = broker.cpu_secs() - cpu0;
    println!(
        "under the flood ({clients} clients; {} snapshots of 2,000 new names sent, {} refused past the names bound; broker {:.2} cores, RSS {} MiB):",
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        cpu / secs as f64,
        broker.status_kb("VmRSS") / 1024
    );
    show("Hosts", hosts);
    show("Range 5 min of a fleet host", ranges);
    let _ = lg.wait();
    let out = Command::new(BIN)
        .args(["verify", "--broker", &url, "--ledger"])
        .arg(&ledger)
        .output()
        .expect("verify");
    println!(
        "fleet verify: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );
}
