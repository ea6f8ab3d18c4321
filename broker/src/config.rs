//! The broker's one typed config. [`Config`] is nested serde types: what a YAML file holds, each
//! `Default` the one place its defaults live, `JsonSchema` so the operator's CRD embeds its parts
//! (the Raft timings, the storage), durations as people write them (`500ms`, `7d`), secrets (the
//! auth secret, the Redis password) [`Secret`]s that never print. [`Args`] is the flags and env
//! variables (`RINGWATCH_BROKER_*`): a thin layer of options laid over the config read from the
//! file (flag > env > file > default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringwatch_core::Secret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::store::{EmbeddedConfig, RedisConfig, RedisLayout, RedisMode, RedisSettings};

/// Where a broker stores samples.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In-process store with a write-ahead log and blocks in `node.data_dir`.
    #[default]
    Embedded,
    /// Redis (standalone, sentinel or cluster: `storage.redis.mode`).
    Redis,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub grpc: GrpcConfig,
    pub admin: AdminConfig,
    pub cluster: ClusterConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub hosts: HostsConfig,
}

/// This broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This broker's id in the cluster (default: `$POD_NAME`, `$HOSTNAME`).
    pub id: Option<String>,
    /// The embedded store's log and blocks; with the cluster, the Raft log and forward queue.
    pub data_dir: PathBuf,
    /// Keep everything in memory only (nothing survives a restart).
    pub ephemeral: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            data_dir: PathBuf::from(".ringwatch/broker"),
            ephemeral: false,
        }
    }
}

/// The gRPC port: ingest, query, peers, health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// The URL other brokers, agents and viz reach this broker at (default: http:// or, with
    /// TLS, https:// and the listen address; 0.0.0.0 becomes the node id).
    pub advertise: Option<String>,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most connections open at once (an agent holds one); past it a GOAWAY says so.
    pub max_connections: usize,
    /// Most concurrent ingest streams.
    pub max_streams: usize,
    /// Most concurrent streams on one connection.
    pub max_streams_per_connection: u32,
    /// A new connection must send the HTTP/2 preface within this.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub handshake_timeout: Duration,
    /// An HTTP/2 ping goes to a client quiet this long.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub keepalive: Duration,
    /// How long a keepalive ping may go unanswered.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub keepalive_timeout: Duration,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9093)),
            advertise: None,
            max_message_bytes: 4 << 20,
            max_connections: 20_000,
            max_streams: 10_000,
            max_streams_per_connection: 1024,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// TLS on the gRPC port (plaintext without a certificate).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate (PEM, leaf first, then its chain).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// A CA (PEM): every client must show a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Role credentials on the gRPC port (off without a secret).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The secret credentials are signed with (prefer `secret_file`).
    pub secret: Option<Secret>,
    /// A file of secrets, one per line, at least 32 bytes each (rotation: any of them signs).
    pub secret_file: Option<PathBuf>,
}

/// The admin HTTP port: /health, /ready, /api/cluster, /metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// The host:port other brokers and the operator reach it at (default: the listen address;
    /// 0.0.0.0 becomes the node id).
    pub advertise: Option<String>,
    /// Most connections open at once; past it a 503.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_timeout: Duration,
    /// A connection with no byte either way this long is closed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9097)),
            advertise: None,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The broker cluster: Raft, failure detection, peers, the forward queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Run the Raft control plane (a member of a cluster); without it a cluster of one.
    pub enabled: bool,
    /// Start a cluster with this broker as its first member when it belongs to none.
    pub bootstrap: bool,
    /// Bootstrap when this broker's node id is this one: a setting every broker of a
    /// StatefulSet can share (the operator names its first pod).
    pub bootstrap_node: Option<String>,
    /// Points per broker on the consistent-hash ring, set when the cluster is bootstrapped
    /// (the bootstrapping broker's value; fixed for the cluster's life).
    pub vnodes: u32,
    pub raft: RaftConfig,
    pub detection: DetectionConfig,
    /// A CA (PEM) that signed the other brokers' certificates (default: `grpc.tls.client_ca`,
    /// else the public web roots).
    pub peer_tls_ca: Option<PathBuf>,
    /// Reach peer ID at URL instead of the address it advertises (`ID=http://host:port`).
    pub peer_routes: Vec<String>,
    pub forward_queue: ForwardQueueConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            bootstrap: false,
            bootstrap_node: None,
            vnodes: 50,
            raft: RaftConfig::default(),
            detection: DetectionConfig::default(),
            peer_tls_ca: None,
            peer_routes: Vec::new(),
            forward_queue: ForwardQueueConfig::default(),
        }
    }
}

/// Raft's timings (the operator sets them from the MonitorCluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub heartbeat: Duration,
    /// The shortest election timeout (the longest is twice it); above the heartbeat.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub election_timeout: Duration,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat: Duration::from_millis(500),
            election_timeout: Duration::from_millis(1000),
        }
    }
}

/// How the leader finds a broker down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// How often the leader checks each broker's health (at most 1s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub peer_heartbeat: Duration,
    /// A broker silent this long is marked down (out of the ring; still a voter).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub down_after: Duration,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            peer_heartbeat: Duration::from_millis(500),
            down_after: Duration::from_secs(3),
        }
    }
}

/// The forward queue on disk (batches whose owner did not take them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardQueueConfig {
    /// Most MiB of batches in it; past it such batches are not acknowledged.
    pub max_mib: u64,
    /// Most MiB of one host's batches.
    pub max_host_mib: u64,
}

impl Default for ForwardQueueConfig {
    fn default() -> Self {
        ForwardQueueConfig {
            max_mib: 256,
            max_host_mib: 4,
        }
    }
}

/// Where and how long samples are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StoreKind,
    /// How long samples are kept.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retention: Duration,
    pub embedded: EmbeddedStoreConfig,
    pub redis: RedisStoreConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StoreKind::Embedded,
            retention: Duration::from_secs(168 * 3600),
            embedded: EmbeddedStoreConfig::default(),
            redis: RedisStoreConfig::default(),
        }
    }
}

