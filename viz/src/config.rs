//! viz's one typed config: flags, env (`RINGWATCH_VIZ_*`) and a YAML file (field names equal
//! flag ids), with defaults that run locally.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::VizError;

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP address (API, dashboard, /metrics).
    #[arg(long, env = "RINGWATCH_VIZ_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Broker gRPC endpoints (repeat, or comma-separated in env).
    #[arg(
        long = "broker",
        env = "RINGWATCH_VIZ_BROKERS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:9093"
    )]
    pub brokers: Vec<String>,
    /// Top-K size by default.
    #[arg(long, env = "RINGWATCH_VIZ_TOPK", default_value_t = 10)]
    pub topk: usize,
    /// Top-K entries older than this are left out, in seconds.
    #[arg(long, env = "RINGWATCH_VIZ_TOPK_TTL_SECS", default_value_t = 3600)]
    pub topk_ttl_secs: u64,
    /// Incremental pull period while live push is broken, in seconds.
    #[arg(long, env = "RINGWATCH_VIZ_PULL_SECS", default_value_t = 2)]
    pub pull_secs: u64,
    /// How far back the fallback pull and the gap fill look, in seconds.
    #[arg(
        long,
        env = "RINGWATCH_VIZ_FALLBACK_WINDOW_SECS",
        default_value_t = 300
    )]
    pub fallback_window_secs: u64,
    /// Broker health-check period, in seconds.
    #[arg(long, env = "RINGWATCH_VIZ_HEALTH_SECS", default_value_t = 2)]
    pub health_secs: u64,
    /// Longest range one query may ask for, in hours.
    #[arg(long, env = "RINGWATCH_VIZ_MAX_RANGE_HOURS", default_value_t = 168)]
    pub max_range_hours: u64,
    /// Most points one query returns.
    #[arg(long, env = "RINGWATCH_VIZ_MAX_POINTS", default_value_t = 100_000)]
    pub max_points: usize,
    /// Most values (timestamps × series, gaps included) one range answer holds; past it only
    /// the oldest rows are kept and the answer says `truncated`.
    #[arg(long, env = "RINGWATCH_VIZ_MAX_CELLS", default_value_t = 2_000_000)]
    pub max_cells: usize,
    /// WebSocket heartbeat (ping) period, in seconds; a client silent for two is closed.
    #[arg(long, env = "RINGWATCH_VIZ_WS_HEARTBEAT_SECS", default_value_t = 30)]
    pub ws_heartbeat_secs: u64,
    /// Most HTTP connections open at once (dashboards, API clients, WebSockets); past it a 503.
    #[arg(long, env = "RINGWATCH_VIZ_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// An HTTP request's headers must arrive within this many seconds.
    #[arg(
        long,
        env = "RINGWATCH_VIZ_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http_header_timeout_secs: u64,
    /// An HTTP connection with no byte either way for this many seconds is closed (more than
    /// twice the WebSocket heartbeat, so live dashboards stay).
    #[arg(
        long,
        env = "RINGWATCH_VIZ_HTTP_IDLE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub http_idle_timeout_secs: u64,
    /// HS256 secret that signs API tokens (at least 32 bytes). Required unless --no-auth.
    /// Prefer `--jwt-secret-file` or the env variable: a flag shows in `ps`.
    #[arg(long, env = "RINGWATCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 secret (a mounted Secret); one trailing newline is ignored.
    #[arg(long, env = "RINGWATCH_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Serve everything without tokens (for a local run only; logged loudly).
    #[arg(long, env = "RINGWATCH_VIZ_NO_AUTH")]
    pub no_auth: bool,
    /// QUIC push address (UDP; the same messages as /ws).
    #[arg(
        long,
        env = "RINGWATCH_VIZ_QUIC_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub quic_listen: SocketAddr,
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
    pub broker_client: ringwatch_net::client::BrokerClientConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            brokers: vec!["http://127.0.0.1:9093".into()],
            topk: 10,
            topk_ttl_secs: 3600,
            pull_secs: 2,
            fallback_window_secs: 300,
            health_secs: 2,
            max_range_hours: 168,
            max_points: 100_000,
            max_cells: 2_000_000,
            ws_heartbeat_secs: 30,
            max_connections: 4096,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 120,
            jwt_secret: None,
            jwt_secret_file: None,
            no_auth: false,
            quic_listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            quic_cert: None,
            quic_key: None,
            quic_cert_out: None,
            web_dir: None,
            broker_client: Default::default(),
        }
    }
}

