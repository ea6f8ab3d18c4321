//! The settings of `ringwatch loadgen` and `ringwatch verify`: flags, environment variables
//! (`RINGWATCH_LOADGEN_*`, `RINGWATCH_VERIFY_*`) and, for loadgen, a YAML file whose field
//! names equal the flag ids. Durations are written as people write them (`500ms`, `5s`, `7d`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::values::MAX_METRICS;

/// The broker loadgen and verify talk to when none is given.
pub const DEFAULT_BROKER: &str = "http://127.0.0.1:9093";

#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms, 5s, 2m, 7d)"))
}

/// `ringwatch loadgen`: simulated hosts speaking the agent's protocol. Its YAML file has these
/// fields; [`Default`] is the one place a default lives; [`LoadgenArgs`] lays the flags over it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoadgenConfig {
    /// Broker gRPC endpoints (`http://host:port`); repeatable, comma-separated in the env var.
    /// Simulated hosts spread over the healthy ones and fail over as agents do.
    pub brokers: Vec<String>,

    /// Simulated hosts, each its own ingest stream.
    pub hosts: u32,

    /// TCP connections per broker; by default one per host, as real agents have. Fewer
    /// connections carry several hosts' streams each (HTTP/2 multiplexing).
    pub connections: Option<u32>,

    /// Keep each host's stream on the broker it started on even when a broker names the host's
    /// owner (by default a host moves there once nothing is in flight, as the agent does): to
    /// measure what forwarding costs.
    pub stay: bool,

    /// Collection interval of every simulated host (100ms..1h).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,

    /// Metrics per snapshot (the agent's totals, then per-core detail).
    pub metrics: usize,

    /// Send no sliding-window statistics (the agent sends min/max/avg with every metric).
    pub no_window: bool,

    /// Run this long (live mode); the default when neither this nor --snapshots is given is 60s.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,

    /// Snapshots per host (live mode), instead of a duration.
    pub snapshots: Option<u64>,

    /// Backfill mode: send this past period (e.g. 7d) with past timestamps, as fast as the
    /// brokers acknowledge, then stop. Brokers accept timestamps within their retention.
    #[serde(with = "humantime_serde")]
    pub backfill: Option<Duration>,

    /// Host ids are this prefix and the host's number, zero-padded.
    pub host_prefix: String,

    /// Labels `key=value` sent with every host's registration; repeatable.
    pub labels: Vec<String>,

    /// Snapshots per batch (a batch holds one after each interval, more after an outage).
    pub max_batch: usize,

    /// Unacknowledged batches per stream.
    pub max_in_flight: usize,

    /// Unacknowledged snapshots a host keeps; past it the oldest are dropped (counted).
    pub buffer_capacity: usize,

    /// No acknowledgement this long for the oldest batch in flight: reconnect elsewhere.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,

    /// Connect (and health-probe) timeout per broker.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,

    /// Heartbeat period on each stream.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,

    /// Cap of the reconnect back-off (1 s, 2 s, 4 s … as the agent).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,

    /// After the last snapshot is due, wait this long for outstanding acknowledgements.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,

    /// Leave the first part of the run out of the summary's latency figures (the ramp-up:
    /// connecting, registering), as the end (hosts finishing) always is; acknowledgements are
    /// counted all the same.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,

    /// The acknowledgement ledger to write (read it back with `ringwatch verify`).
    pub ledger: PathBuf,

    /// JSON lines on stdout: `ready`, a `progress` line each --progress-every, and the `summary`.
    pub json: bool,

    /// No progress line (the summary is still printed).
    pub quiet: bool,

    /// How often a progress line reports (e.g. 250ms to time a fail-over finely; 100ms to 1m).
    #[serde(with = "humantime_serde")]
    pub progress_every: Duration,

    /// TLS and the credential for the brokers (`--broker-tls-ca`, `--broker-token-file`, …);
    /// loadgen needs the `ingest` role.
    pub broker_client: ringwatch_net::client::BrokerClientConfig,
}

