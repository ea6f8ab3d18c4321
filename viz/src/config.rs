//! viz's one typed config. [`Config`] is nested serde types: what a YAML file holds, each
//! `Default` the one place its defaults live, `JsonSchema` so the operator's CRD can embed it,
//! durations written as people write them (`30s`, `7d`) and the token secret a [`Secret`] that
//! never prints. [`Args`] is the flags and env variables (`RINGWATCH_VIZ_*`): a thin layer of
//! options laid over the config read from the file (flag > env > file > default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringwatch_core::Secret;
use ringwatch_net::client::BrokerClientConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::VizError;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub brokers: BrokersConfig,
    pub dashboard: DashboardConfig,
    pub query: QueryConfig,
    pub push: PushConfig,
    pub auth: AuthConfig,
}

/// The HTTP server: API, dashboard, WebSocket, /metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Most connections open at once (dashboards, API clients, WebSockets); past it a 503.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub header_timeout: Duration,
    /// A connection with no byte either way this long is closed (more than twice the
    /// WebSocket heartbeat, so live dashboards stay).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Serve the UI's own files from this folder instead of the built-in copies (UI work).
    pub web_dir: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            web_dir: None,
        }
    }
}

/// The brokers viz reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BrokersConfig {
    /// Broker gRPC endpoints.
    pub endpoints: Vec<String>,
    /// Health-check period (which also reads the cluster's members and ring).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub health_interval: Duration,
    /// TLS and the credential for the brokers; viz needs the `query` role.
    pub client: BrokerClientConfig,
}

impl Default for BrokersConfig {
    fn default() -> Self {
        BrokersConfig {
            endpoints: vec!["http://127.0.0.1:9093".into()],
            health_interval: Duration::from_secs(2),
            client: BrokerClientConfig::default(),
        }
    }
}

/// The in-memory dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Top-K size by default.
    pub topk: usize,
    /// Top-K entries older than this are left out.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub topk_ttl: Duration,
    /// Incremental pull period while live push is broken.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub pull_interval: Duration,
    /// How far back the fallback pull and the gap fill look.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub fallback_window: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            topk: 10,
            topk_ttl: Duration::from_secs(3600),
            pull_interval: Duration::from_secs(2),
            fallback_window: Duration::from_secs(300),
        }
    }
}

/// Bounds of one range query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Longest range one query may ask for.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_range: Duration,
    /// Most points one query returns.
    pub max_points: usize,
    /// Most values (timestamps × series, gaps included) one answer holds; past it only the
    /// oldest rows are kept and the answer says `truncated`.
    pub max_cells: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_range: Duration::from_secs(168 * 3600),
            max_points: 100_000,
            max_cells: 2_000_000,
        }
    }
}

/// Live push over WebSocket and QUIC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// WebSocket heartbeat (ping) period; a client silent for two is closed.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ws_heartbeat: Duration,
    pub quic: QuicConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            ws_heartbeat: Duration::from_secs(30),
            quic: QuicConfig::default(),
        }
    }
}

/// QUIC push (UDP; the same messages as /ws).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// PEM certificate chain; without it viz generates a self-signed one at start.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// Where to write the generated certificate (PEM), for clients to trust.
    pub cert_out: Option<PathBuf>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            cert: None,
            key: None,
            cert_out: None,
        }
    }
}

/// Who may read: HS256 tokens, or nobody checked (a local run).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The secret that signs API tokens (at least 32 bytes). Required unless `no_auth`.
    pub jwt_secret: Option<Secret>,
    /// A file holding it (a mounted Secret); one trailing newline is ignored.
    pub jwt_secret_file: Option<PathBuf>,
    /// Serve everything without tokens (for a local run only; logged loudly).
    pub no_auth: bool,
}