impl Config {
    /// The HTTP listener's limits.
    pub fn http_limits(&self) -> ringwatch_net::HttpLimits {
        ringwatch_net::HttpLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.http_idle_timeout_secs),
        }
    }

    /// How viz reaches the brokers (TLS files and the token read and checked).
    pub fn connector(&self) -> Result<ringwatch_net::client::Connector, VizError> {
        ringwatch_net::client::Connector::new(&self.broker_client)
            .map_err(|e| VizError::Config(format!("broker_client: {e}")))
    }

    /// Reads `jwt_secret_file` into `jwt_secret` (before `validate`).
    pub fn load_secrets(&mut self) -> Result<(), VizError> {
        if let Some(path) = &self.jwt_secret_file {
            if self.jwt_secret.is_some() {
                return Err(VizError::Config(
                    "jwt_secret and jwt_secret_file: give one".into(),
                ));
            }
            let secret = read_secret_file(path).map_err(|e| {
                VizError::Config(format!(
                    "jwt_secret_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            self.jwt_secret = Some(secret);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), VizError> {
        let bad = |m: String| Err(VizError::Config(m));
        if self.brokers.is_empty() {
            return bad("brokers: at least one --broker is needed".into());
        }
        let connector = self.connector()?;
        for b in &self.brokers {
            connector
                .endpoint(b)
                .map_err(|e| VizError::Config(format!("brokers: {e}")))?;
        }
        if !(1..=1000).contains(&self.topk) {
            return bad(format!("topk: {} is out of range 1..=1000", self.topk));
        }
        if self.topk_ttl_secs == 0
            || self.pull_secs == 0
            || self.health_secs == 0
            || self.fallback_window_secs == 0
        {
            return bad(
                "topk_ttl_secs, pull_secs, health_secs and fallback_window_secs must be at least 1"
                    .into(),
            );
        }
        if !(1..=3600).contains(&self.ws_heartbeat_secs) {
            return bad(format!(
                "ws_heartbeat_secs: {} is out of range 1..=3600",
                self.ws_heartbeat_secs
            ));
        }
        if self.max_cells < 1000 {
            return bad(format!(
                "max_cells: {} is below the minimum 1000",
                self.max_cells
            ));
        }
        if !(1..=24 * 3650).contains(&self.max_range_hours) || self.max_points == 0 {
            return bad("max_range_hours must be 1..=87600 and max_points at least 1".into());
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return bad(format!(
                "max_connections: {} is out of range 1..=1000000",
                self.max_connections
            ));
        }
        if !(1..=3600).contains(&self.http_header_timeout_secs) {
            return bad(format!(
                "http_header_timeout_secs: {} is out of range 1..=3600",
                self.http_header_timeout_secs
            ));
        }
        if self.http_idle_timeout_secs <= 2 * self.ws_heartbeat_secs
            || self.http_idle_timeout_secs > 24 * 3600
        {
            return bad(format!(
                "http_idle_timeout_secs: {} must be above twice ws_heartbeat_secs ({}) and at most 86400",
                self.http_idle_timeout_secs, self.ws_heartbeat_secs
            ));
        }
        match (&self.jwt_secret, self.no_auth) {
            (None, false) => {
                return bad("jwt_secret: set --jwt-secret-file (or RINGWATCH_JWT_SECRET), or pass --no-auth for a local run".into());
            }
            (Some(_), true) => return bad("jwt_secret and no_auth: choose one".into()),
            (Some(s), false) if s.len() < 32 => {
                return bad(format!(
                    "jwt_secret: {} bytes is too short for HS256; use at least 32",
                    s.len()
                ));
            }
            _ => {}
        }
        if self.quic_cert.is_some() != self.quic_key.is_some() {
            return bad("quic_cert and quic_key: give both or neither".into());
        }
        Ok(())
    }
}

/// A secret from a file, without the one trailing newline editors and `echo` add.
pub fn read_secret_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut s = std::fs::read_to_string(path)?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        // No secret and no --no-auth: refused, naming both ways out.
        let e = Config::default().validate().unwrap_err().to_string();
        assert!(e.contains("--jwt-secret") && e.contains("--no-auth"), "{e}");
        let open = Config {
            no_auth: true,
            ..Config::default()
        };
        open.validate().unwrap();
        let short = Config {
            jwt_secret: Some("short".into()),
            ..Config::default()
        };
        assert!(
            short
                .validate()
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
        let signed = Config {
            jwt_secret: Some("x".repeat(32)),
            ..Config::default()
        };
        signed.validate().unwrap();
        let c = Config {
            brokers: vec![],
            ..open.clone()
        };
        assert!(c.validate().unwrap_err().to_string().contains("brokers"));
        let c = Config {
            topk: 0,
            ..open.clone()
        };
        assert!(c.validate().unwrap_err().to_string().contains("topk"));
    }

    #[test]
    fn the_secret_comes_from_a_file_without_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("rw-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{}\n", "k".repeat(40))).unwrap();
        let mut c = Config {
            jwt_secret_file: Some(path.clone()),
            ..Config::default()
        };
        c.load_secrets().unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("k".repeat(40).as_str()));
        c.validate().unwrap();
        // Both, or a file that is not there: refused, naming the field.
        let mut both = Config {
            jwt_secret: Some("x".repeat(40)),
            jwt_secret_file: Some(path.clone()),
            ..Config::default()
        };
        assert!(
            both.load_secrets()
                .unwrap_err()
                .to_string()
                .contains("give one")
        );
        let _ = std::fs::remove_file(&path);
        let mut gone = Config {
            jwt_secret_file: Some(path),
            ..Config::default()
        };
        let e = gone.load_secrets().unwrap_err().to_string();
        assert!(e.contains("jwt_secret_file: cannot read"), "{e}");
    }
}