/// The flags of `ringwatch loadgen`: each given one overrides the file (or the default).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LoadgenArgs {
    /// Broker gRPC endpoints (`http://host:port`); repeatable, comma-separated in the env var.
    /// Simulated hosts spread over the healthy ones and fail over as agents do. [default: http://127.0.0.1:9093]
    #[arg(
        long = "broker",
        env = "RINGWATCH_LOADGEN_BROKERS",
        value_delimiter = ','
    )]
    pub brokers: Vec<String>,
    /// Simulated hosts, each its own ingest stream. [default: 1000]
    #[arg(long, env = "RINGWATCH_LOADGEN_HOSTS")]
    pub hosts: Option<u32>,
    /// TCP connections per broker; by default one per host, as real agents have. Fewer
    /// connections carry several hosts' streams each (HTTP/2 multiplexing).
    #[arg(long, env = "RINGWATCH_LOADGEN_CONNECTIONS")]
    pub connections: Option<u32>,
    /// Keep each host's stream on the broker it started on even when a broker names the host's
    /// owner (by default a host moves there once nothing is in flight, as the agent does): to
    /// measure what forwarding costs.
    #[arg(long, env = "RINGWATCH_LOADGEN_STAY")]
    pub stay: bool,
    /// Collection interval of every simulated host (100ms..1h). [default: 5s]
    #[arg(long, env = "RINGWATCH_LOADGEN_INTERVAL", value_parser = duration)]
    pub interval: Option<Duration>,
    /// Metrics per snapshot (the agent's totals, then per-core detail). [default: 60]
    #[arg(long, env = "RINGWATCH_LOADGEN_METRICS")]
    pub metrics: Option<usize>,
    /// Send no sliding-window statistics (the agent sends min/max/avg with every metric).
    #[arg(long, env = "RINGWATCH_LOADGEN_NO_WINDOW")]
    pub no_window: bool,
    /// Run this long (live mode); the default when neither this nor --snapshots is given is 60s.
    #[arg(long, env = "RINGWATCH_LOADGEN_DURATION", value_parser = duration, conflicts_with_all = ["snapshots", "backfill"])]
    pub duration: Option<Duration>,
    /// Snapshots per host (live mode), instead of a duration.
    #[arg(long, env = "RINGWATCH_LOADGEN_SNAPSHOTS", conflicts_with = "backfill")]
    pub snapshots: Option<u64>,
    /// Backfill mode: send this past period (e.g. 7d) with past timestamps, as fast as the
    /// brokers acknowledge, then stop. Brokers accept timestamps within their retention.
    #[arg(long, env = "RINGWATCH_LOADGEN_BACKFILL", value_parser = duration)]
    pub backfill: Option<Duration>,
    /// Host ids are this prefix and the host's number, zero-padded. [default: loadgen-]
    #[arg(long, env = "RINGWATCH_LOADGEN_HOST_PREFIX")]
    pub host_prefix: Option<String>,
    /// Labels `key=value` sent with every host's registration; repeatable.
    #[arg(
        long = "label",
        env = "RINGWATCH_LOADGEN_LABELS",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// Snapshots per batch (a batch holds one after each interval, more after an outage). [default: 64]
    #[arg(long, env = "RINGWATCH_LOADGEN_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Unacknowledged batches per stream. [default: 4]
    #[arg(long, env = "RINGWATCH_LOADGEN_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Unacknowledged snapshots a host keeps; past it the oldest are dropped (counted). [default: 1024]
    #[arg(long, env = "RINGWATCH_LOADGEN_BUFFER_CAPACITY")]
    pub buffer_capacity: Option<usize>,
    /// No acknowledgement this long for the oldest batch in flight: reconnect elsewhere. [default: 15s]
    #[arg(long, env = "RINGWATCH_LOADGEN_ACK_TIMEOUT", value_parser = duration)]
    pub ack_timeout: Option<Duration>,
    /// Connect (and health-probe) timeout per broker. [default: 5s]
    #[arg(long, env = "RINGWATCH_LOADGEN_CONNECT_TIMEOUT", value_parser = duration)]
    pub connect_timeout: Option<Duration>,
    /// Heartbeat period on each stream. [default: 10s]
    #[arg(long, env = "RINGWATCH_LOADGEN_HEARTBEAT", value_parser = duration)]
    pub heartbeat: Option<Duration>,
    /// Cap of the reconnect back-off (1 s, 2 s, 4 s … as the agent). [default: 30s]
    #[arg(long, env = "RINGWATCH_LOADGEN_BACKOFF_MAX", value_parser = duration)]
    pub backoff_max: Option<Duration>,
    /// After the last snapshot is due, wait this long for outstanding acknowledgements. [default: 60s]
    #[arg(long, env = "RINGWATCH_LOADGEN_DRAIN_TIMEOUT", value_parser = duration)]
    pub drain_timeout: Option<Duration>,
    /// Leave the first part of the run out of the summary's latency figures (the ramp-up:
    /// connecting, registering), as the end (hosts finishing) always is; acknowledgements are
    /// counted all the same. [default: 0s]
    #[arg(long, env = "RINGWATCH_LOADGEN_WARMUP", value_parser = duration)]
    pub warmup: Option<Duration>,
    /// The acknowledgement ledger to write (read it back with `ringwatch verify`). [default: loadgen.ledger]
    #[arg(long, env = "RINGWATCH_LOADGEN_LEDGER")]
    pub ledger: Option<PathBuf>,
    /// JSON lines on stdout: `ready`, a `progress` line each --progress-every, and the `summary`.
    #[arg(long, env = "RINGWATCH_LOADGEN_JSON")]
    pub json: bool,
    /// No progress line (the summary is still printed).
    #[arg(long, env = "RINGWATCH_LOADGEN_QUIET")]
    pub quiet: bool,
    /// How often a progress line reports (e.g. 250ms to time a fail-over finely; 100ms to 1m). [default: 1s]
    #[arg(
        long,
        env = "RINGWATCH_LOADGEN_PROGRESS_EVERY",
        value_parser = humantime::parse_duration
    )]
    pub progress_every: Option<Duration>,
    /// TLS and the credential for the brokers (`--broker-tls-ca`, `--broker-token-file`, …);
    /// loadgen needs the `ingest` role.
    #[command(flatten)]
    pub broker_client: ringwatch_net::client::BrokerClientConfig,
}