/// viz's flags and env variables: each laid over the config (file or default) when given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// HTTP address (API, dashboard, /metrics) [default: 0.0.0.0:8080].
    #[arg(long, env = "RINGWATCH_VIZ_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Broker gRPC endpoints (repeat, or comma-separated in env) [default:
    /// http://127.0.0.1:9093].
    #[arg(long = "broker", env = "RINGWATCH_VIZ_BROKERS", value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// Top-K size by default [default: 10].
    #[arg(long, env = "RINGWATCH_VIZ_TOPK")]
    pub topk: Option<usize>,
    /// Top-K entries older than this are left out, in seconds [default: 3600].
    #[arg(long, env = "RINGWATCH_VIZ_TOPK_TTL_SECS")]
    pub topk_ttl_secs: Option<u64>,
    /// Incremental pull period while live push is broken, in seconds [default: 2].
    #[arg(long, env = "RINGWATCH_VIZ_PULL_SECS")]
    pub pull_secs: Option<u64>,
    /// How far back the fallback pull and the gap fill look, in seconds [default: 300].
    #[arg(long, env = "RINGWATCH_VIZ_FALLBACK_WINDOW_SECS")]
    pub fallback_window_secs: Option<u64>,
    /// Broker health-check period, in seconds [default: 2].
    #[arg(long, env = "RINGWATCH_VIZ_HEALTH_SECS")]
    pub health_secs: Option<u64>,
    /// Longest range one query may ask for, in hours [default: 168].
    #[arg(long, env = "RINGWATCH_VIZ_MAX_RANGE_HOURS")]
    pub max_range_hours: Option<u64>,
    /// Most points one query returns [default: 100000].
    #[arg(long, env = "RINGWATCH_VIZ_MAX_POINTS")]
    pub max_points: Option<usize>,
    /// Most values (timestamps × series, gaps included) one range answer holds; past it only
    /// the oldest rows are kept and the answer says `truncated` [default: 2000000].
    #[arg(long, env = "RINGWATCH_VIZ_MAX_CELLS")]
    pub max_cells: Option<usize>,
    /// WebSocket heartbeat (ping) period, in seconds; a client silent for two is closed
    /// [default: 30].
    #[arg(long, env = "RINGWATCH_VIZ_WS_HEARTBEAT_SECS")]
    pub ws_heartbeat_secs: Option<u64>,
    /// Most HTTP connections open at once (dashboards, API clients, WebSockets); past it a 503
    /// [default: 4096].
    #[arg(long, env = "RINGWATCH_VIZ_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// An HTTP request's headers must arrive within this many seconds [default: 10].
    #[arg(long, env = "RINGWATCH_VIZ_HTTP_HEADER_TIMEOUT_SECS")]
    pub http_header_timeout_secs: Option<u64>,
    /// An HTTP connection with no byte either way for this many seconds is closed (more than
    /// twice the WebSocket heartbeat, so live dashboards stay) [default: 120].
    #[arg(long, env = "RINGWATCH_VIZ_HTTP_IDLE_TIMEOUT_SECS")]
    pub http_idle_timeout_secs: Option<u64>,
    /// HS256 secret that signs API tokens (at least 32 bytes). Required unless --no-auth.
    /// Prefer `--jwt-secret-file` or the env variable: a flag shows in `ps`.
    #[arg(long, env = "RINGWATCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// A file holding the HS256 secret (a mounted Secret); one trailing newline is ignored.
    #[arg(long, env = "RINGWATCH_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Serve everything without tokens (for a local run only; logged loudly).
    #[arg(long, env = "RINGWATCH_VIZ_NO_AUTH")]
    pub no_auth: bool,
    /// QUIC push address (UDP; the same messages as /ws) [default: 0.0.0.0:8081].
    #[arg(long, env = "RINGWATCH_VIZ_QUIC_LISTEN")]
    pub quic_listen: Option<SocketAddr>,
    /// PEM certificate chain for QUIC; without it viz generates a self-signed one at start.
    #[arg(long, env = "RINGWATCH_VIZ_QUIC_CERT", requires = "quic_key")]
    pub quic_cert: Option<PathBuf>,
    /// PEM private key for --quic-cert.
    #[arg(long, env = "RINGWATCH_VIZ_QUIC_KEY", requires = "quic_cert")]
    pub quic_key: Option<PathBuf>,
    /// Where to write the generated certificate (PEM), for clients to trust with --ca.
    #[arg(long, env = "RINGWATCH_VIZ_QUIC_CERT_OUT")]
    pub quic_cert_out: Option<PathBuf>,
    /// Serve the UI's own files from this folder instead of the built-in copies (UI work).
    #[arg(long, env = "RINGWATCH_VIZ_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// TLS and the credential for the brokers (`--broker-tls-ca`, `--broker-token-file`, …);
    /// viz needs the `query` role.
    #[command(flatten)]
    pub broker_client: BrokerClientConfig,
}

