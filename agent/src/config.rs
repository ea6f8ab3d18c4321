//! The agent's one typed config (SPEC S2). [`Config`] is nested serde types: what a YAML file
//! holds, each `Default` the one place its defaults live, `JsonSchema` so the operator's CRD can
//! embed it, durations as people write them (`5s`, `30s`). [`Args`] is the flags and env
//! variables (`RINGWATCH_AGENT_*`): a thin layer of options laid over the config read from the
//! file (flag > env > file > default).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ringwatch_net::client::BrokerClientConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// Default broker endpoint.
pub const DEFAULT_BROKER: &str = "http://127.0.0.1:9093";

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub host: HostConfig,
    pub collect: CollectConfig,
    pub brokers: BrokersConfig,
    pub send: SendConfig,
    pub metrics: MetricsConfig,
}

/// Who this host is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Host id; defaults to the `NODE_NAME` env var, then the hostname.
    pub id: Option<String>,
    /// Labels sent with the registration.
    pub labels: BTreeMap<String, String>,
    /// Zone of the host; becomes the label `zone` (and wins over a `zone` label).
    pub zone: Option<String>,
}

/// What is collected, and how often.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectConfig {
    /// Collection interval (1s..=1h).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub interval: Duration,
    /// Raw values per metric in the sliding min/max/avg window.
    pub window_samples: usize,
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            interval: Duration::from_secs(5),
            window_samples: 12,
        }
    }
}

/// The brokers the agent streams to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokersConfig {
    /// Broker gRPC endpoints (`http://host:port` or `https://…`).
    pub endpoints: Vec<String>,
    /// TLS and the credential for the brokers (role `ingest`).
    pub client: BrokerClientConfig,
}

impl Default for BrokersConfig {
    fn default() -> Self {
        BrokersConfig {
            endpoints: vec![DEFAULT_BROKER.to_string()],
            client: BrokerClientConfig::default(),
        }
    }
}

/// How snapshots wait and are sent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SendConfig {
    /// Buffer capacity in full snapshots.
    pub buffer_capacity: usize,
    /// Most snapshots per batch.
    pub max_batch: usize,
    /// Most unacknowledged batches on a stream.
    pub max_in_flight: usize,
    /// Cap of the reconnect back-off.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub backoff_max: Duration,
    /// Connect timeout per broker.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub connect_timeout: Duration,
    /// Reconnect when the oldest unacknowledged batch has no ack after this.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ack_timeout: Duration,
    /// Heartbeat period on the stream.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub heartbeat: Duration,
}

