//! Agent configuration: command-line flags, environment variables and the YAML file share
//! one struct whose field names equal the clap argument ids.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// Default broker endpoint.
pub const DEFAULT_BROKER: &str = "http://127.0.0.1:9093";

/// The agent's configuration (SPEC S2).
///
/// Every field is a long flag and an environment variable `RINGWATCH_AGENT_<FIELD>`; field names
/// are the clap argument ids so a YAML file can be merged with flags by field name.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Broker gRPC endpoints (`http://host:port`); repeatable, comma-separated in the env var.
    #[arg(
        long = "broker",
        env = "RINGWATCH_AGENT_BROKERS",
        value_delimiter = ',',
        default_value = DEFAULT_BROKER
    )]
    pub brokers: Vec<String>,

    /// Collection interval in seconds (1..=3600).
    #[arg(long, env = "RINGWATCH_AGENT_INTERVAL_SECS", default_value_t = 5)]
    pub interval_secs: u64,

    /// Host id; defaults to the `NODE_NAME` env var, then the hostname.
    #[arg(long, env = "RINGWATCH_AGENT_HOST_ID")]
    pub host_id: Option<String>,

    /// Labels `key=value` sent with the registration; repeatable.
    #[arg(long = "label", env = "RINGWATCH_AGENT_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Zone of the host; becomes the label `zone`.
    #[arg(long, env = "RINGWATCH_AGENT_ZONE")]
    pub zone: Option<String>,

    /// Buffer capacity in full snapshots.
    #[arg(long, env = "RINGWATCH_AGENT_BUFFER_CAPACITY", default_value_t = 1024)]
    pub buffer_capacity: usize,

    /// Raw values per metric in the sliding min/max/avg window.
    #[arg(long, env = "RINGWATCH_AGENT_WINDOW_SAMPLES", default_value_t = 12)]
    pub window_samples: usize,

    /// Maximum snapshots per batch.
    #[arg(long, env = "RINGWATCH_AGENT_MAX_BATCH", default_value_t = 64)]
    pub max_batch: usize,

    /// Maximum unacknowledged batches on a stream.
    #[arg(long, env = "RINGWATCH_AGENT_MAX_IN_FLIGHT", default_value_t = 4)]
    pub max_in_flight: usize,

    /// Cap of the reconnect back-off, in seconds.
    #[arg(long, env = "RINGWATCH_AGENT_BACKOFF_MAX_SECS", default_value_t = 30)]
    pub backoff_max_secs: u64,

    /// Connect timeout per broker, in seconds.
    #[arg(
        long,
        env = "RINGWATCH_AGENT_CONNECT_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub connect_timeout_secs: u64,

    /// Reconnect when the oldest unacknowledged batch has no ack after this many seconds.
    #[arg(long, env = "RINGWATCH_AGENT_ACK_TIMEOUT_SECS", default_value_t = 15)]
    pub ack_timeout_secs: u64,

    /// Heartbeat period on the stream, in seconds.
    #[arg(long, env = "RINGWATCH_AGENT_HEARTBEAT_SECS", default_value_t = 10)]
    pub heartbeat_secs: u64,

    /// Address of the Prometheus `/metrics` and `/health` HTTP listener (port 0 = any).
    #[arg(
        long,
        env = "RINGWATCH_AGENT_METRICS_LISTEN",
        default_value = "127.0.0.1:9102"
    )]
    pub metrics_listen: SocketAddr,
    /// Most connections to the /metrics listener at once; past it a 503.
    #[arg(
        long,
        env = "RINGWATCH_AGENT_METRICS_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub metrics_max_connections: usize,
    /// An HTTP request's headers must arrive within this many seconds.
    #[arg(
        long,
        env = "RINGWATCH_AGENT_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http_header_timeout_secs: u64,
    /// An HTTP connection with no byte either way for this many seconds is closed.
    #[arg(
        long,
        env = "RINGWATCH_AGENT_HTTP_IDLE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub http_idle_timeout_secs: u64,
    /// TLS and the credential for the brokers (`--broker-tls-ca`, `--broker-token-file`, …).
    #[command(flatten)]
    pub broker_client: ringwatch_net::client::BrokerClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: vec![DEFAULT_BROKER.to_string()],
            interval_secs: 5,
            host_id: None,
            labels: Vec::new(),
            zone: None,
            buffer_capacity: 1024,
            window_samples: 12,
            max_batch: 64,
            max_in_flight: 4,
            backoff_max_secs: 30,
            connect_timeout_secs: 5,
            ack_timeout_secs: 15,
            heartbeat_secs: 10,
            metrics_listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9102)),
            metrics_max_connections: 16,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 120,
            broker_client: Default::default(),
        }
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
            "brokers",
            format!("`{endpoint}` is not a valid URI ({e}); expected http://host:port"),
        )
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(AgentError::config(
                "brokers",
                format!("`{endpoint}` must start with http:// or https://"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(AgentError::config(
            "brokers",
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
                "labels",
                format!("`{raw}` is not of the form key=value"),
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(AgentError::config(
                "labels",
                format!("`{raw}`: the key must be non-empty and contain no whitespace"),
            ));
        }
        out.insert(key.to_string(), value.trim().to_string());
    }
    // Brokers refuse a registration with labels outside these rules: refuse them here, at start.
    if let Some(reason) =
        ringwatch_proto::rules::labels_problem(out.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        return Err(AgentError::config("labels", reason));
    }
    Ok(out)
}

impl Config {
    /// Validates every field; the error names the field and what is allowed.
    /// The /metrics listener's limits.
    pub fn metrics_limits(&self) -> ringwatch_net::HttpLimits {
        ringwatch_net::HttpLimits {
            max_connections: self.metrics_max_connections,
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.http_idle_timeout_secs),
        }
    }

    /// How to reach the brokers (TLS files and the token read and checked).
    pub fn connector(&self) -> Result<ringwatch_net::client::Connector, AgentError> {
        ringwatch_net::client::Connector::new(&self.broker_client)
            .map_err(|e| AgentError::config("broker_client", e.to_string()))
    }

    pub fn validate(&self) -> Result<(), AgentError> {
        if self.brokers.is_empty() {
            return Err(AgentError::config(
                "brokers",
                "at least one broker endpoint is required",
            ));
        }
        for b in &self.brokers {
            check_broker(b.trim())?;
        }
        let connector = self.connector()?;
        for b in &self.brokers {
            connector
                .endpoint(b.trim())
                .map_err(|e| AgentError::config("brokers", e.to_string()))?;
        }
        check_range("interval_secs", self.interval_secs, 1, 3600)?;
        if let Some(h) = &self.host_id
            && h.trim().is_empty()
        {
            return Err(AgentError::config(
                "host_id",
                "must not be empty (omit it to use NODE_NAME or the hostname)",
            ));
        }
        parse_labels(&self.labels)?;
        if let Some(z) = &self.zone
            && z.trim().is_empty()
        {
            return Err(AgentError::config(
                "zone",
                "must not be empty (omit it for no zone)",
            ));
        }
        check_range("buffer_capacity", self.buffer_capacity, 1, 1_000_000)?;
        check_range("window_samples", self.window_samples, 1, 10_000)?;
        // Brokers refuse larger batches by default.
        check_range(
            "max_batch",
            self.max_batch,
            1,
            ringwatch_proto::rules::DEFAULT_MAX_BATCH,
        )?;
        check_range("max_in_flight", self.max_in_flight, 1, 1024)?;
        check_range("backoff_max_secs", self.backoff_max_secs, 1, 86_400)?;
        check_range("connect_timeout_secs", self.connect_timeout_secs, 1, 3600)?;
        check_range("ack_timeout_secs", self.ack_timeout_secs, 1, 3600)?;
        check_range("heartbeat_secs", self.heartbeat_secs, 1, 3600)?;
        check_range(
            "metrics_max_connections",
            self.metrics_max_connections,
            1,
            100_000,
        )?;
        check_range(
            "http_header_timeout_secs",
            self.http_header_timeout_secs,
            1,
            3600,
        )?;
        check_range(
            "http_idle_timeout_secs",
            self.http_idle_timeout_secs,
            1,
            86_400,
        )?;
        Ok(())
    }

    /// The host id: `host_id` if set, else the `NODE_NAME` env var, else the hostname.
    pub fn resolved_host_id(&self) -> Result<String, AgentError> {
        let id = resolve_host_id(
            self.host_id.as_deref(),
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
            Some(reason) => Err(AgentError::config("host_id", reason)),
        }
    }

    /// The labels sent with the registration: the parsed `labels` plus `zone` (which wins over
    /// a `zone=` label).
    pub fn resolved_labels(&self) -> Result<BTreeMap<String, String>, AgentError> {
        let mut labels = parse_labels(&self.labels)?;
        if let Some(zone) = &self.zone {
            labels.insert("zone".to_string(), zone.trim().to_string());
        }
        Ok(labels)
    }
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
            "the hostname is empty; set host_id or NODE_NAME".to_string(),
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
        config: Config,
    }

    #[test]
    fn default_matches_clap_defaults_and_validates() {
        let parsed = Cli::try_parse_from(["agent"]).expect("parse").config;
        // Environment variables could override; only compare when none is set.
        if std::env::vars().all(|(k, _)| !k.starts_with("RINGWATCH_AGENT_")) {
            assert_eq!(parsed, Config::default());
        }
        Config::default().validate().expect("default is valid");
    }

    #[test]
    fn flags_map_to_fields() {
        let c = Cli::try_parse_from([
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
        ])
        .expect("parse")
        .config;
        assert_eq!(c.brokers, vec!["http://a:1", "http://b:2"]);
        assert_eq!(c.interval_secs, 1);
        assert_eq!(c.metrics_listen.port(), 0);
        let labels = c.resolved_labels().expect("labels");
        assert_eq!(labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(labels.get("zone").map(String::as_str), Some("eu-1"));
        c.validate().expect("valid");
    }

    #[test]
    fn yaml_style_field_names_deserialize() {
        // serde uses the same snake_case names; unknown fields are refused.
        let c: Config = serde_json_like(&[("interval_secs", "7")]);
        assert_eq!(c.interval_secs, 7);
        assert_eq!(c.buffer_capacity, 1024);
    }

    /// Builds a Config through serde from string pairs, without a format crate.
    fn serde_json_like(pairs: &[(&str, &str)]) -> Config {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, MapDeserializer};
        let map = pairs.iter().map(|(k, v)| {
            (
                k.into_deserializer(),
                v.parse::<u64>().expect("number").into_deserializer(),
            )
        });
        let de: MapDeserializer<'_, _, Error> = MapDeserializer::new(map);
        Config::deserialize(de).expect("deserialize")
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
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    interval_secs: 0,
                    ..base.clone()
                },
                "interval_secs",
            ),
            (
                Config {
                    interval_secs: 3601,
                    ..base.clone()
                },
                "interval_secs",
            ),
            (
                Config {
                    brokers: vec![],
                    ..base.clone()
                },
                "brokers",
            ),
            (
                Config {
                    brokers: vec!["127.0.0.1:9093".into()],
                    ..base.clone()
                },
                "brokers",
            ),
            (
                Config {
                    brokers: vec!["ftp://x:1".into()],
                    ..base.clone()
                },
                "brokers",
            ),
            (
                Config {
                    brokers: vec!["https://x:1".into()],
                    broker_client: ringwatch_net::client::BrokerClientConfig {
                        tls_ca: Some("/nonexistent/ca.pem".into()),
                        ..Default::default()
                    },
                    ..base.clone()
                },
                "broker_client",
            ),
            (
                Config {
                    buffer_capacity: 0,
                    ..base.clone()
                },
                "buffer_capacity",
            ),
            (
                Config {
                    window_samples: 0,
                    ..base.clone()
                },
                "window_samples",
            ),
            (
                Config {
                    max_batch: 0,
                    ..base.clone()
                },
                "max_batch",
            ),
            (
                Config {
                    max_in_flight: 0,
                    ..base.clone()
                },
                "max_in_flight",
            ),
            (
                Config {
                    backoff_max_secs: 0,
                    ..base.clone()
                },
                "backoff_max_secs",
            ),
            (
                Config {
                    connect_timeout_secs: 0,
                    ..base.clone()
                },
                "connect_timeout_secs",
            ),
            (
                Config {
                    ack_timeout_secs: 0,
                    ..base.clone()
                },
                "ack_timeout_secs",
            ),
            (
                Config {
                    heartbeat_secs: 0,
                    ..base.clone()
                },
                "heartbeat_secs",
            ),
            (
                Config {
                    host_id: Some(" ".into()),
                    ..base.clone()
                },
                "host_id",
            ),
            (
                Config {
                    labels: vec!["novalue".into()],
                    ..base.clone()
                },
                "labels",
            ),
            (
                Config {
                    zone: Some(String::new()),
                    ..base.clone()
                },
                "zone",
            ),
        ];
        for (c, field) in cases {
            assert_eq!(err_field(&c), field, "{c:?}");
        }
        let msg = Config {
            interval_secs: 0,
            ..base
        }
        .validate()
        .expect_err("invalid")
        .to_string();
        assert!(
            msg.contains("interval_secs") && msg.contains("1..=3600"),
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
        let c = Config {
            host_id: Some("bad host!".into()),
            ..Config::default()
        };
        assert!(
            c.resolved_host_id()
                .unwrap_err()
                .to_string()
                .contains("host_id")
        );
        let c = Config {
            max_batch: 2000,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("max_batch"));
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
        let c = Config {
            labels: vec!["zone=a".into()],
            zone: Some("b".into()),
            ..Config::default()
        };
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
