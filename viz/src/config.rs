//! viz's one typed config: flags, env (`RINGWATCH_VIZ_*`) and a YAML file (field names equal
//! flag ids), with defaults that run locally.

use std::net::SocketAddr;

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
    /// WebSocket heartbeat (ping) period, in seconds; a client silent for two is closed.
    #[arg(long, env = "RINGWATCH_VIZ_WS_HEARTBEAT_SECS", default_value_t = 30)]
    pub ws_heartbeat_secs: u64,
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
            ws_heartbeat_secs: 30,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), VizError> {
        let bad = |m: String| Err(VizError::Config(m));
        if self.brokers.is_empty() {
            return bad("brokers: at least one --broker is needed".into());
        }
        if let Some(b) = self.brokers.iter().find(|b| !b.starts_with("http://")) {
            return bad(format!("brokers: {b:?} must be an http:// gRPC endpoint"));
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
        if !(1..=24 * 3650).contains(&self.max_range_hours) || self.max_points == 0 {
            return bad("max_range_hours must be 1..=87600 and max_points at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        Config::default().validate().unwrap();
        let c = Config {
            brokers: vec![],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("brokers"));
        let c = Config {
            topk: 0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("topk"));
    }
}
