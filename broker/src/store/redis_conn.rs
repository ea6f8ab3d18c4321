//! Connections to Redis in its three modes: standalone (a connection manager that reconnects by
//! itself), sentinel (the master is asked of the sentinels, and asked again after an error, which
//! is how a fail-over is followed), and cluster (the cluster client routes by slot and follows
//! MOVED/ASK and topology changes).

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// How Redis is deployed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server (`--redis-url redis://host:6379`).
    #[default]
    Standalone,
    /// Sentinels watch a master; `--redis-url` lists the sentinels.
    Sentinel,
    /// Redis Cluster; `--redis-url` lists seed nodes.
    Cluster,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct RedisSettings {
    pub mode: RedisMode,
    /// `redis://` or `rediss://` (TLS) URLs: the server, the sentinels, or cluster seeds.
    pub urls: Vec<String>,
    /// The sentinel master name.
    pub master_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// A PEM file of the CA that signed the servers' certificates (for `rediss://` servers
    /// whose CA is not a public one). Standalone and cluster modes.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("mode", &self.mode)
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("master_name", &self.master_name)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A URL with any password replaced, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// One connection of whichever mode; cheap to clone (all are multiplexed).
#[derive(Clone)]
pub enum Conn {
    Manager(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Multiplexed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Multiplexed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Hands out connections, connecting lazily and again after `invalidate`.
pub struct Connector {
    settings: RedisSettings,
    current: Mutex<Option<Conn>>,
    sentinel: Option<Mutex<SentinelClient>>,
    /// The CA to trust for TLS, read from `ca_file`.
    certs: Option<redis::TlsCertificates>,
    /// When a cluster connection was last dropped after an error (see `invalidate`).
    cluster_reset: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A cluster connection is built again after an error at most this often.
const CLUSTER_RESET_EVERY: Duration = Duration::from_secs(2);

impl Connector {
    /// Checks the settings; connects on first use.
    pub fn new(settings: RedisSettings) -> RedisResult<Connector> {
        if settings.urls.is_empty() {
            return Err(invalid("no Redis URL given"));
        }
        let certs = match &settings.ca_file {
            None => None,
            Some(path) => {
                if settings.mode == RedisMode::Sentinel {
                    return Err(invalid("a CA file is not supported in sentinel mode yet"));
                }
                if settings.urls.iter().any(|u| !u.starts_with("rediss://")) {
                    return Err(invalid("a CA file needs rediss:// URLs"));
                }
                let pem = std::fs::read(path).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "cannot read the Redis CA file",
                        format!("{}: {e}", path.display()),
                    ))
                })?;
                Some(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                })
            }
        };
        let sentinel = match settings.mode {
            RedisMode::Sentinel => {
                let mut redis_info = redis::RedisConnectionInfo::default();
                if let Some(u) = &settings.username {
                    redis_info = redis_info.set_username(u);
                }
                if let Some(p) = &settings.password {
                    redis_info = redis_info.set_password(p);
                }
                let node =
                    SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_info);
                let client = SentinelClient::build(
                    settings.urls.clone(),
                    settings.master_name.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                Some(Mutex::new(client))
            }
            _ => None,
        };
        Ok(Connector {
            settings,
            current: Mutex::new(None),
            sentinel,
            certs,
            cluster_reset: std::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    fn info(&self, url: &str) -> RedisResult<redis::ConnectionInfo> {
        let mut info = url.into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &self.settings.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.settings.password {
            settings = settings.set_password(p);
        }
        info = info.set_redis_settings(settings);
        Ok(info)
    }

    /// The current connection, connecting if there is none.
    pub async fn get(&self) -> RedisResult<Conn> {
        let mut cur = self.current.lock().await;
        if let Some(c) = cur.as_ref() {
            return Ok(c.clone());
        }
        let conn = tokio::time::timeout(self.settings.connect_timeout * 2, self.connect())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
        *cur = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after an error, so the next `get` connects again: for a
    /// sentinel deployment, to whichever server the sentinels now call master; for a cluster,
    /// with the slots asked afresh of the nodes (at most every two seconds). The cluster
    /// client repairs itself after MOVED answers, but after a master died it was seen to
    /// time out on that master's slots for minutes, fail-over done.
    pub async fn invalidate(&self) {
        match self.settings.mode {
            RedisMode::Sentinel => *self.current.lock().await = None,
            RedisMode::Cluster => {
                let due = match self.cluster_reset.lock() {
                    Ok(mut last) => {
                        let due = last.is_none_or(|t| t.elapsed() >= CLUSTER_RESET_EVERY);
                        if due {
                            *last = Some(std::time::Instant::now());
                        }
                        due
                    }
                    Err(_) => false,
                };
                if due {
                    tracing::info!("redis cluster: connecting again after an error");
                    *self.current.lock().await = None;
                }
            }
            RedisMode::Standalone => {}
        }
    }

    async fn connect(&self) -> RedisResult<Conn> {
        let s = &self.settings;
        let async_cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.connect_timeout))
            .set_response_timeout(Some(s.response_timeout));
        match s.mode {
            RedisMode::Standalone => {
                let info = self.info(&s.urls[0])?;
                let client = match &self.certs {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone())?,
                    None => redis::Client::open(info)?,
                };
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(s.connect_timeout))
                    .set_response_timeout(Some(s.response_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                Ok(Conn::Manager(
                    ConnectionManager::new_with_config(client, cfg).await?,
                ))
            }
            RedisMode::Sentinel => {
                let Some(sentinel) = &self.sentinel else {
                    return Err(invalid("sentinel client missing"));
                };
                let conn = sentinel
                    .lock()
                    .await
                    .get_async_connection_with_config(&async_cfg)
                    .await?;
                Ok(Conn::Multiplexed(conn))
            }
            RedisMode::Cluster => {
                let nodes = s
                    .urls
                    .iter()
                    .map(|u| self.info(u))
                    .collect::<RedisResult<Vec<_>>>()?;
                let mut builder = ClusterClient::builder(nodes)
                    .connection_timeout(s.connect_timeout)
                    .response_timeout(s.response_timeout)
                    .retries(3);
                if let Some(certs) = &self.certs {
                    builder = builder.certs(certs.clone());
                }
                let client = builder.build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

fn invalid(msg: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let s = RedisSettings {
            mode: RedisMode::Standalone,
            urls: vec!["redis://:pw@h:1".into()],
            master_name: "m".into(),
            username: None,
            password: Some("pw2".into()),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            ca_file: None,
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("pw"), "{dbg}");
    }

    #[test]
    fn settings_are_checked() {
        let s = RedisSettings {
            mode: RedisMode::Cluster,
            urls: vec![],
            master_name: String::new(),
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            ca_file: None,
        };
        assert!(Connector::new(s.clone()).is_err());
        let s = RedisSettings {
            urls: vec!["not a url".into()],
            mode: RedisMode::Sentinel,
            ..s
        };
        assert!(Connector::new(s).is_err());
    }
}