impl LoadgenArgs {
    /// Lays the flags given (command line or env) over `c`.
    pub fn apply(self, c: &mut LoadgenConfig) {
        use ringwatch_core::config::{overlay, overlay_opt};
        if !self.brokers.is_empty() {
            c.brokers = self.brokers;
        }
        overlay(&mut c.hosts, self.hosts);
        overlay_opt(&mut c.connections, self.connections);
        c.stay |= self.stay;
        overlay(&mut c.interval, self.interval);
        overlay(&mut c.metrics, self.metrics);
        c.no_window |= self.no_window;
        overlay_opt(&mut c.duration, self.duration);
        overlay_opt(&mut c.snapshots, self.snapshots);
        overlay_opt(&mut c.backfill, self.backfill);
        overlay(&mut c.host_prefix, self.host_prefix);
        if !self.labels.is_empty() {
            c.labels = self.labels;
        }
        overlay(&mut c.max_batch, self.max_batch);
        overlay(&mut c.max_in_flight, self.max_in_flight);
        overlay(&mut c.buffer_capacity, self.buffer_capacity);
        overlay(&mut c.ack_timeout, self.ack_timeout);
        overlay(&mut c.connect_timeout, self.connect_timeout);
        overlay(&mut c.heartbeat, self.heartbeat);
        overlay(&mut c.backoff_max, self.backoff_max);
        overlay(&mut c.drain_timeout, self.drain_timeout);
        overlay(&mut c.warmup, self.warmup);
        overlay(&mut c.ledger, self.ledger);
        c.json |= self.json;
        c.quiet |= self.quiet;
        overlay(&mut c.progress_every, self.progress_every);
        c.broker_client.overlay(self.broker_client);
    }
}

