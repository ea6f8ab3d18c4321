//! `ringwatch operator run`: the operator process. It serves `/metrics`, `/health` and `/ready`
//! at once, stands by until it holds the leader Lease (so two replicas are safe), then runs the
//! controller over MonitorClusters and what they own. Losing the Lease ends the process (the
//! Deployment restarts it as a standby), so two leaders never reconcile at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::controller::{AdminReach, Context, error_policy, reconcile};
use crate::crd::MonitorCluster;
use crate::metrics::Metrics;
use crate::names::{FIELD_MANAGER, MANAGED_BY};

/// The operator's configuration (flags, env, YAML file; defaults run in a cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `/metrics`, `/health`, `/ready`.
    pub listen: SocketAddr,
    /// Watch MonitorClusters in this namespace only (default: every namespace).
    pub namespace: Option<String>,
    pub lease: LeaseConfig,
    /// This replica's name in the Lease (default: `POD_NAME`, then the hostname).
    pub identity: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            namespace: None,
            lease: LeaseConfig::default(),
            identity: None,
        }
    }
}

/// Leader election.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    pub name: String,
    /// Where the Lease lives (default: `POD_NAMESPACE`, then `default`).
    pub namespace: Option<String>,
    /// How long a leader holds the Lease without renewing it.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub duration: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            name: "ringwatch-operator".into(),
            namespace: None,
            duration: Duration::from_secs(15),
        }
    }
}

/// The flags (each overrides the file).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Where /metrics, /health and /ready are served [default: 0.0.0.0:8090].
    #[arg(long, env = "RINGWATCH_OPERATOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Watch MonitorClusters in this namespace only [default: every namespace].
    #[arg(long, env = "RINGWATCH_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// The leader Lease's namespace [default: POD_NAMESPACE, then default].
    #[arg(long, env = "RINGWATCH_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease [default: POD_NAME, then the hostname].
    #[arg(long, env = "RINGWATCH_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
}

impl Args {
    pub fn apply(self, c: &mut Config) {
        ringwatch_core::config::overlay(&mut c.listen, self.listen);
        ringwatch_core::config::overlay_opt(&mut c.namespace, self.namespace);
        ringwatch_core::config::overlay_opt(&mut c.lease.namespace, self.lease_namespace);
        ringwatch_core::config::overlay_opt(&mut c.identity, self.identity);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("no Kubernetes API: {0} (in a pod: the ServiceAccount's token; outside: KUBECONFIG)")]
    Kube(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader Lease; exiting so a standby can lead")]
    LostLease,
}

impl Config {
    pub fn from_yaml_value(v: serde_json::Value) -> Result<Config, RunError> {
        serde_json::from_value(v).map_err(|e| RunError::Config(format!("config file: {e}")))
    }

    pub fn validate(&self) -> Result<(), RunError> {
        if self.lease.name.is_empty() {
            return Err(RunError::Config("lease.name: must not be empty".into()));
        }
        if self.lease.duration < Duration::from_secs(5) {
            return Err(RunError::Config("lease.duration: at least 5s".into()));
        }
        if self.namespace.as_deref() == Some("") {
            return Err(RunError::Config(
                "namespace: must not be empty (omit it for every namespace)".into(),
            ));
        }
        Ok(())
    }

    fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(hostname)
            .unwrap_or_else(|| "ringwatch-operator".into())
    }

    fn lease_namespace(&self) -> String {
        self.lease
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Runs until `shutdown` (or the Lease is lost).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| RunError::Listen {
            addr: config.listen,
            reason: e.to_string(),
        })?;
    let limits = ringwatch_net::HttpLimits {
        max_connections: 256,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(ringwatch_net::http::serve(
        listener,
        crate::metrics::router(metrics.clone()),
        limits,
        metrics.listen.listener("http"),
        server_stop.clone(),
        Duration::from_secs(2),
    ));
    let result = lead(&config, metrics, shutdown).await;
    server_stop.cancel();
    let _ = server.await;
    result
}

async fn lead(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let client = Client::try_default()
        .await
        .map_err(|e| RunError::Kube(e.to_string()))?;
    let identity = config.identity();
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease.name)
        .with_namespace(config.lease_namespace())
        .with_identity(identity.clone())
        .with_duration(config.lease.duration.as_secs())
        .with_grace((config.lease.duration.as_secs() / 3).max(1))
        // One field manager per replica: server-side apply's conflict between two managers
        // is what keeps a second replica from taking a held Lease.
        .with_field_manager(format!("{FIELD_MANAGER}-{identity}"))
        .build()
        .await
        .map_err(|e| RunError::Lease(e.to_string()))?;
    let (mut leading, _lease_task) = lease.watch().await;
    // A standby is ready: it serves and waits to lead.
    metrics.set_ready(true);
    tracing::info!(%identity, lease = %config.lease.name, "operator standing by for the leader Lease");
    while !*leading.borrow_and_update() {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = leading.changed() => {
                if changed.is_err() {
                    return Err(RunError::Lease("the Lease watcher stopped".into()));
                }
            }
        }
    }
    metrics.set_leader(true);
    tracing::info!(%identity, namespace = ?config.namespace, "leading: reconciling MonitorClusters");

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        &identity,
        AdminReach::Dns,
    ));
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
    macro_rules! api {
        ($t:ty) => {
            match &config.namespace {
                Some(ns) => Api::<$t>::namespaced(client.clone(), ns),
                None => Api::<$t>::all(client.clone()),
            }
        };
    }
    let stop = shutdown.clone();
    let controller = Controller::new(api!(MonitorCluster), watcher::Config::default())
        .owns(api!(StatefulSet), owned.clone())
        .owns(api!(DaemonSet), owned.clone())
        .owns(api!(Service), owned.clone())
        .owns(api!(ConfigMap), owned.clone())
        .owns(api!(Secret), owned)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(mc = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not run"),
            }
        });
    let lost = async {
        loop {
            if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                return;
            }
        }
    };
    tokio::select! {
        () = controller => Ok(()),
        () = lost => {
            metrics.set_leader(false);
            Err(RunError::LostLease)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_values_are_refused() {
        let mut c = Config::from_yaml_value(serde_json::json!({
            "listen": "127.0.0.1:9000",
            "lease": {"duration": "30s"}
        }))
        .unwrap();
        Args {
            namespace: Some("obs".into()),
            ..Args::default()
        }
        .apply(&mut c);
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(c.namespace.as_deref(), Some("obs"));
        assert_eq!(c.lease.duration, Duration::from_secs(30));
        c.validate().unwrap();
        c.lease.duration = Duration::from_secs(1);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("lease.duration")
        );
        let unknown = Config::from_yaml_value(serde_json::json!({"leese": {}})).unwrap_err();
        assert!(unknown.to_string().contains("leese"), "{unknown}");
    }

    #[tokio::test]
    async fn metrics_health_and_ready_are_served() {
        let metrics = Arc::new(Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = crate::metrics::router(metrics.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let get = |path: &'static str| {
            let addr = addr.clone();
            async move {
                let c = ringwatch_net::admin_client::AdminClient::new(&addr, None);
                c.call("GET", path, None).await.unwrap()
            }
        };
        assert_eq!(get("/health").await.status, 200);
        assert_eq!(
            get("/ready").await.status,
            503,
            "not ready before it stands by"
        );
        metrics.set_ready(true);
        metrics.reconciled(0.02);
        assert_eq!(get("/ready").await.status, 200);
        let text = get("/metrics").await.body["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            text.contains("ringwatch_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(text.contains("ringwatch_operator_leader 0"), "{text}");
    }
}
