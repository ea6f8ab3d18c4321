//! The broker's one typed config: flags, env (`RINGWATCH_BROKER_*`) and a YAML file (field names
//! equal flag ids), with defaults that run locally.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::store::{EmbeddedConfig, RedisConfig, RedisLayout, RedisMode, RedisSettings};

/// Where a broker stores samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In-process store with a write-ahead log in `data_dir`.
    #[default]
    Embedded,
    /// Redis (standalone, sentinel or cluster: `redis_mode`).
    Redis,
}

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This broker's id in the cluster (default: the hostname).
    #[arg(long, env = "RINGWATCH_BROKER_NODE_ID")]
    pub node_id: Option<String>,
    /// gRPC address (ingest, query, health). Port 0 picks a free port.
    #[arg(long, env = "RINGWATCH_BROKER_LISTEN", default_value = "0.0.0.0:9093")]
    pub listen: SocketAddr,
    /// Admin HTTP address (/health, /ready, /api/cluster, /metrics).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_ADMIN_LISTEN",
        default_value = "0.0.0.0:9097"
    )]
    pub admin_listen: SocketAddr,
    /// Directory of the embedded store's log.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_DATA_DIR",
        default_value = ".ringwatch/broker"
    )]
    pub data_dir: PathBuf,
    /// Keep everything in memory only (nothing survives a restart).
    #[arg(long, env = "RINGWATCH_BROKER_EPHEMERAL", default_value_t = false)]
    pub ephemeral: bool,
    /// How long samples are kept, in hours.
    #[arg(long, env = "RINGWATCH_BROKER_RETENTION_HOURS", default_value_t = 168)]
    pub retention_hours: u64,
    /// Most samples the embedded store's head holds in memory. With a data directory, older
    /// rows are then cut to compressed blocks on disk (nothing is lost); with --ephemeral the
    /// oldest are evicted.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MEMORY_LIMIT_SAMPLES",
        default_value_t = 20_000_000
    )]
    pub memory_limit_samples: u64,
    /// Rows older than the last whole window of this many minutes are cut from the head to a
    /// compressed block on disk.
    #[arg(long, env = "RINGWATCH_BROKER_BLOCK_WINDOW_MINS", default_value_t = 60)]
    pub block_window_mins: u64,
    /// Decoded block columns kept in memory for reads, in MiB.
    #[arg(long, env = "RINGWATCH_BROKER_BLOCK_CACHE_MIB", default_value_t = 64)]
    pub block_cache_mib: u64,
    /// Free space kept on the data directory's disk, in MiB: below it, ingest is refused (not
    /// acknowledged; agents keep their data) until space is freed.
    #[arg(long, env = "RINGWATCH_BROKER_DISK_RESERVE_MIB", default_value_t = 64)]
    pub disk_reserve_mib: u64,
    /// fsync interval of the log in ms; 0 = fsync every batch before acknowledging it.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_FSYNC_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub fsync_interval_ms: u64,
    /// Size at which a log segment is closed, in MiB.
    #[arg(long, env = "RINGWATCH_BROKER_SEGMENT_MAX_MIB", default_value_t = 64)]
    pub segment_max_mib: u64,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_MESSAGE_BYTES", default_value_t = 4 << 20)]
    pub max_message_bytes: usize,
    /// Most snapshots in one ingest batch.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MAX_BATCH_SNAPSHOTS",
        default_value_t = 1024
    )]
    pub max_batch_snapshots: usize,
    /// Most distinct metric names one host may hold in the embedded store (a real agent sends
    /// about 42 plus per-core, per-disk and per-interface detail); a snapshot that would pass
    /// it is refused by name, and no other host's data is touched.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MAX_METRIC_NAMES_PER_HOST",
        default_value_t = 4096
    )]
    pub max_metric_names_per_host: usize,
    /// Most metrics in one snapshot.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MAX_METRICS_PER_SNAPSHOT",
        default_value_t = 4096
    )]
    pub max_metrics_per_snapshot: usize,
    /// How far in the future a timestamp may be, in seconds (clock skew allowance).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MAX_FUTURE_SKEW_SECS",
        default_value_t = 300
    )]
    pub max_future_skew_secs: u64,
    /// Most snapshots one range query returns.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_QUERY_MAX_SNAPSHOTS",
        default_value_t = 200_000
    )]
    pub query_max_snapshots: usize,
    /// Most values one range answer carries (timestamps included; whole chunks, at least
    /// one); a longer answer ends early with `truncated` on its last chunk.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_QUERY_MAX_CELLS",
        default_value_t = 4_000_000
    )]
    pub query_max_cells: usize,
    /// A host is stale after this many missed intervals.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_STALE_AFTER_INTERVALS",
        default_value_t = 3
    )]
    pub stale_after_intervals: u32,
    /// A host is gone after this many seconds unseen.
    #[arg(long, env = "RINGWATCH_BROKER_GONE_AFTER_SECS", default_value_t = 600)]
    pub gone_after_secs: u64,
    /// Most concurrent ingest streams.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Most gRPC connections open at once (an agent holds one); past it a new connection is
    /// refused with a GOAWAY saying so. Keep it below the process's open-file limit.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MAX_CONNECTIONS",
        default_value_t = 20_000
    )]
    pub max_connections: usize,
    /// Most concurrent gRPC streams on one connection.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 1024
    )]
    pub max_streams_per_connection: u32,
    /// A new gRPC connection must send the HTTP/2 preface within this many seconds.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_HANDSHAKE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub handshake_timeout_secs: u64,
    /// An HTTP/2 ping goes to a gRPC client quiet this many seconds (keepalive); one that does
    /// not answer within --keepalive-timeout-secs is closed, freeing what it held.
    #[arg(long, env = "RINGWATCH_BROKER_KEEPALIVE_SECS", default_value_t = 20)]
    pub keepalive_secs: u64,
    /// How long a keepalive ping may go unanswered.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub keepalive_timeout_secs: u64,
    /// Most admin HTTP connections open at once; past it a 503.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_ADMIN_MAX_CONNECTIONS",
        default_value_t = 256
    )]
    pub admin_max_connections: usize,
    /// An HTTP request's headers must arrive within this many seconds.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http_header_timeout_secs: u64,
    /// An HTTP connection with no byte either way for this many seconds is closed.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_HTTP_IDLE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub http_idle_timeout_secs: u64,
    /// TLS certificate (PEM, leaf first, then its chain) for the gRPC port, with --tls-key.
    /// Without it the port speaks plaintext.
    #[arg(long, env = "RINGWATCH_BROKER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "RINGWATCH_BROKER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A CA (PEM); when given, every gRPC client must show a certificate it signed (mutual
    /// TLS). Needs --tls-cert.
    #[arg(long, env = "RINGWATCH_BROKER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// A file of the secrets broker credentials are signed with (one per line, at least 32
    /// bytes each; a credential signed with any of them is accepted, so a secret can be
    /// rotated). With it every gRPC call needs a credential of the right role (`ringwatch
    /// broker-token`); without it anyone who reaches the port may read and write.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_AUTH_SECRET_FILE",
        conflicts_with = "auth_secret"
    )]
    pub auth_secret_file: Option<PathBuf>,
    /// The secret itself (prefer RINGWATCH_BROKER_AUTH_SECRET or --auth-secret-file: a flag
    /// shows in `ps`).
    #[arg(long, env = "RINGWATCH_BROKER_AUTH_SECRET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    /// Run the Raft control plane: this broker is one of a cluster that agrees on members, the
    /// ring, the host registry and the cluster config (its log under <data-dir>/raft). Without
    /// it the broker is a cluster of one.
    #[arg(long, env = "RINGWATCH_BROKER_RAFT", default_value_t = false)]
    pub raft: bool,
    /// With --raft: when this broker belongs to no cluster yet, start one with it as the first
    /// member (give it to exactly one broker; the others join through the admin API).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_BOOTSTRAP",
        default_value_t = false,
        requires = "raft"
    )]
    pub bootstrap: bool,
    /// The gRPC URL other brokers, agents and viz reach this broker at (default: http:// or,
    /// with --tls-cert, https:// and the listen address; 0.0.0.0 becomes the node id).
    #[arg(long, env = "RINGWATCH_BROKER_ADVERTISE_GRPC")]
    pub advertise_grpc: Option<String>,
    /// The admin HTTP address (host:port) other brokers and the operator reach this broker at
    /// (default: the admin listen address; 0.0.0.0 becomes the node id).
    #[arg(long, env = "RINGWATCH_BROKER_ADVERTISE_ADMIN")]
    pub advertise_admin: Option<String>,
    /// Raft heartbeat, in milliseconds.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_RAFT_HEARTBEAT_MS",
        default_value_t = 500
    )]
    pub raft_heartbeat_ms: u64,
    /// Raft's shortest election timeout, in milliseconds (the longest is twice it); above the
    /// heartbeat.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_RAFT_ELECTION_TIMEOUT_MS",
        default_value_t = 1000
    )]
    pub raft_election_timeout_ms: u64,
    /// How often the leader checks each broker's health, in milliseconds (at most 1000).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_PEER_HEARTBEAT_MS",
        default_value_t = 500
    )]
    pub peer_heartbeat_ms: u64,
    /// A broker silent this long (milliseconds) is marked down: out of the ring, its hosts to
    /// their next owners; still a voter until removed.
    #[arg(long, env = "RINGWATCH_BROKER_DOWN_AFTER_MS", default_value_t = 3000)]
    pub down_after_ms: u64,
    /// A CA (PEM) that signed the other brokers' TLS certificates (default: --tls-client-ca,
    /// else the public web roots).
    #[arg(long, env = "RINGWATCH_BROKER_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Reach peer ID at URL instead of the address it advertises (`ID=http://host:port`;
    /// repeat, or comma-separate in the env variable): for brokers behind address translation.
    #[arg(
        long = "peer-route",
        env = "RINGWATCH_BROKER_PEER_ROUTES",
        value_delimiter = ','
    )]
    pub peer_routes: Vec<String>,
    /// With --raft: most MiB of batches in the forward queue on disk (<data-dir>/forward-queue),
    /// where a batch goes, acknowledged, when its owner did not take it after 1, 2 and 4 s;
    /// past it, such batches are not acknowledged (their agents keep them).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_FORWARD_QUEUE_MAX_MIB",
        default_value_t = 256
    )]
    pub forward_queue_max_mib: u64,
    /// Most MiB of one host's batches in the forward queue (one host's backlog never takes
    /// another's room).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_FORWARD_QUEUE_MAX_HOST_MIB",
        default_value_t = 4
    )]
    pub forward_queue_max_host_mib: u64,
    /// Where samples are stored.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_STORE",
        value_enum,
        default_value = "embedded"
    )]
    pub store: StoreKind,
    /// Redis URL (repeat, or comma-separated in env): the server, the sentinels, or cluster
    /// seed nodes. `rediss://` uses TLS.
    #[arg(
        long = "redis-url",
        env = "RINGWATCH_BROKER_REDIS_URLS",
        value_delimiter = ','
    )]
    pub redis_urls: Vec<String>,
    /// Redis deployment: standalone, sentinel or cluster.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_MODE",
        value_enum,
        default_value = "standalone"
    )]
    pub redis_mode: RedisMode,
    /// The sentinel master name.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_MASTER_NAME",
        default_value = "mymaster"
    )]
    pub redis_master_name: String,
    /// Redis ACL user name.
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Redis password (prefer the env variable to a flag).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// PEM CA certificate to trust for rediss:// servers whose CA is not a public one
    /// (standalone and cluster modes).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every Redis key.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_KEY_PREFIX",
        default_value = "monitor:"
    )]
    pub redis_key_prefix: String,
    /// Redis connect and response timeout in ms.
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub redis_timeout_ms: u64,
    /// How long a write to Redis is retried before it is given up (and not acknowledged).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_WRITE_RETRY_SECS",
        default_value_t = 10
    )]
    pub redis_write_retry_secs: u64,
    /// Most snapshots waiting on Redis at once; beyond it writes are refused (not acknowledged).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_BUFFER_SNAPSHOTS",
        default_value_t = 100_000
    )]
    pub redis_buffer_snapshots: usize,
    /// Replicas that must have each write (Redis WAIT) before agents are acknowledged, so a
    /// fail-over loses nothing acknowledged. Every mode: in a cluster, WAIT runs on the master
    /// that took the batch (one host's keys share a slot).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: u32,
    /// Redis key layout: `compact` (compressed chunks per host and 10-minute window, a few
    /// bytes a sample), `seed` (the seed system's keys, SPEC S4, for tools that read them), or
    /// `both` (writes both, reads the seed layout: for migrating).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_LAYOUT",
        value_enum,
        default_value = "compact"
    )]
    pub redis_layout: RedisLayout,
    /// Compact layout: seconds a window stays open after its last write, once it is over (rows
    /// arriving later are merged into its chunk, which costs more).
    #[arg(
        long,
        env = "RINGWATCH_BROKER_REDIS_CHUNK_GRACE_SECS",
        default_value_t = 60
    )]
    pub redis_chunk_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 9093)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9097)),
            data_dir: PathBuf::from(".ringwatch/broker"),
            ephemeral: false,
            raft: false,
            bootstrap: false,
            advertise_grpc: None,
            advertise_admin: None,
            raft_heartbeat_ms: 500,
            raft_election_timeout_ms: 1000,
            peer_heartbeat_ms: 500,
            down_after_ms: 3000,
            peer_tls_ca: None,
            peer_routes: Vec::new(),
            forward_queue_max_mib: 256,
            forward_queue_max_host_mib: 4,
            retention_hours: 168,
            memory_limit_samples: 20_000_000,
            block_window_mins: 60,
            block_cache_mib: 64,
            disk_reserve_mib: 64,
            fsync_interval_ms: 1000,
            segment_max_mib: 64,
            max_message_bytes: 4 << 20,
            max_batch_snapshots: 1024,
            max_metric_names_per_host: 4096,
            max_metrics_per_snapshot: 4096,
            max_future_skew_secs: 300,
            query_max_snapshots: 200_000,
            query_max_cells: 4_000_000,
            stale_after_intervals: 3,
            gone_after_secs: 600,
            max_streams: 10_000,
            max_connections: 20_000,
            max_streams_per_connection: 1024,
            handshake_timeout_secs: 10,
            keepalive_secs: 20,
            keepalive_timeout_secs: 10,
            admin_max_connections: 256,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 120,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth_secret_file: None,
            auth_secret: None,
            store: StoreKind::Embedded,
            redis_urls: Vec::new(),
            redis_mode: RedisMode::Standalone,
            redis_master_name: "mymaster".into(),
            redis_username: None,
            redis_password: None,
            redis_ca_file: None,
            redis_key_prefix: "monitor:".into(),
            redis_timeout_ms: 2000,
            redis_write_retry_secs: 10,
            redis_buffer_snapshots: 100_000,
            redis_min_replicas: 0,
            redis_layout: RedisLayout::Compact,
            redis_chunk_grace_secs: 60,
        }
    }
}