/// The embedded store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedStoreConfig {
    /// Most samples the head holds in memory; older rows are then cut to blocks on disk (with
    /// `node.ephemeral`, the oldest are evicted).
    pub memory_limit_samples: u64,
    /// Rows older than the last whole window of this length are cut to a block.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub block_window: Duration,
    /// Decoded block columns kept in memory for reads, in MiB.
    pub block_cache_mib: u64,
    /// Free space kept on the data directory's disk, in MiB: below it ingest is refused.
    pub disk_reserve_mib: u64,
    /// How often the log is fsynced; 0s fsyncs every batch before acknowledging it.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub fsync_interval: Duration,
    /// Size at which a log segment is closed, in MiB.
    pub segment_max_mib: u64,
}

impl Default for EmbeddedStoreConfig {
    fn default() -> Self {
        EmbeddedStoreConfig {
            memory_limit_samples: 20_000_000,
            block_window: Duration::from_secs(3600),
            block_cache_mib: 64,
            disk_reserve_mib: 64,
            fsync_interval: Duration::from_secs(1),
            segment_max_mib: 64,
        }
    }
}

/// The Redis store (standalone, sentinel or cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RedisStoreConfig {
    /// The server, the sentinels, or cluster seed nodes (`redis://`, `rediss://` for TLS).
    pub urls: Vec<String>,
    pub mode: RedisMode,
    /// The sentinel master name.
    pub master_name: String,
    /// ACL user name.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A CA (PEM) to trust for rediss:// servers (standalone and cluster modes).
    pub ca_file: Option<PathBuf>,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Connect and response timeout.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// How long a write is retried before it is given up (and not acknowledged).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub write_retry: Duration,
    /// Most snapshots waiting on Redis at once; beyond it writes are refused.
    pub buffer_snapshots: usize,
    /// Replicas that must have each write (WAIT) before agents are acknowledged.
    pub min_replicas: u32,
    pub layout: RedisLayout,
    /// Compact layout: how long a window stays open after its last write, once it is over.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub chunk_grace: Duration,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        RedisStoreConfig {
            urls: Vec::new(),
            mode: RedisMode::Standalone,
            master_name: "mymaster".into(),
            username: None,
            password: None,
            ca_file: None,
            key_prefix: "monitor:".into(),
            timeout: Duration::from_secs(2),
            write_retry: Duration::from_secs(10),
            buffer_snapshots: 100_000,
            min_replicas: 0,
            layout: RedisLayout::Compact,
            chunk_grace: Duration::from_secs(60),
        }
    }
}

/// What one request may carry or ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most snapshots in one ingest batch.
    pub max_batch_snapshots: usize,
    /// Most metrics in one snapshot.
    pub max_metrics_per_snapshot: usize,
    /// Most distinct metric names one host may hold (a snapshot past it is refused by name).
    pub max_metric_names_per_host: usize,
    /// How far in the future a timestamp may be (clock skew allowance).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_future_skew: Duration,
    /// Most snapshots one range query returns.
    pub query_max_snapshots: usize,
    /// Most values one range answer carries; a longer one ends early with `truncated`.
    pub query_max_cells: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_batch_snapshots: 1024,
            max_metrics_per_snapshot: 4096,
            max_metric_names_per_host: 4096,
            max_future_skew: Duration::from_secs(300),
            query_max_snapshots: 200_000,
            query_max_cells: 4_000_000,
        }
    }
}

/// When a host is live, stale or gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HostsConfig {
    /// A host is stale after this many missed intervals.
    pub stale_after_intervals: u32,
    /// A host is gone after this long unseen.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub gone_after: Duration,
}

impl Default for HostsConfig {
    fn default() -> Self {
        HostsConfig {
            stale_after_intervals: 3,
            gone_after: Duration::from_secs(600),
        }
    }
}

