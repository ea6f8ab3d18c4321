//! Ingest at the shape users have: many hosts, each its own stream and connection, one small
//! batch per interval, driven by `ringwatch loadgen` (a separate release process) against one
//! release broker.
//!
//! `cargo bench --bench fleet` — env `FLEET_HOSTS` (10000), `FLEET_SECS` (40 per load phase),
//! `FLEET_METRICS` (60), `FLEET_STORE` (`embedded`, `redis`, `both`, or `tls`; default
//! `embedded`), `FLEET_REDIS_LAYOUT` (the broker's `--redis-layout`, default `compact`).
//!
//! `FLEET_STORE=before` with `FLEET_BROKER_BIN=<an older ringwatch>` compares the two builds the
//! same way (the embedded store, plaintext).
//!
//! `FLEET_STORE=tls` compares, in one run, the embedded broker in plaintext with no credentials
//! against the same broker with mutual TLS and credentials (loadgen presenting a client
//! certificate and an ingest credential): the 1 s phase and the capacity phase, alternately,
//! `FLEET_TLS_ROUNDS` times (3), and prints broker CPU per acknowledged sample and capacity as
//! ratios, each round's and the median. 10,000 TLS handshakes at once take the broker's core
//! for seconds and some clients time out and retry: give `FLEET_WARMUP_SECS` (e.g. 60, with
//! `FLEET_SECS` 100) to measure after that has settled.
//!
//! On a machine with two or more cores the broker is pinned to CPU 0 and loadgen to CPU 1
//! (`FLEET_PIN=0` turns that off), so the broker's capacity is one core's worth and the generator
//! does not take the broker's CPU. Phases, each on a fresh broker:
//! 1. **connected and idle**: every host connects and registers, no data (1 h interval): the
//!    broker's RSS per connected host.
//! 2. **1 s interval**: one snapshot per host per second. Measured in a window after the ramp:
//!    acknowledged samples/s, broker CPU → samples/s per broker core, broker RSS, acknowledgement
//!    latency (p50/p99 of each second's figures in the window, and loadgen's whole run).
//! 3. **capacity**: the same hosts at a 100 ms interval, more than the broker can take, still
//!    one snapshot per batch (`--max-batch 1`: hosts that fall behind do not batch up): what it
//!    sustains is its capacity at this shape on this machine (100 %), with the latency there.
//! 4. **50 %**: the interval that offers half of (3).
//!
//! Then `ringwatch verify` on phase 2's ledger (hosts × snapshots checked per second), and
//! loadgen's own cost (snapshots per loadgen CPU second). With Redis, the redis-benchmark ceiling
//! for the same commands is measured first, in the same run.

#[path = "../tests/common/redis_servers.rs"]
#[allow(dead_code)]
mod redis_servers;
#[path = "support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_servers::RedisServer;
use support::*;

struct Store {
    label: &'static str,
    redis: Option<RedisServer>,
    /// Pin the broker to CPU 0 and loadgen to CPU 1.
    pin: bool,
    /// Mutual TLS and credentials on.
    secure: Option<Secure>,
    /// Another `ringwatch` binary for the broker (an older build, to compare in one run).
    bin: Option<String>,
}

/// A CA with broker and client certificates, an auth secret and an ingest credential.
struct Secure {
    _dir: tempfile::TempDir,
    ca: ringwatch_net::tls::LocalCa,
    secret_file: std::path::PathBuf,
    token_file: std::path::PathBuf,
}

impl Secure {
    fn new() -> Secure {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ringwatch_net::tls::write_local_ca(dir.path(), &["127.0.0.1".into()])
            .expect("certificates");
        let secret = "bench-secret-of-at-least-thirty-two-bytes".to_string();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, &secret).expect("secret");
        let token = ringwatch_net::token::mint(
            &secret,
            "bench",
            &[
                ringwatch_net::token::Role::Ingest,
                ringwatch_net::token::Role::Query,
            ],
            Duration::from_secs(86_400),
        )
        .expect("mint");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).expect("token");
        Secure {
            _dir: dir,
            ca,
            secret_file,
            token_file,
        }
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

