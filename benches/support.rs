//! Shared by the bench binaries: start release `ringwatch` processes and read their CPU and
//! memory from /proc.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::{AgentMessage, Batch, Register, agent_message, broker_message};
use tokio_stream::wrappers::ReceiverStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringwatch");

pub struct Proc {
    pub child: Child,
    pub ready: serde_json::Value,
}

impl Proc {
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_bin(BIN, args)
    }

    /// `start` with another `ringwatch` binary (an older build, to compare in one run).
    pub fn start_bin(bin: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .env("RINGWATCH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ringwatch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ready line");
        Proc { child, ready }
    }

    pub fn addr(&self, key: &str) -> String {
        self.ready[key].as_str().expect("address").to_string()
    }

    /// User + system CPU seconds so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs_of(self.child.id())
    }

    /// A field of /proc/pid/status in kB (e.g. VmRSS, VmHWM).
    pub fn status_kb(&self, field: &str) -> u64 {
        status_kb_of(self.child.id(), field)
    }
}

/// User + system CPU seconds of process `pid` so far.
pub fn cpu_secs_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/pid/stat: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A field of /proc/pid/status of process `pid` in kB (e.g. VmRSS, VmHWM).
pub fn status_kb_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bench setting from the environment, or its default.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A release viz (auth off) on free loopback ports, fed by the broker at `url`.
pub fn viz(url: &str) -> Proc {
    Proc::start(&[
        "viz",
        "--listen",
        "127.0.0.1:0",
        "--broker",
        url,
        "--no-auth",
        "--quic-listen",
        "127.0.0.1:0",
    ])
}

/// The bench process's own tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// (p50, p99, max) of durations in ms.
pub fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99), at(1.0))
}

/// A realistic snapshot: `n` metrics named like the agent's.
pub fn snapshot(host: &str, ts: i64, n: usize) -> ringwatch_proto::Snapshot {
    ringwatch_proto::Snapshot {
        host_id: host.into(),
        timestamp_ms: ts,
        metrics: (0..n)
            .map(|i| ringwatch_proto::Metric {
                name: format!("cpu.core.{i}.usage"),
                value: (ts % 1000) as f64 / 10.0 + i as f64,
                unit: ringwatch_proto::Unit::Percent as i32,
                window: Some(ringwatch_proto::WindowStats {
                    min: 1.0,
                    max: 90.0,
                    avg: 45.0,
                    samples: 12,
                }),
            })
            .collect(),
    }
}

/// An ingest stream on `client` with `host` registered: (sender, the broker's replies).
pub async fn open_stream(
    client: &mut IngestClient<tonic::transport::Channel>,
    host: &str,
    interval_ms: u32,
    queue: usize,
) -> (
    tokio::sync::mpsc::Sender<AgentMessage>,
    tonic::Streaming<ringwatch_proto::BrokerMessage>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    let replies = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let register = Register {
        host_id: host.into(),
        agent_version: "bench".into(),
        interval_ms,
        ..Default::default()
    };
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Register(register)),
    })
    .await
    .expect("register");
    (tx, replies)
}

/// A batch message.
pub fn batch(seq: u64, snapshots: Vec<ringwatch_proto::Snapshot>) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Batch(Batch { seq, snapshots })),
    }
}

/// One GET written on a keep-alive HTTP/1.1 connection and its response read to the last
/// byte (by Content-Length, or chunked): (status line, body length).
pub async fn keepalive_get(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    request: &str,
) -> (String, usize) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    conn.get_mut()
        .write_all(request.as_bytes())
        .await
        .expect("write");
    let mut status = String::new();
    conn.read_line(&mut status).await.expect("status");
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.expect("header");
        if line == "\r\n" {
            break;
        }
        let l = line.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    if !chunked {
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.expect("body");
        return (status, length);
    }
    let mut total = 0;
    loop {
        let mut size = String::new();
        conn.read_line(&mut size).await.expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
        let mut chunk = vec![0u8; n + 2];
        conn.read_exact(&mut chunk).await.expect("chunk");
        total += n;
        if n == 0 {
            return (status, total);
        }
    }
}

pub const SNAPS_PER_BATCH: usize = 100;
pub const METRICS: usize = 50;
pub const IN_FLIGHT: usize = 8;