/// The broker's flags and env variables: each laid over the config (file or default) when
/// given. Defaults are [`Config`]'s (README lists them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// This broker's id in the cluster (default: the hostname).
    #[arg(long, env = "RINGWATCH_BROKER_NODE_ID")]
    pub node_id: Option<String>,
    /// gRPC address (ingest, query, health). Port 0 picks a free port.
    #[arg(long, env = "RINGWATCH_BROKER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP address (/health, /ready, /api/cluster, /metrics).
    #[arg(long, env = "RINGWATCH_BROKER_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory of the embedded store's log.
    #[arg(long, env = "RINGWATCH_BROKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep everything in memory only (nothing survives a restart).
    #[arg(long, env = "RINGWATCH_BROKER_EPHEMERAL")]
    pub ephemeral: bool,
    /// How long samples are kept, in hours.
    #[arg(long, env = "RINGWATCH_BROKER_RETENTION_HOURS")]
    pub retention_hours: Option<u64>,
    /// Most samples the embedded store's head holds in memory. With a data directory, older
    /// rows are then cut to compressed blocks on disk (nothing is lost); with --ephemeral the
    /// oldest are evicted.
    #[arg(long, env = "RINGWATCH_BROKER_MEMORY_LIMIT_SAMPLES")]
    pub memory_limit_samples: Option<u64>,
    /// Rows older than the last whole window of this many minutes are cut from the head to a
    /// compressed block on disk.
    #[arg(long, env = "RINGWATCH_BROKER_BLOCK_WINDOW_MINS")]
    pub block_window_mins: Option<u64>,
    /// Decoded block columns kept in memory for reads, in MiB.
    #[arg(long, env = "RINGWATCH_BROKER_BLOCK_CACHE_MIB")]
    pub block_cache_mib: Option<u64>,
    /// Free space kept on the data directory's disk, in MiB: below it, ingest is refused (not
    /// acknowledged; agents keep their data) until space is freed.
    #[arg(long, env = "RINGWATCH_BROKER_DISK_RESERVE_MIB")]
    pub disk_reserve_mib: Option<u64>,
    /// fsync interval of the log in ms; 0 = fsync every batch before acknowledging it.
    #[arg(long, env = "RINGWATCH_BROKER_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Size at which a log segment is closed, in MiB.
    #[arg(long, env = "RINGWATCH_BROKER_SEGMENT_MAX_MIB")]
    pub segment_max_mib: Option<u64>,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most snapshots in one ingest batch.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_BATCH_SNAPSHOTS")]
    pub max_batch_snapshots: Option<usize>,
    /// Most distinct metric names one host may hold in the embedded store (a real agent sends
    /// about 42 plus per-core, per-disk and per-interface detail); a snapshot that would pass
    /// it is refused by name, and no other host's data is touched.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_METRIC_NAMES_PER_HOST")]
    pub max_metric_names_per_host: Option<usize>,
    /// Most metrics in one snapshot.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_METRICS_PER_SNAPSHOT")]
    pub max_metrics_per_snapshot: Option<usize>,
    /// How far in the future a timestamp may be, in seconds (clock skew allowance).
    #[arg(long, env = "RINGWATCH_BROKER_MAX_FUTURE_SKEW_SECS")]
    pub max_future_skew_secs: Option<u64>,
    /// Most snapshots one range query returns.
    #[arg(long, env = "RINGWATCH_BROKER_QUERY_MAX_SNAPSHOTS")]
    pub query_max_snapshots: Option<usize>,
    /// Most values one range answer carries (timestamps included; whole chunks, at least
    /// one); a longer answer ends early with `truncated` on its last chunk.
    #[arg(long, env = "RINGWATCH_BROKER_QUERY_MAX_CELLS")]
    pub query_max_cells: Option<usize>,
    /// A host is stale after this many missed intervals.
    #[arg(long, env = "RINGWATCH_BROKER_STALE_AFTER_INTERVALS")]
    pub stale_after_intervals: Option<u32>,
    /// A host is gone after this many seconds unseen.
    #[arg(long, env = "RINGWATCH_BROKER_GONE_AFTER_SECS")]
    pub gone_after_secs: Option<u64>,
    /// Most concurrent ingest streams.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_STREAMS")]
    pub max_streams: Option<usize>,
    /// Most gRPC connections open at once (an agent holds one); past it a new connection is
    /// refused with a GOAWAY saying so. Keep it below the process's open-file limit.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most concurrent gRPC streams on one connection.
    #[arg(long, env = "RINGWATCH_BROKER_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// A new gRPC connection must send the HTTP/2 preface within this many seconds.
    #[arg(long, env = "RINGWATCH_BROKER_HANDSHAKE_TIMEOUT_SECS")]
    pub handshake_timeout_secs: Option<u64>,
    /// An HTTP/2 ping goes to a gRPC client quiet this many seconds (keepalive); one that does
    /// not answer within --keepalive-timeout-secs is closed, freeing what it held.
    #[arg(long, env = "RINGWATCH_BROKER_KEEPALIVE_SECS")]
    pub keepalive_secs: Option<u64>,
    /// How long a keepalive ping may go unanswered.
    #[arg(long, env = "RINGWATCH_BROKER_KEEPALIVE_TIMEOUT_SECS")]
    pub keepalive_timeout_secs: Option<u64>,
    /// Most admin HTTP connections open at once; past it a 503.
    #[arg(long, env = "RINGWATCH_BROKER_ADMIN_MAX_CONNECTIONS")]
    pub admin_max_connections: Option<usize>,
    /// An HTTP request's headers must arrive within this many seconds.
    #[arg(long, env = "RINGWATCH_BROKER_HTTP_HEADER_TIMEOUT_SECS")]
    pub http_header_timeout_secs: Option<u64>,
    /// An HTTP connection with no byte either way for this many seconds is closed.
    #[arg(long, env = "RINGWATCH_BROKER_HTTP_IDLE_TIMEOUT_SECS")]
    pub http_idle_timeout_secs: Option<u64>,
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
    pub auth_secret: Option<Secret>,
    /// Run the Raft control plane: this broker is one of a cluster that agrees on members, the
    /// ring, the host registry and the cluster config (its log under <data-dir>/raft). Without
    /// it the broker is a cluster of one.
    #[arg(long, env = "RINGWATCH_BROKER_RAFT")]
    pub raft: bool,
    /// With --raft: when this broker belongs to no cluster yet, start one with it as the first
    /// member (give it to exactly one broker; the others join through the admin API).
    #[arg(long, env = "RINGWATCH_BROKER_BOOTSTRAP")]
    pub bootstrap: bool,
    /// With --raft: bootstrap when this broker's node id is this one (one setting shared by
    /// every broker; the operator gives its first pod's name).
    #[arg(long, env = "RINGWATCH_BROKER_BOOTSTRAP_NODE")]
    pub bootstrap_node: Option<String>,
    /// Points per broker on the ring, set when the cluster is bootstrapped [default: 50].
    #[arg(long, env = "RINGWATCH_BROKER_VNODES")]
    pub vnodes: Option<u32>,
    /// The gRPC URL other brokers, agents and viz reach this broker at (default: http:// or,
    /// with --tls-cert, https:// and the listen address; 0.0.0.0 becomes the node id).
    #[arg(long, env = "RINGWATCH_BROKER_ADVERTISE_GRPC")]
    pub advertise_grpc: Option<String>,
    /// The admin HTTP address (host:port) other brokers and the operator reach this broker at
    /// (default: the admin listen address; 0.0.0.0 becomes the node id).
    #[arg(long, env = "RINGWATCH_BROKER_ADVERTISE_ADMIN")]
    pub advertise_admin: Option<String>,
    /// Raft heartbeat, in milliseconds.
    #[arg(long, env = "RINGWATCH_BROKER_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,
    /// Raft's shortest election timeout, in milliseconds (the longest is twice it); above the
    /// heartbeat.
    #[arg(long, env = "RINGWATCH_BROKER_RAFT_ELECTION_TIMEOUT_MS")]
    pub raft_election_timeout_ms: Option<u64>,
    /// How often the leader checks each broker's health, in milliseconds (at most 1000).
    #[arg(long, env = "RINGWATCH_BROKER_PEER_HEARTBEAT_MS")]
    pub peer_heartbeat_ms: Option<u64>,
    /// A broker silent this long (milliseconds) is marked down: out of the ring, its hosts to
    /// their next owners; still a voter until removed.
    #[arg(long, env = "RINGWATCH_BROKER_DOWN_AFTER_MS")]
    pub down_after_ms: Option<u64>,
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
    #[arg(long, env = "RINGWATCH_BROKER_FORWARD_QUEUE_MAX_MIB")]
    pub forward_queue_max_mib: Option<u64>,
    /// Most MiB of one host's batches in the forward queue (one host's backlog never takes
    /// another's room).
    #[arg(long, env = "RINGWATCH_BROKER_FORWARD_QUEUE_MAX_HOST_MIB")]
    pub forward_queue_max_host_mib: Option<u64>,
    /// Where samples are stored.
    #[arg(long, env = "RINGWATCH_BROKER_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// Redis URL (repeat, or comma-separated in env): the server, the sentinels, or cluster
    /// seed nodes. `rediss://` uses TLS.
    #[arg(
        long = "redis-url",
        env = "RINGWATCH_BROKER_REDIS_URLS",
        value_delimiter = ','
    )]
    pub redis_urls: Vec<String>,
    /// Redis deployment: standalone, sentinel or cluster.
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_MODE", value_enum)]
    pub redis_mode: Option<RedisMode>,
    /// The sentinel master name.
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_MASTER_NAME")]
    pub redis_master_name: Option<String>,
    /// Redis ACL user name.
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_USERNAME")]
    pub redis_username: Option<String>,
    /// Redis password (prefer the env variable to a flag).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,
    /// PEM CA certificate to trust for rediss:// servers whose CA is not a public one
    /// (standalone and cluster modes).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every Redis key.
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_KEY_PREFIX")]
    pub redis_key_prefix: Option<String>,
    /// Redis connect and response timeout in ms.
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// How long a write to Redis is retried before it is given up (and not acknowledged).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_WRITE_RETRY_SECS")]
    pub redis_write_retry_secs: Option<u64>,
    /// Most snapshots waiting on Redis at once; beyond it writes are refused (not acknowledged).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_BUFFER_SNAPSHOTS")]
    pub redis_buffer_snapshots: Option<usize>,
    /// Replicas that must have each write (Redis WAIT) before agents are acknowledged, so a
    /// fail-over loses nothing acknowledged. Every mode: in a cluster, WAIT runs on the master
    /// that took the batch (one host's keys share a slot).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_MIN_REPLICAS")]
    pub redis_min_replicas: Option<u32>,
    /// Redis key layout: `compact` (compressed chunks per host and 10-minute window, a few
    /// bytes a sample), `seed` (the seed system's keys, SPEC S4, for tools that read them), or
    /// `both` (writes both, reads the seed layout: for migrating).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_LAYOUT", value_enum)]
    pub redis_layout: Option<RedisLayout>,
    /// Compact layout: seconds a window stays open after its last write, once it is over (rows
    /// arriving later are merged into its chunk, which costs more).
    #[arg(long, env = "RINGWATCH_BROKER_REDIS_CHUNK_GRACE_SECS")]
    pub redis_chunk_grace_secs: Option<u64>,
}