impl Args {
    /// Lays every flag and env variable given over `c`.
    pub fn apply(self, c: &mut Config) {
        use ringwatch_core::config::overlay as set;
        let secs = |v: Option<u64>| v.map(Duration::from_secs);
        set(&mut c.http.listen, self.listen);
        if !self.brokers.is_empty() {
            c.brokers.endpoints = self.brokers;
        }
        set(&mut c.dashboard.topk, self.topk);
        set(&mut c.dashboard.topk_ttl, secs(self.topk_ttl_secs));
        set(&mut c.dashboard.pull_interval, secs(self.pull_secs));
        set(
            &mut c.dashboard.fallback_window,
            secs(self.fallback_window_secs),
        );
        set(&mut c.brokers.health_interval, secs(self.health_secs));
        set(
            &mut c.query.max_range,
            secs(self.max_range_hours.map(|h| h.saturating_mul(3600))),
        );
        set(&mut c.query.max_points, self.max_points);
        set(&mut c.query.max_cells, self.max_cells);
        set(&mut c.push.ws_heartbeat, secs(self.ws_heartbeat_secs));
        set(&mut c.http.max_connections, self.max_connections);
        set(
            &mut c.http.header_timeout,
            secs(self.http_header_timeout_secs),
        );
        set(&mut c.http.idle_timeout, secs(self.http_idle_timeout_secs));
        if self.jwt_secret.is_some() {
            c.auth.jwt_secret = self.jwt_secret;
            c.auth.jwt_secret_file = None;
        }
        if self.jwt_secret_file.is_some() {
            c.auth.jwt_secret_file = self.jwt_secret_file;
            c.auth.jwt_secret = None;
        }
        if self.no_auth {
            c.auth.no_auth = true;
        }
        set(&mut c.push.quic.listen, self.quic_listen);
        if self.quic_cert.is_some() {
            c.push.quic.cert = self.quic_cert;
            c.push.quic.key = self.quic_key;
        }
        if self.quic_cert_out.is_some() {
            c.push.quic.cert_out = self.quic_cert_out;
        }
        if self.web_dir.is_some() {
            c.http.web_dir = self.web_dir;
        }
        c.brokers.client.overlay(self.broker_client);
    }
}

impl Config {
    /// The config from a YAML file's mapping (nested as [`Config`]; absent fields default).
    pub fn from_yaml_value(v: serde_json::Value) -> Result<Config, VizError> {
        serde_json::from_value(v).map_err(|e| VizError::Config(format!("config file: {e}")))
    }

