//! Storage side by side with VictoriaMetrics (Debian `victoria-metrics`), on the same data, in
//! one run.
//!
//! `cargo bench --bench storage`; settings from the environment: STORAGE_HOSTS (200),
//! STORAGE_HOURS (6), STORAGE_METRICS (60), STORAGE_WINDOW (1: with the agent's window
//! statistics, 0: without), STORAGE_QUERIES (200), STORAGE_VM (path of the VictoriaMetrics
//! binary, default `victoria-metrics`).
//!
//! 1. A release broker (embedded store, defaults but a 1 min block window) takes `ringwatch loadgen --backfill` of
//!    HOSTS × HOURS at 5 s with agent-like values: broker CPU per million samples.
//! 2. Every row is in the past, so the head is cut to blocks: once the head is empty and 30 s
//!    have passed (as VictoriaMetrics gets after its flush), bytes on disk per sample (blocks
//!    and what is left of the log) and resident memory.
//! 3. The same rows, read back from the broker, go to VictoriaMetrics through `/api/v1/import`
//!    (JSON lines): its CPU per million samples, and after `/internal/force_flush` and 30 s of
//!    merging, its bytes on disk per sample and resident memory.
//! 4. Reads of 1 h × every metric of one host, QUERIES random (host, hour) pairs: the broker's
//!    `Range` over gRPC (client decode included) and VictoriaMetrics' `/api/v1/export` over a
//!    keep-alive HTTP/1.1 connection (body read to the end), p50 and p99.

#[path = "support.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringwatch_proto::RangeRequest;
use support::*;

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    status_kb_of(pid, "VmRSS") as f64 / 1024.0
}