impl Args {
    /// Lays every flag and env variable given over `c`.
    pub fn apply(self, c: &mut Config) {
        use ringwatch_core::config::overlay as set;
        use ringwatch_core::config::overlay_opt as some;
        let secs = |v: Option<u64>| v.map(Duration::from_secs);
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        some(&mut c.node.id, self.node_id);
        set(&mut c.grpc.listen, self.listen);
        set(&mut c.admin.listen, self.admin_listen);
        set(&mut c.node.data_dir, self.data_dir);
        c.node.ephemeral |= self.ephemeral;
        set(
            &mut c.storage.retention,
            secs(self.retention_hours.map(|h| h.saturating_mul(3600))),
        );
        let e = &mut c.storage.embedded;
        set(&mut e.memory_limit_samples, self.memory_limit_samples);
        set(
            &mut e.block_window,
            secs(self.block_window_mins.map(|m| m.saturating_mul(60))),
        );
        set(&mut e.block_cache_mib, self.block_cache_mib);
        set(&mut e.disk_reserve_mib, self.disk_reserve_mib);
        set(&mut e.fsync_interval, ms(self.fsync_interval_ms));
        set(&mut e.segment_max_mib, self.segment_max_mib);
        let l = &mut c.limits;
        set(&mut l.max_batch_snapshots, self.max_batch_snapshots);
        set(
            &mut l.max_metric_names_per_host,
            self.max_metric_names_per_host,
        );
        set(
            &mut l.max_metrics_per_snapshot,
            self.max_metrics_per_snapshot,
        );
        set(&mut l.max_future_skew, secs(self.max_future_skew_secs));
        set(&mut l.query_max_snapshots, self.query_max_snapshots);
        set(&mut l.query_max_cells, self.query_max_cells);
        set(
            &mut c.hosts.stale_after_intervals,
            self.stale_after_intervals,
        );
        set(&mut c.hosts.gone_after, secs(self.gone_after_secs));
        let g = &mut c.grpc;
        set(&mut g.max_message_bytes, self.max_message_bytes);
        set(&mut g.max_streams, self.max_streams);
        set(&mut g.max_connections, self.max_connections);
        set(
            &mut g.max_streams_per_connection,
            self.max_streams_per_connection,
        );
        set(&mut g.handshake_timeout, secs(self.handshake_timeout_secs));
        set(&mut g.keepalive, secs(self.keepalive_secs));
        set(&mut g.keepalive_timeout, secs(self.keepalive_timeout_secs));
        if self.tls_cert.is_some() {
            g.tls.cert = self.tls_cert;
            g.tls.key = self.tls_key;
        }
        some(&mut g.tls.client_ca, self.tls_client_ca);
        if self.auth_secret_file.is_some() {
            g.auth.secret_file = self.auth_secret_file;
            g.auth.secret = None;
        }
        if self.auth_secret.is_some() {
            g.auth.secret = self.auth_secret;
            g.auth.secret_file = None;
        }
        some(&mut g.advertise, self.advertise_grpc);
        set(&mut c.admin.max_connections, self.admin_max_connections);
        set(
            &mut c.admin.header_timeout,
            secs(self.http_header_timeout_secs),
        );
        set(&mut c.admin.idle_timeout, secs(self.http_idle_timeout_secs));
        some(&mut c.admin.advertise, self.advertise_admin);
        let k = &mut c.cluster;
        k.enabled |= self.raft;
        k.bootstrap |= self.bootstrap;
        some(&mut k.bootstrap_node, self.bootstrap_node);
        set(&mut k.vnodes, self.vnodes);
        set(&mut k.raft.heartbeat, ms(self.raft_heartbeat_ms));
        set(
            &mut k.raft.election_timeout,
            ms(self.raft_election_timeout_ms),
        );
        set(&mut k.detection.peer_heartbeat, ms(self.peer_heartbeat_ms));
        set(&mut k.detection.down_after, ms(self.down_after_ms));
        some(&mut k.peer_tls_ca, self.peer_tls_ca);
        if !self.peer_routes.is_empty() {
            k.peer_routes = self.peer_routes;
        }
        set(&mut k.forward_queue.max_mib, self.forward_queue_max_mib);
        set(
            &mut k.forward_queue.max_host_mib,
            self.forward_queue_max_host_mib,
        );
        set(&mut c.storage.kind, self.store);
        let r = &mut c.storage.redis;
        if !self.redis_urls.is_empty() {
            r.urls = self.redis_urls;
        }
        set(&mut r.mode, self.redis_mode);
        set(&mut r.master_name, self.redis_master_name);
        some(&mut r.username, self.redis_username);
        some(&mut r.password, self.redis_password);
        some(&mut r.ca_file, self.redis_ca_file);
        set(&mut r.key_prefix, self.redis_key_prefix);
        set(&mut r.timeout, ms(self.redis_timeout_ms));
        set(&mut r.write_retry, secs(self.redis_write_retry_secs));
        set(&mut r.buffer_snapshots, self.redis_buffer_snapshots);
        set(&mut r.min_replicas, self.redis_min_replicas);
        set(&mut r.layout, self.redis_layout);
        set(&mut r.chunk_grace, secs(self.redis_chunk_grace_secs));
    }
}