    /// The config as `/api/admin/config` shows it: secrets (the signing key, the broker
    /// credential) as `<redacted>`, which [`Secret`] does by itself.
    pub fn shown(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The HTTP listener's limits.
    pub fn http_limits(&self) -> ringwatch_net::HttpLimits {
        ringwatch_net::HttpLimits {
            max_connections: self.http.max_connections,
            header_timeout: self.http.header_timeout,
            idle_timeout: self.http.idle_timeout,
        }
    }

    /// How viz reaches the brokers (TLS files and the token read and checked).
    pub fn connector(&self) -> Result<ringwatch_net::client::Connector, VizError> {
        ringwatch_net::client::Connector::new(&self.brokers.client)
            .map_err(|e| VizError::Config(format!("brokers.client: {e}")))
    }

    /// Reads `auth.jwt_secret_file` into `auth.jwt_secret` (before `validate`).
    pub fn load_secrets(&mut self) -> Result<(), VizError> {
        if let Some(path) = &self.auth.jwt_secret_file {
            if self.auth.jwt_secret.is_some() {
                return Err(VizError::Config(
                    "auth.jwt_secret and auth.jwt_secret_file: give one".into(),
                ));
            }
            let secret = ringwatch_core::read_secret_file(path).map_err(|e| {
                VizError::Config(format!(
                    "auth.jwt_secret_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            self.auth.jwt_secret = Some(secret);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), VizError> {
        let bad = |m: String| Err(VizError::Config(m));
        if self.brokers.endpoints.is_empty() {
            return bad("brokers.endpoints: at least one --broker is needed".into());
        }
        let connector = self.connector()?;
        for b in &self.brokers.endpoints {
            connector
                .endpoint(b)
                .map_err(|e| VizError::Config(format!("brokers.endpoints: {e}")))?;
        }
        let d = &self.dashboard;
        if !(1..=1000).contains(&d.topk) {
            return bad(format!(
                "dashboard.topk: {} is out of range 1..=1000",
                d.topk
            ));
        }
        for (name, v) in [
            ("dashboard.topk_ttl", d.topk_ttl),
            ("dashboard.pull_interval", d.pull_interval),
            ("dashboard.fallback_window", d.fallback_window),
            ("brokers.health_interval", self.brokers.health_interval),
        ] {
            if v < Duration::from_secs(1) {
                return bad(format!("{name}: {v:?} is below the minimum of 1s"));
            }
        }
        let beat = self.push.ws_heartbeat;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&beat) {
            return bad(format!(
                "push.ws_heartbeat: {beat:?} is out of range 1s..=1h"
            ));
        }
        let q = &self.query;
        if q.max_cells < 1000 {
            return bad(format!(
                "query.max_cells: {} is below the minimum 1000",
                q.max_cells
            ));
        }
        if !(Duration::from_secs(3600)..=Duration::from_secs(3650 * 86_400)).contains(&q.max_range)
            || q.max_points == 0
        {
            return bad(
                "query.max_range must be 1h..=3650d and query.max_points at least 1".into(),
            );
        }
        let h = &self.http;
        if !(1..=1_000_000).contains(&h.max_connections) {
            return bad(format!(
                "http.max_connections: {} is out of range 1..=1000000",
                h.max_connections
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&h.header_timeout) {
            return bad(format!(
                "http.header_timeout: {:?} is out of range 1s..=1h",
                h.header_timeout
            ));
        }
        if h.idle_timeout <= 2 * beat || h.idle_timeout > Duration::from_secs(86_400) {
            return bad(format!(
                "http.idle_timeout: {:?} must be above twice push.ws_heartbeat ({beat:?}) and at most 1d",
                h.idle_timeout
            ));
        }
        match (&self.auth.jwt_secret, self.auth.no_auth) {
            (None, false) => {
                return bad("auth.jwt_secret: set --jwt-secret-file (or RINGWATCH_JWT_SECRET), or pass --no-auth for a local run".into());
            }
            (Some(_), true) => return bad("auth.jwt_secret and auth.no_auth: choose one".into()),
            (Some(s), false) if s.len() < 32 => {
                return bad(format!(
                    "auth.jwt_secret: {} bytes is too short for HS256; use at least 32",
                    s.len()
                ));
            }
            _ => {}
        }
        let quic = &self.push.quic;
        if quic.cert.is_some() != quic.key.is_some() {
            return bad("push.quic.cert and push.quic.key: give both or neither".into());
        }
        Ok(())
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

    fn open() -> Config {
        let mut c = Config::default();
        c.auth.no_auth = true;
        c
    }

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        // No secret and no --no-auth: refused, naming both ways out.
        let e = Config::default().validate().unwrap_err().to_string();
        assert!(e.contains("--jwt-secret") && e.contains("--no-auth"), "{e}");
        open().validate().unwrap();
        let mut short = Config::default();
        short.auth.jwt_secret = Some("short".into());
        let e = short.validate().unwrap_err().to_string();
        assert!(e.contains("too short") && !e.contains("short\""), "{e}");
        let mut signed = Config::default();
        signed.auth.jwt_secret = Some("x".repeat(32).into());
        signed.validate().unwrap();
        let mut c = open();
        c.brokers.endpoints.clear();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("brokers.endpoints")
        );
        let mut c = open();
        c.dashboard.topk = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("dashboard.topk")
        );
        let mut c = open();
        c.http.idle_timeout = Duration::from_secs(60);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("http.idle_timeout") && e.contains("push.ws_heartbeat"),
            "{e}"
        );
    }

    #[test]
    fn a_nested_yaml_file_with_human_durations_and_flags_over_it() {
        let file: serde_json::Value = serde_json::json!({
            "dashboard": {"topk": 20, "topk_ttl": "30m"},
            "query": {"max_range": "14d"},
            "push": {"ws_heartbeat": "15s", "quic": {"listen": "127.0.0.1:9999"}},
            "auth": {"no_auth": true},
        });
        let mut c = Config::from_yaml_value(file).unwrap();
        assert_eq!(c.dashboard.topk, 20);
        assert_eq!(c.dashboard.topk_ttl, Duration::from_secs(1800));
        assert_eq!(c.query.max_range, Duration::from_secs(14 * 86_400));
        assert_eq!(c.push.quic.listen.port(), 9999);
        // Untouched fields keep their defaults.
        assert_eq!(
            c.dashboard.pull_interval,
            Config::default().dashboard.pull_interval
        );
        c.validate().unwrap();
        // Flags win over the file; flags not given leave it.
        let cli = Cli::try_parse_from(["viz", "--topk", "5", "--max-range-hours", "2"]).unwrap();
        cli.args.apply(&mut c);
        assert_eq!(c.dashboard.topk, 5);
        assert_eq!(c.query.max_range, Duration::from_secs(7200));
        assert_eq!(
            c.dashboard.topk_ttl,
            Duration::from_secs(1800),
            "from the file"
        );
        assert_eq!(
            c.push.ws_heartbeat,
            Duration::from_secs(15),
            "from the file"
        );
        // Unknown fields, at any depth, and bad durations are refused by name.
        for (bad, named) in [
            (serde_json::json!({"topk": 5}), "topk"),
            (serde_json::json!({"dashboard": {"top": 5}}), "top"),
            (
                serde_json::json!({"dashboard": {"topk_ttl": "soon"}}),
                "soon",
            ),
        ] {
            let e = Config::from_yaml_value(bad).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn the_shown_config_redacts_every_secret() {
        let mut c = open();
        c.auth.no_auth = false;
        c.auth.jwt_secret = Some("s".repeat(40).into());
        c.brokers.client.token = Some("t".repeat(40).into());
        let shown = c.shown();
        let text = shown.to_string();
        assert!(
            !text.contains(&"s".repeat(40)) && !text.contains(&"t".repeat(40)),
            "{text}"
        );
        assert_eq!(shown["auth"]["jwt_secret"], "<redacted>");
        assert_eq!(shown["brokers"]["client"]["token"], "<redacted>");
        assert_eq!(shown["dashboard"]["topk_ttl"], "1h");
        // Every field is there: the shown config reads back as the config, secrets aside.
        let mut back = Config::from_yaml_value(shown).unwrap();
        back.auth.jwt_secret = c.auth.jwt_secret.clone();
        back.brokers.client.token = c.brokers.client.token.clone();
        assert_eq!(back, c);
    }

    #[test]
    fn the_schema_is_nested_with_durations_as_strings() {
        let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
        let text = schema.to_string();
        for field in [
            "topk_ttl",
            "ws_heartbeat",
            "max_range",
            "jwt_secret",
            "endpoints",
        ] {
            assert!(text.contains(field), "{field}");
        }
    }

    #[test]
    fn the_secret_comes_from_a_file_without_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("rw-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{}\n", "k".repeat(40))).unwrap();
        let mut c = Config::default();
        c.auth.jwt_secret_file = Some(path.clone());
        c.load_secrets().unwrap();
        assert_eq!(
            c.auth.jwt_secret.as_ref().map(Secret::expose),
            Some("k".repeat(40).as_str())
        );
        c.validate().unwrap();
        // Both, or a file that is not there: refused, naming the field.
        let mut both = Config::default();
        both.auth.jwt_secret = Some("x".repeat(40).into());
        both.auth.jwt_secret_file = Some(path.clone());
        assert!(
            both.load_secrets()
                .unwrap_err()
                .to_string()
                .contains("give one")
        );
        let _ = std::fs::remove_file(&path);
        let mut gone = Config::default();
        gone.auth.jwt_secret_file = Some(path);
        let e = gone.load_secrets().unwrap_err().to_string();
        assert!(e.contains("auth.jwt_secret_file: cannot read"), "{e}");
    }
}
