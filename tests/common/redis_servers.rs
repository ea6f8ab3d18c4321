//! Real Redis servers from Debian's packages, started on free loopback ports in temporary
//! directories and stopped when dropped: standalone, a sentinel group, and a cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install -y redis-server redis-sentinel redis-tools";

/// The path of a required binary, or a loud failure with the install command.
pub fn require(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is not installed; install it with: {INSTALL} (scripts/test.sh does this)");
}

/// Sends `kill -SIG pid` (e.g. "STOP", "CONT", "KILL").
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A port `p` with `p` and `p + 10000` (the cluster bus) both free.
pub fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

pub fn client(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| panic!("connect to redis on {port}: {e}"))
}

fn ping(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    bin: PathBuf,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server with no persistence.
    pub fn start() -> RedisServer {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A server that also takes TLS, on the returned port, with a certificate for 127.0.0.1
    /// signed by a private CA: the returned folder holds `ca.pem` for clients to trust.
    pub fn start_tls() -> (RedisServer, u16, tempfile::TempDir) {
        let certs = tempfile::tempdir().expect("tempdir");
        let generated =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
                .expect("a certificate");
        let (cert, key, ca) = (
            certs.path().join("redis.pem"),
            certs.path().join("redis.key"),
            certs.path().join("ca.pem"),
        );
        std::fs::write(&cert, generated.cert.pem()).expect("write cert");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
        std::fs::write(&ca, generated.cert.pem()).expect("write ca");
        let tls_port = free_port();
        let server = Self::start_with(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            cert.to_str().expect("utf-8"),
            "--tls-key-file",
            key.to_str().expect("utf-8"),
            "--tls-ca-cert-file",
            ca.to_str().expect("utf-8"),
            "--tls-auth-clients",
            "no",
        ]);
        (server, tls_port, certs)
    }

    /// A server with the given extra arguments (e.g. persistence, replicaof, cluster mode).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = RedisServer {
            child: None,
            port,
            args,
            bin: require("redis-server"),
            dir,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        // Redis logs to stdout; keep it (appending across restarts) for a failing test.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("log");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not answer PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn conn(&self) -> redis::Connection {
        client(self.port)
    }

    /// `INFO memory`'s `used_memory`: the bytes Redis holds.
    pub fn used_memory(&self) -> i64 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut self.conn())
            .expect("INFO memory");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO")
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server stops answering and keeps its connections open.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// Starts again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, one replica, and three sentinels watching them (quorum 2, 1 s down-after).
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(Child, u16)>,
    _dir: tempfile::TempDir,
}

/// No persistence: a restarted server comes back empty.
pub const NO_PERSISTENCE: &[&str] = &["--save", "", "--appendonly", "no"];

/// The server settings README documents for sentinel deployments: every write in the AOF and
/// fsynced before it is answered (a restarted server comes back with what it acknowledged), and
/// no write taken without a replica connected.
pub const DURABLE: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--min-replicas-to-write",
    "1",
    "--min-replicas-max-lag",
    "10",
];

impl SentinelGroup {
    /// Master and replica without persistence.
    pub fn start(master_name: &str) -> SentinelGroup {
        Self::start_with(master_name, NO_PERSISTENCE)
    }