/// One agent-like ingest stream for `host` until `until`; returns samples acknowledged.
pub async fn stream(url: String, host: String, until: Instant) -> u64 {
    let mut client = IngestClient::connect(url)
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20);
    let (tx, mut replies) = open_stream(&mut client, &host, 1000, IN_FLIGHT * 2).await;
    // Timestamps march forward from 5 hours ago, 10 ms apart: always new, always accepted.
    let mut ts = now_ms() - 5 * 3600 * 1000;
    let mut seq = 0u64;
    let mut in_flight = 0usize;
    let mut acked_samples = 0u64;
    let next_batch = |seq: u64, ts: &mut i64| {
        let snapshots = (0..SNAPS_PER_BATCH)
            .map(|_| {
                *ts += 10;
                snapshot(&host, *ts, METRICS)
            })
            .collect();
        batch(seq, snapshots)
    };
    loop {
        while in_flight < IN_FLIGHT && Instant::now() < until {
            seq += 1;
            tx.send(next_batch(seq, &mut ts)).await.expect("send");
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

/// `streams` concurrent ingest streams against `url` for `secs`: (samples acknowledged, wall s).
pub fn load(url: &str, streams: usize, secs: u64) -> (u64, f64) {
    let rt = runtime();
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let total = rt.block_on(async {
        let tasks: Vec<_> = (0..streams)
            .map(|i| tokio::spawn(stream(url.to_string(), format!("bench-host-{i}"), until)))
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.expect("task");
        }
        sum
    });
    (total, start.elapsed().as_secs_f64())
}

/// A release broker on free loopback ports with its store in `dir`.
/// A release broker on free ports storing in the Redis at `url`.
pub fn redis_broker(url: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--store",
        "redis",
        "--redis-url",
        url,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args)
}

pub fn broker(dir: &std::path::Path, extra: &[&str]) -> Proc {
    broker_bin(BIN, dir, extra)
}

/// [`broker`] from another `ringwatch` binary (an older build, to compare in one run).
pub fn broker_bin(bin: &str, dir: &std::path::Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    Proc::start_bin(bin, &args)
}

/// Registers `host` and writes `snaps` through the ingest stream, 200 per batch, each acked.
pub async fn ingest(url: &str, host: &str, snaps: &[ringwatch_proto::Snapshot]) {
    let mut client = IngestClient::connect(url.to_string())
        .await
        .expect("connect");
    let (tx, mut acks) = open_stream(&mut client, host, 1000, 4).await;
    for (i, chunk) in snaps.chunks(200).enumerate() {
        tx.send(batch(i as u64, chunk.to_vec()))
            .await
            .expect("send");
        acks.message().await.expect("ack").expect("ack");
    }
}

/// A query client as viz configures it: larger HTTP/2 windows for range reads.
pub async fn query_client(
    url: &str,
) -> ringwatch_proto::query_client::QueryClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("url")
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20))
        .connect()
        .await
        .expect("connect");
    ringwatch_proto::query_client::QueryClient::new(channel).max_decoding_message_size(64 << 20)
}

