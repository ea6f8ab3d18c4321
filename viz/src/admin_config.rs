//! viz's configuration as an admin reads it (`GET /api/admin/config`): every field of
//! `Config`, the secrets replaced by whether they are set.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use utoipa::ToSchema;

/// viz's configuration as an admin may read it: the JWT secret replaced by whether one is set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminConfig {
    /// HTTP address (API, dashboard, /metrics).
    #[schema(value_type = String, example = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Broker gRPC endpoints.
    pub brokers: Vec<String>,
    /// Top-K size by default.
    pub topk: usize,
    /// Top-K entries older than this are left out, in seconds.
    pub topk_ttl_secs: u64,
    /// Incremental pull period while live push is broken, in seconds.
    pub pull_secs: u64,
    /// How far back the fallback pull and the gap fill look, in seconds.
    pub fallback_window_secs: u64,
    /// Broker health-check period, in seconds.
    pub health_secs: u64,
    /// Longest range one query may ask for, in hours.
    pub max_range_hours: u64,
    /// Most points one query returns.
    pub max_points: usize,
    /// Most values (timestamps × series) one range answer holds.
    pub max_cells: usize,
    /// WebSocket heartbeat (ping) period, in seconds.
    pub ws_heartbeat_secs: u64,
    /// Most HTTP connections open at once.
    pub max_connections: usize,
    /// Seconds an HTTP request's headers may take.
    pub http_header_timeout_secs: u64,
    /// Seconds an HTTP connection may stay quiet.
    pub http_idle_timeout_secs: u64,
    /// "(set)" when a secret is set, else null: the secret itself never leaves viz.
    #[schema(example = "(set)")]
    #[schema(required)]
    pub jwt_secret: Option<&'static str>,
    /// The file the secret was read from, if one.
    #[schema(value_type = Option<String>, required)]
    pub jwt_secret_file: Option<PathBuf>,
    /// Whether viz serves everything without tokens.
    pub no_auth: bool,
    /// QUIC push address (UDP).
    #[schema(value_type = String, example = "0.0.0.0:8081")]
    pub quic_listen: SocketAddr,
    /// PEM certificate chain for QUIC; null: a generated self-signed one.
    #[schema(value_type = Option<String>, required)]
    pub quic_cert: Option<PathBuf>,
    /// PEM private key for quic_cert.
    #[schema(value_type = Option<String>, required)]
    pub quic_key: Option<PathBuf>,
    /// Where the generated certificate is written.
    #[schema(value_type = Option<String>, required)]
    pub quic_cert_out: Option<PathBuf>,
    /// The folder the UI's own files are served from; null: the built-in copies.
    #[schema(value_type = Option<String>, required)]
    pub web_dir: Option<PathBuf>,
    /// How viz reaches the brokers.
    pub broker_client: AdminBrokerClient,
}

/// How viz reaches the brokers: TLS files and where the credential comes from (never the
/// credential).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminBrokerClient {
    /// The CA trusted for https:// brokers; null: the public web roots.
    #[schema(value_type = Option<String>, required)]
    pub tls_ca: Option<PathBuf>,
    /// viz's client certificate, for brokers that require mutual TLS.
    #[schema(value_type = Option<String>, required)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    #[schema(value_type = Option<String>, required)]
    pub tls_key: Option<PathBuf>,
    /// The name brokers' certificates are checked against, when set.
    #[schema(required)]
    pub tls_server_name: Option<String>,
    /// The file the broker credential is read from.
    #[schema(value_type = Option<String>, required)]
    pub token_file: Option<PathBuf>,
    /// "(set)" when the credential was given directly, else null.
    #[schema(example = "(set)", required)]
    pub token: Option<&'static str>,
}

impl From<&crate::Config> for AdminConfig {
    fn from(c: &crate::Config) -> Self {
        // Every field named: a new config field does not compile until it is shown (or left
        // out) here.
        let crate::Config {
            listen,
            brokers,
            topk,
            topk_ttl_secs,
            pull_secs,
            fallback_window_secs,
            health_secs,
            max_range_hours,
            max_points,
            max_cells,
            ws_heartbeat_secs,
            max_connections,
            http_header_timeout_secs,
            http_idle_timeout_secs,
            jwt_secret,
            jwt_secret_file,
            no_auth,
            quic_listen,
            quic_cert,
            quic_key,
            quic_cert_out,
            web_dir,
            broker_client,
        } = c.clone();
        let ringwatch_net::client::BrokerClientConfig {
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
            token_file,
            token,
        } = broker_client;
        AdminConfig {
            listen,
            brokers,
            topk,
            topk_ttl_secs,
            pull_secs,
            fallback_window_secs,
            health_secs,
            max_range_hours,
            max_points,
            max_cells,
            ws_heartbeat_secs,
            max_connections,
            http_header_timeout_secs,
            http_idle_timeout_secs,
            jwt_secret: jwt_secret.map(|_| "(set)"),
            jwt_secret_file,
            no_auth,
            quic_listen,
            quic_cert,
            quic_key,
            quic_cert_out,
            web_dir,
            broker_client: AdminBrokerClient {
                tls_ca,
                tls_cert,
                tls_key,
                tls_server_name,
                token_file,
                token: token.map(|_| "(set)"),
            },
        }
    }
}
