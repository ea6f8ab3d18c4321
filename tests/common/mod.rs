//! Test harness: real `ringwatch` processes on free loopback ports, read back over real gRPC
//! and HTTP. Each process announces itself with one JSON line on stdout; its stderr (logs) goes
//! to a file that is printed if a test fails while the process is alive.
#![allow(dead_code)]

pub mod loadgen;
pub mod proxy;
pub mod redis_servers;
pub mod secure;

pub use redis_servers::signal;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{RangeRequest, Snapshot};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringwatch");

pub struct Proc {
    pub child: Child,
    /// The ready announcement.
    pub ready: serde_json::Value,
    lines: mpsc::Receiver<serde_json::Value>,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
    /// The arguments it was started with (for `restart`).
    args: Vec<String>,
    /// The logs of earlier runs of this process (before `restart`).
    earlier_logs: String,
    /// Lines read past by `latest_event` that another event may still want.
    stash: std::cell::RefCell<std::collections::VecDeque<serde_json::Value>>,
}

impl Proc {
    /// Starts `ringwatch ARGS…` and waits (up to 60 s) for its ready line.
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_env(args, &[])
    }

    /// [`Proc::start`] with environment variables set for it (not kept by `restart`).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let logdir = tempfile::tempdir().expect("tempdir");
        let log = logdir.path().join("stderr.log");
        let logfile = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("RINGWATCH_LOG", "info,ringwatch_broker=debug")
            .stdout(Stdio::piped())
            .stderr(logfile)
            .spawn()
            .expect("spawn ringwatch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) if v["event"] == "ready" => v,
            other => {
                let _ = child.kill();
                panic!(
                    "{args:?} did not announce ready: {other:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Proc {
            child,
            ready,
            lines: rx,
            log,
            _logdir: logdir,
            args: args.iter().map(|a| a.to_string()).collect(),
            earlier_logs: String::new(),
            stash: Default::default(),
        }
    }

    /// Kills it with SIGKILL if it still runs, then starts it again with the same arguments
    /// (give it fixed ports, e.g. with `broker_fixed`, to get the same addresses back).
    pub fn restart(&mut self) {
        self.restart_env(&[]);
    }

    /// [`Proc::restart`] with environment variables set for the new process.
    pub fn restart_env(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let fresh = Proc::start_env(&args, env);
        let earlier = format!(
            "{}{}\n---- restarted ----\n",
            self.earlier_logs,
            self.logs()
        );
        let mut old = std::mem::replace(self, fresh);
        self.earlier_logs = earlier;
        let _ = old.child.wait();
    }

    /// SIGSTOP: the process stops and holds its sockets open.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    pub fn addr(&self, key: &str) -> String {
        self.ready[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.ready))
            .to_string()
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr("grpc"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; waits up to 30 s for a clean exit and returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        false
    }

    /// The next JSON line with `event` == `name` (up to `timeout`).
    pub fn event(&self, name: &str, timeout: Duration) -> Option<serde_json::Value> {
        {
            let mut stash = self.stash.borrow_mut();
            if let Some(i) = stash.iter().position(|v| v["event"] == name) {
                return stash.remove(i);
            }
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == name => return Some(v),
                // Kept for a later `event` (e.g. a summary that comes while waiting for
                // progress); progress lines while waiting for something else are not needed.
                Ok(v) if v["event"] != "progress" => self.stash.borrow_mut().push_back(v),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// The newest line with `event` == `name` printed so far, or the next one (up to
    /// `timeout`); older ones are skipped, other events kept for `event`.
    pub fn latest_event(&self, name: &str, timeout: Duration) -> Option<serde_json::Value> {
        let mut newest = None;
        let mut stash = self.stash.borrow_mut();
        stash.retain(|v| {
            let hit = v["event"] == name;
            if hit {
                newest = Some(v.clone());
            }
            !hit
        });
        while let Ok(v) = self.lines.try_recv() {
            if v["event"] == name {
                newest = Some(v);
            } else {
                stash.push_back(v);
            }
        }
        drop(stash);
        newest.or_else(|| self.event(name, timeout))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "---- logs of {BIN} {:?} (pid {}) ----\n{}{}",
                    self.args.first(),
                    self.child.id(),
                    self.earlier_logs,
                    self.logs()
                );
            }
        }
    }
}

/// A free loopback address (`127.0.0.1:port`), for a process that must come back on it.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// A broker on fixed free loopback ports, so `restart` brings it back at the same address.
pub fn broker_fixed(data_dir: &Path, extra: &[&str]) -> Proc {
    broker_on(&free_addr(), &free_addr(), data_dir, extra)
}