/// The redis-benchmark ceiling on the Redis at `port`, pipelined 16 deep: first the plain
/// commands, then the exact commands one snapshot of `metrics` metrics needs (HSET of its
/// fields, ZADD, EXPIRE, SET of the packed values), each on random keys. Prints each figure and
/// returns the snapshots per second those commands allow; flushes the server after.
pub fn redis_ceiling(port: u16, metrics: usize) -> f64 {
    let bench = |args: &[String], n: &str| -> f64 {
        let port = port.to_string();
        let out = Command::new("redis-benchmark")
            .args(["-p", &port, "-P", "16", "-q", "-n", n, "-r", "100000000"])
            .args(args)
            .output()
            .expect("redis-benchmark (apt-get install -y redis-tools)");
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
        let line = text
            .lines()
            .rfind(|l| l.contains("requests per second"))
            .unwrap_or("")
            .to_string();
        let before = line.split("requests per second").next().unwrap_or("");
        before
            .rsplit(':')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    for t in ["set", "hset", "zadd"] {
        let rps = bench(&["-t".to_string(), t.to_string()], "2000000");
        println!("redis-benchmark -P 16 -t {t}: {rps:.0} requests/s");
    }
    let snap = snapshot("h", now_ms(), metrics);
    let mut hset: Vec<String> = vec![
        "HSET".into(),
        "monitor:metrics:{h}:__rand_int__".into(),
        "host_id".into(),
        "h".into(),
        "timestamp".into(),
        "1".into(),
    ];
    for m in &snap.metrics {
        hset.push(format!("metric:{}", m.name));
        hset.push(format!("{{\"value\":{},\"unit\":\"percent\"}}", m.value));
    }
    let packed = ringwatch_broker::store::keys::encode_packed(0, &snap.metrics);
    let mix: Vec<(&str, Vec<String>)> = vec![
        ("HSET of a snapshot's fields", hset),
        (
            "ZADD",
            [
                "ZADD",
                "monitor:index:metrics:{h}",
                "__rand_int__",
                "monitor:metrics:{h}:__rand_int__",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "EXPIRE",
            ["EXPIRE", "monitor:metrics:{h}:__rand_int__", "604800"]
                .map(String::from)
                .to_vec(),
        ),
        (
            "SET packed EX",
            vec![
                "SET".into(),
                "monitor:packed:{h}:__rand_int__".into(),
                packed.clone(),
                "EX".into(),
                "604800".into(),
            ],
        ),
    ];
    let mut seconds_per_snapshot = 0.0;
    for (name, args) in &mix {
        let rps = bench(args, "300000");
        println!("redis-benchmark -P 16 {name}: {rps:.0} requests/s");
        seconds_per_snapshot += 1.0 / rps.max(1.0);
    }
    let cap = 1.0 / seconds_per_snapshot;
    println!(
        "  ceiling for the commands one snapshot of {metrics} metrics needs: {cap:.0} snapshots/s = {:.0} samples/s",
        cap * metrics as f64
    );
    let flushed = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "FLUSHALL"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(flushed, "redis-cli FLUSHALL");
    cap
}

/// Pins process `pid` (all its threads, and the ones it starts later) to CPU `cpu` with
/// `taskset`; false if that is not possible here.
pub fn pin(pid: u32, cpu: usize) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `ringwatch loadgen --backfill` of `hosts` × `period` at `interval` with `metrics` agent-like
/// metrics into the broker at `url` (its ledger at `ledger`, `extra` flags after): loadgen's
/// summary.
#[allow(dead_code)]
pub fn backfill(
    url: &str,
    hosts: usize,
    interval: &str,
    period: &str,
    metrics: usize,
    ledger: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["loadgen", "--broker", url, "--hosts", &hosts.to_string()])
        .args(["--interval", interval, "--backfill", period])
        .args(["--metrics", &metrics.to_string(), "--json", "--quiet"])
        .arg("--ledger")
        .arg(ledger)
        .args(extra)
        .env("RINGWATCH_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .expect("loadgen");
    assert!(out.status.success(), "loadgen failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["event"] == "summary")
        .expect("loadgen summary")
}

/// A series' value from a service's Prometheus `/metrics` at `admin` (0 when absent).
#[allow(dead_code)]
pub fn scrape(admin: &str, series: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", &format!("http://{admin}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A Raft cluster of release brokers on loopback (the failover and forwarding benches).
pub mod raft {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::Proc;

    pub fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    }

    /// (status, body) of an HTTP/1.0 request.
    pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    pub fn cluster(admin: &str) -> serde_json::Value {
        let (_, body) = http(admin, "GET", "/api/cluster", "");
        serde_json::from_str(&body).unwrap_or_default()
    }

    pub struct Member {
        pub proc: Proc,
        pub id: String,
        pub grpc: String,
        pub admin: String,
    }

    pub fn start(id: &str, dir: &std::path::Path, bootstrap: bool, extra: &[&str]) -> Member {
        let (grpc, admin) = (free_addr(), free_addr());
        let data = dir.join(id);
        let mut args = vec![
            "broker",
            "--listen",
            &grpc,
            "--admin-listen",
            &admin,
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--node-id",
            id,
            "--raft",
        ];
        if bootstrap {
            args.push("--bootstrap");
        }
        args.extend_from_slice(extra);
        Member {
            proc: Proc::start(&args),
            id: id.into(),
            grpc: format!("http://{grpc}"),
            admin,
        }
    }

    pub fn wait(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out: {what}");
    }

    /// `n` brokers (`extra` flags each) formed into one cluster through the first one's admin
    /// API (bootstrap, join, promote), every one ready.
    pub fn form(dir: &std::path::Path, n: usize, extra: &[&str]) -> Vec<Member> {
        let members: Vec<Member> = (0..n)
            .map(|i| start(&format!("b{i}"), dir, i == 0, extra))
            .collect();
        wait("b0 ready", || {
            http(&members[0].admin, "GET", "/ready", "").0 == 200
        });
        for m in &members[1..] {
            let body = serde_json::json!({"id": m.id, "grpc_addr": m.grpc, "admin_addr": m.admin})
                .to_string();
            let (s, b) = http(&members[0].admin, "POST", "/api/cluster/join", &body);
            assert_eq!(s, 200, "{b}");
            let path = format!("/api/cluster/members/{}/promote", m.id);
            let (s, b) = http(&members[0].admin, "POST", &path, "");
            assert_eq!(s, 200, "{b}");
        }
        for m in &members {
            wait("ready", || http(&m.admin, "GET", "/ready", "").0 == 200);
        }
        members
    }
}