impl Config {
    /// The config from a YAML file's mapping (nested as [`Config`]; absent fields default).
    pub fn from_yaml_value(v: serde_json::Value) -> Result<Config, BrokerError> {
        serde_json::from_value(v).map_err(|e| BrokerError::Config(format!("config file: {e}")))
    }

    /// The gRPC listener's limits.
    pub fn grpc_limits(&self) -> ringwatch_net::GrpcLimits {
        ringwatch_net::GrpcLimits {
            max_connections: self.grpc.max_connections,
            handshake_timeout: self.grpc.handshake_timeout,
        }
    }

    /// The gRPC port's TLS config, read and checked now; `None` for plaintext.
    pub fn server_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<ringwatch_net::tls::ServerConfig>>, BrokerError> {
        let tls = &self.grpc.tls;
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let files = ringwatch_net::tls::ServerTlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: tls.client_ca.clone(),
                };
                ringwatch_net::tls::server_config(&files)
                    .map(Some)
                    .map_err(|e| BrokerError::Config(format!("grpc.tls: {e}")))
            }
            (None, None) if tls.client_ca.is_some() => Err(BrokerError::Config(
                "grpc.tls.client_ca needs grpc.tls.cert and grpc.tls.key".into(),
            )),
            (None, None) => Ok(None),
            _ => Err(BrokerError::Config(
                "grpc.tls.cert and grpc.tls.key go together".into(),
            )),
        }
    }

    /// The secrets credentials are checked against; `None` when auth is off.
    pub fn auth_secrets(&self) -> Result<Option<Vec<String>>, BrokerError> {
        let auth = &self.grpc.auth;
        ringwatch_net::token::load_secrets(
            auth.secret.as_ref().map(Secret::expose),
            auth.secret_file.as_deref(),
        )
        .map_err(|e| BrokerError::Config(format!("grpc.auth: {e}")))
    }

    /// The admin HTTP listener's limits.
    pub fn admin_limits(&self) -> ringwatch_net::HttpLimits {
        ringwatch_net::HttpLimits {
            max_connections: self.admin.max_connections,
            header_timeout: self.admin.header_timeout,
            idle_timeout: self.admin.idle_timeout,
        }
    }

    /// Checks every field; the message names the field and what is allowed.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |m: String| Err(BrokerError::Config(m));
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        if self
            .node
            .id
            .as_deref()
            .is_some_and(|n| crate::validate::check_host_id(n).is_err())
        {
            return bad("node.id: 1–253 characters of [A-Za-z0-9._-]".into());
        }
        let k = &self.cluster;
        if k.enabled && self.node.ephemeral {
            return bad(
                "cluster.enabled (--raft): a cluster member keeps its Raft log on disk; drop --ephemeral"
                    .into(),
            );
        }
        if (k.bootstrap || k.bootstrap_node.is_some()) && !k.enabled {
            return bad("cluster.bootstrap: needs --raft (cluster.enabled)".into());
        }
        if k.bootstrap_node.as_deref() == Some("") {
            return bad("cluster.bootstrap_node: must not be empty".into());
        }
        if !(1..=1000).contains(&k.vnodes) {
            return bad(format!("cluster.vnodes: {} is not in 1..=1000", k.vnodes));
        }
        if !k.peer_routes.is_empty() && !k.enabled {
            return bad("cluster.peer_routes: needs --raft (cluster.enabled)".into());
        }
        self.peer_routes()?;
        let q = &k.forward_queue;
        if q.max_mib == 0 || q.max_host_mib == 0 || q.max_host_mib > q.max_mib {
            return bad(format!(
                "cluster.forward_queue.max_host_mib: {} must be at least 1 and at most cluster.forward_queue.max_mib ({}, at least 1)",
                q.max_host_mib, q.max_mib
            ));
        }
        let raft = &k.raft;
        if !(ms(50)..=s(60)).contains(&raft.heartbeat) {
            return bad(format!(
                "cluster.raft.heartbeat: {} is out of range 50ms..=1m",
                fmt(raft.heartbeat)
            ));
        }
        if raft.election_timeout <= raft.heartbeat || raft.election_timeout > s(300) {
            return bad(format!(
                "cluster.raft.election_timeout: {} must exceed cluster.raft.heartbeat ({}) and be at most 5m",
                fmt(raft.election_timeout),
                fmt(raft.heartbeat)
            ));
        }
        let d = &k.detection;
        if !(ms(50)..=s(1)).contains(&d.peer_heartbeat) {
            return bad(format!(
                "cluster.detection.peer_heartbeat: {} is out of range 50ms..=1s",
                fmt(d.peer_heartbeat)
            ));
        }
        if d.down_after < 2 * d.peer_heartbeat || d.down_after > s(600) {
            return bad(format!(
                "cluster.detection.down_after: {} must be at least twice cluster.detection.peer_heartbeat ({}) and at most 10m",
                fmt(d.down_after),
                fmt(d.peer_heartbeat)
            ));
        }
        if let Some(a) = &self.grpc.advertise
            && !(a.starts_with("http://") || a.starts_with("https://"))
        {
            return bad(format!(
                "grpc.advertise: {a:?} is not an http:// or https:// URL"
            ));
        }
        let retention = self.storage.retention;
        if !(s(3600)..=s(3650 * 86_400)).contains(&retention) {
            return bad(format!(
                "storage.retention: {} is out of range 1h..=3650days",
                fmt(retention)
            ));
        }
        let e = &self.storage.embedded;
        if e.memory_limit_samples < 10_000 {
            return bad(format!(
                "storage.embedded.memory_limit_samples: {} is below the minimum 10000",
                e.memory_limit_samples
            ));
        }
        if !(s(60)..=s(86_400)).contains(&e.block_window)
            || !e.block_window.as_millis().is_multiple_of(60_000)
        {
            return bad(format!(
                "storage.embedded.block_window: {} must be whole minutes, 1m..=1day",
                fmt(e.block_window)
            ));
        }
        if e.block_cache_mib > 1 << 20 {
            return bad(format!(
                "storage.embedded.block_cache_mib: {} is above the maximum 1048576",
                e.block_cache_mib
            ));
        }
        if e.fsync_interval > s(60) {
            return bad(format!(
                "storage.embedded.fsync_interval: {} is above the maximum 1m",
                fmt(e.fsync_interval)
            ));
        }
        if !(1..=1024).contains(&e.segment_max_mib) {
            return bad(format!(
                "storage.embedded.segment_max_mib: {} is out of range 1..=1024",
                e.segment_max_mib
            ));
        }
        let g = &self.grpc;
        if !(64 << 10..=64 << 20).contains(&g.max_message_bytes) {
            return bad(format!(
                "grpc.max_message_bytes: {} is out of range 65536..=67108864",
                g.max_message_bytes
            ));
        }
        let l = &self.limits;
        if !(1..=100_000).contains(&l.max_batch_snapshots) {
            return bad(format!(
                "limits.max_batch_snapshots: {} is out of range 1..=100000",
                l.max_batch_snapshots
            ));
        }
        if !(16..=1_000_000).contains(&l.max_metric_names_per_host) {
            return bad(format!(
                "limits.max_metric_names_per_host: {} is out of range 16..=1000000",
                l.max_metric_names_per_host
            ));
        }
        if l.max_metric_names_per_host < l.max_metrics_per_snapshot {
            return bad(format!(
                "limits.max_metric_names_per_host ({}) is below limits.max_metrics_per_snapshot ({}): \
                 a snapshot the broker accepts would always be refused; raise the first or lower the second",
                l.max_metric_names_per_host, l.max_metrics_per_snapshot
            ));
        }
        if !(1..=100_000).contains(&l.max_metrics_per_snapshot) {
            return bad(format!(
                "limits.max_metrics_per_snapshot: {} is out of range 1..=100000",
                l.max_metrics_per_snapshot
            ));
        }
        if l.query_max_snapshots == 0 {
            return bad("limits.query_max_snapshots: must be at least 1".into());
        }
        if l.query_max_cells < 100_000 {
            return bad(format!(
                "limits.query_max_cells: {} is below the minimum 100000 (a chunk holds up to 65536)",
                l.query_max_cells
            ));
        }
        if self.hosts.stale_after_intervals == 0
            || self.hosts.gone_after < s(1)
            || g.max_streams == 0
        {
            return bad(
                "hosts.stale_after_intervals, hosts.gone_after (1s) and grpc.max_streams must be at least 1"
                    .into(),
            );
        }
        if !(1..=1_000_000).contains(&g.max_connections)
            || !(1..=1_000_000).contains(&self.admin.max_connections)
        {
            return bad(format!(
                "grpc.max_connections ({}) and admin.max_connections ({}) must be 1..=1000000",
                g.max_connections, self.admin.max_connections
            ));
        }
        if !(1..=100_000).contains(&g.max_streams_per_connection) {
            return bad(format!(
                "grpc.max_streams_per_connection: {} is out of range 1..=100000",
                g.max_streams_per_connection
            ));
        }
        for (field, v) in [
            ("grpc.handshake_timeout", g.handshake_timeout),
            ("grpc.keepalive", g.keepalive),
            ("grpc.keepalive_timeout", g.keepalive_timeout),
            ("admin.header_timeout", self.admin.header_timeout),
            ("admin.idle_timeout", self.admin.idle_timeout),
        ] {
            if !(s(1)..=s(3600)).contains(&v) {
                return bad(format!("{field}: {} is out of range 1s..=1h", fmt(v)));
            }
        }
        let r = &self.storage.redis;
        if self.storage.kind == StoreKind::Redis {
            if r.urls.is_empty() {
                return bad(
                    "storage.redis.urls: at least one --redis-url is needed with --store redis"
                        .into(),
                );
            }
            if let Some(u) = r
                .urls
                .iter()
                .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
            {
                return bad(format!(
                    "storage.redis.urls: {:?} must start with redis:// or rediss:// (TLS)",
                    crate::store::redis_conn::redact(u)
                ));
            }
            if let Some(ca) = &r.ca_file {
                if r.mode == RedisMode::Sentinel {
                    return bad("storage.redis.ca_file: not supported in sentinel mode yet".into());
                }
                if r.urls.iter().any(|u| !u.starts_with("rediss://")) {
                    return bad(format!(
                        "storage.redis.ca_file: {} is given but not every --redis-url is rediss:// (TLS)",
                        ca.display()
                    ));
                }
                if !ca.is_file() {
                    return bad(format!(
                        "storage.redis.ca_file: {} is not a readable file",
                        ca.display()
                    ));
                }
            }
            if r.mode == RedisMode::Sentinel && r.master_name.is_empty() {
                return bad("storage.redis.master_name: needed in sentinel mode".into());
            }
        }
        let p = &r.key_prefix;
        if p.is_empty() || p.len() > 64 || p.contains(['{', '}', ' ']) {
            return bad(format!(
                "storage.redis.key_prefix: {p:?} must be 1–64 characters without braces or spaces"
            ));
        }
        if !(ms(100)..=s(60)).contains(&r.timeout) {
            return bad(format!(
                "storage.redis.timeout: {} is out of range 100ms..=1m",
                fmt(r.timeout)
            ));
        }
        if r.buffer_snapshots < l.max_batch_snapshots {
            return bad(format!(
                "storage.redis.buffer_snapshots: {} is below limits.max_batch_snapshots ({}): a full batch could never be written",
                r.buffer_snapshots, l.max_batch_snapshots
            ));
        }
        if r.chunk_grace > s(86_400) {
            return bad(format!(
                "storage.redis.chunk_grace: {} is out of range 0s..=1day",
                fmt(r.chunk_grace)
            ));
        }
        if !(s(1)..=s(3600)).contains(&r.write_retry) || r.buffer_snapshots == 0 {
            return bad(
                "storage.redis.write_retry must be 1s..=1h and storage.redis.buffer_snapshots at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn redis(&self) -> RedisConfig {
        let r = &self.storage.redis;
        RedisConfig {
            settings: RedisSettings {
                mode: r.mode,
                urls: r.urls.clone(),
                master_name: r.master_name.clone(),
                username: r.username.clone(),
                password: r.password.as_ref().map(|p| p.expose().to_string()),
                connect_timeout: r.timeout,
                response_timeout: r.timeout,
                ca_file: r.ca_file.clone(),
            },
            key_prefix: r.key_prefix.clone(),
            retention: self.retention(),
            write_retry: r.write_retry,
            buffer_snapshots: r.buffer_snapshots,
            min_replicas: r.min_replicas,
            layout: r.layout,
            chunk_grace: r.chunk_grace,
        }
    }

    /// The node id, or the hostname.
    pub fn resolved_node_id(&self) -> String {
        self.node.id.clone().unwrap_or_else(|| {
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
        let scheme = if self.grpc.tls.cert.is_some() {
            "https"
        } else {
            "http"
        };
        let grpc_addr = self
            .grpc
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", host(grpc)));
        let admin_addr = self.admin.advertise.clone().unwrap_or_else(|| host(admin));
        (grpc_addr, admin_addr)
    }

    /// The forward queue's bounds.
    pub fn forward_queue_limits(&self) -> crate::forward_queue::QueueLimits {
        let q = &self.cluster.forward_queue;
        crate::forward_queue::QueueLimits {
            max_bytes: q.max_mib << 20,
            max_host_bytes: q.max_host_mib << 20,
        }
    }

    /// Raft's timings.
    pub fn raft_timings(&self) -> crate::control::RaftTimings {
        crate::control::RaftTimings {
            heartbeat: self.cluster.raft.heartbeat,
            election_timeout: self.cluster.raft.election_timeout,
        }
    }

    /// Failure detection's timings.
    pub fn detection(&self) -> crate::control::Detection {
        crate::control::Detection {
            every: self.cluster.detection.peer_heartbeat,
            down_after: self.cluster.detection.down_after,
        }
    }

    /// How this broker reaches its peers: TLS (trusting `cluster.peer_tls_ca`, else
    /// `grpc.tls.client_ca`; its own certificate as client identity when the peers ask for
    /// one) and, with auth on, a peer credential minted from its own secret.
    pub fn peer_connector(
        &self,
        secrets: Option<&[String]>,
    ) -> Result<ringwatch_net::client::Connector, BrokerError> {
        use ringwatch_net::client::{Bearer, BrokerClientConfig, Connector};
        let tls = &self.grpc.tls;
        let mutual = tls.client_ca.is_some();
        let client = BrokerClientConfig {
            tls_ca: self
                .cluster
                .peer_tls_ca
                .clone()
                .or_else(|| tls.client_ca.clone()),
            tls_cert: mutual.then(|| tls.cert.clone()).flatten(),
            tls_key: mutual.then(|| tls.key.clone()).flatten(),
            ..BrokerClientConfig::default()
        };
        let bad = |e: ringwatch_net::client::ClientError| {
            BrokerError::Config(format!("peer connections: {e}"))
        };
        let connector = if tls.cert.is_some() {
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

    /// `cluster.peer_routes` by node id (checked: `ID=URL`, each id once).
    pub fn peer_routes(&self) -> Result<crate::control::PeerRoutes, BrokerError> {
        let mut routes = crate::control::PeerRoutes::new();
        for r in &self.cluster.peer_routes {
            let bad = |why: &str| BrokerError::Config(format!("cluster.peer_routes: {r:?}: {why}"));
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
        self.storage.retention
    }

    pub fn embedded(&self) -> EmbeddedConfig {
        let e = &self.storage.embedded;
        EmbeddedConfig {
            data_dir: (!self.node.ephemeral).then(|| self.node.data_dir.clone()),
            retention: self.retention(),
            memory_limit_samples: e.memory_limit_samples,
            block_window: e.block_window,
            block_cache_bytes: e.block_cache_mib << 20,
            disk_reserve_bytes: e.disk_reserve_mib << 20,
            fsync_interval: e.fsync_interval,
            segment_max_bytes: e.segment_max_mib << 20,
            max_metric_names_per_host: self.limits.max_metric_names_per_host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn with(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c
    }

    fn refused(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_field() {
        Config::default().validate().unwrap();
        for (total, host) in [(0, 0), (8, 0), (8, 16)] {
            let e = refused(&with(|c| {
                c.cluster.forward_queue.max_mib = total;
                c.cluster.forward_queue.max_host_mib = host;
            }));
            assert!(e.contains("cluster.forward_queue.max_host_mib"), "{e}");
        }
        // A names bound below what one snapshot may carry would refuse accepted snapshots.
        let e = refused(&with(|c| c.limits.max_metric_names_per_host = 1000));
        assert!(
            e.contains("limits.max_metric_names_per_host")
                && e.contains("limits.max_metrics_per_snapshot"),
            "{e}"
        );
        with(|c| {
            c.limits.max_metric_names_per_host = 1000;
            c.limits.max_metrics_per_snapshot = 1000;
        })
        .validate()
        .unwrap();
        let e = refused(&with(|c| c.storage.retention = Duration::ZERO));
        assert!(e.contains("storage.retention"), "{e}");
        let e = refused(&with(|c| c.grpc.max_message_bytes = 10));
        assert!(e.contains("grpc.max_message_bytes"), "{e}");
        let e = refused(&with(|c| c.node.id = Some("bad id!".into())));
        assert!(e.contains("node.id"), "{e}");
        let e = refused(&with(|c| {
            c.cluster.raft.election_timeout = Duration::from_millis(400)
        }));
        assert!(e.contains("cluster.raft.election_timeout"), "{e}");
    }

    #[test]
    fn a_nested_yaml_file_with_human_durations_and_flags_over_it() {
        let mut c = Config::from_yaml_value(serde_json::json!({
            "node": {"id": "b1"},
            "storage": {"retention": "3d", "embedded": {"block_window": "30m"},
                        "redis": {"password": "pw-from-file"}},
            "cluster": {"enabled": true, "raft": {"heartbeat": "100ms", "election_timeout": "300ms"}},
        }))
        .unwrap();
        assert_eq!(c.storage.retention, Duration::from_secs(3 * 86_400));
        assert_eq!(c.storage.embedded.block_window, Duration::from_secs(1800));
        assert_eq!(c.raft_timings().heartbeat, Duration::from_millis(100));
        assert_eq!(
            c.storage.embedded.block_cache_mib, 64,
            "defaults fill the rest"
        );
        c.validate().unwrap();
        Cli::try_parse_from([
            "broker",
            "--retention-hours",
            "2",
            "--raft-heartbeat-ms",
            "50",
        ])
        .unwrap()
        .args
        .apply(&mut c);
        assert_eq!(
            c.storage.retention,
            Duration::from_secs(7200),
            "the flag wins"
        );
        assert_eq!(c.cluster.raft.heartbeat, Duration::from_millis(50));
        assert_eq!(
            c.cluster.raft.election_timeout,
            Duration::from_millis(300),
            "file"
        );
        assert!(c.cluster.enabled, "from the file: no flag turns it off");
        assert_eq!(c.redis().settings.password.as_deref(), Some("pw-from-file"));
        let shown = serde_json::to_string(&c).unwrap();
        assert!(!shown.contains("pw-from-file"), "{shown}");
        for (bad, named) in [
            (serde_json::json!({"retention_hours": 5}), "retention_hours"),
            (
                serde_json::json!({"storage": {"retention": "forever"}}),
                "forever",
            ),
            (serde_json::json!({"storage": {"kind": "mysql"}}), "mysql"),
        ] {
            let e = Config::from_yaml_value(bad).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
        let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
        assert!(schema.to_string().contains("election_timeout"));
    }

    #[test]
    fn no_flags_leave_the_defaults() {
        if std::env::vars().all(|(k, _)| !k.starts_with("RINGWATCH_BROKER_")) {
            let mut c = Config::default();
            Cli::try_parse_from(["broker"]).unwrap().args.apply(&mut c);
            assert_eq!(c, Config::default());
        }
    }

    #[test]
    fn peer_routes_are_id_equals_url_once_each_and_need_raft() {
        let routes_of = |routes: &[&str], raft: bool| {
            with(|c| {
                c.cluster.enabled = raft;
                c.cluster.peer_routes = routes.iter().map(|r| r.to_string()).collect();
            })
        };
        let ok = routes_of(&["b1=http://10.0.0.1:9093", "b2 = https://b2:9093"], true);
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
            let e = refused(&routes_of(routes, raft));
            assert!(
                e.contains("cluster.peer_routes") && e.contains(why),
                "{routes:?}: {e}"
            );
        }
    }

    #[test]
    fn a_redis_ca_file_needs_tls_urls_a_file_and_not_sentinel() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let tls = with(|c| {
            c.storage.kind = StoreKind::Redis;
            c.storage.redis.urls = vec!["rediss://127.0.0.1:6380".into()];
            c.storage.redis.ca_file = Some(file.path().to_path_buf());
        });
        tls.validate().unwrap();
        let mut plain = tls.clone();
        plain.storage.redis.urls = vec!["redis://127.0.0.1:6379".into()];
        assert!(refused(&plain).contains("rediss://"));
        let mut missing = tls.clone();
        missing.storage.redis.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(refused(&missing).contains("readable"));
        let mut sentinel = tls;
        sentinel.storage.redis.mode = RedisMode::Sentinel;
        assert!(refused(&sentinel).contains("sentinel"));
    }
}