    /// Master and replica started with `server` settings (e.g. `DURABLE`).
    pub fn start_with(master_name: &str, server: &[&str]) -> SentinelGroup {
        let bin = require("redis-sentinel");
        let master = RedisServer::start_with(server);
        let replicaof = format!("127.0.0.1 {}", master.port);
        let mut args = server.to_vec();
        args.extend(["--replicaof", &replicaof]);
        let replica = RedisServer::start_with(&args);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.conn())
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(Instant::now() < deadline, "replica did not sync");
            std::thread::sleep(Duration::from_millis(100));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\nsentinel monitor {master_name} 127.0.0.1 {} 2\nsentinel down-after-milliseconds {master_name} 1000\nsentinel failover-timeout {master_name} 5000\nsentinel parallel-syncs {master_name} 1\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .expect("sentinel conf");
            let log =
                std::fs::File::create(dir.path().join(format!("sentinel-{i}.log"))).expect("log");
            let child = Command::new(&bin)
                .arg(&conf)
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn redis-sentinel");
            sentinels.push((child, port));
        }
        for (_, port) in &sentinels {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !ping(*port) {
                assert!(
                    Instant::now() < deadline,
                    "sentinel on {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        SentinelGroup {
            master,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(_, p)| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Every server's and sentinel's log, for a failing test to print.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "---- first master (port {}) ----\n{}\n---- first replica (port {}) ----\n{}\n",
            self.master.port,
            self.master.log(),
            self.replica.port,
            self.replica.log()
        );
        for (i, (_, port)) in self.sentinels.iter().enumerate() {
            let log = std::fs::read_to_string(self._dir.path().join(format!("sentinel-{i}.log")))
                .unwrap_or_default();
            out.push_str(&format!("---- sentinel {i} (port {port}) ----\n{log}\n"));
        }
        out
    }

    /// The master's port if every sentinel names the same one now.
    pub fn agreed_master(&self, master_name: &str) -> Option<u16> {
        let ports: Vec<Option<u16>> = self
            .sentinels
            .iter()
            .map(|(_, port)| {
                let addr: Vec<String> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master_name)
                    .query(&mut client(*port))
                    .ok()?;
                addr.get(1)?.parse().ok()
            })
            .collect();
        let first = (*ports.first()?)?;
        ports.iter().all(|p| *p == Some(first)).then_some(first)
    }

    /// The master's port as the sentinels see it now.
    pub fn current_master(&self, master_name: &str) -> Option<u16> {
        let (_, port) = self.sentinels.first()?;
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master_name)
            .query(&mut client(*port))
            .ok()?;
        addr.get(1)?.parse().ok()
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for (c, _) in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three masters in a Redis Cluster, created with `redis-cli --cluster create`, each with
/// `replicas` replicas.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with_replicas(0)
    }

    pub fn start_with_replicas(replicas: usize) -> Cluster {
        let cli = require("redis-cli");
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        cluster.wait_ok(&(0..cluster.nodes.len()).collect::<Vec<_>>());
        if replicas > 0 {
            // Every replica attached and in sync before anything depends on it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while cluster
                .nodes
                .iter()
                .filter(|n| cluster.role(n) == "slave")
                .any(|n| !info(n, "replication").contains("master_link_status:up"))
            {
                assert!(Instant::now() < deadline, "replicas did not sync");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// Starts a new node and attaches it as a replica of `nodes[master]`; returns its index.
    pub fn add_replica(&mut self, master: usize) -> usize {
        let node = RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]);
        let id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[master].conn())
            .expect("CLUSTER MYID");
        let out = Command::new(require("redis-cli"))
            .args(["--cluster", "add-node"])
            .arg(format!("127.0.0.1:{}", node.port))
            .arg(format!("127.0.0.1:{}", self.nodes[master].port))
            .args(["--cluster-slave", "--cluster-master-id", &id])
            .output()
            .expect("redis-cli --cluster add-node");
        assert!(
            out.status.success(),
            "add-node failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !info(&node, "replication").contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the new replica did not sync");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Waits until the nodes at `indices` report `cluster_state:ok`.
    pub fn wait_ok(&self, indices: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &i in indices {
            while !info_cluster(&self.nodes[i]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster did not reach state ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `master` or `slave` (what ROLE says), or "" if the node does not answer.
    pub fn role(&self, node: &RedisServer) -> String {
        let mut c = match redis::Client::open(node.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        {
            Ok(c) => c,
            Err(_) => return String::new(),
        };
        redis::cmd("ROLE")
            .query::<Vec<redis::Value>>(&mut c)
            .ok()
            .and_then(|v| match v.first() {
                Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into()),
                Some(redis::Value::SimpleString(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

fn info(node: &RedisServer, section: &str) -> String {
    redis::Client::open(node.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("INFO").arg(section).query::<String>(&mut c))
        .unwrap_or_default()
}

fn info_cluster(node: &RedisServer) -> String {
    redis::Client::open(node.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
        .unwrap_or_default()
}