/// A broker on free loopback ports storing in Redis at `urls` (the server, the sentinels or
/// the cluster seeds, as `--redis-mode` in `extra` says).
pub fn redis_broker(urls: &[String], extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
        "broker",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--node-id",
        "redis-broker",
        "--store",
        "redis",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for u in urls {
        args.push("--redis-url".into());
        args.push(u.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args)
}

/// A broker on free loopback ports with its store in `data_dir`.
pub fn broker(data_dir: &Path, extra: &[&str]) -> Proc {
    broker_on("127.0.0.1:0", "127.0.0.1:0", data_dir, extra)
}

/// A broker on the given addresses, named `test-broker` unless `extra` names it
/// (`--node-id`).
pub fn broker_on(grpc: &str, admin: &str, data_dir: &Path, extra: &[&str]) -> Proc {
    let dir = data_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "broker",
        "--listen",
        grpc,
        "--admin-listen",
        admin,
        "--data-dir",
        dir,
    ];
    if !extra.contains(&"--node-id") {
        args.extend(["--node-id", "test-broker"]);
    }
    args.extend_from_slice(extra);
    Proc::start(&args)
}

/// A broker named `id` on free loopback ports with its store in `data_dir`.
pub fn broker_named(id: &str, data_dir: &Path, extra: &[&str]) -> Proc {
    let mut args = vec!["--node-id", id];
    args.extend_from_slice(extra);
    broker_on("127.0.0.1:0", "127.0.0.1:0", data_dir, &args)
}

/// `n` brokers named `broker-0` … each with its own data directory under `base`.
pub fn brokers(n: usize, base: &Path, extra: &[&str]) -> Vec<Proc> {
    (0..n)
        .map(|i| {
            let id = format!("broker-{i}");
            broker_named(&id, &base.join(&id), extra)
        })
        .collect()
}

/// An agent at a 1 s interval sending to `brokers`.
pub fn agent(brokers: &[&str], extra: &[&str]) -> Proc {
    let mut args = vec![
        "agent",
        "--interval-secs",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
        "--backoff-max-secs",
        "2",
    ];
    for b in brokers {
        args.push("--broker");
        args.push(b);
    }
    args.extend_from_slice(extra);
    Proc::start(&args)
}

/// viz on free loopback ports (HTTP and QUIC) fed by `brokers`, checking brokers every second;
/// `extra` must say how it authenticates (`--no-auth` or `--jwt-secret …`).
pub fn viz(brokers: &[&str], extra: &[&str]) -> Proc {
    let mut args = vec![
        "viz",
        "--listen",
        "127.0.0.1:0",
        "--quic-listen",
        "127.0.0.1:0",
        "--health-secs",
        "1",
    ];
    for b in brokers {
        args.push("--broker");
        args.push(b);
    }
    args.extend_from_slice(extra);
    Proc::start(&args)
}

/// The HTTP status with which viz refuses a WebSocket upgrade; panics, naming `what`, if the
/// upgrade is accepted or fails otherwise.
pub async fn ws_refusal<R>(req: R, what: &str) -> u16
where
    R: tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
{
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        other => panic!("{what}: not refused: {:?}", other.map(|_| ())),
    }
}

/// GET over plain HTTP/1.0; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_get_with(addr, path, &[])
}

/// A request with `method`, headers and a JSON body over plain HTTP/1.0; returns (status,
/// body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut resp = String::new();
    // A server may answer (and close) before reading a body it refuses.
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

/// A broker credential with `role`, minted by the real CLI (`ringwatch broker-token`).
pub fn broker_token(secret: &str, role: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "broker-token",
            "--role",
            role,
            "--auth-secret",
            secret,
            "--subject",
            "tester",
        ])
        .output()
        .expect("run ringwatch broker-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// GET with extra request headers, e.g. `("Authorization", "Bearer …")`.
pub fn http_get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http_request(addr, "GET", path, headers, "")
}

/// Sum of every sample of the Prometheus series whose name and labels start with `series`
/// (e.g. `ringwatch_agent_dropped_samples_total{priority="detail"`).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let name_end = l.find(['{', ' ']).unwrap_or(l.len());
            if series.contains('{') {
                l.starts_with(series)
            } else {
                &l[..name_end] == series
            }
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn scrape(addr: &str) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics on {addr}: {body}");
    body
}

/// Polls `f` every 200 ms until it returns Some, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Every snapshot of `host` in the last hour, through the Range RPC.
pub async fn range_all(url: &str, host: &str) -> Vec<Snapshot> {
    let mut client = QueryClient::connect(url.to_string())
        .await
        .expect("connect query");
    let stream = client
        .range(RangeRequest {
            host_id: host.into(),
            start_ms: now_ms() - 3_600_000,
            end_ms: now_ms() + 60_000,
            metric_names: vec![],
            limit: 0,
            sparse_ok: true,
            step_ms: 0,
        })
        .await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Vec::new(),
        Err(s) => panic!("range of {host}: {s:?}"),
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        out.extend(chunk.to_snapshots(host));
    }
    out
}