/// `STORAGE_MODE=retention`: the broker's resident memory after a simulated day and after a
/// simulated week of the same fleet (STORAGE_HOSTS, default here 1000; STORAGE_METRICS;
/// STORAGE_INTERVAL, default 5m: a week at 5 s would take hours to generate here). Each on a
/// fresh broker with the default head budget and a 1 min block window, measured once the head
/// is cut and every finished day's blocks are merged.
fn retention_memory() {
    let hosts: usize = env("STORAGE_HOSTS", 1000);
    let metrics: usize = env("STORAGE_METRICS", 60);
    let interval: String = env("STORAGE_INTERVAL", "5m".to_string());
    let mut rss = Vec::new();
    for days in [1, 7] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("broker");
        let broker = broker(
            &data,
            &["--block-window-mins", "1", "--retention-hours", "200"],
        );
        let url = format!("http://{}", broker.addr("grpc"));
        let admin = broker.addr("admin");
        let summary = backfill(
            &url,
            hosts,
            &interval,
            &format!("{days}d"),
            metrics,
            &dir.path().join("ledger"),
            &[],
        );
        let samples = summary["samples_acked"].as_u64().expect("samples");
        // Cut, then merged (compaction runs every minute): the head empty and the number of
        // blocks the same over two minutes.
        let deadline = Instant::now() + Duration::from_secs(900);
        while Instant::now() < deadline && scrape(&admin, "ringwatch_broker_store_samples") > 0.0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        let mut blocks = scrape(&admin, "ringwatch_broker_store_blocks");
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(125));
            let now = scrape(&admin, "ringwatch_broker_store_blocks");
            if now == blocks {
                break;
            }
            blocks = now;
        }
        let r = rss_mib(broker.child.id());
        println!(
            "retention memory: {hosts} hosts x {metrics} metrics at {interval}, {days} d simulated ({samples} samples): broker RSS {r:.0} MiB, {} blocks, {:.1} MiB on disk",
            scrape(&admin, "ringwatch_broker_store_blocks"),
            dir_bytes(&data) as f64 / 1048576.0
        );
        rss.push(r);
    }
    println!(
        "retention memory: a week vs a day: {:+.1} %",
        (rss[1] / rss[0] - 1.0) * 100.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if env("STORAGE_MODE", String::new()) == "retention" {
        retention_memory();
        return;
    }
    let hosts: usize = env("STORAGE_HOSTS", 200);
    let hours: i64 = env("STORAGE_HOURS", 6);
    let metrics: usize = env("STORAGE_METRICS", 60);
    let window: u8 = env("STORAGE_WINDOW", 1);
    let queries: usize = env("STORAGE_QUERIES", 200);
    let vm_bin: String = env("STORAGE_VM", "victoria-metrics".to_string());
    let rt = runtime();

    // 1. Ingest.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("broker");
    // A one-minute block window, so every row but the newest minute's is cut within a minute
    // of the ingest ending (the default, an hour, would keep up to an hour in the head).
    let broker = broker(&data, &["--block-window-mins", "1"]);
    let url = format!("http://{}", broker.addr("grpc"));
    let admin = broker.addr("admin");
    let ledger = dir.path().join("ledger");
    let cpu0 = broker.cpu_secs();
    let no_window: &[&str] = if window == 0 { &["--no-window"] } else { &[] };
    let summary = backfill(
        &url,
        hosts,
        "5s",
        &format!("{hours}h"),
        metrics,
        &ledger,
        no_window,
    );
    let samples = summary["samples_acked"].as_u64().expect("samples") as f64;
    let broker_cpu = broker.cpu_secs() - cpu0;
    println!(
        "data: {hosts} hosts x {metrics} metrics x {hours} h at 5 s, window statistics {}: {samples} samples",
        if window == 1 { "on" } else { "off" }
    );

    // 2. Cut to blocks, then sizes.
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline
        && (scrape(&admin, "ringwatch_broker_store_samples") > 0.0
            || scrape(&admin, "ringwatch_broker_store_blocks") == 0.0)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    // The same settling time VictoriaMetrics gets after its flush (below): merges of the new
    // blocks run right after the cut, and their buffers are freed once they are done.
    std::thread::sleep(Duration::from_secs(30));
    let broker_disk = dir_bytes(&data) as f64;
    let broker_rss = rss_mib(broker.child.id());

    // 3. The same rows into VictoriaMetrics.
    let vm_dir = dir.path().join("vm");
    let vm_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let mut vm = Command::new(&vm_bin)
        .arg(format!("-storageDataPath={}", vm_dir.display()))
        .arg(format!("-httpListenAddr={vm_addr}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {vm_bin} ({e}): apt-get install -y victoria-metrics")
        });
    let vm_pid = vm.id();
    let health = format!("http://{vm_addr}/health");
    let up = Instant::now();
    while !Command::new("curl")
        .args(["-sf", &health])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "VictoriaMetrics did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let end = now_ms();
    let start = end - (hours + 1) * 3_600_000;
    // loadgen's host ids: the prefix and the index, zero-padded to the digits of the largest.
    let digits = (hosts.saturating_sub(1).max(1)).ilog10() as usize + 1;
    let host_ids: Vec<String> = (0..hosts)
        .map(|i| format!("loadgen-{i:0digits$}"))
        .collect();
    let vm_cpu0 = cpu_secs_of(vm_pid);
    let import = dir.path().join("import.jsonl");
    let mut exported = 0usize;
    rt.block_on(async {
        let mut client = query_client(&url).await;
        for group in host_ids.chunks(10) {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&import).expect("file"));
            for host in group {
                let mut stream = client
                    .range(RangeRequest {
                        host_id: host.clone(),
                        start_ms: start,
                        end_ms: end,
                        metric_names: vec![],
                        limit: 0,
                        sparse_ok: false,
                        step_ms: 0,
                    })
                    .await
                    .expect("range")
                    .into_inner();
                while let Some(c) = stream.message().await.expect("chunk") {
                    for col in &c.columns {
                        let (mut ts, mut vs) = (Vec::new(), Vec::new());
                        for (t, v) in c.timestamps_ms.iter().zip(&col.values) {
                            if !v.is_nan() {
                                ts.push(*t);
                                vs.push(*v);
                            }
                        }
                        exported += vs.len();
                        let line = serde_json::json!({
                            "metric": {"__name__": col.name, "host": host},
                            "values": vs,
                            "timestamps": ts,
                        });
                        writeln!(file, "{line}").expect("write");
                    }
                }
            }
            drop(file);
            let status = Command::new("curl")
                .args(["-sf", "--data-binary"])
                .arg(format!("@{}", import.display()))
                .arg(format!("http://{vm_addr}/api/v1/import"))
                .status()
                .expect("curl");
            assert!(status.success(), "import");
        }
    });
    let vm_cpu = cpu_secs_of(vm_pid) - vm_cpu0;
    assert_eq!(exported as f64, samples, "every sample exported");
    let _ = Command::new("curl")
        .args(["-sf", &format!("http://{vm_addr}/internal/force_flush")])
        .status();
    std::thread::sleep(Duration::from_secs(30));
    let vm_disk = dir_bytes(&vm_dir) as f64;
    let vm_rss = rss_mib(vm_pid);
    println!(
        "ingest CPU per million samples: broker {:.3} s (gRPC ingest), VictoriaMetrics {:.3} s (JSON import)",
        broker_cpu / samples * 1e6,
        vm_cpu / samples * 1e6
    );
    println!(
        "on disk: broker {:.2} bytes a sample ({:.1} MiB), VictoriaMetrics {:.2} ({:.1} MiB); ratio {:.2}",
        broker_disk / samples,
        broker_disk / 1048576.0,
        vm_disk / samples,
        vm_disk / 1048576.0,
        broker_disk / vm_disk
    );
    println!("resident: broker {broker_rss:.0} MiB, VictoriaMetrics {vm_rss:.0} MiB");

    // 4. Reads of one host-hour, from blocks.
    let pairs: Vec<(usize, i64)> = (0..queries)
        .map(|i| {
            let h = (i * 7919) % hosts;
            let hour = 1 + (i as i64 * 31) % (hours - 1).max(1);
            (h, end - (hour + 1) * 3_600_000)
        })
        .collect();
    rt.block_on(async {
        let mut client = query_client(&url).await;
        let mut lat = Vec::with_capacity(queries);
        for &(h, from) in &pairs {
            let t = Instant::now();
            let mut stream = client
                .range(RangeRequest {
                    host_id: host_ids[h].clone(),
                    start_ms: from,
                    end_ms: from + 3_600_000,
                    metric_names: vec![],
                    limit: 0,
                    sparse_ok: true,
                    step_ms: 0,
                })
                .await
                .expect("range")
                .into_inner();
            let mut n = 0;
            while let Some(c) = stream.message().await.expect("chunk") {
                n += c.timestamps_ms.len();
            }
            lat.push(t.elapsed());
            assert!(n >= 700, "an hour at 5 s: {n}");
        }
        let (p50, p99, _) = percentiles(lat);
        println!("read 1 h x {metrics} metrics: broker Range p50 {p50:.2} ms, p99 {p99:.2} ms");
        let mut conn = tokio::io::BufReader::new(
            tokio::net::TcpStream::connect(&vm_addr)
                .await
                .expect("connect"),
        );
        let mut lat = Vec::with_capacity(queries);
        for &(h, from) in &pairs {
            let req = format!(
                "GET /api/v1/export?match[]=%7Bhost%3D%22{}%22%7D&start={:.3}&end={:.3} HTTP/1.1\r\nHost: vm\r\n\r\n",
                host_ids[h],
                from as f64 / 1000.0,
                (from + 3_600_000) as f64 / 1000.0
            );
            let t = Instant::now();
            let (status, n) = keepalive_get(&mut conn, &req).await;
            lat.push(t.elapsed());
            assert!(status.contains(" 200 "), "{status}");
            assert!(n > 1000, "an export body: {n} bytes");
        }
        let (p50, p99, _) = percentiles(lat);
        println!("read 1 h x {metrics} metrics: VictoriaMetrics export p50 {p50:.2} ms, p99 {p99:.2} ms");
    });
    let _ = vm.kill();
    let _ = vm.wait();
}