impl Default for LoadgenConfig {
    fn default() -> Self {
        LoadgenConfig {
            brokers: vec![DEFAULT_BROKER.to_string()],
            hosts: 1000,
            connections: None,
            stay: false,
            interval: Duration::from_secs(5),
            metrics: 60,
            no_window: false,
            duration: None,
            snapshots: None,
            backfill: None,
            host_prefix: "loadgen-".into(),
            labels: Vec::new(),
            max_batch: 64,
            max_in_flight: 4,
            buffer_capacity: 1024,
            ack_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(10),
            backoff_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            warmup: Duration::ZERO,
            ledger: PathBuf::from("loadgen.ledger"),
            json: false,
            quiet: false,
            progress_every: Duration::from_secs(1),
            broker_client: Default::default(),
        }
    }
}

/// A ledger larger than this is refused (a typo in --hosts or --backfill, not a plan).
const MAX_LEDGER_BYTES: u64 = 64 << 30;

impl LoadgenConfig {
    /// The config from a YAML file's mapping (absent fields default; an unknown one is an
    /// error naming it).
    pub fn from_yaml_value(v: serde_json::Value) -> Result<LoadgenConfig, ConfigError> {
        serde_json::from_value(v).map_err(|e| bad("config file", e.to_string()))
    }

    /// The run's length in snapshots per host.
    pub fn snapshots_per_host(&self) -> u64 {
        let per = |d: Duration| (d.as_millis() / self.interval.as_millis().max(1)) as u64;
        match (self.backfill, self.snapshots, self.duration) {
            (Some(period), _, _) => per(period).max(1),
            (None, Some(n), _) => n,
            (None, None, Some(d)) => per(d).max(1),
            (None, None, None) => per(Duration::from_secs(60)).max(1),
        }
    }

    /// Connections per broker.
    pub fn connections(&self) -> u32 {
        self.connections
            .unwrap_or(self.hosts)
            .clamp(1, self.hosts.max(1))
    }

    /// The labels as pairs.
    pub fn label_pairs(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.labels
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| bad("label", format!("{l:?} is not key=value")))
            })
            .collect()
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.iter().all(|b| b.trim().is_empty()) {
            return Err(bad("broker", "give at least one broker URL"));
        }
        connector(&self.brokers, &self.broker_client)?;
        if self.progress_every < Duration::from_millis(100)
            || self.progress_every > Duration::from_secs(60)
        {
            return Err(bad("progress_every", "between 100ms and 1m"));
        }
        if self.hosts == 0 || self.hosts > 10_000_000 {
            return Err(bad(
                "hosts",
                format!("{} is not in 1..=10000000", self.hosts),
            ));
        }
        if self.connections == Some(0) {
            return Err(bad("connections", "must be at least 1"));
        }
        let ms = self.interval.as_millis();
        if !(100..=3_600_000).contains(&ms) {
            return Err(bad(
                "interval",
                format!("{ms} ms is not in 100ms..=1h (what brokers accept)"),
            ));
        }
        if self.metrics == 0 || self.metrics > MAX_METRICS {
            return Err(bad(
                "metrics",
                format!("{} is not in 1..={MAX_METRICS}", self.metrics),
            ));
        }
        if self.snapshots == Some(0) {
            return Err(bad("snapshots", "must be at least 1"));
        }
        if let Some(b) = self.backfill
            && b < self.interval
        {
            return Err(bad("backfill", "must be at least one interval"));
        }
        if self.max_batch == 0 || self.max_batch > 1024 {
            return Err(bad(
                "max_batch",
                format!("{} is not in 1..=1024", self.max_batch),
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return Err(bad(
                "max_in_flight",
                format!("{} is not in 1..=1024", self.max_in_flight),
            ));
        }
        if self.buffer_capacity == 0 {
            return Err(bad("buffer_capacity", "must be at least 1"));
        }
        for (field, d) in [
            ("ack_timeout", self.ack_timeout),
            ("connect_timeout", self.connect_timeout),
            ("heartbeat", self.heartbeat),
            ("backoff_max", self.backoff_max),
        ] {
            if d < Duration::from_millis(100) {
                return Err(bad(field, "must be at least 100ms"));
            }
        }
        if self.host_prefix.len() > 200 {
            return Err(bad("host_prefix", "longer than 200 characters"));
        }
        let digits = (self.hosts - 1).max(1).ilog10() as usize + 1;
        let sample = format!("{}{}", self.host_prefix, "0".repeat(digits));
        if let Some(p) = ringwatch_proto::rules::host_id_problem(&sample) {
            return Err(bad(
                "host_prefix",
                format!("host ids would be refused: {p}"),
            ));
        }
        let labels = self.label_pairs()?;
        if let Some(p) = ringwatch_proto::rules::labels_problem(
            labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ) {
            return Err(bad("label", p));
        }
        let bytes = u64::from(self.hosts) * self.snapshots_per_host().div_ceil(64) * 8;
        if bytes > MAX_LEDGER_BYTES {
            return Err(bad(
                "hosts",
                format!(
                    "{} hosts × {} snapshots need a {} GiB ledger; at most 64 GiB",
                    self.hosts,
                    self.snapshots_per_host(),
                    bytes >> 30
                ),
            ));
        }
        Ok(())
    }
}