impl Store {
    fn url(&self, broker: &Proc) -> String {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", broker.addr("grpc"))
    }

    /// What a client of this broker adds to its flags.
    fn client_args(&self) -> Vec<String> {
        match &self.secure {
            None => Vec::new(),
            Some(s) => vec![
                "--broker-tls-ca".into(),
                path(&s.ca.ca),
                "--broker-tls-cert".into(),
                path(&s.ca.client_cert),
                "--broker-tls-key".into(),
                path(&s.ca.client_key),
                "--broker-token-file".into(),
                path(&s.token_file),
            ],
        }
    }

    fn broker(&self, dir: &std::path::Path) -> Proc {
        let mut args = vec![
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--max-streams",
            "200000",
            "--memory-limit-samples",
            "1000000000",
        ];
        let url;
        let layout: String = env("FLEET_REDIS_LAYOUT", "compact".to_string());
        match &self.redis {
            None => args.extend(["--data-dir", dir.to_str().expect("utf-8 path")]),
            Some(r) => {
                url = r.url();
                args.extend([
                    "--store",
                    "redis",
                    "--redis-url",
                    &url,
                    "--redis-buffer-snapshots",
                    "1000000",
                    "--redis-layout",
                    &layout,
                ]);
                let flushed = Command::new("redis-cli")
                    .args(["-p", &r.port.to_string(), "FLUSHALL"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                assert!(flushed, "FLUSHALL");
            }
        }
        let secure_args: Vec<String> = match &self.secure {
            None => Vec::new(),
            Some(s) => vec![
                "--tls-cert".into(),
                path(&s.ca.server_cert),
                "--tls-key".into(),
                path(&s.ca.server_key),
                "--tls-client-ca".into(),
                path(&s.ca.ca),
                "--auth-secret-file".into(),
                path(&s.secret_file),
            ],
        };
        args.extend(secure_args.iter().map(String::as_str));
        let broker = Proc::start_bin(self.bin.as_deref().unwrap_or(BIN), &args);
        if self.pin {
            assert!(pin(broker.child.id(), 0), "taskset");
        }
        broker
    }
}

/// A loadgen process (release, JSON lines) whose lines are read on a thread.
struct Loadgen {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Loadgen {
    fn start(url: &str, ledger: &std::path::Path, args: &[String], pinned: bool) -> Loadgen {
        let mut child = Command::new(BIN)
            .args(["loadgen", "--json", "--broker", url, "--ledger"])
            .arg(ledger)
            .args(args)
            .env("RINGWATCH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn loadgen");
        if pinned {
            assert!(pin(child.id(), 1), "taskset");
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Loadgen { child, lines }
    }

    /// Every line until `deadline` (or until the summary).
    fn lines_until(&self, deadline: Instant) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    let end = v["event"] == "summary";
                    out.push(v);
                    if end {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        out
    }

    fn summary(&self) -> serde_json::Value {
        self.lines_until(Instant::now() + Duration::from_secs(600))
            .into_iter()
            .rfind(|v| v["event"] == "summary")
            .expect("loadgen summary")
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What one load phase measured.
struct Phase {
    offered_per_s: f64,
    acked_per_s: f64,
    broker_cores: f64,
    rss_mib: f64,
    p50_ms: f64,
    p99_ms: f64,
    run_p99_ms: f64,
    summary: serde_json::Value,
    /// `ringwatch verify` on the phase's ledger, when asked for.
    verify: Option<serde_json::Value>,
}

/// Runs `hosts` at `interval_ms` for `secs` on a fresh broker; measures the window after a
/// warm-up of 2 intervals + 8 s, up to 4 s before the end.
fn phase(
    store: &Store,
    hosts: u32,
    metrics: usize,
    interval_ms: u64,
    secs: u64,
    ledger: &std::path::Path,
    verify: bool,
) -> Phase {
    let warm = (Duration::from_millis(2 * interval_ms) + Duration::from_secs(8))
        .max(Duration::from_secs(env("FLEET_WARMUP_SECS", 0)));
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = store.broker(dir.path());
    let url = store.url(&broker);
    let mut args: Vec<String> = [
        "--hosts".to_string(),
        hosts.to_string(),
        "--interval".into(),
        format!("{interval_ms}ms"),
        "--metrics".into(),
        metrics.to_string(),
        "--duration".into(),
        format!("{secs}s"),
        "--drain-timeout".into(),
        "20s".into(),
        // The shape stays one snapshot per batch even when hosts fall behind.
        "--max-batch".into(),
        "1".into(),
        "--warmup".into(),
        format!("{}ms", warm.as_millis()),
    ]
    .to_vec();
    args.extend(store.client_args());
    let lg = Loadgen::start(&url, ledger, &args, store.pin);
    let start = Instant::now();
    let _ = lg.lines_until(start + warm);
    let (cpu0, t0) = (broker.cpu_secs(), Instant::now());
    let window =
        lg.lines_until(start + Duration::from_secs(secs).saturating_sub(Duration::from_secs(4)));
    let (cpu1, t1) = (broker.cpu_secs(), Instant::now());
    let rss_mib = broker.status_kb("VmRSS") as f64 / 1024.0;
    let progress: Vec<&serde_json::Value> =
        window.iter().filter(|v| v["event"] == "progress").collect();
    let acked = match (progress.first(), progress.last()) {
        (Some(a), Some(b)) => f(b, "acked") - f(a, "acked"),
        _ => 0.0,
    };
    let span = match (progress.first(), progress.last()) {
        (Some(a), Some(b)) => f(b, "elapsed_s") - f(a, "elapsed_s"),
        _ => 0.0,
    };
    let summary = lg.summary();
    let verify = verify.then(|| {
        let out = Command::new(BIN)
            .args([
                "verify",
                "--json",
                "--concurrency",
                "32",
                "--broker",
                &url,
                "--ledger",
            ])
            .arg(ledger)
            .args(store.client_args())
            .output()
            .expect("run verify");
        serde_json::from_slice(&out.stdout).expect("verify report")
    });
    Phase {
        offered_per_s: f64::from(hosts) * 1000.0 / interval_ms as f64,
        acked_per_s: acked / span.max(1e-3),
        broker_cores: (cpu1 - cpu0) / t1.duration_since(t0).as_secs_f64(),
        rss_mib,
        p50_ms: median(progress.iter().map(|p| f(p, "ack_p50_ms")).collect()),
        p99_ms: median(progress.iter().map(|p| f(p, "ack_p99_ms")).collect()),
        run_p99_ms: f(&summary["ack_latency"], "p99_ms"),
        summary,
        verify,
    }
}

fn report(label: &str, what: &str, p: &Phase, metrics: usize, ceiling: Option<f64>) {
    let samples = p.acked_per_s * metrics as f64;
    if let Some(cap) = ceiling {
        println!(
            "fleet [{label}] {what}: {:.0} % of the redis-benchmark ceiling",
            p.acked_per_s / cap * 100.0
        );
    }
    println!(
        "fleet [{label}] {what}: offered {:.0} snapshots/s, acknowledged {:.0}/s = {:.0} samples/s; broker {:.2} cores = {:.0} samples/s per broker core; broker RSS {:.0} MiB; ack latency after the warm-up p50 {:.1} ms p99 {:.1} ms (per second, median: p50 {:.1} ms p99 {:.1} ms); loadgen {:.0} snapshots per CPU second",
        p.offered_per_s,
        p.acked_per_s,
        samples,
        p.broker_cores,
        samples / p.broker_cores.max(1e-3),
        p.rss_mib,
        f(&p.summary["ack_latency"], "p50_ms"),
        p.run_p99_ms,
        p.p50_ms,
        p.p99_ms,
        f(&p.summary, "snapshots_per_loadgen_cpu_s"),
    );
}

fn run(store: Store, hosts: u32, metrics: usize, secs: u64, ceiling: Option<f64>) {
    let label = store.label;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");

    // 1. Connected and idle: RSS per connected host.
    {
        let data = tempfile::tempdir().expect("tempdir");
        let broker = store.broker(data.path());
        let url = store.url(&broker);
        std::thread::sleep(Duration::from_secs(1));
        let rss0 = broker.status_kb("VmRSS");
        let lg = Loadgen::start(
            &url,
            &ledger,
            &[
                "--hosts".into(),
                hosts.to_string(),
                "--interval".into(),
                "1h".into(),
                "--snapshots".into(),
                "1".into(),
            ]
            .into_iter()
            .chain(store.client_args())
            .collect::<Vec<_>>(),
            store.pin,
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut connected = 0.0;
        while Instant::now() < deadline && connected < f64::from(hosts) {
            if let Some(p) = lg
                .lines_until(Instant::now() + Duration::from_secs(2))
                .into_iter()
                .rfind(|v| v["event"] == "progress")
            {
                connected = f(&p, "connected");
            }
        }
        std::thread::sleep(Duration::from_secs(3));
        let rss1 = broker.status_kb("VmRSS");
        println!(
            "fleet [{label}] idle: {connected:.0} hosts connected and registered: broker RSS {:.1} → {:.1} MiB = {:.1} KB per connected host",
            rss0 as f64 / 1024.0,
            rss1 as f64 / 1024.0,
            (rss1.saturating_sub(rss0)) as f64 * 1.024 / f64::from(hosts)
        );
    }

    // 2. The realistic shape: one snapshot per host per second; then verify its ledger.
    let one = phase(&store, hosts, metrics, 1000, secs, &ledger, true);
    report(label, "1 s interval", &one, metrics, ceiling);
    if let Some(v) = &one.verify {
        println!(
            "fleet [{label}] verify: {} hosts, {} snapshots checked in {} s = {} snapshots/s; ok={} lost={} duplicates={} wrong={}",
            v["hosts"],
            v["stored"],
            v["seconds"],
            v["snapshots_per_s"],
            v["ok"],
            v["lost"],
            v["duplicates"],
            v["wrong_values"]
        );
    }

    // 3. Capacity: more than the broker can take.
    let cap = phase(&store, hosts, metrics, 100, secs, &ledger, false);
    report(
        label,
        "capacity (100 ms interval offered)",
        &cap,
        metrics,
        ceiling,
    );

    // 4. Half of capacity.
    let half_interval = ((f64::from(hosts) * 1000.0 / (cap.acked_per_s / 2.0)).round() as u64)
        .clamp(100, 3_600_000);
    let half = phase(&store, hosts, metrics, half_interval, secs, &ledger, false);
    report(
        label,
        &format!("50 % of capacity ({half_interval} ms interval)"),
        &half,
        metrics,
        ceiling,
    );
}

/// Plaintext against mutual TLS + credentials, alternately, on the embedded store.
fn tls_compare(hosts: u32, metrics: usize, secs: u64, pin: bool) {
    let plain = Store {
        label: "embedded, plaintext, no credentials",
        redis: None,
        pin,
        secure: None,
        bin: None,
    };
    let secure = Store {
        label: "embedded, mutual TLS + credentials",
        redis: None,
        pin,
        secure: Some(Secure::new()),
        bin: None,
    };
    compare(
        "tls",
        "TLS + credentials vs plaintext",
        plain,
        secure,
        hosts,
        metrics,
        secs,
    );
}

/// Runs the 1 s phase and the capacity phase on `base` and `other` alternately,
/// `FLEET_TLS_ROUNDS` times (3), and prints `other`'s broker CPU per acknowledged sample and
/// acknowledged rate as ratios to `base`'s: each round's and the median.
fn compare(
    tag: &str,
    what_vs: &str,
    base: Store,
    other: Store,
    hosts: u32,
    metrics: usize,
    secs: u64,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger");
    let (plain, secure) = (base, other);
    let rounds: usize = env("FLEET_TLS_ROUNDS", 3);
    for (interval, what) in [
        (1000, "1 s interval"),
        (100, "capacity (100 ms interval offered)"),
    ] {
        let per_sample = |x: &Phase| x.broker_cores / (x.acked_per_s * metrics as f64).max(1e-9);
        let (mut cpu, mut rate) = (Vec::new(), Vec::new());
        // Alternating, so drift in the machine's speed falls on both sides alike.
        for _ in 0..rounds {
            let p = phase(&plain, hosts, metrics, interval, secs, &ledger, false);
            report(plain.label, what, &p, metrics, None);
            let s = phase(&secure, hosts, metrics, interval, secs, &ledger, false);
            report(secure.label, what, &s, metrics, None);
            cpu.push(per_sample(&s) / per_sample(&p));
            rate.push(s.acked_per_s / p.acked_per_s.max(1e-9));
        }
        let show = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{:+.1} %", (r - 1.0) * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "fleet [{tag}] {what}: broker CPU per acknowledged sample, {what_vs}: median {:+.1} % (rounds: {}); acknowledged/s: median {:+.1} % (rounds: {})",
            (median(cpu.clone()) - 1.0) * 100.0,
            show(&cpu),
            (median(rate.clone()) - 1.0) * 100.0,
            show(&rate),
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts: u32 = env("FLEET_HOSTS", 10_000);
    let secs: u64 = env("FLEET_SECS", 40);
    let metrics: usize = env("FLEET_METRICS", 60);
    let which: String = env("FLEET_STORE", "embedded".to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = env("FLEET_PIN", 1u8) == 1 && cores >= 2;
    println!(
        "fleet: {hosts} hosts, {metrics} metrics, {secs} s per phase; {}",
        if pin {
            "broker pinned to CPU 0, loadgen to CPU 1"
        } else {
            "not pinned"
        }
    );
    if which == "embedded" || which == "both" {
        run(
            Store {
                label: "embedded, log on disk",
                redis: None,
                pin,
                secure: None,
                bin: None,
            },
            hosts,
            metrics,
            secs,
            None,
        );
    }
    if which == "tls" {
        tls_compare(hosts, metrics, secs, pin);
    }
    if which == "before" {
        let old: String = env("FLEET_BROKER_BIN", String::new());
        assert!(
            !old.is_empty(),
            "FLEET_STORE=before needs FLEET_BROKER_BIN (an older build)"
        );
        let before = Store {
            label: "embedded, the older build",
            redis: None,
            pin,
            secure: None,
            bin: Some(old),
        };
        let now = Store {
            label: "embedded, this build",
            redis: None,
            pin,
            secure: None,
            bin: None,
        };
        compare(
            "before",
            "this build vs the older",
            before,
            now,
            hosts,
            metrics,
            secs,
        );
    }
    if which == "redis" || which == "both" {
        let redis = RedisServer::start();
        let cap = redis_ceiling(redis.port, metrics);
        let layout: String = env("FLEET_REDIS_LAYOUT", "compact".to_string());
        println!(
            "fleet [redis] redis-benchmark ceiling (the seed layout's commands): {cap:.0} snapshots/s; layout {layout}"
        );
        run(
            Store {
                label: "redis",
                redis: Some(redis),
                pin,
                secure: None,
                bin: None,
            },
            hosts,
            metrics,
            secs,
            Some(cap),
        );
    }
}