impl Config {
    /// The gRPC listener's limits.
    pub fn grpc_limits(&self) -> ringwatch_net::GrpcLimits {
        ringwatch_net::GrpcLimits {
            max_connections: self.max_connections,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
        }
    }

    /// The gRPC port's TLS config, read and checked now; `None` for plaintext.
    pub fn server_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<ringwatch_net::tls::ServerConfig>>, BrokerError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let files = ringwatch_net::tls::ServerTlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                };
                ringwatch_net::tls::server_config(&files)
                    .map(Some)
                    .map_err(|e| BrokerError::Config(format!("tls: {e}")))
            }
            (None, None) if self.tls_client_ca.is_some() => Err(BrokerError::Config(
                "tls_client_ca needs tls_cert and tls_key".into(),
            )),
            (None, None) => Ok(None),
            _ => Err(BrokerError::Config(
                "tls_cert and tls_key go together".into(),
            )),
        }
    }

    /// The secrets credentials are checked against; `None` when auth is off.
    pub fn auth_secrets(&self) -> Result<Option<Vec<String>>, BrokerError> {
        ringwatch_net::token::load_secrets(
            self.auth_secret.as_deref(),
            self.auth_secret_file.as_deref(),
        )
        .map_err(|e| BrokerError::Config(format!("auth: {e}")))
    }

    /// The admin HTTP listener's limits.
    pub fn admin_limits(&self) -> ringwatch_net::HttpLimits {
        ringwatch_net::HttpLimits {
            max_connections: self.admin_max_connections,
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_secs),
        }
    }

    /// Checks every field; the message names the field and what is allowed.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |m: String| Err(BrokerError::Config(m));
        if self
            .node_id
            .as_deref()
            .is_some_and(|n| crate::validate::check_host_id(n).is_err())
        {
            return bad("node_id: 1–253 characters of [A-Za-z0-9._-]".into());
        }
        if self.raft && self.ephemeral {
            return bad(
                "raft: a cluster member keeps its Raft log on disk; drop --ephemeral".into(),
            );
        }
        if self.bootstrap && !self.raft {
            return bad("bootstrap: needs --raft".into());
        }
        if !self.peer_routes.is_empty() && !self.raft {
            return bad("peer_routes: needs --raft".into());
        }
        self.peer_routes()?;
        if self.forward_queue_max_mib == 0
            || self.forward_queue_max_host_mib == 0
            || self.forward_queue_max_host_mib > self.forward_queue_max_mib
        {
            return bad(format!(
                "forward_queue_max_host_mib: {} must be at least 1 and at most forward_queue_max_mib ({}, at least 1)",
                self.forward_queue_max_host_mib, self.forward_queue_max_mib
            ));
        }
        if !(50..=60_000).contains(&self.raft_heartbeat_ms) {
            return bad(format!(
                "raft_heartbeat_ms: {} is out of range 50..=60000",
                self.raft_heartbeat_ms
            ));
        }
        if self.raft_election_timeout_ms <= self.raft_heartbeat_ms
            || self.raft_election_timeout_ms > 300_000
        {
            return bad(format!(
                "raft_election_timeout_ms: {} must exceed raft_heartbeat_ms ({}) and be at most 300000",
                self.raft_election_timeout_ms, self.raft_heartbeat_ms
            ));
        }
        if !(50..=1000).contains(&self.peer_heartbeat_ms) {
            return bad(format!(
                "peer_heartbeat_ms: {} is out of range 50..=1000",
                self.peer_heartbeat_ms
            ));
        }
        if self.down_after_ms < 2 * self.peer_heartbeat_ms || self.down_after_ms > 600_000 {
            return bad(format!(
                "down_after_ms: {} must be at least twice peer_heartbeat_ms ({}) and at most 600000",
                self.down_after_ms, self.peer_heartbeat_ms
            ));
        }
        if let Some(a) = &self.advertise_grpc
            && !(a.starts_with("http://") || a.starts_with("https://"))
        {
            return bad(format!(
                "advertise_grpc: {a:?} is not an http:// or https:// URL"
            ));
        }
        if !(1..=24 * 3650).contains(&self.retention_hours) {
            return bad(format!(
                "retention_hours: {} is out of range 1..=87600",
                self.retention_hours
            ));
        }
        if self.memory_limit_samples < 10_000 {
            return bad(format!(
                "memory_limit_samples: {} is below the minimum 10000",
                self.memory_limit_samples
            ));
        }
        if !(1..=1440).contains(&self.block_window_mins) {
            return bad(format!(
                "block_window_mins: {} is out of range 1..=1440",
                self.block_window_mins
            ));
        }
        if self.block_cache_mib > 1 << 20 {
            return bad(format!(
                "block_cache_mib: {} is above the maximum 1048576",
                self.block_cache_mib
            ));
        }
        if self.fsync_interval_ms > 60_000 {
            return bad(format!(
                "fsync_interval_ms: {} is above the maximum 60000",
                self.fsync_interval_ms
            ));
        }
        if !(1..=1024).contains(&self.segment_max_mib) {
            return bad(format!(
                "segment_max_mib: {} is out of range 1..=1024",
                self.segment_max_mib
            ));
        }
        if !(64 << 10..=64 << 20).contains(&self.max_message_bytes) {
            return bad(format!(
                "max_message_bytes: {} is out of range 65536..=67108864",
                self.max_message_bytes
            ));
        }
        if !(1..=100_000).contains(&self.max_batch_snapshots) {
            return bad(format!(
                "max_batch_snapshots: {} is out of range 1..=100000",
                self.max_batch_snapshots
            ));
        }
        if !(16..=1_000_000).contains(&self.max_metric_names_per_host) {
            return bad(format!(
                "max_metric_names_per_host: {} is out of range 16..=1000000",
                self.max_metric_names_per_host
            ));
        }
        if self.max_metric_names_per_host < self.max_metrics_per_snapshot {
            return bad(format!(
                "max_metric_names_per_host ({}) is below max_metrics_per_snapshot ({}): a snapshot \
                 the broker accepts would always be refused; raise the first or lower the second",
                self.max_metric_names_per_host, self.max_metrics_per_snapshot
            ));
        }
        if !(1..=100_000).contains(&self.max_metrics_per_snapshot) {
            return bad(format!(
                "max_metrics_per_snapshot: {} is out of range 1..=100000",
                self.max_metrics_per_snapshot
            ));
        }
        if self.query_max_snapshots == 0 {
            return bad("query_max_snapshots: must be at least 1".into());
        }
        if self.query_max_cells < 100_000 {
            return bad(format!(
                "query_max_cells: {} is below the minimum 100000 (a chunk holds up to 65536)",
                self.query_max_cells
            ));
        }
        if self.stale_after_intervals == 0 || self.gone_after_secs == 0 || self.max_streams == 0 {
            return bad(
                "stale_after_intervals, gone_after_secs and max_streams must be at least 1".into(),
            );
        }
        if !(1..=1_000_000).contains(&self.max_connections)
            || !(1..=1_000_000).contains(&self.admin_max_connections)
        {
            return bad(format!(
                "max_connections ({}) and admin_max_connections ({}) must be 1..=1000000",
                self.max_connections, self.admin_max_connections
            ));
        }
        if !(1..=100_000).contains(&self.max_streams_per_connection) {
            return bad(format!(
                "max_streams_per_connection: {} is out of range 1..=100000",
                self.max_streams_per_connection
            ));
        }
        for (field, v) in [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("keepalive_secs", self.keepalive_secs),
            ("keepalive_timeout_secs", self.keepalive_timeout_secs),
            ("http_header_timeout_secs", self.http_header_timeout_secs),
            ("http_idle_timeout_secs", self.http_idle_timeout_secs),
        ] {
            if !(1..=3600).contains(&v) {
                return bad(format!("{field}: {v} is out of range 1..=3600"));
            }
        }
        if self.store == StoreKind::Redis {
            if self.redis_urls.is_empty() {
                return bad(
                    "redis_urls: at least one --redis-url is needed with --store redis".into(),
                );
            }
            if let Some(u) = self
                .redis_urls
                .iter()
                .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
            {
                return bad(format!(
                    "redis_urls: {:?} must start with redis:// or rediss:// (TLS)",
                    crate::store::redis_conn::redact(u)
                ));
            }
            if let Some(ca) = &self.redis_ca_file {
                if self.redis_mode == RedisMode::Sentinel {
                    return bad("redis_ca_file: not supported in sentinel mode yet".into());
                }
                if self.redis_urls.iter().any(|u| !u.starts_with("rediss://")) {
                    return bad(format!(
                        "redis_ca_file: {} is given but not every --redis-url is rediss:// (TLS)",
                        ca.display()
                    ));
                }
                if !ca.is_file() {
                    return bad(format!(
                        "redis_ca_file: {} is not a readable file",
                        ca.display()
                    ));
                }
            }
            if self.redis_mode == RedisMode::Sentinel && self.redis_master_name.is_empty() {
                return bad("redis_master_name: needed in sentinel mode".into());
            }
        }
        let p = &self.redis_key_prefix;
        if p.is_empty() || p.len() > 64 || p.contains(['{', '}', ' ']) {
            return bad(format!(
                "redis_key_prefix: {p:?} must be 1–64 characters without braces or spaces"
            ));
        }
        if !(100..=60_000).contains(&self.redis_timeout_ms) {
            return bad(format!(
                "redis_timeout_ms: {} is out of range 100..=60000",
                self.redis_timeout_ms
            ));
        }
        if self.redis_buffer_snapshots < self.max_batch_snapshots {
            return bad(format!(
                "redis_buffer_snapshots: {} is below max_batch_snapshots ({}): a full batch could never be written",
                self.redis_buffer_snapshots, self.max_batch_snapshots
            ));
        }
        if self.redis_chunk_grace_secs > 86_400 {
            return bad(format!(
                "redis_chunk_grace_secs: {} is out of range 0..=86400",
                self.redis_chunk_grace_secs
            ));
        }
        if !(1..=3600).contains(&self.redis_write_retry_secs) || self.redis_buffer_snapshots == 0 {
            return bad(
                "redis_write_retry_secs must be 1..=3600 and redis_buffer_snapshots at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn redis(&self) -> RedisConfig {
        let timeout = Duration::from_millis(self.redis_timeout_ms);
        RedisConfig {
            settings: RedisSettings {
                mode: self.redis_mode,
                urls: self.redis_urls.clone(),
                master_name: self.redis_master_name.clone(),
                username: self.redis_username.clone(),
                password: self.redis_password.clone(),
                connect_timeout: timeout,
                response_timeout: timeout,
                ca_file: self.redis_ca_file.clone(),
            },
            key_prefix: self.redis_key_prefix.clone(),
            retention: self.retention(),
            write_retry: Duration::from_secs(self.redis_write_retry_secs),
            buffer_snapshots: self.redis_buffer_snapshots,
            min_replicas: self.redis_min_replicas,
            layout: self.redis_layout,
            chunk_grace: Duration::from_secs(self.redis_chunk_grace_secs),
        }
    }

    /// The node id, or the hostname.
    pub fn resolved_node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            std::env::var("POD_NAME")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "broker-0".into())
        })
    }

    /// How the cluster reaches this broker (`grpc_addr` is the gRPC URL, `admin_addr` the
    /// admin host:port), given the ports it bound.
    pub fn advertised(&self, grpc: SocketAddr, admin: SocketAddr) -> (String, String) {
        let node = self.resolved_node_id();
        let host = |a: SocketAddr| {
            if a.ip().is_unspecified() {
                format!("{node}:{}", a.port())
            } else {
                a.to_string()
            }
        };
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let grpc_addr = self
            .advertise_grpc
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", host(grpc)));
        let admin_addr = self.advertise_admin.clone().unwrap_or_else(|| host(admin));
        (grpc_addr, admin_addr)
    }

    /// Raft's timings.
    /// The forward queue's bounds.
    pub fn forward_queue_limits(&self) -> crate::forward_queue::QueueLimits {
        crate::forward_queue::QueueLimits {
            max_bytes: self.forward_queue_max_mib << 20,
            max_host_bytes: self.forward_queue_max_host_mib << 20,
        }
    }

    pub fn raft_timings(&self) -> crate::control::RaftTimings {
        crate::control::RaftTimings {
            heartbeat: Duration::from_millis(self.raft_heartbeat_ms),
            election_timeout: Duration::from_millis(self.raft_election_timeout_ms),
        }
    }

    /// Failure detection's timings.
    pub fn detection(&self) -> crate::control::Detection {
        crate::control::Detection {
            every: Duration::from_millis(self.peer_heartbeat_ms),
            down_after: Duration::from_millis(self.down_after_ms),
        }
    }

    /// How this broker reaches its peers: TLS (trusting --peer-tls-ca, else --tls-client-ca;
    /// its own certificate as client identity when the peers ask for one) and, with auth on,
    /// a peer credential minted from its own secret.
    pub fn peer_connector(
        &self,
        secrets: Option<&[String]>,
    ) -> Result<ringwatch_net::client::Connector, BrokerError> {
        use ringwatch_net::client::{Bearer, BrokerClientConfig, Connector};
        let mutual = self.tls_client_ca.is_some();
        let client = BrokerClientConfig {
            tls_ca: self
                .peer_tls_ca
                .clone()
                .or_else(|| self.tls_client_ca.clone()),
            tls_cert: mutual.then(|| self.tls_cert.clone()).flatten(),
            tls_key: mutual.then(|| self.tls_key.clone()).flatten(),
            ..BrokerClientConfig::default()
        };
        let bad = |e: ringwatch_net::client::ClientError| {
            BrokerError::Config(format!("peer connections: {e}"))
        };
        let connector = if self.tls_cert.is_some() {
            Connector::new(&client).map_err(bad)?
        } else {
            Connector::plain()
        };
        match secrets.and_then(|s| s.first()) {
            Some(secret) => {
                let bearer = Bearer::minted(
                    secret,
                    &self.resolved_node_id(),
                    &[ringwatch_net::token::Role::Peer],
                    Duration::from_secs(3600),
                )
                .map_err(bad)?;
                Ok(connector.with_bearer(bearer))
            }
            None => Ok(connector),
        }
    }

    /// `--peer-route`s by node id (checked: `ID=URL`, each id once).
    pub fn peer_routes(&self) -> Result<crate::control::PeerRoutes, BrokerError> {
        let mut routes = crate::control::PeerRoutes::new();
        for r in &self.peer_routes {
            let bad = |why: &str| BrokerError::Config(format!("peer_routes: {r:?}: {why}"));
            let (id, url) = r.split_once('=').ok_or_else(|| bad("use ID=URL"))?;
            let (id, url) = (id.trim(), url.trim());
            if id.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad("use ID=http://host:port (or https://)"));
            }
            if routes.insert(id.to_string(), url.to_string()).is_some() {
                return Err(bad("a second route for the same broker"));
            }
        }
        Ok(routes)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours * 3600)
    }

    pub fn embedded(&self) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: (!self.ephemeral).then(|| self.data_dir.clone()),
            retention: self.retention(),
            memory_limit_samples: self.memory_limit_samples,
            block_window: Duration::from_secs(self.block_window_mins * 60),
            block_cache_bytes: self.block_cache_mib << 20,
            disk_reserve_bytes: self.disk_reserve_mib << 20,
            fsync_interval: Duration::from_millis(self.fsync_interval_ms),
            segment_max_bytes: self.segment_max_mib << 20,
            max_metric_names_per_host: self.max_metric_names_per_host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_field() {
        Config::default().validate().unwrap();
        for (total, host) in [(0, 0), (8, 0), (8, 16)] {
            let e = Config {
                forward_queue_max_mib: total,
                forward_queue_max_host_mib: host,
                ..Config::default()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(e.contains("forward_queue_max_host_mib"), "{e}");
        }
        // A names bound below what one snapshot may carry would refuse accepted snapshots.
        let e = Config {
            max_metric_names_per_host: 1000,
            ..Config::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("max_metric_names_per_host") && e.contains("max_metrics_per_snapshot"),
            "{e}"
        );
        Config {
            max_metric_names_per_host: 1000,
            max_metrics_per_snapshot: 1000,
            ..Config::default()
        }
        .validate()
        .unwrap();
        let c = Config {
            retention_hours: 0,
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("retention_hours"), "{err}");
        let c = Config {
            max_message_bytes: 10,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_message_bytes")
        );
        let c = Config {
            node_id: Some("bad id!".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("node_id"));
    }

    #[test]
    fn peer_routes_are_id_equals_url_once_each_and_need_raft() {
        let with = |routes: &[&str], raft: bool| Config {
            raft,
            peer_routes: routes.iter().map(|r| r.to_string()).collect(),
            ..Config::default()
        };
        let ok = with(&["b1=http://10.0.0.1:9093", "b2 = https://b2:9093"], true);
        ok.validate().unwrap();
        let routes = ok.peer_routes().unwrap();
        assert_eq!(routes["b2"], "https://b2:9093");
        for (routes, raft, why) in [
            (&["b1"][..], true, "ID=URL"),
            (&["b1=10.0.0.1:9093"][..], true, "http://"),
            (&["=http://a:1"][..], true, "http://"),
            (
                &["b1=http://a:1", "b1=http://b:1"][..],
                true,
                "second route",
            ),
            (&["b1=http://a:1"][..], false, "needs --raft"),
        ] {
            let e = with(routes, raft).validate().unwrap_err().to_string();
            assert!(
                e.contains("peer_routes") && e.contains(why),
                "{routes:?}: {e}"
            );
        }
    }

    #[test]
    fn a_redis_ca_file_needs_tls_urls_a_file_and_not_sentinel() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let tls = Config {
            store: StoreKind::Redis,
            redis_urls: vec!["rediss://127.0.0.1:6380".into()],
            redis_ca_file: Some(file.path().to_path_buf()),
            ..Config::default()
        };
        tls.validate().unwrap();
        let plain = Config {
            redis_urls: vec!["redis://127.0.0.1:6379".into()],
            ..tls.clone()
        };
        let e = plain.validate().unwrap_err().to_string();
        assert!(e.contains("rediss://"), "{e}");
        let missing = Config {
            redis_ca_file: Some("/nonexistent/ca.pem".into()),
            ..tls.clone()
        };
        assert!(
            missing
                .validate()
                .unwrap_err()
                .to_string()
                .contains("readable")
        );
        let sentinel = Config {
            redis_mode: RedisMode::Sentinel,
            ..tls
        };
        assert!(
            sentinel
                .validate()
                .unwrap_err()
                .to_string()
                .contains("sentinel")
        );
    }
}
