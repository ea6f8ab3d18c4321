//! viz dashboard endpoints under load from a second process: p99 latency at 1000 requests/s.
//!
//! `cargo bench --bench viz` (env `BENCH_SECS`, default 10; `BENCH_HOSTS`, default 100) —
//! a release broker and viz; BENCH_HOSTS hosts each send a minute of snapshots (60 metrics);
//! then this process sends 1000 requests/s (8 keep-alive connections, 125/s each, paced) to a
//! dashboard endpoint for BENCH_SECS and reports p50/p99/max per endpoint.

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

/// One keep-alive connection sending `per_sec` GETs of `path` for `secs`; latencies.
async fn client(addr: String, path: &'static str, per_sec: u64, secs: u64) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut conn = BufReader::new(stream);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_sec));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut lat = Vec::new();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    while Instant::now() < until {
        tick.tick().await;
        let t = Instant::now();
        keepalive_get(&mut conn, &request).await;
        lat.push(t.elapsed());
    }
    lat
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = env("BENCH_SECS", 10);
    let hosts: usize = env("BENCH_HOSTS", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path(), &[]);
    let url = format!("http://{}", broker.addr("grpc"));
    let viz = viz(&url);
    let http = viz.addr("http");
    let rt = runtime();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await; // viz subscribes
        for h in 0..hosts {
            let host = format!("bench-host-{h:04}");
            let now = now_ms();
            let snapshots: Vec<_> = (0..60).map(|i| snapshot(&host, now - (60 - i) * 1000, 60)).collect();
            ingest(&url, &host, &snapshots).await;
        }
        // Wait until viz shows every host.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let body = reqwest_like(&http, "/api/dashboard/summary").await;
            if body.contains(&format!("\"hosts\":{hosts}")) {
                break;
            }
            assert!(Instant::now() < deadline, "viz did not show {hosts} hosts: {body}");
        }
        for path in ["/api/dashboard/summary", "/api/dashboard/topk?metric=cpu.core.1.usage&k=10", "/api/dashboard"] {
            let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(client(http.clone(), path, 125, secs))).collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            let n = all.len();
            let (p50, p99, max) = percentiles(all);
            println!("viz {path} with {hosts} hosts: {n} requests in {secs} s ({:.0}/s): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms", n as f64 / secs as f64);
        }
    });
}

/// One GET on a fresh connection; the body.
async fn reqwest_like(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