/// Reads `host` over `[start, end]` raw and with `step_ms` (the broker's rollups), and checks
/// every bucket against the raw rows: the count and the lowest and highest value exactly, the
/// average to 1e-9 (sums added in another order). Returns the buckets compared.
#[allow(dead_code)]
pub async fn check_rollups(url: &str, host: &str, start: i64, end: i64, step_ms: i64) -> usize {
    use std::collections::BTreeMap;
    let mut client = QueryClient::connect(url.to_string())
        .await
        .expect("connect query");
    let read = |step_ms: i64, start_ms: i64| RangeRequest {
        host_id: host.into(),
        start_ms,
        end_ms: end,
        metric_names: vec![],
        limit: 0,
        sparse_ok: true,
        step_ms,
    };
    let first = start.div_euclid(step_ms) * step_ms;
    // The raw rows from the first bucket's start (paged: a page stops at the broker's limits).
    let mut want: BTreeMap<(i64, String), (f64, f64, f64, u32)> = BTreeMap::new();
    let mut from = first;
    loop {
        let mut s = client
            .range(read(0, from))
            .await
            .expect("raw range")
            .into_inner();
        let mut last = None;
        while let Some(chunk) = s.message().await.expect("chunk") {
            for snap in chunk.to_snapshots(host) {
                let b = snap.timestamp_ms.div_euclid(step_ms) * step_ms;
                for m in snap.metrics {
                    let e = want.entry((b, m.name)).or_insert((
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        0.0,
                        0,
                    ));
                    e.0 = e.0.min(m.value);
                    e.1 = e.1.max(m.value);
                    e.2 += m.value;
                    e.3 += 1;
                }
                last = Some(snap.timestamp_ms);
            }
        }
        match last {
            Some(l) if l < end => from = l + 1,
            _ => break,
        }
    }
    let mut s = client
        .range(read(step_ms, start))
        .await
        .expect("rollup range")
        .into_inner();
    let mut got: BTreeMap<(i64, String), (f64, f64, f64, u32)> = BTreeMap::new();
    while let Some(chunk) = s.message().await.expect("chunk") {
        assert!(!chunk.truncated, "a rollup answer cut short");
        for c in &chunk.columns {
            assert_eq!(c.min.len(), c.values.len(), "{}", c.name);
            for (i, &avg) in c.values.iter().enumerate() {
                if avg.is_nan() {
                    continue;
                }
                let row = if c.rows.is_empty() {
                    i
                } else {
                    c.rows[i] as usize
                };
                got.insert(
                    (chunk.timestamps_ms[row], c.name.clone()),
                    (c.min[i], c.max[i], avg, c.count[i]),
                );
            }
        }
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same buckets and metrics"
    );
    for (k, (min, max, sum, n)) in &want {
        let (gmin, gmax, gavg, gn) = got[k];
        assert_eq!((gmin, gmax, gn), (*min, *max, *n), "{k:?}");
        let avg = sum / f64::from(*n);
        assert!(
            (gavg - avg).abs() <= 1e-9 * avg.abs().max(1.0),
            "{k:?}: {gavg} vs {avg}"
        );
    }
    got.len()
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// `ringwatch up` on free ports at a 1 s interval, with its banner read.
pub struct Up {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    /// The broker's gRPC URL from the banner.
    pub grpc: String,
    /// The dashboard URL from the banner.
    pub dashboard: String,
    pub banner: String,
    /// Where `up` generated its certificates and credentials.
    pub secrets: tempfile::TempDir,
}

impl Up {
    pub fn start(extra: &[&str]) -> Up {
        let secrets = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(BIN)
            .args([
                "up",
                "--grpc",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--agent-metrics",
                "127.0.0.1:0",
                "--interval-secs",
                "1",
            ])
            .arg("--secrets-dir")
            .arg(secrets.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn up");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut grpc = None;
        let mut dashboard = None;
        let mut banner = String::new();
        for line in lines.by_ref() {
            let line = line.expect("banner line");
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("broker gRPC") {
                grpc = line.split_whitespace().last().map(str::to_string);
            }
            if line.trim_start().starts_with("dashboard API") {
                dashboard = line.split_whitespace().nth(2).map(str::to_string);
            }
            if line.contains("Ctrl-C") {
                break;
            }
        }
        let grpc = grpc.unwrap_or_else(|| panic!("no broker address in:\n{banner}"));
        let dashboard = dashboard.unwrap_or_else(|| panic!("no dashboard URL in:\n{banner}"));
        Up {
            child,
            lines,
            grpc,
            dashboard,
            banner,
            secrets,
        }
    }

    /// The flags a client needs to read from this `up`'s broker (its CA and query credential).
    pub fn query_args(&self) -> Vec<String> {
        let p = |name: &str| self.secrets.path().join(name).to_str().unwrap().to_string();
        vec![
            "--broker-tls-ca".into(),
            p("ca.pem"),
            "--broker-token-file".into(),
            p("query.token"),
        ]
    }

    /// SIGTERM; returns whether it exited 0, and what it printed after the banner.
    pub fn stop(&mut self) -> (bool, Vec<String>) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = wait_for("up to exit", Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        let rest: Vec<String> = self.lines.by_ref().map_while(Result::ok).collect();
        (status.success(), rest)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API token minted by the real CLI (`ringwatch token`).
pub fn token(secret: &str, role: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "--role",
            role,
            "--jwt-secret",
            secret,
            "--subject",
            "tester",
        ])
        .output()
        .expect("run ringwatch token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