/// How loadgen and verify reach `brokers`, checked: TLS files and the token read, every URL
/// parsed with its scheme.
pub fn connector(
    brokers: &[String],
    client: &ringwatch_net::client::BrokerClientConfig,
) -> Result<ringwatch_net::client::Connector, ConfigError> {
    let connector = ringwatch_net::client::Connector::new(client)
        .map_err(|e| bad("broker_client", e.to_string()))?;
    for b in brokers.iter().filter(|b| !b.trim().is_empty()) {
        connector
            .endpoint(b.trim())
            .map_err(|e| bad("broker", e.to_string()))?;
    }
    Ok(connector)
}

/// `ringwatch verify`: reads every host of a ledger back and checks it.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// The ledger `ringwatch loadgen` wrote.
    #[arg(
        long,
        env = "RINGWATCH_VERIFY_LEDGER",
        default_value = "loadgen.ledger"
    )]
    pub ledger: PathBuf,

    /// Broker gRPC endpoints; each host is read from the first that answers.
    #[arg(long = "broker", env = "RINGWATCH_VERIFY_BROKERS", value_delimiter = ',', default_value = DEFAULT_BROKER)]
    pub brokers: Vec<String>,

    /// Hosts read at once.
    #[arg(long, env = "RINGWATCH_VERIFY_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,

    /// The brokers' retention: snapshots older than this when checked are not counted as lost.
    #[arg(long, env = "RINGWATCH_VERIFY_RETENTION", default_value = "7d", value_parser = duration)]
    #[serde(with = "humantime_serde")]
    pub retention: Duration,

    /// How many offending (host, timestamp) pairs to print per kind of problem.
    #[arg(long, env = "RINGWATCH_VERIFY_SHOW", default_value_t = 10)]
    pub show: usize,

    /// Timeout of each read.
    #[arg(long, env = "RINGWATCH_VERIFY_TIMEOUT", default_value = "30s", value_parser = duration)]
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,

    /// Print the report as one JSON document.
    #[arg(long, env = "RINGWATCH_VERIFY_JSON")]
    pub json: bool,

    /// TLS and the credential for the brokers; verify needs the `query` role.
    #[command(flatten)]
    pub broker_client: ringwatch_net::client::BrokerClientConfig,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            ledger: PathBuf::from("loadgen.ledger"),
            brokers: vec![DEFAULT_BROKER.to_string()],
            concurrency: 16,
            retention: Duration::from_secs(7 * 24 * 3600),
            show: 10,
            timeout: Duration::from_secs(30),
            json: false,
            broker_client: Default::default(),
        }
    }
}