impl Default for SendConfig {
    fn default() -> Self {
        SendConfig {
            buffer_capacity: 1024,
            max_batch: 64,
            max_in_flight: 4,
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(15),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// The agent's own `/metrics` and `/health` listener.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address (port 0 = any).
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Most connections at once; past it a 503.
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

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9102)),
            max_connections: 16,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The agent's flags and env variables: each laid over the config (file or default) when given.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Broker gRPC endpoints (`http://host:port`); repeatable, comma-separated in the env var
    /// [default: http://127.0.0.1:9093].
    #[arg(
        long = "broker",
        env = "RINGWATCH_AGENT_BROKERS",
        value_delimiter = ','
    )]
    pub brokers: Vec<String>,
    /// Collection interval in seconds (1..=3600) [default: 5].
    #[arg(long, env = "RINGWATCH_AGENT_INTERVAL_SECS")]
    pub interval_secs: Option<u64>,
    /// Host id; defaults to the `NODE_NAME` env var, then the hostname.
    #[arg(long, env = "RINGWATCH_AGENT_HOST_ID")]
    pub host_id: Option<String>,
    /// Labels `key=value` sent with the registration; repeatable (added to the file's).
    #[arg(long = "label", env = "RINGWATCH_AGENT_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Zone of the host; becomes the label `zone`.
    #[arg(long, env = "RINGWATCH_AGENT_ZONE")]
    pub zone: Option<String>,
    /// Buffer capacity in full snapshots [default: 1024].
    #[arg(long, env = "RINGWATCH_AGENT_BUFFER_CAPACITY")]
    pub buffer_capacity: Option<usize>,
    /// Raw values per metric in the sliding min/max/avg window [default: 12].
    #[arg(long, env = "RINGWATCH_AGENT_WINDOW_SAMPLES")]
    pub window_samples: Option<usize>,
    /// Maximum snapshots per batch [default: 64].
    #[arg(long, env = "RINGWATCH_AGENT_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Maximum unacknowledged batches on a stream [default: 4].
    #[arg(long, env = "RINGWATCH_AGENT_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Cap of the reconnect back-off, in seconds [default: 30].
    #[arg(long, env = "RINGWATCH_AGENT_BACKOFF_MAX_SECS")]
    pub backoff_max_secs: Option<u64>,
    /// Connect timeout per broker, in seconds [default: 5].
    #[arg(long, env = "RINGWATCH_AGENT_CONNECT_TIMEOUT_SECS")]
    pub connect_timeout_secs: Option<u64>,
    /// Reconnect when the oldest unacknowledged batch has no ack after this many seconds
    /// [default: 15].
    #[arg(long, env = "RINGWATCH_AGENT_ACK_TIMEOUT_SECS")]
    pub ack_timeout_secs: Option<u64>,
    /// Heartbeat period on the stream, in seconds [default: 10].
    #[arg(long, env = "RINGWATCH_AGENT_HEARTBEAT_SECS")]
    pub heartbeat_secs: Option<u64>,
    /// Address of the Prometheus `/metrics` and `/health` HTTP listener (port 0 = any)
    /// [default: 127.0.0.1:9102].
    #[arg(long, env = "RINGWATCH_AGENT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Most connections to the /metrics listener at once; past it a 503 [default: 16].
    #[arg(long, env = "RINGWATCH_AGENT_METRICS_MAX_CONNECTIONS")]
    pub metrics_max_connections: Option<usize>,
    /// An HTTP request's headers must arrive within this many seconds [default: 10].
    #[arg(long, env = "RINGWATCH_AGENT_HTTP_HEADER_TIMEOUT_SECS")]
    pub http_header_timeout_secs: Option<u64>,
    /// An HTTP connection with no byte either way for this many seconds is closed
    /// [default: 120].
    #[arg(long, env = "RINGWATCH_AGENT_HTTP_IDLE_TIMEOUT_SECS")]
    pub http_idle_timeout_secs: Option<u64>,
    /// TLS and the credential for the brokers (`--broker-tls-ca`, `--broker-token-file`, …).
    #[command(flatten)]
    pub broker_client: BrokerClientConfig,
}

impl Args {
    /// Lays every flag and env variable given over `c`; a label that is not `key=value` is
    /// refused.
    pub fn apply(self, c: &mut Config) -> Result<(), AgentError> {
        use ringwatch_core::config::overlay as set;
        let secs = |v: Option<u64>| v.map(Duration::from_secs);
        if !self.brokers.is_empty() {
            c.brokers.endpoints = self.brokers;
        }
        set(&mut c.collect.interval, secs(self.interval_secs));
        if self.host_id.is_some() {
            c.host.id = self.host_id;
        }
        c.host.labels.extend(parse_labels(&self.labels)?);
        if self.zone.is_some() {
            c.host.zone = self.zone;
        }
        set(&mut c.send.buffer_capacity, self.buffer_capacity);
        set(&mut c.collect.window_samples, self.window_samples);
        set(&mut c.send.max_batch, self.max_batch);
        set(&mut c.send.max_in_flight, self.max_in_flight);
        set(&mut c.send.backoff_max, secs(self.backoff_max_secs));
        set(&mut c.send.connect_timeout, secs(self.connect_timeout_secs));
        set(&mut c.send.ack_timeout, secs(self.ack_timeout_secs));
        set(&mut c.send.heartbeat, secs(self.heartbeat_secs));
        set(&mut c.metrics.listen, self.metrics_listen);
        set(&mut c.metrics.max_connections, self.metrics_max_connections);
        set(
            &mut c.metrics.header_timeout,
            secs(self.http_header_timeout_secs),
        );
        set(
            &mut c.metrics.idle_timeout,
            secs(self.http_idle_timeout_secs),
        );
        c.brokers.client.overlay(self.broker_client);
        Ok(())
    }
}

fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), AgentError> {
    if value < min || value > max {
        return Err(AgentError::config(
            field,
            format!("{value} is out of range, allowed {min}..={max}"),
        ));
    }
    Ok(())
}

/// Checks one broker endpoint: an absolute `http://` or `https://` URI with a host.
fn check_broker(endpoint: &str) -> Result<(), AgentError> {
    let uri: tonic::transport::Uri = endpoint.parse().map_err(|e| {
        AgentError::config(
            "brokers.endpoints",
            format!("`{endpoint}` is not a valid URI ({e}); expected http://host:port"),
        )
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(AgentError::config(
                "brokers.endpoints",
                format!("`{endpoint}` must start with http:// or https://"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(AgentError::config(
            "brokers.endpoints",
            format!("`{endpoint}` has no host; expected http://host:port"),
        ));
    }
    Ok(())
}

/// Parses `key=value` labels. Keys must be non-empty and free of whitespace; a later duplicate
/// key replaces an earlier one.
pub fn parse_labels<S: AsRef<str>>(labels: &[S]) -> Result<BTreeMap<String, String>, AgentError> {
    let mut out = BTreeMap::new();
    for raw in labels {
        let raw = raw.as_ref();
        let Some((key, value)) = raw.split_once('=') else {
            return Err(AgentError::config(
                "host.labels",
                format!("`{raw}` is not of the form key=value"),
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(AgentError::config(
                "host.labels",
                format!("`{raw}`: the key must be non-empty and contain no whitespace"),
            ));
        }
        out.insert(key.to_string(), value.trim().to_string());
    }
    // Brokers refuse a registration with labels outside these rules: refuse them here, at start.
    if let Some(reason) =
        ringwatch_proto::rules::labels_problem(out.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        return Err(AgentError::config("host.labels", reason));
    }
    Ok(out)
}

impl Config {
    /// The config from a YAML file's mapping (nested as [`Config`]; absent fields default).
    pub fn from_yaml_value(v: serde_json::Value) -> Result<Config, AgentError> {
        serde_json::from_value(v).map_err(|e| AgentError::config("config file", e.to_string()))
    }

    /// The /metrics listener's limits.
    pub fn metrics_limits(&self) -> ringwatch_net::HttpLimits {
        ringwatch_net::HttpLimits {
            max_connections: self.metrics.max_connections,
            header_timeout: self.metrics.header_timeout,
            idle_timeout: self.metrics.idle_timeout,
        }
    }

    /// How to reach the brokers (TLS files and the token read and checked).
    pub fn connector(&self) -> Result<ringwatch_net::client::Connector, AgentError> {
        ringwatch_net::client::Connector::new(&self.brokers.client)
            .map_err(|e| AgentError::config("brokers.client", e.to_string()))
    }

    /// Validates every field; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<(), AgentError> {
        let endpoints = &self.brokers.endpoints;
        if endpoints.is_empty() {
            return Err(AgentError::config(
                "brokers.endpoints",
                "at least one broker endpoint is required",
            ));
        }
        for b in endpoints {
            check_broker(b.trim())?;
        }
        let connector = self.connector()?;
        for b in endpoints {
            connector
                .endpoint(b.trim())
                .map_err(|e| AgentError::config("brokers.endpoints", e.to_string()))?;
        }
        let s = Duration::from_secs;
        check_duration("collect.interval", self.collect.interval, s(1), s(3600))?;
        if let Some(h) = &self.host.id
            && h.trim().is_empty()
        {
            return Err(AgentError::config(
                "host.id",
                "must not be empty (omit it to use NODE_NAME or the hostname)",
            ));
        }
        check_labels(&self.host.labels)?;
        if let Some(z) = &self.host.zone
            && z.trim().is_empty()
        {
            return Err(AgentError::config(
                "host.zone",
                "must not be empty (omit it for no zone)",
            ));
        }
        let send = &self.send;
        check_range("send.buffer_capacity", send.buffer_capacity, 1, 1_000_000)?;
        check_range(
            "collect.window_samples",
            self.collect.window_samples,
            1,
            10_000,
        )?;
        // Brokers refuse larger batches by default.
        check_range(
            "send.max_batch",
            send.max_batch,
            1,
            ringwatch_proto::rules::DEFAULT_MAX_BATCH,
        )?;
        check_range("send.max_in_flight", send.max_in_flight, 1, 1024)?;
        check_duration("send.backoff_max", send.backoff_max, s(1), s(86_400))?;
        check_duration("send.connect_timeout", send.connect_timeout, s(1), s(3600))?;
        check_duration("send.ack_timeout", send.ack_timeout, s(1), s(3600))?;
        check_duration("send.heartbeat", send.heartbeat, s(1), s(3600))?;
        let m = &self.metrics;
        check_range("metrics.max_connections", m.max_connections, 1, 100_000)?;
        check_duration("metrics.header_timeout", m.header_timeout, s(1), s(3600))?;
        check_duration("metrics.idle_timeout", m.idle_timeout, s(1), s(86_400))?;
        Ok(())
    }

    /// The host id: `host.id` if set, else the `NODE_NAME` env var, else the hostname.
    pub fn resolved_host_id(&self) -> Result<String, AgentError> {
        let id = resolve_host_id(
            self.host.id.as_deref(),
            std::env::var("NODE_NAME").ok().as_deref(),
            || {
                hostname::get()
                    .map(|h| h.to_string_lossy().into_owned())
                    .map_err(|e| e.to_string())
            },
        )?;
        // Brokers refuse other host ids: refuse it here, at start.
        match ringwatch_proto::rules::host_id_problem(&id) {
            None => Ok(id),
            Some(reason) => Err(AgentError::config("host.id", reason)),
        }
    }

    /// The labels sent with the registration: `host.labels` plus `host.zone` (which wins over
    /// a `zone` label).
    pub fn resolved_labels(&self) -> Result<BTreeMap<String, String>, AgentError> {
        check_labels(&self.host.labels)?;
        let mut labels = self.host.labels.clone();
        if let Some(zone) = &self.host.zone {
            labels.insert("zone".to_string(), zone.trim().to_string());
        }
        Ok(labels)
    }

    /// The registration interval in milliseconds.
    pub fn interval_ms(&self) -> u32 {
        u32::try_from(self.collect.interval.as_millis()).unwrap_or(u32::MAX)
    }
}

fn check_duration(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), AgentError> {
    if value < min || value > max {
        return Err(AgentError::config(
            field,
            format!(
                "{} is out of range, allowed {}..={}",
                humantime::format_duration(value),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(())
}

/// Checks labels as the brokers would: keys non-empty without whitespace, within the rules.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), AgentError> {
    for key in labels.keys() {
        if key.trim().is_empty() || key.chars().any(char::is_whitespace) {
            return Err(AgentError::config(
                "host.labels",
                format!("`{key}`: the key must be non-empty and contain no whitespace"),
            ));
        }
    }
    if let Some(reason) =
        ringwatch_proto::rules::labels_problem(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        return Err(AgentError::config("host.labels", reason));
    }
    Ok(())
}

fn resolve_host_id(
    explicit: Option<&str>,
    node_name: Option<&str>,
    hostname: impl FnOnce() -> Result<String, String>,
) -> Result<String, AgentError> {
    if let Some(h) = explicit.map(str::trim).filter(|h| !h.is_empty()) {
        return Ok(h.to_string());
    }
    if let Some(h) = node_name.map(str::trim).filter(|h| !h.is_empty()) {
        return Ok(h.to_string());
    }
    let h = hostname().map_err(AgentError::HostId)?;
    let h = h.trim();
    if h.is_empty() {
        return Err(AgentError::HostId(
            "the hostname is empty; set host.id (--host-id) or NODE_NAME".to_string(),
        ));
    }
    Ok(h.to_string())
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

    fn parsed(argv: &[&str]) -> Config {
        let mut c = Config::default();
        Cli::try_parse_from(argv)
            .expect("parse")
            .args
            .apply(&mut c)
            .expect("apply");
        c
    }

    #[test]
    fn no_flags_leave_the_defaults_and_they_validate() {
        // Environment variables could override; only compare when none is set.
        if std::env::vars().all(|(k, _)| !k.starts_with("RINGWATCH_AGENT_")) {
            assert_eq!(parsed(&["agent"]), Config::default());
        }
        Config::default().validate().expect("default is valid");
    }

    #[test]
    fn flags_map_to_fields() {
        let c = parsed(&[
            "agent",
            "--broker",
            "http://a:1",
            "--broker",
            "http://b:2",
            "--label",
            "role=db",
            "--zone",
            "eu-1",
            "--interval-secs",
            "1",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(c.brokers.endpoints, vec!["http://a:1", "http://b:2"]);
        assert_eq!(c.collect.interval, Duration::from_secs(1));
        assert_eq!(c.metrics.listen.port(), 0);
        let labels = c.resolved_labels().expect("labels");
        assert_eq!(labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(labels.get("zone").map(String::as_str), Some("eu-1"));
        c.validate().expect("valid");
        let bad = Cli::try_parse_from(["agent", "--label", "novalue"])
            .expect("parse")
            .args
            .apply(&mut Config::default())
            .unwrap_err();
        assert!(bad.to_string().contains("host.labels"), "{bad}");
    }

    #[test]
    fn a_nested_yaml_file_with_human_durations_and_flags_over_it() {
        let mut c = Config::from_yaml_value(serde_json::json!({
            "collect": {"interval": "7s"},
            "host": {"id": "from-file", "labels": {"team": "infra"}},
            "send": {"ack_timeout": "1m"},
        }))
        .expect("reads");
        assert_eq!(c.collect.interval, Duration::from_secs(7));
        assert_eq!(c.send.ack_timeout, Duration::from_secs(60));
        assert_eq!(c.send.buffer_capacity, 1024, "defaults fill the rest");
        Cli::try_parse_from(["agent", "--host-id", "from-flag", "--label", "env=prod"])
            .expect("parse")
            .args
            .apply(&mut c)
            .expect("apply");
        assert_eq!(c.host.id.as_deref(), Some("from-flag"));
        assert_eq!(c.collect.interval, Duration::from_secs(7), "from the file");
        let labels = c.resolved_labels().expect("labels");
        assert_eq!(labels.len(), 2, "{labels:?}");
        for (bad, named) in [
            (serde_json::json!({"interval_secs": 7}), "interval_secs"),
            (
                serde_json::json!({"collect": {"interval": "often"}}),
                "often",
            ),
        ] {
            let e = Config::from_yaml_value(bad).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
        let schema = serde_json::to_value(schemars::schema_for!(Config)).expect("schema");
        assert!(schema.to_string().contains("window_samples"));
    }

    fn err_field(c: &Config) -> &'static str {
        match c.validate() {
            Err(AgentError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let base = Config::default();
        let with = |f: &dyn Fn(&mut Config)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        let cases: Vec<(Config, &str)> = vec![
            (
                with(&|c| c.collect.interval = Duration::ZERO),
                "collect.interval",
            ),
            (
                with(&|c| c.collect.interval = Duration::from_secs(3601)),
                "collect.interval",
            ),
            (with(&|c| c.brokers.endpoints.clear()), "brokers.endpoints"),
            (
                with(&|c| c.brokers.endpoints = vec!["127.0.0.1:9093".into()]),
                "brokers.endpoints",
            ),
            (
                with(&|c| c.brokers.endpoints = vec!["ftp://x:1".into()]),
                "brokers.endpoints",
            ),
            (
                with(&|c| {
                    c.brokers.endpoints = vec!["https://x:1".into()];
                    c.brokers.client.tls_ca = Some("/nonexistent/ca.pem".into());
                }),
                "brokers.client",
            ),
            (
                with(&|c| c.send.buffer_capacity = 0),
                "send.buffer_capacity",
            ),
            (
                with(&|c| c.collect.window_samples = 0),
                "collect.window_samples",
            ),
            (with(&|c| c.send.max_batch = 0), "send.max_batch"),
            (with(&|c| c.send.max_in_flight = 0), "send.max_in_flight"),
            (
                with(&|c| c.send.backoff_max = Duration::ZERO),
                "send.backoff_max",
            ),
            (
                with(&|c| c.send.connect_timeout = Duration::ZERO),
                "send.connect_timeout",
            ),
            (
                with(&|c| c.send.ack_timeout = Duration::ZERO),
                "send.ack_timeout",
            ),
            (
                with(&|c| c.send.heartbeat = Duration::ZERO),
                "send.heartbeat",
            ),
            (with(&|c| c.host.id = Some(" ".into())), "host.id"),
            (
                with(&|c| {
                    c.host.labels.insert("a b".into(), "x".into());
                }),
                "host.labels",
            ),
            (with(&|c| c.host.zone = Some(String::new())), "host.zone"),
        ];
        for (c, field) in cases {
            assert_eq!(err_field(&c), field, "{c:?}");
        }
        let msg = with(&|c| c.collect.interval = Duration::ZERO)
            .validate()
            .expect_err("invalid")
            .to_string();
        assert!(
            msg.contains("collect.interval") && msg.contains("1s..=1h"),
            "{msg}"
        );
    }

    #[test]
    fn labels_host_ids_and_batches_the_brokers_would_refuse_are_refused_at_start() {
        let err = parse_labels(&["team:x=1"]).unwrap_err().to_string();
        assert!(
            err.contains("labels") && err.contains("[A-Za-z0-9._/-]"),
            "{err}"
        );
        let mut c = Config::default();
        c.host.id = Some("bad host!".into());
        assert!(
            c.resolved_host_id()
                .unwrap_err()
                .to_string()
                .contains("host.id")
        );
        let mut c = Config::default();
        c.send.max_batch = 2000;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("send.max_batch")
        );
    }

    #[test]
    fn label_parsing() {
        let l = parse_labels(&["a=1", " b = two ", "c=", "a=3", "k=v=w"]).expect("ok");
        assert_eq!(l.get("a").map(String::as_str), Some("3"));
        assert_eq!(l.get("b").map(String::as_str), Some("two"));
        assert_eq!(l.get("c").map(String::as_str), Some(""));
        assert_eq!(l.get("k").map(String::as_str), Some("v=w"));
        assert!(parse_labels(&["=x"]).is_err());
        assert!(parse_labels(&["no equals"]).is_err());
        assert!(parse_labels(&["a b=c"]).is_err());
        assert!(parse_labels::<&str>(&[]).expect("empty").is_empty());
    }

    #[test]
    fn zone_overrides_label() {
        let mut c = Config::default();
        c.host.labels.insert("zone".into(), "a".into());
        c.host.zone = Some("b".into());
        assert_eq!(
            c.resolved_labels()
                .expect("ok")
                .get("zone")
                .map(String::as_str),
            Some("b")
        );
    }

    #[test]
    fn host_id_resolution_order() {
        let host = || Ok::<_, String>("machine".to_string());
        assert_eq!(
            resolve_host_id(Some("x"), Some("node"), host).expect("ok"),
            "x"
        );
        assert_eq!(
            resolve_host_id(None, Some("node"), host).expect("ok"),
            "node"
        );
        assert_eq!(
            resolve_host_id(None, Some(" "), host).expect("ok"),
            "machine"
        );
        assert_eq!(resolve_host_id(None, None, host).expect("ok"), "machine");
        assert!(resolve_host_id(None, None, || Ok(String::new())).is_err());
        assert!(resolve_host_id(None, None, || Err("boom".into())).is_err());
        assert!(
            !Config::default()
                .resolved_host_id()
                .expect("host")
                .is_empty()
        );
    }
}