impl VerifyConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.iter().all(|b| b.trim().is_empty()) {
            return Err(bad("broker", "give at least one broker URL"));
        }
        connector(&self.brokers, &self.broker_client)?;
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(bad(
                "concurrency",
                format!("{} is not in 1..=1024", self.concurrency),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_sizes_follow_the_mode() {
        let c = LoadgenConfig::default();
        c.validate().unwrap();
        assert_eq!(c.snapshots_per_host(), 12, "60 s at 5 s");
        assert_eq!(c.connections(), 1000);
        let c = LoadgenConfig {
            backfill: Some(Duration::from_secs(7 * 24 * 3600)),
            ..LoadgenConfig::default()
        };
        assert_eq!(c.snapshots_per_host(), 120_960);
        let c = LoadgenConfig {
            snapshots: Some(7),
            connections: Some(5000),
            hosts: 10,
            ..LoadgenConfig::default()
        };
        assert_eq!(c.snapshots_per_host(), 7);
        assert_eq!(c.connections(), 10, "never more connections than hosts");
        VerifyConfig::default().validate().unwrap();
    }

    #[test]
    fn flags_lay_over_the_file_which_lays_over_the_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: LoadgenArgs,
        }
        let mut c = LoadgenConfig::from_yaml_value(serde_json::json!({
            "hosts": 10, "interval": "1s", "labels": ["team=a"], "json": true
        }))
        .unwrap();
        let cli = Cli::try_parse_from(["loadgen", "--hosts", "20", "--backoff-max", "1s"]).unwrap();
        cli.args.apply(&mut c);
        assert_eq!(c.hosts, 20, "the flag wins");
        assert_eq!(c.interval, Duration::from_secs(1), "the file's");
        assert_eq!(c.labels, ["team=a"]);
        assert!(c.json);
        assert_eq!(c.backoff_max, Duration::from_secs(1));
        assert_eq!(c.max_batch, 64, "the default");
        let unknown = LoadgenConfig::from_yaml_value(serde_json::json!({"hostz": 1})).unwrap_err();
        assert!(unknown.to_string().contains("hostz"), "{unknown}");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |c: LoadgenConfig| c.validate().unwrap_err().field;
        let d = LoadgenConfig::default;
        assert_eq!(field(LoadgenConfig { hosts: 0, ..d() }), "hosts");
        assert_eq!(
            field(LoadgenConfig {
                interval: Duration::from_millis(10),
                ..d()
            }),
            "interval"
        );
        assert_eq!(
            field(LoadgenConfig {
                metrics: 5000,
                ..d()
            }),
            "metrics"
        );
        assert_eq!(
            field(LoadgenConfig {
                max_batch: 0,
                ..d()
            }),
            "max_batch"
        );
        assert_eq!(
            field(LoadgenConfig {
                brokers: vec!["not a url".into()],
                ..d()
            }),
            "broker"
        );
        assert_eq!(
            field(LoadgenConfig {
                host_prefix: "bad prefix ".into(),
                ..d()
            }),
            "host_prefix"
        );
        assert_eq!(
            field(LoadgenConfig {
                labels: vec!["novalue".into()],
                ..d()
            }),
            "label"
        );
        assert_eq!(
            field(LoadgenConfig {
                hosts: 10_000_000,
                backfill: Some(Duration::from_secs(365 * 24 * 3600)),
                interval: Duration::from_millis(100),
                ..d()
            }),
            "hosts"
        );
        assert_eq!(
            field(LoadgenConfig {
                connections: Some(0),
                ..d()
            }),
            "connections"
        );
    }

    #[test]
    fn durations_read_as_people_write_them_in_yaml() {
        let c: LoadgenConfig = serde_json::from_value(
            serde_json::json!({"interval": "1s", "backfill": "7d", "hosts": 3}),
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.backfill, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(c.hosts, 3);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["interval"], "1s");
    }
}
